/*
 * tests/test_notices.c - the library never prints: as a role that is not a
 * superuser, settling a clone vacuums only the tables the role may vacuum
 * (no "WARNING: skipping ..." at all), the server's notices (a migration's
 * RAISE NOTICE) reach the log callback, and nothing is written to stderr.
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"

static pgtest_cluster cl;

typedef struct logbuf {
	char text[16384];
	int warnings;
} logbuf;

static void on_log(void *ctx, scry_log_level level, const char *message)
{
	logbuf *l = ctx;
	size_t n = strlen(l->text);
	snprintf(l->text + n, sizeof l->text - n, "%d %s\n", (int)level, message);
	l->warnings += level >= SCRY_LOG_WARNING;
}

/* Runs with stderr redirected to a file; returns what was written there (malloc'ed). */
static int saved_stderr = -1;
static char errpath[128];

static void capture_stderr(void)
{
	snprintf(errpath, sizeof errpath, "/tmp/scry-test-notices-%d.err", (int)getpid());
	fflush(stderr);
	saved_stderr = dup(2);
	int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert(fd >= 0);
	dup2(fd, 2);
	close(fd);
}

static char *restore_stderr(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	FILE *f = fopen(errpath, "r");
	ck_assert_ptr_nonnull(f);
	char *out = calloc(1, 65536);
	size_t n = fread(out, 1, 65535, f);
	out[n] = '\0';
	fclose(f);
	unlink(errpath);
	return out;
}

START_TEST(non_superuser_settles_quietly)
{
	pgtest_exec(cl.conninfo, "CREATE ROLE app LOGIN CREATEDB");
	pgtest_exec(cl.conninfo, "CREATE DATABASE shop OWNER app");
	char buf[600], appbuf[600];
	const char *shop = pgtest_conninfo_db(&cl, "shop", buf, sizeof buf);
	/* A table the superuser owns and one the application owns. */
	pgtest_exec(shop, "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g;"
	                  "SET ROLE app; CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g");
	snprintf(appbuf, sizeof appbuf, "host=127.0.0.1 port=%d user=app dbname=shop", cl.port);

	logbuf log = { "", 0 };
	scry_shadow_options so = SCRY_SHADOW_OPTIONS_INIT;
	so.log = on_log;
	so.log_ctx = &log;
	so.suffix = "notices";
	scry_shadow *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	capture_stderr();
	int rc = scry_shadow_new(&s, appbuf, &so, &err);
	if (!rc)
		rc = scry_shadow_create(s, &err);
	if (!rc)
		rc = scry_shadow_settle(s, &err);
	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = "DO $$ BEGIN RAISE NOTICE 'hello from the migration'; RAISE WARNING 'careful'; END $$";
	if (!rc)
		rc = scry_shadow_migrate(s, SCRY_SHADOW_B, &m, &err);
	char clone_b[128];
	snprintf(clone_b, sizeof clone_b, "%s", s ? scry_shadow_name(s, SCRY_SHADOW_B) : "");
	char *vacuumed = NULL;
	if (!rc) {
		char cb[600];
		vacuumed = pgtest_query_value(pgtest_conninfo_db(&cl, clone_b, cb, sizeof cb),
		                              "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables "
		                              "WHERE last_vacuum IS NOT NULL AND last_analyze IS NOT NULL");
	}
	scry_shadow_free(s);
	char *printed = restore_stderr();
	ck_assert_msg(rc == 0, "%s", err.message);
	ck_assert_msg(printed[0] == '\0', "the library printed: %s", printed);
	ck_assert_msg(!strstr(log.text, "skipping"), "log: %s", log.text);
	ck_assert_msg(strstr(log.text, "1 server NOTICE: hello from the migration"), "log: %s", log.text);
	ck_assert_msg(strstr(log.text, "2 server WARNING: careful"), "log: %s", log.text);
	/* Both tables were settled: app owns the clone, so it may vacuum the superuser's table too. */
	ck_assert_str_eq(vacuumed, "items,orders");
	free(vacuumed);
	free(printed);
	char *left = pgtest_query_value(cl.conninfo, "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'");
	ck_assert_str_eq(left, "0");
	free(left);
}
END_TEST

static void setup(void) { pgtest_start(&cl, NULL); }
static void teardown(void) { pgtest_stop(&cl); }

int main(void)
{
	Suite *s = suite_create("notices");
	TCase *tc = tcase_create("pg");
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, non_superuser_settles_quietly);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 0);
}
