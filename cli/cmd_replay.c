/* cli/cmd_replay.c - `scry replay`: replays the captured workload against a database. */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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

int cmd_replay(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "label", required_argument, NULL, 'l' },
		{ "store", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "speed", required_argument, NULL, 'x' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "writes", required_argument, NULL, 'W' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "budget", required_argument, NULL, 'B' },
		{ "budget-seconds", required_argument, NULL, 'b' },
		{ "min-per-pattern", required_argument, NULL, 'M' },
		{ "user-map", required_argument, NULL, 'U' },
		{ "ignore-users", no_argument, NULL, 'I' },
		{ "ignore-session-params", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *target = NULL, *label = NULL, *store_opt = NULL;
	bool json = false;
	static const char *user_map[256];
	size_t nuser_map = 0;
	scry_replay_options o;
	scry_replay_options_init(&o);
	int c;
	long n;
	while ((c = getopt_long(argc, argv, "t:l:s:m:x:c:r:w:W:T:jU:IPh", opts, NULL)) != -1) {
		switch (c) {
		case 't': target = optarg; break;
		case 'l': label = optarg; break;
		case 's': store_opt = optarg; break;
		case 'm':
			if (!strcmp(optarg, "fast"))
				o.mode = SCRY_REPLAY_FAST;
			else if (!strcmp(optarg, "timed"))
				o.mode = SCRY_REPLAY_TIMED;
			else
				return cli_usage_error("replay", "--mode must be fast or timed, not '%s'", optarg);
			break;
		case 'x':
			if (!cli_parse_double("replay", "--speed", optarg, &o.speed))
				return CLI_EXIT_USAGE;
			break;
		case 'c':
			if (!cli_parse_long("replay", "--concurrency", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n < 1 || n > 1000000)
				return cli_usage_error("replay", "--concurrency must be between 1 and 1000000");
			o.concurrency = (int)n;
			break;
		case 'r':
			if (!cli_parse_long("replay", "--repeat", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n < 1 || n > 100000)
				return cli_usage_error("replay", "--repeat must be between 1 and 100000");
			o.repeat = (int)n;
			break;
		case 'w':
			if (!cli_parse_long("replay", "--warmup", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n > 100000)
				return cli_usage_error("replay", "--warmup must be at most 100000");
			o.warmup = (int)n;
			break;
		case 'W':
			if (!strcmp(optarg, "rollback"))
				o.writes = SCRY_WRITES_ROLLBACK;
			else if (!strcmp(optarg, "skip"))
				o.writes = SCRY_WRITES_SKIP;
			else if (!strcmp(optarg, "execute"))
				o.writes = SCRY_WRITES_EXECUTE;
			else
				return cli_usage_error("replay", "--writes must be rollback, skip or execute, not '%s'", optarg);
			break;
		case 'T':
			if (!cli_parse_long("replay", "--timeout", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n > 2147483647)
				return cli_usage_error("replay", "--timeout is too large");
			o.timeout_ms = (int)n;
			break;
		case 'j': json = true; break;
		case 'B':
			if (!strcmp(optarg, "off") || !strcmp(optarg, "0")) {
				o.budget = 0;
				break;
			}
			if (!cli_parse_long("replay", "--budget", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n < 1)
				return cli_usage_error("replay", "--budget is a number of executions (at least 1) or off");
			o.budget = n;
			break;
		case 'b': {
			double d;
			if (!cli_parse_double("replay", "--budget-seconds", optarg, &d))
				return CLI_EXIT_USAGE;
			if (!(d > 0))
				return cli_usage_error("replay", "--budget-seconds needs a positive number of seconds");
			o.budget_seconds = d;
			break;
		}
		case 'M':
			if (!cli_parse_long("replay", "--min-per-pattern", optarg, &n))
				return CLI_EXIT_USAGE;
			if (n < 1 || n > 1000000)
				return cli_usage_error("replay", "--min-per-pattern needs a number from 1 to 1000000");
			o.min_per_pattern = (int)n;
			break;
		case 'U':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return cli_usage_error("replay", "--user-map takes CAPTURED=ROLE, not '%s'", optarg);
			if (nuser_map == sizeof user_map / sizeof *user_map)
				return cli_usage_error("replay", "at most 256 --user-map options");
			user_map[nuser_map++] = optarg;
			break;
		case 'I': o.ignore_users = 1; break;
		case 'P': o.ignore_session_params = 1; break;
		case 'h': fputs(replay_help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("replay", "unknown option");
		}
	}
	o.user_map = user_map;
	o.nuser_map = nuser_map;
	if (optind < argc)
		return cli_usage_error("replay", "unexpected argument '%s'", argv[optind]);
	if (!target)
		return cli_usage_error("replay", "--target CONNINFO is required (the database to replay against)");
	if (!label || !*label)
		return cli_usage_error("replay", "--label NAME is required (the name `scry diff` will use)");

	cli_raise_nofile();
	scry_store *store = NULL;
	if (cli_open_store(cli_store_path(store_opt), true, &store))
		return CLI_EXIT_ERROR;
	cli_progress prog;
	cli_progress_init(&prog);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.log = on_log;
	scry_error err = SCRY_ERROR_INIT;
	scry_replay *r = NULL;
	if (scry_replay_new(&r, store, &o, &err)) {
		cli_lib_error("replay", &err);
		scry_store_free(store);
		return CLI_EXIT_ERROR;
	}
	g_replay = r;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	int rc = scry_replay_run(r, target, label, &res, &err);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	g_replay = NULL;
	cli_progress_done(&prog);
	int exit_code = CLI_EXIT_OK;
	if (rc && rc != SCRY_ECANCELED) {
		cli_lib_error("replay", &err);
		exit_code = CLI_EXIT_ERROR;
		if (!res.run_id)
			goto done;
	} else if (rc == SCRY_ECANCELED) {
		cli_error("replay interrupted; the %lld samples recorded so far are kept in run '%s'",
		          (long long)res.executions, label);
		exit_code = CLI_EXIT_ERROR;
	}
	if (json) {
		printf("{\"label\":");
		cli_json_string(stdout, label);
		printf(",\"run_id\":%lld,\"executions\":%lld,\"errors\":%lld,\"timeouts\":%lld,"
		       "\"reconnects\":%lld,\"skipped\":%lld,\"per_second\":%.1f,\"elapsed_ms\":%.1f,"
		       "\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,\"lag_max_ms\":%.3f,\"complete\":%s,"
		       "\"budget\":%lld,\"captured\":%lld,\"sampled\":%lld}\n",
		       (long long)res.run_id, (long long)res.executions, (long long)res.errors,
		       (long long)res.timeouts, (long long)res.reconnects, (long long)res.skipped,
		       res.per_second, res.elapsed_us / 1000.0, res.lag_p50_us / 1000.0,
		       res.lag_p99_us / 1000.0, res.lag_max_us / 1000.0, rc ? "false" : "true",
		       (long long)res.budget, (long long)res.captured, (long long)res.sampled);
	} else {
		printf("run '%s' (id %lld): %lld executions in %.1f s (%.0f/s), %lld errors, %lld timeouts",
		       label, (long long)res.run_id, (long long)res.executions, res.elapsed_us / 1e6,
		       res.per_second, (long long)res.errors, (long long)res.timeouts);
		if (res.reconnects)
			printf(", %lld reconnects", (long long)res.reconnects);
		if (res.skipped)
			printf(", %lld skipped writes", (long long)res.skipped);
		printf("\n");
		if (res.budget)
			printf("sampled: %lld of %lld captured executions (budget %lld, at least %d per pattern)\n",
			       (long long)res.sampled, (long long)res.captured, (long long)res.budget, o.min_per_pattern);
		if (o.mode == SCRY_REPLAY_TIMED)
			printf("start lag: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", res.lag_p50_us / 1000.0,
			       res.lag_p99_us / 1000.0, res.lag_max_us / 1000.0);
		if (res.errors)
			printf("Statement errors are recorded with their SQLSTATE; `scry diff` compares them between runs.\n");
		if (!res.executions && !res.skipped && !rc)
			printf("The store holds no captured statements to replay: capture a workload first "
			       "(scry capture proxy|log).\n");
	}
done:
	scry_replay_free(r);
	scry_store_free(store);
	return exit_code;
}
