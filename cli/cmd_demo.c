/*
 * cli/cmd_demo.c - `scry demo`: the seed's scenario on this machine.
 *
 * A throwaway PostgreSQL cluster (or $SCRY_DEMO_DSN), an e-commerce
 * database with ~25,000 orders, the application's traffic captured through
 * the capture proxy (production queries on the 25,000 rows, the new
 * geo-filtering feature's queries on a 100-row staging database), the
 * seed's migration through the same pipeline as `scry ci test-migration`,
 * then the seed's fix, re-validated. Every figure printed is measured in
 * the run. CLI-level orchestration over the public API (docs/demo.md).
 */
#define _GNU_SOURCE
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char demo_help[] =
	"usage: scry demo [--rows N] [--keep] [--json]\n"
	"\n"
	"Replays the scenario of \"the postmortem we never wrote\" on this machine:\n"
	"a migration adds orders.region and backfills it, without an index. In a\n"
	"100-row staging database the new geo-filtering queries take well under a\n"
	"millisecond; scry replays the captured traffic on a 25,000-row copy,\n"
	"catches the regressions with the EXPLAIN root cause, applies the fix (two\n"
	"indexes) and shows every pattern back at baseline. Every number printed\n"
	"is measured in the run.\n"
	"\n"
	"It starts a throwaway PostgreSQL cluster (server binaries from\n"
	"$SCRY_PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/*/bin) and\n"
	"removes it at the end, or uses the server of $SCRY_DEMO_DSN (a connection\n"
	"string of a role allowed to create databases) and drops what it made.\n"
	"\n"
	"  --rows N   orders in the production database (default 25000)\n"
	"  --keep     keep the cluster (or databases) and the store, and say where\n"
	"  --json     print the measured results as one JSON object on stdout\n"
	"             (docs/cli.md); the story then goes to stderr\n"
	"\n"
	"Exit codes: 0 the regressions were caught and the fix cleared them,\n"
	"1 error (or the scenario did not play out: the output says how), 2 usage.\n";

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static double now_s(void) { return (double)cli_now_us() / 1e6; }

static FILE *story; /* stdout; stderr with --json (stdout then holds only the JSON) */

/*
 * Ctrl-C between steps: noted here and acted on after the step, so that the
 * cluster is always stopped and removed. (During the pipeline, cli_ci_run
 * blocks these signals and cancels the pipeline itself.)
 */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

#define STEP_DONE()                                                            \
	do {                                                                       \
		if (interrupted) {                                                     \
			cli_progress_done(&prog);                                          \
			cli_error("interrupted: removing the demo's cluster and databases"); \
			goto out;                                                          \
		}                                                                      \
	} while (0)

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(story, fmt, ap);
	va_end(ap);
	fflush(story);
}

/* Thousands separators, for the row counts the seed quotes ("25,000"). */
static const char *commas(long n, char *buf, size_t size)
{
	char tmp[32];
	snprintf(tmp, sizeof tmp, "%ld", n < 0 ? -n : n);
	size_t len = strlen(tmp), k = 0;
	if (n < 0 && k < size - 1)
		buf[k++] = '-';
	for (size_t i = 0; i < len && k < size - 1; i++) {
		if (i && (len - i) % 3 == 0 && k < size - 1)
			buf[k++] = ',';
		buf[k++] = tmp[i];
	}
	buf[k] = 0;
	return buf;
}

/*
 * A conninfo with some keywords replaced: PQconninfoParse understands both
 * key=value strings and URIs; the result is key=value.
 */
static char *conninfo_with(const char *base, const char *host, const char *port, const char *db)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(base ? base : "", &perr);
	if (!opts) {
		cli_error("invalid connection string: %s", perr ? perr : "out of memory");
		PQfreemem(perr);
		return NULL;
	}
	const char *keys[] = { "host", "port", "dbname", "hostaddr" };
	const char *vals[] = { host, port, db, host ? "" : NULL };
	size_t cap = 1024, len = 0;
	char *out = malloc(cap);
	if (!out) {
		PQconninfoFree(opts);
		return NULL;
	}
	out[0] = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		const char *v = o->val;
		for (int i = 0; i < 4; i++)
			if (vals[i] && !strcmp(o->keyword, keys[i]))
				v = vals[i];
		if (!v || !*v)
			continue;
		size_t need = len + strlen(o->keyword) + 2 * strlen(v) + 8;
		if (need > cap) {
			char *p = realloc(out, cap = need * 2);
			if (!p) {
				free(out);
				PQconninfoFree(opts);
				return NULL;
			}
			out = p;
		}
		len += (size_t)sprintf(out + len, "%s%s='", len ? " " : "", o->keyword);
		for (const char *c = v; *c; c++) {
			if (*c == '\'' || *c == '\\')
				out[len++] = '\\';
			out[len++] = *c;
		}
		out[len++] = '\'';
		out[len] = 0;
	}
	PQconninfoFree(opts);
	return out;
}

/* libpq's last error on one line (it ends messages with a newline). */
static const char *pg_error(PGconn *c)
{
	static char buf[512];
	size_t n = 0;
	for (const char *p = PQerrorMessage(c); *p && n < sizeof buf - 1; p++) {
		bool space = *p == '\n' || *p == '\t' || *p == ' ';
		if (space && (n == 0 || buf[n - 1] == ' '))
			continue; /* fold newlines and tabs into single spaces */
		buf[n++] = space ? ' ' : *p;
	}
	while (n && buf[n - 1] == ' ')
		n--;
	buf[n] = 0;
	return buf;
}

static PGconn *db_connect(const char *conninfo, const char *what)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		cli_error("cannot connect to %s: %s", what, pg_error(c));
		if (getenv("SCRY_DEMO_DSN"))
			fprintf(stderr, "Check $SCRY_DEMO_DSN (a libpq connection string or URI of a server "
			                "where this user may CREATE DATABASE), or unset it to let the demo "
			                "start its own cluster.\n");
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, NULL, NULL);
	return c;
}

static bool db_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
	if (!ok)
		cli_error("SQL failed: %s\n  %.200s", pg_error(c), sql);
	PQclear(r);
	return ok;
}

/* ------------------------------------------------------------------ */
/* The throwaway cluster                                               */
/* ------------------------------------------------------------------ */

typedef struct cluster {
	char dir[256];
	char bindir[512];
	int port;
	bool running;
	bool as_user;          /* root: the server runs as an unprivileged user */
	uid_t uid;
	gid_t gid;
	char version[64];
} cluster;

static bool is_server_bindir(const char *d)
{
	char p[600];
	snprintf(p, sizeof p, "%s/initdb", d);
	if (access(p, X_OK))
		return false;
	snprintf(p, sizeof p, "%s/pg_ctl", d);
	return access(p, X_OK) == 0;
}

/* $SCRY_PG_BINDIR, then pg_config --bindir, then the newest /usr/lib/postgresql/N/bin. */
static bool find_bindir(char *out, size_t size)
{
	const char *env = getenv("SCRY_PG_BINDIR");
	if (env && *env && is_server_bindir(env)) {
		snprintf(out, size, "%s", env);
		return true;
	}
	FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
	if (f) {
		char line[512] = "";
		if (fgets(line, sizeof line, f)) {
			line[strcspn(line, "\n")] = 0;
			if (*line && is_server_bindir(line)) {
				pclose(f);
				snprintf(out, size, "%s", line);
				return true;
			}
		}
		pclose(f);
	}
	int best = -1;
	DIR *d = opendir("/usr/lib/postgresql");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			int v = atoi(e->d_name);
			char p[512];
			snprintf(p, sizeof p, "/usr/lib/postgresql/%s/bin", e->d_name);
			if (v > best && is_server_bindir(p)) {
				best = v;
				snprintf(out, size, "%s", p);
			}
		}
		closedir(d);
	}
	return best >= 0;
}

/*
 * Runs a server program; as root, as the unprivileged user (PostgreSQL
 * refuses to run as root). Output goes to `log`. Returns the exit status.
 */
static int run_server_tool(const cluster *cl, char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		/* Own process group: the terminal's Ctrl-C must not kill the server
		 * before the demo has cleaned up. */
		setpgid(0, 0);
		if (cl->as_user && (setgroups(0, NULL) || setgid(cl->gid) || setuid(cl->uid))) {
			dprintf(STDERR_FILENO, "cannot switch to uid %d: %s\n", (int)cl->uid, strerror(errno));
			_exit(126);
		}
		execv(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int port = -1;
	if (!bind(s, (struct sockaddr *)&a, sizeof a) && !getsockname(s, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	close(s);
	return port;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void cluster_stop(cluster *cl, bool keep)
{
	if (cl->running && !keep) {
		char pgctl[600], data[300];
		snprintf(pgctl, sizeof pgctl, "%s/pg_ctl", cl->bindir);
		snprintf(data, sizeof data, "%s/data", cl->dir);
		char *argv[] = { pgctl, "-D", data, "-m", "immediate", "-w", "stop", NULL };
		char log[300];
		snprintf(log, sizeof log, "%s/pg_ctl.log", cl->dir);
		run_server_tool(cl, argv, log);
		cl->running = false;
	}
	if (cl->dir[0] && !keep) {
		nftw(cl->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		cl->dir[0] = 0;
	}
}

static void show_log_tail(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	fprintf(stderr, "--- %s ---\n", path);
	while (fgets(line, sizeof line, f))
		fputs(line, stderr);
	fclose(f);
}

static bool cluster_start(cluster *cl)
{
	if (!find_bindir(cl->bindir, sizeof cl->bindir)) {
		cli_error("PostgreSQL server binaries (initdb, pg_ctl) not found. Install them "
		          "(apt-get install postgresql), set SCRY_PG_BINDIR, or point SCRY_DEMO_DSN "
		          "at a server where the demo may create databases.");
		return false;
	}
	snprintf(cl->dir, sizeof cl->dir, "/tmp/scry-demo.XXXXXX");
	if (!mkdtemp(cl->dir)) {
		cli_error("cannot create a directory in /tmp: %s", strerror(errno));
		cl->dir[0] = 0;
		return false;
	}
	chmod(cl->dir, 0755);
	if (geteuid() == 0) {
		const char *name = getenv("SCRY_PG_USER");
		struct passwd *pw = getpwnam(name && *name ? name : "nobody");
		if (!pw) {
			cli_error("running as root, and there is no user '%s' to run PostgreSQL as "
			          "(set SCRY_PG_USER to an unprivileged user)", name && *name ? name : "nobody");
			return false;
		}
		cl->as_user = true;
		cl->uid = pw->pw_uid;
		cl->gid = pw->pw_gid;
		if (chown(cl->dir, cl->uid, cl->gid)) {
			cli_error("cannot give %s to %s: %s", cl->dir, pw->pw_name, strerror(errno));
			return false;
		}
	}
	char initdb[600], data[300], log[300], sock[300];
	snprintf(initdb, sizeof initdb, "%s/initdb", cl->bindir);
	snprintf(data, sizeof data, "%s/data", cl->dir);
	snprintf(log, sizeof log, "%s/initdb.log", cl->dir);
	snprintf(sock, sizeof sock, "%s/sock", cl->dir);
	char *iargv[] = { initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C.UTF-8", "--no-sync", NULL };
	if (run_server_tool(cl, iargv, log) != 0) {
		cli_error("initdb failed");
		show_log_tail(log);
		return false;
	}
	if (mkdir(sock, 0755) || (cl->as_user && chown(sock, cl->uid, cl->gid))) {
		cli_error("cannot create %s: %s", sock, strerror(errno));
		return false;
	}
	char pgctl[600], slog[300], opts[1024];
	snprintf(pgctl, sizeof pgctl, "%s/pg_ctl", cl->bindir);
	snprintf(slog, sizeof slog, "%s/server.log", cl->dir);
	/* The log file is created by us, for the server user to append to. */
	int fd = open(slog, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0) {
		if (cl->as_user && fchown(fd, cl->uid, cl->gid)) {
			/* pg_ctl then reports the problem itself */
		}
		close(fd);
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		cl->port = free_port();
		/* Throwaway data: durability off, which also keeps CREATE DATABASE fast. */
		snprintf(opts, sizeof opts,
		         "-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s "
		         "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
		         "-c max_connections=100 -c shared_buffers=128MB -c logging_collector=off",
		         cl->port, sock);
		char *sargv[] = { pgctl, "-D", data, "-l", slog, "-w", "-t", "60", "-o", opts, "start", NULL };
		char ctllog[300];
		snprintf(ctllog, sizeof ctllog, "%s/pg_ctl.log", cl->dir);
		if (run_server_tool(cl, sargv, ctllog) == 0) {
			cl->running = true;
			return true;
		}
		/* The port was probably taken in between: try another. */
	}
	cli_error("could not start PostgreSQL");
	show_log_tail(slog);
	return false;
}

/* ------------------------------------------------------------------ */
/* The application: schema and traffic                                 */
/* ------------------------------------------------------------------ */

/* The e-commerce schema, with `rows` orders. Deterministic data (setseed). */
static bool build_schema(const char *conninfo, long rows)
{
	PGconn *c = db_connect(conninfo, "the demo database");
	if (!c)
		return false;
	long customers = rows / 10 > 10 ? rows / 10 : 10;
	char sql[4096];
	snprintf(sql, sizeof sql,
		"SET client_min_messages = warning;"
		"CREATE TABLE customers ("
		"  id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL,"
		"  created_at timestamptz NOT NULL);"
		"CREATE TABLE orders ("
		"  id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),"
		"  status varchar(20) NOT NULL, total_cents int NOT NULL,"
		"  created_at timestamptz NOT NULL);"
		"SELECT setseed(0.25);"
		"INSERT INTO customers (name, email, created_at)"
		"  SELECT 'Customer ' || g, 'customer' || g || '@example.com',"
		"         timestamptz '2024-01-01' + g * interval '1 hour'"
		"  FROM generate_series(1, %ld) g;"
		/* Status skewed as in a real shop: most orders are delivered. */
		"INSERT INTO orders (customer_id, status, total_cents, created_at)"
		"  SELECT 1 + floor(random() * %ld)::int,"
		"         CASE WHEN r < 0.60 THEN 'delivered' WHEN r < 0.80 THEN 'shipped'"
		"              WHEN r < 0.90 THEN 'paid' WHEN r < 0.97 THEN 'pending' ELSE 'cancelled' END,"
		"         500 + floor(random() * 20000)::int,"
		"         timestamptz '2025-01-01' + g * interval '20 minutes'"
		"  FROM (SELECT g, random() AS r FROM generate_series(1, %ld) g) s;"
		"CREATE INDEX idx_orders_customer_id ON orders(customer_id);"
		"CREATE INDEX idx_orders_status ON orders(status);"
		"CREATE INDEX idx_orders_created_at ON orders(created_at);",
		customers, customers, rows);
	/* VACUUM cannot share the multi-statement (implicit transaction) query. */
	bool ok = db_exec(c, sql) && db_exec(c, "VACUUM ANALYZE customers") && db_exec(c, "VACUUM ANALYZE orders");
	PQfinish(c);
	return ok;
}

/* The seed's migration, verbatim, and its fix (without CONCURRENTLY: nothing else runs). */
static const char seed_migration[] =
	"ALTER TABLE orders ADD COLUMN region VARCHAR(50);\n"
	"UPDATE orders SET region = CASE\n"
	"    WHEN (id % 5) = 0 THEN 'west'\n"
	"    WHEN (id % 5) = 1 THEN 'east'\n"
	"    WHEN (id % 5) = 2 THEN 'central'\n"
	"    WHEN (id % 5) = 3 THEN 'south'\n"
	"    ELSE 'north'\n"
	"END;\n";
static const char seed_fix[] =
	"CREATE INDEX idx_orders_region ON orders(region);\n"
	"CREATE INDEX idx_orders_region_status ON orders(region, status);\n";

static const char *const regions[] = { "west", "east", "central", "south", "north" };

/* One query of the application; params are generated from the iteration. */
typedef struct app_query {
	const char *sql;
	int nparams;
	int times;    /* executions captured */
} app_query;

/* Existing production queries: all served by the existing indexes. */
static const app_query production[] = {
	{ "SELECT id, customer_id, status, total_cents, created_at FROM orders WHERE id = $1", 1, 60 },
	{ "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = $1 "
	  "ORDER BY created_at DESC LIMIT 10", 1, 60 },
	{ "SELECT count(*) FROM orders WHERE status = $1", 1, 30 },
	{ "SELECT id, customer_id, total_cents FROM orders WHERE created_at >= $1 "
	  "ORDER BY created_at DESC LIMIT 20", 1, 40 },
	{ "SELECT c.name, c.email, o.id, o.total_cents FROM customers c "
	  "JOIN orders o ON o.customer_id = c.id WHERE c.id = $1", 1, 40 },
	{ "UPDATE orders SET status = $1 WHERE id = $2", 2, 20 },
	{ NULL, 0, 30 }, /* simple protocol: a customer by id, literal in the text */
};

/* The new geo-filtering feature (they need the region column). */
static const app_query geo[] = {
	{ "SELECT count(*) FROM orders WHERE region = $1", 1, 30 },
	{ "SELECT count(*) FROM orders WHERE region = $1 AND status = $2", 2, 30 },
	{ "SELECT status, count(*) FROM orders WHERE region = $1 GROUP BY status", 1, 30 },
	{ "SELECT c.id, c.name, count(*) AS orders, sum(o.total_cents) AS revenue "
	  "FROM orders o JOIN customers c ON c.id = o.customer_id "
	  "WHERE o.region = $1 AND o.status = $2 "
	  "GROUP BY c.id, c.name ORDER BY revenue DESC LIMIT 10", 2, 30 },
};

/* Runs `q` `times` times on `c` with parameters derived from i. Returns executions. */
static long run_app_query(PGconn *c, const app_query *q, int qi, bool is_geo, long rows, int session,
	int nsessions)
{
	long customers = rows / 10 > 10 ? rows / 10 : 10, done = 0;
	for (int i = session; i < q->times; i += nsessions) {
		char p1[64], p2[64], sql[200];
		const char *params[2] = { p1, p2 };
		if (is_geo) {
			snprintf(p1, sizeof p1, "%s", regions[i % 5]);
			snprintf(p2, sizeof p2, "%s", "delivered");
		} else {
			switch (qi) {
			case 0: snprintf(p1, sizeof p1, "%ld", 1 + (i * 7919L) % rows); break;
			case 1:
			case 4: snprintf(p1, sizeof p1, "%ld", 1 + (i * 104729L) % customers); break;
			case 2: snprintf(p1, sizeof p1, "%s", i % 2 ? "pending" : "paid"); break;
			case 3: snprintf(p1, sizeof p1, "2025-0%d-%02d 00:00:00+00", 1 + i % 6, 1 + i % 28); break;
			case 5:
				snprintf(p1, sizeof p1, "%s", i % 2 ? "shipped" : "delivered");
				snprintf(p2, sizeof p2, "%ld", 1 + (i * 31L) % rows);
				break;
			default: break;
			}
		}
		PGresult *r;
		if (!q->sql) {
			snprintf(sql, sizeof sql, "SELECT id, name, email FROM customers WHERE id = %ld",
			         1 + (i * 613L) % customers);
			r = PQexec(c, sql);
		} else {
			r = PQexecParams(c, q->sql, q->nparams, NULL, params, NULL, NULL, 0);
		}
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
			cli_error("the demo application's query failed: %s", pg_error(c));
			PQclear(r);
			return -1;
		}
		PQclear(r);
		done++;
	}
	return done;
}

typedef struct capture_stats {
	long production_execs, geo_execs;
	int production_patterns, geo_patterns;
	uint64_t recorded, dropped;
	double seconds;
	int proxy_port;
} capture_stats;

/*
 * The application's traffic through the capture proxy: production sessions
 * against the big database, the feature's session against staging.
 */
static bool capture_traffic(scry_store *store, const char *upstream, const char *prod_conninfo,
	const char *staging_conninfo, long rows, capture_stats *cs)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_proxy_options po = SCRY_PROXY_OPTIONS_INIT;
	po.listen = "127.0.0.1:0";
	po.upstream = upstream;
	scry_proxy *px = NULL;
	double t0 = now_s();
	if (scry_proxy_new(&px, store, &po, &err) || scry_proxy_start(px, &err)) {
		cli_lib_error("capture proxy", &err);
		scry_proxy_free(px);
		return false;
	}
	cs->proxy_port = scry_proxy_port(px);
	char port[16];
	snprintf(port, sizeof port, "%d", cs->proxy_port);
	bool ok = true;
	/* Production: four application sessions through the proxy. */
	enum { NSESS = 4 };
	char *pc = conninfo_with(prod_conninfo, "127.0.0.1", port, NULL);
	char *sc = conninfo_with(staging_conninfo, "127.0.0.1", port, NULL);
	PGconn *conns[NSESS] = { NULL };
	for (int s = 0; ok && s < NSESS; s++)
		ok = pc && (conns[s] = db_connect(pc, "the database through the capture proxy")) != NULL;
	size_t nprod = sizeof production / sizeof production[0];
	for (size_t q = 0; ok && q < nprod; q++)
		for (int s = 0; ok && s < NSESS; s++) {
			long n = run_app_query(conns[s], &production[q], (int)q, false, rows, s, NSESS);
			ok = n >= 0;
			cs->production_execs += n > 0 ? n : 0;
		}
	cs->production_patterns = (int)nprod;
	for (int s = 0; s < NSESS; s++)
		PQfinish(conns[s]);
	/* Staging: the feature's developer session on 100 rows. */
	PGconn *st = ok && sc ? db_connect(sc, "the staging database through the capture proxy") : NULL;
	ok = ok && st;
	for (size_t q = 0; ok && q < sizeof geo / sizeof geo[0]; q++) {
		long n = run_app_query(st, &geo[q], (int)q, true, 100, 0, 1);
		ok = n >= 0;
		cs->geo_execs += n > 0 ? n : 0;
	}
	cs->geo_patterns = (int)(sizeof geo / sizeof geo[0]);
	PQfinish(st);
	free(pc);
	free(sc);
	scry_proxy_stop(px);
	if (scry_proxy_wait(px, &err)) {
		cli_lib_error("capture proxy", &err);
		ok = false;
	}
	scry_proxy_stats stats = SCRY_PROXY_STATS_INIT;
	scry_proxy_stats_get(px, &stats);
	cs->recorded = stats.events_recorded;
	cs->dropped = stats.events_dropped;
	scry_proxy_free(px);
	cs->seconds = now_s() - t0;
	return ok;
}

/* ------------------------------------------------------------------ */
/* Telling the story                                                   */
/* ------------------------------------------------------------------ */

/* What fails the gate is the verdict's call (flagged), not the demo's. */
static bool pattern_fails(const scry_pattern_verdict *pv)
{
	return pv->flagged != 0;
}

/* Prints the first lines of a plan summary, indented. */
static void print_plan(const char *plan, const char *indent, int max_lines)
{
	if (!plan)
		return;
	int lines = 0;
	for (const char *p = plan; *p && lines < max_lines; lines++) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		say("%s%.*s\n", indent, (int)n, p);
		p += n + (e ? 1 : 0);
	}
}

static void short_sql(const char *sql, char *out, size_t size)
{
	size_t k = 0;
	for (const char *p = sql ? sql : ""; *p && k < size - 4; p++) {
		if (*p == '\n' || *p == '\t' || *p == '\r') {
			if (k && out[k - 1] != ' ')
				out[k++] = ' ';
		} else {
			out[k++] = *p;
		}
	}
	out[k] = 0;
	if (sql && strlen(sql) > size - 4)
		strcpy(out + size - 4, "...");
}

/* The latency a pattern is judged by on the candidate, and its reference. */
static double cand_ms(const scry_pattern_verdict *pv) { return pv->candidate_p50_ms; }
static double ref_ms(const scry_pattern_verdict *pv)
{
	return pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE ? pv->best_p50_ms : pv->baseline_p50_ms;
}

static const scry_pattern_verdict *find_fp(const scry_verdict *v, uint64_t fp)
{
	for (size_t i = 0; v && i < scry_verdict_count(v); i++)
		if (scry_verdict_get(v, i)->fingerprint == fp)
			return scry_verdict_get(v, i);
	return NULL;
}

static void json_pattern(FILE *f, const scry_pattern_verdict *pv)
{
	char hex[17];
	scry_fingerprint_format(pv->fingerprint, hex);
	fprintf(f, "{\"fingerprint\":\"%s\",\"class\":\"%s\",\"fails\":%s,\"ratio\":%.3f,"
	           "\"baseline_p50_ms\":%.4f,\"candidate_p50_ms\":%.4f,\"best_p50_ms\":%.4f,"
	           "\"captured_mean_ms\":%.4f,\"normalized\":",
	        hex, scry_verdict_class_name(pv->cls), pattern_fails(pv) ? "true" : "false",
	        pv->ratio, pv->baseline_p50_ms, pv->candidate_p50_ms, pv->best_p50_ms, pv->captured_mean_ms);
	cli_json_string(f, pv->normalized);
	fputs(",\"plan_change\":", f);
	if (pv->plan_change)
		cli_json_string(f, pv->plan_change);
	else
		fputs("null", f);
	fputs(",\"suggested_index\":", f);
	if (pv->suggested_index)
		cli_json_string(f, pv->suggested_index);
	else
		fputs("null", f);
	fputs("}", f);
}

static void json_verdict(FILE *f, const char *name, const scry_verdict *v)
{
	size_t fails = 0;
	for (size_t i = 0; v && i < scry_verdict_count(v); i++)
		fails += pattern_fails(scry_verdict_get(v, i));
	fprintf(f, "\"%s\":{\"failures\":%zu,\"gate_failures\":%zu,\"patterns\":[", name, fails,
	        v ? scry_verdict_failures(v) : 0);
	for (size_t i = 0; v && i < scry_verdict_count(v); i++) {
		if (i)
			fputc(',', f);
		json_pattern(f, scry_verdict_get(v, i));
	}
	fputs("]}", f);
}

/* ------------------------------------------------------------------ */
/* The command                                                         */
/* ------------------------------------------------------------------ */

static void migration_output(void *ctx, const char *data, size_t len)
{
	cli_progress_done(ctx);
	fwrite(data, 1, len, stderr);
}

static void demo_log(void *ctx, scry_log_level level, const char *msg)
{
	if (level < SCRY_LOG_WARNING)
		return;
	cli_progress_done(ctx);
	fprintf(stderr, "scry: %s%s\n", level == SCRY_LOG_WARNING ? "warning: " : "", msg);
}

static void print_sql_block(const char *sql, const char *indent)
{
	for (const char *p = sql; *p;) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		say("%s%.*s\n", indent, (int)n, p);
		p += n + (e ? 1 : 0);
	}
}

int cmd_demo(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rows", required_argument, NULL, 'r' },
		{ "keep", no_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long rows = 25000;
	bool keep = false, json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!cli_parse_long("demo", "--rows", optarg, &rows))
				return CLI_EXIT_USAGE;
			if (rows < 1000 || rows > 10000000)
				return cli_usage_error("demo", "--rows must be between 1000 and 10000000");
			break;
		case 'k': keep = true; break;
		case 'j': json = true; break;
		case 'h': fputs(demo_help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("demo", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
	story = json ? stderr : stdout;
	interrupted = 0;
	struct sigaction sa, old_int, old_term, old_hup;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	double t_start = now_s();
	int status = CLI_EXIT_ERROR;
	char buf1[32], buf2[32];
	cluster cl;
	memset(&cl, 0, sizeof cl);
	const char *dsn = getenv("SCRY_DEMO_DSN");
	bool own = !(dsn && *dsn);
	char *admin = NULL, *prod = NULL, *staging = NULL;
	char prod_db[64], staging_db[64], upstream[600], store_path[400] = "", store_dir[300] = "";
	PGconn *ac = NULL;
	scry_store *store = NULL;
	scry_pipeline *pl = NULL;
	bool dbs_created = false;
	double t_cluster = 0, t_schema = 0;
	cli_progress prog;
	cli_progress_init(&prog);

	say("scry demo: the migration from \"the postmortem we never wrote\", measured on this machine\n\n");

	/* 1. A server. */
	double t0 = now_s();
	if (own) {
		cli_ci_progress(&prog, "starting PostgreSQL", 0, 0);
		if (!cluster_start(&cl))
			goto out;
		char base[200];
		snprintf(base, sizeof base, "host=127.0.0.1 port=%d user=postgres dbname=postgres", cl.port);
		admin = strdup(base);
		snprintf(upstream, sizeof upstream, "127.0.0.1:%d", cl.port);
		snprintf(prod_db, sizeof prod_db, "shop");
		snprintf(staging_db, sizeof staging_db, "shop_staging");
		snprintf(store_dir, sizeof store_dir, "%s", cl.dir);
	} else {
		admin = strdup(dsn);
		snprintf(prod_db, sizeof prod_db, "scry_demo_%d", (int)getpid());
		snprintf(staging_db, sizeof staging_db, "scry_demo_%d_staging", (int)getpid());
		snprintf(store_dir, sizeof store_dir, "/tmp/scry-demo.XXXXXX");
		if (!mkdtemp(store_dir)) {
			cli_error("cannot create a directory in /tmp: %s", strerror(errno));
			store_dir[0] = 0;
			goto out;
		}
	}
	if (!admin || !(ac = db_connect(admin, own ? "the demo cluster" : "$SCRY_DEMO_DSN")))
		goto out;
	if (!own) {
		/* The proxy needs the server's address: a host, or a socket directory. */
		const char *h = PQhost(ac), *p = PQport(ac);
		snprintf(upstream, sizeof upstream, "%s:%s", h && *h ? h : "/var/run/postgresql",
		         p && *p ? p : "5432");
	}
	snprintf(cl.version, sizeof cl.version, "%d.%d", PQserverVersion(ac) / 10000,
	         PQserverVersion(ac) % 10000);
	t_cluster = now_s() - t0;
	cli_progress_done(&prog);
	STEP_DONE();
	if (own)
		say("1. A throwaway PostgreSQL %s cluster on 127.0.0.1:%d (started in %.1f s)\n", cl.version,
		    cl.port, t_cluster);
	else
		say("1. PostgreSQL %s at $SCRY_DEMO_DSN (databases %s and %s)\n", cl.version, prod_db, staging_db);

	/* 2. Production and staging databases. */
	t0 = now_s();
	cli_ci_progress(&prog, "building the shop", 0, 0);
	char sql[300];
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", prod_db);
	if (!db_exec(ac, sql))
		goto out;
	dbs_created = true;
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", staging_db);
	if (!db_exec(ac, sql))
		goto out;
	prod = conninfo_with(admin, NULL, NULL, prod_db);
	staging = conninfo_with(admin, NULL, NULL, staging_db);
	if (!prod || !staging || !build_schema(prod, rows) || !build_schema(staging, 100))
		goto out;
	{
		/* Staging already runs the feature branch: the migration is applied there. */
		PGconn *sc = db_connect(staging, "the staging database");
		bool ok = sc && db_exec(sc, seed_migration) && db_exec(sc, "ANALYZE orders");
		PQfinish(sc);
		if (!ok)
			goto out;
	}
	t_schema = now_s() - t0;
	cli_progress_done(&prog);
	STEP_DONE();
	say("2. Production database \"%s\": %s orders, %s customers, indexes on orders(customer_id),\n"
	    "   orders(status), orders(created_at); staging database \"%s\": 100 orders, with the\n"
	    "   migration already applied (built in %.1f s)\n",
	    prod_db, commas(rows, buf1, sizeof buf1), commas(rows / 10 > 10 ? rows / 10 : 10, buf2, sizeof buf2),
	    staging_db, t_schema);

	/* 3. Capture through the proxy. */
	snprintf(store_path, sizeof store_path, "%s/scry.db", store_dir);
	if (cli_open_store(store_path, false, &store))
		goto out;
	capture_stats cs;
	memset(&cs, 0, sizeof cs);
	cli_ci_progress(&prog, "capturing", 0, 0);
	if (!capture_traffic(store, upstream, prod, staging, rows, &cs))
		goto out;
	cli_progress_done(&prog);
	STEP_DONE();
	double staging_mean = 0;
	{
		/* What staging said: the feature's captured latency (mean of its patterns). */
		scry_error err = SCRY_ERROR_INIT;
		scry_pattern_iter *it = NULL;
		const scry_pattern *p;
		double sum = 0;
		int n = 0;
		if (!scry_store_patterns(store, &it, &err)) {
			while (scry_pattern_iter_next(it, &p, NULL) == 1)
				if (p->normalized && strstr(p->normalized, "region") && p->mean_us > 0) {
					sum += p->mean_us / 1000.0;
					n++;
				}
			scry_pattern_iter_free(it);
		}
		staging_mean = n ? sum / n : 0;
	}
	say("3. The application's traffic, captured through the scry capture proxy (127.0.0.1:%d):\n"
	    "   production: %ld executions of %d query patterns on %s orders\n"
	    "   staging:    %ld executions of the geo-filtering feature's %d patterns on 100 orders,\n"
	    "               %.3f ms on average there: \"in staging, with 100 rows\", all is well\n"
	    "   (%llu events recorded, %llu dropped, in %.1f s)\n",
	    cs.proxy_port, cs.production_execs, cs.production_patterns, commas(rows, buf1, sizeof buf1),
	    cs.geo_execs, cs.geo_patterns, staging_mean, (unsigned long long)cs.recorded,
	    (unsigned long long)cs.dropped, cs.seconds);

	/* 4-5. The migration and the fix, through the pipeline of ci test-migration. */
	say("4. The migration, through the same pipeline as `scry ci test-migration`\n"
	    "   (clone the database twice, migrate clone B, VACUUM ANALYZE both, replay the\n"
	    "   captured traffic on A and B interleaved, compare every pattern):\n\n");
	print_sql_block(seed_migration, "     ");
	say("     -- NOTE: No index added!\n\n");
	scry_migration mig = SCRY_MIGRATION_INIT;
	mig.sql = seed_migration;
	mig.output = migration_output;
	mig.output_ctx = &prog;
	scry_migration fix = SCRY_MIGRATION_INIT;
	fix.sql = seed_fix;
	scry_pipeline_options po = SCRY_PIPELINE_OPTIONS_INIT;
	scry_replay_options ro = SCRY_REPLAY_OPTIONS_INIT;
	scry_verdict_options vo = SCRY_VERDICT_OPTIONS_INIT;
	po.replay = &ro;
	po.verdict = &vo;
	po.fix = &fix;
	po.label_prefix = "demo";
	po.progress = cli_ci_progress;
	po.progress_ctx = &prog;
	po.log = demo_log;
	po.log_ctx = &prog;
	double t_pipe = now_s();
	int rc = cli_ci_run(prod, store, &po, &mig, SCRY_REPORT_TEXT, "", &prog, &pl);
	t_pipe = now_s() - t_pipe;
	if (!pl) {
		status = rc ? rc : CLI_EXIT_ERROR;
		goto out;
	}
	const scry_verdict *v1 = scry_pipeline_verdict(pl), *v2 = scry_pipeline_fix_verdict(pl);
	scry_replay_result rbase = SCRY_REPLAY_RESULT_INIT, rcand = SCRY_REPLAY_RESULT_INIT;
	scry_pipeline_replay_result_get(pl, SCRY_PIPELINE_BASELINE, &rbase);
	scry_pipeline_replay_result_get(pl, SCRY_PIPELINE_CANDIDATE, &rcand);

	size_t n1 = 0, n2 = 0;
	for (size_t i = 0; i < scry_verdict_count(v1); i++)
		n1 += pattern_fails(scry_verdict_get(v1, i));
	for (size_t i = 0; v2 && i < scry_verdict_count(v2); i++)
		n2 += pattern_fails(scry_verdict_get(v2, i));

	{
		scry_buf rep = SCRY_BUF_INIT;
		scry_error err = SCRY_ERROR_INIT;
		if (!scry_report_render(v1, SCRY_REPORT_TEXT, &rep, &err) && rep.size)
			print_sql_block(rep.ptr, "   ");
		scry_buf_dispose(&rep);
	}
	say("\n   Replayed %lld executions on each clone (%.0f/s). %zu pattern%s regressed:\n\n",
	    (long long)rcand.executions, rcand.per_second, n1, n1 == 1 ? "" : "s");
	for (size_t i = 0; i < scry_verdict_count(v1); i++) {
		const scry_pattern_verdict *pv = scry_verdict_get(v1, i);
		if (!pattern_fails(pv))
			continue;
		char q[110];
		short_sql(pv->normalized, q, sizeof q);
		say("   %5.1fx slower  %s\n", pv->ratio, q);
		if (pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE)
			say("                 %.3f ms on the migrated %s-row clone, %.3f ms with its index\n"
			    "                 (%s), %.3f ms in staging\n",
			    pv->unindexed_p50_ms, commas(rows, buf1, sizeof buf1), pv->best_p50_ms,
			    pv->suggested_index ? pv->suggested_index : "-", pv->captured_mean_ms);
		else if (pv->cls == SCRY_CLASS_NEW_ERROR)
			say("                 now fails: %s\n", pv->candidate_error ? pv->candidate_error : "?");
		else
			say("                 %.3f ms before, %.3f ms after the migration\n", ref_ms(pv), cand_ms(pv));
		if (pv->plan_change)
			say("                 plan: %s\n", pv->plan_change);
		if (pv->candidate_plan) {
			say("                 EXPLAIN ANALYZE on the migrated clone:\n");
			print_plan(pv->candidate_plan, "                   ", 6);
		}
		say("\n");
	}

	say("5. The fix, applied to the migrated clone, then the traffic replayed again:\n\n");
	print_sql_block(seed_fix, "     ");
	say("\n");
	if (v2) {
		scry_buf rep = SCRY_BUF_INIT;
		scry_error err = SCRY_ERROR_INIT;
		if (!scry_report_render(v2, SCRY_REPORT_TEXT, &rep, &err) && rep.size)
			print_sql_block(rep.ptr, "   ");
		scry_buf_dispose(&rep);
		say("\n");
		for (size_t i = 0; i < scry_verdict_count(v1); i++) {
			const scry_pattern_verdict *a = scry_verdict_get(v1, i);
			const scry_pattern_verdict *b = find_fp(v2, a->fingerprint);
			if (!pattern_fails(a) || !b)
				continue;
			char q[90];
			short_sql(a->normalized, q, sizeof q);
			say("   %8.3f ms -> %8.3f ms  (%s)  %s\n", cand_ms(a), cand_ms(b),
			    pattern_fails(b) ? "STILL SLOW" : "at baseline", q);
		}
	}
	bool told = n1 > 0 && v2 && n2 == 0;
	if (told)
		say("\n   Every pattern is back at baseline: %zu regression%s caught and fixed before\n"
		    "   production.\n",
		    n1, n1 == 1 ? "" : "s");
	else if (n1 == 0)
		say("\n   The replay found no regression this time: the scenario did not play out on this\n"
		    "   machine (see the report above).\n");
	else
		say("\n   %zu pattern%s still fail%s after the fix.\n", n2, n2 == 1 ? "" : "s", n2 == 1 ? "s" : "");
	say("\n   In CI the same cycle is one command:\n"
	    "     scry ci test-migration TARGET -- alembic upgrade head   (exit 0 safe, 5 regressions)\n");
	status = told ? CLI_EXIT_OK : CLI_EXIT_ERROR;

	if (json) {
		printf("{\"rows\":%ld,\"postgresql\":\"%s\",\"captured\":{\"production_executions\":%ld,"
		       "\"staging_executions\":%ld,\"recorded\":%llu,\"dropped\":%llu,\"staging_mean_ms\":%.4f},"
		       "\"replay\":{\"executions\":%lld,\"errors_baseline\":%lld,\"errors_candidate\":%lld,"
		       "\"per_second\":%.1f},",
		       rows, cl.version, cs.production_execs, cs.geo_execs, (unsigned long long)cs.recorded,
		       (unsigned long long)cs.dropped, staging_mean, (long long)rcand.executions,
		       (long long)rbase.errors, (long long)rcand.errors, rcand.per_second);
		json_verdict(stdout, "migration", v1);
		fputc(',', stdout);
		json_verdict(stdout, "after_fix", v2);
		printf(",\"story_told\":%s,\"seconds\":{\"cluster\":%.2f,\"schema\":%.2f,\"capture\":%.2f,"
		       "\"pipeline\":%.2f,\"total\":%.2f}}\n",
		       told ? "true" : "false", t_cluster, t_schema, cs.seconds, t_pipe, now_s() - t_start);
	}

out:
	cli_progress_done(&prog);
	scry_pipeline_free(pl);
	scry_store_free(store);
	if (ac && dbs_created && !keep && !own) {
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", prod_db);
		db_exec(ac, sql);
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", staging_db);
		db_exec(ac, sql);
	}
	PQfinish(ac);
	if (keep) {
		if (own && cl.running)
			fprintf(stderr, "scry: kept the cluster: psql \"host=127.0.0.1 port=%d user=postgres dbname=%s\"\n"
			                "scry: stop it with: %s/pg_ctl -D %s/data stop%s\n",
			        cl.port, prod_db, cl.bindir, cl.dir, cl.as_user ? " (as the server's user)" : "");
		fprintf(stderr, "scry: kept the workload store: %s\n", store_path);
	} else {
		if (!own && store_dir[0])
			nftw(store_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	}
	if (own)
		cluster_stop(&cl, keep);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	free(admin);
	free(prod);
	free(staging);
	say("\nscry demo: %s in %.1f s.\n", status == CLI_EXIT_OK ? "done" : "failed", now_s() - t_start);
	return status;
}
