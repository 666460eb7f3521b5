/*
 * lib/util/text.h - text shaped for the reports (internal): one line of a
 * statement, and text escaped for XML and HTML. They write into a scry_buf
 * and inherit its sticky failure (lib/internal.h): the caller checks
 * scry__buf_failed() once at the end.
 */
#ifndef SCRY_UTIL_TEXT_H
#define SCRY_UTIL_TEXT_H

#include "internal.h"

/* scry__buf_one_line: control characters as \xNN and '|' as \| (a Markdown cell). */
#define SCRY__ONE_LINE_ESCAPE 1

/*
 * s (NULL: "") on one line: runs of whitespace become one space, none
 * leading or trailing; past `max` bytes (at a character's start) "..." ends
 * it.
 */
SCRY_HIDDEN void scry__buf_one_line(scry_buf *b, const char *s, size_t max, int flags);

/*
 * s (NULL: "") escaped for XML or HTML text and attributes: & < > " always;
 * ' as `apos` (NULL: kept). A control character other than those in `keep`
 * becomes `ctrl` (0: dropped).
 */
SCRY_HIDDEN void scry__buf_markup(scry_buf *b, const char *s, const char *apos, const char *keep, char ctrl);

#endif
