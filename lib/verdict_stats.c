/*
 * lib/verdict_stats.c - statistics and classification of the verdict.
 *
 * Samples of both runs are read in (event, round) order and paired; each
 * pattern's verdict rests on the paired log-ratios log(candidate/baseline):
 * their median's distribution-free confidence interval (sign test: order
 * statistics of the sorted ratios) must lie above the threshold for a
 * regression. Pairing cancels the noise both sides saw at the same moment;
 * the sign test assumes nothing about the shape of latency distributions
 * and needs no random numbers, so a verdict is reproducible.
 */
#include "verdict_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

int scry__cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* Percentile (0..1) of sorted values, linear interpolation between ranks. */
double scry__quantile(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)h;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

/*
 * Sign-test confidence interval of a median: the k-th smallest and k-th
 * largest of n sorted values, with k the largest such that
 * P(Binomial(n, 1/2) < k) <= alpha/2. Returns k (1-based), 0 when n is too
 * small for any interval at this confidence.
 */
size_t scry__sign_test_k(size_t n, double alpha)
{
	if (n == 0)
		return 0;
	double cdf = 0, ln2n = (double)n * log(2.0);
	size_t k = 0;
	for (size_t i = 0; i <= n / 2; i++) {
		double lp = lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) - ln2n;
		cdf += exp(lp); /* P(X <= i) */
		if (cdf > alpha / 2)
			break;
		k = i + 1;
	}
	return k;
}

/* Binary search of a pattern id in the id-ordered table; -1 when absent. */
static int32_t pattern_index(const pat_row *p, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && p[lo].id == id ? (int32_t)lo : -1;
}

/*
 * The SQLSTATE a sample is judged by: a 25P02 whose transaction was aborted
 * by an earlier failure of the same pattern counts as that failure. Returns
 * the pattern index of an earlier failure of another pattern that aborted
 * it (the sample is then not this pattern's own failure), else -1.
 */
static int32_t effective_state(const sample_row *s, const pat_row *pats, size_t npats, char out[6])
{
	memcpy(out, s->state, 6);
	if (!s->root_pattern)
		return -1;
	if (s->root_pattern == s->pattern) {
		memcpy(out, s->root_state, 6);
		return -1;
	}
	return pattern_index(pats, npats, s->root_pattern);
}

/* Merges both runs' samples (each ordered by event, round) into observations. */
int scry__verdict_merge(const sample_row *b, size_t nb, const sample_row *c, size_t nc, const pat_row *pats,
                         size_t npats, obs **out, size_t *nout)
{
	obs *o = scry__malloc((nb + nc + 1) * sizeof *o);
	if (!o)
		return SCRY_ENOMEM;
	size_t i = 0, j = 0, k = 0;
	while (i < nb || j < nc) {
		int order;
		if (i >= nb)
			order = 1;
		else if (j >= nc)
			order = -1;
		else if (b[i].event != c[j].event)
			order = b[i].event < c[j].event ? -1 : 1;
		else
			order = b[i].round < c[j].round ? -1 : b[i].round > c[j].round;
		const sample_row *s = order <= 0 ? &b[i] : &c[j];
		obs *x = &o[k];
		memset(x, 0, sizeof *x);
		x->b_abort = x->c_abort = -1;
		x->pat = pattern_index(pats, npats, s->pattern);
		x->event = s->event;
		x->round = s->round;
		if (order <= 0) {
			x->has_b = 1;
			x->b_ms = b[i].ms;
			x->b_rows = b[i].rows;
			x->b_abort = effective_state(&b[i], pats, npats, x->b_state);
			i++;
		}
		if (order >= 0) {
			x->has_c = 1;
			x->c_ms = c[j].ms;
			x->c_rows = c[j].rows;
			x->c_abort = effective_state(&c[j], pats, npats, x->c_state);
			j++;
		}
		if (x->pat >= 0)
			k++;
	}
	*out = o;
	*nout = k;
	return 0;
}

/* Counting sort of observations by pattern, keeping (event, round) order within one. */
int scry__verdict_group(obs **o, size_t n, size_t npats, size_t **start_out)
{
	size_t *start = scry__calloc(npats + 1, sizeof *start);
	obs *sorted = scry__malloc((n + 1) * sizeof *sorted);
	if (!start || !sorted) {
		scry__free(start);
		scry__free(sorted);
		return SCRY_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		start[(*o)[i].pat + 1]++;
	for (size_t p = 0; p < npats; p++)
		start[p + 1] += start[p];
	size_t *pos = scry__malloc((npats + 1) * sizeof *pos);
	if (!pos) {
		scry__free(start);
		scry__free(sorted);
		return SCRY_ENOMEM;
	}
	memcpy(pos, start, (npats + 1) * sizeof *pos);
	for (size_t i = 0; i < n; i++)
		sorted[pos[(*o)[i].pat]++] = (*o)[i];
	scry__free(pos);
	scry__free(*o);
	*o = sorted;
	*start_out = start;
	return 0;
}

/* Most frequent non-empty SQLSTATE among a side's own failures (not those aborted by another pattern). */
static void common_state(const obs *o, size_t n, bool candidate, char out[6])
{
	out[0] = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		const char *s = candidate ? o[i].c_state : o[i].b_state;
		if (!*s || !strcmp(s, out) || (candidate ? o[i].c_abort : o[i].b_abort) >= 0)
			continue;
		size_t cnt = 0;
		for (size_t j = i; j < n; j++)
			cnt += (candidate ? o[j].c_abort : o[j].b_abort) < 0 &&
			       !strcmp(candidate ? o[j].c_state : o[j].b_state, s);
		if (cnt > best) {
			best = cnt;
			memcpy(out, s, 6);
		}
	}
}

/* The pattern whose failure most often aborted this one's transactions on a side, or -1. */
static int32_t common_abort(const obs *o, size_t n, bool candidate)
{
	int32_t best = -1;
	size_t bestn = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t a = candidate ? o[i].c_abort : o[i].b_abort;
		if (a < 0 || a == best)
			continue;
		size_t cnt = 0;
		for (size_t j = i; j < n; j++)
			cnt += (candidate ? o[j].c_abort : o[j].b_abort) == a;
		if (cnt > bestn) {
			bestn = cnt;
			best = a;
		}
	}
	return best;
}

/*
 * Distribution-free confidence interval of the q-quantile of n sorted
 * values: ranks (0-based) lo and hi such that [v[lo], v[hi]] covers it with
 * about 1 - alpha (normal approximation of the binomial). false when n is
 * too small for a bound on that side.
 */
static bool quantile_ci(size_t n, double q, double alpha, size_t *lo, size_t *hi)
{
	double z = alpha <= 0.025 ? 2.241 : 1.96; /* two-sided 95%, or 97.5% for a combination of two */
	double m = (double)n * q, sd = sqrt((double)n * q * (1 - q));
	double l = floor(m - z * sd), h = ceil(m + z * sd);
	if (l < 1 || h > (double)n)
		return false;
	*lo = (size_t)l - 1;
	*hi = (size_t)h - 1;
	return true;
}

/* p95 of both sides and the interval of their ratio (each side's quantile interval combined). */
static void compare_p95(scry_pattern_verdict *pv, const double *bl, size_t nb, const double *cl, size_t nc)
{
	pv->p95_ratio = nb && nc && pv->baseline_p95_ms > 0 ? pv->candidate_p95_ms / pv->baseline_p95_ms : 0;
	pv->p95_ratio_low = 0;
	pv->p95_ratio_high = INFINITY;
	size_t bl_lo, bl_hi, cl_lo, cl_hi;
	if (!nb || !nc || !quantile_ci(nb, 0.95, CONFIDENCE_ALPHA / 2, &bl_lo, &bl_hi) ||
	    !quantile_ci(nc, 0.95, CONFIDENCE_ALPHA / 2, &cl_lo, &cl_hi))
		return;
	if (bl[bl_hi] > 0)
		pv->p95_ratio_low = cl[cl_lo] / bl[bl_hi];
	if (bl[bl_lo] > 0)
		pv->p95_ratio_high = cl[cl_hi] / bl[bl_lo];
}

/* Why a pattern with too few pairs could not be judged, for the report. */
static char *insufficient_reason(const scry_pattern_verdict *pv, const obs *o, size_t n, size_t np,
                                 const scry_verdict_options *opts, const pat_row *pats)
{
	int32_t ab = common_abort(o, n, false), ac = common_abort(o, n, true);
	if (ab >= 0 || ac >= 0)
		return scry__vdup_printf("%zu paired successful executions (%d needed): %lld on baseline and %lld on "
		                         "candidate were aborted by the earlier failure of %s in their transaction",
		                         np, opts->min_samples, (long long)pv->baseline_aborted,
		                         (long long)pv->candidate_aborted, pats[ab >= 0 ? ab : ac].normalized);
	if (pv->baseline_errors == pv->baseline_n && pv->candidate_errors == pv->candidate_n && pv->baseline_n) {
		char sb[6], sc[6];
		common_state(o, n, false, sb);
		common_state(o, n, true, sc);
		return scry__vdup_printf("fails on both sides (SQLSTATE %s on baseline, %s on candidate)", sb, sc);
	}
	return scry__vdup_printf("%zu paired successful executions; %d needed", np, opts->min_samples);
}

/* Reads the observations: counts, each side's successful latencies, the paired log-ratios. */
static size_t collect(scry_pattern_verdict *pv, const obs *o, size_t n, double *bl, size_t *nb, double *cl,
                      size_t *nc, double *lr)
{
	size_t np = 0;
	for (size_t i = 0; i < n; i++) {
		const obs *x = &o[i];
		bool bok = x->has_b && !x->b_state[0], cok = x->has_c && !x->c_state[0];
		pv->baseline_n += x->has_b;
		pv->candidate_n += x->has_c;
		pv->baseline_errors += x->has_b && !bok;
		pv->candidate_errors += x->has_c && !cok;
		pv->baseline_aborted += x->has_b && x->b_abort >= 0;
		pv->candidate_aborted += x->has_c && x->c_abort >= 0;
		if (bok)
			bl[(*nb)++] = x->b_ms;
		if (cok)
			cl[(*nc)++] = x->c_ms;
		/* A failure caused by another pattern's failure is that pattern's new error, not this one's. */
		if (x->has_b && x->has_c && bok && !cok && x->c_abort < 0)
			pv->new_failures++;
		if (bok && cok) {
			/* 1 us floor: a 0 us reading (coarse clocks) must not give log(0). */
			lr[np++] = log(fmax(x->c_ms, 0.001) / fmax(x->b_ms, 0.001));
			if (x->b_rows >= 0 && x->c_rows >= 0 && x->b_rows != x->c_rows)
				pv->rows_differ++;
		}
	}
	return np;
}

/* Does the text, past any characters of `skip`, start with one of the words (as a whole word)? */
bool scry__starts_with_word(const char *text, const char *skip, const char *const *words, size_t nwords)
{
	while (*text && strchr(skip, *text))
		text++;
	for (size_t i = 0; i < nwords; i++) {
		size_t n = strlen(words[i]);
		if (!strncasecmp(text, words[i], n) && !isalnum((unsigned char)text[n]) && text[n] != '_')
			return true;
	}
	return false;
}

/*
 * Transaction control and session statements (BEGIN, COMMIT, SET...): their
 * replayed latency says nothing about the migration (a COMMIT is replayed as
 * a ROLLBACK, and takes whatever the statements before it left to undo), so
 * it is reported but never gated. Their errors still are.
 */
static bool timing_gated(const char *normalized)
{
	static const char *const kw[] = { "begin", "start", "commit", "end", "rollback", "abort", "savepoint",
		                          "release", "set", "reset", "show", "discard", "deallocate", "prepare transaction" };
	return !scry__starts_with_word(normalized, " \n\t", kw, sizeof kw / sizeof *kw);
}

/* Quantiles, impact, the ratio of medians and its interval (sorts the three arrays). */
static void summarize(scry_pattern_verdict *pv, double *bl, size_t nb, double *cl, size_t nc, double *lr, size_t np,
                      const scry_verdict_options *opts)
{
	qsort(bl, nb, sizeof *bl, scry__cmp_double);
	qsort(cl, nc, sizeof *cl, scry__cmp_double);
	qsort(lr, np, sizeof *lr, scry__cmp_double);
	pv->baseline_p50_ms = scry__quantile(bl, nb, 0.5);
	pv->baseline_p95_ms = scry__quantile(bl, nb, 0.95);
	pv->baseline_p99_ms = scry__quantile(bl, nb, 0.99);
	pv->candidate_p50_ms = scry__quantile(cl, nc, 0.5);
	pv->candidate_p95_ms = scry__quantile(cl, nc, 0.95);
	pv->candidate_p99_ms = scry__quantile(cl, nc, 0.99);
	double delta = pv->candidate_p50_ms - pv->baseline_p50_ms;
	if (nb && nc)
		pv->impact_ms = (double)pv->executions * delta;
	/* The estimate is the one the interval is built around: the median paired ratio. */
	pv->ratio = np ? exp(scry__quantile(lr, np, 0.5))
	               : nb && nc && pv->baseline_p50_ms > 0 ? pv->candidate_p50_ms / pv->baseline_p50_ms : 0;
	pv->ratio_low = 0;
	pv->ratio_high = INFINITY;
	size_t k = scry__sign_test_k(np, CONFIDENCE_ALPHA);
	if (np && k) {
		pv->ratio_low = exp(lr[k - 1]);
		pv->ratio_high = exp(lr[np - k]);
	} else if (nb && nc && np < (size_t)opts->min_samples) {
		/* Unpaired runs (different workloads): combine each side's median interval. */
		size_t kb = scry__sign_test_k(nb, CONFIDENCE_ALPHA / 2), kc = scry__sign_test_k(nc, CONFIDENCE_ALPHA / 2);
		if (kb && kc && bl[nb - kb] > 0)
			pv->ratio_low = cl[kc - 1] / bl[nb - kb];
		if (kb && kc && bl[kb - 1] > 0)
			pv->ratio_high = cl[nc - kc] / bl[kb - 1];
	}
	compare_p95(pv, bl, nb, cl, nc);
}

/* The classes errors decide (only in candidate, new error): true when one applies. */
static bool classify_errors(scry_pattern_verdict *pv, const obs *o, size_t n, size_t nb, size_t nc)
{
	char st[6];
	if (nb == 0 && nc > 0 && pv->baseline_errors > pv->baseline_aborted) {
		common_state(o, n, false, st);
		/* Class 42 (undefined column/table/function...) and 3F (schema): the migration creates it. */
		if (!strncmp(st, "42", 2) || !strncmp(st, "3F", 2)) {
			pv->cls = SCRY_CLASS_ONLY_IN_CANDIDATE;
			pv->baseline_sqlstate = scry__strdup(st);
			pv->note = scry__vdup_printf("fails on baseline (SQLSTATE %s) and succeeds on candidate: needs a "
			                             "connection to the candidate to be judged against its best indexes",
			                             st);
			return true;
		}
	}
	if (pv->new_failures > 0 && pv->candidate_errors - pv->candidate_aborted > pv->baseline_errors) {
		pv->cls = SCRY_CLASS_NEW_ERROR;
		pv->flagged = 1;
		common_state(o, n, true, st);
		pv->candidate_sqlstate = scry__strdup(st);
		pv->note = scry__vdup_printf("%lld of %lld executions that succeed on baseline fail on candidate "
		                             "(SQLSTATE %s)",
		                             (long long)pv->new_failures,
		                             (long long)(pv->baseline_n - pv->baseline_errors), st);
		return true;
	}
	return false;
}

/* The class by timing and rows of a pattern with enough samples. */
static void classify_timing(scry_pattern_verdict *pv, size_t np, const scry_verdict_options *opts)
{
	double delta = pv->candidate_p50_ms - pv->baseline_p50_ms;
	double p95_delta = pv->candidate_p95_ms - pv->baseline_p95_ms;
	bool tail = pv->p95_ratio_low > opts->threshold && p95_delta > opts->min_delta_ms;
	if (pv->ratio_low > opts->threshold && delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_REGRESSED;
		pv->flagged = 1;
	} else if (pv->rows_differ > 0) {
		pv->cls = SCRY_CLASS_ROWS_CHANGED;
		pv->note = scry__vdup_printf("%lld of %zu paired executions return a different number of rows",
		                             (long long)pv->rows_differ, np);
	} else if (pv->ratio_high < 1.0 / opts->threshold && -delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_IMPROVED;
	} else if (tail) {
		/*
		 * Reported, not gated: the p95 interval is unpaired (each side's
		 * quantile interval), and under a non-stationary load it cleared the
		 * threshold on no-op migrations (test_impact: 4 false tail
		 * regressions at p95 5-22x). docs/verdict.md.
		 */
		pv->cls = SCRY_CLASS_UNCHANGED;
		pv->tail_regressed = 1;
		pv->note = scry__vdup_printf("tail-only regression (reported, not gated): p95 %.3f -> %.3f ms (%.2fx, 95%% "
		                             "CI %.2f-%.2f); the median is unchanged",
		                             pv->baseline_p95_ms, pv->candidate_p95_ms, pv->p95_ratio, pv->p95_ratio_low,
		                             pv->p95_ratio_high);
	} else {
		pv->cls = SCRY_CLASS_UNCHANGED;
		if (pv->p95_ratio > opts->threshold && p95_delta > opts->min_delta_ms)
			pv->note = scry__vdup_printf("p95 %.3f -> %.3f ms (%.2fx) but its interval (%.2f-%.2f) does not clear "
			                             "%.2fx: not flagged",
			                             pv->baseline_p95_ms, pv->candidate_p95_ms, pv->p95_ratio,
			                             pv->p95_ratio_low, pv->p95_ratio_high, opts->threshold);
	}
}

/* Statistics and class of one pattern from its observations. */
int scry__verdict_judge(scry_pattern_verdict *pv, const obs *o, size_t n, const scry_verdict_options *opts,
                        const pat_row *pats, double *scratch)
{
	double *bl = scratch, *cl = scratch + n, *lr = scratch + 2 * n;
	size_t nb = 0, nc = 0;
	size_t np = collect(pv, o, n, bl, &nb, cl, &nc, lr);
	pv->pairs = (int64_t)np;
	summarize(pv, bl, nb, cl, nc, lr, np, opts);
	if (classify_errors(pv, o, n, nb, nc))
		return 0;
	if (!timing_gated(pv->normalized ? pv->normalized : "")) {
		pv->cls = pv->rows_differ > 0 ? SCRY_CLASS_ROWS_CHANGED : SCRY_CLASS_UNCHANGED;
		pv->note = scry__strdup("transaction control or session statement: its latency is reported, not gated");
		return 0;
	}
	bool enough = np >= (size_t)opts->min_samples ||
	              (np == 0 && nb >= (size_t)opts->min_samples && nc >= (size_t)opts->min_samples);
	if (!enough) {
		pv->cls = SCRY_CLASS_INSUFFICIENT;
		pv->note = insufficient_reason(pv, o, n, np, opts, pats);
		pv->flagged = opts->fail_on_insufficient != 0;
		return 0;
	}
	classify_timing(pv, np, opts);
	if (!pv->note && (pv->baseline_aborted || pv->candidate_aborted)) {
		int32_t a = common_abort(o, n, pv->candidate_aborted > 0);
		pv->note = scry__vdup_printf("%lld executions on baseline and %lld on candidate aborted by the earlier "
		                             "failure of %s (not counted against this pattern)",
		                             (long long)pv->baseline_aborted, (long long)pv->candidate_aborted,
		                             a >= 0 ? pats[a].normalized : "another statement");
	}
	return 0;
}
