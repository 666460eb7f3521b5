/* tests/test_shadow.c - clones, migrations and cleanup against a real PostgreSQL. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"

static pgtest_cluster cl;
static char target[600];

static void setup(void)
{
	pgtest_start(&cl, NULL);
	pgtest_exec(cl.conninfo, "CREATE DATABASE shop");
	pgtest_conninfo_db(&cl, "shop", target, sizeof target);
	pgtest_exec(target, "CREATE TABLE orders(id int primary key, status text);"
	                    "INSERT INTO orders SELECT g, 'new' FROM generate_series(1,100) g");
}

static void teardown(void) { pgtest_stop(&cl); }

static int count_dbs_like(const char *pattern)
{
	char sql[300];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname LIKE '%s'", pattern);
	char *v = pgtest_query_value(cl.conninfo, sql);
	int n = atoi(v);
	free(v);
	return n;
}

static char *value_in(const char *conninfo, const char *sql) { return pgtest_query_value(conninfo, sql); }

static void collect(void *ctx, const char *data, size_t len) { scry__buf_put(ctx, data, len); }

START_TEST(clones_migrate_and_drop)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, NULL, &err), 0);
	ck_assert_str_eq(scry_shadow_target_name(s), "shop");
	ck_assert_ptr_nonnull(strstr(scry_shadow_name(s, SCRY_SHADOW_A), "shop_scry_a_"));
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 2);

	/* SQL migration on B, statement by statement (CONCURRENTLY needs autocommit). */
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "ALTER TABLE orders ADD COLUMN region varchar(50); "
	        "CREATE INDEX CONCURRENTLY idx_region ON orders(region)";
	ck_assert_msg(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err) == 0, "%s", err.message);
	char *v = value_in(scry_shadow_conninfo(s, SCRY_SHADOW_B),
	                   "SELECT count(*) FROM information_schema.columns WHERE column_name='region'");
	ck_assert_str_eq(v, "1");
	free(v);
	v = value_in(scry_shadow_conninfo(s, SCRY_SHADOW_A),
	             "SELECT count(*) FROM information_schema.columns WHERE column_name='region'");
	ck_assert_str_eq(v, "0");
	free(v);
	v = value_in(target, "SELECT count(*) FROM information_schema.columns WHERE column_name='region'");
	ck_assert_str_eq(v, "0");
	free(v);

	/* A command sees the clone through DATABASE_URL and PG*; its output is passed on. */
	char *argv[] = { "sh", "-c",
		"echo db=$PGDATABASE; psql -XAtq -c 'SELECT current_database()' \"$DATABASE_URL\"", NULL };
	scry_buf out = SCRY_BUF_INIT;
	scry_migration cmd = SCRY_MIGRATION_INIT;
	cmd.argv = argv;
	cmd.output = collect;
	cmd.output_ctx = &out;
	ck_assert_msg(scry_shadow_migrate(s, SCRY_SHADOW_B, &cmd, &err) == 0, "%s", err.message);
	ck_assert_ptr_nonnull(out.ptr);
	char expect[200];
	snprintf(expect, sizeof expect, "db=%s\n%s\n", scry_shadow_name(s, SCRY_SHADOW_B),
	         scry_shadow_name(s, SCRY_SHADOW_B));
	ck_assert_str_eq(out.ptr, expect);
	scry_buf_dispose(&out);

	/* A failing command: SCRY_EMIGRATION with the end of its output. */
	char *bad[] = { "sh", "-c", "echo 'relation \"nope\" does not exist' >&2; exit 3", NULL };
	cmd.argv = bad;
	cmd.output_ctx = &out;
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &cmd, &err), SCRY_EMIGRATION);
	ck_assert_ptr_nonnull(strstr(err.message, "status 3"));
	ck_assert_ptr_nonnull(strstr(err.message, "does not exist"));
	scry_buf_dispose(&out);

	/* A failing SQL statement. */
	scry_migration badsql = SCRY_MIGRATION_INIT;
	badsql.sql = "ALTER TABLE nope ADD COLUMN x int";
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &badsql, &err), SCRY_EMIGRATION);
	ck_assert_str_eq(err.sqlstate, "42P01");

	ck_assert_int_eq(scry_shadow_settle(s, &err), 0);
	ck_assert_int_eq(scry_shadow_drop(s, &err), 0);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 0);
	/* Migrating after the drop is refused: never the target. */
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err), SCRY_EINVAL);
	scry_shadow_free(s);
}
END_TEST

START_TEST(free_drops_clones)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow_options o = SCRY_SHADOW_OPTIONS_INIT;
	o.suffix = "t1";
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_str_eq(scry_shadow_name(s, SCRY_SHADOW_B), "shop_scry_b_t1");
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	/* A session left open on a clone does not stop the cleanup. */
	PGconn *c = pgtest_connect(scry_shadow_conninfo(s, SCRY_SHADOW_A));
	scry_shadow_free(s);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 0);
	PQfinish(c);
}
END_TEST

START_TEST(busy_target_says_what_to_do)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, NULL, &err), 0);
	PGconn *c = pgtest_connect(target); /* the "application" */
	ck_assert_int_eq(scry_shadow_create(s, &err), SCRY_EPG);
	ck_assert_str_eq(err.sqlstate, "55006");
	ck_assert_ptr_nonnull(strstr(err.message, "--sequential"));
	ck_assert_ptr_nonnull(strstr(err.message, "1 other session is connected"));
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 0);
	PQfinish(c);
	scry_shadow_free(s);
}
END_TEST

START_TEST(no_createdb_right)
{
	pgtest_exec(cl.conninfo, "CREATE ROLE app LOGIN; GRANT ALL ON DATABASE shop TO app");
	char conn[600];
	snprintf(conn, sizeof conn, "host=127.0.0.1 port=%d user=app dbname=shop", cl.port);
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, conn, NULL, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), SCRY_EPG);
	ck_assert_str_eq(err.sqlstate, "42501");
	ck_assert_ptr_nonnull(strstr(err.message, "CREATEDB"));
	scry_shadow_free(s);
}
END_TEST

START_TEST(unreachable_and_uri)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, "host=127.0.0.1 port=1 dbname=x connect_timeout=2", NULL, &err),
	                 SCRY_ECONNECT);
	ck_assert_ptr_null(s);
	/* Says where it tried and what to check, on one line. */
	ck_assert_msg(strstr(err.message, "cannot connect to the target database at host 127.0.0.1 port 1") &&
	              strstr(err.message, "Check that the server is running") && !strchr(err.message, '\n'),
	              "%s", err.message);
	char uri[300];
	snprintf(uri, sizeof uri, "postgresql://postgres@127.0.0.1:%d/shop", cl.port);
	ck_assert_int_eq(scry_shadow_new(&s, uri, NULL, &err), 0);
	ck_assert_ptr_nonnull(strstr(scry_shadow_conninfo(s, SCRY_SHADOW_A), "dbname='shop_scry_a_"));
	scry_shadow_free(s);
}
END_TEST

START_TEST(in_place_migrates_target)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow_options o = SCRY_SHADOW_OPTIONS_INIT;
	o.in_place = 1;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_str_eq(scry_shadow_name(s, SCRY_SHADOW_B), "shop");
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "CREATE INDEX idx_status ON orders(status)";
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err), 0);
	scry_shadow_free(s);
	char *v = value_in(target, "SELECT count(*) FROM pg_indexes WHERE indexname='idx_status'");
	ck_assert_str_eq(v, "1");
	free(v);
}
END_TEST

static int cancel_during(void *ctx, const char *conninfo, char *msg, size_t n)
{
	scry_shadow_cancel(ctx);
	return 0;
}

START_TEST(cancel_and_callback)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, NULL, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.fn = cancel_during;
	m.fn_ctx = s;
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err), SCRY_ECANCELED);
	/* After a cancel, a command is not started, and dropping still works. */
	char *argv[] = { "true", NULL };
	scry_migration cmd = SCRY_MIGRATION_INIT;
	cmd.argv = argv;
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &cmd, &err), SCRY_ECANCELED);
	ck_assert_int_eq(scry_shadow_drop(s, &err), 0);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 0);
	scry_shadow_free(s);
}
END_TEST

static void collect_log(void *ctx, scry_log_level level, const char *msg)
{
	(void)level;
	scry__buf_puts(ctx, msg);
	scry__buf_puts(ctx, "\n");
}

/* Template clones use FILE_COPY (PostgreSQL 15+) and carry a marker naming this process; gc reads it. */
START_TEST(file_copy_marker_and_gc)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_buf log = SCRY_BUF_INIT;
	scry_shadow_options o = SCRY_SHADOW_OPTIONS_INIT;
	o.log = collect_log;
	o.log_ctx = &log;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	PGconn *c = pgtest_connect(target);
	if (PQserverVersion(c) >= 150000)
		ck_assert_msg(strstr(log.ptr ? log.ptr : "", "STRATEGY = FILE_COPY") != NULL, "%s", log.ptr);
	PQfinish(c);
	char sql[800], mine[64];
	snprintf(sql, sizeof sql, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%s'",
	         scry_shadow_name(s, SCRY_SHADOW_A));
	char *v = value_in(cl.conninfo, sql);
	snprintf(mine, sizeof mine, "scry clone pid=%d host=", (int)getpid());
	ck_assert_msg(v && !strncmp(v, mine, strlen(mine)), "%s", v ? v : "(none)");
	free(v);

	/* A clone of a dead process of this host goes; one of another host stays; ours stay. */
	char host[128];
	gethostname(host, sizeof host);
	pgtest_exec(cl.conninfo, "CREATE DATABASE shop_scry_a_dead TEMPLATE shop");
	pgtest_exec(cl.conninfo, "CREATE DATABASE shop_scry_a_far TEMPLATE shop");
	snprintf(sql, sizeof sql, "COMMENT ON DATABASE shop_scry_a_dead IS 'scry clone pid=999999 host=%s start=1 target=shop';"
	         "COMMENT ON DATABASE shop_scry_a_far IS 'scry clone pid=999999 host=elsewhere.example start=1 target=shop'",
	         host);
	pgtest_exec(cl.conninfo, sql);
	int dropped = -1;
	ck_assert_msg(scry_shadow_gc(target, NULL, &dropped, &err) == 0, "%s", err.message);
	ck_assert_int_eq(dropped, 1);
	ck_assert_int_eq(count_dbs_like("shop_scry_a_dead"), 0);
	ck_assert_int_eq(count_dbs_like("shop_scry_a_far"), 1);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 3); /* ours (2) and the far one */
	scry_shadow_free(s);
	pgtest_exec(cl.conninfo, "DROP DATABASE shop_scry_a_far");
	scry_buf_dispose(&log);
}
END_TEST

/* A migration command past migration_timeout_s is killed with a clear error. */
START_TEST(migration_timeout_kills)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow_options o = SCRY_SHADOW_OPTIONS_INIT;
	o.migration_timeout_s = 1;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	char *argv[] = { "sh", "-c", "sleep 30", NULL };
	scry_migration m = SCRY_MIGRATION_INIT;
	m.argv = argv;
	int64_t t0 = scry__monotonic_us();
	ck_assert_int_eq(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err), SCRY_EMIGRATION);
	ck_assert_msg(strstr(err.message, "did not finish within 1 s") != NULL, "%s", err.message);
	ck_assert_int_lt(scry__monotonic_us() - t0, 20 * 1000000LL);
	scry_shadow_free(s);
	ck_assert_int_eq(count_dbs_like("shop_scry_%"), 0);
}
END_TEST

/* Given databases: migrated on the candidate, never dropped, never the target itself. */
START_TEST(given_databases)
{
	pgtest_exec(cl.conninfo, "CREATE DATABASE copy_a TEMPLATE shop");
	pgtest_exec(cl.conninfo, "CREATE DATABASE copy_b TEMPLATE shop");
	char a[600], b[600];
	pgtest_conninfo_db(&cl, "copy_a", a, sizeof a);
	pgtest_conninfo_db(&cl, "copy_b", b, sizeof b);
	scry_error err = SCRY_ERROR_INIT;
	scry_shadow_options o = SCRY_SHADOW_OPTIONS_INIT;
	o.provider = SCRY_CLONE_GIVEN;
	scry_shadow *s = NULL;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), SCRY_EINVAL); /* no databases given */
	o.baseline = target;
	o.candidate = b;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), SCRY_EINVAL);
	ck_assert_msg(strstr(err.message, "is the target itself") != NULL, "%s", err.message);
	scry_shadow_free(s);
	o.baseline = a;
	ck_assert_int_eq(scry_shadow_new(&s, target, &o, &err), 0);
	ck_assert_int_eq(scry_shadow_create(s, &err), 0);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "ALTER TABLE orders ADD COLUMN region text";
	ck_assert_msg(scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err) == 0, "%s", err.message);
	scry_shadow_free(s);
	char *v = value_in(b, "SELECT count(*) FROM information_schema.columns WHERE column_name='region'");
	ck_assert_str_eq(v, "1");
	free(v);
	v = value_in(a, "SELECT count(*) FROM information_schema.columns WHERE column_name='region'");
	ck_assert_str_eq(v, "0");
	free(v);
	ck_assert_int_eq(count_dbs_like("copy_%"), 2); /* never dropped */
}
END_TEST

int main(void)
{
	Suite *su = suite_create("shadow");
	TCase *tc = tcase_create("pg");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, clones_migrate_and_drop);
	tcase_add_test(tc, free_drops_clones);
	tcase_add_test(tc, busy_target_says_what_to_do);
	tcase_add_test(tc, no_createdb_right);
	tcase_add_test(tc, unreachable_and_uri);
	tcase_add_test(tc, cancel_and_callback);
	tcase_add_test(tc, in_place_migrates_target);
	tcase_add_test(tc, file_copy_marker_and_gc);
	tcase_add_test(tc, migration_timeout_kills);
	tcase_add_test(tc, given_databases);
	suite_add_tcase(su, tc);
	return pgtest_run_suite(su, 0);
}
