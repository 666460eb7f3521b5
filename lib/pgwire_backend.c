/*
 * lib/pgwire_backend.c - the wire decoder's reading of the server's
 * answers: each pops the request it answers from the FIFO, and those that
 * end a statement (CommandComplete, PortalSuspended, ErrorResponse) report
 * it as one event.
 */
#include "pgwire_internal.h"

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
void scry__pgwire_portal_gone_suspended(portal *p)
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

/* ParameterDescription of a described statement: the types the server
 * inferred fill those the client left unspecified (0). */
static int be_param_types(scry_pgwire *d, stmt *st, const unsigned char *b, size_t n, scry_error *err)
{
	rd r = { b, b + n, false };
	uint16_t np = rd_u16(&r);
	const unsigned char *oids = rd_bytes(&r, (size_t)np * 4);
	if (r.bad)
		return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed ParameterDescription from the server");
	if (np > st->noids) {
		uint32_t *no = scry__realloc(st->oids, (size_t)np * sizeof *no);
		if (!no)
			return scry__pgwire_fail(d, err, SCRY_ENOMEM, "out of memory");
		memset(no + st->noids, 0, (size_t)(np - st->noids) * sizeof *no);
		st->oids = no;
		st->noids = np;
	}
	for (int i = 0; i < np; i++)
		if (!st->oids[i])
			st->oids[i] = be32(oids + 4 * i);
	return 0;
}

int scry__pgwire_be_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
                            scry_error *err)
{
	op *o = op_head(d);
	switch (type) {
	case 'C': {
		const unsigned char *z = memchr(b, 0, n);
		if (!z)
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed CommandComplete from the server");
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
			return scry__pgwire_fail(d, err, SCRY_EPROTOCOL, "malformed ReadyForQuery from the server");
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
			scry__pgwire_map_clear_named(&d->portals);
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
		return (o && o->kind == OP_DESCRIBE && o->st) ? be_param_types(d, o->st, b, n, err) : 0;
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
