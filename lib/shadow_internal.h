/*
 * lib/shadow_internal.h - the shadow handle, shared by lib/shadow.c (the
 * template provider, settling), lib/shadow_migrate.c (migrations) and
 * lib/shadow_providers.c (the given and command providers, clone markers
 * and gc). Private.
 */
#ifndef SCRY_SHADOW_INTERNAL_H
#define SCRY_SHADOW_INTERNAL_H

#include "internal.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* PostgreSQL names are at most NAMEDATALEN-1 = 63 bytes. */
#define NAME_MAX_LEN 63

/* Where a connection goes: its server, role and database (password NULL when none). */
typedef struct scry__endpoint {
	char *host, *port, *user, *password, *db;
} scry__endpoint;

struct scry_shadow {
	scry_shadow_options opts;
	char *target;           /* the caller's conninfo */
	char *target_db;        /* the target's database name */
	char *names[2];         /* clone names */
	char *conninfos[2];     /* clone conninfos */
	char *maint_conninfo;   /* for CREATE/DROP DATABASE */
	bool exists[2];
	int server_version;
	/* Live values of the target connection (db unused: target_db), for the migration's environment. */
	scry__endpoint live;
	char *clone_command;    /* SCRY_CLONE_COMMAND: a copy of opts.clone_command */

	/* Cancellation: the flag, the running query's cancel handle, the running command. */
	atomic_int canceled;
	pthread_mutex_t lock;
	PGcancel *running;
	pid_t child;
};

/* Logs through the caller's callback (scry__log does the formatting). */
#define slog(s, level, ...) scry__log((s)->opts.log, (s)->opts.log_ctx, level, __VA_ARGS__)

/* The marker a clone carries (its database comment): "scry clone pid=P host=H start=T target=D". */
SCRY_HIDDEN int scry__shadow_marker(const char *target_db, char *buf, size_t n);
/* Given and command providers (lib/shadow_providers.c). */
SCRY_HIDDEN int scry__shadow_given_create(scry_shadow *s, scry_error *err);
SCRY_HIDDEN int scry__shadow_command_create(scry_shadow *s, scry_error *err);
SCRY_HIDDEN int scry__shadow_command_drop(scry_shadow *s, scry_error *err);
/* The target's connection string with dbname replaced (key=value form, *out malloc'ed). */
SCRY_HIDDEN int scry__shadow_conninfo_with_db(const char *target, const char *db, char **out, scry_error *err);
/* Connects (with statement_timeout 0; notices to s's log, s may be NULL); NULL and err filled on failure. */
SCRY_HIDDEN PGconn *scry__shadow_connect(scry_shadow *s, const char *conninfo, scry_error *err, const char *what);
/* The server and role c connected with into e (host, port, user, password; e->db is the caller's): 0 or SCRY_ENOMEM. */
SCRY_HIDDEN int scry__endpoint_server(PGconn *c, scry__endpoint *e);
/* A copy of src's server and role, with database db, into e: 0 or SCRY_ENOMEM (e then freed). */
SCRY_HIDDEN int scry__endpoint_copy(const scry__endpoint *src, const char *db, scry__endpoint *e);
SCRY_HIDDEN void scry__endpoint_free(scry__endpoint *e);
/* Runs one command, interruptible by scry_shadow_cancel(); the caller clears the result (NULL when cancelled first). */
SCRY_HIDDEN PGresult *scry__shadow_exec_cancelable(scry_shadow *s, PGconn *c, const char *sql);

#endif
