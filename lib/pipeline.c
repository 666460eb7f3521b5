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
#include <stdio.h>

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

	atomic_int canceled;
	pthread_mutex_t lock;
	scry_shadow *shadow;         /* while it exists, for cancel */
	scry_replay *replay;         /* while one runs, for cancel */
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
	if (opts) {
		int rc = scry__check_version(err, "scry_pipeline_options", opts->version, SCRY_PIPELINE_OPTIONS_VERSION);
		if (!rc && opts->replay)
			rc = scry__check_version(err, "scry_replay_options", opts->replay->version, SCRY_REPLAY_OPTIONS_VERSION);
		if (!rc && opts->verdict)
			rc = scry__check_version(err, "scry_verdict_options", opts->verdict->version,
			                         SCRY_VERDICT_OPTIONS_VERSION);
		if (!rc && opts->fix)
			rc = scry__check_version(err, "scry_migration", opts->fix->version, SCRY_MIGRATION_VERSION);
		if (rc)
			return rc;
	}
	scry_pipeline *p = scry__calloc(1, sizeof *p);
	if (!p)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	scry_pipeline_options_init(&p->opts);
	if (opts && opts->version >= 2)
		p->opts = *opts;
	else if (opts) /* a version-1 struct ends before the clone provider */
		memcpy(&p->opts, opts, offsetof(scry_pipeline_options, clone));
	scry_replay_options_init(&p->ropts);
	p->ropts.budget = SCRY_PIPELINE_DEFAULT_BUDGET;
	if (p->opts.replay && p->opts.replay->version >= 2)
		p->ropts = *p->opts.replay;
	else if (p->opts.replay)
		memcpy(&p->ropts, p->opts.replay, offsetof(scry_replay_options, budget));
	scry_verdict_options_init(&p->vopts);
	if (p->opts.verdict)
		p->vopts = *p->opts.verdict;
	/* A budget keeps at least what the verdict needs per pattern. */
	if (p->ropts.min_per_pattern < p->vopts.min_samples)
		p->ropts.min_per_pattern = p->vopts.min_samples;
	if (p->opts.fix) {
		p->fix = *p->opts.fix;
		p->has_fix = true;
	}
	/* Pointers into the caller's structs are not kept past this call. */
	p->opts.replay = NULL;
	p->opts.verdict = NULL;
	p->opts.fix = NULL;
	p->ropts.fingerprints = NULL; /* replaced below by a copy when given */
	p->ropts.nfingerprints = 0;
	if (opts && opts->replay && opts->replay->fingerprints && opts->replay->nfingerprints) {
		uint64_t *fps = scry__calloc(opts->replay->nfingerprints, sizeof *fps);
		if (!fps) {
			scry__free(p);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		memcpy(fps, opts->replay->fingerprints, opts->replay->nfingerprints * sizeof *fps);
		p->ropts.fingerprints = fps;
		p->ropts.nfingerprints = opts->replay->nfingerprints;
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
	if (nomem || !p->target || !p->prefix || (opts && opts->suffix && !p->suffix)) {
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
	pthread_mutex_lock(&p->lock);
	if (p->shadow)
		scry_shadow_cancel(p->shadow);
	if (p->replay)
		scry_replay_cancel(p->replay);
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
	if ((rc = check_canceled(p, err)) || (rc = migrate(p, sh, m, SCRY_PHASE_MIGRATING,
	                                                   &p->stats.migrate_us, err)))
		return rc;
	if ((rc = settle(p, sh, err)))
		return rc;
	set_label(la, sizeof la, p, "baseline");
	set_label(lb, sizeof lb, p, "candidate");
	if ((rc = replay(p, a, la, b, lb, &p->stats.baseline, &p->stats.candidate, err)))
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
	if ((rc = replay(p, a, la, b, lb, &p->stats.fixed_baseline, &p->stats.fixed, err)))
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
	if (rc || (rc = replay(p, t, lbase, NULL, NULL, &p->stats.baseline, NULL, err)))
		return rc;
	if ((rc = check_canceled(p, err)) || (rc = migrate(p, sh, m, SCRY_PHASE_MIGRATING,
	                                                   &p->stats.migrate_us, err)))
		return rc;
	if ((rc = settle(p, sh, err)))
		return rc;
	if ((rc = replay(p, t, lcand, NULL, NULL, &p->stats.candidate, NULL, err)))
		return rc;
	/* Plans: both sides are the migrated database now; EXPLAIN shows the after. */
	if ((rc = decide(p, lbase, lcand, t, t, &p->verdict, err)))
		return rc;
	if (!p->has_fix)
		return 0;
	if ((rc = apply_fix(p, sh, err)))
		return rc;
	set_label(lcand, sizeof lcand, p, "fixed");
	if ((rc = replay(p, t, lcand, NULL, NULL, &p->stats.fixed, NULL, err)))
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
	if (!p)
		return 0;
	if (p->fix_verdict)
		return scry_verdict_failures(p->fix_verdict);
	return p->verdict ? scry_verdict_failures(p->verdict) : 0;
}

void scry_pipeline_stats_get(const scry_pipeline *p, scry_pipeline_stats *out)
{
	if (p && out)
		*out = p->stats;
}

/* Adds `"name":value` as the last member of the JSON object that ends `out`. */
static int json_add_member(scry_buf *out, const char *name, const char *value, size_t vlen, scry_error *err)
{
	size_t n = out->size;
	while (n && out->ptr[n - 1] != '}')
		n--;
	if (!n)
		return scry__fail(err, SCRY_EPARSE, "the JSON report is not an object");
	out->size = n - 1;
	while (vlen && (value[vlen - 1] == '\n' || value[vlen - 1] == ' '))
		vlen--;
	if (scry__buf_printf(out, ",\"%s\":", name) || scry__buf_put(out, value, vlen) || scry__buf_puts(out, "}\n"))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

static int render_verdicts(const scry_pipeline *p, scry_report_format format, scry_buf *out, scry_error *err)
{
	if (!p->fix_verdict)
		return scry_report_render(p->verdict, format, out, err);
	int rc;
	switch (format) {
	case SCRY_REPORT_JUNIT:
		return scry_report_render(p->fix_verdict, format, out, err);
	case SCRY_REPORT_JSON: {
		/* {...migration verdict..., "after_fix": {...}}: a superset of diff's JSON. */
		scry_buf second = SCRY_BUF_INIT;
		if (!(rc = scry_report_render(p->verdict, format, out, err)) &&
		    !(rc = scry_report_render(p->fix_verdict, format, &second, err)))
			rc = json_add_member(out, "after_fix", second.ptr, second.size, err);
		scry_buf_dispose(&second);
		return rc;
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

int scry_pipeline_report(const scry_pipeline *p, scry_report_format format, scry_buf *out,
	scry_error *err)
{
	if (!p || !out)
		return scry__fail(err, SCRY_EINVAL, "pipeline or output is NULL");
	if (!p->verdict)
		return scry__fail(err, SCRY_ENOTFOUND, "no verdict was reached");
	int rc = render_verdicts(p, format, out, err);
	const scry_replay_result *b = &p->stats.baseline;
	if (rc || !b->budget || format == SCRY_REPORT_JUNIT)
		return rc;
	/* What a budget sampled: the verdict judged these, impact_ms still weighs the captured counts. */
	if (format == SCRY_REPORT_JSON) {
		char v[256];
		int n = snprintf(v, sizeof v, "{\"budget\":%lld,\"captured\":%lld,\"replayed\":%lld,\"min_per_pattern\":%d}",
		                 (long long)b->budget, (long long)b->captured, (long long)b->sampled,
		                 p->ropts.min_per_pattern);
		return json_add_member(out, "sampling", v, (size_t)n, err);
	}
	bool all = b->sampled >= b->captured;
	if (scry__buf_printf(out, "\n%sReplayed %s: %lld of %lld captured executions per side and round "
	                          "(budget %lld, at least %d per pattern; impact uses the captured counts).%s\n",
	                     format == SCRY_REPORT_MARKDOWN ? "_" : "", all ? "everything" : "a stratified sample",
	                     (long long)b->sampled, (long long)b->captured, (long long)b->budget,
	                     p->ropts.min_per_pattern, format == SCRY_REPORT_MARKDOWN ? "_" : ""))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

void scry_pipeline_free(scry_pipeline *p)
{
	if (!p)
		return;
	scry_verdict_free(p->verdict);
	scry_verdict_free(p->fix_verdict);
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
