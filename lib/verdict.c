/*
 * lib/verdict.c - per-pattern comparison of two replay runs (docs/verdict.md):
 * reads both runs' samples, has them paired and judged (verdict_stats.c),
 * completes regressions with plans from the clones (verdict_probe.c,
 * verdict_plan.c) and orders the patterns worst first.
 */
#include "verdict_internal.h"

#include <libpq-fe.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

const char *scry_verdict_class_name(scry_verdict_class c)
{
	static const char *const names[] = { "unchanged", "regressed", "improved", "new-error",
		                             "rows-changed", "only-in-candidate", "insufficient-samples" };
	return (unsigned)c < 7 ? names[c] : "unknown";
}

void scry_verdict_options_init(scry_verdict_options *o)
{
	*o = (scry_verdict_options)SCRY_VERDICT_OPTIONS_INIT;
}


char *scry__vdup_buf(scry_buf *b)
{
	/* Out of memory while building it: no text rather than a truncated one. */
	char *s = scry__buf_failed(b) ? NULL : scry__strdup(b->ptr ? b->ptr : "");
	scry_buf_dispose(b);
	return s;
}

char *scry__vdup_printf(const char *fmt, ...)
{
	scry_buf b = SCRY_BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	scry__buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return scry__vdup_buf(&b);
}

/* Per (session, round): the first failure of the transaction in progress. */
typedef struct txn_state {
	int64_t root_pattern; /* 0: no failure since the last success */
	char root_state[6];
} txn_state;

/*
 * Attributes a 25P02 ("current transaction is aborted") to the failure that
 * aborted its transaction: walking a session's statements in order (per
 * round), every statement after a failure fails with 25P02 until the
 * transaction ends, so the root is the last failure that was not a 25P02.
 */
static int attribute_root(scry__u64map *m, txn_state **st, size_t *nst, size_t *cst, sample_row *s,
                          int64_t session)
{
	uint64_t key = (uint64_t)session * 1000003u + (uint64_t)(uint32_t)s->round;
	uint32_t i = scry__u64map_get(m, key);
	if (!i) {
		if (scry__array_grow((void **)st, cst, *nst, sizeof **st, 256) ||
		    scry__u64map_put(m, key, (uint32_t)*nst + 1))
			return SCRY_ENOMEM;
		memset(&(*st)[*nst], 0, sizeof **st);
		i = (uint32_t)++*nst;
	}
	txn_state *t = &(*st)[i - 1];
	if (!strcmp(s->state, "25P02")) {
		if (t->root_pattern) {
			s->root_pattern = t->root_pattern;
			memcpy(s->root_state, t->root_state, 6);
		}
	} else if (s->state[0]) {
		t->root_pattern = s->pattern;
		memcpy(t->root_state, s->state, 6);
	} else {
		t->root_pattern = 0;
	}
	return 0;
}

/* Reads every sample of a run, ordered by event and round, with the root error of aborted transactions. */
static int load_samples(scry_store *store, int64_t run, sample_row **out, size_t *n, scry_error *err)
{
	scry_sample_iter *it;
	*out = NULL;
	*n = 0;
	int rc = scry_store_samples_by_event(store, run, &it, err);
	if (rc)
		return rc;
	scry__u64map m = { 0 };
	txn_state *st = NULL;
	size_t nst = 0, cst = 0, cap = 0;
	const scry_stored_sample *x;
	while ((rc = scry_sample_iter_next(it, &x, err)) == 1) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 4096)) {
			rc = SCRY_ENOMEM;
			break;
		}
		sample_row *s = &(*out)[(*n)++];
		memset(s, 0, sizeof *s);
		s->event = x->event_id;
		s->pattern = x->pattern_id;
		s->round = x->round;
		s->ms = (double)x->latency_us / 1000.0;
		s->rows = x->rows;
		memcpy(s->state, x->sqlstate, 6);
		if ((rc = attribute_root(&m, &st, &nst, &cst, s, x->session_id)) != 0)
			break;
	}
	scry_sample_iter_free(it);
	scry__u64map_free(&m);
	scry__free(st);
	if (rc == SCRY_ENOMEM)
		return scry__fail(err, SCRY_ENOMEM, "out of memory reading samples");
	return rc < 0 ? rc : 0;
}

static int cmp_pat_id(const void *x, const void *y)
{
	const pat_row *a = x, *b = y;
	return a->id < b->id ? -1 : a->id > b->id;
}

/* Reads every pattern, ordered by id. */
static int load_patterns(scry_store *store, pat_row **out, size_t *n, scry_error *err)
{
	scry_pattern_iter *it;
	*out = NULL;
	*n = 0;
	int rc = scry_store_patterns(store, &it, err);
	if (rc)
		return rc;
	size_t cap = 0;
	const scry_pattern *x;
	while ((rc = scry_pattern_iter_next(it, &x, err)) == 1) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 256)) {
			rc = SCRY_ENOMEM;
			break;
		}
		pat_row *p = &(*out)[(*n)++];
		p->id = x->id;
		p->fingerprint = x->fingerprint;
		p->normalized = scry__strdup(x->normalized ? x->normalized : "");
		p->count = x->count;
		p->mean_ms = x->mean_us / 1000.0;
		if (!p->normalized) {
			rc = SCRY_ENOMEM;
			break;
		}
	}
	scry_pattern_iter_free(it);
	if (rc == SCRY_ENOMEM)
		return scry__fail(err, SCRY_ENOMEM, "out of memory reading patterns");
	if (rc < 0)
		return rc;
	qsort(*out, *n, sizeof **out, cmp_pat_id);
	return 0;
}

/* ------------------------------------------------------------------ */

/* Patterns that could not be judged come first (with their reason), then failures. */
static int class_rank(const scry_pattern_verdict *p)
{
	if (p->cls == SCRY_CLASS_INSUFFICIENT)
		return -1;
	if (p->flagged)
		return p->cls == SCRY_CLASS_NEW_ERROR ? 0 : 1;
	switch (p->cls) {
	case SCRY_CLASS_ROWS_CHANGED: return 2;
	case SCRY_CLASS_ONLY_IN_CANDIDATE: return 3;
	case SCRY_CLASS_INSUFFICIENT: return 4;
	case SCRY_CLASS_UNCHANGED: return 5;
	case SCRY_CLASS_IMPROVED: return 6;
	default: return 7;
	}
}

/* Worst first: failures, then by total time impact, then ratio. */
static int cmp_verdict(const void *x, const void *y)
{
	const scry_pattern_verdict *a = x, *b = y;
	int ra = class_rank(a), rb = class_rank(b);
	if (ra != rb)
		return ra - rb;
	if (a->impact_ms != b->impact_ms)
		return a->impact_ms > b->impact_ms ? -1 : 1;
	if (a->ratio != b->ratio)
		return a->ratio > b->ratio ? -1 : 1;
	return a->fingerprint < b->fingerprint ? -1 : a->fingerprint > b->fingerprint;
}

static void pattern_free_strings(scry_pattern_verdict *p)
{
	scry__free((char *)p->normalized);
	scry__free((char *)p->candidate_sqlstate);
	scry__free((char *)p->candidate_error);
	scry__free((char *)p->plan_change);
	scry__free((char *)p->baseline_plan);
	scry__free((char *)p->candidate_plan);
	scry__free((char *)p->suggested_index);
	scry__free((char *)p->baseline_sqlstate);
	scry__free((char *)p->note);
}

void scry_verdict_free(scry_verdict *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		pattern_free_strings(&v->items[i]);
	scry__free(v->items);
	scry__free(v->baseline_label);
	scry__free(v->candidate_label);
	scry__excluded_free(&v->excluded);
	scry__free(v);
}

const scry__excluded *scry__verdict_excluded(const scry_verdict *v)
{
	return v && v->excluded.n ? &v->excluded : NULL;
}

/* Reads the options the caller's version declares (lib/abi.c); defaults for the rest. */
static int read_options(scry_verdict_options *o, const scry_verdict_options *opts, scry_error *err)
{
	int rc = scry__opts_copy(err, &scry__abi_verdict_options, o, opts);
	if (rc)
		return rc;
	if (!(o->threshold >= 1.0) || !(o->min_delta_ms >= 0) || !isfinite(o->threshold) || !isfinite(o->min_delta_ms))
		return scry__fail(err, SCRY_EINVAL, "threshold must be >= 1 and min_delta_ms >= 0 (got %g and %g)",
		                  o->threshold, o->min_delta_ms);
	if (o->min_samples < 1)
		o->min_samples = 1;
	return 0;
}

/* What scry_verdict_compute() works on. */
typedef struct vwork {
	pat_row *pats;
	size_t npats;
	obs *ob;
	size_t *start;
	double *scratch;
	size_t scratch_n;
	int32_t next_round; /* first round free for repeated executions */
} vwork;

static void vwork_free(vwork *w)
{
	for (size_t i = 0; i < w->npats; i++)
		scry__free(w->pats[i].normalized);
	scry__free(w->pats);
	scry__free(w->ob);
	scry__free(w->start);
	scry__free(w->scratch);
}

static int ensure_scratch(vwork *w, size_t n)
{
	if (n <= w->scratch_n)
		return 0;
	double *s = scry__realloc(w->scratch, (3 * n + 1) * sizeof *s);
	if (!s)
		return SCRY_ENOMEM;
	w->scratch = s;
	w->scratch_n = n;
	return 0;
}

/* Reads both runs and groups their paired observations by pattern. */
static int load_runs(scry_verdict *v, scry_store *store, vwork *w, scry_error *err)
{
	sample_row *sb = NULL, *sc = NULL;
	size_t nsb = 0, nsc = 0, nob = 0;
	int rc;
	if ((rc = load_patterns(store, &w->pats, &w->npats, err)) != 0 ||
	    (rc = load_samples(store, v->baseline_run, &sb, &nsb, err)) != 0 ||
	    (rc = load_samples(store, v->candidate_run, &sc, &nsc, err)) != 0)
		goto out;
	int32_t maxr = 0;
	for (size_t i = 0; i < nsb; i++)
		maxr = sb[i].round > maxr ? sb[i].round : maxr;
	for (size_t i = 0; i < nsc; i++)
		maxr = sc[i].round > maxr ? sc[i].round : maxr;
	w->next_round = maxr + 1 > 1000000 ? maxr + 1 : 1000000;
	if (scry__verdict_merge(sb, nsb, sc, nsc, w->pats, w->npats, &w->ob, &nob) ||
	    scry__verdict_group(&w->ob, nob, w->npats, &w->start))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
out:
	scry__free(sb);
	scry__free(sc);
	return rc;
}

/*
 * A pattern with too few pairs: its captured executions are repeated on
 * both sides until it has min_samples, and it is judged again with them.
 */
static int repeat_and_rejudge(scry_verdict *v, scry_store *store, vwork *w, scry_pattern_verdict *pv, size_t p,
                              PGconn *ca, PGconn *cc)
{
	size_t have = w->start[p + 1] - w->start[p];
	size_t want = (size_t)v->opts.min_samples - (size_t)pv->pairs;
	obs *extra;
	size_t nextra;
	int rc = scry__verdict_repeat(v, store, &w->pats[p], (int32_t)p, want, w->next_round, ca, cc, &extra, &nextra);
	if (rc)
		return rc < 0 ? rc : 0;
	w->next_round += (int32_t)(want + want / 2);
	obs *all = scry__malloc((have + nextra + 1) * sizeof *all);
	if (!all || ensure_scratch(w, have + nextra)) {
		scry__free(all);
		scry__free(extra);
		return SCRY_ENOMEM;
	}
	memcpy(all, w->ob + w->start[p], have * sizeof *all);
	memcpy(all + have, extra, nextra * sizeof *all);
	scry__free(extra);
	scry_pattern_verdict keep = { 0 };
	keep.fingerprint = pv->fingerprint;
	keep.normalized = pv->normalized;
	keep.executions = pv->executions;
	keep.captured_mean_ms = pv->captured_mean_ms;
	pv->normalized = NULL;
	pattern_free_strings(pv);
	*pv = keep;
	scry__verdict_judge(pv, all, have + nextra, &v->opts, w->pats, w->scratch);
	scry__free(all);
	return 0;
}

/* Judges every present pattern the filter keeps, from its observations (*pat_of_out: item -> pattern index). */
static int judge_patterns(scry_verdict *v, vwork *w, const scry_verdict_options *o, size_t **pat_of_out,
                          scry_error *err)
{
	size_t maxn = 0, npresent = 0;
	for (size_t p = 0; p < w->npats; p++) {
		size_t c = w->start[p + 1] - w->start[p];
		maxn = c > maxn ? c : maxn;
		npresent += c > 0;
	}
	v->items = scry__calloc(npresent + 1, sizeof *v->items);
	size_t *pat_of = *pat_of_out = scry__calloc(npresent + 1, sizeof *pat_of);
	if (!v->items || !pat_of || ensure_scratch(w, maxn))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	for (size_t p = 0; p < w->npats; p++) {
		size_t c = w->start[p + 1] - w->start[p];
		const char *why;
		if (!c)
			continue;
		if (!scry_pattern_filter_match(o->filter, w->pats[p].fingerprint, w->pats[p].normalized, &why)) {
			if (scry__excluded_add(&v->excluded, w->pats[p].fingerprint, w->pats[p].normalized, why,
			                       w->pats[p].count))
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			continue;
		}
		pat_of[v->n] = p;
		scry_pattern_verdict *pv = &v->items[v->n++];
		pv->fingerprint = w->pats[p].fingerprint;
		pv->normalized = scry__strdup(w->pats[p].normalized);
		pv->executions = w->pats[p].count;
		pv->captured_mean_ms = w->pats[p].mean_ms;
		scry__verdict_judge(pv, w->ob + w->start[p], c, o, w->pats, w->scratch);
	}
	return 0;
}

/* With connections: repeated executions, work, root causes, error messages, best indexes. */
static int probe_clones(scry_verdict *v, scry_store *store, vwork *w, const size_t *pat_of,
                        const scry_verdict_options *opts, scry_error *err)
{
	const scry_verdict_options *o = &v->opts;
	PGconn *ca = NULL, *cc = NULL;
	if (opts && opts->candidate_conninfo) {
		cc = scry__verdict_connect(v, opts->candidate_conninfo, "candidate");
		ca = scry__verdict_connect(v, opts->baseline_conninfo, "baseline");
	}
	int rc = 0;
	bool two_clones = ca && cc && strcmp(opts->baseline_conninfo, opts->candidate_conninfo) != 0;
	for (size_t i = 0; i < v->n && two_clones && o->repeat_to_min && !scry__verdict_cancelled(o); i++)
		if (v->items[i].cls == SCRY_CLASS_INSUFFICIENT &&
		    (rc = repeat_and_rejudge(v, store, w, &v->items[i], pat_of[i], ca, cc)) != 0) {
			rc = scry__fail(err, rc, "out of memory");
			break;
		}
	for (size_t i = 0; !rc && i < v->n && two_clones && !scry__verdict_cancelled(o); i++) {
		scry_verdict_class c = v->items[i].cls;
		if (c == SCRY_CLASS_UNCHANGED || c == SCRY_CLASS_REGRESSED || c == SCRY_CLASS_IMPROVED ||
		    c == SCRY_CLASS_ROWS_CHANGED)
			scry__verdict_measure_work(v, store, &v->items[i], ca, cc);
	}
	if (!rc && cc && !scry__verdict_cancelled(o))
		scry__verdict_probe(v, store, ca, cc);
	PQfinish(ca);
	PQfinish(cc);
	return rc;
}

int scry_verdict_compute(scry_verdict **out, scry_store *store, const char *baseline, const char *candidate,
                         const scry_verdict_options *opts, scry_error *err)
{
	if (!out || !store || !baseline || !candidate)
		return scry__fail(err, SCRY_EINVAL, "scry_verdict_compute: store and both labels are required");
	*out = NULL;
	scry_verdict_options o;
	int rc = read_options(&o, opts, err);
	if (rc)
		return rc;
	o.baseline_conninfo = o.candidate_conninfo = NULL; /* not kept past the call */

	scry_verdict *v = scry__calloc(1, sizeof *v);
	if (!v)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	v->opts = o;
	v->opts.filter = NULL; /* not kept past the call */
	v->baseline_label = scry__strdup(baseline);
	v->candidate_label = scry__strdup(candidate);
	vwork w = { 0 };
	size_t *pat_of = NULL; /* verdict item -> pattern index */
	if (!v->baseline_label || !v->candidate_label) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = scry_store_run_find(store, baseline, &v->baseline_run, err)) != 0 ||
	    (rc = scry_store_run_find(store, candidate, &v->candidate_run, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 0, 3);
	if ((rc = load_runs(v, store, &w, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 1, 3);
	if ((rc = judge_patterns(v, &w, &o, &pat_of, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 2, 3);
	if ((rc = probe_clones(v, store, &w, pat_of, opts, err)) != 0)
		goto out;
	scry__verdict_stored_plans(v, store);
	if (scry__verdict_cancelled(&o)) {
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled");
		goto out;
	}
	qsort(v->items, v->n, sizeof *v->items, cmp_verdict);
	for (size_t i = 0; i < v->n; i++)
		v->failures += v->items[i].flagged != 0;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 3, 3);
	rc = 0;
out:
	scry__free(pat_of);
	vwork_free(&w);
	if (rc) {
		scry_verdict_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

size_t scry_verdict_count(const scry_verdict *v) { return v ? v->n : 0; }

const scry_pattern_verdict *scry_verdict_get(const scry_verdict *v, size_t i)
{
	return v && i < v->n ? &v->items[i] : NULL;
}

size_t scry_verdict_failures(const scry_verdict *v) { return v ? v->failures : 0; }

int scry_verdict_summarize(const scry_verdict *v, scry_verdict_summary *out)
{
	scry_verdict_summary s = { 0 };
	if (v) {
		s.patterns = v->n;
		for (size_t i = 0; i < v->n; i++)
			if ((unsigned)v->items[i].cls < 7)
				s.by_class[v->items[i].cls]++;
		s.failures = v->failures;
		s.threshold = v->opts.threshold;
		s.min_delta_ms = v->opts.min_delta_ms;
		s.baseline_label = v->baseline_label;
		s.candidate_label = v->candidate_label;
		s.baseline_run = v->baseline_run;
		s.candidate_run = v->candidate_run;
	}
	return scry__out_copy(NULL, &scry__abi_verdict_summary, out, &s);
}

