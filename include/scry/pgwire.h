/*
 * scry/pgwire.h - a sans-I/O decoder of the PostgreSQL v3 wire protocol.
 *
 * A decoder follows ONE connection. The caller feeds it the bytes of both
 * directions, in the order they were seen, in chunks of any size (one byte
 * at a time works), and gets a callback per executed statement: its text,
 * bound parameters, start time, duration, rows (CommandComplete) and
 * SQLSTATE (ErrorResponse). It does no I/O and keeps no clock: every feed
 * carries the time the bytes were seen.
 *
 * Never decoded or copied: password, SASL and GSS messages (the frontend
 * 'p' messages are skipped without being buffered), DataRow and COPY TO
 * STDOUT contents (skipped too; COPY is recorded as one event). The data
 * of a COPY FROM STDIN is kept (up to max_copy_bytes) so that replay can
 * send it. A row-limited portal (Execute with a row limit, PortalSuspended,
 * Execute again...) is reported as ONE event with its total rows and its
 * row limit (scry_event.fetch_rows).
 *
 * Malformed input, or a message larger than the configured limit, gives
 * SCRY_EPROTOCOL / SCRY_ELIMIT for that connection; after that the decoder
 * refuses further input with the same code. Memory per decoder is bounded by
 * the message limit plus the prepared statements and portals the client
 * keeps open (as on the server).
 */
#ifndef SCRY_PGWIRE_H
#define SCRY_PGWIRE_H

#include "scry/core.h"
#include "scry/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A decoder of one connection. One thread at a time. */
typedef struct scry_pgwire scry_pgwire;

/** Direction of the bytes fed. */
typedef enum scry_pgwire_dir {
	SCRY_PGWIRE_FRONTEND = 0, /**< client -> server */
	SCRY_PGWIRE_BACKEND = 1   /**< server -> client */
} scry_pgwire_dir;

/** What the startup message said. Strings are valid only during the callback. */
typedef struct scry_pgwire_startup {
	int protocol_major;       /**< 3 */
	int protocol_minor;       /**< 0 */
	const char *user;         /**< "" when absent */
	const char *database;     /**< defaults to user, as on the server */
	const char *application;  /**< application_name, or NULL */
	/** Every other startup parameter (options, DateStyle, TimeZone,
	 *  client_encoding, application_name...) as scry_session_info.params
	 *  "key=value" lines; "" when none. Never a password (the startup
	 *  packet has none). */
	const char *params;
} scry_pgwire_startup;

/** Callbacks of a decoder. Any may be NULL. */
typedef struct scry_pgwire_callbacks {
	unsigned int version;     /**< SCRY_PGWIRE_CALLBACKS_VERSION */
	/** The startup message of a normal (protocol 3) connection was seen. */
	void (*on_startup)(void *ctx, const scry_pgwire_startup *startup);
	/**
	 * One statement executed. ev->session_id is 0 (the caller's to fill);
	 * every pointer in *ev is valid only during the call (copy what you keep).
	 */
	void (*on_event)(void *ctx, const scry_event *ev);
	void *ctx; /**< passed to the callbacks */
} scry_pgwire_callbacks;

/** Current version of scry_pgwire_callbacks. */
#define SCRY_PGWIRE_CALLBACKS_VERSION 1
/** No callbacks (fill the ones you want). */
#define SCRY_PGWIRE_CALLBACKS_INIT { SCRY_PGWIRE_CALLBACKS_VERSION, NULL, NULL, NULL }

/** Options of scry_pgwire_new(). */
typedef struct scry_pgwire_options {
	unsigned int version;      /**< SCRY_PGWIRE_OPTIONS_VERSION */
	/** Largest message buffered, in bytes; 0 = 256 MiB. Larger: SCRY_ELIMIT. */
	size_t max_message_bytes;
	/** Longest query text reported; longer texts are truncated and marked
	 *  SCRY_EVENT_F_TRUNCATED. 0 = 16 MiB. */
	size_t max_query_bytes;
	/**
	 * Added to the `now_us` of scry_pgwire_feed() to get an event's Unix
	 * start time: feed a CLOCK_MONOTONIC time (for durations) and set this
	 * to (CLOCK_REALTIME - CLOCK_MONOTONIC) at creation.
	 */
	int64_t clock_offset_us;
	/** Most outstanding requests (pipelined messages awaiting their
	 *  responses) tracked; 0 = 1,000,000. More: SCRY_ELIMIT. */
	size_t max_pending;
	/** Most COPY FROM STDIN data kept per COPY (version 2); more: the data
	 *  is dropped and the event marked SCRY_EVENT_F_COPY_DROPPED. 0 = 16 MiB. */
	size_t max_copy_bytes;
} scry_pgwire_options;

/** Current version of scry_pgwire_options. */
#define SCRY_PGWIRE_OPTIONS_VERSION 2
/** Default options. */
#define SCRY_PGWIRE_OPTIONS_INIT { SCRY_PGWIRE_OPTIONS_VERSION, 0, 0, 0, 0, 0 }

/** Fills `opts` with the defaults. */
SCRY_API void scry_pgwire_options_init(scry_pgwire_options *opts);

/**
 * Creates a decoder for one connection, expecting its first bytes (the
 * startup packet). `cb` is copied (by its version, like options); `cb`
 * and `opts` may be NULL.
 * Returns 0 or SCRY_ENOMEM; *out is NULL on failure.
 */
SCRY_API int scry_pgwire_new(scry_pgwire **out, const scry_pgwire_callbacks *cb,
	const scry_pgwire_options *opts, scry_error *err);

/** Frees a decoder (statements still in flight are not reported). Accepts NULL. */
SCRY_API void scry_pgwire_free(scry_pgwire *d);

/**
 * Feeds `len` bytes seen in direction `dir` at time `now_us` (monotonic
 * microseconds, see clock_offset_us). Callbacks run during the call.
 * Returns 0; SCRY_EPROTOCOL when the traffic is not valid protocol
 * (err->message says what and in which direction); SCRY_ELIMIT when a
 * message or the pending list is over its limit; SCRY_ENOMEM. After an
 * error every later call returns the same code.
 */
SCRY_API int scry_pgwire_feed(scry_pgwire *d, scry_pgwire_dir dir,
	const void *data, size_t len, int64_t now_us, scry_error *err);

/** Connection states reported by scry_pgwire_state(). */
typedef enum scry_pgwire_conn_state {
	SCRY_PGWIRE_STARTUP = 0,   /**< before the startup message */
	SCRY_PGWIRE_AUTH = 1,      /**< authenticating */
	SCRY_PGWIRE_READY = 2,     /**< startup done (ReadyForQuery seen) */
	SCRY_PGWIRE_ENCRYPTED = 3, /**< SSL/GSS accepted: nothing more can be decoded */
	SCRY_PGWIRE_CANCEL = 4,    /**< a CancelRequest connection */
	SCRY_PGWIRE_FAILED = 5     /**< an error was returned */
} scry_pgwire_conn_state;

/** State of the connection as the decoder sees it. */
SCRY_API scry_pgwire_conn_state scry_pgwire_state(const scry_pgwire *d);

/**
 * Transaction status from the last ReadyForQuery: 'I' idle, 'T' in a
 * transaction, 'E' in a failed transaction; 0 before the first one.
 */
SCRY_API int scry_pgwire_tx_status(const scry_pgwire *d);

/** Counters of a decoder. */
typedef struct scry_pgwire_stats {
	size_t size;             /**< set to sizeof(scry_pgwire_stats) before the call (SCRY_PGWIRE_STATS_INIT does); the library writes only that many bytes, and sets it to what it wrote */
	uint64_t messages_frontend;  /**< messages decoded client -> server */
	uint64_t messages_backend;   /**< messages decoded server -> client */
	uint64_t events;             /**< on_event calls */
	uint64_t notices;            /**< NoticeResponse messages */
	uint64_t parameter_status;   /**< ParameterStatus messages */
	uint64_t pending;            /**< requests awaiting their response now */
} scry_pgwire_stats;

/** Initialiser of a scry_pgwire_stats the library fills in: sets `size`. */
#define SCRY_PGWIRE_STATS_INIT { .size = sizeof(scry_pgwire_stats) }

/** Reads the counters of a decoder. Returns 0, or SCRY_EINVAL when
 * out->size is smaller than version 1 of the struct. */
SCRY_API int scry_pgwire_stats_get(const scry_pgwire *d, scry_pgwire_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_PGWIRE_H */
