/*
 * bench/stream.h - a synthetic but realistic captured stream: N statements
 * drawn from P query patterns (SELECT/INSERT/UPDATE/DELETE/CTE shapes over
 * 20 tables) with varying constants - integers, some beyond int32, floats,
 * strings with '' escapes, dates, IN lists, negative numbers, parameters and
 * comments. Pattern popularity is skewed (a few patterns dominate), as in
 * production. Deterministic for a given seed. Header-only, shared by
 * bench_fingerprint.c and bench_store.c.
 */
#ifndef SCRY_BENCH_STREAM_H
#define SCRY_BENCH_STREAM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct stream {
	char *text;      /* all statements, each NUL-terminated */
	size_t *off;     /* offset of statement i in text */
	size_t *len;
	int *pattern;    /* which pattern generated statement i */
	size_t n;
	size_t bytes;
} stream;

static unsigned long long stream_rng = 88172645463325252ull;

static inline unsigned long long stream_next(void)
{
	stream_rng ^= stream_rng << 13;
	stream_rng ^= stream_rng >> 7;
	stream_rng ^= stream_rng << 17;
	return stream_rng;
}

static const char *const stream_tables[20] = {
	"orders", "customers", "order_items", "products", "inventory", "payments", "shipments", "carts",
	"cart_items", "sessions", "users", "addresses", "coupons", "reviews", "categories", "suppliers",
	"warehouses", "invoices", "refunds", "audit_log" };
static const char *const stream_cols[12] = { "status", "customer_id", "total", "region", "email", "name",
	                                     "quantity", "price", "created_at", "note", "score", "kind" };
static const char *const stream_words[8] = { "open", "shipped", "O''Brien", "it''s ok", "eu-west", "gold",
	                                     "x", "" };

/* Writes one statement of pattern p into out (at most cap bytes). */
static inline int stream_statement(char *out, size_t cap, int p)
{
	const char *t = stream_tables[(p / 10) % 20], *t2 = stream_tables[(p / 10 + 7) % 20];
	const char *c1 = stream_cols[p % 12], *c2 = stream_cols[(p + 5) % 12], *c3 = stream_cols[(p + 9) % 12];
	unsigned long long r = stream_next();
	long i1 = (long)(r % 100000), i2 = (long)((r >> 17) % 1000), i3 = (long)((r >> 27) % 50);
	/* One id in 50 is beyond int32, as bigserial ids are. */
	long long id = (r >> 40) % 50 == 0 ? 3000000000ll + (long long)(r % 1000000) : (long long)(r % 2000000);
	const char *w = stream_words[(r >> 33) % 8];
	double f = (double)((r >> 20) % 100000) / 100.0;
	switch (p % 10) {
	case 0:
		return snprintf(out, cap, "SELECT * FROM %s WHERE id = %lld", t, id);
	case 1:
		return snprintf(out, cap, "SELECT %s, %s FROM %s WHERE %s = '%s' AND %s > %ld ORDER BY %s DESC LIMIT %ld",
		                c1, c2, t, c1, w, c2, i1, c2, i3 + 1);
	case 2:
		return snprintf(out, cap, "UPDATE %s SET %s = '%s', %s = %s + %ld WHERE id = %lld", t, c1, w, c2, c2, i2, id);
	case 3:
		return snprintf(out, cap, "INSERT INTO %s (%s, %s, %s) VALUES (%ld, '%s', %.2f) RETURNING id", t, c1, c2,
		                c3, i1, w, f);
	case 4:
		return snprintf(out, cap, "DELETE FROM %s WHERE %s < %.2f AND id IN (%ld, %ld, %ld)", t, c3, f, i1, i2, i3);
	case 5:
		return snprintf(out, cap,
		                "SELECT count(*) FROM %s t JOIN %s u ON u.id = t.%s WHERE t.%s BETWEEN %ld AND %ld "
		                "AND u.%s = '%s'",
		                t, t2, c1, c2, i2, i1, c3, w);
	case 6:
		return snprintf(out, cap,
		                "SELECT %s, sum(%s) FROM %s WHERE created_at > '2024-%02ld-%02ld' GROUP BY %s "
		                "HAVING sum(%s) > %ld",
		                c1, c2, t, i3 % 12 + 1, i3 % 28 + 1, c1, c2, i1);
	case 7:
		return snprintf(out, cap, "SELECT * FROM %s WHERE %s = $1 AND %s = %ld AND %s <> 'x'", t, c1, c2, i2, c3);
	case 8:
		return snprintf(out, cap,
		                "WITH r AS (SELECT id FROM %s WHERE %s = %ld) UPDATE %s SET %s = -%ld WHERE id IN "
		                "(SELECT id FROM r)",
		                t, c1, i1, t2, c2, i2);
	default:
		return snprintf(out, cap, "SELECT /* app:web,route:/p/%d */ id, %s FROM %s WHERE %s = '%s' OFFSET %ld", p,
		                c1, t, c2, w, i2);
	}
}

/* Builds n statements from `patterns` patterns; popularity ~ 1/(rank+1). */
static inline void stream_build(stream *s, size_t n, int patterns, unsigned long long seed)
{
	stream_rng = seed ? seed : 88172645463325252ull;
	memset(s, 0, sizeof *s);
	size_t cap = n * 128 + 1024;
	s->text = malloc(cap);
	s->off = malloc(n * sizeof *s->off);
	s->len = malloc(n * sizeof *s->len);
	s->pattern = malloc(n * sizeof *s->pattern);
	if (!s->text || !s->off || !s->len || !s->pattern)
		abort();
	/* Cumulative weights 1/(k+1). */
	double *cum = malloc((size_t)patterns * sizeof *cum), total = 0;
	for (int k = 0; k < patterns; k++)
		cum[k] = (total += 1.0 / (k + 1));
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		double u = (double)(stream_next() % 1000000007ull) / 1000000007.0 * total;
		int lo = 0, hi = patterns - 1;
		while (lo < hi) {
			int mid = (lo + hi) / 2;
			if (cum[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		/* Every pattern appears at least once, early (the first 'patterns' statements). */
		int p = i < (size_t)patterns ? (int)i : lo;
		if (pos + 512 > cap) {
			s->text = realloc(s->text, cap *= 2);
			if (!s->text)
				abort();
		}
		int w = stream_statement(s->text + pos, 512, p);
		s->off[i] = pos;
		s->len[i] = (size_t)w;
		s->pattern[i] = p;
		pos += (size_t)w + 1;
	}
	free(cum);
	s->n = n;
	s->bytes = pos;
}

static inline const char *stream_get(const stream *s, size_t i) { return s->text + s->off[i]; }

static inline void stream_free(stream *s)
{
	free(s->text);
	free(s->off);
	free(s->len);
	free(s->pattern);
	memset(s, 0, sizeof *s);
}

/* CPU time of this thread: time spent descheduled (the machine is shared)
 * does not count against either side. */
static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
