/*
 * examples/demo/cluster.c - the demo's throwaway PostgreSQL cluster:
 * initdb into /tmp/scry-demo.XXXXXX, pg_ctl start on a free port with
 * durability off, as an unprivileged user when run as root, and a
 * depth-first delete at the end (docs/demo.md).
 */
#define _GNU_SOURCE
#include "demo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
static int run_server_tool(const demo_cluster *cl, char *const argv[], const char *log)
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

void demo_rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void demo_cluster_stop(demo_cluster *cl, bool keep)
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
		demo_rm_tree(cl->dir);
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

bool demo_mkdtemp(char *buf, size_t n)
{
	const char *parent = getenv("SCRY_DEMO_DIR");
	if (!parent || !*parent)
		parent = "/tmp";
	if ((size_t)snprintf(buf, n, "%s/scry-demo.XXXXXX", parent) >= n || !mkdtemp(buf)) {
		cli_error("cannot create a directory in %s: %s (set SCRY_DEMO_DIR to a writable directory)", parent,
		          strerror(errno));
		buf[0] = 0;
		return false;
	}
	return true;
}

bool demo_cluster_start(demo_cluster *cl)
{
	if (!find_bindir(cl->bindir, sizeof cl->bindir)) {
		cli_error("PostgreSQL server binaries (initdb, pg_ctl) not found. Install them "
		          "(apt-get install postgresql), set SCRY_PG_BINDIR, or point SCRY_DEMO_DSN "
		          "at a server where the demo may create databases.");
		return false;
	}
	if (!demo_mkdtemp(cl->dir, sizeof cl->dir))
		return false;
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

