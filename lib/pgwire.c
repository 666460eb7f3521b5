/*
 * lib/pgwire.c - sans-I/O decoder of the PostgreSQL v3 protocol.
 *
 * Each direction is framed independently (a 5-byte header, or a 4-byte
 * length for the untyped startup packets). Messages whose contents matter
 * are parsed in place when a feed holds them whole, and buffered only when
 * they straddle feeds. Messages whose contents never matter (passwords,
 * SASL/GSS, CopyData, DataRow) are skipped by counting, never buffered.
 *
 * Responses are matched to requests with a FIFO of "ops": every frontend
 * message that the server answers pushes one, every backend answer pops
 * the head. After an ErrorResponse the server skips messages up to Sync, and
 * so does the FIFO. Statements and portals are reference counted, so an
 * Execute in flight keeps the text and parameters it ran with even when the
 * client re-binds the unnamed portal before the result comes back.
 *
 * This file frames both directions, keeps COPY data and holds the public
 * API; the messages themselves are read in lib/pgwire_frontend.c and
 * lib/pgwire_backend.c, the state they share is in lib/pgwire_state.c.
 */
#include "pgwire_internal.h"
#include "util/fill.h"

#include <stdio.h>
#include <stdlib.h>

#define STARTUP_MAX 10000            /* the server's MAX_STARTUP_PACKET_LENGTH */

int scry__pgwire_fail(scry_pgwire *d, scry_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->fail_msg, sizeof d->fail_msg, fmt, ap);
	va_end(ap);
	d->state = SCRY_PGWIRE_FAILED;
	d->fail_code = code;
	return scry__fail(err, code, "%s", d->fail_msg);
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

/* Messages whose contents are never needed: skipped without buffering. */
static bool fe_skipped(char t) { return t == 'p' || t == 'd' || t == 'c' || t == 'f' || t == 'F' || t == 'H' || t == 'X'; }
static bool be_skipped(char t)
{
	return t == 'R' || t == 'D' || t == 'd' || t == 'c' || t == 'K' || t == 'A' || t == 'v' || t == 'N'
	       || t == 'S' || t == 'T' || t == 'n' || t == 'G' || t == 'H' || t == 'W' || t == 'V' || t == '1'
	       || t == '2' || t == '3' || t == 's' || t == 'I';
}
static bool fe_valid(char t) { return t && strchr("BCDEFHPQSXcdfp", t) != NULL; }
static bool be_valid(char t) { return t && strchr("123ACDEGHIKNRSTVWZcdnstv", t) != NULL; }

static int dispatch(scry_pgwire *d, int dir, char type, const unsigned char *b, size_t n, int64_t now,
                    scry_error *err)
{
	if (dir == SCRY_PGWIRE_FRONTEND) {
		d->stats.messages_frontend++;
		return scry__pgwire_fe_message(d, type, b, n, now, err);
	}
	d->stats.messages_backend++;
	return scry__pgwire_be_message(d, type, b, n, now, err);
}

/* The request COPY data belongs to: the latest Query or Execute the client
 * sent. Clients may stream CopyData before the server's CopyInResponse
 * arrives (asyncpg does), so this is not the head of the FIFO. */
static op *op_copy_target(scry_pgwire *d)
{
	for (size_t i = d->ops_count; i-- > 0;) {
		op *o = &d->ops[(d->ops_head + i) & (d->ops_cap - 1)];
		if (o->kind == OP_QUERY || o->kind == OP_EXECUTE)
			return o;
		if (o->kind != OP_SYNC)
			return NULL;
	}
	return NULL;
}

/* Called once a message's header is known and its body is to be skipped. */
static int skipped_header(scry_pgwire *d, int dir, char type, int64_t now, scry_error *err)
{
	if (dir == SCRY_PGWIRE_FRONTEND) {
		d->stats.messages_frontend++;
		/* CopyData: kept for a COPY FROM STDIN in progress */
		op *o = type == 'd' ? op_copy_target(d) : NULL;
		d->dir[dir].copy_sink = o && !o->cdropped;
		if (type == 'F' && !op_push_or_fail(d, OP_FUNC, now, err))
			return SCRY_ELIMIT;
		return 0;
	}
	if (type == 'D') {
		op *o = op_head(d);
		if (o)
			o->rows++;
		d->stats.messages_backend++;
		return 0;
	}
	/* The other skipped backend messages act on their header alone. */
	d->stats.messages_backend++;
	return scry__pgwire_be_message(d, type, NULL, 0, now, err);
}

/* Appends COPY data to the COPY in progress; over the limit the data is
 * dropped (the event is then marked SCRY_EVENT_F_COPY_DROPPED). */
static int copy_keep(scry_pgwire *d, const unsigned char *p, size_t k, scry_error *err)
{
	op *o = op_copy_target(d);
	if (!o || o->cdropped) {
		d->dir[SCRY_PGWIRE_FRONTEND].copy_sink = false;
		return 0;
	}
	if (o->clen + k > d->opts.max_copy_bytes) {
		scry__free(o->cbuf);
		o->cbuf = NULL;
		o->clen = o->ccap = 0;
		o->cdropped = true;
		d->dir[SCRY_PGWIRE_FRONTEND].copy_sink = false;
		return 0;
	}
	if (o->clen + k > o->ccap) {
		size_t cap = o->ccap ? o->ccap : 4096;
		while (cap < o->clen + k)
			cap *= 2;
		char *n = scry__realloc(o->cbuf, cap);
		if (!n)
			return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory keeping COPY data");
		o->cbuf = n;
		o->ccap = cap;
	}
	memcpy(o->cbuf + o->clen, p, k);
	o->clen += k;
	return 0;
}

/* Passes up to len bytes of a skipped body (keeping COPY data); sets *used. */
static int feed_skip(scry_pgwire *d, dirstate *ds, const unsigned char *p, size_t len, size_t *used,
                     scry_error *err)
{
	size_t k = len < ds->skip ? len : ds->skip;
	if (ds->copy_sink) {
		int rc = copy_keep(d, p, k, err);
		if (rc)
			return rc;
	}
	ds->skip -= k;
	*used = k;
	return 0;
}

/* Collects a body that straddles feeds; dispatches it once whole. */
static int feed_collect(scry_pgwire *d, int dir, const unsigned char *p, size_t len, size_t *used, int64_t now,
                        scry_error *err)
{
	dirstate *ds = &d->dir[dir];
	*used = scry__fill(ds->buf, &ds->have, ds->body_len, p, len);
	if (ds->have < ds->body_len)
		return 0;
	ds->collecting = false;
	int rc = dispatch(d, dir, ds->type, (unsigned char *)ds->buf, ds->body_len, now, err);
	if (rc)
		return rc;
	if (ds->cap > 65536) { /* do not keep a huge buffer around */
		scry__free(ds->buf);
		ds->buf = NULL;
		ds->cap = 0;
	}
	return 0;
}

/* The server's one-byte answer to SSLRequest/GSSENCRequest: 'N' goes on in
 * plain text; 'S' or 'G' leaves nothing more to decode. */
static int feed_ssl_reply(scry_pgwire *d, unsigned char b, scry_error *err)
{
	d->be_ssl_reply = false;
	if (b == 'S' || b == 'G') {
		d->state = SCRY_PGWIRE_ENCRYPTED;
		return 0;
	}
	if (b != 'N')
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "unexpected server answer 0x%02x to SSLRequest", b);
	return 0;
}

/* Checks a message's type and length; *skip: its body is passed, not parsed. */
static int header_check(scry_pgwire *d, int dir, char type, uint32_t mlen, bool *skip, scry_error *err)
{
	const char *from = dir == SCRY_PGWIRE_FRONTEND ? "client" : "server";
	*skip = false;
	if (dir == SCRY_PGWIRE_FRONTEND && d->fe_startup) {
		if (mlen < 8 || mlen > STARTUP_MAX)
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL,
				"invalid startup packet length %u from the client (not a PostgreSQL client?)", mlen);
		return 0;
	}
	if (!(dir == SCRY_PGWIRE_FRONTEND ? fe_valid(type) : be_valid(type)))
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "invalid message type 0x%02x from the %s",
		                         (unsigned char)type, from);
	if (mlen < 4)
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "invalid message length %u from the %s", mlen, from);
	*skip = dir == SCRY_PGWIRE_FRONTEND ? fe_skipped(type) : be_skipped(type);
	return 0;
}

/* A body after its header: skipped, parsed in place when this feed holds it
 * whole, else collected from the next feeds. Sets *used. */
static int feed_body(scry_pgwire *d, int dir, char type, size_t body, bool skip, const unsigned char *p, size_t len,
                     size_t *used, int64_t now, scry_error *err)
{
	dirstate *ds = &d->dir[dir];
	*used = 0;
	if (skip) {
		ds->skip = body;
		return skipped_header(d, dir, type, now, err);
	}
	if (body > d->opts.max_message_bytes)
		return scry__pgwire_fail(d, err, SCRY_ELIMIT, "message of %zu bytes from the %s exceeds the limit of %zu",
		                         body, dir == SCRY_PGWIRE_FRONTEND ? "client" : "server", d->opts.max_message_bytes);
	if (len >= body) { /* whole message in this feed: parse in place */
		*used = body;
		return dispatch(d, dir, type, p, body, now, err);
	}
	if (body + 1 > ds->cap) {
		scry__free(ds->buf);
		ds->cap = body + 1;
		if (!(ds->buf = scry__malloc(ds->cap))) {
			ds->cap = 0;
			return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
		}
	}
	ds->type = type;
	ds->body_len = body;
	ds->have = 0;
	ds->collecting = true;
	return 0;
}

/* A message from its first byte: its header (read in place, or completed
 * across feeds), then its body. Sets *used. */
static int feed_message(scry_pgwire *d, int dir, const unsigned char *p, size_t len, size_t *used, int64_t now,
                        scry_error *err)
{
	dirstate *ds = &d->dir[dir];
	bool untyped = dir == SCRY_PGWIRE_FRONTEND && d->fe_startup;
	size_t hsz = untyped ? 4 : 5;
	const unsigned char *h;
	if (ds->hdr_have == 0 && len >= hsz) {
		h = p;
		*used = hsz;
	} else {
		*used = scry__fill(ds->hdr, &ds->hdr_have, hsz, p, len);
		if (ds->hdr_have < hsz)
			return 0;
		ds->hdr_have = 0;
		h = ds->hdr;
	}
	char type = untyped ? 0 : (char)h[0];
	uint32_t mlen = be32(h + (untyped ? 0 : 1));
	bool skip;
	int rc = header_check(d, dir, type, mlen, &skip, err);
	if (rc)
		return rc;
	size_t hused = *used, bused;
	rc = feed_body(d, dir, type, mlen - 4, skip, p + hused, len - hused, &bused, now, err);
	*used = hused + bused;
	return rc;
}

static int feed_dir(scry_pgwire *d, int dir, const unsigned char *p, size_t len, int64_t now, scry_error *err)
{
	dirstate *ds = &d->dir[dir];
	while (len > 0) {
		if (d->state == SCRY_PGWIRE_ENCRYPTED || d->state == SCRY_PGWIRE_CANCEL)
			return 0;
		size_t used = 1;
		int rc;
		if (ds->skip)
			rc = feed_skip(d, ds, p, len, &used, err);
		else if (ds->collecting)
			rc = feed_collect(d, dir, p, len, &used, now, err);
		else if (dir == SCRY_PGWIRE_BACKEND && d->be_ssl_reply)
			rc = feed_ssl_reply(d, *p, err);
		else
			rc = feed_message(d, dir, p, len, &used, now, err);
		if (rc)
			return rc;
		p += used;
		len -= used;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

void scry_pgwire_options_init(scry_pgwire_options *opts)
{
	if (opts)
		*opts = (scry_pgwire_options)SCRY_PGWIRE_OPTIONS_INIT;
}

int scry_pgwire_new(scry_pgwire **out, const scry_pgwire_callbacks *cb, const scry_pgwire_options *opts,
                    scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_pgwire_new: out is required");
	*out = NULL;
	scry_pgwire_options o;
	scry_pgwire_callbacks c;
	int vrc = scry__opts_copy(err, &scry__abi_pgwire_options, &o, opts);
	if (!vrc)
		vrc = scry__opts_copy(err, &scry__abi_pgwire_callbacks, &c, cb);
	if (vrc)
		return vrc;
	scry_pgwire *d = scry__calloc(1, sizeof *d);
	if (!d)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	d->cb = c;
	d->opts = o;
	if (!d->opts.max_message_bytes)
		d->opts.max_message_bytes = 256u << 20;
	if (!d->opts.max_query_bytes)
		d->opts.max_query_bytes = 16u << 20;
	if (!d->opts.max_copy_bytes)
		d->opts.max_copy_bytes = 16u << 20;
	if (!d->opts.max_pending)
		d->opts.max_pending = 1000000;
	d->fe_startup = true;
	scry__pgwire_maps_init(d);
	*out = d;
	return 0;
}

void scry_pgwire_free(scry_pgwire *d)
{
	if (!d)
		return;
	d->freeing = true;
	while (d->ops_count)
		op_pop(d);
	scry__free(d->ops);
	scry__pgwire_map_free(&d->portals);
	scry__pgwire_map_free(&d->stmts);
	scry__free(d->dir[0].buf);
	scry__free(d->dir[1].buf);
	scry__free(d);
}

int scry_pgwire_feed(scry_pgwire *d, scry_pgwire_dir dir, const void *data, size_t len, int64_t now_us,
                     scry_error *err)
{
	if (!d || (len && !data) || (dir != SCRY_PGWIRE_FRONTEND && dir != SCRY_PGWIRE_BACKEND))
		return scry__fail(err, SCRY_EINVAL, "scry_pgwire_feed: invalid arguments");
	if (d->state == SCRY_PGWIRE_FAILED)
		return scry__fail(err, d->fail_code, "%s", d->fail_msg);
	int rc = feed_dir(d, dir, data, len, now_us, err);
	d->stats.pending = d->ops_count;
	return rc;
}

scry_pgwire_conn_state scry_pgwire_state(const scry_pgwire *d)
{
	return d ? d->state : SCRY_PGWIRE_FAILED;
}

int scry_pgwire_tx_status(const scry_pgwire *d) { return d ? d->tx_status : 0; }

int scry_pgwire_stats_get(const scry_pgwire *d, scry_pgwire_stats *out)
{
	scry_pgwire_stats st = { 0 };
	if (d) {
		st = d->stats;
		st.pending = d->ops_count;
	}
	return scry__out_copy(NULL, &scry__abi_pgwire_stats, out, &st);
}
