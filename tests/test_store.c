/*
 * tests/test_store.c - the SQLite workload store: schema and WAL, refusal of
 * newer schemas and foreign files (left byte-for-byte untouched), batched
 * appends that are all-or-nothing, exact texts read back in capture order,
 * pattern counts and latencies, runs/samples/plans.
 */
#include "internal.h"

#include <check.h>
#include "pgtest.h"
#include <pg_query.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/scry-test-store-XXXXXX";
static char path[128];

static void setup(void)
{
	static int n;
	if (n == 0 && !mkdtemp(dir))
		abort();
	snprintf(path, sizeof path, "%s/s%d.db", dir, ++n);
}

static void teardown(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm' '%s-journal'", path, path, path, path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed: %s\n", cmd);
}

static uint64_t pg_fp(const char *sql)
{
	PgQueryFingerprintResult r = pg_query_fingerprint(sql);
	uint64_t v = r.error ? 0 : r.fingerprint;
	pg_query_free_fingerprint_result(r);
	return v;
}

static char *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	*len = fread(b, 1, (size_t)n, f);
	fclose(f);
	return b;
}

static void write_file(const char *p, const void *data, size_t n)
{
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, n, f), n);
	fclose(f);
}

/* Runs SQL directly with the sqlite3 library, as a user with the shell would. */
static void raw_sql(const char *p, const char *sql)
{
	sqlite3 *db;
	ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
	sqlite3_close(db);
}

static int64_t raw_int(const char *p, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static scry_store *open_store(void)
{
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_store_open(&s, path, NULL, &err);
	ck_assert_msg(rc == 0, "open: %s", err.message);
	return s;
}

static int64_t add_session(scry_store *s, int64_t started)
{
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "shop", "app", "web", "[local]", started };
	int64_t id = 0;
	ck_assert_int_eq(scry_store_session_add(s, &si, &id, NULL), 0);
	ck_assert_int_gt(id, 0);
	return id;
}

static scry_event ev(int64_t session, int64_t start, int64_t dur, const char *q)
{
	scry_event e;
	memset(&e, 0, sizeof e);
	e.session_id = session;
	e.start_us = start;
	e.duration_us = dur;
	e.kind = SCRY_EVENT_SIMPLE;
	e.query = q;
	e.rows = 1;
	return e;
}

START_TEST(creates_schema_in_wal)
{
	scry_store *s = open_store();
	ck_assert_str_eq(scry_store_path(s), path);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 0);
	ck_assert_int_eq(info.schema_version, SCRY_STORE_SCHEMA_VERSION);
	scry_store_free(s);
	ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), SCRY_STORE_SCHEMA_VERSION);
	sqlite3 *db;
	sqlite3_open(path, &db);
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* The documented tables exist (docs/store.md). */
	static const char *const tables[] = { "patterns", "statements", "sessions", "events", "event_errors",
		                              "runs", "samples", "plans", "scry_meta" };
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
		char q[200];
		snprintf(q, sizeof q, "SELECT count(*) FROM sqlite_master WHERE name = '%s'", tables[i]);
		ck_assert_msg(raw_int(path, q) == 1, "table %s missing", tables[i]);
	}
	/* Reopening an existing store works and keeps it. */
	s = open_store();
	scry_store_free(s);
	scry_store_free(NULL);
}
END_TEST

static const char *const texts[] = {
	"SELECT * FROM orders WHERE id = 1",
	"SELECT * FROM orders WHERE id = 2",
	"SELECT * FROM orders WHERE id = 2147483648",
	"UPDATE orders SET status = 'it''s shipped' WHERE id = 77",
	"SELECT * FROM orders WHERE id = 3",
	"SELECT * FORM orders WHERE id = 4", /* does not parse */
	"CREATE TABLE x (a varchar(10))",
	"SELECT * FROM orders WHERE id = 3",
	"SELECT $$dollar$$, E'esc\\n', 'δ' FROM t WHERE a IN (1, 2, 3)",
	"",
};
#define NTEXTS (sizeof texts / sizeof texts[0])

START_TEST(append_and_read_back_in_order)
{
	scry_store *s = open_store();
	int64_t s1 = add_session(s, 1700000000000000);
	int64_t s2 = add_session(s, 1700000000500000);
	scry_event evs[NTEXTS];
	scry_param params[3] = { { 23, SCRY_PARAM_TEXT, "42", 2 },
		                 { 17, SCRY_PARAM_BINARY, "\x00\x01\x02", 3 },
		                 { 0, SCRY_PARAM_TEXT, NULL, -1 } };
	for (size_t i = 0; i < NTEXTS; i++) {
		evs[i] = ev(i % 2 ? s2 : s1, 1700000001000000 + (int64_t)i * 1000, i == 2 ? -1 : 100 + (int64_t)i, texts[i]);
		if (i == 1) {
			evs[i].kind = SCRY_EVENT_EXTENDED;
			evs[i].nparams = 3;
			evs[i].params = params;
		}
		if (i == 5) {
			strcpy(evs[i].sqlstate, "42601");
			evs[i].error_message = "syntax error at or near \"FORM\"";
			evs[i].rows = -1;
		}
	}
	scry_error err = SCRY_ERROR_INIT;
	/* Two batches: the second starts mid-way, sequence numbers continue. */
	ck_assert_int_eq(scry_store_append(s, evs, 4, sizeof(scry_event), &err), 0);
	ck_assert_int_eq(scry_store_append(s, evs + 4, NTEXTS - 4, sizeof(scry_event), &err), 0);
	ck_assert_int_eq(scry_store_append(s, evs, 0, sizeof(scry_event), &err), 0);

	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, &err), 0);
	const scry_stored_event *e;
	size_t i = 0;
	int64_t seq[3] = { 0, 0, 0 };
	int64_t last_id = 0;
	int r;
	while ((r = scry_event_iter_next(it, &e, &err)) == 1) {
		ck_assert_uint_lt(i, NTEXTS);
		ck_assert_int_gt(e->id, last_id);
		last_id = e->id;
		ck_assert_uint_eq(e->query_len, strlen(texts[i]));
		ck_assert_str_eq(e->query, texts[i]);
		ck_assert_int_eq(e->session_id, evs[i].session_id);
		ck_assert_int_eq(e->seq, ++seq[e->session_id]);
		ck_assert_int_eq(e->start_us, evs[i].start_us);
		ck_assert_int_eq(e->duration_us, evs[i].duration_us);
		ck_assert_int_eq(e->kind, evs[i].kind);
		ck_assert_int_eq(e->rows, evs[i].rows);
		ck_assert_str_eq(e->sqlstate, evs[i].sqlstate);
		if (pg_fp(texts[i]))
			ck_assert_uint_eq(e->fingerprint, pg_fp(texts[i]));
		else /* unparsable: a key of its own (the hash of its text), never 0 */
			ck_assert_uint_ne(e->fingerprint, 0);
		ck_assert_int_gt(e->pattern_id, 0);
		if (i == 1) {
			ck_assert_int_eq(e->nparams, 3);
			ck_assert_int_eq(e->params[0].type_oid, 23);
			ck_assert_int_eq(e->params[0].length, 2);
			ck_assert_int_eq(memcmp(e->params[0].value, "42", 2), 0);
			ck_assert_int_eq(e->params[1].format, SCRY_PARAM_BINARY);
			ck_assert_int_eq(e->params[1].length, 3);
			ck_assert_int_eq(memcmp(e->params[1].value, "\x00\x01\x02", 3), 0);
			ck_assert_ptr_null(e->params[2].value);
			ck_assert_int_eq(e->params[2].length, -1);
		} else {
			ck_assert_int_eq(e->nparams, 0);
		}
		i++;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(i, NTEXTS);
	scry_event_iter_free(it);

	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, NTEXTS);
	ck_assert_int_eq(info.sessions, 2);
	/* ids 1, 2, 3 and the repeated 3 share one template; 2147483648 is lexed as
	 * a float (beyond int32), so it has its own: two statement rows. */
	ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM statements WHERE literals = 1 AND template LIKE 'SELECT * FROM orders%'"), 2);
	ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM event_errors"), 1);
	ck_assert_int_eq(raw_int(path, "SELECT events FROM sessions WHERE id = 1"), 5);
	scry_store_free(s);
}
END_TEST

START_TEST(patterns_count_and_latency)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 1000);
	scry_event evs[60];
	char bufs[60][80];
	for (int i = 0; i < 60; i++) {
		if (i % 3 == 0)
			snprintf(bufs[i], sizeof bufs[i], "SELECT name FROM users WHERE id = %d", i);
		else
			snprintf(bufs[i], sizeof bufs[i], "SELECT * FROM orders WHERE id = %d AND s = 'x%d'", i, i);
		evs[i] = ev(sid, 2000 + i, i % 3 == 0 ? 300 : 100, bufs[i]);
		if (i == 4)
			strcpy(evs[i].sqlstate, "57014");
		if (i == 5)
			evs[i].duration_us = -1; /* unknown: not in the mean */
	}
	ck_assert_int_eq(scry_store_append(s, evs, 30, sizeof(scry_event), NULL), 0);
	ck_assert_int_eq(scry_store_append(s, evs + 30, 30, sizeof(scry_event), NULL), 0);
	scry_pattern_iter *it;
	ck_assert_int_eq(scry_store_patterns(s, &it, NULL), 0);
	const scry_pattern *p;
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, NULL), 1);
	ck_assert_uint_eq(p->fingerprint, pg_fp(bufs[1]));
	ck_assert_int_eq(p->count, 40);
	ck_assert_int_eq(p->errors, 1);
	ck_assert_int_eq(p->total_us, 39 * 100);
	ck_assert(p->mean_us > 99.99 && p->mean_us < 100.01);
	ck_assert_ptr_null(p->parse_error);
	ck_assert_str_eq(p->normalized, "SELECT * FROM orders WHERE id = $1 AND s = $2");
	ck_assert_int_eq(p->first_us, 2001);
	ck_assert_int_eq(p->last_us, 2059);
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, NULL), 1);
	ck_assert_uint_eq(p->fingerprint, pg_fp(bufs[0]));
	ck_assert_int_eq(p->count, 20);
	ck_assert_int_eq(p->total_us, 20 * 300);
	ck_assert(p->mean_us > 299.99 && p->mean_us < 300.01);
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, NULL), 0);
	scry_pattern_iter_free(it);
	/* The documented view agrees. */
	ck_assert_int_eq(raw_int(path, "SELECT round(mean_us) FROM patterns_v WHERE count = 20"), 300);

	/* Filter by fingerprint and by session. */
	uint64_t want = pg_fp(bufs[0]);
	scry_event_filter flt = SCRY_EVENT_FILTER_INIT;
	flt.fingerprints = &want;
	flt.nfingerprints = 1;
	scry_event_iter *ei;
	ck_assert_int_eq(scry_store_events(s, &flt, &ei, NULL), 0);
	const scry_stored_event *e;
	int n = 0;
	while (scry_event_iter_next(ei, &e, NULL) == 1) {
		ck_assert_str_eq(e->query, bufs[n * 3]);
		n++;
	}
	ck_assert_int_eq(n, 20);
	scry_event_iter_free(ei);
	flt = (scry_event_filter)SCRY_EVENT_FILTER_INIT;
	flt.session_id = sid + 100;
	ck_assert_int_eq(scry_store_events(s, &flt, &ei, NULL), 0);
	ck_assert_int_eq(scry_event_iter_next(ei, &e, NULL), 0);
	scry_event_iter_free(ei);
	scry_store_free(s);
}
END_TEST

START_TEST(parse_errors_are_kept)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	scry_event evs[3] = { ev(sid, 1, 5, "SELECT * FORM t"), ev(sid, 2, 5, "SELECT * FORM t"), ev(sid, 3, 5, "SELEC 1") };
	ck_assert_int_eq(scry_store_append(s, evs, 3, sizeof(scry_event), NULL), 0);
	scry_pattern_iter *it;
	ck_assert_int_eq(scry_store_patterns(s, &it, NULL), 0);
	const scry_pattern *p;
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, NULL), 1);
	ck_assert_int_eq(p->count, 2);
	ck_assert_ptr_nonnull(p->parse_error);
	ck_assert_msg(strstr(p->parse_error, "at position") != NULL, "%s", p->parse_error);
	uint64_t fp1 = p->fingerprint;
	ck_assert_uint_ne(fp1, 0); /* unparsable patterns get distinct keys: a hash of the text */
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, NULL), 1);
	ck_assert_int_eq(p->count, 1);
	ck_assert_uint_ne(p->fingerprint, 0);
	ck_assert_uint_ne(p->fingerprint, fp1);
	scry_pattern_iter_free(it);
	scry_store_free(s);
}
END_TEST

/* Texts holding the bytes the templates use as markers are stored whole and
 * read back exactly, whichever came first. */
START_TEST(marker_bytes_round_trip)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	const char *q[] = { "SELECT * FROM t WHERE a = 5", "SELECT * FROM t WHERE a = \x02",
		            "COMMENT ON TABLE t IS '\x01\x03'", "SELECT '\x01' FROM t WHERE b = 1", "SELECT * FROM t WHERE a = 6" };
	scry_event evs[5];
	for (int i = 0; i < 5; i++)
		evs[i] = ev(sid, i, 1, q[i]);
	ck_assert_int_eq(scry_store_append(s, evs, 5, sizeof(scry_event), NULL), 0);
	ck_assert_int_eq(scry_store_append(s, evs + 1, 1, sizeof(scry_event), NULL), 0); /* the raw text again */
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	const scry_stored_event *e;
	int i = 0;
	while (scry_event_iter_next(it, &e, NULL) == 1) {
		const char *want = q[i < 5 ? i : 1];
		ck_assert_str_eq(e->query, want);
		if (pg_fp(want))
			ck_assert_uint_eq(e->fingerprint, pg_fp(want));
		else
			ck_assert_uint_ne(e->fingerprint, 0);
		i++;
	}
	ck_assert_int_eq(i, 6);
	scry_event_iter_free(it);
	scry_store_free(s);
}
END_TEST

START_TEST(batch_is_all_or_nothing)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	scry_event good[2] = { ev(sid, 1, 5, "SELECT 1"), ev(sid, 2, 5, "SELECT 2 FROM t") };
	ck_assert_int_eq(scry_store_append(s, good, 2, sizeof(scry_event), NULL), 0);
	scry_event bad[3] = { ev(sid, 3, 5, "SELECT 3 FROM u"), ev(sid + 99, 4, 5, "SELECT 4"), ev(sid, 5, 5, "SELECT 5") };
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_append(s, bad, 3, sizeof(scry_event), &err), SCRY_ENOTFOUND);
	ck_assert_msg(strstr(err.message, "session") != NULL, "%s", err.message);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 2);
	ck_assert_int_eq(info.patterns, 2); /* the pattern of "SELECT 3 FROM u" was rolled back */
	/* The store keeps working after the failed batch, and numbering continues. */
	ck_assert_int_eq(scry_store_append(s, bad, 1, sizeof(scry_event), NULL), 0);
	ck_assert_int_eq(scry_store_append(s, good, 2, sizeof(scry_event), NULL), 0);
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 5);
	ck_assert_int_eq(info.patterns, 3);
	ck_assert_int_eq(raw_int(path, "SELECT max(seq) FROM events"), 5);
	ck_assert_int_eq(raw_int(path, "SELECT count(DISTINCT seq) FROM events"), 5);
	ck_assert_int_eq(scry_store_append(NULL, good, 1, sizeof(scry_event), NULL), SCRY_EINVAL);
	ck_assert_int_eq(scry_store_append(s, NULL, 1, sizeof(scry_event), NULL), SCRY_EINVAL);
	scry_store_free(s);
}
END_TEST

/* Transactions through the store: commit keeps, rollback undoes, and a
 * session added then rolled back is forgotten (it used to stay cached). */
START_TEST(transactions_keep_caches_right)
{
	scry_store *s = open_store();
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_commit(s, &err), SCRY_EINVAL);
	ck_assert_int_eq(scry_store_begin(s, &err), 0);
	ck_assert_int_eq(scry_store_begin(s, &err), SCRY_EINVAL);
	ck_assert_msg(strstr(err.message, "already open"), "%s", err.message);
	int64_t kept = add_session(s, 0);
	scry_event e1[1] = { ev(kept, 1, 5, "SELECT 1") };
	ck_assert_int_eq(scry_store_append(s, e1, 1, sizeof(scry_event), &err), 0);
	/* A failing append inside the transaction undoes only itself. */
	scry_event bad[2] = { ev(kept, 2, 5, "SELECT 2 FROM t"), ev(kept + 99, 3, 5, "SELECT 3") };
	ck_assert_int_eq(scry_store_append(s, bad, 2, sizeof(scry_event), &err), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_commit(s, &err), 0);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 1);
	ck_assert_int_eq(info.patterns, 1);

	ck_assert_int_eq(scry_store_begin(s, &err), 0);
	int64_t gone = add_session(s, 0);
	scry_event e2[1] = { ev(gone, 4, 5, "SELECT 4 FROM u") };
	ck_assert_int_eq(scry_store_append(s, e2, 1, sizeof(scry_event), &err), 0);
	scry_store_rollback(s);
	scry_store_rollback(s); /* none open: harmless */
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 1);
	ck_assert_int_eq(info.sessions, 1);
	ck_assert_int_eq(info.patterns, 1);
	/* The rolled-back session is unknown now, not served from a stale cache. */
	ck_assert_int_eq(scry_store_append(s, e2, 1, sizeof(scry_event), &err), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_append(s, e1, 1, sizeof(scry_event), &err), 0);
	ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM events"), 2);
	/* Freeing with a transaction open rolls it back. */
	ck_assert_int_eq(scry_store_begin(s, &err), 0);
	ck_assert_int_eq(scry_store_append(s, e1, 1, sizeof(scry_event), &err), 0);
	scry_store_free(s);
	ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM events"), 2);
}
END_TEST

START_TEST(reopen_continues)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	scry_event a[2] = { ev(sid, 1, 5, "SELECT * FROM t WHERE a = 1"), ev(sid, 2, 5, "SELECT * FROM t WHERE a = 2") };
	ck_assert_int_eq(scry_store_append(s, a, 2, sizeof(scry_event), NULL), 0);
	scry_store_free(s);
	s = open_store();
	scry_event b[2] = { ev(sid, 3, 7, "SELECT * FROM t WHERE a = 3"), ev(sid, 4, 5, "SELECT * FROM t WHERE b = 'x'") };
	ck_assert_int_eq(scry_store_append(s, b, 2, sizeof(scry_event), NULL), 0);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 4);
	ck_assert_int_eq(info.statements, 2); /* the reopened store reused the first template */
	ck_assert_int_eq(info.patterns, 2);
	ck_assert_int_eq(raw_int(path, "SELECT count FROM patterns WHERE id = 1"), 3);
	ck_assert_int_eq(raw_int(path, "SELECT group_concat(seq, '') FROM (SELECT seq FROM events ORDER BY id)"), 1234);
	scry_store_free(s);
	/* Read-only: the events are there; appends fail with a clear error. */
	scry_store_options o = SCRY_STORE_OPTIONS_INIT;
	o.read_only = 1;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&s, path, &o, &err), 0);
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, 4);
	ck_assert_int_lt(scry_store_append(s, b, 1, sizeof(scry_event), &err), 0);
	ck_assert_msg(strstr(err.message, "read-only") != NULL, "%s", err.message);
	scry_store_free(s);
}
END_TEST

/* Opens `path` expecting `code`; checks that the file is byte-for-byte unchanged. */
static void refused_untouched(int code, const char *needle)
{
	size_t before_len, after_len;
	char *before = slurp(path, &before_len);
	ck_assert_ptr_nonnull(before);
	scry_store *s = (scry_store *)1;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_store_open(&s, path, NULL, &err);
	ck_assert_msg(rc == code, "open gave %d (%s), wanted %d", rc, err.message, code);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(err.code, code);
	ck_assert_msg(strstr(err.message, needle) != NULL, "message '%s' lacks '%s'", err.message, needle);
	ck_assert_msg(strstr(err.message, path) != NULL, "message '%s' does not name the file", err.message);
	char *after = slurp(path, &after_len);
	ck_assert_uint_eq(before_len, after_len);
	ck_assert_msg(memcmp(before, after, before_len) == 0, "%s was modified", path);
	free(before);
	free(after);
}

START_TEST(refuses_newer_schema)
{
	scry_store *s = open_store();
	scry_store_free(s);
	raw_sql(path, "PRAGMA user_version = 99");
	raw_sql(path, "PRAGMA wal_checkpoint(TRUNCATE)");
	refused_untouched(SCRY_ESCHEMA, "newer scry");
	ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), 99);
}
END_TEST

/* The schema of store version 1 (scry 0.1.0), verbatim. */
static const char v1_schema[] =
	"CREATE TABLE scry_meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;\n"
	"CREATE TABLE patterns(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  fingerprint INTEGER UNIQUE,      -- pg_query fingerprint as signed 64-bit; NULL if unparsable\n"
	"  normalized TEXT,                 -- pg_query_normalize() of its first statement\n"
	"  parse_error TEXT,\n"
	"  count INTEGER NOT NULL,          -- captured executions\n"
	"  errors INTEGER NOT NULL,         -- captured executions with a SQLSTATE\n"
	"  total_us INTEGER NOT NULL,       -- sum of known captured durations\n"
	"  timed INTEGER NOT NULL,          -- executions with a known duration\n"
	"  first_us INTEGER, last_us INTEGER);\n"
	"CREATE TABLE statements(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  hash INTEGER NOT NULL,           -- XXH3-64 of template\n"
	"  pattern INTEGER NOT NULL REFERENCES patterns(id),\n"
	"  template TEXT NOT NULL,          -- text, literals replaced by bytes 0x01-0x03\n"
	"  literals INTEGER NOT NULL);      -- number of lifted literals\n"
	"CREATE INDEX statements_hash ON statements(hash);\n"
	"CREATE TABLE sessions(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  source TEXT NOT NULL, database TEXT, user_name TEXT, application TEXT, client TEXT,\n"
	"  started_us INTEGER NOT NULL, ended_us INTEGER,\n"
	"  events INTEGER NOT NULL);        -- events captured (the last seq)\n"
	"CREATE TABLE events(\n"
	"  id INTEGER PRIMARY KEY,          -- capture order\n"
	"  session INTEGER NOT NULL,\n"
	"  seq INTEGER NOT NULL,            -- 1-based position in its session\n"
	"  offset_us INTEGER NOT NULL,      -- start, relative to sessions.started_us\n"
	"  duration_us INTEGER,             -- NULL when unknown\n"
	"  statement INTEGER NOT NULL,\n"
	"  literals BLOB,                   -- lifted literals: (varint length, bytes)*\n"
	"  params BLOB,                     -- bound parameters: (varint oid, varint format, varint length+1, bytes)*\n"
	"  rows INTEGER,\n"
	"  sqlstate TEXT,                   -- NULL on success\n"
	"  kind INTEGER NOT NULL);          -- 0 simple, 1 extended, 2 copy\n"
	"CREATE TABLE event_errors(event INTEGER PRIMARY KEY, message TEXT);\n"
	"CREATE TABLE runs(\n"
	"  id INTEGER PRIMARY KEY, label TEXT NOT NULL, target TEXT, options TEXT,\n"
	"  started_us INTEGER NOT NULL, ended_us INTEGER,\n"
	"  executions INTEGER, errors INTEGER, timeouts INTEGER, reconnects INTEGER,\n"
	"  per_second REAL, summary TEXT);\n"
	"CREATE INDEX runs_label ON runs(label);\n"
	"CREATE TABLE samples(\n"
	"  id INTEGER PRIMARY KEY, run INTEGER NOT NULL, event INTEGER NOT NULL,\n"
	"  round INTEGER NOT NULL, latency_us INTEGER NOT NULL, rows INTEGER, sqlstate TEXT);\n"
	"CREATE INDEX samples_run ON samples(run, event);\n"
	"CREATE TABLE plans(\n"
	"  run INTEGER NOT NULL, pattern INTEGER NOT NULL, event INTEGER, plan TEXT NOT NULL,\n"
	"  PRIMARY KEY(run, pattern));\n"
	"CREATE VIEW patterns_v AS SELECT id, printf('%016x', fingerprint) AS fingerprint, normalized,\n"
	"  count, errors, CASE WHEN timed > 0 THEN total_us * 1.0 / timed END AS mean_us, parse_error\n"
	"  FROM patterns;\n"
	"CREATE VIEW events_v AS SELECT e.id, e.session, e.seq, s.started_us + e.offset_us AS start_us,\n"
	"  e.duration_us, printf('%016x', p.fingerprint) AS fingerprint, p.normalized, e.rows, e.sqlstate\n"
	"  FROM events e JOIN sessions s ON s.id = e.session JOIN statements st ON st.id = e.statement\n"
	"  JOIN patterns p ON p.id = st.pattern;\n";

/* A schema 1 store (before portals, COPY data and session parameters) is
 * read as it is when opened read-only, and upgraded in place otherwise. */
START_TEST(upgrades_schema_1)
{
	scry_store *s;
	raw_sql(path, v1_schema);
	raw_sql(path, "INSERT INTO patterns VALUES (1, 42, 'SELECT $1', NULL, 1, 0, 5, 1, 1000, 1000);"
	              "INSERT INTO statements VALUES (1, 7, 1, 'SELECT 1', 0);"
	              "INSERT INTO sessions VALUES (1, 'api', 'shop', 'app', 'web', '[local]', 1000, NULL, 1);"
	              "INSERT INTO events VALUES (1, 1, 1, 0, 5, 1, NULL, NULL, 1, NULL, 0);"
	              "PRAGMA user_version = 1");
	int64_t sid = 1;

	scry_store_options ro = SCRY_STORE_OPTIONS_INIT;
	ro.read_only = 1;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&s, path, &ro, &err) == 0, "%s", err.message);
	scry_event_iter *it;
	const scry_stored_event *se;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	ck_assert_int_eq(scry_event_iter_next(it, &se, NULL), 1);
	ck_assert_str_eq(se->query, "SELECT 1");
	ck_assert_int_eq(se->fetch_rows, 0);
	ck_assert_ptr_null(se->copy_data);
	scry_event_iter_free(it);
	scry_store_free(s);
	ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), 1);

	s = open_store();
	ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), SCRY_STORE_SCHEMA_VERSION);
	ck_assert_int_eq(scry_store_session_set_params(s, sid, "options=-c search_path=app", NULL), 0);
	ck_assert_int_eq(scry_store_session_set_params(s, sid + 100, "x=y", NULL), SCRY_ENOTFOUND);
	scry_event more[2] = { ev(sid, 2000, 5, "COPY t FROM STDIN"), ev(sid, 3000, 5, "SELECT * FROM t WHERE a = 'cut") };
	more[0].kind = SCRY_EVENT_COPY;
	more[0].copy_data = "1\tx\n";
	more[0].copy_len = 4;
	more[1].flags = SCRY_EVENT_F_TRUNCATED;
	more[1].fetch_rows = 100;
	ck_assert_int_eq(scry_store_append(s, more, 2, sizeof more[0], NULL), 0);
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	ck_assert_int_eq(scry_event_iter_next(it, &se, NULL), 1);
	ck_assert_str_eq(se->session_params, "options=-c search_path=app");
	ck_assert_str_eq(se->session_user, "app");
	ck_assert_int_eq(scry_event_iter_next(it, &se, NULL), 1);
	ck_assert_uint_eq(se->copy_len, 4);
	ck_assert_int_eq(memcmp(se->copy_data, "1\tx\n", 4), 0);
	ck_assert_int_eq(scry_event_iter_next(it, &se, NULL), 1);
	ck_assert_uint_eq(se->flags, SCRY_EVENT_F_TRUNCATED);
	ck_assert_int_eq(se->fetch_rows, 100);
	ck_assert_uint_ne(se->fingerprint, 0);
	scry_event_iter_free(it);
	/* The truncated text is its own pattern, marked as such, never fingerprinted. */
	scry_pattern_iter *pi;
	const scry_pattern *p;
	bool seen = false;
	ck_assert_int_eq(scry_store_patterns(s, &pi, NULL), 0);
	while (scry_pattern_iter_next(pi, &p, NULL) == 1)
		if (p->parse_error && strstr(p->parse_error, "truncated"))
			seen = true;
	scry_pattern_iter_free(pi);
	ck_assert(seen);
	scry_store_free(s);
}
END_TEST

START_TEST(refuses_non_sqlite_file)
{
	const char junk[] = "order_id,total\n1,19.99\n2,5.00\n";
	write_file(path, junk, sizeof junk - 1);
	refused_untouched(SCRY_ECORRUPT, "not a SQLite database");
	/* A tiny file too. */
	write_file(path, "x", 1);
	refused_untouched(SCRY_ECORRUPT, "not a SQLite database");
}
END_TEST

START_TEST(refuses_foreign_sqlite_db)
{
	raw_sql(path, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ann')");
	refused_untouched(SCRY_ESCHEMA, "not a scry store");
	ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM users"), 1);
}
END_TEST

START_TEST(refuses_corrupt_store)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	scry_event e = ev(sid, 1, 1, "SELECT 1");
	ck_assert_int_eq(scry_store_append(s, &e, 1, sizeof(scry_event), NULL), 0);
	scry_store_free(s);
	raw_sql(path, "PRAGMA wal_checkpoint(TRUNCATE)");
	/* Keep the 100-byte header, smash the schema page behind it. */
	size_t len;
	char *b = slurp(path, &len);
	ck_assert_uint_gt(len, 4096);
	for (size_t i = 100; i < 4096; i++)
		b[i] = (char)(i * 7 + 3);
	write_file(path, b, len);
	free(b);
	refused_untouched(SCRY_ECORRUPT, "corrupt");
}
END_TEST

START_TEST(missing_file_when_it_must_exist)
{
	scry_store_options o = SCRY_STORE_OPTIONS_INIT;
	o.must_exist = 1;
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&s, path, &o, &err), SCRY_ENOTFOUND);
	ck_assert_ptr_null(s);
	ck_assert_int_ne(access(path, F_OK), 0); /* not created */
	o = (scry_store_options)SCRY_STORE_OPTIONS_INIT;
	o.read_only = 1;
	ck_assert_int_eq(scry_store_open(&s, path, &o, &err), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_open(&s, "", NULL, &err), SCRY_EINVAL);
	ck_assert_int_eq(scry_store_open(NULL, path, NULL, &err), SCRY_EINVAL);
	char deep[600];
	snprintf(deep, sizeof deep, "%s/no/such/dir/x.db", dir);
	ck_assert_int_lt(scry_store_open(&s, deep, NULL, &err), 0);
	ck_assert_ptr_null(s);
	ck_assert(err.message[0] != 0);
}
END_TEST

START_TEST(runs_samples_plans)
{
	scry_store *s = open_store();
	int64_t sid = add_session(s, 0);
	scry_event evs[2] = { ev(sid, 1, 5, "SELECT * FROM t WHERE a = 1"), ev(sid, 2, 5, "SELECT * FROM u") };
	ck_assert_int_eq(scry_store_append(s, evs, 2, sizeof(scry_event), NULL), 0);
	int64_t run, found;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_run_find(s, "baseline", &found, &err), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_run_begin(s, "baseline", "dbname=a", NULL, &run, NULL), 0);
	scry_sample smp[4] = { { 2, 0, 900, 3, "" }, { 1, 0, 100, 1, "" }, { 1, 1, 120, 1, "" }, { 2, 1, 50, -1, "57014" } };
	ck_assert_int_eq(scry_store_samples_append(s, run, smp, 4, sizeof(scry_sample), NULL), 0);
	scry_run_summary sum = { SCRY_RUN_SUMMARY_VERSION, 4, 1, 1, 0, 1234.5, "{\"x\":1}" };
	ck_assert_int_eq(scry_store_run_end(s, run, &sum, NULL), 0);
	ck_assert_int_eq(scry_store_run_end(s, run + 50, &sum, NULL), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_run_find(s, "baseline", &found, NULL), 0);
	ck_assert_int_eq(found, run);
	scry_sample_iter *it;
	ck_assert_int_eq(scry_store_samples(s, run, &it, NULL), 0);
	const scry_stored_sample *x;
	/* Ordered by pattern, event, round: event 1's pattern was created first. */
	int64_t want_ev[4] = { 1, 1, 2, 2 }, want_lat[4] = { 100, 120, 900, 50 };
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(scry_sample_iter_next(it, &x, NULL), 1);
		ck_assert_int_eq(x->event_id, want_ev[i]);
		ck_assert_int_eq(x->latency_us, want_lat[i]);
	}
	ck_assert_str_eq(x->sqlstate, "57014");
	ck_assert_int_eq(x->rows, -1);
	ck_assert_uint_eq(x->fingerprint, pg_fp("SELECT * FROM u"));
	ck_assert_int_eq(scry_sample_iter_next(it, &x, NULL), 0);
	scry_sample_iter_free(it);
	uint64_t fp = pg_fp("SELECT * FROM u");
	ck_assert_int_eq(scry_store_plan_put(s, run, fp, 2, "[{\"Plan\":{}}]", NULL), 0);
	ck_assert_int_eq(scry_store_plan_put(s, run, fp, 2, "[{\"Plan\":{\"v\":2}}]", NULL), 0);
	scry_buf b = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_store_plan_get(s, run, fp, &b, NULL), 0);
	ck_assert_str_eq(b.ptr, "[{\"Plan\":{\"v\":2}}]");
	scry_buf_dispose(&b);
	ck_assert_int_eq(scry_store_plan_get(s, run, fp ^ 1, &b, NULL), SCRY_ENOTFOUND);
	ck_assert_int_eq(scry_store_plan_put(s, run, fp ^ 1, 2, "{}", NULL), SCRY_ENOTFOUND);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.runs, 1);
	ck_assert_int_eq(info.samples, 4);
	scry_store_free(s);
}
END_TEST

/* A larger stream: few statement rows, exact texts, modest size per event. */
START_TEST(repetitive_stream_is_compact)
{
	scry_store *s = open_store();
	int64_t sids[8];
	for (int i = 0; i < 8; i++)
		sids[i] = add_session(s, 1700000000000000 + i);
	enum { N = 20000, B = 1000 };
	static char bufs[B][128];
	scry_event evs[B];
	for (int base = 0; base < N; base += B) {
		for (int i = 0; i < B; i++) {
			int k = base + i;
			switch (k % 4) {
			case 0: snprintf(bufs[i], 128, "SELECT * FROM orders WHERE id = %d", k * 7919 % 100000); break;
			case 1: snprintf(bufs[i], 128, "UPDATE carts SET qty = %d WHERE id = %d", k % 9, k); break;
			case 2: snprintf(bufs[i], 128, "SELECT name FROM users WHERE email = 'u%d@example.com'", k); break;
			default: snprintf(bufs[i], 128, "SELECT sum(total) FROM orders WHERE placed > %d.5", k); break;
			}
			evs[i] = ev(sids[k % 8], 1700000001000000 + k * 250, 100 + k % 50, bufs[i]);
		}
		ck_assert_int_eq(scry_store_append(s, evs, B, sizeof(scry_event), NULL), 0);
	}
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, NULL), 0);
	ck_assert_int_eq(info.events, N);
	ck_assert_int_eq(info.statements, 4);
	ck_assert_int_eq(info.patterns, 4);
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, NULL), 0);
	const scry_stored_event *e;
	int k = 0;
	while (scry_event_iter_next(it, &e, NULL) == 1) {
		if (k % 4 == 2) {
			char want[128];
			snprintf(want, sizeof want, "SELECT name FROM users WHERE email = 'u%d@example.com'", k);
			ck_assert_str_eq(e->query, want);
		}
		k++;
	}
	ck_assert_int_eq(k, N);
	scry_event_iter_free(it);
	scry_store_free(s);
	raw_sql(path, "PRAGMA wal_checkpoint(TRUNCATE)");
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	/* Texts are kept once: far below the ~45 bytes of text per event. */
	double per_event = (double)st.st_size / N;
	fprintf(stderr, "repetitive stream: %.1f bytes per event\n", per_event);
	ck_assert_msg(per_event < 64, "%.1f bytes per event", per_event);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, creates_schema_in_wal);
	tcase_add_test(tc, append_and_read_back_in_order);
	tcase_add_test(tc, patterns_count_and_latency);
	tcase_add_test(tc, parse_errors_are_kept);
	tcase_add_test(tc, marker_bytes_round_trip);
	tcase_add_test(tc, batch_is_all_or_nothing);
	tcase_add_test(tc, transactions_keep_caches_right);
	tcase_add_test(tc, reopen_continues);
	tcase_add_test(tc, refuses_newer_schema);
	tcase_add_test(tc, upgrades_schema_1);
	tcase_add_test(tc, refuses_non_sqlite_file);
	tcase_add_test(tc, refuses_foreign_sqlite_db);
	tcase_add_test(tc, refuses_corrupt_store);
	tcase_add_test(tc, missing_file_when_it_must_exist);
	tcase_add_test(tc, runs_samples_plans);
	tcase_add_test(tc, repetitive_stream_is_compact);
	suite_add_tcase(su, tc);
	int status = pgtest_run_suite(su, 0);
	rmdir(dir);
	pg_query_exit();
	return status;
}
