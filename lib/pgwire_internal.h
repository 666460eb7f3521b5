/*
 * lib/pgwire_internal.h - the wire decoder's shared types (internal).
 *
 *   lib/pgwire.c          framing of both directions, COPY data, the public API
 *   lib/pgwire_frontend.c the client's messages: startup, Query, Parse, Bind...
 *   lib/pgwire_backend.c  the server's answers, and the events they complete
 *   lib/pgwire_state.c    statements, portals, their maps, the FIFO of requests
 *
 * Helpers on the per-message path (readers, the FIFO's head, push and pop)
 * are static inline here, so splitting the files adds no call to them.
 */
#ifndef SCRY_PGWIRE_INTERNAL_H
#define SCRY_PGWIRE_INTERNAL_H

#include "internal.h"
#include "util/map.h"

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

/* name -> stmt* or portal*; the unnamed ("") one lives outside the table.
 * named.unref releases a value that leaves it. */
typedef struct namemap {
	scry__strmap named;
	void *unnamed;
} namemap;

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

/* ------------------------------------------------------------------ */
/* Small readers                                                       */
/* ------------------------------------------------------------------ */

static inline uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* A bounds-checked cursor over a message body. */
typedef struct rd {
	const unsigned char *p, *end;
	bool bad;
} rd;

static inline const unsigned char *rd_bytes(rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const unsigned char *s = r->p;
	r->p += n;
	return s;
}

static inline const char *rd_str(rd *r)
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

static inline uint32_t rd_u32(rd *r)
{
	const unsigned char *s = rd_bytes(r, 4);
	return s ? be32(s) : 0;
}

static inline uint16_t rd_u16(rd *r)
{
	const unsigned char *s = rd_bytes(r, 2);
	return s ? be16(s) : 0;
}

/* ------------------------------------------------------------------ */
/* lib/pgwire.c                                                        */
/* ------------------------------------------------------------------ */

/* Fails the decoder for good: every later feed returns the same error. */
SCRY_HIDDEN int scry__pgwire_fail(scry_pgwire *d, scry_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------ */
/* lib/pgwire_state.c                                                  */
/* ------------------------------------------------------------------ */

SCRY_HIDDEN void scry__pgwire_stmt_unref(stmt *s);
SCRY_HIDDEN void scry__pgwire_portal_unref(portal *p);
/* Sets the maps' unref functions (scry_pgwire_new). */
SCRY_HIDDEN void scry__pgwire_maps_init(scry_pgwire *d);
/* Stores obj (taking the caller's reference) under name, replacing any. */
SCRY_HIDDEN int scry__pgwire_map_put(namemap *m, const char *name, void *obj);
SCRY_HIDDEN void scry__pgwire_map_del(namemap *m, const char *name);
SCRY_HIDDEN void scry__pgwire_map_clear_named(namemap *m);
SCRY_HIDDEN void scry__pgwire_map_free(namemap *m);
/* Drops what an op holds (before it leaves the FIFO). */
SCRY_HIDDEN void scry__pgwire_op_release(op *o);
/* Doubles the FIFO's ring; false when out of memory. */
SCRY_HIDDEN bool scry__pgwire_ops_grow(scry_pgwire *d);

static inline void *map_get(namemap *m, const char *name)
{
	return *name ? scry__strmap_get(&m->named, name) : m->unnamed;
}

static inline op *op_head(scry_pgwire *d)
{
	return d->ops_count ? &d->ops[d->ops_head] : NULL;
}

static inline void op_pop(scry_pgwire *d)
{
	scry__pgwire_op_release(&d->ops[d->ops_head]);
	d->ops_head = (d->ops_head + 1) & (d->ops_cap - 1);
	d->ops_count--;
}

/* A new request at the tail of the FIFO; NULL past max_pending or out of memory. */
static inline op *op_push(scry_pgwire *d, int kind, int64_t now)
{
	if (d->ops_count >= d->opts.max_pending)
		return NULL;
	if (d->ops_count == d->ops_cap && !scry__pgwire_ops_grow(d))
		return NULL;
	op *o = &d->ops[(d->ops_head + d->ops_count) & (d->ops_cap - 1)];
	memset(o, 0, sizeof *o);
	o->kind = (unsigned char)kind;
	o->start = now;
	d->ops_count++;
	return o;
}

/* op_push(), or the decoder fails with SCRY_ELIMIT. */
static inline op *op_push_or_fail(scry_pgwire *d, int kind, int64_t now, scry_error *err)
{
	op *o = op_push(d, kind, now);
	if (!o)
		scry__pgwire_fail(d, err, SCRY_ELIMIT, "too many requests in flight on one connection");
	return o;
}

/* ------------------------------------------------------------------ */
/* lib/pgwire_frontend.c, lib/pgwire_backend.c                         */
/* ------------------------------------------------------------------ */

/* A whole client message (type 0: the untyped startup packet). */
SCRY_HIDDEN int scry__pgwire_fe_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
	scry_error *err);
/* A whole server message (b NULL and n 0 for those read by header alone). */
SCRY_HIDDEN int scry__pgwire_be_message(scry_pgwire *d, char type, const unsigned char *b, size_t n, int64_t now,
	scry_error *err);
/* A suspended portal went away before it completed: reports its execution. */
SCRY_HIDDEN void scry__pgwire_portal_gone_suspended(portal *p);

#endif /* SCRY_PGWIRE_INTERNAL_H */
