/*
 * lib/proxy.c - the capture proxy's event loops: each (one, or
 * event_threads with SO_REUSEPORT) forwards bytes between clients and the
 * upstream server, terminating TLS where configured (lib/proxy_tls.c), and
 * feeds a pgwire decoder per connection; decoded events go through a
 * bounded queue to the writer thread (lib/proxy_writer.c), the only user of
 * the store handle. Setup and the public lifecycle: lib/proxy_setup.c.
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
#include "proxy_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

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
	s->params = su->params && *su->params ? scry__strdup(su->params) : NULL;
	s->started_us = w->now + p->clock_offset;
	c->sess = s;
}

/* An item of `total` bytes, carved from the worker's block when it fits. */
static qitem *qitem_alloc(worker *w, size_t total)
{
	total = (total + 15) & ~(size_t)15;
	if (total > QBLOCK_BYTES / 4) { /* large: alone */
		qitem *it = scry__malloc(total);
		if (it)
			it->blk = NULL;
		return it;
	}
	qblock *b = w->blk;
	if (!b || b->used + total > b->cap) {
		qblock *nb = scry__malloc(QBLOCK_BYTES);
		if (!nb)
			return NULL;
		nb->refs = 1; /* the loop's own */
		nb->used = (sizeof *nb + 15) & ~(size_t)15;
		nb->cap = QBLOCK_BYTES;
		if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
			scry__free(b);
		w->blk = b = nb;
	}
	qitem *it = (qitem *)((char *)b + b->used);
	b->used += total;
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	it->blk = b;
	return it;
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
	size_t total = sizeof(qitem) + (size_t)ev->nparams * sizeof(scry_param) + qlen + 1 + mlen + ev->copy_len;
	for (int i = 0; i < ev->nparams; i++)
		if (ev->params[i].length > 0)
			total += (size_t)ev->params[i].length;
	qitem *it = qitem_alloc(c->w, total);
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
		wp += mlen;
	}
	if (ev->copy_len) { /* COPY FROM STDIN data */
		memcpy(wp, ev->copy_data, ev->copy_len);
		it->ev.copy_data = wp;
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
			qitem_free(it);
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
	/* Batch: one TLS record is at most 16 KiB; take every record already
	 * decryptable or readable, up to n, so one forward carries them all. */
	size_t got = 0;
	for (;;) {
		int want = 0;
		ssize_t r = scry__tls_read(c->tls[side], (char *)buf + got, n - got, &want);
		if (r <= 0) {
			if (got) {
				c->tls_read_wants_write[side] = false;
				/* OpenSSL reports the end or error again at the next read,
				 * which handle_read() makes at once. */
				c->tls_ended[side] = r == 0 || errno != EAGAIN;
				return (ssize_t)got;
			}
			c->tls_read_wants_write[side] = r < 0 && errno == EAGAIN && want == SCRY__TLS_WANT_WRITE;
			return r;
		}
		got += (size_t)r;
		if (got == n)
			return (ssize_t)got;
	}
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
					for (int i = 0; i < 4 && recv(c->fd[SIDE_CLIENT], w->rbuf, READ_CHUNK, MSG_DONTWAIT) > 0; i++)
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
		if (!c->closed && c->tls_ended[side]) {
			c->tls_ended[side] = false;
			handle_read(w, c, side);
		}
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
		/* The upstream socket is made before accepting (and kept for the
		 * next client when none is waiting): a client is accepted only when
		 * both its descriptors exist, so running out of descriptors never
		 * fails a client, it only makes it wait in the backlog. */
		/* Past the open-files budget (scry_proxy_start), the store needs the
		 * descriptors that are left: clients wait in the backlog. */
		bool budget = STAT_GET(p, st_active) < p->fd_budget;
		if (budget && w->spare_sfd < 0)
			w->spare_sfd = socket(p->up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		bool may = budget && w->spare_sfd >= 0;
		int fd = may ? accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC) : -1;
		if (fd < 0) {
			if (may && (errno == EINTR || errno == ECONNABORTED))
				continue;
			if (may && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			/* Out of descriptors (EMFILE...): the listener would stay readable
			 * and spin the loop; stop accepting for a while (loop_main). */
			if (w->now - w->emfile_logged_us >= 10000000 || !w->emfile_logged_us) { /* at most every 10 s */
				w->emfile_logged_us = w->now ? w->now : 1;
				plog(p, SCRY_LOG_ERROR, "accept: %s; new connections wait until descriptors are free "
				     "(raise the open-files limit, ulimit -n)",
				     budget ? strerror(errno) : "the open-files limit is reached (descriptors kept for the store)");
			}
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
		int sfd = w->spare_sfd;
		w->spare_sfd = -1;
		if (!c) {
			plog(p, SCRY_LOG_ERROR, "client refused: out of memory");
			send_fatal(NULL, fd, "53200", "scry capture proxy: out of memory");
			close(fd);
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

void *scry__proxy_loop_main(void *arg)
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
		/* Listeners paused by EMFILE resume when one of this loop's
		 * connections closes, or after 100 ms (the descriptors may be held
		 * by another loop, or freed elsewhere in the process). */
		int n = epoll_wait(w->epfd, evs, 256, w->accept_paused ? 100 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			plog(p, SCRY_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		if (n == 0 && w->accept_paused)
			listeners_pause(w, false);
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
	if (w->spare_sfd >= 0)
		close(w->spare_sfd);
	w->spare_sfd = -1;
	if (w->blk && __atomic_sub_fetch(&w->blk->refs, 1, __ATOMIC_ACQ_REL) == 0)
		scry__free(w->blk);
	w->blk = NULL;
	return NULL;
}
