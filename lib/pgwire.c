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
 */
#include "internal.h"
#include "util/map.h"

#include <stdio.h>
#include <stdlib.h>

#define STARTUP_MAX 10000            /* the server's MAX_STARTUP_PACKET_LENGTH */
#define CODE_SSL 80877103u
#define CODE_GSSENC 80877104u
#define CODE_CANCEL 80877102u

/* ------------------------------------------------------------------ */
/* Statements, portals and a small string-keyed map                    */
/* ------------------------------------------------------------------ */

typedef struct stmt {
	int refs;
	char *query;
	size_t qlen;
	int noids;
	uint32_t *oids;
} stmt;

struct scry_pgwire;

typedef struct portal {
	int refs;
	stmt *st;
	int nparams;
	scry_param *params; /* values point into `data` */
	char *data;
	/* A row-limited Execute that ended in PortalSuspended: the portal's one
	 * execution goes on with the next Execute, and is reported once, when
	 * the portal completes, fails or goes away. */
	struct scry_pgwire *d;
	bool suspended, gone;
	int64_t fetch, susp_rows, susp_start, susp_end;
} portal;

static void portal_gone_suspended(portal *p);

static void stmt_unref(stmt *s)
{
	if (s && --s->refs == 0) {
		scry__free(s->query);
		scry__free(s->oids);
		scry__free(s);
	}
}

static void portal_unref(portal *p)
{
	if (p && --p->refs == 0) {
		if (p->suspended)
			portal_gone_suspended(p);
		stmt_unref(p->st);
		scry__free(p->params);
		scry__free(p->data);
		scry__free(p);
	}
}

/* name -> stmt* or portal*; the unnamed ("") one lives outside the table.
 * named.unref releases a value that leaves it. */
typedef struct namemap {
	scry__strmap named;
	void *unnamed;
} namemap;

static void *map_get(namemap *m, const char *name)
{
	return *name ? scry__strmap_get(&m->named, name) : m->unnamed;
}

static void map_del(namemap *m, const char *name)
{
	if (*name) {
		scry__strmap_del(&m->named, name);
		return;
	}
	if (m->unnamed)
		m->named.unref(m->unnamed);
	m->unnamed = NULL;
}

/* Stores obj (taking the caller's reference) under name, replacing any. */
static int map_put(namemap *m, const char *name, void *obj)
{
	if (*name)
		return scry__strmap_put(&m->named, name, obj);
	map_del(m, name);
	m->unnamed = obj;
	return 0;
}

static void map_clear_named(namemap *m)
{
	scry__strmap_clear(&m->named);
}

static void map_free(namemap *m)
{
	map_del(m, "");
	scry__strmap_free(&m->named);
}

/* ------------------------------------------------------------------ */
/* Outstanding requests                                                */
/* ------------------------------------------------------------------ */

enum op_kind { OP_QUERY, OP_PARSE, OP_BIND, OP_DESCRIBE, OP_EXECUTE, OP_CLOSE, OP_SYNC, OP_FUNC };

typedef struct op {
	unsigned char kind;
	bool copy;                 /* a COPY started within it */
	stmt *st;                  /* PARSE, DESCRIBE (statement) */
	portal *po;                /* BIND, EXECUTE */
	int64_t start;             /* when the request (or the statement) began */
	int64_t rows;              /* DataRows seen (for PortalSuspended) */
	int64_t fetch;             /* EXECUTE: its row limit, 0 = none */
	/* COPY FROM STDIN: the client's CopyData payloads, up to max_copy_bytes */
	char *cbuf;
	size_t clen, ccap;
	bool cdropped;
	/* OP_QUERY: the text, its statements, the one running now. */
	char *text;
	scry_statement_span *spans;
	size_t nspans, cur;
} op;

/* Framing state of one direction. */
typedef struct dirstate {
	unsigned char hdr[5];
	size_t hdr_have;
	char type;           /* 0 for an untyped startup packet */
	size_t body_len;
	size_t skip;         /* bytes of a skipped body still to pass */
	bool collecting;
	bool copy_sink;      /* the skipped body is COPY data to keep */
	char *buf;
	size_t have, cap;
} dirstate;

struct scry_pgwire {
	scry_pgwire_callbacks cb;
	scry_pgwire_options opts;
	scry_pgwire_conn_state state;
	int fail_code;
	char fail_msg[256];
	dirstate dir[2];
	bool fe_startup;      /* the next frontend message is untyped */
	bool be_ssl_reply;    /* the next backend byte answers SSLRequest/GSSENCRequest */
	int tx_status;
	namemap stmts, portals;
	op *ops;              /* ring buffer */
	size_t ops_head, ops_count, ops_cap;
	scry_pgwire_stats stats;
	bool freeing;         /* scry_pgwire_free(): report nothing more */
};

static void unref_stmt_v(void *p) { stmt_unref(p); }
static void unref_portal_v(void *p) { portal_unref(p); }

static void op_release(op *o)
{
	stmt_unref(o->st);
	portal_unref(o->po);
	scry__free(o->text);
	scry__free(o->cbuf);
	scry_statement_spans_free(o->spans);
}

static op *op_head(scry_pgwire *d)
{
	return d->ops_count ? &d->ops[d->ops_head] : NULL;
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

static void op_pop(scry_pgwire *d)
{
	op_release(&d->ops[d->ops_head]);
	d->ops_head = (d->ops_head + 1) & (d->ops_cap - 1);
	d->ops_count--;
}

static op *op_push(scry_pgwire *d, int kind, int64_t now)
{
	if (d->ops_count >= d->opts.max_pending)
		return NULL;
	if (d->ops_count == d->ops_cap) {
		size_t ncap = d->ops_cap ? d->ops_cap * 2 : 16;
		op *n = scry__malloc(ncap * sizeof *n);
		if (!n)
			return NULL;
		for (size_t i = 0; i < d->ops_count; i++)
			n[i] = d->ops[(d->ops_head + i) & (d->ops_cap - 1)];
		scry__free(d->ops);
		d->ops = n;
		d->ops_cap = ncap;
		d->ops_head = 0;
	}
	op *o = &d->ops[(d->ops_head + d->ops_count) & (d->ops_cap - 1)];
	memset(o, 0, sizeof *o);
	o->kind = (unsigned char)kind;
	o->start = now;
	d->ops_count++;
	return o;
}

/* ------------------------------------------------------------------ */
/* Errors and small readers                                            */
/* ------------------------------------------------------------------ */

static int fail(scry_pgwire *d, scry_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(scry_pgwire *d, scry_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->fail_msg, sizeof d->fail_msg, fmt, ap);
	va_end(ap);
	d->state = SCRY_PGWIRE_FAILED;
	d->fail_code = code;
	return scry__fail(err, code, "%s", d->fail_msg);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* A bounds-checked cursor over a message body. */
typedef struct rd {
	const unsigned char *p, *end;
	bool bad;
} rd;

static const char *rd_str(rd *r)
{
	const unsigned char *z = r->bad ? NULL : memchr(r->p, 0, (size_t)(r->end - r->p));
	if (!z) {
		r->bad = true;
		return "";
	}
	const char *s = (const char *)r->p;
	r->p = z + 1;
	return s;
}

static uint32_t rd_u32(rd *r)
{
	if (r->bad || r->end - r->p < 4) {
		r->bad = true;
		return 0;
	}
	uint32_t v = be32(r->p);
	r->p += 4;
	return v;
}

static uint16_t rd_u16(rd *r)
{
	if (r->bad || r->end - r->p < 2) {
		r->bad = true;
		return 0;
	}
	uint16_t v = be16(r->p);
	r->p += 2;
	return v;
}

static const unsigned char *rd_bytes(rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *s = r->p;
	r->p += n;
	return s;
}

/* ------------------------------------------------------------------ */
/* Emitting events                                                     */
/* ------------------------------------------------------------------ */

static void emit(scry_pgwire *d, scry_event_kind kind, const char *query, size_t qlen,
                 const portal *po, const op *o, int64_t start, int64_t end, int64_t rows,
                 const char *sqlstate, const char *message)
{
	d->stats.events++;
	if (!d->cb.on_event)
		return;
	scry_event ev;
	memset(&ev, 0, sizeof ev);
	ev.start_us = start + d->opts.clock_offset_us;
	ev.duration_us = end >= start ? end - start : -1;
	ev.kind = kind;
	ev.query = query;
	ev.query_len = qlen < d->opts.max_query_bytes ? qlen : d->opts.max_query_bytes;
	if (ev.query_len < qlen)
		ev.flags |= SCRY_EVENT_F_TRUNCATED;
	if (ev.query_len == 0)
		ev.query = ""; /* query_len 0 means strlen(): keep it consistent */
	if (po) {
		ev.nparams = po->nparams;
		ev.params = po->params;
		ev.fetch_rows = po->suspended ? po->fetch : 0;
		if (po->gone)
			ev.flags |= SCRY_EVENT_F_PORTAL_OPEN;
	}
	if (o && kind == SCRY_EVENT_COPY) {
		if (o->cdropped)
			ev.flags |= SCRY_EVENT_F_COPY_DROPPED;
		else if (o->clen) {
			ev.copy_data = o->cbuf;
			ev.copy_len = o->clen;
		}
	}
	ev.rows = rows;
	if (sqlstate) {
		memcpy(ev.sqlstate, sqlstate, 6);
		/* A client's CancelRequest ends its statement with this message (the
		 * server's own statement_timeout says "statement timeout"). */
		if (!strcmp(sqlstate, "57014") && message && strstr(message, "user request"))
			ev.flags |= SCRY_EVENT_F_CANCELLED;
	}
	ev.error_message = message;
	d->cb.on_event(d->cb.ctx, &ev);
}

/* Rows of a CommandComplete tag: the last number of "SELECT 5",
 * "INSERT 0 5", "UPDATE 5", "COPY 5"...; -1 for tags without a count. */
static int64_t tag_rows(const char *tag)
{
	const char *sp = strrchr(tag, ' ');
	if (!sp || !sp[1])
		return -1;
	int64_t v = 0;
	for (const char *p = sp + 1; *p; p++) {
		if (*p < '0' || *p > '9' || !scry__dec_digit(&v, *p - '0'))
			return -1; /* not a count, or beyond int64: unknown */
	}
	return v;
}

/* The statements of a simple Query text. Texts with no ';' inside and no
 * comment (the common single statement) skip the scanner. */
static int split_query(const char *text, size_t len, scry_statement_span **spans, size_t *n)
{
	size_t e = len;
	while (e > 0 && (text[e - 1] == ' ' || text[e - 1] == '\n' || text[e - 1] == '\t' || text[e - 1] == '\r'))
		e--;
	if (e > 0 && text[e - 1] == ';')
		e--;
	while (e > 0 && (text[e - 1] == ' ' || text[e - 1] == '\n' || text[e - 1] == '\t' || text[e - 1] == '\r'))
		e--;
	bool simple = e > 0 && text[0] != ' ' && text[0] != '\n' && text[0] != '\t' && text[0] != '\r'
	              && !memchr(text, ';', e) && !memchr(text, '-', e) && !memchr(text, '/', e);
	if (!simple) {
		if (scry_fingerprint_split(text, len, spans, n, NULL) == 0)
			return 0;
		/* Not splittable (a syntax error): the whole text is one statement,
		 * as the server will report it. */
		size_t s = 0;
		while (s < e && (text[s] == ' ' || text[s] == '\n' || text[s] == '\t' || text[s] == '\r'))
			s++;
		if (s >= e) {
			*spans = NULL;
			*n = 0;
			return 0;
		}
		*spans = scry__malloc(sizeof **spans);
		if (!*spans)
			return SCRY_ENOMEM;
		(*spans)[0] = (scry_statement_span){ s, e - s };
		*n = 1;
		return 0;
	}
	*spans = scry__malloc(sizeof **spans);
	if (!*spans)
		return SCRY_ENOMEM;
	(*spans)[0] = (scry_statement_span){ 0, e };
	*n = 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Frontend messages                                                   */
/* ------------------------------------------------------------------ */

static int fe_startup(scry_pgwire *d, const unsigned char *b, size_t n, scry_error *err)
{
	if (n < 4)
		return fail(d, err, SCRY_EPROTOCOL, "client startup packet too short (%zu bytes)", n + 4);
	uint32_t code = be32(b);
	if (code == CODE_SSL || code == CODE_GSSENC) {
		if (n != 4)
			return fail(d, err, SCRY_EPROTOCOL, "malformed SSLRequest/GSSENCRequest");
		d->be_ssl_reply = true; /* stay in startup: another packet follows */
		return 0;
	}
	if (code == CODE_CANCEL) {
		d->state = SCRY_PGWIRE_CANCEL;
		d->fe_startup = false;
		return 0;
	}
	int major = (int)(code >> 16), minor = (int)(code & 0xffff);
	if (major != 3)
		return fail(d, err, SCRY_EPROTOCOL,
			"unsupported frontend protocol %d.%d in the client's startup packet (not a PostgreSQL client?)",
			major, minor);
	rd r = { b + 4, b + n, false };
	scry_pgwire_startup su = { major, minor, "", NULL, NULL, NULL };
	scry_buf params = SCRY_BUF_INIT;
	int prc = 0;
	for (;;) {
		const char *k = rd_str(&r);
		if (r.bad || !*k)
			break;
		const char *v = rd_str(&r);
		if (r.bad)
			break;
		if (!strcmp(k, "user"))
			su.user = v;
		else if (!strcmp(k, "database"))
			su.database = v;
		else {
			if (!strcmp(k, "application_name"))
				su.application = v;
			/* Every other parameter is session state (a GUC, or `options`);
			 * `_pq_.` protocol extensions and replication are not. */
			if (strncmp(k, "_pq_.", 5) && strcmp(k, "replication") && !prc)
				prc = scry__session_param_put(&params, k, v);
		}
	}
	if (r.bad || prc) {
		scry_buf_dispose(&params);
		return prc ? fail(d, err, SCRY_ENOMEM, "out of memory")
		           : fail(d, err, SCRY_EPROTOCOL, "malformed startup packet from the client");
	}
	su.params = params.ptr ? params.ptr : "";
	if (!su.database || !*su.database)
		su.database = su.user;
	d->fe_startup = false;
	d->state = SCRY_PGWIRE_AUTH;
	if (d->cb.on_startup)
		d->cb.on_startup(d->cb.ctx, &su);
	scry_buf_dispose(&params);
	return 0;
}

static int fe_parse(scry_pgwire *d, const unsigned char *b, size_t n, int64_t now, scry_error *err)
{
	rd r = { b, b + n, false };
	const char *name = rd_str(&r);
	const char *q = rd_str(&r);
	uint16_t noids = rd_u16(&r);
	const unsigned char *oids = rd_bytes(&r, (size_t)noids * 4);
	if (r.bad)
		return fail(d, err, SCRY_EPROTOCOL, "malformed Parse message from the client");
	stmt *s = scry__calloc(1, sizeof *s);
	if (!s)
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	s->refs = 1;
	s->qlen = strlen(q);
	s->query = scry__strndup(q, s->qlen);
	s->noids = noids;
	s->oids = noids ? scry__malloc((size_t)noids * sizeof *s->oids) : NULL;
	if (!s->query || (noids && !s->oids)) {
		stmt_unref(s);
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	}
	for (int i = 0; i < noids; i++)
		s->oids[i] = be32(oids + 4 * i);
	op *o = op_push(d, OP_PARSE, now);
	if (!o) {
		stmt_unref(s);
		return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
	}
	s->refs++;
	o->st = s;
	if (map_put(&d->stmts, name, s)) {
		stmt_unref(s);
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	}
	return 0;
}

static int fe_bind(scry_pgwire *d, const unsigned char *b, size_t n, int64_t now, scry_error *err)
{
	rd r = { b, b + n, false };
	const char *pname = rd_str(&r);
	const char *sname = rd_str(&r);
	uint16_t nfmt = rd_u16(&r);
	const unsigned char *fmts = rd_bytes(&r, (size_t)nfmt * 2);
	uint16_t np = rd_u16(&r);
	if (r.bad)
		return fail(d, err, SCRY_EPROTOCOL, "malformed Bind message from the client");
	if (nfmt > 1 && nfmt != np)
		return fail(d, err, SCRY_EPROTOCOL, "Bind message has %u parameter formats for %u parameters", nfmt, np);
	/* Values: one copy of the value area, parameters pointing into it. */
	const unsigned char *vstart = r.p;
	for (int i = 0; i < np; i++) {
		int32_t len = (int32_t)rd_u32(&r);
		if (len > 0)
			rd_bytes(&r, (size_t)len);
		else if (len < -1)
			r.bad = true;
	}
	if (r.bad)
		return fail(d, err, SCRY_EPROTOCOL, "malformed Bind message from the client");
	size_t vlen = (size_t)(r.p - vstart);
	stmt *st = map_get(&d->stmts, sname);
	portal *po = scry__calloc(1, sizeof *po);
	if (!po)
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	po->refs = 1;
	po->d = d;
	po->st = st;
	if (st)
		st->refs++;
	po->nparams = np;
	po->data = vlen ? scry__malloc(vlen) : NULL;
	po->params = np ? scry__calloc(np, sizeof *po->params) : NULL;
	if ((vlen && !po->data) || (np && !po->params)) {
		portal_unref(po);
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	}
	if (vlen)
		memcpy(po->data, vstart, vlen);
	const unsigned char *v = (const unsigned char *)po->data;
	for (int i = 0; i < np; i++) {
		int32_t len = (int32_t)be32(v);
		v += 4;
		scry_param *p = &po->params[i];
		p->type_oid = st && i < st->noids ? st->oids[i] : 0;
		p->format = (nfmt == 0 ? 0 : be16(fmts + 2 * (nfmt == 1 ? 0 : i))) ? SCRY_PARAM_BINARY : SCRY_PARAM_TEXT;
		p->length = len;
		p->value = len >= 0 ? (const char *)v : NULL;
		if (len > 0)
			v += len;
	}
	op *o = op_push(d, OP_BIND, now);
	if (!o) {
		portal_unref(po);
		return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
	}
	po->refs++;
	o->po = po;
	if (map_put(&d->portals, pname, po)) {
		portal_unref(po);
		return fail(d, err, SCRY_ENOMEM, "out of memory");
	}
	return 0;
}

static int fe_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
                      scry_error *err)
{
	op *o;
	rd r = { b, b + n, false };
	switch (type) {
	case 'Q': {
		const char *q = rd_str(&r);
		if (r.bad)
			return fail(d, err, SCRY_EPROTOCOL, "malformed Query message from the client");
		if (!(o = op_push(d, OP_QUERY, now)))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
		size_t len = strlen(q);
		o->text = scry__strndup(q, len);
		if (!o->text || split_query(o->text, len, &o->spans, &o->nspans))
			return fail(d, err, SCRY_ENOMEM, "out of memory");
		/* A simple Query drops the unnamed statement and portal. */
		map_del(&d->stmts, "");
		map_del(&d->portals, "");
		return 0;
	}
	case 'P':
		return fe_parse(d, b, n, now, err);
	case 'B':
		return fe_bind(d, b, n, now, err);
	case 'E': {
		const char *pname = rd_str(&r);
		uint32_t max_rows = rd_u32(&r);
		if (r.bad)
			return fail(d, err, SCRY_EPROTOCOL, "malformed Execute message from the client");
		if (!(o = op_push(d, OP_EXECUTE, now)))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
		o->fetch = (int32_t)max_rows > 0 ? (int64_t)max_rows : 0;
		o->po = map_get(&d->portals, pname);
		if (o->po)
			o->po->refs++;
		return 0;
	}
	case 'D': {
		unsigned char what = r.p < r.end ? *r.p++ : 0;
		const char *name = rd_str(&r);
		if (r.bad || (what != 'S' && what != 'P'))
			return fail(d, err, SCRY_EPROTOCOL, "malformed Describe message from the client");
		if (!(o = op_push(d, OP_DESCRIBE, now)))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
		if (what == 'S' && (o->st = map_get(&d->stmts, name)) != NULL)
			o->st->refs++;
		return 0;
	}
	case 'C': {
		unsigned char what = r.p < r.end ? *r.p++ : 0;
		const char *name = rd_str(&r);
		if (r.bad || (what != 'S' && what != 'P'))
			return fail(d, err, SCRY_EPROTOCOL, "malformed Close message from the client");
		if (!op_push(d, OP_CLOSE, now))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
		map_del(what == 'S' ? &d->stmts : &d->portals, name);
		return 0;
	}
	case 'S':
		if (!op_push(d, OP_SYNC, now))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
		return 0;
	default: /* H (Flush), X (Terminate): no answer, nothing to record */
		return 0;
	}
}

/* ------------------------------------------------------------------ */
/* Backend messages                                                    */
/* ------------------------------------------------------------------ */

/* Finishes the running statement of a simple Query (and the op when it
 * was the last one; ReadyForQuery pops it otherwise). */
static void query_stmt_done(scry_pgwire *d, op *o, int64_t now, int64_t rows, const char *sqlstate,
                            const char *msg)
{
	if (o->cur < o->nspans) {
		const scry_statement_span *sp = &o->spans[o->cur];
		emit(d, o->copy ? SCRY_EVENT_COPY : SCRY_EVENT_SIMPLE, o->text + sp->offset, sp->length, NULL, o,
		     o->start, now, rows, sqlstate, msg);
		o->cur++;
	}
	o->copy = false;
	o->start = now;
	o->clen = 0;
	o->cdropped = false;
}

static void be_complete(scry_pgwire *d, int64_t now, int64_t rows, bool suspended)
{
	op *o = op_head(d);
	if (!o)
		return;
	if (o->kind == OP_QUERY) {
		query_stmt_done(d, o, now, rows, NULL, NULL);
		return;
	}
	if (o->kind != OP_EXECUTE)
		return;
	portal *po = o->po;
	if (suspended && po && o->fetch > 0) {
		/* The portal goes on with the next Execute: one execution in all. */
		if (!po->suspended) {
			po->suspended = true;
			po->susp_start = o->start;
			po->susp_rows = 0;
		}
		po->fetch = o->fetch;
		po->susp_rows += o->rows;
		po->susp_end = now;
		op_pop(d);
		return;
	}
	if (suspended)
		rows = o->rows;
	int64_t start = o->start;
	if (po && po->suspended) { /* the last Execute of a row-limited portal */
		rows = po->susp_rows + (rows >= 0 ? rows : o->rows);
		start = po->susp_start;
	}
	if (po && po->st)
		emit(d, o->copy ? SCRY_EVENT_COPY : SCRY_EVENT_EXTENDED, po->st->query, po->st->qlen, po, o,
		     start, now, rows, NULL, NULL);
	if (po)
		po->suspended = false;
	op_pop(d);
}

/* A suspended portal closed (or dropped with its transaction) before it
 * completed: the client stopped fetching. Its execution is reported with the
 * rows it returned, ending at its last Execute. */
static void portal_gone_suspended(portal *p)
{
	p->gone = true;
	if (p->d && !p->d->freeing && p->st) {
		emit(p->d, SCRY_EVENT_EXTENDED, p->st->query, p->st->qlen, p, NULL, p->susp_start, p->susp_end,
		     p->susp_rows, NULL, NULL);
	}
	p->suspended = false;
}

static void be_error(scry_pgwire *d, const unsigned char *b, size_t n, int64_t now)
{
	rd r = { b, b + n, false };
	char sqlstate[6] = "XX000";
	const char *msg = "";
	while (r.p < r.end && *r.p) {
		unsigned char f = *r.p++;
		const char *v = rd_str(&r);
		if (r.bad)
			break;
		if (f == 'C' && strlen(v) == 5)
			memcpy(sqlstate, v, 6);
		else if (f == 'M')
			msg = v;
	}
	op *o = op_head(d);
	if (!o || o->kind == OP_SYNC || o->kind == OP_FUNC)
		return; /* a startup/auth failure, an error at Sync, a failed function call */
	if (o->kind == OP_QUERY) {
		query_stmt_done(d, o, now, -1, sqlstate, msg);
		o->cur = o->nspans; /* the server skips the rest of the Query */
		return;
	}
	/* Extended protocol: the failing step, then everything up to Sync is skipped. */
	if (o->kind == OP_EXECUTE && o->po && o->po->st) {
		emit(d, o->copy ? SCRY_EVENT_COPY : SCRY_EVENT_EXTENDED, o->po->st->query, o->po->st->qlen, o->po, o,
		     o->po->suspended ? o->po->susp_start : o->start, now, -1, sqlstate, msg);
		o->po->suspended = false;
	} else if (o->kind == OP_BIND && o->po && o->po->st)
		emit(d, SCRY_EVENT_EXTENDED, o->po->st->query, o->po->st->qlen, o->po, NULL, o->start, now, -1, sqlstate,
		     msg);
	else if (o->kind == OP_PARSE)
		emit(d, SCRY_EVENT_EXTENDED, o->st->query, o->st->qlen, NULL, NULL, o->start, now, -1, sqlstate, msg);
	while ((o = op_head(d)) != NULL && o->kind != OP_SYNC && o->kind != OP_QUERY)
		op_pop(d);
}

static int be_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
                      scry_error *err)
{
	op *o = op_head(d);
	switch (type) {
	case 'C': {
		const unsigned char *z = memchr(b, 0, n);
		if (!z)
			return fail(d, err, SCRY_EPROTOCOL, "malformed CommandComplete from the server");
		be_complete(d, now, tag_rows((const char *)b), false);
		return 0;
	}
	case 's': /* PortalSuspended: an Execute with a row limit ended */
		be_complete(d, now, -1, true);
		return 0;
	case 'I': /* EmptyQueryResponse */
		if (o && o->kind == OP_QUERY)
			o->start = now;
		else if (o && o->kind == OP_EXECUTE)
			op_pop(d);
		return 0;
	case 'E':
		be_error(d, b, n, now);
		return 0;
	case 'Z':
		if (n != 1)
			return fail(d, err, SCRY_EPROTOCOL, "malformed ReadyForQuery from the server");
		d->tx_status = b[0];
		d->state = SCRY_PGWIRE_READY;
		/* Pops the Query or Sync it answers, and anything the server skipped. */
		while ((o = op_head(d)) != NULL) {
			int k = o->kind;
			op_pop(d);
			if (k == OP_QUERY || k == OP_SYNC || k == OP_FUNC)
				break;
		}
		/* Portals end with their transaction; forget them unless more
		 * requests are already on the way. */
		if (d->tx_status == 'I' && d->ops_count == 0)
			map_clear_named(&d->portals);
		return 0;
	case '1':
		if (o && o->kind == OP_PARSE)
			op_pop(d);
		return 0;
	case '2':
		if (o && o->kind == OP_BIND)
			op_pop(d);
		return 0;
	case '3':
		if (o && o->kind == OP_CLOSE)
			op_pop(d);
		return 0;
	case 't': /* ParameterDescription: the types the server inferred */
		if (o && o->kind == OP_DESCRIBE && o->st) {
			rd r = { b, b + n, false };
			uint16_t np = rd_u16(&r);
			const unsigned char *oids = rd_bytes(&r, (size_t)np * 4);
			if (r.bad)
				return fail(d, err, SCRY_EPROTOCOL, "malformed ParameterDescription from the server");
			if (np > o->st->noids) {
				uint32_t *no = scry__realloc(o->st->oids, (size_t)np * sizeof *no);
				if (!no)
					return fail(d, err, SCRY_ENOMEM, "out of memory");
				memset(no + o->st->noids, 0, (size_t)(np - o->st->noids) * sizeof *no);
				o->st->oids = no;
				o->st->noids = np;
			}
			for (int i = 0; i < np; i++)
				if (!o->st->oids[i])
					o->st->oids[i] = be32(oids + 4 * i);
		}
		return 0;
	case 'T':
	case 'n':
		if (o && o->kind == OP_DESCRIBE)
			op_pop(d);
		return 0;
	case 'G':
	case 'H':
	case 'W':
		if (o && (o->kind == OP_QUERY || o->kind == OP_EXECUTE))
			o->copy = true;
		return 0;
	case 'V': /* FunctionCallResponse: its ReadyForQuery pops the call */
		return 0;
	case 'N':
		d->stats.notices++;
		return 0;
	case 'S':
		d->stats.parameter_status++;
		return 0;
	default: /* K, A, v, c: nothing to record */
		return 0;
	}
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
		return type ? fe_message(d, type, b, n, now, err) : fe_startup(d, b, n, err);
	}
	d->stats.messages_backend++;
	return be_message(d, type, b, n, now, err);
}

/* Called once a message's header is known and its body is to be skipped. */
static int skipped_header(scry_pgwire *d, int dir, char type, int64_t now, scry_error *err)
{
	if (dir == SCRY_PGWIRE_FRONTEND) {
		d->stats.messages_frontend++;
		/* CopyData: kept for a COPY FROM STDIN in progress */
		op *o = type == 'd' ? op_copy_target(d) : NULL;
		d->dir[dir].copy_sink = o && !o->cdropped;
		if (type == 'F' && !op_push(d, OP_FUNC, now))
			return fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
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
	return be_message(d, type, NULL, 0, now, err);
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
			return fail(d, err, SCRY_ENOMEM, "out of memory keeping COPY data");
		o->cbuf = n;
		o->ccap = cap;
	}
	memcpy(o->cbuf + o->clen, p, k);
	o->clen += k;
	return 0;
}

static int feed_dir(scry_pgwire *d, int dir, const unsigned char *p, size_t len, int64_t now, scry_error *err)
{
	dirstate *ds = &d->dir[dir];
	while (len > 0) {
		if (d->state == SCRY_PGWIRE_ENCRYPTED || d->state == SCRY_PGWIRE_CANCEL)
			return 0;
		if (ds->skip) {
			size_t k = len < ds->skip ? len : ds->skip;
			if (ds->copy_sink) {
				int rc = copy_keep(d, p, k, err);
				if (rc)
					return rc;
			}
			ds->skip -= k;
			p += k;
			len -= k;
			continue;
		}
		if (ds->collecting) {
			size_t k = ds->body_len - ds->have;
			if (k > len)
				k = len;
			memcpy(ds->buf + ds->have, p, k);
			ds->have += k;
			p += k;
			len -= k;
			if (ds->have == ds->body_len) {
				ds->collecting = false;
				int rc = dispatch(d, dir, ds->type, (unsigned char *)ds->buf, ds->body_len, now, err);
				if (rc)
					return rc;
				if (ds->cap > 65536) { /* do not keep a huge buffer around */
					scry__free(ds->buf);
					ds->buf = NULL;
					ds->cap = 0;
				}
			}
			continue;
		}
		if (dir == SCRY_PGWIRE_BACKEND && d->be_ssl_reply) {
			d->be_ssl_reply = false;
			if (*p == 'S' || *p == 'G') {
				d->state = SCRY_PGWIRE_ENCRYPTED;
				return 0;
			}
			if (*p != 'N')
				return fail(d, err, SCRY_EPROTOCOL, "unexpected server answer 0x%02x to SSLRequest", *p);
			p++;
			len--;
			continue;
		}
		bool untyped = dir == SCRY_PGWIRE_FRONTEND && d->fe_startup;
		size_t hsz = untyped ? 4 : 5;
		const unsigned char *h;
		if (ds->hdr_have == 0 && len >= hsz) {
			h = p;
			p += hsz;
			len -= hsz;
		} else {
			size_t k = hsz - ds->hdr_have;
			if (k > len)
				k = len;
			memcpy(ds->hdr + ds->hdr_have, p, k);
			ds->hdr_have += k;
			p += k;
			len -= k;
			if (ds->hdr_have < hsz)
				continue;
			ds->hdr_have = 0;
			h = ds->hdr;
		}
		char type = untyped ? 0 : (char)h[0];
		uint32_t mlen = be32(h + (untyped ? 0 : 1));
		bool skip;
		if (untyped) {
			if (mlen < 8 || mlen > STARTUP_MAX)
				return fail(d, err, SCRY_EPROTOCOL,
					"invalid startup packet length %u from the client (not a PostgreSQL client?)", mlen);
			skip = false;
		} else {
			if (!(dir == SCRY_PGWIRE_FRONTEND ? fe_valid(type) : be_valid(type)))
				return fail(d, err, SCRY_EPROTOCOL, "invalid message type 0x%02x from the %s",
				            (unsigned char)type, dir == SCRY_PGWIRE_FRONTEND ? "client" : "server");
			if (mlen < 4)
				return fail(d, err, SCRY_EPROTOCOL, "invalid message length %u from the %s", mlen,
				            dir == SCRY_PGWIRE_FRONTEND ? "client" : "server");
			skip = dir == SCRY_PGWIRE_FRONTEND ? fe_skipped(type) : be_skipped(type);
		}
		size_t body = mlen - 4;
		if (skip) {
			ds->skip = body;
			int rc = skipped_header(d, dir, type, now, err);
			if (rc)
				return rc;
			continue;
		}
		if (body > d->opts.max_message_bytes)
			return fail(d, err, SCRY_ELIMIT, "message of %zu bytes from the %s exceeds the limit of %zu",
			            body, dir == SCRY_PGWIRE_FRONTEND ? "client" : "server", d->opts.max_message_bytes);
		if (len >= body) { /* whole message in this feed: parse in place */
			int rc = dispatch(d, dir, type, p, body, now, err);
			if (rc)
				return rc;
			p += body;
			len -= body;
			continue;
		}
		if (body + 1 > ds->cap) {
			scry__free(ds->buf);
			ds->cap = body + 1;
			if (!(ds->buf = scry__malloc(ds->cap))) {
				ds->cap = 0;
				return fail(d, err, SCRY_ENOMEM, "out of memory");
			}
		}
		ds->type = type;
		ds->body_len = body;
		ds->have = 0;
		ds->collecting = true;
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
	d->stmts.named.unref = unref_stmt_v;
	d->portals.named.unref = unref_portal_v;
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
	map_free(&d->portals);
	map_free(&d->stmts);
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
