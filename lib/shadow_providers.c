/*
 * lib/shadow_providers.c - the clone providers besides CREATE DATABASE ...
 * TEMPLATE (two databases the caller prepared; an external command), the
 * marker that names the scry process owning a clone, and the garbage
 * collection of clones whose process died. See docs/pipeline.md.
 */
#define _GNU_SOURCE
#include "shadow_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Markers: which process made a clone                                 */
/* ------------------------------------------------------------------ */

/* A process's start time (clock ticks after boot, /proc/PID/stat field 22); 0 when it does not exist. */
static unsigned long long proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (!p)
		return 0;
	p++;
	for (int field = 2; field < 22 && *p; field++) { /* p is before field `field + 1` */
		while (*p == ' ')
			p++;
		if (field == 21)
			return strtoull(p, NULL, 10);
		while (*p && *p != ' ')
			p++;
	}
	return 0;
}

static void host_name(char *buf, size_t n)
{
	if (gethostname(buf, n) != 0)
		snprintf(buf, n, "unknown");
	buf[n - 1] = 0;
	for (char *p = buf; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
}

int scry__shadow_marker(const char *target_db, char *buf, size_t n)
{
	char host[128];
	host_name(host, sizeof host);
	int w = snprintf(buf, n, "scry clone pid=%d host=%s start=%llu target=%s", (int)getpid(), host,
	                 proc_start(getpid()), target_db ? target_db : "");
	return w < 0 || (size_t)w >= n ? SCRY_ELIMIT : 0;
}

/* Does the marker name a process of this host that no longer runs? */
static bool marker_dead(const char *marker)
{
	int pid = 0;
	unsigned long long start = 0;
	char host[128], mine[128];
	if (!marker || sscanf(marker, "scry clone pid=%d host=%127s start=%llu", &pid, host, &start) != 3 || pid <= 0)
		return false;
	host_name(mine, sizeof mine);
	if (strcmp(host, mine))
		return false; /* another machine's run: we cannot tell, leave it */
	return proc_start(pid) != start; /* gone, or the pid was reused by another process */
}

/* ------------------------------------------------------------------ */
/* Given databases                                                     */
/* ------------------------------------------------------------------ */

int scry__shadow_given_create(scry_shadow *s, scry_error *err)
{
	char where[2][600];
	for (int i = 0; i < 2; i++) {
		PGconn *c = scry__shadow_connect(s, s->conninfos[i], err, i ? "the candidate database" : "the baseline database");
		if (!c)
			return SCRY_ECONNECT;
		const char *h = PQhost(c) ? PQhost(c) : "", *p = PQport(c) ? PQport(c) : "", *d = PQdb(c);
		snprintf(where[i], sizeof where[i], "%s:%s/%s", h, p, d);
		bool is_target = !strcmp(h, s->live.host) && !strcmp(p, s->live.port) && !strcmp(d, s->target_db);
		PQfinish(c);
		if (is_target)
			return scry__fail(err, SCRY_EINVAL,
			                  "the %s database (%s) is the target itself: give two copies of it, never the "
			                  "target (the migration is applied to the candidate)",
			                  i ? "candidate" : "baseline", where[i]);
	}
	if (!strcmp(where[0], where[1]))
		return scry__fail(err, SCRY_EINVAL, "--baseline and --candidate are the same database (%s): give two copies",
		                  where[0]);
	s->exists[0] = s->exists[1] = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Clone command                                                       */
/* ------------------------------------------------------------------ */

/* Where command clones are registered until destroyed, so a later run can collect them. */
static void registry_dir(char *buf, size_t n)
{
	const char *t = getenv("TMPDIR");
	snprintf(buf, n, "%s/scry-clones-%d", t && *t ? t : "/tmp", (int)getuid());
}

/*
 * Runs `sh -c 'CMD "$@"' sh VERB NAME`; its standard output is kept in
 * `out` (when not NULL), its standard error is the caller's.
 */
static int run_provider(const char *cmd, const char *verb, const char *name, scry_buf *out, scry_error *err)
{
	scry_buf script = SCRY_BUF_INIT;
	if (scry__buf_printf(&script, "%s \"$@\"", cmd))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	int fd[2];
	if (pipe2(fd, O_CLOEXEC) != 0) {
		scry_buf_dispose(&script);
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot create a pipe: %s", strerror(errno));
	}
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(fd[1], STDOUT_FILENO);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		execl("/bin/sh", "sh", "-c", script.ptr, "sh", verb, name, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	scry_buf_dispose(&script);
	if (pid < 0) {
		close(fd[0]);
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot start the clone command: %s", strerror(errno));
	}
	int rc = 0;
	for (;;) {
		char buf[4096];
		ssize_t r = read(fd[0], buf, sizeof buf);
		if (r > 0) {
			if (out && !rc && scry__buf_put(out, buf, (size_t)r))
				rc = SCRY_ENOMEM;
		} else if (r == 0 || errno != EINTR) {
			break;
		}
	}
	close(fd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (rc)
		return scry__fail(err, rc, "out of memory");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return scry__fail(err, SCRY_EIO, "the clone command `%s %s %s` %s %d", cmd, verb, name,
		                  WIFEXITED(status) ? "exited with status" : "was killed by signal",
		                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return 0;
}

static void registry_put(scry_shadow *s, const char *name)
{
	char dir[512], path[600], marker[300];
	registry_dir(dir, sizeof dir);
	mkdir(dir, 0700);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "we");
	if (!f || scry__shadow_marker(s->target_db, marker, sizeof marker)) {
		if (f)
			fclose(f);
		slog(s, SCRY_LOG_WARNING, "cannot register the clone %s in %s: a kill -9 would leave it behind", name, dir);
		return;
	}
	fprintf(f, "%s\n%s\n", marker, s->clone_command);
	fclose(f);
}

static void registry_drop(const char *name)
{
	char dir[512], path[600];
	registry_dir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
}

int scry__shadow_command_create(scry_shadow *s, scry_error *err)
{
	int dropped = 0;
	scry_error gerr = SCRY_ERROR_INIT;
	if (scry_shadow_gc(NULL, &s->opts, &dropped, &gerr))
		slog(s, SCRY_LOG_WARNING, "could not collect clones left by earlier runs: %s", gerr.message);
	for (int i = 0; i < 2; i++) {
		if (atomic_load(&s->canceled))
			return scry__fail(err, SCRY_ECANCELED, "cancelled while cloning");
		scry_buf out = SCRY_BUF_INIT;
		slog(s, SCRY_LOG_DEBUG, "%s create %s", s->clone_command, s->names[i]);
		registry_put(s, s->names[i]); /* before: a kill -9 during create is collected too */
		int rc = run_provider(s->clone_command, "create", s->names[i], &out, err);
		s->exists[i] = true; /* destroy is asked even after a failed create: it may have half-made it */
		/* The conninfo is the last non-empty line of its output. */
		size_t end = out.size;
		while (end && (out.ptr[end - 1] == '\n' || out.ptr[end - 1] == '\r' || out.ptr[end - 1] == ' '))
			end--;
		size_t begin = end;
		while (begin && out.ptr[begin - 1] != '\n')
			begin--;
		if (!rc && begin == end)
			rc = scry__fail(err, SCRY_EIO, "the clone command `%s create %s` printed no connection string "
			                "(its last line of standard output must be one)", s->clone_command, s->names[i]);
		if (!rc && !(s->conninfos[i] = scry__strndup(out.ptr + begin, end - begin)))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		scry_buf_dispose(&out);
		if (!rc) {
			PGconn *c = scry__shadow_connect(s, s->conninfos[i], err, s->names[i]);
			if (!c)
				rc = SCRY_ECONNECT;
			PQfinish(c);
		}
		if (rc) {
			scry__shadow_command_drop(s, NULL);
			return rc;
		}
	}
	return 0;
}

int scry__shadow_command_drop(scry_shadow *s, scry_error *err)
{
	int rc = 0;
	for (int i = 0; i < 2; i++) {
		if (!s->exists[i])
			continue;
		scry_error e = SCRY_ERROR_INIT;
		int r = run_provider(s->clone_command, "destroy", s->names[i], NULL, &e);
		if (r) {
			slog(s, SCRY_LOG_ERROR, "could not destroy the clone %s: %s (run `%s destroy %s` by hand)", s->names[i],
			     e.message, s->clone_command, s->names[i]);
			if (!rc) {
				rc = r;
				if (err)
					*err = e;
			}
			continue;
		}
		s->exists[i] = false;
		registry_drop(s->names[i]);
	}
	return rc;
}

/* Command clones of dead processes: `CMD destroy NAME` with the command they were made with. */
static int gc_registry(int *dropped)
{
	char dir[512];
	registry_dir(dir, sizeof dir);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[800], marker[300] = "", cmd[2048] = "";
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		bool ok = fgets(marker, sizeof marker, f) && fgets(cmd, sizeof cmd, f);
		fclose(f);
		if (!ok || !marker_dead(marker))
			continue;
		cmd[strcspn(cmd, "\n")] = 0;
		if (!run_provider(cmd, "destroy", e->d_name, NULL, NULL)) {
			unlink(path);
			(*dropped)++;
		}
	}
	closedir(d);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Garbage collection                                                  */
/* ------------------------------------------------------------------ */

int scry_shadow_gc(const char *target, const scry_shadow_options *opts, int *dropped, scry_error *err)
{
	int n = 0;
	if (dropped)
		*dropped = 0;
	scry_shadow_options o;
	int rc = scry__opts_copy(err, &scry__abi_shadow_options, &o, opts);
	if (rc)
		return rc;
	gc_registry(&n);
	if (!target) {
		if (dropped)
			*dropped = n;
		return 0;
	}
	/* The maintenance database of the target's server. */
	char *maint = NULL;
	rc = scry__shadow_conninfo_with_db(target, o.maintenance_db ? o.maintenance_db : "postgres", &maint, err);
	if (rc)
		return rc;
	PGconn *c = scry__shadow_connect(NULL, maint, err, "the server's maintenance database");
	scry__free(maint);
	if (!c)
		return SCRY_ECONNECT;
	PGresult *r = PQexec(c, "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
	                        " WHERE shobj_description(oid, 'pg_database') LIKE 'scry clone %'");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		char msg[300];
		scry__pg_result_message(r, c, msg, sizeof msg);
		PQclear(r);
		PQfinish(c);
		return scry__fail(err, SCRY_EPG, "cannot list the databases: %s", msg);
	}
	bool force = PQserverVersion(c) >= 130000;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *name = PQgetvalue(r, i, 0);
		if (!marker_dead(PQgetvalue(r, i, 1)))
			continue;
		char *q = PQescapeIdentifier(c, name, strlen(name));
		if (!q)
			continue;
		scry_buf sql = SCRY_BUF_INIT;
		if (!scry__buf_printf(&sql, "DROP DATABASE IF EXISTS %s%s", q, force ? " WITH (FORCE)" : "")) {
			PGresult *d = PQexec(c, sql.ptr);
			if (PQresultStatus(d) == PGRES_COMMAND_OK)
				n++;
			else if (!rc) {
				char msg[300];
				scry__pg_result_message(d, c, msg, sizeof msg);
				rc = scry__fail(err, SCRY_EPG, "could not drop the abandoned clone %s: %s", name, msg);
			}
			PQclear(d);
		}
		scry_buf_dispose(&sql);
		PQfreemem(q);
	}
	PQclear(r);
	PQfinish(c);
	if (dropped)
		*dropped = n;
	return rc;
}
