/*
 * lib/store_admin.c - store housekeeping: listing, deleting and pruning
 * replay runs, and compacting the captured workload to a representative
 * sample per pattern, so that a store used in CI for months stays small.
 * Part of the store module (include/scry/store.h, docs/store.md).
 */
#include "store_internal.h"

#include <stdio.h>

static int admin_exec(scry_store *s, const char *sql, scry_error *err, const char *what)
{
	if (sqlite3_exec(scry__store_sqlite(s), sql, NULL, NULL, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, what);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Runs                                                                */
/* ------------------------------------------------------------------ */

struct scry_run_iter {
	scry_store *store;
	sqlite3_stmt *q;
	scry_run_info r;
};

int scry_store_runs(scry_store *s, scry_run_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_runs: arguments are required");
	*out = NULL;
	scry_run_iter *it = scry__calloc(1, sizeof *it);
	if (!it)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	it->store = s;
	if (sqlite3_prepare_v2(scry__store_sqlite(s),
	                       "SELECT r.id, r.label, r.target, r.started_us, r.ended_us, r.executions, r.errors,"
	                       " (SELECT count(*) FROM samples x WHERE x.run = r.id) FROM runs r ORDER BY r.id",
	                       -1, &it->q, NULL) != SQLITE_OK) {
		int rc = scry__store_fail(s, err, "listing runs");
		scry_run_iter_free(it);
		return rc;
	}
	*out = it;
	return 0;
}

int scry_run_iter_next(scry_run_iter *it, const scry_run_info **run, scry_error *err)
{
	if (!it || !run)
		return scry__fail(err, SCRY_EINVAL, "scry_run_iter_next: arguments are required");
	int r = sqlite3_step(it->q);
	if (r == SQLITE_DONE)
		return 0;
	if (r != SQLITE_ROW)
		return scry__store_fail(it->store, err, "listing runs");
	sqlite3_stmt *q = it->q;
	scry_run_info *x = &it->r;
	x->id = sqlite3_column_int64(q, 0);
	x->label = (const char *)sqlite3_column_text(q, 1);
	x->target = (const char *)sqlite3_column_text(q, 2);
	x->started_us = sqlite3_column_int64(q, 3);
	x->ended_us = sqlite3_column_int64(q, 4);
	x->executions = sqlite3_column_int64(q, 5);
	x->errors = sqlite3_column_int64(q, 6);
	x->samples = sqlite3_column_int64(q, 7);
	*run = x;
	return 1;
}

void scry_run_iter_free(scry_run_iter *it)
{
	if (!it)
		return;
	sqlite3_finalize(it->q);
	scry__free(it);
}

/* Deletes the runs listed in temp table doomed(id), with their samples and plans, in one transaction. */
static int delete_doomed(scry_store *s, int64_t *deleted, scry_error *err)
{
	sqlite3 *db = scry__store_sqlite(s);
	int rc = admin_exec(s,
		"DELETE FROM samples WHERE run IN (SELECT id FROM temp.doomed);"
		"DELETE FROM plans WHERE run IN (SELECT id FROM temp.doomed);"
		"DELETE FROM runs WHERE id IN (SELECT id FROM temp.doomed);",
		err, "deleting runs");
	if (!rc && deleted)
		*deleted = sqlite3_changes64(db);
	return rc;
}

static int with_doomed(scry_store *s, const char *fill_sql, int64_t a, int64_t *deleted, scry_error *err)
{
	sqlite3 *db = scry__store_sqlite(s);
	int rc = admin_exec(s, "BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS doomed(id INTEGER PRIMARY KEY);"
	                       "DELETE FROM temp.doomed", err, "deleting runs");
	if (rc)
		return rc;
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(db, fill_sql, -1, &q, NULL) != SQLITE_OK) {
		rc = scry__store_fail(s, err, "deleting runs");
	} else {
		sqlite3_bind_int64(q, 1, a);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = scry__store_fail(s, err, "deleting runs");
		sqlite3_finalize(q);
	}
	if (!rc)
		rc = delete_doomed(s, deleted, err);
	if (!rc)
		rc = admin_exec(s, "DROP TABLE temp.doomed; COMMIT", err, "deleting runs");
	if (rc)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int scry_store_run_delete(scry_store *s, int64_t run_id, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_delete: a store is required");
	int64_t n = 0;
	int rc = with_doomed(s, "INSERT INTO temp.doomed SELECT id FROM runs WHERE id = ?", run_id, &n, err);
	if (!rc && n == 0)
		rc = scry__fail(err, SCRY_ENOTFOUND, "there is no run %lld in the store (scry runs list shows them)",
		                (long long)run_id);
	return rc;
}

int scry_store_runs_prune(scry_store *s, int keep, int64_t *deleted, scry_error *err)
{
	if (deleted)
		*deleted = 0;
	if (!s || keep < 0)
		return scry__fail(err, SCRY_EINVAL, "scry_store_runs_prune: a store and keep >= 0 are required");
	return with_doomed(s,
		"INSERT INTO temp.doomed SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY label ORDER BY id DESC)"
		" AS k FROM runs) WHERE k > ?", keep, deleted, err);
}

/* ------------------------------------------------------------------ */
/* Compaction                                                          */
/* ------------------------------------------------------------------ */

static int64_t single_int(scry_store *s, const char *sql)
{
	sqlite3_stmt *q;
	int64_t v = -1;
	if (sqlite3_prepare_v2(scry__store_sqlite(s), sql, -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	return v;
}

int scry_store_compact(scry_store *s, int keep, scry_compact_result *out, scry_error *err)
{
	if (!s || keep < 1)
		return scry__fail(err, SCRY_EINVAL, "scry_store_compact: a store and keep_per_pattern >= 1 are required");
	if (out) {
		int rc = scry__out_check(err, &scry__abi_compact_result, out);
		if (rc)
			return rc;
	}
	scry_compact_result res = SCRY_COMPACT_RESULT_INIT;
	static const char size_sql[] = "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size";
	res.events_before = single_int(s, "SELECT count(*) FROM events");
	res.bytes_before = single_int(s, size_sql);
	sqlite3 *db = scry__store_sqlite(s);
	int rc = admin_exec(s, "BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS doomed_events(id INTEGER PRIMARY KEY);"
	                       "DELETE FROM temp.doomed_events", err, "compacting the store");
	if (rc)
		return rc;
	/*
	 * Per pattern, n events in capture order fall into `keep` windows
	 * (window = rn * keep / n); the first event of each window stays.
	 */
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(db,
	        "INSERT INTO temp.doomed_events SELECT id FROM ("
	        " SELECT e.id, row_number() OVER w - 1 AS rn, count(*) OVER (PARTITION BY st.pattern) AS n"
	        " FROM events e JOIN statements st ON st.id = e.statement"
	        " WINDOW w AS (PARTITION BY st.pattern ORDER BY e.id))"
	        " WHERE n > ?1 AND rn > 0 AND (rn * ?1) / n = ((rn - 1) * ?1) / n",
	        -1, &q, NULL) != SQLITE_OK) {
		rc = scry__store_fail(s, err, "compacting the store");
	} else {
		sqlite3_bind_int64(q, 1, keep);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = scry__store_fail(s, err, "compacting the store");
		sqlite3_finalize(q);
	}
	if (!rc)
		rc = admin_exec(s,
			"DELETE FROM samples WHERE event IN (SELECT id FROM temp.doomed_events);"
			"DELETE FROM event_errors WHERE event IN (SELECT id FROM temp.doomed_events);"
			"DELETE FROM events WHERE id IN (SELECT id FROM temp.doomed_events);"
			"DROP TABLE temp.doomed_events; COMMIT",
			err, "compacting the store");
	if (rc) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	char meta[160];
	snprintf(meta, sizeof meta, "INSERT OR REPLACE INTO scry_meta(key, value) VALUES ('compacted_keep_per_pattern', '%d')",
	         keep);
	if ((rc = admin_exec(s, meta, err, "compacting the store")) ||
	    (rc = admin_exec(s, "VACUUM", err, "vacuuming the store after compaction")))
		return rc;
	res.events_after = single_int(s, "SELECT count(*) FROM events");
	res.bytes_after = single_int(s, size_sql);
	if (out)
		scry__out_put(&scry__abi_compact_result, out, &res);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Fixed queries for the replay's sampler and streaming loader         */
/* ------------------------------------------------------------------ */

struct scry__rows {
	scry_store *store;
	sqlite3_stmt *q;
};

static const char *const row_sql[] = {
	[SCRY__Q_PATTERNS] = "SELECT id, fingerprint, count, total_us, timed FROM patterns",
	[SCRY__Q_STATEMENTS] = "SELECT id, pattern, substr(template, 1, 200) FROM statements ORDER BY id DESC",
	[SCRY__Q_EVENT_STATEMENT] = "SELECT statement FROM events",
	[SCRY__Q_EVENT_KEYS] = "SELECT id, session, statement, literals, params FROM events ORDER BY id",
	[SCRY__Q_EVENT_SPANS] = "SELECT e.session, e.id, s.started_us + e.offset_us, p.fingerprint FROM events e"
	                        " JOIN sessions s ON s.id = e.session JOIN statements st ON st.id = e.statement"
	                        " JOIN patterns p ON p.id = st.pattern ORDER BY e.id",
	[SCRY__Q_COMPACTED] = "SELECT 1 FROM scry_meta WHERE key = 'compacted_keep_per_pattern'",
};

int scry__store_rows(scry_store *s, int query, scry__rows **out, scry_error *err)
{
	*out = NULL;
	if (query < 0 || query > SCRY__Q_COMPACTED)
		return scry__fail(err, SCRY_EINVAL, "unknown store query %d", query);
	scry__rows *r = scry__calloc(1, sizeof *r);
	if (!r)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	r->store = s;
	if (sqlite3_prepare_v2(scry__store_sqlite(s), row_sql[query], -1, &r->q, NULL) != SQLITE_OK) {
		int rc = scry__store_fail(s, err, "reading the workload");
		scry__rows_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int scry__rows_next(scry__rows *r, scry_error *err)
{
	int rc = sqlite3_step(r->q);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : scry__store_fail(r->store, err, "reading the workload");
}

int64_t scry__rows_int(scry__rows *r, int col) { return sqlite3_column_int64(r->q, col); }

bool scry__rows_null(scry__rows *r, int col) { return sqlite3_column_type(r->q, col) == SQLITE_NULL; }

const void *scry__rows_blob(scry__rows *r, int col, size_t *n)
{
	const void *p = sqlite3_column_blob(r->q, col);
	*n = (size_t)sqlite3_column_bytes(r->q, col);
	return p;
}

void scry__rows_free(scry__rows *r)
{
	if (!r)
		return;
	sqlite3_finalize(r->q);
	scry__free(r);
}
