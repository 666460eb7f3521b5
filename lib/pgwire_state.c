/*
 * lib/pgwire_state.c - the wire decoder's session state: prepared
 * statements and portals (reference counted, so that an Execute in flight
 * keeps the text and parameters it ran with), the maps that name them, the
 * FIFO of requests waiting for their answers.
 */
#include "pgwire_internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Statements, portals and a small string-keyed map                    */
/* ------------------------------------------------------------------ */

void scry__pgwire_stmt_unref(stmt *s)
{
	if (s && --s->refs == 0) {
		scry__free(s->query);
		scry__free(s->oids);
		scry__free(s);
	}
}

void scry__pgwire_portal_unref(portal *p)
{
	if (p && --p->refs == 0) {
		if (p->suspended)
			scry__pgwire_portal_gone_suspended(p);
		scry__pgwire_stmt_unref(p->st);
		scry__free(p->params);
		scry__free(p->data);
		scry__free(p);
	}
}

static void unref_stmt_v(void *p) { scry__pgwire_stmt_unref(p); }
static void unref_portal_v(void *p) { scry__pgwire_portal_unref(p); }

void scry__pgwire_maps_init(scry_pgwire *d)
{
	d->stmts.named.unref = unref_stmt_v;
	d->portals.named.unref = unref_portal_v;
}

void scry__pgwire_map_del(namemap *m, const char *name)
{
	if (*name) {
		scry__strmap_del(&m->named, name);
		return;
	}
	if (m->unnamed)
		m->named.unref(m->unnamed);
	m->unnamed = NULL;
}

int scry__pgwire_map_put(namemap *m, const char *name, void *obj)
{
	if (*name)
		return scry__strmap_put(&m->named, name, obj);
	scry__pgwire_map_del(m, name);
	m->unnamed = obj;
	return 0;
}

void scry__pgwire_map_clear_named(namemap *m)
{
	scry__strmap_clear(&m->named);
}

void scry__pgwire_map_free(namemap *m)
{
	scry__pgwire_map_del(m, "");
	scry__strmap_free(&m->named);
}

/* ------------------------------------------------------------------ */
/* Outstanding requests                                                */
/* ------------------------------------------------------------------ */

void scry__pgwire_op_release(op *o)
{
	scry__pgwire_stmt_unref(o->st);
	scry__pgwire_portal_unref(o->po);
	scry__free(o->text);
	scry__free(o->cbuf);
	scry_statement_spans_free(o->spans);
}

bool scry__pgwire_ops_grow(scry_pgwire *d)
{
	size_t ncap = d->ops_cap ? d->ops_cap * 2 : 16;
	op *n = scry__malloc(ncap * sizeof *n);
	if (!n)
		return false;
	for (size_t i = 0; i < d->ops_count; i++)
		n[i] = d->ops[(d->ops_head + i) & (d->ops_cap - 1)];
	scry__free(d->ops);
	d->ops = n;
	d->ops_cap = ncap;
	d->ops_head = 0;
	return true;
}
