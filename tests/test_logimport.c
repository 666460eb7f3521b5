/*
 * tests/test_logimport.c - log import on logs written by a real PostgreSQL
 * server (csvlog, jsonlog and stderr at once, from one known workload), and
 * unit tests on hand-made lines for the cases a server rarely shows.
 */
#define _GNU_SOURCE
#include <check.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"
#include "scry/scry.h"

#define PREFIX "%m [%p] %q%u@%d/%a "

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static scry_store *open_store(char *path, size_t n)
{
	snprintf(path, n, "/tmp/scry-logimport-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&s, path, NULL, &err) == 0, "%s", err.message);
	return s;
}

static void drop_store(scry_store *s, const char *path)
{
	scry_store_free(s);
	char p[300];
	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

/* One event as read back, flattened into a line for easy comparison:
 * "S<session>|<kind>|<sqlstate>|<query>|<param>|<param>..." */
static char *events_dump(scry_store *s, int *count, int *timed)
{
	scry_event_iter *it;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_events(s, NULL, &it, &err) == 0, "%s", err.message);
	scry_buf out = SCRY_BUF_INIT;
	const scry_stored_event *ev;
	int n = 0, t = 0;
	while (scry_event_iter_next(it, &ev, &err) == 1) {
		scry__buf_printf(&out, "S%lld|%c|%s|%s", (long long)ev->session_id,
		                 ev->kind == SCRY_EVENT_EXTENDED ? 'X' : 'Q', ev->sqlstate, ev->query);
		for (int i = 0; i < ev->nparams; i++)
			scry__buf_printf(&out, "|%s", ev->params[i].value ? ev->params[i].value : "<NULL>");
		scry__buf_puts(&out, "\n");
		n++;
		t += ev->duration_us >= 0;
	}
	scry_event_iter_free(it);
	if (count)
		*count = n;
	if (timed)
		*timed = t;
	char *r = strdup(out.ptr ? out.ptr : "");
	scry_buf_dispose(&out);
	return r;
}

static int import_text(scry_store *s, scry_log_format fmt, const char *prefix, const char *text, size_t chunk,
                       scry_logimport_stats *st)
{
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	o.format = fmt;
	o.line_prefix = prefix;
	o.lang = "C"; /* nothing to detect: chunks are parsed as they come */
	scry_logimport *imp;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_logimport_new(&imp, s, &o, &err);
	if (rc)
		return rc;
	size_t n = strlen(text);
	for (size_t i = 0; i < n && !rc; i += chunk)
		rc = scry_logimport_feed(imp, text + i, n - i < chunk ? n - i : chunk, &err);
	if (!rc)
		rc = scry_logimport_finish(imp, st, &err);
	ck_assert_msg(rc == 0, "%s", err.message);
	scry_logimport_free(imp);
	return rc;
}

/* ------------------------------------------------------------------ */
/* A real server writing all three formats                             */
/* ------------------------------------------------------------------ */

static pgtest_cluster cluster;
static bool cluster_up;
static char logdir[300];

static const char server_conf[] =
	"logging_collector = on\n"
	"log_destination = 'stderr,csvlog,jsonlog'\n"
	"log_directory = 'log'\n"
	"log_filename = 'pg.log'\n"
	"log_statement = 'all'\n"
	"log_min_duration_statement = 0\n"
	"log_line_prefix = '" PREFIX "'\n"
	"log_connections = on\n"
	"log_disconnections = on\n"
	"log_error_verbosity = verbose\n"
	"lc_messages = 'C'\n"
	"log_timezone = 'UTC'\n";

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(c));
	PQclear(r);
}

static void exec_fail(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	PQclear(r);
}

static void params_ok(PGconn *c, const char *sql, int n, const char *const *v, bool ok)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK, ok);
	PQclear(r);
}

/* The workload whose events the imports must reproduce (see `expected`). */
static void run_workload(const char *conninfo)
{
	char ci[600];
	snprintf(ci, sizeof ci, "%s application_name=scrytest", conninfo);
	/* Session 1: log_statement = all and log_min_duration_statement = 0. */
	PGconn *c = pgtest_connect(ci);
	exec_ok(c, "CREATE TABLE t (id int PRIMARY KEY, name text)");
	exec_ok(c, "INSERT INTO t VALUES (1, 'O''Reilly')");
	const char *v1[] = { "1" };
	params_ok(c, "SELECT name FROM t WHERE id = $1", 1, v1, true);
	PGresult *r = PQprepare(c, "ins", "INSERT INTO t VALUES ($1, $2)", 2, NULL);
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	const char *v2[] = { "2", "multi\nline 'q'" };
	r = PQexecPrepared(c, "ins", 2, v2, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	const char *v3[] = { "3", NULL };
	r = PQexecPrepared(c, "ins", 2, v3, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	exec_ok(c, "SELECT id,\n       name\nFROM t\nWHERE name = 'a''b'");
	exec_fail(c, "SELECT 1/0");
	exec_fail(c, "SELEC 1");
	const char *v4[] = { "1" };
	/* fails while executing: constant folding would fail it at bind time,
	 * before the server logs the execution (see docs/logimport.md) */
	params_ok(c, "SELECT $1::int / (SELECT 0)", 1, v4, false);
	exec_ok(c, "SELECT 1; SELECT 2");
	PQfinish(c);

	/* Session 2: only log_min_duration_statement = 0. */
	c = pgtest_connect(conninfo);
	exec_ok(c, "SET log_statement = 'none'");
	exec_ok(c, "SELECT count(*) FROM t");
	const char *v5[] = { "2" };
	params_ok(c, "SELECT name FROM t WHERE id = $1", 1, v5, true);
	exec_fail(c, "SELECT 1/0");
	PQfinish(c);

	/* Session 3: only log_statement = all. */
	c = pgtest_connect(conninfo);
	exec_ok(c, "SET log_min_duration_statement = -1");
	exec_ok(c, "SELECT 42");
	const char *v6[] = { "a'b", "c" };
	params_ok(c, "SELECT $1::text || $2::text", 2, v6, true);
	exec_fail(c, "SELECT 1/0");
	PQfinish(c);
}

static const char expected[] =
	"S1|Q||CREATE TABLE t (id int PRIMARY KEY, name text)\n"
	"S1|Q||INSERT INTO t VALUES (1, 'O''Reilly')\n"
	"S1|X||SELECT name FROM t WHERE id = $1|1\n"
	"S1|X||INSERT INTO t VALUES ($1, $2)|2|multi\nline 'q'\n"
	"S1|X||INSERT INTO t VALUES ($1, $2)|3|<NULL>\n"
	"S1|Q||SELECT id,\n       name\nFROM t\nWHERE name = 'a''b'\n"
	"S1|Q|22012|SELECT 1/0\n"
	"S1|Q|42601|SELEC 1\n"
	"S1|X|22012|SELECT $1::int / (SELECT 0)|1\n"
	"S1|Q||SELECT 1\n"
	"S1|Q||SELECT 2\n"
	"S2|Q||SET log_statement = 'none'\n"
	"S2|Q||SELECT count(*) FROM t\n"
	"S2|X||SELECT name FROM t WHERE id = $1|2\n"
	"S2|Q|22012|SELECT 1/0\n"
	"S3|Q||SET log_min_duration_statement = -1\n"
	"S3|Q||SELECT 42\n"
	"S3|X||SELECT $1::text || $2::text|a'b|c\n"
	"S3|Q|22012|SELECT 1/0\n";

/* Waits until the collector has written `n` disconnections to the csvlog. */
static void wait_log(const char *dir, int n)
{
	for (int i = 0; i < 100; i++) {
		if (pgtest_system("test $(grep -c 'disconnection:' '%s/pg.csv' 2>/dev/null || echo 0) -ge %d", dir, n) == 0)
			return;
		usleep(100000);
	}
}

static void cluster_setup(void)
{
	pgtest_start(&cluster, server_conf);
	cluster_up = true;
	run_workload(cluster.conninfo);
	/* The collector writes asynchronously: wait for the last disconnection. */
	snprintf(logdir, sizeof logdir, "%s/c/data/log", cluster.dir);
	wait_log(logdir, 3);
	/* For looking at what the server wrote (and refreshing tests/logimport/). */
	const char *keep = getenv("SCRY_TEST_KEEP_LOGS");
	if (keep && *keep)
		pgtest_system("mkdir -p '%s' && cp '%s'/pg.* '%s'/", keep, logdir, keep);
}

static void cluster_teardown(void)
{
	if (cluster_up)
		pgtest_stop(&cluster);
	cluster_up = false;
}

static void check_real_log(scry_log_format fmt, const char *file, const char *prefix)
{
	char path[400], sp[300];
	snprintf(path, sizeof path, "%s/%s", logdir, file);
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	o.format = fmt;
	o.line_prefix = prefix;
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_logimport_file(s, path, &o, &st, &err) == 0, "%s", err.message);
	int n, timed;
	char *got = events_dump(s, &n, &timed);
	ck_assert_str_eq(got, expected);
	free(got);
	ck_assert_uint_eq(st.statements, 19);
	ck_assert_uint_eq(st.failed, 5);
	ck_assert_uint_eq(st.sessions, 3);
	ck_assert_uint_eq(st.skipped, 0);
	ck_assert_uint_eq(st.unpaired_durations, 0);
	/* Durations are known where the server logged them: sessions 1 and 2,
	 * except the failed statements and the split "SELECT 1; SELECT 2". */
	ck_assert_int_eq(timed, 6 + 3);
	ck_assert_str_eq(st.warning, "");

	/* Sessions: database, user, application, end time (read beside the store: it owns its connection). */
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(scry_store_path(s), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *q;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
		"SELECT source, database, user_name, coalesce(application, ''), ended_us IS NOT NULL,"
		" client FROM sessions ORDER BY id", -1, &q, NULL), SQLITE_OK);
	static const char *const src[] = { "csvlog", "jsonlog", "stderr" };
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
		ck_assert_str_eq((const char *)sqlite3_column_text(q, 0), src[fmt]);
		ck_assert_str_eq((const char *)sqlite3_column_text(q, 1), "postgres");
		ck_assert_str_eq((const char *)sqlite3_column_text(q, 2), "postgres");
		ck_assert_str_eq((const char *)sqlite3_column_text(q, 3), i == 0 ? "scrytest" : "");
		ck_assert_int_eq(sqlite3_column_int(q, 4), 1);
		if (fmt != SCRY_LOG_STDERR) /* the prefix has no %h */
			ck_assert_str_eq((const char *)sqlite3_column_text(q, 5), "127.0.0.1");
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, &err), 0);
	ck_assert_int_eq(info.events, 19);
	ck_assert_uint_eq(st.patterns, (uint64_t)info.patterns);
	drop_store(s, sp);
}

START_TEST(real_csvlog)
{
	check_real_log(SCRY_LOG_CSVLOG, "pg.csv", NULL);
}
END_TEST

START_TEST(real_jsonlog)
{
	check_real_log(SCRY_LOG_JSONLOG, "pg.json", NULL);
}
END_TEST

START_TEST(real_stderr)
{
	check_real_log(SCRY_LOG_STDERR, "pg.log", PREFIX);
}
END_TEST

/* The three imports of one workload agree, and a gzip-compressed copy
 * imports the same as the plain file; so does the CLI. */
START_TEST(real_gzip_and_cli)
{
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_store_free(s);
	ck_assert_int_eq(pgtest_system("gzip -c '%s/pg.json' > '%s.json.gz'", logdir, sp), 0);
	ck_assert_int_eq(pgtest_system("'%s' capture log --format jsonlog --store '%s' '%s.json.gz' > '%s.out'",
	                               pgtest_cli(), sp, sp, sp), 0);
	ck_assert_int_eq(pgtest_system("grep -q 'imported 19 statements (5 failed) in 3 sessions' '%s.out'", sp), 0);
	ck_assert_int_eq(pgtest_system("'%s' capture log --format stderr --prefix '%s' --json --store '%s.2' - "
	                               "< '%s/pg.log' | grep -q '\"statements\":19,\"failed\":5,\"sessions\":3'",
	                               pgtest_cli(), PREFIX, sp, logdir), 0);
	/* A prefix without a session or process id is refused with advice. */
	ck_assert_int_eq(pgtest_system("'%s' capture log --format stderr --prefix '%%m %%u ' --store '%s.3' '%s/pg.log' "
	                               "2>&1 | grep -q 'add %%c or %%p'", pgtest_cli(), sp, logdir), 0);
	ck_assert_int_eq(pgtest_system("'%s' capture log --format csvlog --store '%s.3' 2>/dev/null", pgtest_cli(), sp), 2);
	ck_assert_int_eq(pgtest_system("'%s' capture log --help | grep -q 'log_line_prefix'", pgtest_cli()), 0);
	ck_assert_int_eq(scry_store_open(&s, sp, NULL, NULL), 0);
	int n;
	char *got = events_dump(s, &n, NULL);
	ck_assert_str_eq(got, expected);
	free(got);
	scry_store_free(s);
	pgtest_system("rm -f '%s' '%s'.* '%s'-*", sp, sp, sp);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Unit tests on hand-made logs                                        */
/* ------------------------------------------------------------------ */

#define L(pid, rest) "2024-05-01 10:00:00.000 UTC [" #pid "] app@db/psql " rest "\n"

/* statement then duration, and duration with its statement, give one event each. */
START_TEST(both_orders)
{
	static const char log[] =
		L(7, "LOG:  statement: SELECT 1")
		L(7, "LOG:  duration: 1.500 ms")
		L(7, "LOG:  duration: 2.250 ms  statement: SELECT 2")
		L(7, "LOG:  duration: 0.100 ms  parse <unnamed>: SELECT $1")
		L(7, "LOG:  duration: 0.100 ms  bind <unnamed>: SELECT $1")
		L(7, "DETAIL:  parameters: $1 = '5'")
		L(7, "LOG:  duration: 3.000 ms  execute <unnamed>: SELECT $1")
		L(7, "DETAIL:  parameters: $1 = '5'")
		L(7, "LOG:  duration: 9.000 ms");
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	import_text(s, SCRY_LOG_STDERR, PREFIX, log, 7, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q||SELECT 1\nS1|Q||SELECT 2\nS1|X||SELECT $1|5\n");
	free(got);
	ck_assert_uint_eq(st.statements, 3);
	ck_assert_uint_eq(st.unpaired_durations, 1);
	ck_assert_uint_eq(st.skipped, 0);
	scry_event_iter *it;
	const scry_stored_event *ev;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	ck_assert_int_eq(scry_event_iter_next(it, &ev, NULL), 1);
	ck_assert_int_eq(ev->duration_us, 1500);
	ck_assert_int_eq(scry_event_iter_next(it, &ev, NULL), 1);
	ck_assert_int_eq(ev->duration_us, 2250);
	/* logged when it ended: the start is the log time minus the duration */
	ck_assert_int_eq(ev->start_us, 1714557600000000LL - 2250);
	ck_assert_int_eq(scry_event_iter_next(it, &ev, NULL), 1);
	ck_assert_int_eq(ev->duration_us, 3000);
	scry_event_iter_free(it);
	drop_store(s, sp);
}
END_TEST

/* A password the server logged as sent is stored redacted, as the proxy stores it. */
START_TEST(secrets_redacted)
{
	static const char log[] =
		L(7, "LOG:  statement: ALTER ROLE app PASSWORD 'hunter2'")
		L(7, "LOG:  statement: CREATE USER bob WITH PASSWORD 's3cret' VALID UNTIL '2030-01-01'")
		L(7, "LOG:  statement: SELECT 'hunter2'");
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	import_text(s, SCRY_LOG_STDERR, PREFIX, log, 7, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_msg(!strstr(got, "PASSWORD 'hunter2'") && !strstr(got, "s3cret"), "a password reached the store: %s", got);
	ck_assert_msg(strstr(got, "ALTER ROLE app PASSWORD '<redacted>'"), "%s", got);
	ck_assert_msg(strstr(got, "SELECT 'hunter2'"), "an ordinary literal was redacted: %s", got);
	free(got);
	ck_assert_uint_eq(st.statements, 3);
	drop_store(s, sp);
}
END_TEST

/* Garbage is counted and reported with line numbers, never fatal. */
START_TEST(malformed_lines)
{
	static const char log[] =
		"this is not a log line\n"
		L(7, "LOG:  statement: SELECT 1")
		"\tcontinued\n"
		"2024-05-01 10:00:00.000 UTC garbage\n"
		L(8, "DETAIL:  parameters: $1 = '1'")
		L(7, "LOG:  duration: x ms")
		L(7, "LOG:  statement: SELECT 2");
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	import_text(s, SCRY_LOG_STDERR, PREFIX, log, 1000, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q||SELECT 1\ncontinued\nS1|Q||SELECT 2\n");
	free(got);
	ck_assert_uint_eq(st.skipped, 4);
	ck_assert_uint_eq(st.nskip_samples, 4);
	ck_assert_uint_eq(st.skip_samples[0].line, 1);
	ck_assert_str_eq(st.skip_samples[0].text, "this is not a log line");
	ck_assert_uint_eq(st.skip_samples[1].line, 4);
	ck_assert_uint_eq(st.skip_samples[2].line, 5);
	ck_assert_uint_eq(st.skip_samples[3].line, 6);
	ck_assert_uint_eq(st.lines, 7);
	drop_store(s, sp);

	/* csvlog and jsonlog garbage, including a record cut at the end. */
	static const char csv[] =
		"garbage\n"
		"2024-05-01 10:00:00.000 UTC,\"u\",\"d\",9,\"[local]\",abc.9,1,\"idle\",2024-05-01 10:00:00 UTC,3/2,0,LOG,"
		"00000,\"statement: SELECT 'a\"\"\nb'\",,,,,,,,,\"app\",\"client backend\",,0\n"
		"2024-05-01 10:00:00.000 UTC,too,few\n"
		"2024-05-01 10:00:01.000 UTC,\"u\",\"d\",9,\"[local]\",abc.9,2,\"idle\",2024-05-01 10:00:00 UTC,3/2,0,LOG,"
		"00000,\"statement: SELECT 'unterminated";
	s = open_store(sp, sizeof sp);
	import_text(s, SCRY_LOG_CSVLOG, NULL, csv, 5, &st);
	got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q||SELECT 'a\"\nb'\n");
	free(got);
	ck_assert_uint_eq(st.skipped, 3);
	ck_assert_uint_eq(st.skip_samples[0].line, 1);
	ck_assert_uint_eq(st.skip_samples[1].line, 4);
	ck_assert_uint_eq(st.skip_samples[2].line, 5);
	drop_store(s, sp);

	static const char json[] =
		"{\"timestamp\":\"2024-05-01 10:00:00.000 UTC\",\"session_id\":\"a.1\",\"error_severity\":\"LOG\","
		"\"message\":\"statement: SELECT '\\u00e9\\n\\\"'\",\"dbname\":\"d\"}\n"
		"{\"timestamp\":\"2024-05-01 10:00:00.000 UTC\",\"message\":\"statement: broken\n"
		"not json\n"
		"{\"message\":\"statement: SELECT 3\"}\n";
	s = open_store(sp, sizeof sp);
	import_text(s, SCRY_LOG_JSONLOG, NULL, json, 3, &st);
	got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q||SELECT '\xc3\xa9\n\"'\n");
	free(got);
	ck_assert_uint_eq(st.skipped, 3);
	ck_assert_uint_eq(st.skip_samples[2].line, 4);
	drop_store(s, sp);
}
END_TEST

/* A log that starts and ends mid-session: the first duration line has no
 * statement; the error without a logged statement still counts; the
 * statement still waiting at the end is recorded. */
START_TEST(mid_session)
{
	static const char log[] =
		L(7, "LOG:  duration: 1.000 ms")
		L(7, "LOG:  execute S_1: UPDATE t SET a = $1")
		L(7, "DETAIL:  parameters: $1 = 'x'")
		L(7, "ERROR:  22P02: invalid input syntax for type integer: \"x\"")
		L(7, "STATEMENT:  UPDATE t SET a = $1")
		L(7, "ERROR:  syntax error at or near \"SELEC\"")
		L(7, "STATEMENT:  SELEC 1")
		L(7, "LOG:  statement: SELECT\n\t  2");
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	import_text(s, SCRY_LOG_STDERR, PREFIX, log, 1, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|X|22P02|UPDATE t SET a = $1|x\nS1|Q|XX000|SELEC 1\nS1|Q||SELECT\n  2\n");
	free(got);
	ck_assert_uint_eq(st.unpaired_durations, 1);
	ck_assert_uint_eq(st.sessions, 1);
	ck_assert_uint_eq(st.skipped, 0);
	drop_store(s, sp);
}
END_TEST

/* log_line_prefix forms: %c keys, padding, %q on non-session lines,
 * application names with spaces, and the missing-id error. */
START_TEST(prefixes)
{
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	static const char log[] =
		"1714557600.250 664a1b2c.1f4 5 [PostgreSQL JDBC Driver] bob db1 LOG:  statement: SELECT 1\n"
		"1714557600.500 664a1b2c.1f5 1 [] LOG:  checkpoint starting: time\n"
		"1714557600.750 664a1b2c.1f4 6 [PostgreSQL JDBC Driver] bob db1 ERROR:  boom\n"
		"1714557600.750 664a1b2c.1f4 7 [PostgreSQL JDBC Driver] bob db1 STATEMENT:  SELECT 1\n";
	import_text(s, SCRY_LOG_STDERR, "%n %c %-3l [%a] %q%u %d ", log, 11, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q|XX000|SELECT 1\n");
	free(got);
	ck_assert_uint_eq(st.skipped, 0);
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(scry_store_path(s), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *q;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT application, user_name, database, started_us"
	                                    " FROM sessions", -1, &q, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(q, 0), "PostgreSQL JDBC Driver");
	ck_assert_str_eq((const char *)sqlite3_column_text(q, 1), "bob");
	ck_assert_str_eq((const char *)sqlite3_column_text(q, 2), "db1");
	ck_assert_int_eq(sqlite3_column_int64(q, 3), 0x664a1b2cLL * 1000000);
	sqlite3_finalize(q);
	sqlite3_close(db);

	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	o.format = SCRY_LOG_STDERR;
	o.line_prefix = "%m %u@%d ";
	scry_logimport *imp = (void *)1;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_logimport_new(&imp, s, &o, &err), SCRY_EINVAL);
	ck_assert_ptr_null(imp);
	ck_assert_ptr_nonnull(strstr(err.message, "add %c or %p"));
	/* Without a prefix, it is detected from the first lines. */
	o.line_prefix = NULL;
	ck_assert_int_eq(scry_logimport_new(&imp, s, &o, &err), 0);
	scry_logimport_free(imp);
	drop_store(s, sp);
}
END_TEST

/* Sessions: a pid reused after a disconnection is a new session, and
 * interleaved sessions keep their own pending statements. */
START_TEST(sessions)
{
	static const char log[] =
		L(7, "LOG:  statement: SELECT 'a7'")
		L(8, "LOG:  statement: SELECT 'a8'")
		L(7, "LOG:  duration: 1.000 ms")
		L(8, "LOG:  duration: 2.000 ms")
		L(7, "LOG:  disconnection: session time: 0:00:01.000 user=app database=db host=[local]")
		L(7, "LOG:  connection received: host=[local]")
		L(7, "LOG:  connection authorized: user=app database=db")
		L(7, "LOG:  statement: SELECT 'b7'");
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	import_text(s, SCRY_LOG_STDERR, PREFIX, log, 64, &st);
	char *got = events_dump(s, NULL, NULL);
	ck_assert_str_eq(got, "S1|Q||SELECT 'a7'\nS2|Q||SELECT 'a8'\nS3|Q||SELECT 'b7'\n");
	free(got);
	ck_assert_uint_eq(st.sessions, 3);
	drop_store(s, sp);
}
END_TEST

/* More sessions than max_open_sessions and no disconnection lines: the
 * oldest are forgotten (their statements recorded first), nothing is lost. */
START_TEST(session_eviction)
{
	scry_buf log = SCRY_BUF_INIT;
	for (int round = 0; round < 2; round++)
		for (int pid = 100; pid < 120; pid++)
			scry__buf_printf(&log, "2024-05-01 10:00:00.000 UTC [%d] u@d/a LOG:  statement: SELECT %d\n", pid,
			                 round * 1000 + pid);
	char sp[300];
	scry_store *s = open_store(sp, sizeof sp);
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	o.format = SCRY_LOG_STDERR;
	o.line_prefix = PREFIX;
	o.max_open_sessions = 4;
	o.batch_events = 3;
	scry_logimport *imp;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_logimport_new(&imp, s, &o, &err), 0);
	ck_assert_int_eq(scry_logimport_feed(imp, log.ptr, log.size, &err), 0);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	ck_assert_int_eq(scry_logimport_finish(imp, &st, &err), 0);
	scry_logimport_free(imp);
	ck_assert_uint_eq(st.statements, 40);
	ck_assert_uint_eq(st.skipped, 0);
	int n;
	char *got = events_dump(s, &n, NULL);
	ck_assert_int_eq(n, 40);
	for (int k = 100; k < 120; k++) {
		char want[32];
		snprintf(want, sizeof want, "|SELECT %d\n", 1000 + k);
		ck_assert_ptr_nonnull(strstr(got, want));
	}
	free(got);
	scry_buf_dispose(&log);
	drop_store(s, sp);
}
END_TEST

/* Any chunking of a real log gives the same events (fixtures written by
 * the real server, see tests/logimport/). */
START_TEST(fixture_chunks)
{
	static const struct { scry_log_format f; const char *file; } cases[] = {
		{ SCRY_LOG_CSVLOG, "pg.csv" }, { SCRY_LOG_JSONLOG, "pg.json" }, { SCRY_LOG_STDERR, "pg.log" }
	};
	for (size_t c = 0; c < 3; c++) {
		char path[512];
		snprintf(path, sizeof path, "%s/tests/logimport/%s", SCRY_SOURCE_DIR, cases[c].file);
		FILE *f = fopen(path, "rb");
		ck_assert_ptr_nonnull(f);
		static char text[1 << 16];
		size_t n = fread(text, 1, sizeof text - 1, f);
		fclose(f);
		text[n] = 0;
		static const size_t chunks[] = { 1, 3, 64, 4096 };
		for (size_t k = 0; k < 4; k++) {
			char sp[300];
			scry_store *s = open_store(sp, sizeof sp);
			scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
			import_text(s, cases[c].f, cases[c].f == SCRY_LOG_STDERR ? PREFIX : NULL, text, chunks[k], &st);
			char *got = events_dump(s, NULL, NULL);
			ck_assert_str_eq(got, expected);
			free(got);
			ck_assert_uint_eq(st.skipped, 0);
			drop_store(s, sp);
		}
	}
}
END_TEST

/* Damaged logs (bytes replaced by quotes, newlines, tabs, separators) never
 * fail the import or crash it (run under ASan by make test-asan). */
START_TEST(damaged_logs)
{
	static const struct { scry_log_format f; const char *file; } cases[] = {
		{ SCRY_LOG_CSVLOG, "pg.csv" }, { SCRY_LOG_JSONLOG, "pg.json" }, { SCRY_LOG_STDERR, "pg.log" }
	};
	static const char nasty[] = "\"\n\t,{}\\:$' \x01\xff";
	unsigned seed = 12345;
	for (size_t c = 0; c < 3; c++) {
		char path[512];
		snprintf(path, sizeof path, "%s/tests/logimport/%s", SCRY_SOURCE_DIR, cases[c].file);
		FILE *f = fopen(path, "rb");
		ck_assert_ptr_nonnull(f);
		static char orig[1 << 16], text[1 << 16];
		size_t n = fread(orig, 1, sizeof orig - 1, f);
		fclose(f);
		char sp[300];
		scry_store *s = open_store(sp, sizeof sp);
		for (int round = 0; round < 60; round++) {
			memcpy(text, orig, n);
			text[n] = 0;
			for (int k = 0; k < 1 + round % 8; k++) {
				size_t at = rand_r(&seed) % n;
				char ch = nasty[rand_r(&seed) % (sizeof nasty - 1)];
				text[at] = ch ? ch : 'x';
			}
			size_t cut = round % 3 ? n : rand_r(&seed) % n; /* also cut short */
			text[cut] = 0;
			scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
			import_text(s, cases[c].f, cases[c].f == SCRY_LOG_STDERR ? PREFIX : NULL, text, 1 + round * 37,
			            &st);
			ck_assert_uint_le(st.statements, 19 + 8);
		}
		drop_store(s, sp);
	}
}
END_TEST

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "fingerprint count errors" per pattern, sorted: what a capture amounts to. */
static char *patterns_dump(scry_store *s)
{
	scry_pattern_iter *it;
	ck_assert_int_eq(scry_store_patterns(s, &it, NULL), 0);
	const scry_pattern *p;
	char line[64];
	char **lines = NULL;
	size_t n = 0;
	while (scry_pattern_iter_next(it, &p, NULL) == 1) {
		snprintf(line, sizeof line, "%016llx %lld %lld\n", (unsigned long long)p->fingerprint,
		         (long long)p->count, (long long)p->errors);
		lines = realloc(lines, (n + 1) * sizeof *lines);
		lines[n++] = strdup(line);
	}
	scry_pattern_iter_free(it);
	qsort(lines, n, sizeof *lines, cmp_str);
	scry_buf out = SCRY_BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		scry__buf_puts(&out, lines[i]);
		free(lines[i]);
	}
	free(lines);
	char *r = strdup(out.ptr ? out.ptr : "");
	scry_buf_dispose(&out);
	return r;
}

/* The same workload captured by the proxy and imported from the server's
 * log gives the same patterns with the same counts and error counts. */
START_TEST(proxy_vs_log)
{
	pgtest_cluster pc;
	pgtest_start(&pc, server_conf);
	char psp[300], lsp[300];
	scry_store *ps = open_store(psp, sizeof psp);
	scry_proxy_options po = SCRY_PROXY_OPTIONS_INIT;
	char upstream[64];
	snprintf(upstream, sizeof upstream, "127.0.0.1:%d", pc.port);
	po.listen = "127.0.0.1:0";
	po.upstream = upstream;
	scry_proxy *proxy;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_proxy_new(&proxy, ps, &po, &err) == 0, "%s", err.message);
	ck_assert_int_eq(scry_proxy_start(proxy, &err), 0);
	char ci[300];
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres", scry_proxy_port(proxy));
	run_workload(ci);
	scry_proxy_stop(proxy);
	ck_assert_int_eq(scry_proxy_wait(proxy, &err), 0);
	scry_proxy_free(proxy);

	char dir[400];
	snprintf(dir, sizeof dir, "%s/c/data/log", pc.dir);
	wait_log(dir, 3);
	char path[450];
	snprintf(path, sizeof path, "%s/pg.csv", dir);
	scry_store *ls = open_store(lsp, sizeof lsp);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	ck_assert_msg(scry_logimport_file(ls, path, NULL, &st, &err) == 0, "%s", err.message);
	pgtest_stop(&pc);

	char *from_proxy = patterns_dump(ps), *from_log = patterns_dump(ls);
	ck_assert_str_eq(from_log, from_proxy);
	scry_store_info pi = SCRY_STORE_INFO_INIT, li = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(ps, &pi, NULL), 0);
	ck_assert_int_eq(scry_store_info_get(ls, &li, NULL), 0);
	ck_assert_int_eq(li.events, pi.events);
	ck_assert_int_eq(li.sessions, pi.sessions);
	ck_assert_int_eq(li.patterns, pi.patterns);
	ck_assert_int_eq(li.events, 19);
	ck_assert_int_ge(li.patterns, 10);
	free(from_proxy);
	free(from_log);
	drop_store(ps, psp);
	drop_store(ls, lsp);
}
END_TEST

/* Time zones as PostgreSQL writes them, with no separator after them:
 * abbreviations through the system's zone database, numeric offsets, an
 * ambiguous abbreviation noted (and resolved with the server's zone). */
static int64_t first_start(scry_store *s)
{
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	const scry_stored_event *ev;
	ck_assert_int_eq(scry_event_iter_next(it, &ev, NULL), 1);
	int64_t t = ev->start_us;
	scry_event_iter_free(it);
	return t;
}

static int64_t zone_import(const char *zone, const char *lz, scry_logimport_stats *st)
{
	char sp[300], log[400];
	scry_store *s = open_store(sp, sizeof sp);
	snprintf(log, sizeof log,
	         "2024-01-15 10:00:00 %s:10.0.0.1(5432):bob@db:[42]:LOG:  duration: 1.000 ms  statement: SELECT 1\n", lz);
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	o.format = SCRY_LOG_STDERR;
	o.timezone = zone;
	scry_logimport *imp;
	ck_assert_int_eq(scry_logimport_new(&imp, s, &o, NULL), 0);
	ck_assert_int_eq(scry_logimport_feed(imp, log, strlen(log), NULL), 0);
	ck_assert_int_eq(scry_logimport_finish(imp, st, NULL), 0);
	scry_logimport_free(imp);
	ck_assert_uint_eq(st->statements, 1);
	ck_assert_msg(strstr(st->detected, "log_line_prefix '%t:%r:%u@%d:[%p]:'"), "%s: %s", lz, st->detected);
	int64_t t = first_start(s);
	drop_store(s, sp);
	return t;
}

START_TEST(time_zones)
{
	const int64_t utc10 = 1705312800LL * 1000000; /* 2024-01-15 10:00:00 UTC */
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	ck_assert_int_eq(zone_import(NULL, "UTC", &st), utc10 - 1000);
	ck_assert_str_eq(st.warning, "");
	ck_assert_int_eq(zone_import(NULL, "CET", &st), utc10 - 3600LL * 1000000 - 1000);
	ck_assert_str_eq(st.warning, "");
	ck_assert_int_eq(zone_import(NULL, "EST", &st), utc10 + 5 * 3600LL * 1000000 - 1000);
	ck_assert_int_eq(zone_import(NULL, "+0530", &st), utc10 - 19800LL * 1000000 - 1000);
	ck_assert_int_eq(zone_import(NULL, "-03", &st), utc10 + 3 * 3600LL * 1000000 - 1000);
	/* IST: India, Ireland and Israel: noted, read as UTC ... */
	ck_assert_int_eq(zone_import(NULL, "IST", &st), utc10 - 1000);
	ck_assert_ptr_nonnull(strstr(st.warning, "'IST' is ambiguous"));
	ck_assert_ptr_nonnull(strstr(st.warning, "--timezone"));
	/* ... and exact with the server's log_timezone. */
	ck_assert_int_eq(zone_import("Asia/Kolkata", "IST", &st), utc10 - 19800LL * 1000000 - 1000);
	ck_assert_str_eq(st.warning, "");
	ck_assert_int_eq(zone_import(NULL, "QQQ", &st), utc10 - 1000);
	ck_assert_ptr_nonnull(strstr(st.warning, "'QQQ' is not in the system's zone database"));
}
END_TEST

/* csvlog: the same events and skipped lines whatever the chunking, on
 * records with malformed quotes too. */
START_TEST(csv_chunking)
{
	static const char log[] =
		"2024-05-01 10:00:00.000 UTC,\"u\",\"d\",1,\"h:1\",a.1,1,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT 'x\"\"y'\",,,,,,,,,\"psql\",client backend,,0\n"
		"2024-05-01 10:00:01.000 UTC,\"u\",\"d\",1,\"h:1\",a.1,2,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT \"broken\"\",,,,,,,,,\"psql\",client backend,,0\n"
		"2024-05-01 10:00:02.000 UTC,\"u\",\"d\",1,\"h:1\",a.1,3,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT 2\",,,,,,,,,\"psql\",client backend,,0\n"
		"\"dangling quote\n"
		"2024-05-01 10:00:02.500 UTC,u\"x,d,1,\"h:1\",a.1,3,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT 25\",,,,,,,,,\"psql\",client backend,,0\n"
		"2024-05-01 10:00:03.000 UTC,\"u\",\"d\",1,\"h:1\",a.1,4,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT\n 3\",,,,,,,,,\"psql\",client backend,,0\n"
		"2024-05-01 10:00:04.000 UTC,\"u\",\"d\",1,\"h:1\",a.1,5,,2024-05-01 10:00:00 UTC,,0,LOG,00000,"
		"\"statement: SELECT 4\",,,,,,,,,\"psql\",client backend,,0\n";
	char *ref = NULL;
	uint64_t ref_skipped = 0;
	static const size_t chunks[] = { sizeof log, 1, 2, 7, 100 };
	for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
		char sp[300];
		scry_store *s = open_store(sp, sizeof sp);
		scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
		import_text(s, SCRY_LOG_CSVLOG, NULL, log, chunks[k], &st);
		char *got = events_dump(s, NULL, NULL);
		if (!ref) {
			ref = got;
			ref_skipped = st.skipped;
			ck_assert_ptr_nonnull(strstr(ref, "SELECT 4"));
		} else {
			ck_assert_str_eq(got, ref);
			ck_assert_uint_eq(st.skipped, ref_skipped);
			free(got);
		}
		drop_store(s, sp);
	}
	free(ref);
}
END_TEST

/* log_line_prefix detection on prefixes of tools and services and on one
 * no list knows (inferred from the lines). */
START_TEST(prefix_detection)
{
	static const struct { const char *want, *l1, *l2; } cases[] = {
		{ "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
		  "2024-05-01 10:00:00 UTC [123]: [1-1] user=bob,db=shop,app=my app,client=10.0.0.1 LOG:  statement: SELECT 1",
		  "2024-05-01 10:00:01 UTC [123]: [2-1] user=bob,db=shop,app=my app,client=10.0.0.1 LOG:  duration: 1.500 ms" },
		{ "%m [%p]: [%l-1] db=%d,user=%u ",
		  "2024-05-01 10:00:00.100 UTC [124]: [1-1] db=shop,user=bob LOG:  statement: SELECT 1",
		  "2024-05-01 10:00:00.200 UTC [124]: [2-1] db=shop,user=bob LOG:  duration: 1.500 ms" },
		{ "%t-%c-",
		  "2024-05-01 10:00:00 UTC-664a1b2c.7b-LOG:  statement: SELECT 1",
		  "2024-05-01 10:00:00 UTC-664a1b2c.7b-LOG:  duration: 1.500 ms" },
		{ "%m %u %d %p ",
		  "2024-05-01 10:00:00.100 UTC bob shop 125 LOG:  statement: SELECT 1",
		  "2024-05-01 10:00:00.200 UTC bob shop 125 LOG:  duration: 1.500 ms" },
		{ "%m [%p] %q%u@%d ",
		  "2024-05-01 10:00:00.100 CEST [126] LOG:  checkpoint starting: time",
		  "2024-05-01 10:00:00.200 CEST [127] bob@shop LOG:  duration: 1.500 ms  statement: SELECT 1" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char sp[300], log[600], want[300];
		scry_store *s = open_store(sp, sizeof sp);
		snprintf(log, sizeof log, "%s\n%s\n", cases[i].l1, cases[i].l2);
		scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
		o.format = SCRY_LOG_AUTO;
		scry_logimport *imp;
		scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
		scry_error err = SCRY_ERROR_INIT;
		ck_assert_int_eq(scry_logimport_new(&imp, s, &o, &err), 0);
		ck_assert_msg(scry_logimport_feed(imp, log, strlen(log), &err) == 0, "%s", err.message);
		ck_assert_msg(scry_logimport_finish(imp, &st, &err) == 0, "%s", err.message);
		scry_logimport_free(imp);
		snprintf(want, sizeof want, "format stderr, log_line_prefix '%s' (matches 2 of the first 2 lines)",
		         cases[i].want);
		ck_assert_str_eq(st.detected, want);
		ck_assert_uint_eq(st.statements, 1);
		ck_assert_uint_eq(st.skipped, 0);
		int timed;
		char *got = events_dump(s, NULL, &timed);
		ck_assert_ptr_nonnull(strstr(got, "SELECT 1"));
		ck_assert_int_eq(timed, 1);
		free(got);
		drop_store(s, sp);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("logimport");
	TCase *u = tcase_create("unit");
	tcase_add_test(u, both_orders);
	tcase_add_test(u, secrets_redacted);
	tcase_add_test(u, malformed_lines);
	tcase_add_test(u, mid_session);
	tcase_add_test(u, prefixes);
	tcase_add_test(u, sessions);
	tcase_add_test(u, session_eviction);
	tcase_add_test(u, fixture_chunks);
	tcase_add_test(u, damaged_logs);
	tcase_add_test(u, time_zones);
	tcase_add_test(u, csv_chunking);
	tcase_add_test(u, prefix_detection);
	suite_add_tcase(s, u);
	TCase *r = tcase_create("server");
	tcase_add_unchecked_fixture(r, cluster_setup, cluster_teardown);
	tcase_set_timeout(r, 120);
	tcase_add_test(r, real_csvlog);
	tcase_add_test(r, real_jsonlog);
	tcase_add_test(r, real_stderr);
	tcase_add_test(r, real_gzip_and_cli);
	suite_add_tcase(s, r);
	TCase *px = tcase_create("proxy");
	tcase_set_timeout(px, 120);
	tcase_add_test(px, proxy_vs_log);
	suite_add_tcase(s, px);
	return s;
}

int main(void)
{
	return pgtest_run_suite(suite(), 1);
}
