/*
 * lib/store_runs.c - what the replay writes into the store and the verdict
 * reads back: runs, their latency samples and the plans captured per
 * pattern (docs/store.md). Listing, deleting and pruning runs is
 * lib/store_admin.c.
 */
#include "internal.h"
#include "store_internal.h"

#include <sqlite3.h>
#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Runs                                                                */
/* ------------------------------------------------------------------ */

int scry_store_run_begin(scry_store *s, const char *label, const char *target, const char *options_json,
                         int64_t *run_id, scry_error *err)
{
	if (!s || !label || !*label || !run_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_begin: a label is required");
	int rc = scry__store_run(s, "INSERT INTO runs(label, target, options, started_us) VALUES (?,?,?,?)",
	                         SCRY__VALUES(SCRY__TEXT(label), SCRY__TEXT(target), SCRY__TEXT(options_json),
	                                      SCRY__INT(scry__now_us())),
	                         err, "starting a run");
	if (!rc)
		*run_id = sqlite3_last_insert_rowid(s->db);
	return rc;
}

int scry_store_run_end(scry_store *s, int64_t run_id, const scry_run_summary *sum, scry_error *err)
{
	if (!s || !sum)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_end: arguments are required");
	scry_run_summary scopy;
	int rc = scry__opts_copy(err, &scry__abi_run_summary, &scopy, sum);
	if (rc)
		return rc;
	sum = &scopy;
	rc = scry__store_run(s,
	                     "UPDATE runs SET ended_us = ?, executions = ?, errors = ?, timeouts = ?, reconnects = ?,"
	                     " per_second = ?, summary = ? WHERE id = ?",
	                     SCRY__VALUES(SCRY__INT(scry__now_us()), SCRY__INT(sum->executions), SCRY__INT(sum->errors),
	                                  SCRY__INT(sum->timeouts), SCRY__INT(sum->reconnects), SCRY__REAL(sum->per_second),
	                                  SCRY__TEXT(sum->summary_json), SCRY__INT(run_id)),
	                     err, "ending a run");
	if (!rc && sqlite3_changes(s->db) == 0)
		rc = scry__fail(err, SCRY_ENOTFOUND, "no run with id %lld", (long long)run_id);
	return rc;
}

int scry_store_run_find(scry_store *s, const char *label, int64_t *run_id, scry_error *err)
{
	if (!s || !label || !run_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_find: arguments are required");
	sqlite3_stmt *q;
	int rc = scry__store_row(s, "SELECT id FROM runs WHERE label = ? ORDER BY id DESC LIMIT 1",
	                         SCRY__VALUES(SCRY__TEXT(label)), &q, err, "finding a run");
	if (rc == 0)
		return scry__fail(err, SCRY_ENOTFOUND,
		                  "no replay run labelled '%s' in %s; run `scry replay --label %s` first (or check the label)",
		                  label, s->path, label);
	if (rc < 0)
		return rc;
	*run_id = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return 0;
}

int scry_store_run_complete(scry_store *s, int64_t run_id, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_complete: a store is required");
	sqlite3_stmt *q;
	int rc = scry__store_row(s,
	                         "SELECT ended_us IS NOT NULL AND coalesce(json_extract(CASE WHEN json_valid(summary)"
	                         " THEN summary END, '$.complete'), 1) != 0 FROM runs WHERE id = ?",
	                         SCRY__VALUES(SCRY__INT(run_id)), &q, err, "reading runs");
	if (rc == 0)
		return scry__fail(err, SCRY_ENOTFOUND, "no run %lld in the store", (long long)run_id);
	if (rc < 0)
		return rc;
	rc = sqlite3_column_int(q, 0) != 0;
	sqlite3_finalize(q);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Samples                                                             */
/* ------------------------------------------------------------------ */

int scry_store_samples_append(scry_store *s, int64_t run_id, const scry_sample *samples, size_t n,
	size_t sample_size, scry_error *err)
{
	if (!s || (n && !samples))
		return scry__fail(err, SCRY_EINVAL, "scry_store_samples_append: arguments are required");
	int rc = scry__elem_check(err, &scry__abi_sample, sample_size);
	if (rc || (rc = scry__store_batch_begin(s, err, "appending samples")))
		return rc;
	scry_sample tmp;
	for (size_t i = 0; i < n && !rc; i++) {
		const scry_sample *x = scry__elem_get(&scry__abi_sample, &tmp, samples, i, sample_size);
		rc = scry__store_run_kept(s, SCRY__SQ_INSERT_SAMPLE,
		                          SCRY__VALUES(SCRY__INT(run_id), SCRY__INT(x->event_id), SCRY__INT(x->round),
		                                       SCRY__INT(x->latency_us),
		                                       x->rows >= 0 ? SCRY__INT(x->rows) : SCRY__NULL,
		                                       x->sqlstate[0] ? SCRY__TEXTN(x->sqlstate, strnlen(x->sqlstate, 5))
		                                                      : SCRY__NULL),
		                          err, "appending samples");
	}
	return scry__store_batch_end(s, rc, err, "committing samples");
}

struct scry_sample_iter {
	scry__cursor c;
	scry_stored_sample s;
};

static int samples_query(scry_store *s, int64_t run_id, const char *order, scry_sample_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_samples: arguments are required");
	char sql[512];
	snprintf(sql, sizeof sql,
	         "SELECT x.event, st.pattern, p.fingerprint, x.round, x.latency_us, x.rows, x.sqlstate, e.session"
	         " FROM samples x JOIN events e ON e.id = x.event"
	         " JOIN statements st ON st.id = e.statement JOIN patterns p ON p.id = st.pattern"
	         " WHERE x.run = ? ORDER BY %s",
	         order);
	int rc;
	scry_sample_iter *it = scry__cursor_open(s, sql, sizeof *it, &rc, err, "reading samples");
	if (it && scry__store_bind(it->c.q, SCRY__VALUES(SCRY__INT(run_id))) != SQLITE_OK) {
		rc = scry__store_fail(s, err, "reading samples");
		scry_sample_iter_free(it);
		it = NULL;
	}
	*out = it;
	return rc;
}

int scry_store_samples(scry_store *s, int64_t run_id, scry_sample_iter **out, scry_error *err)
{
	return samples_query(s, run_id, "st.pattern, x.event, x.round", out, err);
}

int scry_store_samples_by_event(scry_store *s, int64_t run_id, scry_sample_iter **out, scry_error *err)
{
	return samples_query(s, run_id, "x.event, x.round", out, err);
}

int scry_sample_iter_next(scry_sample_iter *it, const scry_stored_sample **out, scry_error *err)
{
	int r = scry__cursor_row((scry__cursor *)it, out, err, "scry_sample_iter_next", "reading samples");
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->c.q;
	scry_stored_sample *x = &it->s;
	memset(x, 0, sizeof *x);
	x->event_id = sqlite3_column_int64(q, 0);
	x->pattern_id = sqlite3_column_int64(q, 1);
	x->fingerprint = (uint64_t)sqlite3_column_int64(q, 2);
	x->round = sqlite3_column_int(q, 3);
	x->latency_us = sqlite3_column_int64(q, 4);
	x->rows = sqlite3_column_type(q, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 5);
	const unsigned char *ss = sqlite3_column_text(q, 6);
	if (ss)
		snprintf(x->sqlstate, sizeof x->sqlstate, "%s", ss);
	x->session_id = sqlite3_column_int64(q, 7);
	*out = x;
	return 1;
}

void scry_sample_iter_free(scry_sample_iter *it)
{
	if (it)
		scry__cursor_free(&it->c);
}

/* ------------------------------------------------------------------ */
/* Plans                                                               */
/* ------------------------------------------------------------------ */

int scry_store_plan_put(scry_store *s, int64_t run_id, uint64_t fp, int64_t event_id, const char *plan,
                        scry_error *err)
{
	if (!s || !plan)
		return scry__fail(err, SCRY_EINVAL, "scry_store_plan_put: arguments are required");
	static const char what[] = "storing a plan";
	int rc = scry__store_kept_row(s, SCRY__SQ_FIND_PATTERN, SCRY__VALUES(SCRY__INT((int64_t)fp)), err, what);
	if (rc == 0)
		return scry__fail(err, SCRY_ENOTFOUND, "no pattern with fingerprint %016llx", (unsigned long long)fp);
	if (rc < 0)
		return rc;
	int64_t pid = sqlite3_column_int64(s->q[SCRY__SQ_FIND_PATTERN], 0);
	sqlite3_reset(s->q[SCRY__SQ_FIND_PATTERN]); /* ends its read; the row was the one wanted */
	return scry__store_run(s, "INSERT OR REPLACE INTO plans(run, pattern, event, plan) VALUES (?,?,?,?)",
	                       SCRY__VALUES(SCRY__INT(run_id), SCRY__INT(pid),
	                                    event_id > 0 ? SCRY__INT(event_id) : SCRY__NULL, SCRY__TEXT(plan)),
	                       err, what);
}

int scry_store_plan_get(scry_store *s, int64_t run_id, uint64_t fp, scry_buf *out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_plan_get: arguments are required");
	sqlite3_stmt *q;
	int rc = scry__store_row(s,
	                         "SELECT pl.plan FROM plans pl JOIN patterns p ON p.id = pl.pattern"
	                         " WHERE pl.run = ? AND p.fingerprint = ?",
	                         SCRY__VALUES(SCRY__INT(run_id), SCRY__INT((int64_t)fp)), &q, err, "reading a plan");
	if (rc == 0)
		return scry__fail(err, SCRY_ENOTFOUND, "no plan for pattern %016llx in run %lld", (unsigned long long)fp,
		                  (long long)run_id);
	if (rc < 0)
		return rc;
	rc = scry__buf_put(out, sqlite3_column_text(q, 0), (size_t)sqlite3_column_bytes(q, 0))
	     ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
	sqlite3_finalize(q);
	return rc;
}
