/*
 * scry/store.h - the SQLite workload store.
 *
 * One SQLite file (WAL mode) holds the captured workload (sessions, events,
 * statements, patterns) and what replays measured (runs, samples, plans).
 * Its schema is documented in docs/store.md. A store handle is used by one
 * thread at a time; several processes may read a store while one writes.
 */
#ifndef SCRY_STORE_H
#define SCRY_STORE_H

#include "scry/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Schema version this library writes (PRAGMA user_version). */
#define SCRY_STORE_SCHEMA_VERSION 2

/** An open workload store. */
typedef struct scry_store scry_store;

/** Options of scry_store_open(). */
typedef struct scry_store_options {
	unsigned int version;  /**< SCRY_STORE_OPTIONS_VERSION */
	int read_only;         /**< open read-only; the file must exist */
	int must_exist;        /**< fail with SCRY_ENOTFOUND instead of creating */
	int durable;           /**< fsync every batch (synchronous=FULL); default NORMAL */
} scry_store_options;

/** Current version of scry_store_options. */
#define SCRY_STORE_OPTIONS_VERSION 1
/** Default options: read-write, created when missing, synchronous=NORMAL. */
#define SCRY_STORE_OPTIONS_INIT { SCRY_STORE_OPTIONS_VERSION, 0, 0, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_store_options_init(scry_store_options *opts);

/**
 * Opens (creating when missing, unless opts->must_exist or read_only) the
 * store at `path`. A file that is not a SQLite database, or is corrupt,
 * gives SCRY_ECORRUPT; a scry store of a newer schema, or a SQLite file that
 * is not a scry store, gives SCRY_ESCHEMA. Such files are never modified.
 * *out is NULL on failure.
 */
SCRY_API int scry_store_open(scry_store **out, const char *path,
	const scry_store_options *opts, scry_error *err);

/** Closes a store, flushing nothing more (every append is already committed). Accepts NULL. */
SCRY_API void scry_store_free(scry_store *store);

/** Path the store was opened with. */
SCRY_API const char *scry_store_path(const scry_store *store);

/* ------------------------------------------------------------------ */
/* Capture: sessions and events                                        */
/* ------------------------------------------------------------------ */

/** Where a session was captured. */
typedef enum scry_source {
	SCRY_SOURCE_API = 0,     /**< appended through the API */
	SCRY_SOURCE_PROXY = 1,   /**< the capture proxy */
	SCRY_SOURCE_CSVLOG = 2,  /**< a csvlog file */
	SCRY_SOURCE_JSONLOG = 3, /**< a jsonlog file */
	SCRY_SOURCE_STDERR = 4   /**< a stderr log with log_line_prefix */
} scry_source;

/** Describes a client session. All strings may be NULL; they are copied. */
typedef struct scry_session_info {
	unsigned int version;    /**< SCRY_SESSION_INFO_VERSION */
	scry_source source;
	const char *database;
	const char *user;
	const char *application;
	const char *client;      /**< client address or "[local]" */
	int64_t started_us;      /**< Unix time in microseconds */
} scry_session_info;

/** Current version of scry_session_info. */
#define SCRY_SESSION_INFO_VERSION 1
/** An empty session description (source API, no names, start 0). */
#define SCRY_SESSION_INFO_INIT { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, NULL, NULL, NULL, NULL, 0 }

/**
 * Adds a session and returns its id in *session_id (> 0).
 */
SCRY_API int scry_store_session_add(scry_store *store,
	const scry_session_info *info, int64_t *session_id, scry_error *err);

/**
 * Records the startup parameters of a session: every parameter of its
 * startup packet other than user and database (there is never a password
 * in it), one "key=value" per line, a newline or backslash in a value
 * escaped as \n / \\; e.g. "options=-c search_path=app\nDateStyle=ISO".
 * Replay applies them (docs/replay.md). NULL or "" clears them.
 */
SCRY_API int scry_store_session_set_params(scry_store *store, int64_t session_id,
	const char *params, scry_error *err);

/** Records when a session ended (Unix microseconds). */
SCRY_API int scry_store_session_end(scry_store *store, int64_t session_id,
	int64_t ended_us, scry_error *err);

/** Kind of a captured execution. */
typedef enum scry_event_kind {
	SCRY_EVENT_SIMPLE = 0,    /**< simple Query message (one statement of it) */
	SCRY_EVENT_EXTENDED = 1,  /**< Parse/Bind/Execute, with parameters */
	SCRY_EVENT_COPY = 2       /**< a COPY statement with its data transfer */
} scry_event_kind;

/** Format of a parameter value. */
typedef enum scry_param_format {
	SCRY_PARAM_TEXT = 0,
	SCRY_PARAM_BINARY = 1
} scry_param_format;

/** One bound parameter of an extended-protocol execution. */
typedef struct scry_param {
	uint32_t type_oid;        /**< 0 when the client left it unspecified */
	scry_param_format format;
	const char *value;        /**< NULL for SQL NULL */
	int32_t length;           /**< bytes of value; -1 for SQL NULL */
} scry_param;

/**
 * One captured execution of one statement. Strings and params are copied
 * by scry_store_append(). Fields may be appended in later versions: arrays
 * of events are passed with their element size (sizeof(scry_event)), so a
 * caller compiled against an older layout keeps working. scry_param, by
 * contrast, is frozen: it will never grow.
 */
typedef struct scry_event {
	int64_t session_id;      /**< from scry_store_session_add() */
	int64_t start_us;        /**< Unix time in microseconds */
	int64_t duration_us;     /**< -1 when unknown */
	scry_event_kind kind;
	const char *query;       /**< the statement text */
	size_t query_len;        /**< bytes of query (0: use strlen) */
	int nparams;
	const scry_param *params;
	int64_t rows;            /**< rows from CommandComplete; -1 unknown */
	char sqlstate[6];        /**< "" on success, else the SQLSTATE */
	const char *error_message; /**< NULL on success */
	/* version 2 (schema 2) */
	/** Row limit of each Execute of a row-limited portal (the driver's
	 *  fetch size); 0 when the statement ran in one Execute. `rows` is
	 *  then the total over every Execute of the portal. */
	int64_t fetch_rows;
	unsigned int flags;      /**< SCRY_EVENT_F_* bits */
	/** COPY ... FROM STDIN: the data stream the client sent (the CopyData
	 *  payloads concatenated), copied by the store; NULL when none or over
	 *  the capture limit (then SCRY_EVENT_F_COPY_DROPPED is set). */
	const void *copy_data;
	size_t copy_len;
} scry_event;

/** Event flag: the text was cut at the capture limit; never replayed. */
#define SCRY_EVENT_F_TRUNCATED 1u
/** Event flag: COPY FROM STDIN data was over the capture limit and not kept. */
#define SCRY_EVENT_F_COPY_DROPPED 2u
/** Event flag: the client cancelled the statement (57014 "due to user request"). */
#define SCRY_EVENT_F_CANCELLED 4u
/** Event flag: a row-limited portal the client closed (or dropped with
 *  its transaction) before it completed: `rows` is what it fetched. */
#define SCRY_EVENT_F_PORTAL_OPEN 8u

/**
 * Appends `n` events in one transaction (all or nothing). Events must be
 * given in capture order; each gets the next sequence number of its
 * session. Statements that do not parse are still stored (their pattern
 * carries the parse error), so nothing captured is lost. `event_size` is
 * sizeof(scry_event) as the caller compiled it (the array's stride); one
 * smaller than version 1 of the struct gives SCRY_EINVAL.
 */
SCRY_API int scry_store_append(scry_store *store, const scry_event *events,
	size_t n, size_t event_size, scry_error *err);

/**
 * Groups several calls (sessions added and ended, appends) into one
 * transaction: all of them are kept by scry_store_commit(), none by
 * scry_store_rollback(). Inside it, each append stays all or nothing on its
 * own (a failed append undoes only itself). One transaction at a time: a
 * second begin is SCRY_EINVAL. Freeing the store with a transaction open
 * rolls it back.
 */
SCRY_API int scry_store_begin(scry_store *store, scry_error *err);

/** Commits the transaction of scry_store_begin(); SCRY_EINVAL when none is open. */
SCRY_API int scry_store_commit(scry_store *store, scry_error *err);

/**
 * Rolls back the transaction of scry_store_begin(), if one is open: what it
 * added is gone, and the store forgets it too (a session id added inside it
 * is unknown afterwards). Accepts NULL.
 */
SCRY_API void scry_store_rollback(scry_store *store);


/** Counts of what a store holds. */
typedef struct scry_store_info {
	size_t size;             /**< set to sizeof(scry_store_info) before the call (SCRY_STORE_INFO_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	int64_t events;
	int64_t sessions;
	int64_t patterns;
	int64_t statements;
	int64_t runs;
	int64_t samples;
	int64_t first_us;        /**< earliest event start, 0 if none */
	int64_t last_us;         /**< latest event start, 0 if none */
	int64_t file_bytes;      /**< size of the database file */
	int schema_version;
} scry_store_info;

/** Initialiser of a scry_store_info the library fills in: sets `size`. */
#define SCRY_STORE_INFO_INIT { .size = sizeof(scry_store_info) }

/** Reads the counts of a store (set out->size first: SCRY_STORE_INFO_INIT). */
SCRY_API int scry_store_info_get(scry_store *store, scry_store_info *out,
	scry_error *err);

/* ------------------------------------------------------------------ */
/* Reading the workload                                                */
/* ------------------------------------------------------------------ */

/** A captured event as read back. Pointers stay valid until the next call on the iterator. */
typedef struct scry_stored_event {
	int64_t id;              /**< event id (capture order) */
	int64_t session_id;
	int64_t seq;             /**< 1-based position within its session */
	int64_t start_us;        /**< Unix microseconds */
	int64_t duration_us;     /**< -1 unknown */
	scry_event_kind kind;
	const char *query;       /**< exact captured text, NUL-terminated */
	size_t query_len;
	int nparams;
	const scry_param *params;
	int64_t rows;
	char sqlstate[6];
	int64_t pattern_id;
	uint64_t fingerprint;    /**< pattern key; for a text that did not parse, a hash of its text */
	int64_t fetch_rows;      /**< row limit per Execute (0: one Execute), see scry_event */
	unsigned int flags;      /**< SCRY_EVENT_F_* bits */
	const void *copy_data;   /**< COPY FROM STDIN data, NULL when none */
	size_t copy_len;
	const char *session_user;   /**< user of its session, NULL when unknown */
	const char *session_params; /**< startup parameters of its session (scry_session_info.params), NULL when none */
} scry_stored_event;

/** An iterator over events. */
typedef struct scry_event_iter scry_event_iter;

/** Filter for scry_store_events(). */
typedef struct scry_event_filter {
	unsigned int version;        /**< SCRY_EVENT_FILTER_VERSION */
	const uint64_t *fingerprints;/**< only these patterns; NULL = all */
	size_t nfingerprints;
	int64_t session_id;          /**< only this session; 0 = all */
} scry_event_filter;

/** Current version of scry_event_filter. */
#define SCRY_EVENT_FILTER_VERSION 1
/** No filter. */
#define SCRY_EVENT_FILTER_INIT { SCRY_EVENT_FILTER_VERSION, NULL, 0, 0 }

/** Starts iterating events in capture order. `filter` may be NULL. */
SCRY_API int scry_store_events(scry_store *store, const scry_event_filter *filter,
	scry_event_iter **out, scry_error *err);

/**
 * Advances the iterator. Returns 1 and sets *ev for a row, 0 at the end,
 * or a negative code. *ev is owned by the iterator.
 */
SCRY_API int scry_event_iter_next(scry_event_iter *it,
	const scry_stored_event **ev, scry_error *err);

/** Frees an iterator. Accepts NULL. */
SCRY_API void scry_event_iter_free(scry_event_iter *it);

/** A query pattern: all statements with one fingerprint. */
typedef struct scry_pattern {
	int64_t id;
	uint64_t fingerprint;
	const char *normalized;  /**< pg_query-normalized text of its first statement */
	const char *parse_error; /**< NULL, or why its text did not parse */
	int64_t count;           /**< captured executions */
	int64_t errors;          /**< captured executions that failed */
	int64_t total_us;        /**< sum of captured durations (known ones) */
	double mean_us;          /**< mean captured duration, 0 when unknown */
	int64_t first_us, last_us;
} scry_pattern;

/** An iterator over patterns. */
typedef struct scry_pattern_iter scry_pattern_iter;

/** Iterates patterns, most executed first. */
SCRY_API int scry_store_patterns(scry_store *store, scry_pattern_iter **out,
	scry_error *err);

/** Advances; 1 = row in *p (owned by the iterator), 0 = end, <0 error. */
SCRY_API int scry_pattern_iter_next(scry_pattern_iter *it,
	const scry_pattern **p, scry_error *err);

/** Frees a pattern iterator. Accepts NULL. */
SCRY_API void scry_pattern_iter_free(scry_pattern_iter *it);

/* ------------------------------------------------------------------ */
/* Replay results: runs, samples, plans                                */
/* ------------------------------------------------------------------ */

/**
 * Starts a run labelled `label` against `target` (a connection string with
 * any password removed by the caller). `options_json` may be NULL.
 * Returns its id in *run_id. A label may be reused: the newest run wins.
 */
SCRY_API int scry_store_run_begin(scry_store *store, const char *label,
	const char *target, const char *options_json, int64_t *run_id,
	scry_error *err);

/** Summary written when a run ends. */
typedef struct scry_run_summary {
	unsigned int version;     /**< SCRY_RUN_SUMMARY_VERSION */
	int64_t executions;
	int64_t errors;
	int64_t timeouts;
	int64_t reconnects;
	double per_second;
	const char *summary_json; /**< NULL, or extra JSON stored verbatim */
} scry_run_summary;

/** Current version of scry_run_summary. */
#define SCRY_RUN_SUMMARY_VERSION 1
/** An empty summary. */
#define SCRY_RUN_SUMMARY_INIT { SCRY_RUN_SUMMARY_VERSION, 0, 0, 0, 0, 0, NULL }

/** Ends a run, storing its summary. */
SCRY_API int scry_store_run_end(scry_store *store, int64_t run_id,
	const scry_run_summary *summary, scry_error *err);

/**
 * Whether a run finished: 1 when it ended and its summary does not say
 * `"complete":false` (an interrupted replay), else 0; SCRY_ENOTFOUND when
 * there is no such run.
 */
SCRY_API int scry_store_run_complete(scry_store *store, int64_t run_id, scry_error *err);

/** Finds the newest run with `label`; SCRY_ENOTFOUND when none. */
SCRY_API int scry_store_run_find(scry_store *store, const char *label,
	int64_t *run_id, scry_error *err);

/** One replayed execution. Arrays of samples are passed with their element size. */
typedef struct scry_sample {
	int64_t event_id;
	int32_t round;           /**< repetition number, 0-based */
	int64_t latency_us;      /**< client-side, CLOCK_MONOTONIC */
	int64_t rows;            /**< -1 unknown */
	char sqlstate[6];        /**< "" on success */
} scry_sample;

/**
 * Appends `n` samples of a run in one transaction. `sample_size` is
 * sizeof(scry_sample) as the caller compiled it (the array's stride).
 */
SCRY_API int scry_store_samples_append(scry_store *store, int64_t run_id,
	const scry_sample *samples, size_t n, size_t sample_size, scry_error *err);

/** A sample as read back, with its pattern. */
typedef struct scry_stored_sample {
	int64_t event_id;
	int64_t pattern_id;
	uint64_t fingerprint;
	int32_t round;
	int64_t latency_us;
	int64_t rows;
	char sqlstate[6];
	/* Appended fields. */
	int64_t session_id;      /**< the captured session of the event */
} scry_stored_sample;

/** An iterator over samples. */
typedef struct scry_sample_iter scry_sample_iter;

/** Iterates the samples of a run ordered by pattern, event, round. */
SCRY_API int scry_store_samples(scry_store *store, int64_t run_id,
	scry_sample_iter **out, scry_error *err);

/**
 * Iterates the samples of a run in replay order within each session:
 * ordered by event (capture order), then round, with session_id set.
 * The verdict reads runs this way to pair them and to find the first
 * failure of an aborted transaction.
 */
SCRY_API int scry_store_samples_by_event(scry_store *store, int64_t run_id,
	scry_sample_iter **out, scry_error *err);

/** Advances; 1 = row, 0 = end, <0 error. */
SCRY_API int scry_sample_iter_next(scry_sample_iter *it,
	const scry_stored_sample **s, scry_error *err);

/** Frees a sample iterator. Accepts NULL. */
SCRY_API void scry_sample_iter_free(scry_sample_iter *it);

/** Stores the EXPLAIN (FORMAT JSON) output of a pattern in a run (replacing any). */
SCRY_API int scry_store_plan_put(scry_store *store, int64_t run_id,
	uint64_t fingerprint, int64_t event_id, const char *plan_json,
	scry_error *err);

/** Reads a plan into `out`; SCRY_ENOTFOUND when there is none. */
SCRY_API int scry_store_plan_get(scry_store *store, int64_t run_id,
	uint64_t fingerprint, scry_buf *out, scry_error *err);

/* ------------------------------------------------------------------ */
/* Housekeeping: runs and compaction (docs/store.md)                   */
/* ------------------------------------------------------------------ */

/** A replay run as listed by scry_store_runs(). Strings are owned by the iterator. */
typedef struct scry_run_info {
	int64_t id;
	const char *label;
	const char *target;      /**< connection string, password removed; may be NULL */
	int64_t started_us, ended_us; /**< Unix microseconds; ended_us 0 while running or interrupted */
	int64_t executions, errors;
	int64_t samples;         /**< samples rows it holds */
} scry_run_info;

/** An iterator over runs. */
typedef struct scry_run_iter scry_run_iter;

/** Iterates the runs of a store, oldest first. */
SCRY_API int scry_store_runs(scry_store *store, scry_run_iter **out, scry_error *err);

/** Advances; 1 = row in *run (owned by the iterator), 0 = end, <0 error. */
SCRY_API int scry_run_iter_next(scry_run_iter *it, const scry_run_info **run, scry_error *err);

/** Frees a run iterator. Accepts NULL. */
SCRY_API void scry_run_iter_free(scry_run_iter *it);

/** Deletes a run with its samples and plans; SCRY_ENOTFOUND when there is no such run. */
SCRY_API int scry_store_run_delete(scry_store *store, int64_t run_id, scry_error *err);

/**
 * Deletes every run but the newest `keep` of each label (so that a baseline
 * and its candidate go together), with their samples and plans. *deleted
 * (may be NULL) receives how many runs were deleted. keep >= 0.
 */
SCRY_API int scry_store_runs_prune(scry_store *store, int keep, int64_t *deleted, scry_error *err);

/** What scry_store_compact() did. */
typedef struct scry_compact_result {
	size_t size;             /**< set to sizeof(scry_compact_result) before the call (SCRY_COMPACT_RESULT_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	int64_t events_before, events_after;
	int64_t bytes_before, bytes_after;   /**< database file size */
} scry_compact_result;

/** Initialiser of a scry_compact_result the library fills in: sets `size`. */
#define SCRY_COMPACT_RESULT_INIT { .size = sizeof(scry_compact_result) }

/**
 * Keeps at most `keep_per_pattern` captured events per pattern, spread evenly
 * over the capture (the first of each of that many consecutive windows), and
 * deletes the others with their samples; patterns keep their captured counts
 * (what impact weighs). Then VACUUMs the file. `out` may be NULL (else set
 * out->size first: SCRY_COMPACT_RESULT_INIT). keep_per_pattern >= 1.
 */
SCRY_API int scry_store_compact(scry_store *store, int keep_per_pattern, scry_compact_result *out,
	scry_error *err);

/** A log file imported into the store (scry_logimport_feed_file). */
typedef struct scry_log_file {
	unsigned int version;    /**< SCRY_LOG_FILE_VERSION */
	const char *name;        /**< as given (path), informative */
	uint64_t size;           /**< bytes imported (uncompressed) */
	uint64_t first_hash;     /**< XXH3-64 of its first min(256, size) bytes */
	uint64_t last_hash;      /**< XXH3-64 of its last min(64 KiB, size) bytes */
	int64_t imported_us;     /**< when (Unix microseconds); ignored by add */
} scry_log_file;

/** Current version of scry_log_file. */
#define SCRY_LOG_FILE_VERSION 1
/** A scry_log_file with its version set. */
#define SCRY_LOG_FILE_INIT { SCRY_LOG_FILE_VERSION, NULL, 0, 0, 0, 0 }

/** Records that a log file was imported. `name` is copied. */
SCRY_API int scry_store_log_file_add(scry_store *store, const scry_log_file *file,
	scry_error *err);

/**
 * Finds imported log files whose first block hashes to `first_hash`:
 * up to `cap` of them into the array `out` of elements of `elem_size`
 * bytes (sizeof(scry_log_file)), their name NULL, the number in *n.
 * Returns 0 or a negative code.
 */
SCRY_API int scry_store_log_files_find(scry_store *store, uint64_t first_hash,
	scry_log_file *out, size_t elem_size, size_t cap, size_t *n, scry_error *err);

/**
 * Fleets: appends the workload of the store file `in_path` (another proxy's
 * capture, a log import) to `store`. Patterns and statements are
 * deduplicated (a pattern's counts and timings are summed, its first/last
 * times widened); sessions and their events are copied as new sessions,
 * never joined with existing ones. Replay runs, samples and plans of the
 * input are not copied (they describe its own replays). One transaction:
 * on error nothing is merged. `in_path` must be an existing store and not
 * the file of `store`. Optional outputs: sessions and events added.
 * Returns 0, SCRY_ENOTFOUND, SCRY_EINVAL, SCRY_ECORRUPT or SCRY_ESTORE.
 */
SCRY_API int scry_store_merge(scry_store *store, const char *in_path,
	int64_t *sessions_added, int64_t *events_added, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_STORE_H */
