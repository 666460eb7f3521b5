/*
 * lib/store_read.c - reading the workload store: the event iterators (the
 * exact text rebuilt from its template and literals), the pattern iterator
 * and the store's counts (docs/store.md).
 */
#include "internal.h"
#include "store_internal.h"

#include <sqlite3.h>
#include <stdio.h>

int scry_store_info_get(scry_store *s, scry_store_info *out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_info_get: arguments are required");
	int rc = scry__out_check(err, &scry__abi_store_info, out);
	if (rc)
		return rc;
	static const char sql[] =
		"SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sessions),"
		" (SELECT count(*) FROM patterns), (SELECT count(*) FROM statements),"
		" (SELECT count(*) FROM runs), (SELECT count(*) FROM samples),"
		" (SELECT min(first_us) FROM patterns), (SELECT max(last_us) FROM patterns),"
		" (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size)";
	sqlite3_stmt *q;
	if ((rc = scry__store_row(s, sql, NULL, 0, &q, err, "reading store counts")) != 1)
		return rc ? rc : scry__store_fail(s, err, "reading store counts");
	scry_store_info info;
	memset(&info, 0, sizeof info);
	info.events = sqlite3_column_int64(q, 0);
	info.sessions = sqlite3_column_int64(q, 1);
	info.patterns = sqlite3_column_int64(q, 2);
	info.statements = sqlite3_column_int64(q, 3);
	info.runs = sqlite3_column_int64(q, 4);
	info.samples = sqlite3_column_int64(q, 5);
	info.first_us = sqlite3_column_int64(q, 6);
	info.last_us = sqlite3_column_int64(q, 7);
	info.file_bytes = sqlite3_column_int64(q, 8);
	info.schema_version = SCRY_STORE_SCHEMA_VERSION;
	sqlite3_finalize(q);
	scry__out_put(&scry__abi_store_info, out, &info);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

struct scry_event_iter {
	scry__cursor c;
	scry_stored_event ev;
	scry_buf text;
	scry_param *params;
	int aparams;
	/* scry__store_events_by_id(): the ids to read, one point query each */
	const int64_t *ids;
	size_t nids, pos;
	int bind_rc; /* a failed scry__event_iter_rebind(), reported by the next read */
};

static const char read_events[] = "reading events";

/*
 * The columns every event iterator reads (read_event decodes them), FROM and
 * the joins; the caller appends " WHERE ...". A schema 1 store has no
 * fetch/flags/session parameters/COPY data: NULLs in their place.
 */
static int event_select(const scry_store *s, scry_buf *sql)
{
	int rc = scry__buf_puts(sql,
		"SELECT e.id, e.session, e.seq, s.started_us + e.offset_us, e.duration_us, e.kind, st.template,"
		" e.literals, e.params, e.rows, e.sqlstate, st.pattern, p.fingerprint, s.user_name");
	if (!rc)
		rc = scry__buf_puts(sql, s->schema >= 2
			? ", e.fetch, e.flags, s.params, c.data FROM events e LEFT JOIN event_copy c ON c.event = e.id"
			: ", NULL, NULL, NULL, NULL FROM events e");
	if (!rc)
		rc = scry__buf_puts(sql, " JOIN statements st ON st.id = e.statement JOIN patterns p ON p.id = st.pattern"
		                         " JOIN sessions s ON s.id = e.session");
	return rc;
}

/* " AND p.fingerprint IN (...)" */
static int fingerprint_in(scry_buf *sql, const uint64_t *fps, size_t n)
{
	int rc = scry__buf_puts(sql, " AND p.fingerprint IN (");
	for (size_t i = 0; !rc && i < n; i++)
		rc = scry__buf_printf(sql, "%s%lld", i ? "," : "", (long long)(int64_t)fps[i]);
	return rc ? rc : scry__buf_puts(sql, ")");
}

/* An event iterator on event_select(), then `where`, fingerprint_in() when fps is not NULL, and `tail`. */
static int open_events(scry_store *s, const char *where, const uint64_t *fps, size_t nfps, const char *tail,
                       scry_event_iter **out, scry_error *err)
{
	*out = NULL;
	scry_buf sql = SCRY_BUF_INIT;
	int rc = event_select(s, &sql);
	if (!rc)
		rc = scry__buf_puts(&sql, where);
	if (!rc && fps)
		rc = fingerprint_in(&sql, fps, nfps);
	if (!rc)
		rc = scry__buf_puts(&sql, tail);
	if (rc)
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	else
		*out = scry__cursor_open(s, sql.ptr, sizeof **out, &rc, err, read_events);
	scry_buf_dispose(&sql);
	return rc;
}

int scry__store_session_events(scry_store *s, const uint64_t *fps, size_t nfps, scry_event_iter **out,
                               scry_error *err)
{
	return open_events(s, " WHERE e.id > ?2 AND e.id <= ?3 AND e.session = ?1", fps, nfps, " ORDER BY e.id LIMIT ?4",
	                   out, err);
}

void scry__event_iter_rebind(scry_event_iter *it, int64_t session, int64_t after_id, int64_t last_id, int limit)
{
	sqlite3_reset(it->c.q); /* returns the last step's error, already reported */
	it->bind_rc = scry__store_bind(it->c.q, SCRY__VALUES(SCRY__INT(session), SCRY__INT(after_id),
	                                                     SCRY__INT(last_id), SCRY__INT(limit)));
}

int scry__store_events_by_id(scry_store *s, const int64_t *ids, size_t n, scry_event_iter **out, scry_error *err)
{
	int rc = open_events(s, " WHERE e.id = ?", NULL, 0, "", out, err);
	if (!rc) {
		(*out)->ids = ids;
		(*out)->nids = n;
	}
	return rc;
}

int scry_store_events(scry_store *s, const scry_event_filter *filter, scry_event_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_events: arguments are required");
	*out = NULL;
	scry_event_filter fcopy;
	int rc = scry__opts_copy(err, &scry__abi_event_filter, &fcopy, filter);
	if (rc)
		return rc;
	filter = &fcopy;
	char where[64] = " WHERE 1";
	if (filter->session_id)
		snprintf(where, sizeof where, " WHERE 1 AND e.session = %lld", (long long)filter->session_id);
	return open_events(s, where, filter->fingerprints, filter->nfingerprints, " ORDER BY e.id", out, err);
}

/* Unpacks the params blob into it->params (values point into the blob). */
static int unpack_params(scry_event_iter *it, const unsigned char *b, size_t n)
{
	int count = 0;
	size_t pos = 0;
	while (pos < n) {
		uint64_t oid, fmt, lenp1;
		size_t u1 = scry__read_varint(b + pos, n - pos, &oid);
		if (!u1)
			return SCRY_ECORRUPT;
		pos += u1;
		size_t u2 = scry__read_varint(b + pos, n - pos, &fmt);
		if (!u2)
			return SCRY_ECORRUPT;
		pos += u2;
		size_t u3 = scry__read_varint(b + pos, n - pos, &lenp1);
		if (!u3)
			return SCRY_ECORRUPT;
		pos += u3;
		int64_t len = (int64_t)lenp1 - 1;
		if (len > 0 && (uint64_t)len > n - pos)
			return SCRY_ECORRUPT;
		if (count >= it->aparams) {
			int want = it->aparams ? it->aparams * 2 : 16;
			scry_param *p = scry__realloc(it->params, (size_t)want * sizeof *p);
			if (!p)
				return SCRY_ENOMEM;
			it->params = p;
			it->aparams = want;
		}
		scry_param *p = &it->params[count++];
		p->type_oid = (uint32_t)oid;
		p->format = fmt ? SCRY_PARAM_BINARY : SCRY_PARAM_TEXT;
		p->length = (int32_t)len;
		p->value = len >= 0 ? (const char *)b + pos : NULL;
		if (len > 0)
			pos += (size_t)len;
	}
	it->ev.nparams = count;
	it->ev.params = count ? it->params : NULL;
	return 0;
}

/* Steps to the next row: 1, 0 at the end, or an error. By ids, an id that is gone (deleted meanwhile) is skipped. */
static int step_event(scry_event_iter *it, scry_error *err)
{
	for (;;) {
		if (it->ids) {
			if (it->pos >= it->nids)
				return 0;
			sqlite3_reset(it->c.q); /* returns the last step's error, already reported */
			it->bind_rc = scry__store_bind(it->c.q, SCRY__VALUES(SCRY__INT(it->ids[it->pos++])));
		}
		if (it->bind_rc)
			return scry__fail_sys(err, SCRY_ESTORE, it->bind_rc, "%s: %s", read_events, sqlite3_errstr(it->bind_rc));
		int r = scry__cursor_next(&it->c, err, read_events);
		if (r != 0 || !it->ids)
			return r;
	}
}

/* Decodes the row of event_select() into it->ev: the text rebuilt from its template and literals. */
static int read_event(scry_event_iter *it, scry_error *err)
{
	sqlite3_stmt *q = it->c.q;
	scry_stored_event *e = &it->ev;
	memset(e, 0, sizeof *e);
	e->id = sqlite3_column_int64(q, 0);
	e->session_id = sqlite3_column_int64(q, 1);
	e->seq = sqlite3_column_int64(q, 2);
	e->start_us = sqlite3_column_int64(q, 3);
	e->duration_us = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 4);
	e->kind = (scry_event_kind)sqlite3_column_int(q, 5);
	scry__buf_clear(&it->text);
	const char *tmpl = (const char *)sqlite3_column_blob(q, 6);
	size_t tlen = (size_t)sqlite3_column_bytes(q, 6);
	const unsigned char *lits = sqlite3_column_blob(q, 7);
	size_t llen = (size_t)sqlite3_column_bytes(q, 7);
	int rc = scry__splice_literals(tmpl ? tmpl : "", tlen, lits ? lits : (const unsigned char *)"", llen, &it->text);
	if (!rc && scry__buf_grow(&it->text, 0))
		rc = SCRY_ENOMEM;
	if (rc)
		return scry__fail(err, rc, "event %lld: its stored literals do not fit its statement (corrupt store?)",
		                  (long long)e->id);
	e->query = it->text.ptr ? it->text.ptr : "";
	e->query_len = it->text.size;
	const unsigned char *pb = sqlite3_column_blob(q, 8);
	if ((rc = unpack_params(it, pb ? pb : (const unsigned char *)"", (size_t)sqlite3_column_bytes(q, 8))) != 0)
		return scry__fail(err, rc, "event %lld: its stored parameters are corrupt", (long long)e->id);
	e->rows = sqlite3_column_type(q, 9) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 9);
	const unsigned char *ss = sqlite3_column_text(q, 10);
	if (ss)
		snprintf(e->sqlstate, sizeof e->sqlstate, "%s", ss);
	e->pattern_id = sqlite3_column_int64(q, 11);
	e->fingerprint = (uint64_t)sqlite3_column_int64(q, 12);
	e->session_user = (const char *)sqlite3_column_text(q, 13);
	e->fetch_rows = sqlite3_column_int64(q, 14);
	e->flags = (unsigned int)sqlite3_column_int(q, 15);
	e->session_params = (const char *)sqlite3_column_text(q, 16);
	e->copy_data = sqlite3_column_blob(q, 17);
	e->copy_len = (size_t)sqlite3_column_bytes(q, 17);
	return 0;
}

int scry_event_iter_next(scry_event_iter *it, const scry_stored_event **ev, scry_error *err)
{
	if (!it || !ev)
		return scry__fail(err, SCRY_EINVAL, "scry_event_iter_next: arguments are required");
	int r = step_event(it, err);
	if (r <= 0)
		return r;
	if ((r = read_event(it, err)) != 0)
		return r;
	*ev = &it->ev;
	return 1;
}

void scry_event_iter_free(scry_event_iter *it)
{
	if (!it)
		return;
	scry_buf_dispose(&it->text);
	scry__free(it->params);
	scry__cursor_free(&it->c);
}

/* ------------------------------------------------------------------ */
/* Patterns                                                            */
/* ------------------------------------------------------------------ */

struct scry_pattern_iter {
	scry__cursor c;
	scry_pattern p;
};

int scry_store_patterns(scry_store *s, scry_pattern_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_patterns: arguments are required");
	int rc;
	*out = scry__cursor_open(s,
	                         "SELECT id, fingerprint, normalized, parse_error, count, errors, total_us, timed,"
	                         " first_us, last_us FROM patterns ORDER BY count DESC, id",
	                         sizeof **out, &rc, err, "reading patterns");
	return rc;
}

int scry_pattern_iter_next(scry_pattern_iter *it, const scry_pattern **p, scry_error *err)
{
	int r = scry__cursor_row((scry__cursor *)it, p, err, "scry_pattern_iter_next", "reading patterns");
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->c.q;
	scry_pattern *x = &it->p;
	x->id = sqlite3_column_int64(q, 0);
	x->fingerprint = (uint64_t)sqlite3_column_int64(q, 1);
	x->normalized = (const char *)sqlite3_column_text(q, 2);
	x->parse_error = (const char *)sqlite3_column_text(q, 3);
	x->count = sqlite3_column_int64(q, 4);
	x->errors = sqlite3_column_int64(q, 5);
	x->total_us = sqlite3_column_int64(q, 6);
	int64_t timed = sqlite3_column_int64(q, 7);
	x->mean_us = timed ? (double)x->total_us / (double)timed : 0;
	x->first_us = sqlite3_column_int64(q, 8);
	x->last_us = sqlite3_column_int64(q, 9);
	*p = x;
	return 1;
}

void scry_pattern_iter_free(scry_pattern_iter *it)
{
	if (it)
		scry__cursor_free(&it->c);
}
