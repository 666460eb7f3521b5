/*
 * lib/impact.c - what the migration does to live traffic while it runs:
 * a sampler thread polling pg_locks / pg_stat_activity of the migrating
 * clone, before/after snapshots (rewrites, indexes, WAL) and the latency of
 * the workload replayed meanwhile. See include/scry/impact.h and
 * docs/impact.md.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "util/pgexec.h"

#include <inttypes.h>
#include <stddef.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* One (table, mode) the migration held: its current and its longest hold. */
typedef struct hold {
	char *rel, *mode;
	int64_t last_poll;          /* poll number it was last seen in */
	int64_t cur_start, cur_last;/* server time (us): estimated start, last sighting */
	char *cur_stmt;             /* statement at the current hold's start */
	int64_t best_us, best_start;
	char *best_stmt;
} hold;

/* One execution seen waiting on the migration. */
typedef struct waiter {
	int pid;
	int64_t qstart, first, last, now_last;
	char *query, *rel, *lock, *blocker;
} waiter;

/* A table or index from a snapshot. */
typedef struct relrow {
	uint32_t oid, filenode;
	char kind; /* 'r' table, 'i' index */
	bool valid;
	char *name;
} relrow;

/* A pattern's latencies while the migration ran. */
typedef struct lat {
	uint64_t fp;
	double *a, *b;
	size_t na, nb, capa, capb;
	int64_t errors;
	char sqlstate[6];
	int64_t err_state_n;
} lat;

struct scry_impact {
	scry_impact_options opts;
	char *app;
	PGconn *pg;
	pthread_t th;
	bool running, stopped;
	atomic_int stop;
	int64_t t0_mono, t0_server, duration_us, polls, interval_us;
	int64_t prev_now;           /* server time of the previous poll */
	char lsn[64];
	int64_t wal_bytes;
	char poll_error[256];
	bool poll_prepared; /* POLL_SQL prepared on pg: planning it took 2 ms of the server's CPU per poll */

	hold *holds;
	size_t nholds, capholds;
	waiter *waiters;
	size_t nwaiters, capwaiters;
	relrow *before;
	size_t nbefore;

	/* Results, built by stop() and add_latency(). */
	scry_impact_lock *locks;
	size_t nlocks;
	scry_impact_wait *waits;
	char **wait_locks;          /* waits[i].lock: every lock its executions waited on */
	size_t nwaits;
	scry_impact_pattern *patterns;
	size_t npatterns;
	char **objs[3];
	size_t nobjs[3], capobjs[3];
	int64_t max_wait_us, nwaiting;
};

void scry_impact_options_init(scry_impact_options *opts)
{
	if (opts)
		*opts = (scry_impact_options)SCRY_IMPACT_OPTIONS_INIT;
}

#define ilog(im, level, ...) scry__log((im)->opts.log, (im)->opts.log_ctx, level, __VA_ARGS__)

static int64_t i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *str(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

/* Server time in microseconds, as the polls report it. */
#define NOW_US "(extract(epoch from clock_timestamp()) * 1000000)::bigint"

/*
 * One poll, one round trip: the table locks (Share and stronger: the ones
 * that block the workload's reads or writes) held by the migration's
 * connections, and the queries that wait on one of them.
 */
static const char POLL_SQL[] =
	"SELECT 'H', l.pid, l.relation::regclass::text, l.mode, a.query, NULL, 0, " NOW_US
	" FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
	" JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
	" WHERE a.application_name = $1 AND a.datname = current_database()"
	" AND l.locktype = 'relation' AND l.granted AND c.relkind IN ('r','p','m')"
	" AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'"
	" AND l.mode IN ('ShareLock','ShareRowExclusiveLock','ExclusiveLock','AccessExclusiveLock')"
	" UNION ALL"
	" SELECT 'W', a.pid,"
	" (SELECT l.relation::regclass::text FROM pg_locks l WHERE l.pid = a.pid"
	"   AND l.relation IS NOT NULL AND (NOT l.granted OR l.locktype = 'tuple')"
	"   ORDER BY l.granted LIMIT 1),"
	" (SELECT m.query FROM pg_stat_activity m WHERE m.pid = ANY (pg_blocking_pids(a.pid))"
	"   AND m.application_name = $1 LIMIT 1), a.query, a.wait_event,"
	" (extract(epoch from a.query_start) * 1000000)::bigint, " NOW_US
	" FROM pg_stat_activity a WHERE a.datname = current_database()"
	" AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()"
	" AND a.application_name IS DISTINCT FROM $1"
	" AND EXISTS (SELECT 1 FROM pg_stat_activity m WHERE m.pid = ANY (pg_blocking_pids(a.pid))"
	"   AND m.application_name = $1)"
	" UNION ALL SELECT 'T', 0, NULL, NULL, NULL, NULL, 0, " NOW_US;

static hold *find_hold(scry_impact *im, const char *rel, const char *mode)
{
	for (size_t i = 0; i < im->nholds; i++)
		if (!strcmp(im->holds[i].rel, rel) && !strcmp(im->holds[i].mode, mode))
			return &im->holds[i];
	if (scry__array_grow((void **)&im->holds, &im->capholds, im->nholds, sizeof *im->holds, 8))
		return NULL;
	hold *h = &im->holds[im->nholds];
	memset(h, 0, sizeof *h);
	h->rel = scry__strdup(rel);
	h->mode = scry__strdup(mode);
	h->last_poll = -2;
	if (!h->rel || !h->mode) {
		scry__free(h->rel);
		scry__free(h->mode);
		return NULL;
	}
	im->nholds++;
	return h;
}

/* A hold's length so far, or until `end`; kept when it is the longest. */
static void hold_measure(scry_impact *im, hold *h, int64_t end)
{
	int64_t held = end - h->cur_start;
	if (held <= h->best_us)
		return;
	h->best_us = held;
	h->best_start = h->cur_start - im->t0_server;
	scry__free(h->best_stmt);
	h->best_stmt = h->cur_stmt ? scry__strdup(h->cur_stmt) : NULL;
}

/*
 * A hold began between the last poll that did not see it and the first
 * that did, and ended between the last that saw it and the next: the
 * midpoints of the actual gaps (polls slow down on a loaded server).
 */
static void note_hold(scry_impact *im, const char *rel, const char *mode, const char *stmt, int64_t now)
{
	hold *h = find_hold(im, rel, mode);
	if (!h)
		return; /* out of memory: this sighting is lost, the next may fit */
	if (h->last_poll == im->polls)
		return; /* two migration backends holding the same: one hold */
	if (h->last_poll != im->polls - 1) {
		h->cur_start = im->prev_now ? (im->prev_now + now) / 2 : now - im->interval_us / 2;
		scry__free(h->cur_stmt);
		h->cur_stmt = scry__strdup(stmt);
	}
	h->cur_last = now;
	h->last_poll = im->polls;
	hold_measure(im, h, now + im->interval_us / 2); /* provisional: the sampler may stop next */
}

/* After a poll at `now`: holds seen by the previous poll and not by this one ended in between. */
static void close_holds(scry_impact *im, int64_t now)
{
	for (size_t i = 0; i < im->nholds; i++) {
		hold *h = &im->holds[i];
		if (h->last_poll == im->polls - 1)
			hold_measure(im, h, (h->cur_last + now) / 2);
	}
}

/* Adds `word` to the comma-separated list *list unless it is there (out of memory: unchanged). */
static void add_word(char **list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = *list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !memcmp(p, word, n))
			return;
		p = e ? e + 1 : p + len;
	}
	size_t have = *list ? strlen(*list) : 0;
	char *s = scry__realloc(*list, have + n + 2);
	if (!s)
		return;
	if (have)
		s[have++] = ',';
	memcpy(s + have, word, n + 1);
	*list = s;
}

static void note_wait(scry_impact *im, int pid, int64_t qstart, const char *query, const char *rel,
	const char *lock, const char *blocker, int64_t now)
{
	for (size_t i = im->nwaiters; i-- > 0;) {
		waiter *w = &im->waiters[i];
		if (w->pid == pid && w->qstart == qstart) {
			w->last = w->now_last = now;
			add_word(&w->lock, lock); /* one wait can move from lock to lock */
			if (!w->rel[0] && rel[0]) {
				char *r = scry__strdup(rel);
				if (r) {
					scry__free(w->rel);
					w->rel = r;
				}
			}
			return;
		}
	}
	if (scry__array_grow((void **)&im->waiters, &im->capwaiters, im->nwaiters, sizeof *im->waiters, 32))
		return;
	waiter *w = &im->waiters[im->nwaiters];
	w->pid = pid;
	w->qstart = qstart;
	w->first = w->last = w->now_last = now;
	w->query = scry__strdup(query);
	w->rel = scry__strdup(rel);
	w->lock = NULL;
	add_word(&w->lock, lock);
	w->blocker = scry__strdup(blocker);
	if (!w->query || !w->rel || !w->lock || !w->blocker) {
		scry__free(w->query);
		scry__free(w->rel);
		scry__free(w->lock);
		scry__free(w->blocker);
		return;
	}
	im->nwaiters++;
}

static void poll_once(scry_impact *im)
{
	const char *params[1] = { im->app };
	if (!im->poll_prepared) {
		/* Planned once: 0.17 ms a poll instead of 2.1 ms (pgbench -M prepared vs simple on
		 * this query), 200 polls a second on the cores the workload needs. */
		PGresult *p = PQprepare(im->pg, "scry_impact_poll", POLL_SQL, 1, NULL);
		im->poll_prepared = PQresultStatus(p) == PGRES_COMMAND_OK;
		PQclear(p);
	}
	PGresult *r = im->poll_prepared ? PQexecPrepared(im->pg, "scry_impact_poll", 1, params, NULL, NULL, 0)
	                                : PQexecParams(im->pg, POLL_SQL, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		if (!im->poll_error[0])
			scry__pg_result_message(r, im->pg, im->poll_error, sizeof im->poll_error);
		PQclear(r);
		return;
	}
	int64_t now = 0;
	for (int i = 0; i < PQntuples(r); i++)
		if (str(r, i, 0)[0] == 'T')
			now = i64(r, i, 7);
	for (int i = 0; i < PQntuples(r); i++) {
		char kind = str(r, i, 0)[0];
		if (kind == 'H')
			note_hold(im, str(r, i, 2), str(r, i, 3), str(r, i, 4), now);
		else if (kind == 'W')
			note_wait(im, (int)i64(r, i, 1), i64(r, i, 6), str(r, i, 4), str(r, i, 2), str(r, i, 5),
			          str(r, i, 3), i64(r, i, 7));
	}
	PQclear(r);
	close_holds(im, now);
	im->prev_now = now;
	im->polls++;
}

static void *sampler_main(void *arg)
{
	scry_impact *im = arg;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (!atomic_load(&im->stop)) {
		poll_once(im);
		if (PQstatus(im->pg) != CONNECTION_OK)
			break;
		next.tv_nsec += im->interval_us * 1000;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		/* A poll slower than the interval: go on from now, not in a burst. */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
			next = now;
		else
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return NULL;
}

/* User tables and indexes with their files (the after-snapshot compares them). */
static const char SNAPSHOT_SQL[] =
	"SELECT c.oid, c.relfilenode, c.relkind, coalesce(i.indisvalid, true), c.oid::regclass::text"
	" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	" LEFT JOIN pg_index i ON i.indexrelid = c.oid"
	" WHERE c.relkind IN ('r','p','m','i') AND n.nspname <> 'information_schema'"
	" AND n.nspname NOT LIKE 'pg\\_%'";

static void free_rows(relrow *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		scry__free(rows[i].name);
	scry__free(rows);
}

static int snapshot(scry_impact *im, relrow **out, size_t *nout, scry_error *err)
{
	*out = NULL;
	*nout = 0;
	PGresult *r = PQexec(im->pg, SNAPSHOT_SQL);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		char msg[256];
		scry__pg_result_message(r, im->pg, msg, sizeof msg);
		PQclear(r);
		return scry__fail(err, SCRY_EPG, "cannot list the clone's tables: %s", msg);
	}
	int n = PQntuples(r);
	relrow *rows = scry__calloc((size_t)n + 1, sizeof *rows);
	if (!rows) {
		PQclear(r);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		rows[i].oid = (uint32_t)i64(r, i, 0);
		rows[i].filenode = (uint32_t)i64(r, i, 1);
		rows[i].kind = str(r, i, 2)[0] == 'i' ? 'i' : 'r';
		rows[i].valid = str(r, i, 3)[0] == 't';
		rows[i].name = scry__strdup(str(r, i, 4));
		if (!rows[i].name) {
			PQclear(r);
			free_rows(rows, (size_t)i);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
	}
	PQclear(r);
	*out = rows;
	*nout = (size_t)n;
	return 0;
}

static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int scry_impact_start(scry_impact **out, const char *conninfo, const scry_impact_options *opts,
	scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "out is NULL");
	*out = NULL;
	if (!conninfo)
		return scry__fail(err, SCRY_EINVAL, "a connection string is needed");
	scry_impact_options o;
	int rc = scry__opts_copy(err, &scry__abi_impact_options, &o, opts);
	if (rc)
		return rc;
	scry_impact *im = scry__calloc(1, sizeof *im);
	if (!im)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	im->opts = o;
	if (im->opts.interval_ms <= 0)
		im->opts.interval_ms = 5;
	if (im->opts.min_lock_ms < 0)
		im->opts.min_lock_ms = 0;
	im->interval_us = (int64_t)im->opts.interval_ms * 1000;
	im->app = scry__strdup(im->opts.migration_application ? im->opts.migration_application
	                                                        : SCRY_IMPACT_MIGRATION_APP);
	im->opts.migration_application = NULL;
	im->wal_bytes = -1;
	atomic_init(&im->stop, 0);
	if (!im->app) {
		scry_impact_free(im);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	im->pg = scry__pg_connect(conninfo, "scry impact", true, -1);
	if (!im->pg || PQstatus(im->pg) != CONNECTION_OK) {
		rc = scry__pg_connect_fail(err, im->pg, "the migrating clone");
		scry_impact_free(im);
		return rc;
	}
	PQsetNoticeProcessor(im->pg, quiet_notice, NULL); /* the library never prints */
	PGresult *r = PQexec(im->pg, "SELECT pg_current_wal_lsn()::text, " NOW_US);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		snprintf(im->lsn, sizeof im->lsn, "%s", str(r, 0, 0));
		im->t0_server = i64(r, 0, 1);
	}
	PQclear(r);
	rc = snapshot(im, &im->before, &im->nbefore, err);
	if (rc) {
		scry_impact_free(im);
		return rc;
	}
	im->t0_mono = scry__monotonic_us();
	if (pthread_create(&im->th, NULL, sampler_main, im) != 0) {
		scry_impact_free(im);
		return scry__fail(err, SCRY_EIO, "cannot start the lock sampler thread");
	}
	im->running = true;
	*out = im;
	return 0;
}

/* A known safer way to do what a statement did, from its text and the lock it took. */
static const char *advice_for(const char *stmt, const char *mode, bool rewritten)
{
	char up[1024];
	size_t n = 0;
	for (; stmt && stmt[n] && n < sizeof up - 1; n++)
		up[n] = (char)(stmt[n] >= 'a' && stmt[n] <= 'z' ? stmt[n] - 32 : stmt[n]);
	up[n] = 0;
	if (strstr(up, "CREATE INDEX") || strstr(up, "CREATE UNIQUE INDEX"))
		return strstr(up, "CONCURRENTLY") ? NULL
		     : "build the index with CREATE INDEX CONCURRENTLY (outside a transaction block): it does not block writes";
	if (strstr(up, "FOREIGN KEY") || strstr(up, "REFERENCES"))
		return strstr(up, "NOT VALID") ? NULL
		     : "add the constraint NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT in its own transaction (it takes a weaker lock)";
	if (strstr(up, "SET NOT NULL"))
		return "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it, then SET NOT NULL: PostgreSQL 12+ then skips the scan";
	if (strstr(up, "ADD COLUMN") && strstr(up, "DEFAULT") && rewritten)
		return "add the column without a volatile default (or with a constant one), then backfill it in batches";
	if (strstr(up, "TYPE") && strstr(up, "ALTER COLUMN") && rewritten)
		return "add a new column, backfill it in batches, then switch readers and drop the old one";
	if (strstr(up, "UPDATE"))
		return "backfill in batches of a few thousand rows, each in its own transaction";
	if (!strcmp(mode, "AccessExclusiveLock"))
		return "SET lock_timeout = '2s' before the DDL (and retry), so it gives up instead of queueing every query behind it";
	return NULL;
}

static int add_obj(scry_impact *im, int which, const char *name)
{
	if (scry__array_grow((void **)&im->objs[which], &im->capobjs[which], im->nobjs[which],
	                     sizeof(char *), 4))
		return SCRY_ENOMEM;
	char *s = scry__strdup(name);
	if (!s)
		return SCRY_ENOMEM;
	im->objs[which][im->nobjs[which]++] = s;
	return 0;
}

static bool was_rewritten(const scry_impact *im, const char *rel)
{
	for (size_t i = 0; i < im->nobjs[SCRY_IMPACT_REWRITTEN]; i++)
		if (!strcmp(im->objs[SCRY_IMPACT_REWRITTEN][i], rel))
			return true;
	return false;
}

/* Rewrites, new and invalid indexes, WAL: the after-snapshot against the before. */
static int compare_snapshots(scry_impact *im, scry_error *err)
{
	relrow *after = NULL;
	size_t nafter = 0;
	int rc = snapshot(im, &after, &nafter, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < nafter && !rc; i++) {
		const relrow *b = NULL;
		for (size_t j = 0; j < im->nbefore; j++)
			if (im->before[j].oid == after[i].oid) {
				b = &im->before[j];
				break;
			}
		if (after[i].kind == 'r' && b && b->filenode != after[i].filenode)
			rc = add_obj(im, SCRY_IMPACT_REWRITTEN, after[i].name);
		if (!rc && after[i].kind == 'i' && !b)
			rc = add_obj(im, SCRY_IMPACT_NEW_INDEX, after[i].name);
		if (!rc && after[i].kind == 'i' && !after[i].valid)
			rc = add_obj(im, SCRY_IMPACT_INVALID_INDEX, after[i].name);
	}
	free_rows(after, nafter);
	if (rc)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (im->lsn[0]) {
		const char *params[1] = { im->lsn };
		PGresult *r = PQexecParams(im->pg, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint",
		                           1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			im->wal_bytes = i64(r, 0, 0);
		PQclear(r);
	}
	return 0;
}

static int cmp_lock(const void *x, const void *y)
{
	const scry_impact_lock *a = x, *b = y;
	return a->held_us < b->held_us ? 1 : a->held_us > b->held_us ? -1 : 0;
}

static int cmp_wait(const void *x, const void *y)
{
	const scry_impact_wait *a = x, *b = y;
	return a->max_wait_us < b->max_wait_us ? 1 : a->max_wait_us > b->max_wait_us ? -1 : 0;
}

/* Locks held long enough to list, longest first, each with its advice. */
static int build_locks(scry_impact *im)
{
	im->locks = scry__calloc(im->nholds + 1, sizeof *im->locks);
	if (!im->locks)
		return SCRY_ENOMEM;
	for (size_t i = 0; i < im->nholds; i++) {
		const hold *h = &im->holds[i];
		if (h->best_us < (int64_t)im->opts.min_lock_ms * 1000)
			continue;
		scry_impact_lock *l = &im->locks[im->nlocks++];
		l->relation = h->rel;
		l->mode = h->mode;
		l->held_us = h->best_us;
		l->start_us = h->best_start;
		l->statement = h->best_stmt ? h->best_stmt : "";
		l->advice = advice_for(l->statement, l->mode, was_rewritten(im, h->rel));
	}
	qsort(im->locks, im->nlocks, sizeof *im->locks, cmp_lock);
	return 0;
}

/* Waiting executions grouped by the fingerprint of their text. */
static int build_waits(scry_impact *im)
{
	im->waits = scry__calloc(im->nwaiters + 1, sizeof *im->waits);
	im->wait_locks = scry__calloc(im->nwaiters + 1, sizeof *im->wait_locks);
	if (!im->waits || !im->wait_locks)
		return SCRY_ENOMEM;
	for (size_t i = 0; i < im->nwaiters; i++) {
		const waiter *w = &im->waiters[i];
		int64_t seen = w->last - w->first + im->interval_us;
		int64_t since = w->qstart > 0 ? w->now_last - w->qstart : seen;
		int64_t us = since > 0 && since < seen ? since : seen;
		uint64_t fp = 0;
		if (scry_fingerprint_compute(NULL, w->query, strlen(w->query), &fp, NULL))
			fp = 0;
		scry_impact_wait *g = NULL;
		for (size_t j = 0; j < im->nwaits && !g; j++)
			if (im->waits[j].fingerprint == fp && (fp || !strcmp(im->waits[j].query, w->query)))
				g = &im->waits[j];
		if (!g) {
			g = &im->waits[im->nwaits++];
			g->fingerprint = fp;
			g->query = w->query;
			g->relation = w->rel;
			g->lock = w->lock;
			g->blocker = w->blocker;
			g->advice = advice_for(w->blocker, "", was_rewritten(im, w->rel));
		}
		if (!g->relation[0] && w->rel[0])
			g->relation = w->rel;
		char **locks = &im->wait_locks[g - im->waits];
		for (const char *p = w->lock; p && *p;) {
			const char *e = strchr(p, ',');
			char word[64];
			snprintf(word, sizeof word, "%.*s", (int)(e ? e - p : (ptrdiff_t)strlen(p)), p);
			add_word(locks, word);
			p = e ? e + 1 : p + strlen(p);
		}
		if (*locks)
			g->lock = *locks;
		g->count++;
		g->total_wait_us += us;
		if (us > g->max_wait_us)
			g->max_wait_us = us;
		if (us > im->max_wait_us)
			im->max_wait_us = us;
		im->nwaiting++;
	}
	qsort(im->waits, im->nwaits, sizeof *im->waits, cmp_wait);
	return 0;
}

int scry_impact_stop(scry_impact *im, scry_error *err)
{
	if (!im)
		return scry__fail(err, SCRY_EINVAL, "sampler is NULL");
	if (im->stopped)
		return 0;
	im->stopped = true;
	if (im->running) {
		atomic_store(&im->stop, 1);
		pthread_join(im->th, NULL);
		im->running = false;
	}
	im->duration_us = scry__monotonic_us() - im->t0_mono;
	/*
	 * The replay's and the migration's backends are gone from the client's
	 * side but may still be exiting on the server, a snapshot older than the
	 * migration's writes with them: a VACUUM that ran now (the settle step)
	 * could not mark the backfilled pages all-visible. Wait for them (5 s at
	 * most), then let go of this connection too.
	 */
	for (int i = 0; i < 500; i++) {
		PGresult *r = PQexec(im->pg, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
		                             " AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
		bool quiet = PQresultStatus(r) != PGRES_TUPLES_OK || i64(r, 0, 0) == 0;
		PQclear(r);
		if (quiet)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (im->poll_error[0])
		ilog(im, SCRY_LOG_WARNING, "the lock sampler could not read pg_locks: %s", im->poll_error);
	int rc = compare_snapshots(im, err);
	PQfinish(im->pg);
	im->pg = NULL;
	/* Locks and waits are kept even when the after-snapshot failed. */
	if (build_locks(im) || build_waits(im))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return rc;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* The q-quantile of sorted v (nearest rank). */
static double quantile(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	size_t k = (size_t)(q * (double)n);
	return v[k < n ? k : n - 1];
}

static lat *lat_find(lat **ls, size_t *n, size_t *cap, scry__u64map *map, uint64_t fp)
{
	uint32_t k = scry__u64map_get(map, fp);
	if (k)
		return &(*ls)[k - 1];
	if (scry__array_grow((void **)ls, cap, *n, sizeof **ls, 16))
		return NULL;
	lat *l = &(*ls)[*n];
	memset(l, 0, sizeof *l);
	l->fp = fp;
	if (scry__u64map_put(map, fp, (uint32_t)(*n + 1)))
		return NULL;
	(*n)++;
	return l;
}

static int lat_push(double **v, size_t *n, size_t *cap, double x)
{
	if (scry__array_grow((void **)v, cap, *n, sizeof **v, 16))
		return SCRY_ENOMEM;
	(*v)[(*n)++] = x;
	return 0;
}

/* One pair of runs: A's samples by (event, round), then B's against them. */
static int add_pair(scry_store *store, int64_t run_a, int64_t run_b, lat **ls, size_t *nls, size_t *capls,
	scry__u64map *bypat, scry_error *err)
{
	scry__u64map ok = { 0 };    /* (event, round) -> 1 + succeeded on A */
	scry_sample_iter *it = NULL;
	const scry_stored_sample *s;
	int rc = scry_store_samples(store, run_a, &it, err);
	while (!rc && (rc = scry_sample_iter_next(it, &s, err)) == 1) {
		uint64_t key = ((uint64_t)s->event_id << 16) ^ (uint64_t)(uint32_t)s->round;
		rc = scry__u64map_put(&ok, key, s->sqlstate[0] ? 1 : 2);
		lat *l = rc ? NULL : lat_find(ls, nls, capls, bypat, s->fingerprint);
		if (!l)
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		else if (!s->sqlstate[0] && lat_push(&l->a, &l->na, &l->capa, (double)s->latency_us / 1000.0))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	scry_sample_iter_free(it);
	it = NULL;
	if (rc == 0)
		rc = scry_store_samples(store, run_b, &it, err);
	while (!rc && (rc = scry_sample_iter_next(it, &s, err)) == 1) {
		uint64_t key = ((uint64_t)s->event_id << 16) ^ (uint64_t)(uint32_t)s->round;
		lat *l = lat_find(ls, nls, capls, bypat, s->fingerprint);
		if (!l || lat_push(&l->b, &l->nb, &l->capb, (double)s->latency_us / 1000.0)) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			break;
		}
		if (s->sqlstate[0] && scry__u64map_get(&ok, key) == 2) {
			l->errors++;
			if (!l->sqlstate[0])
				memcpy(l->sqlstate, s->sqlstate, sizeof l->sqlstate);
		}
		rc = 0;
	}
	scry_sample_iter_free(it);
	scry__u64map_free(&ok);
	return rc < 0 ? rc : 0;
}

int scry_impact_add_latency(scry_impact *im, scry_store *store, const int64_t *runs_a,
	const int64_t *runs_b, size_t nruns, double threshold, double min_delta_ms, scry_error *err)
{
	if (!im || !store || (nruns && (!runs_a || !runs_b)))
		return scry__fail(err, SCRY_EINVAL, "sampler, store or runs missing");
	lat *ls = NULL;
	size_t nls = 0, capls = 0;
	scry__u64map bypat = { 0 };
	int rc = 0;
	for (size_t i = 0; i < nruns && !rc; i++)
		rc = add_pair(store, runs_a[i], runs_b[i], &ls, &nls, &capls, &bypat, err);
	if (!rc) {
		scry__free(im->patterns);
		im->npatterns = 0;
		im->patterns = scry__calloc(nls + 1, sizeof *im->patterns);
		if (!im->patterns)
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < nls && !rc; i++) {
		lat *l = &ls[i];
		if (!l->nb)
			continue;
		qsort(l->a, l->na, sizeof *l->a, cmp_double);
		qsort(l->b, l->nb, sizeof *l->b, cmp_double);
		scry_impact_pattern *p = &im->patterns[im->npatterns++];
		p->fingerprint = l->fp;
		p->executions = (int64_t)l->nb;
		p->baseline_p50_ms = quantile(l->a, l->na, 0.5);
		p->during_p50_ms = quantile(l->b, l->nb, 0.5);
		p->baseline_p95_ms = quantile(l->a, l->na, 0.95);
		p->during_p95_ms = quantile(l->b, l->nb, 0.95);
		p->during_max_ms = l->b[l->nb - 1];
		p->ratio = p->baseline_p50_ms > 0 ? p->during_p50_ms / p->baseline_p50_ms : 0;
		p->p95_ratio = p->baseline_p95_ms > 0 ? p->during_p95_ms / p->baseline_p95_ms : 0;
		p->errors = l->errors;
		memcpy(p->sqlstate, l->sqlstate, sizeof p->sqlstate);
		p->exceeded = (l->na && p->p95_ratio > threshold && p->during_p95_ms - p->baseline_p95_ms > min_delta_ms)
		              || p->errors > 0;
	}
	for (size_t i = 0; i < nls; i++) {
		scry__free(ls[i].a);
		scry__free(ls[i].b);
	}
	scry__free(ls);
	scry__u64map_free(&bypat);
	return rc;
}

int scry_impact_summarize(const scry_impact *im, scry_impact_summary *out)
{
	if (!out)
		return SCRY_EINVAL;
	int rc = scry__out_check(NULL, &scry__abi_impact_summary, out);
	if (rc)
		return rc;
	scry_impact_summary s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	if (im) {
		s.duration_us = im->duration_us;
		s.polls = im->polls;
		s.wal_bytes = im->wal_bytes;
		s.max_wait_us = im->max_wait_us;
		s.waits = im->nwaiting;
		s.nlocks = im->nlocks;
		s.nwaits = im->nwaits;
		s.npatterns = im->npatterns;
		s.nrewrites = im->nobjs[SCRY_IMPACT_REWRITTEN];
		s.nnew_indexes = im->nobjs[SCRY_IMPACT_NEW_INDEX];
		s.ninvalid_indexes = im->nobjs[SCRY_IMPACT_INVALID_INDEX];
	}
	scry__out_put(&scry__abi_impact_summary, out, &s);
	return 0;
}

const scry_impact_lock *scry_impact_lock_get(const scry_impact *im, size_t i)
{
	return im && i < im->nlocks ? &im->locks[i] : NULL;
}

const scry_impact_wait *scry_impact_wait_get(const scry_impact *im, size_t i)
{
	return im && i < im->nwaits ? &im->waits[i] : NULL;
}

const scry_impact_pattern *scry_impact_pattern_get(const scry_impact *im, size_t i)
{
	return im && i < im->npatterns ? &im->patterns[i] : NULL;
}

const char *scry_impact_object_get(const scry_impact *im, scry_impact_object which, size_t i)
{
	if (!im || (unsigned)which > SCRY_IMPACT_INVALID_INDEX)
		return NULL;
	return i < im->nobjs[which] ? im->objs[which][i] : NULL;
}

size_t scry_impact_failures(const scry_impact *im, const scry_impact_gate *gate)
{
	if (!im || !gate)
		return 0;
	size_t n = 0;
	if (gate->max_lock_wait_ms > 0 && im->max_wait_us > gate->max_lock_wait_ms * 1000)
		n++;
	if (gate->max_migration_seconds > 0 && (double)im->duration_us / 1e6 > gate->max_migration_seconds)
		n++;
	return n;
}

void scry_impact_free(scry_impact *im)
{
	if (!im)
		return;
	if (im->running) {
		atomic_store(&im->stop, 1);
		pthread_join(im->th, NULL);
	}
	if (im->pg)
		PQfinish(im->pg);
	for (size_t i = 0; i < im->nholds; i++) {
		scry__free(im->holds[i].rel);
		scry__free(im->holds[i].mode);
		scry__free(im->holds[i].cur_stmt);
		scry__free(im->holds[i].best_stmt);
	}
	scry__free(im->holds);
	for (size_t i = 0; i < im->nwaiters; i++) {
		scry__free(im->waiters[i].query);
		scry__free(im->waiters[i].rel);
		scry__free(im->waiters[i].lock);
		scry__free(im->waiters[i].blocker);
	}
	scry__free(im->waiters);
	free_rows(im->before, im->nbefore);
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < im->nobjs[k]; i++)
			scry__free(im->objs[k][i]);
		scry__free(im->objs[k]);
	}
	scry__free(im->locks);
	for (size_t i = 0; im->wait_locks && i < im->nwaits; i++)
		scry__free(im->wait_locks[i]);
	scry__free(im->wait_locks);
	scry__free(im->waits);
	scry__free(im->patterns);
	scry__free(im->app);
	scry__free(im);
}
