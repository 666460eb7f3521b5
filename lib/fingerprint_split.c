/*
 * lib/fingerprint_split.c - a text's statements: a fast hand-written
 * splitter for the common case, and PostgreSQL's own scanner
 * (pg_query_split_with_scanner) when the fast one cannot be sure. See
 * include/scry/fingerprint.h.
 */
#include "internal.h"
#include "fingerprint_lex.h"

#include <pg_query.h>
#include <stdlib.h>

/* Byte offset of the 1-based character position PostgreSQL reports (UTF-8). */
static size_t byte_offset(const char *s, size_t len, int cursorpos)
{
	size_t i = 0;
	for (int chars = 1; i < len && chars < cursorpos; chars++) {
		i++;
		while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
			i++;
	}
	return i;
}

/* Appends the span [s, e) trimmed of whitespace, comments before and ';' after. */
static void add_span(const char *text, size_t s, size_t e, scry_statement_span *a, size_t *k)
{
	s = skip_space_comments(text, e, s);
	while (e > s && (is_space((unsigned char)text[e - 1]) || text[e - 1] == ';'))
		e--;
	if (e > s)
		a[(*k)++] = (scry_statement_span){ s, e - s };
}

/* Statement-starting and very common keywords: a word among them is a
 * keyword token for PostgreSQL's scanner. A statement whose words are all
 * outside this list sends the whole text to the scanner (it alone knows
 * every keyword). */
static bool common_keyword(const char *w, size_t n)
{
	static const char *const kw[] = {
		"select", "insert", "update", "delete", "with", "values", "table", "begin", "commit", "rollback",
		"start", "end", "set", "reset", "show", "create", "alter", "drop", "truncate", "grant", "revoke",
		"explain", "analyze", "analyse", "vacuum", "copy", "lock", "prepare", "execute", "deallocate",
		"declare", "fetch", "close", "move", "listen", "notify", "unlisten", "discard", "do", "call",
		"comment", "refresh", "cluster", "reindex", "checkpoint", "load", "savepoint", "release", "abort",
		"security", "import", "merge", "from", "where", "into", "as", "and", "or", "not", "null", "true",
		"false", "in", "is", "by", "order", "group", "limit", "offset", "on", "join", "left", "inner", "case",
		"when", "then", "else", "function", "index", "view", "transaction", "work", "returning", "default",
		"all", "distinct", "having", "union", "exists", "between", "like", "cast", "to", "for", "of",
		NULL
	};
	if (n < 2 || n > 12)
		return false;
	for (int i = 0; kw[i]; i++)
		if (word_eq(w, n, kw[i]))
			return true;
	return false;
}

/* Appends (offset, length) to the pair array, growing it; -1 when out of memory. */
static int push_span(size_t **a, size_t *cap, size_t *k, size_t off, size_t n)
{
	if (*k == *cap) {
		size_t *na = scry__realloc(*a, *cap * 4 * sizeof **a);
		if (!na)
			return -1;
		*a = na;
		*cap *= 2;
	}
	(*a)[2 * *k] = off;
	(*a)[2 * *k + 1] = n;
	(*k)++;
	return 0;
}

/* The '...' string at s[i] (E'...', the E a token of its own, has backslash escapes): *end past it;
 * false when unterminated or holding a NUL byte. */
static inline bool scan_string(const char *s, size_t len, size_t i, size_t *end)
{
	bool esc = i > 0 && (s[i - 1] == 'e' || s[i - 1] == 'E') && (i < 2 || !is_ident_char((unsigned char)s[i - 2]));
	size_t j = i + 1;
	for (;;) {
		if (j >= len || s[j] == 0)
			return false;
		if (esc && s[j] == '\\') {
			j += 2;
			continue;
		}
		if (s[j] == '\'') {
			if (j + 1 < len && s[j + 1] == '\'') {
				j += 2;
				continue;
			}
			break;
		}
		j++;
	}
	*end = j + 1;
	return true;
}

/* The '$' at s[i] that is not a $1: a $tag$ ... $tag$ string (*end past it), or a lone '$' (*end = i + 1);
 * false when the string is unterminated or holds a NUL byte. */
static inline bool scan_dollar(const char *s, size_t len, size_t i, size_t *end)
{
	size_t j = i + 1;
	if (j < len && is_ident_start((unsigned char)s[j]))
		while (j < len && is_ident_start((unsigned char)s[j]) | is_digit((unsigned char)s[j]))
			j++;
	if (j >= len || s[j] != '$') {
		*end = i + 1;
		return true;
	}
	size_t dl = j + 1 - i, e = j + 1;
	for (;;) { /* the first "$tag$" after the opening one */
		const char *d = memchr(s + e, '$', len - e);
		if (!d)
			return false;
		e = (size_t)(d - s);
		if (len - e >= dl && !memcmp(s + e, s + i, dl))
			break;
		e++;
	}
	if (memchr(s + i, 0, e - i))
		return false;
	*end = e + dl;
	return true;
}

/*
 * Statement boundaries as pg_query_split_with_scanner() finds them, without
 * running PostgreSQL's scanner: the same tokens that matter (strings, E''
 * strings, quoted identifiers, dollar quotes, comments, parentheses, ';',
 * keywords) are recognised by hand. A ';' outside parentheses ends a
 * statement when a keyword came since the last one, else it starts the next
 * one (an empty or keyword-less piece is dropped, as the scanner's split
 * drops it). Returns 1 when it cannot be sure (an unterminated quote or
 * comment, a NUL byte, words it does not know to be keywords): then the
 * scanner decides. Fills a[] with (offset, length) pairs, length 0 = to the
 * end, like the scanner's result.
 */
static int fast_split(const char *s, size_t len, size_t **out, size_t *nout)
{
	size_t cap = 16, k = 0;
	size_t *a = scry__malloc(cap * 2 * sizeof *a);
	if (!a)
		return -1;
	size_t i = 0, start = 0, parens = 0;
	bool keyword = false, unknown_words = false;
#define FAIL_SPLIT() do { scry__free(a); return 1; } while (0)
	while (i <= len) {
		unsigned char c = i < len ? (unsigned char)s[i] : 0;
		if (i == len || (c == ';' && parens == 0)) {
			if (keyword && parens == 0) {
				if (push_span(&a, &cap, &k, start, i - start)) {
					scry__free(a);
					return -1;
				}
			} else if (unknown_words && parens == 0) {
				FAIL_SPLIT(); /* maybe a keyword the list lacks: the scanner knows */
			}
			if (i == len)
				break;
			start = i + 1;
			keyword = unknown_words = false;
			i++;
			continue;
		}
		if (c == 0)
			FAIL_SPLIT();
		if (is_space(c)) {
			i++;
		} else if (c == '-' && i + 1 < len && s[i + 1] == '-') {
			while (i < len && s[i] != '\n' && s[i] != '\r')
				i++;
		} else if (c == '/' && i + 1 < len && s[i + 1] == '*') {
			bool ok;
			i = skip_comment(s, len, i, &ok);
			if (!ok)
				FAIL_SPLIT();
		} else if (c == '\'') {
			if (!scan_string(s, len, i, &i))
				FAIL_SPLIT();
		} else if (c == '"') {
			size_t j;
			if (!scan_quoted(s, len, i, &j))
				FAIL_SPLIT();
			i = j;
		} else if (c == '$') {
			if (i + 1 < len && is_digit((unsigned char)s[i + 1])) {
				i++; /* $1 */
				continue;
			}
			if (!scan_dollar(s, len, i, &i))
				FAIL_SPLIT();
		} else if (is_ident_start(c)) {
			size_t j = i;
			while (j < len && is_ident_char((unsigned char)s[j]))
				j++;
			/* Once the statement has a keyword its other words do not matter (an unknown
			 * word only sends a keyword-less piece to the scanner): no lookup for them. */
			if (!keyword) {
				if (common_keyword(s + i, j - i))
					keyword = true;
				else if (!(j - i == 1 && j < len && s[j] == '\'')) /* not the E of E'' */
					unknown_words = true;
			}
			i = j;
		} else if (is_digit(c)) {
			/* Numbers, with what follows a digit run in one token (1e5, 0x1F, 1_000): no quotes. */
			while (i < len && (is_ident_char((unsigned char)s[i]) || s[i] == '.'))
				i++;
		} else {
			if (c == '(')
				parens++;
			else if (c == ')')
				parens--; /* wraps below zero, as the scanner's split does */
			i++;
		}
	}
#undef FAIL_SPLIT
	*out = a;
	*nout = k;
	return 0;
}

int scry_fingerprint_split(const char *sql, size_t len, scry_statement_span **spans,
                           size_t *count, scry_error *err)
{
	if (!sql || !spans || !count)
		return scry__fail(err, SCRY_EINVAL, "scry_fingerprint_split: arguments are required");
	*spans = NULL;
	*count = 0;
	size_t *fa = NULL, fn = 0;
	int f = fast_split(sql, len, &fa, &fn);
	if (f < 0)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (f == 0) {
		scry_statement_span *a = scry__calloc(fn + 1, sizeof *a);
		if (!a) {
			scry__free(fa);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		size_t k = 0;
		for (size_t i = 0; i < fn; i++)
			add_span(sql, fa[2 * i], fa[2 * i] + fa[2 * i + 1], a, &k);
		scry__free(fa);
		*spans = a;
		*count = k;
		return 0;
	}
	return scry__split_scanner(sql, len, spans, count, err);
}

int scry__split_scanner(const char *sql, size_t len, scry_statement_span **spans, size_t *count,
                        scry_error *err)
{
	if (!sql || !spans || !count)
		return scry__fail(err, SCRY_EINVAL, "scry_fingerprint_split: arguments are required");
	*spans = NULL;
	*count = 0;
	/* The scanner cannot see past a NUL byte: split what precedes it. */
	const char *nul = memchr(sql, 0, len);
	size_t scan_len = nul ? (size_t)(nul - sql) : len;
	char *copy = scry__strndup(sql, scan_len);
	if (!copy)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	/* Where the text that cannot be split starts (scan_len when none). */
	size_t tail = scan_len;
	PgQuerySplitResult r = pg_query_split_with_scanner(copy);
	if (r.error) {
		/* An unterminated quote or comment: split the text before it; the
		 * statement holding it runs to the end and will fail to parse, with
		 * its position, while the statements before it are kept. */
		tail = byte_offset(copy, scan_len, r.error->cursorpos);
		pg_query_free_split_result(r);
		copy[tail] = 0;
		r = pg_query_split_with_scanner(copy);
		if (r.error)
			tail = 0;
	}
	/* A last piece that no ';' ended continues into the rest. */
	int nstmts = r.error ? 0 : r.n_stmts; /* r.n_stmts stays whole: it frees r */
	if (!r.error && tail < len && nstmts > 0) {
		size_t end = (size_t)r.stmts[nstmts - 1]->stmt_location + (size_t)r.stmts[nstmts - 1]->stmt_len;
		if (r.stmts[nstmts - 1]->stmt_len == 0 || end >= tail || copy[end] != ';')
			tail = (size_t)r.stmts[--nstmts]->stmt_location;
	}
	int rc = 0;
	scry_statement_span *a = scry__calloc((size_t)nstmts + 1, sizeof *a);
	if (!a) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	} else {
		size_t k = 0;
		for (int i = 0; i < nstmts; i++) {
			size_t off = (size_t)r.stmts[i]->stmt_location;
			size_t n = (size_t)r.stmts[i]->stmt_len;
			if (n == 0) /* the last statement runs to the end */
				n = tail - off;
			add_span(copy, off, off + n, a, &k);
		}
		if (tail < len) /* the rest, NUL bytes included, as one statement */
			add_span(sql, tail, len, a, &k);
		*spans = a;
		*count = k;
	}
	pg_query_free_split_result(r);
	scry__free(copy);
	return rc;
}

void scry_statement_spans_free(scry_statement_span *spans) { scry__free(spans); }
