/*
 * tests/test_util.c - the shared internal pieces of lib/core.c and
 * lib/util/: the sticky buffer, the JSON writer, the hash maps, the report
 * text helpers.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pgtest.h"
#include "util/json.h"
#include "util/map.h"
#include "util/text.h"

static long alloc_left = -1; /* fail the n-th allocation; < 0: none */
static bool may_allocate(void) { return alloc_left < 0 || alloc_left-- != 0; }
static void *f_malloc(size_t n) { return may_allocate() ? malloc(n) : NULL; }
static void *f_realloc(void *p, size_t n) { return may_allocate() ? realloc(p, n) : NULL; }

START_TEST(test_buf_failure_is_sticky)
{
	scry_buf b = SCRY_BUF_INIT;
	ck_assert_int_eq(scry__buf_puts(&b, "abc"), 0);
	alloc_left = 0;
	scry_set_allocator(&(scry_allocator){ f_malloc, f_realloc, free });
	char big[200];
	memset(big, 'x', sizeof big);
	ck_assert_int_eq(scry__buf_put(&b, big, sizeof big), SCRY_ENOMEM);
	/* Memory is back, but the buffer stays failed: no truncated text. */
	ck_assert_int_eq(scry__buf_puts(&b, "d"), SCRY_ENOMEM);
	ck_assert_int_eq(scry__buf_printf(&b, "%d", 1), SCRY_ENOMEM);
	scry_set_allocator(NULL);
	alloc_left = -1;
	ck_assert(scry__buf_failed(&b));
	ck_assert_str_eq(b.ptr, "abc"); /* what was written stays (offsets into it stay valid) */
	ck_assert_uint_eq(b.size, 3);
	scry_buf other = SCRY_BUF_INIT;
	ck_assert_int_eq(scry__buf_puts(&other, "x"), 0);
	scry__buf_inherit(&other, &b);
	ck_assert(scry__buf_failed(&other));
	/* Clearing starts over; disposing a failed buffer is fine. */
	scry__buf_clear(&b);
	ck_assert(!scry__buf_failed(&b));
	ck_assert_int_eq(scry__buf_puts(&b, "ok"), 0);
	ck_assert_str_eq(b.ptr, "ok");
	scry_buf_dispose(&b);
	scry_buf_dispose(&other);
	ck_assert_ptr_null(other.ptr);
}
END_TEST

START_TEST(test_json_writer)
{
	scry_buf b = SCRY_BUF_INIT;
	scry__json j;
	scry__json_init(&j, &b);
	scry__json_object(&j);
	scry__json_kstr(&j, "s", "a\"b\n");
	scry__json_kstr(&j, "null", NULL);
	scry__json_kint(&j, "i", -3);
	scry__json_knum(&j, "x", 1.5, "%.3f");
	scry__json_knum(&j, "nan", NAN, "%.3f");
	scry__json_kbool(&j, "t", true);
	scry__json_key(&j, "a");
	scry__json_array(&j);
	scry__json_uint(&j, 1);
	scry__json_object(&j);
	scry__json_end(&j);
	scry__json_array(&j);
	scry__json_end(&j);
	scry__json_null(&j);
	scry__json_end(&j);
	scry__json_end(&j);
	ck_assert(!scry__buf_failed(&b));
	ck_assert_str_eq(b.ptr, "{\"s\":\"a\\\"b\\n\",\"null\":null,\"i\":-3,\"x\":1.500,\"nan\":null,\"t\":true,"
	                        "\"a\":[1,{},[],null]}");
	/* Misuse fails the buffer rather than writing invalid JSON. */
	scry__buf_clear(&b);
	scry__json_init(&j, &b);
	scry__json_end(&j);
	ck_assert(scry__buf_failed(&b));
	scry__buf_clear(&b);
	scry__json_init(&j, &b);
	for (int i = 0; i <= SCRY__JSON_DEPTH; i++)
		scry__json_array(&j);
	ck_assert(scry__buf_failed(&b));
	scry_buf_dispose(&b);
	char u[4];
	ck_assert_uint_eq(scry__utf8_put(u, 'A'), 1);
	ck_assert_int_eq(u[0], 'A');
	ck_assert_uint_eq(scry__utf8_put(u, 0xE9), 2);
	ck_assert(!memcmp(u, "\xC3\xA9", 2));
	ck_assert_uint_eq(scry__utf8_put(u, 0x20AC), 3);
	ck_assert(!memcmp(u, "\xE2\x82\xAC", 3));
	ck_assert_uint_eq(scry__utf8_put(u, 0x1F600), 4);
	ck_assert(!memcmp(u, "\xF0\x9F\x98\x80", 4));
}
END_TEST

/* JSON strings are valid UTF-8 whatever the text: a LATIN1 'é' (0xE9), a stray
 * continuation byte, an overlong '/', a surrogate, a cut sequence become U+FFFD. */
START_TEST(test_json_string_utf8)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"" },
		{ "caf\xE9", "\"caf\\ufffd\"" },
		{ "\x80x", "\"\\ufffdx\"" },
		{ "\xC0\xAF", "\"\\ufffd\\ufffd\"" },
		{ "\xED\xA0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },
		{ "\xE2\x82", "\"\\ufffd\\ufffd\"" },
		{ "tab\there\x01", "\"tab\\there\\u0001\"" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		scry_buf b = SCRY_BUF_INIT;
		ck_assert_int_eq(scry_json_string(cases[i].in, strlen(cases[i].in), &b), 0);
		ck_assert_msg(!strcmp(b.ptr, cases[i].out), "case %zu: %s", i, b.ptr);
		scry_buf_dispose(&b);
	}
	scry_buf b = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_json_string(NULL, 1, &b), SCRY_EINVAL);
	ck_assert_int_eq(scry_json_string(NULL, 0, &b), 0);
	ck_assert_str_eq(b.ptr, "\"\"");
	scry_buf_dispose(&b);
}
END_TEST

static int unrefs;
static void count_unref(void *v) { unrefs++; free(v); }

START_TEST(test_strmap)
{
	scry__strmap m = { .unref = count_unref };
	ck_assert_ptr_null(scry__strmap_get(&m, "a"));
	char name[32];
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "k%d", i);
		ck_assert_int_eq(scry__strmap_put(&m, name, strdup(name)), 0);
	}
	ck_assert_uint_eq(m.count, 100);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "k%d", i);
		ck_assert_str_eq(scry__strmap_get(&m, name), name);
	}
	ck_assert_int_eq(scry__strmap_put(&m, "k5", strdup("five")), 0); /* replaces */
	ck_assert_int_eq(unrefs, 1);
	ck_assert_str_eq(scry__strmap_get(&m, "k5"), "five");
	scry__strmap_del(&m, "k7");
	scry__strmap_del(&m, "absent");
	ck_assert_int_eq(unrefs, 2);
	ck_assert_ptr_null(scry__strmap_get(&m, "k7"));
	ck_assert_uint_eq(m.count, 99);
	scry__strmap_clear(&m);
	ck_assert_int_eq(unrefs, 101);
	ck_assert_uint_eq(m.count, 0);
	ck_assert_int_eq(scry__strmap_put(&m, "again", strdup("x")), 0);
	scry__strmap_free(&m);
	ck_assert_int_eq(unrefs, 102);
}
END_TEST

START_TEST(test_u64map)
{
	scry__u64map m = { 0 };
	for (uint32_t i = 1; i <= 5000; i++)
		ck_assert_int_eq(scry__u64map_put(&m, (uint64_t)i * 0x100000001ull, i), 0);
	for (uint32_t i = 1; i <= 5000; i++)
		ck_assert_uint_eq(scry__u64map_get(&m, (uint64_t)i * 0x100000001ull), i);
	ck_assert_uint_eq(scry__u64map_get(&m, 7), 0);
	ck_assert_int_eq(scry__u64map_put(&m, 0x100000001ull, 42), 0);
	ck_assert_uint_eq(scry__u64map_get(&m, 0x100000001ull), 42);
	scry__u64map_free(&m);
	ck_assert_uint_eq(scry__hash_bytes("", 0), 1469598103934665603ull);
	ck_assert_uint_ne(scry__hash_bytes("ab", 2), scry__hash_bytes("ba", 2));
}
END_TEST

/* What the reports print of a statement and of text in XML/HTML (lib/util/text.c). */
START_TEST(test_text)
{
	scry_buf b = SCRY_BUF_INIT;
	scry__buf_one_line(&b, "  SELECT\n\t a,   b\r\nFROM t  ", 100, 0);
	ck_assert_str_eq(b.ptr, "SELECT a, b FROM t");
	scry__buf_clear(&b);
	scry__buf_one_line(&b, "SELECT abcdef", 8, 0);
	ck_assert_str_eq(b.ptr, "SELECT a...");
	scry__buf_clear(&b);
	scry__buf_one_line(&b, "ab\xc3\xa9z", 3, 0); /* never cut inside a character */
	ck_assert_str_eq(b.ptr, "ab\xc3\xa9...");
	scry__buf_clear(&b);
	scry__buf_one_line(&b, NULL, 10, 0);
	ck_assert_uint_eq(b.size, 0);
	scry__buf_one_line(&b, "a|b\x01", 10, SCRY__ONE_LINE_ESCAPE);
	ck_assert_str_eq(b.ptr, "a\\|b\\x01");
	scry__buf_clear(&b);
	scry__buf_markup(&b, "<a href=\"x\">&'\x01\r\n", "&apos;", "\n\t\r", ' ');
	ck_assert_str_eq(b.ptr, "&lt;a href=&quot;x&quot;&gt;&amp;&apos; \r\n");
	scry__buf_clear(&b);
	scry__buf_markup(&b, "'\x01\r\t", "&#39;", "\n\t", 0);
	ck_assert_str_eq(b.ptr, "&#39;\t");
	scry__buf_clear(&b);
	scry__buf_markup(&b, "'", NULL, "\n\t", 0);
	ck_assert_str_eq(b.ptr, "'");
	scry_buf_dispose(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");
	tcase_add_test(tc, test_buf_failure_is_sticky);
	tcase_add_test(tc, test_json_writer);
	tcase_add_test(tc, test_json_string_utf8);
	tcase_add_test(tc, test_strmap);
	tcase_add_test(tc, test_u64map);
	tcase_add_test(tc, test_text);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
