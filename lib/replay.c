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
 * so it never waits on one clone holding locks on the other.
 *
 * This file holds the handle (options, lifecycle, cancel) and the phases of
 * a run; the engine's state is lib/replay_internal.h, its connections
 * lib/replay_conn.c, its runners and event loop lib/replay_sched.c, its
 * samples and results lib/replay_record.c. The workload is loaded and
 * classified by lib/replay_workload.c. See docs/replay.md.
 */
#define _GNU_SOURCE
#include "replay_internal.h"
#include "verdict_internal.h"
#include "util/json.h"
#include "util/pgexec.h" /* scry__pg_connect */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The replayer                                                        */
/* ------------------------------------------------------------------ */

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
	/* Seconds, rounded up (0: none without a limit); the target's own connect_timeout wins. */
	int64_t limit_ms = scry__replay_client_limit_ms(o);
	PGconn *pg = scry__pg_connect(conninfo, "scry replay", false, (long long)((limit_ms + 999) / 1000));
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

/* Checks the arguments of a run and zeroes the caller's results. */
static int run_args(const char **conninfo, const char **label, int ntargets, scry_replay_result **outs,
                    scry_error *err)
{
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
	return 0;
}

/* Enough file descriptors for the connections that will be open at once? */
static int check_fd_limit(const ctx *x, scry_error *err)
{
	const scry_replay_options *o = x->o;
	const workload *w = x->w;
	size_t at_once = o->mode == SCRY_REPLAY_FAST
		? (w->nsess < (size_t)o->concurrency ? w->nsess : (size_t)o->concurrency)
		: scry__replay_max_overlap(w, o->speed);
	struct rlimit rl;
	size_t need = at_once * (size_t)x->ntargets + 32;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
		return scry__fail(err, SCRY_ELIMIT,
			"replaying %zu sessions at once needs about %zu file descriptors, but this process may "
			"open only %llu: raise the limit (ulimit -n; the hard limit is %llu) or lower the concurrency",
			at_once, need, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
	return 0;
}

/* Loads the workload and decides its roles on each target (through the
 * check connections chk[], closed here), then checks the fd limit. */
static int run_load(ctx *x, PGconn **chk, scry_error *err)
{
	int rc = scry__replay_load(x->rp->store, x->o, x->w, err);
	for (int i = 0; i < x->ntargets && !rc; i++)
		rc = scry__replay_roles(x->o, x->w, chk[i], i, err);
	for (int i = 0; i < x->ntargets; i++) {
		PQfinish(chk[i]);
		chk[i] = NULL;
	}
	return rc ? rc : check_fd_limit(x, err);
}

/* The runs rows, one per target. */
static int runs_begin(ctx *x, const char **conninfo, const char **label, scry_error *err)
{
	int rc = 0;
	scry_buf opts_json = SCRY_BUF_INIT;
	options_json(&opts_json, x->o, x->ntargets, x->w);
	if (scry__buf_failed(&opts_json))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	for (int i = 0; i < x->ntargets && !rc; i++) {
		x->tg[i].conninfo = conninfo[i];
		char *red = redact_conninfo(conninfo[i]);
		rc = scry_store_run_begin(x->rp->store, label[i], red ? red : "", opts_json.ptr, &x->tg[i].run_id, err);
		scry__free(red);
	}
	scry_buf_dispose(&opts_json);
	return rc;
}

/* Whatever the outcome: a cancel that arrived during the run is consumed by
 * it, runners and the writer stopped, the run's memory and fds freed. */
static void run_cleanup(ctx *x)
{
	uint64_t v;
	while (read(x->rp->cancel_fd, &v, sizeof v) > 0) {
	}
	atomic_store(&x->rp->cancelled, 0);
	while (x->nactive)
		scry__replay_runner_finish(x, x->active[0]);
	scry__replay_free_dead(x);
	scry__replay_writer_dispose(x);
	scry__free(x->active);
	scry__free(x->heap);
	scry__free(x->lags);
	scry__free(x->order);
	scry_buf_dispose(&x->keybuf);
	scry_buf_dispose(&x->sqlbuf);
	if (x->ep >= 0)
		close(x->ep);
	if (x->timer_fd >= 0)
		close(x->timer_fd);
	scry__replay_workload_free(x->w);
}

/* The replay proper, for one or two targets. */
static int run_targets(scry_replay *rp, const char **conninfo, const char **label, int ntargets,
                       scry_replay_result **outs, scry_error *err)
{
	rp->client_timeouts[0] = rp->client_timeouts[1] = 0;
	int rc = run_args(conninfo, label, ntargets, outs, err);
	if (rc)
		return rc;
	PGconn *chk[2] = { NULL, NULL };
	for (int i = 0; i < ntargets; i++) {
		rc = check_target(conninfo[i], &rp->o, &chk[i], err);
		if (rc) {
			PQfinish(chk[0]);
			return rc;
		}
	}
	workload w = { 0 };
	ctx x;
	memset(&x, 0, sizeof x);
	x.rp = rp;
	x.o = &rp->o;
	x.w = &w;
	x.ntargets = ntargets;
	x.ep = x.timer_fd = -1;
	x.err = err;
	x.cur_round = -1;
	rc = run_load(&x, chk, err);
	if (!rc)
		rc = scry__replay_loop_open(&x, err);
	if (!rc)
		rc = runs_begin(&x, conninfo, label, err);
	if (!rc)
		rc = scry__replay_writer_start(&x, err);
	if (!rc) {
		bool cancelled;
		int64_t elapsed = scry__replay_loop(&x, &cancelled);
		rc = scry__replay_results(&x, elapsed, cancelled, outs);
	}
	run_cleanup(&x);
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
