/* cli/main.c - the scry command: dispatches to one function per subcommand. */
#include "cli.h"

#include <signal.h>
#include <string.h>

static const char usage[] =
	"usage: scry COMMAND [OPTIONS]\n"
	"\n"
	"Catch the query regressions a PostgreSQL migration will cause, before it ships.\n"
	"\n"
	"Commands:\n"
	"  version                      print the version\n"
	"  fingerprint [FILE|-]         fingerprint SQL statements (pg_query-compatible)\n"
	"  capture proxy                record a workload through a capture proxy\n"
	"  capture log LOGFILE...       import a workload from PostgreSQL server logs\n"
	"  workload info|patterns       show what a workload store holds\n"
	"  replay --target --label      replay the workload against a database\n"
	"  diff --baseline --candidate  compare two replay runs, per query pattern\n"
	"  ci test-migration TARGET -- COMMAND...\n"
	"                               gate a migration: exit 0 safe, 5 regressions\n"
	"  demo                         watch scry catch a regression, on this machine\n"
	"  runs list|delete|prune       the replay runs a store holds\n"
	"  shadow gc TARGET             drop clones that killed runs left behind\n"
	"\n"
	"Every command takes --help. The store defaults to $SCRY_STORE, then ./scry.db.\n"
	"Exit codes: 0 success/safe, 1 error, 2 usage, 4 migration failed, 5 regressions.\n";

static int cmd_capture(int argc, char **argv)
{
	static const cli_subcommands subs = {
		"capture",
		"usage: scry capture proxy --listen HOST:PORT --upstream HOST:PORT [--store FILE]\n"
		"       scry capture log --format csvlog|jsonlog|stderr [--prefix PREFIX] [--store FILE] LOGFILE...\n",
		"capture source", "proxy or log", { "proxy", "log", NULL },
	};
	int sub, rc = cli_subcommand(&subs, argc, argv, &sub);
	if (rc != CLI_PARSED)
		return rc;
	return sub == 0 ? cmd_capture_proxy(argc - 1, argv + 1) : cmd_capture_log(argc - 1, argv + 1);
}

static const struct {
	const char *name;
	cli_command_fn fn;
} commands[] = {
	{ "version", cmd_version },
	{ "fingerprint", cmd_fingerprint },
	{ "capture", cmd_capture },
	{ "workload", cmd_workload },
	{ "replay", cmd_replay },
	{ "diff", cmd_diff },
	{ "ci", cmd_ci },
	{ "demo", cmd_demo },
	{ "runs", cmd_runs },
	{ "shadow", cmd_shadow },
};

int main(int argc, char **argv)
{
	/* A file size limit (RLIMIT_FSIZE) must fail the write (EFBIG, reported
	 * like a full disk) instead of killing the process: a capture proxy
	 * killed by it would cut every client off (docs/testing.md). */
	signal(SIGXFSZ, SIG_IGN);
	if (argc < 2) {
		fputs(usage, stderr);
		return CLI_EXIT_USAGE;
	}
	if (cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_error("unknown command '%s'", argv[1]);
	fputs("Run 'scry --help' for the list of commands.\n", stderr);
	return CLI_EXIT_USAGE;
}
