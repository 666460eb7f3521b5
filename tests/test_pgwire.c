/*
 * tests/test_pgwire.c - the wire-protocol decoder on byte streams built from
 * the protocol specification (PostgreSQL docs, "Message Formats"), fed
 * whole, one byte at a time, and in random chunks: the events must be the
 * same every way.
 */
#include <check.h>
#include "pgtest.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <scry/scry.h>

/* ------------------------------------------------------------------ */
/* Building messages                                                   */
/* ------------------------------------------------------------------ */

typedef struct bytes {
	unsigned char *p;
	size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}
static void put8(bytes *b, int v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put16(bytes *b, int v) { put8(b, v >> 8); put8(b, v); }
static void put32(bytes *b, uint32_t v) { put8(b, (int)(v >> 24)); put8(b, (int)(v >> 16)); put8(b, (int)(v >> 8)); put8(b, (int)v); }
static void puts0(bytes *b, const char *s) { put(b, s, strlen(s) + 1); }

/* A message under construction: type byte and a length patched at the end. */
static size_t begin(bytes *b, char type)
{
	if (type)
		put8(b, type);
	size_t at = b->n;
	put32(b, 0);
	return at;
}
static void end(bytes *b, size_t at)
{
	uint32_t len = (uint32_t)(b->n - at);
	b->p[at] = (unsigned char)(len >> 24);
	b->p[at + 1] = (unsigned char)(len >> 16);
	b->p[at + 2] = (unsigned char)(len >> 8);
	b->p[at + 3] = (unsigned char)len;
}

static void fe_ssl(bytes *b) { size_t a = begin(b, 0); put32(b, 80877103); end(b, a); }
static void fe_startup(bytes *b, const char *user, const char *db, const char *app)
{
	size_t a = begin(b, 0);
	put32(b, 196608);
	puts0(b, "user"); puts0(b, user);
	if (db) { puts0(b, "database"); puts0(b, db); }
	if (app) { puts0(b, "application_name"); puts0(b, app); }
	put8(b, 0);
	end(b, a);
}
static void fe_password(bytes *b, const char *pw) { size_t a = begin(b, 'p'); puts0(b, pw); end(b, a); }
static void fe_query(bytes *b, const char *q) { size_t a = begin(b, 'Q'); puts0(b, q); end(b, a); }
static void fe_parse(bytes *b, const char *name, const char *q, int noids, const uint32_t *oids)
{
	size_t a = begin(b, 'P');
	puts0(b, name); puts0(b, q); put16(b, noids);
	for (int i = 0; i < noids; i++) put32(b, oids[i]);
	end(b, a);
}
/* values[i] NULL = SQL NULL; lens[i] < 0 = strlen */
static void fe_bind(bytes *b, const char *portal, const char *stmt, int nfmt, const int *fmts, int np,
                    const char *const *values, const int *lens)
{
	size_t a = begin(b, 'B');
	puts0(b, portal); puts0(b, stmt); put16(b, nfmt);
	for (int i = 0; i < nfmt; i++) put16(b, fmts[i]);
	put16(b, np);
	for (int i = 0; i < np; i++) {
		if (!values[i]) { put32(b, 0xffffffffu); continue; }
		int l = lens && lens[i] >= 0 ? lens[i] : (int)strlen(values[i]);
		put32(b, (uint32_t)l); put(b, values[i], (size_t)l);
	}
	put16(b, 0);
	end(b, a);
}
static void fe_execute(bytes *b, const char *portal, int maxrows) { size_t a = begin(b, 'E'); puts0(b, portal); put32(b, (uint32_t)maxrows); end(b, a); }
static void fe_describe(bytes *b, char what, const char *name) { size_t a = begin(b, 'D'); put8(b, what); puts0(b, name); end(b, a); }
static void fe_close(bytes *b, char what, const char *name) { size_t a = begin(b, 'C'); put8(b, what); puts0(b, name); end(b, a); }
static void fe_empty(bytes *b, char type) { size_t a = begin(b, type); end(b, a); }
static void fe_copydata(bytes *b, const char *d) { size_t a = begin(b, 'd'); put(b, d, strlen(d)); end(b, a); }

static void be_auth(bytes *b, int code, const char *extra) { size_t a = begin(b, 'R'); put32(b, (uint32_t)code); if (extra) put(b, extra, strlen(extra)); end(b, a); }
static void be_status(bytes *b, const char *k, const char *v) { size_t a = begin(b, 'S'); puts0(b, k); puts0(b, v); end(b, a); }
static void be_key(bytes *b) { size_t a = begin(b, 'K'); put32(b, 1234); put32(b, 5678); end(b, a); }
static void be_ready(bytes *b, char st) { size_t a = begin(b, 'Z'); put8(b, st); end(b, a); }
static void be_cmd(bytes *b, const char *tag) { size_t a = begin(b, 'C'); puts0(b, tag); end(b, a); }
static void be_simple(bytes *b, char type) { size_t a = begin(b, type); end(b, a); }
static void be_rowdesc(bytes *b)
{
	size_t a = begin(b, 'T');
	put16(b, 1); puts0(b, "x"); put32(b, 0); put16(b, 0); put32(b, 23); put16(b, 4); put32(b, 0xffffffffu); put16(b, 0);
	end(b, a);
}
static void be_datarow(bytes *b, const char *v) { size_t a = begin(b, 'D'); put16(b, 1); put32(b, (uint32_t)strlen(v)); put(b, v, strlen(v)); end(b, a); }
static void be_error(bytes *b, char type, const char *sqlstate, const char *msg)
{
	size_t a = begin(b, type);
	put8(b, 'S'); puts0(b, "ERROR"); put8(b, 'C'); puts0(b, sqlstate); put8(b, 'M'); puts0(b, msg);
	put8(b, 0);
	end(b, a);
}
static void be_copyresp(bytes *b, char type) { size_t a = begin(b, type); put8(b, 0); put16(b, 1); put16(b, 0); end(b, a); }
static void be_paramdesc(bytes *b, int n, const uint32_t *oids) { size_t a = begin(b, 't'); put16(b, n); for (int i = 0; i < n; i++) put32(b, oids[i]); end(b, a); }

/* ------------------------------------------------------------------ */
/* A conversation and what the decoder made of it                      */
/* ------------------------------------------------------------------ */

#define MAXSEG 64
typedef struct convo {
	bytes seg[MAXSEG];
	int dir[MAXSEG];
	int n;
} convo;

static bytes *fe(convo *c) { if (c->n == 0 || c->dir[c->n - 1] != 0) { c->dir[c->n] = 0; c->n++; } return &c->seg[c->n - 1]; }
static bytes *be(convo *c) { if (c->n == 0 || c->dir[c->n - 1] != 1) { c->dir[c->n] = 1; c->n++; } return &c->seg[c->n - 1]; }
static void convo_free(convo *c) { for (int i = 0; i < c->n; i++) free(c->seg[i].p); memset(c, 0, sizeof *c); }

typedef struct rec {
	char *query;
	int kind;
	int nparams;
	char params[512]; /* "oid/fmt/len:value|..." */
	int64_t rows;
	char sqlstate[6];
	char *message;
	int64_t start, dur;
	int64_t fetch;
	unsigned flags;
	size_t copy_len;
	char copy[64];
} rec;

typedef struct recs {
	rec r[64];
	int n;
	char user[64], db[64], app[64], params[256];
	int startups;
} recs;

static void on_event(void *ctx, const scry_event *ev)
{
	recs *rs = ctx;
	ck_assert_int_lt(rs->n, 64);
	rec *r = &rs->r[rs->n++];
	r->query = strndup(ev->query, ev->query_len);
	r->kind = ev->kind;
	r->nparams = ev->nparams;
	r->params[0] = 0;
	for (int i = 0; i < ev->nparams; i++) {
		const scry_param *p = &ev->params[i];
		char one[128];
		if (p->length < 0)
			snprintf(one, sizeof one, "%u/%d/NULL|", p->type_oid, p->format);
		else if (p->format == SCRY_PARAM_TEXT)
			snprintf(one, sizeof one, "%u/%d/%d:%.*s|", p->type_oid, p->format, p->length, p->length, p->value);
		else {
			int n = snprintf(one, sizeof one, "%u/%d/%d:", p->type_oid, p->format, p->length);
			for (int k = 0; k < p->length && n < 100; k++)
				n += snprintf(one + n, sizeof one - (size_t)n, "%02x", (unsigned char)p->value[k]);
			snprintf(one + n, sizeof one - (size_t)n, "|");
		}
		strncat(r->params, one, sizeof r->params - strlen(r->params) - 1);
	}
	r->rows = ev->rows;
	r->fetch = ev->fetch_rows;
	r->flags = ev->flags;
	r->copy_len = ev->copy_len;
	if (ev->copy_len)
		memcpy(r->copy, ev->copy_data, ev->copy_len < sizeof r->copy ? ev->copy_len : sizeof r->copy - 1);
	memcpy(r->sqlstate, ev->sqlstate, 6);
	r->message = ev->error_message ? strdup(ev->error_message) : NULL;
	r->start = ev->start_us;
	r->dur = ev->duration_us;
}

static void on_startup(void *ctx, const scry_pgwire_startup *s)
{
	recs *rs = ctx;
	rs->startups++;
	snprintf(rs->user, sizeof rs->user, "%s", s->user);
	snprintf(rs->db, sizeof rs->db, "%s", s->database);
	snprintf(rs->app, sizeof rs->app, "%s", s->application ? s->application : "");
	snprintf(rs->params, sizeof rs->params, "%s", s->params ? s->params : "(null)");
}

static void recs_free(recs *rs)
{
	for (int i = 0; i < rs->n; i++) {
		free(rs->r[i].query);
		free(rs->r[i].message);
	}
	memset(rs, 0, sizeof *rs);
}

/* Feeds a conversation: mode 0 whole segments, 1 one byte at a time,
 * 2 random chunks. Segment i is seen at time 1000*(i+1). Returns the
 * first error code (0 if none). */
static int run(const convo *c, int mode, recs *rs, scry_pgwire **keep, const scry_pgwire_options *opts)
{
	memset(rs, 0, sizeof *rs);
	scry_pgwire_callbacks cb = { SCRY_PGWIRE_CALLBACKS_VERSION, on_startup, on_event, rs };
	scry_pgwire *d;
	ck_assert_int_eq(scry_pgwire_new(&d, &cb, opts, NULL), 0);
	int rc = 0;
	for (int i = 0; i < c->n && !rc; i++) {
		const bytes *b = &c->seg[i];
		int64_t now = 1000 * (i + 1);
		if (mode == 0) {
			rc = scry_pgwire_feed(d, c->dir[i], b->p, b->n, now, NULL);
		} else {
			size_t off = 0;
			while (off < b->n && !rc) {
				size_t k = mode == 1 ? 1 : 1 + (size_t)(rand() % 37);
				if (k > b->n - off)
					k = b->n - off;
				rc = scry_pgwire_feed(d, c->dir[i], b->p + off, k, now, NULL);
				off += k;
			}
		}
	}
	if (keep)
		*keep = d;
	else
		scry_pgwire_free(d);
	return rc;
}

/* Runs every way and checks that all agree with the whole-segment run. */
static void run_all(const convo *c, recs *rs)
{
	run(c, 0, rs, NULL, NULL);
	for (int mode = 1; mode <= 2; mode++) {
		recs other;
		ck_assert_int_eq(run(c, mode, &other, NULL, NULL), 0);
		ck_assert_int_eq(other.n, rs->n);
		for (int i = 0; i < rs->n; i++) {
			ck_assert_str_eq(other.r[i].query, rs->r[i].query);
			ck_assert_str_eq(other.r[i].params, rs->r[i].params);
			ck_assert_int_eq(other.r[i].rows, rs->r[i].rows);
			ck_assert_str_eq(other.r[i].sqlstate, rs->r[i].sqlstate);
			ck_assert_int_eq(other.r[i].fetch, rs->r[i].fetch);
			ck_assert_uint_eq(other.r[i].copy_len, rs->r[i].copy_len);
			ck_assert_str_eq(other.r[i].copy, rs->r[i].copy);
		}
		recs_free(&other);
	}
}

static void startup(convo *c, bool ssl)
{
	if (ssl) {
		fe_ssl(fe(c));
		put8(be(c), 'N');
	}
	fe_startup(fe(c), "alice", "shop", "myapp");
	be_auth(be(c), 10, "SCRAM-SHA-256");
	fe_password(fe(c), "n,,n=,r=hunter2-client-nonce");
	be_auth(be(c), 11, "r=hunter2-server-nonce,s=salt,i=4096");
	fe_password(fe(c), "c=biws,r=hunter2,p=proof");
	be_auth(be(c), 12, "v=verifier");
	bytes *b = be(c);
	be_auth(b, 0, NULL);
	be_status(b, "server_version", "15.0");
	be_key(b);
	be_ready(b, 'I');
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

START_TEST(simple_query_many_statements)
{
	convo c = { 0 };
	startup(&c, true);
	fe_query(fe(&c), "select 1; select 'a;b' ; /* c */ select 3;");
	bytes *b = be(&c);
	be_rowdesc(b); be_datarow(b, "1"); be_cmd(b, "SELECT 1");
	be_rowdesc(b); be_datarow(b, "a;b"); be_cmd(b, "SELECT 1");
	be_rowdesc(b); be_cmd(b, "SELECT 0");
	be_ready(b, 'I');
	fe_query(fe(&c), "insert into t values (1),(2)");
	b = be(&c);
	be_cmd(b, "INSERT 0 2");
	be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.startups, 1);
	ck_assert_str_eq(rs.user, "alice");
	ck_assert_str_eq(rs.db, "shop");
	ck_assert_str_eq(rs.app, "myapp");
	ck_assert_int_eq(rs.n, 4);
	ck_assert_str_eq(rs.r[0].query, "select 1");
	ck_assert_str_eq(rs.r[1].query, "select 'a;b'");
	ck_assert_str_eq(rs.r[2].query, "select 3");
	ck_assert_int_eq(rs.r[2].rows, 0);
	ck_assert_str_eq(rs.r[3].query, "insert into t values (1),(2)");
	ck_assert_int_eq(rs.r[3].rows, 2);
	ck_assert_int_eq(rs.r[3].kind, SCRY_EVENT_SIMPLE);
	/* Query seen in segment at t=10000, answer at t=11000. */
	ck_assert_int_eq(rs.r[3].dur, 1000);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(simple_query_error_skips_rest)
{
	convo c = { 0 };
	startup(&c, false);
	fe_query(fe(&c), "select 1; select * from nosuch; select 3");
	bytes *b = be(&c);
	be_rowdesc(b); be_datarow(b, "1"); be_cmd(b, "SELECT 1");
	be_simple(b, 'N'); /* a NoticeResponse has the same layout as an error */
	be_error(b, 'E', "42P01", "relation \"nosuch\" does not exist");
	be_ready(b, 'I');
	fe_query(fe(&c), "");
	b = be(&c);
	be_simple(b, 'I');
	be_ready(b, 'I');
	fe_query(fe(&c), "selec 1");
	b = be(&c);
	be_error(b, 'E', "42601", "syntax error at or near \"selec\"");
	be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[0].query, "select 1");
	ck_assert_str_eq(rs.r[0].sqlstate, "");
	ck_assert_str_eq(rs.r[1].query, "select * from nosuch");
	ck_assert_str_eq(rs.r[1].sqlstate, "42P01");
	ck_assert_str_eq(rs.r[1].message, "relation \"nosuch\" does not exist");
	ck_assert_int_eq(rs.r[1].rows, -1);
	ck_assert_str_eq(rs.r[2].query, "selec 1");
	ck_assert_str_eq(rs.r[2].sqlstate, "42601");
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(extended_named_text_and_binary)
{
	convo c = { 0 };
	startup(&c, false);
	uint32_t oids[2] = { 23, 25 };
	bytes *f = fe(&c);
	fe_parse(f, "s1", "select $1::int + 1, $2", 2, oids);
	const char *v1[2] = { "41", "hello" };
	fe_bind(f, "", "s1", 0, NULL, 2, v1, NULL);
	fe_describe(f, 'P', "");
	fe_execute(f, "", 0);
	const char bin42[4] = { 0, 0, 0, 42 };
	const char *v2[2] = { bin42, NULL };
	int lens[2] = { 4, -1 };
	int fmts[2] = { 1, 0 };
	fe_bind(f, "", "s1", 2, fmts, 2, v2, lens);
	fe_execute(f, "", 0);
	fe_empty(f, 'S');
	bytes *b = be(&c);
	be_simple(b, '1');
	be_simple(b, '2');
	be_rowdesc(b);
	be_datarow(b, "42");
	be_cmd(b, "SELECT 1");
	be_simple(b, '2');
	be_datarow(b, "43");
	be_cmd(b, "SELECT 1");
	be_ready(b, 'I');
	/* Re-executed by name, many times, statement closed at the end. */
	f = fe(&c);
	for (int i = 0; i < 5; i++) {
		char v[8];
		snprintf(v, sizeof v, "%d", i);
		const char *vv[2] = { v, "x" };
		fe_bind(f, "p1", "s1", 0, NULL, 2, vv, NULL);
		fe_execute(f, "p1", 0);
		fe_empty(f, 'S');
	}
	fe_close(f, 'S', "s1");
	fe_empty(f, 'S');
	b = be(&c);
	for (int i = 0; i < 5; i++) {
		be_simple(b, '2');
		be_datarow(b, "1");
		be_cmd(b, "SELECT 1");
		be_ready(b, 'I');
	}
	be_simple(b, '3');
	be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.n, 7);
	ck_assert_str_eq(rs.r[0].query, "select $1::int + 1, $2");
	ck_assert_int_eq(rs.r[0].kind, SCRY_EVENT_EXTENDED);
	ck_assert_str_eq(rs.r[0].params, "23/0/2:41|25/0/5:hello|");
	ck_assert_int_eq(rs.r[0].rows, 1);
	ck_assert_str_eq(rs.r[1].params, "23/1/4:0000002a|25/0/NULL|");
	for (int i = 0; i < 5; i++) {
		char want[64];
		snprintf(want, sizeof want, "23/0/1:%d|25/0/1:x|", i);
		ck_assert_str_eq(rs.r[2 + i].params, want);
	}
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(extended_pipeline_with_error)
{
	convo c = { 0 };
	startup(&c, false);
	bytes *f = fe(&c);
	/* Three pipelined Parse/Bind/Execute/Sync; the unnamed portal is re-bound
	 * before any result arrives; the second fails at Bind. */
	for (int i = 0; i < 3; i++) {
		const char *v[1] = { i == 1 ? "notanint" : (i == 0 ? "7" : "9") };
		fe_parse(f, "", "select $1::int", 0, NULL);
		fe_bind(f, "", "", 0, NULL, 1, v, NULL);
		fe_execute(f, "", 0);
		fe_empty(f, 'S');
	}
	fe_empty(f, 'H');
	bytes *b = be(&c);
	be_simple(b, '1'); be_simple(b, '2'); be_datarow(b, "7"); be_cmd(b, "SELECT 1"); be_ready(b, 'I');
	be_simple(b, '1'); be_error(b, 'E', "22P02", "invalid input syntax for type integer: \"notanint\""); be_ready(b, 'I');
	be_simple(b, '1'); be_simple(b, '2'); be_datarow(b, "9"); be_cmd(b, "SELECT 1"); be_ready(b, 'I');
	recs rs;
	scry_pgwire *d;
	run_all(&c, &rs);
	recs_free(&rs);
	ck_assert_int_eq(run(&c, 0, &rs, &d, NULL), 0);
	scry_pgwire_stats st = SCRY_PGWIRE_STATS_INIT;
	scry_pgwire_stats_get(d, &st);
	ck_assert_int_eq(st.pending, 0);
	ck_assert_int_eq(scry_pgwire_tx_status(d), 'I');
	ck_assert_int_eq(scry_pgwire_state(d), SCRY_PGWIRE_READY);
	scry_pgwire_free(d);
	ck_assert_int_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[0].params, "0/0/1:7|");
	ck_assert_str_eq(rs.r[1].params, "0/0/8:notanint|");
	ck_assert_str_eq(rs.r[1].sqlstate, "22P02");
	ck_assert_str_eq(rs.r[2].params, "0/0/1:9|");
	ck_assert_str_eq(rs.r[2].sqlstate, "");
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(extended_error_skips_to_sync)
{
	convo c = { 0 };
	startup(&c, false);
	bytes *f = fe(&c);
	fe_parse(f, "bad", "selec 1", 0, NULL);
	fe_bind(f, "", "bad", 0, NULL, 0, NULL, NULL);
	fe_execute(f, "", 0);
	fe_empty(f, 'S');
	fe_query(f, "select 2");
	bytes *b = be(&c);
	be_error(b, 'E', "42601", "syntax error");
	be_ready(b, 'I');
	be_rowdesc(b); be_datarow(b, "2"); be_cmd(b, "SELECT 1"); be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.n, 2);
	ck_assert_str_eq(rs.r[0].query, "selec 1");
	ck_assert_str_eq(rs.r[0].sqlstate, "42601");
	ck_assert_str_eq(rs.r[1].query, "select 2");
	ck_assert_int_eq(rs.r[1].rows, 1);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(describe_fills_types_and_portal_suspended)
{
	convo c = { 0 };
	startup(&c, false);
	bytes *f = fe(&c);
	fe_parse(f, "q", "select * from t where a > $1", 0, NULL);
	fe_describe(f, 'S', "q");
	fe_empty(f, 'S');
	bytes *b = be(&c);
	uint32_t oids[1] = { 20 };
	be_simple(b, '1'); be_paramdesc(b, 1, oids); be_rowdesc(b); be_ready(b, 'I');
	f = fe(&c);
	const char *v[1] = { "5" };
	fe_bind(f, "cur", "q", 0, NULL, 1, v, NULL);
	fe_execute(f, "cur", 2);
	fe_empty(f, 'H');
	b = be(&c);
	be_simple(b, '2'); be_datarow(b, "6"); be_datarow(b, "7"); be_simple(b, 's');
	f = fe(&c);
	fe_execute(f, "cur", 2);
	fe_empty(f, 'S');
	b = be(&c);
	be_datarow(b, "8"); be_cmd(b, "SELECT 1"); be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	/* A suspended Execute continues its portal: ONE execution, all its rows, its fetch size. */
	ck_assert_int_eq(rs.n, 1);
	ck_assert_str_eq(rs.r[0].params, "20/0/1:5|");
	ck_assert_int_eq(rs.r[0].rows, 3);
	ck_assert_int_eq(rs.r[0].fetch, 2);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(copy_in_and_out)
{
	convo c = { 0 };
	startup(&c, false);
	fe_query(fe(&c), "copy t from stdin");
	be_copyresp(be(&c), 'G');
	bytes *f = fe(&c);
	fe_copydata(f, "1\tsecret-data\n");
	fe_copydata(f, "2\tmore\n");
	fe_empty(f, 'c');
	bytes *b = be(&c);
	be_cmd(b, "COPY 2");
	be_ready(b, 'I');
	fe_query(fe(&c), "copy t to stdout; select 1");
	b = be(&c);
	be_copyresp(b, 'H');
	size_t a = begin(b, 'd'); put(b, "1\tx\n", 4); end(b, a);
	be_simple(b, 'c');
	be_cmd(b, "COPY 1");
	be_rowdesc(b); be_datarow(b, "1"); be_cmd(b, "SELECT 1");
	be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.n, 3);
	ck_assert_str_eq(rs.r[0].query, "copy t from stdin");
	ck_assert_int_eq(rs.r[0].kind, SCRY_EVENT_COPY);
	ck_assert_int_eq(rs.r[0].rows, 2);
	/* The COPY FROM STDIN data is kept, exactly, for replay. */
	ck_assert_uint_eq(rs.r[0].copy_len, 21);
	ck_assert_str_eq(rs.r[0].copy, "1\tsecret-data\n2\tmore\n");
	ck_assert_uint_eq(rs.r[1].copy_len, 0);
	ck_assert_str_eq(rs.r[1].query, "copy t to stdout");
	ck_assert_int_eq(rs.r[1].kind, SCRY_EVENT_COPY);
	ck_assert_int_eq(rs.r[1].rows, 1);
	ck_assert_int_eq(rs.r[2].kind, SCRY_EVENT_SIMPLE);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

/* What replay needs beyond statements: the session's startup parameters
 * (never user/database), texts cut at the limit (marked), client cancels
 * (marked), a portal the client closed while suspended (one event, marked),
 * COPY data over the limit (dropped, marked) and COPY data sent before the
 * server's CopyInResponse (kept). */
START_TEST(session_params_flags_and_limits)
{
	convo c = { 0 };
	bytes *f = fe(&c);
	size_t a = begin(f, 0);
	put32(f, 196608);
	puts0(f, "user"); puts0(f, "alice");
	puts0(f, "database"); puts0(f, "shop");
	puts0(f, "options"); puts0(f, "-c search_path=app");
	puts0(f, "DateStyle"); puts0(f, "ISO, DMY");
	puts0(f, "application_name"); puts0(f, "multi\nline\\x");
	puts0(f, "_pq_.proto_ext"); puts0(f, "1");
	put8(f, 0);
	end(f, a);
	bytes *b = be(&c);
	be_auth(b, 0, NULL);
	be_ready(b, 'I');
	fe_query(fe(&c), "select 'this text is longer than the limit'");
	b = be(&c);
	be_cmd(b, "SELECT 1"); be_ready(b, 'I');
	fe_query(fe(&c), "select pg_sleep(10)");
	b = be(&c);
	be_error(b, 'E', "57014", "canceling statement due to user request"); be_ready(b, 'I');
	/* A portal suspended twice, then closed by the client. */
	f = fe(&c);
	fe_parse(f, "", "select x", 0, NULL);
	fe_bind(f, "p", "", 0, NULL, 0, NULL, NULL);
	fe_execute(f, "p", 2);
	fe_empty(f, 'H');
	b = be(&c);
	be_simple(b, '1'); be_simple(b, '2'); be_datarow(b, "1"); be_datarow(b, "2"); be_simple(b, 's');
	f = fe(&c);
	fe_execute(f, "p", 2);
	a = begin(f, 'C'); put8(f, 'P'); puts0(f, "p"); end(f, a);
	fe_empty(f, 'S');
	b = be(&c);
	be_datarow(b, "3"); be_datarow(b, "4"); be_simple(b, 's'); be_simple(b, '3'); be_ready(b, 'I');
	/* COPY data before the CopyInResponse, and COPY data over the limit. */
	f = fe(&c);
	fe_query(f, "copy t from stdin");
	fe_copydata(f, "early\n");
	fe_empty(f, 'c');
	b = be(&c);
	be_copyresp(b, 'G'); be_cmd(b, "COPY 1"); be_ready(b, 'I');
	fe_query(fe(&c), "copy t from stdin");
	be_copyresp(be(&c), 'G');
	f = fe(&c);
	for (int i = 0; i < 10; i++)
		fe_copydata(f, "0123456789\n");
	fe_empty(f, 'c');
	b = be(&c);
	be_cmd(b, "COPY 10"); be_ready(b, 'I');
	scry_pgwire_options o = SCRY_PGWIRE_OPTIONS_INIT;
	o.max_query_bytes = 20;
	o.max_copy_bytes = 64;
	for (int mode = 0; mode <= 2; mode++) {
		recs rs;
		ck_assert_int_eq(run(&c, mode, &rs, NULL, &o), 0);
		ck_assert_str_eq(rs.user, "alice");
		ck_assert_str_eq(rs.params, "options=-c search_path=app\nDateStyle=ISO, DMY\n"
		                            "application_name=multi\\nline\\\\x");
		ck_assert_int_eq(rs.n, 5);
		ck_assert_str_eq(rs.r[0].query, "select 'this text is");
		ck_assert_uint_eq(rs.r[0].flags, SCRY_EVENT_F_TRUNCATED);
		ck_assert_str_eq(rs.r[1].sqlstate, "57014");
		ck_assert_uint_eq(rs.r[1].flags, SCRY_EVENT_F_CANCELLED);
		ck_assert_str_eq(rs.r[2].query, "select x");
		ck_assert_int_eq(rs.r[2].rows, 4);
		ck_assert_int_eq(rs.r[2].fetch, 2);
		ck_assert_uint_eq(rs.r[2].flags, SCRY_EVENT_F_PORTAL_OPEN);
		ck_assert_int_eq(rs.r[3].kind, SCRY_EVENT_COPY);
		ck_assert_str_eq(rs.r[3].copy, "early\n");
		ck_assert_uint_eq(rs.r[4].copy_len, 0);
		ck_assert_uint_eq(rs.r[4].flags, SCRY_EVENT_F_COPY_DROPPED);
		ck_assert_int_eq(rs.r[4].rows, 10);
		recs_free(&rs);
	}
	convo_free(&c);
}
END_TEST

START_TEST(notices_status_and_transactions)
{
	convo c = { 0 };
	startup(&c, false);
	fe_query(fe(&c), "begin");
	bytes *b = be(&c);
	be_cmd(b, "BEGIN");
	be_ready(b, 'T');
	fe_query(fe(&c), "set application_name = 'x'");
	b = be(&c);
	be_error(b, 'N', "01000", "a notice");
	be_status(b, "application_name", "x");
	be_cmd(b, "SET");
	be_ready(b, 'T');
	recs rs;
	scry_pgwire *d;
	ck_assert_int_eq(run(&c, 1, &rs, &d, NULL), 0);
	ck_assert_int_eq(rs.n, 2);
	ck_assert_int_eq(rs.r[0].rows, -1);
	ck_assert_int_eq(scry_pgwire_tx_status(d), 'T');
	scry_pgwire_stats st = SCRY_PGWIRE_STATS_INIT;
	scry_pgwire_stats_get(d, &st);
	ck_assert_int_eq(st.notices, 1);
	ck_assert_int_eq(st.parameter_status, 2);
	ck_assert_int_eq(st.events, 2);
	scry_pgwire_free(d);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(cancel_and_encrypted)
{
	convo c = { 0 };
	bytes *f = fe(&c);
	size_t a = begin(f, 0); put32(f, 80877102); put32(f, 1); put32(f, 2); end(f, a);
	recs rs;
	scry_pgwire *d;
	ck_assert_int_eq(run(&c, 1, &rs, &d, NULL), 0);
	ck_assert_int_eq(scry_pgwire_state(d), SCRY_PGWIRE_CANCEL);
	ck_assert_int_eq(rs.startups, 0);
	scry_pgwire_free(d);
	convo_free(&c);
	/* SSL accepted: the rest is opaque and ignored, not an error. */
	fe_ssl(fe(&c));
	put8(be(&c), 'S');
	put(fe(&c), "\x16\x03\x01garbage-tls-bytes", 20);
	ck_assert_int_eq(run(&c, 0, &rs, &d, NULL), 0);
	ck_assert_int_eq(scry_pgwire_state(d), SCRY_PGWIRE_ENCRYPTED);
	scry_pgwire_free(d);
	convo_free(&c);
}
END_TEST

START_TEST(function_call_then_query)
{
	convo c = { 0 };
	startup(&c, false);
	/* A call with a query sent right behind it, before any answer. */
	bytes *f = fe(&c);
	size_t a = begin(f, 'F'); put32(f, 1598); put16(f, 0); put16(f, 0); put16(f, 0); end(f, a);
	fe_query(f, "select 0");
	bytes *b = be(&c);
	a = begin(b, 'V'); put32(b, 0xffffffffu); end(b, a);
	be_ready(b, 'I');
	be_cmd(b, "SELECT 1");
	be_ready(b, 'I');
	f = fe(&c);
	a = begin(f, 'F'); put32(f, 0); put16(f, 0); put16(f, 0); put16(f, 0); end(f, a);
	b = be(&c);
	be_error(b, 'E', "42883", "function 0 does not exist");
	be_ready(b, 'I');
	fe_query(fe(&c), "select 1");
	b = be(&c);
	be_cmd(b, "SELECT 1");
	be_ready(b, 'I');
	recs rs;
	run_all(&c, &rs);
	ck_assert_int_eq(rs.n, 2);
	ck_assert_str_eq(rs.r[0].query, "select 0");
	ck_assert_str_eq(rs.r[1].query, "select 1");
	ck_assert_int_eq(rs.r[1].rows, 1);
	recs_free(&rs);
	convo_free(&c);
}
END_TEST

START_TEST(garbage_and_limits)
{
	scry_error err = SCRY_ERROR_INIT;
	scry_pgwire *d;
	/* An HTTP client. */
	ck_assert_int_eq(scry_pgwire_new(&d, NULL, NULL, NULL), 0);
	ck_assert_int_eq(scry_pgwire_feed(d, 0, "GET / HTTP/1.1\r\n", 16, 0, &err), SCRY_EPROTOCOL);
	ck_assert_ptr_nonnull(strstr(err.message, "startup packet"));
	ck_assert_int_eq(scry_pgwire_feed(d, 0, "x", 1, 0, NULL), SCRY_EPROTOCOL);
	ck_assert_int_eq(scry_pgwire_state(d), SCRY_PGWIRE_FAILED);
	scry_pgwire_free(d);

	/* Bad type byte after startup. */
	convo c = { 0 };
	startup(&c, false);
	put(fe(&c), "\x01\x00\x00\x00\x04", 5);
	recs rs;
	ck_assert_int_eq(run(&c, 1, &rs, NULL, NULL), SCRY_EPROTOCOL);
	convo_free(&c);

	/* Oversized message: refused before anything is allocated for it. */
	startup(&c, false);
	put(fe(&c), "Q\x7f\xff\xff\xff", 5);
	ck_assert_int_eq(run(&c, 1, &rs, NULL, NULL), SCRY_ELIMIT);
	convo_free(&c);
	scry_pgwire_options o = SCRY_PGWIRE_OPTIONS_INIT;
	o.max_message_bytes = 64;
	startup(&c, false);
	char big[200];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	fe_query(fe(&c), big);
	ck_assert_int_eq(run(&c, 0, &rs, NULL, &o), SCRY_ELIMIT);
	convo_free(&c);

	/* Truncated Bind (length says 9 bytes of body but the fields run past). */
	startup(&c, false);
	bytes *f = fe(&c);
	size_t a = begin(f, 'B'); puts0(f, ""); puts0(f, ""); put16(f, 0); put16(f, 3); put32(f, 100); end(f, a);
	ck_assert_int_eq(run(&c, 1, &rs, NULL, NULL), SCRY_EPROTOCOL);
	convo_free(&c);

	/* Message length below 4. */
	startup(&c, false);
	put(fe(&c), "Q\x00\x00\x00\x02", 5);
	ck_assert_int_eq(run(&c, 0, &rs, NULL, NULL), SCRY_EPROTOCOL);
	convo_free(&c);
}
END_TEST

START_TEST(random_bytes_never_crash)
{
	srand(12345);
	for (int iter = 0; iter < 3000; iter++) {
		convo c = { 0 };
		startup(&c, iter & 1);
		bytes *f = fe(&c);
		int n = rand() % 200;
		/* Mostly valid-looking messages with random bodies. */
		for (int k = 0; k < n;) {
			static const char types[] = "BCDEFHPQSXcdfp";
			int blen = rand() % 20;
			put8(f, (rand() % 10) ? types[rand() % 14] : rand() % 256);
			put32(f, (uint32_t)(blen + 4));
			for (int j = 0; j < blen; j++)
				put8(f, (rand() % 4) ? 0 : rand() % 256);
			k += 5 + blen;
		}
		bytes *b = be(&c);
		for (int k = 0; k < 30; k++) {
			static const char btypes[] = "123CDEGHIKNRSTVWZcdnstv";
			int blen = rand() % 12;
			put8(b, btypes[rand() % 23]);
			put32(b, (uint32_t)(blen + 4));
			for (int j = 0; j < blen; j++)
				put8(b, rand() % 256);
		}
		recs rs;
		run(&c, iter % 3, &rs, NULL, NULL); /* any code is fine; no crash, no leak */
		recs_free(&rs);
		convo_free(&c);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pgwire");
	TCase *tc = tcase_create("decoder");
	tcase_add_test(tc, simple_query_many_statements);
	tcase_add_test(tc, simple_query_error_skips_rest);
	tcase_add_test(tc, extended_named_text_and_binary);
	tcase_add_test(tc, extended_pipeline_with_error);
	tcase_add_test(tc, extended_error_skips_to_sync);
	tcase_add_test(tc, describe_fills_types_and_portal_suspended);
	tcase_add_test(tc, copy_in_and_out);
	tcase_add_test(tc, session_params_flags_and_limits);
	tcase_add_test(tc, notices_status_and_transactions);
	tcase_add_test(tc, cancel_and_encrypted);
	tcase_add_test(tc, function_call_then_query);
	tcase_add_test(tc, garbage_and_limits);
	tcase_add_test(tc, random_bytes_never_crash);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
