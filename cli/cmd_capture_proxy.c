/* cli/cmd_capture_proxy.c - `scry capture proxy`: record a workload through the capture proxy. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char help[] =
	"usage: scry capture proxy --listen HOST:PORT|SOCKET --upstream HOST:PORT|SOCKET\n"
	"                          [--store FILE] [--queue N] [--max-query-bytes N] [TLS options] [filters]\n"
	"                          [--duration SECONDS] [--max-events N] [--json] [--verbose]\n"
	"\n"
	"Listen for PostgreSQL clients, forward every byte to the upstream server unchanged,\n"
	"and record each query (text, parameters, timing, rows, SQLSTATE) into the store.\n"
	"Runs until interrupted (Ctrl-C, SIGTERM), --duration or --max-events, then writes what\n"
	"is queued and prints a summary. SIGHUP closes the store and goes on in a new one\n"
	"(scry-YYYYmmdd-HHMMSS.db, UTC, in the store's directory; or the --store pattern when\n"
	"it holds strftime %-fields).\n"
	"\n"
	"  --listen ADDR     where applications connect: HOST:PORT (PORT 0 = any free port,\n"
	"                    printed at start), or a Unix socket path (starting with '/').\n"
	"                    Repeat to listen on both a TCP address and a socket.\n"
	"  --upstream ADDR   the PostgreSQL server: HOST:PORT, a socket file, or a socket\n"
	"                    directory with an optional :PORT (e.g. /var/run/postgresql:5432)\n"
	"  --store FILE      workload store (default $SCRY_STORE, then ./scry.db); created 0600\n"
	"  --queue N         events buffered for the store writer (default 65536); when full,\n"
	"                    events are dropped (never the traffic) and counted\n"
	"  --max-query-bytes N  longest statement text recorded (default 16 MiB); longer texts\n"
	"                    are forwarded whole, recorded cut and marked, and never replayed\n"
	"  --threads N       event-loop threads (default 1); N > 1 listens N times on the\n"
	"                    TCP port with SO_REUSEPORT, the kernel spreading connections\n"
	"\n"
	"TLS (SSLRequest is answered 'S' with a certificate, else 'N'; GSS encryption: 'N'):\n"
	"  --tls-cert FILE   PEM certificate chain the proxy shows to clients\n"
	"  --tls-key FILE    its private key (PEM)\n"
	"  --upstream-sslmode MODE  disable, prefer (default), require, verify-ca, verify-full\n"
	"  --upstream-sslrootcert FILE  CA certificate(s) verifying the server (verify-ca/-full;\n"
	"                    default: the system's trusted roots)\n"
	"  --upstream-sslcert FILE, --upstream-sslkey FILE  client certificate for the server\n"
	"  Clients must not require SCRAM channel binding (channel_binding=require): a TLS-\n"
	"  terminating proxy cannot pass it. Use channel_binding=prefer (libpq's default).\n"
	"\n"
	"What to record (sessions left out are forwarded, not recorded):\n"
	"  --databases A,B   only these databases      --users A,B  only these users\n"
	"  --applications A,B  only these application_name values (at connection start)\n"
	"  --sample RATE     record this fraction of sessions (0 < RATE <= 1), each one whole\n"
	"  --duration SECONDS  stop after this long    --max-events N  stop after N events\n"
	"\n"
	"  --json            print the summary as one JSON object on stdout\n"
	"  --verbose         also log connection and protocol warnings to stderr (errors,\n"
	"                    such as store failures, are always logged when they happen)\n"
	"\n"
	"Passwords, SASL and GSS messages are forwarded but never recorded; the literals of\n"
	"CREATE/ALTER ROLE ... PASSWORD, USER MAPPING ... OPTIONS and SUBSCRIPTION ...\n"
	"CONNECTION are recorded as '<redacted>'.\n"
	"\n"
	"Exit codes: 0 stopped cleanly, 1 error (cannot listen, bad TLS files, store failure,\n"
	"store file deleted or replaced while recording), 2 usage.\n";

static bool verbose_log;

static void log_stderr(void *ctx, scry_log_level level, const char *message)
{
	(void)ctx;
	if (level < SCRY_LOG_ERROR && !verbose_log)
		return;
	fprintf(stderr, "scry: %s%s\n", level >= SCRY_LOG_ERROR ? "error: " : "", cli_esc(message));
}

/* The next store's path: the --store pattern when it holds %-fields, else
 * scry-YYYYmmdd-HHMMSS.db (UTC) next to the current store; never an
 * existing file. */
static bool rotation_path(const char *pattern, const char *current, char *out, size_t outsz)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char name[4096];
	if (strchr(pattern, '%')) {
		if (!strftime(name, sizeof name, pattern, &tm))
			return false;
	} else {
		const char *slash = strrchr(current, '/');
		char stamp[64];
		strftime(stamp, sizeof stamp, "scry-%Y%m%d-%H%M%S", &tm);
		snprintf(name, sizeof name, "%.*s%s.db", slash ? (int)(slash - current + 1) : 0, current, stamp);
	}
	snprintf(out, outsz, "%s", name);
	for (int i = 1; access(out, F_OK) == 0 && i < 1000; i++) {
		size_t n = strlen(name);
		int ext = n > 3 && !strcmp(name + n - 3, ".db") ? 3 : 0;
		snprintf(out, outsz, "%.*s-%d%s", (int)(n - (size_t)ext), name, i, ext ? ".db" : "");
	}
	return access(out, F_OK) != 0;
}

/* The options whose value goes as it is into a field of scry_proxy_options. */
static const struct {
	const char *name;
	size_t offset;
} string_options[] = {
	{ "tls-cert", offsetof(scry_proxy_options, tls_cert) },
	{ "tls-key", offsetof(scry_proxy_options, tls_key) },
	{ "upstream-sslmode", offsetof(scry_proxy_options, upstream_sslmode) },
	{ "upstream-sslrootcert", offsetof(scry_proxy_options, upstream_sslrootcert) },
	{ "upstream-sslcert", offsetof(scry_proxy_options, upstream_sslcert) },
	{ "upstream-sslkey", offsetof(scry_proxy_options, upstream_sslkey) },
	{ "databases", offsetof(scry_proxy_options, databases) },
	{ "users", offsetof(scry_proxy_options, users) },
	{ "applications", offsetof(scry_proxy_options, applications) },
};
#define NSTRING_OPTIONS (sizeof string_options / sizeof string_options[0])
enum { O_SAMPLE = 256, O_DURATION, O_MAX_EVENTS, O_THREADS, O_STRING };

static const struct option fixed_options[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "upstream", required_argument, NULL, 'u' },
	CLI_OPTION_STORE,
	{ "queue", required_argument, NULL, 'q' },
	{ "max-query-bytes", required_argument, NULL, 'Q' },
	CLI_OPTION_JSON,
	{ "verbose", no_argument, NULL, 'v' },
	{ "sample", required_argument, NULL, O_SAMPLE },
	{ "duration", required_argument, NULL, O_DURATION },
	{ "max-events", required_argument, NULL, O_MAX_EVENTS },
	{ "threads", required_argument, NULL, O_THREADS },
	CLI_OPTIONS_END,
};
#define NFIXED_OPTIONS (sizeof fixed_options / sizeof fixed_options[0] - 1) /* with help, not the end */

/* The getopt table: fixed_options, then string_options as codes O_STRING + i. */
static const struct option *proxy_options(void)
{
	static struct option opts[NFIXED_OPTIONS + NSTRING_OPTIONS + 1];
	memcpy(opts, fixed_options, NFIXED_OPTIONS * sizeof *opts);
	for (size_t i = 0; i < NSTRING_OPTIONS; i++)
		opts[NFIXED_OPTIONS + i] = (struct option){ string_options[i].name, required_argument, NULL,
		                                            O_STRING + (int)i };
	opts[NFIXED_OPTIONS + NSTRING_OPTIONS] = (struct option){ NULL, 0, NULL, 0 };
	return opts;
}

/* What the command line asks for. */
typedef struct proxy_args {
	scry_proxy_options po;
	const char *tcp, *sock, *store_opt;
	long queue, max_events, threads, max_query;
	double duration;
	bool json;
} proxy_args;

#define CMD "capture proxy"

/* on_option of capture proxy. */
static int proxy_option(void *ctx, int c, const char *v)
{
	proxy_args *a = ctx;
	if (c >= O_STRING && c < O_STRING + (int)NSTRING_OPTIONS) {
		*(const char **)((char *)&a->po + string_options[c - O_STRING].offset) = v;
		return 0;
	}
	switch (c) {
	case 'l': /* a path is a Unix socket, anything else a TCP address */
		if (v[0] == '/' || v[0] == '.') {
			if (a->sock)
				return cli_usage_error(CMD, "only one Unix socket --listen is supported");
			a->sock = v;
		} else {
			if (a->tcp)
				return cli_usage_error(CMD, "only one TCP --listen is supported");
			a->tcp = v;
		}
		return 0;
	case 'u': a->po.upstream = v; return 0;
	case 's': a->store_opt = v; return 0;
	case 'q': return cli_opt_long(CMD, "--queue", v, 0, LONG_MAX, NULL, &a->queue);
	case 'Q':
		return cli_opt_long(CMD, "--max-query-bytes", v, 1, LONG_MAX, "--max-query-bytes must be at least 1",
		                    &a->max_query);
	case 'j': a->json = true; return 0;
	case 'v': verbose_log = true; return 0;
	case O_SAMPLE:
		if (cli_opt_double(CMD, "--sample", v, &a->po.sample_rate))
			return CLI_EXIT_USAGE;
		if (!(a->po.sample_rate <= 1))
			return cli_usage_error(CMD, "--sample %s is not a fraction in (0, 1] (e.g. 0.1 for 10%% of sessions)", v);
		return 0;
	case O_DURATION: return cli_opt_double(CMD, "--duration", v, &a->duration);
	case O_MAX_EVENTS:
		return cli_opt_long(CMD, "--max-events", v, 1, LONG_MAX, "--max-events must be positive", &a->max_events);
	case O_THREADS:
		return cli_opt_long(CMD, "--threads", v, 1, 64, "--threads must be between 1 and 64", &a->threads);
	}
	return 0;
}

/* Options into a->po; returns CLI_PARSED or the exit code. */
static int parse_proxy_args(proxy_args *a, int argc, char **argv)
{
	const cli_command cmd = { CMD, help, "l:u:s:q:Q:jvh", proxy_options(), proxy_option, false };
	verbose_log = false;
	a->threads = 1;
	int rc = cli_parse_options(&cmd, argc, argv, 1, a);
	if (rc != CLI_PARSED)
		return rc;
	if (!a->tcp && !a->sock)
		return cli_usage_error(CMD, "--listen HOST:PORT is required (where applications connect)");
	if (!a->po.upstream)
		return cli_usage_error(CMD, "--upstream HOST:PORT is required (the PostgreSQL server)");
	if ((a->po.tls_cert == NULL) != (a->po.tls_key == NULL))
		return cli_usage_error(CMD, "--tls-cert and --tls-key go together");
	a->po.listen = a->tcp;
	a->po.listen_unix = a->sock;
	a->po.max_query_bytes = (size_t)a->max_query; /* 0: the library's default (16 MiB) */
	a->po.queue_events = (size_t)a->queue;
	a->po.max_events = (uint64_t)a->max_events;
	a->po.event_threads = (int)a->threads;
	a->po.log = log_stderr;
	return CLI_PARSED;
}

/* A running capture: the proxy and the store it records into. */
typedef struct capture {
	const proxy_args *args;
	const char *pattern; /* --store, or what it defaults to */
	char path[4096];     /* the current store */
	scry_store *store;
	scry_proxy *proxy;
	int rotations;
} capture;

/* Opens the first store: the --store pattern filled in, or the path as it is. */
static int open_first_store(capture *cap)
{
	cap->pattern = cli_store_path(cap->args->store_opt);
	if (strchr(cap->pattern, '%')) {
		if (!rotation_path(cap->pattern, "", cap->path, sizeof cap->path)) {
			cli_error("capture proxy: cannot make a store name from '%s'", cap->pattern);
			return CLI_EXIT_ERROR;
		}
	} else {
		snprintf(cap->path, sizeof cap->path, "%s", cap->pattern);
	}
	return cli_open_store(cap->path, false, &cap->store);
}

/* SIGHUP: the proxy goes on in a new store, the old one is closed. */
static void rotate(capture *cap)
{
	char next_path[4096];
	scry_store *next = NULL, *prev = NULL;
	scry_error err = SCRY_ERROR_INIT;
	if (!rotation_path(cap->pattern, cap->path, next_path, sizeof next_path)) {
		cli_error("capture proxy: rotation: no free store name for '%s'; still recording into %s", cap->pattern,
		          cap->path);
	} else if (cli_open_store(next_path, false, &next) == 0) {
		if (scry_proxy_switch_store(cap->proxy, next, &prev, &err) == 0) {
			scry_store_free(prev);
			fprintf(stderr, "scry: rotated: %s closed; recording into %s\n", cap->path, next_path);
			snprintf(cap->path, sizeof cap->path, "%s", next_path);
			cap->store = next;
			cap->rotations++;
		} else {
			cli_lib_error("capture proxy: rotation", &err);
			scry_store_free(next);
		}
	}
}

/* Until a stop signal, --duration or --max-events: rotations on SIGHUP, a status line on a terminal. */
static void record_until_stopped(capture *cap, const sigset_t *set)
{
	bool tty = isatty(STDERR_FILENO);
	int64_t start = cli_now_us(), last_status = 0;
	for (;;) {
		struct timespec ts = { 0, 100 * 1000000L };
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (scry_proxy_stopping(cap->proxy)) /* --max-events reached */
			break;
		int64_t now = cli_now_us();
		if (cap->args->duration > 0 && (double)(now - start) >= cap->args->duration * 1e6)
			break;
		if (sig == SIGHUP)
			rotate(cap);
		if (tty && now - last_status >= 1000000) {
			last_status = now;
			scry_proxy_stats st = SCRY_PROXY_STATS_INIT;
			scry_proxy_stats_get(cap->proxy, &st);
			fprintf(stderr, "\r\033[Kconnections %" PRIu64 " open, %" PRIu64 " total; events %" PRIu64
			        " recorded, %" PRIu64 " dropped",
			        st.connections_active, st.connections, st.events_recorded, st.events_dropped);
		}
	}
	if (tty)
		fputs("\r\033[K", stderr);
}

/* What was recorded, as text or --json. */
static void print_summary(const capture *cap, const scry_proxy_stats *st)
{
	if (cap->args->json) {
		cli_json_begin("store", cap->path);
		printf(",\"rotations\":%d,\"connections\":%" PRIu64 ",\"connections_failed\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
		       ",\"events_captured\":%" PRIu64 ",\"events_recorded\":%" PRIu64 ",\"events_dropped\":%" PRIu64
		       ",\"bytes_from_clients\":%" PRIu64 ",\"bytes_from_server\":%" PRIu64 "}\n",
		       cap->rotations, st->connections, st->connections_failed, st->protocol_errors, st->events_captured,
		       st->events_recorded, st->events_dropped, st->bytes_from_clients, st->bytes_from_server);
	} else {
		printf("recorded %" PRIu64 " events from %" PRIu64 " connections into %s; %" PRIu64 " dropped\n",
		       st->events_recorded, st->connections, cap->path, st->events_dropped);
		if (st->events_dropped)
			printf("Events were dropped because the store writer fell behind or failed; "
			       "use a larger --queue or a faster disk for the store.\n");
	}
}

/* Starts the proxy, records until told to stop, drains the queue and prints the summary. */
static int run_capture(capture *cap)
{
	const proxy_args *a = cap->args;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_proxy_new(&cap->proxy, cap->store, &a->po, &err))
		return cli_lib_fail(CMD, &err);
	/* Block the stop signals in every thread; this thread takes them with
	 * sigtimedwait, so no signal handler is needed. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (scry_proxy_start(cap->proxy, &err))
		return cli_lib_fail(CMD, &err);
	if (a->tcp)
		fprintf(stderr, "scry: capturing on %.*s:%d -> %s into %s (Ctrl-C to stop)\n",
		        (int)(strrchr(a->tcp, ':') - a->tcp), a->tcp, scry_proxy_port(cap->proxy), a->po.upstream,
		        cap->path);
	if (a->sock)
		fprintf(stderr, "scry: capturing on %s -> %s into %s (Ctrl-C to stop)\n", a->sock, a->po.upstream,
		        cap->path);
	record_until_stopped(cap, &set);
	scry_proxy_stop(cap->proxy);
	int rc = scry_proxy_wait(cap->proxy, &err);
	scry_proxy_stats st = SCRY_PROXY_STATS_INIT;
	scry_proxy_stats_get(cap->proxy, &st);
	if (rc)
		cli_lib_error("store", &err);
	print_summary(cap, &st);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

int cmd_capture_proxy(int argc, char **argv)
{
	proxy_args a = { .po = SCRY_PROXY_OPTIONS_INIT };
	int rc = parse_proxy_args(&a, argc, argv);
	if (rc != CLI_PARSED)
		return rc;
	cli_raise_nofile();
	/* Past a file-size limit, writes fail with EFBIG (reported) instead of
	 * the signal killing the proxy and every client connection with it. */
	signal(SIGXFSZ, SIG_IGN);
	capture cap = { .args = &a };
	if (open_first_store(&cap))
		return CLI_EXIT_ERROR;
	rc = run_capture(&cap);
	scry_proxy_free(cap.proxy);
	scry_store_free(cap.store);
	return rc;
}
