/*
 * scry/filter.h - which query patterns a verdict judges: noise control.
 *
 * By default every pattern is judged except session setup: statements
 * whose first keyword is SET, SHOW, RESET, DISCARD, or transaction control
 * (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
 * RELEASE). Drivers send those around every query (psycopg's BEGIN, JDBC's
 * SET extra_float_digits, `SHOW standard_conforming_strings`...); they are
 * still replayed - later statements depend on them - but not reported or
 * gated on. Include/exclude patterns are globs (fnmatch, case-insensitive)
 * matched against the fingerprint's 16 hex digits and the normalized text.
 * Excluded patterns are listed in the report's footer. Rules in docs/cli.md.
 */
#ifndef SCRY_FILTER_H
#define SCRY_FILTER_H

#include "scry/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A set of include/exclude rules. */
typedef struct scry_pattern_filter scry_pattern_filter;

/** Creates the default filter (all patterns but session setup). */
SCRY_API int scry_pattern_filter_new(scry_pattern_filter **out, scry_error *err);

/** Frees a filter. Accepts NULL. */
SCRY_API void scry_pattern_filter_free(scry_pattern_filter *f);

/**
 * Adds a glob: with `include` nonzero, only patterns matching some include
 * glob are judged (an include also brings back session setup it matches);
 * otherwise patterns matching it are not judged. Exclusion wins over
 * inclusion. An empty glob gives SCRY_EINVAL.
 */
SCRY_API int scry_pattern_filter_add(scry_pattern_filter *f, int include, const char *glob,
	scry_error *err);

/** Whether session setup is judged (0, the default: excluded). */
SCRY_API void scry_pattern_filter_set_session_setup(scry_pattern_filter *f, int judge);

/**
 * Tells whether the pattern is judged (1) or not (0). When not, *why (if
 * not NULL) is set to a static phrase: "session setup", "--exclude", or
 * "not in --include". A NULL filter is the default one.
 */
SCRY_API int scry_pattern_filter_match(const scry_pattern_filter *f, uint64_t fingerprint,
	const char *normalized, const char **why);

/** Whether a statement's text is session setup (see above). */
SCRY_API int scry_is_session_setup(const char *sql);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_FILTER_H */
