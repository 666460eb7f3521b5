/*
 * tests/abi/v1_caller.c - a caller compiled against the FROZEN version-1
 * layouts of tests/abi/scry_v1.h (not against today's headers), run against
 * today's shared library. Every struct it passes sits at the very end of a
 * readable page followed by an inaccessible one, so a library that reads or
 * writes one byte past the version-1 layout crashes this test. It also
 * plays a "future" caller whose structs are bigger than the library's.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scry_v1.h"
#include "pgtest.h"

/* n bytes ending exactly where an inaccessible page starts. */
static void *guarded(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t span = (n + pg - 1) / pg * pg;
	char *m = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(m != MAP_FAILED);
	ck_assert_int_eq(mprotect(m + span, pg, PROT_NONE), 0);
	char *p = m + span - n;
	memset(p, 0, n);
	return p;
}
#define GUARDED(T) ((T *)guarded(sizeof(T)))

static char path[256];

static void *open_store(void)
{
	snprintf(path, sizeof path, "/tmp/scry-abi-v1-%d.db", (int)getpid());
	unlink(path);
	v1_store_options *o = GUARDED(v1_store_options);
	o->version = 1;
	v1_error *err = GUARDED(v1_error);
	void *s = NULL;
	ck_assert_msg(scry_store_open(&s, path, o, err) == 0, "%s", err->message);
	return s;
}

START_TEST(test_version_number)
{
	int n = scry_version_number();
	int a, b, c;
	ck_assert_int_eq(sscanf(scry_version(), "%d.%d.%d", &a, &b, &c), 3);
	ck_assert_int_eq(n, a * 10000 + b * 100 + c);
}
END_TEST

START_TEST(test_options_versions)
{
	v1_store_options *o = GUARDED(v1_store_options);
	v1_error err = { 0 };
	void *s = NULL;
	snprintf(path, sizeof path, "/tmp/scry-abi-v1-%d-bad.db", (int)getpid());
	for (unsigned v = 0; v < 3; v += 2) { /* 0 and 2: unknown */
		o->version = v == 0 ? 0 : 99;
		ck_assert_int_eq(scry_store_open(&s, path, o, &err), -1 /* SCRY_EINVAL */);
		ck_assert_ptr_null(s);
		ck_assert_msg(strstr(err.message, "scry_store_options") && strstr(err.message, "version"), "%s",
		              err.message);
	}
	ck_assert_int_ne(access(path, F_OK), 0); /* nothing was created */

	v1_replay_options *ro = GUARDED(v1_replay_options);
	ro->version = 0;
	void *st = open_store();
	void *r = NULL;
	ck_assert_int_eq(scry_replay_new(&r, st, ro, &err), -1);
	ck_assert_msg(strstr(err.message, "scry_replay_options"), "%s", err.message);
	scry_store_free(st);
	unlink(path);
}
END_TEST

/* Events (frozen layout and a future, bigger one), store info, filter, samples, summary. */
START_TEST(test_store_v1)
{
	void *s = open_store();
	v1_error *err = GUARDED(v1_error);

	v1_session_info *si = GUARDED(v1_session_info);
	*si = (v1_session_info){ 1, 0, "db", "u", "app", "[local]", 1700000000000000 };
	int64_t sid = 0;
	ck_assert_msg(scry_store_session_add(s, si, &sid, err) == 0, "%s", err->message);

	static const char *const q[] = { "SELECT 1", "SELECT 2 FROM t", "SELECT x FROM u WHERE y = 3" };
	v1_event *ev = guarded(3 * sizeof(v1_event));
	for (int i = 0; i < 3; i++)
		ev[i] = (v1_event){ sid, 1700000000000000 + i, 10, 0, q[i], 0, 0, NULL, 1, "", NULL };
	ck_assert_msg(scry_store_append(s, ev, 3, sizeof(v1_event), err) == 0, "%s", err->message);

	/* A caller from the future: its events have a field this library does not know. */
	typedef struct { v1_event e; int64_t later; } future_event;
	future_event *fe = guarded(2 * sizeof(future_event));
	for (int i = 0; i < 2; i++) {
		fe[i].e = (v1_event){ sid, 1700000000000010 + i, 20, 0, q[2 - i], 0, 0, NULL, 2, "", NULL };
		fe[i].later = -1;
	}
	ck_assert_msg(scry_store_append(s, &fe[0].e, 2, sizeof(future_event), err) == 0, "%s", err->message);
	/* A stride smaller than version 1: refused, nothing appended. */
	ck_assert_int_eq(scry_store_append(s, ev, 1, sizeof(v1_event) - 8, err), -1);
	ck_assert_msg(strstr(err->message, "scry_event"), "%s", err->message);

	v1_store_info *info = GUARDED(v1_store_info);
	info->size = sizeof *info;
	ck_assert_msg(scry_store_info_get(s, info, err) == 0, "%s", err->message);
	ck_assert_int_eq(info->events, 5);
	ck_assert_int_eq(info->sessions, 1);
	ck_assert_int_eq(info->patterns, 3);
	ck_assert_int_ge(info->schema_version, 1); /* the store's schema (2 since portals/COPY data), not the struct's */
	ck_assert_uint_eq(info->size, sizeof *info);

	/* A future caller's bigger output: written up to the library's size, the rest untouched. */
	typedef struct { v1_store_info i; unsigned char later[64]; } future_info;
	future_info *fi = GUARDED(future_info);
	memset(fi->later, 0xab, sizeof fi->later);
	fi->i.size = sizeof *fi;
	ck_assert_msg(scry_store_info_get(s, &fi->i, err) == 0, "%s", err->message);
	ck_assert_uint_ge(fi->i.size, sizeof(v1_store_info));
	ck_assert_uint_le(fi->i.size, sizeof *fi);
	for (size_t k = fi->i.size - sizeof(v1_store_info); k < sizeof fi->later; k++)
		ck_assert_uint_eq(fi->later[k], 0xab);
	ck_assert_int_eq(fi->i.events, 5);
	/* Too small a size: refused. */
	info->size = 4;
	ck_assert_int_eq(scry_store_info_get(s, info, err), -1);
	ck_assert_msg(strstr(err->message, "scry_store_info") && strstr(err->message, "sizeof"), "%s", err->message);

	v1_event_filter *f = GUARDED(v1_event_filter);
	f->version = 1;
	f->session_id = sid;
	void *it = NULL;
	ck_assert_msg(scry_store_events(s, f, &it, err) == 0, "%s", err->message);
	const v1_stored_event *se;
	static const char *const want[] = { "SELECT 1", "SELECT 2 FROM t", "SELECT x FROM u WHERE y = 3",
		                                "SELECT x FROM u WHERE y = 3", "SELECT 2 FROM t" };
	int n = 0, rc;
	int64_t ids[5];
	while ((rc = scry_event_iter_next(it, &se, err)) == 1) {
		ck_assert_int_lt(n, 5);
		ck_assert_str_eq(se->query, want[n]);
		ck_assert_int_eq(se->rows, n < 3 ? 1 : 2);
		ids[n++] = se->id;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(n, 5);
	scry_event_iter_free(it);

	int64_t run = 0;
	ck_assert_msg(scry_store_run_begin(s, "v1", "host=x", NULL, &run, err) == 0, "%s", err->message);
	v1_sample *sm = guarded(5 * sizeof(v1_sample));
	for (int i = 0; i < 5; i++)
		sm[i] = (v1_sample){ ids[i], 0, 100 + i, 1, "" };
	ck_assert_msg(scry_store_samples_append(s, run, sm, 5, sizeof(v1_sample), err) == 0, "%s", err->message);
	v1_run_summary *sum = GUARDED(v1_run_summary);
	*sum = (v1_run_summary){ 1, 5, 0, 0, 0, 50.0, NULL };
	ck_assert_msg(scry_store_run_end(s, run, sum, err) == 0, "%s", err->message);
	void *sit = NULL;
	ck_assert_msg(scry_store_samples(s, run, &sit, err) == 0, "%s", err->message);
	const v1_stored_sample *ss;
	n = 0;
	int64_t total = 0;
	while ((rc = scry_sample_iter_next(sit, &ss, err)) == 1) {
		n++;
		total += ss->latency_us;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(total, 510);
	scry_sample_iter_free(sit);
	scry_store_free(s);
	unlink(path);
}
END_TEST

START_TEST(test_fingerprint_pgwire_v1)
{
	v1_error *err = GUARDED(v1_error);
	v1_fingerprinter_options *fo = GUARDED(v1_fingerprinter_options);
	*fo = (v1_fingerprinter_options){ 1, 16 };
	void *f = NULL;
	ck_assert_msg(scry_fingerprinter_new(&f, fo, err) == 0, "%s", err->message);
	uint64_t fp;
	ck_assert_int_eq(scry_fingerprint_compute(f, "SELECT 1", 8, &fp, err), 0);
	ck_assert_int_eq(scry_fingerprint_compute(f, "SELECT 2", 8, &fp, err), 0);
	v1_fingerprinter_stats *fs = GUARDED(v1_fingerprinter_stats);
	fs->size = sizeof *fs;
	ck_assert_int_eq(scry_fingerprinter_stats_get(f, fs), 0);
	ck_assert_uint_eq(fs->calls, 2);
	ck_assert_uint_eq(fs->hits, 1);
	fs->size = 0;
	ck_assert_int_eq(scry_fingerprinter_stats_get(f, fs), -1);
	scry_fingerprinter_free(f);

	v1_pgwire_callbacks *cb = GUARDED(v1_pgwire_callbacks);
	cb->version = 1;
	v1_pgwire_options *po = GUARDED(v1_pgwire_options);
	po->version = 1;
	void *d = NULL;
	ck_assert_msg(scry_pgwire_new(&d, cb, po, err) == 0, "%s", err->message);
	static const char body[] = "user\0alice\0database\0shop\0"; /* and its terminating NUL */
	unsigned char startup[64];
	size_t len = 8 + sizeof body;
	memcpy(startup, (unsigned char[]){ 0, 0, 0, (unsigned char)len, 0, 3, 0, 0 }, 8);
	memcpy(startup + 8, body, sizeof body);
	ck_assert_msg(scry_pgwire_feed(d, 0, startup, len, 0, err) == 0, "%s", err->message);
	v1_pgwire_stats *ps = GUARDED(v1_pgwire_stats);
	ps->size = sizeof *ps;
	ck_assert_int_eq(scry_pgwire_stats_get(d, ps), 0);
	ck_assert_uint_eq(ps->messages_frontend, 1);
	scry_pgwire_free(d);
}
END_TEST

START_TEST(test_logimport_replay_pipeline_proxy_v1)
{
	void *s = open_store();
	v1_error *err = GUARDED(v1_error);

	v1_logimport_options *lo = GUARDED(v1_logimport_options);
	lo->version = 1; /* csvlog */
	void *imp = NULL;
	ck_assert_msg(scry_logimport_new(&imp, s, lo, err) == 0, "%s", err->message);
	v1_logimport_stats *ls = GUARDED(v1_logimport_stats);
	ls->size = sizeof *ls;
	ck_assert_msg(scry_logimport_finish(imp, ls, err) == 0, "%s", err->message);
	ck_assert_uint_eq(ls->statements, 0);
	scry_logimport_free(imp);

	v1_replay_options *ro = GUARDED(v1_replay_options);
	*ro = (v1_replay_options){ 1, 0, 1.0, 2, 1, 0, 0, 1000, NULL, 0, NULL, NULL, NULL, NULL };
	void *r = NULL;
	ck_assert_msg(scry_replay_new(&r, s, ro, err) == 0, "%s", err->message);
	v1_replay_result *rr = GUARDED(v1_replay_result);
	rr->size = sizeof *rr;
	rr->executions = 42;
	/* Nowhere to connect: fails before replaying, the result zeroed within its size. */
	ck_assert_int_eq(scry_replay_run(r, "host=/nonexistent-scry-abi-test port=1", "x", rr, err), -9);
	ck_assert_int_eq(rr->executions, 0);
	scry_replay_free(r);

	v1_verdict_options *vo = GUARDED(v1_verdict_options);
	*vo = (v1_verdict_options){ 1, 1.5, 0.5, 5, NULL, NULL, NULL, NULL, NULL, NULL };
	v1_migration *fix = GUARDED(v1_migration);
	fix->version = 1;
	fix->sql = "SELECT 1";
	v1_pipeline_options *pl = GUARDED(v1_pipeline_options);
	*pl = (v1_pipeline_options){ 1, 0, 0, ro, vo, fix, "abi", NULL, NULL, NULL, NULL, NULL };
	void *p = NULL;
	ck_assert_msg(scry_pipeline_new(&p, s, "host=/nonexistent-scry-abi-test dbname=x", pl, err) == 0, "%s",
	              err->message);
	v1_pipeline_stats *pst = GUARDED(v1_pipeline_stats);
	pst->size = sizeof *pst;
	ck_assert_int_eq(scry_pipeline_stats_get(p, pst), 0);
	ck_assert_int_eq(pst->total_us, 0);
	rr->size = sizeof *rr;
	ck_assert_int_eq(scry_pipeline_replay_result_get(p, 0, rr), 0);
	ck_assert_int_eq(scry_pipeline_replay_result_get(p, 9, rr), -1);
	scry_pipeline_free(p);

	v1_proxy_options *xo = GUARDED(v1_proxy_options);
	xo->version = 1;
	xo->listen = "127.0.0.1:0";
	xo->upstream = "127.0.0.1:1";
	void *px = NULL;
	ck_assert_msg(scry_proxy_new(&px, s, xo, err) == 0, "%s", err->message);
	v1_proxy_stats *xs = GUARDED(v1_proxy_stats);
	xs->size = sizeof *xs;
	ck_assert_int_eq(scry_proxy_stats_get(px, xs), 0);
	ck_assert_uint_eq(xs->connections, 0);
	scry_proxy_free(px);

	scry_store_free(s);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("abi-v1");
	TCase *tc = tcase_create("v1");
	tcase_add_test(tc, test_version_number);
	tcase_add_test(tc, test_options_versions);
	tcase_add_test(tc, test_store_v1);
	tcase_add_test(tc, test_fingerprint_pgwire_v1);
	tcase_add_test(tc, test_logimport_replay_pipeline_proxy_v1);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
