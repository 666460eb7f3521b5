/*
 * lib/proxy.c - the capture proxy's event loops: each (one, or
 * event_threads with SO_REUSEPORT) forwards bytes between clients and the
 * upstream server, terminating TLS where configured (lib/proxy_tls.c), and
 * feeds a pgwire decoder per connection; decoded events go through a
 * bounded queue to the writer thread (lib/proxy_writer.c), the only user of
 * the store handle. Connections start in lib/proxy_connect.c; what is
 * recorded, in lib/proxy_capture.c. Setup and the public lifecycle:
 * lib/proxy_setup.c.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static uint32_t hs_mask(int want)
{
	return want == SCRY__TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN;
}

void scry__proxy_update_events(worker *w, conn *c)
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
void scry__proxy_conn_fd_close(worker *w, conn *c, int side)
{
	scry__tls_free(c->tls[side]);
	c->tls[side] = NULL;
	if (c->fd[side] < 0)
		return;
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd[side], NULL);
	close(c->fd[side]);
	c->fd[side] = -1;
}

void scry__proxy_conn_close(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	if (c->closed)
		return;
	c->closed = true;
	for (int i = 0; i < 2; i++) {
		scry__proxy_conn_fd_close(w, c, i);
		scry__free(c->out[i].p);
		c->out[i].p = NULL;
	}
	scry__free(c->up_err);
	c->up_err = NULL;
	scry_pgwire_free(c->dec);
	c->dec = NULL;
	scry__proxy_session_end(w, c);
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
		scry__proxy_listeners_pause(w, false);
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
void scry__proxy_send_fatal(conn *c, int fd, const char *sqlstate, const char *msg)
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

/* Sends what side `to` takes at once (counting the bytes). Returns how
 * many it took, or -1 when the connection failed and was closed. */
static inline ssize_t send_now(worker *w, conn *c, int to, const char *data, size_t len)
{
	scry_proxy *p = w->proxy;
	size_t sent = 0;
	while (sent < len) {
		ssize_t k = io_send(c, to, data + sent, len - sent);
		if (k > 0) {
			sent += (size_t)k;
			__atomic_fetch_add(to == SIDE_SERVER ? &p->st_bin : &p->st_bout, (uint64_t)k, __ATOMIC_RELAXED);
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		scry__proxy_conn_close(w, c);
		return -1;
	}
	return (ssize_t)sent;
}

/* Writes to side `to`, queueing what does not go at once. Returns false
 * when the connection was closed. */
bool scry__proxy_conn_send(worker *w, conn *c, int to, const char *data, size_t len)
{
	pending *o = &c->out[to];
	if (!o->len) {
		ssize_t k = send_now(w, c, to, data, len);
		if (k < 0)
			return false;
		data += k;
		len -= (size_t)k;
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
				scry__proxy_conn_close(w, c);
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
	pending *o = &c->out[to];
	if (o->len) {
		ssize_t k = send_now(w, c, to, o->p + o->off, o->len);
		if (k < 0)
			return false;
		o->off += (size_t)k;
		o->len -= (size_t)k;
		if (o->len)
			return true;
	}
	o->off = 0;
	if (o->cap > READ_CHUNK * 2) { /* give back a buffer grown by a burst */
		scry__free(o->p);
		o->p = NULL;
		o->cap = 0;
	}
	return true;
}

void scry__proxy_protocol_error(worker *w, conn *c, const scry_error *e)
{
	scry_proxy *p = w->proxy;
	STAT_ADD(p, st_proto, 1);
	STAT_ADD(p, st_failed, 1);
	plog(p, SCRY_LOG_WARNING, "client %s disconnected: %s", c->client, e->message);
	char msg[600];
	snprintf(msg, sizeof msg, "scry capture proxy: %s", e->message);
	scry__proxy_send_fatal(c, c->fd[SIDE_CLIENT], "08P01", msg);
	scry__proxy_conn_close(w, c);
}

/* Feeds the decoder; stops decoding a connection the filters left out. */
int scry__proxy_decode(conn *c, int dir, const void *data, size_t len, scry_error *e)
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

/* Client bytes: the startup phase (lib/proxy_connect.c), then the stream,
 * decoded and forwarded. */
static void from_client(worker *w, conn *c, const char *data, size_t len)
{
	if (c->state == C_STARTUP && !scry__proxy_client_startup(w, c, &data, &len))
		return;
	if (!len)
		return;
	scry_error e = SCRY_ERROR_INIT;
	if (scry__proxy_decode(c, SCRY_PGWIRE_FRONTEND, data, len, &e)) {
		scry__proxy_protocol_error(w, c, &e);
		return;
	}
	scry__proxy_conn_send(w, c, SIDE_SERVER, data, len);
}

static void from_server(worker *w, conn *c, const char *data, size_t len)
{
	scry_proxy *p = w->proxy;
	scry_error e = SCRY_ERROR_INIT;
	if (scry__proxy_decode(c, SCRY_PGWIRE_BACKEND, data, len, &e)) {
		/* Our decoder's problem, not the client's: keep forwarding. */
		plog(p, SCRY_LOG_WARNING, "client %s: stopped recording this connection: %s", c->client, e.message);
		STAT_ADD(p, st_proto, 1);
		scry_pgwire_free(c->dec);
		c->dec = NULL;
	}
	scry__proxy_conn_send(w, c, SIDE_CLIENT, data, len);
}

static void handle_read(worker *w, conn *c, int side)
{
	scry_proxy *p = w->proxy;
	size_t want = READ_CHUNK;
	if (side == SIDE_CLIENT && c->state == C_STARTUP && !c->tls[SIDE_CLIENT]) {
		if (!c->startup_have && scry__proxy_client_direct_tls(w, c))
			return;
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
	scry__proxy_conn_close(w, c);
}

static void handle_conn_event(worker *w, conn *c, int side, uint32_t events)
{
	if (c->closed)
		return;
	if (side == SIDE_SERVER && c->up != UP_READY) {
		scry__proxy_upstream_progress(w, c, events);
	} else if (side == SIDE_CLIENT && c->state == C_TLS) {
		scry__proxy_client_handshake(w, c);
	} else {
		if (events & EPOLLOUT) {
			if (c->tls_read_wants_write[side])
				handle_read(w, c, side);
			if (c->closed || !conn_flush(w, c, side))
				return;
			if (side == SIDE_CLIENT && c->server_eof && !c->out[SIDE_CLIENT].len) {
				scry__proxy_conn_close(w, c);
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
				scry__proxy_conn_close(w, c);
		}
	}
	if (c->closed)
		return;
	scry__proxy_update_events(w, c);
	/* TLS may hold decrypted bytes the socket no longer signals: read them
	 * while the side is readable (e.g. right after back-pressure ended). */
	for (int s = 0; s < 2 && !c->closed; s++) {
		int guard = 64;
		while (!c->closed && c->tls[s] && (c->evmask[s] & EPOLLIN) && scry__tls_has_pending(c->tls[s]) &&
		       (s == SIDE_SERVER ? c->up == UP_READY : c->state != C_TLS) && guard--) {
			handle_read(w, c, s);
			if (!c->closed)
				scry__proxy_update_events(w, c);
		}
	}
}

/* Frees the connections closed during the iteration. */
static void free_dead(worker *w)
{
	while (w->dead) {
		conn *c = w->dead;
		w->dead = c->next;
		scry__free(c);
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
			scry__proxy_listeners_pause(w, false);
		w->now = scry__monotonic_us();
		for (int i = 0; i < n; i++) {
			endpoint *ep = evs[i].data.ptr;
			if (ep->tag == TAG_STOP)
				stop = true;
			else if (ep->tag == TAG_LISTEN)
				scry__proxy_accept_clients(w, ep->fd, ep == &w->listen_ep[1]);
			else
				handle_conn_event(w, ep->conn, ep->tag, evs[i].events);
		}
		free_dead(w);
		scry__proxy_flush_local(w, false);
	}
	w->now = scry__monotonic_us();
	while (w->conns)
		scry__proxy_conn_close(w, w->conns);
	free_dead(w);
	scry__proxy_flush_local(w, false);
	if (w->spare_sfd >= 0)
		close(w->spare_sfd);
	w->spare_sfd = -1;
	if (w->blk && __atomic_sub_fetch(&w->blk->refs, 1, __ATOMIC_ACQ_REL) == 0)
		scry__free(w->blk);
	w->blk = NULL;
	return NULL;
}
