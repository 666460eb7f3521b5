/*
 * bench/bench_verdict.c - time of scry_verdict_compute() on a synthetic
 * store: PATTERNS patterns, SAMPLES samples in all (half per run), so
 * SAMPLES / 2 / PATTERNS / ROUNDS events per pattern. Every tenth pattern
 * is 2x slower on the candidate. Prints the median wall and CPU time of
 * several timed runs.
 *
 *   bench_verdict [STORE] [PATTERNS] [SAMPLES] [RUNS]
 *   (defaults /tmp/scry-bench-verdict.db 1000 1000000 5)
 *
 * The store is built once and reused when it already holds the two runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <scry/scry.h>

#define ROUNDS 2

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int build(scry_store *s, int patterns, long samples)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", "bench", "[local]", 1700000000000000 };
	int64_t sid;
	if (scry_store_session_add(s, &si, &sid, &err))
		goto fail;
	long per = samples / 2 / patterns / ROUNDS;
	if (per < 1)
		per = 1;
	long nev = per * patterns;
	scry_event *evs = calloc((size_t)nev, sizeof *evs);
	char (*texts)[64] = calloc((size_t)patterns, 64);
	/* Letters, not digits: pg_query fingerprints table_12 and table_13 alike (partitions). */
	for (int p = 0; p < patterns; p++) {
		char name[16];
		int k = 0;
		for (int x = p; k < 15; x /= 26) {
			name[k++] = (char)('a' + x % 26);
			if (x < 26)
				break;
		}
		name[k] = 0;
		snprintf(texts[p], 64, "SELECT * FROM tbl_%s WHERE id = 1", name);
	}
	for (long i = 0; i < nev; i++) {
		int p = (int)(i % patterns);
		evs[i].session_id = sid;
		evs[i].start_us = si.started_us + i;
		evs[i].duration_us = 1000;
		evs[i].query = texts[p];
		evs[i].rows = 1;
	}
	if (scry_store_append(s, evs, (size_t)nev, sizeof(scry_event), &err))
		goto fail;
	int64_t ra, rb;
	if (scry_store_run_begin(s, "A", "a", NULL, &ra, &err) || scry_store_run_begin(s, "B", "b", NULL, &rb, &err))
		goto fail;
	size_t n = (size_t)nev * ROUNDS, k = 0;
	scry_sample *sa = calloc(n, sizeof *sa), *sb = calloc(n, sizeof *sb);
	for (long i = 0; i < nev; i++)
		for (int r = 0; r < ROUNDS; r++, k++) {
			int p = (int)(i % patterns);
			double base = 0.5 + (double)(p % 50) * 0.2;
			sa[k] = (scry_sample){ i + 1, r, (int64_t)(1000 * base * (0.8 + 0.4 * urand())), 1, "" };
			sb[k] = (scry_sample){ i + 1, r, (int64_t)(1000 * base * (p % 10 ? 1 : 2) * (0.8 + 0.4 * urand())), 1, "" };
		}
	if (scry_store_samples_append(s, ra, sa, n, sizeof(scry_sample), &err) || scry_store_samples_append(s, rb, sb, n, sizeof(scry_sample), &err))
		goto fail;
	free(sa);
	free(sb);
	free(evs);
	free(texts);
	return 0;
fail:
	fprintf(stderr, "bench_verdict: %s\n", err.message);
	return 1;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/tmp/scry-bench-verdict.db";
	int patterns = argc > 2 ? atoi(argv[2]) : 1000;
	long samples = argc > 3 ? atol(argv[3]) : 1000000;
	int runs = argc > 4 ? atoi(argv[4]) : 5;
	if (patterns < 1 || samples < 2 || runs < 1 || runs > 100) {
		fprintf(stderr, "usage: bench_verdict [STORE] [PATTERNS] [SAMPLES] [RUNS]\n");
		return 2;
	}
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(&s, path, NULL, &err)) {
		fprintf(stderr, "bench_verdict: %s\n", err.message);
		return 1;
	}
	scry_store_info info = SCRY_STORE_INFO_INIT;
	if (scry_store_info_get(s, &info, &err) == 0 && info.runs == 0) {
		double t0 = now_s();
		if (build(s, patterns, samples))
			return 1;
		fprintf(stderr, "built %s in %.1f s\n", path, now_s() - t0);
		scry_store_info_get(s, &info, &err);
	}
	double t[100], c[100];
	size_t failures = 0, count = 0;
	for (int i = 0; i < runs; i++) {
		scry_verdict *v;
		double t0 = now_s(), c0 = cpu_s();
		if (scry_verdict_compute(&v, s, "A", "B", NULL, &err)) {
			fprintf(stderr, "bench_verdict: %s\n", err.message);
			return 1;
		}
		t[i] = now_s() - t0;
		c[i] = cpu_s() - c0;
		failures = scry_verdict_failures(v);
		count = scry_verdict_count(v);
		scry_verdict_free(v);
	}
	qsort(t, (size_t)runs, sizeof *t, cmp);
	qsort(c, (size_t)runs, sizeof *c, cmp);
	/* CPU time beside wall time: on a shared machine the wall clock also counts waiting for a core. */
	printf("verdict: %zu patterns, %lld samples: wall median %.3f s (min %.3f, max %.3f), CPU median %.3f s, "
	       "over %d runs; %zu regressed\n",
	       count, (long long)info.samples, t[runs / 2], t[0], t[runs - 1], c[runs / 2], runs, failures);
	scry_store_free(s);
	return 0;
}
