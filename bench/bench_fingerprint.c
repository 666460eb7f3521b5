/*
 * bench/bench_fingerprint.c - scry's caching fingerprinter against calling
 * pg_query_fingerprint() per statement, side by side in one process, on
 *   1. a captured-like stream (default 1,000,000 statements, 200 patterns,
 *      varying constants; bench/stream.h), and
 *   2. an all-distinct corpus: every distinct statement of the postgresql
 *      package's SQL files (tests/sqlcorpus.h), each seen once per round by
 *      a fresh fingerprinter, so every call misses the cache.
 * Work is interleaved in chunks (which side goes first alternates by chunk
 * and by run) so machine noise hits both sides; every value is compared.
 * Times are the thread's CPU time, so time spent descheduled on a shared
 * machine counts against neither side.
 *
 * usage: bench_fingerprint [STATEMENTS [PATTERNS [RUNS]]]
 * Prints medians over RUNS and exits 1 if any value differs from pg_query's.
 */
#include "internal.h"
#include "stream.h"
#include "../tests/sqlcorpus.h"

#include <pg_query.h>

#define CHUNK 10000

static uint64_t pg_fp(const char *sql, int *ok)
{
	PgQueryFingerprintResult r = pg_query_fingerprint(sql);
	*ok = r.error == NULL;
	uint64_t v = r.error ? 0 : r.fingerprint;
	pg_query_free_fingerprint_result(r);
	return v;
}

/* One side-by-side pass; returns mismatches, adds seconds to *t_pg / *t_scry. */
static size_t side_by_side(const char *const *texts, const size_t *lens, size_t n, scry_fingerprinter *f,
                           uint64_t *ref, uint64_t *got, double *t_pg, double *t_scry, int flip)
{
	size_t bad = 0;
	for (size_t start = 0, chunk = 0; start < n; start += CHUNK, chunk++) {
		size_t end = start + CHUNK < n ? start + CHUNK : n;
		for (int side = 0; side < 2; side++) {
			int pg_now = (side == 0) == ((chunk + (size_t)flip) % 2 == 0);
			double t0 = bench_now();
			if (pg_now) {
				for (size_t i = start; i < end; i++) {
					int ok;
					ref[i] = pg_fp(texts[i], &ok);
				}
				*t_pg += bench_now() - t0;
			} else {
				for (size_t i = start; i < end; i++) {
					got[i] = 0;
					scry_fingerprint_compute(f, texts[i], lens[i], &got[i], NULL);
				}
				*t_scry += bench_now() - t0;
			}
		}
		for (size_t i = start; i < end; i++)
			bad += ref[i] != got[i];
	}
	return bad;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	int patterns = argc > 2 ? atoi(argv[2]) : 200;
	int runs = argc > 3 ? atoi(argv[3]) : 3;
	if (!n || patterns < 1 || runs < 1 || runs > 64) {
		fprintf(stderr, "usage: bench_fingerprint [STATEMENTS [PATTERNS [RUNS]]]\n");
		return 2;
	}
	size_t bad = 0;

	/* 1. The captured-like stream. */
	stream s;
	stream_build(&s, n, patterns, 42);
	const char **texts = malloc(n * sizeof *texts);
	uint64_t *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
	for (size_t i = 0; i < n; i++)
		texts[i] = stream_get(&s, i);
	double pg_rate[64], scry_rate[64], ratio[64];
	scry_fingerprinter_stats st = SCRY_FINGERPRINTER_STATS_INIT;
	for (int r = 0; r < runs; r++) {
		scry_fingerprinter *f;
		if (scry_fingerprinter_new(&f, NULL, NULL))
			return 1;
		double t_pg = 0, t_scry = 0;
		bad += side_by_side(texts, s.len, n, f, ref, got, &t_pg, &t_scry, r);
		scry_fingerprinter_stats_get(f, &st);
		scry_fingerprinter_free(f);
		pg_rate[r] = n / t_pg;
		scry_rate[r] = n / t_scry;
		ratio[r] = t_pg / t_scry;
		fprintf(stderr, "stream run %d: pg_query %.0f/s, scry %.0f/s, x%.1f\n", r + 1, pg_rate[r], scry_rate[r],
		        ratio[r]);
	}
	printf("stream: %zu statements, %d patterns, %.1f MB of SQL, %d runs\n", n, patterns, s.bytes / 1e6, runs);
	printf("  scry cache: %llu hits, %llu parses (%.3f%% of statements parsed)\n", (unsigned long long)st.hits,
	       (unsigned long long)st.parses, 100.0 * (double)st.parses / (double)n);
	printf("  pg_query_fingerprint per statement: %12.0f statements/s (median)\n", bench_median(pg_rate, runs));
	printf("  scry_fingerprint_compute (cached):  %12.0f statements/s (median)\n", bench_median(scry_rate, runs));
	printf("  speed-up: x%.1f (median of per-run ratios)\n", bench_median(ratio, runs));
	free(texts);
	free(ref);
	free(got);
	stream_free(&s);

	/* 2. The all-distinct corpus. */
	sqlcorpus c;
	sqlcorpus_load(&c, NULL);
	/* Keep distinct texts that parse (errors are not what is measured). */
	const char **dt = malloc(c.n * sizeof *dt);
	size_t *dl = malloc(c.n * sizeof *dl), m = 0, corpus_bytes = 0;
	for (size_t i = 0; i < c.n; i++) {
		int ok, dup = 0;
		pg_fp(c.stmts[i], &ok);
		for (size_t j = 0; ok && !dup && j < m; j++)
			dup = dl[j] == c.lens[i] && !memcmp(dt[j], c.stmts[i], c.lens[i]);
		if (ok && !dup) {
			dt[m] = c.stmts[i];
			dl[m++] = c.lens[i];
			corpus_bytes += c.lens[i];
		}
	}
	ref = malloc(m * sizeof *ref);
	got = malloc(m * sizeof *got);
	int rounds = runs * 10;
	double *dratio = malloc((size_t)rounds * sizeof *dratio), *dpg = malloc((size_t)rounds * sizeof *dpg),
	       *dscry = malloc((size_t)rounds * sizeof *dscry);
	for (int r = 0; r < rounds; r++) {
		scry_fingerprinter *f; /* fresh: every call is a miss */
		if (scry_fingerprinter_new(&f, NULL, NULL))
			return 1;
		double t_pg = 0, t_scry = 0;
		bad += side_by_side(dt, dl, m, f, ref, got, &t_pg, &t_scry, r);
		scry_fingerprinter_stats_get(f, &st);
		scry_fingerprinter_free(f);
		dpg[r] = m / t_pg;
		dscry[r] = m / t_scry;
		dratio[r] = t_pg / t_scry;
	}
	printf("all-distinct corpus: %zu distinct statements (%.1f MB) from %zu files, %d rounds, %llu cache hits per round\n",
	       m, corpus_bytes / 1e6, c.files, rounds, (unsigned long long)st.hits);
	printf("  pg_query_fingerprint per statement: %12.0f statements/s (median)\n", bench_median(dpg, rounds));
	printf("  scry_fingerprint_compute (misses):  %12.0f statements/s (median)\n", bench_median(dscry, rounds));
	printf("  ratio: x%.3f (median of per-round ratios; >= 1 means scry is not slower)\n", bench_median(dratio, rounds));
	printf("values differing from pg_query_fingerprint: %zu\n", bad);
	free(dt);
	free(dl);
	free(ref);
	free(got);
	free(dratio);
	free(dpg);
	free(dscry);
	sqlcorpus_free(&c);
	pg_query_exit();
	return bad ? 1 : 0;
}
