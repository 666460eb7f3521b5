/*
 * lib/replay_internal.h - the replay engine's state, shared by its files
 * (private to the replay module):
 *
 *   lib/replay.c         the handle (options, lifecycle) and a run's phases
 *   lib/replay_conn.c    connections and statement execution over libpq
 *   lib/replay_sched.c   runners' state machine, timers, jobs, the event loop
 *   lib/replay_record.c  samples (writer thread) and each run's results
 *
 * The workload itself is lib/replay_workload.h. See docs/replay.md.
 */
#ifndef SCRY_REPLAY_INTERNAL_H
#define SCRY_REPLAY_INTERNAL_H

#include "replay_workload.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

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
	scry__u64map prep;        /* prepared statements of this connection: itext id -> 1 */
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

/* Logs through the caller's callback (scry__log does the formatting). */
#define logf_(x, lvl, ...) scry__log((x)->o->log, (x)->o->log_ctx, (lvl), __VA_ARGS__)

/* Connections of a timed session open this long before its first statement is due. */
#define CONNECT_LEAD_US 200000

/* ---- lib/replay_record.c: errors, samples, results ---------------- */

/* Stops the run with the first error (later ones are dropped); returns the code in force. */
SCRY_HIDDEN int scry__replay_fatal(ctx *x, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records one sample of the runner's statement on c's target (not in warmup rounds). */
SCRY_HIDDEN void scry__replay_record(ctx *x, runner *r, rconn *c, int64_t latency);
/* Starts the sample writer thread for x->tg[*].run_id. */
SCRY_HIDDEN int scry__replay_writer_start(ctx *x, scry_error *err);
/* After the loop: the samples flushed, each target's result stored in its
 * runs row and copied to outs[i]. Returns the run's outcome. */
SCRY_HIDDEN int scry__replay_results(ctx *x, int64_t elapsed, bool cancelled, scry_replay_result **outs);
/* Stops the writer thread (if running) and frees unsent batches. */
SCRY_HIDDEN void scry__replay_writer_dispose(ctx *x);
/* qsort comparison of int64_t. */
SCRY_HIDDEN int scry__replay_cmp_i64(const void *a, const void *b);

/* ---- lib/replay_conn.c: connections and statements ---------------- */

/* Opens c's connection (non-blocking); the setup query follows. */
SCRY_HIDDEN void scry__rconn_start(ctx *x, rconn *c);
SCRY_HIDDEN void scry__rconn_close(ctx *x, rconn *c);
/* Resets c's per-step state for a new step. */
SCRY_HIDDEN void scry__rconn_begin_step(rconn *c, int step);
/* After a PQsend* call: true = sent, false = the connection is gone (step completed as failed). */
SCRY_HIDDEN bool scry__rconn_sent(ctx *x, rconn *c, int ok);
/* A new `step` of one simple query (BEGIN, ROLLBACK, CLOSE). */
SCRY_HIDDEN void scry__rconn_send_query(ctx *x, rconn *c, int step, const char *sql);
/* epoll reported `events` on c's socket. */
SCRY_HIDDEN void scry__rconn_event(ctx *x, rconn *c, uint32_t events);
/* Sends a CancelRequest for c's statement without blocking the loop. */
SCRY_HIDDEN void scry__rconn_cancel(ctx *x, rconn *c);
/* Sends the PREPARE the runner's statement needs on c; false when none is needed. */
SCRY_HIDDEN bool scry__replay_send_prepare(ctx *x, runner *r, rconn *c);
/* Sends the runner's statement (or its DECLARE, or the ROLLBACK for a COMMIT). */
SCRY_HIDDEN bool scry__replay_send_exec(ctx *x, runner *r, rconn *c);
/* May a write wrapped in BEGIN ... ROLLBACK go in one pipeline? */
SCRY_HIDDEN bool scry__replay_pipeline_ok(const rstmt *st, const runner *r);
/* BEGIN, [PREPARE], the write, ROLLBACK and Sync in one round trip. */
SCRY_HIDDEN void scry__replay_send_pipeline(ctx *x, runner *r, rconn *c);

/* ---- lib/replay_sched.c: runners, timers, the event loop ---------- */

/* Moves a runner as far as it can go without waiting. */
SCRY_HIDDEN void scry__replay_drive(ctx *x, runner *r);
/* (Re)arms / drops the runner's client-side deadline for the step in flight. */
SCRY_HIDDEN void scry__replay_io_arm(ctx *x, runner *r);
SCRY_HIDDEN void scry__replay_io_disarm(ctx *x, runner *r);
/* Closes the runner's connections; it is freed after the current batch of events. */
SCRY_HIDDEN void scry__replay_runner_finish(ctx *x, runner *r);
/* Frees the runners finished so far. */
SCRY_HIDDEN void scry__replay_free_dead(ctx *x);
/* Sessions that overlap at most in timed mode. */
SCRY_HIDDEN size_t scry__replay_max_overlap(const workload *w, double speed);
/* The jobs (sessions sorted by first statement) and the epoll set, timerfd included. */
SCRY_HIDDEN int scry__replay_loop_open(ctx *x, scry_error *err);
/* Runs every job; returns the elapsed time, *cancelled when scry_replay_cancel() stopped it. */
SCRY_HIDDEN int64_t scry__replay_loop(ctx *x, bool *cancelled);

#endif
