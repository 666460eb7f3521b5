/* cli/cmd_capture_log.c - `scry capture log`: import PostgreSQL server logs. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
	"usage: scry capture log --format csvlog|jsonlog|stderr [--prefix PREFIX]\n"
	"                        [--store FILE] [--json] LOGFILE...\n"
	"\n"
	"Imports the statements a PostgreSQL server logged into the workload store,\n"
	"one event per executed statement, as the capture proxy would record them.\n"
	"LOGFILE may be gzip-compressed; '-' reads standard input. Give rotated files\n"
	"in order: a session may go on from one file to the next.\n"
	"\n"
	"  --format FMT     csvlog, jsonlog (PostgreSQL 15+) or stderr\n"
	"  --prefix PREFIX  stderr only: the server's log_line_prefix (SHOW log_line_prefix);\n"
	"                   it must contain %c or %p\n"
	"  --store FILE     workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --json           print the summary as one JSON object on stdout\n"
	"\n"
	"The server must log statements: log_statement = 'all' and/or\n"
	"log_min_duration_statement = 0 (both may be on: each statement is counted once).\n"
	"log_connections/log_disconnections = on mark session boundaries. Set\n"
	"lc_messages = 'C'; for stderr add %e to the prefix to keep error SQLSTATEs.\n"
	"Lines that cannot be used are counted and the first few are shown; they\n"
	"never stop the import.\n";

static void print_json(const scry_logimport_stats *st, const char *store)
{
	printf("{\"store\":");
	cli_json_string(stdout, store);
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
	if (st->warning[0])
		cli_json_string(stdout, st->warning);
	else
		printf("null");
	printf("}\n");
}

static void print_text(const scry_logimport_stats *st, const char *store)
{
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
		       st->skip_samples[i].reason, st->skip_samples[i].text);
	if (st->skipped > st->nskip_samples)
		printf("  ... and %llu more\n", (unsigned long long)(st->skipped - st->nskip_samples));
	if (st->warning[0])
		printf("note: %s\n", st->warning);
	if (st->statements == 0)
		printf("No statements found: is log_statement = 'all' or log_min_duration_statement = 0 set,"
		       " and is --format right?\n");
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

int cmd_capture_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *format = NULL, *prefix = NULL, *store_opt = NULL;
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "f:p:s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': format = optarg; break;
		case 'p': prefix = optarg; break;
		case 's': store_opt = optarg; break;
		case 'j': json = true; break;
		case 'h': fputs(help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("capture log", "unknown option");
		}
	}
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	if (!format)
		return cli_usage_error("capture log", "--format is required (csvlog, jsonlog or stderr)");
	if (scry_log_format_parse(format, &o.format))
		return cli_usage_error("capture log", "unknown --format '%s' (csvlog, jsonlog or stderr)", format);
	if (o.format == SCRY_LOG_STDERR && !prefix)
		return cli_usage_error("capture log",
		                       "--format stderr needs --prefix with the server's log_line_prefix "
		                       "(SHOW log_line_prefix;)");
	if (o.format != SCRY_LOG_STDERR && prefix)
		return cli_usage_error("capture log", "--prefix applies to --format stderr only");
	if (optind >= argc)
		return cli_usage_error("capture log", "give at least one LOGFILE (or - for standard input)");
	o.line_prefix = prefix;

	multi_progress mp = { .base = 0, .total = 0 };
	cli_progress_init(&mp.bar);
	for (int i = optind; i < argc; i++) {
		struct stat sb;
		if (strcmp(argv[i], "-") && stat(argv[i], &sb) != 0) {
			cli_error("cannot read %s: %s", argv[i], strerror(errno));
			return CLI_EXIT_ERROR;
		}
		if (strcmp(argv[i], "-"))
			mp.total += (uint64_t)sb.st_size;
	}
	o.progress = on_progress;
	o.progress_ctx = &mp;

	const char *store_path = cli_store_path(store_opt);
	scry_store *store;
	if (cli_open_store(store_path, false, &store))
		return CLI_EXIT_ERROR;
	scry_error err = SCRY_ERROR_INIT;
	scry_logimport *imp;
	if (scry_logimport_new(&imp, store, &o, &err)) {
		cli_lib_error("capture log", &err);
		scry_store_free(store);
		return err.code == SCRY_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
	}
	int rc = 0;
	for (int i = optind; i < argc && !rc; i++) {
		rc = scry_logimport_feed_file(imp, argv[i], &err);
		struct stat sb;
		if (strcmp(argv[i], "-") && !stat(argv[i], &sb))
			mp.base += (uint64_t)sb.st_size;
	}
	int feed_rc = rc;
	scry_error ferr = SCRY_ERROR_INIT;
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	/* Finish even after a read error: what was read is kept. */
	int frc = scry_logimport_finish(imp, &st, &ferr);
	cli_progress_done(&mp.bar);
	scry_logimport_free(imp);
	scry_store_free(store);
	if (feed_rc)
		cli_lib_error("capture log", &err);
	if (frc)
		cli_lib_error("capture log", &ferr);
	if (json)
		print_json(&st, store_path);
	else
		print_text(&st, store_path);
	return feed_rc || frc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
