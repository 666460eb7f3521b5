/*
 * lib/util/text.c - text shaped for the reports: one line of a statement,
 * and text escaped for XML and HTML (lib/util/text.h).
 */
#include "util/text.h"

#include <string.h>

void scry__buf_one_line(scry_buf *b, const char *s, size_t max, int flags)
{
	size_t n = 0;
	bool space = false;
	for (const char *p = s ? s : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
			space = n > 0;
			continue;
		}
		if (n >= max && (c & 0xC0) != 0x80) {
			scry__buf_puts(b, "...");
			return;
		}
		if (space) {
			scry__buf_puts(b, " ");
			n++;
			space = false;
		}
		if ((flags & SCRY__ONE_LINE_ESCAPE) && (c < 0x20 || c == 0x7f))
			scry__buf_printf(b, "\\x%02x", c);
		else if ((flags & SCRY__ONE_LINE_ESCAPE) && c == '|')
			scry__buf_puts(b, "\\|");
		else
			scry__buf_put(b, p, 1);
		n++;
	}
}

void scry__buf_markup(scry_buf *b, const char *s, const char *apos, const char *keep, char ctrl)
{
	for (const char *p = s ? s : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '&')
			scry__buf_puts(b, "&amp;");
		else if (c == '<')
			scry__buf_puts(b, "&lt;");
		else if (c == '>')
			scry__buf_puts(b, "&gt;");
		else if (c == '"')
			scry__buf_puts(b, "&quot;");
		else if (c == '\'' && apos)
			scry__buf_puts(b, apos);
		else if (c >= 0x20 || strchr(keep, (char)c))
			scry__buf_put(b, p, 1);
		else if (ctrl)
			scry__buf_put(b, &ctrl, 1);
	}
}
