/*
 * lib/replay_conn.c - the replay's connections over libpq's asynchronous
 * API: connecting (with retries) and the setup query, sending each step
 * (BEGIN, PREPARE, the statement or its cursor, a pipelined write, ROLLBACK,
 * CLOSE), reading results as the socket delivers them (COPY both ways), the
 * set of statements each connection has prepared, and replayed cancels.
 * A finished step hands the runner back to lib/replay_sched.c.
 */
#define _GNU_SOURCE
#include "replay_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

/* The set of statements c has prepared (scry_<id>): forgotten when the
 * connection closes or the workload drops them (DISCARD ALL, DEALLOCATE). */
static bool prepared_has(const rconn *c, uint32_t id)
{
	return scry__u64map_get(&c->prep, id) != 0;
}

static void prepared_add(rconn *c, uint32_t id)
{
	/* Out of memory: not remembered; it will be prepared again and fail as a duplicate. */
	(void)scry__u64map_put(&c->prep, id, 1);
}

static void prepared_clear(rconn *c)
{
	scry__u64map_free(&c->prep);
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

void scry__rconn_close(ctx *x, rconn *c)
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
	prepared_clear(c);
	c->flushing = c->copy_out = c->lost = false;
}

static void conn_poll_connect(ctx *x, rconn *c);
static void conn_step_done(ctx *x, rconn *c);

static void notice(void *arg, const PGresult *r)
{
	const ctx *x = arg;
	scry__pg_notice_log(x->o->log, x->o->log_ctx, r);
}

void scry__rconn_start(ctx *x, rconn *c)
{
	const char *keys[REPLAY_MAX_KEYS + 1], *vals[REPLAY_MAX_KEYS + 1];
	if (scry__replay_conn_keys(x->o, c->r->s, x->tg[c->target].conninfo, keys, vals, &x->keybuf)) {
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory opening a connection");
		return;
	}
	c->pg = PQconnectStartParams(keys, vals, 1);
	scry__replay_io_arm(x, c->r); /* a server that accepts but never answers */
	c->state = C_CONNECTING;
	c->fd = -1;
	c->mask = 0;
	c->step = STEP_NONE;
	if (!c->pg) {
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory opening a connection");
		return;
	}
	PQsetNoticeReceiver(c->pg, notice, x); /* never libpq's printing default */
	conn_poll_connect(x, c);
}

/* Sends what libpq buffered; watches for writability while some is left. */
static void conn_flush_watch(ctx *x, rconn *c)
{
	int f = PQflush(c->pg);
	c->flushing = f == 1;
	if (f < 0)
		c->lost = true;
	conn_update_mask(x, c, EPOLLIN | (c->flushing ? EPOLLOUT : 0));
}

void scry__rconn_begin_step(rconn *c, int step)
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

/* The connection broke during a step: the step fails with 08006 unless it has an error already. */
static void conn_lost(rconn *c)
{
	c->lost = true;
	if (!c->error) {
		c->error = true;
		snprintf(c->sqlstate, sizeof c->sqlstate, "08006");
	}
}

bool scry__rconn_sent(ctx *x, rconn *c, int ok)
{
	if (!ok) {
		conn_lost(c); /* c->error is still false: the step was just sent */
		conn_step_done(x, c);
		return false;
	}
	conn_flush_watch(x, c);
	scry__replay_io_arm(x, c->r);
	return true;
}

static void conn_send_setup(ctx *x, rconn *c)
{
	if (scry__replay_setup_sql(x->o, c->r->s, c->target, &x->sqlbuf)) {
		scry__replay_fatal(x, SCRY_ENOMEM, "out of memory");
		return;
	}
	PQsetnonblocking(c->pg, 1);
	c->fd = PQsocket(c->pg);
	scry__rconn_begin_step(c, STEP_SETUP);
	c->state = C_SETUP;
	scry__rconn_sent(x, c, PQsendQuery(c->pg, x->sqlbuf.ptr));
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
			scry__replay_fatal(x, SCRY_ELIMIT, "out of file descriptors opening connection number %zu: %s. "
			          "Raise the limit (ulimit -n) or lower the concurrency.", x->nactive, msg);
		} else if (c->fails >= 3) {
			scry__replay_fatal(x, SCRY_ECONNECT, "a replay connection to %s:%s failed %d times in a row: %s. "
			          "Check the server's max_connections and log, or lower the concurrency.",
			          PQhost(c->pg) ? PQhost(c->pg) : "?", PQport(c->pg) ? PQport(c->pg) : "?", c->fails, msg);
		} else {
			logf_(x, SCRY_LOG_WARNING, "replay connection failed (%s); retrying", msg);
			int fails = c->fails;
			scry__rconn_close(x, c);
			c->fails = fails;
			scry__rconn_start(x, c);
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
	scry__rconn_close(x, c);
	scry__rconn_start(x, c);
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
				conn_lost(c);
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
			conn_lost(c);
			conn_step_done(x, c);
			return;
		}
	}
}

void scry__rconn_event(ctx *x, rconn *c, uint32_t events)
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
			conn_lost(c);
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
		scry__replay_drive(x, c->r);
	}
}


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
	scry__rconn_sent(x, c, PQsendQuery(c->pg, sql));
	return true;
}

static void conn_step_done(ctx *x, rconn *c)
{
	runner *r = c->r;
	int step = c->step;
	bool bad = c->lost || PQstatus(c->pg) == CONNECTION_BAD;
	scry__replay_io_disarm(x, r);
	if (step == STEP_EXEC && cursor_continue(x, c, bad))
		return;
	c->step = STEP_NONE;
	c->state = C_IDLE;
	int64_t now = scry__monotonic_us();
	switch (step) {
	case STEP_SETUP:
		break;
	case STEP_BEGIN:
	case STEP_PREPARE:
		if (c->error) {
			/* A failed BEGIN, or a statement that cannot even be prepared (e.g. a
			 * column the migration dropped): the error is the statement's sample. */
			scry__replay_record(x, r, c, now - c->t0);
			r->phase = PH_AFTER;
		} else if (step == STEP_BEGIN) {
			r->phase = PH_PREP;
		} else {
			prepared_add(c, CUR_STMT(x, r)->t->id);
			r->phase = PH_EXEC;
		}
		break;
	case STEP_EXEC:
		scry__replay_record(x, r, c, now - c->t0);
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
		scry__replay_record(x, r, c, (c->t_end ? c->t_end : now) - c->t0);
		r->phase = PH_AFTER; /* the server's transaction state says whether the ROLLBACK ran */
		break;
	}
	if (bad)
		conn_reconnect(x, c);
	else if (step == STEP_EXEC && !strcmp(c->sqlstate, "26000"))
		prepared_clear(c); /* our prepared statement went away (DEALLOCATE by the workload) */
	scry__replay_drive(x, r);
}

/* ------------------------------------------------------------------ */
/* Sending steps                                                       */
/* ------------------------------------------------------------------ */

void scry__rconn_send_query(ctx *x, rconn *c, int step, const char *sql)
{
	scry__rconn_begin_step(c, step);
	c->t0 = scry__monotonic_us();
	scry__rconn_sent(x, c, PQsendQuery(c->pg, sql));
}

/* The name of a text's prepared statement: scry_<id>. */
static void prepared_name(char *name, size_t n, const itext *t)
{
	snprintf(name, n, "scry_%u", t->id);
}

bool scry__replay_send_prepare(ctx *x, runner *r, rconn *c)
{
	const rstmt *st = CUR_STMT(x, r);
	if (st->kind != SCRY_EVENT_EXTENDED || r->override_rollback || r->cursor || prepared_has(c, st->t->id))
		return false;
	char name[24];
	prepared_name(name, sizeof name, st->t);
	scry__rconn_begin_step(c, STEP_PREPARE);
	c->t0 = scry__monotonic_us();
	scry__rconn_sent(x, c, PQsendPrepare(c->pg, name, st->t->text, st->t->nparams, st->t->types));
	return true;
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
void scry__rconn_cancel(ctx *x, rconn *c)
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

/* A statement the client cancelled at capture is cancelled at the same
 * offset after its start (io_deadline() sends the CancelRequest). */
static void set_cancel_at(runner *r, const rconn *c, const rstmt *st)
{
	r->cancel_at = 0;
	if ((st->flags & SCRY_EVENT_F_CANCELLED) && st->duration_us >= 0 && !r->override_rollback)
		r->cancel_at = c->t0 + st->duration_us;
}

bool scry__replay_send_exec(ctx *x, runner *r, rconn *c)
{
	const rstmt *st = CUR_STMT(x, r);
	scry__rconn_begin_step(c, STEP_EXEC);
	c->t0 = scry__monotonic_us();
	int ok;
	set_cancel_at(r, c, st);
	if (r->override_rollback)
		ok = PQsendQuery(c->pg, "ROLLBACK");
	else if (r->cursor) {
		scry__buf_clear(&x->sqlbuf);
		if (scry__buf_puts(&x->sqlbuf, "DECLARE scry_portal NO SCROLL CURSOR FOR ") ||
		    scry__buf_put(&x->sqlbuf, st->t->text, st->t->len)) {
			scry__replay_fatal(x, SCRY_ENOMEM, "out of memory");
			return false;
		}
		c->cur_stage = 1;
		ok = PQsendQueryParams(c->pg, x->sqlbuf.ptr, st->nparams, st->t->types, st->values, st->lengths,
		                       st->formats, 0);
	} else if (st->kind == SCRY_EVENT_EXTENDED) {
		char name[24];
		prepared_name(name, sizeof name, st->t);
		ok = PQsendQueryPrepared(c->pg, name, st->nparams, st->values, st->lengths, st->formats, 0);
	} else {
		/* Simple protocol, exactly as captured: one Query message, one result per statement. */
		ok = PQsendQuery(c->pg, st->t->text);
	}
	return scry__rconn_sent(x, c, ok);
}

/* A write wrapped in BEGIN ... ROLLBACK can go in one pipeline: not a COPY
 * (no COPY in pipeline mode), not a cursor, and for the simple protocol a
 * single statement (the pipeline sends it with the extended protocol, which
 * takes one statement per message). */
bool scry__replay_pipeline_ok(const rstmt *st, const runner *r)
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
void scry__replay_send_pipeline(ctx *x, runner *r, rconn *c)
{
	const rstmt *st = CUR_STMT(x, r);
	scry__rconn_begin_step(c, STEP_PIPE);
	c->t0 = scry__monotonic_us();
	int ok = PQenterPipelineMode(c->pg) &&
	         PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	c->pipe_write = 1;
	char name[24];
	prepared_name(name, sizeof name, st->t);
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
	scry__rconn_sent(x, c, ok);
}
