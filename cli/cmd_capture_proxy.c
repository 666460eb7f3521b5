/* cli/cmd_capture_proxy.c - `scry capture proxy`: record a workload through the capture proxy. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
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

int cmd_capture_proxy(int argc, char **argv)
{
	enum { O_TLS_CERT = 256, O_TLS_KEY, O_UP_MODE, O_UP_ROOT, O_UP_CERT, O_UP_KEY, O_DBS, O_USERS, O_APPS,
	       O_SAMPLE, O_DURATION, O_MAX_EVENTS, O_THREADS };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "upstream", required_argument, NULL, 'u' },
		{ "store", required_argument, NULL, 's' },
		{ "queue", required_argument, NULL, 'q' },
		{ "max-query-bytes", required_argument, NULL, 'Q' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ "upstream-sslmode", required_argument, NULL, O_UP_MODE },
		{ "upstream-sslrootcert", required_argument, NULL, O_UP_ROOT },
		{ "upstream-sslcert", required_argument, NULL, O_UP_CERT },
		{ "upstream-sslkey", required_argument, NULL, O_UP_KEY },
		{ "databases", required_argument, NULL, O_DBS },
		{ "users", required_argument, NULL, O_USERS },
		{ "applications", required_argument, NULL, O_APPS },
		{ "sample", required_argument, NULL, O_SAMPLE },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "max-events", required_argument, NULL, O_MAX_EVENTS },
		{ "threads", required_argument, NULL, O_THREADS },
		{ NULL, 0, NULL, 0 },
	};
	const char *tcp = NULL, *sock = NULL, *upstream = NULL, *store_opt = NULL;
	scry_proxy_options po = SCRY_PROXY_OPTIONS_INIT;
	long queue = 0, max_events = 0, threads = 1, max_query = 0;
	double duration = 0;
	bool json = false;
	int c;
	verbose_log = false;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:u:s:q:Q:jvh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (optarg[0] == '/' || optarg[0] == '.') {
				if (sock)
					return cli_usage_error("capture proxy", "only one Unix socket --listen is supported");
				sock = optarg;
			} else {
				if (tcp)
					return cli_usage_error("capture proxy", "only one TCP --listen is supported");
				tcp = optarg;
			}
			break;
		case 'u': upstream = optarg; break;
		case 's': store_opt = optarg; break;
		case 'q':
			if (!cli_parse_long("capture proxy", "--queue", optarg, &queue))
				return CLI_EXIT_USAGE;
			break;
		case 'Q':
			if (!cli_parse_long("capture proxy", "--max-query-bytes", optarg, &max_query))
				return CLI_EXIT_USAGE;
			if (max_query < 1)
				return cli_usage_error("capture proxy", "--max-query-bytes must be at least 1");
			break;
		case 'j': json = true; break;
		case 'v': verbose_log = true; break;
		case 'h': fputs(help, stdout); return CLI_EXIT_OK;
		case O_TLS_CERT: po.tls_cert = optarg; break;
		case O_TLS_KEY: po.tls_key = optarg; break;
		case O_UP_MODE: po.upstream_sslmode = optarg; break;
		case O_UP_ROOT: po.upstream_sslrootcert = optarg; break;
		case O_UP_CERT: po.upstream_sslcert = optarg; break;
		case O_UP_KEY: po.upstream_sslkey = optarg; break;
		case O_DBS: po.databases = optarg; break;
		case O_USERS: po.users = optarg; break;
		case O_APPS: po.applications = optarg; break;
		case O_SAMPLE:
			if (!cli_parse_double("capture proxy", "--sample", optarg, &po.sample_rate))
				return CLI_EXIT_USAGE;
			if (!(po.sample_rate > 0 && po.sample_rate <= 1))
				return cli_usage_error("capture proxy", "--sample %s is not a fraction in (0, 1] (e.g. 0.1 for 10%% of sessions)", optarg);
			break;
		case O_DURATION:
			if (!cli_parse_double("capture proxy", "--duration", optarg, &duration))
				return CLI_EXIT_USAGE;
			if (!(duration > 0))
				return cli_usage_error("capture proxy", "--duration %s must be a positive number of seconds", optarg);
			break;
		case O_MAX_EVENTS:
			if (!cli_parse_long("capture proxy", "--max-events", optarg, &max_events))
				return CLI_EXIT_USAGE;
			if (max_events <= 0)
				return cli_usage_error("capture proxy", "--max-events must be positive");
			break;
		case O_THREADS:
			if (!cli_parse_long("capture proxy", "--threads", optarg, &threads))
				return CLI_EXIT_USAGE;
			if (threads < 1 || threads > 64)
				return cli_usage_error("capture proxy", "--threads must be between 1 and 64");
			break;
		default: return cli_usage_error("capture proxy", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("capture proxy", "unexpected argument '%s'", argv[optind]);
	if (!tcp && !sock)
		return cli_usage_error("capture proxy", "--listen HOST:PORT is required (where applications connect)");
	if (!upstream)
		return cli_usage_error("capture proxy", "--upstream HOST:PORT is required (the PostgreSQL server)");
	if ((po.tls_cert == NULL) != (po.tls_key == NULL))
		return cli_usage_error("capture proxy", "--tls-cert and --tls-key go together");

	cli_raise_nofile();
	/* Past a file-size limit, writes fail with EFBIG (reported) instead of
	 * the signal killing the proxy and every client connection with it. */
	signal(SIGXFSZ, SIG_IGN);
	const char *pattern = cli_store_path(store_opt);
	char path[4096];
	if (strchr(pattern, '%')) {
		if (!rotation_path(pattern, "", path, sizeof path)) {
			cli_error("capture proxy: cannot make a store name from '%s'", pattern);
			return CLI_EXIT_ERROR;
		}
	} else {
		snprintf(path, sizeof path, "%s", pattern);
	}
	scry_store *store;
	if (cli_open_store(path, false, &store))
		return CLI_EXIT_ERROR;

	po.listen = tcp;
	po.listen_unix = sock;
	po.max_query_bytes = (size_t)max_query; /* 0: the library's default (16 MiB) */
	po.upstream = upstream;
	po.queue_events = (size_t)queue;
	po.max_events = (uint64_t)max_events;
	po.event_threads = (int)threads;
	po.log = log_stderr;
	scry_error err = SCRY_ERROR_INIT;
	scry_proxy *proxy;
	if (scry_proxy_new(&proxy, store, &po, &err)) {
		cli_lib_error("capture proxy", &err);
		scry_store_free(store);
		return CLI_EXIT_ERROR;
	}
	/* Block the stop signals in every thread; this thread takes them with
	 * sigtimedwait, so no signal handler is needed. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (scry_proxy_start(proxy, &err)) {
		cli_lib_error("capture proxy", &err);
		scry_proxy_free(proxy);
		scry_store_free(store);
		return CLI_EXIT_ERROR;
	}
	if (tcp)
		fprintf(stderr, "scry: capturing on %.*s:%d -> %s into %s (Ctrl-C to stop)\n",
		        (int)(strrchr(tcp, ':') - tcp), tcp, scry_proxy_port(proxy), upstream, path);
	if (sock)
		fprintf(stderr, "scry: capturing on %s -> %s into %s (Ctrl-C to stop)\n", sock, upstream, path);

	bool tty = isatty(STDERR_FILENO);
	int64_t start = cli_now_us(), last_status = 0;
	int rotations = 0, rc = 0;
	for (;;) {
		struct timespec ts = { 0, 100 * 1000000L };
		int sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (scry_proxy_stopping(proxy)) /* --max-events reached */
			break;
		int64_t now = cli_now_us();
		if (duration > 0 && (double)(now - start) >= duration * 1e6)
			break;
		if (sig == SIGHUP) {
			char next_path[4096];
			scry_store *next = NULL, *prev = NULL;
			if (!rotation_path(pattern, path, next_path, sizeof next_path)) {
				cli_error("capture proxy: rotation: no free store name for '%s'; still recording into %s", pattern, path);
			} else if (cli_open_store(next_path, false, &next) == 0) {
				if (scry_proxy_switch_store(proxy, next, &prev, &err) == 0) {
					scry_store_free(prev);
					fprintf(stderr, "scry: rotated: %s closed; recording into %s\n", path, next_path);
					snprintf(path, sizeof path, "%s", next_path);
					store = next;
					rotations++;
				} else {
					cli_lib_error("capture proxy: rotation", &err);
					scry_store_free(next);
				}
			}
		}
		if (tty && now - last_status >= 1000000) {
			last_status = now;
			scry_proxy_stats st = SCRY_PROXY_STATS_INIT;
			scry_proxy_stats_get(proxy, &st);
			fprintf(stderr, "\r\033[Kconnections %" PRIu64 " open, %" PRIu64 " total; events %" PRIu64
			        " recorded, %" PRIu64 " dropped",
			        st.connections_active, st.connections, st.events_recorded, st.events_dropped);
		}
	}
	if (tty)
		fputs("\r\033[K", stderr);
	scry_proxy_stop(proxy);
	rc = scry_proxy_wait(proxy, &err);
	scry_proxy_stats st = SCRY_PROXY_STATS_INIT;
	scry_proxy_stats_get(proxy, &st);
	if (rc)
		cli_lib_error("store", &err);
	if (json) {
		printf("{\"store\":");
		cli_json_string(stdout, path);
		printf(",\"rotations\":%d,\"connections\":%" PRIu64 ",\"connections_failed\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
		       ",\"events_captured\":%" PRIu64 ",\"events_recorded\":%" PRIu64 ",\"events_dropped\":%" PRIu64
		       ",\"bytes_from_clients\":%" PRIu64 ",\"bytes_from_server\":%" PRIu64 "}\n",
		       rotations, st.connections, st.connections_failed, st.protocol_errors, st.events_captured,
		       st.events_recorded, st.events_dropped, st.bytes_from_clients, st.bytes_from_server);
	} else {
		printf("recorded %" PRIu64 " events from %" PRIu64 " connections into %s; %" PRIu64 " dropped\n",
		       st.events_recorded, st.connections, path, st.events_dropped);
		if (st.events_dropped)
			printf("Events were dropped because the store writer fell behind or failed; "
			       "use a larger --queue or a faster disk for the store.\n");
	}
	scry_proxy_free(proxy);
	scry_store_free(store);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
