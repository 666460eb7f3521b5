/*
 * tests/test_report.c - the four renderings of a verdict agree, parse, and
 * escape what queries can contain.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"

static char path[256];

/* A store where "A" and "B" differ: one 3x pattern, one new error, one only-in-candidate, one unchanged. */
static scry_store *make_store(void)
{
	snprintf(path, sizeof path, "/tmp/scry-test-report-%d.db", (int)getpid());
	unlink(path);
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert(scry_store_open(&s, path, NULL, &err) == 0);
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", "app", "[local]", 1700000000000000 };
	int64_t sid;
	ck_assert(scry_store_session_add(s, &si, &sid, &err) == 0);
	static const char *const q[] = {
		"SELECT a FROM \"we|ird<&>\" WHERE b = 'x`y' -- tab\there\n AND c = 1",
		"SELECT pad FROM orders WHERE id = 1",
		"SELECT * FROM orders WHERE region = 'eu'",
		"SELECT 1 AS \"été ✓\"",
	};
	for (int i = 0; i < 40; i++) {
		scry_event ev;
		memset(&ev, 0, sizeof ev);
		ev.session_id = sid;
		ev.start_us = si.started_us + i;
		ev.duration_us = 500;
		ev.query = q[i % 4];
		ev.rows = 1;
		ck_assert_msg(scry_store_append(s, &ev, 1, sizeof(scry_event), &err) == 0, "%s", err.message);
	}
	int64_t ra, rb;
	ck_assert(scry_store_run_begin(s, "base <1>", "a", NULL, &ra, &err) == 0);
	ck_assert(scry_store_run_begin(s, "cand \"2\"", "b", NULL, &rb, &err) == 0);
	for (int i = 0; i < 40; i++) {
		int p = i % 4;
		int64_t lat = 2000 + (i * 37) % 400;
		scry_sample a = { i + 1, 0, lat, 1, "" }, b = { i + 1, 0, lat, 1, "" };
		if (p == 0)
			b.latency_us = lat * 3;
		if (p == 1)
			snprintf(b.sqlstate, 6, "42703");
		if (p == 2)
			snprintf(a.sqlstate, 6, "42703");
		ck_assert(scry_store_samples_append(s, ra, &a, 1, sizeof(scry_sample), &err) == 0);
		ck_assert(scry_store_samples_append(s, rb, &b, 1, sizeof(scry_sample), &err) == 0);
	}
	return s;
}

static char *render(const scry_verdict *v, scry_report_format f)
{
	scry_buf b = SCRY_BUF_INIT;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_report_render(v, f, &b, &err) == 0, "%s", err.message);
	char *s = strdup(b.ptr);
	scry_buf_dispose(&b);
	return s;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static int check_with_python(const char *text, const char *script)
{
	char file[300];
	snprintf(file, sizeof file, "/tmp/scry-test-report-%d.out", (int)getpid());
	FILE *f = fopen(file, "w");
	ck_assert(f);
	fputs(text, f);
	fclose(f);
	int rc = pgtest_system("/usr/bin/python3 -c '%s' '%s'", script, file);
	unlink(file);
	return rc;
}

START_TEST(test_formats_agree)
{
	scry_store *s = make_store();
	scry_verdict *v;
	scry_error err = SCRY_ERROR_INIT;
	scry_verdict_options vo;
	scry_verdict_options_init(&vo);
	vo.min_samples = 5; /* 10 pairs per pattern here */
	ck_assert_msg(scry_verdict_compute(&v, s, "base <1>", "cand \"2\"", &vo, &err) == 0, "%s", err.message);
	ck_assert_uint_eq(scry_verdict_count(v), 4);
	ck_assert_uint_eq(scry_verdict_failures(v), 2); /* regressed + new-error */

	char *text = render(v, SCRY_REPORT_TEXT);
	ck_assert(strstr(text, "FAIL: 2 of 4 patterns fail the gate"));
	ck_assert_int_eq(count(text, "\nFAIL "), 2);
	ck_assert(strstr(text, "regressed") && strstr(text, "new-error") && strstr(text, "only-in-candidate"));
	ck_assert(!strstr(text, "\t")); /* queries are put on one line */

	char *json = render(v, SCRY_REPORT_JSON);
	ck_assert_int_eq(check_with_python(json,
	                                   "import json,sys; d=json.load(open(sys.argv[1])); s=d[\"summary\"]; "
	                                   "assert s[\"failures\"]==2 and s[\"patterns\"]==4 and s[\"verdict\"]==\"fail\"; "
	                                   "assert s[\"regressed\"]==1 and s[\"new_error\"]==1 and s[\"only_in_candidate\"]==1; "
	                                   "p=d[\"patterns\"]; assert [x[\"class\"] for x in p][:2]==[\"new-error\",\"regressed\"] or "
	                                   "[x[\"class\"] for x in p][:2]==[\"regressed\",\"new-error\"]; "
	                                   "r=[x for x in p if x[\"class\"]==\"regressed\"][0]; "
	                                   "assert 2.5 < r[\"ratio\"] < 3.5 and r[\"ratio_low\"] > 1.5; "
	                                   "assert \"we|ird<&>\" in r[\"query\"] and len(r[\"fingerprint\"])==16; "
	                                   "o=[x for x in p if x[\"class\"]==\"only-in-candidate\"][0]; "
	                                   "assert o[\"baseline_p50_ms\"] is None and o[\"ratio\"] is None and "
	                                   "o[\"baseline_sqlstate\"]==\"42703\"; "
	                                   "assert d[\"baseline\"][\"label\"]==\"base <1>\"; "
	                                   "assert any(\"été ✓\" in x[\"query\"] for x in p)"),
	                 0);

	char *md = render(v, SCRY_REPORT_MARKDOWN);
	ck_assert_int_eq(count(md, "| **FAIL** |"), 2);
	ck_assert(strstr(md, "we\\|ird<&>")); /* a pipe cannot end the cell */
	ck_assert(!strstr(md, "x`y"));         /* a backtick cannot end the code span */
	ck_assert(strstr(md, "### scry: FAIL"));

	char *xml = render(v, SCRY_REPORT_JUNIT);
	ck_assert_int_eq(check_with_python(xml, "import xml.dom.minidom,sys; d=xml.dom.minidom.parse(sys.argv[1]); "
	                                        "assert len(d.getElementsByTagName(\"testcase\"))==4; "
	                                        "assert len(d.getElementsByTagName(\"failure\"))==2; "
	                                        "t=d.getElementsByTagName(\"testsuite\")[0]; "
	                                        "assert t.getAttribute(\"failures\")==\"2\"; "
	                                        "assert \"cand \\\"2\\\"\" in t.getAttribute(\"name\")"),
	                 0);
	free(text);
	free(json);
	free(md);
	free(xml);
	scry_verdict_free(v);

	/* Nothing fails: every format says so. */
	ck_assert(scry_verdict_compute(&v, s, "base <1>", "base <1>", NULL, &err) == 0);
	text = render(v, SCRY_REPORT_TEXT);
	json = render(v, SCRY_REPORT_JSON);
	md = render(v, SCRY_REPORT_MARKDOWN);
	xml = render(v, SCRY_REPORT_JUNIT);
	ck_assert(strstr(text, "PASS: 0 of"));
	ck_assert(strstr(json, "\"verdict\":\"pass\""));
	ck_assert(strstr(md, "### scry: PASS"));
	ck_assert(!strstr(xml, "<failure"));
	free(text);
	free(json);
	free(md);
	free(xml);
	scry_verdict_free(v);
	scry_store_free(s);
	char side[300];
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
	unlink(path);
}
END_TEST

/* An allocator that fails the n-th allocation only, the others succeed (n < 0: none fails). */
static long alloc_left = -1;
static bool may_allocate(void)
{
	if (alloc_left < 0)
		return true;
	return alloc_left-- != 0;
}
static void *fail_malloc(size_t n) { return may_allocate() ? malloc(n) : NULL; }
static void *fail_realloc(void *p, size_t n) { return may_allocate() ? realloc(p, n) : NULL; }

/* Out of memory anywhere in a rendering is SCRY_ENOMEM, never a truncated report returned as a success. */
START_TEST(test_oom_is_never_truncated_success)
{
	scry_store *s = make_store();
	scry_verdict *v;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_verdict_compute(&v, s, "base <1>", "cand \"2\"", NULL, &err) == 0, "%s", err.message);
	for (int f = SCRY_REPORT_TEXT; f <= SCRY_REPORT_JUNIT; f++) {
		char *want = render(v, (scry_report_format)f);
		int failures = 0;
		for (long n = 0; n < 400; n++) {
			scry_buf b = SCRY_BUF_INIT;
			alloc_left = n;
			scry_set_allocator(&(scry_allocator){ fail_malloc, fail_realloc, free });
			int rc = scry_report_render(v, (scry_report_format)f, &b, &err);
			scry_set_allocator(NULL);
			alloc_left = -1;
			if (rc == 0)
				ck_assert_msg(b.ptr && !strcmp(b.ptr, want), "format %d, allocation %ld: a different text", f, n);
			else {
				ck_assert_int_eq(rc, SCRY_ENOMEM);
				ck_assert_uint_eq(b.size, 0);
				failures++;
			}
			scry_buf_dispose(&b);
			if (rc == 0)
				break;
		}
		ck_assert_int_gt(failures, 0); /* the failing allocator was reached */
		free(want);
	}
	scry_verdict_free(v);
	scry_store_free(s);
	unlink(path);
}
END_TEST

START_TEST(test_format_parse)
{
	scry_report_format f;
	ck_assert(scry_report_format_parse("json", &f) == 0 && f == SCRY_REPORT_JSON);
	ck_assert(scry_report_format_parse("junit", &f) == 0 && f == SCRY_REPORT_JUNIT);
	ck_assert(scry_report_format_parse("markdown", &f) == 0 && f == SCRY_REPORT_MARKDOWN);
	ck_assert(scry_report_format_parse("text", &f) == 0 && f == SCRY_REPORT_TEXT);
	ck_assert(scry_report_format_parse("html", &f) == 0 && f == SCRY_REPORT_HTML);
	ck_assert_int_eq(scry_report_format_parse("htm", &f), SCRY_EINVAL);
	ck_assert_int_eq(scry_report_format_parse(NULL, &f), SCRY_EINVAL);
	scry_buf b = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_report_render(NULL, SCRY_REPORT_TEXT, &b, NULL), SCRY_EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("report");
	TCase *tc = tcase_create("render");
	tcase_add_test(tc, test_formats_agree);
	tcase_add_test(tc, test_format_parse);
	tcase_add_test(tc, test_oom_is_never_truncated_success);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
