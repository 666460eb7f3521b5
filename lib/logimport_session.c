/*
 * lib/logimport_session.c - log records -> events: the session state
 * machine of the log importer (see lib/logimport.c). A `statement:` or
 * `execute` line waits in its session for its `duration:` line; an ERROR
 * with its statement marks it failed; connection lines open and close
 * sessions. Events wait in the batch (lib/logimport_batch.c writes it).
 * The per-record path (session lookup, pending statement, event copy)
 * stays in this one file so that it can be inlined.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"
#include "util/map.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t parse_ms(span s, int64_t *us)
{
	size_t i = 0;
	int64_t ms = 0, frac = 0;
	bool range = true;
	for (; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++)
		range = range && scry__dec_digit(&ms, s.p[i] - '0');
	if (i == 0)
		return 0;
	if (i < s.n && s.p[i] == '.') {
		int scale = 100;
		for (i++; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
			frac += (s.p[i] - '0') * scale;
			scale /= 10;
		}
	}
	if (i + 3 > s.n || memcmp(s.p + i, " ms", 3))
		return 0;
	/* Beyond ~292,000 years: unknown, not wrapped around. */
	*us = range && ms <= (INT64_MAX - 999) / 1000 ? ms * 1000 + frac : -1;
	return i + 3;
}

static void copy_name(char *dst, size_t cap, span s)
{
	if (s.n == 9 && !memcmp(s.p, "[unknown]", 9))
		s.n = 0;
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	if (n)
		memcpy(dst, s.p, n);
	dst[n] = 0;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

static int flush_pending(scry_logimport *imp, session *s, scry_error *err);

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static session *session_find(scry_logimport *imp, span key)
{
	if (!imp->nbuckets)
		return NULL;
	if (key.n > sizeof imp->sess[0].key)
		key.n = sizeof imp->sess[0].key;
	/* Consecutive lines often come from one session. */
	session *last = imp->last_sess;
	if (last && last->used && last->keylen == key.n && !memcmp(last->key, key.p, key.n))
		return last;
	int32_t i = imp->buckets[scry__hash_bytes(key.p, key.n) & (imp->nbuckets - 1)];
	while (i >= 0) {
		session *s = &imp->sess[i];
		if (s->keylen == key.n && !memcmp(s->key, key.p, key.n))
			return imp->last_sess = s;
		i = s->next;
	}
	return NULL;
}

static int rehash(scry_logimport *imp, size_t nb)
{
	int32_t *b = scry__malloc(nb * sizeof *b);
	if (!b)
		return SCRY_ENOMEM;
	for (size_t i = 0; i < nb; i++)
		b[i] = -1;
	for (size_t i = 0; i < imp->nsess; i++) {
		session *s = &imp->sess[i];
		if (!s->used)
			continue;
		size_t h = scry__hash_bytes(s->key, s->keylen) & (nb - 1);
		s->next = b[h];
		b[h] = (int32_t)i;
	}
	scry__free(imp->buckets);
	imp->buckets = b;
	imp->nbuckets = nb;
	return 0;
}

static void unlink_session(scry_logimport *imp, session *s)
{
	int32_t idx = (int32_t)(s - imp->sess);
	int32_t *pp = &imp->buckets[scry__hash_bytes(s->key, s->keylen) & (imp->nbuckets - 1)];
	while (*pp >= 0 && *pp != idx)
		pp = &imp->sess[*pp].next;
	if (*pp == idx)
		*pp = s->next;
	s->used = false;
	s->pstate = P_NONE;
	s->next = imp->free_list;
	imp->free_list = idx;
	imp->open_sessions--;
}


/* Too many sessions open at once (a log without disconnection lines):
 * forget the least recently seen half. Their pending statements are
 * recorded first; if they show up again they become new sessions. */
static int evict_sessions(scry_logimport *imp, scry_error *err)
{
	uint64_t *seen = scry__malloc(imp->nsess * sizeof *seen);
	if (!seen)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	size_t k = 0;
	for (size_t i = 0; i < imp->nsess; i++)
		if (imp->sess[i].used)
			seen[k++] = imp->sess[i].last_seen;
	/* Sorting is simple, and this only happens once per max_open_sessions/2 sessions. */
	qsort(seen, k, sizeof *seen, cmp_u64);
	uint64_t cut = k ? seen[k / 2] : 0;
	scry__free(seen);
	for (size_t i = 0; i < imp->nsess; i++) {
		session *s = &imp->sess[i];
		if (s->used && s->last_seen <= cut) {
			int rc = flush_pending(imp, s, err);
			if (rc)
				return rc;
			unlink_session(imp, s);
		}
	}
	return 0;
}

static session *session_get(scry_logimport *imp, const rec *r, span key, scry_error *err, int *rc)
{
	if (key.n > sizeof imp->sess[0].key)
		key.n = sizeof imp->sess[0].key;
	session *s = session_find(imp, key);
	if (s) {
		s->last_seen = r->line;
		return s;
	}
	if (imp->open_sessions >= imp->opts.max_open_sessions && (*rc = evict_sessions(imp, err)) != 0)
		return NULL;
	int32_t idx;
	if (imp->free_list >= 0) {
		idx = imp->free_list;
		imp->free_list = imp->sess[idx].next;
	} else {
		if (imp->nsess == imp->asess) {
			size_t na = imp->asess ? imp->asess * 2 : 64;
			session *ns = scry__realloc(imp->sess, na * sizeof *ns);
			if (!ns) {
				*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
				return NULL;
			}
			memset(ns + imp->asess, 0, (na - imp->asess) * sizeof *ns);
			imp->sess = ns;
			imp->last_sess = NULL;
			imp->asess = na;
		}
		idx = (int32_t)imp->nsess++;
	}
	if (imp->nsess > imp->nbuckets && (*rc = rehash(imp, imp->nbuckets ? imp->nbuckets * 2 : 128)) != 0) {
		*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		return NULL;
	}
	s = &imp->sess[idx];
	s->used = true;
	s->gen++;
	if (key.n)
		memcpy(s->key, key.p, key.n);
	s->keylen = key.n;
	s->last_seen = r->line;
	s->store_id = 0;
	int64_t start = r->sess_start_us;
	if (!start && r->sess_start.n)
		scry__logimport_time(imp, r->sess_start.p, r->sess_start.n, &start);
	s->start_us = start ? start : r->time_us;
	s->db[0] = s->user[0] = s->app[0] = s->client[0] = 0;
	s->pstate = P_NONE;
	size_t h = scry__hash_bytes(s->key, s->keylen) & (imp->nbuckets - 1);
	s->next = imp->buckets[h];
	imp->buckets[h] = idx;
	imp->open_sessions++;
	return s;
}

/* Takes the names a record carries (they can be missing early in a session). */
static void session_names(session *s, const rec *r)
{
	if (!s->db[0])
		copy_name(s->db, sizeof s->db, r->db);
	if (!s->user[0])
		copy_name(s->user, sizeof s->user, r->user);
	if (!s->app[0])
		copy_name(s->app, sizeof s->app, r->app);
	if (!s->client[0])
		copy_name(s->client, sizeof s->client, r->client);
}

/* Gives the session its store row: added with the next batch, so that a
 * log of many short sessions does not cost one transaction per session. */
static int session_store(scry_logimport *imp, session *s, scry_error *err)
{
	if (s->store_id)
		return 0;
	if (scry__array_grow((void **)&imp->newsess, &imp->anew, imp->nnew, sizeof *imp->newsess, 64))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	newsess *n = &imp->newsess[imp->nnew];
	memcpy(n->db, s->db, sizeof n->db);
	memcpy(n->user, s->user, sizeof n->user);
	memcpy(n->app, s->app, sizeof n->app);
	memcpy(n->client, s->client, sizeof n->client);
	n->start_us = s->start_us;
	n->id = 0;
	n->slot = (int32_t)(s - imp->sess);
	n->gen = s->gen;
	s->store_id = -(int64_t)++imp->nnew;
	imp->st.sessions++;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

/* Parses "parameters: $1 = '1', $2 = NULL" into the packed form. */
static int parse_params(span d, scry_buf *out, int *nparams)
{
	scry__buf_clear(out);
	*nparams = 0;
	if (!STARTS(d, "parameters: "))
		return 0;
	d = span_skip(d, 12);
	size_t i = 0;
	while (i < d.n && d.p[i] == '$') {
		while (i < d.n && d.p[i] != '=')
			i++;
		if (i + 2 > d.n)
			break;
		i += 2; /* "= " */
		int32_t len;
		if (i + 4 <= d.n && !memcmp(d.p + i, "NULL", 4)) {
			len = -1;
			if (scry__buf_put(out, &len, sizeof len))
				return SCRY_ENOMEM;
			i += 4;
		} else if (i < d.n && d.p[i] == '\'') {
			size_t at = out->size;
			len = 0;
			if (scry__buf_put(out, &len, sizeof len))
				return SCRY_ENOMEM;
			for (i++; i < d.n; i++) {
				if (d.p[i] == '\'') {
					if (i + 1 < d.n && d.p[i + 1] == '\'')
						i++;
					else
						break;
				}
				if (scry__buf_put(out, &d.p[i], 1))
					return SCRY_ENOMEM;
				len++;
			}
			i++;
			memcpy(out->ptr + at, &len, sizeof len);
		} else {
			break;
		}
		(*nparams)++;
		if (i + 2 <= d.n && d.p[i] == ',' && d.p[i + 1] == ' ')
			i += 2;
		else
			break;
	}
	return 0;
}

static int push_text(scry_logimport *imp, session *s, scry_event_kind kind, int64_t start, int64_t dur,
                     const char *text, size_t tlen, const char *params, size_t plen, int nparams,
                     const char *sqlstate, span errmsg, scry_error *err)
{
	int rc = session_store(imp, s, err);
	if (rc)
		return rc;
	if (scry__array_grow((void **)&imp->bev, &imp->abev, imp->nbev, sizeof *imp->bev, 256))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	bevent *e = &imp->bev[imp->nbev];
	e->session_id = s->store_id;
	e->start_us = start;
	e->duration_us = dur;
	e->kind = kind;
	e->has_error = sqlstate && sqlstate[0];
	/* One reservation, then plain copies: this runs once per event. */
	if (scry__buf_grow(&imp->arena, tlen + 1 + plen + (e->has_error ? errmsg.n + 1 : 0)))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	char *a = imp->arena.ptr + imp->arena.size;
	e->qoff = imp->arena.size;
	e->qlen = tlen;
	if (tlen)
		memcpy(a, text, tlen);
	a[tlen] = 0;
	e->poff = e->qoff + tlen + 1;
	e->plen = plen;
	e->nparams = nparams;
	if (plen)
		memcpy(a + tlen + 1, params, plen);
	e->eoff = e->poff + plen;
	memset(e->sqlstate, 0, sizeof e->sqlstate);
	imp->arena.size = e->eoff;
	if (e->has_error) {
		memcpy(e->sqlstate, sqlstate, 5);
		if (errmsg.n)
			memcpy(imp->arena.ptr + e->eoff, errmsg.p, errmsg.n);
		imp->arena.ptr[e->eoff + errmsg.n] = 0;
		imp->arena.size += errmsg.n + 1;
		imp->st.failed++;
	}
	imp->arena.ptr[imp->arena.size] = 0;
	imp->nbev++;
	imp->st.statements++;
	/* Flush on count, and on bytes so that huge statements do not pile up. */
	if (imp->nbev >= imp->opts.batch_events || imp->arena.size > (64u << 20))
		return scry__logimport_flush_batch(imp, err);
	return 0;
}

/* push_text, with a password in CREATE/ALTER ROLE ... (the server logs it as
 * sent) stored '<redacted>', as the capture proxy stores it (lib/redact.c). */
static int push_event(scry_logimport *imp, session *s, scry_event_kind kind, int64_t start, int64_t dur,
                      const char *text, size_t tlen, const char *params, size_t plen, int nparams,
                      const char *sqlstate, span errmsg, scry_error *err)
{
	char *redacted = NULL;
	size_t rlen = 0;
	if (scry__redact_secrets(text, tlen, &redacted, &rlen) < 0)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	int rc = push_text(imp, s, kind, start, dur, redacted ? redacted : text, redacted ? rlen : tlen, params, plen,
	                   nparams, sqlstate, errmsg, err);
	scry__free(redacted);
	return rc;
}

/* Records one execution. A simple query holding several statements
 * ("SELECT 1; SELECT 2") becomes one event per statement, as the proxy
 * records it; their durations are then unknown and an error is put on
 * the last one. */
static int emit(scry_logimport *imp, session *s, scry_event_kind kind, int64_t start, int64_t dur,
                const char *text, size_t tlen, const char *params, size_t plen, int nparams,
                const char *sqlstate, span errmsg, scry_error *err)
{
	const char *semi = kind == SCRY_EVENT_SIMPLE ? memchr(text, ';', tlen) : NULL;
	if (semi) {
		/* Only a trailing ';' (and blanks)? Then it is one statement, kept as sent. */
		const char *q = semi + 1, *end = text + tlen;
		while (q < end && isspace((unsigned char)*q))
			q++;
		if (q < end) {
			scry_statement_span *sp = NULL;
			size_t cnt = 0;
			if (scry_fingerprint_split(text, tlen, &sp, &cnt, NULL) == 0 && cnt > 1) {
				int rc = 0;
				for (size_t i = 0; i < cnt && !rc; i++)
					rc = push_event(imp, s, kind, start, -1, text + sp[i].offset, sp[i].length, NULL, 0, 0,
					                i + 1 == cnt ? sqlstate : NULL, errmsg, err);
				scry_statement_spans_free(sp);
				return rc;
			}
			scry_statement_spans_free(sp);
		}
	}
	return push_event(imp, s, kind, start, dur, text, tlen, params, plen, nparams, sqlstate, errmsg, err);
}

/* Records the statement waiting in s, with its duration (or -1) or its error. */
static int emit_pending(scry_logimport *imp, session *s, int64_t dur, const char *sqlstate, span errmsg,
                        scry_error *err)
{
	s->pstate = P_NONE;
	return emit(imp, s, s->pkind, s->pstart, dur, s->ptext.ptr ? s->ptext.ptr : "", s->ptext.size, s->pparams.ptr,
	            s->pparams.size, s->pnparams, sqlstate, errmsg, err);
}

/* Records the statement waiting in s, if any: no duration line came for it. */
static int flush_pending(scry_logimport *imp, session *s, scry_error *err)
{
	if (s->pstate != P_STMT) {
		s->pstate = P_NONE;
		return 0;
	}
	return emit_pending(imp, s, -1, NULL, (span){ NULL, 0 }, err);
}

int scry__logimport_flush_pending_all(scry_logimport *imp, scry_error *err)
{
	int rc = 0;
	for (size_t i = 0; i < imp->nsess && !rc; i++)
		if (imp->sess[i].used)
			rc = flush_pending(imp, &imp->sess[i], err);
	return rc;
}
/* ------------------------------------------------------------------ */
/* Records -> events                                                   */
/* ------------------------------------------------------------------ */

/* ERROR, FATAL or PANIC. */
static bool is_error(span s)
{
	return (s.n == 5 && !memcmp(s.p, "ERROR", 5)) || (s.n == 5 && !memcmp(s.p, "FATAL", 5)) ||
	       (s.n == 5 && !memcmp(s.p, "PANIC", 5));
}

/* Finds "NAME: text" after "execute " (NAME may be "<unnamed>", "S_1/C_2"). */
static bool split_execute(span m, span *text)
{
	for (size_t i = 0; i + 1 < m.n; i++)
		if (m.p[i] == ':' && m.p[i + 1] == ' ') {
			*text = (span){ m.p + i + 2, m.n - i - 2 };
			return true;
		}
	return false;
}

static int set_pending(scry_logimport *imp, session *s, scry_event_kind kind, int64_t start, span text,
                       span detail, scry_error *err)
{
	(void)imp;
	s->pstate = P_STMT;
	s->pkind = kind;
	s->pstart = start;
	scry__buf_clear(&s->ptext);
	if (scry__buf_put(&s->ptext, text.p, text.n))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	s->pnparams = 0;
	scry__buf_clear(&s->pparams);
	if (kind == SCRY_EVENT_EXTENDED && parse_params(detail, &s->pparams, &s->pnparams))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

/* The session of a record (opened when new), with the names the record carries. */
static session *session_named(scry_logimport *imp, const rec *r, scry_error *err, int *rc)
{
	session *s = session_get(imp, r, r->sid, err, rc);
	if (s)
		session_names(s, r);
	return s;
}

/* The session of a record if it is open (else NULL in *out), its pending
 * statement recorded. */
static int session_flushed(scry_logimport *imp, const rec *r, session **out, scry_error *err)
{
	*out = session_find(imp, r->sid);
	return *out ? flush_pending(imp, *out, err) : 0;
}

/* "execute NAME: ..." but not "execute fetch from ...": an execution. */
static inline bool is_execute(span m)
{
	return STARTS(m, "execute ") && !STARTS(m, "execute fetch from ");
}

/* The statement text of "execute NAME: text" at `exec`; false (the line
 * counted as skipped) when there is none. */
static bool execute_text(scry_logimport *imp, const rec *r, span exec, span *text)
{
	if (split_execute(span_skip(exec, 8), text))
		return true;
	scry__logimport_skip(imp, r->line, "execute line without a statement", r->message.p, r->message.n);
	return false;
}

/* A translated log: severities and messages back in English. */
static int translate(scry_logimport *imp, rec *r, scry_error *err)
{
	int rc = 0;
	r->severity = scry__loglang_severity(imp->lang, r->severity);
	r->message = scry__loglang_message(imp->lang, r->message, &imp->xmsg, err, &rc);
	if (!rc)
		r->detail = scry__loglang_message(imp->lang, r->detail, &imp->xdetail, err, &rc);
	if (!rc)
		r->context = scry__loglang_message(imp->lang, r->context, &imp->xctx, err, &rc);
	return rc;
}

/* "duration: X ms": the end of the statement logged before it, or with
 * "  statement: ..." / "  execute NAME: ..." a statement logged only now. */
static int record_duration(scry_logimport *imp, const rec *r, scry_error *err)
{
	span m = r->message;
	int64_t dur;
	size_t k = parse_ms(span_skip(m, 10), &dur);
	if (!k) {
		scry__logimport_skip(imp, r->line, "duration line without a number of ms", m.p, m.n);
		return 0;
	}
	span rest = span_skip(m, 10 + k);
	int rc = 0;
	session *s = session_named(imp, r, err, &rc);
	if (!s)
		return rc;
	if (rest.n == 0) {
		/* The duration of the statement logged before it. */
		if (s->pstate == P_STMT)
			return emit_pending(imp, s, dur, NULL, (span){ NULL, 0 }, err);
		if (s->pstate == P_SWALLOW)
			s->pstate = P_NONE;
		else
			imp->st.unpaired_durations++;
		return 0;
	}
	/* "duration: X ms  statement: ..." - the statement was not logged before. */
	if ((rc = flush_pending(imp, s, err)) != 0)
		return rc;
	if (STARTS(rest, "  statement: ")) {
		span t = span_skip(rest, 13);
		return emit(imp, s, SCRY_EVENT_SIMPLE, r->time_us - dur, dur, t.p, t.n, NULL, 0, 0, NULL,
		            (span){ NULL, 0 }, err);
	}
	if (STARTS(rest, "  ") && is_execute(span_skip(rest, 2))) {
		span t;
		if (!execute_text(imp, r, span_skip(rest, 2), &t))
			return 0;
		scry__buf_clear(&imp->tmp);
		int np = 0;
		if (parse_params(r->detail, &imp->tmp, &np))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return emit(imp, s, SCRY_EVENT_EXTENDED, r->time_us - dur, dur, t.p, t.n, imp->tmp.ptr, imp->tmp.size,
		            np, NULL, (span){ NULL, 0 }, err);
	}
	/* parse, bind, fetch from a suspended portal, fastpath: not executions. */
	return 0;
}

/* "statement: ..." / "execute NAME: ...": waits for its duration line. */
static int record_statement(scry_logimport *imp, const rec *r, scry_error *err)
{
	span m = r->message;
	int rc = 0;
	session *s = session_named(imp, r, err, &rc);
	if (!s)
		return rc;
	if ((rc = flush_pending(imp, s, err)) != 0)
		return rc;
	if (m.p[0] == 's')
		return set_pending(imp, s, SCRY_EVENT_SIMPLE, r->time_us, span_skip(m, 11), r->detail, err);
	span t;
	if (!execute_text(imp, r, m, &t))
		return 0;
	return set_pending(imp, s, SCRY_EVENT_EXTENDED, r->time_us, t, r->detail, err);
}

/* "connection authorized: user=U database=D application_name=A ...":
 * the names, when the prefix has none. */
static int record_authorized(scry_logimport *imp, const rec *r, scry_error *err)
{
	int rc = 0;
	session *s = session_get(imp, r, r->sid, err, &rc);
	if (!s)
		return rc;
	span a = span_skip(r->message, 23);
	struct { const char *k; char *dst; } kv[] = {
		{ "user=", s->user }, { "database=", s->db }, { "application_name=", s->app }
	};
	for (size_t i = 0; i < 3; i++) {
		const char *f = memmem(a.p, a.n, kv[i].k, strlen(kv[i].k));
		if (!f || kv[i].dst[0])
			continue;
		f += strlen(kv[i].k);
		const char *e = f;
		if (i == 2) {
			/* application_name may hold spaces: it runs to the end, or to
			 * the SSL/GSS details PostgreSQL appends. */
			e = a.p + a.n;
			static const char *const tails[] = { " SSL enabled (", " GSS (" };
			for (int k = 0; k < 2; k++) {
				const char *t = memmem(f, (size_t)(e - f), tails[k], strlen(tails[k]));
				if (t)
					e = t;
			}
		} else {
			while (e < a.p + a.n && *e != ' ')
				e++;
		}
		copy_name(kv[i].dst, 64, (span){ f, (size_t)(e - f) });
	}
	session_names(s, r);
	return 0;
}

/* "disconnection: ...": the session ends (recorded with the next batch). */
static int record_disconnection(scry_logimport *imp, const rec *r, scry_error *err)
{
	session *s;
	int rc = session_flushed(imp, r, &s, err);
	if (rc || !s)
		return rc;
	if (s->store_id) {
		if (scry__array_grow((void **)&imp->ends, &imp->aends, imp->nends, sizeof *imp->ends, 64))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		imp->ends[imp->nends++] = (sessend){ s->store_id, r->time_us };
		if (imp->nends >= imp->opts.batch_events && (rc = scry__logimport_flush_batch(imp, err)) != 0)
			return rc;
	}
	unlink_session(imp, s);
	return 0;
}

/* A LOG record: statements, durations and the session's lifetime. */
static int record_log(scry_logimport *imp, const rec *r, scry_error *err)
{
	span m = r->message;
	if (STARTS(m, "duration: "))
		return record_duration(imp, r, err);
	if (STARTS(m, "statement: ") || is_execute(m))
		return record_statement(imp, r, err);
	if (STARTS(m, "connection authorized: "))
		return record_authorized(imp, r, err);
	if (STARTS(m, "disconnection: "))
		return record_disconnection(imp, r, err);
	bool fetch = STARTS(m, "execute fetch from ");
	if (!fetch && !STARTS(m, "connection received: "))
		return 0;
	session *s;
	int rc = session_flushed(imp, r, &s, err);
	if (rc || !s)
		return rc;
	if (fetch)
		s->pstate = P_SWALLOW; /* its duration line belongs to no new execution */
	else
		unlink_session(imp, s); /* a new backend: a session kept under the same key is over */
	return 0;
}

/* An ERROR (FATAL, PANIC) with its statement: a failed execution. */
static int record_error(scry_logimport *imp, const rec *r, scry_error *err)
{
	int rc = 0;
	session *s = session_named(imp, r, err, &rc);
	if (!s)
		return rc;
	span m = r->message;
	const char *state = r->sqlstate[0] ? r->sqlstate : "XX000";
	if (s->pstate == P_STMT && s->ptext.size == r->statement.n &&
	    !memcmp(s->ptext.ptr, r->statement.p, r->statement.n))
		return emit_pending(imp, s, -1, state, m, err); /* the logged statement failed */
	/* A statement that failed before it was logged (syntax error,
	 * log_statement off): the error line is all there is. An
	 * extended-protocol execution names its portal and parameters in the
	 * CONTEXT (log_parameter_max_length_on_error). */
	if ((rc = flush_pending(imp, s, err)) != 0)
		return rc;
	if (STARTS(r->context, "unnamed portal with parameters: ") || STARTS(r->context, "portal \"")) {
		const char *w = memmem(r->context.p, r->context.n, "with parameters: ", 17);
		if (w) {
			span d = { w + 5, (size_t)(r->context.p + r->context.n - (w + 5)) };
			int np = 0;
			if (parse_params(d, &imp->tmp, &np))
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			return emit(imp, s, SCRY_EVENT_EXTENDED, r->time_us, -1, r->statement.p, r->statement.n,
			            imp->tmp.ptr, imp->tmp.size, np, state, m, err);
		}
	}
	return emit(imp, s, SCRY_EVENT_SIMPLE, r->time_us, -1, r->statement.p, r->statement.n, NULL, 0, 0, state, m,
	            err);
}

int scry__logimport_record(scry_logimport *imp, rec *r, scry_error *err)
{
	imp->st.records++;
	if (imp->lang) {
		int rc = translate(imp, r, err);
		if (rc)
			return rc;
	}
	char pidkey[24];
	if (!r->sid.n) /* a record without a session id: its process is the session */
		r->sid = (span){ pidkey, (size_t)snprintf(pidkey, sizeof pidkey, "pid %lld", (long long)r->pid) };
	if (r->severity.n == 3 && !memcmp(r->severity.p, "LOG", 3))
		return record_log(imp, r, err);
	if (is_error(r->severity) && r->statement.n)
		return record_error(imp, r, err);
	return 0;
}
