/*
 * lib/shadow.c - clones of a target database (CREATE DATABASE ... TEMPLATE),
 * migrations applied to them, and their removal. See include/scry/shadow.h
 * and docs/pipeline.md.
 */
#define _GNU_SOURCE
#include "shadow_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void scry_shadow_options_init(scry_shadow_options *opts)
{
	if (opts)
		*opts = (scry_shadow_options)SCRY_SHADOW_OPTIONS_INIT;
}

/*
 * The target's connection string with dbname replaced. PQconninfoParse
 * understands both key=value strings and URIs; we always emit key=value.
 */
int scry__shadow_conninfo_with_db(const char *target, const char *db, char **out, scry_error *err)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(target, &perr);
	if (!opts) {
		char msg[300];
		scry__pg_one_line(perr ? perr : "out of memory", msg, sizeof msg);
		PQfreemem(perr);
		int rc = scry__fail(err, SCRY_EINVAL, "invalid connection string: %s", msg);
		return rc;
	}
	scry_buf b = SCRY_BUF_INIT;
	int rc = 0;
	for (PQconninfoOption *o = opts; !rc && o->keyword; o++)
		if (o->val && *o->val && strcmp(o->keyword, "dbname"))
			rc = scry__buf_conninfo_kv(&b, o->keyword, o->val);
	if (!rc)
		rc = scry__buf_conninfo_kv(&b, "dbname", db);
	PQconninfoFree(opts);
	if (rc) {
		scry_buf_dispose(&b);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	*out = b.ptr;
	return 0;
}

static void notice(void *arg, const PGresult *r)
{
	scry_shadow *s = arg;
	if (s)
		scry__pg_notice_log(s->opts.log, s->opts.log_ctx, r);
}

PGconn *scry__shadow_connect(scry_shadow *s, const char *conninfo, scry_error *err, const char *what)
{
	PGconn *c = PQconnectdb(conninfo);
	if (c)
		PQsetNoticeReceiver(c, notice, s); /* never libpq's printing default */
	if (PQstatus(c) != CONNECTION_OK) {
		scry__pg_connect_fail(err, c, what);
		PQfinish(c);
		return NULL;
	}
	/* Our own statements must not be cut short by a user's default. */
	PQclear(PQexec(c, "SET statement_timeout = 0"));
	return c;
}

/*
 * Runs one command, interruptible by scry_shadow_cancel() through a
 * PGcancel registered for the duration of the call. Returns the result
 * (the caller clears it); *canceled tells whether a cancel interrupted it.
 */
static PGresult *exec_cancelable(scry_shadow *s, PGconn *c, const char *sql)
{
	PGcancel *cancel = PQgetCancel(c);
	pthread_mutex_lock(&s->lock);
	s->running = cancel;
	pthread_mutex_unlock(&s->lock);
	PGresult *r = atomic_load(&s->canceled) ? NULL : PQexec(c, sql);
	pthread_mutex_lock(&s->lock);
	s->running = NULL;
	pthread_mutex_unlock(&s->lock);
	PQfreeCancel(cancel);
	return r;
}

static void sanitize(const char *in, char *out, size_t max)
{
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && k < max; p++)
		out[k++] = (isalnum(*p) && *p < 128) ? (char)tolower(*p) : '_';
	out[k] = 0;
}

int scry_shadow_new(scry_shadow **out, const char *target, const scry_shadow_options *opts,
	scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "out is NULL");
	*out = NULL;
	if (!target)
		return scry__fail(err, SCRY_EINVAL, "no target connection string");
	scry_shadow_options o;
	int vrc = scry__opts_copy(err, &scry__abi_shadow_options, &o, opts);
	if (vrc)
		return vrc;
	scry_shadow *s = scry__calloc(1, sizeof *s);
	if (!s)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	s->opts = o;
	s->opts.suffix = NULL;
	s->opts.maintenance_db = NULL;
	s->opts.baseline = s->opts.candidate = s->opts.clone_command = NULL;
	if (s->opts.provider == SCRY_CLONE_GIVEN && !s->opts.in_place &&
	    (!o.baseline || !*o.baseline || !o.candidate || !*o.candidate)) {
		scry__free(s);
		return scry__fail(err, SCRY_EINVAL, "the given-clones provider needs both a baseline and a candidate "
		                  "connection string (--baseline DSN --candidate DSN)");
	}
	if (s->opts.provider == SCRY_CLONE_COMMAND && !s->opts.in_place &&
	    (!o.clone_command || !*o.clone_command)) {
		scry__free(s);
		return scry__fail(err, SCRY_EINVAL, "the command clone provider needs a command (--clone-command CMD)");
	}
	if (s->opts.provider > SCRY_CLONE_COMMAND || s->opts.migration_timeout_s < 0) {
		scry__free(s);
		return scry__fail(err, SCRY_EINVAL, "unknown clone provider %d, or a negative migration timeout",
		                  (int)s->opts.provider);
	}
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->canceled, 0);
	s->target = scry__strdup(target);
	int rc = 0;

	PGconn *c = scry__shadow_connect(s, target, err, "the target database");
	if (!c) {
		rc = SCRY_ECONNECT;
		goto fail;
	}
	s->target_db = scry__strdup(PQdb(c));
	s->host = scry__strdup(PQhost(c) ? PQhost(c) : "");
	s->port = scry__strdup(PQport(c) ? PQport(c) : "");
	s->user = scry__strdup(PQuser(c) ? PQuser(c) : "");
	s->password = PQpass(c) && *PQpass(c) ? scry__strdup(PQpass(c)) : NULL;
	s->server_version = PQserverVersion(c);
	PQfinish(c);

	char base[41], suffix[40];
	sanitize(s->target_db, base, sizeof base - 1);
	if (opts && opts->suffix) {
		sanitize(opts->suffix, suffix, 16);
	} else {
		/* pid + random bits: unique on the server across concurrent runs. */
		uint32_t rnd = 0;
		if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
			rnd = (uint32_t)scry__monotonic_us() ^ (uint32_t)getpid() * 2654435761u;
		snprintf(suffix, sizeof suffix, "%d_%08x", (int)getpid(), rnd);
	}
	for (int i = 0; i < 2; i++) {
		char name[NAME_MAX_LEN + 1];
		if (s->opts.in_place)
			snprintf(name, sizeof name, "%s", s->target_db);
		else if (s->opts.provider == SCRY_CLONE_GIVEN)
			snprintf(name, sizeof name, "%s", i ? "candidate" : "baseline");
		else
			snprintf(name, sizeof name, "%.38s_scry_%c_%.16s", base, i ? 'b' : 'a', suffix);
		s->names[i] = scry__strdup(name);
		if (!s->names[i]) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			goto fail;
		}
		if (s->opts.in_place)
			s->conninfos[i] = scry__strdup(target);
		else if (s->opts.provider == SCRY_CLONE_GIVEN)
			s->conninfos[i] = scry__strdup(i ? o.candidate : o.baseline);
		else if (s->opts.provider == SCRY_CLONE_COMMAND)
			s->conninfos[i] = NULL; /* printed by the command when it creates the clone */
		else if ((rc = scry__shadow_conninfo_with_db(target, name, &s->conninfos[i], err)))
			goto fail;
		if (!s->conninfos[i] && (s->opts.in_place || s->opts.provider != SCRY_CLONE_COMMAND)) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			goto fail;
		}
	}
	if ((rc = scry__shadow_conninfo_with_db(target, opts && opts->maintenance_db ? opts->maintenance_db : "postgres",
	                           &s->maint_conninfo, err)))
		goto fail;
	if (s->opts.provider == SCRY_CLONE_COMMAND && !(s->clone_command = scry__strdup(o.clone_command))) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto fail;
	}
	if (!s->target_db || !s->host || !s->port || !s->user || !s->maint_conninfo) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	scry_shadow_free(s);
	return rc;
}

const char *scry_shadow_target_name(const scry_shadow *s) { return s ? s->target_db : NULL; }

const char *scry_shadow_name(const scry_shadow *s, scry_shadow_side side)
{
	return s && (side == SCRY_SHADOW_A || side == SCRY_SHADOW_B) ? s->names[side] : NULL;
}

const char *scry_shadow_conninfo(const scry_shadow *s, scry_shadow_side side)
{
	return s && (side == SCRY_SHADOW_A || side == SCRY_SHADOW_B) ? s->conninfos[side] : NULL;
}

static int clone_one(scry_shadow *s, PGconn *c, int side, scry_error *err)
{
	char *newq = PQescapeIdentifier(c, s->names[side], strlen(s->names[side]));
	char *tmplq = PQescapeIdentifier(c, s->target_db, strlen(s->target_db));
	if (!newq || !tmplq) {
		PQfreemem(newq);
		PQfreemem(tmplq);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	scry_buf sql = SCRY_BUF_INIT;
	/* FILE_COPY (PostgreSQL 15+): a copy of the files, not of every block through the WAL. */
	int rc = scry__buf_printf(&sql, "CREATE DATABASE %s TEMPLATE %s%s", newq, tmplq,
	                          s->server_version >= 150000 ? " STRATEGY = FILE_COPY" : "");
	PQfreemem(tmplq);
	char marker[200];
	scry_buf comment = SCRY_BUF_INIT;
	char *lit = NULL;
	if (!rc && !scry__shadow_marker(s->target_db, marker, sizeof marker) &&
	    (lit = PQescapeLiteral(c, marker, strlen(marker))))
		rc = scry__buf_printf(&comment, "COMMENT ON DATABASE %s IS %s", newq, lit);
	PQfreemem(lit);
	PQfreemem(newq);
	if (rc || !comment.ptr) {
		scry_buf_dispose(&sql);
		scry_buf_dispose(&comment);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	slog(s, SCRY_LOG_DEBUG, "%s", sql.ptr);
	PGresult *r = exec_cancelable(s, c, sql.ptr);
	scry_buf_dispose(&sql);
	if (atomic_load(&s->canceled)) {
		/* The database may exist if the cancel came too late: drop tries anyway. */
		s->exists[side] = r && PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		scry_buf_dispose(&comment);
		return scry__fail(err, SCRY_ECANCELED, "cancelled while cloning %s", s->target_db);
	}
	if (PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		s->exists[side] = true;
		/* The marker says which process made it, for scry_shadow_gc() after a kill -9. */
		r = PQexec(c, comment.ptr);
		scry_buf_dispose(&comment);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			char msg[300];
			scry__pg_result_message(r, c, msg, sizeof msg);
			PQclear(r);
			return scry__fail(err, SCRY_EPG, "cannot mark the clone %s: %s", s->names[side], msg);
		}
		PQclear(r);
		return 0;
	}
	scry_buf_dispose(&comment);
	char msg[300];
	scry__pg_result_message(r, c, msg, sizeof msg);
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	char sqlstate[6] = "";
	if (state)
		snprintf(sqlstate, sizeof sqlstate, "%s", state);
	PQclear(r);
	if (!strcmp(sqlstate, "55006")) {
		/* Say how many sessions, so the person knows what to stop. */
		int others = -1;
		const char *params[1] = { s->target_db };
		PGresult *q = PQexecParams(c,
			"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
			1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(q) == PGRES_TUPLES_OK && PQntuples(q) == 1)
			others = atoi(PQgetvalue(q, 0, 0));
		PQclear(q);
		rc = scry__fail(err, SCRY_EPG,
			"cannot clone database \"%s\": %s (%d other session%s connected). "
			"CREATE DATABASE ... TEMPLATE needs the target idle: disconnect the other "
			"sessions (for example the application, or point it at a copy), or use "
			"sequential mode (--sequential), which replays before and after the migration "
			"on the database itself", s->target_db, msg, others, others == 1 ? " is" : "s are");
	} else if (!strcmp(sqlstate, "42501")) {
		rc = scry__fail(err, SCRY_EPG,
			"cannot clone database \"%s\": %s. The role \"%s\" needs the CREATEDB right "
			"(ALTER ROLE \"%s\" CREATEDB), or use sequential mode (--sequential)",
			s->target_db, msg, s->user, s->user);
	} else {
		rc = scry__fail(err, SCRY_EPG, "cannot clone database \"%s\" into \"%s\": %s",
		                s->target_db, s->names[side], msg);
	}
	if (err)
		memcpy(err->sqlstate, sqlstate, sizeof sqlstate);
	return rc;
}

int scry_shadow_create(scry_shadow *s, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "shadow is NULL");
	if (s->opts.in_place)
		return 0;
	if (atomic_load(&s->canceled))
		return scry__fail(err, SCRY_ECANCELED, "cancelled");
	if (s->opts.provider == SCRY_CLONE_GIVEN)
		return scry__shadow_given_create(s, err);
	if (s->opts.provider == SCRY_CLONE_COMMAND)
		return scry__shadow_command_create(s, err);
	/* Clones a killed run left behind go first (only those of dead processes of this host). */
	int dropped = 0;
	scry_error gerr = SCRY_ERROR_INIT;
	if (scry_shadow_gc(s->target, &s->opts, &dropped, &gerr))
		slog(s, SCRY_LOG_WARNING, "could not look for clones left by earlier runs: %s", gerr.message);
	else if (dropped)
		slog(s, SCRY_LOG_INFO, "dropped %d clone%s left by earlier runs that were killed", dropped,
		     dropped == 1 ? "" : "s");
	PGconn *c = scry__shadow_connect(s, s->maint_conninfo, err, "the server's maintenance database");
	if (!c)
		return SCRY_ECONNECT;
	int rc = 0;
	for (int i = 0; i < 2 && !rc; i++)
		if (!s->exists[i])
			rc = clone_one(s, c, i, err);
	PQfinish(c);
	if (rc) {
		/* Leave nothing behind: a failed create drops what it made. */
		scry_shadow_drop(s, NULL);
	}
	return rc;
}

int scry_shadow_drop(scry_shadow *s, scry_error *err)
{
	if (!s || s->opts.in_place || (!s->exists[0] && !s->exists[1]))
		return 0;
	if (s->opts.provider == SCRY_CLONE_GIVEN) {
		s->exists[0] = s->exists[1] = false; /* the caller's databases: never dropped */
		return 0;
	}
	if (s->opts.provider == SCRY_CLONE_COMMAND)
		return scry__shadow_command_drop(s, err);
	PGconn *c = scry__shadow_connect(s, s->maint_conninfo, err, "the server's maintenance database");
	if (!c) {
		slog(s, SCRY_LOG_ERROR, "could not drop the clones %s and %s: cannot connect", s->names[0],
		     s->names[1]);
		return SCRY_ECONNECT;
	}
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		if (!s->exists[i])
			continue;
		char *q = PQescapeIdentifier(c, s->names[i], strlen(s->names[i]));
		if (!q) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			break;
		}
		char sql[200];
		/* FORCE (PostgreSQL 13+) ends sessions a cancelled replay may have left. */
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s%s", q,
		         s->server_version >= 130000 ? " WITH (FORCE)" : "");
		PQfreemem(q);
		PGresult *r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			s->exists[i] = false;
			slog(s, SCRY_LOG_DEBUG, "dropped %s", s->names[i]);
		} else {
			char msg[300];
			scry__pg_result_message(r, c, msg, sizeof msg);
			slog(s, SCRY_LOG_ERROR, "could not drop the clone %s: %s (drop it by hand: DROP DATABASE %s)",
			     s->names[i], msg, s->names[i]);
			if (!rc)
				rc = scry__fail(err, SCRY_EPG, "could not drop the clone %s: %s", s->names[i], msg);
		}
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

/*
 * What a settle may vacuum: NULL in *list for the whole database (a
 * superuser); otherwise the tables this role may vacuum, as "VACUUM"'s
 * comma-separated list: those it owns (or belongs to the owner of), and, as
 * the database's owner, every table but the shared catalogs. A database-wide
 * VACUUM as another role would print one WARNING per table it may not
 * touch (192 of them for the shared catalogs and their TOAST tables).
 */
static int vacuumable(scry_shadow *s, PGconn *c, const char *name, char **list, scry_error *err)
{
	*list = NULL;
	PGresult *r = PQexec(c,
		"SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY n.nspname, c.relname), "
		"  current_setting('is_superuser') = 'on' "
		"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
		"WHERE c.relkind IN ('r', 'm') AND (pg_has_role(c.relowner, 'USAGE') OR (NOT c.relisshared AND "
		"  pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')))");
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		char msg[300];
		scry__pg_result_message(r, c, msg, sizeof msg);
		rc = scry__fail(err, SCRY_EPG, "listing the tables to settle in %s failed: %s", name, msg);
	} else if (strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
		/* "" when the role may vacuum nothing: the caller skips the settle. */
		*list = scry__strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
		if (!*list)
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		else
			slog(s, SCRY_LOG_DEBUG, "not a superuser: settling only the tables this role may vacuum in %s",
			     name);
	}
	PQclear(r);
	return rc;
}

int scry_shadow_settle(scry_shadow *s, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "shadow is NULL");
	for (int i = 0; i < (s->opts.in_place ? 1 : 2); i++) {
		PGconn *c = scry__shadow_connect(s, s->conninfos[i], err, s->names[i]);
		if (!c)
			return SCRY_ECONNECT;
		/*
		 * Twice: after a bulk UPDATE (a backfill), the first VACUUM removes the
		 * dead tuples but leaves about half the pages not all-visible; only the
		 * second sets the visibility map that index-only scans need, as
		 * autovacuum would soon after. One pass measured Index Only Scan ->
		 * Bitmap Heap Scan "regressions" that production would not see. Then
		 * ANALYZE again: statistics taken while the dead tuples were still
		 * there misestimated a status filter (3752 rows for 2557) about half
		 * the time, and the planner left the index-only scan.
		 */
		static const char *const steps[] = { "VACUUM ANALYZE", "VACUUM", "ANALYZE" };
		/*
		 * A snapshot held in this database while VACUUM runs keeps the
		 * backfill's pages from being all-visible: an autovacuum ANALYZE the
		 * migration set off, or a replay backend still exiting. Wait for them
		 * (10 s at most); past that, settle anyway.
		 */
		for (int w = 0; w < 500 && !atomic_load(&s->canceled); w++) {
			PGresult *busy = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
			                           " AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL");
			bool quiet = PQresultStatus(busy) != PGRES_TUPLES_OK || !strcmp(PQgetvalue(busy, 0, 0), "0");
			PQclear(busy);
			if (quiet)
				break;
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		char *list = NULL;
		int rc = vacuumable(s, c, s->names[i], &list, err);
		if (!rc && list && !*list)
			slog(s, SCRY_LOG_WARNING, "%s: this role may vacuum no table; not settled (plans may differ from "
			     "production's until autovacuum runs)", s->names[i]);
		for (int k = 0; k < 3 && !rc && !(list && !*list); k++) {
			scry_buf sql = SCRY_BUF_INIT;
			if (scry__buf_printf(&sql, "%s%s%s", steps[k], list ? " " : "", list ? list : "")) {
				rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
				break;
			}
			PGresult *r = exec_cancelable(s, c, sql.ptr);
			scry_buf_dispose(&sql);
			if (atomic_load(&s->canceled)) {
				rc = scry__fail(err, SCRY_ECANCELED, "cancelled while settling %s", s->names[i]);
			} else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				char msg[300];
				scry__pg_result_message(r, c, msg, sizeof msg);
				rc = scry__fail(err, SCRY_EPG, "%s in %s failed: %s", steps[k], s->names[i], msg);
			}
			PQclear(r);
		}
		scry__free(list);
		PQfinish(c);
		if (rc)
			return rc;
	}
	return 0;
}

void scry_shadow_cancel(scry_shadow *s)
{
	if (!s)
		return;
	atomic_store(&s->canceled, 1);
	pthread_mutex_lock(&s->lock);
	if (s->running) {
		char buf[256];
		PQcancel(s->running, buf, sizeof buf);
	}
	if (s->child > 0)
		kill(-s->child, SIGTERM); /* its process group: the command and its children */
	pthread_mutex_unlock(&s->lock);
}

void scry_shadow_free(scry_shadow *s)
{
	if (!s)
		return;
	scry_shadow_drop(s, NULL);
	for (int i = 0; i < 2; i++) {
		scry__free(s->names[i]);
		scry__free(s->conninfos[i]);
	}
	scry__free(s->clone_command);
	scry__free(s->target);
	scry__free(s->target_db);
	scry__free(s->maint_conninfo);
	scry__free(s->host);
	scry__free(s->port);
	scry__free(s->user);
	scry__free(s->password);
	pthread_mutex_destroy(&s->lock);
	scry__free(s);
}

/* ------------------------------------------------------------------ */
/* Migrations                                                          */
/* ------------------------------------------------------------------ */

/* Percent-encodes a URI component. */
static int put_uri(scry_buf *b, const char *s)
{
	int rc = 0;
	for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p))
			rc = scry__buf_put(b, p, 1);
		else
			rc = scry__buf_printf(b, "%%%02X", *p);
	}
	return rc;
}

/* Where a migration command connects: the live values of a connection. */
typedef struct endpoint {
	char *host, *port, *user, *password, *db; /* password may be NULL */
} endpoint;

static void endpoint_free(endpoint *e)
{
	scry__free(e->host);
	scry__free(e->port);
	scry__free(e->user);
	scry__free(e->password);
	scry__free(e->db);
}

/* Clone `side`'s endpoint: the target's server for template clones, else asked from a connection to it. */
static int endpoint_of(scry_shadow *s, int side, endpoint *e, scry_error *err)
{
	memset(e, 0, sizeof *e);
	if (s->opts.in_place || s->opts.provider == SCRY_CLONE_TEMPLATE) {
		e->host = scry__strdup(s->host);
		e->port = scry__strdup(s->port);
		e->user = scry__strdup(s->user);
		e->password = s->password ? scry__strdup(s->password) : NULL;
		e->db = scry__strdup(s->names[side]);
	} else {
		PGconn *c = scry__shadow_connect(s, s->conninfos[side], err, s->names[side]);
		if (!c)
			return SCRY_ECONNECT;
		e->host = scry__strdup(PQhost(c) ? PQhost(c) : "");
		e->port = scry__strdup(PQport(c) ? PQport(c) : "");
		e->user = scry__strdup(PQuser(c) ? PQuser(c) : "");
		e->password = PQpass(c) && *PQpass(c) ? scry__strdup(PQpass(c)) : NULL;
		e->db = scry__strdup(PQdb(c));
		bool nomem = PQpass(c) && *PQpass(c) && !e->password;
		PQfinish(c);
		if (nomem)
			e->host = NULL;
	}
	if (!e->host || !e->port || !e->user || !e->db) {
		endpoint_free(e);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * DATABASE_URL for an endpoint: postgresql://user[:pass]@host:port/db, or,
 * for a Unix socket directory, ...@/db?host=/dir&port=N (the form libpq and
 * SQLAlchemy both accept).
 */
static int database_url(const endpoint *s, scry_buf *b)
{
	const char *db = s->db;
	int rc = scry__buf_puts(b, "postgresql://");
	if (!rc && *s->user)
		rc = put_uri(b, s->user);
	if (!rc && s->password) {
		rc = scry__buf_puts(b, ":");
		if (!rc)
			rc = put_uri(b, s->password);
	}
	if (!rc && *s->user)
		rc = scry__buf_puts(b, "@");
	bool socket = s->host[0] == '/' || s->host[0] == '@' || !s->host[0];
	if (!rc && !socket) {
		bool v6 = strchr(s->host, ':') != NULL;
		rc = scry__buf_printf(b, "%s%s%s", v6 ? "[" : "", s->host, v6 ? "]" : "");
		if (!rc && *s->port)
			rc = scry__buf_printf(b, ":%s", s->port);
	}
	if (!rc)
		rc = scry__buf_puts(b, "/");
	if (!rc)
		rc = put_uri(b, db);
	if (!rc && socket && s->host[0]) {
		rc = scry__buf_puts(b, "?host=");
		if (!rc)
			rc = put_uri(b, s->host);
		if (!rc && *s->port)
			rc = scry__buf_printf(b, "&port=%s", s->port);
	}
	return rc;
}

/* Connection variables removed from the command's environment (we set our own). */
static bool is_pg_conn_var(const char *e)
{
	static const char *const vars[] = { "PGHOST=", "PGHOSTADDR=", "PGPORT=", "PGDATABASE=",
		"PGUSER=", "PGPASSWORD=", "PGSERVICE=", "DATABASE_URL=", "PGAPPNAME=", NULL };
	for (int i = 0; vars[i]; i++)
		if (!strncmp(e, vars[i], strlen(vars[i])))
			return true;
	return false;
}

static char *env_entry(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	char *e = scry__malloc(n);
	if (e)
		snprintf(e, n, "%s=%s", name, value);
	return e;
}

/* Keeps the last bytes of the output, for the error message. */
typedef struct tail_buf {
	char data[4096];
	size_t len;
} tail_buf;

static void tail_add(tail_buf *t, const char *p, size_t n)
{
	if (n >= sizeof t->data) {
		memcpy(t->data, p + n - sizeof t->data, sizeof t->data);
		t->len = sizeof t->data;
		return;
	}
	if (t->len + n > sizeof t->data) {
		size_t drop = t->len + n - sizeof t->data;
		memmove(t->data, t->data + drop, t->len - drop);
		t->len -= drop;
	}
	memcpy(t->data + t->len, p, n);
	t->len += n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int run_command(scry_shadow *s, int side, const scry_migration *m, scry_error *err)
{
	/* Everything the child needs is built before fork: no malloc after it. */
	endpoint ep;
	int erc = endpoint_of(s, side, &ep, err);
	if (erc)
		return erc;
	scry_buf url = SCRY_BUF_INIT;
	if (database_url(&ep, &url)) {
		endpoint_free(&ep);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **envp = scry__calloc(n + 9, sizeof *envp);
	char *own[7] = { NULL };
	int rc = 0;
	if (!envp) {
		scry_buf_dispose(&url);
		endpoint_free(&ep);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!is_pg_conn_var(environ[i]))
			envp[k++] = environ[i];
	own[0] = env_entry("DATABASE_URL", url.ptr);
	own[1] = env_entry("PGDATABASE", ep.db);
	own[2] = env_entry("PGHOST", ep.host);
	own[3] = env_entry("PGPORT", ep.port);
	own[4] = env_entry("PGUSER", ep.user);
	own[5] = ep.password ? env_entry("PGPASSWORD", ep.password) : NULL;
	bool has_password = ep.password != NULL;
	endpoint_free(&ep);
	/* The migration's connections are told apart by it (include/scry/impact.h). */
	own[6] = env_entry("PGAPPNAME", SCRY_IMPACT_MIGRATION_APP);
	scry_buf_dispose(&url);
	for (int i = 0; i < 7; i++) {
		if (!own[i] && (i != 5 || has_password)) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			goto out;
		}
		/* An empty host/port means libpq's default: leave the variable unset. */
		if (own[i] && own[i][strlen(own[i]) - 1] != '=')
			envp[k++] = own[i];
	}
	envp[k] = NULL;

	int pipefd[2] = { -1, -1 };
	if (m->output && pipe2(pipefd, O_CLOEXEC) != 0) {
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create a pipe: %s", strerror(errno));
		goto out;
	}
	/* The supervising pipe: its write end lives only in this process, so EOF means scry is gone. */
	int sup[2] = { -1, -1 };
	if (pipe2(sup, O_CLOEXEC) != 0) {
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create a pipe: %s", strerror(errno));
		if (pipefd[0] >= 0) {
			close(pipefd[0]);
			close(pipefd[1]);
		}
		goto out;
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	pthread_mutex_lock(&s->lock);
	bool skip = atomic_load(&s->canceled);
	pid_t pid = skip ? 0 : fork();
	if (pid == 0 && !skip) {
		/*
		 * Child: the supervisor. A fresh signal state (the caller may block
		 * SIGINT to wait for it in a thread), its own process group so a cancel
		 * reaches the command and its children. It runs the command and waits;
		 * if scry dies (even by kill -9) the supervising pipe reaches EOF and it
		 * kills the whole group, so no migration outlives scry.
		 */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		setpgid(0, 0);
		close(sup[1]);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		if (pipefd[1] >= 0) {
			dup2(pipefd[1], STDOUT_FILENO);
			dup2(pipefd[1], STDERR_FILENO);
		}
		pid_t cmd = fork();
		if (cmd == 0) {
			execvpe(m->argv[0], m->argv, envp);
			dprintf(pipefd[1] >= 0 ? pipefd[1] : STDERR_FILENO, "cannot run %s: %s\n", m->argv[0],
			        strerror(errno));
			_exit(127);
		}
		if (cmd < 0) {
			dprintf(pipefd[1] >= 0 ? pipefd[1] : STDERR_FILENO, "cannot start %s: %s\n", m->argv[0],
			        strerror(errno));
			_exit(127);
		}
		/* The output pipe is the command's alone now: scry sees EOF when it is done. */
		if (pipefd[1] >= 0 && devnull >= 0) {
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		for (;;) {
			struct pollfd pfd = { sup[0], POLLIN, 0 };
			if (poll(&pfd, 1, 100) > 0) {
				kill(-getpid(), SIGKILL); /* scry is gone: the command and its children go too */
				_exit(137);
			}
			int st = 0;
			pid_t w = waitpid(cmd, &st, WNOHANG);
			if (w == cmd) {
				if (WIFEXITED(st))
					_exit(WEXITSTATUS(st));
				signal(WTERMSIG(st), SIG_DFL);
				kill(getpid(), WTERMSIG(st));
				_exit(128 + WTERMSIG(st));
			}
		}
	}
	if (pid > 0) {
		setpgid(pid, pid); /* also here: no race with an early cancel */
		s->child = pid;
	}
	pthread_mutex_unlock(&s->lock);
	close(sup[0]);
	if (devnull >= 0)
		close(devnull);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (pid < 0) {
		close(sup[1]);
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot start %s: %s", m->argv[0], strerror(errno));
		if (pipefd[0] >= 0)
			close(pipefd[0]);
		goto out;
	}
	if (skip) { /* cancelled before it started */
		close(sup[1]);
		if (pipefd[0] >= 0)
			close(pipefd[0]);
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled before the migration ran");
		goto out;
	}

	tail_buf *tail = scry__calloc(1, sizeof *tail);
	int status = 0;
	bool reaped = false, eof = pipefd[0] < 0, timed_out = false;
	int64_t started = scry__monotonic_us();
	int64_t limit = (int64_t)s->opts.migration_timeout_s * 1000000;
	while (!reaped) {
		if (limit > 0 && !timed_out && scry__monotonic_us() - started > limit) {
			kill(-pid, SIGKILL); /* the supervisor, the command and its children */
			timed_out = true;
		}
		if (!eof) {
			struct pollfd pfd = { pipefd[0], POLLIN, 0 };
			if (poll(&pfd, 1, 100) > 0) {
				char buf[4096];
				ssize_t r = read(pipefd[0], buf, sizeof buf);
				if (r > 0) {
					m->output(m->output_ctx, buf, (size_t)r);
					if (tail)
						tail_add(tail, buf, (size_t)r);
				} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
					eof = true;
				}
			}
		} else {
			sleep_ms(20);
		}
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid && eof)
			reaped = true;
		else if (w == pid) {
			/* Exited; drain what is left (grandchildren may hold the pipe: bounded). */
			for (int i = 0; i < 50 && !eof; i++) {
				struct pollfd pfd = { pipefd[0], POLLIN, 0 };
				if (poll(&pfd, 1, 20) <= 0)
					break;
				char buf[4096];
				ssize_t r = read(pipefd[0], buf, sizeof buf);
				if (r <= 0)
					eof = true;
				else {
					m->output(m->output_ctx, buf, (size_t)r);
					if (tail)
						tail_add(tail, buf, (size_t)r);
				}
			}
			reaped = true;
		} else if (w < 0 && errno != EINTR) {
			status = 0;
			reaped = true;
		}
	}
	pthread_mutex_lock(&s->lock);
	s->child = 0;
	pthread_mutex_unlock(&s->lock);
	close(sup[1]);
	if (pipefd[0] >= 0)
		close(pipefd[0]);

	if (atomic_load(&s->canceled)) {
		rc = scry__fail(err, SCRY_ECANCELED, "cancelled while the migration ran");
	} else if (timed_out) {
		rc = scry__fail(err, SCRY_EMIGRATION,
		                "the migration command %s did not finish within %d s (the migration timeout) "
		                "and was killed with its children; raise --migration-timeout if it needs longer",
		                m->argv[0], s->opts.migration_timeout_s);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[64];
		if (WIFSIGNALED(status))
			snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
		else
			snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
		/* The end of its output is where the reason usually is. */
		char last[300] = "";
		if (tail && tail->len) {
			size_t len = tail->len;
			while (len && (tail->data[len - 1] == '\n' || tail->data[len - 1] == ' '))
				len--;
			size_t from = len > sizeof last - 1 ? len - (sizeof last - 1) : 0;
			snprintf(last, sizeof last, "%.*s", (int)(len - from), tail->data + from);
		}
		rc = scry__fail(err, SCRY_EMIGRATION, "the migration command %s %s%s%s", m->argv[0], how,
		                last[0] ? ": " : "", last);
	}
	scry__free(tail);
out:
	for (int i = 0; i < 7; i++)
		scry__free(own[i]);
	scry__free(envp);
	return rc;
}

static int run_sql(scry_shadow *s, int side, const scry_migration *m, scry_error *err)
{
	scry_statement_span *spans = NULL;
	size_t n = 0;
	int rc = scry_fingerprint_split(m->sql, strlen(m->sql), &spans, &n, err);
	if (rc) {
		if (err)
			err->code = SCRY_EMIGRATION;
		return rc == SCRY_ENOMEM ? rc : SCRY_EMIGRATION;
	}
	PGconn *c = scry__shadow_connect(s, s->conninfos[side], err, s->names[side]);
	if (!c) {
		scry_statement_spans_free(spans);
		return SCRY_ECONNECT;
	}
	PQclear(PQexec(c, "SET application_name = '" SCRY_IMPACT_MIGRATION_APP "'"));
	/* One statement at a time, autocommit: CREATE INDEX CONCURRENTLY works. */
	for (size_t i = 0; i < n && !rc; i++) {
		char *stmt = scry__strndup(m->sql + spans[i].offset, spans[i].length);
		if (!stmt) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			break;
		}
		PGresult *r = exec_cancelable(s, c, stmt);
		ExecStatusType st = PQresultStatus(r);
		if (atomic_load(&s->canceled)) {
			rc = scry__fail(err, SCRY_ECANCELED, "cancelled while the migration ran");
		} else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
			char msg[300];
			scry__pg_result_message(r, c, msg, sizeof msg);
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			rc = scry__fail(err, SCRY_EMIGRATION, "migration statement %zu failed: %s (%.80s)", i + 1,
			                msg, stmt);
			if (err && state)
				snprintf(err->sqlstate, sizeof err->sqlstate, "%s", state);
		}
		PQclear(r);
		scry__free(stmt);
	}
	PQfinish(c);
	scry_statement_spans_free(spans);
	return rc;
}

int scry_shadow_migrate(scry_shadow *s, scry_shadow_side side, const scry_migration *m,
	scry_error *err)
{
	if (!s || !m || (side != SCRY_SHADOW_A && side != SCRY_SHADOW_B))
		return scry__fail(err, SCRY_EINVAL, "invalid shadow, side or migration");
	scry_migration mig;
	int vrc = scry__opts_copy(err, &scry__abi_migration, &mig, m);
	if (vrc)
		return vrc;
	m = &mig;
	int kinds = (m->argv && m->argv[0]) + (m->sql != NULL) + (m->fn != NULL);
	if (kinds != 1)
		return scry__fail(err, SCRY_EINVAL, "a migration is exactly one of a command, SQL or a callback");
	if (!s->opts.in_place) {
		/* Never the target itself: only a clone this shadow made. */
		if (!s->exists[side] || (s->opts.provider == SCRY_CLONE_TEMPLATE && !strcmp(s->names[side], s->target_db)))
			return scry__fail(err, SCRY_EINVAL,
			                  "refusing to migrate \"%s\": it is not a clone (create the shadow first)",
			                  s->names[side]);
	}
	if (atomic_load(&s->canceled))
		return scry__fail(err, SCRY_ECANCELED, "cancelled");
	slog(s, SCRY_LOG_INFO, "migrating %s", s->names[side]);
	if (m->argv && m->argv[0])
		return run_command(s, side, m, err);
	if (m->sql)
		return run_sql(s, side, m, err);
	char msg[400] = "";
	int r = m->fn(m->fn_ctx, s->conninfos[side], msg, sizeof msg);
	if (atomic_load(&s->canceled))
		return scry__fail(err, SCRY_ECANCELED, "cancelled while the migration ran");
	if (r != 0)
		return scry__fail(err, SCRY_EMIGRATION, "the migration failed%s%s", msg[0] ? ": " : "", msg);
	return 0;
}
