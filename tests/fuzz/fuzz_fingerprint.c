/*
 * tests/fuzz/fuzz_fingerprint.c - the fingerprinter against pg_query.
 *
 * For any text: scry_fingerprint_compute() without a cache, with a cache
 * (first and repeated call) and with an 8-entry cache that evicts all the
 * time must all give pg_query_fingerprint()'s value and error status; the
 * literal-lifting template must splice back to the exact text; normalize
 * and split must not fail other than with SCRY_EPARSE. The reference call is
 * made only when the depth bound says the caller's stack holds it (deeper
 * texts go through the guard, which is what is being tested there).
 */
#include "fuzz_common.h"
#include "internal.h"
#include <pg_query.h>
#include <scry/fingerprint.h>

static scry_fingerprinter *big, *tiny;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	scry_fingerprinter_options o;
	scry_fingerprinter_options_init(&o);
	scry_fingerprinter_new(&big, &o, NULL);
	o.cache_entries = 8;
	scry_fingerprinter_new(&tiny, &o, NULL);
	return 0;
}

static void one(const char *sql, size_t len)
{
	uint64_t v0 = 0, v1 = 0, v2 = 0, v3 = 0;
	int r0 = scry_fingerprint_compute(NULL, sql, len, &v0, NULL);
	int r1 = scry_fingerprint_compute(big, sql, len, &v1, NULL);
	int r2 = scry_fingerprint_compute(big, sql, len, &v2, NULL);
	int r3 = scry_fingerprint_compute(tiny, sql, len, &v3, NULL);
	FUZZ_CHECK(r0 == 0 || r0 == SCRY_EPARSE, "rc %d", r0);
	FUZZ_CHECK(r0 == r1 && r1 == r2 && r2 == r3, "status differs: %d %d %d %d on %.*s", r0, r1, r2, r3,
	           (int)len, sql);
	FUZZ_CHECK(r0 || (v0 == v1 && v1 == v2 && v2 == v3), "values differ on %.*s", (int)len, sql);
	if (!memchr(sql, 0, len) && scry__sql_depth(sql, len) <= SCRY__PGQ_INLINE_DEPTH) {
		char *copy = strndup(sql, len);
		PgQueryFingerprintResult r = pg_query_fingerprint(copy);
		FUZZ_CHECK(!r.error == !r0, "scry %d, pg_query %s on %s", r0, r.error ? r.error->message : "ok", copy);
		FUZZ_CHECK(r0 || r.fingerprint == v0, "fingerprint differs from pg_query's on %s", copy);
		pg_query_free_fingerprint_result(r);
		free(copy);
	}
	/* Lifting round trip. */
	scry_buf t = SCRY_BUF_INIT, l = SCRY_BUF_INIT, back = SCRY_BUF_INIT;
	int nlits = 0;
	FUZZ_CHECK(scry__lift_literals(sql, len, &t, &l, &nlits) == 0, "lift");
	FUZZ_CHECK(scry__splice_literals(t.ptr ? t.ptr : "", t.size, (const unsigned char *)(l.ptr ? l.ptr : ""),
	                                 l.size, &back) == 0, "splice failed on %.*s", (int)len, sql);
	FUZZ_CHECK(back.size == len && (!len || !memcmp(back.ptr, sql, len)), "splice differs on %.*s", (int)len, sql);
	scry_buf_dispose(&t);
	scry_buf_dispose(&l);
	scry_buf_dispose(&back);
	scry_buf n = SCRY_BUF_INIT;
	int rn = scry_fingerprint_normalize(sql, len, &n, NULL);
	FUZZ_CHECK(rn == 0 || rn == SCRY_EPARSE, "normalize rc %d", rn);
	scry_buf_dispose(&n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *sql = (const char *)data;
	one(sql, size);
	scry_statement_span *sp = NULL;
	size_t n = 0;
	FUZZ_CHECK(scry_fingerprint_split(sql, size, &sp, &n, NULL) == 0, "split");
	for (size_t i = 0; i < n && i < 8; i++) {
		FUZZ_CHECK(sp[i].offset <= size && sp[i].length <= size - sp[i].offset, "span out of range");
		if (n > 1)
			one(sql + sp[i].offset, sp[i].length);
	}
	scry_statement_spans_free(sp);
	return 0;
}
