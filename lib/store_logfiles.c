/*
 * lib/store_logfiles.c - the store's record of imported log files, so that
 * importing the same file (or the part of a growing file already read)
 * again is recognised. Its table is created on first use, so stores made
 * before it need no migration.
 */
#include "internal.h"

#include <sqlite3.h>
#include <time.h>

static const char table_sql[] =
	"CREATE TABLE IF NOT EXISTS log_files(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT,\n"
	"  size INTEGER NOT NULL,\n"
	"  first_hash INTEGER NOT NULL,\n"
	"  last_hash INTEGER NOT NULL,\n"
	"  imported_us INTEGER NOT NULL);\n"
	"CREATE INDEX IF NOT EXISTS log_files_first ON log_files(first_hash);";

static int ensure_table(scry_store *s, scry_error *err)
{
	if (sqlite3_exec(scry__store_db(s), table_sql, NULL, NULL, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "creating the log_files table");
	return 0;
}

int scry_store_log_file_add(scry_store *s, const scry_log_file *file, scry_error *err)
{
	if (!s || !file)
		return scry__fail(err, SCRY_EINVAL, "scry_store_log_file_add: store and file are required");
	scry_log_file fcopy;
	int rc = scry__opts_copy(err, &scry__abi_log_file, &fcopy, file);
	if (rc)
		return rc;
	const scry_log_file *f = &fcopy;
	rc = ensure_table(s, err);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (sqlite3_prepare_v2(scry__store_db(s),
	                       "INSERT INTO log_files(name, size, first_hash, last_hash, imported_us) VALUES (?,?,?,?,?)",
	                       -1, &st, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "recording an imported log file");
	sqlite3_bind_text(st, 1, f->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)f->size);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)f->first_hash);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)f->last_hash);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : scry__store_fail(s, err, "recording an imported log file");
	sqlite3_finalize(st);
	return rc;
}

int scry_store_log_files_find(scry_store *s, uint64_t first_hash, scry_log_file *out, size_t elem_size, size_t cap,
                              size_t *n, scry_error *err)
{
	if (!s || !n || (cap && !out))
		return scry__fail(err, SCRY_EINVAL, "scry_store_log_files_find: arguments are required");
	*n = 0;
	int rc = cap ? scry__elem_check(err, &scry__abi_log_file, elem_size) : 0;
	if (!rc)
		rc = ensure_table(s, err);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(scry__store_db(s),
	                       "SELECT size, last_hash, imported_us FROM log_files WHERE first_hash = ? ORDER BY size DESC",
	                       -1, &st, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "reading imported log files");
	sqlite3_bind_int64(st, 1, (sqlite3_int64)first_hash);
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n < cap) {
			/* Written as the caller's (possibly older, shorter) element. */
			scry_log_file f = { SCRY_LOG_FILE_VERSION, NULL, (uint64_t)sqlite3_column_int64(st, 0), first_hash,
			                    (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2) };
			memcpy((char *)out + *n * elem_size, &f, elem_size < sizeof f ? elem_size : sizeof f);
		}
		(*n)++;
	}
	rc = r == SQLITE_DONE ? 0 : scry__store_fail(s, err, "reading imported log files");
	sqlite3_finalize(st);
	if (*n > cap)
		*n = cap;
	return rc;
}
