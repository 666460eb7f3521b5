/* tests/test_replay.c - the replay engine against a real PostgreSQL server. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "pgtest.h"
#include "scry/scry.h"

static pgtest_cluster g_pg;
static char g_store_path[256];

/* A fresh store for each test. */
static scry_store *new_store(void)
{
	static int n;
	snprintf(g_store_path, sizeof g_store_path, "/tmp/scry-test-replay-%d-%d.db", (int)getpid(), n++);
	unlink(g_store_path);
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&s, g_store_path, NULL, &err) == 0, "%s", err.message);
	return s;
}

static void drop_store(scry_store *s)
{
	scry_store_free(s);
	char p[300];
	unlink(g_store_path);
	snprintf(p, sizeof p, "%s-wal", g_store_path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", g_store_path);
	unlink(p);
}

static int64_t add_session(scry_store *s, int64_t start)
{
	scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "postgres", "postgres", "test", "[local]", start };
	int64_t id = 0;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_session_add(s, &info, &id, &err) == 0, "%s", err.message);
	return id;
}

static void add_simple(scry_store *s, int64_t session, int64_t start, const char *sql, int64_t rows)
{
	scry_event ev;
	memset(&ev, 0, sizeof ev);
	ev.session_id = session;
	ev.start_us = start;
	ev.duration_us = 100;
	ev.kind = SCRY_EVENT_SIMPLE;
	ev.query = sql;
	ev.rows = rows;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_append(s, &ev, 1, sizeof(scry_event), &err) == 0, "%s", err.message);
}

static void add_ext(scry_store *s, int64_t session, int64_t start, const char *sql, const scry_param *p, int np)
{
	scry_event ev;
	memset(&ev, 0, sizeof ev);
	ev.session_id = session;
	ev.start_us = start;
	ev.duration_us = 100;
	ev.kind = SCRY_EVENT_EXTENDED;
	ev.query = sql;
	ev.params = p;
	ev.nparams = np;
	ev.rows = -1;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_append(s, &ev, 1, sizeof(scry_event), &err) == 0, "%s", err.message);
}

typedef struct collected {
	int n;
	int64_t event[4096];
	int round[4096];
	int64_t rows[4096];
	char sqlstate[4096][6];
} collected;

static collected *collect(scry_store *s, int64_t run_id)
{
	collected *c = calloc(1, sizeof *c);
	scry_sample_iter *it = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_samples(s, run_id, &it, &err), 0);
	const scry_stored_sample *smp;
	while (scry_sample_iter_next(it, &smp, &err) == 1 && c->n < 4096) {
		c->event[c->n] = smp->event_id;
		c->round[c->n] = smp->round;
		c->rows[c->n] = smp->rows;
		memcpy(c->sqlstate[c->n], smp->sqlstate, 6);
		c->n++;
	}
	scry_sample_iter_free(it);
	return c;
}

static char g_db_conninfo[512];

static void setup_db(void)
{
	pgtest_exec(g_pg.conninfo,
		"DROP TABLE IF EXISTS t, acct, hist CASCADE;"
		"CREATE TABLE t(id int PRIMARY KEY, v text);"
		"INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;"
		"CREATE TABLE acct(id int PRIMARY KEY, balance bigint NOT NULL);"
		"INSERT INTO acct SELECT g, 1000 FROM generate_series(1, 50) g;"
		"CREATE TABLE hist(id serial PRIMARY KEY, acct int, delta bigint, note text);");
	snprintf(g_db_conninfo, sizeof g_db_conninfo, "%s", g_pg.conninfo);
}

START_TEST(test_samples_correct)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	int64_t a = add_session(s, t0), b = add_session(s, t0 + 10);
	add_simple(s, a, t0 + 1, "SELECT * FROM t WHERE id <= 10", 10);
	add_simple(s, a, t0 + 2, "SELECT count(*) FROM t", 1);
	add_simple(s, b, t0 + 11, "SELECT * FROM no_such_table", -1);
	add_simple(s, b, t0 + 12, "SELECT v FROM t WHERE id = 5", 1);
	add_simple(s, b, t0 + 13, "SELECT 1/0", -1);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.repeat = 3;
	o.warmup = 1;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "base", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 15);
	ck_assert_int_eq(res.errors, 6);
	ck_assert_int_eq(res.timeouts, 0);
	collected *c = collect(s, res.run_id);
	ck_assert_int_eq(c->n, 15);
	int per_event[6] = { 0 };
	for (int i = 0; i < c->n; i++) {
		ck_assert(c->event[i] >= 1 && c->event[i] <= 5);
		ck_assert(c->round[i] >= 0 && c->round[i] < 3);
		per_event[c->event[i]]++;
		switch (c->event[i]) {
		case 1: ck_assert_int_eq(c->rows[i], 10); ck_assert_str_eq(c->sqlstate[i], ""); break;
		case 2: ck_assert_int_eq(c->rows[i], 1); break;
		case 3: ck_assert_str_eq(c->sqlstate[i], "42P01"); break;
		case 4: ck_assert_int_eq(c->rows[i], 1); break;
		case 5: ck_assert_str_eq(c->sqlstate[i], "22012"); break;
		}
	}
	for (int e = 1; e <= 5; e++)
		ck_assert_int_eq(per_event[e], 3);
	free(c);
	int64_t run_id = 0;
	ck_assert_int_eq(scry_store_run_find(s, "base", &run_id, &err), 0);
	ck_assert_int_eq(run_id, res.run_id);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_extended_params)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	int64_t a = add_session(s, t0);
	/* text param with explicit int4 type */
	scry_param p1[1] = { { 23, SCRY_PARAM_TEXT, "7", 1 } };
	add_ext(s, a, t0 + 1, "SELECT v FROM t WHERE id = $1", p1, 1);
	/* binary int4 param: 42 in network order */
	static const char be42[4] = { 0, 0, 0, 42 };
	scry_param p2[1] = { { 23, SCRY_PARAM_BINARY, be42, 4 } };
	add_ext(s, a, t0 + 2, "SELECT v FROM t WHERE id = $1", p2, 1);
	/* NULL param: IS NOT DISTINCT FROM NULL returns no rows; coalesce shows NULL arrived */
	scry_param p3[2] = { { 25, SCRY_PARAM_TEXT, NULL, -1 }, { 0, SCRY_PARAM_TEXT, "3", 1 } };
	add_ext(s, a, t0 + 3, "SELECT 1 FROM t WHERE $1::text IS NULL AND id <= $2::int", p3, 2);
	/* unspecified type (0), text format */
	scry_param p4[1] = { { 0, SCRY_PARAM_TEXT, "90", 2 } };
	add_ext(s, a, t0 + 4, "SELECT id FROM t WHERE id > $1", p4, 1);
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, NULL, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "ext", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 4);
	ck_assert_int_eq(res.errors, 0);
	collected *c = collect(s, res.run_id);
	ck_assert_int_eq(c->n, 4);
	for (int i = 0; i < c->n; i++) {
		ck_assert_str_eq(c->sqlstate[i], "");
		int64_t want[] = { 0, 1, 1, 3, 10 };
		ck_assert_int_eq(c->rows[i], want[c->event[i]]);
	}
	free(c);
	/* a connection string whose first host is refused: libpq moves to another socket while connecting */
	char multi[256];
	snprintf(multi, sizeof multi, "host=127.0.0.1,127.0.0.1 port=1,%d user=postgres dbname=postgres", g_pg.port);
	ck_assert_msg(scry_replay_run(r, multi, "ext-multi", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 4);
	ck_assert_int_eq(res.errors, 0);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

static char *checksum(void)
{
	return pgtest_query_value(g_db_conninfo,
		"SELECT md5(coalesce((SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t), '') || '|' ||"
		" coalesce((SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM acct), '') || '|' ||"
		" coalesce((SELECT string_agg(id || ':' || acct || ':' || delta, ',' ORDER BY id) FROM hist), ''))");
}

static void add_write_workload(scry_store *s, int sessions)
{
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < sessions; k++) {
		int64_t a = add_session(s, t0 + k);
		char sql[256];
		/* a captured transaction */
		add_simple(s, a, t0 + k * 10 + 1, "BEGIN", -1);
		snprintf(sql, sizeof sql, "UPDATE acct SET balance = balance - 10 WHERE id = %d", k % 50 + 1);
		add_simple(s, a, t0 + k * 10 + 2, sql, 1);
		snprintf(sql, sizeof sql, "INSERT INTO hist(acct, delta) VALUES (%d, -10)", k % 50 + 1);
		add_simple(s, a, t0 + k * 10 + 3, sql, 1);
		add_simple(s, a, t0 + k * 10 + 4, "COMMIT", -1);
		/* autocommit writes */
		add_simple(s, a, t0 + k * 10 + 5, "DELETE FROM t WHERE id = 3", 1);
		add_simple(s, a, t0 + k * 10 + 6, "UPDATE t SET v = 'changed'", 100);
		scry_param p[2] = { { 23, SCRY_PARAM_TEXT, "1", 1 }, { 23, SCRY_PARAM_TEXT, "5", 1 } };
		add_ext(s, a, t0 + k * 10 + 7, "UPDATE acct SET balance = balance + $1 WHERE id = $2", p, 2);
		add_ext(s, a, t0 + k * 10 + 8, "BEGIN", NULL, 0);
		add_ext(s, a, t0 + k * 10 + 9, "INSERT INTO t(id, v) VALUES (1000 + $1, 'new')", p, 1);
		add_ext(s, a, t0 + k * 10 + 9, "END", NULL, 0);
		/* session state */
		add_simple(s, a, t0 + k * 10 + 9, "SET search_path = public", -1);
		add_simple(s, a, t0 + k * 10 + 9, "SELECT count(*) FROM acct", 1);
		/* SQL-level PREPARE must persist on the session's connection for EXECUTE */
		add_simple(s, a, t0 + k * 10 + 9, "PREPARE q(int) AS SELECT v FROM t WHERE id <= $1", -1);
		add_simple(s, a, t0 + k * 10 + 9, "EXECUTE q(5)", 5);
	}
}

START_TEST(test_rollback_isolation)
{
	setup_db();
	char *before = checksum();
	scry_store *s = new_store();
	add_write_workload(s, 20);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.concurrency = 4;
	o.repeat = 2;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "rb", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 20 * 14 * 2);
	/* Writes really ran: their row counts are those of the captured statements. */
	collected *c = collect(s, res.run_id);
	int updates_all = 0, executes = 0;
	for (int i = 0; i < c->n; i++) {
		ck_assert_msg(c->sqlstate[i][0] == 0 || !strcmp(c->sqlstate[i], "40P01"),
		              "event %lld failed with %s", (long long)c->event[i], c->sqlstate[i]);
		if (c->rows[i] == 100)
			updates_all++;
		if (c->rows[i] == 5)
			executes++;
	}
	ck_assert_int_eq(updates_all, 40);
	ck_assert_int_eq(executes, 40);
	free(c);
	char *after = checksum();
	ck_assert_str_eq(before, after);
	free(before);
	free(after);

	/* writes=skip: nothing that may write runs, and nothing changes */
	scry_replay_free(r);
	o.writes = SCRY_WRITES_SKIP;
	o.repeat = 1;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "skip", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.skipped, 20 * 7);
	ck_assert_int_eq(res.executions, 20 * 7);
	before = checksum();
	/* writes=execute: the database does change */
	scry_replay_free(r);
	o.writes = SCRY_WRITES_EXECUTE;
	o.concurrency = 1;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "exec", &res, &err) == 0, "%s", err.message);
	after = checksum();
	ck_assert_str_ne(before, after);
	free(before);
	free(after);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_timeout_and_reconnect)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	int64_t a = add_session(s, t0);
	add_simple(s, a, t0 + 1, "SELECT pg_sleep(2)", 1);
	add_simple(s, a, t0 + 2, "SELECT pg_terminate_backend(pg_backend_pid())", -1);
	add_simple(s, a, t0 + 3, "SELECT 42", 1);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.timeout_ms = 200;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "to", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 3);
	ck_assert_int_eq(res.timeouts, 1);
	ck_assert_int_eq(res.reconnects, 1);
	ck_assert_int_eq(res.errors, 2);
	collected *c = collect(s, res.run_id);
	ck_assert_int_eq(c->n, 3);
	for (int i = 0; i < 3; i++) {
		if (c->event[i] == 1)
			ck_assert_str_eq(c->sqlstate[i], "57014");
		else if (c->event[i] == 2)
			ck_assert_str_eq(c->sqlstate[i], "57P01");
		else
			ck_assert_str_eq(c->sqlstate[i], "");
	}
	free(c);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_wrong_password_and_down)
{
	setup_db();
	pgtest_exec(g_pg.conninfo,
		"SET password_encryption = 'scram-sha-256';"
		"DROP ROLE IF EXISTS pwuser; CREATE ROLE pwuser LOGIN PASSWORD 'right-secret';");
	char *hba = pgtest_query_value(g_pg.conninfo, "SHOW hba_file");
	ck_assert_int_eq(pgtest_system("sed -i '1i host all pwuser 127.0.0.1/32 scram-sha-256' '%s'", hba), 0);
	free(hba);
	free(pgtest_query_value(g_pg.conninfo, "SELECT pg_reload_conf()::text"));
	usleep(300000);
	scry_store *s = new_store();
	int64_t a = add_session(s, 1700000000000000LL);
	add_simple(s, a, 1700000000000001LL, "SELECT 1", 1);
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, NULL, &err), 0);
	char ci[512];
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=pwuser password=wrong dbname=postgres", g_pg.port);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_int_eq(scry_replay_run(r, ci, "pw", &res, &err), SCRY_ECONNECT);
	ck_assert_msg(strstr(err.message, "127.0.0.1") && strstr(err.message, "pwuser") &&
	              strstr(err.message, "password"), "%s", err.message);
	int64_t run_id;
	ck_assert_int_eq(scry_store_run_find(s, "pw", &run_id, &err), SCRY_ENOTFOUND);
	/* the right password works */
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=pwuser password=right-secret dbname=postgres", g_pg.port);
	ck_assert_msg(scry_replay_run(r, ci, "pw", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 1);
	/* a server that is down: nothing listens on port 1 */
	scry_error_clear(&err);
	ck_assert_int_eq(scry_replay_run(r, "host=127.0.0.1 port=1 user=postgres connect_timeout=2", "down", &res, &err),
	                 SCRY_ECONNECT);
	ck_assert_msg(strstr(err.message, "port 1") && strstr(err.message, "running"), "%s", err.message);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

static void *cancel_later(void *arg)
{
	usleep(400000);
	scry_replay_cancel(arg);
	return NULL;
}

START_TEST(test_cancel)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < 4; k++) {
		int64_t a = add_session(s, t0);
		add_simple(s, a, t0 + 1, "SELECT 1", 1);
		for (int i = 0; i < 20; i++)
			add_simple(s, a, t0 + 2 + i, "SELECT pg_sleep(0.1)", 1);
	}
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, NULL, &err), 0);
	pthread_t th;
	pthread_create(&th, NULL, cancel_later, r);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_int_eq(scry_replay_run(r, g_db_conninfo, "cancelled", &res, &err), SCRY_ECANCELED);
	pthread_join(th, NULL);
	/* stopped part-way (all of it takes over 2 s), with what ran recorded */
	ck_assert_msg(res.executions >= 4 && res.executions < 84, "%lld executions", (long long)res.executions);
	collected *c = collect(s, res.run_id);
	ck_assert_int_eq(c->n, res.executions);
	free(c);
	/* the replayer is usable again after a cancel */
	scry_store *s2 = new_store();
	int64_t a = add_session(s2, t0);
	add_simple(s2, a, t0 + 1, "SELECT 1", 1);
	scry_replay_free(r);
	ck_assert_int_eq(scry_replay_new(&r, s2, NULL, &err), 0);
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "again", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 1);
	scry_replay_free(r);
	drop_store(s2);
	snprintf(g_store_path, sizeof g_store_path, "%s", scry_store_path(s));
	drop_store(s);
}
END_TEST

/* Two fresh copies of the test database, clone_a and clone_b; their conninfos in a and b. */
static void make_clones(char a[512], char b[512])
{
	pgtest_exec(g_pg.conninfo, "DROP DATABASE IF EXISTS clone_a");
	pgtest_exec(g_pg.conninfo, "DROP DATABASE IF EXISTS clone_b");
	pgtest_exec(g_pg.conninfo, "CREATE DATABASE clone_a TEMPLATE postgres");
	pgtest_exec(g_pg.conninfo, "CREATE DATABASE clone_b TEMPLATE postgres");
	pgtest_conninfo_db(&g_pg, "clone_a", a, 512);
	pgtest_conninfo_db(&g_pg, "clone_b", b, 512);
}

START_TEST(test_ab_pairing)
{
	setup_db();
	char cia[512], cib[512];
	make_clones(cia, cib);
	/* the "migration" on B drops a column A still has */
	pgtest_exec(cib, "ALTER TABLE t DROP COLUMN v");
	scry_store *s = new_store();
	add_write_workload(s, 6);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.repeat = 2;
	o.concurrency = 3;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result ra = SCRY_REPLAY_RESULT_INIT, rb = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run_ab(r, cia, "A", cib, "B", &ra, &rb, &err) == 0, "%s", err.message);
	ck_assert_int_eq(ra.executions, 6 * 14 * 2);
	ck_assert_int_eq(rb.executions, 6 * 14 * 2);
	ck_assert_int_ne(ra.run_id, rb.run_id);
	collected *ca = collect(s, ra.run_id), *cb = collect(s, rb.run_id);
	ck_assert_int_eq(ca->n, cb->n);
	int b_errors = 0;
	for (int i = 0; i < ca->n; i++) {
		ck_assert_int_eq(ca->event[i], cb->event[i]);
		ck_assert_int_eq(ca->round[i], cb->round[i]);
		ck_assert_str_eq(ca->sqlstate[i], "");
		if (!strcmp(cb->sqlstate[i], "42703"))
			b_errors++;
	}
	/* UPDATE t SET v, INSERT INTO t(id, v) and PREPARE ... SELECT v fail on B only
	 * (42703), and so does the EXECUTE of the statement that was not prepared */
	ck_assert_int_eq(b_errors, 6 * 3 * 2);
	ck_assert_int_eq(rb.errors, 6 * 4 * 2);
	ck_assert_int_eq(ra.errors, 0);
	free(ca);
	free(cb);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

/*
 * What the drivers really did, through the API and on two targets at once:
 * a row-limited portal (replayed as DECLARE + FETCH 7: 100 rows in 15
 * round trips), text and binary COPY FROM STDIN with their data, COPY TO
 * STDOUT counted once, a session's startup parameters (search_path only in
 * `options`: the table exists in schema app only), a text truncated at
 * capture (skipped), and a pipelined autocommit write (rolled back).
 */
START_TEST(test_driver_events_ab)
{
	setup_db();
	pgtest_exec(g_pg.conninfo, "DROP DATABASE IF EXISTS drv_a");
	pgtest_exec(g_pg.conninfo, "DROP DATABASE IF EXISTS drv_b");
	pgtest_exec(g_pg.conninfo, "CREATE DATABASE drv_a TEMPLATE postgres");
	pgtest_exec(g_pg.conninfo, "CREATE DATABASE drv_b TEMPLATE postgres");
	char cia[512], cib[512];
	pgtest_conninfo_db(&g_pg, "drv_a", cia, sizeof cia);
	pgtest_conninfo_db(&g_pg, "drv_b", cib, sizeof cib);
	const char *schema = "CREATE SCHEMA app; CREATE TABLE app.c(a int, b text);"
	                     "INSERT INTO app.c SELECT g, 'x' FROM generate_series(1, 100) g";
	pgtest_exec(cia, schema);
	pgtest_exec(cib, schema);
	scry_store *s = new_store();
	int64_t sid = add_session(s, 1000000);
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_session_set_params(s, sid, "options=-c search_path=app\nDateStyle=ISO, DMY", &err) == 0,
	              "%s", err.message);
	/* binary COPY: signature, flags, extension length, one tuple (2 fields: int4 7, text "bin"), trailer */
	static const char bin[] = "PGCOPY\n\377\r\n\0" "\0\0\0\0" "\0\0\0\0"
	                          "\0\2" "\0\0\0\4" "\0\0\0\7" "\0\0\0\3" "bin" "\377\377";
	scry_event ev[6];
	memset(ev, 0, sizeof ev);
	const char *q[6] = { "SELECT a FROM c WHERE a > $1 ORDER BY a", "COPY c FROM STDIN", "COPY c FROM STDIN (FORMAT binary)",
	                     "COPY c TO STDOUT", "SELECT 'this text was cut at the capture li", "UPDATE c SET b = 'y' WHERE a <= 10" };
	scry_param p0 = { 23, SCRY_PARAM_TEXT, "0", 1 };
	for (int i = 0; i < 6; i++) {
		ev[i].session_id = sid;
		ev[i].start_us = 1000000 + i * 1000;
		ev[i].duration_us = 100;
		ev[i].kind = i >= 1 && i <= 3 ? SCRY_EVENT_COPY : SCRY_EVENT_SIMPLE;
		ev[i].query = q[i];
		ev[i].rows = -1;
	}
	ev[0].kind = SCRY_EVENT_EXTENDED;
	ev[0].params = &p0;
	ev[0].nparams = 1;
	ev[0].rows = 100;
	ev[0].fetch_rows = 7;
	ev[1].copy_data = "1\tone\n2\ttwo\n";
	ev[1].copy_len = 12;
	ev[1].rows = 2;
	ev[2].copy_data = bin;
	ev[2].copy_len = sizeof bin - 1;
	ev[2].rows = 1;
	ev[3].rows = 103;
	ev[4].flags = SCRY_EVENT_F_TRUNCATED;
	ev[5].rows = 10;
	ck_assert_msg(scry_store_append(s, ev, 6, sizeof ev[0], &err) == 0, "%s", err.message);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.writes = SCRY_WRITES_ROLLBACK;
	scry_replay *r = NULL;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result ra = SCRY_REPLAY_RESULT_INIT, rb = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run_ab(r, cia, "A", cib, "B", &ra, &rb, &err) == 0, "%s", err.message);
	ck_assert_int_eq(ra.executions, 5);
	ck_assert_int_eq(ra.skipped, 1); /* the truncated text */
	ck_assert_int_eq(ra.errors, 0);
	ck_assert_int_eq(rb.errors, 0);
	collected *ca = collect(s, ra.run_id), *cb = collect(s, rb.run_id);
	ck_assert_int_eq(ca->n, 5);
	for (int i = 0; i < ca->n; i++) {
		int k = (int)(ca->event[i] - ca->event[0]);
		int64_t want = k == 0 ? 100 : k == 1 ? 2 : k == 2 ? 1 : k == 3 ? 100 : 10;
		ck_assert_msg(ca->rows[i] == want && cb->rows[i] == want, "event %d: rows %lld/%lld, want %lld (%s/%s)", k,
		              (long long)ca->rows[i], (long long)cb->rows[i], (long long)want, ca->sqlstate[i], cb->sqlstate[i]);
	}
	/* Everything was rolled back: COPY's rows and the UPDATE are gone on both. */
	for (int t = 0; t < 2; t++) {
		char *v = pgtest_query_value(t ? cib : cia, "SELECT count(*) || '/' || count(*) FILTER (WHERE b = 'y') FROM app.c");
		ck_assert_str_eq(v, "100/0");
		free(v);
	}
	free(ca);
	free(cb);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

/*
 * Sessions that lock the same rows in opposite orders, one row per captured
 * transaction, replayed A/B with --repeat: a runner replays a whole
 * transaction on one clone before the other, so it never waits on one clone
 * while holding locks on the other. Interleaved statement by statement, the
 * pairs deadlock through scry and only statement_timeout ends them.
 */
START_TEST(test_ab_crossed_locks)
{
	setup_db();
	char cia[512], cib[512];
	make_clones(cia, cib);
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < 8; k++) {
		int64_t a = add_session(s, t0 + k);
		int first = k % 2 ? 2 : 1, second = k % 2 ? 1 : 2;
		for (int j = 0; j < 2; j++) {
			char sql[128];
			add_simple(s, a, t0 + k * 100 + j * 10 + 1, "BEGIN", -1);
			if (k % 2) /* the other parity of statement positions */
				add_simple(s, a, t0 + k * 100 + j * 10 + 2, "SELECT 1", 1);
			snprintf(sql, sizeof sql, "UPDATE acct SET balance = balance + 1 WHERE id = %d", j ? second : first);
			add_simple(s, a, t0 + k * 100 + j * 10 + 3, sql, 1);
			add_simple(s, a, t0 + k * 100 + j * 10 + 4, "SELECT pg_sleep(0.01)", 1);
			add_simple(s, a, t0 + k * 100 + j * 10 + 5, "COMMIT", -1);
		}
	}
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.repeat = 5;
	o.concurrency = 8;
	o.timeout_ms = 5000;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result ra = SCRY_REPLAY_RESULT_INIT, rb = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run_ab(r, cia, "A", cib, "B", &ra, &rb, &err) == 0, "%s", err.message);
	ck_assert_int_eq(ra.executions, rb.executions);
	ck_assert_int_eq(ra.executions, (4 * 8 + 5 * 8) * 5); /* 4 sessions of 2 x 4 statements, 4 of 2 x 5 */
	ck_assert_int_eq(ra.timeouts, 0);
	ck_assert_int_eq(rb.timeouts, 0);
	ck_assert_int_eq(ra.errors, 0);
	ck_assert_int_eq(rb.errors, 0);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_timed_mode)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < 3; k++) {
		int64_t a = add_session(s, t0);
		for (int i = 0; i < 10; i++)
			add_simple(s, a, t0 + k * 1000 + i * 30000, "SELECT 1", 1);
	}
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.mode = SCRY_REPLAY_TIMED;
	o.speed = 2.0;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "timed", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 30);
	/* 270 ms of capture at speed 2 is at least 135 ms of replay */
	ck_assert_msg(res.elapsed_us >= 135000, "elapsed %lld", (long long)res.elapsed_us);
	ck_assert(res.lag_max_us >= res.lag_p99_us && res.lag_p99_us >= res.lag_p50_us);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_fd_limit)
{
	setup_db();
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < 300; k++)
		add_simple(s, add_session(s, t0), t0 + 1, "SELECT 1", 1);
	struct rlimit old, low;
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = 128;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.concurrency = 300;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	int rc = scry_replay_run(r, g_db_conninfo, "fds", &res, &err);
	setrlimit(RLIMIT_NOFILE, &old);
	ck_assert_int_eq(rc, SCRY_ELIMIT);
	ck_assert_msg(strstr(err.message, "ulimit -n") && strstr(err.message, "300 sessions"), "%s", err.message);
	/* within the limit it runs */
	scry_replay_free(r);
	o.concurrency = 50;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	rc = scry_replay_run(r, g_db_conninfo, "fds", &res, &err);
	setrlimit(RLIMIT_NOFILE, &old);
	ck_assert_msg(rc == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, 300);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

START_TEST(test_many_sessions)
{
	setup_db();
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	scry_store *s = new_store();
	int64_t t0 = 1700000000000000LL;
	const int N = 2000;
	scry_event *evs = calloc((size_t)N * 2, sizeof *evs);
	for (int k = 0; k < N; k++) {
		int64_t a = add_session(s, t0);
		for (int i = 0; i < 2; i++) {
			scry_event *e = &evs[k * 2 + i];
			e->session_id = a;
			e->start_us = t0 + i * 1000;
			e->duration_us = -1;
			e->query = i ? "SELECT count(*) FROM t" : "SELECT pg_sleep(0.5)";
			e->rows = 1;
		}
	}
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_append(s, evs, (size_t)N * 2, sizeof(scry_event), &err) == 0, "%s", err.message);
	free(evs);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.concurrency = N;
	scry_replay *r = NULL;
	ck_assert_int_eq(scry_replay_new(&r, s, &o, &err), 0);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	ck_assert_msg(scry_replay_run(r, g_db_conninfo, "many", &res, &err) == 0, "%s", err.message);
	ck_assert_int_eq(res.executions, N * 2);
	ck_assert_int_eq(res.errors, 0);
	ck_assert_int_eq(res.reconnects, 0);
	scry_replay_free(r);
	drop_store(s);
}
END_TEST

/* Runs a shell command, returns its exit status and (first 4 KB of) stdout+stderr. */
static int run_cmd(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_cmd(char *out, size_t n, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
	FILE *f = popen(cmd, "r");
	ck_assert(f != NULL);
	size_t got = fread(out, 1, n - 1, f);
	out[got] = 0;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_cli)
{
	setup_db();
	char *before = checksum();
	scry_store *s = new_store();
	add_write_workload(s, 3);
	scry_store_free(s);
	char out[4096];
	const char *cli = pgtest_cli();
	int st = run_cmd(out, sizeof out, "SCRY_NO_PROGRESS=1 '%s' replay --store '%s' --target '%s' --label cli --repeat 2 --json",
	                 cli, g_store_path, g_db_conninfo);
	ck_assert_msg(st == 0, "exit %d: %s", st, out);
	ck_assert_msg(strstr(out, "\"executions\":84,") && strstr(out, "\"errors\":0,") &&
	              strstr(out, "\"timeouts\":0,") && strstr(out, "\"per_second\":"), "%s", out);
	char *after = checksum();
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
	/* text summary */
	st = run_cmd(out, sizeof out, "'%s' replay --store '%s' --target '%s' --label cli2 --mode timed --speed 50",
	             cli, g_store_path, g_db_conninfo);
	ck_assert_msg(st == 0 && strstr(out, "42 executions") && strstr(out, "start lag"), "exit %d: %s", st, out);
	/* usage errors: exit 2 */
	ck_assert_int_eq(run_cmd(out, sizeof out, "'%s' replay --store '%s' --label x", cli, g_store_path), 2);
	ck_assert_msg(strstr(out, "--target"), "%s", out);
	ck_assert_int_eq(run_cmd(out, sizeof out, "'%s' replay --target x --label x --mode slow", cli), 2);
	ck_assert_int_eq(run_cmd(out, sizeof out, "'%s' replay --help", cli), 0);
	ck_assert(strstr(out, "--writes") != NULL);
	/* a target that is down: exit 1, one clear message */
	st = run_cmd(out, sizeof out, "'%s' replay --store '%s' --target 'host=127.0.0.1 port=1 user=postgres' --label down",
	             cli, g_store_path);
	ck_assert_int_eq(st, 1);
	ck_assert_msg(strstr(out, "cannot connect to host 127.0.0.1 port 1") != NULL, "%s", out);
	/* a store that does not exist: exit 1, and it is not created */
	st = run_cmd(out, sizeof out, "'%s' replay --store /tmp/scry-no-such-store.db --target '%s' --label x", cli, g_db_conninfo);
	ck_assert_int_eq(st, 1);
	ck_assert(access("/tmp/scry-no-such-store.db", F_OK) != 0);
	scry_store *s2 = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&s2, g_store_path, NULL, &err), 0);
	drop_store(s2);
}
END_TEST

static void start_server(void)
{
	pgtest_start(&g_pg, "max_connections = 2100\nmax_locks_per_transaction = 64");
}

static void stop_server(void)
{
	pgtest_stop(&g_pg);
	/* stores of tests that failed before dropping theirs */
	pgtest_system("rm -f /tmp/scry-test-replay-%d-*", (int)getpid());
}

static Suite *suite(void)
{
	Suite *s = suite_create("replay");
	TCase *tc = tcase_create("replay");
	tcase_add_unchecked_fixture(tc, start_server, stop_server);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_samples_correct);
	tcase_add_test(tc, test_extended_params);
	tcase_add_test(tc, test_rollback_isolation);
	tcase_add_test(tc, test_timeout_and_reconnect);
	tcase_add_test(tc, test_wrong_password_and_down);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_ab_pairing);
	tcase_add_test(tc, test_driver_events_ab);
	tcase_add_test(tc, test_ab_crossed_locks);
	tcase_add_test(tc, test_timed_mode);
	tcase_add_test(tc, test_fd_limit);
	tcase_add_test(tc, test_many_sessions);
	tcase_add_test(tc, test_cli);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return pgtest_run_suite(suite(), 0);
}
