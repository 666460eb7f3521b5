/*
 * lib/util/pgexec.c - a libpq statement that a cancel flag interrupts, and the
 * library's own connections with a connect timeout
 * (lib/util/pgexec.h).
 */
#include "util/pgexec.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>

/* Sends a cancel request for the connection's running statement (best effort). */
static void send_cancel(PGconn *c)
{
	PGcancel *pc = PQgetCancel(c);
	if (!pc)
		return;
	char buf[256];
	PQcancel(pc, buf, sizeof buf);
	PQfreeCancel(pc);
}

/* Waits for the statement's results, polling the flag; false when the connection failed. */
static bool wait_results(PGconn *c, const volatile int *cancel)
{
	bool canceled = false;
	while (PQisBusy(c)) {
		if (!canceled && *cancel) {
			send_cancel(c);
			canceled = true;
		}
		struct pollfd pfd = { PQsocket(c), POLLIN, 0 };
		if (pfd.fd < 0)
			return false;
		int pr = poll(&pfd, 1, SCRY__PG_CANCEL_POLL_MS);
		if (pr < 0 && errno != EINTR)
			return false;
		if (pr > 0 && !PQconsumeInput(c))
			return false;
	}
	return true;
}

PGresult *scry__pg_exec_cancelable(PGconn *c, const char *sql, const scry__pg_params *params,
                                   const volatile int *cancel)
{
	if (!cancel)
		return params ? PQexecParams(c, sql, params->n, params->types, params->values, params->lengths,
		                             params->formats, 0)
		              : PQexec(c, sql);
	int sent = params ? PQsendQueryParams(c, sql, params->n, params->types, params->values, params->lengths,
	                                      params->formats, 0)
	                  : PQsendQuery(c, sql);
	if (!sent)
		return NULL;
	wait_results(c, cancel); /* on failure, PQgetResult below reports the broken connection */
	/* As PQexec: the last result; stop at COPY or a broken connection. */
	PGresult *last = NULL, *r;
	while ((r = PQgetResult(c)) != NULL) {
		PQclear(last);
		last = r;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH || PQstatus(c) == CONNECTION_BAD)
			break;
	}
	return last;
}

PGconn *scry__pg_connect(const char *conninfo, const char *app, bool force_app, long long timeout_s)
{
	char ct[24];
	snprintf(ct, sizeof ct, "%lld", timeout_s < 0 ? (long long)SCRY__PG_CONNECT_TIMEOUT_S : timeout_s);
	/* Keys after dbname override what it expands to; connect_timeout before it yields. */
	const char *keys[] = { "connect_timeout", "dbname", force_app ? "application_name" : "fallback_application_name",
		                   NULL };
	const char *vals[] = { ct, conninfo, app, NULL };
	if (!app)
		keys[2] = NULL;
	return PQconnectdbParams(keys, vals, 1);
}
