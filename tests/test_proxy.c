/*
 * tests/test_proxy.c - the capture proxy between real clients (libpq with
 * and without pipeline mode, psql, pgbench in its three protocol modes,
 * psycopg2) and a real PostgreSQL server. After each run the store must hold
 * exactly the statements the clients ran, with their parameters, rows and
 * errors, and no password bytes.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <scry/scry.h>

#include "pgtest.h"

static pgtest_cluster cluster;

/* ------------------------------------------------------------------ */
/* A proxy in this process, over a fresh store                          */
/* ------------------------------------------------------------------ */

typedef struct px {
	char dir[64];
	char store_path[128];
	scry_store *store;
	scry_proxy *proxy;
	int port;
	char conninfo[256];
	scry_proxy_stats stats;
} px;

static void px_start_opts(px *x, scry_proxy_options *o)
{
	memset(x, 0, sizeof *x);
	snprintf(x->dir, sizeof x->dir, "/tmp/scry-pxtest.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(x->dir));
	chmod(x->dir, 0755);
	snprintf(x->store_path, sizeof x->store_path, "%s/scry.db", x->dir);
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&x->store, x->store_path, NULL, &err) == 0, "%s", err.message);
	char up[64];
	snprintf(up, sizeof up, "127.0.0.1:%d", cluster.port);
	o->upstream = up;
	if (!o->listen && !o->listen_unix)
		o->listen = "127.0.0.1:0";
	ck_assert_msg(scry_proxy_new(&x->proxy, x->store, o, &err) == 0, "%s", err.message);
	x->port = scry_proxy_port(x->proxy);
	ck_assert_msg(scry_proxy_start(x->proxy, &err) == 0, "%s", err.message);
	snprintf(x->conninfo, sizeof x->conninfo, "host=127.0.0.1 port=%d user=postgres dbname=postgres", x->port);
}

static void px_start(px *x)
{
	scry_proxy_options o = SCRY_PROXY_OPTIONS_INIT;
	px_start_opts(x, &o);
}

static void px_stop(px *x)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_proxy_stop(x->proxy);
	ck_assert_msg(scry_proxy_wait(x->proxy, &err) == 0, "%s", err.message);
	x->stats.size = sizeof x->stats;
	scry_proxy_stats_get(x->proxy, &x->stats);
	scry_proxy_free(x->proxy);
	x->proxy = NULL;
}

static void px_free(px *x)
{
	scry_store_free(x->store);
	pgtest_system("rm -rf '%s'", x->dir);
}

/* The events of the store as lines "kind|query|params|rows|sqlstate",
 * optionally only those of sessions whose application is `app`. */
typedef struct lines {
	char **v;
	int n;
} lines;

static void fmt_params(char *out, size_t outsz, const scry_param *ps, int n)
{
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		const scry_param *p = &ps[i];
		char one[256];
		if (p->length < 0)
			snprintf(one, sizeof one, "%s%u:NULL", i ? "," : "", p->type_oid);
		else if (p->format == SCRY_PARAM_TEXT)
			snprintf(one, sizeof one, "%s%u:%.*s", i ? "," : "", p->type_oid, p->length, p->value);
		else {
			int k = snprintf(one, sizeof one, "%s%u:0x", i ? "," : "", p->type_oid);
			for (int j = 0; j < p->length && k < 200; j++)
				k += snprintf(one + k, sizeof one - (size_t)k, "%02x", (unsigned char)p->value[j]);
		}
		strncat(out, one, outsz - strlen(out) - 1);
	}
}

static int64_t session_of_app(px *x, const char *app)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open_v2(x->store_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT id FROM sessions WHERE application = ?", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, app, -1, SQLITE_STATIC);
	int64_t id = 0;
	int found = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		found++;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	ck_assert_msg(found == 1, "expected one session of %s, found %d", app, found);
	return id;
}

static lines events_of(px *x, const char *app)
{
	lines l = { NULL, 0 };
	scry_event_filter f = SCRY_EVENT_FILTER_INIT;
	if (app)
		f.session_id = session_of_app(x, app);
	scry_event_iter *it;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_events(x->store, &f, &it, &err), 0);
	const scry_stored_event *ev;
	int rc;
	while ((rc = scry_event_iter_next(it, &ev, &err)) == 1) {
		char params[2048];
		fmt_params(params, sizeof params, ev->params, ev->nparams);
		char *line;
		ck_assert_int_ge(asprintf(&line, "%c|%s|%s|%lld|%s", "SEC"[ev->kind], ev->query, params,
		                          (long long)ev->rows, ev->sqlstate), 0);
		l.v = realloc(l.v, sizeof *l.v * (size_t)(l.n + 1));
		l.v[l.n++] = line;
	}
	ck_assert_int_eq(rc, 0);
	scry_event_iter_free(it);
	return l;
}

static void lines_free(lines *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static void expect_lines(lines *got, const char *const *want, int nwant)
{
	for (int i = 0; i < got->n && i < nwant; i++)
		ck_assert_msg(!strcmp(got->v[i], want[i]), "event %d:\n  got  %s\n  want %s", i, got->v[i], want[i]);
	if (got->n != nwant) {
		for (int i = 0; i < got->n; i++)
			fprintf(stderr, "  got[%d] %s\n", i, got->v[i]);
	}
	ck_assert_int_eq(got->n, nwant);
}

static PGresult *must(PGconn *c, PGresult *r, ExecStatusType want)
{
	ck_assert_msg(PQresultStatus(r) == want, "%s", PQerrorMessage(c));
	return r;
}

/* ------------------------------------------------------------------ */
/* libpq: simple, extended (text and binary), prepared, pipeline        */
/* ------------------------------------------------------------------ */

START_TEST(libpq_all_protocols)
{
	px x;
	px_start(&x);
	char ci[320];
	snprintf(ci, sizeof ci, "%s application_name=libpq-app", x.conninfo);
	PGconn *c = pgtest_connect(ci);
	PQclear(must(c, PQexec(c, "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)"), PGRES_COMMAND_OK));
	const char *v1[3] = { "1", "apple", "1.50" };
	Oid t1[3] = { 23, 25, 0 };
	PQclear(must(c, PQexecParams(c, "INSERT INTO items VALUES ($1, $2, $3)", 3, t1, v1, NULL, NULL, 0),
	             PGRES_COMMAND_OK));
	uint32_t be1 = htonl(1);
	const char *vb[1] = { (const char *)&be1 };
	int lb[1] = { 4 }, fb[1] = { 1 };
	Oid tb[1] = { 23 };
	PGresult *r = must(c, PQexecParams(c, "SELECT name FROM items WHERE id = $1", 1, tb, vb, lb, fb, 0), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "apple");
	PQclear(r);
	PQclear(must(c, PQprepare(c, "byid", "SELECT name, price FROM items WHERE id = $1", 0, NULL), PGRES_COMMAND_OK));
	for (int i = 0; i < 3; i++) {
		const char *v[1] = { i == 2 ? "2" : "1" };
		PQclear(must(c, PQexecPrepared(c, "byid", 1, v, NULL, NULL, 0), PGRES_TUPLES_OK));
	}
	PQclear(must(c, PQexec(c, "SELECT * FROM nosuch"), PGRES_FATAL_ERROR));
	const char *vn[2] = { NULL, "x" };
	PQclear(must(c, PQexecParams(c, "SELECT $1::int IS NULL, $2", 2, NULL, vn, NULL, NULL, 0), PGRES_TUPLES_OK));

	/* Pipeline: 3 inserts, the second fails (so the third is skipped by the
	 * server), Sync; then 2 selects and Sync. */
	ck_assert_int_eq(PQenterPipelineMode(c), 1);
	const char *ins = "INSERT INTO items VALUES ($1, 'pipe', 1)";
	const char *p1[1] = { "10" }, *p2[1] = { "10" }, *p3[1] = { "11" };
	ck_assert_int_eq(PQsendQueryParams(c, ins, 1, NULL, p1, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQsendQueryParams(c, ins, 1, NULL, p2, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQsendQueryParams(c, ins, 1, NULL, p3, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQpipelineSync(c), 1);
	const char *s1[1] = { "1" }, *s2[1] = { "10" };
	ck_assert_int_eq(PQsendQueryPrepared(c, "byid", 1, s1, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQsendQueryParams(c, "SELECT count(*) FROM items WHERE id >= $1", 1, NULL, s2, NULL, NULL, 0), 1);
	ck_assert_int_eq(PQpipelineSync(c), 1);
	int syncs = 0, errors = 0, aborted = 0;
	while (syncs < 2) {
		r = PQgetResult(c);
		if (!r)
			continue;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC)
			syncs++;
		else if (st == PGRES_FATAL_ERROR)
			errors++;
		else if (st == PGRES_PIPELINE_ABORTED)
			aborted++;
		PQclear(r);
	}
	ck_assert_int_eq(errors, 1);
	ck_assert_int_eq(aborted, 1);
	ck_assert_int_eq(PQexitPipelineMode(c), 1);
	PQfinish(c);
	px_stop(&x);

	lines l = events_of(&x, "libpq-app");
	const char *want[] = {
		"S|CREATE TABLE items (id int PRIMARY KEY, name text, price numeric)||-1|",
		"E|INSERT INTO items VALUES ($1, $2, $3)|23:1,25:apple,0:1.50|1|", /* 0: the client left the type to the server */
		"E|SELECT name FROM items WHERE id = $1|23:0x00000001|1|",
		/* Types the client did not give (PQprepare without types) stay 0. */
		"E|SELECT name, price FROM items WHERE id = $1|0:1|1|",
		"E|SELECT name, price FROM items WHERE id = $1|0:1|1|",
		"E|SELECT name, price FROM items WHERE id = $1|0:2|0|",
		"S|SELECT * FROM nosuch||-1|42P01",
		"E|SELECT $1::int IS NULL, $2|0:NULL,0:x|1|",
		"E|INSERT INTO items VALUES ($1, 'pipe', 1)|0:10|1|",
		"E|INSERT INTO items VALUES ($1, 'pipe', 1)|0:10|-1|23505",
		"E|SELECT name, price FROM items WHERE id = $1|0:1|1|",
		"E|SELECT count(*) FROM items WHERE id >= $1|0:10|1|",
	};
	expect_lines(&l, want, (int)(sizeof want / sizeof *want));
	lines_free(&l);
	ck_assert_int_eq(x.stats.events_dropped, 0);
	ck_assert_int_eq(x.stats.protocol_errors, 0);
	ck_assert_int_gt(x.stats.bytes_from_clients, 0);
	ck_assert_int_gt(x.stats.bytes_from_server, 0);
	px_free(&x);
	pgtest_exec(cluster.conninfo, "DROP TABLE items");
}
END_TEST

/* ------------------------------------------------------------------ */
/* psql, with a script that has several statements per line, COPY and  */
/* an error                                                            */
/* ------------------------------------------------------------------ */

START_TEST(psql_script)
{
	px x;
	px_start(&x);
	char script[128];
	snprintf(script, sizeof script, "%s/script.sql", x.dir);
	FILE *f = fopen(script, "w");
	ck_assert_ptr_nonnull(f);
	fputs("CREATE TABLE ps (a int, b text);\n"
	      "INSERT INTO ps VALUES (1, 'one'); INSERT INTO ps VALUES (2, 'two;2');\n"
	      "\\copy ps FROM stdin\n3\tthree\n4\tfour\n\\.\n"
	      "SELECT * FROM ps WHERE a > 1;\n"
	      "SELECT 1/0;\n"
	      "DROP TABLE ps;\n",
	      f);
	fclose(f);
	/* -1 would wrap it in a transaction; without it psql sends statement by statement.
	 * A single -c sends one Query with several statements. */
	ck_assert_int_eq(pgtest_system("PGAPPNAME=psql-app psql -X -q 'host=127.0.0.1 port=%d user=postgres dbname=postgres' "
	                               "-f '%s' >/dev/null 2>&1", x.port, script), 0);
	ck_assert_int_eq(pgtest_system("PGAPPNAME=psql-multi psql -X -q 'host=127.0.0.1 port=%d user=postgres dbname=postgres' "
	                               "-c 'SELECT 1; SELECT 2' >/dev/null 2>&1", x.port), 0);
	px_stop(&x);
	lines l = events_of(&x, "psql-app");
	const char *want[] = {
		"S|CREATE TABLE ps (a int, b text)||-1|",
		"S|INSERT INTO ps VALUES (1, 'one')||1|",
		"S|INSERT INTO ps VALUES (2, 'two;2')||1|",
		"C|COPY  ps FROM STDIN||2|",
		"S|SELECT * FROM ps WHERE a > 1||3|",
		"S|SELECT 1/0||-1|22012",
		"S|DROP TABLE ps||-1|",
	};
	expect_lines(&l, want, (int)(sizeof want / sizeof *want));
	lines_free(&l);
	l = events_of(&x, "psql-multi");
	const char *want2[] = { "S|SELECT 1||1|", "S|SELECT 2||1|" };
	expect_lines(&l, want2, 2);
	lines_free(&l);
	px_free(&x);
}
END_TEST

/* ------------------------------------------------------------------ */
/* pgbench: -M simple, extended, prepared                               */
/* ------------------------------------------------------------------ */

START_TEST(pgbench_three_modes)
{
	ck_assert_int_eq(pgtest_system("pgbench -q -i -s 1 '%s' >/dev/null 2>&1", cluster.conninfo), 0);
	px x;
	px_start(&x);
	static const char *modes[] = { "simple", "extended", "prepared" };
	for (int m = 0; m < 3; m++)
		ck_assert_int_eq(pgtest_system("PGAPPNAME=pgbench-%s pgbench -n -S -c 2 -t 50 -M %s "
		                               "'host=127.0.0.1 port=%d user=postgres dbname=postgres' >/dev/null 2>&1",
		                               modes[m], modes[m], x.port), 0);
	px_stop(&x);
	ck_assert_int_eq(x.stats.events_dropped, 0);
	/* Every SELECT of the three runs, one event each, with its parameter. */
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(x.store, NULL, &it, NULL), 0);
	const scry_stored_event *ev;
	int simple = 0, extended = 0, other = 0;
	uint64_t fp = 0;
	while (scry_event_iter_next(it, &ev, NULL) == 1) {
		if (strstr(ev->query, "FROM pgbench_accounts WHERE aid")) {
			ck_assert_int_eq(ev->rows, 1);
			ck_assert_str_eq(ev->sqlstate, "");
			ck_assert_int_ge(ev->duration_us, 0);
			if (!fp)
				fp = ev->fingerprint;
			ck_assert_uint_eq(ev->fingerprint, fp); /* one pattern across the three modes */
			if (ev->kind == SCRY_EVENT_SIMPLE) {
				ck_assert_int_eq(ev->nparams, 0);
				ck_assert_ptr_null(strstr(ev->query, "$1"));
				simple++;
			} else {
				ck_assert_int_eq(ev->kind, SCRY_EVENT_EXTENDED);
				ck_assert_int_eq(ev->nparams, 1);
				ck_assert_int_gt(atoi(ev->params[0].value), 0);
				ck_assert_ptr_nonnull(strstr(ev->query, "$1"));
				extended++;
			}
		} else {
			other++;
		}
	}
	scry_event_iter_free(it);
	ck_assert_int_eq(simple, 100);
	ck_assert_int_eq(extended, 200);
	/* pgbench's own bookkeeping queries (e.g. the scale lookup): a few per run. */
	ck_assert_int_le(other, 3 * 3);
	px_free(&x);
}
END_TEST

/* ------------------------------------------------------------------ */
/* psycopg2                                                            */
/* ------------------------------------------------------------------ */

START_TEST(psycopg2_app)
{
	px x;
	px_start(&x);
	ck_assert_int_eq(pgtest_system("/usr/bin/python3 '%s/tests/proxy/psycopg2_client.py' "
	                               "'host=127.0.0.1 port=%d user=postgres dbname=postgres' >/dev/null",
	                               SCRY_SOURCE_DIR, x.port), 0);
	px_stop(&x);
	lines l = events_of(&x, "psycopg2-app");
	const char *want[] = {
		"S|BEGIN||-1|",
		"S|CREATE TABLE py_orders (id int PRIMARY KEY, customer text, total numeric)||-1|",
		"S|COMMIT||-1|",
		"S|BEGIN||-1|",
		"S|INSERT INTO py_orders VALUES (1, 'ann', 10.5)||1|",
		"S|INSERT INTO py_orders VALUES (2, 'bob', 20)||1|",
		"S|INSERT INTO py_orders VALUES (3, 'o''hara', 7)||1|",
		"S|COMMIT||-1|",
		"S|BEGIN||-1|",
		"S|SELECT id, total FROM py_orders WHERE customer = 'o''hara'||1|",
		"S|SELECT * FROM py_missing||-1|42P01",
		"S|ROLLBACK||-1|",
		"S|BEGIN||-1|",
		"C|COPY py_orders (id, customer, total) FROM STDIN||2|",
		"S|COMMIT||-1|",
		"S|BEGIN||-1|",
		"S|SELECT count(*) FROM py_orders||1|",
		"S|COMMIT||-1|",
	};
	expect_lines(&l, want, (int)(sizeof want / sizeof *want));
	lines_free(&l);
	px_free(&x);
	pgtest_exec(cluster.conninfo, "DROP TABLE py_orders");
}
END_TEST

/* ------------------------------------------------------------------ */
/* SCRAM authentication: the password never reaches the store           */
/* ------------------------------------------------------------------ */

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	size_t got = fread(b, 1, (size_t)n, f);
	fclose(f);
	bool found = memmem(b, got, needle, strlen(needle)) != NULL;
	free(b);
	return found;
}

START_TEST(scram_password_never_recorded)
{
	static const char pw[] = "Pw-Zq81-never-in-the-store";
	static const char wrong[] = "Wrong-Pw-7731-also-not-stored";
	pgtest_exec(cluster.conninfo, "SET password_encryption = 'scram-sha-256';"
	                              "CREATE ROLE scram_user LOGIN PASSWORD 'Pw-Zq81-never-in-the-store'");
	/* scram-sha-256 for that user over TCP, ahead of the harness's trust lines. */
	ck_assert_int_eq(pgtest_system("cd '%s/c/data' && { echo 'host all scram_user 127.0.0.1/32 scram-sha-256'; cat pg_hba.conf; } > hba.new"
	                               " && cat hba.new > pg_hba.conf && rm hba.new", cluster.dir), 0);
	free(pgtest_query_value(cluster.conninfo, "SELECT pg_reload_conf()"));
	px x;
	px_start(&x);
	char ci[400];
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=scram_user dbname=postgres password=%s "
	         "application_name=scram-app", x.port, wrong);
	PGconn *c = PQconnectdb(ci);
	ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
	ck_assert_ptr_nonnull(strstr(PQerrorMessage(c), "password authentication failed"));
	PQfinish(c);
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=scram_user dbname=postgres password=%s "
	         "application_name=scram-app", x.port, pw);
	c = PQconnectdb(ci);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	PGresult *r = must(c, PQexec(c, "SELECT current_user"), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "scram_user");
	PQclear(r);
	PQfinish(c);
	/* psql too, with the password from the environment. */
	ck_assert_int_eq(pgtest_system("PGPASSWORD='%s' psql -X -q 'host=127.0.0.1 port=%d user=scram_user dbname=postgres' "
	                               "-c 'SELECT 42' >/dev/null", pw, x.port), 0);
	px_stop(&x);
	ck_assert_int_ge(x.stats.events_recorded, 2);
	scry_store_free(x.store);
	x.store = NULL;
	char path[200];
	const char *suffixes[] = { "", "-wal", "-shm", "-journal" };
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s%s", x.store_path, suffixes[i]);
		ck_assert_msg(!file_contains(path, pw), "the password is in %s", path);
		ck_assert_msg(!file_contains(path, wrong), "the wrong password is in %s", path);
	}
	/* ...while what was recorded is there (the check can see the file). */
	ck_assert(file_contains(x.store_path, "current_user") ||
	          file_contains(x.store_path, "SELECT current_user") ||
	          (snprintf(path, sizeof path, "%s-wal", x.store_path), file_contains(path, "current_user")));
	px_free(&x);
	pgtest_system("cd '%s/c/data' && grep -v scram_user pg_hba.conf > hba.new && cat hba.new > pg_hba.conf && rm hba.new",
	              cluster.dir);
	free(pgtest_query_value(cluster.conninfo, "SELECT pg_reload_conf()"));
}
END_TEST

/* ------------------------------------------------------------------ */
/* A client sending garbage is disconnected; the others go on           */
/* ------------------------------------------------------------------ */

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* Reads until EOF; returns the bytes read (into buf). */
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == cap)
			break;
	}
	return n;
}

/*
 * The host program forks (system(), popen()) while the proxy runs: the child
 * holds copies of the proxy's sockets until its exec, so closing them does
 * not take them out of the epoll set. A client that disconnects meanwhile
 * must not leave events for a freed connection (ASan saw exactly that).
 */
START_TEST(fork_while_clients_disconnect)
{
	px x;
	px_start(&x);
	int gate[2];
	ck_assert_int_eq(pipe(gate), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) { /* hold every inherited descriptor until told to go */
		char c;
		close(gate[1]);
		ssize_t r = read(gate[0], &c, 1);
		_exit(r < 0);
	}
	close(gate[0]);
	/* The child forked before these connections existed; fork again while
	 * they are open, so that it holds their sockets, then close them. */
	PGconn *c1 = pgtest_connect(x.conninfo);
	PGconn *c2 = pgtest_connect(x.conninfo);
	PQclear(must(c1, PQexec(c1, "SELECT 1"), PGRES_TUPLES_OK));
	int gate2[2];
	ck_assert_int_eq(pipe(gate2), 0);
	pid_t holder = fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		char c;
		close(gate2[1]);
		ssize_t r = read(gate2[0], &c, 1);
		_exit(r < 0);
	}
	close(gate2[0]);
	PQfinish(c1); /* the proxy closes both sockets of this connection */
	usleep(200 * 1000);
	/* Traffic on another connection makes the loop run many times. */
	for (int i = 0; i < 50; i++)
		PQclear(must(c2, PQexec(c2, "SELECT 2"), PGRES_TUPLES_OK));
	PQfinish(c2);
	close(gate[1]);
	close(gate2[1]);
	waitpid(child, NULL, 0);
	waitpid(holder, NULL, 0);
	px_stop(&x);
	ck_assert_uint_eq(x.stats.events_dropped, 0);
	px_free(&x);
}
END_TEST

START_TEST(garbage_client_disconnected_others_go_on)
{
	px x;
	px_start(&x);
	char ci[320];
	snprintf(ci, sizeof ci, "%s application_name=good-app", x.conninfo);
	PGconn *good = pgtest_connect(ci);
	PQclear(must(good, PQexec(good, "SELECT 1"), PGRES_TUPLES_OK));

	/* An HTTP request instead of a startup packet. */
	int fd = raw_connect(x.port);
	const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	ck_assert_int_eq(write(fd, http, sizeof http - 1), (ssize_t)sizeof http - 1);
	char buf[1024];
	size_t n = read_all(fd, buf, sizeof buf);
	ck_assert_int_gt(n, 5);
	ck_assert_int_eq(buf[0], 'E');
	ck_assert_ptr_nonnull(memmem(buf, n, "08P01", 5));
	ck_assert_ptr_nonnull(memmem(buf, n, "startup packet", 14));
	close(fd);

	/* A valid startup, then a message with an invalid type. */
	fd = raw_connect(x.port);
	unsigned char su[128];
	size_t k = 8;
	const char kv[] = "user\0postgres\0database\0postgres\0application_name\0bad-app\0";
	memcpy(su + k, kv, sizeof kv);
	k += sizeof kv;
	uint32_t len = htonl((uint32_t)k), ver = htonl(196608);
	memcpy(su, &len, 4);
	memcpy(su + 4, &ver, 4);
	ck_assert_int_eq(write(fd, su, k), (ssize_t)k);
	/* Wait for ReadyForQuery ('Z' ... 'I') so the garbage comes after startup. */
	char rb[4096];
	size_t have = 0;
	while (have < 6 || memcmp(rb + have - 6, "Z\0\0\0\5I", 6) != 0) {
		ssize_t r = read(fd, rb + have, sizeof rb - have);
		ck_assert_int_gt(r, 0);
		have += (size_t)r;
	}
	ck_assert_int_eq(write(fd, "\x01\x02\x03\x04\x05\x06", 6), 6);
	n = read_all(fd, buf, sizeof buf);
	ck_assert_int_gt(n, 5);
	ck_assert_int_eq(buf[0], 'E');
	ck_assert_ptr_nonnull(memmem(buf, n, "invalid message type", 20));
	close(fd);

	/* The good client goes on. */
	for (int i = 0; i < 3; i++)
		PQclear(must(good, PQexec(good, "SELECT 2"), PGRES_TUPLES_OK));
	PQfinish(good);
	px_stop(&x);
	ck_assert_int_eq(x.stats.protocol_errors, 2);
	lines l = events_of(&x, "good-app");
	const char *want[] = { "S|SELECT 1||1|", "S|SELECT 2||1|", "S|SELECT 2||1|", "S|SELECT 2||1|" };
	expect_lines(&l, want, 4);
	lines_free(&l);
	px_free(&x);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Unix socket, SSLRequest answered 'N', a full queue drops and counts  */
/* ------------------------------------------------------------------ */

START_TEST(unix_socket_ssl_prefer_and_drops)
{
	px x;
	char sock[128];
	snprintf(sock, sizeof sock, "/tmp/scry-pxsock.%d", (int)getpid());
	mkdir(sock, 0755);
	char sockfile[160];
	snprintf(sockfile, sizeof sockfile, "%s/.s.PGSQL.5432", sock);
	scry_proxy_options o = SCRY_PROXY_OPTIONS_INIT;
	o.listen_unix = sockfile;
	o.queue_events = 1; /* almost everything is dropped: counted, never blocking */
	px_start_opts(&x, &o);
	ck_assert_int_eq(x.port, 0);
	char ci[300];
	snprintf(ci, sizeof ci, "host=%s user=postgres dbname=postgres application_name=unix-app", sock);
	PGconn *c = pgtest_connect(ci);
	for (int i = 0; i < 200; i++)
		PQclear(must(c, PQexec(c, "SELECT 1; SELECT 2"), PGRES_TUPLES_OK));
	PQfinish(c);
	px_stop(&x);
	ck_assert_uint_eq(x.stats.events_captured, 400);
	ck_assert_uint_eq(x.stats.events_recorded + x.stats.events_dropped, 400);
	ck_assert_uint_gt(x.stats.events_recorded, 0);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(x.store, &info, NULL), 0);
	ck_assert_int_eq(info.events, (int64_t)x.stats.events_recorded);
	px_free(&x);
	ck_assert_int_ne(access(sockfile, F_OK), 0); /* removed by scry_proxy_free */
	rmdir(sock);

	/* TCP with sslmode=prefer: SSLRequest gets 'N', the session goes on in plain text. */
	px_start(&x);
	snprintf(ci, sizeof ci, "%s sslmode=prefer application_name=ssl-app", x.conninfo);
	c = pgtest_connect(ci);
	ck_assert_ptr_null(PQgetssl(c));
	PQclear(must(c, PQexec(c, "SELECT 3"), PGRES_TUPLES_OK));
	PQfinish(c);
	snprintf(ci, sizeof ci, "%s sslmode=require", x.conninfo);
	c = PQconnectdb(ci);
	ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
	PQfinish(c);
	px_stop(&x);
	lines l = events_of(&x, "ssl-app");
	const char *want[] = { "S|SELECT 3||1|" };
	expect_lines(&l, want, 1);
	lines_free(&l);
	px_free(&x);
}
END_TEST

START_TEST(bad_options)
{
	scry_store *st;
	ck_assert_int_eq(scry_store_open(&st, ":memory:", NULL, NULL), 0);
	scry_proxy *p;
	scry_error err = SCRY_ERROR_INIT;
	scry_proxy_options o = SCRY_PROXY_OPTIONS_INIT;
	ck_assert_int_eq(scry_proxy_new(&p, st, &o, &err), SCRY_EINVAL);
	ck_assert_ptr_null(p);
	o.listen = "127.0.0.1:0";
	o.upstream = "nocolon";
	ck_assert_int_eq(scry_proxy_new(&p, st, &o, &err), SCRY_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.message, "HOST:PORT"));
	o.upstream = "127.0.0.1:5432";
	o.listen = "127.0.0.1:99999";
	ck_assert_int_eq(scry_proxy_new(&p, st, &o, &err), SCRY_EINVAL);
	/* A port in use. */
	o.listen = "127.0.0.1:0";
	scry_proxy *p1;
	ck_assert_int_eq(scry_proxy_new(&p1, st, &o, &err), 0);
	char busy[64];
	snprintf(busy, sizeof busy, "127.0.0.1:%d", scry_proxy_port(p1));
	o.listen = busy;
	ck_assert_int_eq(scry_proxy_new(&p, st, &o, &err), SCRY_EIO);
	ck_assert_ptr_nonnull(strstr(err.message, busy));
	scry_proxy_free(p1); /* never started: free is enough */
	scry_store_free(st);
}
END_TEST

START_TEST(upstream_down)
{
	scry_store *st;
	ck_assert_int_eq(scry_store_open(&st, ":memory:", NULL, NULL), 0);
	/* A port nothing listens on: bind one, learn it, close it. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof sa;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	char up[64];
	snprintf(up, sizeof up, "127.0.0.1:%d", ntohs(sa.sin_port));
	scry_proxy_options o = SCRY_PROXY_OPTIONS_INIT;
	o.listen = "127.0.0.1:0";
	o.upstream = up;
	scry_proxy *p;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_proxy_new(&p, st, &o, &err), 0);
	ck_assert_int_eq(scry_proxy_start(p, &err), 0);
	char ci[200];
	snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=10", scry_proxy_port(p));
	PGconn *c = PQconnectdb(ci);
	ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
	ck_assert_msg(strstr(PQerrorMessage(c), "cannot connect to the upstream server") != NULL, "%s", PQerrorMessage(c));
	PQfinish(c);
	scry_proxy_stop(p);
	ck_assert_int_eq(scry_proxy_wait(p, &err), 0);
	scry_proxy_stats stats = SCRY_PROXY_STATS_INIT;
	scry_proxy_stats_get(p, &stats);
	ck_assert_uint_ge(stats.connections_failed, 1);
	ck_assert_uint_eq(stats.connections_active, 0);
	scry_proxy_free(p);
	scry_store_free(st);
}
END_TEST

int main(void)
{
	pgtest_start(&cluster, NULL);
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("clients");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bad_options);
	tcase_add_test(tc, upstream_down);
	tcase_add_test(tc, libpq_all_protocols);
	tcase_add_test(tc, psql_script);
	tcase_add_test(tc, pgbench_three_modes);
	tcase_add_test(tc, psycopg2_app);
	tcase_add_test(tc, scram_password_never_recorded);
	tcase_add_test(tc, garbage_client_disconnected_others_go_on);
	tcase_add_test(tc, fork_while_clients_disconnect);
	tcase_add_test(tc, unix_socket_ssl_prefer_and_drops);
	suite_add_tcase(s, tc);
	int status = pgtest_run_suite(s, 1);
	pgtest_stop(&cluster);
	return status;
}
