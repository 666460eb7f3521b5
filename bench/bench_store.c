/*
 * bench/bench_store.c - workload store ingest: events appended per second
 * and bytes per event on a repetitive captured stream (default 1,000,000
 * events from 200 patterns with varying constants, 50 sessions; see
 * bench/stream.h), in batches through scry_store_append(). Side by side in
 * the same run: a plain SQLite table holding the full text of every event
 * (same pragmas, prepared statement, one transaction per batch), the
 * obvious way to store a workload. Bytes are measured after a TRUNCATE
 * checkpoint (the WAL folded into the main file). Every event is read back
 * through scry_store_events() and compared with the text appended.
 *
 * usage: bench_store [EVENTS [PATTERNS [RUNS [BATCH [DIR]]]]]
 */
#include "internal.h"
#include "stream.h"

#include <pg_query.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#define SESSIONS 50

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void remove_db(const char *path)
{
	char p[600];
	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
}

/* TRUNCATE checkpoint, then the main file's size. */
static long long checkpointed_size(const char *path)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	sqlite3_close(db);
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void fill_event(scry_event *e, const stream *s, size_t i, const int64_t *sids)
{
	memset(e, 0, sizeof *e);
	unsigned long long r = (unsigned long long)i * 2654435761u;
	e->session_id = sids[i % SESSIONS];
	e->start_us = 1700000000000000 + (int64_t)i * 120;
	e->duration_us = 50 + (int64_t)(r % 5000);
	e->kind = SCRY_EVENT_SIMPLE;
	e->query = stream_get(s, i);
	e->query_len = s->len[i];
	e->rows = (int64_t)(r % 20);
}

static int run_scry(const stream *s, const char *path, size_t batch, double *wall, double *cpu, long long *bytes)
{
	remove_db(path);
	scry_store *st;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(&st, path, NULL, &err)) {
		fprintf(stderr, "open: %s\n", err.message);
		return 1;
	}
	int64_t sids[SESSIONS];
	for (int i = 0; i < SESSIONS; i++) {
		scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_PROXY, "shop", "app", "web", "10.0.0.1", 1700000000000000 };
		if (scry_store_session_add(st, &si, &sids[i], &err))
			return 1;
	}
	scry_event *evs = malloc(batch * sizeof *evs);
	double w0 = wall_now(), c0 = bench_now();
	for (size_t start = 0; start < s->n; start += batch) {
		size_t k = start + batch <= s->n ? batch : s->n - start;
		for (size_t i = 0; i < k; i++)
			fill_event(&evs[i], s, start + i, sids);
		if (scry_store_append(st, evs, k, sizeof(scry_event), &err)) {
			fprintf(stderr, "append: %s\n", err.message);
			return 1;
		}
	}
	*wall = wall_now() - w0;
	*cpu = bench_now() - c0;
	free(evs);
	scry_store_free(st);
	*bytes = checkpointed_size(path);
	return 0;
}

static int run_naive(const stream *s, const char *path, size_t batch, double *wall, double *cpu, long long *bytes)
{
	remove_db(path);
	sqlite3 *db;
	sqlite3_stmt *q;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return 1;
	sqlite3_exec(db,
	             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;"
	             "CREATE TABLE events(id INTEGER PRIMARY KEY, session INTEGER, start_us INTEGER,"
	             " duration_us INTEGER, query TEXT, rows INTEGER)",
	             NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db, "INSERT INTO events(session, start_us, duration_us, query, rows) VALUES (?,?,?,?,?)", -1,
	                       &q, NULL) != SQLITE_OK)
		return 1;
	int64_t sids[SESSIONS];
	for (int i = 0; i < SESSIONS; i++)
		sids[i] = i + 1;
	double w0 = wall_now(), c0 = bench_now();
	scry_event e;
	for (size_t start = 0; start < s->n; start += batch) {
		size_t k = start + batch <= s->n ? batch : s->n - start;
		sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		for (size_t i = 0; i < k; i++) {
			fill_event(&e, s, start + i, sids);
			sqlite3_reset(q);
			sqlite3_bind_int64(q, 1, e.session_id);
			sqlite3_bind_int64(q, 2, e.start_us);
			sqlite3_bind_int64(q, 3, e.duration_us);
			sqlite3_bind_text(q, 4, e.query, (int)e.query_len, SQLITE_STATIC);
			sqlite3_bind_int64(q, 5, e.rows);
			if (sqlite3_step(q) != SQLITE_DONE)
				return 1;
		}
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	*wall = wall_now() - w0;
	*cpu = bench_now() - c0;
	sqlite3_finalize(q);
	sqlite3_close(db);
	*bytes = checkpointed_size(path);
	return 0;
}

/* Reads every event back; returns mismatches, sets the read rate. */
static size_t verify(const stream *s, const char *path, double *read_rate)
{
	scry_store *st;
	scry_store_options o = SCRY_STORE_OPTIONS_INIT;
	o.read_only = 1;
	if (scry_store_open(&st, path, &o, NULL))
		return s->n;
	scry_event_iter *it;
	if (scry_store_events(st, NULL, &it, NULL))
		return s->n;
	const scry_stored_event *e;
	size_t i = 0, bad = 0;
	double w0 = wall_now();
	while (scry_event_iter_next(it, &e, NULL) == 1) {
		if (i >= s->n || e->query_len != s->len[i] || memcmp(e->query, stream_get(s, i), s->len[i]))
			bad++;
		i++;
	}
	*read_rate = i / (wall_now() - w0);
	scry_event_iter_free(it);
	scry_store_free(st);
	return bad + (i != s->n ? s->n : 0);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	int patterns = argc > 2 ? atoi(argv[2]) : 200;
	int runs = argc > 3 ? atoi(argv[3]) : 3;
	size_t batch = argc > 4 ? strtoul(argv[4], NULL, 10) : 1000;
	const char *dir = argc > 5 ? argv[5] : "/tmp";
	if (!n || patterns < 1 || runs < 1 || runs > 64 || !batch) {
		fprintf(stderr, "usage: bench_store [EVENTS [PATTERNS [RUNS [BATCH [DIR]]]]]\n");
		return 2;
	}
	char path[512], npath[512];
	snprintf(path, sizeof path, "%s/scry-bench-store-%d.db", dir, (int)getpid());
	snprintf(npath, sizeof npath, "%s/scry-bench-naive-%d.db", dir, (int)getpid());
	stream s;
	stream_build(&s, n, patterns, 7);
	double sw[64], sc[64], nw[64], nc[64], sb = 0, nb = 0;
	for (int r = 0; r < runs; r++) {
		long long b1 = 0, b2 = 0;
		/* Alternate which side goes first. */
		for (int side = 0; side < 2; side++) {
			if ((side == 0) == (r % 2 == 0)) {
				if (run_scry(&s, path, batch, &sw[r], &sc[r], &b1))
					return 1;
			} else if (run_naive(&s, npath, batch, &nw[r], &nc[r], &b2)) {
				return 1;
			}
		}
		sb = (double)b1 / (double)n;
		nb = (double)b2 / (double)n;
		fprintf(stderr, "run %d: scry %.0f ev/s (cpu %.0f), %.1f B/ev; naive %.0f ev/s (cpu %.0f), %.1f B/ev\n", r + 1,
		        n / sw[r], n / sc[r], sb, n / nw[r], n / nc[r], nb);
		sw[r] = n / sw[r];
		sc[r] = n / sc[r];
		nw[r] = n / nw[r];
		nc[r] = n / nc[r];
	}
	double read_rate = 0;
	size_t bad = verify(&s, path, &read_rate);
	printf("store ingest: %zu events, %d patterns, %d sessions, batches of %zu, %d runs, %.1f MB of SQL text\n", n,
	       patterns, SESSIONS, batch, runs, s.bytes / 1e6);
	printf("  scry_store_append:        %10.0f events/s wall, %10.0f events/s CPU (medians); %.1f bytes/event\n",
	       bench_median(sw, runs), bench_median(sc, runs), sb);
	printf("  plain SQLite, full texts: %10.0f events/s wall, %10.0f events/s CPU (medians); %.1f bytes/event\n",
	       bench_median(nw, runs), bench_median(nc, runs), nb);
	printf("  read back through scry_store_events: %.0f events/s; texts differing from those appended: %zu\n",
	       read_rate, bad);
	remove_db(path);
	remove_db(npath);
	stream_free(&s);
	pg_query_exit();
	return bad ? 1 : 0;
}
