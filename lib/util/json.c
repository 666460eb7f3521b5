/*
 * lib/util/json.c - the library's one JSON writer (see json.h).
 */
#include "util/json.h"

#include <inttypes.h>
#include <math.h>

void scry__json_init(scry__json *j, scry_buf *b)
{
	memset(j, 0, sizeof *j);
	j->b = b;
}

/* Before a value (or a key): the comma that separates it from the previous one. */
static void sep(scry__json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth > 0) {
		if (j->nonempty[j->depth - 1])
			scry__buf_put(j->b, ",", 1);
		j->nonempty[j->depth - 1] = true;
	}
}

static void open_container(scry__json *j, bool array)
{
	sep(j);
	if (j->depth >= SCRY__JSON_DEPTH) {
		scry__buf_fail(j->b, SCRY_ELIMIT);
		return;
	}
	j->nonempty[j->depth] = false;
	j->is_array[j->depth++] = array;
	scry__buf_put(j->b, array ? "[" : "{", 1);
}

void scry__json_object(scry__json *j) { open_container(j, false); }
void scry__json_array(scry__json *j) { open_container(j, true); }

void scry__json_end(scry__json *j)
{
	if (j->depth <= 0 || j->after_key) {
		scry__buf_fail(j->b, SCRY_EINVAL); /* a caller bug: nothing open, or a key without value */
		return;
	}
	j->depth--;
	scry__buf_put(j->b, j->is_array[j->depth] ? "]" : "}", 1);
}

void scry__json_key(scry__json *j, const char *key)
{
	sep(j);
	scry__buf_json_string(j->b, key, strlen(key));
	scry__buf_put(j->b, ":", 1);
	j->after_key = true;
}

void scry__json_strn(scry__json *j, const char *s, size_t n)
{
	sep(j);
	scry__buf_json_string(j->b, s, n);
}

void scry__json_str(scry__json *j, const char *s)
{
	if (!s)
		scry__json_null(j);
	else
		scry__json_strn(j, s, strlen(s));
}

void scry__json_int(scry__json *j, int64_t v)
{
	sep(j);
	scry__buf_printf(j->b, "%" PRId64, v);
}

void scry__json_uint(scry__json *j, uint64_t v)
{
	sep(j);
	scry__buf_printf(j->b, "%" PRIu64, v);
}

void scry__json_num(scry__json *j, double v, const char *fmt)
{
	if (!isfinite(v)) {
		scry__json_null(j);
		return;
	}
	sep(j);
	scry__buf_printf(j->b, fmt, v);
}

void scry__json_bool(scry__json *j, bool v)
{
	sep(j);
	scry__buf_puts(j->b, v ? "true" : "false");
}

void scry__json_null(scry__json *j)
{
	sep(j);
	scry__buf_puts(j->b, "null");
}

void scry__json_kstr(scry__json *j, const char *key, const char *s)
{
	scry__json_key(j, key);
	scry__json_str(j, s);
}

void scry__json_kint(scry__json *j, const char *key, int64_t v)
{
	scry__json_key(j, key);
	scry__json_int(j, v);
}

void scry__json_knum(scry__json *j, const char *key, double v, const char *fmt)
{
	scry__json_key(j, key);
	scry__json_num(j, v, fmt);
}

void scry__json_kbool(scry__json *j, const char *key, bool v)
{
	scry__json_key(j, key);
	scry__json_bool(j, v);
}

size_t scry__utf8_len(const unsigned char *c, size_t avail)
{
	unsigned char b = c[0];
	size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((c[i] & 0xC0) != 0x80)
			return 0;
	if ((b == 0xE0 && c[1] < 0xA0) || (b == 0xED && c[1] >= 0xA0) || (b == 0xF0 && c[1] < 0x90) ||
	    (b == 0xF4 && c[1] >= 0x90))
		return 0;
	return n;
}

size_t scry__utf8_put(char *w, unsigned cp)
{
	if (cp < 0x80) {
		w[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		w[0] = (char)(0xC0 | (cp >> 6));
		w[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		w[0] = (char)(0xE0 | (cp >> 12));
		w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		w[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	w[0] = (char)(0xF0 | (cp >> 18));
	w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	w[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}
