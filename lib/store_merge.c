/*
 * lib/store_merge.c - scry_store_merge(): one workload from several stores
 * (a fleet of proxies, proxies and log imports). Done in SQL with the input
 * ATTACHed, in one transaction: patterns matched by fingerprint (unparsable
 * ones by text) and summed, statements matched by template, sessions and
 * events copied with their ids shifted past the output's. Columns are
 * copied by name, so columns added to the schema later travel too.
 */
#include "store_internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int exec(scry_store *s, sqlite3 *db, const char *sql, scry_error *err)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "merging");
	return 0;
}

static int64_t one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* ", a, b" for the columns of `table` in both databases, except `skip`
 * (a comma-wrapped list such as ",id,session,"); prefix "i." on the source side
 * when `src` is true. */
static int common_columns(sqlite3 *db, const char *table, const char *skip, bool src, scry_buf *out)
{
	char sql[256];
	snprintf(sql, sizeof sql,
		"SELECT m.name FROM pragma_table_info('%s', 'main') m JOIN pragma_table_info('%s', 'inp') i "
		"ON i.name = m.name ORDER BY m.cid", table, table);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return SCRY_ESTORE;
	int rc = 0;
	while (!rc && sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		char wrapped[160];
		snprintf(wrapped, sizeof wrapped, ",%s,", name);
		if (strstr(skip, wrapped))
			continue;
		rc = scry__buf_printf(out, ", %s\"%s\"", src ? "i." : "", name);
	}
	sqlite3_finalize(st);
	return rc;
}

static int copy_table(scry_store *s, sqlite3 *db, const char *table, const char *skip, const char *dst_keys,
	const char *src_keys, const char *from, scry_error *err)
{
	scry_buf dst = SCRY_BUF_INIT, srcc = SCRY_BUF_INIT, sql = SCRY_BUF_INIT;
	int rc = common_columns(db, table, skip, false, &dst);
	if (!rc)
		rc = common_columns(db, table, skip, true, &srcc);
	if (!rc)
		rc = scry__buf_printf(&sql, "INSERT INTO main.%s(%s%s) SELECT %s%s FROM %s", table, dst_keys,
			dst.ptr ? dst.ptr : "", src_keys, srcc.ptr ? srcc.ptr : "", from);
	if (rc == SCRY_ESTORE)
		rc = scry__store_fail(s, err, "merging: reading the columns");
	else if (rc)
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	else
		rc = exec(s, db, sql.ptr, err);
	scry_buf_dispose(&dst);
	scry_buf_dispose(&srcc);
	scry_buf_dispose(&sql);
	return rc;
}

int scry_store_merge(scry_store *s, const char *in_path, int64_t *sessions_added, int64_t *events_added, scry_error *err)
{
	if (sessions_added)
		*sessions_added = 0;
	if (events_added)
		*events_added = 0;
	if (!s || !in_path || !*in_path)
		return scry__fail(err, SCRY_EINVAL, "scry_store_merge: a store and an input path are required");
	/* The input must be a store (schema and version checked by opening it). */
	scry_store *in;
	scry_store_options o = SCRY_STORE_OPTIONS_INIT;
	o.read_only = true;
	o.must_exist = true;
	int rc = scry_store_open(&in, in_path, &o, err);
	if (rc)
		return rc;
	scry_store_free(in);
	struct stat a, b;
	const char *out_path = scry_store_path(s);
	if (out_path && stat(out_path, &a) == 0 && stat(in_path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return scry__fail(err, SCRY_EINVAL, "cannot merge %s into itself", in_path);

	sqlite3 *db = scry__store_sqlite(s);
	sqlite3_stmt *att;
	if (sqlite3_prepare_v2(db, "ATTACH DATABASE ? AS inp", -1, &att, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "merging: attaching the input");
	sqlite3_bind_text(att, 1, in_path, -1, SQLITE_STATIC);
	int step = sqlite3_step(att);
	sqlite3_finalize(att);
	if (step != SQLITE_DONE)
		return scry__store_fail(s, err, "merging: attaching the input");

	static const char *const steps[] = {
		"BEGIN IMMEDIATE",
		/* patterns: matched by fingerprint, unparsable ones by their text */
		"CREATE TEMP TABLE pmap(in_id INTEGER PRIMARY KEY, out_id INTEGER)",
		"INSERT INTO temp.pmap SELECT i.id, (SELECT m.id FROM main.patterns m WHERE"
		"  (i.fingerprint IS NOT NULL AND m.fingerprint = i.fingerprint) OR"
		"  (i.fingerprint IS NULL AND m.fingerprint IS NULL AND m.normalized IS i.normalized) ORDER BY m.id LIMIT 1)"
		"  FROM inp.patterns i",
		"UPDATE main.patterns SET count = main.patterns.count + i.count, errors = main.patterns.errors + i.errors,"
		"  total_us = main.patterns.total_us + i.total_us, timed = main.patterns.timed + i.timed,"
		"  first_us = CASE WHEN main.patterns.first_us IS NULL OR i.first_us < main.patterns.first_us"
		"    THEN i.first_us ELSE main.patterns.first_us END,"
		"  last_us = CASE WHEN main.patterns.last_us IS NULL OR i.last_us > main.patterns.last_us"
		"    THEN i.last_us ELSE main.patterns.last_us END"
		"  FROM temp.pmap JOIN inp.patterns i ON i.id = pmap.in_id WHERE main.patterns.id = pmap.out_id",
		/* New rows get ids max+1, max+2, ... in the order inserted (input id order). */
		"CREATE TEMP TABLE pnew AS SELECT in_id, (SELECT coalesce(max(id), 0) FROM main.patterns)"
		"  + row_number() OVER (ORDER BY in_id) AS out_id FROM temp.pmap WHERE out_id IS NULL",
		NULL, /* new patterns: copy_table below */
		"UPDATE temp.pmap SET out_id = (SELECT n.out_id FROM temp.pnew n WHERE n.in_id = pmap.in_id)"
		"  WHERE out_id IS NULL",
		/* statements: matched by template */
		"CREATE TEMP TABLE smap(in_id INTEGER PRIMARY KEY, out_id INTEGER)",
		"INSERT INTO temp.smap SELECT i.id, (SELECT m.id FROM main.statements m WHERE m.hash = i.hash"
		"  AND m.template = i.template AND (m.literals > 0) = (i.literals > 0) ORDER BY m.id LIMIT 1)"
		"  FROM inp.statements i",
		"CREATE TEMP TABLE snew AS SELECT in_id, (SELECT coalesce(max(id), 0) FROM main.statements)"
		"  + row_number() OVER (ORDER BY in_id) AS out_id FROM temp.smap WHERE out_id IS NULL",
		NULL, /* new statements */
		"UPDATE temp.smap SET out_id = (SELECT n.out_id FROM temp.snew n WHERE n.in_id = smap.in_id)"
		"  WHERE out_id IS NULL",
		NULL, /* sessions, events, errors */
	};
	int64_t soff = 0, eoff = 0, nsess = 0, nev = 0;
	bool began = false;
	int phase = 0;
	for (size_t k = 0; k < sizeof steps / sizeof *steps && !rc; k++) {
		if (steps[k]) {
			rc = exec(s, db, steps[k], err);
			if (k == 0 && !rc)
				began = true;
			continue;
		}
		if (phase == 0) /* the input's new patterns, in id order (pmap's update relies on it) */
			rc = copy_table(s, db, "patterns", ",id,", "id", "NULL",
				"inp.patterns i JOIN temp.pmap ON pmap.in_id = i.id WHERE pmap.out_id IS NULL ORDER BY i.id", err);
		else if (phase == 1)
			rc = copy_table(s, db, "statements", ",id,pattern,", "id, pattern", "NULL, pmap.out_id",
				"inp.statements i JOIN temp.smap ON smap.in_id = i.id JOIN temp.pmap ON pmap.in_id = i.pattern"
				" WHERE smap.out_id IS NULL ORDER BY i.id", err);
		else {
			soff = one_int(db, "SELECT coalesce(max(id), 0) FROM main.sessions");
			eoff = one_int(db, "SELECT coalesce(max(id), 0) FROM main.events");
			nsess = one_int(db, "SELECT count(*) FROM inp.sessions");
			nev = one_int(db, "SELECT count(*) FROM inp.events");
			char keys[128], from[256];
			snprintf(keys, sizeof keys, "i.id + %lld", (long long)soff);
			rc = copy_table(s, db, "sessions", ",id,", "id", keys, "inp.sessions i", err);
			if (!rc) {
				snprintf(keys, sizeof keys, "i.id + %lld, i.session + %lld, smap.out_id", (long long)eoff, (long long)soff);
				snprintf(from, sizeof from, "inp.events i JOIN temp.smap ON smap.in_id = i.statement ORDER BY i.id");
				rc = copy_table(s, db, "events", ",id,session,statement,", "id, session, statement", keys, from, err);
			}
			if (!rc) {
				snprintf(keys, sizeof keys, "i.event + %lld", (long long)eoff);
				rc = copy_table(s, db, "event_errors", ",event,", "event", keys, "inp.event_errors i", err);
			}
			if (!rc && one_int(db, "SELECT count(*) FROM main.events") != eoff + nev)
				rc = scry__fail(err, SCRY_ECORRUPT, "merging %s: some events name a statement the input lacks", in_path);
		}
		phase++;
	}
	if (!rc)
		rc = exec(s, db, "COMMIT", err);
	if (rc && began)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(db, "DROP TABLE IF EXISTS temp.pmap; DROP TABLE IF EXISTS temp.smap;"
		"DROP TABLE IF EXISTS temp.pnew; DROP TABLE IF EXISTS temp.snew", NULL, NULL, NULL);
	sqlite3_exec(db, "DETACH DATABASE inp", NULL, NULL, NULL);
	scry__store_forget_caches(s);
	if (!rc) {
		if (sessions_added)
			*sessions_added = nsess;
		if (events_added)
			*events_added = nev;
	}
	return rc;
}
