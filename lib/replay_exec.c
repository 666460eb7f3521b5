/*
 * lib/replay_exec.c - what a replay connection is, per captured session:
 * its connection keywords (the session's startup parameters, keepalives),
 * the role it runs as, and its setup query. See docs/replay.md, "Sessions".
 */
#define _GNU_SOURCE
#include "replay_workload.h"

#include <stdio.h>
#include <stdlib.h>

/* Appends `v` to an `options` string as one argument: spaces and
 * backslashes escaped with a backslash, as libpq reads it. */
static int put_option_arg(scry_buf *b, const char *v)
{
	for (; *v; v++) {
		if ((*v == ' ' || *v == '\\') && scry__buf_put(b, "\\", 1))
			return SCRY_ENOMEM;
		if (scry__buf_put(b, v, 1))
			return SCRY_ENOMEM;
	}
	return 0;
}

int scry__replay_conn_keys(const scry_replay_options *o, const rsession *s, const char *conninfo,
                           const char **keys, const char **vals, scry_buf *store)
{
	/* Offsets into `store`, turned into pointers once it stops moving. */
	size_t off[REPLAY_MAX_KEYS];
	bool stored[REPLAY_MAX_KEYS] = { 0 };
	int n = 0;
	scry__buf_clear(store);
	int64_t total_ms = scry__replay_client_limit_ms(o);
	/* Defaults first: the target's own connection string overrides them. */
	keys[n] = "keepalives"; vals[n++] = "1";
	keys[n] = "keepalives_idle"; vals[n++] = "10";
	keys[n] = "keepalives_interval"; vals[n++] = "5";
	keys[n] = "keepalives_count"; vals[n++] = "3";
	if (total_ms) {
		keys[n] = "tcp_user_timeout";
		off[n] = store->size;
		stored[n] = true;
		if (scry__buf_printf(store, "%lld", (long long)total_ms) || scry__buf_put(store, "", 1))
			return SCRY_ENOMEM;
		n++;
	}
	keys[n] = "dbname"; vals[n++] = conninfo;
	keys[n] = "fallback_application_name"; vals[n++] = "scry replay";
	if (s && s->params && !o->ignore_session_params) {
		/* The session's startup parameters override the target's: they are
		 * what the application connected with. */
		scry_buf k = SCRY_BUF_INIT, v = SCRY_BUF_INIT, opt = SCRY_BUF_INIT;
		const char *p = s->params;
		int rc, app = -1, enc = -1;
		scry_buf app_v = SCRY_BUF_INIT, enc_v = SCRY_BUF_INIT;
		while ((rc = scry__session_param_next(&p, &k, &v)) == 1) {
			if (!strcmp(k.ptr, "options")) {
				rc = (opt.size ? scry__buf_put(&opt, " ", 1) : 0) || scry__buf_puts(&opt, v.ptr) ? SCRY_ENOMEM : 0;
			} else if (!strcmp(k.ptr, "application_name")) {
				scry__buf_clear(&app_v);
				rc = scry__buf_put(&app_v, v.ptr, v.size) || scry__buf_grow(&app_v, 0) ? SCRY_ENOMEM : 0;
				app = 1;
			} else if (!strcmp(k.ptr, "client_encoding")) {
				scry__buf_clear(&enc_v);
				rc = scry__buf_put(&enc_v, v.ptr, v.size) || scry__buf_grow(&enc_v, 0) ? SCRY_ENOMEM : 0;
				enc = 1;
			} else if (k.size && v.size) {
				/* Any other parameter is a setting: "-c name=value". */
				rc = (opt.size ? scry__buf_put(&opt, " ", 1) : 0) || scry__buf_puts(&opt, "-c ") ||
				     put_option_arg(&opt, k.ptr) || scry__buf_put(&opt, "=", 1) || put_option_arg(&opt, v.ptr)
				     ? SCRY_ENOMEM : 0;
			}
			if (rc)
				break;
		}
		if (!rc && opt.size) {
			keys[n] = "options";
			off[n] = store->size;
			stored[n++] = true;
			rc = scry__buf_put(store, opt.ptr, opt.size + 1) ? SCRY_ENOMEM : 0;
		}
		if (!rc && app > 0) {
			keys[n] = "application_name";
			off[n] = store->size;
			stored[n++] = true;
			rc = scry__buf_put(store, app_v.ptr, app_v.size + 1) ? SCRY_ENOMEM : 0;
		}
		if (!rc && enc > 0) {
			keys[n] = "client_encoding";
			off[n] = store->size;
			stored[n++] = true;
			rc = scry__buf_put(store, enc_v.ptr, enc_v.size + 1) ? SCRY_ENOMEM : 0;
		}
		scry_buf_dispose(&k);
		scry_buf_dispose(&v);
		scry_buf_dispose(&opt);
		scry_buf_dispose(&app_v);
		scry_buf_dispose(&enc_v);
		if (rc < 0)
			return rc;
	}
	for (int i = 0; i < n; i++)
		if (stored[i])
			vals[i] = store->ptr + off[i];
	keys[n] = NULL;
	vals[n] = NULL;
	return 0;
}

/* The role a captured user replays as: --user-map, then itself. */
static const char *mapped_user(const scry_replay_options *o, const char *user)
{
	for (size_t i = 0; i < o->nuser_map; i++) {
		const char *m = o->user_map[i], *eq = m ? strchr(m, '=') : NULL;
		if (eq && (size_t)(eq - m) == strlen(user) && !memcmp(m, user, (size_t)(eq - m)))
			return eq[1] ? eq + 1 : NULL; /* "a=" : run a's sessions as the target's user */
	}
	return user;
}

int scry__replay_roles(const scry_replay_options *o, workload *w, PGconn *pg, int target, scry_error *err)
{
	for (size_t i = 0; i < w->nsess; i++) {
		rsession *s = &w->sess[i];
		s->role = o->ignore_users || !s->user ? NULL : mapped_user(o, s->user);
		s->role_ok[target] = 0;
	}
	bool any = false;
	for (size_t i = 0; i < w->nsess && !any; i++)
		any = w->sess[i].role != NULL;
	if (!any)
		return 0;
	/* Roles the replay user may become (a superuser: every role). */
	PGresult *res = PQexec(pg, "SELECT rolname, rolname = current_user FROM pg_roles "
	                           "WHERE pg_has_role(current_user, oid, 'MEMBER')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[300];
		scry__pg_one_line(PQerrorMessage(pg), msg, sizeof msg);
		PQclear(res);
		return scry__fail(err, SCRY_ECONNECT, "cannot list the target's roles: %s", msg);
	}
	int nroles = PQntuples(res);
	/* Warned roles: one warning per role, not per session. */
	const char **warned = NULL;
	size_t nwarned = 0, awarned = 0;
	for (size_t i = 0; i < w->nsess; i++) {
		rsession *s = &w->sess[i];
		if (!s->role)
			continue;
		bool self = false;
		for (int j = 0; j < nroles && !s->role_ok[target] && !self; j++) {
			if (strcmp(PQgetvalue(res, j, 0), s->role))
				continue;
			/* The replay user itself: no SET ROLE needed (nor sent). */
			self = PQgetvalue(res, j, 1)[0] == 't';
			s->role_ok[target] = !self;
		}
		if (s->role_ok[target] || self)
			continue;
		bool seen = false;
		for (size_t j = 0; j < nwarned && !seen; j++)
			seen = !strcmp(warned[j], s->role);
		if (seen)
			continue;
		if (!scry__array_grow((void **)&warned, &awarned, nwarned, sizeof *warned, 16))
			warned[nwarned++] = s->role;
		scry__log(o->log, o->log_ctx, SCRY_LOG_WARNING,
		          "role \"%s\" of the captured sessions does not exist on the target, or the replay user may not "
		          "SET ROLE to it: its sessions run as the replay user (create the role, or map it with --user-map %s=ROLE, "
		          "or --ignore-users)", s->role, s->user ? s->user : s->role);
	}
	scry__free(warned);
	PQclear(res);
	return 0;
}

int scry__replay_setup_sql(const scry_replay_options *o, const rsession *s, int target, scry_buf *out)
{
	scry__buf_clear(out);
	int rc = scry__buf_printf(out, "SET statement_timeout = %d", o->timeout_ms);
	if (!rc && s && s->role && s->role_ok[target]) {
		rc = scry__buf_puts(out, "; SET ROLE \"");
		for (const char *p = s->role; !rc && *p; p++) /* a quoted identifier: " doubled */
			rc = scry__buf_put(out, p, 1) || (*p == '"' && scry__buf_put(out, "\"", 1));
		if (!rc)
			rc = scry__buf_puts(out, "\"");
	}
	return rc ? SCRY_ENOMEM : 0;
}
