/*
 * bench/bench_impact.c - the cost of the migration-impact sampler on the
 * workload: fast replays of a store against a target, alternating without
 * and with a sampler polling the target (scry_impact_start, 5 ms), RUNS
 * times; prints each rate and the median of the per-pair ratios.
 *
 *   bench_impact STORE CONNINFO [RUNS] [CONCURRENCY]
 *
 * Driven by bench/impact.sh; results in docs/benchmarks.md.
 */
#include <scry/scry.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double replay_rate(scry_store *st, const char *target, int conc, const char *label)
{
	scry_replay_options ro = SCRY_REPLAY_OPTIONS_INIT;
	ro.concurrency = conc;
	scry_replay *r = NULL;
	scry_error err = SCRY_ERROR_INIT;
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	if (scry_replay_new(&r, st, &ro, &err) || scry_replay_run(r, target, label, &res, &err)) {
		fprintf(stderr, "bench_impact: replay: %s\n", err.message);
		exit(1);
	}
	scry_replay_free(r);
	return res.per_second;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench_impact STORE CONNINFO [RUNS] [CONCURRENCY]\n");
		return 2;
	}
	int runs = argc > 3 ? atoi(argv[3]) : 7, conc = argc > 4 ? atoi(argv[4]) : 4;
	scry_store *st = NULL;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(&st, argv[1], NULL, &err)) {
		fprintf(stderr, "bench_impact: %s\n", err.message);
		return 1;
	}
	double *ratios = calloc((size_t)runs, sizeof *ratios);
	double *plain = calloc((size_t)runs, sizeof *plain), *sampled = calloc((size_t)runs, sizeof *sampled);
	for (int i = 0; i < runs; i++) {
		/* Alternate which goes first, so a drift in the machine hits both alike. */
		for (int k = 0; k < 2; k++) {
			bool with = (k == 0) == (i % 2 == 1);
			scry_impact *im = NULL;
			if (with && scry_impact_start(&im, argv[2], NULL, &err)) {
				fprintf(stderr, "bench_impact: sampler: %s\n", err.message);
				return 1;
			}
			double r = replay_rate(st, argv[2], conc, with ? "bench-sampled" : "bench-plain");
			if (with) {
				scry_impact_summary s = { .size = sizeof s };
				scry_impact_stop(im, NULL);
				scry_impact_summarize(im, &s);
				printf("run %d sampled: %.0f executions/s (%lld polls, %.1f polls/s)\n", i + 1, r,
				       (long long)s.polls, (double)s.polls / ((double)s.duration_us / 1e6));
				scry_impact_free(im);
				sampled[i] = r;
			} else {
				printf("run %d plain:   %.0f executions/s\n", i + 1, r);
				plain[i] = r;
			}
		}
		ratios[i] = sampled[i] / plain[i];
	}
	qsort(ratios, (size_t)runs, sizeof *ratios, cmp);
	qsort(plain, (size_t)runs, sizeof *plain, cmp);
	qsort(sampled, (size_t)runs, sizeof *sampled, cmp);
	printf("median plain %.0f/s, sampled %.0f/s; median ratio sampled/plain %.3f (target >= 0.95)\n",
	       plain[runs / 2], sampled[runs / 2], ratios[runs / 2]);
	scry_store_free(st);
	free(ratios);
	free(plain);
	free(sampled);
	return 0;
}
