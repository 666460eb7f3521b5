/* tests/harness/pgtest.c - see pgtest.h. */
#define _GNU_SOURCE
#include "pgtest.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "pgtest: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

int pgtest_system(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

void pgtest_start(pgtest_cluster *c, const char *extra_conf)
{
	memset(c, 0, sizeof *c);
	char tmpl[] = "/tmp/scry-pgtest.XXXXXX";
	if (!mkdtemp(tmpl))
		die("mkdtemp failed");
	chmod(tmpl, 0755);
	snprintf(c->dir, sizeof c->dir, "%s", tmpl);
	char conf[300] = "";
	if (extra_conf) {
		snprintf(conf, sizeof conf, "%s/extra.conf", c->dir);
		FILE *f = fopen(conf, "w");
		if (!f)
			die("cannot write %s", conf);
		fputs(extra_conf, f);
		fputc('\n', f);
		fclose(f);
		chmod(conf, 0644);
	}
	if (pgtest_system("bash '%s/tests/harness/pgcluster.sh' start '%s/c' %s >/dev/null",
	                  SCRY_SOURCE_DIR, c->dir, conf) != 0)
		die("could not start a PostgreSQL cluster in %s", c->dir);
	char path[400];
	snprintf(path, sizeof path, "%s/c/port", c->dir);
	FILE *f = fopen(path, "r");
	if (!f || fscanf(f, "%d", &c->port) != 1)
		die("no port file in %s", path);
	fclose(f);
	snprintf(c->conninfo, sizeof c->conninfo,
	         "host=127.0.0.1 port=%d user=postgres dbname=postgres", c->port);
}

void pgtest_stop(pgtest_cluster *c)
{
	if (!c->dir[0])
		return;
	pgtest_system("bash '%s/tests/harness/pgcluster.sh' stop '%s/c' >/dev/null 2>&1", SCRY_SOURCE_DIR, c->dir);
	pgtest_system("rm -rf '%s'", c->dir);
	c->dir[0] = 0;
}

const char *pgtest_conninfo_db(const pgtest_cluster *c, const char *db, char *buf, size_t n)
{
	snprintf(buf, n, "host=127.0.0.1 port=%d user=postgres dbname=%s", c->port, db);
	return buf;
}

PGconn *pgtest_connect(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connect to '%s': %s", conninfo, PQerrorMessage(conn));
	return conn;
}

void pgtest_exec(const char *conninfo, const char *sql)
{
	PGconn *conn = pgtest_connect(conninfo);
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
		die("SQL failed: %s\n%s", sql, PQerrorMessage(conn));
	PQclear(r);
	PQfinish(conn);
}

char *pgtest_query_value(const char *conninfo, const char *sql)
{
	PGconn *conn = pgtest_connect(conninfo);
	PGresult *r = PQexec(conn, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("query failed: %s\n%s", sql, PQerrorMessage(conn));
	char *v = NULL;
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(conn);
	return v;
}

int pgtest_run_suite(Suite *suite, int fork)
{
	SRunner *sr = srunner_create(suite);
	if (!fork)
		srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

const char *pgtest_cli(void)
{
	const char *p = getenv("SCRY_CLI");
	return p && *p ? p : SCRY_BINARY_DIR "/scry";
}

int64_t pgtest_sqlite_int(const char *path, const char *sql)
{
	sqlite3 *db;
	ck_assert_msg(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "cannot open %s", path);
	sqlite3_stmt *st;
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
	ck_assert_msg(sqlite3_step(st) == SQLITE_ROW, "%s: no row", sql);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}
