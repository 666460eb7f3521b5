/*
 * lib/replay_sched.c - the replay's scheduling: each runner's state machine
 * over its statements (scry__replay_drive(), next_step(): the A/B units), the timer heap
 * of due times and client-side deadlines (replayed cancels, servers that
 * stop answering), starting jobs (round x session) and the event loop that
 * multiplexes every connection, a timerfd and the cancel eventfd.
 * Connections and sends are lib/replay_conn.c.
 */
#define _GNU_SOURCE
#include "replay_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

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
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory");
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
	return scry__replay_client_limit_ms(x->o) * 1000;
}

/* (Re)arms the runner's deadline for the step just sent: the timer heap
 * holds it with due = the earlier of the hard limit and a pending cancel. */
void scry__replay_io_arm(ctx *x, runner *r)
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

void scry__replay_io_disarm(ctx *x, runner *r)
{
	if (!r->io_timer)
		return;
	heap_remove(x, r);
	r->io_timer = false;
	r->cancel_at = 0;
	/* A/B: the other connection may still be connecting; it keeps a deadline. */
	for (int i = 0; i < x->ntargets; i++)
		if (r->c[i].state == C_CONNECTING) {
			scry__replay_io_arm(x, r);
			return;
		}
}

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
			scry__rconn_cancel(x, c);
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
		scry__replay_record(x, r, c, now - c->t0);
	}
	size_t left = r->s->n - r->next - (in_stmt ? 1 : 0);
	if (r->round >= x->o->warmup)
		for (int i = 0; i < x->ntargets; i++)
			x->tg[i].res.skipped += (int64_t)left;
	x->done += r->s->n - r->next;
	scry__replay_runner_finish(x, r);
}

/* Timed mode: when something captured at `us` is due in the current round. */
static int64_t round_time(const ctx *x, int64_t us)
{
	return x->round_start + (int64_t)((double)(us - x->w->first_us) / x->o->speed);
}

static int64_t stmt_due(ctx *x, runner *r)
{
	return round_time(x, CUR_STMT(x, r)->start_us);
}

/* Timed mode: when the connections of job j (in the current round) open. */
static int64_t job_connect_at(const ctx *x, size_t j)
{
	const rsession *s = &x->w->sess[x->order[j % x->w->nsess]];
	return round_time(x, s->first_us) - CONNECT_LEAD_US;
}

void scry__replay_runner_finish(ctx *x, runner *r)
{
	heap_remove(x, r);
	r->io_timer = false;
	for (int i = 0; i < x->ntargets; i++) {
		scry__rconn_close(x, &r->c[i]);
		scry__u64map_free(&r->c[i].prep);
	}
	scry__stmt_cursor_close(x->w, &r->sc);
	size_t i = r->active_idx;
	x->active[i] = x->active[--x->nactive];
	x->active[i]->active_idx = i;
	/* Events of this batch may still point at its connections: free it later. */
	r->next_dead = x->dead;
	x->dead = r;
}

void scry__replay_free_dead(ctx *x)
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
			scry__replay_fatal(x, x->w->error, "%s", x->w->err.message);
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
		scry__rconn_send_query(x, c, STEP_ROLLBACK, "ROLLBACK");
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

/* PH_DUE (timed mode): waits in the heap until the statement's offset. False while waiting. */
static bool phase_due(ctx *x, runner *r)
{
	int64_t now = scry__monotonic_us();
	r->due = stmt_due(x, r);
	if (now < r->due) {
		heap_push(x, r);
		return false;
	}
	if (r->round >= x->o->warmup)
		lag_add(x, now - r->due);
	r->phase = PH_START;
	return true;
}

/* A statement not replayable as captured: a cut text would be a syntax error,
 * a COPY without its data would measure nothing. True when st is one (counted,
 * warned about once per kind). */
static bool not_replayable(ctx *x, runner *r, rconn *c, const rstmt *st)
{
	if (!(st->flags & (SCRY_EVENT_F_TRUNCATED | SCRY_EVENT_F_COPY_DROPPED)))
		return false;
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
	if (r->round >= x->o->warmup)
		x->tg[c->target].not_replayable++;
	return true;
}

/* PH_START: skips the statement, or wraps it in BEGIN ... ROLLBACK (one
 * pipeline when it can), or goes on to PH_PREP. False when a step was sent. */
static bool phase_start(ctx *x, runner *r, rconn *c, const rstmt *st)
{
	bool in_txn = conn_in_txn(c);
	bool skip = false, wrap = false;
	scry_replay_writes wm = x->o->writes;
	r->override_rollback = false;
	/* A captured row-limited portal: DECLARE + FETCH n, in a transaction. */
	r->cursor = st->kind == SCRY_EVENT_EXTENDED && st->fetch > 0 && st->t->cursorable;
	r->cursor_open = false;
	skip = not_replayable(x, r, c, st);
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
		return true;
	}
	if (r->cursor && !in_txn)
		wrap = true; /* a cursor needs a transaction; ROLLBACK closes it */
	r->wrapped = wrap;
	if (wrap && scry__replay_pipeline_ok(st, r)) {
		scry__replay_send_pipeline(x, r, c);
		return false;
	}
	if (wrap) {
		scry__rconn_send_query(x, c, STEP_BEGIN, "BEGIN");
		return false;
	}
	r->phase = PH_PREP;
	return true;
}

/* PH_AFTER: closes a cursor left open, rolls a wrapped statement back. False when a step was sent. */
static bool phase_after(ctx *x, runner *r, rconn *c)
{
	if (r->cursor_open && !r->wrapped && PQtransactionStatus(c->pg) == PQTRANS_INTRANS) {
		scry__rconn_send_query(x, c, STEP_CLOSE, "CLOSE scry_portal");
		return false;
	}
	r->cursor_open = false;
	if (r->wrapped) {
		r->wrapped = false;
		if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
			scry__rconn_send_query(x, c, STEP_ROLLBACK, "ROLLBACK");
			return false;
		}
	}
	r->phase = PH_NEXT;
	return true;
}

/* One phase of the runner's statement on c; false when it must wait (a step in flight, a due time). */
static bool drive_phase(ctx *x, runner *r, rconn *c, const rstmt *st)
{
	switch (r->phase) {
	case PH_DUE:
		return phase_due(x, r);
	case PH_START:
		return phase_start(x, r, c, st);
	case PH_PREP:
		if (scry__replay_send_prepare(x, r, c))
			return false;
		r->phase = PH_EXEC;
		return true;
	case PH_EXEC:
		scry__replay_send_exec(x, r, c);
		return false;
	case PH_AFTER:
		return phase_after(x, r, c);
	case PH_NEXT:
		return next_step(x, r, c);
	}
	return true;
}

/* Moves a runner as far as it can go without waiting. */
void scry__replay_drive(ctx *x, runner *r)
{
	for (;;) {
		if (x->fatal)
			return;
		if (r->next >= r->s->n) {
			scry__replay_runner_finish(x, r);
			return;
		}
		rconn *c = step_conn(x, r);
		if (c->state != C_IDLE)
			return; /* connecting, or a step is in flight: its completion calls us */
		const rstmt *st = CUR_STMT(x, r);
		if (!st) {
			scry__replay_fatal(x, x->w->error, "%s", x->w->err.message);
			return;
		}
		if (!drive_phase(x, r, c, st))
			return;
	}
}

/* Starts the job (round x session) number x->next_job. */
static void job_start(ctx *x)
{
	size_t j = x->next_job++;
	size_t ns = x->w->nsess;
	runner *r = scry__calloc(1, sizeof *r);
	if (!r) {
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	if (scry__array_grow((void **)&x->active, &x->aactive, x->nactive, sizeof *x->active, 64)) {
		scry__free(r);
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory");
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
		scry__rconn_start(x, &r->c[i]);
	}
}

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
		if (scry__monotonic_us() < job_connect_at(x, x->next_job))
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
			int64_t at = job_connect_at(x, x->next_job);
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

/* Sessions that overlap at most in timed mode (each from its connect lead to its last statement). */
size_t scry__replay_max_overlap(const workload *w, double speed)
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
	qsort(ev, 2 * n, sizeof *ev, scry__replay_cmp_i64);
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

/* ------------------------------------------------------------------ */
/* The event loop                                                      */
/* ------------------------------------------------------------------ */

/* epoll tags of the cancel eventfd and the timerfd (connections are tagged with their rconn). */
static char cancel_tag, timer_tag;

int scry__replay_loop_open(ctx *x, scry_error *err)
{
	const workload *w = x->w;
	if (!(x->order = scry__calloc(w->nsess + 1, sizeof *x->order)))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	for (size_t i = 0; i < w->nsess; i++)
		x->order[i] = i;
	qsort_r(x->order, w->nsess, sizeof *x->order, cmp_first, x->w);
	x->njobs = w->nsess * (size_t)(x->o->repeat + x->o->warmup);
	x->total = (uint64_t)w->nstmts * (uint64_t)(x->o->repeat + x->o->warmup);
	x->ep = epoll_create1(EPOLL_CLOEXEC);
	x->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (x->ep < 0 || x->timer_fd < 0) {
		int e = errno;
		return scry__fail_sys(err, e == EMFILE ? SCRY_ELIMIT : SCRY_EIO, e, "cannot create epoll/timerfd: %s", strerror(e));
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cancel_tag };
	epoll_ctl(x->ep, EPOLL_CTL_ADD, x->rp->cancel_fd, &ev);
	ev.data.ptr = &timer_tag;
	epoll_ctl(x->ep, EPOLL_CTL_ADD, x->timer_fd, &ev);
	x->timer_armed = INT64_MAX;
	return 0;
}

/* Runs the heap's runners whose time has come: deadlines and due statements. */
static void run_due(ctx *x)
{
	int64_t now = scry__monotonic_us();
	while (!x->fatal && x->nheap && x->heap[0]->due <= now) {
		runner *r = x->heap[0];
		heap_remove(x, r);
		if (r->io_timer)
			io_deadline(x, r);
		else
			scry__replay_drive(x, r);
	}
}

/* Handles one batch of epoll events. */
static void dispatch(ctx *x, const struct epoll_event *evs, int n)
{
	for (int i = 0; i < n && !x->fatal; i++) {
		void *p = evs[i].data.ptr;
		if (p == &cancel_tag) {
			continue; /* the flag is checked at the top of the loop */
		} else if (p == &timer_tag) {
			uint64_t ticks;
			if (read(x->timer_fd, &ticks, sizeof ticks) < 0) {
				/* nothing to read: spurious wakeup */
			}
			x->timer_armed = INT64_MAX;
		} else {
			scry__rconn_event(x, p, evs[i].events);
		}
	}
}

int64_t scry__replay_loop(ctx *x, bool *cancelled)
{
	int64_t t_start = scry__monotonic_us();
	struct epoll_event evs[256];
	*cancelled = false;
	report_progress(x, true);
	while (!x->fatal) {
		if (atomic_load(&x->rp->cancelled)) {
			*cancelled = true;
			break;
		}
		start_jobs(x);
		run_due(x);
		if (x->fatal)
			break;
		if (!x->nactive && x->next_job >= x->njobs)
			break;
		int64_t d = next_deadline(x);
		if (d != INT64_MAX && d <= scry__monotonic_us())
			continue;
		arm_timer(x, d);
		int n = epoll_wait(x->ep, evs, (int)(sizeof evs / sizeof evs[0]), -1);
		if (n < 0 && errno != EINTR) {
			int e = errno;
			scry__replay_fatal(x, SCRY_EIO, "epoll_wait failed: %s", strerror(e));
			break;
		}
		dispatch(x, evs, n);
		if (atomic_load(&x->wr.failed)) {
			x->fatal = SCRY_ESTORE; /* the writer's error is reported by scry__replay_results() */
			break;
		}
		scry__replay_free_dead(x);
		report_progress(x, false);
	}
	int64_t elapsed = scry__monotonic_us() - t_start;
	report_progress(x, true);
	return elapsed;
}
