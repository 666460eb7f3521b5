/*
 * lib/logimport_batch.c - the log importer's store writing: a batch of
 * events, with the session rows and session ends it needs, goes to the
 * store (through the writer thread of lib/logimport_writer.c when it runs).
 */
#include "logimport_internal.h"

#include <string.h>

static int64_t resolve_id(const scry_logimport *imp, int64_t id)
{
	return id < 0 ? imp->newsess[-id - 1].id : id;
}

/* Adds the batch's new session rows and records its session ends, in one
 * transaction on the store's connection. */
static int flush_sessions(scry_logimport *imp, scry_error *err)
{
	if (!imp->nnew && !imp->nends)
		return 0;
	int rc = scry_store_begin(imp->store, err);
	if (rc)
		return rc;
	/* (by imp->fmt; AUTO only when nothing was read) */
	static const scry_source src[] = { SCRY_SOURCE_CSVLOG, SCRY_SOURCE_JSONLOG, SCRY_SOURCE_STDERR, SCRY_SOURCE_STDERR };
	for (size_t i = 0; i < imp->nnew && !rc; i++) {
		newsess *n = &imp->newsess[i];
		scry_session_info info = {
			SCRY_SESSION_INFO_VERSION, src[imp->fmt], n->db[0] ? n->db : NULL,
			n->user[0] ? n->user : NULL, n->app[0] ? n->app : NULL, n->client[0] ? n->client : NULL, n->start_us
		};
		rc = scry_store_session_add(imp->store, &info, &n->id, err);
	}
	for (size_t i = 0; i < imp->nends && !rc; i++)
		rc = scry_store_session_end(imp->store, resolve_id(imp, imp->ends[i].id), imp->ends[i].ended_us, err);
	if (!rc)
		rc = scry_store_commit(imp->store, err);
	if (rc) {
		scry_store_rollback(imp->store);
		return rc;
	}
	/* Sessions still open now know their row. */
	for (size_t i = 0; i < imp->nnew; i++) {
		session *s = &imp->sess[imp->newsess[i].slot];
		if (s->gen == imp->newsess[i].gen && s->store_id == -(int64_t)(i + 1))
			s->store_id = imp->newsess[i].id;
	}
	imp->nends = 0;
	return 0;
}

int scry__logimport_flush_batch(scry_logimport *imp, scry_error *err)
{
	/* The store is free once the batch before is written. */
	int rc = scry__logwriter_wait(imp->writer, err);
	if (rc)
		return rc;
	rc = flush_sessions(imp, err);
	if (rc)
		return rc;
	if (!imp->nbev) {
		imp->nnew = 0;
		return 0;
	}
	size_t np = 0;
	for (size_t i = 0; i < imp->nbev; i++)
		np += (size_t)imp->bev[i].nparams;
	if (np > imp->aparams) {
		scry_param *p = scry__realloc(imp->params, np * sizeof *p);
		if (!p)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		imp->params = p;
		imp->aparams = np;
	}
	if (imp->nbev > imp->aevs) {
		scry_event *ne = scry__realloc(imp->evs, imp->nbev * sizeof *ne);
		if (!ne)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		imp->evs = ne;
		imp->aevs = imp->nbev;
	}
	scry_event *evs = imp->evs;
	const char *a = imp->arena.ptr ? imp->arena.ptr : ""; /* empty arena: no NULL + 0 */
	size_t pi = 0;
	for (size_t i = 0; i < imp->nbev; i++) {
		const bevent *b = &imp->bev[i];
		scry_event *e = &evs[i];
		memset(e, 0, sizeof *e);
		e->session_id = resolve_id(imp, b->session_id);
		e->start_us = b->start_us;
		e->duration_us = b->duration_us;
		e->kind = b->kind;
		e->query = a + b->qoff;
		e->query_len = b->qlen;
		e->rows = -1;
		e->nparams = b->nparams;
		e->params = b->nparams ? imp->params + pi : NULL;
		const char *p = a + b->poff;
		for (int k = 0; k < b->nparams; k++) {
			int32_t len;
			memcpy(&len, p, sizeof len);
			p += sizeof len;
			scry_param *sp = &imp->params[pi++];
			sp->type_oid = 0;
			sp->format = SCRY_PARAM_TEXT;
			sp->length = len;
			sp->value = len < 0 ? NULL : p;
			if (len > 0)
				p += len;
		}
		if (b->has_error) {
			memcpy(e->sqlstate, b->sqlstate, sizeof e->sqlstate);
			e->error_message = a + b->eoff;
		}
	}
	/* Written by the second thread while the next batch is parsed (here,
	 * when the thread cannot be started). */
	if (!imp->writer && !imp->no_writer && scry__logwriter_start(&imp->writer, imp->store))
		imp->no_writer = true;
	if (imp->writer) {
		scry__logwriter_submit(imp->writer, &imp->evs, &imp->aevs, &imp->params, &imp->aparams, &imp->arena,
		                       imp->nbev);
	} else {
		rc = scry_store_append(imp->store, evs, imp->nbev, sizeof(scry_event), err);
		scry__buf_clear(&imp->arena);
	}
	imp->nbev = 0;
	imp->nnew = 0;
	return rc;
}

int scry__logimport_store_idle(scry_logimport *imp, scry_error *err)
{
	return scry__logwriter_wait(imp->writer, err);
}
