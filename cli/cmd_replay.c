/* cli/cmd_replay.c - `scry replay`: replays the captured workload against a database. */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char replay_help[] =
	"usage: scry replay --target CONNINFO --label NAME [--store FILE] [--mode fast|timed]\n"
	"                   [--speed X] [--concurrency N] [--repeat N] [--warmup N]\n"
	"                   [--writes rollback|skip|execute] [--timeout MS] [--json]\n"
	"                   [--budget N|off] [--budget-seconds S] [--min-per-pattern N]\n"
	"                   [--user-map CAPTURED=ROLE]... [--ignore-users] [--ignore-session-params]\n"
	"\n"
	"Replays the workload captured in the store against CONNINFO (a libpq connection\n"
	"string or URI, e.g. \"host=localhost dbname=shop\" or \"service=shadow\") and\n"
	"records one sample per execution in a run labelled NAME, for `scry diff`.\n"
	"\n"
	"  --target CONNINFO   the database to replay against (a copy, not production)\n"
	"  --label NAME        name of this run (reusing a label replaces it in diffs)\n"
	"  --store FILE        workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --mode fast|timed   fast: as fast as possible (default); timed: original pace\n"
	"  --speed X           timed mode: X times the original pace (default 1.0)\n"
	"  --concurrency N     fast mode: sessions replayed at once (default 8)\n"
	"  --repeat N          record every execution N times (rounds; default 1)\n"
	"  --warmup N          rounds run first and not recorded (default 0)\n"
	"  --writes MODE       rollback: replay transactions, then roll them back (default)\n"
	"                      skip: do not run statements that may write\n"
	"                      execute: run and commit everything (changes the target!)\n"
	"  --timeout MS        statement_timeout per statement (default 30000; 0 = none); a\n"
	"                      server that does not answer at all is given up after MS + 1 s\n"
	"  --user-map A=B      run the sessions captured as user A with SET ROLE B (repeatable;\n"
	"                      \"A=\" runs them as the target's user)\n"
	"  --ignore-users      never SET ROLE: every session runs as the target's user\n"
	"                      (default: SET ROLE to the captured user when the target has it)\n"
	"  --ignore-session-params  do not apply the captured startup parameters\n"
	"                      (search_path via options, DateStyle, TimeZone, client_encoding...)\n"
	"  --budget N|off      replay a stratified sample of N executions (per pattern\n"
	"                      spread over time and parameter values, whole\n"
	"                      transactions); default off: every captured execution\n"
	"  --budget-seconds S  or: a sample sized to replay in about S seconds\n"
	"  --min-per-pattern N a budget keeps at least N executions per pattern (default 20)\n"
	"  --json              print one JSON object with the results (see docs/cli.md)\n"
	"\n"
	"Exit status: 0 replayed (statement errors are recorded, not fatal), 1 error\n"
	"(cannot connect, store problem, interrupted), 2 usage.\n";

static scry_replay *g_replay;

/* Ctrl-C stops the replay; the samples recorded so far are kept. */
static void on_signal(int sig)
{
	(void)sig;
	if (g_replay)
		scry_replay_cancel(g_replay);
}

static void on_log(void *ctx, scry_log_level level, const char *msg)
{
	(void)ctx;
	/* Warnings (a captured role missing on the target, a server that stopped
	 * answering, skipped statements) are always shown; the rest with SCRY_VERBOSE. */
	if (level >= SCRY_LOG_WARNING || getenv("SCRY_VERBOSE"))
		fprintf(stderr, "scry: %s\n", msg);
}

/* What the command line asks for. */
typedef struct replay_args {
	scry_replay_options o;
	const char *target, *label, *store_opt;
	bool json;
	const char *user_map[256];
	size_t nuser_map;
} replay_args;

#define CMD "replay"

/* on_option of replay. */
static int replay_option(void *ctx, int c, const char *v)
{
	static const cli_choice modes[] = { { "fast", SCRY_REPLAY_FAST }, { "timed", SCRY_REPLAY_TIMED }, { NULL, 0 } };
	static const cli_choice writes[] = { { "rollback", SCRY_WRITES_ROLLBACK }, { "skip", SCRY_WRITES_SKIP },
		                             { "execute", SCRY_WRITES_EXECUTE }, { NULL, 0 } };
	replay_args *a = ctx;
	scry_replay_options *o = &a->o;
	int rc, choice;
	switch (c) {
	case 't': a->target = v; return 0;
	case 'l': a->label = v; return 0;
	case 's': a->store_opt = v; return 0;
	case 'm':
		if (!(rc = cli_opt_choice(CMD, "--mode must be fast or timed", modes, v, &choice)))
			o->mode = (scry_replay_mode)choice;
		return rc;
	case 'W':
		if (!(rc = cli_opt_choice(CMD, "--writes must be rollback, skip or execute", writes, v, &choice)))
			o->writes = (scry_replay_writes)choice;
		return rc;
	case 'x': return cli_opt_double(CMD, "--speed", v, &o->speed);
	case 'c':
		return cli_opt_int(CMD, "--concurrency", v, 1, 1000000, "--concurrency must be between 1 and 1000000",
		                   &o->concurrency);
	case 'r': return cli_opt_int(CMD, "--repeat", v, 1, 100000, "--repeat must be between 1 and 100000", &o->repeat);
	case 'w': return cli_opt_int(CMD, "--warmup", v, 0, 100000, "--warmup must be at most 100000", &o->warmup);
	case 'T': return cli_opt_int(CMD, "--timeout", v, 0, INT_MAX, "--timeout is too large", &o->timeout_ms);
	case 'j': a->json = true; return 0;
	case 'B': {
		long n;
		if (!(rc = cli_opt_budget(CMD, v, &n)))
			o->budget = n;
		return rc;
	}
	case 'b': return cli_opt_double(CMD, "--budget-seconds", v, &o->budget_seconds);
	case 'M':
		return cli_opt_int(CMD, "--min-per-pattern", v, 1, 1000000,
		                   "--min-per-pattern needs a number from 1 to 1000000", &o->min_per_pattern);
	case 'U':
		if (!strchr(v, '=') || v[0] == '=')
			return cli_usage_error(CMD, "--user-map takes CAPTURED=ROLE, not '%s'", v);
		if (a->nuser_map == sizeof a->user_map / sizeof *a->user_map)
			return cli_usage_error(CMD, "at most 256 --user-map options");
		a->user_map[a->nuser_map++] = v;
		return 0;
	case 'I': o->ignore_users = 1; return 0;
	case 'P': o->ignore_session_params = 1; return 0;
	}
	return 0;
}

/* Options into a->o; returns CLI_PARSED or the exit code. */
static int parse_replay_args(replay_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "label", required_argument, NULL, 'l' },
		CLI_OPTION_STORE,
		{ "mode", required_argument, NULL, 'm' },
		{ "speed", required_argument, NULL, 'x' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "writes", required_argument, NULL, 'W' },
		{ "timeout", required_argument, NULL, 'T' },
		CLI_OPTION_JSON,
		{ "budget", required_argument, NULL, 'B' },
		{ "budget-seconds", required_argument, NULL, 'b' },
		{ "min-per-pattern", required_argument, NULL, 'M' },
		{ "user-map", required_argument, NULL, 'U' },
		{ "ignore-users", no_argument, NULL, 'I' },
		{ "ignore-session-params", no_argument, NULL, 'P' },
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { CMD, replay_help, "t:l:s:m:x:c:r:w:W:T:jU:IPh", opts, replay_option, false };
	scry_replay_options_init(&a->o);
	int rc = cli_parse_options(&cmd, argc, argv, 1, a);
	if (rc != CLI_PARSED)
		return rc;
	a->o.user_map = a->user_map;
	a->o.nuser_map = a->nuser_map;
	if (!a->target)
		return cli_usage_error(CMD, "--target CONNINFO is required (the database to replay against)");
	if (!a->label || !*a->label)
		return cli_usage_error(CMD, "--label NAME is required (the name `scry diff` will use)");
	return CLI_PARSED;
}

/* Runs the replay with Ctrl-C as a cancel; returns scry_replay_run's code. */
static int run_replay(scry_replay *r, const replay_args *a, scry_replay_result *res, scry_error *err)
{
	g_replay = r;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int rc = scry_replay_run(r, a->target, a->label, res, err);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	g_replay = NULL;
	return rc;
}

/* The run's summary as one JSON object (docs/cli.md). */
static void print_json(const replay_args *a, const scry_replay_result *res, int rc)
{
	cli_json_begin("label", a->label);
	printf(",\"run_id\":%lld,\"executions\":%lld,\"errors\":%lld,\"timeouts\":%lld,"
	       "\"reconnects\":%lld,\"skipped\":%lld,\"per_second\":%.1f,\"elapsed_ms\":%.1f,"
	       "\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,\"lag_max_ms\":%.3f,\"complete\":%s,"
	       "\"budget\":%lld,\"captured\":%lld,\"sampled\":%lld}\n",
	       (long long)res->run_id, (long long)res->executions, (long long)res->errors,
	       (long long)res->timeouts, (long long)res->reconnects, (long long)res->skipped,
	       res->per_second, res->elapsed_us / 1000.0, res->lag_p50_us / 1000.0,
	       res->lag_p99_us / 1000.0, res->lag_max_us / 1000.0, rc ? "false" : "true",
	       (long long)res->budget, (long long)res->captured, (long long)res->sampled);
}

/* The run's summary for a person. */
static void print_text(const replay_args *a, const scry_replay_result *res, int rc)
{
	printf("run '%s' (id %lld): %lld executions in %.1f s (%.0f/s), %lld errors, %lld timeouts",
	       a->label, (long long)res->run_id, (long long)res->executions, res->elapsed_us / 1e6,
	       res->per_second, (long long)res->errors, (long long)res->timeouts);
	if (res->reconnects)
		printf(", %lld reconnects", (long long)res->reconnects);
	if (res->skipped)
		printf(", %lld skipped writes", (long long)res->skipped);
	printf("\n");
	if (res->budget)
		printf("sampled: %lld of %lld captured executions (budget %lld, at least %d per pattern)\n",
		       (long long)res->sampled, (long long)res->captured, (long long)res->budget, a->o.min_per_pattern);
	if (a->o.mode == SCRY_REPLAY_TIMED)
		printf("start lag: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", res->lag_p50_us / 1000.0,
		       res->lag_p99_us / 1000.0, res->lag_max_us / 1000.0);
	if (res->errors)
		printf("Statement errors are recorded with their SQLSTATE; `scry diff` compares them between runs.\n");
	if (!res->executions && !res->skipped && !rc)
		printf("The store holds no captured statements to replay: capture a workload first "
		       "(scry capture proxy|log).\n");
}

/* Replays into a new run and prints its summary (also of an interrupted run); returns the exit code. */
static int replay_into(scry_store *store, void *ctx)
{
	replay_args *a = ctx;
	cli_progress prog;
	cli_progress_init(&prog);
	a->o.progress = cli_progress_cb;
	a->o.progress_ctx = &prog;
	a->o.log = on_log;
	scry_error err = SCRY_ERROR_INIT;
	scry_replay *r = NULL;
	if (scry_replay_new(&r, store, &a->o, &err))
		return cli_lib_fail(CMD, &err);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	int rc = run_replay(r, a, &res, &err);
	cli_progress_done(&prog);
	scry_replay_free(r);
	int exit_code = CLI_EXIT_OK;
	if (rc && rc != SCRY_ECANCELED) {
		exit_code = cli_lib_fail(CMD, &err);
		if (!res.run_id)
			return exit_code;
	} else if (rc == SCRY_ECANCELED) {
		cli_error("replay interrupted; the %lld samples recorded so far are kept in run '%s'",
		          (long long)res.executions, a->label);
		exit_code = CLI_EXIT_ERROR;
	}
	if (a->json)
		print_json(a, &res, rc);
	else
		print_text(a, &res, rc);
	return exit_code;
}

int cmd_replay(int argc, char **argv)
{
	replay_args a = { .target = NULL };
	int rc = parse_replay_args(&a, argc, argv);
	if (rc != CLI_PARSED)
		return rc;
	cli_raise_nofile();
	return cli_with_store(a.store_opt, replay_into, &a);
}
