/* cli/cmd_workload_merge.c - `scry workload merge OUT IN...`: one workload from several stores. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
	"usage: scry workload merge OUT IN... [--json]\n"
	"\n"
	"Combine the workloads of several stores (a fleet of capture proxies, proxies and\n"
	"log imports) into OUT, created when missing. Patterns and statements are\n"
	"deduplicated (counts and timings summed); every session and its events are\n"
	"copied as a session of its own. Replay runs of the inputs are not copied.\n"
	"Each input is merged in one transaction: an input that fails leaves OUT as it\n"
	"was before that input, and the command stops with exit status 1.\n"
	"\n"
	"  --json   print a JSON summary on stdout\n";

/* on_option of workload merge: --json (ctx: a bool). */
static int merge_option(void *ctx, int c, const char *v)
{
	if (c == 'j')
		*(bool *)ctx = true;
	return 0;
}

/* Merges every input into `out`, stopping at the first that fails; returns the exit code. */
static int merge_inputs(scry_store *out, char **inputs, int n, int *merged, int64_t *sessions, int64_t *events)
{
	for (int i = 0; i < n; i++) {
		int64_t s = 0, e = 0;
		scry_error err = SCRY_ERROR_INIT;
		if (scry_store_merge(out, inputs[i], &s, &e, &err))
			return cli_lib_fail("workload merge", &err);
		*sessions += s;
		*events += e;
		(*merged)++;
	}
	return CLI_EXIT_OK;
}

int cmd_workload_merge(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTION_JSON,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "workload merge", help, "jh", opts, merge_option, true };
	bool json = false;
	int rc = cli_parse_options(&cmd, argc, argv, 1, &json);
	if (rc != CLI_PARSED)
		return rc;
	if (argc - optind < 2)
		return cli_usage_error("workload merge", "give the output store and at least one input store (OUT IN...)");
	const char *out_path = argv[optind];
	struct stat so, si;
	bool out_exists = stat(out_path, &so) == 0;
	for (int i = optind + 1; i < argc; i++)
		if (!strcmp(argv[i], out_path) || (out_exists && stat(argv[i], &si) == 0 && si.st_dev == so.st_dev &&
		                                   si.st_ino == so.st_ino))
			return cli_usage_error("workload merge", "the output %s is also an input", out_path);
	scry_store *out;
	if (cli_open_store(out_path, false, &out))
		return CLI_EXIT_ERROR;
	int64_t sessions = 0, events = 0;
	int merged = 0;
	rc = merge_inputs(out, argv + optind + 1, argc - optind - 1, &merged, &sessions, &events);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_info_get(out, &info, &err)) {
		rc = cli_lib_fail("workload merge", &err);
	} else if (json) {
		cli_json_begin("store", out_path);
		printf(",\"inputs_merged\":%d,\"sessions_added\":%" PRId64 ",\"events_added\":%" PRId64
		       ",\"sessions\":%" PRId64 ",\"events\":%" PRId64 ",\"patterns\":%" PRId64 ",\"statements\":%" PRId64 "}\n",
		       merged, sessions, events, info.sessions, info.events, info.patterns, info.statements);
	} else {
		printf("merged %d store%s into %s: %" PRId64 " sessions, %" PRId64 " events added; it now holds %" PRId64
		       " patterns, %" PRId64 " statements, %" PRId64 " events\n",
		       merged, merged == 1 ? "" : "s", out_path, sessions, events, info.patterns, info.statements, info.events);
	}
	scry_store_free(out);
	return rc;
}
