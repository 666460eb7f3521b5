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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
		x->pat = pattern_index(pats, npats, s->pattern);
		x->event = s->event;
		x->round = s->round;
		if (order <= 0) {
			x->has_b = 1;
			x->b_ms = b[i].ms;
			x->b_rows = b[i].rows;
			memcpy(x->b_state, b[i].state, 6);
			i++;
		}
		if (order >= 0) {
			x->has_c = 1;
			x->c_ms = c[j].ms;
			x->c_rows = c[j].rows;
			memcpy(x->c_state, c[j].state, 6);
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

/* Most frequent non-empty SQLSTATE among candidate failures that baseline did not have. */
static void common_state(const obs *o, size_t n, bool candidate, char out[6])
{
	out[0] = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		const char *s = candidate ? o[i].c_state : o[i].b_state;
		if (!*s || !strcmp(s, out))
			continue;
		size_t cnt = 0;
		for (size_t j = i; j < n; j++)
			cnt += !strcmp(candidate ? o[j].c_state : o[j].b_state, s);
		if (cnt > best) {
			best = cnt;
			memcpy(out, s, 6);
		}
	}
}

/* Statistics and class of one pattern from its observations. */
int scry__verdict_judge(scry_pattern_verdict *pv, const obs *o, size_t n, const scry_verdict_options *opts, double *scratch)
{
	double *bl = scratch, *cl = scratch + n, *lr = scratch + 2 * n;
	size_t nb = 0, nc = 0, np = 0;
	for (size_t i = 0; i < n; i++) {
		const obs *x = &o[i];
		bool bok = x->has_b && !x->b_state[0], cok = x->has_c && !x->c_state[0];
		pv->baseline_n += x->has_b;
		pv->candidate_n += x->has_c;
		pv->baseline_errors += x->has_b && !bok;
		pv->candidate_errors += x->has_c && !cok;
		if (bok)
			bl[nb++] = x->b_ms;
		if (cok)
			cl[nc++] = x->c_ms;
		if (x->has_b && x->has_c && bok && !cok)
			pv->new_failures++;
		if (bok && cok) {
			/* 1 us floor: a 0 us reading (coarse clocks) must not give log(0). */
			lr[np++] = log(fmax(x->c_ms, 0.001) / fmax(x->b_ms, 0.001));
			if (x->b_rows >= 0 && x->c_rows >= 0 && x->b_rows != x->c_rows)
				pv->rows_differ++;
		}
	}
	pv->pairs = (int64_t)np;
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
	pv->ratio = nb && nc && pv->baseline_p50_ms > 0 ? pv->candidate_p50_ms / pv->baseline_p50_ms : 0;
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

	char st[6];
	if (nb == 0 && nc > 0 && pv->baseline_errors > 0) {
		common_state(o, n, false, st);
		/* Class 42 (undefined column/table/function...) and 3F (schema): the migration creates it. */
		if (!strncmp(st, "42", 2) || !strncmp(st, "3F", 2)) {
			pv->cls = SCRY_CLASS_ONLY_IN_CANDIDATE;
			pv->baseline_sqlstate = scry__strdup(st);
			pv->note = scry__vdup_printf("fails on baseline (SQLSTATE %s) and succeeds on candidate: needs a connection "
			                      "to the candidate to be judged against its best indexes", st);
			return 0;
		}
	}
	if (pv->new_failures > 0 && pv->candidate_errors > pv->baseline_errors) {
		pv->cls = SCRY_CLASS_NEW_ERROR;
		pv->flagged = 1;
		common_state(o, n, true, st);
		pv->candidate_sqlstate = scry__strdup(st);
		pv->note = scry__vdup_printf("%lld of %lld executions that succeed on baseline fail on candidate (SQLSTATE %s)",
		                      (long long)pv->new_failures, (long long)(pv->baseline_n - pv->baseline_errors), st);
		return 0;
	}
	bool enough = np >= (size_t)opts->min_samples ||
	              (np == 0 && nb >= (size_t)opts->min_samples && nc >= (size_t)opts->min_samples);
	if (!enough) {
		pv->cls = SCRY_CLASS_INSUFFICIENT;
		pv->note = scry__vdup_printf("%zu paired successful executions; %d needed", np, opts->min_samples);
		return 0;
	}
	if (pv->ratio_low > opts->threshold && delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_REGRESSED;
		pv->flagged = 1;
	} else if (pv->rows_differ > 0) {
		pv->cls = SCRY_CLASS_ROWS_CHANGED;
		pv->note = scry__vdup_printf("%lld of %zu paired executions return a different number of rows",
		                      (long long)pv->rows_differ, np);
	} else if (pv->ratio_high < 1.0 / opts->threshold && -delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_IMPROVED;
	} else {
		pv->cls = SCRY_CLASS_UNCHANGED;
	}
	return 0;
}
