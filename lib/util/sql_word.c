/*
 * lib/util/sql_word.c - the next keyword of a statement text, for the
 * modules that classify statements by their first words (replay, filter).
 * Declared at the end of lib/internal.h.
 */
#include "internal.h"

#include <ctype.h>

const char *scry__sql_next_word(const char *p, char *word, size_t n)
{
	for (;;) {
		while (*p && (isspace((unsigned char)*p) || *p == '('))
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");
			p = e ? e + 2 : p + strlen(p);
		} else {
			break;
		}
	}
	size_t i = 0;
	while (*p && (isalpha((unsigned char)*p) || *p == '_')) {
		if (i + 1 < n)
			word[i++] = (char)toupper((unsigned char)*p);
		p++;
	}
	word[i] = 0;
	return p;
}
