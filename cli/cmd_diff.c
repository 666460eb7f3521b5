/* cli/cmd_diff.c - `scry diff`: the verdict on two replay runs. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
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

/* What the command line asks for. */
typedef struct diff_args {
	const char *baseline, *candidate, *store_opt;
	bool allow_incomplete;
	scry_report_format format;
	scry_verdict_options vo;
	scry_pattern_filter *filter; /* built by --include/--exclude; freed by cmd_diff */
} diff_args;

#define CMD "diff"

/* on_option of diff. */
static int diff_option(void *ctx, int c, const char *v)
{
	diff_args *a = ctx;
	long n;
	switch (c) {
	case 'b': a->baseline = v; return 0;
	case 'c': a->candidate = v; return 0;
	case 's': a->store_opt = v; return 0;
	case 'f':
		if (scry_report_format_parse(v, &a->format))
			return cli_usage_error(CMD, "--format must be text, json, markdown, junit or html, not '%s'", v);
		return 0;
	case 't':
		if (cli_opt_double(CMD, "--threshold", v, &a->vo.threshold))
			return CLI_EXIT_USAGE;
		if (a->vo.threshold < 1.0)
			return cli_usage_error(CMD, "--threshold is a ratio >= 1 (1.5 = 50%% slower), not '%s'", v);
		return 0;
	case 'd': { /* unlike cli_parse_double's, 0 is a value */
		char *end;
		errno = 0;
		a->vo.min_delta_ms = strtod(v, &end);
		if (!*v || *end || errno || !(a->vo.min_delta_ms >= 0))
			return cli_usage_error(CMD, "--min-delta needs a number of milliseconds >= 0, not '%s'", v);
		return 0;
	}
	case 'n':
		if (cli_opt_long(CMD, "--min-samples", v, 0, LONG_MAX, NULL, &n))
			return CLI_EXIT_USAGE;
		a->vo.min_samples = n < 1 ? 1 : n > 1000000 ? 1000000 : (int)n;
		return 0;
	case 'B': a->vo.baseline_conninfo = v; return 0;
	case 'C': a->vo.candidate_conninfo = v; return 0;
	case 'I': a->vo.fail_on_insufficient = 1; return 0;
	case 'A': a->allow_incomplete = true; return 0;
	case CLI_OPT_INCLUDE: case CLI_OPT_EXCLUDE: case CLI_OPT_JUDGE_SETUP:
		return cli_filter_option(CMD, c, v, &a->filter, &a->vo);
	}
	return 0;
}

/* Options into *a; returns CLI_PARSED or the exit code. */
static int parse_diff_args(diff_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "baseline", required_argument, NULL, 'b' },
		{ "candidate", required_argument, NULL, 'c' },
		CLI_OPTION_STORE,
		{ "format", required_argument, NULL, 'f' },
		{ "threshold", required_argument, NULL, 't' },
		{ "min-delta", required_argument, NULL, 'd' },
		{ "min-samples", required_argument, NULL, 'n' },
		{ "baseline-target", required_argument, NULL, 'B' },
		{ "candidate-target", required_argument, NULL, 'C' },
		{ "fail-on-insufficient", no_argument, NULL, 'I' },
		{ "allow-incomplete", no_argument, NULL, 'A' },
		CLI_FILTER_OPTIONS,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { CMD, diff_help, "b:c:s:f:t:d:n:B:C:IAh", opts, diff_option, false };
	int rc = cli_parse_options(&cmd, argc, argv, 1, a);
	if (rc != CLI_PARSED)
		return rc;
	if (!a->baseline || !a->candidate)
		return cli_usage_error(CMD, "--baseline and --candidate are required");
	if (!a->vo.baseline_conninfo != !a->vo.candidate_conninfo)
		return cli_usage_error(CMD, "--baseline-target and --candidate-target go together");
	return CLI_PARSED;
}

/* Renders the verdict (HTML with the store's latency histograms) on stdout; returns the exit code. */
static int print_report(const scry_verdict *v, scry_store *store, scry_report_format format)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_buf out = SCRY_BUF_INIT;
	int rc;
	if (format == SCRY_REPORT_HTML) {
		scry_report_html_options ho = SCRY_REPORT_HTML_OPTIONS_INIT;
		ho.store = store;
		rc = scry_report_render_html(v, &ho, &out, &err);
	} else {
		rc = scry_report_render(v, format, &out, &err);
	}
	int exit_code = scry_verdict_failures(v) ? CLI_EXIT_REGRESSION : CLI_EXIT_OK;
	if (rc)
		exit_code = cli_lib_fail("rendering the report", &err);
	else if (cli_write_report(&out, NULL))
		exit_code = CLI_EXIT_ERROR;
	scry_buf_dispose(&out);
	return exit_code;
}

/* The verdict on the two runs, then its report; returns the exit code. */
static int diff_runs(scry_store *store, void *ctx)
{
	diff_args *a = ctx;
	cli_progress prog;
	cli_progress_init(&prog);
	a->vo.progress = cli_progress_cb;
	a->vo.progress_ctx = &prog;
	a->vo.log = log_cb;
	if (!a->allow_incomplete && refuse_runs(store, a->baseline, a->candidate))
		return CLI_EXIT_ERROR;
	scry_error err = SCRY_ERROR_INIT;
	scry_verdict *v = NULL;
	int rc = scry_verdict_compute(&v, store, a->baseline, a->candidate, &a->vo, &err);
	cli_progress_done(&prog);
	if (rc)
		return cli_lib_fail(CMD, &err);
	rc = print_report(v, store, a->format);
	scry_verdict_free(v);
	return rc;
}

int cmd_diff(int argc, char **argv)
{
	diff_args a = { .format = SCRY_REPORT_TEXT, .vo = SCRY_VERDICT_OPTIONS_INIT };
	int rc = parse_diff_args(&a, argc, argv);
	if (rc == CLI_PARSED)
		rc = cli_with_store(a.store_opt, diff_runs, &a);
	scry_pattern_filter_free(a.filter);
	return rc;
}
