/* tests/test_pipeline.c - the test-migration pipeline through its API, on a real PostgreSQL. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"

static pgtest_cluster cl;
static char target[600];
static char store_path[300];

/* A workload appended through the store API: a hot indexed lookup and a point query. */
static void setup(void)
{
	pgtest_start(&cl, NULL);
	pgtest_exec(cl.conninfo, "CREATE DATABASE shop");
	pgtest_conninfo_db(&cl, "shop", target, sizeof target);
	pgtest_exec(target,
		"CREATE TABLE items(id serial PRIMARY KEY, category text NOT NULL, price int NOT NULL);"
		"INSERT INTO items(category, price) SELECT 'c' || (g % 500), g % 900 FROM generate_series(1, 50000) g;"
		"CREATE INDEX idx_items_category ON items(category);");
	pgtest_exec(target, "VACUUM ANALYZE items");
	snprintf(store_path, sizeof store_path, "%s/scry.db", cl.dir);
	scry_store *st = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&st, store_path, NULL, &err), 0);
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "shop", "postgres", "test", "[local]", scry__now_us() };
	int64_t sid;
	ck_assert_int_eq(scry_store_session_add(st, &si, &sid, &err), 0);
	scry_event ev[60];
	char texts[60][120];
	scry_param params[60];
	char vals[60][16];
	memset(ev, 0, sizeof ev);
	for (int i = 0; i < 60; i++) {
		ev[i].session_id = sid;
		ev[i].start_us = si.started_us + i * 1000;
		ev[i].duration_us = 300;
		ev[i].rows = -1;
		if (i % 2 == 0) {
			snprintf(vals[i], sizeof vals[i], "c%d", (i * 7) % 500);
			params[i] = (scry_param){ 0, SCRY_PARAM_TEXT, vals[i], (int32_t)strlen(vals[i]) };
			ev[i].kind = SCRY_EVENT_EXTENDED;
			ev[i].query = "SELECT count(*), sum(price) FROM items WHERE category = $1";
			ev[i].nparams = 1;
			ev[i].params = &params[i];
		} else {
			snprintf(texts[i], sizeof texts[i], "SELECT price FROM items WHERE id = %d", i * 31 + 1);
			ev[i].kind = SCRY_EVENT_SIMPLE;
			ev[i].query = texts[i];
		}
	}
	ck_assert_int_eq(scry_store_append(st, ev, 60, sizeof(scry_event), &err), 0);
	scry_store_free(st);
}

static void teardown(void) { pgtest_stop(&cl); }

static int leftovers(void)
{
	char *v = pgtest_query_value(cl.conninfo, "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_scry_%'");
	int n = atoi(v);
	free(v);
	return n;
}

typedef struct phases {
	char seen[512];
	uint64_t replay_total;
} phases;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	phases *p = ctx;
	char tag[40];
	snprintf(tag, sizeof tag, "%s,", phase);
	if (!strstr(p->seen, tag) && strlen(p->seen) + strlen(tag) < sizeof p->seen)
		strcat(p->seen, tag);
	if (!strcmp(phase, SCRY_PHASE_REPLAYING) && total)
		p->replay_total = total;
}

static scry_store *open_store(void)
{
	scry_store *st = NULL;
	ck_assert_int_eq(scry_store_open(&st, store_path, NULL, NULL), 0);
	return st;
}

START_TEST(dropped_index_regresses_and_fix_clears)
{
	scry_error err = SCRY_ERROR_INIT;
	phases ph = { "", 0 };
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "DROP INDEX idx_items_category";
	scry_migration fix = SCRY_MIGRATION_INIT;
	fix.sql = "CREATE INDEX idx_items_category ON items(category)";
	scry_store *st = open_store();
	scry_pipeline_options po = SCRY_PIPELINE_OPTIONS_INIT;
	po.fix = &fix;
	po.progress = on_progress;
	po.progress_ctx = &ph;
	scry_pipeline *p = NULL;
	ck_assert_int_eq(scry_pipeline_new(&p, st, target, &po, &err), 0);
	ck_assert_msg(scry_pipeline_run(p, &m, &err) == 0, "%s", err.message);
	ck_assert_int_eq(leftovers(), 0);
	const scry_verdict *v = scry_pipeline_verdict(p);
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_ge(scry_verdict_failures(v), 1);
	const scry_pattern_verdict *worst = scry_verdict_get(v, 0);
	ck_assert_int_eq(worst->cls, SCRY_CLASS_REGRESSED);
	ck_assert_msg(strstr(worst->normalized, "category") != NULL, "worst: %s (%s, %.2fx, server %.2fx, work %.0f -> %.0f, %s); next: %s",
	              worst->normalized, scry_verdict_class_name(worst->cls), worst->ratio, worst->server_ratio,
	              worst->baseline_work, worst->candidate_work, worst->note ? worst->note : "-",
	              scry_verdict_count(v) > 1 ? scry_verdict_get(v, 1)->normalized : "-");
	ck_assert_ptr_nonnull(scry_pipeline_fix_verdict(p));
	ck_assert_uint_eq(scry_pipeline_failures(p), 0);
	/* Every phase was reported, the replay with its count. */
	ck_assert_msg(strstr(ph.seen, "cloning,") && strstr(ph.seen, "migrating,") && strstr(ph.seen, "settling,")
	              && strstr(ph.seen, "replaying,") && strstr(ph.seen, "deciding,") && strstr(ph.seen, "fixing,")
	              && strstr(ph.seen, "cleanup,"), "phases: %s", ph.seen);
	ck_assert_uint_ge(ph.replay_total, 60);
	scry_pipeline_stats stats = SCRY_PIPELINE_STATS_INIT;
	scry_pipeline_stats_get(p, &stats);
	scry_replay_result base = SCRY_REPLAY_RESULT_INIT, cand = SCRY_REPLAY_RESULT_INIT;
	ck_assert_int_eq(scry_pipeline_replay_result_get(p, SCRY_PIPELINE_BASELINE, &base), 0);
	ck_assert_int_eq(scry_pipeline_replay_result_get(p, SCRY_PIPELINE_CANDIDATE, &cand), 0);
	ck_assert_int_eq(base.executions, 60);
	ck_assert_int_eq(cand.executions, 60);
	ck_assert_int_gt(stats.total_us, 0);
	/* Reports: JSON holds both verdicts; text both headings. */
	scry_buf out = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_pipeline_report(p, SCRY_REPORT_JSON, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out.ptr, "\"after_fix\":{"));
	ck_assert_ptr_nonnull(strstr(out.ptr, "\"patterns\""));
	ck_assert_int_eq(out.ptr[out.size - 2], '}');
	scry_buf_dispose(&out);
	ck_assert_int_eq(scry_pipeline_report(p, SCRY_REPORT_TEXT, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out.ptr, "After the fix"));
	scry_buf_dispose(&out);
	ck_assert_int_eq(scry_pipeline_report(p, SCRY_REPORT_MARKDOWN, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out.ptr, "## After the fix"));
	scry_buf_dispose(&out);
	/* JUnit: one XML document, the final verdict's. */
	ck_assert_int_eq(scry_pipeline_report(p, SCRY_REPORT_JUNIT, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out.ptr, "<testsuite"));
	const char *decl = strstr(out.ptr, "<?xml");
	if (decl)
		ck_assert_ptr_null(strstr(decl + 1, "<?xml"));
	scry_buf_dispose(&out);
	/* A pipeline runs once. */
	ck_assert_int_eq(scry_pipeline_run(p, &m, &err), SCRY_EINVAL);
	scry_pipeline_free(p);
	scry_store_free(st);
}
END_TEST

static int failing_cb(void *ctx, const char *conninfo, char *msg, size_t n)
{
	/* The callback sees clone B, never the target. */
	ck_assert_ptr_nonnull(strstr(conninfo, "shop_scry_b_"));
	snprintf(msg, n, "alembic: revision not found");
	return 1;
}

START_TEST(failing_migration_leaves_nothing)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_store *st = open_store();
	scry_pipeline *p = NULL;
	ck_assert_int_eq(scry_pipeline_new(&p, st, target, NULL, &err), 0);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.fn = failing_cb;
	ck_assert_int_eq(scry_pipeline_run(p, &m, &err), SCRY_EMIGRATION);
	ck_assert_ptr_nonnull(strstr(err.message, "revision not found"));
	ck_assert_ptr_null(scry_pipeline_verdict(p));
	ck_assert_uint_eq(scry_pipeline_failures(p), 0);
	ck_assert_int_eq(leftovers(), 0);
	scry_pipeline_free(p);
	scry_store_free(st);
}
END_TEST

static void *cancel_later(void *arg)
{
	usleep(300000);
	scry_pipeline_cancel(arg);
	return NULL;
}

START_TEST(cancel_drops_clones)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_store *st = open_store();
	scry_pipeline *p = NULL;
	ck_assert_int_eq(scry_pipeline_new(&p, st, target, NULL, &err), 0);
	char *argv[] = { "sleep", "20", NULL };
	scry_migration m = SCRY_MIGRATION_INIT;
	m.argv = argv;
	pthread_t t;
	pthread_create(&t, NULL, cancel_later, p);
	int64_t t0 = scry__monotonic_us();
	ck_assert_int_eq(scry_pipeline_run(p, &m, &err), SCRY_ECANCELED);
	pthread_join(t, NULL);
	ck_assert_int_lt(scry__monotonic_us() - t0, 15 * 1000000LL);
	ck_assert_int_eq(leftovers(), 0);
	scry_pipeline_free(p);
	scry_store_free(st);
}
END_TEST

START_TEST(empty_store_and_bad_target)
{
	scry_error err = SCRY_ERROR_INIT;
	char path[400];
	snprintf(path, sizeof path, "%s/empty.db", cl.dir);
	scry_store *st = NULL;
	ck_assert_int_eq(scry_store_open(&st, path, NULL, &err), 0);
	scry_pipeline *p = NULL;
	ck_assert_int_eq(scry_pipeline_new(&p, st, target, NULL, &err), 0);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "SELECT 1";
	ck_assert_int_eq(scry_pipeline_run(p, &m, &err), SCRY_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err.message, "capture"));
	scry_pipeline_free(p);
	scry_store_free(st);

	st = open_store();
	ck_assert_int_eq(scry_pipeline_new(&p, st, "host=127.0.0.1 port=1 dbname=x connect_timeout=2", NULL, &err), 0);
	ck_assert_int_eq(scry_pipeline_run(p, &m, &err), SCRY_ECONNECT);
	scry_pipeline_free(p);
	scry_pipeline_options bad = SCRY_PIPELINE_OPTIONS_INIT;
	bad.version = 99;
	ck_assert_int_eq(scry_pipeline_new(&p, st, target, &bad, &err), SCRY_EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_msg(strstr(err.message, "scry_pipeline_options version 99") != NULL, "%s", err.message);
	scry_store_free(st);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("pipeline");
	TCase *tc = tcase_create("pg");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, dropped_index_regresses_and_fix_clears);
	tcase_add_test(tc, failing_migration_leaves_nothing);
	tcase_add_test(tc, cancel_drops_clones);
	tcase_add_test(tc, empty_store_and_bad_target);
	suite_add_tcase(su, tc);
	return pgtest_run_suite(su, 0);
}
