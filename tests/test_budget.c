/*
 * tests/test_budget.c - the replay budget's sample (per-pattern minimum,
 * proportional share, spread over time and values, whole transactions,
 * session state), the loader's resident events bounded by the budget and
 * not by the store, and store housekeeping (compaction, runs prune/delete).
 * No server needed: the sample is chosen from the store alone.
 */
#include "replay_workload.h"

#include <check.h>
#include "pgtest.h"
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/scry-test-budget-XXXXXX";
static char path[128];

static void setup(void)
{
	static int n;
	if (n == 0 && !mkdtemp(dir))
		abort();
	snprintf(path, sizeof path, "%s/b%d.db", dir, ++n);
}

static void teardown(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed: %s\n", cmd);
}

#define TEXT_A "SELECT abalance FROM accounts WHERE aid = "
#define TEXT_B "SELECT * FROM branches WHERE bid = "
#define TEXT_C "SELECT count(*) FROM history WHERE tid = "

/*
 * A store of `na` executions of A (values cycling over 1000), 100 of B, 3 of
 * C over 4 sessions; session 4 opens with a SET and runs 20 transactions
 * BEGIN / UPDATE / B / COMMIT.
 */
static scry_store *make_store(int na)
{
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&s, path, NULL, &err), 0);
	int64_t sess[4];
	for (int i = 0; i < 4; i++) {
		scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", NULL, NULL, 1000000 };
		ck_assert_int_eq(scry_store_session_add(s, &si, &sess[i], &err), 0);
	}
	enum { BATCH = 500 };
	static char texts[BATCH][96];
	scry_event ev[BATCH];
	int n = 0, b = 0, c = 0, t = 0;
	int64_t at = 1000000;
	int total = na + 100 + 3 + 1;
	for (int i = 0; i < total;) {
		int k = 0;
		for (; k < BATCH && i < total; k++, i++) {
			memset(&ev[k], 0, sizeof ev[k]);
			ev[k].duration_us = 100;
			ev[k].rows = 1;
			ev[k].start_us = at += 10;
			ev[k].kind = SCRY_EVENT_SIMPLE;
			int sid = i % 3;
			if (i == 0) {
				ev[k].session_id = sess[3];
				ev[k].query = "SET work_mem = '8MB'";
			} else if (c < 3 && i % (total / 3) == 1) {
				snprintf(texts[k], sizeof texts[k], TEXT_C "%d", c++);
				ev[k].session_id = sess[sid];
				ev[k].query = texts[k];
			} else if (b < 100 && i % (total / 100) == 2) {
				/* B: in a transaction of session 4 for its first 20, else alone */
				if (t < 20) {
					static const char *const txn[] = { "BEGIN", "UPDATE tellers SET tbalance = tbalance + 1 WHERE tid = 1",
					                                   NULL, "COMMIT" };
					for (int j = 0; j < 4 && k < BATCH; j++) {
						memset(&ev[k], 0, sizeof ev[k]);
						ev[k].duration_us = 100;
						ev[k].start_us = at += 10;
						ev[k].session_id = sess[3];
						if (txn[j]) {
							ev[k].query = txn[j];
						} else {
							snprintf(texts[k], sizeof texts[k], TEXT_B "%d", b++);
							ev[k].query = texts[k];
						}
						if (j < 3)
							k++;
					}
					t++;
				} else {
					snprintf(texts[k], sizeof texts[k], TEXT_B "%d", b++);
					ev[k].session_id = sess[sid];
					ev[k].query = texts[k];
				}
			} else {
				snprintf(texts[k], sizeof texts[k], TEXT_A "%d", n++ % 1000);
				ev[k].session_id = sess[sid];
				ev[k].query = texts[k];
			}
		}
		ck_assert_int_eq(scry_store_append(s, ev, (size_t)k, sizeof *ev, &err), 0);
	}
	return s;
}

/* make_store(na), then the replay's loader on it with `o`; the caller frees both. */
static scry_store *make_loaded(int na, const scry_replay_options *o, workload *w)
{
	scry_store *s = make_store(na);
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry__replay_load(s, o, w, &err) == 0, "%s", err.message);
	return s;
}

static int count_prefix(const workload *w, const char *prefix, int *sessions_with)
{
	int n = 0;
	if (sessions_with)
		*sessions_with = 0;
	for (size_t i = 0; i < w->nsess; i++) {
		int here = 0;
		for (size_t j = 0; j < w->sess[i].n; j++)
			if (!strncmp(w->sess[i].st[j].t->text, prefix, strlen(prefix)))
				here++;
		n += here;
		if (sessions_with && here)
			(*sessions_with)++;
	}
	return n;
}

START_TEST(budget_keeps_minimum_and_proportion)
{
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.budget = 300;
	o.min_per_pattern = 20;
	workload w = { 0 };
	scry_error err = SCRY_ERROR_INIT;
	scry_store *s = make_loaded(5000, &o, &w);
	ck_assert(w.sampled);
	int a = count_prefix(&w, TEXT_A, NULL), b = count_prefix(&w, TEXT_B, NULL), c = count_prefix(&w, TEXT_C, NULL);
	fprintf(stderr, "sample: A %d, B %d, C %d, all %zu of %lld\n", a, b, c, w.nstmts, (long long)w.captured);
	ck_assert_int_eq(c, 3);            /* fewer than the minimum: all of them */
	ck_assert_int_ge(b, 20);           /* the minimum */
	ck_assert_int_ge(a, 200);          /* the rest goes mostly to the frequent pattern */
	ck_assert_int_gt(a, b);
	ck_assert_int_le((int)w.nstmts, 300 + 60); /* the budget, plus transaction control and state */

	/* Spread over time: A's sample spans the capture, with distinct values. */
	int64_t lo = INT64_MAX, hi = 0;
	int distinct = 0;
	static char seen[1000];
	memset(seen, 0, sizeof seen);
	for (size_t i = 0; i < w.nsess; i++)
		for (size_t j = 0; j < w.sess[i].n; j++) {
			const rstmt *st = &w.sess[i].st[j];
			if (strncmp(st->t->text, TEXT_A, strlen(TEXT_A)))
				continue;
			lo = st->event_id < lo ? st->event_id : lo;
			hi = st->event_id > hi ? st->event_id : hi;
			int v = atoi(st->t->text + strlen(TEXT_A));
			if (v >= 0 && v < 1000 && !seen[v]++)
				distinct++;
		}
	ck_assert_int_ge(hi - lo, 5000 * 8 / 10);
	ck_assert_int_eq(distinct, a); /* 1000 values for ~250 places: never the same twice */

	/* Whole transactions in their session's order, the session's SET first. */
	for (size_t i = 0; i < w.nsess; i++) {
		const rsession *x = &w.sess[i];
		bool in = false, txn_session = false;
		for (size_t j = 0; j < x->n; j++) {
			const char *t = x->st[j].t->text;
			if (j > 0)
				ck_assert_int_lt(x->st[j - 1].event_id, x->st[j].event_id);
			if (!strcmp(t, "BEGIN")) {
				ck_assert(!in);
				ck_assert(txn_session && !strcmp(x->st[0].t->text, "SET work_mem = '8MB'"));
				ck_assert(j + 3 < x->n);
				ck_assert(!strncmp(x->st[j + 1].t->text, "UPDATE", 6));
				ck_assert(!strncmp(x->st[j + 2].t->text, TEXT_B, strlen(TEXT_B)));
				ck_assert_str_eq(x->st[j + 3].t->text, "COMMIT");
				in = true;
			} else if (!strcmp(t, "COMMIT")) {
				ck_assert(in);
				in = false;
			} else if (!strncmp(t, "SET", 3)) {
				txn_session = true;
			}
		}
		ck_assert(!in);
	}
	scry__replay_workload_free(&w);

	/* Without a budget: everything. */
	o.budget = 0;
	ck_assert_int_eq(scry__replay_load(s, &o, &w, &err), 0);
	ck_assert(!w.sampled);
	ck_assert_int_eq((int)w.nstmts, 5000 + 100 + 3 + 1 + 60);
	scry__replay_workload_free(&w);
	scry_store_free(s);
}
END_TEST

/* The events resident in the loader follow the budget, not the store: 10x the events, the same sample size. */
START_TEST(resident_events_bounded_by_budget)
{
	size_t resident[2];
	int sizes[2] = { 4000, 40000 };
	for (int k = 0; k < 2; k++) {
		if (k) { /* a fresh file for the larger store (the fixture removes the last one) */
			teardown();
			setup();
		}
		scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
		o.budget = 200;
		workload w = { 0 };
		scry_store *s = make_loaded(sizes[k], &o, &w);
		resident[k] = w.nstmts;
		ck_assert_int_eq((int)w.captured, sizes[k] + 100 + 3 + 1 + 60);
		scry__replay_workload_free(&w);
		scry_store_free(s);
	}
	fprintf(stderr, "resident events: %zu (store of 4k), %zu (store of 40k)\n", resident[0], resident[1]);
	ck_assert_int_le((int)resident[1], 200 + 60);
	ck_assert_int_le((int)resident[1], (int)resident[0] + 20);
}
END_TEST

/* budget_seconds: a sample sized from the captured latencies (100 us each here, plus the round trip). */
START_TEST(budget_seconds_sizes_the_sample)
{
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.budget_seconds = 0.5;
	o.concurrency = 1;
	workload w = { 0 };
	scry_store *s = make_loaded(20000, &o, &w);
	/* 0.5 s / (2 sides x 300 us) ~ 833 executions */
	fprintf(stderr, "budget_seconds 0.5 -> budget %lld, %zu events\n", (long long)w.budget, w.nstmts);
	ck_assert_int_ge(w.budget, 600);
	ck_assert_int_le(w.budget, 1100);
	ck_assert_int_lt((int)w.nstmts, 20000);
	scry__replay_workload_free(&w);
	scry_store_free(s);
}
END_TEST

/*
 * Without a budget the workload streams: sessions up front, statements read
 * in chunks as cursors advance. Four cursors walking four sessions at once
 * (as four concurrent runners would) hold at most four chunks, whatever the
 * store holds, and see every event of their session in capture order.
 */
START_TEST(streaming_holds_chunks_not_the_store)
{
	size_t peak[2];
	int sizes[2] = { 4000, 40000 };
	for (int k = 0; k < 2; k++) {
		if (k) { /* a fresh file for the larger store (the fixture removes the last one) */
			teardown();
			setup();
		}
		scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
		workload w = { 0 };
		scry_store *s = make_loaded(sizes[k], &o, &w);
		ck_assert(w.streaming);
		ck_assert_int_eq((int)w.resident, 0);
		ck_assert_int_eq((int)w.nsess, 4);
		ck_assert_int_eq((int)w.nstmts, sizes[k] + 100 + 3 + 1 + 60);
		scry__stmt_cursor cur[4] = { { 0 } };
		size_t pos[4] = { 0 }, seen = 0;
		int64_t last[4] = { 0 };
		for (bool more = true; more;) {
			more = false;
			for (size_t i = 0; i < 4; i++) {
				for (int step = 0; step < 7 && pos[i] < w.sess[i].n; step++, pos[i]++, seen++) {
					const rstmt *st = scry__replay_stmt(&w, &cur[i], &w.sess[i], pos[i], pos[i]);
					ck_assert_ptr_nonnull(st);
					ck_assert_int_gt(st->event_id, last[i]);
					last[i] = st->event_id;
				}
				more |= pos[i] < w.sess[i].n;
			}
		}
		ck_assert_int_eq((int)seen, (int)w.nstmts);
		peak[k] = w.resident_peak;
		for (int i = 0; i < 4; i++)
			scry__stmt_cursor_close(&w, &cur[i]);
		ck_assert_int_eq((int)w.resident, 0);
		scry__replay_workload_free(&w);
		scry_store_free(s);
	}
	fprintf(stderr, "streaming: at most %zu statements resident (store of 4k), %zu (store of 40k)\n", peak[0], peak[1]);
	ck_assert_int_le((int)peak[1], 4 * 256);
	ck_assert_int_le((int)peak[1], (int)peak[0]);
}
END_TEST

/* Transactions of five statements (TPC-B-like): pulled-in statements count, so the sample stays near the budget. */
START_TEST(transaction_heavy_stays_near_budget)
{
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&s, path, NULL, &err), 0);
	int64_t sess[4];
	for (int i = 0; i < 4; i++) {
		scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", NULL, NULL, 1000000 };
		ck_assert_int_eq(scry_store_session_add(s, &si, &sess[i], &err), 0);
	}
	static char texts[5][128];
	scry_event ev[5];
	for (int t = 0; t < 2000; t++) {
		snprintf(texts[0], sizeof texts[0], "BEGIN");
		snprintf(texts[1], sizeof texts[1], "UPDATE accounts SET abalance = abalance + %d WHERE aid = %d", t % 7, t * 13);
		snprintf(texts[2], sizeof texts[2], "SELECT abalance FROM accounts WHERE aid = %d", t * 13);
		snprintf(texts[3], sizeof texts[3], "INSERT INTO history (aid, delta) VALUES (%d, %d)", t * 13, t % 7);
		snprintf(texts[4], sizeof texts[4], "END");
		for (int j = 0; j < 5; j++) {
			memset(&ev[j], 0, sizeof ev[j]);
			ev[j].session_id = sess[t % 4];
			ev[j].start_us = 1000000 + (t * 5 + j) * 10;
			ev[j].duration_us = 100;
			ev[j].query = texts[j];
		}
		ck_assert_int_eq(scry_store_append(s, ev, 5, sizeof *ev, &err), 0);
	}
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.budget = 500;
	o.min_per_pattern = 20;
	workload w = { 0 };
	ck_assert_int_eq(scry__replay_load(s, &o, &w, &err), 0);
	int begins = count_prefix(&w, "BEGIN", NULL), ends = count_prefix(&w, "END", NULL);
	fprintf(stderr, "transactions: %zu statements sampled for a budget of 500 (%d transactions)\n", w.nstmts, begins);
	ck_assert_int_eq(begins, ends);
	ck_assert_int_eq((int)w.nstmts, begins * 5); /* whole transactions only */
	ck_assert_int_le((int)w.nstmts, 500 * 2);
	ck_assert_int_ge((int)w.nstmts, 500);
	scry__replay_workload_free(&w);
	scry_store_free(s);
}
END_TEST

/* A store that cannot be opened a second time (in memory) is loaded whole instead of streamed. */
START_TEST(memory_store_is_loaded_whole)
{
	snprintf(path, sizeof path, ":memory:");
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	workload w = { 0 };
	scry_store *s = make_loaded(500, &o, &w);
	ck_assert(!w.streaming);
	ck_assert_int_eq((int)w.nstmts, 500 + 100 + 3 + 1 + 60);
	scry__replay_workload_free(&w);
	scry_store_free(s);
}
END_TEST

/*
 * The A/B scheduler replays a unit (a transaction) on one side, goes back to
 * its first statement for the other side, then moves on: the window keeps
 * what lies after the pin, drops what lies before, and stays small.
 */
START_TEST(window_goes_back_to_its_pin)
{
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	workload w = { 0 };
	scry_store *s = make_loaded(3000, &o, &w);
	ck_assert(w.streaming);
	for (size_t i = 0; i < w.nsess; i++) {
		scry__stmt_cursor c = { 0 };
		size_t n = w.sess[i].n;
		int64_t *ids = calloc(n, sizeof *ids);
		for (size_t u = 0, len = 1; u < n; u += len, len = len % 7 + 1) {
			size_t end = u + len < n ? u + len : n;
			for (int side = 0; side < 2; side++)
				for (size_t j = u; j < end; j++) {
					const rstmt *st = scry__replay_stmt(&w, &c, &w.sess[i], j, u);
					ck_assert_ptr_nonnull(st);
					if (side == 0)
						ids[j] = st->event_id;
					else
						ck_assert_int_eq(st->event_id, ids[j]); /* the same statement again */
					ck_assert(j == 0 || ids[j] > ids[j - 1]);
				}
		}
		scry__stmt_cursor_close(&w, &c);
		free(ids);
	}
	fprintf(stderr, "A/B units: at most %zu statements resident\n", w.resident_peak);
	ck_assert_int_le((int)w.resident_peak, 2 * 256);
	ck_assert_int_eq((int)w.resident, 0);
	scry__replay_workload_free(&w);
	scry_store_free(s);
}
END_TEST

/* A budget that covers everything loads exactly what streaming reads: same statements, same classes. */
START_TEST(full_budget_equals_stream)
{
	scry_store *s = make_store(2000);
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	workload ws = { 0 }, wb = { 0 };
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry__replay_load(s, &o, &ws, &err), 0);
	o.budget = 1000000;
	ck_assert_int_eq(scry__replay_load(s, &o, &wb, &err), 0);
	ck_assert_int_eq((int)wb.nstmts, (int)ws.nstmts);
	ck_assert_int_eq((int)wb.nsess, (int)ws.nsess);
	for (size_t i = 0; i < ws.nsess; i++) {
		ck_assert_int_eq(ws.sess[i].id, wb.sess[i].id);
		ck_assert_int_eq((int)ws.sess[i].n, (int)wb.sess[i].n);
		ck_assert_int_eq(ws.sess[i].first_us, wb.sess[i].first_us);
		ck_assert_int_eq(ws.sess[i].last_us, wb.sess[i].last_us);
		scry__stmt_cursor c = { 0 };
		for (size_t j = 0; j < ws.sess[i].n; j++) {
			const rstmt *a = scry__replay_stmt(&ws, &c, &ws.sess[i], j, j), *b = &wb.sess[i].st[j];
			ck_assert_int_eq(a->event_id, b->event_id);
			ck_assert_int_eq(a->start_us, b->start_us);
			ck_assert_int_eq(a->kind, b->kind);
			ck_assert_int_eq(a->nparams, b->nparams);
			ck_assert_str_eq(a->t->text, b->t->text);
			ck_assert_int_eq(a->t->cls, b->t->cls);
		}
		scry__stmt_cursor_close(&ws, &c);
	}
	ck_assert_int_eq(ws.first_us, wb.first_us);
	scry__replay_workload_free(&ws);
	scry__replay_workload_free(&wb);
	scry_store_free(s);
}
END_TEST

START_TEST(compact_keeps_sample_and_counts)
{
	scry_store *s = make_store(3000);
	scry_error err = SCRY_ERROR_INIT;
	scry_compact_result r = SCRY_COMPACT_RESULT_INIT;
	ck_assert_int_eq(scry_store_compact(s, 10, &r, &err), 0);
	ck_assert_int_eq(r.events_before, 3000 + 100 + 3 + 1 + 60);
	/* A 10, B 10, C 3, SET 1, BEGIN 10, UPDATE 10, COMMIT 10 */
	ck_assert_int_eq(r.events_after, 10 + 10 + 3 + 1 + 30);
	ck_assert_int_le(r.bytes_after, r.bytes_before);
	scry_pattern_iter *it;
	const scry_pattern *p;
	ck_assert_int_eq(scry_store_patterns(s, &it, &err), 0);
	ck_assert_int_eq(scry_pattern_iter_next(it, &p, &err), 1);
	ck_assert_int_eq(p->count, 3000); /* the captured count stays */
	scry_pattern_iter_free(it);
	/* The kept A events spread over the capture. */
	PgQueryFingerprintResult fr = pg_query_fingerprint(TEXT_A "1");
	uint64_t fp = fr.fingerprint;
	pg_query_free_fingerprint_result(fr);
	scry_event_filter f = SCRY_EVENT_FILTER_INIT;
	f.fingerprints = &fp;
	f.nfingerprints = 1;
	scry_event_iter *ei;
	const scry_stored_event *ev;
	ck_assert_int_eq(scry_store_events(s, &f, &ei, &err), 0);
	int64_t lo = INT64_MAX, hi = 0;
	int n = 0;
	while (scry_event_iter_next(ei, &ev, &err) == 1) {
		lo = ev->id < lo ? ev->id : lo;
		hi = ev->id > hi ? ev->id : hi;
		n++;
	}
	scry_event_iter_free(ei);
	ck_assert_int_eq(n, 10);
	ck_assert_int_ge(hi - lo, 3000 * 8 / 10);
	/* A budgeted replay of a compacted store still works on what is left. */
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.budget = 100;
	workload w = { 0 };
	ck_assert_int_eq(scry__replay_load(s, &o, &w, &err), 0);
	ck_assert_int_eq((int)w.nstmts, 10 + 10 + 3 + 1 + 30);
	scry__replay_workload_free(&w);
	ck_assert_int_eq(scry_store_compact(s, 0, NULL, &err), SCRY_EINVAL);
	scry_store_free(s);
}
END_TEST

START_TEST(runs_list_prune_delete)
{
	scry_store *s = make_store(10);
	scry_error err = SCRY_ERROR_INIT;
	const char *labels[] = { "ci-baseline", "ci-candidate", "ci-baseline", "ci-candidate", "ci-baseline",
	                         "ci-candidate", "manual" };
	int64_t ids[7];
	for (int i = 0; i < 7; i++) {
		ck_assert_int_eq(scry_store_run_begin(s, labels[i], "dbname=x", NULL, &ids[i], &err), 0);
		scry_sample sm = { 1, 0, 100, 1, "" };
		ck_assert_int_eq(scry_store_samples_append(s, ids[i], &sm, 1, sizeof sm, &err), 0);
	}
	int64_t deleted = -1;
	ck_assert_int_eq(scry_store_runs_prune(s, 1, &deleted, &err), 0);
	ck_assert_int_eq(deleted, 4);
	scry_run_iter *it;
	const scry_run_info *r;
	ck_assert_int_eq(scry_store_runs(s, &it, &err), 0);
	int64_t left[3];
	int n = 0;
	while (scry_run_iter_next(it, &r, &err) == 1) {
		ck_assert_int_lt(n, 3);
		ck_assert_int_eq(r->samples, 1);
		left[n++] = r->id;
	}
	scry_run_iter_free(it);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(left[0], ids[4]); /* the newest pair and the other label */
	ck_assert_int_eq(left[1], ids[5]);
	ck_assert_int_eq(left[2], ids[6]);
	ck_assert_int_eq(scry_store_run_delete(s, ids[6], &err), 0);
	ck_assert_int_eq(scry_store_run_delete(s, ids[6], &err), SCRY_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err.message, "scry runs list"));
	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(s, &info, &err), 0);
	ck_assert_int_eq(info.runs, 2);
	ck_assert_int_eq(info.samples, 2);
	ck_assert_int_eq(scry_store_runs_prune(s, -1, NULL, &err), SCRY_EINVAL);
	scry_store_free(s);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("budget");
	TCase *tc = tcase_create("budget");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, budget_keeps_minimum_and_proportion);
	tcase_add_test(tc, resident_events_bounded_by_budget);
	tcase_add_test(tc, budget_seconds_sizes_the_sample);
	tcase_add_test(tc, streaming_holds_chunks_not_the_store);
	tcase_add_test(tc, window_goes_back_to_its_pin);
	tcase_add_test(tc, full_budget_equals_stream);
	tcase_add_test(tc, memory_store_is_loaded_whole);
	tcase_add_test(tc, transaction_heavy_stays_near_budget);
	tcase_add_test(tc, compact_keeps_sample_and_counts);
	tcase_add_test(tc, runs_list_prune_delete);
	suite_add_tcase(su, tc);
	int status = pgtest_run_suite(su, 0);
	rmdir(dir);
	pg_query_exit();
	return status;
}
