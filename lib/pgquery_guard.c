/*
 * lib/pgquery_guard.c - runs libpg_query's recursive calls where the stack
 * can hold them.
 *
 * libpg_query's tree walkers (pg_query_normalize, the JSON output of
 * pg_query_parse, the fingerprint walker) recurse once per tree level without
 * a depth check. The grammar bounds bracket nesting (bison's stack, ~10,000
 * levels, "memory exhausted"), but not left-associative chains: 30,000 terms
 * of `1+1+...` (60 KB) overflow an 8 MB stack inside pg_query_normalize, and
 * a few more kill pg_query_parse. One such statement reaching the proxy would
 * kill it for every client.
 *
 * So before a call, a cheap scan bounds the depth of the tree from above
 * (scry__sql_depth): the number of words and operator characters along the
 * bracket path to any point, plus the bracket depth. Every tree level needs
 * at least one such token, so the bound is safe (it overestimates: `a = 1 AND
 * b = 2` counts 7). Then:
 *   - when the caller's stack has 1 KB per level and 256 KB to spare (its
 *     bounds are looked up once per thread; libpg_query needs ~450 bytes per
 *     level at most), the call runs on it; when the bounds are unknown, only
 *     up to SCRY__PGQ_INLINE_DEPTH levels (< 0.5 MB);
 *   - up to SCRY__PGQ_MAX_DEPTH: on a short-lived thread whose stack is sized
 *     for the depth (2 MB + 1 KB per level, reserved, touched only as used);
 *   - beyond: not parsed; SCRY_EPARSE "statement nested too deeply". The
 *     server itself refuses such statements (its 2 MB max_stack_depth gives
 *     out near 22,000 terms).
 * docs/fingerprint.md ("Hostile statements") has the measurements.
 */
#define _GNU_SOURCE /* pthread_getattr_np */
#include "internal.h"

#include <pg_query.h>
#include <pthread.h>

static bool g_is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80 ||
	       (c >= '0' && c <= '9') || c == '$';
}

/* PostgreSQL's operator characters, and the '.' and ':' of a.b and x::t. */
static bool g_is_op(unsigned char c)
{
	return strchr("+-*/<>=~!@#%^&|`?.:", c) != NULL && c != 0;
}

/* Skips a '...' string from its opening quote; backslash escapes when
 * `escapes` (E'...'). Returns the index past it, or len. */
static size_t g_skip_string(const char *s, size_t len, size_t i, bool escapes)
{
	for (i++; i < len; i++) {
		if (escapes && s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == '\'') {
			if (i + 1 < len && s[i + 1] == '\'') {
				i++;
				continue;
			}
			return i + 1;
		}
	}
	return len;
}

/* At s[i] == '$': the length of a dollar-quote tag ($tag$ or $$), or 0. */
static size_t g_dollar_tag(const char *s, size_t len, size_t i)
{
	size_t j = i + 1;
	if (j < len && s[j] >= '0' && s[j] <= '9')
		return 0; /* $1: a parameter */
	while (j < len && s[j] != '$' && g_is_word((unsigned char)s[j]) && s[j] != '$')
		j++;
	return j < len && s[j] == '$' ? j + 1 - i : 0;
}

size_t scry__sql_depth(const char *s, size_t len)
{
	/* saved[k] = the count when bracket level k+1 opened. */
	size_t stack_small[64], *saved = stack_small, cap = 64, level = 0;
	size_t cur = 0, max = 0;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if ((c == '-' || c == '/') && i + 1 < len && s[i + 1] == (c == '-' ? '-' : '*')) {
			i = scry__sql_skip_comment(s, len, i);
		} else if (c == '\'') {
			i = g_skip_string(s, len, i, false);
		} else if (c == '"') {
			size_t j = i + 1;
			while (j < len && !(s[j] == '"' && !(j + 1 < len && s[j + 1] == '"')))
				j += s[j] == '"' ? 2 : 1;
			i = j < len ? j + 1 : len;
			cur++;
		} else if (c == '$' && g_dollar_tag(s, len, i)) {
			size_t t = g_dollar_tag(s, len, i), j = i + t;
			while (j + t <= len && memcmp(s + j, s + i, t) != 0)
				j++;
			i = j + t <= len ? j + t : len;
		} else if (c >= '0' && c <= '9') {
			/* A number, or junk glued to it: a leaf. As in PostgreSQL's lexer,
			 * it ends before '$' and before an E'...' string (1e'x' is 1, E'x'). */
			while (i < len && s[i] != '$' && (g_is_word((unsigned char)s[i]) || s[i] == '.') &&
			       !((s[i] == 'e' || s[i] == 'E') && i + 1 < len && s[i + 1] == '\''))
				i++;
		} else if ((c == 'e' || c == 'E') && i + 1 < len && s[i + 1] == '\'') {
			i = g_skip_string(s, len, i + 1, true); /* E'...': backslash escapes */
		} else if (c == '$') {
			i++; /* $1 */
			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
		} else if (g_is_word(c)) {
			while (i < len && g_is_word((unsigned char)s[i]))
				i++;
			cur++;
		} else if (g_is_op(c)) {
			i++;
			cur++;
		} else if (c == '(' || c == '[') {
			if (level == cap) {
				size_t ncap = cap * 2;
				size_t *n = saved == stack_small ? scry__malloc(ncap * sizeof *n)
				                                 : scry__realloc(saved, ncap * sizeof *n);
				if (!n) {
					max = SIZE_MAX; /* cannot tell: treat as too deep */
					break;
				}
				if (saved == stack_small)
					memcpy(n, stack_small, sizeof stack_small);
				saved = n;
				cap = ncap;
			}
			saved[level++] = cur;
			cur++;
			i++;
		} else if (c == ')' || c == ']') {
			if (level)
				cur = saved[--level];
			i++;
		} else if (c == ';' && level == 0) {
			cur = 0; /* the next statement is its own tree */
			i++;
		} else {
			i++;
		}
		if (cur > max)
			max = cur;
	}
	if (saved != stack_small)
		scry__free(saved);
	return max;
}

typedef struct guard_call {
	void (*fn)(void *);
	void *arg;
} guard_call;

static void *guard_thread(void *p)
{
	guard_call *c = p;
	c->fn(c->arg); /* libpg_query frees its per-thread context at thread exit */
	return NULL;
}

/* Bytes of stack left below this frame in the calling thread, or 0 when
 * unknown. The stack's low end is looked up once per thread. */
static _Thread_local uintptr_t stack_low;
static _Thread_local bool stack_looked_up;

static size_t stack_room(void)
{
	if (!stack_looked_up) {
		stack_looked_up = true;
		pthread_attr_t a;
		if (pthread_getattr_np(pthread_self(), &a) == 0) {
			void *addr;
			size_t size, guard = 0;
			if (pthread_attr_getstack(&a, &addr, &size) == 0 && size > 0) {
				pthread_attr_getguardsize(&a, &guard);
				stack_low = (uintptr_t)addr + guard;
			}
			pthread_attr_destroy(&a);
		}
	}
	char here;
	uintptr_t sp = (uintptr_t)&here;
	return stack_low && sp > stack_low ? sp - stack_low : 0;
}

int scry__pgq_run(const char *text, size_t len, void (*fn)(void *), void *arg, scry_error *err)
{
	size_t depth = scry__sql_depth(text, len);
	/* The caller's stack when it holds 1 KB per level (twice the deepest
	 * measured need) and 256 KB more; when its size is unknown, only up to
	 * SCRY__PGQ_INLINE_DEPTH. */
	size_t room = depth <= SCRY__PGQ_MAX_DEPTH ? stack_room() : 0;
	if (room ? depth * 1024 + ((size_t)256 << 10) <= room : depth <= SCRY__PGQ_INLINE_DEPTH) {
		fn(arg);
		return 0;
	}
	if (depth > SCRY__PGQ_MAX_DEPTH)
		return scry__fail(err, SCRY_EPARSE,
		                  "statement nested too deeply to parse (more than %d levels of "
		                  "operators and brackets; PostgreSQL refuses such statements too)",
		                  SCRY__PGQ_MAX_DEPTH);
	pthread_attr_t attr;
	pthread_t t;
	guard_call c = { fn, arg };
	int rc = pthread_attr_init(&attr);
	if (!rc)
		rc = pthread_attr_setstacksize(&attr, ((size_t)2 << 20) + depth * 1024);
	if (!rc)
		rc = pthread_create(&t, &attr, guard_thread, &c);
	pthread_attr_destroy(&attr);
	if (rc)
		return scry__fail(err, SCRY_EPARSE,
		                  "statement nested %zu levels deep: could not start a thread with "
		                  "a stack for it (%s)", depth, strerror(rc));
	pthread_join(t, NULL);
	return 0;
}
