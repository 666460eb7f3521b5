/*
 * lib/verdict.c - per-pattern comparison of two replay runs (docs/verdict.md):
 * reads both runs' samples, has them paired and judged (verdict_stats.c),
 * completes regressions with plans from the clones (verdict_probe.c,
 * verdict_plan.c) and orders the patterns worst first.
 */
#include "verdict_internal.h"

#include <math.h>
#include <sqlite3.h>
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
	char *s = scry__strdup(b->ptr ? b->ptr : "");
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

/* Reads every sample of a run, ordered by event and round. */
static int load_samples(scry_store *store, int64_t run, sample_row **out, size_t *n, scry_error *err)
{
	sqlite3 *db = scry__store_db(store);
	sqlite3_stmt *q;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db,
	                       "SELECT x.event, st.pattern, x.round, x.latency_us, x.rows, x.sqlstate"
	                       " FROM samples x JOIN events e ON e.id = x.event JOIN statements st ON st.id = e.statement"
	                       " WHERE x.run = ? ORDER BY x.event, x.round",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(store, err, "reading samples");
	sqlite3_bind_int64(q, 1, run);
	size_t cap = 0;
	int r;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 4096)) {
			sqlite3_finalize(q);
			return scry__fail(err, SCRY_ENOMEM, "out of memory reading samples");
		}
		sample_row *s = &(*out)[(*n)++];
		s->event = sqlite3_column_int64(q, 0);
		s->pattern = sqlite3_column_int64(q, 1);
		s->round = sqlite3_column_int(q, 2);
		s->ms = (double)sqlite3_column_int64(q, 3) / 1000.0;
		s->rows = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 4);
		const unsigned char *st = sqlite3_column_text(q, 5);
		s->state[0] = 0;
		if (st)
			snprintf(s->state, sizeof s->state, "%s", st);
	}
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(store, err, "reading samples");
	return 0;
}

static int load_patterns(scry_store *store, pat_row **out, size_t *n, scry_error *err)
{
	sqlite3 *db = scry__store_db(store);
	sqlite3_stmt *q;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT id, fingerprint, normalized, count, total_us, timed FROM patterns ORDER BY id",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(store, err, "reading patterns");
	size_t cap = 0;
	int r;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 256)) {
			sqlite3_finalize(q);
			return scry__fail(err, SCRY_ENOMEM, "out of memory reading patterns");
		}
		pat_row *p = &(*out)[(*n)++];
		p->id = sqlite3_column_int64(q, 0);
		p->fingerprint = (uint64_t)sqlite3_column_int64(q, 1);
		const char *t = (const char *)sqlite3_column_text(q, 2);
		p->normalized = scry__strdup(t ? t : "");
		p->count = sqlite3_column_int64(q, 3);
		int64_t timed = sqlite3_column_int64(q, 5);
		p->mean_ms = timed > 0 ? (double)sqlite3_column_int64(q, 4) / (double)timed / 1000.0 : 0;
	}
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(store, err, "reading patterns");
	return 0;
}

/* ------------------------------------------------------------------ */

static int class_rank(const scry_pattern_verdict *p)
{
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
	scry__free(v);
}

int scry_verdict_compute(scry_verdict **out, scry_store *store, const char *baseline, const char *candidate,
                         const scry_verdict_options *opts, scry_error *err)
{
	if (!out || !store || !baseline || !candidate)
		return scry__fail(err, SCRY_EINVAL, "scry_verdict_compute: store and both labels are required");
	*out = NULL;
	scry_verdict_options o = SCRY_VERDICT_OPTIONS_INIT;
	if (opts)
		o = *opts;
	if (!(o.threshold >= 1.0) || !(o.min_delta_ms >= 0) || !isfinite(o.threshold) || !isfinite(o.min_delta_ms))
		return scry__fail(err, SCRY_EINVAL, "threshold must be >= 1 and min_delta_ms >= 0 (got %g and %g)",
		                  o.threshold, o.min_delta_ms);
	if (o.min_samples < 1)
		o.min_samples = 1;
	o.baseline_conninfo = o.candidate_conninfo = NULL; /* not kept past the call */

	scry_verdict *v = scry__calloc(1, sizeof *v);
	if (!v)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	v->opts = o;
	v->baseline_label = scry__strdup(baseline);
	v->candidate_label = scry__strdup(candidate);
	sample_row *sb = NULL, *sc = NULL;
	pat_row *pats = NULL;
	obs *ob = NULL;
	size_t nsb = 0, nsc = 0, npats = 0, nob = 0, *start = NULL;
	double *scratch = NULL;
	int rc;
	if (!v->baseline_label || !v->candidate_label) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = scry_store_run_find(store, baseline, &v->baseline_run, err)) != 0 ||
	    (rc = scry_store_run_find(store, candidate, &v->candidate_run, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 0, 3);
	if ((rc = load_patterns(store, &pats, &npats, err)) != 0 ||
	    (rc = load_samples(store, v->baseline_run, &sb, &nsb, err)) != 0 ||
	    (rc = load_samples(store, v->candidate_run, &sc, &nsc, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 1, 3);
	if (scry__verdict_merge(sb, nsb, sc, nsc, pats, npats, &ob, &nob) || scry__verdict_group(&ob, nob, npats, &start)) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	scry__free(sb);
	scry__free(sc);
	sb = sc = NULL;
	size_t maxn = 0, npresent = 0;
	for (size_t p = 0; p < npats; p++) {
		size_t c = start[p + 1] - start[p];
		maxn = c > maxn ? c : maxn;
		npresent += c > 0;
	}
	scratch = scry__malloc((3 * maxn + 1) * sizeof *scratch);
	v->items = scry__calloc(npresent + 1, sizeof *v->items);
	if (!scratch || !v->items) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t p = 0; p < npats; p++) {
		size_t c = start[p + 1] - start[p];
		if (!c)
			continue;
		scry_pattern_verdict *pv = &v->items[v->n++];
		pv->fingerprint = pats[p].fingerprint;
		pv->normalized = pats[p].normalized;
		pats[p].normalized = NULL;
		pv->executions = pats[p].count;
		pv->captured_mean_ms = pats[p].mean_ms;
		scry__verdict_judge(pv, ob + start[p], c, &o, scratch);
	}
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 2, 3);

	/* With connections: root causes, error messages, best indexes. */
	if (opts && opts->candidate_conninfo)
		scry__verdict_probe(v, store, opts);
	qsort(v->items, v->n, sizeof *v->items, cmp_verdict);
	for (size_t i = 0; i < v->n; i++)
		v->failures += v->items[i].flagged != 0;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 3, 3);
	rc = 0;
out:
	for (size_t i = 0; i < npats; i++)
		scry__free(pats[i].normalized);
	scry__free(pats);
	scry__free(sb);
	scry__free(sc);
	scry__free(ob);
	scry__free(start);
	scry__free(scratch);
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

void scry_verdict_summarize(const scry_verdict *v, scry_verdict_summary *out)
{
	memset(out, 0, sizeof *out);
	if (!v)
		return;
	out->patterns = v->n;
	for (size_t i = 0; i < v->n; i++)
		if ((unsigned)v->items[i].cls < 7)
			out->by_class[v->items[i].cls]++;
	out->failures = v->failures;
	out->threshold = v->opts.threshold;
	out->min_delta_ms = v->opts.min_delta_ms;
	out->baseline_label = v->baseline_label;
	out->candidate_label = v->candidate_label;
	out->baseline_run = v->baseline_run;
	out->candidate_run = v->candidate_run;
}

