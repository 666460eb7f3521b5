/*
 * scry/proxy.h - the capture proxy.
 *
 * Applications connect to the proxy instead of PostgreSQL. The proxy
 * connects each client to the upstream server, forwards every byte
 * unchanged in both directions, and decodes the traffic on the side
 * (scry/pgwire.h). Each decoded query event goes through a bounded queue to
 * a writer thread that appends events to the workload store in batches.
 * Forwarding never waits for recording: when the queue is full, the event is
 * dropped and counted (scry_proxy_stats.events_dropped).
 *
 * Threads: one event-loop thread (epoll, non-blocking sockets; more with
 * event_threads) forwards and decodes; one writer thread owns the store handle between
 * scry_proxy_start() and the end of scry_proxy_wait().
 *
 * TLS: with tls_cert/tls_key the proxy terminates the clients' TLS (an
 * SSLRequest is answered 'S'; a ClientHello as the first bytes, ALPN
 * "postgresql", is direct TLS); without them SSLRequest is answered 'N'.
 * GSSENCRequest is always answered 'N'. To the server the proxy opens its
 * own TLS as upstream_sslmode says (libpq's sslmode values). SCRAM channel
 * binding (SCRAM-SHA-256-PLUS) cannot pass a terminating proxy: clients
 * use channel_binding=prefer or disable. See docs/proxy.md.
 *
 * Typical in-process use (e.g. a demo or a test):
 *
 *     scry_proxy_options o = SCRY_PROXY_OPTIONS_INIT;
 *     o.listen = "127.0.0.1:0";            // ephemeral port
 *     o.upstream = "127.0.0.1:5432";
 *     scry_proxy *p;
 *     scry_proxy_new(&p, store, &o, &err);  // binds: the port is known now
 *     int port = scry_proxy_port(p);
 *     scry_proxy_start(p, &err);            // returns at once; threads run
 *     ... clients connect to 127.0.0.1:port ...
 *     scry_proxy_stop(p);                   // any thread (async-signal-safe)
 *     scry_proxy_wait(p, &err);             // joins, flushes the queue
 *     scry_proxy_free(p);
 */
#ifndef SCRY_PROXY_H
#define SCRY_PROXY_H

#include "scry/core.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A capture proxy. */
typedef struct scry_proxy scry_proxy;

/** Options of scry_proxy_new(). Strings are copied. */
typedef struct scry_proxy_options {
	unsigned int version;     /**< SCRY_PROXY_OPTIONS_VERSION */
	/**
	 * TCP address to listen on, "HOST:PORT" ("[::1]:PORT" for IPv6).
	 * PORT 0 picks a free port: read it with scry_proxy_port(). NULL: no TCP.
	 */
	const char *listen;
	/** Unix-domain socket path to listen on, or NULL. At least one of
	 *  listen / listen_unix is required. An existing socket file is replaced. */
	const char *listen_unix;
	/**
	 * Upstream PostgreSQL server: "HOST:PORT", or a path: a Unix socket
	 * file, or a directory holding ".s.PGSQL.5432" (libpq's convention,
	 * with the port taken from a trailing ":PORT", e.g. "/run/postgresql:5433").
	 */
	const char *upstream;
	/** Capacity of the event queue, in events; 0 = 65536. */
	size_t queue_events;
	/** Most events appended to the store in one transaction; 0 = 2048. */
	size_t batch_events;
	/** Largest protocol message accepted from a client, in bytes; 0 = 256 MiB.
	 *  A bigger message ends that connection with a protocol error. */
	size_t max_message_bytes;
	/** Longest query text recorded, in bytes; 0 = 16 MiB. Longer texts are
	 *  still forwarded, and recorded truncated (marked, never replayed). */
	size_t max_query_bytes;
	/** Maximum simultaneous client connections; 0 = 10000. */
	int max_connections;
	/** Optional log callback (connection errors, protocol errors, store
	 *  errors). Called from the proxy's threads; must be thread safe. */
	scry_log_fn log;
	void *log_ctx;            /**< passed to `log` */
	/** Capacity of the event queue in bytes (texts and parameters
	 *  included); 0 = 256 MiB. Bounds the proxy's memory. */
	size_t queue_bytes;
	/* ---- version 2 ---- */
	/** PEM certificate chain (and its private key, tls_key) to terminate the
	 *  clients' TLS; both NULL: no TLS to clients (SSLRequest answered 'N',
	 *  a direct-TLS client gets an error saying TLS is not configured). */
	const char *tls_cert;
	const char *tls_key;      /**< PEM private key of tls_cert */
	/** TLS to the upstream server, as libpq's sslmode: "disable", "prefer"
	 *  (NULL: the default), "require" (encrypted, not verified), "verify-ca",
	 *  "verify-full" (also the host name or address of `upstream`). Ignored
	 *  (disable) for a Unix-socket upstream; require and above are then an error. */
	const char *upstream_sslmode;
	/** PEM root certificate(s) verifying the server (verify-ca/-full);
	 *  NULL: the system's trusted roots. */
	const char *upstream_sslrootcert;
	const char *upstream_sslcert; /**< client certificate for the server, or NULL */
	const char *upstream_sslkey;  /**< its private key, or NULL */
	/** Record only sessions whose database / user / application_name (at
	 *  startup) is in these comma-separated lists; NULL: any. Sessions left
	 *  out are still forwarded, never decoded. */
	const char *databases;
	const char *users;            /**< see `databases` */
	const char *applications;     /**< see `databases` */
	/** Fraction of sessions recorded, drawn per session at its startup (a
	 *  sampled session is recorded whole); 0 or 1: every session. */
	double sample_rate;
	/** Stop after this many events were captured (the proxy stops itself,
	 *  as scry_proxy_stop(), and records nothing past the limit); 0: no limit. */
	uint64_t max_events;
	/** Event-loop threads; 0 or 1: one. With N > 1, each thread has its own
	 *  epoll set and its own TCP listener on the same port (SO_REUSEPORT:
	 *  the kernel spreads new connections); a Unix socket is served by the
	 *  first. The writer thread stays one. At most 64. */
	int event_threads;
} scry_proxy_options;

/** Current version of scry_proxy_options. */
#define SCRY_PROXY_OPTIONS_VERSION 2
/** Default options (listen and upstream must still be set). */
#define SCRY_PROXY_OPTIONS_INIT { SCRY_PROXY_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0, 0, 0, NULL, NULL, 0, \
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0.0, 0, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_proxy_options_init(scry_proxy_options *opts);

/**
 * Creates a proxy and binds its listening sockets (so scry_proxy_port() is
 * known on return), without accepting yet. `store` receives the captured
 * events; the proxy borrows it: between scry_proxy_start() and the return of
 * scry_proxy_wait() only the proxy's writer thread uses it, and the caller
 * must not; the caller frees it after scry_proxy_free().
 * Returns 0, SCRY_EINVAL (bad options or address), SCRY_EIO (cannot bind:
 * the message names the address and errno) or SCRY_ENOMEM. *out is NULL on
 * failure.
 */
SCRY_API int scry_proxy_new(scry_proxy **out, scry_store *store,
	const scry_proxy_options *opts, scry_error *err);

/**
 * The TCP port the proxy listens on (the bound one when 0 was asked), or 0
 * when it listens only on a Unix socket. Thread safe.
 */
SCRY_API int scry_proxy_port(const scry_proxy *proxy);

/**
 * Starts the event-loop and writer threads and returns at once.
 * Returns 0, SCRY_EINVAL (already started) or SCRY_EIO (thread creation).
 */
SCRY_API int scry_proxy_start(scry_proxy *proxy, scry_error *err);

/**
 * Asks the proxy to stop: it stops accepting, closes every connection, and
 * the writer appends what is queued. Returns at once; use scry_proxy_wait()
 * to wait. Callable from any thread and from a signal handler (it only
 * writes to an eventfd). Calling it more than once is harmless.
 */
SCRY_API void scry_proxy_stop(scry_proxy *proxy);

/**
 * Waits until the proxy has stopped (after scry_proxy_stop()) and every
 * queued event is in the store. Returns 0, or the first store error the
 * writer met (the proxy keeps forwarding after a store error; events that
 * could not be written are counted in events_dropped). Call it once, from
 * the thread that owns the proxy.
 */
SCRY_API int scry_proxy_wait(scry_proxy *proxy, scry_error *err);

/**
 * Non-zero once the proxy was asked to stop: by scry_proxy_stop(), or by itself
 * when max_events was reached (1; else 0). Thread safe; a caller waiting for the
 * proxy to finish polls it, then calls scry_proxy_wait(). 1 for NULL.
 */
SCRY_API int scry_proxy_stopping(const scry_proxy *proxy);

/**
 * Rotation: the writer appends everything queued so far to the current
 * store, then records into `next`; returns the previous store in
 * *previous, which the caller now owns (and frees). Sessions still open
 * are added again to `next` at their next event (in the previous store
 * they have no end time). Blocks until the switch is done (one batch at
 * most). Call from the thread that owns the proxy, never from its log
 * callback. Returns 0 or SCRY_EINVAL.
 */
SCRY_API int scry_proxy_switch_store(scry_proxy *proxy, scry_store *next,
	scry_store **previous, scry_error *err);

/** Counters of a proxy. */
typedef struct scry_proxy_stats {
	size_t size;             /**< set to sizeof(scry_proxy_stats) before the call (SCRY_PROXY_STATS_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	uint64_t connections;        /**< client connections accepted, in total */
	uint64_t connections_active; /**< client connections open now */
	uint64_t connections_failed; /**< closed because of an upstream or protocol error */
	uint64_t protocol_errors;    /**< connections whose traffic did not decode */
	uint64_t events_captured;    /**< events the decoder produced */
	uint64_t events_recorded;    /**< events appended to the store */
	uint64_t events_dropped;     /**< events lost: queue full or store error */
	uint64_t bytes_from_clients; /**< bytes forwarded client -> server */
	uint64_t bytes_from_server;  /**< bytes forwarded server -> client */
} scry_proxy_stats;

/** Initialiser of a scry_proxy_stats the library fills in: sets `size`. */
#define SCRY_PROXY_STATS_INIT { .size = sizeof(scry_proxy_stats) }

/**
 * Reads the counters. Thread safe (values are read atomically, one by one).
 * Returns 0, or SCRY_EINVAL when out->size is smaller than version 1.
 */
SCRY_API int scry_proxy_stats_get(const scry_proxy *proxy, scry_proxy_stats *out);

/**
 * Frees a proxy. When it is still running, stops it and waits first.
 * Removes the Unix socket file it created. Accepts NULL.
 */
SCRY_API void scry_proxy_free(scry_proxy *proxy);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_PROXY_H */
