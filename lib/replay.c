/*
 * lib/replay.c - replays a captured workload over libpq's asynchronous API.
 *
 * One thread, one epoll set: every connection, a timerfd (timed mode and
 * deadlines) and an eventfd (cancellation) are multiplexed. Each captured
 * session (per round) becomes a "runner" that owns one connection per
 * target and walks its statements in order through a small state machine:
 *
 *   DUE -> START -> [BEGIN] -> [PREPARE] -> EXEC -> [ROLLBACK] -> NEXT
 *
 * DUE waits for the statement's original offset (timed mode only); BEGIN and
 * ROLLBACK wrap a write that runs outside a captured transaction; PREPARE
 * happens once per connection and text. Only EXEC is timed. With two targets
 * (A/B) a runner replays one unit - a captured transaction, or a statement
 * outside any - on one side, then the same unit on the other (next_step()),
 * so it never waits on one clone holding locks on the other. The workload is loaded and
 * classified by lib/replay_workload.c. See docs/replay.md.
 */
#define _GNU_SOURCE
#include "replay_workload.h"
#include "util/json.h"
#include "verdict_internal.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pg_query.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* The replayer                                                        */
/* ------------------------------------------------------------------ */

struct scry_replay {
	scry_store *store;
	scry_replay_options o;
	uint64_t *fps;
	char **umap;      /* copy of o.user_map */
	int64_t client_timeouts[2]; /* of the last run, per target: no plans from a server that stopped answering */
	size_t numap;
	int cancel_fd;
	atomic_int cancelled;
};

void scry_replay_options_init(scry_replay_options *o)
{
	*o = (scry_replay_options)SCRY_REPLAY_OPTIONS_INIT;
}

int scry_replay_new(scry_replay **out, scry_store *store, const scry_replay_options *opts, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_replay_new: out is required");
	*out = NULL;
	if (!store)
		return scry__fail(err, SCRY_EINVAL, "scry_replay_new: a store is required");
	scry_replay_options o;
	int vrc = scry__opts_copy(err, &scry__abi_replay_options, &o, opts);
	if (vrc)
		return vrc;
	if (o.budget < 0 || o.budget_seconds < 0 || o.min_per_pattern < 0)
		return scry__fail(err, SCRY_EINVAL, "replay budget, budget_seconds and min_per_pattern must be >= 0");
	if (o.client_margin_ms < 0)
		return scry__fail(err, SCRY_EINVAL, "replay client_margin_ms must be >= 0 (0 = 1000 ms)");
	if (o.nuser_map && !o.user_map)
		return scry__fail(err, SCRY_EINVAL, "replay user_map is NULL but nuser_map is %zu", o.nuser_map);
	if (o.mode != SCRY_REPLAY_FAST && o.mode != SCRY_REPLAY_TIMED)
		return scry__fail(err, SCRY_EINVAL, "replay mode must be fast or timed");
	if (o.mode == SCRY_REPLAY_TIMED && !(o.speed > 0))
		return scry__fail(err, SCRY_EINVAL, "replay speed must be a positive number, not %g", o.speed);
	if (o.concurrency < 1)
		return scry__fail(err, SCRY_EINVAL, "replay concurrency must be at least 1, not %d", o.concurrency);
	if (o.repeat < 1 || o.warmup < 0)
		return scry__fail(err, SCRY_EINVAL, "replay repeat must be >= 1 and warmup >= 0");
	if (o.writes != SCRY_WRITES_ROLLBACK && o.writes != SCRY_WRITES_SKIP && o.writes != SCRY_WRITES_EXECUTE)
		return scry__fail(err, SCRY_EINVAL, "replay writes must be rollback, skip or execute");
	if (o.timeout_ms < 0)
		return scry__fail(err, SCRY_EINVAL, "replay timeout must be >= 0 ms (0 = none)");
	scry_replay *r = scry__calloc(1, sizeof *r);
	if (!r)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	r->cancel_fd = -1;
	if (o.fingerprints && o.nfingerprints) {
		if (!(r->fps = scry__calloc(o.nfingerprints, sizeof *r->fps))) {
			scry__free(r);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		memcpy(r->fps, o.fingerprints, o.nfingerprints * sizeof *r->fps);
		o.fingerprints = r->fps;
	} else {
		o.fingerprints = NULL;
		o.nfingerprints = 0;
	}
	if (o.nuser_map) {
		if (!(r->umap = scry__calloc(o.nuser_map, sizeof *r->umap))) {
			scry_replay_free(r);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		r->numap = o.nuser_map;
		for (size_t i = 0; i < o.nuser_map; i++) {
			if (!o.user_map[i] || !strchr(o.user_map[i], '=')) {
				scry_replay_free(r);
				return scry__fail(err, SCRY_EINVAL, "replay user_map entries are \"captured=role\", not '%s'",
				                  o.user_map[i] ? o.user_map[i] : "(null)");
			}
			if (!(r->umap[i] = scry__strdup(o.user_map[i]))) {
				scry_replay_free(r);
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			}
		}
		o.user_map = (const char *const *)r->umap;
	}
	r->o = o;
	r->store = store;
	r->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->cancel_fd < 0) {
		int e = errno;
		scry_replay_free(r);
		return scry__fail_sys(err, SCRY_EIO, e, "cannot create an eventfd: %s", strerror(e));
	}
	*out = r;
	return 0;
}

void scry_replay_free(scry_replay *r)
{
	if (!r)
		return;
	if (r->cancel_fd >= 0)
		close(r->cancel_fd);
	for (size_t i = 0; i < r->numap; i++)
		scry__free(r->umap[i]);
	scry__free(r->umap);
	scry__free(r->fps);
	scry__free(r);
}

void scry_replay_cancel(scry_replay *r)
{
	if (!r)
		return;
	atomic_store(&r->cancelled, 1);
	uint64_t one = 1;
	if (write(r->cancel_fd, &one, sizeof one) < 0) {
		/* The counter is saturated or the fd is gone: the flag still stops the loop. */
	}
}

/* ------------------------------------------------------------------ */
/* Connections and runners                                             */
/* ------------------------------------------------------------------ */

enum { C_NONE, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY };
enum { STEP_NONE, STEP_SETUP, STEP_BEGIN, STEP_PREPARE, STEP_EXEC, STEP_ROLLBACK, STEP_CLOSE, STEP_PIPE };
enum { PH_DUE, PH_START, PH_PREP, PH_EXEC, PH_AFTER, PH_NEXT };

struct runner;

typedef struct rconn {
	struct runner *r;
	int target;
	PGconn *pg;
	int fd;
	uint32_t mask;
	int state, step;
	bool flushing, copy_out, lost;
	int fails;
	/* prepared statements of this connection: a set of itext ids */
	uint32_t *prep;
	size_t nprep, cprep;
	/* result of the step in flight */
	int64_t t0, rows;
	char sqlstate[6];
	bool error;
	bool copy_in, copied;     /* COPY FROM STDIN data being sent; COPY TO STDOUT rows counted */
	size_t copy_off;
	int cur_stage;            /* row-limited portal as a cursor: 1 DECLARE sent, 2 FETCHing */
	int64_t fetch_prev;       /* rows before the FETCH in flight */
	bool cancel_sent;         /* the captured cancel was replayed on this step */
	/* STEP_PIPE: BEGIN, [PREPARE], the write, ROLLBACK and Sync in one round trip */
	int pipe_stage, pipe_write; /* results finished so far; index of the write */
	bool pipe_prep;           /* a PREPARE is in the pipeline */
	bool pipe_prep_failed;
	int64_t t_end;            /* when the write's own results ended */
} rconn;

typedef struct runner {
	rsession *s;
	int round;
	size_t next;
	int cur, phase;              /* cur: 0 = the unit's first pass, 1 = its second (A/B) */
	bool wrapped, override_rollback;
	bool cursor, cursor_open; /* this statement runs as DECLARE/FETCH (a captured row-limited portal) */
	bool io_timer;            /* in the heap for a deadline of the step in flight, not for a due time */
	int64_t io_deadline;      /* client-side limit of the step in flight (0 = none) */
	int64_t cancel_at;        /* when to replay the captured cancel (0 = none) */
	int64_t due;
	int64_t heap_idx; /* -1 when not waiting in the timer heap */
	struct runner *next_dead; /* finished, freed after the current batch of events */
	size_t active_idx;
	rconn c[2];
	size_t unit_start, unit_end; /* A/B: the statements of the unit (transaction) in progress */
	size_t units;                /* units started: which side goes first alternates */
	bool unit_rollback;          /* the unit ended with the session still in a transaction: rolled back */
	bool unit_locks;             /* the unit's transaction may take row locks: replayed whole per side */
	scry__stmt_cursor sc; /* where it is in its session (a streaming workload reads it in chunks) */
} runner;

/*
 * Statement i of the runner's session; it may still go back to the start of
 * its A/B unit (with one target, never back). NULL when a streamed chunk
 * could not be read.
 */
#define RUNNER_STMT(x, r, i) \
	scry__replay_stmt((x)->w, &(r)->sc, (r)->s, (i), (x)->ntargets > 1 ? (r)->unit_start : (r)->next)
/* The statement the runner is at (read by drive() first, so never NULL elsewhere). */
#define CUR_STMT(x, r) RUNNER_STMT(x, r, (r)->next)

/*
 * Samples go to the store from a writer thread, in batches, so that SQLite
 * never stalls the event loop (timed mode's start lag would show it).
 */
#define BATCH_SAMPLES 2048
typedef struct batch {
	struct batch *next;
	int target;
	size_t n;
	scry_sample s[BATCH_SAMPLES];
} batch;

typedef struct writer {
	scry_store *store;
	int64_t run_id[2];
	pthread_t th;
	bool started, closing;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	batch *head, *tail;
	atomic_int failed;
	int rc;
	scry_error err;
} writer;

typedef struct target {
	const char *conninfo;
	int64_t run_id;
	batch *cur;
	scry_replay_result res;
	int64_t cancels;         /* captured cancels replayed (samples with 57014 we asked for) */
	int64_t client_timeouts; /* steps given up by the client-side timer */
	int64_t not_replayable;  /* truncated texts, COPY data over the capture limit */
} target;

typedef struct ctx {
	scry_replay *rp;
	const scry_replay_options *o;
	workload *w;
	target tg[2];
	int ntargets;
	int ep, timer_fd;
	int64_t timer_armed;
	size_t *order;      /* sessions sorted by first statement */
	size_t next_job;    /* over rounds x sessions */
	size_t njobs;
	int64_t round_start;
	int cur_round;      /* timed mode: the round whose jobs are starting */
	runner **active;
	size_t nactive, aactive;
	runner **heap;
	size_t nheap, aheap;
	runner *dead;
	int64_t *lags;
	size_t nlags, alags;
	uint64_t done, total;
	int64_t last_progress;
	int fatal;
	scry_error *err;
	writer wr;
	scry_buf keybuf, sqlbuf;  /* connection keywords, setup/cursor SQL */
	bool warned_truncated, warned_copy;
} ctx;

static void *writer_main(void *arg)
{
	writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->closing)
			pthread_cond_wait(&w->cv, &w->mu);
		batch *b = w->head;
		if (!b)
			break;
		w->head = b->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->mu);
		if (!w->rc) {
			w->rc = scry_store_samples_append(w->store, w->run_id[b->target], b->s, b->n, sizeof(scry_sample), &w->err);
			if (w->rc)
				atomic_store(&w->failed, 1);
		}
		scry__free(b);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void writer_push(writer *w, batch *b)
{
	b->next = NULL;
	pthread_mutex_lock(&w->mu);
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Writes what is queued and stops the thread. Returns the first store error. */
static int writer_close(writer *w, scry_error *err)
{
	if (!w->started)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	w->started = false;
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	if (w->rc && err)
		*err = w->err;
	return w->rc;
}

/* Logs through the caller's callback (scry__log does the formatting). */
#define logf_(x, lvl, ...) scry__log((x)->o->log, (x)->o->log_ctx, (lvl), __VA_ARGS__)

static int set_fatal(ctx *x, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_fatal(ctx *x, int code, const char *fmt, ...)
{
	if (x->fatal)
		return x->fatal;
	x->fatal = code;
	va_list ap;
	va_start(ap, fmt);
	scry__vfail(x->err, code, fmt, ap);
	va_end(ap);
	return code;
}

/*
 * Watches c's socket for `mask`. While connecting, libpq may close its
 * socket and open another that gets the same number (next address, SSL
 * retry): the old registration vanished with the close, so `force`
 * re-registers whatever the bookkeeping says.
 */
static void conn_watch(ctx *x, rconn *c, uint32_t mask, bool force)
{
	if (c->fd < 0 || (c->mask == mask && !force))
		return;
	struct epoll_event ev = { .events = mask, .data.ptr = c };
	int op = c->mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(x->ep, op, c->fd, &ev) < 0) {
		if (errno == ENOENT)
			epoll_ctl(x->ep, EPOLL_CTL_ADD, c->fd, &ev);
		else if (errno == EEXIST)
			epoll_ctl(x->ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	c->mask = mask;
}

static void conn_update_mask(ctx *x, rconn *c, uint32_t mask)
{
	conn_watch(x, c, mask, false);
}

static void conn_close(ctx *x, rconn *c)
{
	if (c->fd >= 0 && c->mask)
		epoll_ctl(x->ep, EPOLL_CTL_DEL, c->fd, NULL);
	c->fd = -1;
	c->mask = 0;
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	c->state = C_NONE;
	c->step = STEP_NONE;
	c->nprep = 0;
	c->flushing = c->copy_out = c->lost = false;
}

static void conn_poll_connect(ctx *x, rconn *c);
static void io_arm(ctx *x, runner *r);

static void notice(void *arg, const PGresult *r)
{
	const ctx *x = arg;
	scry__pg_notice_log(x->o->log, x->o->log_ctx, r);
}

static void conn_start(ctx *x, rconn *c)
{
	const char *keys[REPLAY_MAX_KEYS + 1], *vals[REPLAY_MAX_KEYS + 1];
	if (scry__replay_conn_keys(x->o, c->r->s, x->tg[c->target].conninfo, keys, vals, &x->keybuf)) {
		set_fatal(x, SCRY_ENOMEM, "out of memory opening a connection");
		return;
	}
	c->pg = PQconnectStartParams(keys, vals, 1);
	io_arm(x, c->r); /* a server that accepts but never answers */
	c->state = C_CONNECTING;
	c->fd = -1;
	c->mask = 0;
	c->step = STEP_NONE;
	if (!c->pg) {
		set_fatal(x, SCRY_ENOMEM, "out of memory opening a connection");
		return;
	}
	PQsetNoticeReceiver(c->pg, notice, x); /* never libpq's printing default */
	conn_poll_connect(x, c);
}

static bool prepared_has(const rconn *c, uint32_t id)
{
	if (!c->cprep)
		return false;
	for (size_t j = id & (c->cprep - 1); c->prep[j]; j = (j + 1) & (c->cprep - 1))
		if (c->prep[j] == id + 1)
			return true;
	return false;
}

static void prepared_add(rconn *c, uint32_t id)
{
	if ((c->nprep + 1) * 2 > c->cprep) {
		size_t cap = c->cprep ? c->cprep * 2 : 64;
		uint32_t *t = scry__calloc(cap, sizeof *t);
		if (!t)
			return; /* not remembered: it will be prepared again and fail as a duplicate */
		for (size_t i = 0; i < c->cprep; i++)
			if (c->prep[i]) {
				size_t j = (c->prep[i] - 1) & (cap - 1);
				while (t[j])
					j = (j + 1) & (cap - 1);
				t[j] = c->prep[i];
			}
		scry__free(c->prep);
		c->prep = t;
		c->cprep = cap;
	}
	size_t j = id & (c->cprep - 1);
	while (c->prep[j])
		j = (j + 1) & (c->cprep - 1);
	c->prep[j] = id + 1;
	c->nprep++;
}

static void prepared_clear(rconn *c)
{
	if (c->prep)
		memset(c->prep, 0, c->cprep * sizeof *c->prep);
	c->nprep = 0;
}

static void drive(ctx *x, runner *r);

/* Sends what libpq buffered; watches for writability while some is left. */
static void conn_flush_watch(ctx *x, rconn *c)
{
	int f = PQflush(c->pg);
	c->flushing = f == 1;
	if (f < 0)
		c->lost = true;
	conn_update_mask(x, c, EPOLLIN | (c->flushing ? EPOLLOUT : 0));
}

static void conn_begin_step(rconn *c, int step)
{
	c->step = step;
	c->state = C_BUSY;
	c->rows = 0;
	c->sqlstate[0] = 0;
	c->error = false;
	c->copy_out = false;
	c->copy_in = c->copied = false;
	c->copy_off = 0;
	c->cur_stage = 0;
	c->fetch_prev = 0;
	c->cancel_sent = false;
	c->pipe_stage = c->pipe_write = 0;
	c->pipe_prep = c->pipe_prep_failed = false;
	c->t_end = 0;
}

static void conn_step_done(ctx *x, rconn *c);

/* After a PQsend* call: 1 = sent, 0 = the connection is gone (step completed as failed). */
static bool conn_sent(ctx *x, rconn *c, int ok)
{
	if (!ok) {
		c->lost = true;
		c->error = true;
		snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
		conn_step_done(x, c);
		return false;
	}
	conn_flush_watch(x, c);
	io_arm(x, c->r);
	return true;
}

static void conn_send_setup(ctx *x, rconn *c)
{
	if (scry__replay_setup_sql(x->o, c->r->s, c->target, &x->sqlbuf)) {
		set_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	PQsetnonblocking(c->pg, 1);
	c->fd = PQsocket(c->pg);
	conn_begin_step(c, STEP_SETUP);
	c->state = C_SETUP;
	conn_sent(x, c, PQsendQuery(c->pg, x->sqlbuf.ptr));
}

static void conn_poll_connect(ctx *x, rconn *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->pg);
	int fd = PQsocket(c->pg);
	if (fd != c->fd && c->fd >= 0 && c->mask) {
		/* libpq moved to another socket (next host or address). */
		epoll_ctl(x->ep, EPOLL_CTL_DEL, c->fd, NULL);
		c->mask = 0;
	}
	c->fd = fd;
	switch (st) {
	case PGRES_POLLING_READING:
		conn_watch(x, c, EPOLLIN, true);
		return;
	case PGRES_POLLING_WRITING:
		conn_watch(x, c, EPOLLOUT, true);
		return;
	case PGRES_POLLING_OK:
		c->fails = 0;
		conn_send_setup(x, c);
		return;
	default: {
		char msg[300];
		scry__pg_one_line(PQerrorMessage(c->pg), msg, sizeof msg);
		bool nofd = strstr(msg, "Too many open files") != NULL;
		c->fails++;
		if (nofd) {
			set_fatal(x, SCRY_ELIMIT, "out of file descriptors opening connection number %zu: %s. "
			          "Raise the limit (ulimit -n) or lower the concurrency.", x->nactive, msg);
		} else if (c->fails >= 3) {
			set_fatal(x, SCRY_ECONNECT, "a replay connection to %s:%s failed %d times in a row: %s. "
			          "Check the server's max_connections and log, or lower the concurrency.",
			          PQhost(c->pg) ? PQhost(c->pg) : "?", PQport(c->pg) ? PQport(c->pg) : "?", c->fails, msg);
		} else {
			logf_(x, SCRY_LOG_WARNING, "replay connection failed (%s); retrying", msg);
			int fails = c->fails;
			conn_close(x, c);
			c->fails = fails;
			conn_start(x, c);
		}
		return;
	}
	}
}

static void conn_reconnect(ctx *x, rconn *c)
{
	x->tg[c->target].res.reconnects++;
	char msg[300];
	scry__pg_one_line(c->pg ? PQerrorMessage(c->pg) : "", msg, sizeof msg);
	logf_(x, SCRY_LOG_WARNING, "replay connection lost (%s); reconnecting", msg);
	conn_close(x, c);
	conn_start(x, c);
}

static void record(ctx *x, runner *r, rconn *c, int64_t latency)
{
	if (r->round < x->o->warmup)
		return;
	target *t = &x->tg[c->target];
	if (!t->cur) {
		if (!(t->cur = scry__malloc(sizeof *t->cur))) {
			set_fatal(x, SCRY_ENOMEM, "out of memory recording samples");
			return;
		}
		t->cur->target = c->target;
		t->cur->n = 0;
	}
	scry_sample *s = &t->cur->s[t->cur->n++];
	memset(s, 0, sizeof *s);
	s->event_id = CUR_STMT(x, r)->event_id;
	s->round = r->round - x->o->warmup;
	s->latency_us = latency;
	s->rows = c->error ? -1 : c->rows;
	if (c->error)
		snprintf(s->sqlstate, sizeof s->sqlstate, "%s", c->sqlstate[0] ? c->sqlstate : "XX000");
	t->res.executions++;
	if (c->error) {
		t->res.errors++;
		if (!strcmp(s->sqlstate, "57014")) {
			if (c->cancel_sent)
				t->cancels++; /* the captured cancel, replayed: not a timeout */
			else
				t->res.timeouts++;
		}
	}
	if (t->cur->n == BATCH_SAMPLES) {
		writer_push(&x->wr, t->cur);
		t->cur = NULL;
	}
}

/* Adds a result to the step's outcome; true when libpq has output to flush. */
static bool accumulate(rconn *c, PGresult *res)
{
	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE:
		c->rows += PQntuples(res);
		break;
	case PGRES_COMMAND_OK: {
		/* After COPY TO STDOUT the rows were counted one per CopyData:
		 * the "COPY n" tag would count them twice. */
		const char *n = PQcmdTuples(res);
		if (n && *n && !c->copied)
			c->rows += strtoll(n, NULL, 10);
		c->copied = false;
		break;
	}
	case PGRES_COPY_IN:
		/* Send the captured data (none if the capture has none), then end. */
		c->copy_in = true;
		c->copy_off = 0;
		return true;
	case PGRES_COPY_OUT:
		c->copy_out = true;
		c->copied = true;
		break;
	case PGRES_EMPTY_QUERY:
		break;
	default: {
		const char *ss = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (!c->error) {
			c->error = true;
			snprintf(c->sqlstate, sizeof c->sqlstate, "%s", ss && *ss ? ss : "08006");
		}
		break;
	}
	}
	return false;
}

/* Sends the captured COPY FROM STDIN data of the statement in flight, as
 * far as the socket takes it (EPOLLOUT resumes), then CopyDone. */
static void copy_pump(ctx *x, rconn *c)
{
	const rstmt *st = CUR_STMT(x, c->r);
	const char *data = c->step == STEP_EXEC ? st->copy : NULL;
	size_t len = data ? st->copy_len : 0;
	while (c->copy_in) {
		int rc;
		if (c->copy_off < len) {
			size_t k = len - c->copy_off < 65536 ? len - c->copy_off : 65536;
			rc = PQputCopyData(c->pg, data + c->copy_off, (int)k);
			if (rc > 0)
				c->copy_off += k;
		} else {
			rc = PQputCopyEnd(c->pg, NULL);
			if (rc > 0)
				c->copy_in = false;
		}
		if (rc < 0) {
			c->lost = true;
			return;
		}
		if (rc == 0) { /* libpq's buffer is full: wait until the socket drains */
			int f = PQflush(c->pg);
			if (f < 0) {
				c->lost = true;
				return;
			}
			if (f == 1) {
				c->flushing = true;
				conn_update_mask(x, c, EPOLLIN | EPOLLOUT);
				return;
			}
		}
	}
	conn_flush_watch(x, c);
}

/* Reads whatever results are complete; finishes the step at the last one. */
static void conn_process(ctx *x, rconn *c)
{
	while (c->state == C_BUSY || c->state == C_SETUP) {
		if (c->copy_out) {
			char *buf = NULL;
			int n = PQgetCopyData(c->pg, &buf, 1);
			if (buf)
				PQfreemem(buf);
			if (n > 0) {
				c->rows++;
				continue;
			}
			if (n == 0)
				return;
			c->copy_out = false;
		}
		if (PQisBusy(c->pg)) {
			if (PQstatus(c->pg) == CONNECTION_BAD) {
				c->lost = true;
				if (!c->error) {
					c->error = true;
					snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
				}
				conn_step_done(x, c);
			}
			return;
		}
		PGresult *res = PQgetResult(c->pg);
		if (c->step == STEP_PIPE) {
			if (!res) { /* one query of the pipeline is done */
				if (c->pipe_stage == c->pipe_write)
					c->t_end = scry__monotonic_us();
				c->pipe_stage++;
				continue;
			}
			ExecStatusType es = PQresultStatus(res);
			if (es == PGRES_PIPELINE_SYNC) {
				PQclear(res);
				if (PQexitPipelineMode(c->pg) != 1)
					c->lost = true; /* cannot happen after the Sync: treat as a broken connection */
				conn_step_done(x, c);
				return;
			}
			/* Only the write's outcome (and its PREPARE's) is recorded;
			 * BEGIN and ROLLBACK are not part of the sample. */
			bool mine = c->pipe_stage == c->pipe_write || (c->pipe_prep && c->pipe_stage == c->pipe_write - 1);
			if (mine && es != PGRES_PIPELINE_ABORTED) {
				if (c->pipe_prep && c->pipe_stage == c->pipe_write - 1 && es == PGRES_FATAL_ERROR)
					c->pipe_prep_failed = true;
				accumulate(c, res);
			}
			PQclear(res);
			continue;
		}
		if (!res) {
			conn_step_done(x, c);
			return;
		}
		bool copy = accumulate(c, res);
		PQclear(res);
		if (copy)
			copy_pump(x, c);
		if (c->lost) {
			if (!c->error) {
				c->error = true;
				snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
			}
			conn_step_done(x, c);
			return;
		}
	}
}

static void conn_event(ctx *x, rconn *c, uint32_t events)
{
	if (!c->pg || c->state == C_NONE)
		return; /* closed earlier in this batch of events */
	if (c->state == C_CONNECTING) {
		conn_poll_connect(x, c);
		return;
	}
	if (c->flushing && (events & EPOLLOUT))
		conn_flush_watch(x, c);
	if (c->copy_in && !c->flushing && !c->lost)
		copy_pump(x, c);
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (!PQconsumeInput(c->pg))
			c->lost = true;
	}
	if (c->state == C_BUSY || c->state == C_SETUP) {
		if (c->lost) {
			if (!c->error) {
				c->error = true;
				snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
			}
			/* Read an error the server may have sent before closing (57P01). */
			PGresult *res;
			while (!PQisBusy(c->pg) && (res = PQgetResult(c->pg)) != NULL) {
				if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
					const char *ss = PQresultErrorField(res, PG_DIAG_SQLSTATE);
					if (ss && *ss)
						snprintf(c->sqlstate, sizeof c->sqlstate, "%s", ss);
				}
				PQclear(res);
			}
			conn_step_done(x, c);
			return;
		}
		conn_process(x, c);
		return;
	}
	/* Idle: notices and notifications are consumed; a closed connection is re-opened. */
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL)
		PQfreemem(n);
	if (c->lost || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_reconnect(x, c);
		drive(x, c->r);
	}
}

static void io_disarm(ctx *x, runner *r);
static void heap_remove(ctx *x, runner *r);

/* A row-limited portal replayed as a cursor: the next FETCH, while the last
 * one returned a full batch. True when one was sent (the step goes on). */
static bool cursor_continue(ctx *x, rconn *c, bool bad)
{
	runner *r = c->r;
	const rstmt *st = CUR_STMT(x, r);
	if (!c->cur_stage || c->error || bad)
		return false;
	if (c->cur_stage == 2 && c->rows - c->fetch_prev < st->fetch)
		return false; /* the last batch was short: the portal is done */
	if ((st->flags & SCRY_EVENT_F_PORTAL_OPEN) && c->cur_stage == 2 && c->rows >= st->rows)
		return false; /* the application stopped fetching here */
	c->cur_stage = 2;
	c->fetch_prev = c->rows;
	r->cursor_open = true;
	char sql[64];
	snprintf(sql, sizeof sql, "FETCH %lld FROM scry_portal", (long long)st->fetch);
	c->step = STEP_EXEC;
	c->state = C_BUSY;
	conn_sent(x, c, PQsendQuery(c->pg, sql));
	return true;
}

static void conn_step_done(ctx *x, rconn *c)
{
	runner *r = c->r;
	int step = c->step;
	bool bad = c->lost || PQstatus(c->pg) == CONNECTION_BAD;
	io_disarm(x, r);
	if (step == STEP_EXEC && cursor_continue(x, c, bad))
		return;
	c->step = STEP_NONE;
	c->state = C_IDLE;
	int64_t now = scry__monotonic_us();
	switch (step) {
	case STEP_SETUP:
		break;
	case STEP_BEGIN:
		if (c->error) {
			record(x, r, c, now - c->t0);
			r->phase = PH_AFTER;
		} else {
			r->phase = PH_PREP;
		}
		break;
	case STEP_PREPARE:
		if (c->error) {
			/* The statement cannot even be prepared (e.g. a column the migration dropped). */
			record(x, r, c, now - c->t0);
			r->phase = PH_AFTER;
		} else {
			prepared_add(c, CUR_STMT(x, r)->t->id);
			r->phase = PH_EXEC;
		}
		break;
	case STEP_EXEC:
		record(x, r, c, now - c->t0);
		if (CUR_STMT(x, r)->t->clears_prepared)
			prepared_clear(c);
		r->phase = PH_AFTER;
		break;
	case STEP_ROLLBACK:
		r->phase = PH_NEXT;
		break;
	case STEP_CLOSE:
		r->cursor_open = false;
		r->phase = PH_AFTER;
		break;
	case STEP_PIPE:
		if (c->pipe_prep && !c->pipe_prep_failed && !bad)
			prepared_add(c, CUR_STMT(x, r)->t->id);
		record(x, r, c, (c->t_end ? c->t_end : now) - c->t0);
		r->phase = PH_AFTER; /* the server's transaction state says whether the ROLLBACK ran */
		break;
	}
	if (bad)
		conn_reconnect(x, c);
	else if (step == STEP_EXEC && !strcmp(c->sqlstate, "26000"))
		prepared_clear(c); /* our prepared statement went away (DEALLOCATE by the workload) */
	drive(x, r);
}

/* ------------------------------------------------------------------ */
/* Scheduling                                                          */
/* ------------------------------------------------------------------ */

static void heap_swap(ctx *x, size_t i, size_t j)
{
	runner *t = x->heap[i];
	x->heap[i] = x->heap[j];
	x->heap[j] = t;
	x->heap[i]->heap_idx = (int64_t)i;
	x->heap[j]->heap_idx = (int64_t)j;
}

static void heap_up(ctx *x, size_t i)
{
	while (i > 0 && x->heap[(i - 1) / 2]->due > x->heap[i]->due) {
		heap_swap(x, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(ctx *x, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < x->nheap && x->heap[l]->due < x->heap[m]->due)
			m = l;
		if (l + 1 < x->nheap && x->heap[l + 1]->due < x->heap[m]->due)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(x, i, m);
		i = m;
	}
}

static void heap_push(ctx *x, runner *r)
{
	if (r->heap_idx >= 0)
		return;
	if (scry__array_grow((void **)&x->heap, &x->aheap, x->nheap, sizeof *x->heap, 64)) {
		set_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	x->heap[x->nheap] = r;
	r->heap_idx = (int64_t)x->nheap;
	heap_up(x, x->nheap++);
}

static void heap_remove(ctx *x, runner *r)
{
	if (r->heap_idx < 0)
		return;
	size_t i = (size_t)r->heap_idx;
	r->heap_idx = -1;
	if (i != --x->nheap) {
		x->heap[i] = x->heap[x->nheap];
		x->heap[i]->heap_idx = (int64_t)i;
		heap_down(x, i);
		heap_up(x, i);
	}
}

/* ------------------------------------------------------------------ */
/* Client-side deadlines and replayed cancels                          */
/* ------------------------------------------------------------------ */

/* The client-side limit of one step: statement_timeout plus a margin (0 = none). */
static int64_t io_limit_us(const ctx *x)
{
	if (x->o->timeout_ms <= 0)
		return 0;
	int margin = x->o->client_margin_ms > 0 ? x->o->client_margin_ms : 1000;
	return ((int64_t)x->o->timeout_ms + margin) * 1000;
}

/* (Re)arms the runner's deadline for the step just sent: the timer heap
 * holds it with due = the earlier of the hard limit and a pending cancel. */
static void io_arm(ctx *x, runner *r)
{
	int64_t lim = io_limit_us(x);
	if (!lim && !r->cancel_at)
		return;
	heap_remove(x, r);
	r->io_deadline = lim ? scry__monotonic_us() + lim : 0;
	int64_t due = r->io_deadline ? r->io_deadline : INT64_MAX;
	if (r->cancel_at && r->cancel_at < due)
		due = r->cancel_at;
	r->due = due;
	r->io_timer = true;
	heap_push(x, r);
}

static void io_disarm(ctx *x, runner *r)
{
	if (!r->io_timer)
		return;
	heap_remove(x, r);
	r->io_timer = false;
	r->cancel_at = 0;
	/* A/B: the other connection may still be connecting; it keeps a deadline. */
	for (int i = 0; i < x->ntargets; i++)
		if (r->c[i].state == C_CONNECTING) {
			io_arm(x, r);
			return;
		}
}

static void *cancel_main(void *arg)
{
	char msg[256];
	PQcancel(arg, msg, sizeof msg);
	PQfreeCancel(arg);
	return NULL;
}

/* Sends a CancelRequest for c's statement without blocking the loop:
 * libpq 15's PQcancel() connects and waits, so it runs on a detached thread. */
static void send_cancel(ctx *x, rconn *c)
{
	PGcancel *cn = PQgetCancel(c->pg);
	if (!cn)
		return;
	pthread_attr_t a;
	pthread_t th;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &a, cancel_main, cn) != 0) {
		PQfreeCancel(cn);
		logf_(x, SCRY_LOG_WARNING, "cannot start a thread to replay a cancel");
	} else {
		c->cancel_sent = true;
	}
	pthread_attr_destroy(&a);
}

static void runner_finish(ctx *x, runner *r);

/* The runner's deadline passed while a step was in flight. */
static void io_deadline(ctx *x, runner *r)
{
	r->io_timer = false;
	rconn *c = NULL;
	for (int i = 0; i < x->ntargets && !c; i++)
		if (r->c[i].state == C_BUSY || r->c[i].state == C_SETUP || r->c[i].state == C_CONNECTING)
			c = &r->c[i];
	if (!c) {
		r->cancel_at = 0;
		return;
	}
	int64_t now = scry__monotonic_us();
	if (r->cancel_at && now >= r->cancel_at && c->state == C_BUSY && (c->step == STEP_EXEC || c->step == STEP_PIPE)) {
		r->cancel_at = 0;
		if (!c->cancel_sent)
			send_cancel(x, c);
		if (r->io_deadline) { /* the hard limit still holds */
			r->due = r->io_deadline;
			r->io_timer = true;
			heap_push(x, r);
		}
		return;
	}
	if (!r->io_deadline || now < r->io_deadline) {
		r->due = r->io_deadline ? r->io_deadline : r->cancel_at;
		r->io_timer = r->due != 0;
		if (r->io_timer)
			heap_push(x, r);
		return;
	}
	/* The server has not answered within statement_timeout + margin: it is
	 * stopped, or the network is gone. Record a timeout and give up on this
	 * session (its connection cannot be trusted; a reconnect would hang too). */
	x->tg[c->target].client_timeouts++;
	logf_(x, SCRY_LOG_WARNING, "the server did not answer within %lld ms (statement timeout + margin); "
	      "giving up on this session's connection", (long long)(io_limit_us(x) / 1000));
	bool in_stmt = c->state == C_BUSY && (c->step == STEP_EXEC || c->step == STEP_PIPE);
	if (c->state == C_BUSY && (in_stmt || c->step == STEP_PREPARE || c->step == STEP_BEGIN)) {
		c->error = true;
		snprintf(c->sqlstate, sizeof c->sqlstate, "57014");
		c->cancel_sent = false;
		record(x, r, c, now - c->t0);
	}
	size_t left = r->s->n - r->next - (in_stmt ? 1 : 0);
	if (r->round >= x->o->warmup)
		for (int i = 0; i < x->ntargets; i++)
			x->tg[i].res.skipped += (int64_t)left;
	x->done += r->s->n - r->next;
	runner_finish(x, r);
}

static int64_t stmt_due(ctx *x, runner *r)
{
	const rstmt *st = CUR_STMT(x, r);
	return x->round_start + (int64_t)((double)(st->start_us - x->w->first_us) / x->o->speed);
}

static void runner_finish(ctx *x, runner *r)
{
	heap_remove(x, r);
	r->io_timer = false;
	for (int i = 0; i < x->ntargets; i++) {
		conn_close(x, &r->c[i]);
		scry__free(r->c[i].prep);
	}
	scry__stmt_cursor_close(x->w, &r->sc);
	size_t i = r->active_idx;
	x->active[i] = x->active[--x->nactive];
	x->active[i]->active_idx = i;
	/* Events of this batch may still point at its connections: free it later. */
	r->next_dead = x->dead;
	x->dead = r;
}

static void free_dead(ctx *x)
{
	while (x->dead) {
		runner *r = x->dead;
		x->dead = r->next_dead;
		scry__free(r);
	}
}

static void lag_add(ctx *x, int64_t lag)
{
	if (scry__array_grow((void **)&x->lags, &x->alags, x->nlags, sizeof *x->lags, 4096))
		return;
	x->lags[x->nlags++] = lag < 0 ? 0 : lag;
}

/* A statement the client cancelled at capture is cancelled at the same
 * offset after its start (io_deadline() sends the CancelRequest). */
static void set_cancel_at(runner *r, const rconn *c, const rstmt *st)
{
	r->cancel_at = 0;
	if ((st->flags & SCRY_EVENT_F_CANCELLED) && st->duration_us >= 0 && !r->override_rollback)
		r->cancel_at = c->t0 + st->duration_us;
}

static bool send_exec(ctx *x, runner *r, rconn *c)
{
	const rstmt *st = CUR_STMT(x, r);
	conn_begin_step(c, STEP_EXEC);
	c->t0 = scry__monotonic_us();
	int ok;
	set_cancel_at(r, c, st);
	if (r->override_rollback)
		ok = PQsendQuery(c->pg, "ROLLBACK");
	else if (r->cursor) {
		scry__buf_clear(&x->sqlbuf);
		if (scry__buf_puts(&x->sqlbuf, "DECLARE scry_portal NO SCROLL CURSOR FOR ") ||
		    scry__buf_put(&x->sqlbuf, st->t->text, st->t->len)) {
			set_fatal(x, SCRY_ENOMEM, "out of memory");
			return false;
		}
		c->cur_stage = 1;
		ok = PQsendQueryParams(c->pg, x->sqlbuf.ptr, st->nparams, st->t->types, st->values, st->lengths,
		                       st->formats, 0);
	} else if (st->kind == SCRY_EVENT_EXTENDED) {
		char name[24];
		snprintf(name, sizeof name, "scry_%u", st->t->id);
		ok = PQsendQueryPrepared(c->pg, name, st->nparams, st->values, st->lengths, st->formats, 0);
	} else {
		/* Simple protocol, exactly as captured: one Query message, one result per statement. */
		ok = PQsendQuery(c->pg, st->t->text);
	}
	return conn_sent(x, c, ok);
}

/* A write wrapped in BEGIN ... ROLLBACK can go in one pipeline: not a COPY
 * (no COPY in pipeline mode), not a cursor, and for the simple protocol a
 * single statement (the pipeline sends it with the extended protocol, which
 * takes one statement per message). */
static bool pipeline_ok(const rstmt *st, const runner *r)
{
	if (r->cursor || r->override_rollback || st->kind == SCRY_EVENT_COPY)
		return false;
	if (st->kind == SCRY_EVENT_EXTENDED)
		return true;
	const char *semi = memchr(st->t->text, ';', st->t->len);
	if (!semi)
		return true;
	for (const char *p = semi + 1; p < st->t->text + st->t->len; p++)
		if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
			return false;
	return true;
}

/*
 * BEGIN, [PREPARE], the write, ROLLBACK and Sync in ONE round trip (libpq
 * pipeline mode). The write's latency runs from the send of the pipeline to
 * the end of the write's own results (BEGIN costs the server microseconds;
 * ROLLBACK comes after and is not counted).
 */
static void send_pipeline(ctx *x, runner *r, rconn *c)
{
	const rstmt *st = CUR_STMT(x, r);
	conn_begin_step(c, STEP_PIPE);
	c->t0 = scry__monotonic_us();
	int ok = PQenterPipelineMode(c->pg) &&
	         PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	c->pipe_write = 1;
	char name[24];
	snprintf(name, sizeof name, "scry_%u", st->t->id);
	if (ok && st->kind == SCRY_EVENT_EXTENDED && !prepared_has(c, st->t->id)) {
		c->pipe_prep = true;
		c->pipe_write = 2;
		ok = PQsendPrepare(c->pg, name, st->t->text, st->t->nparams, st->t->types);
	}
	if (ok)
		ok = st->kind == SCRY_EVENT_EXTENDED
			? PQsendQueryPrepared(c->pg, name, st->nparams, st->values, st->lengths, st->formats, 0)
			: PQsendQueryParams(c->pg, st->t->text, 0, NULL, NULL, NULL, NULL, 0);
	if (ok)
		ok = PQsendQueryParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(c->pg);
	set_cancel_at(r, c, st);
	conn_sent(x, c, ok);
}

/*
 * The connection of the r->cur-th pass of a unit. With two targets a runner
 * replays a whole unit - a captured transaction, or one statement outside
 * any - on one side, then the same unit on the other, so it never waits on
 * one clone while holding locks on the other (PostgreSQL cannot see such a
 * cycle through scry). Which side goes first alternates per unit and round:
 * a first execution after an idle gap tends to be the slower one, which
 * would bias the pairs.
 */
static rconn *step_conn(const ctx *x, runner *r)
{
	if (x->ntargets < 2)
		return &r->c[r->cur];
	return &r->c[(r->cur + (int)((r->units + (size_t)r->round) & 1)) % x->ntargets];
}

/*
 * May the captured transaction starting at statement i take locks (a write,
 * SELECT ... FOR UPDATE, DDL)? Scans to its COMMIT/ROLLBACK. A transaction
 * that only reads holds no row locks, so its statements can be interleaved
 * one by one like autocommit ones: the pairs stay moments apart.
 */
static bool unit_takes_locks(ctx *x, runner *r, size_t i)
{
	const rsession *s = r->s;
	for (size_t j = i; j < s->n; j++) {
		const rstmt *st = RUNNER_STMT(x, r, j);
		if (!st) {
			set_fatal(x, x->w->error, "%s", x->w->err.message);
			return true;
		}
		const itext *t = st->t;
		if (t->cls == CLS_WRITE || t->cls == CLS_2PC || t->cls == CLS_NOTXN)
			return true;
		if (j > i && (t->cls == CLS_COMMIT ||
		              (t->cls == CLS_TXN && (!strncasecmp(t->text, "rollback", 8) || !strncasecmp(t->text, "abort", 5)) &&
		               !strcasestr(t->text, " to "))))
			return false;
	}
	return false;
}

static bool conn_in_txn(const rconn *c)
{
	PGTransactionStatusType ts = PQtransactionStatus(c->pg);
	return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

/*
 * After a statement's pass: the next statement of the unit, the unit's
 * second pass, or the next unit. A unit ends where the first side's
 * connection is out of any transaction. Returns false when a ROLLBACK was
 * sent (a session that ends inside a transaction releases its locks first).
 */
static bool next_step(ctx *x, runner *r, rconn *c)
{
	bool timed = x->o->mode == SCRY_REPLAY_TIMED;
	if (x->ntargets < 2) {
		r->next++;
		x->done++;
		r->phase = timed ? PH_DUE : PH_START;
		return true;
	}
	if (r->cur == 0 && r->next == r->unit_start)
		r->unit_locks = unit_takes_locks(x, r, r->next);
	if (r->cur == 0 && r->unit_locks && r->next + 1 < r->s->n && conn_in_txn(c)) {
		r->next++; /* the transaction goes on */
		r->phase = timed ? PH_DUE : PH_START;
		return true;
	}
	bool last = r->cur == 0 ? r->next + 1 >= r->s->n : r->next >= r->unit_end && (r->unit_locks || r->next + 1 >= r->s->n);
	if (last && conn_in_txn(c) && !r->unit_rollback) {
		r->unit_rollback = true;
		conn_begin_step(c, STEP_ROLLBACK);
		conn_sent(x, c, PQsendQuery(c->pg, "ROLLBACK"));
		return false;
	}
	r->unit_rollback = false;
	if (r->cur == 0) {
		r->unit_end = r->next;
		r->next = r->unit_start;
		r->cur = 1;
		r->phase = PH_START;
		return true;
	}
	x->done++;
	if (r->next < r->unit_end) {
		r->next++;
		r->phase = PH_START;
		return true;
	}
	r->cur = 0;
	r->next++;
	r->unit_start = r->next;
	r->units++;
	r->phase = timed ? PH_DUE : PH_START;
	return true;
}

/* Moves a runner as far as it can go without waiting. */
static void drive(ctx *x, runner *r)
{
	for (;;) {
		if (x->fatal)
			return;
		if (r->next >= r->s->n) {
			runner_finish(x, r);
			return;
		}
		rconn *c = step_conn(x, r);
		if (c->state != C_IDLE)
			return; /* connecting, or a step is in flight: its completion calls us */
		const rstmt *st = CUR_STMT(x, r);
		if (!st) {
			set_fatal(x, x->w->error, "%s", x->w->err.message);
			return;
		}
		switch (r->phase) {
		case PH_DUE: {
			int64_t now = scry__monotonic_us();
			r->due = stmt_due(x, r);
			if (now < r->due) {
				heap_push(x, r);
				return;
			}
			if (r->round >= x->o->warmup)
				lag_add(x, now - r->due);
			r->phase = PH_START;
			break;
		}
		case PH_START: {
			PGTransactionStatusType ts = PQtransactionStatus(c->pg);
			bool in_txn = ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
			bool skip = false, wrap = false;
			scry_replay_writes wm = x->o->writes;
			r->override_rollback = false;
			/* A captured row-limited portal: DECLARE + FETCH n, in a transaction. */
			r->cursor = st->kind == SCRY_EVENT_EXTENDED && st->fetch > 0 && st->t->cursorable;
			r->cursor_open = false;
			if (st->flags & (SCRY_EVENT_F_TRUNCATED | SCRY_EVENT_F_COPY_DROPPED)) {
				/* Not replayable as captured: a cut text would be a syntax
				 * error, a COPY without its data would measure nothing. */
				bool tr = (st->flags & SCRY_EVENT_F_TRUNCATED) != 0;
				if (tr ? !x->warned_truncated : !x->warned_copy) {
					logf_(x, SCRY_LOG_WARNING, "%s", tr
						? "skipping statements whose text was truncated at capture (raise the capture limit to replay them)"
						: "skipping COPY FROM STDIN statements whose data was over the capture limit");
					if (tr)
						x->warned_truncated = true;
					else
						x->warned_copy = true;
				}
				skip = true;
				if (r->round >= x->o->warmup)
					x->tg[c->target].not_replayable++;
			}
			switch (skip ? -1 : st->t->cls) {
			case CLS_COMMIT:
				r->override_rollback = wm != SCRY_WRITES_EXECUTE;
				break;
			case CLS_2PC:
				skip = wm != SCRY_WRITES_EXECUTE;
				break;
			case CLS_WRITE:
				skip = wm == SCRY_WRITES_SKIP;
				wrap = wm == SCRY_WRITES_ROLLBACK && !in_txn;
				break;
			default:
				break;
			}
			if (skip) {
				if (r->round >= x->o->warmup)
					x->tg[c->target].res.skipped++;
				r->phase = PH_NEXT;
				break;
			}
			if (r->cursor && !in_txn && !skip)
				wrap = true; /* a cursor needs a transaction; ROLLBACK closes it */
			r->wrapped = wrap;
			if (wrap && pipeline_ok(st, r)) {
				send_pipeline(x, r, c);
				return;
			}
			if (wrap) {
				conn_begin_step(c, STEP_BEGIN);
				c->t0 = scry__monotonic_us();
				conn_sent(x, c, PQsendQuery(c->pg, "BEGIN"));
				return;
			}
			r->phase = PH_PREP;
			break;
		}
		case PH_PREP:
			if (st->kind == SCRY_EVENT_EXTENDED && !r->override_rollback && !r->cursor &&
			    !prepared_has(c, st->t->id)) {
				char name[24];
				snprintf(name, sizeof name, "scry_%u", st->t->id);
				conn_begin_step(c, STEP_PREPARE);
				c->t0 = scry__monotonic_us();
				conn_sent(x, c, PQsendPrepare(c->pg, name, st->t->text, st->t->nparams, st->t->types));
				return;
			}
			r->phase = PH_EXEC;
			break;
		case PH_EXEC:
			send_exec(x, r, c);
			return;
		case PH_AFTER:
			if (r->cursor_open && !r->wrapped && PQtransactionStatus(c->pg) == PQTRANS_INTRANS) {
				conn_begin_step(c, STEP_CLOSE);
				conn_sent(x, c, PQsendQuery(c->pg, "CLOSE scry_portal"));
				return;
			}
			r->cursor_open = false;
			if (r->wrapped) {
				r->wrapped = false;
				if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
					conn_begin_step(c, STEP_ROLLBACK);
					conn_sent(x, c, PQsendQuery(c->pg, "ROLLBACK"));
					return;
				}
			}
			r->phase = PH_NEXT;
			break;
		case PH_NEXT:
			if (!next_step(x, r, c))
				return;
			break;
		}
	}
}

/* Starts the job (round x session) number x->next_job. */
static void job_start(ctx *x)
{
	size_t j = x->next_job++;
	size_t ns = x->w->nsess;
	runner *r = scry__calloc(1, sizeof *r);
	if (!r) {
		set_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	if (scry__array_grow((void **)&x->active, &x->aactive, x->nactive, sizeof *x->active, 64)) {
		scry__free(r);
		set_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	r->s = &x->w->sess[x->order[j % ns]];
	r->round = (int)(j / ns);
	r->heap_idx = -1;
	r->phase = x->o->mode == SCRY_REPLAY_TIMED ? PH_DUE : PH_START;
	r->active_idx = x->nactive;
	x->active[x->nactive++] = r;
	for (int i = 0; i < x->ntargets; i++) {
		r->c[i].r = r;
		r->c[i].target = i;
		r->c[i].fd = -1;
		conn_start(x, &r->c[i]);
	}
}

/* Connections of a timed session open this long before its first statement is due. */
#define CONNECT_LEAD_US 200000

static void start_jobs(ctx *x)
{
	size_t ns = x->w->nsess;
	if (x->o->mode == SCRY_REPLAY_FAST) {
		while (!x->fatal && x->next_job < x->njobs && x->nactive < (size_t)x->o->concurrency)
			job_start(x);
		return;
	}
	/* Timed: rounds one after another; within a round, sessions at their offsets. */
	while (!x->fatal && x->next_job < x->njobs) {
		int round = (int)(x->next_job / ns);
		if (round != x->cur_round) {
			if (x->nactive)
				return; /* the previous round is still running */
			x->cur_round = round;
			x->round_start = scry__monotonic_us() + CONNECT_LEAD_US;
		}
		const rsession *s = &x->w->sess[x->order[x->next_job % ns]];
		int64_t at = x->round_start + (int64_t)((double)(s->first_us - x->w->first_us) / x->o->speed) - CONNECT_LEAD_US;
		if (scry__monotonic_us() < at)
			return;
		job_start(x);
	}
}

static int64_t next_deadline(ctx *x)
{
	int64_t d = x->nheap ? x->heap[0]->due : INT64_MAX;
	if (x->o->mode == SCRY_REPLAY_TIMED && x->next_job < x->njobs) {
		size_t ns = x->w->nsess;
		if ((int)(x->next_job / ns) == x->cur_round) {
			const rsession *s = &x->w->sess[x->order[x->next_job % ns]];
			int64_t at = x->round_start + (int64_t)((double)(s->first_us - x->w->first_us) / x->o->speed) - CONNECT_LEAD_US;
			if (at < d)
				d = at;
		}
	}
	return d;
}

static void arm_timer(ctx *x, int64_t when)
{
	if (when == x->timer_armed)
		return;
	x->timer_armed = when;
	struct itimerspec its = { 0 };
	if (when != INT64_MAX) {
		if (when <= 0)
			when = 1;
		its.it_value.tv_sec = when / 1000000;
		its.it_value.tv_nsec = (when % 1000000) * 1000;
	}
	timerfd_settime(x->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int cmp_first(const void *a, const void *b, void *arg)
{
	const workload *w = arg;
	const rsession *x = &w->sess[*(const size_t *)a], *y = &w->sess[*(const size_t *)b];
	if (x->first_us != y->first_us)
		return x->first_us < y->first_us ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sessions that overlap at most in timed mode (each from its connect lead to its last statement). */
static size_t max_overlap(const workload *w, double speed)
{
	size_t n = w->nsess, best = 0, cur = 0;
	int64_t *ev = scry__calloc(2 * n + 1, sizeof *ev);
	if (!ev)
		return n;
	for (size_t i = 0; i < n; i++) {
		/* encode start as 2t, end as 2t+1 so that ends sort after starts at the same time */
		ev[2 * i] = (int64_t)((double)(w->sess[i].first_us - w->first_us) / speed) * 2;
		ev[2 * i + 1] = ((int64_t)((double)(w->sess[i].last_us - w->first_us) / speed) + CONNECT_LEAD_US) * 2 + 1;
	}
	qsort(ev, 2 * n, sizeof *ev, cmp_i64);
	for (size_t i = 0; i < 2 * n; i++) {
		if (ev[i] % 2 == 0) {
			if (++cur > best)
				best = cur;
		} else {
			cur--;
		}
	}
	scry__free(ev);
	return best;
}

/* The connection string without any password, for the runs table. */
static char *redact_conninfo(const char *conninfo)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	if (!opts) {
		if (errmsg)
			PQfreemem(errmsg);
		return NULL;
	}
	scry_buf b = SCRY_BUF_INIT;
	int rc = 0;
	for (PQconninfoOption *o = opts; !rc && o->keyword; o++)
		if (o->val && strcmp(o->keyword, "password"))
			rc = scry__buf_conninfo_kv(&b, o->keyword, o->val);
	PQconninfoFree(opts);
	if (rc) {
		scry_buf_dispose(&b);
		return NULL;
	}
	if (!b.ptr)
		return scry__strdup("");
	return b.ptr;
}

/* Connects once, blocking, so that a wrong target gives one clear error before
 * anything runs; the connection is kept for the role check (*out). A server
 * that accepts but never answers is given up after timeout + margin. */
static int check_target(const char *conninfo, const scry_replay_options *o, PGconn **out, scry_error *err)
{
	*out = NULL;
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	if (!opts) {
		char msg[300];
		scry__pg_one_line(errmsg ? errmsg : "invalid", msg, sizeof msg);
		if (errmsg)
			PQfreemem(errmsg);
		return scry__fail(err, SCRY_EINVAL, "the connection string '%s' does not parse: %s", conninfo, msg);
	}
	PQconninfoFree(opts);
	char ct[16] = "0";
	if (o->timeout_ms > 0) /* seconds, rounded up; the target's own connect_timeout wins */
		snprintf(ct, sizeof ct, "%d", (o->timeout_ms + (o->client_margin_ms > 0 ? o->client_margin_ms : 1000) + 999) / 1000);
	const char *keys[] = { "connect_timeout", "dbname", "fallback_application_name", NULL };
	const char *vals[] = { ct, conninfo, "scry replay", NULL };
	PGconn *pg = PQconnectdbParams(keys, vals, 1);
	if (pg)
		PQsetNoticeReceiver(pg, scry__pg_notice_ignore, NULL);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		int rc = scry__pg_connect_fail(err, pg, NULL);
		PQfinish(pg);
		return rc;
	}
	*out = pg;
	return 0;
}

static const char *mode_name(scry_replay_mode m) { return m == SCRY_REPLAY_TIMED ? "timed" : "fast"; }

static const char *writes_name(scry_replay_writes w)
{
	return w == SCRY_WRITES_SKIP ? "skip" : w == SCRY_WRITES_EXECUTE ? "execute" : "rollback";
}

static void report_progress(ctx *x, bool force)
{
	if (!x->o->progress)
		return;
	int64_t now = scry__monotonic_us();
	if (!force && now - x->last_progress < 100000)
		return;
	x->last_progress = now;
	x->o->progress(x->o->progress_ctx, "replay", x->done, x->total);
}

static int64_t pct(const int64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* The options of a run, as stored in its `runs` row (docs/store.md). */
static void options_json(scry_buf *b, const scry_replay_options *o, int ntargets, const workload *w)
{
	scry__json j;
	scry__json_init(&j, b);
	scry__json_object(&j);
	scry__json_kstr(&j, "mode", mode_name(o->mode));
	scry__json_knum(&j, "speed", o->speed, "%g");
	scry__json_kint(&j, "concurrency", o->concurrency);
	scry__json_kint(&j, "repeat", o->repeat);
	scry__json_kint(&j, "warmup", o->warmup);
	scry__json_kstr(&j, "writes", writes_name(o->writes));
	scry__json_kint(&j, "timeout_ms", o->timeout_ms);
	scry__json_kint(&j, "patterns", (int64_t)o->nfingerprints);
	scry__json_kbool(&j, "interleaved", ntargets > 1);
	scry__json_kint(&j, "budget", w->budget);
	scry__json_kint(&j, "captured", w->captured);
	scry__json_kint(&j, "sampled", w->sampled ? (int64_t)w->nstmts : 0);
	scry__json_end(&j);
}

/* The replay proper, for one or two targets. */
static int run_targets(scry_replay *rp, const char **conninfo, const char **label, int ntargets,
                       scry_replay_result **outs, scry_error *err)
{
	rp->client_timeouts[0] = rp->client_timeouts[1] = 0;
	const scry_replay_options *o = &rp->o;
	for (int i = 0; i < ntargets; i++) {
		if (!conninfo[i] || !label[i] || !*label[i])
			return scry__fail(err, SCRY_EINVAL, "a replay needs a connection string and a non-empty label");
		static const scry_replay_result zero;
		int orc = outs[i] ? scry__out_check(err, &scry__abi_replay_result, outs[i]) : 0;
		if (orc)
			return orc;
		if (outs[i])
			scry__out_put(&scry__abi_replay_result, outs[i], &zero);
	}
	PGconn *chk[2] = { NULL, NULL };
	for (int i = 0; i < ntargets; i++) {
		int rc = check_target(conninfo[i], o, &chk[i], err);
		if (rc) {
			PQfinish(chk[0]);
			return rc;
		}
	}
	workload w = { 0 };
	ctx x;
	memset(&x, 0, sizeof x);
	x.rp = rp;
	x.o = o;
	x.w = &w;
	x.ntargets = ntargets;
	x.ep = x.timer_fd = -1;
	x.err = err;
	x.cur_round = -1;
	int rc = scry__replay_load(rp->store, o, &w, err);
	if (rc) {
		for (int i = 0; i < ntargets; i++)
			PQfinish(chk[i]);
		goto out;
	}
	for (int i = 0; i < ntargets && !rc; i++)
		rc = scry__replay_roles(o, &w, chk[i], i, err);
	for (int i = 0; i < ntargets; i++) {
		PQfinish(chk[i]);
		chk[i] = NULL;
	}
	if (rc)
		goto out;
	/* Enough file descriptors for the connections that will be open at once? */
	{
		size_t at_once = o->mode == SCRY_REPLAY_FAST
			? (w.nsess < (size_t)o->concurrency ? w.nsess : (size_t)o->concurrency)
			: max_overlap(&w, o->speed);
		struct rlimit rl;
		size_t need = at_once * (size_t)ntargets + 32;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
			rc = scry__fail(err, SCRY_ELIMIT,
				"replaying %zu sessions at once needs about %zu file descriptors, but this process may "
				"open only %llu: raise the limit (ulimit -n; the hard limit is %llu) or lower the concurrency",
				at_once, need, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
			goto out;
		}
	}
	if (!(x.order = scry__calloc(w.nsess + 1, sizeof *x.order))) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < w.nsess; i++)
		x.order[i] = i;
	qsort_r(x.order, w.nsess, sizeof *x.order, cmp_first, &w);
	x.njobs = w.nsess * (size_t)(o->repeat + o->warmup);
	x.total = (uint64_t)w.nstmts * (uint64_t)(o->repeat + o->warmup);
	x.ep = epoll_create1(EPOLL_CLOEXEC);
	x.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (x.ep < 0 || x.timer_fd < 0) {
		int e = errno;
		rc = scry__fail_sys(err, e == EMFILE ? SCRY_ELIMIT : SCRY_EIO, e, "cannot create epoll/timerfd: %s", strerror(e));
		goto out;
	}
	static char cancel_tag, timer_tag;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cancel_tag };
	epoll_ctl(x.ep, EPOLL_CTL_ADD, rp->cancel_fd, &ev);
	ev.data.ptr = &timer_tag;
	epoll_ctl(x.ep, EPOLL_CTL_ADD, x.timer_fd, &ev);
	x.timer_armed = INT64_MAX;

	/* The runs rows. */
	{
		scry_buf opts_json = SCRY_BUF_INIT;
		options_json(&opts_json, o, ntargets, &w);
		if (scry__buf_failed(&opts_json))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		for (int i = 0; i < ntargets && !rc; i++) {
			x.tg[i].conninfo = conninfo[i];
			char *red = redact_conninfo(conninfo[i]);
			rc = scry_store_run_begin(rp->store, label[i], red ? red : "", opts_json.ptr, &x.tg[i].run_id, err);
			scry__free(red);
		}
		scry_buf_dispose(&opts_json);
		if (rc)
			goto out;
	}

	x.wr.store = rp->store;
	x.wr.run_id[0] = x.tg[0].run_id;
	x.wr.run_id[1] = x.tg[1].run_id;
	pthread_mutex_init(&x.wr.mu, NULL);
	pthread_cond_init(&x.wr.cv, NULL);
	if (pthread_create(&x.wr.th, NULL, writer_main, &x.wr) != 0) {
		pthread_mutex_destroy(&x.wr.mu);
		pthread_cond_destroy(&x.wr.cv);
		rc = scry__fail(err, SCRY_EIO, "cannot start the sample writer thread");
		goto out;
	}
	x.wr.started = true;
	int64_t t_start = scry__monotonic_us();
	bool cancelled = false;
	struct epoll_event evs[256];
	report_progress(&x, true);
	while (!x.fatal) {
		if (atomic_load(&rp->cancelled)) {
			cancelled = true;
			break;
		}
		start_jobs(&x);
		int64_t now = scry__monotonic_us();
		while (!x.fatal && x.nheap && x.heap[0]->due <= now) {
			runner *r = x.heap[0];
			heap_remove(&x, r);
			if (r->io_timer)
				io_deadline(&x, r);
			else
				drive(&x, r);
		}
		if (x.fatal)
			break;
		if (!x.nactive && x.next_job >= x.njobs)
			break;
		int64_t d = next_deadline(&x);
		if (d != INT64_MAX && d <= scry__monotonic_us())
			continue;
		arm_timer(&x, d);
		int n = epoll_wait(x.ep, evs, (int)(sizeof evs / sizeof evs[0]), -1);
		if (n < 0 && errno != EINTR) {
			int e = errno;
			set_fatal(&x, SCRY_EIO, "epoll_wait failed: %s", strerror(e));
			break;
		}
		for (int i = 0; i < n && !x.fatal; i++) {
			void *p = evs[i].data.ptr;
			if (p == &cancel_tag) {
				continue; /* the flag is checked at the top */
			} else if (p == &timer_tag) {
				uint64_t ticks;
				if (read(x.timer_fd, &ticks, sizeof ticks) < 0) {
					/* nothing to read: spurious wakeup */
				}
				x.timer_armed = INT64_MAX;
			} else {
				conn_event(&x, p, evs[i].events);
			}
		}
		if (atomic_load(&x.wr.failed)) {
			x.fatal = SCRY_ESTORE; /* the writer's error is reported below */
			break;
		}
		free_dead(&x);
		report_progress(&x, false);
	}
	int64_t elapsed = scry__monotonic_us() - t_start;
	report_progress(&x, true);
	while (x.nactive)
		runner_finish(&x, x.active[0]);
	for (int i = 0; i < ntargets; i++)
		if (x.tg[i].cur) {
			writer_push(&x.wr, x.tg[i].cur);
			x.tg[i].cur = NULL;
		}
	rc = x.fatal;
	scry_error ferr = SCRY_ERROR_INIT;
	int frc = writer_close(&x.wr, &ferr);
	if (frc && (!rc || rc == SCRY_ESTORE)) {
		rc = frc;
		if (err)
			*err = ferr;
	}
	if (!rc && cancelled)
		rc = scry__fail(err, SCRY_ECANCELED, "the replay was cancelled; the samples recorded so far are kept");

	if (x.nlags)
		qsort(x.lags, x.nlags, sizeof *x.lags, cmp_i64);
	for (int i = 0; i < ntargets; i++) {
		scry_replay_result *res = &x.tg[i].res;
		res->run_id = x.tg[i].run_id;
		rp->client_timeouts[i] = x.tg[i].client_timeouts;
		res->elapsed_us = elapsed;
		res->per_second = elapsed > 0 ? (double)res->executions * 1e6 / (double)elapsed : 0;
		res->lag_p50_us = pct(x.lags, x.nlags, 0.50);
		res->lag_p99_us = pct(x.lags, x.nlags, 0.99);
		res->lag_max_us = x.nlags ? x.lags[x.nlags - 1] : 0;
		if (w.sampled) {
			res->captured = w.captured;
			res->sampled = (int64_t)w.nstmts;
			res->budget = w.budget;
		}
		scry_buf summary = SCRY_BUF_INIT;
		scry__json j;
		scry__json_init(&j, &summary);
		scry__json_object(&j);
		scry__json_kint(&j, "skipped", res->skipped);
		scry__json_kint(&j, "elapsed_us", elapsed);
		scry__json_kint(&j, "lag_p50_us", res->lag_p50_us);
		scry__json_kint(&j, "lag_p99_us", res->lag_p99_us);
		scry__json_kint(&j, "lag_max_us", res->lag_max_us);
		scry__json_kint(&j, "cancels", x.tg[i].cancels);
		scry__json_kint(&j, "client_timeouts", x.tg[i].client_timeouts);
		scry__json_kint(&j, "not_replayable", x.tg[i].not_replayable);
		scry__json_kbool(&j, "complete", !rc);
		scry__json_end(&j);
		/* Out of memory: the summary's counts are still stored, without the JSON. */
		scry_run_summary sum = { SCRY_RUN_SUMMARY_VERSION, res->executions, res->errors, res->timeouts,
		                         res->reconnects, res->per_second,
		                         scry__buf_failed(&summary) ? NULL : summary.ptr };
		scry_error eerr = SCRY_ERROR_INIT;
		int erc = scry_store_run_end(rp->store, x.tg[i].run_id, &sum, rc ? &eerr : err);
		scry_buf_dispose(&summary);
		if (!rc && erc)
			rc = erc;
		if (outs[i])
			scry__out_put(&scry__abi_replay_result, outs[i], res);
	}
out:
	/* A cancel that arrived during this run is consumed by it. */
	{
		uint64_t v;
		while (read(rp->cancel_fd, &v, sizeof v) > 0) {
		}
		atomic_store(&rp->cancelled, 0);
	}
	while (x.nactive)
		runner_finish(&x, x.active[0]);
	free_dead(&x);
	writer_close(&x.wr, NULL);
	for (int i = 0; i < 2; i++)
		scry__free(x.tg[i].cur);
	scry__free(x.active);
	scry__free(x.heap);
	scry__free(x.lags);
	scry__free(x.order);
	scry_buf_dispose(&x.keybuf);
	scry_buf_dispose(&x.sqlbuf);
	if (x.ep >= 0)
		close(x.ep);
	if (x.timer_fd >= 0)
		close(x.timer_fd);
	scry__replay_workload_free(&w);
	return rc;
}

static bool replay_cancelled(void *r)
{
	return atomic_load(&((scry_replay *)r)->cancelled) != 0;
}

/* Each pattern's plan on each target, for `scry diff` (lib/verdict_probe.c). */
static int record_plans(scry_replay *r, const char **conninfo, scry_replay_result **outs, int n, scry_error *err)
{
	for (int i = 0; i < n; i++) {
		if (r->client_timeouts[i]) {
			scry__log(r->o.log, r->o.log_ctx, SCRY_LOG_WARNING,
			          "no plans recorded for run %lld: its server stopped answering during the replay",
			          (long long)outs[i]->run_id);
			continue;
		}
		if (scry__plans_record(r->store, conninfo[i], outs[i]->run_id, r->o.fingerprints, r->o.nfingerprints,
		                       r->o.writes != SCRY_WRITES_SKIP, replay_cancelled, r, r->o.log, r->o.log_ctx))
			return scry__fail(err, SCRY_ENOMEM, "out of memory recording plans");
	}
	return 0;
}

int scry_replay_run(scry_replay *r, const char *conninfo, const char *label,
                    scry_replay_result *out, scry_error *err)
{
	if (!r)
		return scry__fail(err, SCRY_EINVAL, "scry_replay_run: a replayer is required");
	const char *ci[1] = { conninfo };
	const char *lb[1] = { label };
	scry_replay_result res;
	scry_replay_result *outs[1] = { out ? out : &res };
	int rc = run_targets(r, ci, lb, 1, outs, err);
	return rc ? rc : record_plans(r, ci, outs, 1, err);
}

int scry_replay_run_ab(scry_replay *r, const char *conninfo_a, const char *label_a,
                       const char *conninfo_b, const char *label_b,
                       scry_replay_result *out_a, scry_replay_result *out_b, scry_error *err)
{
	if (!r)
		return scry__fail(err, SCRY_EINVAL, "scry_replay_run_ab: a replayer is required");
	if (label_a && label_b && !strcmp(label_a, label_b))
		return scry__fail(err, SCRY_EINVAL, "the two runs of an A/B replay need different labels, not '%s' twice", label_a);
	const char *ci[2] = { conninfo_a, conninfo_b };
	const char *lb[2] = { label_a, label_b };
	scry_replay_result ra, rb;
	scry_replay_result *outs[2] = { out_a ? out_a : &ra, out_b ? out_b : &rb };
	int rc = run_targets(r, ci, lb, 2, outs, err);
	return rc ? rc : record_plans(r, ci, outs, 2, err);
}
