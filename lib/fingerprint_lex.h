/*
 * lib/fingerprint_lex.h - the SQL lexing primitives the literal-lifting
 * lexer (lib/fingerprint.c) and the statement splitter
 * (lib/fingerprint_split.c) share. Static inline: both are hot paths and
 * call these per byte or per token. Private.
 */
#ifndef SCRY_FINGERPRINT_LEX_H
#define SCRY_FINGERPRINT_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static inline bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static inline bool is_ident_char(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline bool word_eq(const char *p, size_t n, const char *kw)
{
	/* kw is lower case: its first letter rules most words out before strlen. */
	if (!n || ((unsigned char)p[0] | 0x20) != (unsigned char)kw[0])
		return false;
	size_t k = strlen(kw);
	if (n != k)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != kw[i])
			return false;
	}
	return true;
}

/* Skips the one comment (-- or a nested block comment) starting at i; *ok is false
 * when a block comment is not terminated. */
static inline size_t skip_comment(const char *s, size_t len, size_t i, bool *ok)
{
	*ok = true;
	if (s[i] == '-') {
		while (i < len && s[i] != '\n')
			i++;
		return i;
	}
	int depth = 0;
	while (i < len) {
		if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
			depth++;
			i += 2;
		} else if (i + 1 < len && s[i] == '*' && s[i + 1] == '/') {
			i += 2;
			if (--depth == 0)
				return i;
		} else {
			i++;
		}
	}
	*ok = false;
	return len;
}

static inline bool comment_starts(const char *s, size_t len, size_t i)
{
	return i + 1 < len && ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*'));
}

/* Skips whitespace and comments from i; returns the new index, or len. */
static inline size_t skip_space_comments(const char *s, size_t len, size_t i)
{
	for (;;) {
		while (i < len && is_space((unsigned char)s[i]))
			i++;
		if (!comment_starts(s, len, i))
			return i;
		bool ok;
		i = skip_comment(s, len, i, &ok);
	}
}

/*
 * Scans a '...' string or "..." identifier starting at s[start] (the quote),
 * where a doubled quote stands for itself. Sets *end past the closing quote.
 * False when unterminated or holding a marker byte.
 */
static inline bool scan_quoted(const char *s, size_t len, size_t start, size_t *end)
{
	char q = s[start];
	for (size_t j = start + 1; j < len; j++) {
		if ((unsigned char)s[j] < 0x04)
			return false;
		if (s[j] != q)
			continue;
		if (j + 1 < len && s[j + 1] == q) {
			j++;
			continue;
		}
		*end = j + 1;
		return true;
	}
	return false;
}

#endif
