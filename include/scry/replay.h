/*
 * scry/replay.h - replays a captured workload against a database.
 *
 * One thread multiplexes every connection with libpq's asynchronous API.
 * Each captured session is replayed on its own connection, its statements
 * in captured order; extended-protocol statements are prepared once per
 * connection and executed with their captured parameters. Each execution
 * becomes one `samples` row of a `runs` row in the store.
 */
#ifndef SCRY_REPLAY_H
#define SCRY_REPLAY_H

#include "scry/core.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Scheduling mode. */
typedef enum scry_replay_mode {
	SCRY_REPLAY_FAST = 0,  /**< as fast as possible at the given concurrency */
	SCRY_REPLAY_TIMED = 1  /**< original start offsets x speed */
} scry_replay_mode;

/** What to do with statements that write. */
typedef enum scry_replay_writes {
	SCRY_WRITES_ROLLBACK = 0, /**< replay transactions, then roll them back (default) */
	SCRY_WRITES_SKIP = 1,     /**< do not replay writes */
	SCRY_WRITES_EXECUTE = 2   /**< replay writes and commit them */
} scry_replay_writes;

/** Options of a replay. Fields are only ever appended. */
typedef struct scry_replay_options {
	unsigned int version;        /**< SCRY_REPLAY_OPTIONS_VERSION */
	scry_replay_mode mode;
	double speed;                /**< timed mode: 2.0 = twice as fast; default 1.0 */
	int concurrency;             /**< fast mode: sessions at once; default 8 */
	int repeat;                  /**< rounds recorded per execution; default 1 */
	int warmup;                  /**< rounds run first and not recorded; default 0 */
	scry_replay_writes writes;
	int timeout_ms;              /**< statement_timeout per statement; default 30000 */
	const uint64_t *fingerprints;/**< replay only these patterns; NULL = all */
	size_t nfingerprints;
	scry_progress_fn progress;   /**< optional progress callback */
	void *progress_ctx;
	scry_log_fn log;             /**< optional log callback */
	void *log_ctx;
	/* version 2 */
	/** Captured user -> replay role, as "captured=replayed" strings: each
	 *  session runs `SET ROLE replayed` instead of its own user. */
	const char *const *user_map;
	size_t nuser_map;
	int ignore_users;            /**< never SET ROLE: every session runs as the target's user */
	int ignore_session_params;   /**< do not apply captured startup parameters */
	/** Extra time after timeout_ms before the replay gives up on a server
	 *  that does not answer at all (client-side timer); 0 = 1000 ms. */
	int client_margin_ms;
	/* Appended in version 3: the replay budget (docs/pipeline.md, "Replay budget"). */
	/**
	 * Executions per side to replay: a stratified sample of the capture (per
	 * pattern, spread over time and parameter values; at least
	 * min_per_pattern each; the rest in proportion to the captured counts;
	 * whole transactions). 0 = every captured execution.
	 */
	int64_t budget;
	/**
	 * Or: a sample sized to replay in about this many seconds, estimated from
	 * the captured latencies. 0 = none. When both are set the smaller wins.
	 */
	double budget_seconds;
	/** A budget keeps at least this many executions per pattern (all when fewer); default 20. */
	int min_per_pattern;
} scry_replay_options;

/** Current version of scry_replay_options. */
#define SCRY_REPLAY_OPTIONS_VERSION 3
/** Defaults: fast, concurrency 8, 1 round, rollback writes, 30 s timeout,
 *  captured users and startup parameters applied, no budget (at least 20
 *  per pattern when one is set). */
#define SCRY_REPLAY_OPTIONS_INIT \
	{ SCRY_REPLAY_OPTIONS_VERSION, SCRY_REPLAY_FAST, 1.0, 8, 1, 0, SCRY_WRITES_ROLLBACK, 30000, NULL, 0, NULL, NULL, \
	  NULL, NULL, NULL, 0, 0, 0, 0, 0, 0.0, 20 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_replay_options_init(scry_replay_options *opts);

/** What one run measured. */
typedef struct scry_replay_result {
	size_t size;             /**< set to sizeof(scry_replay_result) before the call (SCRY_REPLAY_RESULT_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	int64_t run_id;          /**< the `runs` row */
	int64_t executions;      /**< samples recorded */
	int64_t errors;          /**< executions that failed (timeouts included) */
	int64_t timeouts;        /**< executions cancelled by statement_timeout, or given up by the client-side timer */
	int64_t reconnects;      /**< connections lost and re-opened */
	int64_t skipped;         /**< executions not replayed (writes skip) */
	double per_second;       /**< executions per second of wall time */
	int64_t elapsed_us;
	int64_t lag_p50_us, lag_p99_us, lag_max_us; /**< timed mode: start lag */
	/* Appended: what a budget sampled (all zero without a budget). */
	int64_t captured;        /**< captured executions of the replayed patterns (in the store) */
	int64_t sampled;         /**< of them, the executions replayed per round (transactions' BEGIN/COMMIT included) */
	int64_t budget;          /**< the budget in executions the sample was sized for */
} scry_replay_result;

/** Initialiser of a scry_replay_result the library fills in: sets `size`. */
#define SCRY_REPLAY_RESULT_INIT { .size = sizeof(scry_replay_result) }

/** A replayer: holds options and can be cancelled from another thread. */
typedef struct scry_replay scry_replay;

/**
 * Creates a replayer reading the workload of `store`. The store must stay
 * open, and unused by other threads, while the replayer runs.
 */
SCRY_API int scry_replay_new(scry_replay **out, scry_store *store,
	const scry_replay_options *opts, scry_error *err);

/** Frees a replayer. Accepts NULL. */
SCRY_API void scry_replay_free(scry_replay *r);

/**
 * Replays the workload against `conninfo` (a libpq connection string or
 * URI) as a run labelled `label`. A target that cannot be reached, or a
 * wrong password, gives one SCRY_ECONNECT before anything runs.
 * After scry_replay_cancel(), returns SCRY_ECANCELED with the samples so far
 * kept (and *out filled for them). `out` may be NULL; otherwise set
 * out->size first (SCRY_REPLAY_RESULT_INIT): a size smaller than version 1
 * of the struct gives SCRY_EINVAL before anything runs.
 */
SCRY_API int scry_replay_run(scry_replay *r, const char *conninfo, const char *label,
	scry_replay_result *out, scry_error *err);

/**
 * Replays the same workload on two targets, interleaved (A, B, A, B per
 * pattern and round) so that machine noise hits both alike; records two
 * runs, `label_a` and `label_b`, whose samples pair by event and round.
 */
SCRY_API int scry_replay_run_ab(scry_replay *r,
	const char *conninfo_a, const char *label_a,
	const char *conninfo_b, const char *label_b,
	scry_replay_result *out_a, scry_replay_result *out_b, scry_error *err);

/** Asks a running replay to stop (within 100 ms). Callable from any thread. */
SCRY_API void scry_replay_cancel(scry_replay *r);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_REPLAY_H */
