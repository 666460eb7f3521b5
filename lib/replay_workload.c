/*
 * lib/replay_workload.c - loads the captured workload for the replay engine:
 * sessions with their statements in order, distinct texts interned once, and
 * each text classified (transaction control, session state, provably
 * read-only, or possible write) for the `writes` policy. See docs/replay.md.
 */
#define _GNU_SOURCE
#include "replay_workload.h"

#include <ctype.h>
#include <pg_query.h>
#include <xxhash.h>

void scry__replay_workload_free(workload *w)
{
	for (size_t i = 0; i < w->ntexts; i++) {
		scry__free(w->texts[i]->text);
		scry__free(w->texts[i]->types);
		scry__free(w->texts[i]);
	}
	scry__free(w->texts);
	scry__free(w->table);
	for (size_t i = 0; i < w->nsess; i++) {
		for (size_t j = 0; w->sess[i].st && j < w->sess[i].n; j++) {
			scry__free(w->sess[i].st[j].values);
			scry__free(w->sess[i].st[j].copy);
		}
		scry__free(w->sess[i].st);
		scry__free(w->sess[i].user);
		scry__free(w->sess[i].params);
	}
	scry__free(w->sess);
	scry__u64map_free(&w->cls_map);
	scry__u64map_free(&w->sess_map);
	scry_event_iter_free(w->chunk_it);
	scry_store_free(w->reader);
	memset(w, 0, sizeof *w);
}

/*
 * Built-in functions that never write. Anything else (user functions,
 * nextval, set_config, pg_terminate_backend, dblink...) makes a SELECT a
 * possible write. Only unqualified or pg_catalog-qualified names count.
 */
static const char *const safe_funcs[] = {
	"abs", "array_agg", "array_length", "array_to_string", "avg", "bool_and", "bool_or", "btrim",
	"ceil", "ceiling", "char_length", "coalesce", "concat", "concat_ws", "count", "date_part",
	"date_trunc", "every", "exp", "extract", "floor", "format", "greatest", "jsonb_agg",
	"jsonb_build_array", "jsonb_build_object", "json_agg", "json_build_array", "json_build_object",
	"least", "left", "length", "ln", "log", "lower", "lpad", "ltrim", "max", "md5", "min", "mod",
	"now", "nullif", "octet_length", "percentile_cont", "percentile_disc", "position", "power",
	"rank", "dense_rank", "regexp_replace", "repeat", "replace", "reverse", "right", "round",
	"row_number", "rpad", "rtrim", "sign", "split_part", "sqrt", "stddev", "string_agg", "strpos",
	"substr", "substring", "sum", "timezone", "to_char", "to_date", "to_number", "to_timestamp",
	"trim", "trunc", "unnest", "upper", "variance", "generate_series", "lag", "lead",
	"first_value", "last_value", "ntile", "cume_dist", "percent_rank", "age", "current_date",
	"date", "make_date", "make_interval", "initcap", "chr", "ascii", "array_position", "cardinality",
	NULL
};

static bool safe_func(const char *name, size_t n)
{
	for (const char *const *f = safe_funcs; *f; f++)
		if (strlen(*f) == n && !memcmp(*f, name, n))
			return true;
	return false;
}

/* Every FuncCall of a parse tree (JSON) names a function of safe_funcs. */
static bool funcs_safe(const char *t)
{
	static const char key[] = "\"FuncCall\":{\"funcname\":[";
	static const char item[] = "{\"String\":{\"sval\":\"";
	for (const char *p = strstr(t, key); p; p = strstr(p, key)) {
		p += sizeof key - 1;
		const char *names[3];
		size_t lens[3];
		int n = 0;
		while (!strncmp(p, item, sizeof item - 1)) {
			p += sizeof item - 1;
			const char *e = strchr(p, '"');
			if (!e || n == 3)
				return false;
			names[n] = p;
			lens[n++] = (size_t)(e - p);
			p = e + 3; /* past "}} */
			if (*p == ',')
				p++;
		}
		if (n == 0 || n > 2 || (n == 2 && (lens[0] != 10 || memcmp(names[0], "pg_catalog", 10))))
			return false;
		if (!safe_func(names[n - 1], lens[n - 1]))
			return false;
	}
	return true;
}

/*
 * A statement is read-only when it parses to one plain SELECT that calls
 * only built-in functions known not to write (safe_funcs), with no INTO,
 * no FOR UPDATE/SHARE and no data-modifying WITH. The residual risk (a
 * user-defined operator, cast or view function that writes) is documented.
 */
typedef struct parse_call {
	const char *text;
	PgQueryParseResult r;
} parse_call;

static void parse_call_run(void *p)
{
	parse_call *c = p;
	c->r = pg_query_parse(c->text);
}

static bool provably_read_only(const char *text)
{
	/* Off the caller's stack when deeply nested (lib/pgquery_guard.c); a text
	 * too deep to parse is not provably read-only. */
	parse_call c = { text, { 0 } };
	if (scry__pgq_run(text, strlen(text), parse_call_run, &c, NULL) != 0)
		return false;
	PgQueryParseResult r = c.r;
	bool ro = false;
	if (!r.error && r.parse_tree) {
		const char *t = r.parse_tree;
		const char *first = strstr(t, "{\"stmt\":");
		ro = first && !strstr(first + 1, "{\"stmt\":") &&
		     !strncmp(first, "{\"stmt\":{\"SelectStmt\"", 21) &&
		     funcs_safe(t) && !strstr(t, "\"intoClause\"") &&
		     !strstr(t, "\"lockingClause\"") && !strstr(t, "\"InsertStmt\"") &&
		     !strstr(t, "\"UpdateStmt\"") && !strstr(t, "\"DeleteStmt\"") &&
		     !strstr(t, "\"MergeStmt\"");
	}
	pg_query_free_parse_result(r);
	return ro;
}

static void classify(itext *t)
{
	char w1[24], w2[24];
	const char *p = scry__sql_next_word(t->text, w1, sizeof w1);
	scry__sql_next_word(p, w2, sizeof w2);
	t->cls = CLS_WRITE;
	if (!strcmp(w1, "BEGIN") || !strcmp(w1, "START"))
		t->cls = CLS_BEGIN;
	else if ((!strcmp(w1, "COMMIT") || !strcmp(w1, "ROLLBACK")) && !strcmp(w2, "PREPARED"))
		t->cls = CLS_2PC;
	else if (!strcmp(w1, "COMMIT") || !strcmp(w1, "END") ||
	         (!strcmp(w1, "PREPARE") && !strcmp(w2, "TRANSACTION")))
		t->cls = CLS_COMMIT;
	else if (!strcmp(w1, "ROLLBACK") || !strcmp(w1, "ABORT") || !strcmp(w1, "SAVEPOINT") ||
	         !strcmp(w1, "RELEASE"))
		t->cls = CLS_TXN;
	else if (!strcmp(w1, "SET") || !strcmp(w1, "RESET") || !strcmp(w1, "SHOW") ||
	         !strcmp(w1, "PREPARE") || !strcmp(w1, "DEALLOCATE") || !strcmp(w1, "DISCARD") ||
	         !strcmp(w1, "LISTEN") || !strcmp(w1, "UNLISTEN") || !strcmp(w1, "LOAD") ||
	         !strcmp(w1, "DECLARE") || !strcmp(w1, "FETCH") || !strcmp(w1, "MOVE") ||
	         !strcmp(w1, "CLOSE"))
		t->cls = CLS_SESSION;
	else if (!strcmp(w1, "VACUUM") || !strcmp(w1, "CHECKPOINT"))
		t->cls = CLS_NOTXN;
	else if ((!strcmp(w1, "SELECT") || !strcmp(w1, "WITH") || !strcmp(w1, "VALUES") ||
	          !strcmp(w1, "TABLE")) && provably_read_only(t->text))
		t->cls = CLS_READ;
	t->cursorable = !strcmp(w1, "SELECT") || !strcmp(w1, "VALUES") || !strcmp(w1, "TABLE") ||
	                (!strcmp(w1, "WITH") && t->cls == CLS_READ);
	t->clears_prepared = (!strcmp(w1, "DISCARD") && !strcmp(w2, "ALL")) ||
	                     (!strcmp(w1, "DEALLOCATE") && (!strcmp(w2, "ALL") ||
	                      (!strcmp(w2, "PREPARE") && strstr(t->text + 10, "ALL"))));
}

/* Classifies a text, once per fingerprint: texts of one pattern differ only in constants. */
static void set_class(workload *w, itext *e, uint64_t fingerprint)
{
	uint32_t known = fingerprint ? scry__u64map_get(&w->cls_map, fingerprint) : 0;
	if (known) {
		e->cls = (uint8_t)((known - 1) & 0x7f);
		e->clears_prepared = (uint8_t)((known - 1) >> 7);
		char w1[24];
		scry__sql_next_word(e->text, w1, sizeof w1);
		e->cursorable = !strcmp(w1, "SELECT") || !strcmp(w1, "VALUES") || !strcmp(w1, "TABLE") ||
		                (!strcmp(w1, "WITH") && e->cls == CLS_READ);
	} else {
		classify(e);
		/* Out of memory here only means the pattern's next text is classified again. */
		if (fingerprint)
			scry__u64map_put(&w->cls_map, fingerprint, (uint32_t)(e->cls | e->clears_prepared << 7) + 1);
	}
}

static int intern(workload *w, const char *text, size_t len, const scry_param *params, int np,
                  uint64_t fingerprint, itext **out)
{
	uint64_t h = XXH3_64bits(text, len);
	for (int i = 0; i < np; i++)
		h = h * 1000003u ^ params[i].type_oid;
	if (w->ntexts * 2 >= w->tcap) {
		size_t cap = w->tcap ? w->tcap * 2 : 1024;
		itext **t = scry__calloc(cap, sizeof *t);
		if (!t)
			return SCRY_ENOMEM;
		for (size_t i = 0; i < w->ntexts; i++) {
			size_t j = w->texts[i]->hash & (cap - 1);
			while (t[j])
				j = (j + 1) & (cap - 1);
			t[j] = w->texts[i];
		}
		scry__free(w->table);
		w->table = t;
		w->tcap = cap;
	}
	size_t j = h & (w->tcap - 1);
	for (itext *e; (e = w->table[j]); j = (j + 1) & (w->tcap - 1)) {
		if (e->hash != h || e->len != len || e->nparams != np || memcmp(e->text, text, len))
			continue;
		bool same = true;
		for (int i = 0; i < np && same; i++)
			same = e->types[i] == params[i].type_oid;
		if (same) {
			*out = e;
			return 0;
		}
	}
	if (scry__array_grow((void **)&w->texts, &w->atexts, w->ntexts, sizeof *w->texts, 256))
		return SCRY_ENOMEM;
	itext *e = scry__calloc(1, sizeof *e);
	if (!e || !(e->text = scry__strndup(text, len)) ||
	    (np && !(e->types = scry__calloc((size_t)np, sizeof *e->types)))) {
		if (e)
			scry__free(e->text);
		scry__free(e);
		return SCRY_ENOMEM;
	}
	e->len = len;
	e->hash = h;
	e->nparams = np;
	e->id = (uint32_t)w->ntexts;
	for (int i = 0; i < np; i++)
		e->types[i] = params[i].type_oid;
	set_class(w, e, fingerprint);
	w->texts[w->ntexts++] = e;
	w->table[j] = e;
	*out = e;
	return 0;
}

/* Session `id`'s entry in w->sess, added when new; *last caches the previous answer. */
static rsession *session_for(workload *w, int64_t id, size_t *last)
{
	if (*last < w->nsess && w->sess[*last].id == id)
		return &w->sess[*last];
	uint32_t k = scry__u64map_get(&w->sess_map, (uint64_t)id);
	if (k) {
		*last = k - 1;
		return &w->sess[*last];
	}
	if (scry__array_grow((void **)&w->sess, &w->asess, w->nsess, sizeof *w->sess, 64) ||
	    scry__u64map_put(&w->sess_map, (uint64_t)id, (uint32_t)w->nsess + 1))
		return NULL;
	rsession *s = &w->sess[w->nsess];
	memset(s, 0, sizeof *s);
	s->id = id;
	*last = w->nsess++;
	return s;
}

/*
 * Fills `st` from `ev`. Extended-protocol texts are interned (each is
 * prepared once per connection, named by its id); with `own`, other texts
 * get an itext of their own in *own (a streaming chunk frees them), so that
 * a stream of distinct literal-laden texts does not accumulate.
 */
static int fill_stmt(workload *w, const scry_stored_event *ev, rstmt *st, itext **own)
{
	memset(st, 0, sizeof *st);
	st->event_id = ev->id;
	st->start_us = ev->start_us;
	st->kind = (uint8_t)ev->kind;
	st->fetch = ev->fetch_rows;
	st->rows = ev->rows;
	st->duration_us = ev->duration_us;
	st->flags = ev->flags;
	if (ev->copy_data && ev->copy_len) {
		if (!(st->copy = scry__malloc(ev->copy_len)))
			return SCRY_ENOMEM;
		memcpy(st->copy, ev->copy_data, ev->copy_len);
		st->copy_len = ev->copy_len;
	}
	bool ext = ev->kind == SCRY_EVENT_EXTENDED;
	if (own && !ext) {
		itext *e = scry__calloc(1, sizeof *e);
		if (!e || !(e->text = scry__strndup(ev->query, ev->query_len))) {
			scry__free(e);
			return SCRY_ENOMEM;
		}
		e->len = ev->query_len;
		e->id = UINT32_MAX;
		set_class(w, e, ev->fingerprint);
		*own = st->t = e;
	} else {
		int rc = intern(w, ev->query, ev->query_len, ev->params, ext ? ev->nparams : 0, ev->fingerprint, &st->t);
		if (rc)
			return rc;
	}
	if (ext && ev->nparams > 0) {
		size_t np = (size_t)ev->nparams, bytes = 0;
		for (size_t i = 0; i < np; i++)
			if (ev->params[i].value && ev->params[i].length > 0)
				bytes += (size_t)ev->params[i].length + 1;
		size_t hdr = np * (sizeof(char *) + 2 * sizeof(int));
		char *blk = scry__malloc(hdr + bytes);
		if (!blk)
			return SCRY_ENOMEM;
		st->values = (const char **)(void *)blk;
		st->lengths = (int *)(void *)(blk + np * sizeof(char *));
		st->formats = st->lengths + np;
		char *data = blk + hdr;
		for (size_t i = 0; i < np; i++) {
			const scry_param *p = &ev->params[i];
			st->formats[i] = p->format == SCRY_PARAM_BINARY;
			st->lengths[i] = p->value ? (p->length > 0 ? p->length : 0) : 0;
			if (!p->value) {
				st->values[i] = NULL;
			} else if (p->length > 0) {
				memcpy(data, p->value, (size_t)p->length);
				data[p->length] = 0; /* text params must be NUL-terminated */
				st->values[i] = data;
				data += p->length + 1;
			} else {
				st->values[i] = "";
			}
		}
		st->nparams = ev->nparams;
	}
	return 0;
}

/* The captured user and startup parameters of a session, from its first event. */
static int session_state(rsession *s, const scry_stored_event *ev)
{
	if ((ev->session_user && *ev->session_user && !s->user && !(s->user = scry__strdup(ev->session_user))) ||
	    (ev->session_params && *ev->session_params && !s->params && !(s->params = scry__strdup(ev->session_params))))
		return SCRY_ENOMEM;
	return 0;
}

static int add_stmt(workload *w, const scry_stored_event *ev, size_t *last)
{
	rsession *s = session_for(w, ev->session_id, last);
	if (!s)
		return SCRY_ENOMEM;
	if (!s->n && session_state(s, ev))
		return SCRY_ENOMEM;
	if (scry__array_grow((void **)&s->st, &s->alloc, s->n, sizeof *s->st, 16))
		return SCRY_ENOMEM;
	int rc = fill_stmt(w, ev, &s->st[s->n], NULL);
	if (rc)
		return rc;
	if (!s->n)
		s->first_us = ev->start_us;
	s->last_us = ev->start_us;
	s->n++;
	w->nstmts++;
	w->resident = w->resident_peak = w->nstmts;
	if (!w->first_us || ev->start_us < w->first_us)
		w->first_us = ev->start_us;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Streaming: sessions up front, statements in chunks                  */
/* ------------------------------------------------------------------ */

/* Statements read per chunk of a session. */
#define CHUNK 256

/* One pass over the events (ids and times only): each session's range and count. */
/* Streaming: each session's captured user and parameters, from its first event (one point query each). */
static int load_session_state(scry_store *store, workload *w, scry_error *err)
{
	if (!w->nsess)
		return 0;
	int64_t *ids = scry__calloc(w->nsess, sizeof *ids);
	if (!ids)
		return scry__fail(err, SCRY_ENOMEM, "out of memory reading the workload's sessions");
	for (size_t i = 0; i < w->nsess; i++)
		ids[i] = w->sess[i].first_id;
	scry_event_iter *it = NULL;
	const scry_stored_event *ev;
	size_t last = 0;
	int r = scry__store_events_by_id(store, ids, w->nsess, &it, err);
	while (!r && (r = scry_event_iter_next(it, &ev, err)) == 1) {
		rsession *s = session_for(w, ev->session_id, &last);
		r = !s || session_state(s, ev) ? scry__fail(err, SCRY_ENOMEM, "out of memory reading the workload's sessions")
		                               : 0;
	}
	scry_event_iter_free(it);
	scry__free(ids);
	return r < 0 ? r : 0;
}

static int load_sessions(scry_store *store, const scry_replay_options *o, workload *w, scry_error *err)
{
	scry__u64map want = { 0 };
	for (size_t i = 0; o->fingerprints && i < o->nfingerprints; i++)
		if (scry__u64map_put(&want, o->fingerprints[i], 1)) {
			scry__u64map_free(&want);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
	scry__rows *q;
	int r, rc = scry__store_rows(store, SCRY__Q_EVENT_SPANS, &q, err);
	if (rc) {
		scry__u64map_free(&want);
		return rc;
	}
	size_t last = 0;
	while ((r = scry__rows_next(q, err)) == 1) {
		if (o->fingerprints && (scry__rows_null(q, 3) || !scry__u64map_get(&want, (uint64_t)scry__rows_int(q, 3))))
			continue;
		rsession *x = session_for(w, scry__rows_int(q, 0), &last);
		if (!x) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory reading the workload's sessions");
			break;
		}
		int64_t id = scry__rows_int(q, 1), at = scry__rows_int(q, 2);
		if (!x->n) {
			x->first_id = id;
			x->first_us = at;
		}
		x->last_id = id;
		x->last_us = at;
		x->n++;
		w->nstmts++;
		if (!w->first_us || at < w->first_us)
			w->first_us = at;
	}
	scry__rows_free(q);
	scry__u64map_free(&want);
	if (!rc && r < 0)
		rc = r;
	if (!rc)
		rc = load_session_state(store, w, err);
	return rc;
}

/* Drops the first k statements of the window. */
static void window_drop(workload *w, scry__stmt_cursor *c, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		scry__free(c->st[i].values);
		scry__free(c->st[i].copy);
		if (c->own[i]) {
			scry__free(c->own[i]->text);
			scry__free(c->own[i]);
		}
	}
	memmove(c->st, c->st + k, (c->n - k) * sizeof *c->st);
	memmove(c->own, c->own + k, (c->n - k) * sizeof *c->own);
	w->resident -= k;
	c->base += k;
	c->n -= k;
}

void scry__stmt_cursor_close(workload *w, scry__stmt_cursor *c)
{
	if (w->streaming && c->n)
		window_drop(w, c, c->n);
	scry__free(c->st);
	scry__free(c->own);
	memset(c, 0, sizeof *c);
}

/* Reads the session's next chunk into the window, after dropping what lies before the pin. */
static int window_more(workload *w, scry__stmt_cursor *c, const rsession *s, size_t pin)
{
	if (pin > c->base)
		window_drop(w, c, pin - c->base < c->n ? pin - c->base : c->n);
	if (c->n + CHUNK > c->cap) {
		size_t cap = c->n + CHUNK;
		rstmt *st = scry__realloc(c->st, cap * sizeof *st);
		if (st)
			c->st = st;
		itext **own = st ? scry__realloc(c->own, cap * sizeof *own) : NULL;
		if (!own)
			return scry__fail(&w->err, SCRY_ENOMEM, "out of memory reading the workload");
		c->own = own;
		c->cap = cap;
	}
	if (!w->chunk_it) {
		int rc = scry__store_session_events(w->reader, w->fingerprints, w->nfingerprints, &w->chunk_it, &w->err);
		if (rc)
			return rc;
	}
	scry__event_iter_rebind(w->chunk_it, s->id, c->last_id ? c->last_id : s->first_id - 1, s->last_id, CHUNK);
	const scry_stored_event *ev;
	size_t got = 0;
	int rc;
	while (got < CHUNK && (rc = scry_event_iter_next(w->chunk_it, &ev, &w->err)) == 1) {
		c->own[c->n] = NULL;
		if ((rc = fill_stmt(w, ev, &c->st[c->n], &c->own[c->n])) != 0) {
			if (c->own[c->n]) {
				scry__free(c->own[c->n]->text);
				scry__free(c->own[c->n]);
			}
			return scry__fail(&w->err, rc, "out of memory reading the workload");
		}
		c->n++;
		got++;
		c->last_id = ev->id;
	}
	w->resident += got;
	if (w->resident > w->resident_peak)
		w->resident_peak = w->resident;
	if (rc < 0)
		return rc;
	return got ? 0 : scry__fail(&w->err, SCRY_ECORRUPT, "session %lld has fewer events than the store counted "
	                            "(was the store changed during the replay?)", (long long)s->id);
}

const rstmt *scry__replay_stmt(workload *w, scry__stmt_cursor *c, const rsession *s, size_t idx, size_t pin)
{
	if (!w->streaming)
		return &s->st[idx];
	if (idx < c->base) { /* before the window (a pin not honoured): read the session again */
		window_drop(w, c, c->n);
		c->base = 0;
		c->last_id = 0;
	}
	if (pin > idx)
		pin = idx;
	while (idx >= c->base + c->n) {
		int rc = window_more(w, c, s, pin);
		if (rc) {
			w->error = rc;
			return NULL;
		}
	}
	return &c->st[idx - c->base];
}

int scry__replay_load(scry_store *store, const scry_replay_options *o, workload *w, scry_error *err)
{
	scry__budget_plan plan = { 0 };
	scry_event_iter *it = NULL;
	int rc;
	if (o->budget > 0 || o->budget_seconds > 0) {
		if ((rc = scry__budget_select(store, o, &plan, err)))
			return rc;
		w->sampled = true;
		w->captured = plan.captured;
		w->budget = plan.budget;
		rc = scry__store_events_by_id(store, plan.ids, plan.n, &it, err);
	} else {
		/*
		 * No budget: stream, so that memory does not grow with the store. The
		 * chunks are read through a second, read-only handle of the same file;
		 * a store that cannot be opened twice (not a file) is loaded whole.
		 */
		scry_store_options so = SCRY_STORE_OPTIONS_INIT;
		so.read_only = 1;
		so.must_exist = 1;
		scry_error oerr = SCRY_ERROR_INIT;
		if (scry_store_open(&w->reader, scry_store_path(store), &so, &oerr) == 0) {
			w->streaming = true;
			w->fingerprints = o->fingerprints;
			w->nfingerprints = o->nfingerprints;
			return load_sessions(store, o, w, err);
		}
		scry__log(o->log, o->log_ctx, SCRY_LOG_WARNING,
		          "cannot open the store a second time to stream it (%s): loading the workload whole", oerr.message);
		scry_event_filter f = SCRY_EVENT_FILTER_INIT;
		f.fingerprints = o->fingerprints;
		f.nfingerprints = o->nfingerprints;
		rc = scry_store_events(store, o->fingerprints ? &f : NULL, &it, err);
	}
	if (rc) {
		scry__budget_plan_free(&plan);
		return rc;
	}
	const scry_stored_event *ev;
	size_t last = 0;
	while ((rc = scry_event_iter_next(it, &ev, err)) == 1) {
		if ((rc = add_stmt(w, ev, &last)) != 0) {
			rc = scry__fail(err, rc, "out of memory loading the workload");
			break;
		}
	}
	scry_event_iter_free(it);
	scry__budget_plan_free(&plan);
	return rc < 0 ? rc : 0;
}
