/*
 * lib/proxy.c - the capture proxy: one epoll event-loop thread forwards
 * bytes between clients and the upstream server and feeds a pgwire decoder
 * per connection; decoded events go through a bounded queue to one writer
 * thread, the only user of the store handle.
 *
 * Forwarding is level-triggered and zero-copy in the common case: bytes are
 * read into one loop-wide buffer, decoded, and written straight to the other
 * side. Only what the other side does not take at once is copied into a
 * per-connection pending buffer; while it is non-empty the source side is
 * not read (back-pressure), so each pending buffer holds at most one read.
 *
 * Events of one loop iteration are collected locally and handed to the
 * queue under one lock; the writer wakes when a batch is ready or after a
 * short timeout, and appends in transactions of up to batch_events.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "proxy_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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
	int64_t started_us;
} sess_rec;

enum { ITEM_EVENT, ITEM_END };

typedef struct qitem {
	struct qitem *next;
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

static void qlist_push(qlist *l, qitem *it)
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

static void sess_free(sess_rec *s)
{
	if (!s)
		return;
	scry__free(s->database);
	scry__free(s->user);
	scry__free(s->application);
	scry__free(s->client);
	scry__free(s);
}

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
	int64_t clock_offset;
	pthread_t writer_thread;
	bool started, waited;
	struct worker *workers;
	int nworkers;

	/* the queue */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	qlist q;
	bool writer_waiting, writer_stop;
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

/* ------------------------------------------------------------------ */
/* Decoder callbacks (loop thread)                                     */
/* ------------------------------------------------------------------ */

/* Is `v` in the comma-separated-turned-list `list` (NULL list: everything)? */
static bool filter_match(char **list, const char *v)
{
	if (!list)
		return true;
	for (; *list; list++)
		if (v && !strcmp(*list, v))
			return true;
	return false;
}

/* splitmix64: a session's sampling draw (loop thread only). */
static double sample_draw(worker *w)
{
	uint64_t z = (w->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static void on_startup(void *ctx, const scry_pgwire_startup *su)
{
	conn *c = ctx;
	scry_proxy *p = c->proxy;
	worker *w = c->w;
	if (c->sess || c->unrecorded)
		return;
	if (!filter_match(p->filter[0], su->database) || !filter_match(p->filter[1], su->user) ||
	    !filter_match(p->filter[2], su->application) ||
	    (p->opts.sample_rate > 0 && p->opts.sample_rate < 1 && sample_draw(w) >= p->opts.sample_rate)) {
		c->unrecorded = true; /* the decoder is freed once this feed returns */
		return;
	}
	sess_rec *s = scry__calloc(1, sizeof *s);
	if (!s)
		return;
	s->database = scry__strdup(su->database ? su->database : "");
	s->user = scry__strdup(su->user ? su->user : "");
	s->application = su->application ? scry__strdup(su->application) : NULL;
	s->client = scry__strdup(c->client);
	s->started_us = w->now + p->clock_offset;
	c->sess = s;
}

static void on_event(void *ctx, const scry_event *ev)
{
	conn *c = ctx;
	scry_proxy *p = c->proxy;
	if (c->unrecorded)
		return;
	if (p->opts.max_events) {
		uint64_t k = __atomic_add_fetch(&p->limit_count, 1, __ATOMIC_RELAXED);
		if (k > p->opts.max_events)
			return; /* past the limit: the proxy is stopping */
		if (k == p->opts.max_events)
			scry_proxy_stop(p);
	}
	STAT_ADD(p, st_captured, 1);
	if (!c->sess || c->w->local.n >= p->opts.queue_events) {
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	char *redacted = NULL;
	size_t rlen = 0;
	if (scry__redact_secrets(ev->query, ev->query_len, &redacted, &rlen) < 0) {
		STAT_ADD(p, st_dropped, 1); /* never record a secret unredacted */
		return;
	}
	const char *qtext = redacted ? redacted : ev->query;
	size_t qlen = redacted ? rlen : ev->query_len;
	size_t mlen = ev->error_message ? strlen(ev->error_message) + 1 : 0;
	size_t total = sizeof(qitem) + (size_t)ev->nparams * sizeof(scry_param) + qlen + 1 + mlen;
	for (int i = 0; i < ev->nparams; i++)
		if (ev->params[i].length > 0)
			total += (size_t)ev->params[i].length;
	qitem *it = scry__malloc(total);
	if (!it) {
		scry__free(redacted);
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	it->type = ITEM_EVENT;
	it->sess = c->sess;
	it->bytes = total;
	it->ev = *ev;
	scry_param *params = (scry_param *)(it + 1);
	char *wp = (char *)(params + ev->nparams);
	for (int i = 0; i < ev->nparams; i++) {
		params[i] = ev->params[i];
		if (ev->params[i].length > 0) {
			memcpy(wp, ev->params[i].value, (size_t)ev->params[i].length);
			params[i].value = wp;
			wp += ev->params[i].length;
		} else if (ev->params[i].length == 0) {
			params[i].value = "";
		}
	}
	it->ev.params = ev->nparams ? params : NULL;
	memcpy(wp, qtext, qlen);
	wp[qlen] = 0;
	it->ev.query_len = qlen;
	scry__free(redacted);
	it->ev.query = wp;
	wp += qlen + 1;
	if (mlen) {
		memcpy(wp, ev->error_message, mlen);
		it->ev.error_message = wp;
	}
	qlist_push(&c->w->local, it);
}

/* Hands the iteration's events to the writer; drops what does not fit. */
static void flush_local(worker *w, bool force_signal)
{
	scry_proxy *p = w->proxy;
	if (!w->local.n && !force_signal)
		return;
	size_t dropped = 0;
	pthread_mutex_lock(&p->mu);
	qitem *it = w->local.head;
	while (it) {
		qitem *next = it->next;
		if (it->type == ITEM_EVENT &&
		    (p->q.n >= p->opts.queue_events || p->q.bytes + it->bytes > p->opts.queue_bytes)) {
			scry__free(it);
			dropped++;
		} else {
			qlist_push(&p->q, it);
		}
		it = next;
	}
	w->local = (qlist){ 0 };
	if (p->writer_waiting && (force_signal || p->q.n >= p->opts.batch_events))
		pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (dropped)
		STAT_ADD(p, st_dropped, dropped);
}

/* ------------------------------------------------------------------ */
/* The event loop                                                      */
/* ------------------------------------------------------------------ */

static void listeners_pause(worker *w, bool pause)
{
	for (int i = 0; i < 2; i++) {
		if (w->listen_fd[i] < 0)
			continue;
		struct epoll_event ev = { .events = pause ? 0 : EPOLLIN, .data.ptr = &w->listen_ep[i] };
		epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->listen_fd[i], &ev);
	}
	w->accept_paused = pause;
}

static uint32_t hs_mask(int want)
{
	return want == SCRY__TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN;
}

static void update_events(worker *w, conn *c)
{
	uint32_t want[2];
	/* The client is read once the upstream is ready (or known to have
	 * failed: the client is then told why at its startup packet). */
	bool go = c->up == UP_READY || c->upstream_failed;
	if (c->state == C_TLS)
		want[SIDE_CLIENT] = hs_mask(c->tls_hs_want[SIDE_CLIENT]);
	else
		want[SIDE_CLIENT] = (go && !c->out[SIDE_SERVER].len && !c->server_eof ? EPOLLIN : 0)
		                    | (c->out[SIDE_CLIENT].len || c->tls_read_wants_write[SIDE_CLIENT] ? EPOLLOUT : 0)
		                    | (c->tls_write_wants_read[SIDE_CLIENT] ? EPOLLIN : 0);
	switch (c->up) {
	case UP_CONNECTING: want[SIDE_SERVER] = EPOLLOUT; break;
	case UP_SSLREQ: want[SIDE_SERVER] = EPOLLIN; break;
	case UP_TLS: want[SIDE_SERVER] = hs_mask(c->tls_hs_want[SIDE_SERVER]); break;
	default:
		want[SIDE_SERVER] = (!c->out[SIDE_CLIENT].len && !c->server_eof ? EPOLLIN : 0)
		                    | (c->out[SIDE_SERVER].len || c->tls_read_wants_write[SIDE_SERVER] ? EPOLLOUT : 0)
		                    | (c->tls_write_wants_read[SIDE_SERVER] ? EPOLLIN : 0);
	}
	for (int i = 0; i < 2; i++) {
		if (i == SIDE_SERVER && (c->server_eof || c->fd[i] < 0))
			continue; /* not (or no longer) in the epoll set */
		if (want[i] != c->evmask[i]) {
			struct epoll_event ev = { .events = want[i], .data.ptr = &c->ep[i] };
			epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd[i], &ev);
			c->evmask[i] = want[i];
		}
	}
}

/*
 * Removes a connection's socket from epoll before closing it. close() alone
 * deregisters it only when no other descriptor refers to the socket: a fork
 * elsewhere in the process (before its exec) holds copies, and epoll would
 * then report events for a connection already freed.
 */
static void conn_fd_close(worker *w, conn *c, int side)
{
	scry__tls_free(c->tls[side]);
	c->tls[side] = NULL;
	if (c->fd[side] < 0)
		return;
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd[side], NULL);
	close(c->fd[side]);
	c->fd[side] = -1;
}

static void conn_close(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	if (c->closed)
		return;
	c->closed = true;
	for (int i = 0; i < 2; i++) {
		conn_fd_close(w, c, i);
		scry__free(c->out[i].p);
		c->out[i].p = NULL;
	}
	scry__free(c->up_err);
	c->up_err = NULL;
	scry_pgwire_free(c->dec);
	c->dec = NULL;
	if (c->sess) {
		qitem *it = scry__calloc(1, sizeof *it);
		if (it) {
			it->type = ITEM_END;
			it->sess = c->sess;
			it->end_us = w->now + p->clock_offset;
			it->bytes = sizeof *it;
			qlist_push(&w->local, it);
		} /* else the session record leaks rather than being freed under the writer */
		c->sess = NULL;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = w->dead;
	w->dead = c;
	w->nconns--;
	STAT_ADD(p, st_active, (uint64_t)-1);
	if (w->accept_paused)
		listeners_pause(w, false);
}

/* Reads from / writes to one side, through TLS when it is on. Like
 * recv()/send(): -1 with EAGAIN when it must wait. */
static ssize_t io_recv(conn *c, int side, void *buf, size_t n)
{
	if (!c->tls[side])
		return recv(c->fd[side], buf, n, 0);
	int want = 0;
	ssize_t r = scry__tls_read(c->tls[side], buf, n, &want);
	c->tls_read_wants_write[side] = r < 0 && errno == EAGAIN && want == SCRY__TLS_WANT_WRITE;
	return r;
}

static ssize_t io_send(conn *c, int side, const void *buf, size_t n)
{
	if (!c->tls[side])
		return send(c->fd[side], buf, n, MSG_NOSIGNAL);
	int want = 0;
	ssize_t r = scry__tls_write(c->tls[side], buf, n, &want);
	c->tls_write_wants_read[side] = r < 0 && errno == EAGAIN && want == SCRY__TLS_WANT_READ;
	return r;
}

/* Sends a FATAL ErrorResponse (best effort, through TLS when the client
 * negotiated it) before closing a client. */
static void send_fatal(conn *c, int fd, const char *sqlstate, const char *msg)
{
	char b[640];
	size_t mlen = strlen(msg);
	if (mlen > 560)
		mlen = 560;
	size_t n = 5;
	memcpy(b + n, "SFATAL", 7), n += 7;
	memcpy(b + n, "VFATAL", 7), n += 7;
	b[n++] = 'C';
	memcpy(b + n, sqlstate, 6), n += 6;
	b[n++] = 'M';
	memcpy(b + n, msg, mlen), n += mlen;
	b[n++] = 0;
	b[n++] = 0;
	b[0] = 'E';
	uint32_t len = htonl((uint32_t)(n - 1));
	memcpy(b + 1, &len, 4);
	ssize_t rc = c && c->tls[SIDE_CLIENT] && c->state != C_TLS ? io_send(c, SIDE_CLIENT, b, n)
	                                                             : send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)rc;
}

/* Writes to side `to`, queueing what does not go at once. Returns false
 * when the connection was closed. */
static bool conn_send(worker *w, conn *c, int to, const char *data, size_t len)
{
	scry_proxy *p = w->proxy;
	pending *o = &c->out[to];
	if (!o->len) {
		while (len) {
			ssize_t k = io_send(c, to, data, len);
			if (k > 0) {
				data += k;
				len -= (size_t)k;
				__atomic_fetch_add(to == SIDE_SERVER ? &p->st_bin : &p->st_bout, (uint64_t)k, __ATOMIC_RELAXED);
				continue;
			}
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			conn_close(w, c);
			return false;
		}
		if (!len)
			return true;
		o->off = 0;
	}
	if (o->off + o->len + len > o->cap) {
		if (o->off) {
			memmove(o->p, o->p + o->off, o->len);
			o->off = 0;
		}
		if (o->len + len > o->cap) {
			size_t ncap = o->len + len;
			char *np = scry__realloc(o->p, ncap);
			if (!np) {
				conn_close(w, c);
				return false;
			}
			o->p = np;
			o->cap = ncap;
		}
	}
	memcpy(o->p + o->off + o->len, data, len);
	o->len += len;
	return true;
}

static bool conn_flush(worker *w, conn *c, int to)
{
	scry_proxy *p = w->proxy;
	pending *o = &c->out[to];
	while (o->len) {
		ssize_t k = io_send(c, to, o->p + o->off, o->len);
		if (k > 0) {
			o->off += (size_t)k;
			o->len -= (size_t)k;
			__atomic_fetch_add(to == SIDE_SERVER ? &p->st_bin : &p->st_bout, (uint64_t)k, __ATOMIC_RELAXED);
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		conn_close(w, c);
		return false;
	}
	o->off = 0;
	if (o->cap > READ_CHUNK * 2) { /* give back a buffer grown by a burst */
		scry__free(o->p);
		o->p = NULL;
		o->cap = 0;
	}
	return true;
}

static void protocol_error(worker *w, conn *c, const scry_error *e)
{
	scry_proxy *p = w->proxy;
	STAT_ADD(p, st_proto, 1);
	STAT_ADD(p, st_failed, 1);
	plog(p, SCRY_LOG_WARNING, "client %s disconnected: %s", c->client, e->message);
	char msg[600];
	snprintf(msg, sizeof msg, "scry capture proxy: %s", e->message);
	send_fatal(c, c->fd[SIDE_CLIENT], "08P01", msg);
	conn_close(w, c);
}

/* Feeds the decoder; stops decoding a connection the filters left out. */
static int decode(conn *c, int dir, const void *data, size_t len, scry_error *e)
{
	if (!c->dec)
		return 0;
	int rc = scry_pgwire_feed(c->dec, dir, data, len, c->w->now, e);
	if (c->unrecorded) {
		scry_pgwire_free(c->dec);
		c->dec = NULL;
		return 0;
	}
	return rc;
}

/* Drives the client's TLS handshake; once done, startup packets follow. */
static void client_handshake(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	char why[256];
	int rc = scry__tls_handshake(c->tls[SIDE_CLIENT], why, sizeof why);
	if (rc == SCRY__TLS_ERROR) {
		STAT_ADD(p, st_failed, 1);
		plog(p, SCRY_LOG_WARNING, "client %s: TLS handshake failed: %s", c->client, why);
		conn_close(w, c);
		return;
	}
	if (rc != SCRY__TLS_DONE) {
		c->tls_hs_want[SIDE_CLIENT] = rc;
		return;
	}
	c->state = C_STARTUP;
	c->startup_have = 0;
	if (c->direct_tls && !scry__tls_alpn_postgresql(c->tls[SIDE_CLIENT])) {
		/* As PostgreSQL 17: direct TLS must negotiate ALPN "postgresql". */
		STAT_ADD(p, st_failed, 1);
		send_fatal(c, c->fd[SIDE_CLIENT], "08P01",
			"scry capture proxy: direct TLS connection without ALPN protocol \"postgresql\"");
		conn_close(w, c);
	}
}

static void client_start_tls(worker *w, conn *c, bool direct)
{
	scry_proxy *p = w->proxy;
	c->tls[SIDE_CLIENT] = scry__tls_new(p->tls_server, c->fd[SIDE_CLIENT], true, NULL);
	if (!c->tls[SIDE_CLIENT]) {
		conn_close(w, c);
		return;
	}
	c->direct_tls = direct;
	c->state = C_TLS;
	client_handshake(w, c);
}

/* Client bytes: the startup phase answers SSL/GSS requests itself ('S' with
 * a certificate, else 'N'); everything else is decoded and forwarded. */
static void from_client(worker *w, conn *c, const char *data, size_t len)
{
	scry_proxy *p = w->proxy;
	scry_error e = SCRY_ERROR_INIT;
	while (c->state == C_STARTUP && len) {
		size_t k = 8 - c->startup_have;
		if (k > len)
			k = len;
		memcpy(c->startup + c->startup_have, data, k);
		c->startup_have += k;
		data += k;
		len -= k;
		if (c->startup_have < 8)
			return;
		uint32_t mlen, code;
		memcpy(&mlen, c->startup, 4);
		memcpy(&code, c->startup + 4, 4);
		mlen = ntohl(mlen);
		code = ntohl(code);
		if (mlen == 8 && (code == 80877103u || code == 80877104u)) {
			c->startup_have = 0;
			if (c->tls[SIDE_CLIENT]) {
				e = (scry_error)SCRY_ERROR_INIT;
				scry__fail(&e, SCRY_EPROTOCOL, "SSLRequest/GSSENCRequest inside TLS");
				protocol_error(w, c, &e);
				return;
			}
			if (code == 80877103u && p->tls_server) {
				/* TLS terminated here. The client sent nothing past its request
				 * (reads are cut at 8 bytes before TLS): the handshake starts clean. */
				if (send(c->fd[SIDE_CLIENT], "S", 1, MSG_NOSIGNAL) != 1) {
					conn_close(w, c);
					return;
				}
				STAT_ADD(p, st_bout, 1);
				client_start_tls(w, c, false);
				return;
			}
			/* No TLS (or GSS encryption) here: the client goes on in plain text. */
			if (decode(c, SCRY_PGWIRE_FRONTEND, c->startup, 8, &e) ||
			    decode(c, SCRY_PGWIRE_BACKEND, "N", 1, &e)) {
				protocol_error(w, c, &e);
				return;
			}
			if (send(c->fd[SIDE_CLIENT], "N", 1, MSG_NOSIGNAL) != 1) {
				conn_close(w, c);
				return;
			}
			STAT_ADD(p, st_bout, 1);
			continue;
		}
		if (c->upstream_failed) {
			STAT_ADD(p, st_failed, 1);
			char msg[600];
			snprintf(msg, sizeof msg, "scry capture proxy: %s", c->up_err ? c->up_err : "cannot connect to the upstream server");
			send_fatal(c, c->fd[SIDE_CLIENT], "08006", msg);
			conn_close(w, c);
			return;
		}
		c->state = C_STREAM;
		if (decode(c, SCRY_PGWIRE_FRONTEND, c->startup, 8, &e)) {
			protocol_error(w, c, &e);
			return;
		}
		if (!conn_send(w, c, SIDE_SERVER, (const char *)c->startup, 8))
			return;
	}
	if (!len)
		return;
	if (decode(c, SCRY_PGWIRE_FRONTEND, data, len, &e)) {
		protocol_error(w, c, &e);
		return;
	}
	conn_send(w, c, SIDE_SERVER, data, len);
}

static void from_server(worker *w, conn *c, const char *data, size_t len)
{
	scry_proxy *p = w->proxy;
	scry_error e = SCRY_ERROR_INIT;
	if (decode(c, SCRY_PGWIRE_BACKEND, data, len, &e)) {
		/* Our decoder's problem, not the client's: keep forwarding. */
		plog(p, SCRY_LOG_WARNING, "client %s: stopped recording this connection: %s", c->client, e.message);
		STAT_ADD(p, st_proto, 1);
		scry_pgwire_free(c->dec);
		c->dec = NULL;
	}
	conn_send(w, c, SIDE_CLIENT, data, len);
}

static void handle_read(worker *w, conn *c, int side)
{
	scry_proxy *p = w->proxy;
	size_t want = READ_CHUNK;
	if (side == SIDE_CLIENT && c->state == C_STARTUP && !c->tls[SIDE_CLIENT]) {
		if (!c->startup_have) {
			/* A TLS ClientHello (record type 22) where a startup packet is
			 * expected: direct TLS (PostgreSQL 17's sslnegotiation=direct). */
			unsigned char b;
			ssize_t k = recv(c->fd[SIDE_CLIENT], &b, 1, MSG_PEEK);
			if (k == 1 && b == 0x16) {
				if (!p->tls_server) {
					STAT_ADD(p, st_failed, 1);
					plog(p, SCRY_LOG_WARNING, "client %s: TLS connection refused: TLS is not configured", c->client);
					/* Take what the client sent, so that closing sends FIN, not
					 * an RST that could discard the error before it is read. */
					while (recv(c->fd[SIDE_CLIENT], w->rbuf, READ_CHUNK, MSG_DONTWAIT) > 0)
						;
					send_fatal(c, c->fd[SIDE_CLIENT], "08P01",
						"scry capture proxy: TLS is not configured on the proxy (start it with --tls-cert and --tls-key)");
					conn_close(w, c);
					return;
				}
				client_start_tls(w, c, true);
				return;
			}
		}
		/* Never read past a startup packet's header in plain text: bytes
		 * after an SSLRequest belong to the TLS handshake. */
		want = 8 - c->startup_have;
	}
	ssize_t n = io_recv(c, side, w->rbuf, want);
	if (n > 0) {
		if (side == SIDE_CLIENT)
			from_client(w, c, w->rbuf, (size_t)n);
		else
			from_server(w, c, w->rbuf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (side == SIDE_SERVER && n == 0 && c->out[SIDE_CLIENT].len) {
		c->server_eof = true; /* let the client have the server's last words */
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd[SIDE_SERVER], NULL);
		return;
	}
	if (n < 0 && side == SIDE_SERVER)
		STAT_ADD(p, st_failed, 1);
	conn_close(w, c);
}

/* The upstream is unreachable or refused TLS. The client hears it as a
 * FATAL error in answer to its startup packet (after its SSLRequest was
 * answered as usual): an error in answer to SSLRequest itself would reach
 * the user as "error during SSL exchange", without the reason. */
static void upstream_failed(worker *w, conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void upstream_failed(worker *w, conn *c, const char *fmt, ...)
{
	scry_proxy *p = w->proxy;
	char why[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	char msg[600];
	snprintf(msg, sizeof msg, "cannot connect to the upstream server %s: %s", p->upstream, why);
	plog(p, SCRY_LOG_ERROR, "client %s: %s", c->client, msg);
	scry__free(c->up_err);
	c->up_err = scry__strdup(msg);
	conn_fd_close(w, c, SIDE_SERVER);
	c->upstream_failed = true;
	c->up = UP_READY;
}

/* TCP is connected: ask for TLS, or go. */
static void upstream_connected(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	if (!p->tls_client) {
		c->up = UP_READY;
		return;
	}
	static const unsigned char sslreq[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	if (send(c->fd[SIDE_SERVER], sslreq, 8, MSG_NOSIGNAL) != 8) {
		upstream_failed(w, c, "cannot send SSLRequest: %s", strerror(errno));
		return;
	}
	c->up = UP_SSLREQ;
}

static void upstream_handshake(worker *w, conn *c)
{
	char why[256];
	int rc = scry__tls_handshake(c->tls[SIDE_SERVER], why, sizeof why);
	if (rc == SCRY__TLS_ERROR)
		upstream_failed(w, c, "TLS: %s", why);
	else if (rc == SCRY__TLS_DONE)
		c->up = UP_READY;
	else
		c->tls_hs_want[SIDE_SERVER] = rc;
}

/* Events on the server side before it is ready. */
static void upstream_progress(worker *w, conn *c, uint32_t events)
{
	scry_proxy *p = w->proxy;
	if (c->up == UP_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		getsockopt(c->fd[SIDE_SERVER], SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr)
			upstream_failed(w, c, "%s", strerror(soerr));
		else
			upstream_connected(w, c);
		return;
	}
	if (c->up == UP_SSLREQ) {
		unsigned char b;
		ssize_t n = recv(c->fd[SIDE_SERVER], &b, 1, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n != 1) {
			upstream_failed(w, c, "the server closed the connection after SSLRequest%s%s",
				n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			return;
		}
		if (b == 'N' && p->up_sslmode == SCRY__SSL_PREFER) {
			c->up = UP_READY;
			return;
		}
		if (b != 'S') {
			upstream_failed(w, c, b == 'N' ? "the server does not accept TLS (--upstream-sslmode %s)"
			                               : "unexpected answer to SSLRequest (--upstream-sslmode %s)",
				p->opts.upstream_sslmode);
			return;
		}
		c->tls[SIDE_SERVER] = scry__tls_new(p->tls_client, c->fd[SIDE_SERVER], false, p->up_host);
		if (!c->tls[SIDE_SERVER]) {
			upstream_failed(w, c, "out of memory");
			return;
		}
		c->up = UP_TLS;
	}
	if (c->up == UP_TLS)
		upstream_handshake(w, c);
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_clients(worker *w, int lfd, bool is_unix)
{
	scry_proxy *p = w->proxy;
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors (EMFILE...): the listener would stay readable
			 * and spin the loop; stop accepting until a connection closes. */
			plog(p, SCRY_LOG_ERROR, "accept: %s; not accepting until a connection closes", strerror(errno));
			listeners_pause(w, true);
			return;
		}
		if (STAT_GET(p, st_active) >= (uint64_t)p->opts.max_connections) {
			send_fatal(NULL, fd, "53300", "scry capture proxy: too many connections");
			close(fd);
			STAT_ADD(p, st_failed, 1);
			continue;
		}
		conn *c = scry__calloc(1, sizeof *c);
		int sfd = socket(p->up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (!c || sfd < 0) {
			plog(p, SCRY_LOG_ERROR, "cannot open a connection to the upstream %s: %s", p->upstream, strerror(errno));
			send_fatal(NULL, fd, "08006", "scry capture proxy: cannot open a connection to the upstream server");
			close(fd);
			if (sfd >= 0)
				close(sfd);
			scry__free(c);
			STAT_ADD(p, st_failed, 1);
			continue;
		}
		c->proxy = p;
		c->w = w;
		c->fd[SIDE_CLIENT] = fd;
		c->fd[SIDE_SERVER] = sfd;
		c->state = C_STARTUP;
		c->up = UP_CONNECTING;
		if (is_unix) {
			snprintf(c->client, sizeof c->client, "[local]");
		} else {
			set_nodelay(fd);
			char host[INET6_ADDRSTRLEN] = "?";
			if (sa.ss_family == AF_INET)
				inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
			else if (sa.ss_family == AF_INET6)
				inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
			snprintf(c->client, sizeof c->client, "%s", host);
		}
		if (p->up_addr.ss_family != AF_UNIX)
			set_nodelay(sfd);
		scry_pgwire_callbacks cb = { on_startup, on_event, c };
		scry_pgwire_options dopts = SCRY_PGWIRE_OPTIONS_INIT;
		dopts.max_message_bytes = p->opts.max_message_bytes;
		dopts.max_query_bytes = p->opts.max_query_bytes;
		dopts.clock_offset_us = p->clock_offset;
		if (scry_pgwire_new(&c->dec, &cb, &dopts, NULL))
			c->dec = NULL; /* forward anyway, unrecorded */
		for (int i = 0; i < 2; i++) {
			c->ep[i].tag = i;
			c->ep[i].conn = c;
		}
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
		w->nconns++;
		STAT_ADD(p, st_conns, 1);
		STAT_ADD(p, st_active, 1);
		for (int i = 0; i < 2; i++) {
			struct epoll_event ev = { .events = 0, .data.ptr = &c->ep[i] };
			epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd[i], &ev);
		}
		int rc = connect(sfd, (struct sockaddr *)&p->up_addr, p->up_len);
		if (rc == 0)
			upstream_connected(w, c);
		else if (errno != EINPROGRESS && errno != EAGAIN)
			upstream_failed(w, c, "%s", strerror(errno));
		update_events(w, c);
	}
}

static void handle_conn_event(worker *w, conn *c, int side, uint32_t events)
{
	if (c->closed)
		return;
	if (side == SIDE_SERVER && c->up != UP_READY) {
		upstream_progress(w, c, events);
	} else if (side == SIDE_CLIENT && c->state == C_TLS) {
		client_handshake(w, c);
	} else {
		if (events & EPOLLOUT) {
			if (c->tls_read_wants_write[side])
				handle_read(w, c, side);
			if (c->closed || !conn_flush(w, c, side))
				return;
			if (side == SIDE_CLIENT && c->server_eof && !c->out[SIDE_CLIENT].len) {
				conn_close(w, c);
				return;
			}
		}
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
			if (c->tls_write_wants_read[side] && !conn_flush(w, c, side))
				return;
			if (c->closed)
				return;
			if (c->evmask[side] & EPOLLIN)
				handle_read(w, c, side);
			else if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLOUT))
				conn_close(w, c);
		}
	}
	if (c->closed)
		return;
	update_events(w, c);
	/* TLS may hold decrypted bytes the socket no longer signals: read them
	 * while the side is readable (e.g. right after back-pressure ended). */
	for (int s = 0; s < 2 && !c->closed; s++) {
		int guard = 64;
		while (!c->closed && c->tls[s] && (c->evmask[s] & EPOLLIN) && scry__tls_has_pending(c->tls[s]) &&
		       (s == SIDE_SERVER ? c->up == UP_READY : c->state != C_TLS) && guard--) {
			handle_read(w, c, s);
			if (!c->closed)
				update_events(w, c);
		}
	}
}

static void *loop_main(void *arg)
{
	worker *w = arg;
	scry_proxy *p = w->proxy;
	/* OpenSSL writes with write(): a peer gone away must give EPIPE, not
	 * kill the process. A blocked SIGPIPE stays pending on this thread. */
	sigset_t pipe;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	struct epoll_event evs[256];
	bool stop = false;
	while (!stop) {
		int n = epoll_wait(w->epfd, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			plog(p, SCRY_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		w->now = scry__monotonic_us();
		for (int i = 0; i < n; i++) {
			endpoint *ep = evs[i].data.ptr;
			if (ep->tag == TAG_STOP)
				stop = true;
			else if (ep->tag == TAG_LISTEN)
				accept_clients(w, ep->fd, ep == &w->listen_ep[1]);
			else
				handle_conn_event(w, ep->conn, ep->tag, evs[i].events);
		}
		while (w->dead) {
			conn *c = w->dead;
			w->dead = c->next;
			scry__free(c);
		}
		flush_local(w, false);
	}
	w->now = scry__monotonic_us();
	while (w->conns)
		conn_close(w, w->conns);
	while (w->dead) {
		conn *c = w->dead;
		w->dead = c->next;
		scry__free(c);
	}
	flush_local(w, false);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The writer                                                          */
/* ------------------------------------------------------------------ */

static void writer_fail(scry_proxy *p, int rc, const scry_error *e, size_t lost)
{
	STAT_ADD(p, st_dropped, lost);
	plog(p, SCRY_LOG_ERROR, "store: %s (%zu events lost)", e->message, lost);
	pthread_mutex_lock(&p->mu);
	if (!p->first_rc) {
		p->first_rc = rc;
		p->first_err = *e;
	}
	pthread_mutex_unlock(&p->mu);
}

/* Remembers which file the store is, to notice it being deleted or replaced. */
static void store_identify(scry_proxy *p)
{
	struct stat st;
	const char *path = scry_store_path(p->store);
	p->have_ino = path && *path && strcmp(path, ":memory:") && stat(path, &st) == 0;
	if (p->have_ino) {
		p->st_dev = st.st_dev;
		p->st_ino = st.st_ino;
	}
	p->store_lost = false;
}

/* At most once a second (and at the end): is the store still the file at
 * its path? Events written into a deleted or replaced file are lost. */
static void store_check(scry_proxy *p, bool now)
{
	int64_t t = scry__monotonic_us();
	if (!p->have_ino || p->store_lost || (!now && t - p->last_check_us < 1000000))
		return;
	p->last_check_us = t;
	struct stat st;
	const char *path = scry_store_path(p->store);
	bool gone = stat(path, &st) != 0;
	if (!gone && st.st_dev == p->st_dev && st.st_ino == p->st_ino)
		return;
	p->store_lost = true;
	scry_error e = SCRY_ERROR_INIT;
	int rc = scry__fail(&e, SCRY_EIO, "the store file %s was %s while recording; events from now on are lost "
		"(restart the capture, or rotate with SIGHUP, to record into a new file)", path, gone ? "deleted" : "replaced");
	writer_fail(p, rc, &e, 0);
}

static void append_batch(scry_proxy *p, scry_event *evs, size_t *n)
{
	if (!*n)
		return;
	scry_error e = SCRY_ERROR_INIT;
	int rc = scry_store_append(p->store, evs, *n, &e);
	if (rc) {
		store_check(p, true); /* a deleted file is the clearer reason */
		writer_fail(p, rc, &e, *n);
	}
	else
		STAT_ADD(p, st_recorded, *n);
	*n = 0;
}

static void write_items(scry_proxy *p, qitem *it, scry_event *evs)
{
	size_t n = 0;
	qitem *done = NULL; /* items whose event is in evs: freed after the append */
	while (it) {
		qitem *next = it->next;
		sess_rec *s = it->sess;
		if (it->type == ITEM_EVENT) {
			if (s->gen != p->store_gen) { /* the store was rotated: add the session again */
				s->gen = p->store_gen;
				s->session_id = 0;
				s->failed = false;
			}
			if (p->store_lost) {
				STAT_ADD(p, st_dropped, 1);
				scry__free(it);
				it = next;
				continue;
			}
			if (!s->session_id && !s->failed) {
				scry_session_info info = { SCRY_SOURCE_PROXY, s->database, s->user, s->application, s->client,
				                           s->started_us };
				scry_error e = SCRY_ERROR_INIT;
				int rc = scry_store_session_add(p->store, &info, &s->session_id, &e);
				if (rc) {
					s->failed = true;
					writer_fail(p, rc, &e, 0);
					plog(p, SCRY_LOG_ERROR, "session of %s@%s from %s not recorded: its events are lost "
					     "(counted in events_dropped)", s->user, s->database, s->client);
				}
			}
			if (s->failed) {
				STAT_ADD(p, st_dropped, 1);
				scry__free(it);
			} else {
				it->ev.session_id = s->session_id;
				evs[n++] = it->ev;
				it->next = done;
				done = it;
				if (n == p->opts.batch_events) {
					append_batch(p, evs, &n);
					while (done) {
						qitem *d = done;
						done = d->next;
						scry__free(d);
					}
				}
			}
		} else { /* ITEM_END: the session's events are before it */
			append_batch(p, evs, &n);
			while (done) {
				qitem *d = done;
				done = d->next;
				scry__free(d);
			}
			if (s->session_id && s->gen == p->store_gen && !p->store_lost) {
				scry_error e = SCRY_ERROR_INIT;
				int rc = scry_store_session_end(p->store, s->session_id, it->end_us, &e);
				if (rc)
					writer_fail(p, rc, &e, 0);
			}
			sess_free(s);
			scry__free(it);
		}
		it = next;
	}
	append_batch(p, evs, &n);
	while (done) {
		qitem *d = done;
		done = d->next;
		scry__free(d);
	}
}

static void *writer_main(void *arg)
{
	scry_proxy *p = arg;
	scry_event *evs = scry__malloc(p->opts.batch_events * sizeof *evs);
	pthread_mutex_lock(&p->mu);
	store_identify(p);
	for (;;) {
		/* Wait for a full batch, a stop, a rotation, or a short timeout with something queued. */
		while (!p->writer_stop && !p->swap_asked && p->q.n < p->opts.batch_events) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += WRITER_WAIT_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			p->writer_waiting = true;
			int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
			p->writer_waiting = false;
			if (rc == ETIMEDOUT && p->q.n)
				break;
			if (rc == ETIMEDOUT) {
				pthread_mutex_unlock(&p->mu);
				store_check(p, false);
				pthread_mutex_lock(&p->mu);
			}
		}
		qitem *items = p->q.head;
		bool last = p->writer_stop;
		bool swap = p->swap_asked;
		p->q = (qlist){ 0 };
		pthread_mutex_unlock(&p->mu);
		store_check(p, last || swap);
		if (items) {
			if (!evs) /* retry: one failed allocation must not drop every later batch */
				evs = scry__malloc(p->opts.batch_events * sizeof *evs);
			if (evs) {
				write_items(p, items, evs);
			} else { /* no memory for a batch array: drop, but keep sessions sane */
				for (qitem *it = items, *next; it; it = next) {
					next = it->next;
					if (it->type == ITEM_END)
						sess_free(it->sess);
					else
						STAT_ADD(p, st_dropped, 1);
					scry__free(it);
				}
			}
		}
		pthread_mutex_lock(&p->mu);
		if (swap) { /* everything queued before the rotation is in the old store */
			p->prev_store = p->store;
			p->store = p->next_store;
			p->next_store = NULL;
			p->store_gen++;
			store_identify(p);
			p->swap_asked = false;
			pthread_cond_broadcast(&p->swap_cv);
		}
		if (last && !p->q.head)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	scry__free(evs);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL for any) and port. */
static int split_hostport(const char *s, char *host, size_t hostsz, char *port, size_t portsz)
{
	const char *colon;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(rb - s - 1), s + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(colon - s), s);
	}
	snprintf(port, portsz, "%s", colon + 1);
	if (!*port || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
		return -1;
	return 0;
}

static int resolve_upstream(scry_proxy *p, scry_error *err)
{
	const char *u = p->upstream;
	if (u[0] == '/') {
		/* A socket file, or libpq-style "DIR[:PORT]" holding .s.PGSQL.PORT. */
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		struct stat st;
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", u);
		char *colon = strrchr(dir, ':');
		const char *port = "5432";
		if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
			*colon = 0;
			port = colon + 1;
		}
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
			if ((size_t)snprintf(path, sizeof path, "%s/.s.PGSQL.%s", dir, port) >= sizeof path)
				return scry__fail(err, SCRY_EINVAL, "upstream socket path '%s' is too long", u);
		} else if ((size_t)snprintf(path, sizeof path, "%s", u) >= sizeof path) {
			return scry__fail(err, SCRY_EINVAL, "upstream socket path '%s' is too long", u);
		}
		struct sockaddr_un *sun = (struct sockaddr_un *)&p->up_addr;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		p->up_len = sizeof *sun;
		return 0;
	}
	char host[256], port[16];
	if (split_hostport(u, host, sizeof host, port, sizeof port) || !*host)
		return scry__fail(err, SCRY_EINVAL,
			"upstream '%s' is not HOST:PORT or a socket path (e.g. 127.0.0.1:5432)", u);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc || !res)
		return scry__fail(err, SCRY_EINVAL, "cannot resolve the upstream host '%s': %s", host, gai_strerror(rc));
	memcpy(&p->up_addr, res->ai_addr, res->ai_addrlen);
	p->up_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* A TCP listener for worker w: the first binds the asked address (PORT 0:
 * any free port); with several workers each binds the same port with
 * SO_REUSEPORT and the kernel spreads connections over them. */
static int listen_tcp(scry_proxy *p, worker *w, bool reuseport, scry_error *err)
{
	char host[256], port[16];
	if (split_hostport(p->listen, host, sizeof host, port, sizeof port))
		return scry__fail(err, SCRY_EINVAL, "listen address '%s' is not HOST:PORT (e.g. 127.0.0.1:6432)", p->listen);
	if (p->port)
		snprintf(port, sizeof port, "%d", p->port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc || !res)
		return scry__fail(err, SCRY_EINVAL, "cannot resolve the listen address '%s': %s", p->listen, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	}
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return scry__fail_sys(err, SCRY_EIO, e, "cannot listen on %s: %s", p->listen, strerror(e));
	}
	freeaddrinfo(res);
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	p->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                         : ((struct sockaddr_in *)&sa)->sin_port);
	w->listen_fd[0] = fd;
	return 0;
}

static int listen_unix(scry_proxy *p, worker *w, scry_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(p->listen_unix) >= sizeof sun.sun_path)
		return scry__fail(err, SCRY_EINVAL, "Unix socket path '%s' is too long", p->listen_unix);
	strcpy(sun.sun_path, p->listen_unix);
	struct stat st;
	if (lstat(p->listen_unix, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(p->listen_unix); /* a stale socket from an earlier run */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) || listen(fd, 1024)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return scry__fail_sys(err, SCRY_EIO, e, "cannot listen on %s: %s", p->listen_unix, strerror(e));
	}
	w->listen_fd[1] = fd;
	return 0;
}

/* "a,b,c" -> a NULL-terminated list of copies (empty items ignored). */
static int split_list(const char *s, char ***out, scry_error *err)
{
	size_t n = 1;
	for (const char *q = s; *q; q++)
		n += *q == ',';
	char **l = scry__calloc(n + 1, sizeof *l);
	if (!l)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	size_t k = 0;
	for (const char *q = s; *q;) {
		size_t len = strcspn(q, ",");
		if (len && !(l[k++] = scry__strndup(q, len))) {
			*out = l;
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		q += len;
		if (*q == ',')
			q++;
	}
	*out = l;
	if (!k)
		return scry__fail(err, SCRY_EINVAL, "empty filter list '%s' (give comma-separated names)", s);
	return 0;
}

static int setup_tls(scry_proxy *p, scry_error *err)
{
	const scry_proxy_options *o = &p->opts;
	if ((o->tls_cert == NULL) != (o->tls_key == NULL))
		return scry__fail(err, SCRY_EINVAL, "TLS to clients needs both a certificate (tls_cert) and its key (tls_key)");
	int rc;
	if (o->tls_cert && (rc = scry__tls_server_ctx(&p->tls_server, o->tls_cert, o->tls_key, err)) != 0)
		return rc;
	bool unix_up = p->up_addr.ss_family == AF_UNIX;
	if (o->upstream_sslmode) {
		p->up_sslmode = scry__tls_sslmode(o->upstream_sslmode);
		if (p->up_sslmode < 0)
			return scry__fail(err, SCRY_EINVAL,
				"unknown upstream sslmode '%s' (disable, prefer, require, verify-ca or verify-full)", o->upstream_sslmode);
		if (unix_up && p->up_sslmode >= SCRY__SSL_REQUIRE)
			return scry__fail(err, SCRY_EINVAL,
				"upstream sslmode %s needs a TCP upstream (HOST:PORT): there is no TLS on a Unix socket", o->upstream_sslmode);
	} else {
		p->up_sslmode = SCRY__SSL_PREFER; /* libpq's default */
	}
	if (unix_up)
		p->up_sslmode = SCRY__SSL_DISABLE; /* as libpq: no TLS on Unix sockets */
	static const char *const names[] = { "disable", "prefer", "require", "verify-ca", "verify-full" };
	p->opts.upstream_sslmode = names[p->up_sslmode];
	if (p->up_sslmode == SCRY__SSL_DISABLE) {
		if (o->upstream_sslrootcert || o->upstream_sslcert || o->upstream_sslkey)
			return scry__fail(err, SCRY_EINVAL, "upstream TLS files were given, but the upstream sslmode is disable");
		return 0;
	}
	if (!unix_up) {
		char port[16];
		if (split_hostport(p->upstream, p->up_host, sizeof p->up_host, port, sizeof port))
			p->up_host[0] = 0;
	}
	return scry__tls_client_ctx(&p->tls_client, p->up_sslmode, o->upstream_sslrootcert, o->upstream_sslcert,
		o->upstream_sslkey, err);
}

void scry_proxy_options_init(scry_proxy_options *opts)
{
	if (opts)
		*opts = (scry_proxy_options)SCRY_PROXY_OPTIONS_INIT;
}

int scry_proxy_new(scry_proxy **out, scry_store *store, const scry_proxy_options *opts, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_new: out is required");
	*out = NULL;
	if (!store || !opts)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_new: a store and options (listen, upstream) are required");
	int vrc = scry__check_version(err, "scry_proxy_options", opts->version, SCRY_PROXY_OPTIONS_VERSION);
	if (vrc)
		return vrc;
	if (!opts->listen && !opts->listen_unix)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs an address to listen on (listen or listen_unix)");
	if (!opts->upstream || !*opts->upstream)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs the upstream server's address (HOST:PORT)");
	scry_proxy *p = scry__calloc(1, sizeof *p);
	if (!p)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	p->store = store;
	/* Options of an older version end before the fields added since. */
	memcpy(&p->opts, opts, opts->version >= 2 ? sizeof p->opts : offsetof(scry_proxy_options, tls_cert));
	p->opts.version = SCRY_PROXY_OPTIONS_VERSION;
	p->stopfd = -1;
	if (!p->opts.queue_events)
		p->opts.queue_events = 65536;
	if (!p->opts.batch_events)
		p->opts.batch_events = 2048;
	if (!p->opts.max_message_bytes)
		p->opts.max_message_bytes = 256u << 20;
	if (!p->opts.max_query_bytes)
		p->opts.max_query_bytes = 1u << 20;
	if (p->opts.max_connections <= 0)
		p->opts.max_connections = 10000;
	if (!p->opts.queue_bytes)
		p->opts.queue_bytes = 256u << 20;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&p->cv, &ca);
	pthread_cond_init(&p->swap_cv, &ca);
	pthread_condattr_destroy(&ca);
	p->listen = opts->listen ? scry__strdup(opts->listen) : NULL;
	p->listen_unix = opts->listen_unix ? scry__strdup(opts->listen_unix) : NULL;
	p->upstream = scry__strdup(opts->upstream);
	p->nworkers = p->opts.event_threads > 1 ? (p->opts.event_threads < 64 ? p->opts.event_threads : 64) : 1;
	p->workers = scry__calloc((size_t)p->nworkers, sizeof *p->workers);
	for (int k = 0; p->workers && k < p->nworkers; k++)
		p->workers[k].epfd = p->workers[k].listen_fd[0] = p->workers[k].listen_fd[1] = -1;
	int rc;
	if ((opts->listen && !p->listen) || (opts->listen_unix && !p->listen_unix) || !p->upstream || !p->workers) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = resolve_upstream(p, err)) != 0)
		goto fail;
	if ((rc = setup_tls(p, err)) != 0)
		goto fail;
	const char *flist[3] = { p->opts.databases, p->opts.users, p->opts.applications };
	for (int i = 0; i < 3; i++)
		if (flist[i] && (rc = split_list(flist[i], &p->filter[i], err)) != 0)
			goto fail;
	if (p->opts.sample_rate < 0 || p->opts.sample_rate > 1) {
		rc = scry__fail(err, SCRY_EINVAL, "sample_rate %g is not between 0 and 1 (a fraction of sessions)",
			p->opts.sample_rate);
		goto fail;
	}
	p->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->stopfd < 0) {
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create the event loop: %s", strerror(errno));
		goto fail;
	}
	uint64_t seed = (uint64_t)scry__now_us() ^ ((uint64_t)getpid() << 32);
	for (int k = 0; k < p->nworkers; k++) {
		worker *w = &p->workers[k];
		w->proxy = p;
		w->rng = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->rbuf = scry__malloc(READ_CHUNK);
		if (w->epfd < 0 || !w->rbuf) {
			rc = w->rbuf ? scry__fail_sys(err, SCRY_EIO, errno, "cannot create the event loop: %s", strerror(errno))
			             : scry__fail(err, SCRY_ENOMEM, "out of memory");
			goto fail;
		}
		if (p->listen && (rc = listen_tcp(p, w, p->nworkers > 1, err)) != 0)
			goto fail;
		if (k == 0 && p->listen_unix && (rc = listen_unix(p, w, err)) != 0)
			goto fail;
		w->stop_ep.tag = TAG_STOP;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->stop_ep };
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, p->stopfd, &ev);
		for (int i = 0; i < 2; i++) {
			if (w->listen_fd[i] < 0)
				continue;
			w->listen_ep[i].tag = TAG_LISTEN;
			w->listen_ep[i].fd = w->listen_fd[i];
			struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &w->listen_ep[i] };
			epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->listen_fd[i], &lev);
		}
	}
	p->clock_offset = scry__now_us() - scry__monotonic_us();
	*out = p;
	return 0;
fail:
	scry_proxy_free(p);
	return rc;
}

int scry_proxy_port(const scry_proxy *p) { return p ? p->port : 0; }

/* Joins the event loops, then tells the writer to finish what they queued. */
static void join_threads(scry_proxy *p)
{
	for (int k = 0; k < p->nworkers; k++)
		if (p->workers[k].running) {
			pthread_join(p->workers[k].thread, NULL);
			p->workers[k].running = false;
		}
	pthread_mutex_lock(&p->mu);
	p->writer_stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->writer_thread, NULL);
}

int scry_proxy_start(scry_proxy *p, scry_error *err)
{
	if (!p || p->started)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_start: the proxy is missing or already started");
	int rc = pthread_create(&p->writer_thread, NULL, writer_main, p);
	if (rc)
		return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's writer thread: %s", strerror(rc));
	for (int k = 0; k < p->nworkers; k++) {
		rc = pthread_create(&p->workers[k].thread, NULL, loop_main, &p->workers[k]);
		if (rc) {
			scry_proxy_stop(p);
			join_threads(p);
			return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's event loop: %s", strerror(rc));
		}
		p->workers[k].running = true;
	}
	p->started = true;
	return 0;
}

void scry_proxy_stop(scry_proxy *p)
{
	if (!p || p->stopfd < 0)
		return;
	__atomic_store_n(&p->stopping, 1, __ATOMIC_RELAXED);
	uint64_t one = 1;
	ssize_t rc = write(p->stopfd, &one, sizeof one);
	(void)rc;
}

int scry_proxy_stopping(const scry_proxy *p)
{
	return !p || __atomic_load_n(&p->stopping, __ATOMIC_RELAXED);
}

int scry_proxy_switch_store(scry_proxy *p, scry_store *next, scry_store **previous, scry_error *err)
{
	if (previous)
		*previous = NULL;
	if (!p || !next || !previous)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_switch_store: proxy, next store and previous are required");
	pthread_mutex_lock(&p->mu);
	if (!p->started || p->waited) { /* no writer thread: the caller owns the store */
		*previous = p->store;
		p->store = next;
		p->store_gen++;
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	while (p->swap_asked) /* another rotation in progress */
		pthread_cond_wait(&p->swap_cv, &p->mu);
	p->next_store = next;
	p->swap_asked = true;
	pthread_cond_signal(&p->cv);
	while (p->swap_asked)
		pthread_cond_wait(&p->swap_cv, &p->mu);
	*previous = p->prev_store;
	p->prev_store = NULL;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int scry_proxy_wait(scry_proxy *p, scry_error *err)
{
	if (!p)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_wait: proxy is NULL");
	if (p->started && !p->waited) {
		join_threads(p);
		p->waited = true;
	}
	if (p->first_rc) {
		if (err)
			*err = p->first_err;
		return p->first_rc;
	}
	return 0;
}

void scry_proxy_stats_get(const scry_proxy *p, scry_proxy_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof *out);
	if (!p)
		return;
	out->connections = STAT_GET(p, st_conns);
	out->connections_active = STAT_GET(p, st_active);
	out->connections_failed = STAT_GET(p, st_failed);
	out->protocol_errors = STAT_GET(p, st_proto);
	out->events_captured = STAT_GET(p, st_captured);
	out->events_recorded = STAT_GET(p, st_recorded);
	out->events_dropped = STAT_GET(p, st_dropped);
	out->bytes_from_clients = STAT_GET(p, st_bin);
	out->bytes_from_server = STAT_GET(p, st_bout);
}

void scry_proxy_free(scry_proxy *p)
{
	if (!p)
		return;
	if (p->started && !p->waited) {
		scry_proxy_stop(p);
		scry_proxy_wait(p, NULL);
	}
	for (int k = 0; p->workers && k < p->nworkers; k++) {
		worker *w = &p->workers[k];
		for (int i = 0; i < 2; i++)
			if (w->listen_fd[i] >= 0)
				close(w->listen_fd[i]);
		if (w->listen_fd[1] >= 0 && p->listen_unix)
			unlink(p->listen_unix);
		if (w->epfd >= 0)
			close(w->epfd);
		scry__free(w->rbuf);
	}
	scry__free(p->workers);
	if (p->stopfd >= 0)
		close(p->stopfd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	pthread_cond_destroy(&p->swap_cv);
	scry__tls_ctx_free(p->tls_server);
	scry__tls_ctx_free(p->tls_client);
	for (int i = 0; i < 3; i++) {
		for (char **f = p->filter[i]; f && *f; f++)
			scry__free(*f);
		scry__free(p->filter[i]);
	}
	scry__free(p->listen);
	scry__free(p->listen_unix);
	scry__free(p->upstream);
	scry__free(p);
}
