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

static const char merging[] = "merging";

/* Runs the NULL-terminated list of statements, in order. */
static int exec_all(scry_store *s, const char *const *sqls, scry_error *err)
{
	int rc = 0;
	for (size_t i = 0; sqls[i] && !rc; i++)
		rc = scry__store_exec(s, sqls[i], err, merging);
	return rc;
}

/* The columns of `table` in both databases but those in `skip` (a comma-wrapped
 * list such as ",id,session,"): ", a, b" into dst and ", i.a, i.b" into src. */
static int common_columns(scry_store *s, const char *table, const char *skip, scry_buf *dst, scry_buf *src,
                          scry_error *err)
{
	static const char what[] = "merging: reading the columns";
	char sql[256];
	snprintf(sql, sizeof sql,
		"SELECT m.name FROM pragma_table_info('%s', 'main') m JOIN pragma_table_info('%s', 'inp') i "
		"ON i.name = m.name ORDER BY m.cid", table, table);
	sqlite3_stmt *st;
	int rc = scry__store_prepare(s, sql, &st, err, what);
	while (!rc && (rc = scry__store_step(s, st, err, what)) == 1) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		char wrapped[160];
		snprintf(wrapped, sizeof wrapped, ",%s,", name);
		rc = 0;
		if (!strstr(skip, wrapped) &&
		    (scry__buf_printf(dst, ", \"%s\"", name) || scry__buf_printf(src, ", i.\"%s\"", name)))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	sqlite3_finalize(st);
	return rc;
}

/* INSERT INTO main.table(dst_keys, common columns) SELECT src_keys, common columns FROM `from`. */
static int copy_table(scry_store *s, const char *table, const char *skip, const char *dst_keys, const char *src_keys,
                      const char *from, scry_error *err)
{
	scry_buf dst = SCRY_BUF_INIT, srcc = SCRY_BUF_INIT, sql = SCRY_BUF_INIT;
	int rc = common_columns(s, table, skip, &dst, &srcc, err);
	if (!rc && scry__buf_printf(&sql, "INSERT INTO main.%s(%s%s) SELECT %s%s FROM %s", table, dst_keys,
	                            dst.ptr ? dst.ptr : "", src_keys, srcc.ptr ? srcc.ptr : "", from))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (!rc)
		rc = scry__store_exec(s, sql.ptr, err, merging);
	scry_buf_dispose(&dst);
	scry_buf_dispose(&srcc);
	scry_buf_dispose(&sql);
	return rc;
}

/* The input must be a store (schema and version checked by opening it), and not the output itself. */
static int check_input(scry_store *s, const char *in_path, scry_error *err)
{
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
	return 0;
}

/* Patterns: matched by fingerprint, unparsable ones by their text; the matched ones summed. */
static const char *const map_patterns[] = {
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
	NULL,
};

/* Statements: matched by template. */
static const char *const map_statements[] = {
	"CREATE TEMP TABLE smap(in_id INTEGER PRIMARY KEY, out_id INTEGER)",
	"INSERT INTO temp.smap SELECT i.id, (SELECT m.id FROM main.statements m WHERE m.hash = i.hash"
	"  AND m.template = i.template AND (m.literals > 0) = (i.literals > 0) ORDER BY m.id LIMIT 1)"
	"  FROM inp.statements i",
	"CREATE TEMP TABLE snew AS SELECT in_id, (SELECT coalesce(max(id), 0) FROM main.statements)"
	"  + row_number() OVER (ORDER BY in_id) AS out_id FROM temp.smap WHERE out_id IS NULL",
	NULL,
};

/* Maps the input's patterns and statements to the output's, copying the new ones. */
static int merge_patterns_statements(scry_store *s, scry_error *err)
{
	int rc = exec_all(s, map_patterns, err);
	if (!rc) /* the input's new patterns, in id order (pmap's update relies on it) */
		rc = copy_table(s, "patterns", ",id,", "id", "NULL",
			"inp.patterns i JOIN temp.pmap ON pmap.in_id = i.id WHERE pmap.out_id IS NULL ORDER BY i.id", err);
	if (!rc)
		rc = scry__store_exec(s, "UPDATE temp.pmap SET out_id = (SELECT n.out_id FROM temp.pnew n WHERE"
		                         " n.in_id = pmap.in_id) WHERE out_id IS NULL", err, merging);
	if (!rc)
		rc = exec_all(s, map_statements, err);
	if (!rc)
		rc = copy_table(s, "statements", ",id,pattern,", "id, pattern", "NULL, pmap.out_id",
			"inp.statements i JOIN temp.smap ON smap.in_id = i.id JOIN temp.pmap ON pmap.in_id = i.pattern"
			" WHERE smap.out_id IS NULL ORDER BY i.id", err);
	if (!rc)
		rc = scry__store_exec(s, "UPDATE temp.smap SET out_id = (SELECT n.out_id FROM temp.snew n WHERE"
		                         " n.in_id = smap.in_id) WHERE out_id IS NULL", err, merging);
	return rc;
}

/* Sessions, events, their errors and COPY data, with ids shifted past the output's; *nsess and *nev the input's counts. */
static int merge_events(scry_store *s, const char *in_path, int64_t *nsess, int64_t *nev,
                        scry_error *err)
{
	int64_t soff = 0, eoff = 0, total = 0;
	int rc = scry__store_int(s, "SELECT coalesce(max(id), 0) FROM main.sessions", &soff, err, merging);
	if (!rc)
		rc = scry__store_int(s, "SELECT coalesce(max(id), 0) FROM main.events", &eoff, err, merging);
	if (!rc)
		rc = scry__store_int(s, "SELECT count(*) FROM inp.sessions", nsess, err, merging);
	if (!rc)
		rc = scry__store_int(s, "SELECT count(*) FROM inp.events", nev, err, merging);
	char keys[128];
	snprintf(keys, sizeof keys, "i.id + %lld", (long long)soff);
	if (!rc)
		rc = copy_table(s, "sessions", ",id,", "id", keys, "inp.sessions i", err);
	snprintf(keys, sizeof keys, "i.id + %lld, i.session + %lld, smap.out_id", (long long)eoff, (long long)soff);
	if (!rc)
		rc = copy_table(s, "events", ",id,session,statement,", "id, session, statement", keys,
			"inp.events i JOIN temp.smap ON smap.in_id = i.statement ORDER BY i.id", err);
	snprintf(keys, sizeof keys, "i.event + %lld", (long long)eoff);
	if (!rc)
		rc = copy_table(s, "event_errors", ",event,", "event", keys, "inp.event_errors i", err);
	/* COPY FROM STDIN data (a store of schema v1 has none: opened read-only, it was not migrated). */
	int64_t has_copy = 0;
	if (!rc)
		rc = scry__store_int(s, "SELECT count(*) FROM inp.sqlite_master WHERE type = 'table' AND name = 'event_copy'",
		                     &has_copy, err, merging);
	if (!rc && has_copy)
		rc = copy_table(s, "event_copy", ",event,", "event", keys, "inp.event_copy i", err);
	if (!rc)
		rc = scry__store_int(s, "SELECT count(*) FROM main.events", &total, err, merging);
	if (!rc && total != eoff + *nev)
		rc = scry__fail(err, SCRY_ECORRUPT, "merging %s: some events name a statement the input lacks", in_path);
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
	int rc = check_input(s, in_path, err);
	if (rc || (rc = scry__store_run(s, "ATTACH DATABASE ? AS inp", SCRY__VALUES(SCRY__TEXT(in_path)), err,
	                                "merging: attaching the input")))
		return rc;
	int64_t nsess = 0, nev = 0;
	if ((rc = scry__store_exec(s, "BEGIN IMMEDIATE", err, merging)) == 0) {
		rc = merge_patterns_statements(s, err);
		if (!rc)
			rc = merge_events(s, in_path, &nsess, &nev, err);
		if (!rc)
			rc = scry__store_exec(s, "COMMIT", err, merging);
		if (rc)
			scry__store_cleanup(s, "ROLLBACK");
	}
	scry__store_cleanup(s, "DROP TABLE IF EXISTS temp.pmap; DROP TABLE IF EXISTS temp.smap;"
		"DROP TABLE IF EXISTS temp.pnew; DROP TABLE IF EXISTS temp.snew");
	scry__store_cleanup(s, "DETACH DATABASE inp");
	scry__store_forget_caches(s);
	if (!rc) {
		if (sessions_added)
			*sessions_added = nsess;
		if (events_added)
			*events_added = nev;
	}
	return rc;
}
