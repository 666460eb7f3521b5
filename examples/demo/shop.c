/*
 * examples/demo/shop.c - the demo's application: the e-commerce schema, the
 * seed's migration and fix, and the traffic it sends through the capture
 * proxy (production sessions on the big database, the new feature's session
 * on staging), with the libpq helpers they share (docs/demo.md).
 */
#define _GNU_SOURCE
#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now_s(void) { return (double)cli_now_us() / 1e6; }

/*
 * A conninfo with some keywords replaced: PQconninfoParse understands both
 * key=value strings and URIs; the result is key=value.
 */
char *demo_conninfo_with(const char *base, const char *host, const char *port, const char *db)
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
const char *demo_pg_error(PGconn *c)
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

PGconn *demo_db_connect(const char *conninfo, const char *what)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		cli_error("cannot connect to %s: %s", what, demo_pg_error(c));
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

bool demo_db_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
	if (!ok)
		cli_error("SQL failed: %s\n  %.200s", demo_pg_error(c), sql);
	PQclear(r);
	return ok;
}

/* The e-commerce schema, with `rows` orders. Deterministic data (setseed). */
bool demo_build_schema(const char *conninfo, long rows)
{
	PGconn *c = demo_db_connect(conninfo, "the demo database");
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
	bool ok = demo_db_exec(c, sql) && demo_db_exec(c, "VACUUM ANALYZE customers") && demo_db_exec(c, "VACUUM ANALYZE orders");
	PQfinish(c);
	return ok;
}

/* The seed's migration, verbatim, and its fix (without CONCURRENTLY: nothing else runs). */
const char demo_seed_migration[] =
	"ALTER TABLE orders ADD COLUMN region VARCHAR(50);\n"
	"UPDATE orders SET region = CASE\n"
	"    WHEN (id % 5) = 0 THEN 'west'\n"
	"    WHEN (id % 5) = 1 THEN 'east'\n"
	"    WHEN (id % 5) = 2 THEN 'central'\n"
	"    WHEN (id % 5) = 3 THEN 'south'\n"
	"    ELSE 'north'\n"
	"END;\n";
const char demo_seed_fix[] =
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
			cli_error("the demo application's query failed: %s", demo_pg_error(c));
			PQclear(r);
			return -1;
		}
		PQclear(r);
		done++;
	}
	return done;
}

/*
 * The application's traffic through the capture proxy: production sessions
 * against the big database, the feature's session against staging.
 */
bool demo_capture_traffic(scry_store *store, const char *upstream, const char *prod_conninfo,
	const char *staging_conninfo, long rows, demo_capture_stats *cs)
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
	char *pc = demo_conninfo_with(prod_conninfo, "127.0.0.1", port, NULL);
	char *sc = demo_conninfo_with(staging_conninfo, "127.0.0.1", port, NULL);
	PGconn *conns[NSESS] = { NULL };
	for (int s = 0; ok && s < NSESS; s++)
		ok = pc && (conns[s] = demo_db_connect(pc, "the database through the capture proxy")) != NULL;
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
	PGconn *st = ok && sc ? demo_db_connect(sc, "the staging database through the capture proxy") : NULL;
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

