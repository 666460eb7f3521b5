/*
 * scry/shadow.h - shadow databases: clones of a target database made with
 * CREATE DATABASE ... TEMPLATE on the target's own server, migrations applied
 * to them, and their removal.
 *
 * A shadow holds two clones: A (the target as is, the baseline) and B (where
 * the migration is applied, the candidate). The clones are dropped by
 * scry_shadow_drop() or, at the latest, by scry_shadow_free(), also after a
 * failure or a cancellation, so that no database is left behind.
 *
 * A migration is never run against the target itself through this API,
 * except in the explicit sequential mode (options.in_place).
 */
#ifndef SCRY_SHADOW_H
#define SCRY_SHADOW_H

#include "scry/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Which clone. */
typedef enum scry_shadow_side {
	SCRY_SHADOW_A = 0, /**< baseline: the target as it was */
	SCRY_SHADOW_B = 1  /**< candidate: where the migration is applied */
} scry_shadow_side;

/** How the two clones are made. */
typedef enum scry_clone_provider {
	/** CREATE DATABASE ... TEMPLATE target (STRATEGY = FILE_COPY on PostgreSQL 15+) on the target's server. */
	SCRY_CLONE_TEMPLATE = 0,
	/** Two databases the caller prepared (options.baseline, options.candidate); scry never drops them. */
	SCRY_CLONE_GIVEN = 1,
	/** An external command (options.clone_command): DBLab, Neon branches, ZFS snapshots, base backups... */
	SCRY_CLONE_COMMAND = 2
} scry_clone_provider;

/** Options of scry_shadow_new(). Fields are only ever appended. */
typedef struct scry_shadow_options {
	unsigned int version;   /**< SCRY_SHADOW_OPTIONS_VERSION */
	/**
	 * Suffix of the clone names (letters, digits, underscore); NULL makes a
	 * unique one from the process id and random bits. Clones are named
	 * `<target>_scry_a_<suffix>` and `<target>_scry_b_<suffix>` (the target
	 * part shortened to fit PostgreSQL's 63-byte names).
	 */
	const char *suffix;
	/** Database to connect to for CREATE/DROP DATABASE; NULL = "postgres". */
	const char *maintenance_db;
	scry_log_fn log;        /**< optional */
	void *log_ctx;
	/**
	 * Sequential mode: no clones; A and B are the target itself and
	 * scry_shadow_migrate() changes the target, which cannot be undone.
	 * Only for a database that may be thrown away.
	 */
	int in_place;
	/* Appended in version 2: clone providers and the migration timeout (docs/pipeline.md). */
	scry_clone_provider provider; /**< how clones are made; default SCRY_CLONE_TEMPLATE */
	const char *baseline;         /**< SCRY_CLONE_GIVEN: connection string of A (never dropped) */
	const char *candidate;        /**< SCRY_CLONE_GIVEN: connection string of B (never dropped) */
	/**
	 * SCRY_CLONE_COMMAND: a shell command. `CMD create NAME` prints the new
	 * clone's connection string (its last line of standard output) and exits 0;
	 * `CMD destroy NAME` removes it.
	 */
	const char *clone_command;
	/** A migration command running longer than this many seconds is killed (SCRY_EMIGRATION); 0 = no limit. */
	int migration_timeout_s;
} scry_shadow_options;

/** Current version of scry_shadow_options. */
#define SCRY_SHADOW_OPTIONS_VERSION 2
/** Defaults. */
#define SCRY_SHADOW_OPTIONS_INIT { SCRY_SHADOW_OPTIONS_VERSION, NULL, NULL, NULL, NULL, 0, SCRY_CLONE_TEMPLATE, NULL, NULL, NULL, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_shadow_options_init(scry_shadow_options *opts);

/** A pair of shadow databases of one target. */
typedef struct scry_shadow scry_shadow;

/**
 * Prepares a shadow of the database `target` (a libpq connection string or
 * URI). Connects to the target's server to check it is reachable (one
 * SCRY_ECONNECT otherwise) but creates nothing yet. *out is NULL on failure.
 */
SCRY_API int scry_shadow_new(scry_shadow **out, const char *target,
	const scry_shadow_options *opts, scry_error *err);

/**
 * Drops any clone still present (errors are reported to the log callback
 * only) and frees the shadow. Accepts NULL.
 */
SCRY_API void scry_shadow_free(scry_shadow *s);

/**
 * Creates clones A and B. Errors a person can act on: SCRY_EPG with
 * SQLSTATE 55006 when other sessions are connected to the target (cloning
 * needs it idle: stop them or use sequential mode), 42501 when the role
 * lacks the CREATEDB right. On failure, a clone already made is dropped.
 * After scry_shadow_cancel(), returns SCRY_ECANCELED.
 */
SCRY_API int scry_shadow_create(scry_shadow *s, scry_error *err);

/**
 * Drops the clones that earlier runs left on the server of `target`
 * (CREATE DATABASE clones, marked with a comment naming their scry process)
 * whose process, on this host, no longer exists: after a `kill -9` or a power
 * cut. Clones of live runs and of other hosts are left alone. Stores in
 * *dropped (may be NULL) how many were dropped. scry_shadow_create() does
 * this by itself before cloning.
 */
SCRY_API int scry_shadow_gc(const char *target, const scry_shadow_options *opts, int *dropped, scry_error *err);

/** Name of the target database. */
SCRY_API const char *scry_shadow_target_name(const scry_shadow *s);

/** Name of a clone (valid also before it exists). */
SCRY_API const char *scry_shadow_name(const scry_shadow *s, scry_shadow_side side);

/**
 * Connection string of a clone: the target's with dbname replaced (template
 * clones), the given one, or what the clone command printed (NULL until
 * scry_shadow_create() for that provider). Owned by the shadow, valid until
 * scry_shadow_free().
 */
SCRY_API const char *scry_shadow_conninfo(const scry_shadow *s, scry_shadow_side side);

/**
 * Runs VACUUM ANALYZE, then VACUUM, in both clones (each database-wide), so
 * that both are judged in the steady state autovacuum would reach (the second
 * pass sets the visibility map after a bulk update).
 */
SCRY_API int scry_shadow_settle(scry_shadow *s, scry_error *err);

/** Drops both clones (WITH (FORCE) on PostgreSQL 13 and later). Idempotent. */
SCRY_API int scry_shadow_drop(scry_shadow *s, scry_error *err);

/**
 * Interrupts the shadow's current or next server work (cloning, settling,
 * a migration command, which gets SIGTERM) so that it returns
 * SCRY_ECANCELED. Dropping still works after a cancel. Callable from any
 * thread; not from a signal handler (use a thread that waits for signals).
 */
SCRY_API void scry_shadow_cancel(scry_shadow *s);

/* ------------------------------------------------------------------ */
/* Migrations                                                          */
/* ------------------------------------------------------------------ */

/**
 * Output of a migration command, as it comes (stdout and stderr merged).
 * `data` is valid only during the call.
 */
typedef void (*scry_output_fn)(void *ctx, const char *data, size_t len);

/**
 * A migration run in-process (for example Alembic from Python). It gets the
 * clone's connection string; returns 0 on success, anything else on failure,
 * after optionally writing why into `message` (up to `message_size` bytes,
 * NUL-terminated).
 */
typedef int (*scry_migration_fn)(void *ctx, const char *conninfo,
	char *message, size_t message_size);

/**
 * What a migration is: exactly one of `argv`, `sql` or `fn`. Strings are
 * only read during the call.
 */
typedef struct scry_migration {
	unsigned int version;      /**< SCRY_MIGRATION_VERSION */
	/**
	 * A command, NULL-terminated argv (argv[0] searched in PATH). It runs
	 * with DATABASE_URL and PGHOST, PGPORT, PGDATABASE, PGUSER (and
	 * PGPASSWORD when the target has one) pointing at the clone; any other
	 * PG* connection variable of the environment is removed. A nonzero exit
	 * status or a signal is a failure (SCRY_EMIGRATION).
	 */
	char *const *argv;
	/** SQL statements run in one transaction on the clone. */
	const char *sql;
	scry_migration_fn fn;      /**< in-process migration */
	void *fn_ctx;
	/**
	 * Receives the command's output; NULL lets the command inherit the
	 * caller's stdout and stderr. The last 4 KiB of output is also kept in
	 * the error message on failure when a callback is given.
	 */
	scry_output_fn output;
	void *output_ctx;
} scry_migration;

/** Current version of scry_migration. */
#define SCRY_MIGRATION_VERSION 1
/** An empty migration (fill one of argv, sql, fn). */
#define SCRY_MIGRATION_INIT { SCRY_MIGRATION_VERSION, NULL, NULL, NULL, NULL, NULL, NULL }

/**
 * Applies `m` to clone `side` (which must exist; in sequential mode, to
 * the target). Failure of the migration
 * itself gives SCRY_EMIGRATION with its output or error in err->message;
 * SCRY_ECANCELED after scry_shadow_cancel().
 */
SCRY_API int scry_shadow_migrate(scry_shadow *s, scry_shadow_side side,
	const scry_migration *m, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_SHADOW_H */
