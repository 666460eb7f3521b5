/*
 * lib/proxy_capture.c - what the capture proxy records (loop threads):
 * the session filters and sampling at a client's startup packet, each
 * decoded event copied into a queue item (carved from the worker's block),
 * a session's end, and the hand-over of an iteration's items to the
 * writer's queue (lib/proxy_writer.c).
 */
#define _GNU_SOURCE
#include "proxy_internal.h"

#include <stdlib.h>

/* Is `v` in the comma-separated-turned-list `list` (NULL list: everything)? */
static bool filter_match(char **list, const char *v)
{
	if (!list)
		return true;
	for (; *list; list++)
		if (v && !strcmp(*list, v))
			return true;
	return false;
}

/* splitmix64: a session's sampling draw (loop thread only). */
static double sample_draw(worker *w)
{
	uint64_t z = (w->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static void on_startup(void *ctx, const scry_pgwire_startup *su)
{
	conn *c = ctx;
	scry_proxy *p = c->proxy;
	worker *w = c->w;
	if (c->sess || c->unrecorded)
		return;
	if (!filter_match(p->filter[0], su->database) || !filter_match(p->filter[1], su->user) ||
	    !filter_match(p->filter[2], su->application) ||
	    (p->opts.sample_rate > 0 && p->opts.sample_rate < 1 && sample_draw(w) >= p->opts.sample_rate)) {
		c->unrecorded = true; /* the decoder is freed once this feed returns */
		return;
	}
	sess_rec *s = scry__calloc(1, sizeof *s);
	if (!s)
		return;
	s->database = scry__strdup(su->database ? su->database : "");
	s->user = scry__strdup(su->user ? su->user : "");
	s->application = su->application ? scry__strdup(su->application) : NULL;
	s->client = scry__strdup(c->client);
	s->params = su->params && *su->params ? scry__strdup(su->params) : NULL;
	s->started_us = w->now + p->clock_offset;
	c->sess = s;
}

/* An item of `total` bytes, carved from the worker's block when it fits. */
static qitem *qitem_alloc(worker *w, size_t total)
{
	total = (total + 15) & ~(size_t)15;
	if (total > QBLOCK_BYTES / 4) { /* large: alone */
		qitem *it = scry__malloc(total);
		if (it)
			it->blk = NULL;
		return it;
	}
	qblock *b = w->blk;
	if (!b || b->used + total > b->cap) {
		qblock *nb = scry__malloc(QBLOCK_BYTES);
		if (!nb)
			return NULL;
		nb->refs = 1; /* the loop's own */
		nb->used = (sizeof *nb + 15) & ~(size_t)15;
		nb->cap = QBLOCK_BYTES;
		if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
			scry__free(b);
		w->blk = b = nb;
	}
	qitem *it = (qitem *)((char *)b + b->used);
	b->used += total;
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	it->blk = b;
	return it;
}

static void on_event(void *ctx, const scry_event *ev)
{
	conn *c = ctx;
	scry_proxy *p = c->proxy;
	if (c->unrecorded)
		return;
	if (p->opts.max_events) {
		uint64_t k = __atomic_add_fetch(&p->limit_count, 1, __ATOMIC_RELAXED);
		if (k > p->opts.max_events)
			return; /* past the limit: the proxy is stopping */
		if (k == p->opts.max_events)
			scry_proxy_stop(p);
	}
	STAT_ADD(p, st_captured, 1);
	if (!c->sess || c->w->local.n >= p->opts.queue_events) {
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	char *redacted = NULL;
	size_t rlen = 0;
	if (scry__redact_secrets(ev->query, ev->query_len, &redacted, &rlen) < 0) {
		STAT_ADD(p, st_dropped, 1); /* never record a secret unredacted */
		return;
	}
	const char *qtext = redacted ? redacted : ev->query;
	size_t qlen = redacted ? rlen : ev->query_len;
	size_t mlen = ev->error_message ? strlen(ev->error_message) + 1 : 0;
	size_t total = sizeof(qitem) + (size_t)ev->nparams * sizeof(scry_param) + qlen + 1 + mlen + ev->copy_len;
	for (int i = 0; i < ev->nparams; i++)
		if (ev->params[i].length > 0)
			total += (size_t)ev->params[i].length;
	qitem *it = qitem_alloc(c->w, total);
	if (!it) {
		scry__free(redacted);
		STAT_ADD(p, st_dropped, 1);
		return;
	}
	it->type = ITEM_EVENT;
	it->sess = c->sess;
	it->bytes = total;
	it->ev = *ev;
	scry_param *params = (scry_param *)(it + 1);
	char *wp = (char *)(params + ev->nparams);
	for (int i = 0; i < ev->nparams; i++) {
		params[i] = ev->params[i];
		if (ev->params[i].length > 0) {
			memcpy(wp, ev->params[i].value, (size_t)ev->params[i].length);
			params[i].value = wp;
			wp += ev->params[i].length;
		} else if (ev->params[i].length == 0) {
			params[i].value = "";
		}
	}
	it->ev.params = ev->nparams ? params : NULL;
	memcpy(wp, qtext, qlen);
	wp[qlen] = 0;
	it->ev.query_len = qlen;
	scry__free(redacted);
	it->ev.query = wp;
	wp += qlen + 1;
	if (mlen) {
		memcpy(wp, ev->error_message, mlen);
		it->ev.error_message = wp;
		wp += mlen;
	}
	if (ev->copy_len) { /* COPY FROM STDIN data */
		memcpy(wp, ev->copy_data, ev->copy_len);
		it->ev.copy_data = wp;
	}
	qlist_push(&c->w->local, it);
}

/* The decoder of a new connection, calling back into this file (NULL: the
 * connection is forwarded anyway, unrecorded). */
void scry__proxy_decoder_new(conn *c)
{
	scry_proxy *p = c->proxy;
	scry_pgwire_callbacks cb = { SCRY_PGWIRE_CALLBACKS_VERSION, on_startup, on_event, c };
	scry_pgwire_options dopts = SCRY_PGWIRE_OPTIONS_INIT;
	dopts.max_message_bytes = p->opts.max_message_bytes;
	dopts.max_query_bytes = p->opts.max_query_bytes;
	dopts.clock_offset_us = p->clock_offset;
	if (scry_pgwire_new(&c->dec, &cb, &dopts, NULL))
		c->dec = NULL; /* forward anyway, unrecorded */
}

/* A closing connection's session ends: an END item, the last to name it. */
void scry__proxy_session_end(worker *w, conn *c)
{
	if (!c->sess)
		return;
	qitem *it = scry__calloc(1, sizeof *it);
	if (it) {
		it->type = ITEM_END;
		it->sess = c->sess;
		it->end_us = w->now + w->proxy->clock_offset;
		it->bytes = sizeof *it;
		qlist_push(&w->local, it);
	} /* else the session record leaks rather than being freed under the writer */
	c->sess = NULL;
}

/* Hands the iteration's events to the writer; drops what does not fit. */
void scry__proxy_flush_local(worker *w, bool force_signal)
{
	scry_proxy *p = w->proxy;
	if (!w->local.n && !force_signal)
		return;
	size_t dropped = 0;
	pthread_mutex_lock(&p->mu);
	qitem *it = w->local.head;
	while (it) {
		qitem *next = it->next;
		if (it->type == ITEM_EVENT &&
		    (p->q.n >= p->opts.queue_events || p->q.bytes + it->bytes > p->opts.queue_bytes)) {
			qitem_free(it);
			dropped++;
		} else {
			qlist_push(&p->q, it);
		}
		it = next;
	}
	w->local = (qlist){ 0 };
	if (p->writer_waiting && (force_signal || p->q.n >= p->opts.batch_events))
		pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (dropped)
		STAT_ADD(p, st_dropped, dropped);
}
