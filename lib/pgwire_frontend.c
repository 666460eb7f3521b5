/*
 * lib/pgwire_frontend.c - the wire decoder's reading of the client's
 * messages: the startup packet (user, database, session parameters), and
 * the requests the server answers (Query, Parse, Bind, Execute, Describe,
 * Close, Sync), each of which pushes one op on the FIFO.
 */
#include "pgwire_internal.h"

#include <stdlib.h>

#define CODE_SSL 80877103u
#define CODE_GSSENC 80877104u
#define CODE_CANCEL 80877102u

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

static int fe_startup(scry_pgwire *d, const unsigned char *b, size_t n, scry_error *err)
{
	if (n < 4)
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "client startup packet too short (%zu bytes)", n + 4);
	uint32_t code = be32(b);
	if (code == CODE_SSL || code == CODE_GSSENC) {
		if (n != 4)
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed SSLRequest/GSSENCRequest");
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
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL,
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
		return prc ? scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory")
		           : scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed startup packet from the client");
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

/* The request of a Parse (obj: its statement) or a Bind (its portal), and
 * the name it gets: the op and the map each hold a reference, the caller's
 * is dropped on failure (the map's unref releases either kind). */
static int push_named(scry_pgwire *d, int kind, namemap *m, const char *name, void *obj, int *refs, int64_t now,
                      scry_error *err)
{
	op *o = op_push_or_fail(d, kind, now, err);
	if (!o) {
		m->named.unref(obj);
		return SCRY_ELIMIT;
	}
	++*refs;
	if (kind == OP_PARSE)
		o->st = obj;
	else
		o->po = obj;
	if (scry__pgwire_map_put(m, name, obj)) {
		m->named.unref(obj);
		return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
	}
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
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed Parse message from the client");
	stmt *s = scry__calloc(1, sizeof *s);
	if (!s)
		return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
	s->refs = 1;
	s->qlen = strlen(q);
	s->query = scry__strndup(q, s->qlen);
	s->noids = noids;
	s->oids = noids ? scry__malloc((size_t)noids * sizeof *s->oids) : NULL;
	if (!s->query || (noids && !s->oids)) {
		scry__pgwire_stmt_unref(s);
		return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
	}
	for (int i = 0; i < noids; i++)
		s->oids[i] = be32(oids + 4 * i);
	return push_named(d, OP_PARSE, &d->stmts, name, s, &s->refs, now, err);
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
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed Bind message from the client");
	if (nfmt > 1 && nfmt != np)
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "Bind message has %u parameter formats for %u parameters", nfmt, np);
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
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed Bind message from the client");
	size_t vlen = (size_t)(r.p - vstart);
	stmt *st = map_get(&d->stmts, sname);
	portal *po = scry__calloc(1, sizeof *po);
	if (!po)
		return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
	po->refs = 1;
	po->d = d;
	po->st = st;
	if (st)
		st->refs++;
	po->nparams = np;
	po->data = vlen ? scry__malloc(vlen) : NULL;
	po->params = np ? scry__calloc(np, sizeof *po->params) : NULL;
	if ((vlen && !po->data) || (np && !po->params)) {
		scry__pgwire_portal_unref(po);
		return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
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
	return push_named(d, OP_BIND, &d->portals, pname, po, &po->refs, now, err);
}

int scry__pgwire_fe_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
                            scry_error *err)
{
	op *o;
	rd r = { b, b + n, false };
	switch (type) {
	case 0:
		return fe_startup(d, b, n, err);
	case 'Q': {
		const char *q = rd_str(&r);
		if (r.bad)
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed Query message from the client");
		if (!(o = op_push_or_fail(d, OP_QUERY, now, err)))
			return SCRY_ELIMIT;
		size_t len = strlen(q);
		o->text = scry__strndup(q, len);
		if (!o->text || split_query(o->text, len, &o->spans, &o->nspans))
			return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
		/* A simple Query drops the unnamed statement and portal. */
		scry__pgwire_map_del(&d->stmts, "");
		scry__pgwire_map_del(&d->portals, "");
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
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed Execute message from the client");
		if (!(o = op_push_or_fail(d, OP_EXECUTE, now, err)))
			return SCRY_ELIMIT;
		o->fetch = (int32_t)max_rows > 0 ? (int64_t)max_rows : 0;
		o->po = map_get(&d->portals, pname);
		if (o->po)
			o->po->refs++;
		return 0;
	}
	case 'D':
	case 'C': { /* Describe, Close: of a statement ('S') or a portal ('P') */
		unsigned char what = r.p < r.end ? *r.p++ : 0;
		const char *name = rd_str(&r);
		if (r.bad || (what != 'S' && what != 'P'))
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed %s message from the client",
			                         type == 'D' ? "Describe" : "Close");
		if (!(o = op_push_or_fail(d, type == 'D' ? OP_DESCRIBE : OP_CLOSE, now, err)))
			return SCRY_ELIMIT;
		if (type == 'C')
			scry__pgwire_map_del(what == 'S' ? &d->stmts : &d->portals, name);
		else if (what == 'S' && (o->st = map_get(&d->stmts, name)) != NULL)
			o->st->refs++;
		return 0;
	}
	case 'S':
		return op_push_or_fail(d, OP_SYNC, now, err) ? 0 : SCRY_ELIMIT;
	default: /* H (Flush), X (Terminate): no answer, nothing to record */
		return 0;
	}
}
