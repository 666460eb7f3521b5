/*
 * lib/logimport.c - PostgreSQL server log import (csvlog, jsonlog, stderr):
 * sessions, events and the API. The formats are in lib/logimport_formats.c.
 *
 * Three layers:
 *   1. framing: bytes -> records (a csvlog record may span lines inside
 *      quotes; jsonlog is one object per line; a stderr message is a
 *      prefixed line plus tab-indented continuation lines plus its
 *      DETAIL:/STATEMENT: lines);
 *   2. fields: each format fills one `rec` (time, session, severity,
 *      SQLSTATE, message, detail, statement);
 *   3. the session state machine turns records into events: a `statement:`
 *      or `execute` line waits in its session for its `duration:` line (so
 *      log_statement=all plus log_min_duration_statement=0 gives one event,
 *      not two), an ERROR with its statement marks it failed.
 * Events go to the store in batches. Buffers are reused: after warm-up no
 * allocation happens per line.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"
#include "util/map.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Small parsers                                                       */
/* ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at c (lead byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *c, size_t avail)
{
	unsigned char b = c[0];
	size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((c[i] & 0xC0) != 0x80)
			return 0;
	if ((b == 0xE0 && c[1] < 0xA0) || (b == 0xED && c[1] >= 0xA0) || (b == 0xF0 && c[1] < 0x90) ||
	    (b == 0xF4 && c[1] >= 0x90))
		return 0;
	return n;
}

void scry__logimport_skip(scry_logimport *imp, uint64_t line, const char *reason, const char *text, size_t n)
{
	imp->st.skipped++;
	if (imp->st.nskip_samples >= SCRY_LOGIMPORT_SKIP_SAMPLES)
		return;
	scry_logimport_skip *s = &imp->st.skip_samples[imp->st.nskip_samples++];
	s->line = line;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	/* Valid UTF-8, cut on a character boundary: callers print it as JSON. */
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof s->text && text[i] != '\n'; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x80) {
			s->text[k++] = (c == '\t' || c < 0x20) ? ' ' : (char)c;
			continue;
		}
		size_t u = utf8_len((const unsigned char *)text + i, n - i);
		if (!u) {
			s->text[k++] = '?';
			continue;
		}
		if (k + u + 1 > sizeof s->text)
			break;
		memcpy(s->text + k, text + i, u);
		k += u;
		i += u - 1;
	}
	s->text[k] = 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* Seconds east of UTC of a zone abbreviation; 0 (with a note) when it
 * cannot be resolved. Resolved once per import and abbreviation. */
static int zone_offset(scry_logimport *imp, const char *z, size_t n)
{
	if ((n == 3 && (!memcmp(z, "UTC", 3) || !memcmp(z, "GMT", 3))) || (n == 1 && z[0] == 'Z'))
		return 0;
	for (int k = 0; k < imp->ntz; k++)
		if (strlen(imp->tz[k].abbr) == n && !memcmp(imp->tz[k].abbr, z, n))
			return imp->tz[k].off;
	char abbr[12], note[200];
	memcpy(abbr, z, n);
	abbr[n] = 0;
	int off = 0;
	int r = scry__tz_abbrev(imp->tz_name, abbr, &off, note, sizeof note);
	if (r) {
		off = 0;
		if (!imp->tz_warned) {
			imp->tz_warned = true;
			snprintf(imp->st.warning, sizeof imp->st.warning,
			         "%.90s; read as UTC (pass the server's log_timezone: --timezone NAME)", note);
		}
	}
	if (imp->ntz < (int)(sizeof imp->tz / sizeof imp->tz[0])) {
		memcpy(imp->tz[imp->ntz].abbr, abbr, n + 1);
		imp->tz[imp->ntz].off = off;
		imp->tz[imp->ntz++].ok = r == 0;
	}
	return off;
}

/* Parses "YYYY-MM-DD HH:MM:SS[.ffffff][ TZ]" as PostgreSQL writes log
 * times. Returns bytes consumed (including the zone) or 0. */
size_t scry__logimport_time(scry_logimport *imp, const char *p, size_t n, int64_t *out)
{
	if (n < 19)
		return 0;
	int64_t sec;
	/* Consecutive lines mostly share their second: convert it once. */
	if (!memcmp(p, imp->tcache, 19)) {
		sec = imp->tcache_sec;
	} else {
		if (p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' || p[16] != ':')
			return 0;
		int y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
		int h = digits(p + 11, 2), mi = digits(p + 14, 2), s = digits(p + 17, 2);
		if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || mi < 0 || s < 0)
			return 0;
		sec = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
		memcpy(imp->tcache, p, 19);
		imp->tcache_sec = sec;
	}
	size_t i = 19;
	int64_t frac = 0;
	if (i < n && p[i] == '.') {
		int scale = 100000;
		for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
			frac += (p[i] - '0') * scale;
			scale /= 10;
		}
	}
	int64_t t = sec * 1000000 + frac;
	/* The zone, as PostgreSQL writes it: an abbreviation ("UTC", "CEST")
	 * or a numeric offset ("+04", "-0330"). Only the zone: whatever
	 * follows it ("UTC:10.0.0.1(...)", "UTC|user|") is the next field's. */
	if (i + 1 < n && p[i] == ' ') {
		const char *zp = p + i + 1;
		size_t avail = n - i - 1, zn = 0;
		if (zp[0] == '+' || zp[0] == '-') {
			zn = 1;
			while (zn < avail && zn < 5 && zp[zn] >= '0' && zp[zn] <= '9')
				zn++;
			/* "+04", "+0530": tzdb's numeric abbreviations. Never "+05:30",
			 * so "-03:10.0.0.1" is a zone and then the next field. */
			if (zn != 3 && zn != 5)
				zn = 0;
			else {
				int oh = digits(zp + 1, 2), om = zn > 3 ? digits(zp + 3, 2) : 0;
				int64_t off = ((int64_t)oh * 3600 + om * 60) * 1000000;
				t -= zp[0] == '+' ? off : -off;
			}
		} else {
			while (zn < avail && zn < 10 && ((zp[zn] >= 'A' && zp[zn] <= 'Z') || (zp[zn] >= 'a' && zp[zn] <= 'z')))
				zn++;
			if (zn && zn < avail && ((zp[zn] >= '0' && zp[zn] <= '9') || zp[zn] == '_'))
				zn = 0; /* not a zone: a word that goes on */
			if (zn)
				t -= (int64_t)zone_offset(imp, zp, zn) * 1000000;
		}
		if (zn)
			i += 1 + zn;
	}
	*out = t;
	return i;
}

int64_t scry__logimport_int(span s)
{
	int64_t v = 0;
	for (size_t i = 0; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++)
		if (!scry__dec_digit(&v, s.p[i] - '0'))
			return 0; /* beyond int64: no such process */
	return v;
}

/* "0.356 ms" -> microseconds; returns bytes consumed through " ms" or 0. */
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

static int flush_pending(scry_logimport *imp, session *s, scry_error *err);
static int flush_batch(scry_logimport *imp, scry_error *err);

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

static int push_event(scry_logimport *imp, session *s, scry_event_kind kind, int64_t start, int64_t dur,
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
		return flush_batch(imp, err);
	return 0;
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

static int flush_pending(scry_logimport *imp, session *s, scry_error *err)
{
	int st = s->pstate;
	s->pstate = P_NONE;
	if (st != P_STMT)
		return 0;
	return emit(imp, s, s->pkind, s->pstart, -1, s->ptext.ptr ? s->ptext.ptr : "", s->ptext.size,
	            s->pparams.ptr, s->pparams.size, s->pnparams, NULL, (span){ NULL, 0 }, err);
}

static int flush_batch(scry_logimport *imp, scry_error *err)
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

/* ------------------------------------------------------------------ */
/* Records -> events                                                   */
/* ------------------------------------------------------------------ */

bool scry__logimport_is_error(span s)
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

int scry__logimport_record(scry_logimport *imp, rec *r, scry_error *err)
{
	imp->st.records++;
	int rc = 0;
	if (imp->lang) {
		/* A translated log: severities and messages back in English. */
		r->severity = scry__loglang_severity(imp->lang, r->severity);
		r->message = scry__loglang_message(imp->lang, r->message, &imp->xmsg, err, &rc);
		if (!rc)
			r->detail = scry__loglang_message(imp->lang, r->detail, &imp->xdetail, err, &rc);
		if (!rc)
			r->context = scry__loglang_message(imp->lang, r->context, &imp->xctx, err, &rc);
		if (rc)
			return rc;
	}
	span m = r->message;
	char pidkey[24];
	if (!r->sid.n) /* a record without a session id: its scry__logimport_process is the session */
		r->sid = (span){ pidkey, (size_t)snprintf(pidkey, sizeof pidkey, "pid %lld", (long long)r->pid) };
	if (r->severity.n == 3 && !memcmp(r->severity.p, "LOG", 3)) {
		if (STARTS(m, "duration: ")) {
			int64_t dur;
			size_t k = parse_ms(span_skip(m, 10), &dur);
			if (!k) {
				scry__logimport_skip(imp, r->line, "duration line without a number of ms", m.p, m.n);
				return 0;
			}
			span rest = span_skip(m, 10 + k);
			session *s = session_get(imp, r, r->sid, err, &rc);
			if (!s)
				return rc;
			session_names(s, r);
			if (rest.n == 0) {
				/* The duration of the statement logged before it. */
				if (s->pstate == P_STMT) {
					s->pstate = P_NONE;
					return emit(imp, s, s->pkind, s->pstart, dur, s->ptext.ptr ? s->ptext.ptr : "",
					            s->ptext.size, s->pparams.ptr, s->pparams.size, s->pnparams, NULL,
					            (span){ NULL, 0 }, err);
				}
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
			if (STARTS(rest, "  execute ") && !STARTS(rest, "  execute fetch from ")) {
				span t;
				if (!split_execute(span_skip(rest, 10), &t)) {
					scry__logimport_skip(imp, r->line, "execute line without a statement", m.p, m.n);
					return 0;
				}
				scry__buf_clear(&imp->tmp);
				int np = 0;
				if (parse_params(r->detail, &imp->tmp, &np))
					return scry__fail(err, SCRY_ENOMEM, "out of memory");
				return emit(imp, s, SCRY_EVENT_EXTENDED, r->time_us - dur, dur, t.p, t.n, imp->tmp.ptr,
				            imp->tmp.size, np, NULL, (span){ NULL, 0 }, err);
			}
			/* parse, bind, fetch from a suspended portal, fastpath: not executions. */
			return 0;
		}
		if (STARTS(m, "statement: ") || (STARTS(m, "execute ") && !STARTS(m, "execute fetch from "))) {
			session *s = session_get(imp, r, r->sid, err, &rc);
			if (!s)
				return rc;
			session_names(s, r);
			if ((rc = flush_pending(imp, s, err)) != 0)
				return rc;
			if (m.p[0] == 's')
				return set_pending(imp, s, SCRY_EVENT_SIMPLE, r->time_us, span_skip(m, 11), r->detail, err);
			span t;
			if (!split_execute(span_skip(m, 8), &t)) {
				scry__logimport_skip(imp, r->line, "execute line without a statement", m.p, m.n);
				return 0;
			}
			return set_pending(imp, s, SCRY_EVENT_EXTENDED, r->time_us, t, r->detail, err);
		}
		if (STARTS(m, "execute fetch from ")) {
			session *s = session_find(imp, r->sid);
			if (s) {
				if ((rc = flush_pending(imp, s, err)) != 0)
					return rc;
				s->pstate = P_SWALLOW; /* its duration line belongs to no new execution */
			}
			return 0;
		}
		if (STARTS(m, "connection received: ")) {
			/* A new backend: a session kept under the same key is over. */
			session *s = session_find(imp, r->sid);
			if (s) {
				if ((rc = flush_pending(imp, s, err)) != 0)
					return rc;
				unlink_session(imp, s);
			}
			return 0;
		}
		if (STARTS(m, "connection authorized: ")) {
			session *s = session_get(imp, r, r->sid, err, &rc);
			if (!s)
				return rc;
			/* "user=U database=D application_name=A ..." when the prefix has no names. */
			span a = span_skip(m, 23);
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
		if (STARTS(m, "disconnection: ")) {
			session *s = session_find(imp, r->sid);
			if (s) {
				if ((rc = flush_pending(imp, s, err)) != 0)
					return rc;
				if (s->store_id) {
					if (scry__array_grow((void **)&imp->ends, &imp->aends, imp->nends, sizeof *imp->ends, 64))
						return scry__fail(err, SCRY_ENOMEM, "out of memory");
					imp->ends[imp->nends++] = (sessend){ s->store_id, r->time_us };
					if (imp->nends >= imp->opts.batch_events && (rc = flush_batch(imp, err)) != 0)
						return rc;
				}
				unlink_session(imp, s);
			}
			return 0;
		}
		return 0;
	}
	if (scry__logimport_is_error(r->severity) && r->statement.n) {
		session *s = session_get(imp, r, r->sid, err, &rc);
		if (!s)
			return rc;
		session_names(s, r);
		const char *state = r->sqlstate[0] ? r->sqlstate : "XX000";
		if (s->pstate == P_STMT && s->ptext.size == r->statement.n &&
		    !memcmp(s->ptext.ptr, r->statement.p, r->statement.n)) {
			/* The logged statement failed. */
			s->pstate = P_NONE;
			return emit(imp, s, s->pkind, s->pstart, -1, s->ptext.ptr, s->ptext.size, s->pparams.ptr,
			            s->pparams.size, s->pnparams, state, m, err);
		}
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
		return emit(imp, s, SCRY_EVENT_SIMPLE, r->time_us, -1, r->statement.p, r->statement.n, NULL, 0, 0,
		            state, m, err);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

void scry_logimport_options_init(scry_logimport_options *opts)
{
	if (opts)
		*opts = (scry_logimport_options)SCRY_LOGIMPORT_OPTIONS_INIT;
}

int scry_log_format_parse(const char *name, scry_log_format *out)
{
	static const char *const names[] = { "csvlog", "jsonlog", "stderr", "auto" };
	for (int i = 0; i < 4; i++)
		if (name && !strcmp(name, names[i])) {
			*out = (scry_log_format)i;
			return 0;
		}
	return SCRY_EINVAL;
}

int scry_logimport_new(scry_logimport **out, scry_store *store, const scry_logimport_options *opts,
                       scry_error *err)
{
	if (!out || !store)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_new: out and store are required");
	*out = NULL;
	scry_logimport_options o;
	int vrc = scry__opts_copy(err, &scry__abi_logimport_options, &o, opts);
	if (vrc)
		return vrc;
	if ((unsigned)o.format > SCRY_LOG_AUTO)
		return scry__fail(err, SCRY_EINVAL, "unknown log format %d (csvlog, jsonlog, stderr or auto)", (int)o.format);
	if (o.format != SCRY_LOG_STDERR && o.format != SCRY_LOG_AUTO && o.line_prefix && *o.line_prefix)
		return scry__fail(err, SCRY_EINVAL, "a log_line_prefix applies to stderr logs only");
	const scry__loglang *lang = NULL;
	bool lang_auto = !o.lang || !*o.lang || !strcmp(o.lang, "auto");
	if (!lang_auto && strcmp(o.lang, "C") && strcmp(o.lang, "POSIX") && strncmp(o.lang, "en", 2) &&
	    !(lang = scry__loglang_find(o.lang))) {
		scry_buf names = SCRY_BUF_INIT;
		for (const scry__loglang *l = scry__loglangs; l->code; l++)
			scry__buf_printf(&names, "%s%s", l == scry__loglangs ? "" : ", ", l->code);
		int rc = scry__fail(err, SCRY_EINVAL,
		                    "no message catalog for language '%s' (PostgreSQL 15 ships: C/en, %s); set "
		                    "lc_messages = 'C' on the server for logs scry can read",
		                    o.lang, names.ptr ? names.ptr : "");
		scry_buf_dispose(&names);
		return rc;
	}
	if (!o.batch_events)
		o.batch_events = 4096;
	if (!o.max_record_bytes)
		o.max_record_bytes = (size_t)64 << 20;
	if (!o.max_open_sessions)
		o.max_open_sessions = 65536;
	scry_logimport *imp = scry__calloc(1, sizeof *imp);
	if (!imp)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	imp->store = store;
	imp->opts = o;
	imp->free_list = -1;
	imp->opts.line_prefix = NULL; /* not kept: compiled below */
	imp->opts.timezone = imp->opts.lang = NULL;
	imp->fmt = o.format;
	imp->lang = lang;
	imp->lang_auto = lang_auto;
	if (o.timezone && *o.timezone && !(imp->tz_name = scry__strdup(o.timezone))) {
		scry_logimport_free(imp);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	bool have_prefix = o.line_prefix && *o.line_prefix;
	if (have_prefix) {
		if (!(imp->prefix_given = scry__strdup(o.line_prefix))) {
			scry_logimport_free(imp);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		int rc = scry__logimport_compile_prefix(imp, o.line_prefix, err);
		if (rc) {
			scry_logimport_free(imp);
			return rc;
		}
	}
	/* What the options leave open is detected on the first bytes. */
	imp->detecting = o.format == SCRY_LOG_AUTO || (o.format == SCRY_LOG_STDERR && !have_prefix) || lang_auto;
	scry_store_info info = SCRY_STORE_INFO_INIT;
	int rc = scry_store_info_get(store, &info, err);
	if (rc) {
		scry_logimport_free(imp);
		return rc;
	}
	imp->patterns_before = info.patterns;
	*out = imp;
	return 0;
}

int scry_logimport_feed(scry_logimport *imp, const void *data, size_t n, scry_error *err)
{
	if (!imp || (n && !data))
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed: importer and data are required");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed: the import is already finished");
	imp->st.bytes += n;
	/* Chunks are processed a few MB at a time so that the buffer stays small. */
	const char *d = data;
	while (n) {
		size_t k = n < ((size_t)4 << 20) ? n : ((size_t)4 << 20);
		if (scry__buf_put(&imp->in, d, k))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		int rc = scry__logimport_process(imp, false, err);
		if (rc)
			return rc;
		d += k;
		n -= k;
	}
	return 0;
}

/* A non-empty log gave no statement: say why, as well as the lines show. */
static void explain_nothing(scry_logimport *imp)
{
	scry_logimport_stats *st = &imp->st;
	if (st->statements) {
		st->nothing_reason[0] = 0; /* a detection's doubt that did not stop the import */
		return;
	}
	if (!st->bytes || st->nothing_reason[0])
		return;
	const char *fmt = imp->fmt == SCRY_LOG_CSVLOG ? "csvlog" : imp->fmt == SCRY_LOG_JSONLOG ? "jsonlog" : "stderr";
	if (!st->records && st->skipped)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "no line could be read as %s%s (%llu skipped, see the examples): check --format%s", fmt,
		         imp->fmt == SCRY_LOG_STDERR ? " with this log_line_prefix" : "", (unsigned long long)st->skipped,
		         imp->fmt == SCRY_LOG_STDERR ? " and --prefix (SHOW log_line_prefix;)" : "");
	else if (st->records)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "%llu log records read, none of them a statement: the server did not log statements "
		         "(set log_statement = 'all' or log_min_duration_statement = 0)%s",
		         (unsigned long long)st->records,
		         imp->lang ? "" : ", or the log is in a language scry did not recognise (set lc_messages = 'C' or pass --lang)");
	else if (st->files_skipped)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "every file was already imported into this store (--force imports it again)");
	else
		snprintf(st->nothing_reason, sizeof st->nothing_reason, "the log holds no complete record");
}

static void fill_stats(const scry_logimport *imp, scry_logimport_stats *stats)
{
	scry_logimport_stats st = imp->st;
	st.lines = imp->line;
	scry__out_put(&scry__abi_logimport_stats, stats, &st);
}

int scry_logimport_stats_get(const scry_logimport *imp, scry_logimport_stats *stats)
{
	int rc = scry__out_check(NULL, &scry__abi_logimport_stats, stats);
	if (!rc && imp) {
		fill_stats(imp, stats);
	} else if (!rc) {
		static const scry_logimport_stats zero;
		scry__out_put(&scry__abi_logimport_stats, stats, &zero);
	}
	return rc;
}

int scry_logimport_finish(scry_logimport *imp, scry_logimport_stats *stats, scry_error *err)
{
	if (!imp)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: importer is NULL");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: already finished");
	if (stats) {
		int src = scry__out_check(err, &scry__abi_logimport_stats, stats);
		if (src)
			return src;
	}
	imp->finished = true;
	int rc = scry__logimport_process(imp, true, err);
	if (!rc && imp->fmt == SCRY_LOG_STDERR)
		rc = scry__logimport_wrapped_flush(imp, err);
	if (!rc && imp->fmt == SCRY_LOG_STDERR)
		rc = scry__logimport_stderr_finish(imp, err);
	/* Statements still waiting for a duration line: the log ended first. */
	for (size_t i = 0; i < imp->nsess && !rc; i++)
		if (imp->sess[i].used)
			rc = flush_pending(imp, &imp->sess[i], err);
	if (!rc)
		rc = flush_batch(imp, err);
	if (!rc)
		rc = scry__logwriter_wait(imp->writer, err);
	if (!rc)
		rc = scry__logimport_record_files(imp, err);
	explain_nothing(imp);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	if (!rc && (rc = scry_store_info_get(imp->store, &info, err)) == 0) {
		imp->st.patterns = (uint64_t)info.patterns;
		imp->st.new_patterns = (uint64_t)(info.patterns - imp->patterns_before);
	}
	if (stats)
		fill_stats(imp, stats);
	return rc;
}

void scry_logimport_free(scry_logimport *imp)
{
	if (!imp)
		return;
	scry__logwriter_free(imp->writer); /* after the batch in flight */
	for (size_t i = 0; i < imp->nsess; i++) {
		scry_buf_dispose(&imp->sess[i].ptext);
		scry_buf_dispose(&imp->sess[i].pparams);
	}
	scry__free(imp->sess);
	scry__free(imp->buckets);
	scry__free(imp->bev);
	scry__free(imp->evs);
	scry__free(imp->params);
	scry__free(imp->newsess);
	scry__free(imp->ends);
	scry__free(imp->prefix_copy);
	scry__free(imp->prefix_given);
	scry__free(imp->tz_name);
	for (size_t i = 0; i < imp->nfiles; i++)
		scry__free((char *)imp->files[i].name);
	scry__free(imp->files);
	scry_buf_dispose(&imp->xsev);
	scry_buf_dispose(&imp->xmsg);
	scry_buf_dispose(&imp->xdetail);
	scry_buf_dispose(&imp->xctx);
	scry_buf_dispose(&imp->wline);
	scry_buf_dispose(&imp->wtext);
	scry_buf_dispose(&imp->in);
	scry_buf_dispose(&imp->scratch);
	scry_buf_dispose(&imp->cur);
	scry_buf_dispose(&imp->arena);
	scry_buf_dispose(&imp->tmp);
	scry__free(imp);
}

int scry_logimport_file(scry_store *store, const char *path, const scry_logimport_options *opts,
                        scry_logimport_stats *stats, scry_error *err)
{
	scry_logimport *imp;
	int rc = scry_logimport_new(&imp, store, opts, err);
	if (rc)
		return rc;
	rc = scry_logimport_feed_file(imp, path, err);
	/* Even after a read error, keep what was read. */
	int frc = scry_logimport_finish(imp, stats, rc ? NULL : err);
	scry_logimport_free(imp);
	return rc ? rc : frc;
}
