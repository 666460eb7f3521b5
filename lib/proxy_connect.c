/*
 * lib/proxy_connect.c - how a capture proxy connection starts (loop
 * threads): accepting clients within the descriptor budget, connecting to
 * the upstream server (SSLRequest and TLS on that side), and the client's
 * startup phase (SSLRequest/GSSENCRequest answered here, direct TLS, the
 * TLS handshake). Once both sides are ready, lib/proxy.c forwards.
 */
#define _GNU_SOURCE
#include "proxy_internal.h"
#include "util/fill.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CODE_SSL 80877103u
#define CODE_GSSENC 80877104u

void scry__proxy_listeners_pause(worker *w, bool pause)
{
	for (int i = 0; i < 2; i++) {
		if (w->listen_fd[i] < 0)
			continue;
		struct epoll_event ev = { .events = pause ? 0 : EPOLLIN, .data.ptr = &w->listen_ep[i] };
		epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->listen_fd[i], &ev);
	}
	w->accept_paused = pause;
}

/* ------------------------------------------------------------------ */
/* The client's startup phase                                          */
/* ------------------------------------------------------------------ */

/* Drives the client's TLS handshake; once done, startup packets follow. */
void scry__proxy_client_handshake(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	char why[256];
	int rc = scry__tls_handshake(c->tls[SIDE_CLIENT], why, sizeof why);
	if (rc == SCRY__TLS_ERROR) {
		STAT_ADD(p, st_failed, 1);
		plog(p, SCRY_LOG_WARNING, "client %s: TLS handshake failed: %s", c->client, why);
		scry__proxy_conn_close(w, c);
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
		scry__proxy_send_fatal(c, c->fd[SIDE_CLIENT], "08P01",
			"scry capture proxy: direct TLS connection without ALPN protocol \"postgresql\"");
		scry__proxy_conn_close(w, c);
	}
}

static void client_start_tls(worker *w, conn *c, bool direct)
{
	scry_proxy *p = w->proxy;
	c->tls[SIDE_CLIENT] = scry__tls_new(p->tls_server, c->fd[SIDE_CLIENT], true, NULL);
	if (!c->tls[SIDE_CLIENT]) {
		scry__proxy_conn_close(w, c);
		return;
	}
	c->direct_tls = direct;
	c->state = C_TLS;
	scry__proxy_client_handshake(w, c);
}

/* An SSLRequest or GSSENCRequest at startup: TLS terminated here, or 'N'
 * (no TLS, no GSS encryption: the client goes on in plain text). Returns
 * false when the bytes that follow are not startup packets to read on. */
static bool client_ssl_request(worker *w, conn *c, uint32_t code)
{
	scry_proxy *p = w->proxy;
	scry_error e = SCRY_ERROR_INIT;
	c->startup_have = 0;
	if (c->tls[SIDE_CLIENT]) {
		scry__fail(&e, SCRY_EPROTOCOL, "SSLRequest/GSSENCRequest inside TLS");
		scry__proxy_protocol_error(w, c, &e);
		return false;
	}
	if (code == CODE_SSL && p->tls_server) {
		/* TLS terminated here. The client sent nothing past its request
		 * (reads are cut at 8 bytes before TLS): the handshake starts clean. */
		if (send(c->fd[SIDE_CLIENT], "S", 1, MSG_NOSIGNAL) != 1) {
			scry__proxy_conn_close(w, c);
			return false;
		}
		STAT_ADD(p, st_bout, 1);
		client_start_tls(w, c, false);
		return false;
	}
	/* No TLS (or GSS encryption) here: the client goes on in plain text. */
	if (scry__proxy_decode(c, SCRY_PGWIRE_FRONTEND, c->startup, 8, &e) ||
	    scry__proxy_decode(c, SCRY_PGWIRE_BACKEND, "N", 1, &e)) {
		scry__proxy_protocol_error(w, c, &e);
		return false;
	}
	if (send(c->fd[SIDE_CLIENT], "N", 1, MSG_NOSIGNAL) != 1) {
		scry__proxy_conn_close(w, c);
		return false;
	}
	STAT_ADD(p, st_bout, 1);
	return true;
}

/* Client bytes in the startup phase: SSL/GSS requests are answered here
 * ('S' with a certificate, else 'N'); the startup packet's header goes on
 * to the server. Moves *data and *len past what it took; returns true when
 * the rest is the stream to decode and forward. */
bool scry__proxy_client_startup(worker *w, conn *c, const char **data, size_t *len)
{
	scry_proxy *p = w->proxy;
	while (c->state == C_STARTUP && *len) {
		size_t k = scry__fill(c->startup, &c->startup_have, 8, *data, *len);
		*data += k;
		*len -= k;
		if (c->startup_have < 8)
			return false;
		uint32_t mlen, code;
		memcpy(&mlen, c->startup, 4);
		memcpy(&code, c->startup + 4, 4);
		mlen = ntohl(mlen);
		code = ntohl(code);
		if (mlen == 8 && (code == CODE_SSL || code == CODE_GSSENC)) {
			if (!client_ssl_request(w, c, code))
				return false;
			continue;
		}
		if (c->upstream_failed) {
			STAT_ADD(p, st_failed, 1);
			char msg[600];
			snprintf(msg, sizeof msg, "scry capture proxy: %s", c->up_err ? c->up_err : "cannot connect to the upstream server");
			scry__proxy_send_fatal(c, c->fd[SIDE_CLIENT], "08006", msg);
			scry__proxy_conn_close(w, c);
			return false;
		}
		c->state = C_STREAM;
		scry_error e = SCRY_ERROR_INIT;
		if (scry__proxy_decode(c, SCRY_PGWIRE_FRONTEND, c->startup, 8, &e)) {
			scry__proxy_protocol_error(w, c, &e);
			return false;
		}
		if (!scry__proxy_conn_send(w, c, SIDE_SERVER, (const char *)c->startup, 8))
			return false;
	}
	return true;
}

/* A TLS ClientHello (record type 22) where a startup packet is expected:
 * direct TLS (PostgreSQL 17's sslnegotiation=direct). Returns true when it
 * was one (TLS started, or refused and the client closed). */
bool scry__proxy_client_direct_tls(worker *w, conn *c)
{
	scry_proxy *p = w->proxy;
	unsigned char b;
	ssize_t k = recv(c->fd[SIDE_CLIENT], &b, 1, MSG_PEEK);
	if (k != 1 || b != 0x16)
		return false;
	if (!p->tls_server) {
		STAT_ADD(p, st_failed, 1);
		plog(p, SCRY_LOG_WARNING, "client %s: TLS connection refused: TLS is not configured", c->client);
		/* Take what the client sent, so that closing sends FIN, not
		 * an RST that could discard the error before it is read. */
		for (int i = 0; i < 4 && recv(c->fd[SIDE_CLIENT], w->rbuf, READ_CHUNK, MSG_DONTWAIT) > 0; i++)
			;
		scry__proxy_send_fatal(c, c->fd[SIDE_CLIENT], "08P01",
			"scry capture proxy: TLS is not configured on the proxy (start it with --tls-cert and --tls-key)");
		scry__proxy_conn_close(w, c);
		return true;
	}
	client_start_tls(w, c, true);
	return true;
}

/* ------------------------------------------------------------------ */
/* The upstream server                                                 */
/* ------------------------------------------------------------------ */

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
	scry__proxy_conn_fd_close(w, c, SIDE_SERVER);
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
void scry__proxy_upstream_progress(worker *w, conn *c, uint32_t events)
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

/* ------------------------------------------------------------------ */
/* Accepting clients                                                   */
/* ------------------------------------------------------------------ */

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
/* "[local]" for a Unix socket, else the client's address. */
static void client_name(conn *c, const struct sockaddr_storage *sa, bool is_unix)
{
	if (is_unix) {
		snprintf(c->client, sizeof c->client, "[local]");
		return;
	}
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
	else if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
	snprintf(c->client, sizeof c->client, "%s", host);
}

/* A client accepted (fd) with its upstream socket (sfd): its connection
 * joins the loop, and the upstream connect starts. */
static void conn_new(worker *w, int fd, int sfd, const struct sockaddr_storage *sa, bool is_unix)
{
	scry_proxy *p = w->proxy;
	conn *c = scry__calloc(1, sizeof *c);
	if (!c) {
		plog(p, SCRY_LOG_ERROR, "client refused: out of memory");
		scry__proxy_send_fatal(NULL, fd, "53200", "scry capture proxy: out of memory");
		close(fd);
		close(sfd);
		STAT_ADD(p, st_failed, 1);
		return;
	}
	c->proxy = p;
	c->w = w;
	c->fd[SIDE_CLIENT] = fd;
	c->fd[SIDE_SERVER] = sfd;
	c->state = C_STARTUP;
	c->up = UP_CONNECTING;
	client_name(c, sa, is_unix);
	if (!is_unix)
		set_nodelay(fd);
	if (p->up_addr.ss_family != AF_UNIX)
		set_nodelay(sfd);
	scry__proxy_decoder_new(c);
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
	scry__proxy_update_events(w, c);
}

void scry__proxy_accept_clients(worker *w, int lfd, bool is_unix)
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
			scry__proxy_listeners_pause(w, true);
			return;
		}
		if (STAT_GET(p, st_active) >= (uint64_t)p->opts.max_connections) {
			scry__proxy_send_fatal(NULL, fd, "53300", "scry capture proxy: too many connections");
			close(fd);
			STAT_ADD(p, st_failed, 1);
			continue;
		}
		int sfd = w->spare_sfd;
		w->spare_sfd = -1;
		conn_new(w, fd, sfd, &sa, is_unix);
	}
}
