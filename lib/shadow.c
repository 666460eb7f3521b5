/*
 * lib/shadow.c - clones of a target database (CREATE DATABASE ... TEMPLATE),
 * their settling and their removal; the handle's lifecycle and cancel. The
 * migrations applied to them are in lib/shadow_migrate.c. See
 * include/scry/shadow.h and docs/pipeline.md.
 */
#define _GNU_SOURCE
#include "shadow_internal.h"
#include "util/pgexec.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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
	PGconn *c = scry__pg_connect(conninfo, NULL, false, -1);
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
PGresult *scry__shadow_exec_cancelable(scry_shadow *s, PGconn *c, const char *sql)
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

/* The provider's own options: a message and SCRY_EINVAL when they do not fit. */
static int check_provider(const scry_shadow_options *o, scry_error *err)
{
	if (o->provider == SCRY_CLONE_GIVEN && !o->in_place &&
	    (!o->baseline || !*o->baseline || !o->candidate || !*o->candidate))
		return scry__fail(err, SCRY_EINVAL, "the given-clones provider needs both a baseline and a candidate "
		                  "connection string (--baseline DSN --candidate DSN)");
	if (o->provider == SCRY_CLONE_COMMAND && !o->in_place && (!o->clone_command || !*o->clone_command))
		return scry__fail(err, SCRY_EINVAL, "the command clone provider needs a command (--clone-command CMD)");
	if (o->provider > SCRY_CLONE_COMMAND || o->migration_timeout_s < 0)
		return scry__fail(err, SCRY_EINVAL, "unknown clone provider %d, or a negative migration timeout",
		                  (int)o->provider);
	return 0;
}

void scry__endpoint_free(scry__endpoint *e)
{
	scry__free(e->host);
	scry__free(e->port);
	scry__free(e->user);
	scry__free(e->password);
	scry__free(e->db);
	memset(e, 0, sizeof *e);
}

int scry__endpoint_server(PGconn *c, scry__endpoint *e)
{
	e->host = scry__strdup(PQhost(c) ? PQhost(c) : "");
	e->port = scry__strdup(PQport(c) ? PQport(c) : "");
	e->user = scry__strdup(PQuser(c) ? PQuser(c) : "");
	e->password = PQpass(c) && *PQpass(c) ? scry__strdup(PQpass(c)) : NULL;
	if (!e->host || !e->port || !e->user || (PQpass(c) && *PQpass(c) && !e->password)) {
		scry__endpoint_free(e);
		return SCRY_ENOMEM;
	}
	return 0;
}

int scry__endpoint_copy(const scry__endpoint *src, const char *db, scry__endpoint *e)
{
	e->host = scry__strdup(src->host);
	e->port = scry__strdup(src->port);
	e->user = scry__strdup(src->user);
	e->password = src->password ? scry__strdup(src->password) : NULL;
	e->db = scry__strdup(db);
	if (!e->host || !e->port || !e->user || !e->db || (src->password && !e->password)) {
		scry__endpoint_free(e);
		return SCRY_ENOMEM;
	}
	return 0;
}

/* The target's live values (database, server, role), kept for the clones and the migration's environment. */
static int read_target(scry_shadow *s, scry_error *err)
{
	PGconn *c = scry__shadow_connect(s, s->target, err, "the target database");
	if (!c)
		return SCRY_ECONNECT;
	s->target_db = scry__strdup(PQdb(c));
	int rc = scry__endpoint_server(c, &s->live);
	s->server_version = PQserverVersion(c);
	PQfinish(c);
	return rc ? scry__fail(err, rc, "out of memory") : 0;
}

/* The clones' names and connection strings, by provider (the command provider learns its conninfos later). */
static int name_clones(scry_shadow *s, const scry_shadow_options *o, const char *suffix_opt, scry_error *err)
{
	char base[41], suffix[40];
	sanitize(s->target_db, base, sizeof base - 1);
	if (suffix_opt) {
		sanitize(suffix_opt, suffix, 16);
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
		if (!s->names[i])
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		int rc = 0;
		if (s->opts.in_place)
			s->conninfos[i] = scry__strdup(s->target);
		else if (s->opts.provider == SCRY_CLONE_GIVEN)
			s->conninfos[i] = scry__strdup(i ? o->candidate : o->baseline);
		else if (s->opts.provider == SCRY_CLONE_COMMAND)
			s->conninfos[i] = NULL; /* printed by the command when it creates the clone */
		else if ((rc = scry__shadow_conninfo_with_db(s->target, name, &s->conninfos[i], err)))
			return rc;
		if (!s->conninfos[i] && (s->opts.in_place || s->opts.provider != SCRY_CLONE_COMMAND))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	return 0;
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
	int rc = scry__opts_copy(err, &scry__abi_shadow_options, &o, opts);
	if (!rc)
		rc = check_provider(&o, err);
	if (rc)
		return rc;
	scry_shadow *s = scry__calloc(1, sizeof *s);
	if (!s)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	s->opts = o;
	s->opts.suffix = NULL;
	s->opts.maintenance_db = NULL;
	s->opts.baseline = s->opts.candidate = s->opts.clone_command = NULL;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->canceled, 0);
	s->target = scry__strdup(target);
	if (!s->target)
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (!rc)
		rc = read_target(s, err);
	if (!rc)
		rc = name_clones(s, &o, opts && opts->suffix ? opts->suffix : NULL, err);
	if (!rc)
		rc = scry__shadow_conninfo_with_db(target, opts && opts->maintenance_db ? opts->maintenance_db : "postgres",
		                                   &s->maint_conninfo, err);
	if (!rc && s->opts.provider == SCRY_CLONE_COMMAND && !(s->clone_command = scry__strdup(o.clone_command)))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (!rc && (!s->target_db || !s->maint_conninfo))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (rc) {
		scry_shadow_free(s);
		return rc;
	}
	*out = s;
	return 0;
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
	PGresult *r = scry__shadow_exec_cancelable(s, c, sql.ptr);
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
			s->target_db, msg, s->live.user, s->live.user);
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
			PGresult *r = scry__shadow_exec_cancelable(s, c, sql.ptr);
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
	scry__endpoint_free(&s->live);
	pthread_mutex_destroy(&s->lock);
	scry__free(s);
}
