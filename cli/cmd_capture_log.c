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
	printf(",\"detected\":");
	if (st->detected[0])
		cli_json_string(stdout, st->detected);
	else
		printf("null");
	printf(",\"files\":%llu,\"files_skipped\":%llu,\"bytes_skipped\":%llu,\"nothing_reason\":",
	       (unsigned long long)st->files, (unsigned long long)st->files_skipped,
	       (unsigned long long)st->bytes_skipped);
	if (st->nothing_reason[0])
		cli_json_string(stdout, st->nothing_reason);
	else
		printf("null");
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

int cmd_capture_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "timezone", required_argument, NULL, 'z' },
		{ "lang", required_argument, NULL, 'l' },
		{ "force", no_argument, NULL, 'F' },
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *format = NULL, *prefix = NULL, *store_opt = NULL;
	scry_logimport_options o;
	scry_logimport_options_init(&o);
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "f:p:s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'f': format = optarg; break;
		case 'p': prefix = optarg; break;
		case 'z': o.timezone = optarg; break;
		case 'l': o.lang = optarg; break;
		case 'F': o.force = 1; break;
		case 's': store_opt = optarg; break;
		case 'j': json = true; break;
		case 'h': fputs(help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("capture log", "unknown option");
		}
	}
	o.format = SCRY_LOG_AUTO;
	if (format && scry_log_format_parse(format, &o.format))
		return cli_usage_error("capture log", "unknown --format '%s' (csvlog, jsonlog, stderr or auto)", format);
	if (o.format != SCRY_LOG_STDERR && o.format != SCRY_LOG_AUTO && prefix)
		return cli_usage_error("capture log", "--prefix applies to stderr logs only");
	if (optind >= argc)
		return cli_usage_error("capture log", "give at least one LOGFILE (or - for standard input)");
	o.line_prefix = prefix;

	/* Rotated files in the order of their first timestamp. */
	size_t nfiles = (size_t)(argc - optind);
	const char *const *files = (const char *const *)argv + optind;
	size_t *order = calloc(nfiles, sizeof *order);
	if (!order) {
		cli_error("out of memory");
		return CLI_EXIT_ERROR;
	}
	scry_error err = SCRY_ERROR_INIT;
	multi_progress mp = { .base = 0, .total = 0 };
	cli_progress_init(&mp.bar);
	for (size_t i = 0; i < nfiles; i++) {
		struct stat sb;
		if (strcmp(files[i], "-") && stat(files[i], &sb) != 0) {
			cli_error("cannot read %s: %s", files[i], strerror(errno));
			free(order);
			return CLI_EXIT_ERROR;
		}
		if (strcmp(files[i], "-"))
			mp.total += (uint64_t)sb.st_size;
	}
	if (scry_logimport_order_files(files, nfiles, order, &err)) {
		cli_lib_error("capture log", &err);
		free(order);
		return CLI_EXIT_ERROR;
	}
	for (size_t i = 0; i < nfiles; i++)
		if (order[i] != i) {
			fprintf(stderr, "note: reading the files in the order of their first timestamp:");
			for (size_t k = 0; k < nfiles; k++)
				fprintf(stderr, " %s", files[order[k]]);
			fputc('\n', stderr);
			break;
		}
	o.progress = on_progress;
	o.progress_ctx = &mp;

	const char *store_path = cli_store_path(store_opt);
	scry_store *store;
	if (cli_open_store(store_path, false, &store)) {
		free(order);
		return CLI_EXIT_ERROR;
	}
	scry_logimport *imp;
	if (scry_logimport_new(&imp, store, &o, &err)) {
		cli_lib_error("capture log", &err);
		scry_store_free(store);
		free(order);
		return err.code == SCRY_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
	}
	int status = CLI_EXIT_OK;
	for (size_t i = 0; i < nfiles; i++) {
		const char *path = files[order[i]];
		int rc = scry_logimport_feed_file(imp, path, &err);
		if (rc) {
			/* A damaged file: what could be read is kept; go on with the others.
			 * Anything else (the store, a detection that failed) stops here. */
			cli_lib_error("capture log", &err);
			status = err.code == SCRY_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
			if (rc != SCRY_EIO)
				break;
		}
		struct stat sb;
		if (strcmp(path, "-") && !stat(path, &sb))
			mp.base += (uint64_t)sb.st_size;
	}
	free(order);
	scry_error ferr = SCRY_ERROR_INIT;
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	/* Finish even after a read error: what was read is kept. */
	int frc = scry_logimport_finish(imp, &st, &ferr);
	cli_progress_done(&mp.bar);
	scry_logimport_free(imp);
	scry_store_free(store);
	if (frc) {
		cli_lib_error("capture log", &ferr);
		status = CLI_EXIT_ERROR;
	}
	if (json)
		print_json(&st, store_path);
	else
		print_text(&st, store_path);
	/* Nothing imported from a non-empty log is not a success. */
	if (status == CLI_EXIT_OK && st.nothing_reason[0])
		status = CLI_EXIT_ERROR;
	return status;
}
