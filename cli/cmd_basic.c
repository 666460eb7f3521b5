/* cli/cmd_basic.c - `scry version`, `scry fingerprint`, `scry workload`. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cmd_version(int argc, char **argv)
{
	if (argc > 1 && cli_is_help(argv[1])) {
		puts("usage: scry version\n\nPrints the version of scry and of the libscry it runs with.");
		return CLI_EXIT_OK;
	}
	printf("scry %s (libscry %s)\n", SCRY_VERSION_STRING, scry_version());
	return CLI_EXIT_OK;
}

static const char fingerprint_help[] =
	"usage: scry fingerprint [--normalize] [--json] [FILE|-]\n"
	"\n"
	"Splits the SQL in FILE (or standard input) into statements and prints, per\n"
	"statement, its fingerprint: 16 hex digits, the same value as pg_query's.\n"
	"\n"
	"  --normalize   also print a tab and the normalized text (constants as $n)\n"
	"  --json        one JSON object per line: {\"fingerprint\", \"normalized\", \"query\"}\n"
	"                (or \"error\" for a statement that does not parse)\n"
	"\n"
	"A statement that does not parse is reported on stderr with its position;\n"
	"the others are still printed, and the exit status is 1.\n";

static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	size_t r;
	errno = 0;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *p = realloc(buf, cap *= 2);
			if (!p) {
				free(buf);
				return NULL;
			}
			buf = p;
		}
	}
	if (ferror(f)) { /* a directory, an I/O error: not an empty input */
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

/* The options of fingerprint and workload info|patterns. */
typedef struct output_args {
	bool normalize, json;
	const char *store_opt, *sub;
	long limit;
} output_args;

/* on_option of fingerprint and workload. */
static int output_option(void *ctx, int c, const char *v)
{
	output_args *a = ctx;
	switch (c) {
	case 'n': a->normalize = true; return 0;
	case 'j': a->json = true; return 0;
	case 's': a->store_opt = v; return 0;
	case 'l': return cli_opt_long("workload", "--limit", v, 0, LONG_MAX, NULL, &a->limit);
	}
	return 0;
}

/* Ends a --json line with the statement's text: ,"query":"..."} */
static void print_json_query(const char *stmt, size_t len)
{
	char *q = strndup(stmt, len);
	fputs(",\"query\":", stdout);
	cli_json_string(stdout, q);
	fputs("}\n", stdout);
	free(q);
}

/* A statement that does not parse: on stderr with its line, and as a --json line. */
static void print_unparsable(const char *path, const char *sql, const scry_statement_span *span, size_t i,
                             const char *message, bool json)
{
	/* Line number of the statement, for the person reading the error. */
	size_t line = 1;
	for (size_t k = 0; k < span->offset; k++)
		line += sql[k] == '\n';
	fprintf(stderr, "scry: %s:%zu: statement %zu: %s\n", path, line, i + 1, cli_esc(message));
	if (json) {
		fputs("{\"error\":", stdout);
		cli_json_string(stdout, message);
		print_json_query(sql + span->offset, span->length);
	}
}

/* One statement's fingerprint (and normalized text); false when it does not parse. */
static bool print_fingerprint(scry_fingerprinter *fpr, const char *path, const char *sql,
                              const scry_statement_span *span, size_t i, const output_args *a, scry_buf *norm)
{
	const char *stmt = sql + span->offset;
	uint64_t fp;
	char hex[17];
	scry_error err = SCRY_ERROR_INIT;
	if (scry_fingerprint_compute(fpr, stmt, span->length, &fp, &err)) {
		print_unparsable(path, sql, span, i, err.message, a->json);
		return false;
	}
	scry_fingerprint_format(fp, hex);
	norm->size = 0;
	bool have_norm = (a->normalize || a->json) && scry_fingerprint_normalize(stmt, span->length, norm, NULL) == 0;
	if (a->json) {
		printf("{\"fingerprint\":\"%s\",\"normalized\":", hex);
		cli_json_string(stdout, have_norm ? norm->ptr : NULL);
		print_json_query(stmt, span->length);
	} else if (a->normalize) {
		printf("%s\t%s\n", hex, cli_esc(have_norm && norm->ptr ? norm->ptr : ""));
	} else { /* the common case, a million times over for a captured stream: no printf */
		hex[16] = '\n';
		fwrite(hex, 1, sizeof hex, stdout);
	}
	return true;
}

/* The whole of FILE or "-" (stdin), or NULL after saying why. */
static char *read_input(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		cli_error("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *sql = read_all(f, len);
	if (f != stdin)
		fclose(f);
	if (!sql)
		cli_error("cannot read %s: %s", path, errno ? strerror(errno) : "out of memory");
	return sql;
}

/* Splits the input into statements and prints each one's line; returns the exit code. */
static int fingerprint_all(const char *path, const char *sql, size_t len, const output_args *a)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_statement_span *spans;
	size_t n;
	if (scry_fingerprint_split(sql, len, &spans, &n, &err))
		return cli_lib_fail(path, &err);
	scry_fingerprinter *fpr = NULL;
	if (scry_fingerprinter_new(&fpr, NULL, &err)) {
		scry_statement_spans_free(spans);
		return cli_lib_fail("fingerprint", &err);
	}
	int status = CLI_EXIT_OK;
	scry_buf norm = SCRY_BUF_INIT;
	static char out[1 << 16]; /* one write per 64 kB of lines, not per 4 kB */
	setvbuf(stdout, out, _IOFBF, sizeof out);
	for (size_t i = 0; i < n; i++)
		if (!print_fingerprint(fpr, path, sql, &spans[i], i, a, &norm))
			status = CLI_EXIT_ERROR;
	if (fflush(stdout) || ferror(stdout)) { /* a full disk, a closed pipe: not a silent success */
		cli_error("cannot write the fingerprints: %s", strerror(errno));
		status = CLI_EXIT_ERROR;
	}
	scry_buf_dispose(&norm);
	scry_fingerprinter_free(fpr);
	scry_statement_spans_free(spans);
	return status;
}

int cmd_fingerprint(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "normalize", no_argument, NULL, 'n' },
		CLI_OPTION_JSON,
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "fingerprint", fingerprint_help, "njh", opts, output_option, true };
	output_args a = { .normalize = false };
	int rc = cli_parse_options(&cmd, argc, argv, 1, &a);
	if (rc != CLI_PARSED)
		return rc;
	if (argc - optind > 1)
		return cli_usage_error("fingerprint", "one input file at most");
	const char *path = optind < argc ? argv[optind] : "-";
	size_t len;
	char *sql = read_input(path, &len);
	if (!sql)
		return CLI_EXIT_ERROR;
	rc = fingerprint_all(path, sql, len, &a);
	free(sql);
	return rc;
}

static const char workload_help[] =
	"usage: scry workload info [--store FILE] [--json]\n"
	"       scry workload patterns [--store FILE] [--json] [--limit N]\n"
	"       scry workload merge OUT IN... [--json]\n"
	"       scry workload compact --keep-per-pattern N [--store FILE]\n"
	"\n"
	"  info       counts of events, sessions, patterns, statements, runs, samples\n"
	"  patterns   the captured query patterns, most executed first, with their\n"
	"             count, errors and mean captured latency\n"
	"  merge      combine stores (several proxies, log imports) into OUT (created if\n"
	"             missing): patterns and statements deduplicated, sessions kept apart\n"
	"  compact    keep N executions per pattern (spread over the capture) and\n"
	"             the captured counts; delete the rest (see scry workload compact --help)\n"
	"\n"
	"  --store FILE   the workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --json         machine-readable output (docs/cli.md)\n"
	"  --limit N      show at most N patterns (default: all)\n";

/* workload info: the store's counts. */
static int workload_info(scry_store *store, const char *path, bool json)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_store_info info = SCRY_STORE_INFO_INIT;
	if (scry_store_info_get(store, &info, &err))
		return cli_lib_fail(path, &err);
	if (json) {
		cli_json_begin("store", path);
		printf(",\"events\":%lld,\"sessions\":%lld,\"patterns\":%lld,\"statements\":%lld,"
		       "\"runs\":%lld,\"samples\":%lld,\"first_us\":%lld,\"last_us\":%lld,"
		       "\"file_bytes\":%lld,\"schema_version\":%d}\n",
		       (long long)info.events, (long long)info.sessions, (long long)info.patterns,
		       (long long)info.statements, (long long)info.runs, (long long)info.samples,
		       (long long)info.first_us, (long long)info.last_us, (long long)info.file_bytes,
		       info.schema_version);
		return CLI_EXIT_OK;
	}
	char a[40], b[40];
	cli_format_time(info.first_us, a, sizeof a);
	cli_format_time(info.last_us, b, sizeof b);
	printf("store        %s (%.1f MiB, schema %d)\n", path, info.file_bytes / 1048576.0, info.schema_version);
	printf("events       %lld\n", (long long)info.events);
	printf("sessions     %lld\n", (long long)info.sessions);
	printf("patterns     %lld\n", (long long)info.patterns);
	printf("statements   %lld\n", (long long)info.statements);
	printf("captured     %s .. %s\n", a, b);
	printf("runs         %lld (%lld samples)\n", (long long)info.runs, (long long)info.samples);
	return CLI_EXIT_OK;
}

/* One line of workload patterns. */
static void print_pattern(const scry_pattern *p, bool json)
{
	char hex[17];
	scry_fingerprint_format(p->fingerprint, hex);
	if (json) {
		printf("{\"fingerprint\":\"%s\",\"count\":%lld,\"errors\":%lld,\"mean_ms\":%.3f,"
		       "\"total_ms\":%.3f,\"normalized\":",
		       p->parse_error ? "" : hex, (long long)p->count, (long long)p->errors,
		       p->mean_us / 1000.0, p->total_us / 1000.0);
		cli_json_string(stdout, p->normalized);
		if (p->parse_error) {
			fputs(",\"parse_error\":", stdout);
			cli_json_string(stdout, p->parse_error);
		}
		fputs("}\n", stdout);
		return;
	}
	/* One line per pattern: newlines in the text are folded. */
	char q[121];
	size_t k = 0;
	for (const char *s = p->normalized ? p->normalized : ""; *s && k < sizeof q - 1; s++)
		q[k++] = (*s == '\n' || *s == '\t' || *s == '\r') ? ' ' : *s;
	q[k] = 0;
	printf("%-16s %10lld %8lld %12.3f  %s\n",
	       !p->parse_error ? hex : strstr(p->parse_error, "truncated at capture") ? "(truncated)" : "(unparsable)",
	       (long long)p->count, (long long)p->errors, p->mean_us / 1000.0, cli_esc(q));
}

/* workload patterns: most executed first, at most `limit` (< 0: all). */
static int workload_patterns(scry_store *store, const char *path, bool json, long limit)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_pattern_iter *it;
	if (scry_store_patterns(store, &it, &err))
		return cli_lib_fail(path, &err);
	const scry_pattern *p;
	int r = 0; /* --limit 0 reads nothing */
	long shown = 0;
	if (!json)
		printf("%-16s %10s %8s %12s  %s\n", "FINGERPRINT", "COUNT", "ERRORS", "MEAN_MS", "QUERY");
	while ((limit < 0 || shown < limit) && (r = scry_pattern_iter_next(it, &p, &err)) == 1) {
		print_pattern(p, json);
		shown++;
	}
	int status = CLI_EXIT_OK;
	if (r < 0)
		status = cli_lib_fail(path, &err);
	scry_pattern_iter_free(it);
	return status;
}

/* workload info|patterns on the open store. */
static int workload_show(scry_store *store, void *ctx)
{
	const output_args *a = ctx;
	const char *path = cli_store_path(a->store_opt);
	if (!strcmp(a->sub, "info"))
		return workload_info(store, path, a->json);
	return workload_patterns(store, path, a->json, a->limit);
}

int cmd_workload(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTION_STORE,
		CLI_OPTION_JSON,
		{ "limit", required_argument, NULL, 'l' },
		CLI_OPTIONS_END,
	};
	static const cli_command cmd = { "workload", workload_help, "s:jl:h", opts, output_option, false };
	static const cli_subcommands subs = { "workload", workload_help, "subcommand", "info, patterns, merge or compact",
		                              { "info", "patterns", "merge", "compact", NULL } };
	int sub, rc = cli_subcommand(&subs, argc, argv, &sub);
	if (rc != CLI_PARSED)
		return rc;
	if (sub == 2)
		return cmd_workload_merge(argc - 1, argv + 1);
	if (sub == 3)
		return cmd_workload_compact(argc - 1, argv + 1);
	output_args a = { .sub = argv[1], .limit = -1 };
	rc = cli_parse_options(&cmd, argc, argv, 2, &a);
	return rc == CLI_PARSED ? cli_with_store(a.store_opt, workload_show, &a) : rc;
}
