/*
 * scry/fingerprint.h - query fingerprints and normalized text.
 *
 * A fingerprint is exactly the value pg_query_fingerprint() computes
 * (libpg_query 15), so it joins with pganalyze, pglast and every pg_query
 * binding. A fingerprinter handle caches results: repeated texts, and DML
 * texts that differ only in their literal constants, are answered without
 * running the parser again (see docs/fingerprint.md for why this is exact).
 */
#ifndef SCRY_FINGERPRINT_H
#define SCRY_FINGERPRINT_H

#include "scry/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A caching fingerprinter. One thread at a time per handle. */
typedef struct scry_fingerprinter scry_fingerprinter;

/** Options of scry_fingerprinter_new(). */
typedef struct scry_fingerprinter_options {
	unsigned int version;    /**< SCRY_FINGERPRINTER_OPTIONS_VERSION */
	size_t cache_entries;    /**< cache capacity in entries; 0 = default (65536) */
} scry_fingerprinter_options;

/** Current version of scry_fingerprinter_options. */
#define SCRY_FINGERPRINTER_OPTIONS_VERSION 1
/** Default options. */
#define SCRY_FINGERPRINTER_OPTIONS_INIT { SCRY_FINGERPRINTER_OPTIONS_VERSION, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_fingerprinter_options_init(scry_fingerprinter_options *opts);

/**
 * Creates a fingerprinter. `opts` may be NULL.
 * Returns 0, SCRY_ENOMEM or SCRY_EINVAL; *out is NULL on failure.
 */
SCRY_API int scry_fingerprinter_new(scry_fingerprinter **out,
	const scry_fingerprinter_options *opts, scry_error *err);

/** Frees a fingerprinter. Accepts NULL. */
SCRY_API void scry_fingerprinter_free(scry_fingerprinter *fpr);

/** Cache statistics of a fingerprinter. */
typedef struct scry_fingerprinter_stats {
	size_t size;             /**< set to sizeof(scry_fingerprinter_stats) before the call (SCRY_FINGERPRINTER_STATS_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	uint64_t calls;   /**< statements fingerprinted */
	uint64_t hits;    /**< answered from the cache */
	uint64_t parses;  /**< statements sent to the parser */
	uint64_t errors;  /**< statements that did not parse */
} scry_fingerprinter_stats;

/** Initialiser of a scry_fingerprinter_stats the library fills in: sets `size`. */
#define SCRY_FINGERPRINTER_STATS_INIT { .size = sizeof(scry_fingerprinter_stats) }

/** Reads the statistics of a fingerprinter. Returns 0, or SCRY_EINVAL when
 * out->size is smaller than version 1 of the struct. */
SCRY_API int scry_fingerprinter_stats_get(const scry_fingerprinter *fpr,
	scry_fingerprinter_stats *out);

/**
 * Fingerprints one SQL text of `len` bytes (it need not be NUL-terminated).
 * `fpr` may be NULL: then nothing is cached. On a syntax error returns
 * SCRY_EPARSE with the message and the 1-based character position (as
 * PostgreSQL reports it) in err->message ("syntax error at or near "FORM"
 * at position 10"). A text containing a NUL byte is a SCRY_EPARSE too.
 */
SCRY_API int scry_fingerprint_compute(scry_fingerprinter *fpr, const char *sql,
	size_t len, uint64_t *out, scry_error *err);

/**
 * Fingerprints `n` texts. For each i, fingerprints[i] receives the value and
 * status[i] 0 or a negative code (the batch keeps going past errors).
 * `lens` may be NULL when every text is NUL-terminated.
 * Returns the number of texts that failed (>= 0), or a negative code when
 * the batch itself could not run.
 */
SCRY_API int scry_fingerprint_batch(scry_fingerprinter *fpr,
	const char *const *sqls, const size_t *lens, size_t n,
	uint64_t *fingerprints, int *status);

/**
 * Normalizes a SQL text as pg_query_normalize() does (constants become
 * $1, $2, ...) and appends the result to `out`.
 * Returns 0, SCRY_EPARSE or SCRY_ENOMEM.
 */
SCRY_API int scry_fingerprint_normalize(const char *sql, size_t len,
	scry_buf *out, scry_error *err);

/** One statement found by scry_fingerprint_split(). */
typedef struct scry_statement_span {
	size_t offset; /**< byte offset of the statement in the input */
	size_t length; /**< its length in bytes, without the ';' */
} scry_statement_span;

/**
 * Splits a text holding several statements (a .sql file) into statements,
 * using PostgreSQL's own scanner, so quotes, dollar quotes and comments are
 * handled as the server handles them. Writes a malloc'ed (through the scry
 * allocator) array to *spans, to be released with scry_statement_spans_free().
 * Empty statements are skipped. Text the scanner cannot split (an
 * unterminated quote or comment, a NUL byte) becomes one last statement
 * running to the end, which then fails to parse with its position; the
 * statements before it are still returned.
 */
SCRY_API int scry_fingerprint_split(const char *sql, size_t len,
	scry_statement_span **spans, size_t *count, scry_error *err);

/** Frees an array returned by scry_fingerprint_split(). Accepts NULL. */
SCRY_API void scry_statement_spans_free(scry_statement_span *spans);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_FINGERPRINT_H */
