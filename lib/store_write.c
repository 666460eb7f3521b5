/*
 * lib/store_write.c - appending to the workload store: sessions, events,
 * and the batches and transactions they go in (docs/store.md).
 *
 * Texts are stored once, as templates: the literal-lifting lexer
 * (lib/fingerprint.c) replaces each literal of a DML text with a marker, and
 * the literals go with the event. A stream of one query with varying
 * constants then costs one `statements` row plus a few bytes per event, and
 * the exact text is rebuilt on read. Statement and pattern ids are cached in
 * memory so that an append touches SQLite only to insert rows.
 */
#include "internal.h"
#include "store_internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* The caches                                                          */
/* ------------------------------------------------------------------ */

/* Adds a session to the cache; NULL when out of memory. */
static scry__session_entry *cache_session(scry_store *s, int64_t id, int64_t started_us, int64_t events)
{
	if (scry__array_grow((void **)&s->sessions, &s->asessions, s->nsessions, sizeof *s->sessions, 256) ||
	    scry__u64map_put(&s->session_map, (uint64_t)id, (uint32_t)s->nsessions + 1))
		return NULL;
	scry__session_entry *e = &s->sessions[s->nsessions++];
	*e = (scry__session_entry){ id, started_us, events, false };
	return e;
}

/* Adds a pattern to the cache (found by its fingerprint when `keyed`); its index, or -1 when out of memory. */
static int64_t cache_pattern(scry_store *s, int64_t id, bool keyed, uint64_t fp)
{
	if (scry__array_grow((void **)&s->patterns, &s->apatterns, s->npatterns, sizeof *s->patterns, 256))
		return -1;
	scry__pattern_entry *p = &s->patterns[s->npatterns];
	memset(p, 0, sizeof *p);
	p->id = id;
	if (keyed && scry__u64map_put(&s->pattern_map, fp, (uint32_t)s->npatterns + 1))
		return -1;
	return (int64_t)s->npatterns++;
}

/* Adds a statement to the cache, found by `hash`; NULL when out of memory. */
static scry__stmt_entry *cache_statement(scry_store *s, int64_t id, uint64_t hash, int64_t pattern_index,
                                         const char *tmpl, size_t len, int nlits)
{
	if (scry__array_grow((void **)&s->stmts, &s->astmts, s->nstmts, sizeof *s->stmts, 256))
		return NULL;
	scry__stmt_entry *e = &s->stmts[s->nstmts];
	*e = (scry__stmt_entry){ id, pattern_index, scry__strndup(tmpl, len), len, nlits };
	if (!e->template_text || scry__u64map_put(&s->stmt_map, hash, (uint32_t)s->nstmts + 1)) {
		scry__free(e->template_text);
		return NULL;
	}
	s->nstmts++;
	return e;
}

/* The index in patterns[] of the pattern with this id, or -1 (ids are dense: usually index id-1). */
static int64_t pattern_index_of(const scry_store *s, int64_t pattern_id)
{
	for (size_t i = 0; i < s->npatterns; i++) {
		size_t k = (size_t)(pattern_id - 1 + (int64_t)i) % s->npatterns;
		if (s->patterns[k].id == pattern_id)
			return (int64_t)k;
	}
	return -1;
}

static int load_patterns(scry_store *s, scry_error *err)
{
	static const char what[] = "loading patterns";
	sqlite3_stmt *st;
	int rc = scry__store_prepare(s, "SELECT id, fingerprint FROM patterns ORDER BY id", &st, err, what);
	while (!rc && (rc = scry__store_step(s, st, err, what)) == 1) {
		bool keyed = sqlite3_column_type(st, 1) != SQLITE_NULL;
		rc = cache_pattern(s, sqlite3_column_int64(st, 0), keyed, (uint64_t)sqlite3_column_int64(st, 1)) < 0
		     ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
	}
	sqlite3_finalize(st);
	return rc;
}

static int load_statements(scry_store *s, scry_error *err)
{
	static const char what[] = "loading statements";
	sqlite3_stmt *st;
	int rc = scry__store_prepare(s, "SELECT id, hash, pattern, template, literals FROM statements ORDER BY id", &st,
	                             err, what);
	while (!rc && (rc = scry__store_step(s, st, err, what)) == 1) {
		int64_t pidx = pattern_index_of(s, sqlite3_column_int64(st, 2));
		if (pidx < 0) {
			rc = scry__fail(err, SCRY_ECORRUPT, "the store's statements table is inconsistent");
			break;
		}
		const char *tmpl = (const char *)sqlite3_column_text(st, 3);
		size_t len = (size_t)sqlite3_column_bytes(st, 3);
		rc = cache_statement(s, sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1), pidx,
		                     tmpl ? tmpl : "", len, sqlite3_column_int(st, 4))
		     ? 0 : scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	sqlite3_finalize(st);
	return rc;
}

/* Loads statement and pattern ids of an existing store into memory, once. */
static int load_caches(scry_store *s, scry_error *err)
{
	if (s->caches_loaded)
		return 0;
	int rc = load_patterns(s, err);
	if (!rc)
		rc = load_statements(s, err);
	if (!rc)
		s->caches_loaded = true;
	return rc;
}

void scry__store_forget_caches(scry_store *s)
{
	for (size_t i = 0; i < s->nstmts; i++)
		scry__free(s->stmts[i].template_text);
	s->nstmts = 0;
	s->npatterns = 0;
	scry__u64map_free(&s->stmt_map);
	scry__u64map_free(&s->pattern_map);
	s->caches_loaded = false;
}

/* After a failed batch the in-memory caches may name rows that were rolled
 * back: drop them, they are reloaded from the file on the next append. */
static void drop_caches(scry_store *s)
{
	scry__store_forget_caches(s);
	s->nsessions = 0;
	scry__u64map_free(&s->session_map);
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

int scry_store_session_add(scry_store *s, const scry_session_info *info, int64_t *session_id, scry_error *err)
{
	static const char *const sources[] = { "api", "proxy", "csvlog", "jsonlog", "stderr" };
	if (!s || !info || !session_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_add: arguments are required");
	scry_session_info icopy;
	int rc = scry__opts_copy(err, &scry__abi_session_info, &icopy, info);
	if (rc)
		return rc;
	info = &icopy;
	unsigned src = (unsigned)info->source < 5 ? (unsigned)info->source : 0;
	rc = scry__store_run_kept(s, SCRY__SQ_INSERT_SESSION,
	                          SCRY__VALUES(SCRY__TEXT(sources[src]), SCRY__TEXT(info->database),
	                                       SCRY__TEXT(info->user), SCRY__TEXT(info->application),
	                                       SCRY__TEXT(info->client), SCRY__INT(info->started_us)),
	                          err, "adding a session");
	if (rc)
		return rc;
	*session_id = sqlite3_last_insert_rowid(s->db);
	if (!cache_session(s, *session_id, info->started_us, 0))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

int scry_store_session_end(scry_store *s, int64_t session_id, int64_t ended_us, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_end: store is NULL");
	return scry__store_run(s, "UPDATE sessions SET ended_us = ? WHERE id = ?",
	                       SCRY__VALUES(SCRY__INT(ended_us), SCRY__INT(session_id)), err, "ending a session");
}

int scry_store_session_set_params(scry_store *s, int64_t session_id, const char *params, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_set_params: store is NULL");
	int rc = scry__store_run(s, "UPDATE sessions SET params = ? WHERE id = ?",
	                         SCRY__VALUES(params && *params ? SCRY__TEXT(params) : SCRY__NULL, SCRY__INT(session_id)),
	                         err, "recording session parameters");
	if (rc)
		return rc;
	return sqlite3_changes(s->db) ? 0 : scry__fail(err, SCRY_ENOTFOUND, "session %lld does not exist", (long long)session_id);
}

/* The cache entry of an event's session, read from the file when it was added by another handle. */
static scry__session_entry *find_session(scry_store *s, int64_t id, scry_error *err, int *rc)
{
	uint32_t k = scry__u64map_get(&s->session_map, (uint64_t)id);
	if (k)
		return &s->sessions[k - 1];
	*rc = scry__store_kept_row(s, SCRY__SQ_FIND_SESSION, SCRY__VALUES(SCRY__INT(id)), err, "finding a session");
	if (*rc <= 0) {
		if (*rc == 0)
			*rc = scry__fail(err, SCRY_ENOTFOUND, "event refers to session %lld, which does not exist", (long long)id);
		return NULL;
	}
	*rc = 0;
	sqlite3_stmt *q = s->q[SCRY__SQ_FIND_SESSION];
	scry__session_entry *e = cache_session(s, id, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1));
	sqlite3_reset(q); /* ends its read; the row was the one wanted */
	if (!e)
		*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	return e;
}

/* ------------------------------------------------------------------ */
/* Patterns and statements                                             */
/* ------------------------------------------------------------------ */

/* Finds or creates the pattern of a text; returns its index in patterns[]. */
static int pattern_for(scry_store *s, const char *text, size_t len, bool truncated, int64_t now_us, int64_t *index,
                       scry_error *err)
{
	uint64_t fp = 0;
	scry_error perr = SCRY_ERROR_INIT;
	/* A truncated text is never fingerprinted: its cut may still parse, as something else. */
	int prc = truncated ? SCRY_EPARSE : scry_fingerprint_compute(s->fpr, text, len, &fp, &perr);
	if (prc && prc != SCRY_EPARSE)
		return scry__fail(err, prc, "%s", perr.message);
	if (prc) /* unparsable (or truncated): a key of its own, the hash of its text */
		fp = XXH3_64bits(text, len) | 1; /* never 0, which means "no key" to readers */
	uint32_t k = scry__u64map_get(&s->pattern_map, fp);
	if (k) {
		*index = k - 1;
		return 0;
	}
	/* Its normalized text: the text itself when unparsable or when normalizing fails. */
	scry__buf_clear(&s->text);
	if (!prc && scry_fingerprint_normalize(text, len, &s->text, NULL) != 0) {
		scry__buf_clear(&s->text);
		if (scry__buf_put(&s->text, text, len))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	const char *why = !prc ? NULL
	                  : truncated ? "text truncated at capture (over the capture limit); not replayed" : perr.message;
	int rc = scry__store_run_kept(s, SCRY__SQ_INSERT_PATTERN,
	                              SCRY__VALUES(SCRY__INT((int64_t)fp),
	                                           prc ? SCRY__TEXTN(text, len)
	                                               : SCRY__TEXTN(s->text.ptr ? s->text.ptr : "", s->text.size),
	                                           SCRY__TEXT(why), SCRY__INT(now_us), SCRY__INT(now_us)),
	                              err, "adding a pattern");
	if (rc)
		return rc;
	if ((*index = cache_pattern(s, sqlite3_last_insert_rowid(s->db), true, fp)) < 0)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

/*
 * Looks the template in s->tmpl up in the cache: 1 with *out found, else 0
 * with *hash the key of a new row. A 64-bit hash collision (vanishingly
 * rare), or a raw text holding marker bytes that equals a template, makes
 * the text stored whole (s->tmpl the text, *nlits 0) under a key of its own.
 */
static int lookup_statement(scry_store *s, const char *text, size_t len, int *nlits, uint64_t *hash,
                            scry__stmt_entry **out)
{
	uint64_t h = XXH3_64bits(s->tmpl.ptr, s->tmpl.size);
	*hash = h;
	uint32_t k = scry__u64map_get(&s->stmt_map, h);
	if (!k)
		return 0;
	scry__stmt_entry *e = &s->stmts[k - 1];
	if (e->template_len == s->tmpl.size && (e->nlits > 0) == (*nlits > 0) &&
	    !memcmp(e->template_text, s->tmpl.ptr, s->tmpl.size)) {
		*out = e;
		return 1;
	}
	scry__buf_clear(&s->tmpl);
	scry__buf_clear(&s->lits);
	if (scry__buf_put(&s->tmpl, text, len))
		return SCRY_ENOMEM;
	*nlits = 0;
	*hash = h = XXH3_64bits(s->tmpl.ptr, s->tmpl.size) ^ 0x5c5c5c5c5c5c5c5cull;
	if ((k = scry__u64map_get(&s->stmt_map, h)) != 0) {
		e = &s->stmts[k - 1];
		if (e->nlits == 0 && e->template_len == len && !memcmp(e->template_text, text, len)) {
			*out = e;
			return 1;
		}
		/* Yet another collision: a new row; the map then names it. */
	}
	return 0;
}

/* Finds or creates the statement row of the template in s->tmpl. */
static int statement_for(scry_store *s, const char *text, size_t len, int nlits, bool truncated, int64_t start_us,
                         scry__stmt_entry **out, scry_error *err)
{
	uint64_t h;
	int rc = lookup_statement(s, text, len, &nlits, &h, out);
	if (rc)
		return rc == 1 ? 0 : scry__fail(err, SCRY_ENOMEM, "out of memory");
	int64_t pidx = 0;
	if ((rc = pattern_for(s, text, len, truncated, start_us, &pidx, err)) != 0)
		return rc;
	const char *tmpl = s->tmpl.ptr ? s->tmpl.ptr : "";
	rc = scry__store_run_kept(s, SCRY__SQ_INSERT_STATEMENT,
	                          SCRY__VALUES(SCRY__INT((int64_t)h), SCRY__INT(s->patterns[pidx].id),
	                                       SCRY__TEXTN(tmpl, s->tmpl.size), SCRY__INT(nlits)),
	                          err, "adding a statement");
	if (rc)
		return rc;
	*out = cache_statement(s, sqlite3_last_insert_rowid(s->db), h, pidx, tmpl, s->tmpl.size, nlits);
	return *out ? 0 : scry__fail(err, SCRY_ENOMEM, "out of memory");
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

/* Splits an event's text into s->tmpl and s->lits; a truncated text is kept
 * whole, never lifted: it must not share a template with a complete text. */
static int lift_text(scry_store *s, const char *text, size_t len, bool truncated, int *nlits)
{
	scry__buf_clear(&s->tmpl);
	scry__buf_clear(&s->lits);
	if (scry__lift_literals(text, len, &s->tmpl, &s->lits, nlits))
		return SCRY_ENOMEM;
	if (!truncated)
		return 0;
	scry__buf_clear(&s->tmpl);
	scry__buf_clear(&s->lits);
	*nlits = 0;
	return scry__buf_put(&s->tmpl, text, len) ? SCRY_ENOMEM : 0;
}

/* Adds an event to its pattern's deltas of the batch. */
static void count_in_pattern(scry__pattern_entry *p, const scry_event *ev)
{
	if (!p->dirty) {
		p->dirty = true;
		p->first_us = p->last_us = ev->start_us;
	}
	p->d_count++;
	p->d_errors += ev->sqlstate[0] != 0;
	if (ev->duration_us >= 0) {
		p->d_total_us += ev->duration_us;
		p->d_timed++;
	}
	if (ev->start_us < p->first_us)
		p->first_us = ev->start_us;
	if (ev->start_us > p->last_us)
		p->last_us = ev->start_us;
}

/* The events row (its literals in s->lits); the rows of its COPY data and error message. */
static int insert_event(scry_store *s, const scry_event *ev, scry__session_entry *sess, int64_t statement_id,
                        scry_error *err)
{
	static const char what[] = "appending events";
	scry__buf_clear(&s->params);
	if (ev->nparams > 0 && scry__pack_params(&s->params, ev->params, ev->nparams))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	sess->events++;
	sess->dirty = true;
	int rc = scry__store_run_kept(s, SCRY__SQ_INSERT_EVENT, SCRY__VALUES(
		SCRY__INT(ev->session_id), SCRY__INT(sess->events), SCRY__INT(ev->start_us - sess->started_us),
		ev->duration_us >= 0 ? SCRY__INT(ev->duration_us) : SCRY__NULL, SCRY__INT(statement_id),
		s->lits.size ? SCRY__BLOB(s->lits.ptr, s->lits.size) : SCRY__NULL,
		ev->nparams > 0 ? SCRY__BLOB(s->params.ptr, s->params.size) : SCRY__NULL,
		ev->rows >= 0 ? SCRY__INT(ev->rows) : SCRY__NULL,
		ev->sqlstate[0] ? SCRY__TEXTN(ev->sqlstate, strnlen(ev->sqlstate, 5)) : SCRY__NULL,
		SCRY__INT((int)ev->kind), ev->fetch_rows > 0 ? SCRY__INT(ev->fetch_rows) : SCRY__NULL,
		ev->flags ? SCRY__INT((int64_t)ev->flags) : SCRY__NULL), err, what);
	if (rc)
		return rc;
	int64_t event_id = sqlite3_last_insert_rowid(s->db);
	/* COPY events are rare: their statement is prepared when needed. */
	if (ev->copy_data && ev->copy_len &&
	    (rc = scry__store_run(s, "INSERT INTO event_copy(event, data) VALUES (?,?)",
	                          SCRY__VALUES(SCRY__INT(event_id), SCRY__BLOB(ev->copy_data, ev->copy_len)), err, what)))
		return rc;
	if (ev->error_message && *ev->error_message)
		rc = scry__store_run_kept(s, SCRY__SQ_INSERT_ERROR,
		                          SCRY__VALUES(SCRY__INT(event_id), SCRY__TEXT(ev->error_message)), err, what);
	return rc;
}

/* `ev` has the fields of version 2 (zero for an older caller's events: scry__elem_get). */
static int append_one(scry_store *s, const scry_event *ev, scry_error *err)
{
	int rc = 0;
	scry__session_entry *sess = find_session(s, ev->session_id, err, &rc);
	if (!sess)
		return rc;
	size_t len = ev->query_len ? ev->query_len : (ev->query ? strlen(ev->query) : 0);
	const char *text = ev->query ? ev->query : "";
	bool truncated = (ev->flags & SCRY_EVENT_F_TRUNCATED) != 0;
	int nlits;
	if (lift_text(s, text, len, truncated, &nlits))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	scry__stmt_entry *st = NULL;
	if ((rc = statement_for(s, text, len, nlits, truncated, ev->start_us, &st, err)) != 0)
		return rc;
	count_in_pattern(&s->patterns[st->pattern_index], ev);
	return insert_event(s, ev, sess, st->id, err);
}

/* Writes the batch's pattern and session deltas. */
static int flush_deltas(scry_store *s, scry_error *err)
{
	int rc = 0;
	for (size_t i = 0; i < s->npatterns && !rc; i++) {
		scry__pattern_entry *p = &s->patterns[i];
		if (p->dirty)
			rc = scry__store_run_kept(s, SCRY__SQ_UPDATE_PATTERN,
			                          SCRY__VALUES(SCRY__INT(p->d_count), SCRY__INT(p->d_errors),
			                                       SCRY__INT(p->d_total_us), SCRY__INT(p->d_timed),
			                                       SCRY__INT(p->first_us), SCRY__INT(p->last_us), SCRY__INT(p->id)),
			                          err, "updating patterns");
	}
	for (size_t i = 0; i < s->nsessions && !rc; i++) {
		scry__session_entry *e = &s->sessions[i];
		if (e->dirty)
			rc = scry__store_run_kept(s, SCRY__SQ_UPDATE_SESSION, SCRY__VALUES(SCRY__INT(e->events), SCRY__INT(e->id)),
			                          err, "updating sessions");
	}
	return rc;
}

static void reset_deltas(scry_store *s)
{
	for (size_t i = 0; i < s->npatterns; i++) {
		scry__pattern_entry *p = &s->patterns[i];
		p->d_count = p->d_errors = p->d_total_us = p->d_timed = 0;
		p->dirty = false;
	}
	for (size_t i = 0; i < s->nsessions; i++)
		s->sessions[i].dirty = false;
}

int scry_store_append(scry_store *s, const scry_event *events, size_t n, size_t event_size, scry_error *err)
{
	if (!s || (n && !events))
		return scry__fail(err, SCRY_EINVAL, "scry_store_append: store and events are required");
	int rc = scry__elem_check(err, &scry__abi_event, event_size);
	if (rc || n == 0)
		return rc;
	rc = load_caches(s, err);
	if (rc)
		return rc;
	if ((rc = scry__store_batch_begin(s, err, "appending events")) != 0)
		return rc;
	reset_deltas(s);
	scry_event tmp;
	for (size_t i = 0; i < n && !rc; i++)
		rc = append_one(s, scry__elem_get(&scry__abi_event, &tmp, events, i, event_size), err);
	if (!rc)
		rc = flush_deltas(s, err);
	return scry__store_batch_end(s, rc, err, "committing events");
}

/* ------------------------------------------------------------------ */
/* Batches and transactions                                            */
/* ------------------------------------------------------------------ */

int scry__store_batch_begin(scry_store *s, scry_error *err, const char *what)
{
	return scry__store_exec(s, s->txn_open ? "SAVEPOINT scry_batch" : "BEGIN IMMEDIATE", err, what);
}

int scry__store_batch_end(scry_store *s, int rc, scry_error *err, const char *what)
{
	if (!rc)
		rc = scry__store_exec(s, s->txn_open ? "RELEASE scry_batch" : "COMMIT", err, what);
	if (rc) {
		if (s->txn_open) {
			scry__store_cleanup(s, "ROLLBACK TO scry_batch");
			scry__store_cleanup(s, "RELEASE scry_batch");
		} else {
			scry__store_cleanup(s, "ROLLBACK");
		}
		drop_caches(s);
	}
	return rc;
}

int scry_store_begin(scry_store *s, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_begin: store is NULL");
	if (s->txn_open)
		return scry__fail(err, SCRY_EINVAL,
			"a transaction is already open on this store; commit or roll it back first");
	int rc = scry__store_exec(s, "BEGIN IMMEDIATE", err, "starting a transaction");
	if (!rc)
		s->txn_open = true;
	return rc;
}

int scry_store_commit(scry_store *s, scry_error *err)
{
	if (!s || !s->txn_open)
		return scry__fail(err, SCRY_EINVAL, "scry_store_commit: no transaction is open (scry_store_begin)");
	int rc = scry__store_exec(s, "COMMIT", err, "committing a transaction");
	if (rc) {
		scry__store_cleanup(s, "ROLLBACK");
		drop_caches(s);
	}
	s->txn_open = false;
	return rc;
}

void scry_store_rollback(scry_store *s)
{
	if (!s || !s->txn_open)
		return;
	scry__store_cleanup(s, "ROLLBACK");
	s->txn_open = false;
	/* Sessions, statements and patterns added since begin are gone: so are their cache entries. */
	drop_caches(s);
}
