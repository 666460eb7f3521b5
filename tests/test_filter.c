/*
 * tests/test_filter.c - noise control (scry/filter.h): session setup is not
 * judged by default and is listed in every report's footer; --include and
 * --exclude globs; the same through scry_settings; and the HTML report of
 * such a verdict (self-contained, escaped, with the samples' histogram).
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"

static char path[256];

static const char *const queries[] = {
	"SELECT * FROM \"ord<ers>\" WHERE note = 'slow'", /* 3x slower on the candidate */
	"SELECT id FROM orders WHERE id = 1",              /* unchanged */
	"SET search_path = app, public",
	"BEGIN",
	"SHOW standard_conforming_strings",
	"COMMIT",
};
#define NQ 6

static scry_store *make_store(void)
{
	snprintf(path, sizeof path, "/tmp/scry-test-filter-%d.db", (int)getpid());
	unlink(path);
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert(scry_store_open(&s, path, NULL, &err) == 0);
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", "app", "[local]", 1700000000000000 };
	int64_t sid;
	ck_assert(scry_store_session_add(s, &si, &sid, &err) == 0);
	for (int i = 0; i < 10 * NQ; i++) {
		scry_event ev;
		memset(&ev, 0, sizeof ev);
		ev.session_id = sid;
		ev.start_us = si.started_us + i;
		ev.duration_us = 500;
		ev.query = queries[i % NQ];
		ev.rows = 1;
		ck_assert_msg(scry_store_append(s, &ev, 1, sizeof(scry_event), &err) == 0, "%s", err.message);
	}
	int64_t ra, rb;
	ck_assert(scry_store_run_begin(s, "a", "a", NULL, &ra, &err) == 0);
	ck_assert(scry_store_run_begin(s, "b", "b", NULL, &rb, &err) == 0);
	for (int i = 0; i < 10 * NQ; i++) {
		int64_t lat = 2000 + (i * 37) % 400;
		/* Session setup is 3x slower too. */
		int slow = i % NQ == 0 || i % NQ >= 2;
		scry_sample a = { i + 1, 0, lat, 1, "" }, b = { i + 1, 0, slow ? lat * 3 : lat, 1, "" };
		ck_assert(scry_store_samples_append(s, ra, &a, 1, sizeof(scry_sample), &err) == 0);
		ck_assert(scry_store_samples_append(s, rb, &b, 1, sizeof(scry_sample), &err) == 0);
	}
	return s;
}

static void remove_store(void)
{
	char side[300];
	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
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

static scry_verdict *compute(scry_store *s, const scry_pattern_filter *f)
{
	scry_verdict_options vo = SCRY_VERDICT_OPTIONS_INIT;
	vo.min_samples = 5; /* the store holds 10 pairs per pattern */
	vo.filter = f;
	scry_verdict *v = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_verdict_compute(&v, s, "a", "b", &vo, &err) == 0, "%s", err.message);
	return v;
}

START_TEST(session_setup_words)
{
	static const char *const yes[] = { "SET x = 1", "  /* c */ set local work_mem = '1MB'", "(SHOW x)", "BEGIN",
	                                   "begin isolation level serializable", "START TRANSACTION",
	                                   "start\n transaction read only", "COMMIT", "END", "ROLLBACK TO SAVEPOINT s",
	                                   "ABORT", "RESET ALL", "DISCARD ALL", "-- driver\nSAVEPOINT s", "RELEASE s" };
	static const char *const no[] = { "SELECT 1", "UPDATE t SET a = 1", "SETTLE", "START", "START x",
	                                  "select set_config('a', 'b', false)", "", "RESETS", "WITH x AS (SELECT 1) SELECT 2" };
	for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
		ck_assert_msg(scry_is_session_setup(yes[i]), "%s", yes[i]);
	for (size_t i = 0; i < sizeof no / sizeof *no; i++)
		ck_assert_msg(!scry_is_session_setup(no[i]), "%s", no[i]);
	ck_assert(!scry_is_session_setup(NULL));
}
END_TEST

START_TEST(default_excludes_session_setup)
{
	scry_store *s = make_store();
	scry_verdict *v = compute(s, NULL);
	ck_assert_uint_eq(scry_verdict_count(v), 2); /* the two SELECTs */
	ck_assert_uint_eq(scry_verdict_failures(v), 1);
	for (size_t i = 0; i < scry_verdict_count(v); i++)
		ck_assert(!scry_is_session_setup(scry_verdict_get(v, i)->normalized));
	char *text = render(v, SCRY_REPORT_TEXT), *md = render(v, SCRY_REPORT_MARKDOWN), *json = render(v, SCRY_REPORT_JSON);
	ck_assert_msg(strstr(text, "Not judged: 4 patterns (4 session setup"), "%s", text);
	ck_assert(strstr(text, "SHOW standard_conforming_strings") && strstr(text, "BEGIN"));
	ck_assert(strstr(md, "Not judged: 4 patterns") && strstr(md, "- `"));
	ck_assert_msg(strstr(json, "\"excluded\":[{\"fingerprint\":"), "%s", json);
	ck_assert(strstr(json, "\"reason\":\"session setup\""));
	free(text);
	free(md);
	free(json);
	scry_verdict_free(v);

	/* Judged on request: every pattern is in the table. */
	scry_pattern_filter *f;
	ck_assert_int_eq(scry_pattern_filter_new(&f, NULL), 0);
	scry_pattern_filter_set_session_setup(f, 1);
	v = compute(s, f);
	ck_assert_uint_eq(scry_verdict_count(v), NQ);
	/* Judged, they are in the table; the verdict's own rules decide (it does not fail
	 * a utility statement on latency alone, docs/verdict.md). */
	ck_assert_uint_eq(scry_verdict_failures(v), 1);
	text = render(v, SCRY_REPORT_TEXT);
	ck_assert(!strstr(text, "Not judged"));
	free(text);
	scry_verdict_free(v);
	scry_pattern_filter_free(f);
	scry_store_free(s);
	remove_store();
}
END_TEST

START_TEST(include_and_exclude_globs)
{
	scry_store *s = make_store();
	scry_error err = SCRY_ERROR_INIT;
	scry_pattern_filter *f;
	ck_assert_int_eq(scry_pattern_filter_new(&f, NULL), 0);
	ck_assert_int_eq(scry_pattern_filter_add(f, 0, "", &err), SCRY_EINVAL);
	/* Exclude by normalized text (case-insensitive): the regression is gone. */
	ck_assert_int_eq(scry_pattern_filter_add(f, 0, "*where NOTE = *", &err), 0);
	scry_verdict *v = compute(s, f);
	ck_assert_uint_eq(scry_verdict_count(v), 1);
	ck_assert_uint_eq(scry_verdict_failures(v), 0);
	char *text = render(v, SCRY_REPORT_TEXT);
	ck_assert_msg(strstr(text, "Not judged: 5 patterns (4 session setup, 1 --exclude"), "%s", text);
	free(text);
	scry_verdict_free(v);
	scry_pattern_filter_free(f);

	/* Include by fingerprint (a glob on its hex digits): only that pattern. */
	uint64_t fp;
	ck_assert_int_eq(scry_fingerprint_compute(NULL, queries[0], strlen(queries[0]), &fp, &err), 0);
	char hex[17], glob[20];
	scry_fingerprint_format(fp, hex);
	snprintf(glob, sizeof glob, "%.8s*", hex);
	ck_assert_int_eq(scry_pattern_filter_new(&f, NULL), 0);
	ck_assert_int_eq(scry_pattern_filter_add(f, 1, glob, &err), 0);
	/* An include also brings back session setup it names. */
	ck_assert_int_eq(scry_pattern_filter_add(f, 1, "show *", &err), 0);
	v = compute(s, f);
	ck_assert_uint_eq(scry_verdict_count(v), 2);
	ck_assert_uint_eq(scry_verdict_failures(v), 1);
	const char *why = NULL;
	ck_assert(!scry_pattern_filter_match(f, 42, "SELECT 2", &why));
	ck_assert_str_eq(why, "not in --include");
	/* Exclusion wins over inclusion. */
	ck_assert_int_eq(scry_pattern_filter_add(f, 0, hex, &err), 0);
	ck_assert(!scry_pattern_filter_match(f, fp, queries[0], &why));
	ck_assert_str_eq(why, "--exclude");
	scry_verdict_free(v);
	scry_pattern_filter_free(f);

	/* The same through scry_settings (what the bindings use). */
	scry_settings *st;
	ck_assert_int_eq(scry_settings_new(&st, &err), 0);
	ck_assert_int_eq(scry_settings_set(st, "verdict.exclude", "*nothing*\n*note = *", &err), 0);
	ck_assert_int_eq(scry_settings_set(st, "verdict.min_samples", "5", &err), 0);
	ck_assert_int_eq(scry_settings_set(st, "verdict.judge_session_setup", "yes", &err), 0);
	ck_assert_int_eq(scry_settings_set(st, "verdict.judge_session_setup", "maybe", &err), SCRY_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.message, "verdict.judge_session_setup"));
	ck_assert_int_eq(scry_settings_set(st, "verdict.thresold", "2", &err), SCRY_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.message, "unknown setting"));
	scry_verdict *sv = NULL;
	ck_assert_int_eq(scry_verdict_compute(&sv, s, "a", "b", scry_settings_verdict(st), &err), 0);
	ck_assert_uint_eq(scry_verdict_count(sv), NQ - 1);
	ck_assert_uint_eq(scry_verdict_failures(sv), 0);
	scry_verdict_free(sv);
	scry_settings_free(st);
	scry_store_free(s);
	remove_store();
}
END_TEST

START_TEST(html_report)
{
	scry_store *s = make_store();
	scry_verdict *v = compute(s, NULL);
	scry_error err = SCRY_ERROR_INIT;
	scry_buf b = SCRY_BUF_INIT;
	/* Without the store: the quantiles of each side. */
	ck_assert_int_eq(scry_report_render(v, SCRY_REPORT_HTML, &b, &err), 0);
	ck_assert(strstr(b.ptr, "<!DOCTYPE html>") && strstr(b.ptr, "p50 B") && !strstr(b.ptr, "<script"));
	ck_assert(strstr(b.ptr, "&quot;ord&lt;ers&gt;&quot;") && !strstr(b.ptr, "ord<ers>"));
	ck_assert(strstr(b.ptr, "Not judged: 4 patterns"));
	scry_buf_dispose(&b);
	/* With it: a histogram of the samples, and the migration section. */
	scry_report_html_options ho = SCRY_REPORT_HTML_OPTIONS_INIT;
	ho.store = s;
	ho.migration_json = "{\"migrate_us\": 1234, \"lock\": {\"relation\": \"orders<x>\"}}";
	ck_assert_msg(scry_report_render_html(v, &ho, &b, &err) == 0, "%s", err.message);
	ck_assert(strstr(b.ptr, "candidate: ") && strstr(b.ptr, "dashed: medians"));
	ck_assert(strstr(b.ptr, "<th>migrate_us</th><td>1234</td>") && strstr(b.ptr, "orders&lt;x&gt;"));
	ck_assert(strstr(b.ptr, "</html>"));
	scry_buf_dispose(&b);
	ho.version = 99;
	ck_assert_int_eq(scry_report_render_html(v, &ho, &b, &err), SCRY_EINVAL);
	scry_buf_dispose(&b);
	scry_verdict_free(v);
	scry_store_free(s);
	remove_store();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("filter");
	TCase *tc = tcase_create("filter");
	tcase_add_test(tc, session_setup_words);
	tcase_add_test(tc, default_excludes_session_setup);
	tcase_add_test(tc, include_and_exclude_globs);
	tcase_add_test(tc, html_report);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
