/*
 * lib/util/pgexec.h - a libpq statement that a cancel flag interrupts
 * (internal): while it runs, the flag is polled and, once set, the server
 * is sent a cancel request (PQcancel). For the library's long statements on
 * a caller's thread (the verdict's EXPLAIN ANALYZE, its index builds), where
 * another thread's cancel can only set a flag.
 */
#ifndef SCRY_UTIL_PGEXEC_H
#define SCRY_UTIL_PGEXEC_H

#include "internal.h"

#include <libpq-fe.h>

/* A statement's parameters, as PQexecParams takes them. */
typedef struct scry__pg_params {
	int n;
	const Oid *types;
	const char *const *values;
	const int *lengths, *formats;
} scry__pg_params;

/* How often a running statement looks at the flag. */
#define SCRY__PG_CANCEL_POLL_MS 50

/*
 * Runs sql (several statements when params is NULL: the simple protocol, as
 * PQexec; else one, as PQexecParams) and returns the last result (the caller
 * clears it; NULL when it could not be sent). Without a flag (cancel NULL),
 * PQexec or PQexecParams itself. A flag already set before the call still
 * sends the statement (and cancels it at once): callers check the flag
 * between statements.
 */
SCRY_HIDDEN PGresult *scry__pg_exec_cancelable(PGconn *c, const char *sql, const scry__pg_params *params,
	const volatile int *cancel);

/* The connect timeout of the library's own connections (clones, the verdict's probes, the
 * lock sampler) when the connection string sets none: a server that accepts a connection and
 * never answers (stopped, overloaded) is an error after this long, not a hang. */
#define SCRY__PG_CONNECT_TIMEOUT_S 10

/*
 * PQconnectdbParams of `conninfo` (a connection string or URI) with a connect
 * timeout of `timeout_s` seconds (0: none, as libpq's; negative: the default
 * above) unless conninfo has its own, and `app` as application_name
 * (`force_app`) or as fallback_application_name. NULL only when out of memory;
 * check PQstatus.
 */
SCRY_HIDDEN PGconn *scry__pg_connect(const char *conninfo, const char *app, bool force_app, long long timeout_s);

#endif
