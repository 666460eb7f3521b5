/*
 * lib/logimport.c - PostgreSQL server log import (csvlog, jsonlog, stderr).
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
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct span {
	const char *p;
	size_t n;
} span;

#define SPAN_LIT(s) ((span){ s, sizeof(s) - 1 })

static bool span_starts(span s, const char *lit, size_t n)
{
	return s.n >= n && !memcmp(s.p, lit, n);
}
#define STARTS(s, lit) span_starts(s, lit, sizeof(lit) - 1)

static span span_skip(span s, size_t n)
{
	return (span){ s.p + n, s.n - n };
}

/* One log message, whatever the format. Spans point into format buffers
 * that stay valid while the record is processed. */
typedef struct rec {
	uint64_t line;
	int64_t time_us;
	bool has_time;
	int64_t pid;
	int64_t sess_start_us;   /* 0 when unknown */
	span sess_start;         /* or its text, parsed only when a session starts */
	span sid;                /* session key */
	span user, db, app, client;
	span severity;
	char sqlstate[6];
	span message, detail, statement;
} rec;

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

enum { P_NONE = 0, P_STMT, P_SWALLOW };

typedef struct session {
	char key[64];
	size_t keylen;
	int32_t next;            /* hash chain, or free list */
	bool used;
	uint64_t last_seen;
	int64_t store_id;        /* 0 until its first event */
	int64_t start_us;
	char db[64], user[64], app[64], client[64];
	/* A statement waiting for its duration line (or the next statement). */
	int pstate;
	scry_event_kind pkind;
	int64_t pstart;
	scry_buf ptext;
	scry_buf pparams;        /* packed: (int32 length or -1, bytes)* */
	int pnparams;
} session;

/* An event waiting in the batch; strings live in the batch arena. */
typedef struct bevent {
	int64_t session_id, start_us, duration_us;
	scry_event_kind kind;
	size_t qoff, qlen, poff, plen, eoff;
	int nparams;
	bool has_error;
	char sqlstate[6];
} bevent;

/* log_line_prefix, compiled. */
typedef struct pitem {
	char esc;                /* 0 for a literal */
	bool padded;
	const char *lit;
	size_t litlen;
} pitem;

struct scry_logimport {
	scry_store *store;
	scry_logimport_options opts;
	scry_logimport_stats st;
	int64_t patterns_before;
	bool finished;

	/* framing */
	scry_buf in;             /* bytes not yet consumed */
	size_t scan;             /* csv: bytes of the current record already scanned */
	bool in_quote;
	bool discarding;         /* dropping an oversized record */
	uint64_t line;           /* physical lines consumed */
	scry_buf scratch;        /* json unescaping */

	/* stderr */
	pitem items[64];
	int nitems;
	char *prefix_copy;
	bool has_c, has_p, has_s;
	span mspan[64];          /* per-item matches of the last matched line */
	int qend;
	scry_buf cur;            /* the stderr record being assembled */
	bool cur_open;
	rec cur_rec;
	size_t cur_off[16], cur_len[16];
	int cur_last;            /* index of the field continuation lines extend */
	int64_t cur_pid;

	/* sessions */
	session *sess;
	size_t nsess, asess;
	int32_t *buckets;
	size_t nbuckets;
	int32_t free_list;
	size_t open_sessions;

	/* batch */
	bevent *bev;
	size_t nbev, abev;
	scry_buf arena;
	scry_event *evs;
	scry_param *params;
	size_t aparams;
	scry_buf tmp;
	bool tz_warned;
	session *last_sess;      /* cache of session_find(); reset when sess moves */
	char tcache[19];         /* last "YYYY-MM-DD HH:MM:SS" parsed */
	int64_t tcache_sec;
};

/* Fields of the stderr record buffer. */
enum { F_USER, F_DB, F_APP, F_CLIENT, F_SID, F_SEV, F_MSG, F_DETAIL, F_STMT, F_OTHER, F_COUNT };

/* ------------------------------------------------------------------ */
/* Small parsers                                                       */
/* ------------------------------------------------------------------ */

static void add_skip(scry_logimport *imp, uint64_t line, const char *reason, const char *text, size_t n)
{
	imp->st.skipped++;
	if (imp->st.nskip_samples >= SCRY_LOGIMPORT_SKIP_SAMPLES)
		return;
	scry_logimport_skip *s = &imp->st.skip_samples[imp->st.nskip_samples++];
	s->line = line;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof s->text && text[i] != '\n'; i++)
		s->text[k++] = (text[i] == '\t' || (unsigned char)text[i] < 0x20) ? ' ' : text[i];
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

/* Parses "YYYY-MM-DD HH:MM:SS[.ffffff][ TZ]" as PostgreSQL writes log
 * times. Returns bytes consumed (including the zone) or 0. */
static size_t parse_time(scry_logimport *imp, const char *p, size_t n, int64_t *out)
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
	if (i < n && p[i] == ' ') {
		size_t z = i + 1, e = z;
		while (e < n && p[e] != ' ' && p[e] != ',' && p[e] != '"')
			e++;
		if (e > z) {
			const char *zp = p + z;
			size_t zn = e - z;
			if ((zp[0] == '+' || zp[0] == '-') && zn >= 3 && isdigit((unsigned char)zp[1])) {
				int oh = digits(zp + 1, 2), om = 0;
				if (zn >= 5) {
					const char *m = zp + 3 + (zp[3] == ':');
					om = digits(m, 2);
				}
				if (oh >= 0 && om >= 0) {
					int64_t off = ((int64_t)oh * 3600 + om * 60) * 1000000;
					t -= zp[0] == '+' ? off : -off;
				}
			} else if (!(zn == 3 && (!memcmp(zp, "UTC", 3) || !memcmp(zp, "GMT", 3))) &&
			           !(zn == 1 && zp[0] == 'Z') && !imp->tz_warned) {
				imp->tz_warned = true;
				snprintf(imp->st.warning, sizeof imp->st.warning,
				         "log times are in time zone '%.*s', read as UTC (set log_timezone = 'UTC' for exact times)",
				         (int)(zn > 40 ? 40 : zn), zp);
			}
			i = e;
		}
	}
	*out = t;
	return i;
}

static int64_t parse_int(span s)
{
	int64_t v = 0;
	for (size_t i = 0; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++)
		v = v * 10 + (s.p[i] - '0');
	return v;
}

/* "0.356 ms" -> microseconds; returns bytes consumed through " ms" or 0. */
static size_t parse_ms(span s, int64_t *us)
{
	size_t i = 0;
	int64_t ms = 0, frac = 0;
	while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9')
		ms = ms * 10 + (s.p[i++] - '0');
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
	*us = ms * 1000 + frac;
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

static uint64_t hash_key(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
	return h;
}

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
	int32_t i = imp->buckets[hash_key(key.p, key.n) & (imp->nbuckets - 1)];
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
		size_t h = hash_key(s->key, s->keylen) & (nb - 1);
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
	int32_t *pp = &imp->buckets[hash_key(s->key, s->keylen) & (imp->nbuckets - 1)];
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
	if (key.n)
		memcpy(s->key, key.p, key.n);
	s->keylen = key.n;
	s->last_seen = r->line;
	s->store_id = 0;
	int64_t start = r->sess_start_us;
	if (!start && r->sess_start.n)
		parse_time(imp, r->sess_start.p, r->sess_start.n, &start);
	s->start_us = start ? start : r->time_us;
	s->db[0] = s->user[0] = s->app[0] = s->client[0] = 0;
	s->pstate = P_NONE;
	size_t h = hash_key(s->key, s->keylen) & (imp->nbuckets - 1);
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

static int session_store(scry_logimport *imp, session *s, scry_error *err)
{
	if (s->store_id)
		return 0;
	static const scry_source src[] = { SCRY_SOURCE_CSVLOG, SCRY_SOURCE_JSONLOG, SCRY_SOURCE_STDERR };
	scry_session_info info = {
		src[imp->opts.format], s->db[0] ? s->db : NULL, s->user[0] ? s->user : NULL,
		s->app[0] ? s->app : NULL, s->client[0] ? s->client : NULL, s->start_us
	};
	int rc = scry_store_session_add(imp->store, &info, &s->store_id, err);
	if (!rc)
		imp->st.sessions++;
	return rc;
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
	if (imp->nbev == imp->abev) {
		size_t na = imp->abev ? imp->abev * 2 : 256;
		bevent *nb = scry__realloc(imp->bev, na * sizeof *nb);
		if (!nb)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		imp->bev = nb;
		imp->abev = na;
	}
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
	if (!imp->nbev)
		return 0;
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
	scry_event *evs = scry__realloc(imp->evs, imp->nbev * sizeof *evs);
	if (!evs)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	imp->evs = evs;
	const char *a = imp->arena.ptr;
	size_t pi = 0;
	for (size_t i = 0; i < imp->nbev; i++) {
		const bevent *b = &imp->bev[i];
		scry_event *e = &evs[i];
		memset(e, 0, sizeof *e);
		e->session_id = b->session_id;
		e->start_us = b->start_us;
		e->duration_us = b->duration_us;
		e->kind = b->kind;
		e->query = a + b->qoff;
		e->query_len = b->qlen;
		e->rows = -1;
		e->nparams = b->nparams;
		e->params = imp->params + pi;
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
	int rc = scry_store_append(imp->store, evs, imp->nbev, err);
	imp->nbev = 0;
	scry__buf_clear(&imp->arena);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Records -> events                                                   */
/* ------------------------------------------------------------------ */

static bool is_error_severity(span s)
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

static int on_record(scry_logimport *imp, rec *r, scry_error *err)
{
	imp->st.records++;
	span m = r->message;
	int rc = 0;
	char pidkey[24];
	if (!r->sid.n) /* a record without a session id: its process is the session */
		r->sid = (span){ pidkey, (size_t)snprintf(pidkey, sizeof pidkey, "pid %lld", (long long)r->pid) };
	if (r->severity.n == 3 && !memcmp(r->severity.p, "LOG", 3)) {
		if (STARTS(m, "duration: ")) {
			int64_t dur;
			size_t k = parse_ms(span_skip(m, 10), &dur);
			if (!k) {
				add_skip(imp, r->line, "duration line without a number of ms", m.p, m.n);
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
					add_skip(imp, r->line, "execute line without a statement", m.p, m.n);
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
				add_skip(imp, r->line, "execute line without a statement", m.p, m.n);
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
				while (e < a.p + a.n && *e != ' ')
					e++;
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
					/* Events first, so the session row is complete when it ends. */
					if ((rc = flush_batch(imp, err)) != 0 ||
					    (rc = scry_store_session_end(imp->store, s->store_id, r->time_us, err)) != 0)
						return rc;
				}
				unlink_session(imp, s);
			}
			return 0;
		}
		return 0;
	}
	if (is_error_severity(r->severity) && r->statement.n) {
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
		 * log_statement off): the error line is all there is. */
		if ((rc = flush_pending(imp, s, err)) != 0)
			return rc;
		return emit(imp, s, SCRY_EVENT_SIMPLE, r->time_us, -1, r->statement.p, r->statement.n, NULL, 0, 0,
		            state, m, err);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* csvlog                                                              */
/* ------------------------------------------------------------------ */

static bool looks_like_time(const char *p, size_t n)
{
	return n >= 10 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[3]) && p[4] == '-' && p[7] == '-';
}

/* Strips ":port" / "(port)" from a client address. */
static span strip_port(span c)
{
	if (c.n && c.p[c.n - 1] == ')') {
		const char *o = memrchr(c.p, '(', c.n);
		if (o)
			c.n = (size_t)(o - c.p);
		return c;
	}
	if (c.n && c.p[0] != '[') {
		const char *o = memrchr(c.p, ':', c.n);
		if (o && o + 1 < c.p + c.n && isdigit((unsigned char)o[1]))
			c.n = (size_t)(o - c.p);
	}
	return c;
}

static int csv_fields(scry_logimport *imp, span *f, int nf, const char *p, size_t n, uint64_t line,
                      scry_error *err);

/* Splits one complete csvlog record (unquoting in place) and handles it. */
static int csv_record(scry_logimport *imp, char *p, size_t n, uint64_t line, scry_error *err)
{
	span f[32];
	int nf = 0;
	size_t i = 0;
	while (nf < 32) {
		if (i < n && p[i] == '"') {
			char *w = p + i + 1, *start = w;
			size_t j = i + 1;
			while (j < n) {
				if (p[j] == '"') {
					if (j + 1 < n && p[j + 1] == '"') {
						*w++ = '"';
						j += 2;
						continue;
					}
					break;
				}
				*w++ = p[j++];
			}
			f[nf++] = (span){ start, (size_t)(w - start) };
			i = j + 1;
		} else {
			const char *c = memchr(p + i, ',', n - i);
			size_t e = c ? (size_t)(c - p) : n;
			f[nf++] = (span){ p + i, e - i };
			i = e;
		}
		if (i >= n || p[i] != ',')
			break;
		i++;
	}
	return csv_fields(imp, f, nf, p, n, line, err);
}

/* The fast path: one pass over a record at p that frames it (the newline
 * outside quotes), splits its fields and counts its lines, without
 * touching the buffer until the record is known to be complete. Returns
 * the record's length, or -1 when it is incomplete or unusual (then the
 * careful path takes over). */
static ssize_t csv_fast(span *f, int *nfp, uint64_t *nlines, char *p, size_t n)
{
	int nf = 0;
	uint32_t dq = 0; /* fields holding "" */
	uint64_t lines = 0;
	size_t i = 0;
	for (;;) {
		size_t start, end;
		if (i < n && p[i] == '"') {
			size_t j = i + 1;
			start = j;
			for (;;) {
				const char *q = memchr(p + j, '"', n - j);
				if (!q)
					return -1;
				/* Newlines inside quotes are rare: count them with memchr too. */
				for (const char *l = p + j; (l = memchr(l, '\n', (size_t)(q - l))) != NULL; l++)
					lines++;
				j = (size_t)(q - p);
				if (j + 1 >= n)
					return -1;
				if (p[j + 1] != '"')
					break;
				if (nf < 32)
					dq |= 1u << nf;
				j += 2;
			}
			end = j;
			i = j + 1;
		} else {
			size_t j = i;
			while (j < n && p[j] != ',' && p[j] != '\n')
				j++;
			start = i;
			end = j;
			i = j;
		}
		if (nf < 32)
			f[nf] = (span){ p + start, end - start };
		nf++;
		if (i >= n)
			return -1;
		if (p[i] == ',') {
			i++;
			continue;
		}
		if (p[i] != '\n')
			return -1;
		break;
	}
	if (nf > 32)
		nf = 32;
	/* Complete: now undo the doubled quotes in place. */
	for (int k = 0; dq && k < nf; k++) {
		if (!(dq & (1u << k)))
			continue;
		dq &= ~(1u << k);
		char *w = (char *)f[k].p, *r = w, *e = w + f[k].n;
		while (r < e) {
			if (*r == '"')
				r++;
			*w++ = *r++;
		}
		f[k].n = (size_t)(w - f[k].p);
	}
	*nfp = nf;
	*nlines = lines + 1;
	return (ssize_t)i;
}

static int csv_fields(scry_logimport *imp, span *f, int nf, const char *p, size_t n, uint64_t line,
                      scry_error *err)
{
	if (nf < 23) {
		add_skip(imp, line, "not a csvlog record (too few fields)", p, n);
		return 0;
	}
	rec r;
	memset(&r, 0, sizeof r);
	r.line = line;
	if (!parse_time(imp, f[0].p, f[0].n, &r.time_us)) {
		add_skip(imp, line, "csvlog record without a valid log_time", p, n);
		return 0;
	}
	r.has_time = true;
	r.user = f[1];
	r.db = f[2];
	r.pid = parse_int(f[3]);
	r.client = strip_port(f[4]);
	r.sid = f[5];
	r.sess_start = f[8];
	r.severity = f[11];
	if (f[12].n == 5)
		memcpy(r.sqlstate, f[12].p, 5);
	r.message = f[13];
	r.detail = f[14];
	r.statement = f[19];
	r.app = f[22];
	return on_record(imp, &r, err);
}

/* Finds the end of the csv record starting at in.ptr[0], resuming the
 * scan at imp->scan. Returns its length (without the newline) or -1. */
static ssize_t csv_find_end(scry_logimport *imp, const char *p, size_t n)
{
	size_t i = imp->scan;
	while (i < n) {
		if (imp->in_quote) {
			const char *q = memchr(p + i, '"', n - i);
			if (!q) {
				i = n;
				break;
			}
			i = (size_t)(q - p);
			if (i + 1 >= n)
				break; /* need the next byte to tell "" from " */
			if (p[i + 1] == '"') {
				i += 2;
				continue;
			}
			imp->in_quote = false;
			i++;
		} else {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t e = nl ? (size_t)(nl - p) : n;
			const char *q = memchr(p + i, '"', e - i);
			if (q) {
				imp->in_quote = true;
				i = (size_t)(q - p) + 1;
				continue;
			}
			if (!nl) {
				i = n;
				break;
			}
			imp->scan = 0;
			return (ssize_t)e;
		}
	}
	imp->scan = i;
	return -1;
}

static uint64_t count_lines(const char *p, size_t n)
{
	uint64_t c = 0;
	const char *e = p + n;
	while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		c++;
		p++;
	}
	return c;
}

/* ------------------------------------------------------------------ */
/* jsonlog                                                             */
/* ------------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static char *put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80) {
		*w++ = (char)cp;
	} else if (cp < 0x800) {
		*w++ = (char)(0xC0 | (cp >> 6));
		*w++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xE0 | (cp >> 12));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*w++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*w++ = (char)(0xF0 | (cp >> 18));
		*w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*w++ = (char)(0x80 | (cp & 0x3F));
	}
	return w;
}

/* Reads a JSON string at p[*i] (the opening quote) into w; returns the
 * end of the written bytes or NULL when malformed. */
static char *json_string(const char *p, size_t n, size_t *i, char *w)
{
	size_t j = *i + 1;
	while (j < n) {
		const char *q = p + j;
		size_t run = 0;
		while (j + run < n && q[run] != '"' && q[run] != '\\')
			run++;
		memcpy(w, q, run);
		w += run;
		j += run;
		if (j >= n)
			return NULL;
		if (p[j] == '"') {
			*i = j + 1;
			return w;
		}
		if (j + 1 >= n)
			return NULL;
		char c = p[j + 1];
		j += 2;
		switch (c) {
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case 'r': *w++ = '\r'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'u': {
			if (j + 4 > n)
				return NULL;
			unsigned cp = 0;
			for (int k = 0; k < 4; k++) {
				int h = hexval(p[j + k]);
				if (h < 0)
					return NULL;
				cp = cp << 4 | (unsigned)h;
			}
			j += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && j + 6 <= n && p[j] == '\\' && p[j + 1] == 'u') {
				unsigned lo = 0;
				for (int k = 0; k < 4; k++) {
					int h = hexval(p[j + 2 + k]);
					lo = lo << 4 | (unsigned)(h < 0 ? 0 : h);
				}
				if (lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					j += 6;
				}
			}
			w = put_utf8(w, cp);
			break;
		}
		default: *w++ = c; break; /* \" \\ \/ */
		}
	}
	return NULL;
}

static int json_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	/* Unescaped strings are never longer than the line: one reservation. */
	scry__buf_clear(&imp->scratch);
	if (scry__buf_grow(&imp->scratch, n + 8))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	char *w = imp->scratch.ptr;
	rec r;
	memset(&r, 0, sizeof r);
	r.line = line;
	span ts = { NULL, 0 }, sstart = { NULL, 0 }, state = { NULL, 0 };
	size_t i = 0;
	while (i < n && isspace((unsigned char)p[i]))
		i++;
	if (i >= n || p[i] != '{') {
		add_skip(imp, line, "not a jsonlog record (no JSON object)", p, n);
		return 0;
	}
	i++;
	for (;;) {
		while (i < n && (isspace((unsigned char)p[i]) || p[i] == ','))
			i++;
		if (i < n && p[i] == '}')
			break;
		if (i >= n || p[i] != '"')
			goto bad;
		char *k = w;
		char *ke = json_string(p, n, &i, w);
		if (!ke)
			goto bad;
		span key = { k, (size_t)(ke - k) };
		w = ke;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		if (i >= n || p[i] != ':')
			goto bad;
		i++;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		span val;
		if (i < n && p[i] == '"') {
			char *v = w;
			char *ve = json_string(p, n, &i, w);
			if (!ve)
				goto bad;
			val = (span){ v, (size_t)(ve - v) };
			w = ve;
		} else {
			size_t s = i;
			while (i < n && p[i] != ',' && p[i] != '}')
				i++;
			val = (span){ p + s, i - s };
			while (val.n && isspace((unsigned char)val.p[val.n - 1]))
				val.n--;
		}
#define KEY(lit) (key.n == sizeof(lit) - 1 && !memcmp(key.p, lit, sizeof(lit) - 1))
		if (KEY("message"))
			r.message = val;
		else if (KEY("timestamp"))
			ts = val;
		else if (KEY("session_id"))
			r.sid = val;
		else if (KEY("error_severity"))
			r.severity = val;
		else if (KEY("pid"))
			r.pid = parse_int(val);
		else if (KEY("user"))
			r.user = val;
		else if (KEY("dbname"))
			r.db = val;
		else if (KEY("remote_host"))
			r.client = val;
		else if (KEY("session_start"))
			sstart = val;
		else if (KEY("state_code"))
			state = val;
		else if (KEY("detail"))
			r.detail = val;
		else if (KEY("statement"))
			r.statement = val;
		else if (KEY("application_name"))
			r.app = val;
#undef KEY
	}
	if (!ts.n || !parse_time(imp, ts.p, ts.n, &r.time_us)) {
		add_skip(imp, line, "jsonlog record without a valid timestamp", p, n);
		return 0;
	}
	r.has_time = true;
	r.sess_start = sstart;
	if (state.n == 5)
		memcpy(r.sqlstate, state.p, 5);
	return on_record(imp, &r, err);
bad:
	add_skip(imp, line, "malformed jsonlog record", p, n);
	return 0;
}

/* ------------------------------------------------------------------ */
/* stderr with log_line_prefix                                         */
/* ------------------------------------------------------------------ */

static const char *const severities[] = {
	"LOG", "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "INFO", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3",
	"DEBUG4", "DEBUG5", "DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT", NULL
};

/* "SEVERITY:  " at p? Returns the severity's length or 0. */
static size_t severity_at(const char *p, size_t n)
{
	size_t k = 0;
	while (k < n && k < 10 && isupper((unsigned char)p[k]))
		k++;
	while (k < n && k < 10 && isdigit((unsigned char)p[k]))
		k++;
	if (k == 0 || k + 3 > n || p[k] != ':' || p[k + 1] != ' ' || p[k + 2] != ' ')
		return 0;
	for (int i = 0; severities[i]; i++)
		if (strlen(severities[i]) == k && !memcmp(severities[i], p, k))
			return k;
	return 0;
}

static bool is_free_escape(char c)
{
	return !strchr("mtsnplcxevPQ", c);
}

static size_t scan_digits(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && isdigit((unsigned char)p[i]))
		i++;
	return i;
}

/* Length of a fixed-shape escape's value at p, or (size_t)-1. */
static size_t scan_fixed(scry_logimport *imp, char esc, const char *p, size_t n)
{
	size_t k;
	int64_t t;
	switch (esc) {
	case 'm': case 't': case 's':
		k = parse_time(imp, p, n, &t);
		return k ? k : (size_t)-1;
	case 'n':
		k = scan_digits(p, n);
		if (!k)
			return (size_t)-1;
		if (k < n && p[k] == '.')
			k += 1 + scan_digits(p + k + 1, n - k - 1);
		return k;
	case 'p': case 'l': case 'x':
		k = scan_digits(p, n);
		return k ? k : (size_t)-1;
	case 'P':
		return scan_digits(p, n);
	case 'Q':
		k = (n && p[0] == '-');
		return k + scan_digits(p + k, n - k);
	case 'c':
		k = 0;
		while (k < n && isxdigit((unsigned char)p[k]))
			k++;
		if (!k || k >= n || p[k] != '.')
			return (size_t)-1;
		k++;
		while (k < n && isxdigit((unsigned char)p[k]))
			k++;
		return k;
	case 'e':
		if (n < 5)
			return (size_t)-1;
		for (k = 0; k < 5; k++)
			if (!isalnum((unsigned char)p[k]))
				return (size_t)-1;
		return 5;
	case 'v':
		k = scan_digits(p, n);
		if (k < n && p[k] == '/')
			k += 1 + scan_digits(p + k + 1, n - k - 1);
		return k;
	}
	return (size_t)-1;
}

/* Matches items[i..] at p[pos..n); backtracks over free-form values. On
 * success returns the offset of the severity. */
static bool prefix_match(scry_logimport *imp, int i, const char *p, size_t n, size_t pos, size_t *msg)
{
	if (i == imp->nitems) {
		if (!severity_at(p + pos, n - pos))
			return false;
		imp->qend = imp->nitems;
		*msg = pos;
		return true;
	}
	const pitem *it = &imp->items[i];
	if (!it->esc) {
		if (n - pos < it->litlen || memcmp(p + pos, it->lit, it->litlen))
			return false;
		return prefix_match(imp, i + 1, p, n, pos + it->litlen, msg);
	}
	if (it->esc == 'q') {
		if (prefix_match(imp, i + 1, p, n, pos, msg))
			return true;
		if (severity_at(p + pos, n - pos)) {
			imp->qend = i;
			*msg = pos;
			return true;
		}
		return false;
	}
	if (!it->padded && !is_free_escape(it->esc)) {
		size_t k = scan_fixed(imp, it->esc, p + pos, n - pos);
		if (k == (size_t)-1)
			return false;
		imp->mspan[i] = (span){ p + pos, k };
		return prefix_match(imp, i + 1, p, n, pos + k, msg);
	}
	/* Free-form (user, database, application, host...): the shortest value
	 * after which the rest matches. Values may hold spaces. */
	const pitem *nx = i + 1 < imp->nitems && !imp->items[i + 1].esc ? &imp->items[i + 1] : NULL;
	for (size_t end = pos; end <= n; end++) {
		if (nx) {
			const char *f = memmem(p + end, n - end, nx->lit, nx->litlen);
			if (!f)
				return false;
			end = (size_t)(f - p);
		}
		imp->mspan[i] = (span){ p + pos, end - pos };
		if (prefix_match(imp, i + 1, p, n, end, msg))
			return true;
	}
	return false;
}

static span trim(span s)
{
	while (s.n && s.p[0] == ' ')
		s = span_skip(s, 1);
	while (s.n && s.p[s.n - 1] == ' ')
		s.n--;
	return s;
}

static int cur_put(scry_logimport *imp, int field, const char *p, size_t n)
{
	imp->cur_off[field] = imp->cur.size;
	imp->cur_len[field] = n;
	imp->cur_last = field;
	return scry__buf_put(&imp->cur, p, n);
}

/* Hands the assembled stderr record to on_record(). */
static int stderr_finish(scry_logimport *imp, scry_error *err)
{
	if (!imp->cur_open)
		return 0;
	imp->cur_open = false;
	rec *r = &imp->cur_rec;
	span *fields[F_COUNT] = { &r->user, &r->db, &r->app, &r->client, &r->sid, &r->severity,
	                          &r->message, &r->detail, &r->statement, NULL };
	for (int f = 0; f < F_OTHER; f++)
		*fields[f] = imp->cur_len[f] != (size_t)-1 ? (span){ imp->cur.ptr + imp->cur_off[f], imp->cur_len[f] }
		                                           : (span){ "", 0 };
	/* log_error_verbosity = verbose puts the SQLSTATE before every message. */
	if (r->message.n >= 7 && r->message.p[5] == ':' && r->message.p[6] == ' ') {
		bool ok = true;
		for (int k = 0; k < 5; k++)
			ok &= isdigit((unsigned char)r->message.p[k]) || isupper((unsigned char)r->message.p[k]);
		if (ok) {
			if (!r->sqlstate[0])
				memcpy(r->sqlstate, r->message.p, 5);
			r->message = span_skip(r->message, 7);
		}
	}
	return on_record(imp, r, err);
}

static int stderr_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (n && p[0] == '\t') {
		/* A continuation line of a multi-line message or statement. */
		if (!imp->cur_open) {
			add_skip(imp, line, "continuation line without the line it continues", p, n);
			return 0;
		}
		if (imp->cur_last != F_OTHER && imp->cur_off[imp->cur_last] + imp->cur_len[imp->cur_last] == imp->cur.size) {
			if (scry__buf_put(&imp->cur, "\n", 1) || scry__buf_put(&imp->cur, p + 1, n - 1))
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			imp->cur_len[imp->cur_last] += n;
		}
		return 0;
	}
	size_t msg;
	if (!prefix_match(imp, 0, p, n, 0, &msg)) {
		add_skip(imp, line, "line does not start with log_line_prefix", p, n);
		return 0;
	}
	size_t sk = severity_at(p + msg, n - msg);
	span sev = { p + msg, sk };
	span body = { p + msg + sk + 3, n - msg - sk - 3 };
	int64_t pid = -1;
	span sid = { NULL, 0 };
	for (int i = 0; i < imp->qend; i++) {
		if (imp->items[i].esc == 'p')
			pid = parse_int(imp->mspan[i]);
		else if (imp->items[i].esc == 'c')
			sid = imp->mspan[i];
	}
	static const char *const secondary[] = { "DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT" };
	for (int k = 0; k < 6; k++) {
		if (strlen(secondary[k]) != sk || memcmp(secondary[k], sev.p, sk))
			continue;
		/* Belongs to the message before it, from the same process. */
		if (!imp->cur_open || (pid >= 0 && pid != imp->cur_pid)) {
			add_skip(imp, line, "detail line without the message it belongs to", p, n);
			return 0;
		}
		int f = k == 0 ? F_DETAIL : k == 5 ? F_STMT : F_OTHER;
		if (f == F_OTHER) {
			imp->cur_last = F_OTHER;
			return 0;
		}
		if (cur_put(imp, f, body.p, body.n))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return 0;
	}
	int rc = stderr_finish(imp, err);
	if (rc)
		return rc;
	imp->cur_open = true;
	imp->cur_pid = pid;
	scry__buf_clear(&imp->cur);
	for (int f = 0; f < F_COUNT; f++)
		imp->cur_len[f] = (size_t)-1;
	rec *r = &imp->cur_rec;
	memset(r, 0, sizeof *r);
	r->line = line;
	r->pid = pid;
	char key[48];
	int klen = 0;
	for (int i = 0; i < imp->qend; i++) {
		span v = imp->mspan[i];
		if (imp->items[i].padded)
			v = trim(v);
		switch (imp->items[i].esc) {
		case 'm': case 't':
			r->has_time = parse_time(imp, v.p, v.n, &r->time_us) != 0;
			break;
		case 'n': {
			int64_t sec = 0, us = 0;
			size_t k = 0;
			for (; k < v.n && isdigit((unsigned char)v.p[k]); k++)
				sec = sec * 10 + (v.p[k] - '0');
			int scale = 100000;
			for (k++; k < v.n && isdigit((unsigned char)v.p[k]); k++, scale /= 10)
				us += (v.p[k] - '0') * scale;
			r->time_us = sec * 1000000 + us;
			r->has_time = true;
			break;
		}
		case 's':
			parse_time(imp, v.p, v.n, &r->sess_start_us);
			break;
		case 'e':
			if (v.n == 5)
				memcpy(r->sqlstate, v.p, 5);
			break;
		case 'u': cur_put(imp, F_USER, v.p, v.n); break;
		case 'd': cur_put(imp, F_DB, v.p, v.n); break;
		case 'a': cur_put(imp, F_APP, v.p, v.n); break;
		case 'h': cur_put(imp, F_CLIENT, v.p, v.n); break;
		case 'r':
			if (imp->cur_len[F_CLIENT] == (size_t)-1) {
				v = strip_port(v);
				cur_put(imp, F_CLIENT, v.p, v.n);
			}
			break;
		}
	}
	/* Session key: %c, else the process id (+ %s when present). */
	if (sid.n) {
		klen = snprintf(key, sizeof key, "%.*s", (int)(sid.n > 40 ? 40 : sid.n), sid.p);
		/* %c is hex(session start).hex(pid): the start, to the second. */
		if (!r->sess_start_us)
			r->sess_start_us = (int64_t)strtoll(key, NULL, 16) * 1000000;
	} else {
		klen = snprintf(key, sizeof key, "%lld.%lld", (long long)pid, (long long)r->sess_start_us);
	}
	if (!r->has_time)
		r->time_us = 0;
	if (cur_put(imp, F_SID, key, (size_t)klen) || cur_put(imp, F_SEV, sev.p, sev.n) ||
	    cur_put(imp, F_MSG, body.p, body.n))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

static int compile_prefix(scry_logimport *imp, const char *prefix, scry_error *err)
{
	imp->prefix_copy = scry__strdup(prefix ? prefix : "");
	if (!imp->prefix_copy)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	const char *p = imp->prefix_copy;
	char *w = imp->prefix_copy; /* literals are unescaped in place ("%%" -> "%") */
	pitem *lit = NULL;
	while (*p) {
		if (imp->nitems >= (int)(sizeof imp->items / sizeof imp->items[0]) - 1)
			return scry__fail(err, SCRY_EINVAL, "log_line_prefix is too long");
		if (*p != '%' || p[1] == '%') {
			if (!lit) {
				lit = &imp->items[imp->nitems++];
				*lit = (pitem){ 0, false, w, 0 };
			}
			*w++ = *p;
			lit->litlen++;
			p += *p == '%' ? 2 : 1;
			continue;
		}
		p++;
		bool padded = false;
		if (*p == '-')
			p++, padded = true;
		while (isdigit((unsigned char)*p))
			p++, padded = true;
		if (!*p)
			break;
		lit = NULL;
		imp->items[imp->nitems++] = (pitem){ *p, padded, NULL, 0 };
		if (*p == 'c')
			imp->has_c = true;
		if (*p == 'p')
			imp->has_p = true;
		p++;
	}
	if (!imp->has_c && !imp->has_p)
		return scry__fail(err, SCRY_EINVAL,
		                  "log_line_prefix '%s' has no session id (%%c) or process id (%%p), so lines cannot be "
		                  "told apart by session; add %%c or %%p to log_line_prefix on the server (for example "
		                  "log_line_prefix = '%%m [%%p] %%q%%u@%%d/%%a ') and import logs written after that",
		                  prefix ? prefix : "");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

/* Consumes complete records from imp->in; `final` at end of input. */
static int process(scry_logimport *imp, bool final, scry_error *err)
{
	char *buf = imp->in.ptr;
	size_t n = imp->in.size, pos = 0;
	int rc = 0;
	while (pos < n && !rc) {
		char *p = buf + pos;
		size_t avail = n - pos;
		uint64_t line = imp->line + 1;
		if (imp->opts.format == SCRY_LOG_CSVLOG) {
			if (imp->scan == 0 && !imp->discarding) {
				/* Resynchronise on a record start: a log cut in the middle of a
				 * quoted field must not flip quoting for the rest of the file. */
				if (avail < 10 && !final)
					break;
				if (!looks_like_time(p, avail)) {
					char *nl = memchr(p, '\n', avail);
					if (!nl && !final)
						break;
					size_t ll = nl ? (size_t)(nl - p) : avail;
					if (ll && !(ll == 1 && p[0] == '\r'))
						add_skip(imp, line, "not the start of a csvlog record", p, ll);
					imp->line += nl != NULL;
					pos += ll + (nl != NULL);
					continue;
				}
				span f[32];
				int nf;
				uint64_t nl;
				ssize_t e = csv_fast(f, &nf, &nl, p, avail);
				if (e >= 0) {
					imp->line += nl;
					pos += (size_t)e + 1;
					rc = csv_fields(imp, f, nf, p, (size_t)e, line, err);
					continue;
				}
			}
			ssize_t e = csv_find_end(imp, p, avail);
			if (e < 0) {
				if (final) {
					imp->scan = 0;
					imp->in_quote = false;
					if (!imp->discarding)
						add_skip(imp, line, "incomplete csvlog record at the end of the log", p, avail);
					imp->line += count_lines(p, avail) + 1;
					pos = n;
					break;
				}
				if (avail > imp->opts.max_record_bytes) {
					/* Too long: drop what we have, keep scanning for its end. */
					if (!imp->discarding)
						add_skip(imp, line, "record longer than the limit (max_record_bytes)", p, avail);
					imp->discarding = true;
					imp->line += count_lines(p, imp->scan);
					pos += imp->scan;
					imp->scan = 0;
					continue;
				}
				break;
			}
			size_t len = (size_t)e;
			imp->line += count_lines(p, len) + 1;
			if (imp->discarding)
				imp->discarding = false;
			else {
				size_t l = len && p[len - 1] == '\r' ? len - 1 : len;
				rc = csv_record(imp, p, l, line, err);
			}
			pos += len + 1;
			continue;
		}
		char *nl = memchr(p, '\n', avail);
		if (!nl && !final) {
			if (avail > imp->opts.max_record_bytes) {
				if (!imp->discarding)
					add_skip(imp, line, "line longer than the limit (max_record_bytes)", p, avail);
				imp->discarding = true;
				pos = n;
			}
			break;
		}
		size_t len = nl ? (size_t)(nl - p) : avail;
		imp->line++;
		pos += len + (nl != NULL);
		if (imp->discarding) {
			imp->discarding = false;
			continue;
		}
		if (len == 0 || (len == 1 && p[0] == '\r'))
			continue;
		if (imp->opts.format == SCRY_LOG_JSONLOG)
			rc = json_line(imp, p, len, line, err);
		else
			rc = stderr_line(imp, p, len, line, err);
	}
	if (pos) {
		memmove(buf, buf + pos, n - pos);
		imp->in.size = n - pos;
		if (imp->in.ptr)
			imp->in.ptr[imp->in.size] = 0;
	}
	return rc;
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
	static const char *const names[] = { "csvlog", "jsonlog", "stderr" };
	for (int i = 0; i < 3; i++)
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
	scry_logimport_options o = SCRY_LOGIMPORT_OPTIONS_INIT;
	if (opts) {
		if (opts->version < 1 || opts->version > SCRY_LOGIMPORT_OPTIONS_VERSION)
			return scry__fail(err, SCRY_EINVAL, "scry_logimport_options: unknown version %u", opts->version);
		o = *opts;
	}
	if ((unsigned)o.format > SCRY_LOG_STDERR)
		return scry__fail(err, SCRY_EINVAL, "unknown log format %d (csvlog, jsonlog or stderr)", (int)o.format);
	if (o.format == SCRY_LOG_STDERR && (!o.line_prefix || !*o.line_prefix))
		return scry__fail(err, SCRY_EINVAL,
		                  "a stderr log needs the server's log_line_prefix (run SHOW log_line_prefix; on the server)");
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
	if (o.format == SCRY_LOG_STDERR) {
		int rc = compile_prefix(imp, o.line_prefix, err);
		if (rc) {
			scry_logimport_free(imp);
			return rc;
		}
	}
	scry_store_info info;
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
		int rc = process(imp, false, err);
		if (rc)
			return rc;
		d += k;
		n -= k;
	}
	return 0;
}

int scry_logimport_feed_file(scry_logimport *imp, const char *path, scry_error *err)
{
	if (!imp || !path)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed_file: importer and path are required");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed_file: the import is already finished");
	bool is_stdin = !strcmp(path, "-");
	int fd = is_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot open %s: %s", path, strerror(errno));
	struct stat sb;
	uint64_t total = (!fstat(fd, &sb) && S_ISREG(sb.st_mode)) ? (uint64_t)sb.st_size : 0;
	gzFile gz = gzdopen(fd, "rb");
	if (!gz) {
		close(fd);
		return scry__fail(err, SCRY_ENOMEM, "out of memory opening %s", path);
	}
	/* zlib reads a plain file straight into our buffer (no copy) when a read
	 * asks for at least twice its own buffer size. */
	enum { CHUNK = 1 << 20 };
	gzbuffer(gz, CHUNK / 4);
	int rc = 0;
	for (;;) {
		/* Straight into the input buffer: no copy between reading and parsing. */
		if (scry__buf_grow(&imp->in, CHUNK)) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			break;
		}
		int r = gzread(gz, imp->in.ptr + imp->in.size, CHUNK);
		if (r < 0) {
			int zerr;
			const char *msg = gzerror(gz, &zerr);
			rc = scry__fail(err, SCRY_EIO, "cannot read %s: %s (events read before this point are kept)", path,
			                zerr == Z_ERRNO ? strerror(errno) : msg);
			break;
		}
		if (r == 0)
			break;
		imp->in.size += (size_t)r;
		imp->in.ptr[imp->in.size] = 0;
		imp->st.bytes += (uint64_t)r;
		if ((rc = process(imp, false, err)) != 0)
			break;
		if (imp->opts.progress)
			imp->opts.progress(imp->opts.progress_ctx, "import", (uint64_t)gzoffset(gz), total);
	}
	gzclose(gz);
	return rc;
}

static void fill_stats(const scry_logimport *imp, scry_logimport_stats *stats)
{
	*stats = imp->st;
	stats->lines = imp->line;
}

void scry_logimport_stats_get(const scry_logimport *imp, scry_logimport_stats *stats)
{
	if (!stats)
		return;
	if (!imp) {
		memset(stats, 0, sizeof *stats);
		return;
	}
	fill_stats(imp, stats);
}

int scry_logimport_finish(scry_logimport *imp, scry_logimport_stats *stats, scry_error *err)
{
	if (!imp)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: importer is NULL");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: already finished");
	imp->finished = true;
	int rc = process(imp, true, err);
	if (!rc && imp->opts.format == SCRY_LOG_STDERR)
		rc = stderr_finish(imp, err);
	/* Statements still waiting for a duration line: the log ended first. */
	for (size_t i = 0; i < imp->nsess && !rc; i++)
		if (imp->sess[i].used)
			rc = flush_pending(imp, &imp->sess[i], err);
	if (!rc)
		rc = flush_batch(imp, err);
	scry_store_info info;
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
	for (size_t i = 0; i < imp->nsess; i++) {
		scry_buf_dispose(&imp->sess[i].ptext);
		scry_buf_dispose(&imp->sess[i].pparams);
	}
	scry__free(imp->sess);
	scry__free(imp->buckets);
	scry__free(imp->bev);
	scry__free(imp->evs);
	scry__free(imp->params);
	scry__free(imp->prefix_copy);
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
