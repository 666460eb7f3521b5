/*
 * scry/verdict.h - per-pattern comparison of a baseline run and a candidate
 * run: statistics, classification, and the plan change behind a regression.
 * Rules in docs/verdict.md.
 */
#ifndef SCRY_VERDICT_H
#define SCRY_VERDICT_H

#include "scry/core.h"
#include "scry/filter.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Classification of one pattern. */
typedef enum scry_verdict_class {
	SCRY_CLASS_UNCHANGED = 0,
	SCRY_CLASS_REGRESSED = 1,         /**< slower beyond threshold and floor */
	SCRY_CLASS_IMPROVED = 2,
	SCRY_CLASS_NEW_ERROR = 3,         /**< succeeds on baseline, fails on candidate */
	SCRY_CLASS_ROWS_CHANGED = 4,      /**< same success, different row counts */
	SCRY_CLASS_ONLY_IN_CANDIDATE = 5, /**< fails on baseline (new schema); judged against its best */
	SCRY_CLASS_INSUFFICIENT = 6       /**< too few samples to decide */
} scry_verdict_class;

/** Short lowercase name of a class ("regressed", "new-error", ...). */
SCRY_API const char *scry_verdict_class_name(scry_verdict_class c);

/** Options of scry_verdict_compute(). */
typedef struct scry_verdict_options {
	unsigned int version;         /**< SCRY_VERDICT_OPTIONS_VERSION */
	double threshold;             /**< ratio of medians; default 1.5 */
	double min_delta_ms;          /**< floor on the median's growth; default 0.5 */
	int min_samples;              /**< paired executions needed to judge a pattern; default 20 */
	/** For plans and best-index checks: connections to both sides (NULL = skip). */
	const char *baseline_conninfo;
	const char *candidate_conninfo;
	scry_log_fn log;
	void *log_ctx;
	scry_progress_fn progress;
	void *progress_ctx;
	/* Appended in version 2. */
	/** 1: patterns with fewer than min_samples pairs fail the gate. */
	int fail_on_insufficient;
	/**
	 * 1: with connections to two different clones, a pattern with fewer than
	 * min_samples pairs has its captured executions (real parameters, each in
	 * BEGIN ... ROLLBACK) repeated on both sides, interleaved, until it has
	 * them; the extra samples are stored in both runs. Default 0.
	 */
	int repeat_to_min;
	/**
	 * Polled between steps, and while a statement runs on a clone (which a
	 * cancel request then interrupts): when it points to a non-zero int the
	 * computation stops with SCRY_ECANCELED. Set by scry_pipeline_cancel().
	 */
	const volatile int *cancel;
	/* Version 3. */
	/**
	 * Which patterns are judged (scry/filter.h); NULL = all but session
	 * setup. Only read during scry_verdict_compute(). The others are listed
	 * in the reports' footer.
	 */
	const scry_pattern_filter *filter;
} scry_verdict_options;

/** Current version of scry_verdict_options. */
#define SCRY_VERDICT_OPTIONS_VERSION 3
/** Defaults. */
#define SCRY_VERDICT_OPTIONS_INIT { SCRY_VERDICT_OPTIONS_VERSION, 1.5, 0.5, 20, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL }

/** Fills `opts` with the defaults. */
SCRY_API void scry_verdict_options_init(scry_verdict_options *opts);

/** The verdict on one pattern. Strings are owned by the scry_verdict. */
typedef struct scry_pattern_verdict {
	uint64_t fingerprint;
	const char *normalized;
	scry_verdict_class cls;
	int64_t baseline_n, candidate_n;           /**< samples */
	int64_t baseline_errors, candidate_errors;
	double baseline_p50_ms, baseline_p95_ms, baseline_p99_ms;
	double candidate_p50_ms, candidate_p95_ms, candidate_p99_ms;
	double ratio;                              /**< median paired ratio candidate/baseline (the estimate the interval is built around) */
	double ratio_low, ratio_high;              /**< confidence interval of ratio */
	double impact_ms;                          /**< executions x median delta */
	double captured_mean_ms;                   /**< mean latency at capture, 0 unknown */
	const char *candidate_sqlstate;            /**< new-error: the SQLSTATE, else NULL */
	const char *candidate_error;               /**< new-error: the message, else NULL */
	const char *plan_change;                   /**< one-line plan diff, or NULL */
	const char *baseline_plan;                 /**< EXPLAIN text summary, or NULL */
	const char *candidate_plan;
	const char *suggested_index;               /**< only-in-candidate: CREATE INDEX ..., or NULL */
	double best_p50_ms;                        /**< only-in-candidate: p50 with that index */
	/* Appended fields (version 1 of this struct ends above). */
	int flagged;                               /**< 1 when this pattern fails the gate */
	int64_t pairs;                             /**< executions that succeeded on both sides, paired by event and round */
	int64_t new_failures;                      /**< pairs that succeeded on baseline and failed on candidate */
	int64_t rows_differ;                       /**< successful pairs whose row counts differ */
	int64_t executions;                        /**< captured executions of the pattern (weight of impact_ms) */
	double unindexed_p50_ms;                   /**< only-in-candidate: p50 measured beside best_p50_ms, without the index */
	const char *baseline_sqlstate;             /**< only-in-candidate: why it fails on baseline, else NULL */
	const char *note;                          /**< one line for people: why this class, or why not judged; may be NULL */
	/* Appended fields. */
	int64_t baseline_aborted, candidate_aborted; /**< executions that failed with 25P02 because an earlier statement of another pattern failed in their transaction */
	double p95_ratio;                          /**< candidate p95 / baseline p95 */
	double p95_ratio_low, p95_ratio_high;      /**< its interval (each side's p95 interval combined) */
	int tail_regressed;                        /**< p95 interval above the threshold while the median is not: reported, not gated */
	int work_measured;                         /**< 1 when the work fields below are known */
	double baseline_work, candidate_work;      /**< blocks per execution (shared hit+read, temp read+written), median of EXPLAIN (ANALYZE, BUFFERS) samples */
	double work_ratio;                         /**< candidate_work / baseline_work */
	int plan_changed;                          /**< the plan's shape (node types, indexes) differs */
	int work_regressed;                        /**< regressed by the work rule (plan changed, work grew by the threshold, timing ratio > 1) */
	double server_ratio;                       /**< candidate / baseline server time (planning + execution) of the EXPLAIN ANALYZE samples; 0 unknown */
} scry_pattern_verdict;

/** A computed verdict. */
typedef struct scry_verdict scry_verdict;

/**
 * Compares the newest runs labelled `baseline` and `candidate` in `store`.
 * When opts gives both conninfos, captures EXPLAIN (ANALYZE, BUFFERS,
 * FORMAT JSON) of regressed patterns on both sides (stored in `plans`), and
 * measures only-in-candidate patterns against their best indexes.
 */
SCRY_API int scry_verdict_compute(scry_verdict **out, scry_store *store,
	const char *baseline, const char *candidate,
	const scry_verdict_options *opts, scry_error *err);

/** Number of patterns in a verdict. */
SCRY_API size_t scry_verdict_count(const scry_verdict *v);

/** The i-th pattern, worst first; NULL when out of range. */
SCRY_API const scry_pattern_verdict *scry_verdict_get(const scry_verdict *v, size_t i);

/** Patterns that fail the gate (regressed, new-error, flagged only-in-candidate). */
SCRY_API size_t scry_verdict_failures(const scry_verdict *v);

/** Totals of a verdict, per class, for report summaries. */
typedef struct scry_verdict_summary {
	size_t size;             /**< set to sizeof(scry_verdict_summary) before the call (SCRY_VERDICT_SUMMARY_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	size_t patterns;
	size_t by_class[16];       /**< indexed by scry_verdict_class; room for classes added later (0 past the last) */
	size_t failures;           /**< same as scry_verdict_failures() */
	double threshold, min_delta_ms; /**< the options the verdict used */
	const char *baseline_label, *candidate_label;
	int64_t baseline_run, candidate_run;
} scry_verdict_summary;

/** Initialiser of a scry_verdict_summary the library fills in: sets `size`. */
#define SCRY_VERDICT_SUMMARY_INIT { .size = sizeof(scry_verdict_summary) }

/**
 * Fills `out` with the totals of `v`. Strings are owned by `v`. Returns 0,
 * or SCRY_EINVAL when out->size is smaller than version 1 of the struct.
 */
SCRY_API int scry_verdict_summarize(const scry_verdict *v, scry_verdict_summary *out);

/** Frees a verdict. Accepts NULL. */
SCRY_API void scry_verdict_free(scry_verdict *v);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_VERDICT_H */
