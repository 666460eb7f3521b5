/* cli/cmd_capture_log.c - `scry capture log`: import PostgreSQL server logs. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
	"usage: scry capture log [--format FMT] [--prefix PREFIX] [--timezone ZONE]\n"
	"                        [--lang LANG] [--force] [--store FILE] [--json] LOGFILE...\n"
	"\n"
	"Imports the statements a PostgreSQL server logged into the workload store,\n"
	"one event per executed statement, as the capture proxy would record them.\n"
	"LOGFILE may be compressed with gzip, bzip2, xz or zstd (recognised by content);\n"
	"'-' reads standard input. Rotated files are read in the order of their first\n"
	"timestamp, whatever the order given. A file this store already imported is\n"
	"skipped (only the new end of a file that grew is read) unless --force.\n"
	"\n"
	"  --format FMT     csvlog, jsonlog (PostgreSQL 15+), stderr, or auto (default:\n"
	"                   detected from the first lines, and said)\n"
	"  --prefix PREFIX  stderr: the server's log_line_prefix (SHOW log_line_prefix;);\n"
	"                   it must contain %c or %p. Default: detected from the lines\n"
	"  --timezone ZONE  the server's log_timezone (e.g. Europe/Berlin), for the zone\n"
	"                   abbreviations in log times (default: the system's zone database)\n"
	"  --lang LANG      the server's lc_messages (de, fr, ja, ...; C for English).\n"
	"                   Default: detected from the log's keywords\n"
	"  --force          import files this store already has\n"
	"  --store FILE     workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --json           print the summary as one JSON object on stdout\n"
	"\n"
	"The server must log statements: log_statement = 'all' and/or\n"
	"log_min_duration_statement = 0 (both may be on: each statement is counted once).\n"
	"log_connections/log_disconnections = on mark session boundaries; for stderr\n"
	"add %e to log_line_prefix to keep error SQLSTATEs. Lines that cannot be used\n"
	"are counted and the first few are shown; they never stop the import.\n"
	"\n"
	"Exit status: 0 imported; 1 an error, a damaged (truncated or corrupt) file whose\n"
	"readable part was imported, or nothing imported from a non-empty log (the\n"
	"reason is printed); 2 usage.\n";

static void print_json(const scry_logimport_stats *st, const char *store)
{
	cli_json_begin("store", store);
	printf(",\"bytes\":%llu,\"lines\":%llu,\"records\":%llu,\"statements\":%llu,\"failed\":%llu,"
	       "\"sessions\":%llu,\"patterns\":%llu,\"new_patterns\":%llu,\"unpaired_durations\":%llu,"
	       "\"skipped\":%llu,\"skipped_lines\":[",
	       (unsigned long long)st->bytes, (unsigned long long)st->lines, (unsigned long long)st->records,
	       (unsigned long long)st->statements, (unsigned long long)st->failed,
	       (unsigned long long)st->sessions, (unsigned long long)st->patterns,
	       (unsigned long long)st->new_patterns, (unsigned long long)st->unpaired_durations,
	       (unsigned long long)st->skipped);
	for (unsigned i = 0; i < st->nskip_samples; i++) {
		printf("%s{\"line\":%llu,\"reason\":", i ? "," : "", (unsigned long long)st->skip_samples[i].line);
		cli_json_string(stdout, st->skip_samples[i].reason);
		printf(",\"text\":");
		cli_json_string(stdout, st->skip_samples[i].text);
		printf("}");
	}
	printf("],\"warning\":");
	cli_json_string_or_null(stdout, st->warning);
	printf(",\"detected\":");
	cli_json_string_or_null(stdout, st->detected);
	printf(",\"files\":%llu,\"files_skipped\":%llu,\"bytes_skipped\":%llu,\"nothing_reason\":",
	       (unsigned long long)st->files, (unsigned long long)st->files_skipped,
	       (unsigned long long)st->bytes_skipped);
	cli_json_string_or_null(stdout, st->nothing_reason);
	printf("}\n");
}

static void print_text(const scry_logimport_stats *st, const char *store)
{
	if (st->detected[0])
		printf("detected: %s\n", cli_esc(st->detected));
	if (st->files_skipped || st->bytes_skipped)
		printf("already in this store: %llu file(s) skipped, %llu bytes skipped in all (--force imports "
		       "them again)\n", (unsigned long long)st->files_skipped, (unsigned long long)st->bytes_skipped);
	printf("imported %llu statements (%llu failed) in %llu sessions into %s\n",
	       (unsigned long long)st->statements, (unsigned long long)st->failed,
	       (unsigned long long)st->sessions, store);
	printf("patterns: %llu in the store (%llu new)\n", (unsigned long long)st->patterns,
	       (unsigned long long)st->new_patterns);
	printf("read %llu lines (%llu log records)", (unsigned long long)st->lines,
	       (unsigned long long)st->records);
	if (st->unpaired_durations)
		printf(", %llu duration lines without their statement", (unsigned long long)st->unpaired_durations);
	printf("\nlines skipped: %llu\n", (unsigned long long)st->skipped);
	for (unsigned i = 0; i < st->nskip_samples; i++)
		printf("  line %llu: %s: %s\n", (unsigned long long)st->skip_samples[i].line,
		       st->skip_samples[i].reason, cli_esc(st->skip_samples[i].text));
	if (st->skipped > st->nskip_samples)
		printf("  ... and %llu more\n", (unsigned long long)(st->skipped - st->nskip_samples));
	if (st->warning[0])
		printf("note: %s\n", cli_esc(st->warning));
	if (st->nothing_reason[0])
		printf("nothing imported: %s\n", cli_esc(st->nothing_reason));
}

/* Progress over several files: bytes of the files before this one + this one's. */
typedef struct multi_progress {
	cli_progress bar;
	uint64_t base, total;
} multi_progress;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	multi_progress *mp = ctx;
	(void)total;
	cli_progress_cb(&mp->bar, phase, mp->base + done, mp->total);
}

/* What the command line asks for. */
typedef struct log_args {
	scry_logimport_options o;
	const char *format, *store_opt;
	bool json;
	const char *const *files; /* the LOGFILEs */
	size_t nfiles;
} log_args;

#define CMD "capture log"

/* on_option of capture log. */
static int log_option(void *ctx, int c, const char *v)
{
	log_args *a = ctx;
	switch (c) {
	case 'f': a->format = v; return 0;
	case 'p': a->o.line_prefix = v; return 0;
	case 'z': a->o.timezone = v; return 0;
	case 'l': a->o.lang = v; return 0;
	case 'F': a->o.force = 1; return 0;
	case 's': a->store_opt = v; return 0;
	case 'j': a->json = true; return 0;
	}
	return 0;
}

/* Options into a->o; returns CLI_PARSED or the exit code. */
static int parse_log_args(log_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "timezone", required_argument, NULL, 'z' },
		{ "lang", required_argument, NULL, 'l' },
		{ "force", no_argument, NULL, 'F' },
		CLI_OPTION_STORE,
		CLI_OPTION_JSON,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { CMD, help, "f:p:s:jh", opts, log_option, true };
	scry_logimport_options_init(&a->o);
	int rc = cli_parse_options(&cmd, argc, argv, 1, a);
	if (rc != CLI_PARSED)
		return rc;
	a->o.format = SCRY_LOG_AUTO;
	if (a->format && scry_log_format_parse(a->format, &a->o.format))
		return cli_usage_error(CMD, "unknown --format '%s' (csvlog, jsonlog, stderr or auto)", a->format);
	if (a->o.format != SCRY_LOG_STDERR && a->o.format != SCRY_LOG_AUTO && a->o.line_prefix)
		return cli_usage_error(CMD, "--prefix applies to stderr logs only");
	if (optind >= argc)
		return cli_usage_error(CMD, "give at least one LOGFILE (or - for standard input)");
	a->files = (const char *const *)argv + optind;
	a->nfiles = (size_t)(argc - optind);
	return CLI_PARSED;
}

/* The size of a file to read (0 for "-"), or -1 after saying why not. */
static int64_t file_size(const char *path, bool say)
{
	struct stat sb;
	if (!strcmp(path, "-"))
		return 0;
	if (stat(path, &sb) != 0) {
		if (say)
			cli_error("cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	return (int64_t)sb.st_size;
}

/* The files' total size for the progress bar, and their order (rotated files by first timestamp). */
static int order_files(const log_args *a, size_t *order, multi_progress *mp)
{
	for (size_t i = 0; i < a->nfiles; i++) {
		int64_t size = file_size(a->files[i], true);
		if (size < 0)
			return CLI_EXIT_ERROR;
		mp->total += (uint64_t)size;
	}
	scry_error err = SCRY_ERROR_INIT;
	if (scry_logimport_order_files(a->files, a->nfiles, order, &err))
		return cli_lib_fail(CMD, &err);
	for (size_t i = 0; i < a->nfiles; i++)
		if (order[i] != i) {
			fprintf(stderr, "note: reading the files in the order of their first timestamp:");
			for (size_t k = 0; k < a->nfiles; k++)
				fprintf(stderr, " %s", a->files[order[k]]);
			fputc('\n', stderr);
			break;
		}
	return 0;
}

/* Usage for what the library calls invalid (a bad prefix, time zone...), else an error. */
static int import_error(const scry_error *err)
{
	cli_lib_error(CMD, err);
	return err->code == SCRY_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
}

/* Feeds the files in order, finishes the import and prints its summary; returns the exit code. */
static int import_files(scry_store *store, const char *store_path, log_args *a, const size_t *order,
                        multi_progress *mp)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_logimport *imp;
	a->o.progress = on_progress;
	a->o.progress_ctx = mp;
	if (scry_logimport_new(&imp, store, &a->o, &err))
		return import_error(&err);
	int status = CLI_EXIT_OK;
	for (size_t i = 0; i < a->nfiles; i++) {
		const char *path = a->files[order[i]];
		int rc = scry_logimport_feed_file(imp, path, &err);
		if (rc) {
			/* A damaged file: what could be read is kept; go on with the others.
			 * Anything else (the store, a detection that failed) stops here. */
			status = import_error(&err);
			if (rc != SCRY_EIO)
				break;
		}
		int64_t size = file_size(path, false);
		if (size > 0)
			mp->base += (uint64_t)size;
	}
	scry_error ferr = SCRY_ERROR_INIT;
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	/* Finish even after a read error: what was read is kept. */
	int frc = scry_logimport_finish(imp, &st, &ferr);
	cli_progress_done(&mp->bar);
	scry_logimport_free(imp);
	if (frc)
		status = cli_lib_fail(CMD, &ferr);
	if (a->json)
		print_json(&st, store_path);
	else
		print_text(&st, store_path);
	/* Nothing imported from a non-empty log is not a success. */
	if (status == CLI_EXIT_OK && st.nothing_reason[0])
		status = CLI_EXIT_ERROR;
	return status;
}

int cmd_capture_log(int argc, char **argv)
{
	log_args a = { .format = NULL };
	int rc = parse_log_args(&a, argc, argv);
	if (rc != CLI_PARSED)
		return rc;
	size_t *order = calloc(a.nfiles, sizeof *order);
	if (!order) {
		cli_error("out of memory");
		return CLI_EXIT_ERROR;
	}
	multi_progress mp = { .base = 0, .total = 0 };
	cli_progress_init(&mp.bar);
	const char *store_path = cli_store_path(a.store_opt);
	scry_store *store = NULL;
	rc = order_files(&a, order, &mp);
	if (!rc)
		rc = cli_open_store(store_path, false, &store);
	if (!rc)
		rc = import_files(store, store_path, &a, order, &mp);
	scry_store_free(store);
	free(order);
	return rc;
}
