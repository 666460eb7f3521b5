/*
 * lib/verdict_probe.c - what the verdict asks the live clones: with
 * connections to both sides, regressed patterns get EXPLAIN (ANALYZE,
 * BUFFERS, FORMAT JSON) with a real captured parameter set, new errors get
 * their message, and patterns that only work on the candidate are measured
 * against the indexes their plan lacks. Everything runs inside
 * BEGIN ... ROLLBACK.
 */
#include "verdict_internal.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define BEST_EVENTS 20        /* executions measured per side for a best-index check */
#define BEST_ROUNDS 2
#define WORK_FLOOR_BLOCKS 32 /* 256 kB more read per execution: below it, work growth is not a regression */
#define EXPLAIN_ANALYZE "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
#define EXPLAIN_WORK "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " /* counts, no clock reads */

/* ------------------------------------------------------------------ */
/* Plans, error messages and best indexes (need connections)           */
/* ------------------------------------------------------------------ */

typedef struct stored_exec {
	int64_t id;
	char *query;
	int nparams;
	Oid *types;
	char **values;
	int *lengths, *formats;
} stored_exec;

static void exec_free(stored_exec *e)
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
static int load_execs(scry_store *store, uint64_t fp, size_t max, stored_exec **out, size_t *n, scry_error *err)
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
			exec_free(&v[i]);
		scry__free(v);
		*n = 0;
		return rc == SCRY_ENOMEM ? scry__fail(err, rc, "out of memory") : rc;
	}
	*out = v;
	return 0;
}

/* Runs `prefix` + the execution's text with its parameters. */
static PGresult *run_exec(PGconn *conn, const char *prefix, const stored_exec *e)
{
	scry_buf sql = SCRY_BUF_INIT;
	scry__buf_puts(&sql, prefix);
	scry__buf_puts(&sql, e->query);
	if (scry__buf_failed(&sql)) { /* never run a truncated statement */
		scry_buf_dispose(&sql);
		return NULL;
	}
	PGresult *r = PQexecParams(conn, sql.ptr, e->nparams, e->types, (const char *const *)e->values, e->lengths,
	                           e->formats, 0);
	scry_buf_dispose(&sql);
	return r;
}

/* Stores a plan; a store failure is logged, not dropped (the verdict stands without it). */
static void keep_plan(scry_store *store, const scry_verdict_options *opts, int64_t run, uint64_t fp, int64_t event,
                      const char *json)
{
	scry_error e = SCRY_ERROR_INIT;
	if (scry_store_plan_put(store, run, fp, event, json, &e))
		vlog(opts, SCRY_LOG_WARNING, "cannot store the plan of pattern %016llx: %s", (unsigned long long)fp,
		     e.message);
}

static bool exec_ok(PGconn *conn, const char *sql)
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

static PGconn *connect_side(const char *conninfo, const scry_verdict_options *opts, const char *side)
{
	PGconn *c = PQconnectdb(conninfo);
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
 * A regression by client latency alone - same plan, same work - must show
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
	if (pv->cls != SCRY_CLASS_REGRESSED || pv->tail_regressed || pv->plan_changed || samples < 2 ||
	    !(pv->server_ratio > 0) ||
	    (pv->baseline_work > 0 && pv->candidate_work / pv->baseline_work >= opts->threshold))
		return;
	/* Confirmed: the server's time grew too, and explains at least half of the client's growth. */
	if (pv->server_ratio >= confirm && server_delta >= 0.5 * client_delta)
		return;
	pv->cls = SCRY_CLASS_UNCHANGED;
	pv->flagged = 0;
	scry__free((char *)pv->note);
	pv->note = scry__vdup_printf("not confirmed: client latency %.2fx (p50 +%.3f ms), but the same plan and work took "
	                             "%.2fx the server time (%.3f -> %.3f ms, EXPLAIN ANALYZE of %zu sampled executions "
	                             "per side); a loaded machine delaying one side's backend, not the migration",
	                             pv->ratio, client_delta, pv->server_ratio, server_a_ms, server_c_ms, samples);
}

/*
 * EXPLAIN (`prefix`) of one execution inside BEGIN ... ROLLBACK. Returns the JSON (caller frees) or NULL, with the
 * server's message in *msg (caller frees) when it failed.
 */
static char *explain(PGconn *conn, const char *prefix, const stored_exec *e, char **msg)
{
	*msg = NULL;
	if (!exec_ok(conn, "BEGIN") || !exec_ok(conn, "SET LOCAL statement_timeout = '60s'")) {
		char m[1024];
		scry__pg_result_message(NULL, conn, m, sizeof m);
		*msg = scry__strdup(m);
		exec_ok(conn, "ROLLBACK");
		return NULL;
	}
	PGresult *r = run_exec(conn, prefix, e);
	char *json = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
		json = scry__strdup(PQgetvalue(r, 0, 0));
	} else {
		char m[1024];
		scry__pg_result_message(r, conn, m, sizeof m);
		*msg = scry__strdup(m);
	}
	PQclear(r);
	exec_ok(conn, "ROLLBACK");
	return json;
}

static void set_plan(scry_pattern_verdict *pv, const char *json_a, const char *json_c)
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
	if (load_execs(store, pv->fingerprint, 1, &ex, &n, &e) || n == 0) {
		vlog(&v->opts, SCRY_LOG_WARNING, "no captured execution to explain: %s", e.message);
		return;
	}
	char *ma = NULL, *mc = NULL;
	char *ja = explain(ca, EXPLAIN_ANALYZE, &ex[0], &ma);
	char *jc = explain(cc, EXPLAIN_ANALYZE, &ex[0], &mc);
	if (ja)
		keep_plan(store, &v->opts, v->baseline_run, pv->fingerprint, ex[0].id, ja);
	if (jc)
		keep_plan(store, &v->opts, v->candidate_run, pv->fingerprint, ex[0].id, jc);
	if (!ja || !jc)
		vlog(&v->opts, SCRY_LOG_WARNING, "EXPLAIN failed: %s", ma ? ma : mc ? mc : "");
	set_plan(pv, ja, jc);
	scry__free(ja);
	scry__free(jc);
	scry__free(ma);
	scry__free(mc);
	exec_free(&ex[0]);
	scry__free(ex);
}

/* The candidate's message for a new error, from one failing execution. */
static void error_message(scry_store *store, scry_pattern_verdict *pv, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	if (load_execs(store, pv->fingerprint, 50, &ex, &n, NULL))
		return;
	for (size_t i = 0; i < n && !pv->candidate_error; i++) {
		char *msg = NULL;
		if (!exec_ok(cc, "BEGIN")) {
			exec_ok(cc, "ROLLBACK");
			break;
		}
		PGresult *r = run_exec(cc, "", &ex[i]);
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
			char m[1024];
			scry__pg_result_message(r, cc, m, sizeof m);
			msg = scry__strdup(m);
		}
		PQclear(r);
		exec_ok(cc, "ROLLBACK");
		pv->candidate_error = msg;
	}
	for (size_t i = 0; i < n; i++)
		exec_free(&ex[i]);
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

/* Times each execution `rounds` times inside savepoints; latencies in ms appended to out. */
static int time_execs(PGconn *conn, const stored_exec *ex, size_t n, int rounds, double *out)
{
	int k = 0;
	for (int r = 0; r < rounds; r++)
		for (size_t i = 0; i < n; i++) {
			if (!exec_ok(conn, "SAVEPOINT scry_best"))
				return -1;
			int64_t t0 = scry__monotonic_us();
			PGresult *res = run_exec(conn, "", &ex[i]);
			int64_t t1 = scry__monotonic_us();
			ExecStatusType st = PQresultStatus(res);
			PQclear(res);
			if (!exec_ok(conn, "ROLLBACK TO SAVEPOINT scry_best"))
				return -1;
			out[k++] = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ? (double)(t1 - t0) / 1000.0 : NAN;
		}
	return k;
}

/* Blocks an EXPLAIN (ANALYZE, BUFFERS) plan touched: shared hit + read and temp read + written, all nodes' top. */
static double plan_work(const plan_info *pi)
{
	const jval *t = pi->top;
	return scry__jnum(t, "Shared Hit Blocks") + scry__jnum(t, "Shared Read Blocks") +
	       scry__jnum(t, "Temp Read Blocks") + scry__jnum(t, "Temp Written Blocks");
}

/* Blocks of one execution, EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) inside the open transaction; -1 if it failed. */
static double work_in_txn(PGconn *conn, const stored_exec *e)
{
	if (!exec_ok(conn, "SAVEPOINT scry_work"))
		return -1;
	PGresult *r = run_exec(conn, EXPLAIN_WORK, e);
	double w = -1;
	plan_info pi;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !scry__plan_parse(PQgetvalue(r, 0, 0), &pi)) {
		w = plan_work(&pi);
		scry__plan_free(&pi);
	}
	PQclear(r);
	if (!exec_ok(conn, "ROLLBACK TO SAVEPOINT scry_work"))
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
	if (load_execs(store, pv->fingerprint, BEST_EVENTS, &ex, &n, NULL) || n == 0)
		goto done;
	json = explain(cc, EXPLAIN_ANALYZE, &ex[0], &msg);
	if (!json) {
		vlog(opts, SCRY_LOG_WARNING, "EXPLAIN on the candidate failed: %s", msg ? msg : "");
		goto done;
	}
	keep_plan(store, opts, v->candidate_run, pv->fingerprint, ex[0].id, json);
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
	if (!t || !exec_ok(cc, "BEGIN") || !exec_ok(cc, "SET LOCAL statement_timeout = '60s'"))
		goto fail;
	int k1 = time_execs(cc, ex, n, BEST_ROUNDS, t);
	double work_without = work_in_txn(cc, &ex[0]);
	bool created = k1 > 0 && exec_ok(cc, ddl.ptr);
	if (!created) {
		char m[1024];
		scry__pg_result_message(NULL, cc, m, sizeof m);
		vlog(opts, SCRY_LOG_WARNING, "could not create %s: %s", ddl.ptr, m);
		goto fail;
	}
	int k2 = time_execs(cc, ex, n, BEST_ROUNDS, t + k1);
	double work_with = work_in_txn(cc, &ex[0]);
	exec_ok(cc, "ROLLBACK");
	if (k2 != k1)
		goto done;
	judge_best(pv, t, k1, ddl.ptr, work_without, work_with, opts);
	goto done;
fail:
	exec_ok(cc, "ROLLBACK");
done:
	if (have_plan)
		scry__plan_free(&pi);
	scry__free(t);
	scry__free(json);
	scry__free(msg);
	scry_buf_dispose(&ddl);
	for (size_t i = 0; i < n; i++)
		exec_free(&ex[i]);
	scry__free(ex);
}

PGconn *scry__verdict_connect(const scry_verdict *v, const char *conninfo, const char *side)
{
	return conninfo ? connect_side(conninfo, &v->opts, side) : NULL;
}

void scry__verdict_probe(scry_verdict *v, scry_store *store, PGconn *ca, PGconn *cc)
{
	for (size_t i = 0; i < v->n && cc; i++) {
		if (v->opts.cancel && *v->opts.cancel)
			return;
		scry_pattern_verdict *pv = &v->items[i];
		if (pv->cls == SCRY_CLASS_REGRESSED && ca && !pv->plan_change)
			root_cause(v, store, pv, ca, cc);
		else if (pv->cls == SCRY_CLASS_NEW_ERROR)
			error_message(store, pv, cc);
		else if (pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE)
			best_index(v, store, pv, cc);
	}
}

/* ------------------------------------------------------------------ */
/* Repeating a pattern's captured executions until it has enough pairs */
/* ------------------------------------------------------------------ */

/* Statements a pattern can be repeated as: one query or DML statement, no transaction control. */
static bool repeatable(const char *normalized)
{
	static const char *const kw[] = { "select", "with", "insert", "update", "delete", "values", "table" };
	while (*normalized == ' ' || *normalized == '\n' || *normalized == '\t' || *normalized == '(')
		normalized++;
	for (size_t i = 0; i < sizeof kw / sizeof *kw; i++) {
		size_t n = strlen(kw[i]);
		if (!strncasecmp(normalized, kw[i], n) && !isalnum((unsigned char)normalized[n]) && normalized[n] != '_')
			return true;
	}
	return false;
}

/* One execution in BEGIN ... ROLLBACK, timed; fills the sample. false when the connection failed. */
static bool timed_once(PGconn *conn, const stored_exec *e, scry_sample *s)
{
	if (!exec_ok(conn, "BEGIN") || !exec_ok(conn, "SET LOCAL statement_timeout = '60s'")) {
		exec_ok(conn, "ROLLBACK");
		return false;
	}
	int64_t t0 = scry__monotonic_us();
	PGresult *r = run_exec(conn, "", e);
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
	exec_ok(conn, "ROLLBACK");
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
	if (load_execs(store, pat->fingerprint, want, &ex, &n, NULL) || n == 0)
		return 1;
	size_t max_iter = want + want / 2, pairs = 0, k = 0;
	scry_sample *sb = scry__calloc(max_iter, sizeof *sb), *sc = scry__calloc(max_iter, sizeof *sc);
	obs *o = scry__calloc(max_iter, sizeof *o);
	int rc = 0;
	if (!sb || !sc || !o)
		rc = SCRY_ENOMEM;
	for (size_t i = 0; !rc && i < max_iter && pairs < want; i++) {
		if (v->opts.cancel && *v->opts.cancel)
			break;
		const stored_exec *e = &ex[i % n];
		scry_sample *b = &sb[k], *c = &sc[k];
		b->event_id = c->event_id = e->id;
		b->round = c->round = round0 + (int32_t)i;
		bool ok = (i & 1) ? timed_once(cc, e, c) && timed_once(ca, e, b) : timed_once(ca, e, b) && timed_once(cc, e, c);
		if (!ok)
			break;
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
		exec_free(&ex[i]);
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
		pv->baseline_work = plan_work(&a);
		pv->candidate_work = plan_work(&c);
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
	if (!repeatable(pv->normalized) || load_execs(store, pv->fingerprint, WORK_EXECS, &ex, &n, NULL) || n == 0)
		return;
	double wa[WORK_EXECS], wc[WORK_EXECS], sa[WORK_EXECS], sc[WORK_EXECS];
	size_t k = 0;
	char *first_a = NULL, *first_c = NULL;
	bool changed = false;
	for (size_t i = 0; i < n; i++) {
		char *ma, *mc, *ja, *jc;
		if (i & 1) {
			jc = explain(cc, EXPLAIN_WORK, &ex[i], &mc);
			ja = explain(ca, EXPLAIN_WORK, &ex[i], &ma);
		} else {
			ja = explain(ca, EXPLAIN_WORK, &ex[i], &ma);
			jc = explain(cc, EXPLAIN_WORK, &ex[i], &mc);
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
				keep_plan(store, &v->opts, v->baseline_run, pv->fingerprint, ex[i].id, ja);
				keep_plan(store, &v->opts, v->candidate_run, pv->fingerprint, ex[i].id, jc);
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
			set_plan(pv, first_a, first_c);
	}
	scry__free(first_a);
	scry__free(first_c);
	for (size_t i = 0; i < n; i++)
		exec_free(&ex[i]);
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
	PGconn *conn = connect_side(conninfo, &lo, "replay target");
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
		if (load_execs(store, list[i].fp, 1, &ex, &ne, NULL) || ne == 0)
			continue;
		char *msg = NULL, *json = NULL;
		if (list[i].analyze) {
			json = explain(conn, EXPLAIN_WORK, &ex[0], &msg);
		} else {
			PGresult *r = run_exec(conn, "EXPLAIN (FORMAT JSON) ", &ex[0]);
			if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
				json = scry__strdup(PQgetvalue(r, 0, 0));
			PQclear(r);
		}
		if (json && scry_store_plan_put(store, run_id, list[i].fp, ex[0].id, json, NULL) == 0)
			stored++;
		scry__free(json);
		scry__free(msg);
		exec_free(&ex[0]);
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
				set_plan(pv, ja.ptr, jc.ptr);
		}
		scry_buf_dispose(&ja);
		scry_buf_dispose(&jc);
	}
}
