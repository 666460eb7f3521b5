/*
 * cli/cmd_admin.c - housekeeping: `scry workload compact`, `scry runs
 * list|delete|prune` and `scry shadow gc`.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char compact_help[] =
	"usage: scry workload compact --keep-per-pattern N [--store FILE]\n"
	"\n"
	"Keeps at most N captured executions of each query pattern, spread evenly\n"
	"over the capture, deletes the others (with their replay samples) and\n"
	"VACUUMs the file. Patterns keep their captured counts, so the verdict's\n"
	"impact still weighs the real traffic; replays then run the kept sample.\n"
	"\n"
	"  --keep-per-pattern N  executions kept per pattern (at least 1)\n"
	"  --store FILE          the workload store (default $SCRY_STORE, then ./scry.db)\n";

/* The options of compact and runs. */
typedef struct admin_args {
	const char *cmd; /* for usage errors */
	const char *store_opt;
	bool json;
	long keep;
	const char *sub;  /* runs: list, delete or prune */
	char **operands;  /* runs delete: the ids or labels */
	int noperands;
} admin_args;

/* on_option of compact and runs. */
static int admin_option(void *ctx, int c, const char *v)
{
	admin_args *a = ctx;
	switch (c) {
	case 's': a->store_opt = v; return 0;
	case 'j': a->json = true; return 0;
	case 'k':
		return cli_opt_long(a->cmd, "--keep", v, 0, 1000000000L, "--keep needs a number of at least 0", &a->keep);
	case 'K':
		return cli_opt_long(a->cmd, "--keep-per-pattern", v, 1, 1000000000L,
		                    "--keep-per-pattern needs a number of at least 1", &a->keep);
	}
	return 0;
}

/* workload compact on the open store. */
static int compact(scry_store *store, void *ctx)
{
	const admin_args *a = ctx;
	scry_error err = SCRY_ERROR_INIT;
	scry_compact_result r = SCRY_COMPACT_RESULT_INIT;
	if (scry_store_compact(store, (int)a->keep, &r, &err))
		return cli_lib_fail("workload compact", &err);
	printf("kept %lld of %lld events (at most %ld per pattern); the file went from %lld to %lld bytes\n",
	       (long long)r.events_after, (long long)r.events_before, a->keep, (long long)r.bytes_before,
	       (long long)r.bytes_after);
	return CLI_EXIT_OK;
}

int cmd_workload_compact(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keep-per-pattern", required_argument, NULL, 'K' },
		CLI_OPTION_STORE,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "workload compact", compact_help, "h", opts, admin_option, false };
	admin_args a = { .cmd = cmd.name, .keep = 0 };
	int rc = cli_parse_options(&cmd, argc, argv, 1, &a);
	if (rc != CLI_PARSED)
		return rc;
	if (!a.keep)
		return cli_usage_error(cmd.name, "--keep-per-pattern N is required");
	return cli_with_store(a.store_opt, compact, &a);
}

static const char runs_help[] =
	"usage: scry runs list [--store FILE] [--json]\n"
	"       scry runs delete ID|LABEL... [--store FILE]\n"
	"       scry runs prune --keep N [--store FILE]\n"
	"\n"
	"  list     the replay runs in the store, oldest first: id, label, when,\n"
	"           executions, errors, samples\n"
	"  delete   delete runs (by id, or the newest run of a label) with their\n"
	"           samples and plans\n"
	"  prune    keep only the newest N runs of each label (a baseline and its\n"
	"           candidate stay together)\n"
	"\n"
	"  --store FILE   the workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --json         list: one JSON array\n";

static int runs_list(scry_store *store, bool json)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_run_iter *it;
	if (scry_store_runs(store, &it, &err)) {
		cli_lib_error("runs list", &err);
		return CLI_EXIT_ERROR;
	}
	const scry_run_info *r;
	int rc, n = 0;
	if (json)
		printf("[");
	else
		printf("%6s  %-24s  %-23s  %10s  %8s  %10s\n", "id", "label", "started", "executions", "errors",
		       "samples");
	while ((rc = scry_run_iter_next(it, &r, &err)) == 1) {
		if (json) {
			printf("%s{\"id\":%lld,\"label\":", n ? "," : "", (long long)r->id);
			cli_json_string(stdout, r->label);
			printf(",\"target\":");
			cli_json_string(stdout, r->target);
			printf(",\"started_us\":%lld,\"ended_us\":%lld,\"executions\":%lld,\"errors\":%lld,\"samples\":%lld}",
			       (long long)r->started_us, (long long)r->ended_us, (long long)r->executions,
			       (long long)r->errors, (long long)r->samples);
		} else {
			char t[32];
			cli_format_time(r->started_us, t, sizeof t);
			printf("%6lld  %-24s  %-23s  %10lld  %8lld  %10lld\n", (long long)r->id, r->label ? r->label : "", t,
			       (long long)r->executions, (long long)r->errors, (long long)r->samples);
		}
		n++;
	}
	scry_run_iter_free(it);
	if (json)
		printf("]\n");
	if (rc < 0) {
		cli_lib_error("runs list", &err);
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

/* runs delete: by id, or the newest run of a label; stops at the first failure. */
static int runs_delete(scry_store *store, char **ids, int n)
{
	scry_error err = SCRY_ERROR_INIT;
	for (int i = 0; i < n; i++) {
		char *end;
		long long id = strtoll(ids[i], &end, 10);
		int64_t run = id;
		int rc = 0;
		if (*end || end == ids[i])
			rc = scry_store_run_find(store, ids[i], &run, &err); /* a label: its newest run */
		if (!rc)
			rc = scry_store_run_delete(store, run, &err);
		if (rc)
			return cli_lib_fail("runs delete", &err);
		printf("deleted run %lld\n", (long long)run);
	}
	return CLI_EXIT_OK;
}

/* runs prune: the newest `keep` runs of each label stay. */
static int runs_prune(scry_store *store, long keep)
{
	scry_error err = SCRY_ERROR_INIT;
	int64_t n = 0;
	if (scry_store_runs_prune(store, (int)keep, &n, &err))
		return cli_lib_fail("runs prune", &err);
	printf("deleted %lld run%s (kept the newest %ld of each label)\n", (long long)n, n == 1 ? "" : "s", keep);
	return CLI_EXIT_OK;
}

/* runs list|delete|prune on the open store. */
static int runs_run(scry_store *store, void *ctx)
{
	const admin_args *a = ctx;
	if (!strcmp(a->sub, "list"))
		return runs_list(store, a->json);
	if (!strcmp(a->sub, "prune"))
		return runs_prune(store, a->keep);
	return runs_delete(store, a->operands, a->noperands);
}

int cmd_runs(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTION_STORE,
		CLI_OPTION_JSON,
		{ "keep", required_argument, NULL, 'k' },
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "runs", runs_help, "h", opts, admin_option, true };
	static const cli_subcommands subs = { "runs", runs_help, "subcommand", "list, delete or prune",
		                              { "list", "delete", "prune", NULL } };
	int isub, rc = cli_subcommand(&subs, argc, argv, &isub);
	if (rc != CLI_PARSED)
		return rc;
	const char *sub = argv[1];
	admin_args a = { .cmd = cmd.name, .keep = -1, .sub = sub };
	if ((rc = cli_parse_options(&cmd, argc, argv, 2, &a)) != CLI_PARSED)
		return rc;
	if (!strcmp(sub, "prune") && a.keep < 0)
		return cli_usage_error("runs", "prune needs --keep N (runs kept per label)");
	if (!strcmp(sub, "delete") && optind >= argc)
		return cli_usage_error("runs", "delete needs run ids or labels (scry runs list shows them)");
	if (strcmp(sub, "delete") && optind < argc)
		return cli_usage_error("runs", "unexpected argument '%s'", argv[optind]);
	a.operands = argv + optind;
	a.noperands = argc - optind;
	return cli_with_store(a.store_opt, runs_run, &a);
}

static const char shadow_help[] =
	"usage: scry shadow gc TARGET\n"
	"\n"
	"Drops the clones that scry runs killed without cleaning up (kill -9, a power\n"
	"cut) left behind: CREATE DATABASE clones on the server of TARGET (a libpq\n"
	"connection string or URI) and --clone-command clones registered on this\n"
	"machine, whose scry process, on this host, no longer exists. Clones of\n"
	"running scry processes and of other hosts are left alone. `scry ci\n"
	"test-migration` does the same before it clones.\n";

int cmd_shadow(int argc, char **argv)
{
	static const cli_subcommands subs = { "shadow", shadow_help, "subcommand", "gc", { "gc", NULL } };
	int sub, rc = cli_subcommand(&subs, argc, argv, &sub);
	if (rc != CLI_PARSED)
		return rc;
	if (argc > 2 && cli_is_help(argv[2])) {
		fputs(shadow_help, stdout);
		return CLI_EXIT_OK;
	}
	if (argc != 3)
		return cli_usage_error("shadow", "gc takes one TARGET (a connection string or URI)");
	scry_error err = SCRY_ERROR_INIT;
	int dropped = 0;
	if (scry_shadow_gc(argv[2], NULL, &dropped, &err))
		return cli_lib_fail("shadow gc", &err);
	printf("dropped %d abandoned clone%s\n", dropped, dropped == 1 ? "" : "s");
	return CLI_EXIT_OK;
}
