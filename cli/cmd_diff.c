/* cli/cmd_diff.c - `scry diff`: the verdict on two replay runs. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char diff_help[] =
	"usage: scry diff --baseline LABEL --candidate LABEL [--store FILE]\n"
	"                 [--format text|json|markdown|junit|html] [--threshold X] [--min-delta MS]\n"
	"                 [--min-samples N] [--baseline-target CONNINFO --candidate-target CONNINFO]\n"
	"                 [--fail-on-insufficient] [--allow-incomplete]\n"
	"                 [--include GLOB] [--exclude GLOB] [--judge-session-setup]\n"
	"\n"
	"Compares, per query pattern, the newest replay runs labelled LABEL and\n"
	"prints what regressed, what now fails, and why (docs/verdict.md).\n"
	"\n"
	"  --baseline LABEL        run before the migration (e.g. clone A)\n"
	"  --candidate LABEL       run after the migration (e.g. clone B)\n"
	"  --store FILE            workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --format F              text (default), json, markdown, junit, html (one\n"
	"                          self-contained page with latency histograms)\n"
	"  --threshold X           regressed when the 95%% interval of the latency ratio\n"
	"                          lies above X (default 1.5)\n"
	"  --min-delta MS          ... and the median grew by more than MS (default 0.5)\n"
	"  --min-samples N         paired executions needed to judge a pattern (default 20)\n"
	"  --fail-on-insufficient  patterns with fewer pairs fail the gate\n"
	"  --allow-incomplete      judge an interrupted run, or a run against itself\n"
	"                          (refused otherwise: exit 1)\n"
	"  --baseline-target C     connection to the baseline database, and\n"
	"  --candidate-target C    to the candidate: EXPLAIN (ANALYZE, BUFFERS) of\n"
	"                          regressed patterns on both (inside BEGIN ... ROLLBACK),\n"
	"                          error messages, and best-index checks of patterns\n"
	"                          that only work on the candidate\n"
	CLI_FILTER_HELP
	"\n"
	"Exit status: 0 nothing fails the gate, 5 a pattern regressed, gained an\n"
	"error or is slower than its best, 1 error, 2 usage.\n";

static void log_cb(void *ctx, scry_log_level level, const char *message)
{
	(void)ctx;
	if (level >= SCRY_LOG_WARNING)
		fprintf(stderr, "scry: %s\n", cli_esc(message));
}

/*
 * A verdict on an interrupted run, or on one run against itself, would say
 * PASS about what was never compared: refused unless --allow-incomplete.
 */
static int refuse_runs(scry_store *store, const char *baseline, const char *candidate)
{
	scry_error err = SCRY_ERROR_INIT;
	int64_t rb, rc;
	if (scry_store_run_find(store, baseline, &rb, &err) || scry_store_run_find(store, candidate, &rc, &err)) {
		cli_lib_error("diff", &err);
		return -1;
	}
	if (rb == rc) {
		cli_error("'%s' and '%s' are the same run (%lld): a run compared with itself proves nothing "
		          "(--allow-incomplete to do it anyway)", baseline, candidate, (long long)rb);
		return -1;
	}
	const char *labels[2] = { baseline, candidate };
	int64_t ids[2] = { rb, rc };
	for (int i = 0; i < 2; i++) {
		int done = scry_store_run_complete(store, ids[i], &err);
		if (done < 0) {
			cli_lib_error("diff", &err);
			return -1;
		}
		if (!done) {
			cli_error("run '%s' (%lld) did not complete (interrupted or failed): its patterns were not all "
			          "replayed; replay it again, or pass --allow-incomplete to judge what it has",
			          labels[i], (long long)ids[i]);
			return -1;
		}
	}
	return 0;
}

/* The filter built by --include/--exclude is freed by cmd_diff, whatever the return path. */
static int diff_with(int argc, char **argv, scry_pattern_filter **filter)
{
	static const struct option opts[] = {
		{ "baseline", required_argument, NULL, 'b' },
		{ "candidate", required_argument, NULL, 'c' },
		{ "store", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "threshold", required_argument, NULL, 't' },
		{ "min-delta", required_argument, NULL, 'd' },
		{ "min-samples", required_argument, NULL, 'n' },
		{ "baseline-target", required_argument, NULL, 'B' },
		{ "candidate-target", required_argument, NULL, 'C' },
		{ "fail-on-insufficient", no_argument, NULL, 'I' },
		{ "allow-incomplete", no_argument, NULL, 'A' },
		CLI_FILTER_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *baseline = NULL, *candidate = NULL, *store_opt = NULL;
	bool allow_incomplete = false;
	scry_report_format format = SCRY_REPORT_TEXT;
	scry_verdict_options vo = SCRY_VERDICT_OPTIONS_INIT;
	long n;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "b:c:s:f:t:d:n:B:C:IAh", opts, NULL)) != -1) {
		switch (c) {
		case 'b': baseline = optarg; break;
		case 'c': candidate = optarg; break;
		case 's': store_opt = optarg; break;
		case 'f':
			if (scry_report_format_parse(optarg, &format))
				return cli_usage_error("diff", "--format must be text, json, markdown, junit or html, not '%s'", optarg);
			break;
		case 't':
			if (!cli_parse_double("diff", "--threshold", optarg, &vo.threshold))
				return CLI_EXIT_USAGE;
			if (vo.threshold < 1.0)
				return cli_usage_error("diff", "--threshold is a ratio >= 1 (1.5 = 50%% slower), not '%s'", optarg);
			break;
		case 'd': {
			char *end;
			errno = 0;
			vo.min_delta_ms = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(vo.min_delta_ms >= 0))
				return cli_usage_error("diff", "--min-delta needs a number of milliseconds >= 0, not '%s'", optarg);
			break;
		}
		case 'n':
			if (!cli_parse_long("diff", "--min-samples", optarg, &n))
				return CLI_EXIT_USAGE;
			vo.min_samples = n < 1 ? 1 : n > 1000000 ? 1000000 : (int)n;
			break;
		case 'B': vo.baseline_conninfo = optarg; break;
		case 'C': vo.candidate_conninfo = optarg; break;
		case 'I': vo.fail_on_insufficient = 1; break;
		case 'A': allow_incomplete = true; break;
		case CLI_OPT_INCLUDE: case CLI_OPT_EXCLUDE: case CLI_OPT_JUDGE_SETUP:
			if ((n = cli_filter_option("diff", c, optarg, filter, &vo)))
				return (int)n;
			break;
		case 'h': fputs(diff_help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("diff", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("diff", "unexpected argument '%s'", argv[optind]);
	if (!baseline || !candidate)
		return cli_usage_error("diff", "--baseline and --candidate are required");
	if (!vo.baseline_conninfo != !vo.candidate_conninfo)
		return cli_usage_error("diff", "--baseline-target and --candidate-target go together");

	scry_store *store;
	if (cli_open_store(cli_store_path(store_opt), true, &store))
		return CLI_EXIT_ERROR;
	cli_progress prog;
	cli_progress_init(&prog);
	vo.progress = cli_progress_cb;
	vo.progress_ctx = &prog;
	vo.log = log_cb;
	scry_error err = SCRY_ERROR_INIT;
	if (!allow_incomplete && refuse_runs(store, baseline, candidate)) {
		scry_store_free(store);
		return CLI_EXIT_ERROR;
	}
	scry_verdict *v = NULL;
	int rc = scry_verdict_compute(&v, store, baseline, candidate, &vo, &err);
	cli_progress_done(&prog);
	if (rc) {
		cli_lib_error("diff", &err);
		scry_store_free(store);
		return CLI_EXIT_ERROR;
	}
	scry_buf out = SCRY_BUF_INIT;
	if (format == SCRY_REPORT_HTML) { /* the store gives the latency histograms */
		scry_report_html_options ho = SCRY_REPORT_HTML_OPTIONS_INIT;
		ho.store = store;
		rc = scry_report_render_html(v, &ho, &out, &err);
	} else {
		rc = scry_report_render(v, format, &out, &err);
	}
	int exit_code = scry_verdict_failures(v) ? CLI_EXIT_REGRESSION : CLI_EXIT_OK;
	if (rc) {
		cli_lib_error("rendering the report", &err);
		exit_code = CLI_EXIT_ERROR;
	} else if (out.size && fwrite(out.ptr, 1, out.size, stdout) != out.size) {
		cli_error("writing the report: %s", strerror(errno));
		exit_code = CLI_EXIT_ERROR;
	}
	if (fflush(stdout) != 0 && exit_code != CLI_EXIT_ERROR) {
		cli_error("writing the report: %s", strerror(errno));
		exit_code = CLI_EXIT_ERROR;
	}
	scry_buf_dispose(&out);
	scry_verdict_free(v);
	scry_store_free(store);
	return exit_code;
}

int cmd_diff(int argc, char **argv)
{
	scry_pattern_filter *filter = NULL;
	int rc = diff_with(argc, argv, &filter);
	scry_pattern_filter_free(filter);
	return rc;
}
