/*
 * scry/impact.h - what a migration does to live traffic while it runs.
 *
 * While a migration runs on a clone, a sampler polls the clone's pg_locks
 * and pg_stat_activity every few milliseconds: the table locks the
 * migration holds (mode, table, how long, the statement that took them)
 * and the queries that wait on them (pattern, lock, how long). Before and
 * after, it notes table rewrites (relfilenode changes), new and invalid
 * indexes and the WAL written. The pipeline replays the captured workload
 * on the clone meanwhile (scry_pipeline_options.no_impact turns it off) and
 * adds the latency of each pattern during the migration beside the same
 * pattern on the baseline at the same moment.
 *
 * The migration's own connections are told apart by their application_name
 * ("scry migration" by default: the pipeline sets PGAPPNAME for a
 * migration command and application_name for SQL and callbacks).
 * Rules and decisions in docs/impact.md.
 */
#ifndef SCRY_IMPACT_H
#define SCRY_IMPACT_H

#include "scry/core.h"
#include "scry/report.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The application_name the migration's connections carry by default. */
#define SCRY_IMPACT_MIGRATION_APP "scry migration"

/** Options of a sampler. Fields are only ever appended. */
typedef struct scry_impact_options {
	unsigned int version;              /**< SCRY_IMPACT_OPTIONS_VERSION */
	int interval_ms;                   /**< time between polls; default 5 */
	/** application_name of the migration's connections; NULL = SCRY_IMPACT_MIGRATION_APP */
	const char *migration_application;
	/**
	 * Table locks held for less than this are not listed (they block no
	 * one for long; a brief catalog-only ALTER takes one); default 20.
	 */
	int min_lock_ms;
	scry_log_fn log;                   /**< optional log callback */
	void *log_ctx;
} scry_impact_options;

/** Current version of scry_impact_options. */
#define SCRY_IMPACT_OPTIONS_VERSION 1
/** Defaults: poll every 5 ms, "scry migration", list locks held 20 ms or more. */
#define SCRY_IMPACT_OPTIONS_INIT { SCRY_IMPACT_OPTIONS_VERSION, 5, NULL, 20, NULL, NULL }

/** Fills `opts` with the defaults. */
SCRY_API void scry_impact_options_init(scry_impact_options *opts);

/** A sampler and, once stopped, what it measured. */
typedef struct scry_impact scry_impact;

/**
 * Connects to `conninfo` (the clone being migrated), notes its tables,
 * indexes and WAL position, and starts polling on a thread of its own.
 * *out is NULL on failure (SCRY_ECONNECT, SCRY_EPG, SCRY_ENOMEM).
 */
SCRY_API int scry_impact_start(scry_impact **out, const char *conninfo,
	const scry_impact_options *opts, scry_error *err);

/**
 * Stops polling and notes rewrites, indexes and WAL written. Call once the
 * migration ended. Returns 0, or SCRY_EPG when the after-snapshot failed
 * (what was polled is kept).
 */
SCRY_API int scry_impact_stop(scry_impact *im, scry_error *err);

/** Frees a sampler (stopping it if needed). Accepts NULL. */
SCRY_API void scry_impact_free(scry_impact *im);

/** A table lock the migration held (at least min_lock_ms). */
typedef struct scry_impact_lock {
	const char *relation;   /**< table, as regclass prints it */
	const char *mode;       /**< e.g. "AccessExclusiveLock" */
	int64_t held_us;        /**< longest continuous hold */
	int64_t start_us;       /**< when that hold began, from the sampler's start */
	const char *statement;  /**< what the migration's connection was running */
	const char *advice;     /**< a known safer way, or NULL */
} scry_impact_lock;

/** Queries of one pattern that waited on the migration. */
typedef struct scry_impact_wait {
	uint64_t fingerprint;   /**< of the waiting query's text; 0 when it did not parse */
	const char *query;      /**< its text, as pg_stat_activity showed it */
	const char *relation;   /**< the table waited on, or "" when unknown (a row lock) */
	const char *lock;       /**< the wait_events seen, comma-separated: relation, transactionid, tuple, extend, ... */
	int64_t count;          /**< distinct executions seen waiting */
	int64_t max_wait_us;
	int64_t total_wait_us;
	const char *blocker;    /**< the migration's statement they waited behind */
	const char *advice;     /**< a known safer way to run it, or NULL */
} scry_impact_wait;

/** A pattern's latency while the migration ran, beside the baseline at the same moment. */
typedef struct scry_impact_pattern {
	uint64_t fingerprint;
	int64_t executions;       /**< replayed on the migrating clone */
	double baseline_p50_ms;   /**< the same executions on the baseline */
	double during_p50_ms;     /**< on the migrating clone */
	double during_max_ms;
	double ratio;             /**< during_p50 / baseline_p50 */
	int64_t errors;           /**< failed on the migrating clone, succeeded on the baseline */
	char sqlstate[6];         /**< the first such error */
	/**
	 * p95 ratio above the threshold and the p95 grew by more than the floor
	 * (the tail is where waits on a lock show), or errors.
	 */
	int exceeded;
	double baseline_p95_ms, during_p95_ms;
	double p95_ratio;         /**< during_p95 / baseline_p95 */
} scry_impact_pattern;

/** Totals. The leading size is the caller's sizeof: fields are only appended. */
typedef struct scry_impact_summary {
	size_t size;              /**< set by the caller to sizeof(scry_impact_summary) */
	int64_t duration_us;      /**< from start to stop: the migration's duration */
	int64_t polls;            /**< pg_locks samples taken */
	int64_t wal_bytes;        /**< WAL written on the server meanwhile (-1 unknown) */
	int64_t max_wait_us;      /**< longest wait of any query on the migration */
	int64_t waits;            /**< queries seen waiting */
	size_t nlocks, nwaits, npatterns, nrewrites, nnew_indexes, ninvalid_indexes;
} scry_impact_summary;

/** Initialiser of a scry_impact_summary: sets `size`. */
#define SCRY_IMPACT_SUMMARY_INIT { .size = sizeof(scry_impact_summary) }

/**
 * Fills *out, only as many bytes as out->size says (then set to what was
 * written). Returns 0, or SCRY_EINVAL when out->size is smaller than
 * version 1 of the struct.
 */
SCRY_API int scry_impact_summarize(const scry_impact *im, scry_impact_summary *out);

/** The i-th lock (longest first); NULL past the end. Owned by the sampler. */
SCRY_API const scry_impact_lock *scry_impact_lock_get(const scry_impact *im, size_t i);
/** The i-th waiting pattern (longest wait first); NULL past the end. */
SCRY_API const scry_impact_wait *scry_impact_wait_get(const scry_impact *im, size_t i);
/** The i-th pattern's latency during the migration; NULL past the end. */
SCRY_API const scry_impact_pattern *scry_impact_pattern_get(const scry_impact *im, size_t i);

/** What changed on disk: which list scry_impact_object_get() reads. */
typedef enum scry_impact_object {
	SCRY_IMPACT_REWRITTEN = 0,      /**< tables whose files were rewritten */
	SCRY_IMPACT_NEW_INDEX = 1,      /**< indexes the migration created */
	SCRY_IMPACT_INVALID_INDEX = 2   /**< indexes left invalid (a failed CONCURRENTLY) */
} scry_impact_object;

/** The i-th name in a list; NULL past the end. */
SCRY_API const char *scry_impact_object_get(const scry_impact *im, scry_impact_object which, size_t i);

/**
 * Adds the latency of each pattern during the migration from the samples
 * of paired replay runs (baseline `runs_a[i]`, migrating clone `runs_b[i]`)
 * in `store`. A pattern `exceeded` when its during/baseline p95 ratio is
 * above `threshold` and the p95 grew by more than `min_delta_ms`, or when
 * executions failed on the migrating clone that succeeded on the baseline.
 */
SCRY_API int scry_impact_add_latency(scry_impact *im, scry_store *store,
	const int64_t *runs_a, const int64_t *runs_b, size_t nruns,
	double threshold, double min_delta_ms, scry_error *err);

/** The gate: both limits off (0) by default. */
typedef struct scry_impact_gate {
	unsigned int version;          /**< SCRY_IMPACT_GATE_VERSION */
	int64_t max_lock_wait_ms;      /**< fail when a query waited longer on the migration; 0 = off */
	double max_migration_seconds;  /**< fail when the migration took longer; 0 = off */
} scry_impact_gate;

/** Current version of scry_impact_gate. */
#define SCRY_IMPACT_GATE_VERSION 1
/** Both limits off. */
#define SCRY_IMPACT_GATE_INIT { SCRY_IMPACT_GATE_VERSION, 0, 0 }

/** How many of the gate's limits were exceeded (0, 1 or 2). `gate` may be NULL. */
SCRY_API size_t scry_impact_failures(const scry_impact *im, const scry_impact_gate *gate);

/**
 * Renders the "While the migration ran" section in `format` (appended to
 * `out`): text and Markdown a section, JSON the value of a
 * "migration_impact" member (an object), JUnit a <testsuite>, HTML a
 * <section> fragment holding the text section.
 */
SCRY_API int scry_impact_render(const scry_impact *im, const scry_impact_gate *gate,
	scry_report_format format, scry_buf *out, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_IMPACT_H */
