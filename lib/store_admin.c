/*
 * lib/store_admin.c - store housekeeping: listing, deleting and pruning
 * replay runs, and compacting the captured workload to a representative
 * sample per pattern, so that a store used in CI for months stays small.
 * Part of the store module (include/scry/store.h, docs/store.md).
 */
#include "store_internal.h"

#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Runs                                                                */
/* ------------------------------------------------------------------ */

struct scry_run_iter {
	scry__cursor c;
	scry_run_info r;
};

int scry_store_runs(scry_store *s, scry_run_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_runs: arguments are required");
	int rc;
	*out = scry__cursor_open(s,
	                         "SELECT r.id, r.label, r.target, r.started_us, r.ended_us, r.executions, r.errors,"
	                         " (SELECT count(*) FROM samples x WHERE x.run = r.id) FROM runs r ORDER BY r.id",
	                         sizeof **out, &rc, err, "listing runs");
	return rc;
}

int scry_run_iter_next(scry_run_iter *it, const scry_run_info **run, scry_error *err)
{
	int r = scry__cursor_row((scry__cursor *)it, run, err, "scry_run_iter_next", "listing runs");
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->c.q;
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
	if (it)
		scry__cursor_free(&it->c);
}

/*
 * Deletes in one transaction: `setup` (BEGIN IMMEDIATE and an empty temp
 * table of ids), `fill` (the ids, ?1 = a), `apply` (the deletes; *changes,
 * when not NULL, gets the rows its last statement changed), then `finish`
 * (drops the table and commits). Undone on failure.
 */
static int delete_listed(scry_store *s, const char *setup, const char *fill, int64_t a, const char *apply,
                         const char *finish, int64_t *changes, scry_error *err, const char *what)
{
	int rc = scry__store_exec(s, setup, err, what);
	if (rc)
		return rc;
	rc = scry__store_run(s, fill, SCRY__VALUES(SCRY__INT(a)), err, what);
	if (!rc)
		rc = scry__store_exec(s, apply, err, what);
	if (!rc && changes)
		*changes = sqlite3_changes64(scry__store_sqlite(s));
	if (!rc)
		rc = scry__store_exec(s, finish, err, what);
	if (rc)
		scry__store_cleanup(s, "ROLLBACK");
	return rc;
}

/* Deletes the runs that `fill_sql` lists (?1 = a), with their samples and plans, in one transaction. */
static int delete_runs(scry_store *s, const char *fill_sql, int64_t a, int64_t *deleted, scry_error *err)
{
	return delete_listed(s,
		"BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS doomed(id INTEGER PRIMARY KEY); DELETE FROM temp.doomed",
		fill_sql, a,
		"DELETE FROM samples WHERE run IN (SELECT id FROM temp.doomed);"
		"DELETE FROM plans WHERE run IN (SELECT id FROM temp.doomed);"
		"DELETE FROM runs WHERE id IN (SELECT id FROM temp.doomed);",
		"DROP TABLE temp.doomed; COMMIT", deleted, err, "deleting runs");
}

int scry_store_run_delete(scry_store *s, int64_t run_id, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_delete: a store is required");
	int64_t n = 0;
	int rc = delete_runs(s, "INSERT INTO temp.doomed SELECT id FROM runs WHERE id = ?", run_id, &n, err);
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
	return delete_runs(s,
		"INSERT INTO temp.doomed SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY label ORDER BY id DESC)"
		" AS k FROM runs) WHERE k > ?", keep, deleted, err);
}

/* ------------------------------------------------------------------ */
/* Compaction                                                          */
/* ------------------------------------------------------------------ */

/* A count for scry_compact_result: -1 when it cannot be read (the compaction itself is judged apart). */
static int64_t count_or_unknown(scry_store *s, const char *sql)
{
	int64_t v;
	return scry__store_int(s, sql, &v, NULL, "") ? -1 : v;
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
	res.events_before = count_or_unknown(s, "SELECT count(*) FROM events");
	res.bytes_before = count_or_unknown(s, size_sql);
	/*
	 * Per pattern, n events in capture order fall into `keep` windows
	 * (window = rn * keep / n); the first event of each window stays.
	 */
	int rc = delete_listed(s,
		"BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS doomed_events(id INTEGER PRIMARY KEY);"
		"DELETE FROM temp.doomed_events",
		"INSERT INTO temp.doomed_events SELECT id FROM ("
		" SELECT e.id, row_number() OVER w - 1 AS rn, count(*) OVER (PARTITION BY st.pattern) AS n"
		" FROM events e JOIN statements st ON st.id = e.statement"
		" WINDOW w AS (PARTITION BY st.pattern ORDER BY e.id))"
		" WHERE n > ?1 AND rn > 0 AND (rn * ?1) / n = ((rn - 1) * ?1) / n", keep,
		"DELETE FROM samples WHERE event IN (SELECT id FROM temp.doomed_events);"
		"DELETE FROM event_errors WHERE event IN (SELECT id FROM temp.doomed_events);"
		"DELETE FROM events WHERE id IN (SELECT id FROM temp.doomed_events);",
		"DROP TABLE temp.doomed_events; COMMIT", NULL, err, "compacting the store");
	if (rc)
		return rc;
	char meta[160];
	snprintf(meta, sizeof meta, "INSERT OR REPLACE INTO scry_meta(key, value) VALUES ('compacted_keep_per_pattern', '%d')",
	         keep);
	if ((rc = scry__store_exec(s, meta, err, "compacting the store")) ||
	    (rc = scry__store_exec(s, "VACUUM", err, "vacuuming the store after compaction")))
		return rc;
	res.events_after = count_or_unknown(s, "SELECT count(*) FROM events");
	res.bytes_after = count_or_unknown(s, size_sql);
	if (out)
		scry__out_put(&scry__abi_compact_result, out, &res);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Fixed queries for the replay's sampler and streaming loader         */
/* ------------------------------------------------------------------ */

struct scry__rows {
	scry__cursor c;
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
	int rc;
	*out = scry__cursor_open(s, row_sql[query], sizeof **out, &rc, err, "reading the workload");
	return rc;
}

int scry__rows_next(scry__rows *r, scry_error *err) { return scry__cursor_next(&r->c, err, "reading the workload"); }

int64_t scry__rows_int(scry__rows *r, int col) { return sqlite3_column_int64(r->c.q, col); }

bool scry__rows_null(scry__rows *r, int col) { return sqlite3_column_type(r->c.q, col) == SQLITE_NULL; }

const void *scry__rows_blob(scry__rows *r, int col, size_t *n)
{
	const void *p = sqlite3_column_blob(r->c.q, col);
	*n = (size_t)sqlite3_column_bytes(r->c.q, col);
	return p;
}

void scry__rows_free(scry__rows *r)
{
	if (r)
		scry__cursor_free(&r->c);
}
