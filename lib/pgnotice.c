/*
 * lib/pgnotice.c - the server's notices and warnings go to the log
 * callback, never to stderr: libpq's default notice processor prints them,
 * so every connection the library opens gets a receiver
 * (PQsetNoticeReceiver, the layer under PQsetNoticeProcessor, which also
 * gives the severity). Without a log callback they are dropped.
 */
#include "internal.h"

#include <libpq-fe.h>

void scry__pg_notice_log(scry_log_fn fn, void *ctx, const PGresult *r)
{
	if (!fn || !r)
		return;
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	scry_log_level level = SCRY_LOG_INFO;
	if (sev && !strcmp(sev, "WARNING"))
		level = SCRY_LOG_WARNING;
	else if (sev && !strncmp(sev, "DEBUG", 5))
		level = SCRY_LOG_DEBUG;
	char line[600];
	scry__pg_one_line(msg ? msg : PQresultErrorMessage(r), line, sizeof line);
	scry__log(fn, ctx, level, "server %s: %s", sev ? sev : "NOTICE", line);
}

void scry__pg_notice_ignore(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;
}
