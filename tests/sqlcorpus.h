/*
 * tests/sqlcorpus.h - SQL we did not write ourselves, for the fingerprint
 * tests and benchmarks: every statement of the SQL files the Debian
 * postgresql package installs (/usr/share/postgresql/NN/ *.sql and
 * extension/ *.sql), plus the query bodies of their CREATE VIEW statements,
 * split with libpg_query's own scanner. And a mutator that makes
 * constant-varied variants of a statement without using scry's lexer (it
 * rewrites digit runs and quoted strings blindly), so the cache is tested
 * by inputs it did not choose.
 *
 * Header-only (static functions) because it is shared by tests/ and bench/.
 */
#ifndef SCRY_SQLCORPUS_H
#define SCRY_SQLCORPUS_H

#include <glob.h>
#include <pg_query.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sqlcorpus {
	char **stmts;  /* NUL-terminated copies */
	size_t *lens;
	size_t n, cap;
	size_t files;
	size_t views;  /* how many statements are extracted view bodies */
} sqlcorpus;

static inline void sqlcorpus_add(sqlcorpus *c, const char *s, size_t n)
{
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == ';'))
		n--;
	size_t k = 0;
	while (k < n && (s[k] == ' ' || s[k] == '\n' || s[k] == '\t'))
		k++;
	if (k == n)
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->stmts = realloc(c->stmts, c->cap * sizeof *c->stmts);
		c->lens = realloc(c->lens, c->cap * sizeof *c->lens);
		if (!c->stmts || !c->lens)
			abort();
	}
	char *p = malloc(n + 1);
	if (!p)
		abort();
	memcpy(p, s, n);
	p[n] = 0;
	c->stmts[c->n] = p;
	c->lens[c->n++] = n;
}

static inline char *sqlcorpus_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0, r;
	char *b = malloc(cap + 1);
	while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap && !(b = realloc(b, (cap *= 2) + 1)))
			break;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		*len = n;
	}
	return b;
}

/*
 * Loads the corpus. `dir` overrides the default glob root (the environment
 * variable SCRY_SQL_CORPUS_DIR does too). Returns the number of statements.
 */
static inline size_t sqlcorpus_load(sqlcorpus *c, const char *dir)
{
	memset(c, 0, sizeof *c);
	if (!dir)
		dir = getenv("SCRY_SQL_CORPUS_DIR");
	char pat[2][512];
	snprintf(pat[0], sizeof pat[0], "%s/*.sql", dir ? dir : "/usr/share/postgresql/[0-9]*");
	snprintf(pat[1], sizeof pat[1], "%s/extension/*.sql", dir ? dir : "/usr/share/postgresql/[0-9]*");
	glob_t g;
	memset(&g, 0, sizeof g);
	glob(pat[0], 0, NULL, &g);
	glob(pat[1], GLOB_APPEND, NULL, &g);
	/* The query of a view: what follows "AS" in CREATE ... VIEW ... AS query. */
	regex_t view_re, as_re;
	regcomp(&view_re, "^create[[:space:]]+(or[[:space:]]+replace[[:space:]]+)?((temp|temporary)[[:space:]]+)?"
	                  "(recursive[[:space:]]+)?view[[:space:]]",
	        REG_EXTENDED | REG_ICASE | REG_NOSUB);
	regcomp(&as_re, "[[:space:]]as[[:space:]]+(select|with|values)[[:space:]]", REG_EXTENDED | REG_ICASE);
	for (size_t fi = 0; fi < g.gl_pathc; fi++) {
		size_t len;
		char *text = sqlcorpus_read_file(g.gl_pathv[fi], &len);
		if (!text)
			continue;
		c->files++;
		PgQuerySplitResult r = pg_query_split_with_scanner(text);
		for (int i = 0; !r.error && i < r.n_stmts; i++) {
			size_t off = (size_t)r.stmts[i]->stmt_location;
			size_t n = r.stmts[i]->stmt_len ? (size_t)r.stmts[i]->stmt_len : len - off;
			/* Drop leading comment lines so the view test sees CREATE first. */
			const char *s = text + off;
			while (n) {
				if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
					s++, n--;
				} else if (n > 1 && s[0] == '-' && s[1] == '-') {
					while (n && *s != '\n')
						s++, n--;
				} else {
					break;
				}
			}
			sqlcorpus_add(c, s, n);
			if (c->n && c->lens[c->n - 1] && regexec(&view_re, c->stmts[c->n - 1], 0, NULL, 0) == 0) {
				regmatch_t m[2];
				const char *v = c->stmts[c->n - 1];
				if (regexec(&as_re, v, 2, m, 0) == 0) {
					size_t from = (size_t)m[1].rm_so;
					sqlcorpus_add(c, v + from, strlen(v) - from);
					c->views++;
				}
			}
		}
		pg_query_free_split_result(r);
		free(text);
	}
	regfree(&view_re);
	regfree(&as_re);
	globfree(&g);
	return c->n;
}

static inline void sqlcorpus_free(sqlcorpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->stmts[i]);
	free(c->stmts);
	free(c->lens);
	memset(c, 0, sizeof *c);
}

static inline unsigned sqlcorpus_rand(unsigned *state)
{
	*state = *state * 1103515245u + 12345u;
	return (*state >> 16) & 0x7fff;
}

static inline int sqlcorpus_identc(char ch)
{
	unsigned char u = (unsigned char)ch;
	return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ||
	       u == '$' || u >= 0x80;
}

/*
 * Writes a variant of s into a malloc'ed string: every run of digits that
 * does not continue an identifier, and the body of every '...' string that
 * does not follow an identifier character, is replaced (with probability
 * 3/4) by a value picked from pools that cross the int32 boundary, switch
 * between integer and float spellings, and hold '' escapes. Blind on
 * purpose: it also rewrites typmods, array bounds, float(p), strings inside
 * dollar quotes and comments.
 */
static inline char *sqlcorpus_mutate(const char *s, size_t n, unsigned seed, size_t *out_len)
{
	static const char *const nums[] = { "0", "1", "3", "5", "7", "10", "24", "25", "30", "53", "54",
		                            "100", "2147483647", "2147483648", "9223372036854775807",
		                            "99999999999999999999", "007", "1.5", "1e3", ".25", "5." };
	static const char *const strs[] = { "", "x", "it''s", "O''Reilly", "a b c", "2020-01-01",
		                            "\\", "\xce\xb4", "12", "''''", "--", "/*" };
	unsigned st = seed * 2654435761u + 1;
	size_t cap = n * 2 + 64, k = 0;
	char *o = malloc(cap);
#define SQLCORPUS_PUT(p, m)                                   \
	do {                                                  \
		size_t m_ = (m);                              \
		while (k + m_ + 1 > cap)                      \
			o = realloc(o, cap *= 2);             \
		memcpy(o + k, (p), m_);                       \
		k += m_;                                      \
	} while (0)
	size_t i = 0;
	while (i < n) {
		char ch = s[i];
		int prev_ident = i > 0 && sqlcorpus_identc(s[i - 1]);
		if (ch >= '0' && ch <= '9' && !prev_ident) {
			size_t j = i;
			while (j < n && s[j] >= '0' && s[j] <= '9')
				j++;
			if (sqlcorpus_rand(&st) % 4) {
				const char *v = nums[sqlcorpus_rand(&st) % (sizeof nums / sizeof nums[0])];
				SQLCORPUS_PUT(v, strlen(v));
			} else {
				SQLCORPUS_PUT(s + i, j - i);
			}
			i = j;
		} else if (ch == '\'' && !prev_ident) {
			size_t j = i + 1;
			while (j < n && !(s[j] == '\'' && (j + 1 >= n || s[j + 1] != '\'')))
				j += s[j] == '\'' ? 2 : 1;
			if (j >= n) { /* unterminated: copy the rest */
				SQLCORPUS_PUT(s + i, n - i);
				break;
			}
			SQLCORPUS_PUT("'", 1);
			if (sqlcorpus_rand(&st) % 4) {
				const char *v = strs[sqlcorpus_rand(&st) % (sizeof strs / sizeof strs[0])];
				SQLCORPUS_PUT(v, strlen(v));
			} else {
				SQLCORPUS_PUT(s + i + 1, j - i - 1);
			}
			SQLCORPUS_PUT("'", 1);
			i = j + 1;
		} else {
			SQLCORPUS_PUT(s + i, 1);
			i++;
		}
	}
#undef SQLCORPUS_PUT
	o[k] = 0;
	*out_len = k;
	return o;
}

#endif
