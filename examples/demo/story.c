/*
 * examples/demo/story.c - `scry demo`: the seed's scenario on this machine,
 * told phase by phase. A throwaway PostgreSQL cluster (or $SCRY_DEMO_DSN),
 * an e-commerce database with ~25,000 orders, the application's traffic
 * captured through the capture proxy (production queries on the 25,000
 * rows, the new geo-filtering feature's queries on a 100-row staging
 * database), the seed's migration through the same pipeline as `scry ci
 * test-migration`, then the seed's fix, re-validated. Every figure printed
 * is measured in the run. Orchestration over the public API (docs/demo.md).
 */
#define _GNU_SOURCE
#include "demo.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	"Its files go to a new directory in $SCRY_DEMO_DIR (default /tmp).\n"
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
	           "\"captured_mean_ms\":%.4f,\"work_ratio\":%.3f,\"work_regressed\":%s,\"normalized\":",
	        hex, scry_verdict_class_name(pv->cls), pattern_fails(pv) ? "true" : "false",
	        pv->ratio, pv->baseline_p50_ms, pv->candidate_p50_ms, pv->best_p50_ms, pv->captured_mean_ms,
	        pv->work_measured ? pv->work_ratio : 0.0, pv->work_regressed ? "true" : "false");
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

/* ------------------------------------------------------------------ */
/* The command, phase by phase                                         */
/* ------------------------------------------------------------------ */

/* Everything one run of the demo holds, so that every phase can fail and
 * finish() still cleans up what was made. */
typedef struct demo_run {
	long rows;
	bool keep, json, own;
	const char *dsn;
	demo_cluster cl;
	char *admin, *prod, *staging;
	char prod_db[64], staging_db[64], upstream[600], store_path[400], store_dir[300];
	PGconn *ac;
	scry_store *store;
	scry_pipeline *pl;
	bool dbs_created;
	double t_start, t_cluster, t_schema, t_pipe, staging_mean;
	demo_capture_stats cs;
	cli_progress prog;
	int status;
} demo_run;

/* After each step: a Ctrl-C during it stops the demo (which then cleans up). */
static bool step_interrupted(demo_run *r)
{
	if (!interrupted)
		return false;
	cli_progress_done(&r->prog);
	cli_error("interrupted: removing the demo's cluster and databases");
	return true;
}

/* on_option of demo. */
static int demo_option(void *ctx, int c, const char *v)
{
	demo_run *r = ctx;
	switch (c) {
	case 'r':
		return cli_opt_long("demo", "--rows", v, 1000, 10000000, "--rows must be between 1000 and 10000000",
		                    &r->rows);
	case 'k': r->keep = true; return 0;
	case 'j': r->json = true; return 0;
	}
	return 0;
}

/* Options; returns -1 (CLI_PARSED) to go on, else the exit code. */
static int parse_args(demo_run *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rows", required_argument, NULL, 'r' },
		{ "keep", no_argument, NULL, 'k' },
		CLI_OPTION_JSON,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "demo", demo_help, "h", opts, demo_option, false };
	r->rows = 25000;
	return cli_parse_options(&cmd, argc, argv, 1, r);
}

/* 1. A server: our own throwaway cluster, or the one of $SCRY_DEMO_DSN. */
static bool start_server(demo_run *r)
{
	double t0 = now_s();
	if (r->own) {
		cli_ci_progress(&r->prog, "starting PostgreSQL", 0, 0);
		if (!demo_cluster_start(&r->cl))
			return false;
		char base[200];
		snprintf(base, sizeof base, "host=127.0.0.1 port=%d user=postgres dbname=postgres", r->cl.port);
		r->admin = strdup(base);
		snprintf(r->upstream, sizeof r->upstream, "127.0.0.1:%d", r->cl.port);
		snprintf(r->prod_db, sizeof r->prod_db, "shop");
		snprintf(r->staging_db, sizeof r->staging_db, "shop_staging");
		snprintf(r->store_dir, sizeof r->store_dir, "%s", r->cl.dir);
	} else {
		r->admin = strdup(r->dsn);
		snprintf(r->prod_db, sizeof r->prod_db, "scry_demo_%d", (int)getpid());
		snprintf(r->staging_db, sizeof r->staging_db, "scry_demo_%d_staging", (int)getpid());
		if (!demo_mkdtemp(r->store_dir, sizeof r->store_dir))
			return false;
	}
	if (!r->admin || !(r->ac = demo_db_connect(r->admin, r->own ? "the demo cluster" : "$SCRY_DEMO_DSN")))
		return false;
	if (!r->own) {
		/* The proxy needs the server's address: a host, or a socket directory. */
		const char *h = PQhost(r->ac), *p = PQport(r->ac);
		snprintf(r->upstream, sizeof r->upstream, "%s:%s", h && *h ? h : "/var/run/postgresql",
		         p && *p ? p : "5432");
	}
	snprintf(r->cl.version, sizeof r->cl.version, "%d.%d", PQserverVersion(r->ac) / 10000,
	         PQserverVersion(r->ac) % 10000);
	r->t_cluster = now_s() - t0;
	cli_progress_done(&r->prog);
	if (step_interrupted(r))
		return false;
	if (r->own)
		say("1. A throwaway PostgreSQL %s cluster on 127.0.0.1:%d (started in %.1f s)\n", r->cl.version,
		    r->cl.port, r->t_cluster);
	else
		say("1. PostgreSQL %s at $SCRY_DEMO_DSN (databases %s and %s)\n", r->cl.version, r->prod_db,
		    r->staging_db);
	return true;
}

/* 2. Production and staging databases. */
static bool build_shop(demo_run *r)
{
	char buf1[32], buf2[32];
	double t0 = now_s();
	cli_ci_progress(&r->prog, "building the shop", 0, 0);
	char sql[300];
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", r->prod_db);
	if (!demo_db_exec(r->ac, sql))
		return false;
	r->dbs_created = true;
	snprintf(sql, sizeof sql, "CREATE DATABASE %s", r->staging_db);
	if (!demo_db_exec(r->ac, sql))
		return false;
	r->prod = demo_conninfo_with(r->admin, NULL, NULL, r->prod_db);
	r->staging = demo_conninfo_with(r->admin, NULL, NULL, r->staging_db);
	if (!r->prod || !r->staging || !demo_build_schema(r->prod, r->rows) || !demo_build_schema(r->staging, 100))
		return false;
	/* Staging already runs the feature branch: the migration is applied there. */
	PGconn *sc = demo_db_connect(r->staging, "the staging database");
	bool ok = sc && demo_db_exec(sc, demo_seed_migration) && demo_db_exec(sc, "ANALYZE orders");
	PQfinish(sc);
	if (!ok)
		return false;
	r->t_schema = now_s() - t0;
	cli_progress_done(&r->prog);
	if (step_interrupted(r))
		return false;
	say("2. Production database \"%s\": %s orders, %s customers, indexes on orders(customer_id),\n"
	    "   orders(status), orders(created_at); staging database \"%s\": 100 orders, with the\n"
	    "   migration already applied (built in %.1f s)\n",
	    r->prod_db, commas(r->rows, buf1, sizeof buf1),
	    commas(r->rows / 10 > 10 ? r->rows / 10 : 10, buf2, sizeof buf2), r->staging_db, r->t_schema);
	return true;
}

/* What staging said: the feature's captured latency (mean of its patterns). */
static double staging_mean_ms(scry_store *store)
{
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
	return n ? sum / n : 0;
}

/* 3. Capture through the proxy. */
static bool capture(demo_run *r)
{
	char buf1[32];
	snprintf(r->store_path, sizeof r->store_path, "%s/scry.db", r->store_dir);
	if (cli_open_store(r->store_path, false, &r->store))
		return false;
	cli_ci_progress(&r->prog, "capturing", 0, 0);
	if (!demo_capture_traffic(r->store, r->upstream, r->prod, r->staging, r->rows, &r->cs))
		return false;
	cli_progress_done(&r->prog);
	if (step_interrupted(r))
		return false;
	r->staging_mean = staging_mean_ms(r->store);
	const demo_capture_stats *cs = &r->cs;
	say("3. The application's traffic, captured through the scry capture proxy (127.0.0.1:%d):\n"
	    "   production: %ld executions of %d query patterns on %s orders\n"
	    "   staging:    %ld executions of the geo-filtering feature's %d patterns on 100 orders,\n"
	    "               %.3f ms on average there: \"in staging, with 100 rows\", all is well\n"
	    "   (%llu events recorded, %llu dropped, in %.1f s)\n",
	    cs->proxy_port, cs->production_execs, cs->production_patterns, commas(r->rows, buf1, sizeof buf1),
	    cs->geo_execs, cs->geo_patterns, r->staging_mean, (unsigned long long)cs->recorded,
	    (unsigned long long)cs->dropped, cs->seconds);
	return true;
}

/* 4-5. The migration and the fix, through the pipeline of ci test-migration. */
static bool run_pipeline(demo_run *r)
{
	say("4. The migration, through the same pipeline as `scry ci test-migration`\n"
	    "   (clone the database twice, migrate clone B, VACUUM ANALYZE both, replay the\n"
	    "   captured traffic on A and B interleaved, compare every pattern):\n\n");
	print_sql_block(demo_seed_migration, "     ");
	say("     -- NOTE: No index added!\n\n");
	scry_migration mig = SCRY_MIGRATION_INIT;
	mig.sql = demo_seed_migration;
	mig.output = migration_output;
	mig.output_ctx = &r->prog;
	scry_migration fix = SCRY_MIGRATION_INIT;
	fix.sql = demo_seed_fix;
	scry_pipeline_options po = SCRY_PIPELINE_OPTIONS_INIT;
	scry_replay_options ro = SCRY_REPLAY_OPTIONS_INIT;
	scry_verdict_options vo = SCRY_VERDICT_OPTIONS_INIT;
	po.replay = &ro;
	po.verdict = &vo;
	po.fix = &fix;
	po.label_prefix = "demo";
	po.progress = cli_ci_progress;
	po.progress_ctx = &r->prog;
	po.log = demo_log;
	po.log_ctx = &r->prog;
	double t_pipe = now_s();
	int rc = cli_ci_run(r->prod, r->store, &po, &mig, SCRY_REPORT_TEXT, "", &r->prog, &r->pl);
	r->t_pipe = now_s() - t_pipe;
	if (!r->pl) {
		r->status = rc ? rc : CLI_EXIT_ERROR;
		return false;
	}
	return true;
}

static size_t count_fails(const scry_verdict *v)
{
	size_t n = 0;
	for (size_t i = 0; v && i < scry_verdict_count(v); i++)
		n += pattern_fails(scry_verdict_get(v, i));
	return n;
}

static void print_report(const scry_verdict *v)
{
	scry_buf rep = SCRY_BUF_INIT;
	scry_error err = SCRY_ERROR_INIT;
	if (!scry_report_render(v, SCRY_REPORT_TEXT, &rep, &err) && rep.size)
		print_sql_block(rep.ptr, "   ");
	scry_buf_dispose(&rep);
}

/* The migration's verdict: what regressed, and why. */
static void tell_migration(const demo_run *r, const scry_verdict *v1, const scry_replay_result *rcand)
{
	char buf1[32];
	size_t n1 = count_fails(v1);
	print_report(v1);
	say("\n   Replayed %lld executions on each clone (%.0f/s). %zu pattern%s regressed:\n\n",
	    (long long)rcand->executions, rcand->per_second, n1, n1 == 1 ? "" : "s");
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
			    pv->unindexed_p50_ms, commas(r->rows, buf1, sizeof buf1), pv->best_p50_ms,
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
}

/* What the migration did to the traffic replayed while it ran (docs/impact.md). */
static void tell_impact(const demo_run *r)
{
	const scry_impact *im = scry_pipeline_impact(r->pl);
	if (!im)
		return;
	scry_buf rep = SCRY_BUF_INIT;
	scry_error err = SCRY_ERROR_INIT;
	say("   The same traffic was replayed on clone B while the migration ran, its locks\n"
	    "   sampled every 5 ms:\n");
	if (!scry_impact_render(im, NULL, SCRY_REPORT_TEXT, &rep, &err) && rep.size)
		print_sql_block(rep.ptr, "   ");
	scry_buf_dispose(&rep);
	say("\n");
}

/* The fix's verdict, pattern by pattern, and the conclusion. Returns whether the story was told. */
static bool tell_fix(const scry_verdict *v1, const scry_verdict *v2)
{
	size_t n1 = count_fails(v1), n2 = count_fails(v2);
	say("5. The fix, applied to the migrated clone, then the traffic replayed again:\n\n");
	print_sql_block(demo_seed_fix, "     ");
	say("\n");
	if (v2) {
		print_report(v2);
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
	return told;
}

/* --json: the measured results, on stdout (docs/cli.md). */
static void print_json(const demo_run *r, const scry_verdict *v1, const scry_verdict *v2, bool told,
	const scry_replay_result *rbase, const scry_replay_result *rcand)
{
	const demo_capture_stats *cs = &r->cs;
	printf("{\"rows\":%ld,\"postgresql\":\"%s\",\"captured\":{\"production_executions\":%ld,"
	       "\"staging_executions\":%ld,\"recorded\":%llu,\"dropped\":%llu,\"staging_mean_ms\":%.4f},"
	       "\"replay\":{\"executions\":%lld,\"errors_baseline\":%lld,\"errors_candidate\":%lld,"
	       "\"per_second\":%.1f},",
	       r->rows, r->cl.version, cs->production_execs, cs->geo_execs, (unsigned long long)cs->recorded,
	       (unsigned long long)cs->dropped, r->staging_mean, (long long)rcand->executions,
	       (long long)rbase->errors, (long long)rcand->errors, rcand->per_second);
	json_verdict(stdout, "migration", v1);
	fputc(',', stdout);
	json_verdict(stdout, "after_fix", v2);
	const scry_impact *im = scry_pipeline_impact(r->pl);
	scry_buf ij = SCRY_BUF_INIT;
	if (im && !scry_impact_render(im, NULL, SCRY_REPORT_JSON, &ij, NULL) && ij.size)
		printf(",\"migration_impact\":%s", ij.ptr);
	scry_buf_dispose(&ij);
	printf(",\"story_told\":%s,\"seconds\":{\"cluster\":%.2f,\"schema\":%.2f,\"capture\":%.2f,"
	       "\"pipeline\":%.2f,\"total\":%.2f}}\n",
	       told ? "true" : "false", r->t_cluster, r->t_schema, cs->seconds, r->t_pipe, now_s() - r->t_start);
}

/* Whatever happened: drops what was made (unless --keep), says where things are kept. */
static void finish(demo_run *r)
{
	cli_progress_done(&r->prog);
	scry_pipeline_free(r->pl);
	scry_store_free(r->store);
	if (r->ac && r->dbs_created && !r->keep && !r->own) {
		char sql[300];
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", r->prod_db);
		demo_db_exec(r->ac, sql);
		snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", r->staging_db);
		demo_db_exec(r->ac, sql);
	}
	PQfinish(r->ac);
	if (r->keep) {
		if (r->own && r->cl.running)
			fprintf(stderr, "scry: kept the cluster: psql \"host=127.0.0.1 port=%d user=postgres dbname=%s\"\n"
			                "scry: stop it with: %s/pg_ctl -D %s/data stop%s\n",
			        r->cl.port, r->prod_db, r->cl.bindir, r->cl.dir,
			        r->cl.as_user ? " (as the server's user)" : "");
		fprintf(stderr, "scry: kept the workload store: %s\n", r->store_path);
	} else {
		if (!r->own && r->store_dir[0])
			demo_rm_tree(r->store_dir);
	}
	if (r->own)
		demo_cluster_stop(&r->cl, r->keep);
	free(r->admin);
	free(r->prod);
	free(r->staging);
}

int demo_main(int argc, char **argv)
{
	demo_run run, *r = &run;
	memset(r, 0, sizeof *r);
	int rc = parse_args(r, argc, argv);
	if (rc >= 0)
		return rc;
	story = r->json ? stderr : stdout;
	interrupted = 0;
	struct sigaction sa, old_int, old_term, old_hup;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	r->t_start = now_s();
	r->status = CLI_EXIT_ERROR;
	r->dsn = getenv("SCRY_DEMO_DSN");
	r->own = !(r->dsn && *r->dsn);
	cli_progress_init(&r->prog);

	say("scry demo: the migration from \"the postmortem we never wrote\", measured on this machine\n\n");
	if (start_server(r) && build_shop(r) && capture(r) && run_pipeline(r)) {
		const scry_verdict *v1 = scry_pipeline_verdict(r->pl), *v2 = scry_pipeline_fix_verdict(r->pl);
		scry_replay_result rbase = SCRY_REPLAY_RESULT_INIT, rcand = SCRY_REPLAY_RESULT_INIT;
		scry_pipeline_replay_result_get(r->pl, SCRY_PIPELINE_BASELINE, &rbase);
		scry_pipeline_replay_result_get(r->pl, SCRY_PIPELINE_CANDIDATE, &rcand);
		tell_migration(r, v1, &rcand);
		tell_impact(r);
		bool told = tell_fix(v1, v2);
		r->status = told ? CLI_EXIT_OK : CLI_EXIT_ERROR;
		if (r->json)
			print_json(r, v1, v2, told, &rbase, &rcand);
	}
	finish(r);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	say("\nscry demo: %s in %.1f s.\n", r->status == CLI_EXIT_OK ? "done" : "failed", now_s() - r->t_start);
	return r->status;
}
