/*
 * lib/core.c - version, errors, allocator, buffers, clocks, varints.
 */
#include "internal.h"
#include "util/json.h" /* scry__utf8_len */

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static scry_allocator g_alloc = { malloc, realloc, free };

const char *scry_version(void) { return SCRY_VERSION_STRING; }

int scry_version_number(void) { return SCRY_VERSION_NUMBER; }

int scry_set_allocator(const scry_allocator *a)
{
	if (a && a->malloc_fn && a->realloc_fn && a->free_fn)
		g_alloc = *a;
	else
		g_alloc = (scry_allocator){ malloc, realloc, free };
	return 0;
}

void *scry__malloc(size_t n) { return g_alloc.malloc_fn(n ? n : 1); }
void *scry__realloc(void *p, size_t n) { return g_alloc.realloc_fn(p, n ? n : 1); }
void scry__free(void *p) { if (p) g_alloc.free_fn(p); }

void *scry__calloc(size_t count, size_t n)
{
	if (n && count > SIZE_MAX / n)
		return NULL;
	void *p = scry__malloc(count * n);
	if (p)
		memset(p, 0, count * n);
	return p;
}

char *scry__strndup(const char *s, size_t n)
{
	char *p = scry__malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

char *scry__strdup(const char *s) { return s ? scry__strndup(s, strlen(s)) : NULL; }

void scry_error_clear(scry_error *err)
{
	if (err)
		*err = (scry_error)SCRY_ERROR_INIT;
}

const char *scry_strerror(int code)
{
	switch (code) {
	case SCRY_OK: return "success";
	case SCRY_EINVAL: return "invalid argument";
	case SCRY_ENOMEM: return "out of memory";
	case SCRY_EIO: return "I/O error";
	case SCRY_EPARSE: return "parse error";
	case SCRY_ESTORE: return "workload store error";
	case SCRY_ESCHEMA: return "unsupported store schema";
	case SCRY_ECORRUPT: return "corrupt file";
	case SCRY_ENOTFOUND: return "not found";
	case SCRY_ECONNECT: return "cannot connect to PostgreSQL";
	case SCRY_EPG: return "PostgreSQL error";
	case SCRY_EPROTOCOL: return "protocol error";
	case SCRY_ECANCELED: return "cancelled";
	case SCRY_EMIGRATION: return "migration failed";
	case SCRY_ELIMIT: return "limit exceeded";
	case SCRY_EUNSUPPORTED: return "not supported";
	default: return "unknown error";
	}
}

static bool ci_prefix(const char *s, const char *word)
{
	for (; *word; s++, word++)
		if ((*s | 0x20) != *word)
			return false;
	return true;
}

char *scry_redact_secrets(const char *in, char *out, size_t n)
{
	if (!out || !n)
		return out;
	size_t j = 0;
#define PUT(c) do { if (j + 1 < n) out[j++] = (c); } while (0)
	for (const char *p = in ? in : ""; *p;) {
		if (ci_prefix(p, "password")) {
			const char *q = p + 8;
			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '=') {
				for (const char *c = p; c <= q; c++)
					PUT(*c);
				q++;
				while (*q == ' ' || *q == '\t')
					q++;
				if (*q == '\'') { /* conninfo quoting: \' and \\ escape */
					for (q++; *q && *q != '\''; q++)
						if (*q == '\\' && q[1])
							q++;
					q += *q == '\'';
				} else {
					while (*q && *q != ' ' && *q != '\t' && *q != '\n' && *q != '&' && *q != '"' &&
					       *q != '\'' && *q != ',' && *q != ')')
						q++;
				}
				for (int k = 0; k < 3; k++)
					PUT('*');
				p = q;
				continue;
			}
		}
		if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
			/* scheme://user:password@host: the last '@' before the path. */
			const char *u = p + 3, *end = u, *at = NULL, *colon = NULL;
			while (*end && *end != '/' && *end != ' ' && *end != '\'' && *end != '"' && *end != '\n') {
				if (*end == '@')
					at = end;
				else if (*end == ':' && !colon && !at)
					colon = end;
				end++;
			}
			if (at && colon && colon < at) {
				for (const char *c = p; c <= colon; c++)
					PUT(*c);
				for (int k = 0; k < 3; k++)
					PUT('*');
				p = at;
				continue;
			}
		}
		PUT(*p);
		p++;
	}
#undef PUT
	out[j] = 0;
	return out;
}

int scry_escape_controls(const char *s, size_t n, scry_buf *out)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		bool c1 = c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9F;
		if (!((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F || c1))
			continue;
		if (scry__buf_put(out, s + start, i - start))
			return SCRY_ENOMEM;
		int rc = c1 ? scry__buf_printf(out, "\\u%04x", (unsigned char)s[++i])
		            : scry__buf_printf(out, "\\x%02x", c);
		if (rc)
			return SCRY_ENOMEM;
		start = i + 1;
	}
	return scry__buf_put(out, s + start, n - start) ? SCRY_ENOMEM : 0;
}

static int fail_v(scry_error *err, int code, int sys_code, const char *fmt, va_list ap)
{
	if (err) {
		char raw[sizeof err->message];
		err->code = code;
		err->sys_code = sys_code;
		err->sqlstate[0] = 0;
		vsnprintf(raw, sizeof raw, fmt, ap);
		scry_redact_secrets(raw, err->message, sizeof err->message);
	}
	return code;
}

int scry__fail(scry_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(err, code, 0, fmt, ap);
	va_end(ap);
	return code;
}

int scry__vfail(scry_error *err, int code, const char *fmt, va_list ap)
{
	return fail_v(err, code, 0, fmt, ap);
}

int scry__fail_sys(scry_error *err, int code, int sys_code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(err, code, sys_code, fmt, ap);
	va_end(ap);
	return code;
}

void scry__log(scry_log_fn fn, void *ctx, scry_log_level level, const char *fmt, ...)
{
	if (!fn)
		return;
	char raw[1024], msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	fn(ctx, level, scry_redact_secrets(raw, msg, sizeof msg));
}

int scry__array_grow(void **arr, size_t *cap, size_t n, size_t size, size_t first)
{
	if (n < *cap)
		return 0;
	size_t want = *cap ? *cap : first;
	while (want <= n) {
		if (want > SIZE_MAX / 2 / size)
			return SCRY_ENOMEM;
		want *= 2;
	}
	void *p = scry__realloc(*arr, want * size);
	if (!p)
		return SCRY_ENOMEM;
	*arr = p;
	*cap = want;
	return 0;
}

void scry__pg_one_line(const char *in, char *out, size_t n)
{
	size_t j = 0;
	for (const char *p = in ? in : ""; *p && j + 3 < n; p++) {
		if (*p == '\n') {
			if (p[1])
				out[j++] = ';', out[j++] = ' ';
		} else {
			out[j++] = *p;
		}
	}
	out[j] = 0;
}

void scry__pg_result_message(const PGresult *r, PGconn *c, char *buf, size_t n)
{
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	scry__pg_one_line(m ? m : PQerrorMessage(c), buf, n);
	size_t k = strlen(buf);
	while (k && buf[k - 1] == ' ')
		buf[--k] = 0;
}

int scry__pg_connect_fail(scry_error *err, PGconn *pg, const char *what)
{
	char msg[300];
	scry__pg_one_line(pg ? PQerrorMessage(pg) : "out of memory", msg, sizeof msg);
	const char *host = pg ? PQhost(pg) : NULL, *port = pg ? PQport(pg) : NULL, *user = pg ? PQuser(pg) : NULL;
	bool auth = strstr(msg, "password") || strstr(msg, "authentication");
	return scry__fail(err, SCRY_ECONNECT,
		"cannot connect to %s%shost %s port %s as user %s: %s. %s",
		what ? what : "", what ? " at " : "",
		host && *host ? host : "(default socket)", port && *port ? port : "(default)",
		user && *user ? user : "(default)", msg,
		auth ? "Check the user and password (in the connection string, PGPASSWORD or ~/.pgpass) and pg_hba.conf."
		     : "Check that the server is running and reachable at that address, and the connection string.");
}

/*
 * The sticky failure of a scry_buf (libgit2's git_str OOM pattern): after
 * one failed append the buffer refuses every later one, so a long rendering
 * can check once at the end (scry__buf_failed) without ever returning a
 * truncated text as a success. The failure is the top bit of `asize` (no
 * buffer is that large): the bytes already written stay where they were,
 * so offsets a module keeps into a buffer stay valid after a failure.
 */
#define BUF_FAILED (~(SIZE_MAX >> 1))

int scry__buf_fail(scry_buf *b, int code)
{
	b->asize |= BUF_FAILED;
	return code;
}

bool scry__buf_failed(const scry_buf *b)
{
	return (b->asize & BUF_FAILED) != 0;
}

void scry__buf_inherit(scry_buf *b, const scry_buf *from)
{
	if (scry__buf_failed(from))
		scry__buf_fail(b, SCRY_ENOMEM);
}

void scry_buf_dispose(scry_buf *b)
{
	if (!b)
		return;
	scry__free(b->ptr);
	b->ptr = NULL;
	b->size = b->asize = 0;
}

void scry__buf_clear(scry_buf *b)
{
	b->asize &= ~BUF_FAILED; /* starting over forgets a failure */
	b->size = 0;
	if (b->ptr)
		b->ptr[0] = 0;
}

int scry__buf_grow(scry_buf *b, size_t extra)
{
	if (scry__buf_failed(b))
		return SCRY_ENOMEM;
	if (extra > SIZE_MAX / 4 - b->size)
		return scry__buf_fail(b, SCRY_ENOMEM);
	if (b->size + extra + 1 <= b->asize)
		return 0;
	size_t want = b->asize ? b->asize : 64;
	while (want < b->size + extra + 1)
		want *= 2;
	char *p = scry__realloc(b->ptr, want);
	if (!p)
		return scry__buf_fail(b, SCRY_ENOMEM);
	b->ptr = p;
	b->asize = want;
	return 0;
}

int scry__buf_put(scry_buf *b, const void *data, size_t n)
{
	if (scry__buf_grow(b, n))
		return SCRY_ENOMEM;
	if (n)
		memcpy(b->ptr + b->size, data, n);
	b->size += n;
	b->ptr[b->size] = 0;
	return 0;
}

int scry__buf_puts(scry_buf *b, const char *s) { return scry__buf_put(b, s, strlen(s)); }

int scry__buf_vprintf(scry_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return scry__buf_fail(b, SCRY_EINVAL);
	if (scry__buf_grow(b, (size_t)n))
		return SCRY_ENOMEM;
	vsnprintf(b->ptr + b->size, (size_t)n + 1, fmt, ap);
	b->size += (size_t)n;
	return 0;
}

int scry__buf_printf(scry_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = scry__buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

int scry__buf_json_string(scry_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (scry__buf_grow(b, n + 2))
		return SCRY_ENOMEM;
	b->ptr[b->size++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 0;
		switch (c) {
		case '"': memcpy(esc, "\\\"", 2); elen = 2; break;
		case '\\': memcpy(esc, "\\\\", 2); elen = 2; break;
		case '\n': memcpy(esc, "\\n", 2); elen = 2; break;
		case '\r': memcpy(esc, "\\r", 2); elen = 2; break;
		case '\t': memcpy(esc, "\\t", 2); elen = 2; break;
		default:
			if (c < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				elen = 6;
			} else if (c >= 0x80) {
				/* JSON is UTF-8: a valid sequence goes as it is, any other byte (a LATIN1
				 * database's text) becomes U+FFFD, so that every reader accepts the output. */
				size_t k = scry__utf8_len((const unsigned char *)s + i, n - i);
				if (k) {
					if (scry__buf_put(b, s + i, k))
						return SCRY_ENOMEM;
					i += k - 1;
					continue;
				}
				memcpy(esc, "\\ufffd", 6);
				elen = 6;
			}
		}
		if (elen) {
			if (scry__buf_put(b, esc, elen))
				return SCRY_ENOMEM;
		} else {
			if (scry__buf_grow(b, 1))
				return SCRY_ENOMEM;
			b->ptr[b->size++] = (char)c;
		}
	}
	if (scry__buf_grow(b, 1))
		return SCRY_ENOMEM;
	b->ptr[b->size++] = '"';
	b->ptr[b->size] = 0;
	return 0;
}

int scry_json_string(const char *s, size_t n, scry_buf *out)
{
	if (!out || (!s && n))
		return SCRY_EINVAL;
	return scry__buf_json_string(out, s ? s : "", n) ? SCRY_ENOMEM : 0;
}

int scry__buf_conninfo_kv(scry_buf *b, const char *kw, const char *val)
{
	int rc = scry__buf_printf(b, "%s%s='", b->size ? " " : "", kw);
	for (const char *p = val; !rc && *p; p++) {
		if (*p == '\'' || *p == '\\')
			rc = scry__buf_put(b, "\\", 1);
		if (!rc)
			rc = scry__buf_put(b, p, 1);
	}
	return rc ? rc : scry__buf_puts(b, "'");
}

int scry__buf_varint(scry_buf *b, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;
	do {
		unsigned char byte = v & 0x7f;
		v >>= 7;
		tmp[n++] = byte | (v ? 0x80 : 0);
	} while (v);
	return scry__buf_put(b, tmp, n);
}

size_t scry__read_varint(const unsigned char *p, size_t n, uint64_t *v)
{
	uint64_t r = 0;
	for (size_t i = 0; i < n && i < 10; i++) {
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			return i + 1;
		}
	}
	return 0;
}

int scry__pack_params(scry_buf *b, const scry_param *params, int n)
{
	for (int i = 0; i < n; i++) {
		const scry_param *p = &params[i];
		int32_t len = p->value ? p->length : -1;
		if (scry__buf_varint(b, p->type_oid) || scry__buf_varint(b, (uint64_t)p->format) ||
		    scry__buf_varint(b, (uint64_t)(int64_t)(len + 1)))
			return SCRY_ENOMEM;
		if (len > 0 && scry__buf_put(b, p->value, (size_t)len))
			return SCRY_ENOMEM;
	}
	return 0;
}

int64_t scry__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t scry__monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void scry_fingerprint_format(uint64_t fp, char out[17])
{
	static const char digits[] = "0123456789abcdef"; /* as %016x, without printf's cost per call */
	for (int i = 15; i >= 0; i--, fp >>= 4)
		out[i] = digits[fp & 15];
	out[16] = 0;
}

int scry_fingerprint_parse(const char *hex, uint64_t *out)
{
	if (!hex || !*hex || strlen(hex) > 16)
		return SCRY_EINVAL;
	uint64_t v = 0;
	for (const char *p = hex; *p; p++) {
		int d;
		if (*p >= '0' && *p <= '9') d = *p - '0';
		else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F') d = *p - 'A' + 10;
		else return SCRY_EINVAL;
		v = (v << 4) | (uint64_t)d;
	}
	*out = v;
	return 0;
}
