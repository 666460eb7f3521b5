/*
 * lib/util/json.h - the library's one JSON writer (internal). It writes into
 * a scry_buf and inherits its sticky failure (lib/internal.h): calls return
 * nothing; the caller checks scry__buf_failed() once at the end. Commas and
 * nesting are tracked here, so callers never place a ',' themselves.
 */
#ifndef SCRY_UTIL_JSON_H
#define SCRY_UTIL_JSON_H

#include "internal.h"

#define SCRY__JSON_DEPTH 16

typedef struct scry__json {
	scry_buf *b;
	int depth;
	bool after_key;                  /* a key was written: its value needs no comma */
	bool nonempty[SCRY__JSON_DEPTH]; /* per open object/array: something written */
	bool is_array[SCRY__JSON_DEPTH]; /* per open container: an array, else an object */
} scry__json;

SCRY_HIDDEN void scry__json_init(scry__json *j, scry_buf *b);
/* Containers. Deeper than SCRY__JSON_DEPTH fails the buffer (SCRY_ELIMIT). */
SCRY_HIDDEN void scry__json_object(scry__json *j);
SCRY_HIDDEN void scry__json_array(scry__json *j);
SCRY_HIDDEN void scry__json_end(scry__json *j); /* closes the innermost one */
/* An object member's key; the next value is its value. */
SCRY_HIDDEN void scry__json_key(scry__json *j, const char *key);
/* Values. A NULL string is null; a non-finite number is null. */
SCRY_HIDDEN void scry__json_str(scry__json *j, const char *s);
SCRY_HIDDEN void scry__json_strn(scry__json *j, const char *s, size_t n);
SCRY_HIDDEN void scry__json_int(scry__json *j, int64_t v);
SCRY_HIDDEN void scry__json_uint(scry__json *j, uint64_t v);
/* `fmt` is a printf conversion for one double ("%.3f", "%.6g"). */
SCRY_HIDDEN void scry__json_num(scry__json *j, double v, const char *fmt);
SCRY_HIDDEN void scry__json_bool(scry__json *j, bool v);
SCRY_HIDDEN void scry__json_null(scry__json *j);
/* Encodes code point cp (< 0x110000) as UTF-8 into out; returns the bytes (1 to 4). */
SCRY_HIDDEN size_t scry__utf8_put(char *out, unsigned cp);
/* The length (2 to 4) of the valid UTF-8 sequence starting at c, a byte >= 0x80, within
 * `avail` bytes; 0 when it is not one (a stray byte, overlong, a surrogate, > U+10FFFF). */
SCRY_HIDDEN size_t scry__utf8_len(const unsigned char *c, size_t avail);

/* Key and value in one call. */
SCRY_HIDDEN void scry__json_kstr(scry__json *j, const char *key, const char *s);
SCRY_HIDDEN void scry__json_kint(scry__json *j, const char *key, int64_t v);
SCRY_HIDDEN void scry__json_knum(scry__json *j, const char *key, double v, const char *fmt);
SCRY_HIDDEN void scry__json_kbool(scry__json *j, const char *key, bool v);

#endif
