/*
 * lib/proxy_tls.c - TLS for the capture proxy, with OpenSSL: terminating
 * the clients' TLS (SSLRequest answered 'S', or direct TLS with ALPN
 * "postgresql") and connecting to the upstream server with libpq's sslmode
 * semantics. Non-blocking throughout; lib/proxy.c drives it from its epoll
 * loop. See docs/proxy.md, "TLS".
 */
#include "proxy_tls.h"

#include <errno.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct scry__tls_ctx {
	SSL_CTX *ctx;
	int sslmode;
};

struct scry__tls {
	SSL *ssl;
	bool server_role;
};

static const unsigned char alpn_pg[] = "\x0apostgresql";

int scry__tls_sslmode(const char *s)
{
	static const char *const names[] = { "disable", "prefer", "require", "verify-ca", "verify-full" };
	for (int i = 0; s && i < 5; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

/* The first queued OpenSSL error (or `fallback`), for messages. */
static const char *ssl_reason(char *buf, size_t sz, const char *fallback)
{
	unsigned long e = ERR_get_error();
	unsigned long last;
	while ((last = ERR_get_error()) != 0) /* keep the first, drain the rest */
		;
	if (!e) {
		snprintf(buf, sz, "%s", fallback);
		return buf;
	}
	const char *r = ERR_reason_error_string(e);
	snprintf(buf, sz, "%s", r ? r : "TLS error");
	return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
	const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, alpn_pg, sizeof alpn_pg - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* ALPN offered, but not for PostgreSQL */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* A context with what both sides share: TLS 1.2+, non-blocking partial
 * writes from a moving buffer, no renegotiation or compression. */
static int ctx_base(SSL_CTX **out, const SSL_METHOD *method, scry_error *err)
{
	char why[256];
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx)
		return scry__fail(err, SCRY_ENOMEM, "cannot create a TLS context: %s", ssl_reason(why, sizeof why, "out of memory"));
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Not SSL_MODE_RELEASE_BUFFERS: it would free and allocate the record
	 * buffers around every message (docs/proxy.md, "TLS"). */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	*out = ctx;
	return 0;
}

int scry__tls_server_ctx(scry__tls_ctx **out, const char *cert, const char *key, scry_error *err)
{
	*out = NULL;
	char why[256];
	SSL_CTX *ctx;
	int brc = ctx_base(&ctx, TLS_server_method(), err);
	if (brc)
		return brc;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		SSL_CTX_free(ctx);
		return scry__fail(err, SCRY_EINVAL, "cannot load the TLS certificate '%s': %s", cert,
			ssl_reason(why, sizeof why, "unreadable"));
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(ctx);
		return scry__fail(err, SCRY_EINVAL, "cannot load the TLS key '%s': %s", key,
			ssl_reason(why, sizeof why, "unreadable"));
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return scry__fail(err, SCRY_EINVAL, "the TLS key '%s' does not match the certificate '%s'", key, cert);
	}
	scry__tls_ctx *t = scry__calloc(1, sizeof *t);
	if (!t) {
		SSL_CTX_free(ctx);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	t->ctx = ctx;
	*out = t;
	return 0;
}

int scry__tls_client_ctx(scry__tls_ctx **out, int sslmode, const char *rootcert, const char *cert,
	const char *key, scry_error *err)
{
	*out = NULL;
	char why[256];
	SSL_CTX *ctx;
	int rc = ctx_base(&ctx, TLS_client_method(), err);
	if (rc)
		return rc;
	SSL_CTX_set_alpn_protos(ctx, alpn_pg, sizeof alpn_pg - 1);
	if (sslmode >= SCRY__SSL_VERIFY_CA) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = rootcert ? SSL_CTX_load_verify_locations(ctx, rootcert, NULL)
		                  : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			rc = scry__fail(err, SCRY_EINVAL, "cannot load the upstream root certificate%s%s: %s",
				rootcert ? " " : "s of the system", rootcert ? rootcert : "",
				ssl_reason(why, sizeof why, "unreadable"));
			goto fail;
		}
	} else if (rootcert) {
		/* libpq verifies whenever a root certificate is given; say so rather
		 * than silently not verifying. */
		rc = scry__fail(err, SCRY_EINVAL,
			"an upstream root certificate is only used with --upstream-sslmode verify-ca or verify-full");
		goto fail;
	}
	if ((cert == NULL) != (key == NULL)) {
		rc = scry__fail(err, SCRY_EINVAL, "an upstream client certificate needs its key, and the reverse");
		goto fail;
	}
	if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		rc = scry__fail(err, SCRY_EINVAL, "cannot load the upstream client certificate '%s': %s", cert,
			ssl_reason(why, sizeof why, "unreadable"));
		goto fail;
	}
	if (key && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)) {
		rc = scry__fail(err, SCRY_EINVAL, "cannot load the upstream client key '%s' (or it does not match '%s'): %s",
			key, cert, ssl_reason(why, sizeof why, "unreadable"));
		goto fail;
	}
	scry__tls_ctx *t = scry__calloc(1, sizeof *t);
	if (!t) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto fail;
	}
	t->ctx = ctx;
	t->sslmode = sslmode;
	*out = t;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return rc;
}

void scry__tls_ctx_free(scry__tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ctx);
	scry__free(ctx);
}

scry__tls *scry__tls_new(scry__tls_ctx *ctx, int fd, bool server_role, const char *host)
{
	scry__tls *t = scry__calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx->ctx);
	if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
		SSL_free(t->ssl);
		scry__free(t);
		return NULL;
	}
	t->server_role = server_role;
	if (server_role) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (host && *host) {
			unsigned char ip[16];
			bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
			if (!is_ip)
				SSL_set_tlsext_host_name(t->ssl, host);
			if (ctx->sslmode == SCRY__SSL_VERIFY_FULL) {
				if (is_ip)
					X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
				else
					SSL_set1_host(t->ssl, host);
			}
		}
	}
	return t;
}

void scry__tls_free(scry__tls *t)
{
	if (!t)
		return;
	if (SSL_is_init_finished(t->ssl))
		SSL_shutdown(t->ssl); /* one close_notify, no wait for the peer's */
	SSL_free(t->ssl);
	ERR_clear_error();
	scry__free(t);
}

static int want_of(SSL *ssl, int rc)
{
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ: return SCRY__TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE: return SCRY__TLS_WANT_WRITE;
	default: return SCRY__TLS_ERROR;
	}
}

int scry__tls_handshake(scry__tls *t, char *why, size_t whysz)
{
	ERR_clear_error();
	int rc = SSL_do_handshake(t->ssl);
	if (rc == 1)
		return SCRY__TLS_DONE;
	int w = want_of(t->ssl, rc);
	if (w != SCRY__TLS_ERROR)
		return w;
	long vr = SSL_get_verify_result(t->ssl);
	if (!t->server_role && vr != X509_V_OK) {
		snprintf(why, whysz, "certificate verification failed: %s", X509_verify_cert_error_string(vr));
		ERR_clear_error();
	} else {
		int se = SSL_get_error(t->ssl, rc);
		ssl_reason(why, whysz, se == SSL_ERROR_SYSCALL ? (errno ? strerror(errno) : "connection closed during the TLS handshake")
		                                                : "TLS handshake failed");
	}
	return SCRY__TLS_ERROR;
}

bool scry__tls_alpn_postgresql(const scry__tls *t)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;
	SSL_get0_alpn_selected(t->ssl, &p, &n);
	return n == 10 && !memcmp(p, "postgresql", 10);
}

static ssize_t io_result(scry__tls *t, int rc, int *want)
{
	int se = SSL_get_error(t->ssl, rc);
	switch (se) {
	case SSL_ERROR_WANT_READ:
		*want = SCRY__TLS_WANT_READ;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*want = SCRY__TLS_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (!errno || errno == EAGAIN)
			errno = ECONNRESET; /* EOF without close_notify */
		return -1;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

/* One SSL_read_ex into rbuf, or SSL_write_ex of wbuf, with recv()/send()'s result. */
static ssize_t tls_io(scry__tls *t, void *rbuf, const void *wbuf, size_t n, int *want)
{
	ERR_clear_error();
	errno = 0;
	size_t done = 0;
	int rc = wbuf ? SSL_write_ex(t->ssl, wbuf, n, &done) : SSL_read_ex(t->ssl, rbuf, n, &done);
	if (rc == 1)
		return (ssize_t)done;
	return io_result(t, rc, want);
}

ssize_t scry__tls_read(scry__tls *t, void *buf, size_t n, int *want)
{
	return tls_io(t, buf, NULL, n, want);
}

ssize_t scry__tls_write(scry__tls *t, const void *buf, size_t n, int *want)
{
	return tls_io(t, NULL, buf, n, want);
}

bool scry__tls_has_pending(const scry__tls *t)
{
	return SSL_has_pending(t->ssl) != 0;
}
