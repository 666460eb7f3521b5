/*
 * lib/shadow_migrate.c - migrations applied to a clone: a command (run
 * under a supervising process, with the clone's connection in its
 * environment), SQL statements one at a time, or the caller's callback.
 * See include/scry/shadow.h and docs/pipeline.md.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

/* Clone `side`'s endpoint: the target's server for template clones, else asked from a connection to it. */
static int endpoint_of(scry_shadow *s, int side, scry__endpoint *e, scry_error *err)
{
	memset(e, 0, sizeof *e);
	int rc;
	if (s->opts.in_place || s->opts.provider == SCRY_CLONE_TEMPLATE) {
		rc = scry__endpoint_copy(&s->live, s->names[side], e);
	} else {
		PGconn *c = scry__shadow_connect(s, s->conninfos[side], err, s->names[side]);
		if (!c)
			return SCRY_ECONNECT;
		rc = scry__endpoint_server(c, e);
		if (!rc && !(e->db = scry__strdup(PQdb(c)))) {
			scry__endpoint_free(e);
			rc = SCRY_ENOMEM;
		}
		PQfinish(c);
	}
	return rc ? scry__fail(err, rc, "out of memory") : 0;
}

/*
 * DATABASE_URL for an endpoint: postgresql://user[:pass]@host:port/db, or,
 * for a Unix socket directory, ...@/db?host=/dir&port=N (the form libpq and
 * SQLAlchemy both accept).
 */
static int database_url(const scry__endpoint *s, scry_buf *b)
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

/* The command's environment: ours without connection variables, plus the clone's. */
typedef struct cmd_env {
	char **envp;
	char *own[7];
} cmd_env;

static void cmd_env_free(cmd_env *ce)
{
	for (int i = 0; i < 7; i++)
		scry__free(ce->own[i]);
	scry__free(ce->envp);
}

/* Builds the environment before fork (no malloc after it); cmd_env_free() in every case. */
static int cmd_env_build(scry_shadow *s, int side, cmd_env *ce, scry_error *err)
{
	memset(ce, 0, sizeof *ce);
	scry__endpoint ep;
	int erc = endpoint_of(s, side, &ep, err);
	if (erc)
		return erc;
	scry_buf url = SCRY_BUF_INIT;
	if (database_url(&ep, &url)) {
		scry_buf_dispose(&url);
		scry__endpoint_free(&ep);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	size_t n = 0;
	while (environ && environ[n])
		n++;
	ce->envp = scry__calloc(n + 9, sizeof *ce->envp);
	if (!ce->envp) {
		scry_buf_dispose(&url);
		scry__endpoint_free(&ep);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!is_pg_conn_var(environ[i]))
			ce->envp[k++] = environ[i];
	char **own = ce->own;
	own[0] = env_entry("DATABASE_URL", url.ptr);
	own[1] = env_entry("PGDATABASE", ep.db);
	own[2] = env_entry("PGHOST", ep.host);
	own[3] = env_entry("PGPORT", ep.port);
	own[4] = env_entry("PGUSER", ep.user);
	own[5] = ep.password ? env_entry("PGPASSWORD", ep.password) : NULL;
	bool has_password = ep.password != NULL;
	scry__endpoint_free(&ep);
	/* The migration's connections are told apart by it (include/scry/impact.h). */
	own[6] = env_entry("PGAPPNAME", SCRY_IMPACT_MIGRATION_APP);
	scry_buf_dispose(&url);
	for (int i = 0; i < 7; i++) {
		if (!own[i] && (i != 5 || has_password))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		/* An empty host/port means libpq's default: leave the variable unset. */
		if (own[i] && own[i][strlen(own[i]) - 1] != '=')
			ce->envp[k++] = own[i];
	}
	ce->envp[k] = NULL;
	return 0;
}

/*
 * The forked child: the supervisor. A fresh signal state (the caller may
 * block SIGINT to wait for it in a thread), its own process group so a
 * cancel reaches the command and its children. It runs the command and
 * waits; if scry dies (even by kill -9) the supervising pipe reaches EOF and
 * it kills the whole group, so no migration outlives scry.
 */
static void supervise(const scry_migration *m, char **envp, const int sup[2], int out_w, int devnull)
	__attribute__((noreturn));
static void supervise(const scry_migration *m, char **envp, const int sup[2], int out_w, int devnull)
{
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
	if (out_w >= 0) {
		dup2(out_w, STDOUT_FILENO);
		dup2(out_w, STDERR_FILENO);
	}
	pid_t cmd = fork();
	if (cmd == 0) {
		execvpe(m->argv[0], m->argv, envp);
		dprintf(out_w >= 0 ? out_w : STDERR_FILENO, "cannot run %s: %s\n", m->argv[0], strerror(errno));
		_exit(127);
	}
	if (cmd < 0) {
		dprintf(out_w >= 0 ? out_w : STDERR_FILENO, "cannot start %s: %s\n", m->argv[0], strerror(errno));
		_exit(127);
	}
	/* The output pipe is the command's alone now: scry sees EOF when it is done. */
	if (out_w >= 0 && devnull >= 0) {
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

static void close_pair(int fd[2])
{
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

/*
 * Starts the supervisor (registered in s->child for cancel). On success
 * *pid is set, out[0] is the command's output (or -1 without m->output) and
 * sup_w the supervising pipe's write end, both for the caller to close.
 */
static int spawn(scry_shadow *s, const scry_migration *m, char **envp, pid_t *pid_out, int *out_r, int *sup_w,
                 scry_error *err)
{
	int pipefd[2] = { -1, -1 };
	if (m->output && pipe2(pipefd, O_CLOEXEC) != 0)
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot create a pipe: %s", strerror(errno));
	/* The supervising pipe: its write end lives only in this process, so EOF means scry is gone. */
	int sup[2] = { -1, -1 };
	if (pipe2(sup, O_CLOEXEC) != 0) {
		int rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create a pipe: %s", strerror(errno));
		close_pair(pipefd);
		return rc;
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	pthread_mutex_lock(&s->lock);
	bool skip = atomic_load(&s->canceled);
	pid_t pid = skip ? 0 : fork();
	if (pid == 0 && !skip)
		supervise(m, envp, sup, pipefd[1], devnull);
	if (pid > 0) {
		setpgid(pid, pid); /* also here: no race with an early cancel */
		s->child = pid;
	}
	pthread_mutex_unlock(&s->lock);
	int fork_errno = errno;
	close(sup[0]);
	if (devnull >= 0)
		close(devnull);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (pid < 0 || skip) {
		close(sup[1]);
		if (pipefd[0] >= 0)
			close(pipefd[0]);
		if (skip) /* cancelled before it started */
			return scry__fail(err, SCRY_ECANCELED, "cancelled before the migration ran");
		return scry__fail_sys(err, SCRY_EIO, fork_errno, "cannot start %s: %s", m->argv[0], strerror(fork_errno));
	}
	*pid_out = pid;
	*out_r = pipefd[0];
	*sup_w = sup[1];
	return 0;
}

/* One read of the command's output, passed on and kept in the tail; read()'s result. */
static ssize_t forward(const scry_migration *m, int fd, tail_buf *tail)
{
	char buf[4096];
	ssize_t r = read(fd, buf, sizeof buf);
	if (r > 0) {
		m->output(m->output_ctx, buf, (size_t)r);
		if (tail)
			tail_add(tail, buf, (size_t)r);
	}
	return r;
}

/* Passes the output on until the supervisor is reaped; kills it all past the migration timeout. */
static void pump(scry_shadow *s, const scry_migration *m, pid_t pid, int out_r, tail_buf *tail, int *status,
                 bool *timed_out)
{
	bool reaped = false, eof = out_r < 0;
	int64_t started = scry__monotonic_us();
	int64_t limit = (int64_t)s->opts.migration_timeout_s * 1000000;
	while (!reaped) {
		if (limit > 0 && !*timed_out && scry__monotonic_us() - started > limit) {
			kill(-pid, SIGKILL); /* the supervisor, the command and its children */
			*timed_out = true;
		}
		if (!eof) {
			struct pollfd pfd = { out_r, POLLIN, 0 };
			if (poll(&pfd, 1, 100) > 0) {
				ssize_t r = forward(m, out_r, tail);
				if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
					eof = true;
			}
		} else {
			sleep_ms(20);
		}
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid && eof)
			reaped = true;
		else if (w == pid) {
			/* Exited; drain what is left (grandchildren may hold the pipe: bounded). */
			for (int i = 0; i < 50 && !eof; i++) {
				struct pollfd pfd = { out_r, POLLIN, 0 };
				if (poll(&pfd, 1, 20) <= 0)
					break;
				if (forward(m, out_r, tail) <= 0)
					eof = true;
			}
			reaped = true;
		} else if (w < 0 && errno != EINTR) {
			*status = 0;
			reaped = true;
		}
	}
}

/* The error of a command that did not succeed (0 when it did). */
static int command_result(scry_shadow *s, const scry_migration *m, int status, bool timed_out,
                          const tail_buf *tail, scry_error *err)
{
	if (atomic_load(&s->canceled))
		return scry__fail(err, SCRY_ECANCELED, "cancelled while the migration ran");
	if (timed_out)
		return scry__fail(err, SCRY_EMIGRATION,
		                  "the migration command %s did not finish within %d s (the migration timeout) "
		                  "and was killed with its children; raise --migration-timeout if it needs longer",
		                  m->argv[0], s->opts.migration_timeout_s);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
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
	return scry__fail(err, SCRY_EMIGRATION, "the migration command %s %s%s%s", m->argv[0], how,
	                  last[0] ? ": " : "", last);
}

/* A migration command: its environment, the supervised process, its output, its result. */
static int run_command(scry_shadow *s, int side, const scry_migration *m, scry_error *err)
{
	cmd_env ce;
	int rc = cmd_env_build(s, side, &ce, err);
	pid_t pid = 0;
	int out_r = -1, sup_w = -1;
	if (!rc)
		rc = spawn(s, m, ce.envp, &pid, &out_r, &sup_w, err);
	if (rc) {
		cmd_env_free(&ce);
		return rc;
	}
	tail_buf *tail = scry__calloc(1, sizeof *tail);
	int status = 0;
	bool timed_out = false;
	pump(s, m, pid, out_r, tail, &status, &timed_out);
	pthread_mutex_lock(&s->lock);
	s->child = 0;
	pthread_mutex_unlock(&s->lock);
	close(sup_w);
	if (out_r >= 0)
		close(out_r);
	rc = command_result(s, m, status, timed_out, tail, err);
	scry__free(tail);
	cmd_env_free(&ce);
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
		PGresult *r = scry__shadow_exec_cancelable(s, c, stmt);
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
