/*
 * cli/cli.h - shared pieces of the scry command-line tool. The CLI uses only
 * libscry's public API (include/scry/scry.h).
 */
#ifndef SCRY_CLI_H
#define SCRY_CLI_H

#include <scry/scry.h>
#include <stdbool.h>
#include <stdio.h>

/* Exit codes of the CLI contract (docs/cli.md). */
enum {
	CLI_EXIT_OK = 0,          /* safe / success */
	CLI_EXIT_ERROR = 1,       /* an error */
	CLI_EXIT_USAGE = 2,       /* bad usage */
	CLI_EXIT_MIGRATION = 4,   /* the migration command failed */
	CLI_EXIT_REGRESSION = 5   /* regressions detected */
};

/* One subcommand: argv[0] is the subcommand's name. */
typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_version(int argc, char **argv);
int cmd_fingerprint(int argc, char **argv);
int cmd_workload(int argc, char **argv);
int cmd_workload_merge(int argc, char **argv); /* argv[0] = "merge" */
int cmd_capture_proxy(int argc, char **argv);
int cmd_capture_log(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_ci(int argc, char **argv);
int cmd_demo(int argc, char **argv);
/* cli/cmd_admin.c: housekeeping. */
int cmd_workload_compact(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_shadow(int argc, char **argv);

/* Prints "scry: <message>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints an error from the library: "scry: <what>: <message>". */
void cli_lib_error(const char *what, const scry_error *err);
/* The same, returning CLI_EXIT_ERROR. */
int cli_lib_fail(const char *what, const scry_error *err);
/* Prints "scry: <message>" and "Try 'scry <cmd> --help'." and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* `s` with terminal control characters made visible (scry_escape_controls),
 * for printing captured SQL, log lines and server messages. The result lives
 * in one of 4 per-thread buffers: valid until the 4th next call. */
const char *cli_esc(const char *s);
/* Writes cli_esc(s) to f. */
void cli_put_escaped(FILE *f, const char *s);

/* --store resolution: the option, then $SCRY_STORE, then ./scry.db. */
const char *cli_store_path(const char *option_value);
/* Opens the store or prints why not; returns 0 or CLI_EXIT_ERROR. */
int cli_open_store(const char *path, bool must_exist, scry_store **out);
/* Opens the existing store of --store `option_value`, returns fn(store, ctx) and closes it. */
typedef int (*cli_store_fn)(scry_store *store, void *ctx);
int cli_with_store(const char *option_value, cli_store_fn fn, void *ctx);

/* What the parsing helpers below return when the command goes on. */
enum { CLI_PARSED = -1 };

/* True when `arg` is -h or --help. */
bool cli_is_help(const char *arg);
/*
 * A command made of subcommands, at argv[1]: without one, prints `help` on
 * stderr and returns CLI_EXIT_USAGE; --help there prints it on stdout and
 * returns CLI_EXIT_OK; one not in `names` is the usage error
 * "unknown <what> '<sub>' (<list>)". Else returns CLI_PARSED with *index
 * its place in `names`.
 */
typedef struct cli_subcommands {
	const char *cmd, *help;
	const char *what, *list;
	const char *names[5]; /* ending with NULL */
} cli_subcommands;
int cli_subcommand(const cli_subcommands *subs, int argc, char **argv, int *index);

/*
 * Option parsing, the same in every command: getopt_long from argv[first];
 * --help (the code 'h') prints `help` on stdout, an unknown option or a
 * missing value is a usage error, and every other option goes to
 * on_option(ctx, code, value), which returns 0 or an exit code. Without
 * `operands`, an argument left after the options is a usage error.
 * Returns CLI_PARSED (optind at the first operand) or the exit code.
 */
struct option;
typedef int (*cli_option_fn)(void *ctx, int opt, const char *value);
typedef struct cli_command {
	const char *name;              /* as in "Try 'scry NAME --help'." */
	const char *help;
	const char *shortopts;
	const struct option *longopts; /* ending with CLI_OPTIONS_END */
	cli_option_fn on_option;
	bool operands;
} cli_command;
int cli_parse_options(const cli_command *cmd, int argc, char **argv, int first, void *ctx);
#define CLI_OPTIONS_END { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
/* --store FILE and --json, with the same codes in every command. */
#define CLI_OPTION_STORE { "store", required_argument, NULL, 's' }
#define CLI_OPTION_JSON { "json", no_argument, NULL, 'j' }

/* Parses a positive number option; prints a usage error on failure. */
bool cli_parse_double(const char *cmd, const char *opt, const char *value, double *out);
bool cli_parse_long(const char *cmd, const char *opt, const char *value, long *out);
/*
 * The same for on_option callbacks: 0, or CLI_EXIT_USAGE after the usage
 * error. A whole number outside [min, max] is refused with `range` as message
 * (NULL with [0, LONG_MAX]: every whole number >= 0 is taken).
 */
int cli_opt_double(const char *cmd, const char *opt, const char *value, double *out);
int cli_opt_long(const char *cmd, const char *opt, const char *value, long min, long max,
	const char *range, long *out);
int cli_opt_int(const char *cmd, const char *opt, const char *value, int min, int max,
	const char *range, int *out);
/* --budget N|off of replay and ci: a number of executions >= 1, or 0 for off/0. */
int cli_opt_budget(const char *cmd, const char *value, long *out);
/* A word among `choices` (ending with a NULL name): its value; else "<what>, not '<value>'". */
typedef struct cli_choice {
	const char *name;
	int value;
} cli_choice;
int cli_opt_choice(const char *cmd, const char *what, const cli_choice *choices, const char *value,
	int *out);

/*
 * Noise control, shared by diff and ci: --include GLOB and --exclude GLOB
 * (repeatable) and --judge-session-setup, with the getopt_long codes below.
 * Builds *filter on first use (free it with scry_pattern_filter_free) and
 * points vo->filter at it; returns 0 or CLI_EXIT_USAGE/ERROR after printing why.
 */
enum { CLI_OPT_INCLUDE = 0x1001, CLI_OPT_EXCLUDE, CLI_OPT_JUDGE_SETUP };
int cli_filter_option(const char *cmd, int opt, const char *arg, scry_pattern_filter **filter,
	scry_verdict_options *vo);
#define CLI_FILTER_OPTIONS \
	{ "include", required_argument, NULL, CLI_OPT_INCLUDE }, \
	{ "exclude", required_argument, NULL, CLI_OPT_EXCLUDE }, \
	{ "judge-session-setup", no_argument, NULL, CLI_OPT_JUDGE_SETUP }
#define CLI_FILTER_HELP \
	"  --include GLOB      judge only the patterns whose fingerprint or normalized\n" \
	"                      text matches GLOB (repeatable; case-insensitive)\n" \
	"  --exclude GLOB      do not judge the patterns it matches (repeatable)\n" \
	"  --judge-session-setup  also judge SET, SHOW, RESET, DISCARD, BEGIN, COMMIT,\n" \
	"                      ROLLBACK... (not judged by default; always replayed).\n" \
	"                      Patterns not judged are listed in the report's footer.\n"

/* CLOCK_MONOTONIC in microseconds, for progress redraws and elapsed times. */
int64_t cli_now_us(void);
/* Many connections need many descriptors: raises the soft RLIMIT_NOFILE to the hard one. */
void cli_raise_nofile(void);

/*
 * Progress display on stderr: a one-line bar redrawn in place when stderr is
 * a terminal, nothing otherwise. Usable directly as a scry_progress_fn with
 * a cli_progress* as ctx.
 */
typedef struct cli_progress {
	bool enabled;
	int64_t last_draw_us;
	char phase[32];
} cli_progress;
void cli_progress_init(cli_progress *p);
void cli_progress_cb(void *ctx, const char *phase, uint64_t done, uint64_t total);
/* Clears the bar line (call before printing a summary). */
void cli_progress_done(cli_progress *p);

/*
 * Runs a test-migration pipeline (cli/cmd_ci.c) with Ctrl-C handling (the
 * clones are dropped), writes the report to `output` (NULL: stdout; "":
 * nowhere) and returns the exit code. With `keep`, a pipeline that reached
 * a verdict is handed back for the caller to free. Shared by ci and demo.
 */
int cli_ci_run(const char *target, scry_store *store, const scry_pipeline_options *po,
	const scry_migration *migration, scry_report_format format, const char *output,
	cli_progress *prog, scry_pipeline **keep);
/* Progress callback of the pipeline (ctx: a cli_progress): phase names, a bar when counted. */
void cli_ci_progress(void *ctx, const char *phase, uint64_t done, uint64_t total);

/* Writes a JSON string literal to f. */
void cli_json_string(FILE *f, const char *s);
/* The same, or null for an empty string. */
void cli_json_string_or_null(FILE *f, const char *s);
/* Starts a JSON summary on stdout: {"key":"value" (the caller writes the rest and the "}"). */
void cli_json_begin(const char *key, const char *value);
/* Writes a rendered report to the file `output`, or to stdout (NULL);
 * returns 0, or CLI_EXIT_ERROR after saying why. */
int cli_write_report(const scry_buf *report, const char *output);
/* Unix microseconds as "YYYY-MM-DD HH:MM:SS UTC" ("-" for 0) into buf. */
void cli_format_time(int64_t us, char *buf, size_t n);

#endif
