/*
 * lib/redact.c - secrets out of recorded statement texts: the literals of
 * CREATE/ALTER ROLE|USER|GROUP ... PASSWORD, CREATE/ALTER USER MAPPING ...
 * OPTIONS and CREATE/ALTER SUBSCRIPTION ... CONNECTION become '<redacted>'
 * before a capture records them (as pg_query_normalize_utility does for
 * its text). The statement stays valid SQL, so it still fingerprints.
 */
#include "internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Case-insensitive "does `hay` contain `needle`" (lower-case) over a
 * length-bounded text; cheap on the first byte, as it runs on every event. */
static bool contains_ci(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	char c0 = needle[0];
	for (size_t i = 0; i + k <= n; i++)
		if ((hay[i] | 0x20) == c0 && !strncasecmp(hay + i, needle, k))
			return true;
	return false;
}

static bool word_start(char ch) { return isalpha((unsigned char)ch) || ch == '_' || (unsigned char)ch >= 0x80; }
static bool word_char(char ch) { return word_start(ch) || isdigit((unsigned char)ch) || ch == '$'; }

/* Skips a literal, quoted identifier or comment starting at s[i]; returns
 * the index after it, or i when s[i] starts none of them. *lit says the
 * extent [lit_from, end) is a string literal (prefix E/U& not included). */
static size_t skip_token(const char *s, size_t n, size_t i, bool *lit)
{
	*lit = false;
	if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') {
		while (i < n && s[i] != '\n')
			i++;
		return i;
	}
	if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
		int depth = 1;
		i += 2;
		while (i < n && depth) {
			if (s[i] == '/' && i + 1 < n && s[i + 1] == '*')
				depth++, i += 2;
			else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/')
				depth--, i += 2;
			else
				i++;
		}
		return i;
	}
	if (s[i] == '"') {
		for (i++; i < n; i++)
			if (s[i] == '"') {
				if (i + 1 < n && s[i + 1] == '"')
					i++;
				else
					return i + 1;
			}
		return n;
	}
	if (s[i] == '\'') {
		bool esc = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') && (i < 2 || !word_char(s[i - 2]));
		*lit = true;
		for (i++; i < n; i++) {
			if (esc && s[i] == '\\')
				i++;
			else if (s[i] == '\'') {
				if (i + 1 < n && s[i + 1] == '\'')
					i++;
				else
					return i + 1;
			}
		}
		return n;
	}
	if (s[i] == '$' && (i == 0 || !word_char(s[i - 1]))) {
		size_t j = i + 1;
		while (j < n && word_char(s[j]) && s[j] != '$')
			j++;
		if (j < n && s[j] == '$' && (j == i + 1 || word_start(s[i + 1]))) {
			size_t tag = j - i + 1;
			for (size_t k = j + 1; k + tag <= n; k++)
				if (!memcmp(s + k, s + i, tag)) {
					*lit = true;
					return k + tag;
				}
			*lit = true;
			return n;
		}
	}
	return i;
}

/* The first three words of the statement, lower-cased, skipping comments. */
static void first_words(const char *s, size_t n, char w[3][16])
{
	memset(w, 0, 3 * 16);
	size_t i = 0;
	for (int k = 0; k < 3 && i < n;) {
		bool lit;
		size_t j = skip_token(s, n, i, &lit);
		if (j != i) {
			if (lit || s[i] == '"')
				return;
			i = j;
			continue;
		}
		if (isspace((unsigned char)s[i]) || s[i] == '(') {
			i++;
			continue;
		}
		if (!word_start(s[i]))
			return;
		size_t b = i;
		while (i < n && word_char(s[i]))
			i++;
		size_t len = i - b < 15 ? i - b : 15;
		for (size_t c = 0; c < len; c++)
			w[k][c] = (char)tolower((unsigned char)s[b + c]);
		k++;
	}
}

int scry__redact_secrets(const char *q, size_t n, char **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (!contains_ci(q, n, "password") && !contains_ci(q, n, "mapping") && !contains_ci(q, n, "subscription"))
		return 0;
	char w[3][16];
	first_words(q, n, w);
	if (strcmp(w[0], "create") && strcmp(w[0], "alter"))
		return 0;
	bool role = !strcmp(w[1], "role") || !strcmp(w[1], "user") || !strcmp(w[1], "group");
	bool mapping = !strcmp(w[1], "user") && !strcmp(w[2], "mapping");
	bool subscription = !strcmp(w[1], "subscription");
	if (!mapping && !subscription && !(role && contains_ci(q, n, "password")))
		return 0;
	scry_buf b = { 0 };
	size_t i = 0, copied = 0;
	int changed = 0;
	while (i < n) {
		bool lit;
		size_t j = skip_token(q, n, i, &lit);
		if (j == i) {
			i++;
			continue;
		}
		if (lit) {
			if (scry__buf_put(&b, q + copied, i - copied) || scry__buf_puts(&b, "'<redacted>'")) {
				scry_buf_dispose(&b);
				return SCRY_ENOMEM;
			}
			copied = j;
			changed = 1;
		}
		i = j;
	}
	if (!changed)
		return 0;
	if (scry__buf_put(&b, q + copied, n - copied)) {
		scry_buf_dispose(&b);
		return SCRY_ENOMEM;
	}
	*out = b.ptr;
	*outlen = b.size;
	return 1;
}
