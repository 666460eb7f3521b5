/*
 * lib/proxy_tls.h - TLS for the capture proxy (internal; OpenSSL behind an
 * opaque interface so lib/proxy.c needs no OpenSSL header).
 *
 * Every call is non-blocking: a handshake, read or write that cannot go on
 * says whether it waits for the socket to become readable or writable.
 */
#ifndef SCRY_PROXY_TLS_H
#define SCRY_PROXY_TLS_H

#include "internal.h"

#include <sys/types.h>

typedef struct scry__tls_ctx scry__tls_ctx; /* an SSL_CTX and its settings */
typedef struct scry__tls scry__tls;         /* one TLS connection (an SSL) */

/* Upstream sslmode values, as libpq names them. */
enum { SCRY__SSL_DISABLE, SCRY__SSL_PREFER, SCRY__SSL_REQUIRE, SCRY__SSL_VERIFY_CA, SCRY__SSL_VERIFY_FULL };

/* Parses "disable" ... "verify-full"; -1 when unknown. */
SCRY_HIDDEN int scry__tls_sslmode(const char *s);

/* A context to terminate client TLS with a certificate chain and its key. */
SCRY_HIDDEN int scry__tls_server_ctx(scry__tls_ctx **out, const char *cert, const char *key, scry_error *err);
/* A context to connect to the upstream server (sslmode >= PREFER). */
SCRY_HIDDEN int scry__tls_client_ctx(scry__tls_ctx **out, int sslmode, const char *rootcert,
	const char *cert, const char *key, scry_error *err);
SCRY_HIDDEN void scry__tls_ctx_free(scry__tls_ctx *ctx);

/* A TLS connection over a connected non-blocking socket. `host` (client
 * role only) is the name or address checked by verify-full, sent as SNI
 * when it is a name. NULL on out of memory. */
SCRY_HIDDEN scry__tls *scry__tls_new(scry__tls_ctx *ctx, int fd, bool server_role, const char *host);
/* Frees it after a best-effort close_notify. Accepts NULL. */
SCRY_HIDDEN void scry__tls_free(scry__tls *t);

enum { SCRY__TLS_DONE = 0, SCRY__TLS_WANT_READ = 1, SCRY__TLS_WANT_WRITE = 2, SCRY__TLS_ERROR = -1 };

/* Drives the handshake. On SCRY__TLS_ERROR, `why` says what failed. */
SCRY_HIDDEN int scry__tls_handshake(scry__tls *t, char *why, size_t whysz);
/* True when the client offered ALPN "postgresql" (server role, after the handshake). */
SCRY_HIDDEN bool scry__tls_alpn_postgresql(const scry__tls *t);
/* Like recv()/send(): >0 bytes, 0 end of stream, -1 with errno (EAGAIN when
 * it must wait; EPROTO for a TLS error). *want says for what on EAGAIN. */
SCRY_HIDDEN ssize_t scry__tls_read(scry__tls *t, void *buf, size_t n, int *want);
SCRY_HIDDEN ssize_t scry__tls_write(scry__tls *t, const void *buf, size_t n, int *want);
/* Bytes already decrypted (or records buffered) that a read would return
 * without the socket being readable. */
SCRY_HIDDEN bool scry__tls_has_pending(const scry__tls *t);

#endif /* SCRY_PROXY_TLS_H */
