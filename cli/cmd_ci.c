/*
 * cli/cmd_ci.c - `scry ci test-migration`: the whole cycle in one command,
 * with an exit code a CI pipeline gates on.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char ci_help[] =
	"usage: scry ci test-migration TARGET [OPTIONS] -- MIGRATION COMMAND...\n"
	"\n"
	"Tests a migration against the captured workload before it ships: clones\n"
	"TARGET twice (CREATE DATABASE ... TEMPLATE), runs the MIGRATION COMMAND on\n"
	"the second clone (with DATABASE_URL and PGHOST/PGPORT/PGDATABASE/PGUSER/\n"
	"PGPASSWORD pointing at it), settles both with VACUUM ANALYZE, replays the\n"
	"workload on both interleaved, and reports per query pattern what got\n"
	"slower, what now fails, and the plan that changed. The clones are dropped\n"
	"at the end, also after an error or Ctrl-C.\n"
	"\n"
	"TARGET is a libpq connection string or URI. Nothing is changed in it\n"
	"(except with --sequential).\n"
	"\n"
	"  --store FILE        the workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --format FMT        text (default), json, markdown, junit or html\n"
	"  --output FILE       write the report to FILE instead of standard output\n"
	"  --threshold X       regression when the median ratio exceeds X (default 1.5)\n"
	"  --min-delta MS      ... and the median grew by more than MS ms (default 0.5)\n"
	"  --min-samples N     paired executions per pattern (default 20; patterns with\n"
	"                      fewer have their captured executions repeated)\n"
	"  --fail-on-insufficient  patterns that still cannot be judged fail the gate\n"
	"  --fix COMMAND       then apply COMMAND (a shell command) to the migrated\n"
	"                      clone and validate again; the exit code follows the\n"
	"                      verdict after the fix\n"
	"  --repeat N          replay rounds recorded per execution (default 1)\n"
	"  --warmup N          replay rounds run first and not recorded (default 0)\n"
	"  --concurrency N     sessions replayed at once (default 8)\n"
	"  --timeout MS        statement_timeout of replayed statements (default 30000)\n"
	"  --no-settle         do not VACUUM ANALYZE after the migration\n"
	"  --no-impact         do not replay the workload on the candidate while the\n"
	"                      migration runs (by default it does, in timed mode, and\n"
	"                      reports the locks the migration held and who waited)\n"
	"  --impact-speed X    speed of that replay (default 1 = the captured rate)\n"
	"  --max-lock-wait MS  exit 5 when a replayed query waited longer than MS ms on\n"
	"                      a lock the migration held (default: off)\n"
	"  --max-migration-seconds S\n"
	"                      exit 5 when the migration took longer than S seconds\n"
	"  --budget N|off      replay a stratified sample of N executions per side\n"
	"                      (default 20000; every pattern keeps at least the\n"
	"                      verdict's minimum); off replays every captured execution\n"
	"  --budget-seconds S  or: a sample sized to replay in about S seconds\n"
	"  --clone PROVIDER    template (default: CREATE DATABASE ... TEMPLATE on the\n"
	"                      target's server), given (--baseline/--candidate) or\n"
	"                      command (--clone-command)\n"
	"  --baseline DSN      with --candidate: two copies of TARGET you prepared;\n"
	"                      the migration runs on the candidate; neither is dropped\n"
	"  --candidate DSN\n"
	"  --clone-command CMD clones made by CMD: `CMD create NAME` prints the clone's\n"
	"                      connection string, `CMD destroy NAME` removes it\n"
	"                      (recipes for DBLab, Neon, ZFS, pg_basebackup in\n"
	"                      docs/pipeline.md)\n"
	"  --migration-timeout S  kill the migration (and fix) command after S seconds\n"
CLI_FILTER_HELP
	"  --sequential        no clones: replay on TARGET, migrate TARGET, replay again.\n"
	"                      For when cloning is impossible. THE MIGRATION STAYS APPLIED\n"
	"                      TO TARGET: use it only on a database you can throw away.\n"
	"\n"
	"Exit codes: 0 safe, 1 error, 2 usage, 4 the migration command failed,\n"
	"5 regressions detected.\n"
	"\n"
	"Example:\n"
	"  scry ci test-migration postgresql://ci@db/shop -- alembic upgrade head\n";

/* What the signal-waiting thread needs. */
static struct {
	pthread_t thread;
	scry_pipeline *pipeline;
	volatile int interrupted;
	cli_progress *progress;
} sig;

/*
 * Signals are blocked in every thread and received here with sigwait: no
 * async-signal-safety limits, so the pipeline can be cancelled properly
 * and drops its clones on its way out.
 */
static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	for (;;) {
		int s = 0;
		if (sigwait(set, &s) != 0)
			continue;
		if (s == SIGUSR2)
			return NULL; /* the command is done */
		if (!sig.interrupted) {
			sig.interrupted = 1;
			cli_progress_done(sig.progress);
			fputs("\nscry: interrupted: stopping and dropping the clones...\n", stderr);
			scry_pipeline_cancel(sig.pipeline);
		}
	}
}

static void print_log(void *ctx, scry_log_level level, const char *msg)
{
	cli_progress *p = ctx;
	if (level < SCRY_LOG_WARNING)
		return;
	cli_progress_done(p);
	fprintf(stderr, "scry: %s%s\n", level == SCRY_LOG_WARNING ? "warning: " : "", cli_esc(msg));
}

/* The migration's output goes to stderr, so that stdout holds only the report. */
static void migration_output(void *ctx, const char *data, size_t len)
{
	cli_progress_done(ctx);
	fwrite(data, 1, len, stderr);
	fflush(stderr);
}

/* Progress: the phase's name, and a bar while replaying. */
void cli_ci_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	static const struct {
		const char *phase, *label;
	} labels[] = {
		{ SCRY_PHASE_CLONING, "cloning" }, { SCRY_PHASE_MIGRATING, "migrating" },
		{ SCRY_PHASE_SETTLING, "settling" }, { SCRY_PHASE_REPLAYING, "replaying" },
		{ SCRY_PHASE_DECIDING, "deciding" }, { SCRY_PHASE_FIXING, "fixing" },
		{ SCRY_PHASE_CLEANUP, "cleaning up" },
	};
	cli_progress *p = ctx;
	const char *label = phase ? phase : "";
	for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
		if (!strcmp(label, labels[i].phase))
			label = labels[i].label;
	if (total) {
		cli_progress_cb(ctx, label, done, total);
	} else if (p && p->enabled) {
		/* A step without counts: its name is enough. */
		fprintf(stderr, "\r\033[K%s...", label);
		fflush(stderr);
		snprintf(p->phase, sizeof p->phase, "%s", label);
	}
}

int cli_ci_run(const char *target, scry_store *store, const scry_pipeline_options *po,
	const scry_migration *migration, scry_report_format format, const char *output,
	cli_progress *prog, scry_pipeline **keep)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_pipeline *p = NULL;
	if (scry_pipeline_new(&p, store, target, po, &err)) {
		cli_lib_error("test-migration", &err);
		return CLI_EXIT_ERROR;
	}
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sig.pipeline = p;
	sig.interrupted = 0;
	sig.progress = prog;
	bool have_thread = pthread_create(&sig.thread, NULL, signal_thread, &set) == 0;

	int rc = scry_pipeline_run(p, migration, &err);

	if (have_thread) {
		pthread_kill(sig.thread, SIGUSR2);
		pthread_join(sig.thread, NULL);
	}
	/* Signals that arrived meanwhile are consumed: they were handled as a cancel. */
	struct timespec zero = { 0, 0 };
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	cli_progress_done(prog);

	int status;
	if (rc == SCRY_EMIGRATION) {
		cli_lib_error("the migration failed", &err);
		fputs("Nothing was judged: fix the migration and run again.\n", stderr);
		status = CLI_EXIT_MIGRATION;
	} else if (rc == SCRY_ECANCELED || sig.interrupted) {
		cli_error("interrupted; the clones were dropped");
		status = CLI_EXIT_ERROR;
	} else if (rc) {
		cli_lib_error("test-migration", &err);
		status = CLI_EXIT_ERROR;
	} else {
		status = scry_pipeline_failures(p) ? CLI_EXIT_REGRESSION : CLI_EXIT_OK;
		if (!output || *output) {
			scry_buf out = SCRY_BUF_INIT;
			if (scry_pipeline_report(p, format, &out, &err))
				status = cli_lib_fail("report", &err);
			else if (cli_write_report(&out, output))
				status = CLI_EXIT_ERROR;
			scry_buf_dispose(&out);
		}
	}
	if (keep && status != CLI_EXIT_ERROR && status != CLI_EXIT_MIGRATION)
		*keep = p;
	else
		scry_pipeline_free(p);
	sig.pipeline = NULL;
	return status;
}

/* What the command line asks for. */
typedef struct ci_args {
	const char *store_opt, *output, *fix, *clone, *target;
	char **migration; /* the command after -- */
	scry_report_format format;
	scry_pipeline_options po;
	scry_replay_options ro;
	scry_verdict_options vo;
	scry_pattern_filter *filter; /* built by --include/--exclude; freed by the caller */
} ci_args;

#define CMD "ci"

/* on_option of ci test-migration, the options that take a number (as before: no upper bound, cast to int). */
static int ci_number_option(ci_args *a, int c, const char *v)
{
	long n;
	int rc = 0;
	switch (c) {
	case 't': return cli_opt_double(CMD, "--threshold", v, &a->vo.threshold);
	case 'd': return cli_opt_double(CMD, "--min-delta", v, &a->vo.min_delta_ms);
	case 'm':
		if (!(rc = cli_opt_long(CMD, "--min-samples", v, 1, LONG_MAX, "--min-samples needs at least 1", &n)))
			a->vo.min_samples = n > 1000000 ? 1000000 : (int)n;
		return rc;
	case 'r':
		if (!(rc = cli_opt_long(CMD, "--repeat", v, 1, LONG_MAX, "--repeat needs at least 1", &n)))
			a->ro.repeat = (int)n;
		return rc;
	case 'w':
		if (!(rc = cli_opt_long(CMD, "--warmup", v, 0, LONG_MAX, NULL, &n)))
			a->ro.warmup = (int)n;
		return rc;
	case 'c':
		if (!(rc = cli_opt_long(CMD, "--concurrency", v, 1, LONG_MAX, "--concurrency needs at least 1", &n)))
			a->ro.concurrency = (int)n;
		return rc;
	case 'T':
		if (!(rc = cli_opt_long(CMD, "--timeout", v, 1, LONG_MAX, "--timeout needs at least 1", &n)))
			a->ro.timeout_ms = (int)n;
		return rc;
	case 'P': return cli_opt_double(CMD, "--impact-speed", v, &a->po.impact_speed);
	case 'L':
		if (!(rc = cli_opt_long(CMD, "--max-lock-wait", v, 1, LONG_MAX, "--max-lock-wait needs at least 1 (ms)", &n)))
			a->po.max_lock_wait_ms = n;
		return rc;
	case 'M': return cli_opt_double(CMD, "--max-migration-seconds", v, &a->po.max_migration_seconds);
	case 'B':
		if (!(rc = cli_opt_budget(CMD, v, &n)))
			a->ro.budget = n;
		return rc;
	case 'b': return cli_opt_double(CMD, "--budget-seconds", v, &a->ro.budget_seconds);
	case 'O':
		return cli_opt_int(CMD, "--migration-timeout", v, 1, INT32_MAX,
		                   "--migration-timeout needs a number of seconds (at least 1)", &a->po.migration_timeout_s);
	}
	return 0;
}

/* on_option of ci test-migration: the others, then ci_number_option. */
static int ci_option(void *ctx, int c, const char *v)
{
	ci_args *a = ctx;
	switch (c) {
	case 's': a->store_opt = v; return 0;
	case 'f':
		if (scry_report_format_parse(v, &a->format))
			return cli_usage_error(CMD, "--format is text, json, markdown, junit or html, not '%s'", v);
		return 0;
	case 'o': a->output = v; return 0;
	case 'x': a->fix = v; return 0;
	case 'F': a->vo.fail_on_insufficient = 1; return 0;
	case 'N': a->po.no_settle = 1; return 0;
	case 'S': a->po.mode = SCRY_PIPELINE_SEQUENTIAL; return 0;
	case 'I': a->po.no_impact = 1; return 0;
	case 'C': a->clone = v; return 0;
	case 'A': a->po.baseline = v; return 0;
	case 'Z': a->po.candidate = v; return 0;
	case 'K': a->po.clone_command = v; return 0;
	case CLI_OPT_INCLUDE: case CLI_OPT_EXCLUDE: case CLI_OPT_JUDGE_SETUP:
		return cli_filter_option(CMD, c, v, &a->filter, &a->vo);
	}
	return ci_number_option(a, c, v);
}

/* The clone provider: named, or implied by the options that only one provider takes. */
static int resolve_clone(ci_args *a)
{
	static const cli_choice providers[] = { { "template", SCRY_CLONE_TEMPLATE }, { "given", SCRY_CLONE_GIVEN },
		                                { "command", SCRY_CLONE_COMMAND }, { NULL, 0 } };
	scry_pipeline_options *po = &a->po;
	const char *clone = a->clone;
	if (!clone)
		clone = po->clone_command ? "command" : (po->baseline || po->candidate) ? "given" : "template";
	int provider;
	if (cli_opt_choice(CMD, "--clone is template, given or command", providers, clone, &provider))
		return CLI_EXIT_USAGE;
	po->clone = (scry_clone_provider)provider;
	if (po->clone == SCRY_CLONE_GIVEN && (!po->baseline || !po->candidate))
		return cli_usage_error(CMD, "--baseline and --candidate go together: two copies of TARGET");
	if (po->clone != SCRY_CLONE_GIVEN && (po->baseline || po->candidate))
		return cli_usage_error(CMD, "--baseline/--candidate need --clone given (or no --clone)");
	if ((po->clone == SCRY_CLONE_COMMAND) != (po->clone_command != NULL))
		return cli_usage_error(CMD, po->clone_command ? "--clone-command needs --clone command (or no --clone)"
		                                              : "--clone command needs --clone-command CMD");
	if (po->mode == SCRY_PIPELINE_SEQUENTIAL && po->clone != SCRY_CLONE_TEMPLATE)
		return cli_usage_error(CMD, "--sequential makes no clones: it does not go with --clone %s", clone);
	return 0;
}

/* Options (up to "--": the migration command keeps its own), TARGET and the command; CLI_PARSED or the exit code. */
static int parse_ci_args(ci_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTION_STORE,
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "threshold", required_argument, NULL, 't' },
		{ "min-delta", required_argument, NULL, 'd' },
		{ "fix", required_argument, NULL, 'x' },
		{ "min-samples", required_argument, NULL, 'm' },
		{ "fail-on-insufficient", no_argument, NULL, 'F' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "no-settle", no_argument, NULL, 'N' },
		{ "sequential", no_argument, NULL, 'S' },
		CLI_FILTER_OPTIONS,
		{ "no-impact", no_argument, NULL, 'I' },
		{ "impact-speed", required_argument, NULL, 'P' },
		{ "max-lock-wait", required_argument, NULL, 'L' },
		{ "max-migration-seconds", required_argument, NULL, 'M' },
		{ "budget", required_argument, NULL, 'B' },
		{ "budget-seconds", required_argument, NULL, 'b' },
		{ "clone", required_argument, NULL, 'C' },
		{ "baseline", required_argument, NULL, 'A' },
		{ "candidate", required_argument, NULL, 'Z' },
		{ "clone-command", required_argument, NULL, 'K' },
		{ "migration-timeout", required_argument, NULL, 'O' },
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { CMD, ci_help, "h", opts, ci_option, true };
	int dd = 1;
	while (dd < argc && strcmp(argv[dd], "--"))
		dd++;
	int rc = cli_parse_options(&cmd, dd, argv, 1, a);
	if (rc != CLI_PARSED)
		return rc;
	if (optind >= dd)
		return cli_usage_error(CMD, "TARGET is missing (a connection string or URI)");
	if (dd - optind > 1)
		return cli_usage_error(CMD, "unexpected '%s': put the migration command after --", argv[optind + 1]);
	if ((rc = resolve_clone(a)))
		return rc;
	a->target = argv[optind];
	if (dd + 1 >= argc)
		return cli_usage_error(CMD, "the migration command is missing: ... TARGET -- COMMAND...");
	a->migration = argv + dd + 1;
	return CLI_PARSED;
}

/* The migration (and --fix) with their output on stderr, then the pipeline on the store. */
static int run_ci(scry_store *store, void *ctx)
{
	ci_args *a = ctx;
	cli_progress prog;
	cli_progress_init(&prog);
	scry_migration mig = SCRY_MIGRATION_INIT;
	mig.argv = a->migration;
	mig.output = migration_output;
	mig.output_ctx = &prog;
	char *fix_argv[] = { "sh", "-c", (char *)a->fix, NULL };
	scry_migration fixm = SCRY_MIGRATION_INIT;
	if (a->fix) {
		fixm.argv = fix_argv;
		fixm.output = migration_output;
		fixm.output_ctx = &prog;
		a->po.fix = &fixm;
	}
	a->po.replay = &a->ro;
	a->po.verdict = &a->vo;
	a->po.label_prefix = "ci";
	a->po.progress = cli_ci_progress;
	a->po.progress_ctx = &prog;
	a->po.log = print_log;
	a->po.log_ctx = &prog;
	return cli_ci_run(a->target, store, &a->po, &mig, a->format, a->output, &prog, NULL);
}

/* ci test-migration: parse, run, free the filter whatever the path. */
static int test_migration(int argc, char **argv)
{
	ci_args a = { .format = SCRY_REPORT_TEXT, .po = SCRY_PIPELINE_OPTIONS_INIT, .ro = SCRY_REPLAY_OPTIONS_INIT,
		      .vo = SCRY_VERDICT_OPTIONS_INIT };
	a.ro.budget = SCRY_PIPELINE_DEFAULT_BUDGET;
	int rc = parse_ci_args(&a, argc, argv);
	if (rc == CLI_PARSED) {
		if (a.po.mode == SCRY_PIPELINE_SEQUENTIAL)
			fputs("scry: WARNING: --sequential applies the migration to the target database itself,\n"
			      "scry: and it stays applied. Use it only on a database you can throw away.\n", stderr);
		rc = cli_with_store(a.store_opt, run_ci, &a);
	}
	scry_pattern_filter_free(a.filter);
	return rc;
}

int cmd_ci(int argc, char **argv)
{
	static const cli_subcommands subs = { "ci", ci_help, "ci command", "test-migration", { "test-migration", NULL } };
	int sub, rc = cli_subcommand(&subs, argc, argv, &sub);
	return rc == CLI_PARSED ? test_migration(argc - 1, argv + 1) : rc;
}
