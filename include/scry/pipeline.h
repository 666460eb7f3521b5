/*
 * scry/pipeline.h - test a migration end to end: clone the target, apply
 * the migration to clone B, settle both clones, replay the captured
 * workload on A and B interleaved, compute the verdict (with the plans of
 * what regressed) and optionally apply a fix and validate again.
 *
 * This is what `scry ci test-migration` and the bindings' test_migration
 * run. Rules and decisions in docs/pipeline.md.
 */
#ifndef SCRY_PIPELINE_H
#define SCRY_PIPELINE_H

#include "scry/core.h"
#include "scry/impact.h"
#include "scry/replay.h"
#include "scry/report.h"
#include "scry/shadow.h"
#include "scry/store.h"
#include "scry/verdict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where the workload is replayed. */
typedef enum scry_pipeline_mode {
	/** Two clones of the target (A as is, B migrated), replayed interleaved. */
	SCRY_PIPELINE_CLONES = 0,
	/**
	 * On the target itself: replay, migrate, settle, replay again. For when
	 * cloning is impossible. The migration stays applied: only for a
	 * database that may be thrown away (a CI or staging copy).
	 */
	SCRY_PIPELINE_SEQUENTIAL = 1
} scry_pipeline_mode;

/** Phases reported to the progress callback (its `phase` argument). */
#define SCRY_PHASE_CLONING "cloning"     /**< creating clones A and B */
#define SCRY_PHASE_MIGRATING "migrating" /**< applying the migration */
#define SCRY_PHASE_SETTLING "settling"   /**< VACUUM ANALYZE */
#define SCRY_PHASE_REPLAYING "replaying" /**< done/total = executions */
#define SCRY_PHASE_DECIDING "deciding"   /**< verdict and plans */
#define SCRY_PHASE_FIXING "fixing"       /**< applying the fix */
#define SCRY_PHASE_CLEANUP "cleanup"     /**< dropping the clones */

/** Options of a pipeline. Fields are only ever appended. */
typedef struct scry_pipeline_options {
	unsigned int version;            /**< SCRY_PIPELINE_OPTIONS_VERSION */
	scry_pipeline_mode mode;
	int no_settle;                   /**< skip VACUUM ANALYZE after migrating */
	/**
	 * Replay options (NULL = defaults, with the budget
	 * SCRY_PIPELINE_DEFAULT_BUDGET). Their progress callback is replaced by
	 * the pipeline's; their min_per_pattern is raised to the verdict's
	 * minimum so that a budget never starves a pattern.
	 */
	const scry_replay_options *replay;
	/** Verdict options (NULL = defaults); the conninfos are filled in. */
	const scry_verdict_options *verdict;
	/**
	 * Optional fix applied to B after the first verdict, then validated
	 * again. The struct is copied; the strings and argv it points to must
	 * stay valid until scry_pipeline_run() returns.
	 */
	const scry_migration *fix;
	/** Prefix of the run labels; NULL = "pipeline". Runs are "<prefix>-baseline", ... */
	const char *label_prefix;
	/** Clone name suffix (see scry_shadow_options); NULL = unique. */
	const char *suffix;
	scry_progress_fn progress;       /**< phases above */
	void *progress_ctx;
	scry_log_fn log;
	void *log_ctx;
	/* Version 2: what the migration does to live traffic (docs/impact.md). */
	/**
	 * Do not replay the workload on the candidate while the migration runs
	 * (nor sample its locks). Sequential mode never does.
	 */
	int no_impact;
	/** Speed of that replay: 1.0 = the captured rate (default). */
	double impact_speed;
	/** Gate: fail when a replayed query waited longer than this on the migration (ms); 0 = off. */
	int64_t max_lock_wait_ms;
	/** Gate: fail when the migration took longer than this (s); 0 = off. */
	double max_migration_seconds;
	/* Appended in version 3: clone providers and the migration timeout (docs/pipeline.md). */
	scry_clone_provider clone;       /**< how the clones are made; default SCRY_CLONE_TEMPLATE */
	const char *baseline;            /**< SCRY_CLONE_GIVEN: connection string of A */
	const char *candidate;           /**< SCRY_CLONE_GIVEN: connection string of B */
	const char *clone_command;       /**< SCRY_CLONE_COMMAND: see scry_shadow_options.clone_command */
	int migration_timeout_s;         /**< kill a migration (or fix) command after this many seconds; 0 = none */
} scry_pipeline_options;

/** Current version of scry_pipeline_options. */
#define SCRY_PIPELINE_OPTIONS_VERSION 3
/** Defaults: clones, settle, default replay and verdict, no fix. */
#define SCRY_PIPELINE_OPTIONS_INIT \
	{ SCRY_PIPELINE_OPTIONS_VERSION, SCRY_PIPELINE_CLONES, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
	  0, 1.0, 0, 0, SCRY_CLONE_TEMPLATE, NULL, NULL, NULL, 0 }

/**
 * The replay budget (executions per side) the pipeline uses when its replay
 * options are NULL, and that `scry ci test-migration` uses unless told
 * otherwise: sized so that a CI run takes about a minute whatever the store
 * holds (docs/pipeline.md, "Replay budget").
 */
#define SCRY_PIPELINE_DEFAULT_BUDGET 20000

/** Fills `opts` with the defaults. */
SCRY_API void scry_pipeline_options_init(scry_pipeline_options *opts);

/** A migration test. */
typedef struct scry_pipeline scry_pipeline;

/**
 * Prepares a test of migrations against `target` (libpq conninfo or URI)
 * with the workload captured in `store` (which must stay open, unused by
 * other threads, until scry_pipeline_free()). Copies `opts`, the replay
 * and verdict options and the strings (see `fix` for the one exception).
 * *out is NULL on failure.
 */
SCRY_API int scry_pipeline_new(scry_pipeline **out, scry_store *store, const char *target,
	const scry_pipeline_options *opts, scry_error *err);

/**
 * Runs the whole cycle with `migration`. Returns 0 when a verdict was
 * reached, whatever it says (see scry_pipeline_failures()). Otherwise:
 * SCRY_EMIGRATION when the migration (or the fix) failed, with its output
 * in err->message; SCRY_ECANCELED after scry_pipeline_cancel(); SCRY_EPG
 * when cloning is impossible (the message says why and what to do);
 * SCRY_ENOTFOUND when the store holds no workload. In clone mode the
 * clones are dropped before it returns, whatever happened.
 * Can be run once per pipeline.
 */
SCRY_API int scry_pipeline_run(scry_pipeline *p, const scry_migration *migration,
	scry_error *err);

/** Asks a running pipeline to stop and clean up. Callable from any thread. */
SCRY_API void scry_pipeline_cancel(scry_pipeline *p);

/** The migration's verdict; NULL before one was reached. Owned by the pipeline. */
SCRY_API const scry_verdict *scry_pipeline_verdict(const scry_pipeline *p);

/** The verdict after the fix; NULL without a fix. Owned by the pipeline. */
SCRY_API const scry_verdict *scry_pipeline_fix_verdict(const scry_pipeline *p);

/**
 * Failures of the final verdict (after the fix when there is one), plus the
 * migration-impact limits exceeded (max_lock_wait_ms, max_migration_seconds):
 * what gates a CI pipeline. 0 when no verdict was reached.
 */
SCRY_API size_t scry_pipeline_failures(const scry_pipeline *p);

/** What the run measured, besides the verdicts. */
typedef struct scry_pipeline_stats {
	size_t size;             /**< set to sizeof(scry_pipeline_stats) before the call (SCRY_PIPELINE_STATS_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	int64_t clone_us, migrate_us, settle_us, replay_us, verdict_us, fix_us, total_us;
} scry_pipeline_stats;

/**
 * What the migration did to the workload replayed while it ran; NULL when
 * it was not measured (no_impact, sequential mode, or no verdict reached).
 * Owned by the pipeline.
 */
SCRY_API const scry_impact *scry_pipeline_impact(const scry_pipeline *p);


/** Initialiser of a scry_pipeline_stats the library fills in: sets `size`. */
#define SCRY_PIPELINE_STATS_INIT { .size = sizeof(scry_pipeline_stats) }

/**
 * Copies the measurements of the last run into *out. Returns 0, or
 * SCRY_EINVAL when out->size is smaller than version 1 of the struct.
 */
SCRY_API int scry_pipeline_stats_get(const scry_pipeline *p, scry_pipeline_stats *out);

/** The replays of a pipeline, for scry_pipeline_replay_result_get(). */
typedef enum scry_pipeline_replay {
	SCRY_PIPELINE_BASELINE = 0,      /**< the first replay, side A */
	SCRY_PIPELINE_CANDIDATE = 1,     /**< the first replay, side B (migrated) */
	SCRY_PIPELINE_FIXED = 2,         /**< the replay after the fix (B) */
	SCRY_PIPELINE_FIXED_BASELINE = 3 /**< its paired A run */
} scry_pipeline_replay;

/**
 * Copies what one replay of the last run measured into *out (a replay that
 * did not happen reads as zeros). Returns 0, or SCRY_EINVAL for an unknown
 * `which` or an out->size smaller than version 1 of scry_replay_result.
 */
SCRY_API int scry_pipeline_replay_result_get(const scry_pipeline *p, scry_pipeline_replay which,
	scry_replay_result *out);

/**
 * Renders the verdict(s) in `format` into `out`. With a fix, text and
 * Markdown show both verdicts one after the other; JSON is the migration's
 * verdict object with an "after_fix" member holding the second; JUnit
 * shows the final verdict.
 */
SCRY_API int scry_pipeline_report(const scry_pipeline *p, scry_report_format format,
	scry_buf *out, scry_error *err);

/** Frees a pipeline (dropping any clone left). Accepts NULL. */
SCRY_API void scry_pipeline_free(scry_pipeline *p);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_PIPELINE_H */
