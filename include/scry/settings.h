/*
 * scry/settings.h - every option of the library by name, and results as
 * JSON: the one description the Python and Go bindings (and configuration
 * files) use instead of mirroring the C structs.
 *
 * A scry_settings is an opaque bag of options. Values are set as strings
 * under dotted keys ("replay.concurrency" = "4", "verdict.threshold" =
 * "1.5"); the library parses and checks them, and hands out the options
 * structs the other modules take:
 *
 *     scry_settings *s;
 *     scry_settings_new(&s, &err);
 *     scry_settings_set(s, "verdict.threshold", "2", &err);
 *     scry_pipeline_new(&p, store, target, scry_settings_pipeline(s), &err);
 *     scry_pipeline_run(p, scry_settings_migration(s, "migration"), &err);
 *
 * The keys, their types, defaults and meaning are listed by
 * scry_settings_describe() and in docs/api.md. A binding therefore never
 * depends on the layout of an options or result struct; only scry_error
 * and scry_buf (core.h), which never change, are shared by layout.
 */
#ifndef SCRY_SETTINGS_H
#define SCRY_SETTINGS_H

#include "scry/core.h"
#include "scry/pipeline.h"
#include "scry/replay.h"
#include "scry/shadow.h"
#include "scry/store.h"
#include "scry/verdict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A set of options by name. */
typedef struct scry_settings scry_settings;

/** Creates settings holding every default. *out is NULL on failure. */
SCRY_API int scry_settings_new(scry_settings **out, scry_error *err);

/** Frees settings. Accepts NULL. */
SCRY_API void scry_settings_free(scry_settings *s);

/**
 * Sets `key` to `value` (a string, parsed by the key's type: integers,
 * decimals, booleans "true"/"false"/"1"/"0", enum names such as "timed",
 * text). NULL `value` restores the default. An unknown key or a value that
 * does not parse gives SCRY_EINVAL with a message naming the key and the
 * values it takes; the settings are then unchanged.
 */
SCRY_API int scry_settings_set(scry_settings *s, const char *key, const char *value,
	scry_error *err);

/**
 * Appends to `out` the JSON array describing every key:
 * [{"key": "replay.concurrency", "type": "int", "default": "8", "doc": "..."}, ...].
 */
SCRY_API int scry_settings_describe(scry_buf *out, scry_error *err);

/** Sets the log callback of every module these settings configure. */
SCRY_API void scry_settings_set_log(scry_settings *s, scry_log_fn fn, void *ctx);

/** Sets the progress callback of every module these settings configure. */
SCRY_API void scry_settings_set_progress(scry_settings *s, scry_progress_fn fn, void *ctx);

/**
 * Makes `which` ("migration" or "fix") an in-process callback. Replaces any
 * argv or SQL set for it. Returns 0 or SCRY_EINVAL for another name.
 */
SCRY_API int scry_settings_set_migration_fn(scry_settings *s, const char *which,
	scry_migration_fn fn, void *ctx, scry_error *err);

/**
 * Makes `which` ("migration" or "fix") a command (NULL-terminated argv,
 * copied). Replaces any callback or SQL set for it. The SQL form is the key
 * "migration.sql" / "fix.sql".
 */
SCRY_API int scry_settings_set_migration_argv(scry_settings *s, const char *which,
	const char *const *argv, scry_error *err);

/** Sets where `which`'s command output goes (see scry_migration.output). */
SCRY_API int scry_settings_set_migration_output(scry_settings *s, const char *which,
	scry_output_fn fn, void *ctx, scry_error *err);

/** The store options ("store.*"). Owned by `s`. */
SCRY_API const scry_store_options *scry_settings_store(const scry_settings *s);

/** The replay options ("replay.*"). Owned by `s`. */
SCRY_API const scry_replay_options *scry_settings_replay(const scry_settings *s);

/** The verdict options ("verdict.*"). Owned by `s`. */
SCRY_API const scry_verdict_options *scry_settings_verdict(const scry_settings *s);

/**
 * The pipeline options ("pipeline.*", with the replay, verdict and fix
 * settings). Unless set, the replay's repeat and warmup are the pipeline's
 * defaults (5 and 1). Owned by `s`; valid until `s` changes or is freed.
 */
SCRY_API const scry_pipeline_options *scry_settings_pipeline(const scry_settings *s);

/** The migration `which` ("migration" or "fix"), or NULL when none was set. Owned by `s`. */
SCRY_API const scry_migration *scry_settings_migration(const scry_settings *s, const char *which);

/** Appends the counts of scry_store_info_get() to `out` as a JSON object. */
SCRY_API int scry_store_info_json(scry_store *store, scry_buf *out, scry_error *err);

/**
 * Runs scry_replay_run() and appends its scry_replay_result to `out` as a
 * JSON object (also when the run was cancelled: the samples so far).
 */
SCRY_API int scry_replay_run_json(scry_replay *r, const char *conninfo, const char *label,
	scry_buf *out, scry_error *err);

/**
 * Appends the measurements of scry_pipeline_stats_get() to `out` as a JSON
 * object: the phase timings and "baseline", "candidate", "fixed",
 * "fixed_baseline" replay results.
 */
SCRY_API int scry_pipeline_stats_json(const scry_pipeline *p, scry_buf *out, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_SETTINGS_H */
