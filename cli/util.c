/* cli/util.c - what every command shares: option parsing, error printing,
 * store opening, progress bar, JSON output. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* cli_esc's buffers, one ring per thread: freed when the thread ends (the
 * proxy's loop threads log through it), so that none of them leaks. */
typedef struct esc_ring {
	scry_buf buf[4];
	unsigned next;
} esc_ring;
static pthread_key_t esc_key;
static pthread_once_t esc_once = PTHREAD_ONCE_INIT;

static void esc_ring_free(void *p)
{
	esc_ring *r = p;
	for (size_t i = 0; i < 4; i++)
		scry_buf_dispose(&r->buf[i]);
	free(r);
}

static void esc_key_create(void)
{
	(void)pthread_key_create(&esc_key, esc_ring_free);
}

const char *cli_esc(const char *s)
{
	pthread_once(&esc_once, esc_key_create);
	esc_ring *r = pthread_getspecific(esc_key);
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r || pthread_setspecific(esc_key, r)) {
			free(r);
			return s ? s : "";
		}
	}
	scry_buf *b = &r->buf[r->next++ % 4];
	b->size = 0;
	if (!s || scry_escape_controls(s, strlen(s), b) != 0 || !b->ptr)
		return s ? s : "";
	return b->ptr;
}

void cli_put_escaped(FILE *f, const char *s)
{
	fputs(cli_esc(s), f);
}

/* Every CLI message goes through the library's redaction (passwords in
 * connection strings and URIs) and has its control characters escaped. */
static void verror(const char *fmt, va_list ap)
{
	char raw[2048], msg[2048];
	vsnprintf(raw, sizeof raw, fmt, ap);
	scry_redact_secrets(raw, msg, sizeof msg);
	fputs("scry: ", stderr);
	cli_put_escaped(stderr, msg);
	fputc('\n', stderr);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
}

void cli_lib_error(const char *what, const scry_error *err)
{
	if (err && err->message[0])
		cli_error("%s: %s", what, err->message);
	else
		cli_error("%s: %s", what, scry_strerror(err ? err->code : SCRY_EINVAL));
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try 'scry %s --help'.\n", cmd);
	return CLI_EXIT_USAGE;
}

const char *cli_store_path(const char *opt)
{
	if (opt && *opt)
		return opt;
	const char *env = getenv("SCRY_STORE");
	if (env && *env)
		return env;
	return "scry.db";
}

int cli_open_store(const char *path, bool must_exist, scry_store **out)
{
	scry_store_options o = SCRY_STORE_OPTIONS_INIT;
	o.must_exist = must_exist;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(out, path, &o, &err) != 0) {
		cli_lib_error(path, &err);
		if (err.code == SCRY_ENOTFOUND)
			fprintf(stderr, "Capture a workload first (scry capture proxy|log), or pass --store FILE.\n");
		return CLI_EXIT_ERROR;
	}
	return 0;
}

int cli_with_store(const char *option_value, cli_store_fn fn, void *ctx)
{
	scry_store *store;
	if (cli_open_store(cli_store_path(option_value), true, &store))
		return CLI_EXIT_ERROR;
	int rc = fn(store, ctx);
	scry_store_free(store);
	return rc;
}

bool cli_is_help(const char *a)
{
	return a && (!strcmp(a, "-h") || !strcmp(a, "--help"));
}

int cli_subcommand(const cli_subcommands *subs, int argc, char **argv, int *index)
{
	if (argc < 2) {
		fputs(subs->help, stderr);
		return CLI_EXIT_USAGE;
	}
	if (cli_is_help(argv[1])) {
		fputs(subs->help, stdout);
		return CLI_EXIT_OK;
	}
	for (int i = 0; subs->names[i]; i++)
		if (!strcmp(argv[1], subs->names[i])) {
			*index = i;
			return CLI_PARSED;
		}
	return cli_usage_error(subs->cmd, "unknown %s '%s' (%s)", subs->what, argv[1], subs->list);
}

int cli_parse_options(const cli_command *cmd, int argc, char **argv, int first, void *ctx)
{
	int c;
	optind = first;
	while ((c = getopt_long(argc, argv, cmd->shortopts, cmd->longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(cmd->help, stdout);
			return CLI_EXIT_OK;
		}
		if (c == '?' || c == ':' || !cmd->on_option)
			return cli_usage_error(cmd->name, "unknown option");
		int rc = cmd->on_option(ctx, c, optarg);
		if (rc)
			return rc;
	}
	if (!cmd->operands && optind < argc)
		return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
	return CLI_PARSED;
}

bool cli_parse_double(const char *cmd, const char *opt, const char *v, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v ? v : "", &end);
	if (!v || !*v || *end || errno || !(d > 0)) {
		cli_usage_error(cmd, "%s needs a positive number, not '%s'", opt, v ? v : "");
		return false;
	}
	*out = d;
	return true;
}

bool cli_parse_long(const char *cmd, const char *opt, const char *v, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v ? v : "", &end, 10);
	if (!v || !*v || *end || errno || n < 0) {
		cli_usage_error(cmd, "%s needs a whole number >= 0, not '%s'", opt, v ? v : "");
		return false;
	}
	*out = n;
	return true;
}

int cli_opt_double(const char *cmd, const char *opt, const char *value, double *out)
{
	return cli_parse_double(cmd, opt, value, out) ? 0 : CLI_EXIT_USAGE;
}

int cli_opt_long(const char *cmd, const char *opt, const char *value, long min, long max,
                 const char *range, long *out)
{
	long n;
	if (!cli_parse_long(cmd, opt, value, &n))
		return CLI_EXIT_USAGE;
	if (n < min || n > max)
		return cli_usage_error(cmd, "%s", range);
	*out = n;
	return 0;
}

int cli_opt_int(const char *cmd, const char *opt, const char *value, int min, int max,
                const char *range, int *out)
{
	long n = 0;
	int rc = cli_opt_long(cmd, opt, value, min, max, range, &n);
	if (!rc)
		*out = (int)n;
	return rc;
}

int cli_opt_budget(const char *cmd, const char *value, long *out)
{
	if (!strcmp(value, "off") || !strcmp(value, "0")) {
		*out = 0;
		return 0;
	}
	return cli_opt_long(cmd, "--budget", value, 1, LONG_MAX,
	                    "--budget is a number of executions (at least 1) or off", out);
}

int cli_opt_choice(const char *cmd, const char *what, const cli_choice *choices, const char *value,
                   int *out)
{
	for (const cli_choice *c = choices; c->name; c++)
		if (!strcmp(value, c->name)) {
			*out = c->value;
			return 0;
		}
	return cli_usage_error(cmd, "%s, not '%s'", what, value);
}

int64_t cli_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cli_progress_init(cli_progress *p)
{
	memset(p, 0, sizeof *p);
	p->enabled = isatty(STDERR_FILENO) && !getenv("SCRY_NO_PROGRESS");
}

void cli_progress_cb(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
	cli_progress *p = ctx;
	if (!p || !p->enabled)
		return;
	int64_t t = cli_now_us();
	bool finished = total && done >= total;
	/* Redraw at most 10 times a second, but always the final state. */
	if (!finished && t - p->last_draw_us < 100000 && !strcmp(p->phase, phase ? phase : ""))
		return;
	p->last_draw_us = t;
	snprintf(p->phase, sizeof p->phase, "%s", phase ? phase : "");
	if (total) {
		int width = 30;
		int filled = (int)((double)done / (double)total * width);
		if (filled > width)
			filled = width;
		fprintf(stderr, "\r\033[K%-12s [%.*s%*s] %3d%% %llu/%llu", p->phase, filled,
		        "##############################", width - filled, "",
		        (int)(100.0 * (double)done / (double)total), (unsigned long long)done,
		        (unsigned long long)total);
	} else {
		fprintf(stderr, "\r\033[K%-12s %llu", p->phase, (unsigned long long)done);
	}
	fflush(stderr);
}

void cli_progress_done(cli_progress *p)
{
	if (p && p->enabled) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

void cli_json_string(FILE *f, const char *s)
{
	scry_buf b = SCRY_BUF_INIT;
	if (!s)
		s = "";
	if (scry_json_string(s, strlen(s), &b) == 0)
		fwrite(b.ptr, 1, b.size, f);
	else
		fputs("\"\"", f); /* out of memory: an empty string, still valid JSON */
	scry_buf_dispose(&b);
}

void cli_json_string_or_null(FILE *f, const char *s)
{
	if (s && s[0])
		cli_json_string(f, s);
	else
		fputs("null", f);
}

void cli_json_begin(const char *key, const char *value)
{
	printf("{\"%s\":", key);
	cli_json_string(stdout, value);
}

int cli_write_report(const scry_buf *report, const char *output)
{
	if (!output) {
		if ((report->size && fwrite(report->ptr, 1, report->size, stdout) != report->size) || fflush(stdout) != 0) {
			cli_error("writing the report: %s", strerror(errno));
			return CLI_EXIT_ERROR;
		}
		return 0;
	}
	FILE *f = fopen(output, "w");
	bool ok = f && (!report->size || fwrite(report->ptr, 1, report->size, f) == report->size);
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok) {
		cli_error("cannot write %s: %s", output, strerror(errno));
		return CLI_EXIT_ERROR;
	}
	return 0;
}

int cli_lib_fail(const char *what, const scry_error *err)
{
	cli_lib_error(what, err);
	return CLI_EXIT_ERROR;
}

void cli_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Unix microseconds as "YYYY-MM-DD HH:MM:SS UTC"; "-" for 0. */
void cli_format_time(int64_t us, char *buf, size_t n)
{
	if (!us) {
		snprintf(buf, n, "-");
		return;
	}
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

int cli_filter_option(const char *cmd, int opt, const char *arg, scry_pattern_filter **filter,
                      scry_verdict_options *vo)
{
	scry_error err = SCRY_ERROR_INIT;
	if (!*filter && scry_pattern_filter_new(filter, &err)) {
		cli_lib_error(cmd, &err);
		return CLI_EXIT_ERROR;
	}
	vo->filter = *filter;
	if (opt == CLI_OPT_JUDGE_SETUP) {
		scry_pattern_filter_set_session_setup(*filter, 1);
		return 0;
	}
	if (scry_pattern_filter_add(*filter, opt == CLI_OPT_INCLUDE, arg, &err))
		return cli_usage_error(cmd, "%s", err.message);
	return 0;
}
