/*
 * lib/pipeline.c - test-migration end to end: shadow -> migrate -> settle ->
 * replay A/B -> verdict -> (fix -> replay -> verdict) -> report.
 * See include/scry/pipeline.h and docs/pipeline.md.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

struct scry_pipeline {
	scry_pipeline_options opts;
	scry_replay_options ropts;
	scry_verdict_options vopts;
	bool has_ropts, has_vopts;
	scry_migration fix;          /* copy of opts.fix (argv/sql shared with the caller) */
	bool has_fix;
	scry_store *store;
	char *target;
	char *prefix;
	char *suffix;
	char *baseline, *candidate, *clone_command; /* copies of the options' strings */
	bool ran;

	scry_verdict *verdict, *fix_verdict;
	scry_pipeline_stats stats;
	scry_replay_result results[4]; /* by scry_pipeline_replay */

	atomic_int canceled;
	pthread_mutex_t lock;
	scry_shadow *shadow;         /* while it exists, for cancel */
	scry_replay *replay;         /* while one runs, for cancel */
	scry_replay *impact_replay;  /* the replay during the migration, for cancel */
	scry_impact *impact;         /* what the migration did to it */
	scry_impact_gate gate;
	volatile int verdict_cancel; /* the verdict polls it */
};

void scry_pipeline_options_init(scry_pipeline_options *opts)
{
	if (opts)
		*opts = (scry_pipeline_options)SCRY_PIPELINE_OPTIONS_INIT;
}

/* Logs through the caller's callback (scry__log does the formatting). */
#define plog(p, level, ...) scry__log((p)->opts.log, (p)->opts.log_ctx, level, __VA_ARGS__)

static void phase(scry_pipeline *p, const char *name, uint64_t done, uint64_t total)
{
	if (p->opts.progress)
		p->opts.progress(p->opts.progress_ctx, name, done, total);
}

/* Replay progress, forwarded under the pipeline's phase name. */
static void replay_progress(void *ctx, const char *ph, uint64_t done, uint64_t total)
{
	(void)ph;
	phase(ctx, SCRY_PHASE_REPLAYING, done, total);
}

int scry_pipeline_new(scry_pipeline **out, scry_store *store, const char *target,
	const scry_pipeline_options *opts, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "out is NULL");
	*out = NULL;
	if (!store || !target)
		return scry__fail(err, SCRY_EINVAL, "a store and a target are needed");
	scry_pipeline_options o;
	scry_replay_options ro;
	scry_verdict_options vo;
	scry_migration fix;
	int rc = scry__opts_copy(err, &scry__abi_pipeline_options, &o, opts);
	if (!rc)
		rc = scry__opts_copy(err, &scry__abi_replay_options, &ro, o.replay);
	if (!rc)
		rc = scry__opts_copy(err, &scry__abi_verdict_options, &vo, o.verdict);
	if (!rc)
		rc = scry__opts_copy(err, &scry__abi_migration, &fix, o.fix);
	if (rc)
		return rc;
	scry_pipeline *p = scry__calloc(1, sizeof *p);
	if (!p)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	p->opts = o;
	p->gate = (scry_impact_gate)SCRY_IMPACT_GATE_INIT;
	p->gate.max_lock_wait_ms = o.max_lock_wait_ms;
	p->gate.max_migration_seconds = o.max_migration_seconds;
	if (!(p->opts.impact_speed > 0))
		p->opts.impact_speed = 1.0;
	p->stats.size = sizeof p->stats;
	for (int i = 0; i < 4; i++)
		p->results[i].size = sizeof p->results[i];
	p->ropts = ro;
	p->vopts = vo;
	/* Replay options the caller left out, or filled before budgets existed: the pipeline's budget. */
	if (!o.replay || o.replay->version < 2)
		p->ropts.budget = SCRY_PIPELINE_DEFAULT_BUDGET;
	/* A budget keeps at least what the verdict needs per pattern. */
	if (p->ropts.min_per_pattern < p->vopts.min_samples)
		p->ropts.min_per_pattern = p->vopts.min_samples;
	if (o.fix) {
		p->fix = fix;
		p->has_fix = true;
	}
	/* Pointers into the caller's structs are not kept past this call. */
	p->opts.replay = NULL;
	p->opts.verdict = NULL;
	p->opts.fix = NULL;
	p->ropts.fingerprints = NULL; /* replaced below by a copy when given */
	p->ropts.nfingerprints = 0;
	if (ro.fingerprints && ro.nfingerprints) {
		uint64_t *fps = scry__calloc(ro.nfingerprints, sizeof *fps);
		if (!fps) {
			scry__free(p);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		memcpy(fps, ro.fingerprints, ro.nfingerprints * sizeof *fps);
		p->ropts.fingerprints = fps;
		p->ropts.nfingerprints = ro.nfingerprints;
	}
	p->store = store;
	p->target = scry__strdup(target);
	p->prefix = scry__strdup(p->opts.label_prefix ? p->opts.label_prefix : "pipeline");
	p->suffix = p->opts.suffix ? scry__strdup(p->opts.suffix) : NULL;
	p->opts.label_prefix = NULL;
	p->opts.suffix = NULL;
	bool nomem = false;
	char **own[3] = { &p->baseline, &p->candidate, &p->clone_command };
	const char **from[3] = { &p->opts.baseline, &p->opts.candidate, &p->opts.clone_command };
	for (int i = 0; i < 3; i++) {
		if (*from[i] && !(*own[i] = scry__strdup(*from[i])))
			nomem = true;
		*from[i] = *own[i];
	}
	pthread_mutex_init(&p->lock, NULL);
	atomic_init(&p->canceled, 0);
	if (nomem || !p->target || !p->prefix || (o.suffix && !p->suffix)) {
		scry_pipeline_free(p);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	*out = p;
	return 0;
}

void scry_pipeline_cancel(scry_pipeline *p)
{
	if (!p)
		return;
	atomic_store(&p->canceled, 1);
	p->verdict_cancel = 1;
	pthread_mutex_lock(&p->lock);
	if (p->shadow)
		scry_shadow_cancel(p->shadow);
	if (p->replay)
		scry_replay_cancel(p->replay);
	if (p->impact_replay)
		scry_replay_cancel(p->impact_replay);
	pthread_mutex_unlock(&p->lock);
}

static int check_canceled(scry_pipeline *p, scry_error *err)
{
	return atomic_load(&p->canceled) ? scry__fail(err, SCRY_ECANCELED, "cancelled") : 0;
}

static void set_label(char *buf, size_t n, const scry_pipeline *p, const char *what)
{
	snprintf(buf, n, "%s-%s", p->prefix, what);
}

/*
 * One replay: A and B interleaved in clone mode, or one side alone in
 * sequential mode (b_label NULL). The replayer is registered for cancel.
 */
static int replay(scry_pipeline *p, const char *a_conn, const char *a_label, const char *b_conn,
	const char *b_label, scry_replay_result *ra, scry_replay_result *rb, scry_error *err)
{
	scry_replay_options ro = p->ropts;
	ro.progress = replay_progress;
	ro.progress_ctx = p;
	if (!ro.log) {
		ro.log = p->opts.log;
		ro.log_ctx = p->opts.log_ctx;
	}
	scry_replay *r = NULL;
	int rc = scry_replay_new(&r, p->store, &ro, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&p->lock);
	p->replay = r;
	bool canceled = atomic_load(&p->canceled);
	pthread_mutex_unlock(&p->lock);
	phase(p, SCRY_PHASE_REPLAYING, 0, 0);
	int64_t t0 = scry__monotonic_us();
	if (canceled)
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled");
	else if (b_label)
		rc = scry_replay_run_ab(r, a_conn, a_label, b_conn, b_label, ra, rb, err);
	else
		rc = scry_replay_run(r, a_conn, a_label, ra, err);
	p->stats.replay_us += scry__monotonic_us() - t0;
	pthread_mutex_lock(&p->lock);
	p->replay = NULL;
	pthread_mutex_unlock(&p->lock);
	scry_replay_free(r);
	if (!rc && atomic_load(&p->canceled))
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled");
	return rc;
}

static int decide(scry_pipeline *p, const char *base_label, const char *cand_label,
	const char *base_conn, const char *cand_conn, scry_verdict **out, scry_error *err)
{
	phase(p, SCRY_PHASE_DECIDING, 0, 0);
	scry_verdict_options vo = p->vopts;
	vo.baseline_conninfo = base_conn;
	vo.candidate_conninfo = cand_conn;
	vo.cancel = &p->verdict_cancel;
	vo.repeat_to_min = 1; /* only acts with two different clones */
	if (!vo.log) {
		vo.log = p->opts.log;
		vo.log_ctx = p->opts.log_ctx;
	}
	int64_t t0 = scry__monotonic_us();
	int rc = scry_verdict_compute(out, p->store, base_label, cand_label, &vo, err);
	p->stats.verdict_us += scry__monotonic_us() - t0;
	if (!rc && atomic_load(&p->canceled))
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled");
	return rc;
}

static int settle(scry_pipeline *p, scry_shadow *sh, scry_error *err)
{
	if (p->opts.no_settle)
		return 0;
	phase(p, SCRY_PHASE_SETTLING, 0, 0);
	int64_t t0 = scry__monotonic_us();
	int rc = scry_shadow_settle(sh, err);
	p->stats.settle_us += scry__monotonic_us() - t0;
	return rc;
}

static int migrate(scry_pipeline *p, scry_shadow *sh, const scry_migration *m, const char *ph,
	int64_t *elapsed, scry_error *err)
{
	phase(p, ph, 0, 0);
	int64_t t0 = scry__monotonic_us();
	int rc = scry_shadow_migrate(sh, SCRY_SHADOW_B, m, err);
	*elapsed += scry__monotonic_us() - t0;
	return rc;
}

/*
 * The workload replayed on A and B in timed mode while the migration runs
 * on B, round after round until it ends (docs/impact.md).
 */
typedef struct impact_run {
	scry_pipeline *p;
	const char *a, *b;
	int64_t *runs_a, *runs_b;
	size_t nruns, cap_a, cap_b;
	atomic_int done;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int rc;
	scry_error err;
} impact_run;

static void impact_started(impact_run *ir)
{
	pthread_mutex_lock(&ir->mu);
	ir->started = true;
	pthread_cond_broadcast(&ir->cv);
	pthread_mutex_unlock(&ir->mu);
}

static void impact_progress(void *ctx, const char *ph, uint64_t done, uint64_t total)
{
	(void)ph;
	(void)done;
	(void)total;
	impact_started(ctx);
}

static int impact_round(impact_run *ir, int round)
{
	scry_pipeline *p = ir->p;
	scry_replay_options ro = p->ropts;
	ro.mode = SCRY_REPLAY_TIMED;
	ro.speed = p->opts.impact_speed;
	/* Live traffic at its captured rate: the whole stream (streamed, memory bounded), not the verdict's sample. */
	ro.budget = 0;
	ro.budget_seconds = 0;
	ro.repeat = 1;
	ro.warmup = 0;
	ro.progress = impact_progress;
	ro.progress_ctx = ir;
	if (!ro.log) {
		ro.log = p->opts.log;
		ro.log_ctx = p->opts.log_ctx;
	}
	scry_replay *r = NULL;
	int rc = scry_replay_new(&r, p->store, &ro, &ir->err);
	if (rc)
		return rc;
	pthread_mutex_lock(&p->lock);
	p->impact_replay = r;
	if (atomic_load(&ir->done) || atomic_load(&p->canceled))
		scry_replay_cancel(r); /* consumed by the run below: it returns at once */
	pthread_mutex_unlock(&p->lock);
	char la[200], lb[200];
	snprintf(la, sizeof la, "%s-impact-baseline-%d", p->prefix, round);
	snprintf(lb, sizeof lb, "%s-impact-%d", p->prefix, round);
	scry_replay_result ra = SCRY_REPLAY_RESULT_INIT, rb = SCRY_REPLAY_RESULT_INIT;
	rc = scry_replay_run_ab(r, ir->a, la, ir->b, lb, &ra, &rb, &ir->err);
	pthread_mutex_lock(&p->lock);
	p->impact_replay = NULL;
	pthread_mutex_unlock(&p->lock);
	scry_replay_free(r);
	if (ra.run_id && rb.run_id) {
		if (scry__array_grow((void **)&ir->runs_a, &ir->cap_a, ir->nruns, sizeof *ir->runs_a, 4) ||
		    scry__array_grow((void **)&ir->runs_b, &ir->cap_b, ir->nruns, sizeof *ir->runs_b, 4))
			return scry__fail(&ir->err, SCRY_ENOMEM, "out of memory");
		ir->runs_a[ir->nruns] = ra.run_id;
		ir->runs_b[ir->nruns++] = rb.run_id;
	}
	return rc;
}

static void *impact_main(void *arg)
{
	impact_run *ir = arg;
	for (int round = 1; !atomic_load(&ir->done) && !atomic_load(&ir->p->canceled); round++) {
		int rc = impact_round(ir, round);
		if (rc == SCRY_ECANCELED)
			break;
		if (rc) {
			ir->rc = rc;
			break;
		}
	}
	impact_started(ir); /* never leave the migration waiting */
	return NULL;
}

/*
 * The migration with the workload running on B meanwhile and B's locks
 * sampled. Anything that fails in the measuring is a warning: the migration
 * and the verdict go on without it.
 */
static int migrate_with_impact(scry_pipeline *p, scry_shadow *sh, const scry_migration *m, const char *a,
	const char *b, scry_error *err)
{
	scry_impact_options io = SCRY_IMPACT_OPTIONS_INIT;
	io.log = p->opts.log;
	io.log_ctx = p->opts.log_ctx;
	scry_error ie = SCRY_ERROR_INIT;
	if (scry_impact_start(&p->impact, b, &io, &ie)) {
		plog(p, SCRY_LOG_WARNING, "the migration's impact is not measured: %s", ie.message);
		return migrate(p, sh, m, SCRY_PHASE_MIGRATING, &p->stats.migrate_us, err);
	}
	impact_run ir;
	memset(&ir, 0, sizeof ir);
	ir.p = p;
	ir.a = a;
	ir.b = b;
	ir.err = (scry_error)SCRY_ERROR_INIT;
	atomic_init(&ir.done, 0);
	pthread_mutex_init(&ir.mu, NULL);
	pthread_cond_init(&ir.cv, NULL);
	pthread_t th;
	bool threaded = pthread_create(&th, NULL, impact_main, &ir) == 0;
	if (threaded) {
		/* The migration starts once the workload runs (bounded: a slow start is not a hang). */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 10;
		pthread_mutex_lock(&ir.mu);
		while (!ir.started && pthread_cond_timedwait(&ir.cv, &ir.mu, &until) == 0) {
		}
		pthread_mutex_unlock(&ir.mu);
	} else {
		plog(p, SCRY_LOG_WARNING, "the workload is not replayed during the migration: cannot start a thread");
	}
	int rc = migrate(p, sh, m, SCRY_PHASE_MIGRATING, &p->stats.migrate_us, err);
	atomic_store(&ir.done, 1);
	pthread_mutex_lock(&p->lock);
	if (p->impact_replay)
		scry_replay_cancel(p->impact_replay);
	pthread_mutex_unlock(&p->lock);
	if (threaded)
		pthread_join(th, NULL);
	if (scry_impact_stop(p->impact, &ie))
		plog(p, SCRY_LOG_WARNING, "the migration's impact is incomplete: %s", ie.message);
	if (ir.rc)
		plog(p, SCRY_LOG_WARNING, "the replay during the migration failed: %s", ir.err.message);
	if (!rc && scry_impact_add_latency(p->impact, p->store, ir.runs_a, ir.runs_b, ir.nruns,
	                                   p->vopts.threshold, p->vopts.min_delta_ms, &ie))
		plog(p, SCRY_LOG_WARNING, "latency during the migration not measured: %s", ie.message);
	scry__free(ir.runs_a);
	scry__free(ir.runs_b);
	pthread_mutex_destroy(&ir.mu);
	pthread_cond_destroy(&ir.cv);
	return rc;
}

/* Applies the fix to the migrated side and settles it; fix_us covers both. */
static int apply_fix(scry_pipeline *p, scry_shadow *sh, scry_error *err)
{
	int64_t f0 = scry__monotonic_us();
	int rc = migrate(p, sh, &p->fix, SCRY_PHASE_FIXING, &p->stats.fix_us, err);
	if (!rc)
		rc = settle(p, sh, err);
	p->stats.fix_us = scry__monotonic_us() - f0;
	return rc;
}

/* The clone mode: A and B side by side, replayed interleaved. */
static int run_clones(scry_pipeline *p, scry_shadow *sh, const scry_migration *m, scry_error *err)
{
	char la[200], lb[200];
	phase(p, SCRY_PHASE_CLONING, 0, 0);
	int64_t t0 = scry__monotonic_us();
	int rc = scry_shadow_create(sh, err);
	p->stats.clone_us = scry__monotonic_us() - t0;
	if (rc)
		return rc;
	/* After create: a clone command prints its clones' connection strings. */
	const char *a = scry_shadow_conninfo(sh, SCRY_SHADOW_A);
	const char *b = scry_shadow_conninfo(sh, SCRY_SHADOW_B);
	plog(p, SCRY_LOG_INFO, "cloned %s into %s (baseline) and %s (candidate)",
	     scry_shadow_target_name(sh), scry_shadow_name(sh, SCRY_SHADOW_A),
	     scry_shadow_name(sh, SCRY_SHADOW_B));
	if ((rc = check_canceled(p, err)))
		return rc;
	rc = p->opts.no_impact ? migrate(p, sh, m, SCRY_PHASE_MIGRATING, &p->stats.migrate_us, err)
	                       : migrate_with_impact(p, sh, m, a, b, err);
	if (rc || (rc = settle(p, sh, err)))
		return rc;
	set_label(la, sizeof la, p, "baseline");
	set_label(lb, sizeof lb, p, "candidate");
	if ((rc = replay(p, a, la, b, lb, &p->results[SCRY_PIPELINE_BASELINE],
	                 &p->results[SCRY_PIPELINE_CANDIDATE], err)))
		return rc;
	if ((rc = decide(p, la, lb, a, b, &p->verdict, err)))
		return rc;
	if (!p->has_fix)
		return 0;

	/* The fix: applied to B, then both sides replayed again, interleaved. */
	if ((rc = apply_fix(p, sh, err)))
		return rc;
	set_label(la, sizeof la, p, "fix-baseline");
	set_label(lb, sizeof lb, p, "fixed");
	if ((rc = replay(p, a, la, b, lb, &p->results[SCRY_PIPELINE_FIXED_BASELINE],
	                 &p->results[SCRY_PIPELINE_FIXED], err)))
		return rc;
	return decide(p, la, lb, a, b, &p->fix_verdict, err);
}

/* Sequential mode: before, migrate, after, on the target itself. */
static int run_sequential(scry_pipeline *p, scry_shadow *sh, const scry_migration *m, scry_error *err)
{
	const char *t = scry_shadow_conninfo(sh, SCRY_SHADOW_A);
	char lbase[200], lcand[200];
	plog(p, SCRY_LOG_WARNING,
	     "sequential mode: the migration is applied to %s itself and stays applied",
	     scry_shadow_target_name(sh));
	set_label(lbase, sizeof lbase, p, "baseline");
	set_label(lcand, sizeof lcand, p, "candidate");
	int rc = settle(p, sh, err);
	if (rc || (rc = replay(p, t, lbase, NULL, NULL, &p->results[SCRY_PIPELINE_BASELINE], NULL, err)))
		return rc;
	if ((rc = check_canceled(p, err)) || (rc = migrate(p, sh, m, SCRY_PHASE_MIGRATING,
	                                                   &p->stats.migrate_us, err)))
		return rc;
	if ((rc = settle(p, sh, err)))
		return rc;
	if ((rc = replay(p, t, lcand, NULL, NULL, &p->results[SCRY_PIPELINE_CANDIDATE], NULL, err)))
		return rc;
	/* Plans: both sides are the migrated database now; EXPLAIN shows the after. */
	if ((rc = decide(p, lbase, lcand, t, t, &p->verdict, err)))
		return rc;
	if (!p->has_fix)
		return 0;
	if ((rc = apply_fix(p, sh, err)))
		return rc;
	set_label(lcand, sizeof lcand, p, "fixed");
	if ((rc = replay(p, t, lcand, NULL, NULL, &p->results[SCRY_PIPELINE_FIXED], NULL, err)))
		return rc;
	return decide(p, lbase, lcand, t, t, &p->fix_verdict, err);
}

int scry_pipeline_run(scry_pipeline *p, const scry_migration *m, scry_error *err)
{
	if (!p || !m)
		return scry__fail(err, SCRY_EINVAL, "pipeline or migration is NULL");
	if (p->ran)
		return scry__fail(err, SCRY_EINVAL, "a pipeline runs once; make a new one");
	p->ran = true;
	memset(&p->stats, 0, sizeof p->stats);
	int64_t t0 = scry__monotonic_us();

	/* Nothing to replay is an error a person can fix before cloning anything (one row read, not a count). */
	scry_event_iter *it = NULL;
	const scry_stored_event *first = NULL;
	int rc = scry_store_events(p->store, NULL, &it, err);
	if (!rc)
		rc = scry_event_iter_next(it, &first, err);
	scry_event_iter_free(it);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return scry__fail(err, SCRY_ENOTFOUND,
		                  "the store %s holds no captured workload: capture one first "
		                  "(scry capture proxy, or scry capture log)", scry_store_path(p->store));
	rc = 0;

	scry_shadow_options so = SCRY_SHADOW_OPTIONS_INIT;
	so.suffix = p->suffix;
	so.log = p->opts.log;
	so.log_ctx = p->opts.log_ctx;
	so.in_place = p->opts.mode == SCRY_PIPELINE_SEQUENTIAL;
	so.provider = p->opts.clone;
	so.baseline = p->opts.baseline;
	so.candidate = p->opts.candidate;
	so.clone_command = p->opts.clone_command;
	so.migration_timeout_s = p->opts.migration_timeout_s;
	scry_shadow *sh = NULL;
	if ((rc = scry_shadow_new(&sh, p->target, &so, err)))
		return rc;
	pthread_mutex_lock(&p->lock);
	p->shadow = sh;
	if (atomic_load(&p->canceled))
		scry_shadow_cancel(sh);
	pthread_mutex_unlock(&p->lock);

	rc = so.in_place ? run_sequential(p, sh, m, err) : run_clones(p, sh, m, err);
	if (rc && atomic_load(&p->canceled) && rc != SCRY_ECANCELED)
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled");

	/* Whatever happened: no clone is left behind. */
	pthread_mutex_lock(&p->lock);
	p->shadow = NULL;
	pthread_mutex_unlock(&p->lock);
	phase(p, SCRY_PHASE_CLEANUP, 0, 0);
	scry_error derr = SCRY_ERROR_INIT;
	if (scry_shadow_drop(sh, &derr) && !rc)
		rc = scry__fail(err, derr.code, "%s", derr.message);
	scry_shadow_free(sh);
	p->stats.total_us = scry__monotonic_us() - t0;
	return rc;
}

const scry_verdict *scry_pipeline_verdict(const scry_pipeline *p) { return p ? p->verdict : NULL; }

const scry_verdict *scry_pipeline_fix_verdict(const scry_pipeline *p)
{
	return p ? p->fix_verdict : NULL;
}

size_t scry_pipeline_failures(const scry_pipeline *p)
{
	if (!p || !p->verdict)
		return 0;
	size_t n = scry_impact_failures(p->impact, &p->gate);
	return n + scry_verdict_failures(p->fix_verdict ? p->fix_verdict : p->verdict);
}

const scry_impact *scry_pipeline_impact(const scry_pipeline *p)
{
	return p && p->verdict ? p->impact : NULL;
}

int scry_pipeline_stats_get(const scry_pipeline *p, scry_pipeline_stats *out)
{
	return p ? scry__out_copy(NULL, &scry__abi_pipeline_stats, out, &p->stats) : SCRY_EINVAL;
}

int scry_pipeline_replay_result_get(const scry_pipeline *p, scry_pipeline_replay which,
	scry_replay_result *out)
{
	if (!p || (unsigned)which > SCRY_PIPELINE_FIXED_BASELINE)
		return SCRY_EINVAL;
	return scry__out_copy(NULL, &scry__abi_replay_result, out, &p->results[which]);
}

static int verdicts_report(const scry_pipeline *p, scry_report_format format, scry_buf *out,
	scry_error *err)
{
	if (!p->fix_verdict)
		return scry_report_render(p->verdict, format, out, err);
	int rc;
	switch (format) {
	case SCRY_REPORT_JUNIT:
		return scry_report_render(p->fix_verdict, format, out, err);
	case SCRY_REPORT_JSON: {
		/* {...migration verdict..., "after_fix": {...}}: a superset of diff's JSON. */
		scry_buf first = SCRY_BUF_INIT;
		if ((rc = scry_report_render(p->verdict, format, &first, err)))
			return rc;
		size_t n = first.size;
		while (n && first.ptr[n - 1] != '}')
			n--;
		if (!n) {
			scry_buf_dispose(&first);
			return scry__fail(err, SCRY_EPARSE, "the JSON report is not an object");
		}
		rc = scry__buf_put(out, first.ptr, n - 1);
		scry_buf_dispose(&first);
		if (!rc)
			rc = scry__buf_puts(out, ",\"after_fix\":");
		if (rc)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		if ((rc = scry_report_render(p->fix_verdict, format, out, err)))
			return rc;
		while (out->size && (out->ptr[out->size - 1] == '\n' || out->ptr[out->size - 1] == ' '))
			out->ptr[--out->size] = 0;
		return scry__buf_puts(out, "}\n") ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
	}
	case SCRY_REPORT_MARKDOWN:
	case SCRY_REPORT_TEXT:
	default: {
		bool md = format == SCRY_REPORT_MARKDOWN;
		if (scry__buf_puts(out, md ? "## The migration\n\n" : "== The migration ==\n\n"))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		if ((rc = scry_report_render(p->verdict, format, out, err)))
			return rc;
		if (scry__buf_puts(out, md ? "\n## After the fix\n\n" : "\n== After the fix ==\n\n"))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return scry_report_render(p->fix_verdict, format, out, err);
	}
	}
}

/* Inserts `section` before the last occurrence of `before` in out (the JSON
 * object's closing brace, JUnit's </testsuites>). */
static int insert_before_last(scry_buf *out, const char *before, const scry_buf *section)
{
	size_t bl = strlen(before);
	size_t at = out->size;
	while (at >= bl && memcmp(out->ptr + at - bl, before, bl))
		at--;
	if (at < bl)
		return SCRY_EPARSE;
	at -= bl;
	scry_buf tail = SCRY_BUF_INIT;
	int rc = scry__buf_put(&tail, out->ptr + at, out->size - at);
	if (!rc) {
		out->size = at;
		out->ptr[at] = 0;
		rc = scry__buf_put(out, section->ptr, section->size);
	}
	if (!rc)
		rc = scry__buf_put(out, tail.ptr, tail.size);
	scry_buf_dispose(&tail);
	return rc;
}

/* What a budget sampled: the verdict judged these, impact_ms still weighs the captured counts. */
static int sampling_note(const scry_pipeline *p, scry_report_format format, scry_buf *out, scry_error *err)
{
	const scry_replay_result *b = &p->results[SCRY_PIPELINE_BASELINE];
	if (!b->budget || format == SCRY_REPORT_JUNIT)
		return 0;
	scry_buf sec = SCRY_BUF_INIT;
	int rc;
	if (format == SCRY_REPORT_JSON) {
		rc = scry__buf_printf(&sec, ",\"sampling\":{\"budget\":%lld,\"captured\":%lld,\"replayed\":%lld,"
		                      "\"min_per_pattern\":%d}", (long long)b->budget, (long long)b->captured,
		                      (long long)b->sampled, p->ropts.min_per_pattern);
		if (!rc)
			rc = insert_before_last(out, "}", &sec);
	} else {
		bool md = format == SCRY_REPORT_MARKDOWN;
		rc = scry__buf_printf(out, "\n%sReplayed %s: %lld of %lld captured executions per side and round "
		                      "(budget %lld, at least %d per pattern; impact uses the captured counts).%s\n",
		                      md ? "_" : "", b->sampled >= b->captured ? "everything" : "a stratified sample",
		                      (long long)b->sampled, (long long)b->captured, (long long)b->budget,
		                      p->ropts.min_per_pattern, md ? "_" : "");
	}
	scry_buf_dispose(&sec);
	return rc == SCRY_EPARSE ? scry__fail(err, rc, "the report has no place for the sampling section")
	     : rc ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
}

/*
 * The HTML report: the verdicts with the samples' histograms (from the
 * store), and the migration section: the phase timings and replays, and the
 * migration-impact object when there is one.
 */
static int html_report(const scry_pipeline *p, scry_buf *out, scry_error *err)
{
	scry_buf json = SCRY_BUF_INIT;
	int rc = scry__buf_puts(&json, "{\"phases\": ") ? SCRY_ENOMEM : scry_pipeline_stats_json(p, &json, err);
	if (!rc && p->impact) {
		rc = scry__buf_puts(&json, ", \"migration_impact\": ") ? SCRY_ENOMEM
		   : scry_impact_render(p->impact, &p->gate, SCRY_REPORT_JSON, &json, err);
	}
	if (!rc && scry__buf_puts(&json, "}"))
		rc = SCRY_ENOMEM;
	if (!rc) {
		scry_report_html_options ho = SCRY_REPORT_HTML_OPTIONS_INIT;
		ho.store = p->store;
		ho.after_fix = p->fix_verdict;
		ho.migration_json = json.ptr;
		ho.title = "scry ci test-migration";
		rc = scry_report_render_html(p->verdict, &ho, out, err);
	}
	scry_buf_dispose(&json);
	return rc == SCRY_ENOMEM ? scry__fail(err, rc, "out of memory") : rc;
}

int scry_pipeline_report(const scry_pipeline *p, scry_report_format format, scry_buf *out,
	scry_error *err)
{
	if (!p || !out)
		return scry__fail(err, SCRY_EINVAL, "pipeline or output is NULL");
	if (!p->verdict)
		return scry__fail(err, SCRY_ENOTFOUND, "no verdict was reached");
	if (format == SCRY_REPORT_HTML)
		return html_report(p, out, err);
	int rc = verdicts_report(p, format, out, err);
	if (!rc)
		rc = sampling_note(p, format, out, err);
	if (rc || !p->impact)
		return rc;
	scry_buf sec = SCRY_BUF_INIT;
	if (format == SCRY_REPORT_JSON)
		rc = scry__buf_puts(&sec, ",\"migration_impact\":");
	if (!rc)
		rc = scry_impact_render(p->impact, &p->gate, format, &sec, err);
	if (!rc && format == SCRY_REPORT_JSON)
		rc = insert_before_last(out, "}", &sec);
	else if (!rc && format == SCRY_REPORT_JUNIT)
		rc = insert_before_last(out, "</testsuites>", &sec);
	else if (!rc)
		rc = scry__buf_put(out, sec.ptr, sec.size);
	scry_buf_dispose(&sec);
	return rc == SCRY_EPARSE ? scry__fail(err, rc, "the report has no place for the impact section")
	     : rc == SCRY_ENOMEM ? scry__fail(err, rc, "out of memory") : rc;
}

void scry_pipeline_free(scry_pipeline *p)
{
	if (!p)
		return;
	scry_verdict_free(p->verdict);
	scry_verdict_free(p->fix_verdict);
	scry_impact_free(p->impact);
	scry__free((void *)p->ropts.fingerprints);
	scry__free(p->target);
	scry__free(p->prefix);
	scry__free(p->suffix);
	scry__free(p->baseline);
	scry__free(p->candidate);
	scry__free(p->clone_command);
	pthread_mutex_destroy(&p->lock);
	scry__free(p);
}
