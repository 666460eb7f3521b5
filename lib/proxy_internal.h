/*
 * lib/proxy_internal.h - the capture proxy's shared types (internal).
 *
 *   lib/proxy.c         the event loops, forwarding, closing connections
 *   lib/proxy_connect.c accepting clients, the upstream connection, the startup phase
 *   lib/proxy_capture.c decoder callbacks: filters, sampling, events to the queue
 *   lib/proxy_tls.c     TLS (OpenSSL) for both sides
 *   lib/proxy_writer.c  the writer thread: queue -> store, rotation, loss checks
 *   lib/proxy_setup.c   options, addresses, listeners, the public lifecycle
 */
#ifndef SCRY_PROXY_INTERNAL_H
#define SCRY_PROXY_INTERNAL_H

#include "internal.h"
#include "proxy_tls.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#define READ_CHUNK 65536
#define WRITER_WAIT_MS 20

/* ------------------------------------------------------------------ */
/* Queue items                                                         */
/* ------------------------------------------------------------------ */

/* A captured session, shared by the loop (which fills it at startup) and the
 * writer (which adds it to the store lazily, at its first event, and frees
 * it at its END item, the last item that names it). */
typedef struct sess_rec {
	int64_t session_id;  /* 0 until added to the store */
	unsigned gen;        /* the store generation session_id belongs to */
	bool failed;         /* could not be added: its events are dropped */
	char *database, *user, *application, *client;
	char *params;        /* startup parameters (scry_session_info.params) */
	int64_t started_us;
} sess_rec;

enum { ITEM_EVENT, ITEM_END };

/* Events are carved out of 64 KiB blocks (no allocation per event): the
 * loop holds a reference on its current block, each item one more; the
 * writer drops an item's reference when done, the last one frees the block. */
typedef struct qblock {
	unsigned refs;        /* atomic */
	size_t used, cap;
} qblock;

#define QBLOCK_BYTES 65536

typedef struct qitem {
	struct qitem *next;
	qblock *blk;          /* NULL: allocated alone */
	int type;
	sess_rec *sess;
	int64_t end_us;       /* ITEM_END */
	size_t bytes;
	scry_event ev;        /* pointers into the bytes after the item */
} qitem;

typedef struct qlist {
	qitem *head, *tail;
	size_t n, bytes;
} qlist;



/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1, TAG_LISTEN = 2, TAG_STOP = 3 };
/* Client side: startup packets (SSLRequest...), TLS handshake, the stream. */
enum { C_STARTUP, C_TLS, C_STREAM };
/* Server side: TCP connect, SSLRequest sent, TLS handshake, ready. */
enum { UP_CONNECTING, UP_SSLREQ, UP_TLS, UP_READY };

typedef struct endpoint {
	int tag;              /* SIDE_*, TAG_LISTEN or TAG_STOP */
	struct conn *conn;
	int fd;               /* for listeners */
} endpoint;

typedef struct pending {
	char *p;
	size_t off, len, cap;
} pending;

/* One event-loop thread: its epoll set, listeners and connections. With
 * event_threads > 1 each has its own SO_REUSEPORT listener on the port. */
typedef struct worker {
	struct scry_proxy *proxy;
	int epfd;
	int listen_fd[2];     /* TCP, Unix (worker 0 only); -1 when absent */
	endpoint listen_ep[2];
	endpoint stop_ep;
	bool accept_paused;
	pthread_t thread;
	bool running;
	struct conn *conns;
	struct conn *dead;    /* closed, freed at the end of the iteration */
	int nconns;
	char *rbuf;
	qlist local;          /* events of this iteration */
	int64_t now;          /* monotonic time of this iteration */
	uint64_t rng;         /* session sampling */
	qblock *blk;          /* where the next events are carved */
	int64_t emfile_logged_us; /* last "out of descriptors" log */
	int spare_sfd;        /* an upstream socket made ahead of the next accept, or -1 */
} worker;

typedef struct conn {
	struct conn *prev, *next;
	worker *w;
	endpoint ep[2];
	int fd[2];
	uint32_t evmask[2];
	int state;            /* C_* */
	int up;               /* UP_* */
	bool closed;
	bool direct_tls;      /* the client opened TLS without SSLRequest */
	bool unrecorded;      /* filtered out or not sampled: stop decoding */
	scry__tls *tls[2];    /* NULL: plain */
	int tls_hs_want[2];   /* handshake in progress: what it waits for */
	bool tls_read_wants_write[2], tls_write_wants_read[2];
	bool tls_ended[2];    /* a batched TLS read met the end: read again at once */
	char *up_err;         /* why the upstream connection failed */
	bool server_eof;      /* close once the client has got everything */
	bool upstream_failed; /* tell the client at its startup packet, then close (up_err) */
	pending out[2];       /* bytes waiting to be written TO side i */
	unsigned char startup[8];
	size_t startup_have;
	scry_pgwire *dec;     /* NULL once decoding stopped */
	sess_rec *sess;
	struct scry_proxy *proxy;
	char client[64];
} conn;

struct scry_proxy {
	scry_store *store;
	scry_proxy_options opts;
	char *listen, *listen_unix, *upstream;
	char up_host[256];    /* for verify-full and SNI */
	int up_sslmode;       /* SCRY__SSL_* */
	scry__tls_ctx *tls_server, *tls_client;
	char **filter[3];     /* databases, users, applications: NULL-terminated, or NULL */
	uint64_t limit_count; /* events counted against max_events (atomic) */
	int stopping;         /* atomic: a stop was asked */
	struct sockaddr_storage up_addr;
	socklen_t up_len;
	int port;
	int stopfd;           /* an eventfd every loop watches; never read */
	uint64_t fd_budget;   /* connections the open-files limit allows (scry_proxy_start) */
	int64_t clock_offset;
	pthread_t writer_thread;
	bool started, waited;
	struct worker *workers;
	int nworkers;

	/* the queue */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	qlist q;
	bool writer_waiting, writer_stop, writer_done;
	int first_rc;
	scry_error first_err;
	/* store rotation (scry_proxy_switch_store) and loss detection (writer) */
	pthread_cond_t swap_cv;
	scry_store *next_store, *prev_store;
	bool swap_asked;
	unsigned store_gen;
	bool store_lost;      /* the file was deleted or replaced: events are lost */
	bool have_ino;
	dev_t st_dev;
	ino_t st_ino;
	int64_t last_check_us;

	/* counters (atomic) */
	uint64_t st_conns, st_active, st_failed, st_proto, st_captured, st_recorded, st_dropped, st_bin, st_bout;
};



#define STAT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define STAT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

#define plog(p, lvl, ...) scry__log((p)->opts.log, (p)->opts.log_ctx, (lvl), __VA_ARGS__)

static inline void qlist_push(qlist *l, qitem *it)
{
	it->next = NULL;
	if (l->tail)
		l->tail->next = it;
	else
		l->head = it;
	l->tail = it;
	l->n++;
	l->bytes += it->bytes;
}

/* Frees a queue item (from any thread). */
static inline void qitem_free(qitem *it)
{
	qblock *b = it->blk;
	if (!b)
		scry__free(it);
	else if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		scry__free(b);
}

/* The event loop of one worker (lib/proxy.c); arg is the worker. */
SCRY_HIDDEN void *scry__proxy_loop_main(void *arg);
/* lib/proxy.c: a connection's epoll interest from its state; closing one
 * side's descriptor, or the whole connection; a FATAL ErrorResponse to a
 * client (c NULL: plain, on fd); a protocol error (tell, then close); the
 * decoder fed (0 once it stopped); bytes to side `to` (false: closed). */
SCRY_HIDDEN void scry__proxy_update_events(worker *w, conn *c);
SCRY_HIDDEN void scry__proxy_conn_fd_close(worker *w, conn *c, int side);
SCRY_HIDDEN void scry__proxy_conn_close(worker *w, conn *c);
SCRY_HIDDEN void scry__proxy_send_fatal(conn *c, int fd, const char *sqlstate, const char *msg);
SCRY_HIDDEN void scry__proxy_protocol_error(worker *w, conn *c, const scry_error *e);
SCRY_HIDDEN int scry__proxy_decode(conn *c, int dir, const void *data, size_t len, scry_error *e);
SCRY_HIDDEN bool scry__proxy_conn_send(worker *w, conn *c, int to, const char *data, size_t len);
/* lib/proxy_connect.c: listeners paused (out of descriptors) or resumed;
 * accepting on a listener; the upstream side before it is ready; the
 * client's TLS handshake; its startup phase (true: the rest of data is the
 * stream); a direct TLS ClientHello (true: handled). */
SCRY_HIDDEN void scry__proxy_listeners_pause(worker *w, bool pause);
SCRY_HIDDEN void scry__proxy_accept_clients(worker *w, int lfd, bool is_unix);
SCRY_HIDDEN void scry__proxy_upstream_progress(worker *w, conn *c, uint32_t events);
SCRY_HIDDEN void scry__proxy_client_handshake(worker *w, conn *c);
SCRY_HIDDEN bool scry__proxy_client_startup(worker *w, conn *c, const char **data, size_t *len);
SCRY_HIDDEN bool scry__proxy_client_direct_tls(worker *w, conn *c);
/* lib/proxy_capture.c: a new connection's decoder (c->dec NULL when it
 * cannot be made); a closing connection's session END item; the
 * iteration's items handed to the writer. */
SCRY_HIDDEN void scry__proxy_decoder_new(conn *c);
SCRY_HIDDEN void scry__proxy_session_end(worker *w, conn *c);
SCRY_HIDDEN void scry__proxy_flush_local(worker *w, bool force_signal);
/* The writer thread (lib/proxy_writer.c); arg is the proxy. */
SCRY_HIDDEN void *scry__proxy_writer_main(void *arg);
/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" (lib/proxy_setup.c). */
SCRY_HIDDEN int scry__split_hostport(const char *s, char *host, size_t hostsz, char *port, size_t portsz);

#endif /* SCRY_PROXY_INTERNAL_H */
