/*
 * tests/harness/pgtest.h - a real, throwaway PostgreSQL server for tests.
 *
 * pgtest_start() runs tests/harness/pgcluster.sh: initdb into a fresh
 * directory under /tmp, start on a free port on 127.0.0.1 with a private
 * socket directory (as `nobody` when the tests run as root), trust auth for
 * the superuser `postgres`. pgtest_stop() stops it and removes everything.
 */
#ifndef SCRY_PGTEST_H
#define SCRY_PGTEST_H

#include <check.h>
#include <stdint.h>
#include <libpq-fe.h>

typedef struct pgtest_cluster {
	char dir[256];        /* cluster directory (data/, sock/, server.log) */
	int port;
	char conninfo[512];   /* "host=127.0.0.1 port=N user=postgres dbname=postgres" */
} pgtest_cluster;

/* Starts a cluster; `extra_conf` (may be NULL) is appended to postgresql.conf.
 * Aborts the test program with a message when the server cannot start. */
void pgtest_start(pgtest_cluster *c, const char *extra_conf);

/* Stops the cluster and removes its directory. */
void pgtest_stop(pgtest_cluster *c);

/* Conninfo for database `db` of the cluster, in a static buffer per call site use. */
const char *pgtest_conninfo_db(const pgtest_cluster *c, const char *db, char *buf, size_t bufsize);

/* Connects or aborts. */
PGconn *pgtest_connect(const char *conninfo);

/* Runs SQL (several statements allowed) or aborts with the server's message. */
void pgtest_exec(const char *conninfo, const char *sql);

/* Runs a query and returns the first column of the first row as a malloc'ed
 * string (NULL for SQL NULL); aborts on error. */
char *pgtest_query_value(const char *conninfo, const char *sql);

/* Runs a shell command (sh -c), returns its exit status (0..255, or -1). */
int pgtest_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a Check suite and frees the runner; returns EXIT_SUCCESS or
 * EXIT_FAILURE for main(). `fork` false runs every test in this process
 * (CK_NOFORK): shared fixtures, and leaks and crashes show up directly. */
int pgtest_run_suite(Suite *suite, int fork);

/* The first column of the first row of `sql` on the SQLite file `path`
 * (a store, read-only), as an integer; fails the test on any error. */
int64_t pgtest_sqlite_int(const char *path, const char *sql);

/* Path of the scry CLI built alongside the tests ($SCRY_CLI). */
const char *pgtest_cli(void);

#endif
