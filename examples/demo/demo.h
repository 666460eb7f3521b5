/*
 * examples/demo/demo.h - `scry demo`, the seed's scenario on this machine:
 * a throwaway cluster (cluster.c), the shop and its traffic (shop.c), and
 * the story told around the public API's pipeline (story.c). Compiled into
 * the CLI, whose `scry demo` is a thin entry to demo_main() (docs/demo.md).
 */
#ifndef SCRY_EXAMPLES_DEMO_H
#define SCRY_EXAMPLES_DEMO_H

#include "cli.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- cluster.c: the throwaway cluster ---- */

typedef struct demo_cluster {
	char dir[256];
	char bindir[512];
	int port;
	bool running;
	bool as_user;          /* root: the server runs as an unprivileged user */
	uid_t uid;
	gid_t gid;
	char version[64];
} demo_cluster;

/* Finds the server binaries, initdb, starts the server; false (said why) on failure. */
bool demo_cluster_start(demo_cluster *cl);

/*
 * Makes a fresh directory `<parent>/scry-demo.XXXXXX` into buf, the parent being
 * $SCRY_DEMO_DIR or /tmp (a test sets its own, so that it can tell its demo's
 * leftovers from another demo running at the same time). Says why and returns
 * false when it cannot.
 */
bool demo_mkdtemp(char *buf, size_t n);
/* Stops the server and removes its directory, unless `keep`. */
void demo_cluster_stop(demo_cluster *cl, bool keep);
/* Removes a directory tree (depth first, not following links). */
void demo_rm_tree(const char *dir);

/* ---- shop.c: the application ---- */

/* `base` with host, port and dbname replaced (NULL: kept); malloc'ed. */
char *demo_conninfo_with(const char *base, const char *host, const char *port, const char *db);
/* libpq's last error on one line (a static buffer). */
const char *demo_pg_error(PGconn *c);
/* Connects, saying what failed (`what` names the database); NULL on failure. */
PGconn *demo_db_connect(const char *conninfo, const char *what);
/* Runs SQL, saying what failed. */
bool demo_db_exec(PGconn *c, const char *sql);
/* The e-commerce schema with `rows` orders (deterministic data). */
bool demo_build_schema(const char *conninfo, long rows);
/* The seed's migration, verbatim, and its fix. */
extern const char demo_seed_migration[];
extern const char demo_seed_fix[];

typedef struct demo_capture_stats {
	long production_execs, geo_execs;
	int production_patterns, geo_patterns;
	uint64_t recorded, dropped;
	double seconds;
	int proxy_port;
} demo_capture_stats;

/* The application's traffic through a capture proxy writing into `store`. */
bool demo_capture_traffic(scry_store *store, const char *upstream, const char *prod_conninfo,
	const char *staging_conninfo, long rows, demo_capture_stats *cs);

/* ---- story.c ---- */

/* `scry demo [--rows N] [--keep] [--json]`: returns the CLI exit code. */
int demo_main(int argc, char **argv);

#endif
