/*
 * scry/logimport.h - import a workload from PostgreSQL server logs.
 *
 * Reads csvlog, jsonlog (PostgreSQL 15+) or stderr logs (with the server's
 * log_line_prefix) written with `log_statement = all` and/or
 * `log_min_duration_statement = 0`, and records one event per executed
 * statement into a workload store, as the capture proxy would: text,
 * parameters of extended-protocol executions, start time, duration,
 * SQLSTATE of failures, session (database, user, application).
 *
 * The importer streams: feed it bytes in chunks of any size; its memory
 * depends on the longest log record and the number of sessions open at
 * once, not on the size of the log. Lines it cannot use are counted and the
 * first few are kept with their line numbers; they are never fatal.
 * docs/logimport.md explains the rules.
 *
 * An importer is used by one thread at a time.
 */
#ifndef SCRY_LOGIMPORT_H
#define SCRY_LOGIMPORT_H

#include "scry/core.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Log formats the importer reads. */
typedef enum scry_log_format {
	SCRY_LOG_CSVLOG = 0,  /**< log_destination = 'csvlog' */
	SCRY_LOG_JSONLOG = 1, /**< log_destination = 'jsonlog' (PostgreSQL 15+) */
	SCRY_LOG_STDERR = 2,  /**< log_destination = 'stderr' (line_prefix given or detected) */
	/**
	 * Detected from the first bytes: csvlog, jsonlog, stderr, stderr through
	 * syslog, or the JSON wrappers of CloudNativePG and Google Cloud Logging.
	 */
	SCRY_LOG_AUTO = 3
} scry_log_format;

/** Options of scry_logimport_new(). */
typedef struct scry_logimport_options {
	unsigned int version;        /**< SCRY_LOGIMPORT_OPTIONS_VERSION */
	scry_log_format format;      /**< the log's format */
	/**
	 * stderr only: the server's log_line_prefix, exactly as in
	 * postgresql.conf (without the quotes). It must contain %c or %p.
	 * NULL: detected from the first lines (stats.detected says what).
	 */
	const char *line_prefix;
	size_t batch_events;         /**< events per store transaction; 0 = 4096 */
	size_t max_record_bytes;     /**< longer log records are skipped; 0 = 64 MiB */
	size_t max_open_sessions;    /**< sessions tracked at once; 0 = 65536 */
	scry_progress_fn progress;   /**< optional; phase "import", bytes done/total */
	void *progress_ctx;          /**< passed to progress */
	/* version 2 */
	/**
	 * The server's log_timezone (a zone name such as "Europe/Berlin"): zone
	 * abbreviations in log times are read in that zone. NULL: read through
	 * every zone of the system's zone database (ambiguous ones are noted).
	 */
	const char *timezone;
	/**
	 * The server's lc_messages: "de", "fr", "de_DE.UTF-8", "German", "C" or
	 * "en" for English. NULL or "auto": detected from the log's keywords.
	 */
	const char *lang;
	/** Non-zero: import files even when this store already has them. */
	int force;
} scry_logimport_options;

/** Current version of scry_logimport_options. */
#define SCRY_LOGIMPORT_OPTIONS_VERSION 2
/** Default options (csvlog). */
#define SCRY_LOGIMPORT_OPTIONS_INIT \
	{ SCRY_LOGIMPORT_OPTIONS_VERSION, SCRY_LOG_CSVLOG, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_logimport_options_init(scry_logimport_options *opts);

/** Number of skipped lines kept as examples in scry_logimport_stats. */
#define SCRY_LOGIMPORT_SKIP_SAMPLES 5

/** A log line the importer could not use. */
typedef struct scry_logimport_skip {
	uint64_t line;           /**< 1-based line number where the record starts */
	char reason[96];         /**< why it was skipped */
	char text[128];          /**< the start of the line (truncated) */
} scry_logimport_skip;

/** What an import read and recorded. */
typedef struct scry_logimport_stats {
	size_t size;             /**< set to sizeof(scry_logimport_stats) before the call (SCRY_LOGIMPORT_STATS_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	uint64_t bytes;          /**< bytes read (uncompressed) */
	uint64_t lines;          /**< physical lines read */
	uint64_t records;        /**< log records (one message with its detail lines) */
	uint64_t statements;     /**< events recorded */
	uint64_t failed;         /**< of those, failed statements (with a SQLSTATE) */
	uint64_t sessions;       /**< sessions recorded */
	uint64_t patterns;       /**< patterns in the store after the import */
	uint64_t new_patterns;   /**< patterns this import added to the store */
	uint64_t unpaired_durations; /**< `duration:` lines with no statement to attach to */
	uint64_t skipped;        /**< lines or records that could not be used */
	unsigned nskip_samples;  /**< entries used in skip_samples */
	scry_logimport_skip skip_samples[SCRY_LOGIMPORT_SKIP_SAMPLES]; /**< the first skipped */
	char warning[160];       /**< a note about the whole import, or "" (e.g. unknown time zone) */
	/* version 2 (fields after `warning`) */
	/** What was detected (format, log_line_prefix, language), or "". */
	char detected[256];
	uint64_t files;          /**< files fed */
	uint64_t files_skipped;  /**< files skipped whole as already imported into this store */
	uint64_t bytes_skipped;  /**< bytes skipped as already imported (whole files or their start) */
	/** Why nothing was imported from a non-empty log, or "" (then statements > 0 or the log was empty). */
	char nothing_reason[256];
} scry_logimport_stats;

/** Initialiser of a scry_logimport_stats the library fills in: sets `size`. */
#define SCRY_LOGIMPORT_STATS_INIT { .size = sizeof(scry_logimport_stats) }

/** A log importer writing into one store. */
typedef struct scry_logimport scry_logimport;

/**
 * Creates an importer that records into `store` (which must stay open
 * until scry_logimport_free()). `opts` may be NULL (csvlog). For stderr, a
 * line_prefix without %c or %p gives SCRY_EINVAL with a message saying
 * what to add. *out is NULL on failure.
 */
SCRY_API int scry_logimport_new(scry_logimport **out, scry_store *store,
	const scry_logimport_options *opts, scry_error *err);

/**
 * Feeds `n` bytes of log. Chunks may split lines and records anywhere.
 * Complete events are written to the store in batches. Returns 0, or a
 * negative code when the store fails (bad log lines are never an error).
 */
SCRY_API int scry_logimport_feed(scry_logimport *imp, const void *data,
	size_t n, scry_error *err);

/**
 * Reads a whole file and feeds it: plain, gzip, bzip2, xz or zstd,
 * recognised by content ("-" is standard input). Several files may be fed
 * in turn to one importer (rotated logs: a session may go on in the next
 * file). A file this store already imported (same content, by size and
 * hashes of its first and last 64 KiB) is skipped, or only its new end is
 * read when it grew, unless opts.force; stats.files_skipped counts them
 * (regular files only: standard input and pipes are read once).
 * A record cut at the end of the file is counted as skipped. A truncated
 * or corrupt compressed file is read up to the damage: its events are
 * kept and SCRY_EIO says where it ended. Reports progress in bytes of the
 * file as stored on disk. Returns 0, SCRY_EIO, or a store error.
 */
SCRY_API int scry_logimport_feed_file(scry_logimport *imp, const char *path,
	scry_error *err);

/**
 * Ends the import: the last record is processed, statements still waiting
 * for their `duration:` line are recorded without one, and every event is
 * written. Sessions still open (the log ends mid-session) stay without an
 * end time. Fills `stats` when not NULL (set stats->size first:
 * SCRY_LOGIMPORT_STATS_INIT). Feeding after finish is an error.
 */
SCRY_API int scry_logimport_finish(scry_logimport *imp,
	scry_logimport_stats *stats, scry_error *err);

/**
 * Reads the statistics so far (events still batched are not yet counted).
 * Returns 0, or SCRY_EINVAL when stats->size is smaller than version 1.
 */
SCRY_API int scry_logimport_stats_get(const scry_logimport *imp,
	scry_logimport_stats *stats);

/** Frees an importer (without finishing it). Accepts NULL. */
SCRY_API void scry_logimport_free(scry_logimport *imp);

/**
 * Convenience: imports one file (plain or gzip; "-" is standard input)
 * into `store`: new + feed_file + finish + free.
 */
SCRY_API int scry_logimport_file(scry_store *store, const char *path,
	const scry_logimport_options *opts, scry_logimport_stats *stats,
	scry_error *err);

/**
 * Orders log files by the first timestamp found in each (rotated files
 * given in any order): fills `order` with indexes into `paths`. "-",
 * pipes and files without a timestamp come after the dated ones, in their
 * given order (pipes are not read). Returns 0 or SCRY_EIO when a file
 * cannot be opened.
 */
SCRY_API int scry_logimport_order_files(const char *const *paths, size_t n, size_t *order,
	scry_error *err);

/** Parses "csvlog", "jsonlog", "stderr" or "auto". Returns 0 or SCRY_EINVAL. */
SCRY_API int scry_log_format_parse(const char *name, scry_log_format *out);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_LOGIMPORT_H */
