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
	"                          [--store FILE] [--queue N] [--max-query-bytes N] [--json] [--verbose]\n"
	"\n"
	"Listen for PostgreSQL clients, forward every byte to the upstream server unchanged,\n"
	"and record each query (text, parameters, timing, rows, SQLSTATE) into the store.\n"
	"Runs until interrupted (Ctrl-C, SIGTERM), then writes what is queued and prints a summary.\n"
	"\n"
	"  --listen ADDR     where applications connect: HOST:PORT (PORT 0 = any free port,\n"
	"                    printed at start), or a Unix socket path (starting with '/').\n"
	"                    Repeat to listen on both a TCP address and a socket.\n"
	"  --upstream ADDR   the PostgreSQL server: HOST:PORT, a socket file, or a socket\n"
	"                    directory with an optional :PORT (e.g. /var/run/postgresql:5432)\n"
	"  --store FILE      workload store (default $SCRY_STORE, then ./scry.db)\n"
	"  --queue N         events buffered for the store writer (default 65536); when full,\n"
	"                    events are dropped (never the traffic) and counted\n"
	"  --max-query-bytes N  longest statement text recorded (default 16 MiB); longer texts\n"
	"                    are forwarded whole, recorded cut and marked, and never replayed\n"
	"  --json            print the summary as one JSON object on stdout\n"
	"  --verbose         log connection and protocol errors to stderr\n"
	"\n"
	"TLS: the proxy answers SSLRequest with 'N', so clients connect in plain text\n"
	"(sslmode=prefer, the default, works; sslmode=require fails). Passwords, SASL and\n"
	"GSS messages are forwarded but never recorded.\n"
	"\n"
	"Exit codes: 0 stopped cleanly, 1 error (cannot listen, store failure), 2 usage.\n";

static void log_stderr(void *ctx, scry_log_level level, const char *message)
{
	(void)ctx;
	fprintf(stderr, "scry: %s%s\n", level >= SCRY_LOG_ERROR ? "error: " : "", cli_esc(message));
}

int cmd_capture_proxy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "upstream", required_argument, NULL, 'u' },
		{ "store", required_argument, NULL, 's' },
		{ "queue", required_argument, NULL, 'q' },
		{ "max-query-bytes", required_argument, NULL, 'Q' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tcp = NULL, *sock = NULL, *upstream = NULL, *store_opt = NULL;
	long queue = 0, max_query = 0;
	bool json = false, verbose = false;
	int c;
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
		case 'v': verbose = true; break;
		case 'h': fputs(help, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("capture proxy", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("capture proxy", "unexpected argument '%s'", argv[optind]);
	if (!tcp && !sock)
		return cli_usage_error("capture proxy", "--listen HOST:PORT is required (where applications connect)");
	if (!upstream)
		return cli_usage_error("capture proxy", "--upstream HOST:PORT is required (the PostgreSQL server)");

	const char *path = cli_store_path(store_opt);
	scry_store *store;
	if (cli_open_store(path, false, &store))
		return CLI_EXIT_ERROR;

	scry_proxy_options po = SCRY_PROXY_OPTIONS_INIT;
	po.listen = tcp;
	po.listen_unix = sock;
	po.max_query_bytes = (size_t)max_query; /* 0: the library's default (16 MiB) */
	po.upstream = upstream;
	po.queue_events = (size_t)queue;
	if (verbose)
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
	for (;;) {
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (tty) {
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
	int rc = scry_proxy_wait(proxy, &err);
	scry_proxy_stats st = SCRY_PROXY_STATS_INIT;
	scry_proxy_stats_get(proxy, &st);
	if (rc)
		cli_lib_error("store", &err);
	if (json) {
		printf("{\"store\":");
		cli_json_string(stdout, path);
		printf(",\"connections\":%" PRIu64 ",\"connections_failed\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
		       ",\"events_captured\":%" PRIu64 ",\"events_recorded\":%" PRIu64 ",\"events_dropped\":%" PRIu64
		       ",\"bytes_from_clients\":%" PRIu64 ",\"bytes_from_server\":%" PRIu64 "}\n",
		       st.connections, st.connections_failed, st.protocol_errors, st.events_captured,
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
