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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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
	bool failed;         /* could not be added: its events are dropped */
	char *database, *user, *application, *client;
	char *params;        /* startup parameters (scry_session_info.params) */
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
	scry__free(s->params);
	scry__free(s);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1, TAG_LISTEN = 2, TAG_STOP = 3 };
enum { C_CONNECTING, C_STARTUP, C_STREAM };

typedef struct endpoint {
	int tag;              /* SIDE_*, TAG_LISTEN or TAG_STOP */
	struct conn *conn;
	int fd;               /* for listeners */
} endpoint;

typedef struct pending {
	char *p;
	size_t off, len, cap;
} pending;

typedef struct conn {
	struct conn *prev, *next;
	endpoint ep[2];
	int fd[2];
	uint32_t evmask[2];
	int state;
	bool closed;
	bool server_eof;      /* close once the client has got everything */
	bool upstream_failed; /* tell the client at its startup packet, then close */
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
	struct sockaddr_storage up_addr;
	socklen_t up_len;
	int listen_fd[2];     /* TCP, Unix; -1 when absent */
	endpoint listen_ep[2];
	int port;
	int epfd, stopfd;
	endpoint stop_ep;
	int64_t clock_offset;
	pthread_t loop_thread, writer_thread;
	bool started, waited;
	bool accept_paused;

	/* loop-thread state */
	conn *conns;
	conn *dead;           /* closed, freed at the end of the iteration */
	int nconns;
	char *rbuf;
	qlist local;          /* events of this iteration */
	int64_t now;          /* monotonic time of this iteration */

	/* the queue */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	qlist q;
	bool writer_waiting, writer_stop;
	int first_rc;
	scry_error first_err;

	/* counters (atomic) */
	uint64_t st_conns, st_active, st_failed, st_proto, st_captured, st_recorded, st_dropped, st_bin, st_bout;
};

#define STAT_ADD(p, f, v) __atomic_fetch_add(&(p)->f, (v), __ATOMIC_RELAXED)
#define STAT_GET(p, f) __atomic_load_n(&(p)->f, __ATOMIC_RELAXED)

#define plog(p, lvl, ...) scry__log((p)->opts.log, (p)->opts.log_ctx, (lvl), __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Decoder callbacks (loop thread)                                     */
/* ------------------------------------------------------------------ */

static void on_startup(void *ctx, const scry_pgwire_startup *su)
{
	conn *c = ctx;
	if (c->sess)
		return;
	sess_rec *s = scry__calloc(1, sizeof *s);
	if (!s)
		return;
	s->database = scry__strdup(su->database ? su->database : "");
	s->user = scry__strdup(su->user ? su->user : "");
	s->application = su->application ? scry__strdup(su->application) : NULL;
	s->client = scry__strdup(c->client);
	s->params = su->params && *su->params ? scry__strdup(su->params) : NULL;
	s->started_us = c->proxy->now + c->proxy->clock_offset;
	c->sess = s;
}

static void on_event(void *ctx, const scry_event *ev)
{
	conn *c = ctx;
	scry_proxy *p = c->proxy;
	STAT_ADD(p, st_captured, 1);
	if (!c->sess || p->local.n >= p->opts.queue_events) {
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	size_t qlen = ev->query_len;
	size_t mlen = ev->error_message ? strlen(ev->error_message) + 1 : 0;
	size_t total = sizeof(qitem) + (size_t)ev->nparams * sizeof(scry_param) + qlen + 1 + mlen + ev->copy_len;
	for (int i = 0; i < ev->nparams; i++)
		if (ev->params[i].length > 0)
			total += (size_t)ev->params[i].length;
	qitem *it = scry__malloc(total);
	if (!it) {
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	it->type = ITEM_EVENT;
	it->sess = c->sess;
	it->bytes = total;
	it->ev = *ev;
	scry_param *params = (scry_param *)(it + 1);
	char *w = (char *)(params + ev->nparams);
	for (int i = 0; i < ev->nparams; i++) {
		params[i] = ev->params[i];
		if (ev->params[i].length > 0) {
			memcpy(w, ev->params[i].value, (size_t)ev->params[i].length);
			params[i].value = w;
			w += ev->params[i].length;
		} else if (ev->params[i].length == 0) {
			params[i].value = "";
		}
	}
	it->ev.params = ev->nparams ? params : NULL;
	memcpy(w, ev->query, qlen);
	w[qlen] = 0;
	it->ev.query = w;
	w += qlen + 1;
	if (mlen) {
		memcpy(w, ev->error_message, mlen);
		it->ev.error_message = w;
		w += mlen;
	}
	if (ev->copy_len) { /* COPY FROM STDIN data */
		memcpy(w, ev->copy_data, ev->copy_len);
		it->ev.copy_data = w;
	}
	qlist_push(&p->local, it);
}

/* Hands the iteration's events to the writer; drops what does not fit. */
static void flush_local(scry_proxy *p, bool force_signal)
{
	if (!p->local.n && !force_signal)
		return;
	size_t dropped = 0;
	pthread_mutex_lock(&p->mu);
	qitem *it = p->local.head;
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
	p->local = (qlist){ 0 };
	if (p->writer_waiting && (force_signal || p->q.n >= p->opts.batch_events))
		pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (dropped)
		STAT_ADD(p, st_dropped, dropped);
}

/* ------------------------------------------------------------------ */
/* The event loop                                                      */
/* ------------------------------------------------------------------ */

static void listeners_pause(scry_proxy *p, bool pause)
{
	for (int i = 0; i < 2; i++) {
		if (p->listen_fd[i] < 0)
			continue;
		struct epoll_event ev = { .events = pause ? 0 : EPOLLIN, .data.ptr = &p->listen_ep[i] };
		epoll_ctl(p->epfd, EPOLL_CTL_MOD, p->listen_fd[i], &ev);
	}
	p->accept_paused = pause;
}

static void update_events(scry_proxy *p, conn *c)
{
	uint32_t want[2];
	bool connected = c->state != C_CONNECTING;
	want[SIDE_CLIENT] = (connected && !c->out[SIDE_SERVER].len && !c->server_eof ? EPOLLIN : 0)
	                    | (c->out[SIDE_CLIENT].len ? EPOLLOUT : 0);
	want[SIDE_SERVER] = (connected && !c->out[SIDE_CLIENT].len && !c->server_eof ? EPOLLIN : 0)
	                    | (!connected || c->out[SIDE_SERVER].len ? EPOLLOUT : 0);
	for (int i = 0; i < 2; i++) {
		if (i == SIDE_SERVER && (c->server_eof || c->fd[i] < 0))
			continue; /* not (or no longer) in the epoll set */
		if (want[i] != c->evmask[i]) {
			struct epoll_event ev = { .events = want[i], .data.ptr = &c->ep[i] };
			epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd[i], &ev);
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
static void conn_fd_close(scry_proxy *p, conn *c, int side)
{
	if (c->fd[side] < 0)
		return;
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd[side], NULL);
	close(c->fd[side]);
	c->fd[side] = -1;
}

static void conn_close(scry_proxy *p, conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	for (int i = 0; i < 2; i++) {
		conn_fd_close(p, c, i);
		scry__free(c->out[i].p);
		c->out[i].p = NULL;
	}
	scry_pgwire_free(c->dec);
	c->dec = NULL;
	if (c->sess) {
		qitem *it = scry__calloc(1, sizeof *it);
		if (it) {
			it->type = ITEM_END;
			it->sess = c->sess;
			it->end_us = p->now + p->clock_offset;
			it->bytes = sizeof *it;
			qlist_push(&p->local, it);
		} /* else the session record leaks rather than being freed under the writer */
		c->sess = NULL;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = p->dead;
	p->dead = c;
	p->nconns--;
	STAT_ADD(p, st_active, (uint64_t)-1);
	if (p->accept_paused)
		listeners_pause(p, false);
}

/* Sends a FATAL ErrorResponse (best effort) before closing a client. */
static void send_fatal(int fd, const char *sqlstate, const char *msg)
{
	char b[512];
	size_t mlen = strlen(msg);
	if (mlen > 400)
		mlen = 400;
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
	ssize_t rc = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)rc;
}

/* Writes to side `to`, queueing what does not go at once. Returns false
 * when the connection was closed. */
static bool conn_send(scry_proxy *p, conn *c, int to, const char *data, size_t len)
{
	pending *o = &c->out[to];
	if (!o->len) {
		while (len) {
			ssize_t w = send(c->fd[to], data, len, MSG_NOSIGNAL);
			if (w > 0) {
				data += w;
				len -= (size_t)w;
				__atomic_fetch_add(to == SIDE_SERVER ? &p->st_bin : &p->st_bout, (uint64_t)w, __ATOMIC_RELAXED);
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			conn_close(p, c);
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
				conn_close(p, c);
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

static bool conn_flush(scry_proxy *p, conn *c, int to)
{
	pending *o = &c->out[to];
	while (o->len) {
		ssize_t w = send(c->fd[to], o->p + o->off, o->len, MSG_NOSIGNAL);
		if (w > 0) {
			o->off += (size_t)w;
			o->len -= (size_t)w;
			__atomic_fetch_add(to == SIDE_SERVER ? &p->st_bin : &p->st_bout, (uint64_t)w, __ATOMIC_RELAXED);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		conn_close(p, c);
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

static void protocol_error(scry_proxy *p, conn *c, const scry_error *e)
{
	STAT_ADD(p, st_proto, 1);
	STAT_ADD(p, st_failed, 1);
	plog(p, SCRY_LOG_WARNING, "client %s disconnected: %s", c->client, e->message);
	char msg[600];
	snprintf(msg, sizeof msg, "scry capture proxy: %s", e->message);
	send_fatal(c->fd[SIDE_CLIENT], "08P01", msg);
	conn_close(p, c);
}

/* Client bytes: the startup phase answers SSL/GSS requests itself ('N');
 * everything else is decoded and forwarded. */
static void from_client(scry_proxy *p, conn *c, const char *data, size_t len)
{
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
			/* No TLS/GSS encryption here: the client goes on in plain text. */
			c->startup_have = 0;
			if (c->dec && (scry_pgwire_feed(c->dec, SCRY_PGWIRE_FRONTEND, c->startup, 8, p->now, &e) ||
			               scry_pgwire_feed(c->dec, SCRY_PGWIRE_BACKEND, "N", 1, p->now, &e))) {
				protocol_error(p, c, &e);
				return;
			}
			if (send(c->fd[SIDE_CLIENT], "N", 1, MSG_NOSIGNAL) != 1) {
				conn_close(p, c);
				return;
			}
			STAT_ADD(p, st_bout, 1);
			continue;
		}
		if (c->upstream_failed) {
			STAT_ADD(p, st_failed, 1);
			send_fatal(c->fd[SIDE_CLIENT], "08006", "scry capture proxy: cannot connect to the upstream server");
			conn_close(p, c);
			return;
		}
		c->state = C_STREAM;
		if (c->dec && scry_pgwire_feed(c->dec, SCRY_PGWIRE_FRONTEND, c->startup, 8, p->now, &e)) {
			protocol_error(p, c, &e);
			return;
		}
		if (!conn_send(p, c, SIDE_SERVER, (const char *)c->startup, 8))
			return;
	}
	if (!len)
		return;
	if (c->dec && scry_pgwire_feed(c->dec, SCRY_PGWIRE_FRONTEND, data, len, p->now, &e)) {
		protocol_error(p, c, &e);
		return;
	}
	conn_send(p, c, SIDE_SERVER, data, len);
}

static void from_server(scry_proxy *p, conn *c, const char *data, size_t len)
{
	scry_error e = SCRY_ERROR_INIT;
	if (c->dec && scry_pgwire_feed(c->dec, SCRY_PGWIRE_BACKEND, data, len, p->now, &e)) {
		/* Our decoder's problem, not the client's: keep forwarding. */
		plog(p, SCRY_LOG_WARNING, "client %s: stopped recording this connection: %s", c->client, e.message);
		STAT_ADD(p, st_proto, 1);
		scry_pgwire_free(c->dec);
		c->dec = NULL;
	}
	conn_send(p, c, SIDE_CLIENT, data, len);
}

static void handle_read(scry_proxy *p, conn *c, int side)
{
	ssize_t n = recv(c->fd[side], p->rbuf, READ_CHUNK, 0);
	if (n > 0) {
		if (side == SIDE_CLIENT)
			from_client(p, c, p->rbuf, (size_t)n);
		else
			from_server(p, c, p->rbuf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (side == SIDE_SERVER && n == 0 && c->out[SIDE_CLIENT].len) {
		c->server_eof = true; /* let the client have the server's last words */
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd[SIDE_SERVER], NULL);
		return;
	}
	if (n < 0 && side == SIDE_SERVER)
		STAT_ADD(p, st_failed, 1);
	conn_close(p, c);
}

/* The upstream is unreachable. The client hears it as a FATAL error in
 * answer to its startup packet (after an SSLRequest was answered 'N', as
 * usual): an error in answer to SSLRequest itself would reach the user as
 * "error during SSL exchange", without the reason. */
static void upstream_failed(scry_proxy *p, conn *c)
{
	conn_fd_close(p, c, SIDE_SERVER);
	c->upstream_failed = true;
	c->state = C_STARTUP;
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void accept_clients(scry_proxy *p, int lfd, bool is_unix)
{
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
			listeners_pause(p, true);
			return;
		}
		if (p->nconns >= p->opts.max_connections) {
			send_fatal(fd, "53300", "scry capture proxy: too many connections");
			close(fd);
			STAT_ADD(p, st_failed, 1);
			continue;
		}
		conn *c = scry__calloc(1, sizeof *c);
		int sfd = socket(p->up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (!c || sfd < 0) {
			plog(p, SCRY_LOG_ERROR, "cannot open a connection to the upstream: %s", strerror(errno));
			send_fatal(fd, "08006", "scry capture proxy: cannot open a connection to the upstream server");
			close(fd);
			if (sfd >= 0)
				close(sfd);
			scry__free(c);
			STAT_ADD(p, st_failed, 1);
			continue;
		}
		c->proxy = p;
		c->fd[SIDE_CLIENT] = fd;
		c->fd[SIDE_SERVER] = sfd;
		c->state = C_CONNECTING;
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
		scry_pgwire_callbacks cb = { SCRY_PGWIRE_CALLBACKS_VERSION, on_startup, on_event, c };
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
		c->next = p->conns;
		if (p->conns)
			p->conns->prev = c;
		p->conns = c;
		p->nconns++;
		STAT_ADD(p, st_conns, 1);
		STAT_ADD(p, st_active, 1);
		int rc = connect(sfd, (struct sockaddr *)&p->up_addr, p->up_len);
		if (rc == 0)
			c->state = C_STARTUP;
		else if (errno != EINPROGRESS && errno != EAGAIN) {
			plog(p, SCRY_LOG_ERROR, "cannot connect to the upstream %s: %s", p->upstream, strerror(errno));
			upstream_failed(p, c);
		}
		for (int i = 0; i < 2; i++) {
			struct epoll_event ev = { .events = 0, .data.ptr = &c->ep[i] };
			if (c->fd[i] >= 0)
				epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->fd[i], &ev);
		}
		update_events(p, c);
	}
}

static void handle_conn_event(scry_proxy *p, conn *c, int side, uint32_t events)
{
	if (c->closed)
		return;
	if (side == SIDE_SERVER && c->state == C_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		getsockopt(c->fd[SIDE_SERVER], SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr) {
			plog(p, SCRY_LOG_ERROR, "cannot connect to the upstream %s: %s", p->upstream, strerror(soerr));
			upstream_failed(p, c);
			update_events(p, c);
			return;
		}
		c->state = C_STARTUP;
		update_events(p, c);
		return;
	}
	if (events & EPOLLOUT) {
		if (!conn_flush(p, c, side))
			return;
		if (side == SIDE_CLIENT && c->server_eof && !c->out[SIDE_CLIENT].len) {
			conn_close(p, c);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (c->evmask[side] & EPOLLIN)
			handle_read(p, c, side);
		else if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLOUT))
			conn_close(p, c);
	}
	if (!c->closed)
		update_events(p, c);
}

static void *loop_main(void *arg)
{
	scry_proxy *p = arg;
	struct epoll_event evs[256];
	bool stop = false;
	while (!stop) {
		int n = epoll_wait(p->epfd, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			plog(p, SCRY_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		p->now = scry__monotonic_us();
		for (int i = 0; i < n; i++) {
			endpoint *ep = evs[i].data.ptr;
			if (ep->tag == TAG_STOP)
				stop = true;
			else if (ep->tag == TAG_LISTEN)
				accept_clients(p, ep->fd, ep == &p->listen_ep[1]);
			else
				handle_conn_event(p, ep->conn, ep->tag, evs[i].events);
		}
		while (p->dead) {
			conn *c = p->dead;
			p->dead = c->next;
			scry__free(c);
		}
		flush_local(p, false);
	}
	p->now = scry__monotonic_us();
	while (p->conns)
		conn_close(p, p->conns);
	while (p->dead) {
		conn *c = p->dead;
		p->dead = c->next;
		scry__free(c);
	}
	flush_local(p, false);
	pthread_mutex_lock(&p->mu);
	p->writer_stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
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

static void append_batch(scry_proxy *p, scry_event *evs, size_t *n)
{
	if (!*n)
		return;
	scry_error e = SCRY_ERROR_INIT;
	int rc = scry_store_append(p->store, evs, *n, sizeof(scry_event), &e);
	if (rc)
		writer_fail(p, rc, &e, *n);
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
			if (!s->session_id && !s->failed) {
				scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_PROXY, s->database, s->user,
				                           s->application, s->client, s->started_us };
				scry_error e = SCRY_ERROR_INIT;
				int rc = scry_store_session_add(p->store, &info, &s->session_id, &e);
				if (!rc && s->params)
					rc = scry_store_session_set_params(p->store, s->session_id, s->params, &e);
				if (rc) {
					s->failed = true;
					writer_fail(p, rc, &e, 0);
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
			if (s->session_id) {
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
	for (;;) {
		/* Wait for a full batch, a stop, or a short timeout with something queued. */
		while (!p->writer_stop && p->q.n < p->opts.batch_events) {
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
		}
		qitem *items = p->q.head;
		bool last = p->writer_stop;
		p->q = (qlist){ 0 };
		pthread_mutex_unlock(&p->mu);
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

static int listen_tcp(scry_proxy *p, scry_error *err)
{
	char host[256], port[16];
	if (split_hostport(p->listen, host, sizeof host, port, sizeof port))
		return scry__fail(err, SCRY_EINVAL, "listen address '%s' is not HOST:PORT (e.g. 127.0.0.1:6432)", p->listen);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc || !res)
		return scry__fail(err, SCRY_EINVAL, "cannot resolve the listen address '%s': %s", p->listen, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
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
	p->listen_fd[0] = fd;
	return 0;
}

static int listen_unix(scry_proxy *p, scry_error *err)
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
	p->listen_fd[1] = fd;
	return 0;
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
	scry_proxy_options o;
	int vrc = scry__opts_copy(err, &scry__abi_proxy_options, &o, opts);
	if (vrc)
		return vrc;
	if (!o.listen && !o.listen_unix)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs an address to listen on (listen or listen_unix)");
	if (!o.upstream || !*o.upstream)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs the upstream server's address (HOST:PORT)");
	scry_proxy *p = scry__calloc(1, sizeof *p);
	if (!p)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	p->store = store;
	p->opts = o;
	p->listen_fd[0] = p->listen_fd[1] = p->epfd = p->stopfd = -1;
	if (!p->opts.queue_events)
		p->opts.queue_events = 65536;
	if (!p->opts.batch_events)
		p->opts.batch_events = 2048;
	if (!p->opts.max_message_bytes)
		p->opts.max_message_bytes = 256u << 20;
	if (!p->opts.max_query_bytes)
		p->opts.max_query_bytes = 16u << 20;
	if (p->opts.max_connections <= 0)
		p->opts.max_connections = 10000;
	if (!p->opts.queue_bytes)
		p->opts.queue_bytes = 256u << 20;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	p->listen = o.listen ? scry__strdup(o.listen) : NULL;
	p->listen_unix = o.listen_unix ? scry__strdup(o.listen_unix) : NULL;
	p->upstream = scry__strdup(o.upstream);
	p->rbuf = scry__malloc(READ_CHUNK);
	int rc;
	if ((o.listen && !p->listen) || (o.listen_unix && !p->listen_unix) || !p->upstream || !p->rbuf) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = resolve_upstream(p, err)) != 0)
		goto fail;
	if (p->listen && (rc = listen_tcp(p, err)) != 0)
		goto fail;
	if (p->listen_unix && (rc = listen_unix(p, err)) != 0)
		goto fail;
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->epfd < 0 || p->stopfd < 0) {
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create the event loop: %s", strerror(errno));
		goto fail;
	}
	p->stop_ep.tag = TAG_STOP;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &p->stop_ep };
	epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->stopfd, &ev);
	for (int i = 0; i < 2; i++) {
		if (p->listen_fd[i] < 0)
			continue;
		p->listen_ep[i].tag = TAG_LISTEN;
		p->listen_ep[i].fd = p->listen_fd[i];
		struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &p->listen_ep[i] };
		epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->listen_fd[i], &lev);
	}
	p->clock_offset = scry__now_us() - scry__monotonic_us();
	*out = p;
	return 0;
fail:
	scry_proxy_free(p);
	return rc;
}

int scry_proxy_port(const scry_proxy *p) { return p ? p->port : 0; }

int scry_proxy_start(scry_proxy *p, scry_error *err)
{
	if (!p || p->started)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_start: the proxy is missing or already started");
	int rc = pthread_create(&p->writer_thread, NULL, writer_main, p);
	if (rc)
		return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's writer thread: %s", strerror(rc));
	rc = pthread_create(&p->loop_thread, NULL, loop_main, p);
	if (rc) {
		pthread_mutex_lock(&p->mu);
		p->writer_stop = true;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->writer_thread, NULL);
		return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's event loop: %s", strerror(rc));
	}
	p->started = true;
	return 0;
}

void scry_proxy_stop(scry_proxy *p)
{
	if (!p || p->stopfd < 0)
		return;
	uint64_t one = 1;
	ssize_t rc = write(p->stopfd, &one, sizeof one);
	(void)rc;
}

int scry_proxy_wait(scry_proxy *p, scry_error *err)
{
	if (!p)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_wait: proxy is NULL");
	if (p->started && !p->waited) {
		pthread_join(p->loop_thread, NULL);
		pthread_join(p->writer_thread, NULL);
		p->waited = true;
	}
	if (p->first_rc) {
		if (err)
			*err = p->first_err;
		return p->first_rc;
	}
	return 0;
}

int scry_proxy_stats_get(const scry_proxy *p, scry_proxy_stats *out)
{
	scry_proxy_stats st = { 0 };
	if (p) {
		st.connections = STAT_GET(p, st_conns);
		st.connections_active = STAT_GET(p, st_active);
		st.connections_failed = STAT_GET(p, st_failed);
		st.protocol_errors = STAT_GET(p, st_proto);
		st.events_captured = STAT_GET(p, st_captured);
		st.events_recorded = STAT_GET(p, st_recorded);
		st.events_dropped = STAT_GET(p, st_dropped);
		st.bytes_from_clients = STAT_GET(p, st_bin);
		st.bytes_from_server = STAT_GET(p, st_bout);
	}
	return scry__out_copy(NULL, &scry__abi_proxy_stats, out, &st);
}

void scry_proxy_free(scry_proxy *p)
{
	if (!p)
		return;
	if (p->started && !p->waited) {
		scry_proxy_stop(p);
		scry_proxy_wait(p, NULL);
	}
	for (int i = 0; i < 2; i++)
		if (p->listen_fd[i] >= 0)
			close(p->listen_fd[i]);
	if (p->listen_fd[1] >= 0 && p->listen_unix)
		unlink(p->listen_unix);
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->stopfd >= 0)
		close(p->stopfd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	scry__free(p->listen);
	scry__free(p->listen_unix);
	scry__free(p->upstream);
	scry__free(p->rbuf);
	scry__free(p);
}
