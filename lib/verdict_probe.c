/*
 * lib/verdict_probe.c - what the verdict asks the live clones: with
 * connections to both sides, regressed patterns get EXPLAIN (ANALYZE,
 * BUFFERS, FORMAT JSON) with a real captured parameter set, new errors get
 * their message, and patterns that only work on the candidate are measured
 * against the indexes their plan lacks. Everything runs inside
 * BEGIN ... ROLLBACK. Also the helpers lib/verdict_work.c shares: captured
 * executions, running and explaining them, keeping their plans.
 */
#include "verdict_internal.h"
#include "util/pgexec.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define BEST_EVENTS 20        /* executions measured per side for a best-index check */
#define BEST_ROUNDS 2
#define EXPLAIN_ANALYZE "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "

/* ------------------------------------------------------------------ */
/* Plans, error messages and best indexes (need connections)           */
/* ------------------------------------------------------------------ */

void scry__vexec_free(stored_exec *e)
{
	if (!e)
		return;
	for (int i = 0; i < e->nparams; i++)
		scry__free(e->values[i]);
	scry__free(e->query);
	scry__free(e->types);
	scry__free(e->values);
	scry__free(e->lengths);
	scry__free(e->formats);
	memset(e, 0, sizeof *e);
}

/* Reads up to `max` captured executions of a pattern, preferring `first_event` first. */
int scry__vexec_load(scry_store *store, uint64_t fp, size_t max, stored_exec **out, size_t *n, scry_error *err)
{
	scry_event_filter f = SCRY_EVENT_FILTER_INIT;
	f.fingerprints = &fp;
	f.nfingerprints = 1;
	scry_event_iter *it;
	*out = NULL;
	*n = 0;
	int rc = scry_store_events(store, &f, &it, err);
	if (rc)
		return rc;
	stored_exec *v = scry__calloc(max ? max : 1, sizeof *v);
	if (!v) {
		scry_event_iter_free(it);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	const scry_stored_event *ev;
	while (*n < max && (rc = scry_event_iter_next(it, &ev, err)) == 1) {
		stored_exec *e = &v[*n];
		e->id = ev->id;
		e->query = scry__strndup(ev->query, ev->query_len);
		e->nparams = ev->nparams;
		if (ev->nparams > 0) {
			e->types = scry__calloc((size_t)ev->nparams, sizeof *e->types);
			e->values = scry__calloc((size_t)ev->nparams, sizeof *e->values);
			e->lengths = scry__calloc((size_t)ev->nparams, sizeof *e->lengths);
			e->formats = scry__calloc((size_t)ev->nparams, sizeof *e->formats);
		}
		(*n)++;
		if (!e->query || (ev->nparams > 0 && (!e->types || !e->values || !e->lengths || !e->formats))) {
			rc = SCRY_ENOMEM;
			break;
		}
		for (int i = 0; i < ev->nparams; i++) {
			const scry_param *p = &ev->params[i];
			e->types[i] = p->type_oid;
			e->formats[i] = p->format == SCRY_PARAM_BINARY;
			e->lengths[i] = p->length < 0 ? 0 : p->length;
			if (p->value && !(e->values[i] = scry__strndup(p->value, (size_t)(p->length < 0 ? 0 : p->length)))) {
				rc = SCRY_ENOMEM;
				break;
			}
		}
		if (rc < 0)
			break;
	}
	scry_event_iter_free(it);
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			scry__vexec_free(&v[i]);
		scry__free(v);
		*n = 0;
		return rc == SCRY_ENOMEM ? scry__fail(err, rc, "out of memory") : rc;
	}
	*out = v;
	return 0;
}

/* Runs `prefix` + the execution's text with its parameters; `cancel` interrupts it. */
PGresult *scry__vexec_run(PGconn *conn, const char *prefix, const stored_exec *e, const volatile int *cancel)
{
	scry_buf sql = SCRY_BUF_INIT;
	scry__buf_puts(&sql, prefix);
	scry__buf_puts(&sql, e->query);
	if (scry__buf_failed(&sql)) { /* never run a truncated statement */
		scry_buf_dispose(&sql);
		return NULL;
	}
	scry__pg_params prm = { e->nparams, e->types, (const char *const *)e->values, e->lengths, e->formats };
	PGresult *r = scry__pg_exec_cancelable(conn, sql.ptr, &prm, cancel);
	scry_buf_dispose(&sql);
	return r;
}

/* Stores a plan; a store failure is logged, not dropped (the verdict stands without it). */
void scry__vkeep_plan(scry_store *store, const scry_verdict_options *opts, int64_t run, uint64_t fp, int64_t event,
                      const char *json)
{
	scry_error e = SCRY_ERROR_INIT;
	if (scry_store_plan_put(store, run, fp, event, json, &e))
		vlog(opts, SCRY_LOG_WARNING, "cannot store the plan of pattern %016llx: %s", (unsigned long long)fp,
		     e.message);
}

bool scry__vexec_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return ok;
}

static void notice(void *arg, const PGresult *r)
{
	const scry_verdict_options *opts = arg;
	scry__pg_notice_log(opts->log, opts->log_ctx, r);
}

PGconn *scry__vconnect_side(const char *conninfo, const scry_verdict_options *opts, const char *side)
{
	PGconn *c = scry__pg_connect(conninfo, NULL, false, -1);
	if (c) /* the server's notices go to the log callback, never to stderr */
		PQsetNoticeReceiver(c, notice, (void *)opts);
	if (PQstatus(c) != CONNECTION_OK) {
		char msg[300];
		scry__pg_one_line(PQerrorMessage(c), msg, sizeof msg);
		vlog(opts, SCRY_LOG_WARNING, "cannot connect to the %s for plans: %s", side, msg);
		PQfinish(c);
		return NULL;
	}
	return c;
}

/*
 * EXPLAIN (`prefix`) of one execution inside BEGIN ... ROLLBACK. Returns the JSON (caller frees) or NULL, with the
 * server's message in *msg (caller frees) when it failed.
 */
char *scry__vexplain(PGconn *conn, const char *prefix, const stored_exec *e, char **msg, const volatile int *cancel)
{
	*msg = NULL;
	if (!scry__vexec_ok(conn, "BEGIN") || !scry__vexec_ok(conn, "SET LOCAL statement_timeout = '60s'")) {
		char m[1024];
		scry__pg_result_message(NULL, conn, m, sizeof m);
		*msg = scry__strdup(m);
		scry__vexec_ok(conn, "ROLLBACK");
		return NULL;
	}
	PGresult *r = scry__vexec_run(conn, prefix, e, cancel);
	char *json = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
		json = scry__strdup(PQgetvalue(r, 0, 0));
	} else {
		char m[1024];
		scry__pg_result_message(r, conn, m, sizeof m);
		*msg = scry__strdup(m);
	}
	PQclear(r);
	scry__vexec_ok(conn, "ROLLBACK");
	return json;
}

void scry__vset_plan(scry_pattern_verdict *pv, const char *json_a, const char *json_c)
{
	plan_info a, c;
	bool ha = json_a && !scry__plan_parse(json_a, &a), hc = json_c && !scry__plan_parse(json_c, &c);
	scry_buf b = SCRY_BUF_INIT;
	if (ha) {
		scry__plan_text(&b, &a);
		pv->baseline_plan = scry__vdup_buf(&b);
	}
	if (hc) {
		scry__plan_text(&b, &c);
		pv->candidate_plan = scry__vdup_buf(&b);
	}
	if (ha && hc) {
		scry__plan_diff(&b, &a, &c);
		pv->plan_change = scry__vdup_buf(&b);
	}
	if (ha)
		scry__plan_free(&a);
	if (hc)
		scry__plan_free(&c);
}

/* Plans of a regressed pattern on both sides, stored in `plans`. */
static void root_cause(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *ca, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	scry_error e = SCRY_ERROR_INIT;
	if (scry__vexec_load(store, pv->fingerprint, 1, &ex, &n, &e) || n == 0) {
		vlog(&v->opts, SCRY_LOG_WARNING, "no captured execution to explain: %s", e.message);
		return;
	}
	char *ma = NULL, *mc = NULL;
	char *ja = scry__vexplain(ca, EXPLAIN_ANALYZE, &ex[0], &ma, v->opts.cancel);
	char *jc = scry__vexplain(cc, EXPLAIN_ANALYZE, &ex[0], &mc, v->opts.cancel);
	if (ja)
		scry__vkeep_plan(store, &v->opts, v->baseline_run, pv->fingerprint, ex[0].id, ja);
	if (jc)
		scry__vkeep_plan(store, &v->opts, v->candidate_run, pv->fingerprint, ex[0].id, jc);
	if (!ja || !jc)
		vlog(&v->opts, SCRY_LOG_WARNING, "EXPLAIN failed: %s", ma ? ma : mc ? mc : "");
	scry__vset_plan(pv, ja, jc);
	scry__free(ja);
	scry__free(jc);
	scry__free(ma);
	scry__free(mc);
	scry__vexec_free(&ex[0]);
	scry__free(ex);
}

/* The candidate's message for a new error, from one failing execution. */
static void error_message(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	if (scry__vexec_load(store, pv->fingerprint, 50, &ex, &n, NULL))
		return;
	for (size_t i = 0; i < n && !pv->candidate_error && !scry__verdict_cancelled(&v->opts); i++) {
		char *msg = NULL;
		if (!scry__vexec_ok(cc, "BEGIN")) {
			scry__vexec_ok(cc, "ROLLBACK");
			break;
		}
		PGresult *r = scry__vexec_run(cc, "", &ex[i], v->opts.cancel);
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
			char m[1024];
			scry__pg_result_message(r, cc, m, sizeof m);
			msg = scry__strdup(m);
		}
		PQclear(r);
		scry__vexec_ok(cc, "ROLLBACK");
		pv->candidate_error = msg;
	}
	for (size_t i = 0; i < n; i++)
		scry__vexec_free(&ex[i]);
	scry__free(ex);
}

/* quote_ident() by the server itself: quotes only when needed (keywords included). */
static void quote_ident(PGconn *conn, scry_buf *b, const char *id)
{
	const char *params[1] = { id };
	PGresult *r = PQexecParams(conn, "SELECT quote_ident($1)", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		scry__buf_puts(b, PQgetvalue(r, 0, 0));
	} else {
		char *q = PQescapeIdentifier(conn, id, strlen(id));
		scry__buf_puts(b, q ? q : id);
		PQfreemem(q);
	}
	PQclear(r);
}

/* Is `w` a column of `cols` (a NUL-separated list)? */
static bool is_column(const char *cols, size_t ncols, const char *w)
{
	const char *p = cols;
	for (size_t i = 0; i < ncols; i++, p += strlen(p) + 1)
		if (!strcmp(p, w))
			return true;
	return false;
}

/*
 * Columns of `rel` named in a Seq Scan's Filter text, in order, deduplicated,
 * checked against the catalog (so casts, functions and literals drop out).
 */
static int filter_columns(PGconn *conn, const char *schema, const char *rel, const char *filter, scry_buf *cols_out,
                          int max_cols)
{
	scry_buf oid = SCRY_BUF_INIT;
	if (schema) { /* absent without VERBOSE: the name then resolves through search_path */
		quote_ident(conn, &oid, schema);
		scry__buf_puts(&oid, ".");
	}
	quote_ident(conn, &oid, rel);
	const char *params[1] = { oid.ptr };
	PGresult *r = PQexecParams(conn,
	                           "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
	                           " AND NOT attisdropped",
	                           1, NULL, params, NULL, NULL, 0);
	scry_buf_dispose(&oid);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return 0;
	}
	scry_buf all = SCRY_BUF_INIT;
	size_t ncols = (size_t)PQntuples(r);
	for (size_t i = 0; i < ncols; i++)
		scry__buf_put(&all, PQgetvalue(r, (int)i, 0), strlen(PQgetvalue(r, (int)i, 0)) + 1);
	PQclear(r);
	if (scry__buf_failed(&all)) { /* not every name is there: is_column would read past them */
		scry_buf_dispose(&all);
		return 0;
	}
	int found = 0;
	scry_buf seen = SCRY_BUF_INIT; /* NUL-separated, as in `all` */
	const char *p = filter;
	while (*p && found < max_cols) {
		if (*p == '\'') { /* skip a literal */
			for (p++; *p && !(*p == '\'' && p[1] != '\''); p += (*p == '\'' ? 2 : 1))
				;
			if (*p)
				p++;
			continue;
		}
		char word[128];
		size_t wl = 0;
		bool after_cast = p >= filter + 2 && p[-1] == ':' && p[-2] == ':';
		if (*p == '"') {
			for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"' ? 2 : 1))
				if (wl + 1 < sizeof word)
					word[wl++] = *p;
			if (*p)
				p++;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
			       *p == '$')
				if (wl + 1 < sizeof word)
					word[wl++] = *p++;
				else
					p++;
		} else {
			p++;
			continue;
		}
		word[wl] = 0;
		if (*p == '.' || *p == '(' || after_cast) /* a qualifier, a function, or a type */
			continue;
		if (wl && all.ptr && is_column(all.ptr, ncols, word) && !(seen.ptr && is_column(seen.ptr, (size_t)found, word))) {
			if (scry__buf_put(&seen, word, wl + 1))
				break;
			if (found)
				scry__buf_puts(cols_out, ", ");
			quote_ident(conn, cols_out, word);
			found++;
		}
	}
	scry_buf_dispose(&all);
	scry_buf_dispose(&seen);
	return found;
}

/* Times each execution `rounds` times inside savepoints; latencies in ms appended to out (-1: failed or cancelled). */
static int time_execs(PGconn *conn, const stored_exec *ex, size_t n, int rounds, double *out,
                      const volatile int *cancel)
{
	int k = 0;
	for (int r = 0; r < rounds; r++)
		for (size_t i = 0; i < n; i++) {
			if ((cancel && *cancel) || !scry__vexec_ok(conn, "SAVEPOINT scry_best"))
				return -1;
			int64_t t0 = scry__monotonic_us();
			PGresult *res = scry__vexec_run(conn, "", &ex[i], cancel);
			int64_t t1 = scry__monotonic_us();
			ExecStatusType st = PQresultStatus(res);
			PQclear(res);
			if (!scry__vexec_ok(conn, "ROLLBACK TO SAVEPOINT scry_best"))
				return -1;
			out[k++] = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ? (double)(t1 - t0) / 1000.0 : NAN;
		}
	return k;
}

/* Blocks an EXPLAIN (ANALYZE, BUFFERS) plan touched: shared hit + read and temp read + written, all nodes' top. */
double scry__vplan_work(const plan_info *pi)
{
	const jval *t = pi->top;
	return scry__jnum(t, "Shared Hit Blocks") + scry__jnum(t, "Shared Read Blocks") +
	       scry__jnum(t, "Temp Read Blocks") + scry__jnum(t, "Temp Written Blocks");
}

/* Blocks of one execution, EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) inside the open transaction; -1 if it failed. */
static double work_in_txn(PGconn *conn, const stored_exec *e, const volatile int *cancel)
{
	if (!scry__vexec_ok(conn, "SAVEPOINT scry_work"))
		return -1;
	PGresult *r = scry__vexec_run(conn, EXPLAIN_WORK, e, cancel);
	double w = -1;
	plan_info pi;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !scry__plan_parse(PQgetvalue(r, 0, 0), &pi)) {
		w = scry__vplan_work(&pi);
		scry__plan_free(&pi);
	}
	PQclear(r);
	if (!scry__vexec_ok(conn, "ROLLBACK TO SAVEPOINT scry_work"))
		return -1;
	return w;
}

/*
 * The verdict of a pattern against its best, paired like a run: t[i] and
 * t[k + i] are the same execution without and with the index.
 */
static void judge_best(scry_pattern_verdict *pv, const double *t, int k1, const char *ddl, double work_without,
                       double work_with, const scry_verdict_options *opts)
{
	double *bl, *cl;
	double *tmp = scry__calloc(3 * (size_t)k1, sizeof *tmp);
	if (!tmp)
		return;
	bl = tmp;
	cl = tmp + k1;
	double *lr = tmp + 2 * (size_t)k1;
	size_t np = 0;
	for (int i = 0; i < k1; i++)
		if (!isnan(t[i]) && !isnan(t[k1 + i])) {
			cl[np] = t[i];
			bl[np] = t[k1 + i];
			lr[np] = log(fmax(t[i], 0.001) / fmax(t[k1 + i], 0.001));
			np++;
		}
	if (np) {
		qsort(bl, np, sizeof *bl, scry__cmp_double);
		qsort(cl, np, sizeof *cl, scry__cmp_double);
		qsort(lr, np, sizeof *lr, scry__cmp_double);
		pv->best_p50_ms = scry__quantile(bl, np, 0.5);
		pv->unindexed_p50_ms = scry__quantile(cl, np, 0.5);
		pv->ratio = pv->best_p50_ms > 0 ? pv->unindexed_p50_ms / pv->best_p50_ms : 0;
		size_t k = scry__sign_test_k(np, CONFIDENCE_ALPHA);
		pv->ratio_low = k ? exp(lr[k - 1]) : 0;
		pv->ratio_high = k ? exp(lr[np - k]) : INFINITY;
		double delta = pv->unindexed_p50_ms - pv->best_p50_ms;
		pv->suggested_index = scry__strdup(ddl);
		pv->flagged = pv->ratio_low > opts->threshold && delta > opts->min_delta_ms;
		/* Work: the index changes the plan by construction; blocks read tell what timing under load may not. */
		if (work_without >= 0 && work_with >= 0) {
			pv->work_measured = 1;
			pv->plan_changed = 1;
			pv->baseline_work = work_with; /* "baseline" of this comparison: the pattern at its best */
			pv->candidate_work = work_without;
			pv->work_ratio = work_with > 0 ? work_without / work_with : 1;
			if (!pv->flagged && pv->work_ratio >= opts->threshold && pv->ratio > 1.0 &&
			    work_without - work_with >= WORK_FLOOR_BLOCKS)
				pv->flagged = pv->work_regressed = 1;
		}
		scry__free((char *)pv->note);
		pv->note = scry__vdup_printf("%s: p50 %.3f ms as migrated vs %.3f ms with %s", pv->flagged ? "slower than its best"
		                                                                                   : "at its best",
		                      pv->unindexed_p50_ms, pv->best_p50_ms, ddl);
	}
	scry__free(tmp);
}

/*
 * Judges a pattern that only works on the candidate against its best:
 * the indexes its plan lacks are created inside a transaction, the same
 * executions are timed without and with them, and the transaction is
 * rolled back so the candidate is unchanged.
 */
static void best_index(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *cc)
{
	const scry_verdict_options *opts = &v->opts;
	stored_exec *ex = NULL;
	size_t n = 0;
	plan_info pi;
	bool have_plan = false;
	char *msg = NULL, *json = NULL;
	scry_buf ddl = SCRY_BUF_INIT;
	double *t = NULL;
	if (scry__vexec_load(store, pv->fingerprint, BEST_EVENTS, &ex, &n, NULL) || n == 0)
		goto done;
	json = scry__vexplain(cc, EXPLAIN_ANALYZE, &ex[0], &msg, opts->cancel);
	if (!json) {
		vlog(opts, SCRY_LOG_WARNING, "EXPLAIN on the candidate failed: %s", msg ? msg : "");
		goto done;
	}
	scry__vkeep_plan(store, opts, v->candidate_run, pv->fingerprint, ex[0].id, json);
	if (scry__plan_parse(json, &pi))
		goto done;
	have_plan = true;
	scry_buf b = SCRY_BUF_INIT;
	scry__plan_text(&b, &pi);
	pv->candidate_plan = scry__vdup_buf(&b);
	/* One index per relation that a Seq Scan filters: its filter's columns, composite when several. */
	for (size_t i = 0; i < pi.n; i++) {
		const jval *o = pi.nodes[i].o;
		const char *type = scry__jstr(o, "Node Type"), *rel = scry__jstr(o, "Relation Name"), *filter = scry__jstr(o, "Filter");
		if (!type || strcmp(type, "Seq Scan") || !rel || !filter)
			continue;
		scry_buf cols = SCRY_BUF_INIT;
		if (filter_columns(cc, scry__jstr(o, "Schema"), rel, filter, &cols, 3) > 0) {
			const char *schema = scry__jstr(o, "Schema");
			scry__buf_puts(&ddl, ddl.size ? "; CREATE INDEX ON " : "CREATE INDEX ON ");
			if (schema) {
				quote_ident(cc, &ddl, schema);
				scry__buf_puts(&ddl, ".");
			}
			quote_ident(cc, &ddl, rel);
			scry__buf_printf(&ddl, " (%s)", cols.ptr);
		}
		scry_buf_dispose(&cols);
	}
	if (scry__buf_failed(&ddl))
		goto done;
	if (!ddl.size) {
		scry__free((char *)pv->note);
		pv->note = scry__vdup_printf("fails on baseline (SQLSTATE %s); on candidate its plan has no filtered sequential "
		                      "scan, so it is at its best",
		                      pv->baseline_sqlstate ? pv->baseline_sqlstate : "?");
		goto done;
	}
	t = scry__calloc(2 * n * BEST_ROUNDS, sizeof *t);
	if (!t || !scry__vexec_ok(cc, "BEGIN") || !scry__vexec_ok(cc, "SET LOCAL statement_timeout = '60s'"))
		goto fail;
	int k1 = time_execs(cc, ex, n, BEST_ROUNDS, t, opts->cancel);
	double work_without = work_in_txn(cc, &ex[0], opts->cancel);
	if (scry__verdict_cancelled(opts))
		goto fail;
	PGresult *cr = k1 > 0 ? scry__pg_exec_cancelable(cc, ddl.ptr, NULL, opts->cancel) : NULL;
	bool created = PQresultStatus(cr) == PGRES_COMMAND_OK || PQresultStatus(cr) == PGRES_TUPLES_OK;
	PQclear(cr);
	if (scry__verdict_cancelled(opts))
		goto fail;
	if (!created) {
		char m[1024];
		scry__pg_result_message(NULL, cc, m, sizeof m);
		vlog(opts, SCRY_LOG_WARNING, "could not create %s: %s", ddl.ptr, m);
		goto fail;
	}
	int k2 = time_execs(cc, ex, n, BEST_ROUNDS, t + k1, opts->cancel);
	double work_with = work_in_txn(cc, &ex[0], opts->cancel);
	scry__vexec_ok(cc, "ROLLBACK");
	if (k2 != k1)
		goto done;
	judge_best(pv, t, k1, ddl.ptr, work_without, work_with, opts);
	goto done;
fail:
	scry__vexec_ok(cc, "ROLLBACK");
done:
	if (have_plan)
		scry__plan_free(&pi);
	scry__free(t);
	scry__free(json);
	scry__free(msg);
	scry_buf_dispose(&ddl);
	for (size_t i = 0; i < n; i++)
		scry__vexec_free(&ex[i]);
	scry__free(ex);
}

PGconn *scry__verdict_connect(const scry_verdict *v, const char *conninfo, const char *side)
{
	return conninfo ? scry__vconnect_side(conninfo, &v->opts, side) : NULL;
}

void scry__verdict_probe(scry_verdict *v, scry_store *store, PGconn *ca, PGconn *cc)
{
	for (size_t i = 0; i < v->n && cc; i++) {
		if (scry__verdict_cancelled(&v->opts))
			return;
		scry_pattern_verdict *pv = &v->items[i];
		if (pv->cls == SCRY_CLASS_REGRESSED && ca && !pv->plan_change)
			root_cause(v, store, pv, ca, cc);
		else if (pv->cls == SCRY_CLASS_NEW_ERROR)
			error_message(v, store, pv, cc);
		else if (pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE)
			best_index(v, store, pv, cc);
	}
}
