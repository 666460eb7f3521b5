/*
 * lib/verdict_work.c - the verdict's measurements on both live clones:
 * repeating a pattern's captured executions until it has enough pairs, the
 * work (blocks read) of sampled executions and whether the server's own
 * time confirms a latency regression, and the plans of every pattern of a
 * run. Everything runs inside BEGIN ... ROLLBACK.
 */
#include "verdict_internal.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define WORK_FLOOR_BLOCKS 32 /* 256 kB more read per execution: below it, work growth is not a regression */
#define EXPLAIN_WORK "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " /* counts, no clock reads */

/* ------------------------------------------------------------------ */
/* Repeating a pattern's captured executions until it has enough pairs */
/* ------------------------------------------------------------------ */

/* Statements a pattern can be repeated as: one query or DML statement, no transaction control. */
static bool repeatable(const char *normalized)
{
	static const char *const kw[] = { "select", "with", "insert", "update", "delete", "values", "table" };
	return scry__starts_with_word(normalized, " \n\t(", kw, sizeof kw / sizeof *kw);
}

/* One execution in BEGIN ... ROLLBACK, timed; fills the sample. false when the connection failed. */
static bool timed_once(PGconn *conn, const stored_exec *e, scry_sample *s, const volatile int *cancel)
{
	if (!scry__vexec_ok(conn, "BEGIN") || !scry__vexec_ok(conn, "SET LOCAL statement_timeout = '60s'")) {
		scry__vexec_ok(conn, "ROLLBACK");
		return false;
	}
	int64_t t0 = scry__monotonic_us();
	PGresult *r = scry__vexec_run(conn, "", e, cancel);
	s->latency_us = scry__monotonic_us() - t0;
	ExecStatusType st = PQresultStatus(r);
	s->rows = -1;
	if (st == PGRES_TUPLES_OK)
		s->rows = PQntuples(r);
	else if (st == PGRES_COMMAND_OK)
		s->rows = *PQcmdTuples(r) ? strtoll(PQcmdTuples(r), NULL, 10) : 0;
	else {
		const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		snprintf(s->sqlstate, sizeof s->sqlstate, "%s", ss && *ss ? ss : "XX000");
	}
	PQclear(r);
	scry__vexec_ok(conn, "ROLLBACK");
	return PQstatus(conn) == CONNECTION_OK;
}

int scry__verdict_repeat(scry_verdict *v, scry_store *store, const pat_row *pat, int32_t pat_index, size_t want,
                         int32_t round0, PGconn *ca, PGconn *cc, obs **out, size_t *nout)
{
	*out = NULL;
	*nout = 0;
	if (!repeatable(pat->normalized))
		return 1;
	stored_exec *ex = NULL;
	size_t n = 0;
	if (scry__vexec_load(store, pat->fingerprint, want, &ex, &n, NULL) || n == 0)
		return 1;
	size_t max_iter = want + want / 2, pairs = 0, k = 0;
	scry_sample *sb = scry__calloc(max_iter, sizeof *sb), *sc = scry__calloc(max_iter, sizeof *sc);
	obs *o = scry__calloc(max_iter, sizeof *o);
	int rc = 0;
	if (!sb || !sc || !o)
		rc = SCRY_ENOMEM;
	for (size_t i = 0; !rc && i < max_iter && pairs < want; i++) {
		if (scry__verdict_cancelled(&v->opts))
			break;
		const stored_exec *e = &ex[i % n];
		scry_sample *b = &sb[k], *c = &sc[k];
		b->event_id = c->event_id = e->id;
		b->round = c->round = round0 + (int32_t)i;
		const volatile int *cancel = v->opts.cancel;
		bool ok = (i & 1) ? timed_once(cc, e, c, cancel) && timed_once(ca, e, b, cancel)
		                  : timed_once(ca, e, b, cancel) && timed_once(cc, e, c, cancel);
		if (!ok || scry__verdict_cancelled(&v->opts))
			break; /* a cancelled pair is not kept: its statements were interrupted */
		obs *x = &o[k++];
		x->pat = pat_index;
		x->has_b = x->has_c = 1;
		x->event = e->id;
		x->round = b->round;
		x->b_ms = (double)b->latency_us / 1000.0;
		x->c_ms = (double)c->latency_us / 1000.0;
		x->b_rows = b->rows;
		x->c_rows = c->rows;
		memcpy(x->b_state, b->sqlstate, 6);
		memcpy(x->c_state, c->sqlstate, 6);
		x->b_abort = x->c_abort = -1;
		pairs += !b->sqlstate[0] && !c->sqlstate[0];
		if (i + 1 == want && !pairs && b->sqlstate[0] && c->sqlstate[0])
			break; /* fails on both sides: more of the same says nothing */
	}
	if (!rc && k) {
		scry_error e = SCRY_ERROR_INIT;
		if (scry_store_samples_append(store, v->baseline_run, sb, k, sizeof *sb, &e) ||
		    scry_store_samples_append(store, v->candidate_run, sc, k, sizeof *sc, &e))
			vlog(&v->opts, SCRY_LOG_WARNING, "could not store repeated executions: %s", e.message);
	}
	scry__free(sb);
	scry__free(sc);
	for (size_t i = 0; i < n; i++)
		scry__vexec_free(&ex[i]);
	scry__free(ex);
	if (rc) {
		scry__free(o);
		return rc;
	}
	*out = o;
	*nout = k;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Work: what the executions read, not only how long they took          */
/* ------------------------------------------------------------------ */

#define WORK_EXECS 3 /* sampled executions per side */

/* Planning + execution time the server measured for an EXPLAIN ANALYZE plan. */
static bool server_ms(const char *json, double *ms)
{
	plan_info pi;
	if (scry__plan_parse(json, &pi))
		return false;
	*ms = pi.plan_ms + pi.exec_ms;
	bool ok = pi.analyzed;
	scry__plan_free(&pi);
	return ok;
}

/*
 * A regression by client latency alone - the work within the threshold, the
 * plan the same or changed only in what does no more work (an index of the
 * same columns under a new name, as a fix that recreates it) - must show
 * in the time the server itself measured (planning + execution, EXPLAIN
 * ANALYZE of the sampled executions): a pg_sleep, a trigger, a lock wait or
 * a slower function does. Under CPU saturation a backend that did more work
 * earlier (B's slower statements of another pattern) waits for a core before
 * it even reads the next query: its client latency grows, its server time
 * does not. Such a regression is not confirmed and is reported unchanged,
 * with both figures. Only ever removes a flag.
 */
static void confirm_timing(scry_pattern_verdict *pv, const scry_verdict_options *opts, size_t samples,
                           double server_a_ms, double server_c_ms)
{
	double confirm = 1.0 + (opts->threshold - 1.0) / 2.0;
	double client_delta = pv->candidate_p50_ms - pv->baseline_p50_ms, server_delta = server_c_ms - server_a_ms;
	if (pv->cls != SCRY_CLASS_REGRESSED || pv->tail_regressed || samples < 2 ||
	    !(pv->server_ratio > 0) ||
	    (pv->baseline_work > 0 && pv->candidate_work / pv->baseline_work >= opts->threshold))
		return;
	/* Confirmed: the server's time grew too, and explains at least half of the client's growth. */
	if (pv->server_ratio >= confirm && server_delta >= 0.5 * client_delta)
		return;
	pv->cls = SCRY_CLASS_UNCHANGED;
	pv->flagged = 0;
	scry__free((char *)pv->note);
	pv->note = scry__vdup_printf("not confirmed: client latency %.2fx (p50 +%.3f ms), but %s took "
	                             "%.2fx the server time (%.3f -> %.3f ms, EXPLAIN ANALYZE of %zu sampled executions "
	                             "per side); a loaded machine delaying one side's backend, not the migration",
	                             pv->ratio, client_delta,
	                             pv->plan_changed ? "a changed plan doing the same work" : "the same plan and work",
	                             pv->server_ratio, server_a_ms, server_c_ms, samples);
}


/*
 * The work rule: a pattern whose plan changed and whose work grew by the
 * threshold (and by at least WORK_FLOOR_BLOCKS), with a timing ratio
 * above 1, is a regression even when timing alone cannot say so (a saturated machine
 * widens the interval).
 */
void scry__verdict_apply_work(scry_pattern_verdict *pv, const scry_verdict_options *opts)
{
	if (!pv->work_measured || pv->flagged || pv->cls == SCRY_CLASS_INSUFFICIENT ||
	    pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE || pv->cls == SCRY_CLASS_NEW_ERROR)
		return;
	pv->work_ratio = pv->baseline_work > 0 ? pv->candidate_work / pv->baseline_work : pv->candidate_work > 0 ? INFINITY : 1;
	if (pv->plan_changed && pv->work_ratio >= opts->threshold && pv->ratio > 1.0 &&
	    pv->candidate_work - pv->baseline_work >= WORK_FLOOR_BLOCKS) {
		pv->cls = SCRY_CLASS_REGRESSED;
		pv->flagged = 1;
		pv->work_regressed = 1;
		scry__free((char *)pv->note);
		pv->note = scry__vdup_printf("plan changed and work grew %.2fx (%.0f -> %.0f blocks per execution) with "
		                             "a timing ratio of %.2fx",
		                             pv->work_ratio, pv->baseline_work, pv->candidate_work, pv->ratio);
	}
}

/* Work of both sides from two analyzed plans (one execution each). */
bool scry__verdict_work_from_plans(scry_pattern_verdict *pv, const char *json_a, const char *json_c)
{
	plan_info a, c;
	if (scry__plan_parse(json_a, &a))
		return false;
	if (scry__plan_parse(json_c, &c)) {
		scry__plan_free(&a);
		return false;
	}
	bool ok = a.analyzed && c.analyzed;
	if (ok) {
		pv->baseline_work = scry__vplan_work(&a);
		pv->candidate_work = scry__vplan_work(&c);
		pv->plan_changed = !scry__plan_same_shape(&a, &c);
		pv->work_measured = 1;
	}
	scry__plan_free(&a);
	scry__plan_free(&c);
	return ok;
}

/*
 * EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) of a few sampled executions on
 * both sides, interleaved (which side goes first alternates): the median
 * work per side, whether the plan's shape changed, and the plans (stored in
 * both runs, shown when the shape changed or the pattern regressed).
 */
void scry__verdict_measure_work(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *ca, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	if (!repeatable(pv->normalized) || scry__vexec_load(store, pv->fingerprint, WORK_EXECS, &ex, &n, NULL) || n == 0)
		return;
	double wa[WORK_EXECS], wc[WORK_EXECS], sa[WORK_EXECS], sc[WORK_EXECS];
	size_t k = 0;
	char *first_a = NULL, *first_c = NULL;
	bool changed = false;
	for (size_t i = 0; i < n && !scry__verdict_cancelled(&v->opts); i++) {
		char *ma, *mc, *ja, *jc;
		if (i & 1) {
			jc = scry__vexplain(cc, EXPLAIN_WORK, &ex[i], &mc, v->opts.cancel);
			ja = scry__vexplain(ca, EXPLAIN_WORK, &ex[i], &ma, v->opts.cancel);
		} else {
			ja = scry__vexplain(ca, EXPLAIN_WORK, &ex[i], &ma, v->opts.cancel);
			jc = scry__vexplain(cc, EXPLAIN_WORK, &ex[i], &mc, v->opts.cancel);
		}
		scry_pattern_verdict tmp = { 0 };
		if (ja && jc && scry__verdict_work_from_plans(&tmp, ja, jc) && server_ms(ja, &sa[k]) &&
		    server_ms(jc, &sc[k])) {
			wa[k] = tmp.baseline_work;
			wc[k] = tmp.candidate_work;
			changed |= tmp.plan_changed != 0;
			k++;
			if (!first_a) {
				first_a = ja;
				first_c = jc;
				scry__vkeep_plan(store, &v->opts, v->baseline_run, pv->fingerprint, ex[i].id, ja);
				scry__vkeep_plan(store, &v->opts, v->candidate_run, pv->fingerprint, ex[i].id, jc);
				ja = jc = NULL;
			}
		}
		scry__free(ja);
		scry__free(jc);
		scry__free(ma);
		scry__free(mc);
	}
	if (k) {
		qsort(wa, k, sizeof *wa, scry__cmp_double);
		qsort(wc, k, sizeof *wc, scry__cmp_double);
		pv->baseline_work = scry__quantile(wa, k, 0.5);
		pv->candidate_work = scry__quantile(wc, k, 0.5);
		pv->plan_changed = changed;
		pv->work_measured = 1;
		qsort(sa, k, sizeof *sa, scry__cmp_double);
		qsort(sc, k, sizeof *sc, scry__cmp_double);
		double ma = scry__quantile(sa, k, 0.5), mc = scry__quantile(sc, k, 0.5);
		pv->server_ratio = ma > 0 ? mc / ma : 0;
		confirm_timing(pv, &v->opts, k, ma, mc);
		scry__verdict_apply_work(pv, &v->opts);
		if (!pv->plan_change && (changed || pv->cls == SCRY_CLASS_REGRESSED))
			scry__vset_plan(pv, first_a, first_c);
	}
	scry__free(first_a);
	scry__free(first_c);
	for (size_t i = 0; i < n; i++)
		scry__vexec_free(&ex[i]);
	scry__free(ex);
}

/* ------------------------------------------------------------------ */
/* Plans of every pattern of a run                                     */
/* ------------------------------------------------------------------ */

/* Is fp among the filter's fingerprints (none = all)? */
static bool wanted(const uint64_t *fps, size_t nfps, uint64_t fp)
{
	if (!fps || !nfps)
		return true;
	for (size_t i = 0; i < nfps; i++)
		if (fps[i] == fp)
			return true;
	return false;
}

/* Read-only by its first keyword (a WITH may hide a write). */
static bool reads_only(const char *normalized)
{
	while (*normalized == ' ' || *normalized == '(')
		normalized++;
	return !strncasecmp(normalized, "select", 6) || !strncasecmp(normalized, "values", 6) ||
	       !strncasecmp(normalized, "table", 5);
}

int scry__plans_record(scry_store *store, const char *conninfo, int64_t run_id, const uint64_t *fps, size_t nfps,
                       bool analyze_writes, bool (*stop)(void *), void *stop_ctx, scry_log_fn log, void *log_ctx)
{
	scry_verdict_options lo = SCRY_VERDICT_OPTIONS_INIT;
	lo.log = log;
	lo.log_ctx = log_ctx;
	PGconn *conn = scry__vconnect_side(conninfo, &lo, "replay target");
	if (!conn)
		return 0;
	scry_pattern_iter *it = NULL;
	int rc = scry_store_patterns(store, &it, NULL), stored = 0;
	/* Patterns first (the iterator holds a read statement), then one EXPLAIN each. */
	struct planned {
		uint64_t fp;
		bool analyze; /* may be executed: EXPLAIN ANALYZE */
	} *list = NULL;
	size_t n = 0, cap = 0;
	const scry_pattern *p;
	while (rc == 0 && (rc = scry_pattern_iter_next(it, &p, NULL)) == 1) {
		rc = 0;
		if (p->normalized && repeatable(p->normalized) && wanted(fps, nfps, p->fingerprint)) {
			if (scry__array_grow((void **)&list, &cap, n, sizeof *list, 64)) {
				rc = SCRY_ENOMEM;
				break;
			}
			list[n].fp = p->fingerprint;
			list[n++].analyze = analyze_writes || reads_only(p->normalized);
		}
	}
	scry_pattern_iter_free(it);
	for (size_t i = 0; rc >= 0 && i < n && !(stop && stop(stop_ctx)); i++) {
		stored_exec *ex;
		size_t ne;
		if (scry__vexec_load(store, list[i].fp, 1, &ex, &ne, NULL) || ne == 0)
			continue;
		char *msg = NULL, *json = NULL;
		if (list[i].analyze) {
			json = scry__vexplain(conn, EXPLAIN_WORK, &ex[0], &msg, NULL);
		} else {
			PGresult *r = scry__vexec_run(conn, "EXPLAIN (FORMAT JSON) ", &ex[0], NULL);
			if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
				json = scry__strdup(PQgetvalue(r, 0, 0));
			PQclear(r);
		}
		if (json && scry_store_plan_put(store, run_id, list[i].fp, ex[0].id, json, NULL) == 0)
			stored++;
		scry__free(json);
		scry__free(msg);
		scry__vexec_free(&ex[0]);
		scry__free(ex);
	}
	scry__free(list);
	PQfinish(conn);
	if (rc < 0 && rc != SCRY_ENOMEM)
		scry__log(log, log_ctx, SCRY_LOG_WARNING, "could not read the patterns to store their plans");
	scry__log(log, log_ctx, SCRY_LOG_INFO, "stored the plans of %d of %zu patterns for run %lld", stored, n,
	          (long long)run_id);
	return rc == SCRY_ENOMEM ? rc : 0;
}

void scry__verdict_stored_plans(scry_verdict *v, scry_store *store)
{
	for (size_t i = 0; i < v->n; i++) {
		scry_pattern_verdict *pv = &v->items[i];
		if (pv->plan_change || pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE || pv->cls == SCRY_CLASS_INSUFFICIENT)
			continue;
		scry_buf ja = SCRY_BUF_INIT, jc = SCRY_BUF_INIT;
		if (!scry_store_plan_get(store, v->baseline_run, pv->fingerprint, &ja, NULL) &&
		    !scry_store_plan_get(store, v->candidate_run, pv->fingerprint, &jc, NULL) && ja.ptr && jc.ptr) {
			plan_info a, c;
			bool changed = false;
			if (!scry__plan_parse(ja.ptr, &a)) {
				if (!scry__plan_parse(jc.ptr, &c)) {
					changed = !scry__plan_same_shape(&a, &c);
					scry__plan_free(&c);
				}
				scry__plan_free(&a);
			}
			if (!pv->work_measured && scry__verdict_work_from_plans(pv, ja.ptr, jc.ptr))
				scry__verdict_apply_work(pv, &v->opts);
			if (changed || pv->cls == SCRY_CLASS_REGRESSED)
				scry__vset_plan(pv, ja.ptr, jc.ptr);
		}
		scry_buf_dispose(&ja);
		scry_buf_dispose(&jc);
	}
}
