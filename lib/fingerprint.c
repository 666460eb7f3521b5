/*
 * lib/fingerprint.c - pg_query fingerprints with an exact cache, and the
 * literal-lifting lexer the store uses to deduplicate texts.
 *
 * Why the cache is exact (docs/fingerprint.md has the long form):
 * pg_query's fingerprint ignores A_Const nodes. In DML (SELECT, INSERT,
 * UPDATE, DELETE, WITH, VALUES, TABLE) every plain string or numeric literal
 * becomes an A_Const, except in three grammar spots where the value of an
 * integer shapes the tree (float(p), array bounds int[3], and the precision
 * of CURRENT_TIME(p) and its kin, kept in SQLValueFunction.typmod); there the
 * lexer below refuses to lift. A text holding several statements is lifted
 * only when every one of them is DML (DDL keeps values in its tree). The lexer keeps the token kinds PostgreSQL's lexer
 * would give (string, integer that fits int32, other numeric), so two texts
 * with the same template lex to the same token kinds, parse to the same tree
 * up to A_Const contents, and have the same fingerprint. Anything unusual
 * (dollar quotes, E'' / B'' / X'' / U&'' strings, adjacent string
 * continuation, numeric junk) is not lifted: then the template is the whole
 * text, which is trivially exact.
 */
#include "internal.h"
#include "fingerprint_lex.h"

#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#define LIT_INTEGER '\x02'
#define LIT_FLOAT '\x03'

/* ------------------------------------------------------------------ */
/* The literal-lifting lexer                                           */
/* ------------------------------------------------------------------ */

size_t scry__sql_skip_comment(const char *s, size_t len, size_t i)
{
	bool ok;
	return skip_comment(s, len, i, &ok);
}

/* True when the text is DML, the only place lifting is proven exact. */
static bool is_dml(const char *s, size_t len)
{
	size_t i = skip_space_comments(s, len, 0);
	while (i < len && s[i] == '(')
		i = skip_space_comments(s, len, i + 1);
	size_t start = i;
	while (i < len && is_ident_char((unsigned char)s[i]))
		i++;
	const char *w = s + start;
	size_t n = i - start;
	return word_eq(w, n, "select") || word_eq(w, n, "insert") || word_eq(w, n, "update") ||
	       word_eq(w, n, "delete") || word_eq(w, n, "with") || word_eq(w, n, "values") ||
	       word_eq(w, n, "table");
}

/* Keywords whose parenthesised integer is not an A_Const: float(p) picks
 * float4 or float8 by value; CURRENT_TIME(p) and its kin keep p as typmod. */
static bool value_shapes_tree(const char *w, size_t n)
{
	return word_eq(w, n, "float") || word_eq(w, n, "current_time") ||
	       word_eq(w, n, "current_timestamp") || word_eq(w, n, "localtime") ||
	       word_eq(w, n, "localtimestamp");
}

/*
 * Scans the number at s[i] (digits, a fraction, an exponent), as
 * PostgreSQL's lexer would: *end past it, *is_float for FCONST (a fraction,
 * an exponent, or an integer beyond int32). False for junk it cannot lift.
 */
static inline bool scan_number(const char *s, size_t len, size_t i, size_t *end, bool *is_float_out)
{
	size_t j = i;
	bool is_float = false;
	while (j < len && is_digit((unsigned char)s[j]))
		j++;
	if (j < len && s[j] == '.') {
		if (j + 1 < len && s[j + 1] == '.')
			return false; /* 1..2 */
		is_float = true;
		j++;
		while (j < len && is_digit((unsigned char)s[j]))
			j++;
	}
	if (j < len && (s[j] == 'e' || s[j] == 'E')) {
		size_t k = j + 1;
		if (k < len && (s[k] == '+' || s[k] == '-'))
			k++;
		if (k >= len || !is_digit((unsigned char)s[k]))
			return false; /* 1e junk */
		while (k < len && is_digit((unsigned char)s[k]))
			k++;
		j = k;
		is_float = true;
	}
	if (j < len && (is_ident_char((unsigned char)s[j]) || s[j] == '.'))
		return false; /* trailing junk, 1.2.3 */
	if (!is_float) {
		/* PostgreSQL's lexer makes integers beyond int32 FCONST. */
		size_t d = i;
		while (d < j - 1 && s[d] == '0')
			d++;
		if (j - d > 10 || (j - d == 10 && memcmp(s + d, "2147483647", 10) > 0))
			is_float = true;
	}
	*end = j;
	*is_float_out = is_float;
	return true;
}

/* Appends the text since the last literal and a marker to tmpl, the literal to lits (in lift()). */
#define EMIT_LITERAL(kind, from, to)                                                  \
	do {                                                                          \
		if (scry__buf_put(tmpl, s + copied, (from) - copied) ||               \
		    scry__buf_put(tmpl, (const char[]){ (kind) }, 1) ||               \
		    scry__buf_varint(lits, (uint64_t)((to) - (from))) ||              \
		    scry__buf_put(lits, s + (from), (to) - (from))) {                 \
			*oom = 1;                                                     \
			return false;                                                 \
		}                                                                     \
		copied = (to);                                                        \
		(*nlits)++;                                                           \
	} while (0)

/* Lexes the DML text; returns true when every literal could be lifted. */
static bool lift(const char *s, size_t len, scry_buf *tmpl, scry_buf *lits, int *nlits, int *oom)
{
	size_t i = 0, copied = 0;
	/* Last byte of the previous token, comments and whitespace skipped. */
	unsigned char last = 0;
	*nlits = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x04) /* marker bytes (and NUL) in the text would be ambiguous */
			return false;
		if (is_space(c)) {
			i++;
		} else if (comment_starts(s, len, i)) {
			bool ok;
			i = skip_comment(s, len, i, &ok);
			if (!ok)
				return false; /* unterminated comment: leave it to the parser */
		} else if (c == '\'') {
			if (i > 0 && (is_ident_char((unsigned char)s[i - 1]) || s[i - 1] == '&' ||
			              s[i - 1] == '\''))
				return false; /* E'', B'', X'', U&'', typed 'literal' prefixes */
			size_t j;
			if (!scan_quoted(s, len, i, &j))
				return false;
			/* 'a' <newline> 'b' is one literal in SQL: do not lift either. */
			size_t k = skip_space_comments(s, len, j);
			if (k < len && s[k] == '\'')
				return false;
			EMIT_LITERAL(SCRY__LIT_STRING, i, j);
			i = j;
			last = '\'';
		} else if (is_digit(c) || (c == '.' && i + 1 < len && is_digit((unsigned char)s[i + 1]))) {
			if (i > 0 && (is_ident_char((unsigned char)s[i - 1])))
				return false;
			if (last == '[')
				return false; /* int[3]: array bounds are Integer nodes */
			size_t j;
			bool is_float;
			if (!scan_number(s, len, i, &j, &is_float))
				return false;
			EMIT_LITERAL(is_float ? LIT_FLOAT : LIT_INTEGER, i, j);
			i = j;
			last = '0';
		} else if (c == '$') {
			if (i + 1 < len && is_digit((unsigned char)s[i + 1])) {
				i++;
				while (i < len && is_digit((unsigned char)s[i]))
					i++;
				if (i < len && is_ident_char((unsigned char)s[i]))
					return false;
				last = '0';
			} else {
				return false; /* dollar quoting */
			}
		} else if (c == '"') {
			if (!scan_quoted(s, len, i, &i))
				return false;
			last = '"';
		} else if (is_ident_start(c)) {
			size_t j = i;
			while (j < len && is_ident_char((unsigned char)s[j]))
				j++;
			if (j < len && (s[j] == '\'' || s[j] == '&'))
				return false;
			if (value_shapes_tree(s + i, j - i)) {
				size_t k = skip_space_comments(s, len, j);
				if (k < len && s[k] == '(')
					return false;
			}
			i = j;
			last = 'a';
		} else if (c == ';') {
			/* Another statement follows: it must be DML too. */
			size_t k = skip_space_comments(s, len, i + 1);
			if (k < len && s[k] != ';' && !is_dml(s + k, len - k))
				return false;
			i++;
			last = c;
		} else {
			i++;
			last = c;
		}
	}
	if (scry__buf_put(tmpl, s + copied, len - copied)) {
		*oom = 1;
		return false;
	}
	return true;
#undef EMIT_LITERAL
}

/* A byte 0x00-0x03 anywhere, comments and quotes included: such a text is
 * stored as it is (no literals), so no byte of it can pass for a marker. */
static bool has_marker_byte(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x04)
			return true;
	return false;
}

int scry__lift_literals(const char *sql, size_t len, scry_buf *tmpl, scry_buf *lits, int *nlits)
{
	size_t t0 = tmpl->size, l0 = lits->size;
	int oom = 0;
	*nlits = 0;
	if (!has_marker_byte(sql, len) && is_dml(sql, len) && lift(sql, len, tmpl, lits, nlits, &oom))
		return 0;
	if (oom)
		return SCRY_ENOMEM;
	/* Not lifted: the template is the text itself. */
	tmpl->size = t0;
	lits->size = l0;
	*nlits = 0;
	return scry__buf_put(tmpl, sql, len);
}

int scry__splice_literals(const char *tmpl, size_t tlen, const unsigned char *lits,
                          size_t llen, scry_buf *out)
{
	/* No literals: the template is the exact text, whatever bytes it holds. */
	if (llen == 0)
		return scry__buf_put(out, tmpl, tlen) ? SCRY_ENOMEM : 0;
	size_t pos = 0, start = 0;
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)tmpl[i];
		if (c != 0x01 && c != 0x02 && c != 0x03)
			continue;
		uint64_t n;
		size_t used = scry__read_varint(lits + pos, llen - pos, &n);
		if (!used || n > llen - pos - used)
			return SCRY_ECORRUPT;
		if (scry__buf_put(out, tmpl + start, i - start) ||
		    scry__buf_put(out, lits + pos + used, (size_t)n))
			return SCRY_ENOMEM;
		pos += used + (size_t)n;
		start = i + 1;
	}
	if (scry__buf_put(out, tmpl + start, tlen - start))
		return SCRY_ENOMEM;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The fingerprinter                                                   */
/* ------------------------------------------------------------------ */

typedef struct cache_entry {
	XXH128_hash_t key; /* all-zero = empty slot */
	uint64_t fingerprint;
} cache_entry;

struct scry_fingerprinter {
	cache_entry *slots;
	size_t mask;       /* capacity - 1, capacity a power of two */
	size_t used;
	size_t max_slots;  /* the table grows up to this, then is cleared when half full:
	                      bounded memory for streams of distinct texts */
	scry_buf tmpl, lits, text;
	scry_fingerprinter_stats stats;
	/* Adaptive bypass: when a window of calls almost never hits the cache,
	 * the next calls skip lifting and hashing (they would only add their
	 * cost to the parse), then the cache is probed again. */
	uint32_t window_calls, window_hits, bypass_left, bypass_next;
};

enum {
	BYPASS_WINDOW = 128,      /* calls per probe window */
	BYPASS_MIN_HITS = 4,      /* fewer hits than this (~3%) in a window: bypass */
	BYPASS_FIRST = 1024,      /* calls bypassed after a failed probe, doubling */
	BYPASS_MAX = 65536        /* after each further failed probe, up to this */
};

void scry_fingerprinter_options_init(scry_fingerprinter_options *o)
{
	*o = (scry_fingerprinter_options)SCRY_FINGERPRINTER_OPTIONS_INIT;
}

int scry_fingerprinter_new(scry_fingerprinter **out, const scry_fingerprinter_options *opts,
                           scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_fingerprinter_new: out is NULL");
	*out = NULL;
	scry_fingerprinter_options o;
	int vrc = scry__opts_copy(err, &scry__abi_fingerprinter_options, &o, opts);
	if (vrc)
		return vrc;
	size_t want = o.cache_entries ? o.cache_entries : 65536;
	size_t max_slots = 16;
	while (max_slots < want * 2 && max_slots < ((size_t)1 << 40))
		max_slots <<= 1;
	/* Start small and grow: a short-lived fingerprinter stays cheap. */
	size_t cap = max_slots < 1024 ? max_slots : 1024;
	scry_fingerprinter *f = scry__calloc(1, sizeof *f);
	if (f)
		f->slots = scry__calloc(cap, sizeof *f->slots);
	if (!f || !f->slots) {
		scry__free(f);
		return scry__fail(err, SCRY_ENOMEM, "out of memory for a fingerprint cache of %zu entries", want);
	}
	f->mask = cap - 1;
	f->max_slots = max_slots;
	*out = f;
	return 0;
}

void scry_fingerprinter_free(scry_fingerprinter *f)
{
	if (!f)
		return;
	scry__free(f->slots);
	scry_buf_dispose(&f->tmpl);
	scry_buf_dispose(&f->lits);
	scry_buf_dispose(&f->text);
	scry__free(f);
}

int scry_fingerprinter_stats_get(const scry_fingerprinter *f, scry_fingerprinter_stats *out)
{
	scry_fingerprinter_stats st = { 0 };
	if (f)
		st = f->stats;
	return scry__out_copy(NULL, &scry__abi_fingerprinter_stats, out, &st);
}

typedef struct fp_call {
	const char *text;
	PgQueryFingerprintResult r;
} fp_call;

static void fp_call_run(void *p)
{
	fp_call *c = p;
	c->r = pg_query_fingerprint(c->text);
}

/* The parser itself: NUL-terminated text in; deeply nested texts are kept
 * off the caller's stack (lib/pgquery_guard.c). */
static int parse_fingerprint(const char *text, uint64_t *out, scry_error *err)
{
	fp_call c = { text, { 0 } };
	int rc = scry__pgq_run(text, strlen(text), fp_call_run, &c, err);
	if (rc)
		return rc;
	if (c.r.error) {
		rc = scry__fail(err, SCRY_EPARSE, "%s at position %d", c.r.error->message,
		                c.r.error->cursorpos);
	} else {
		*out = c.r.fingerprint;
	}
	pg_query_free_fingerprint_result(c.r);
	return rc;
}

/* Characters in n bytes of UTF-8 (positions are reported in characters, as
 * PostgreSQL does). */
static size_t utf8_chars(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

/* PostgreSQL cannot take a NUL byte in a query text; pg_query would silently
 * stop there, so say so instead. */
static int nul_error(const char *sql, size_t len, scry_error *err)
{
	const char *nul = memchr(sql, 0, len);
	return scry__fail(err, SCRY_EPARSE, "the text contains a NUL byte at position %d",
	                  (int)utf8_chars(sql, (size_t)(nul - sql)) + 1);
}

static cache_entry *cache_slot(scry_fingerprinter *f, XXH128_hash_t key)
{
	size_t i = (size_t)key.low64 & f->mask;
	for (;;) {
		cache_entry *e = &f->slots[i];
		if ((e->key.low64 == 0 && e->key.high64 == 0) || XXH128_isEqual(e->key, key))
			return e;
		i = (i + 1) & f->mask;
	}
}

/* Doubles the table; on allocation failure the caller clears it instead. */
static int cache_grow(scry_fingerprinter *f)
{
	size_t cap = (f->mask + 1) * 2;
	cache_entry *old = f->slots, *slots = scry__calloc(cap, sizeof *slots);
	if (!slots)
		return SCRY_ENOMEM;
	size_t old_cap = f->mask + 1;
	f->slots = slots;
	f->mask = cap - 1;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].key.low64 || old[i].key.high64)
			*cache_slot(f, old[i].key) = old[i];
	scry__free(old);
	return 0;
}

int scry_fingerprint_compute(scry_fingerprinter *f, const char *sql, size_t len, uint64_t *out,
                             scry_error *err)
{
	if (!sql || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_fingerprint_compute: sql and out are required");
	if (!f) {
		if (memchr(sql, 0, len))
			return nul_error(sql, len, err);
		char *copy = scry__strndup(sql, len);
		if (!copy)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		int rc = parse_fingerprint(copy, out, err);
		scry__free(copy);
		return rc;
	}
	f->stats.calls++;
	/* A NUL anywhere is the documented error on every path, cached or not (a
	 * cache entry must never answer for a text the parser would refuse). */
	if (memchr(sql, 0, len)) {
		f->stats.errors++;
		return nul_error(sql, len, err);
	}
	if (f->bypass_left) {
		f->bypass_left--;
		f->stats.parses++;
		int rc = scry_fingerprint_compute(NULL, sql, len, out, err);
		f->stats.errors += rc != 0;
		return rc;
	}
	if (++f->window_calls == BYPASS_WINDOW) {
		if (f->window_hits < BYPASS_MIN_HITS) {
			f->bypass_left = f->bypass_next ? f->bypass_next : BYPASS_FIRST;
			f->bypass_next = f->bypass_left < BYPASS_MAX ? f->bypass_left * 2 : BYPASS_MAX;
		} else {
			f->bypass_next = 0;
		}
		f->window_calls = f->window_hits = 0;
	}
	scry__buf_clear(&f->tmpl);
	scry__buf_clear(&f->lits);
	int nlits;
	if (scry__lift_literals(sql, len, &f->tmpl, &f->lits, &nlits))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	/* Two key spaces: a template with markers must never meet a raw text that
	 * happens to hold the marker bytes ("SELECT \x02" is a syntax error). */
	XXH128_hash_t key = XXH3_128bits_withSeed(f->tmpl.ptr, f->tmpl.size, nlits ? 0 : 1);
	if (key.low64 == 0 && key.high64 == 0)
		key.low64 = 1; /* keep the all-zero key for empty slots */
	cache_entry *e = cache_slot(f, key);
	if (e->key.low64 || e->key.high64) {
		f->stats.hits++;
		f->window_hits++;
		*out = e->fingerprint;
		return 0;
	}
	if (!nlits && memchr(sql, 0, len)) { /* (a lifted text has no NUL) */
		f->stats.parses++;
		f->stats.errors++;
		return nul_error(sql, len, err);
	}
	/* Without literals the template is the text, already NUL-terminated. */
	const char *text = f->tmpl.ptr;
	if (nlits) {
		scry__buf_clear(&f->text);
		if (scry__buf_put(&f->text, sql, len))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		text = f->text.ptr;
	}
	f->stats.parses++;
	uint64_t fp;
	int rc = parse_fingerprint(text ? text : "", &fp, err);
	if (rc) {
		f->stats.errors++;
		return rc; /* errors are not cached: they are rare and carry a position */
	}
	if (f->used >= (f->mask + 1) / 2) {
		if (f->mask + 1 >= f->max_slots || cache_grow(f) != 0) {
			memset(f->slots, 0, (f->mask + 1) * sizeof *f->slots);
			f->used = 0;
		}
		e = cache_slot(f, key);
	}
	e->key = key;
	e->fingerprint = fp;
	f->used++;
	*out = fp;
	return 0;
}

int scry_fingerprint_batch(scry_fingerprinter *f, const char *const *sqls, const size_t *lens,
                           size_t n, uint64_t *fps, int *status)
{
	if ((!sqls || !fps || !status) && n)
		return SCRY_EINVAL;
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = lens ? lens[i] : strlen(sqls[i]);
		fps[i] = 0;
		status[i] = scry_fingerprint_compute(f, sqls[i], len, &fps[i], NULL);
		if (status[i])
			failed++;
	}
	return failed;
}

typedef struct norm_call {
	const char *text;
	PgQueryNormalizeResult r;
} norm_call;

static void norm_call_run(void *p)
{
	norm_call *c = p;
	c->r = pg_query_normalize(c->text);
}

int scry_fingerprint_normalize(const char *sql, size_t len, scry_buf *out, scry_error *err)
{
	if (!sql || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_fingerprint_normalize: sql and out are required");
	if (memchr(sql, 0, len))
		return nul_error(sql, len, err);
	char *copy = scry__strndup(sql, len);
	if (!copy)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	norm_call c = { copy, { 0 } };
	int rc = scry__pgq_run(copy, len, norm_call_run, &c, err);
	if (!rc) {
		if (c.r.error)
			rc = scry__fail(err, SCRY_EPARSE, "%s at position %d", c.r.error->message,
			                c.r.error->cursorpos);
		else if (scry__buf_puts(out, c.r.normalized_query))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		pg_query_free_normalize_result(c.r);
	}
	scry__free(copy);
	return rc;
}
