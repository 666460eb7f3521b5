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

int cmd_workload_compact(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keep-per-pattern", required_argument, NULL, 'k' },
		{ "store", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL;
	long keep = 0;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (!cli_parse_long("workload compact", "--keep-per-pattern", optarg, &keep))
				return CLI_EXIT_USAGE;
			if (keep < 1 || keep > 1000000000L)
				return cli_usage_error("workload compact", "--keep-per-pattern needs a number of at least 1");
			break;
		case 's': store_opt = optarg; break;
		case 'h': fputs(compact_help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("workload compact", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("workload compact", "unexpected argument '%s'", argv[optind]);
	if (!keep)
		return cli_usage_error("workload compact", "--keep-per-pattern N is required");
	scry_store *store;
	if (cli_open_store(cli_store_path(store_opt), true, &store))
		return CLI_EXIT_ERROR;
	scry_error err = SCRY_ERROR_INIT;
	scry_compact_result r = SCRY_COMPACT_RESULT_INIT;
	int status = CLI_EXIT_OK;
	if (scry_store_compact(store, (int)keep, &r, &err)) {
		cli_lib_error("workload compact", &err);
		status = CLI_EXIT_ERROR;
	} else {
		printf("kept %lld of %lld events (at most %ld per pattern); the file went from %lld to %lld bytes\n",
		       (long long)r.events_after, (long long)r.events_before, keep, (long long)r.bytes_before,
		       (long long)r.bytes_after);
	}
	scry_store_free(store);
	return status;
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

int cmd_runs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "keep", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (argc < 2 || cli_is_help(argv[1])) {
		fputs(runs_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "list") && strcmp(sub, "delete") && strcmp(sub, "prune"))
		return cli_usage_error("runs", "unknown subcommand '%s' (list, delete or prune)", sub);
	const char *store_opt = NULL;
	bool json = false;
	long keep = -1;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store_opt = optarg; break;
		case 'j': json = true; break;
		case 'k':
			if (!cli_parse_long("runs", "--keep", optarg, &keep))
				return CLI_EXIT_USAGE;
			if (keep < 0 || keep > 1000000000L)
				return cli_usage_error("runs", "--keep needs a number of at least 0");
			break;
		case 'h': fputs(runs_help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("runs", "unknown option");
		}
	}
	if (!strcmp(sub, "prune") && keep < 0)
		return cli_usage_error("runs", "prune needs --keep N (runs kept per label)");
	if (!strcmp(sub, "delete") && optind >= argc)
		return cli_usage_error("runs", "delete needs run ids or labels (scry runs list shows them)");
	if (strcmp(sub, "delete") && optind < argc)
		return cli_usage_error("runs", "unexpected argument '%s'", argv[optind]);
	scry_store *store;
	if (cli_open_store(cli_store_path(store_opt), true, &store))
		return CLI_EXIT_ERROR;
	scry_error err = SCRY_ERROR_INIT;
	int status = CLI_EXIT_OK;
	if (!strcmp(sub, "list")) {
		status = runs_list(store, json);
	} else if (!strcmp(sub, "prune")) {
		int64_t n = 0;
		if (scry_store_runs_prune(store, (int)keep, &n, &err)) {
			cli_lib_error("runs prune", &err);
			status = CLI_EXIT_ERROR;
		} else {
			printf("deleted %lld run%s (kept the newest %ld of each label)\n", (long long)n, n == 1 ? "" : "s", keep);
		}
	} else {
		for (int i = optind; i < argc && status == CLI_EXIT_OK; i++) {
			char *end;
			long long id = strtoll(argv[i], &end, 10);
			int64_t run = id;
			int rc = 0;
			if (*end || end == argv[i])
				rc = scry_store_run_find(store, argv[i], &run, &err); /* a label: its newest run */
			if (!rc)
				rc = scry_store_run_delete(store, run, &err);
			if (rc) {
				cli_lib_error("runs delete", &err);
				status = CLI_EXIT_ERROR;
			} else {
				printf("deleted run %lld\n", (long long)run);
			}
		}
	}
	scry_store_free(store);
	return status;
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
	if (argc < 2 || cli_is_help(argv[1])) {
		fputs(shadow_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "gc"))
		return cli_usage_error("shadow", "unknown subcommand '%s' (gc)", argv[1]);
	if (argc > 2 && cli_is_help(argv[2])) {
		fputs(shadow_help, stdout);
		return CLI_EXIT_OK;
	}
	if (argc != 3)
		return cli_usage_error("shadow", "gc takes one TARGET (a connection string or URI)");
	scry_error err = SCRY_ERROR_INIT;
	int dropped = 0;
	if (scry_shadow_gc(argv[2], NULL, &dropped, &err)) {
		cli_lib_error("shadow gc", &err);
		return CLI_EXIT_ERROR;
	}
	printf("dropped %d abandoned clone%s\n", dropped, dropped == 1 ? "" : "s");
	return CLI_EXIT_OK;
}
