/*
 * lib/store.c - the SQLite workload store (schema in docs/store.md): opening
 * a file, creating or upgrading its schema, the handle's kept statements, the
 * SQL helpers the store's files share (lib/store_internal.h), and the record
 * of imported log files. Appending is lib/store_write.c, reading
 * lib/store_read.c, replay runs lib/store_runs.c.
 */
#include "internal.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

static const char schema_sql[] =
	"CREATE TABLE scry_meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;\n"
	"CREATE TABLE patterns(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  fingerprint INTEGER UNIQUE,      -- pg_query fingerprint as signed 64-bit; NULL if unparsable\n"
	"  normalized TEXT,                 -- pg_query_normalize() of its first statement\n"
	"  parse_error TEXT,\n"
	"  count INTEGER NOT NULL,          -- captured executions\n"
	"  errors INTEGER NOT NULL,         -- captured executions with a SQLSTATE\n"
	"  total_us INTEGER NOT NULL,       -- sum of known captured durations\n"
	"  timed INTEGER NOT NULL,          -- executions with a known duration\n"
	"  first_us INTEGER, last_us INTEGER);\n"
	"CREATE TABLE statements(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  hash INTEGER NOT NULL,           -- XXH3-64 of template\n"
	"  pattern INTEGER NOT NULL REFERENCES patterns(id),\n"
	"  template TEXT NOT NULL,          -- text, literals replaced by bytes 0x01-0x03\n"
	"  literals INTEGER NOT NULL);      -- number of lifted literals\n"
	"CREATE INDEX statements_hash ON statements(hash);\n"
	"CREATE TABLE sessions(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  source TEXT NOT NULL, database TEXT, user_name TEXT, application TEXT, client TEXT,\n"
	"  started_us INTEGER NOT NULL, ended_us INTEGER,\n"
	"  events INTEGER NOT NULL,         -- events captured (the last seq)\n"
	"  params TEXT);                    -- startup parameters, key=value lines (v2)\n"
	"CREATE TABLE events(\n"
	"  id INTEGER PRIMARY KEY,          -- capture order\n"
	"  session INTEGER NOT NULL,\n"
	"  seq INTEGER NOT NULL,            -- 1-based position in its session\n"
	"  offset_us INTEGER NOT NULL,      -- start, relative to sessions.started_us\n"
	"  duration_us INTEGER,             -- NULL when unknown\n"
	"  statement INTEGER NOT NULL,\n"
	"  literals BLOB,                   -- lifted literals: (varint length, bytes)*\n"
	"  params BLOB,                     -- bound parameters: (varint oid, varint format, varint length+1, bytes)*\n"
	"  rows INTEGER,\n"
	"  sqlstate TEXT,                   -- NULL on success\n"
	"  kind INTEGER NOT NULL,           -- 0 simple, 1 extended, 2 copy\n"
	"  fetch INTEGER,                   -- row limit per Execute of a portal; NULL = one Execute (v2)\n"
	"  flags INTEGER);                  -- 1 text truncated, 2 COPY data dropped, 4 cancelled (v2)\n"
	"CREATE TABLE event_errors(event INTEGER PRIMARY KEY, message TEXT);\n"
	"CREATE TABLE event_copy(event INTEGER PRIMARY KEY, data BLOB NOT NULL); -- COPY FROM STDIN data (v2)\n"
	"CREATE TABLE runs(\n"
	"  id INTEGER PRIMARY KEY, label TEXT NOT NULL, target TEXT, options TEXT,\n"
	"  started_us INTEGER NOT NULL, ended_us INTEGER,\n"
	"  executions INTEGER, errors INTEGER, timeouts INTEGER, reconnects INTEGER,\n"
	"  per_second REAL, summary TEXT);\n"
	"CREATE INDEX runs_label ON runs(label);\n"
	"CREATE TABLE samples(\n"
	"  id INTEGER PRIMARY KEY, run INTEGER NOT NULL, event INTEGER NOT NULL,\n"
	"  round INTEGER NOT NULL, latency_us INTEGER NOT NULL, rows INTEGER, sqlstate TEXT);\n"
	"CREATE INDEX samples_run ON samples(run, event);\n"
	"CREATE TABLE plans(\n"
	"  run INTEGER NOT NULL, pattern INTEGER NOT NULL, event INTEGER, plan TEXT NOT NULL,\n"
	"  PRIMARY KEY(run, pattern));\n"
	"CREATE VIEW patterns_v AS SELECT id, printf('%016x', fingerprint) AS fingerprint, normalized,\n"
	"  count, errors, CASE WHEN timed > 0 THEN total_us * 1.0 / timed END AS mean_us, parse_error\n"
	"  FROM patterns;\n"
	"CREATE VIEW events_v AS SELECT e.id, e.session, e.seq, s.started_us + e.offset_us AS start_us,\n"
	"  e.duration_us, printf('%016x', p.fingerprint) AS fingerprint, p.normalized, e.rows, e.sqlstate\n"
	"  FROM events e JOIN sessions s ON s.id = e.session JOIN statements st ON st.id = e.statement\n"
	"  JOIN patterns p ON p.id = st.pattern;\n";

/* Upgrades a schema 1 store in place (one transaction; docs/store.md). Unparsable
 * patterns of a v1 store keep a NULL fingerprint. */
static const char migrate_v2_sql[] =
	"BEGIN IMMEDIATE;\n"
	"ALTER TABLE sessions ADD COLUMN params TEXT;\n"
	"ALTER TABLE events ADD COLUMN fetch INTEGER;\n"
	"ALTER TABLE events ADD COLUMN flags INTEGER;\n"
	"CREATE TABLE event_copy(event INTEGER PRIMARY KEY, data BLOB NOT NULL);\n"
	"PRAGMA user_version = 2;\n"
	"COMMIT;";

/* The statements a handle prepares on first use and keeps (SCRY__SQ_*). */
static const char *const kept_sql[SCRY__SQ_COUNT] = {
	[SCRY__SQ_INSERT_EVENT] = "INSERT INTO events(session, seq, offset_us, duration_us, statement,"
	                          " literals, params, rows, sqlstate, kind, fetch, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
	[SCRY__SQ_INSERT_STATEMENT] = "INSERT INTO statements(hash, pattern, template, literals) VALUES (?,?,?,?)",
	[SCRY__SQ_INSERT_PATTERN] = "INSERT INTO patterns(fingerprint, normalized, parse_error, count, errors,"
	                            " total_us, timed, first_us, last_us) VALUES (?,?,?,0,0,0,0,?,?)",
	[SCRY__SQ_FIND_PATTERN] = "SELECT id FROM patterns WHERE fingerprint = ?",
	[SCRY__SQ_UPDATE_PATTERN] = "UPDATE patterns SET count = count + ?, errors = errors + ?, total_us = total_us + ?,"
	                            " timed = timed + ?, first_us = min(first_us, ?), last_us = max(last_us, ?) WHERE id = ?",
	[SCRY__SQ_INSERT_SESSION] = "INSERT INTO sessions(source, database, user_name, application, client, started_us,"
	                            " events) VALUES (?,?,?,?,?,?,0)",
	[SCRY__SQ_FIND_SESSION] = "SELECT started_us, events FROM sessions WHERE id = ?",
	[SCRY__SQ_UPDATE_SESSION] = "UPDATE sessions SET events = ? WHERE id = ?",
	[SCRY__SQ_INSERT_ERROR] = "INSERT INTO event_errors(event, message) VALUES (?,?)",
	[SCRY__SQ_INSERT_SAMPLE] = "INSERT INTO samples(run, event, round, latency_us, rows, sqlstate) VALUES (?,?,?,?,?,?)",
};

sqlite3 *scry__store_sqlite(scry_store *s) { return s ? s->db : NULL; }

int scry__store_fail(scry_store *s, scry_error *err, const char *what)
{
	int code = s && s->db ? sqlite3_extended_errcode(s->db) : 0;
	const char *msg = s && s->db ? sqlite3_errmsg(s->db) : "no database";
	const char *path = s && s->path ? s->path : "";
	int primary = code & 0xff;
	if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
		return scry__fail_sys(err, SCRY_ECORRUPT, code,
		                      "%s: the store %s is corrupt (%s); restore it from a copy or capture again into a new file",
		                      what, path, msg);
	if (primary == SQLITE_FULL)
		return scry__fail_sys(err, SCRY_ESTORE, code, "%s: disk full writing %s (%s); free space and retry", what,
		                      path, msg);
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
		return scry__fail_sys(err, SCRY_ESTORE, code,
		                      "%s: the store %s is locked by another process (%s); retry when it is done", what,
		                      path, msg);
	if (primary == SQLITE_READONLY)
		return scry__fail_sys(err, SCRY_ESTORE, code, "%s: the store %s is read-only (%s)", what, path, msg);
	return scry__fail_sys(err, SCRY_ESTORE, code, "%s: %s", what, msg);
}

void scry_store_options_init(scry_store_options *o) { *o = (scry_store_options)SCRY_STORE_OPTIONS_INIT; }

const char *scry_store_path(const scry_store *s) { return s ? s->path : NULL; }

/* ------------------------------------------------------------------ */
/* SQL helpers                                                         */
/* ------------------------------------------------------------------ */

int scry__store_bind(sqlite3_stmt *q, const scry__sqlv *v, int n)
{
	int rc = SQLITE_OK;
	for (int i = 0; i < n && rc == SQLITE_OK; i++) {
		const scry__sqlv *x = &v[i];
		switch (x->type) {
		case 'i':
			rc = sqlite3_bind_int64(q, i + 1, x->i);
			break;
		case 'd':
			rc = sqlite3_bind_double(q, i + 1, x->d);
			break;
		case 't':
			rc = x->n < 0 ? sqlite3_bind_text(q, i + 1, x->p, -1, SQLITE_STATIC)
			              : sqlite3_bind_text64(q, i + 1, x->p, (sqlite3_uint64)x->n, SQLITE_STATIC, SQLITE_UTF8);
			break;
		case 'b':
			rc = sqlite3_bind_blob64(q, i + 1, x->p, (sqlite3_uint64)x->n, SQLITE_STATIC);
			break;
		default:
			rc = sqlite3_bind_null(q, i + 1);
		}
	}
	return rc;
}

int scry__store_exec(scry_store *s, const char *sql, scry_error *err, const char *what)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, what);
	return 0;
}

int scry__store_prepare(scry_store *s, const char *sql, sqlite3_stmt **q, scry_error *err, const char *what)
{
	if (sqlite3_prepare_v2(s->db, sql, -1, q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, what);
	return 0;
}

int scry__store_step(scry_store *s, sqlite3_stmt *q, scry_error *err, const char *what)
{
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW)
		return 1;
	return r == SQLITE_DONE ? 0 : scry__store_fail(s, err, what);
}

/* Binds v to q (prepared or kept) and runs it to its end. */
static int bind_run(scry_store *s, sqlite3_stmt *q, const scry__sqlv *v, int n, scry_error *err, const char *what)
{
	if (scry__store_bind(q, v, n) != SQLITE_OK || sqlite3_step(q) != SQLITE_DONE)
		return scry__store_fail(s, err, what);
	return 0;
}

int scry__store_run(scry_store *s, const char *sql, const scry__sqlv *v, int n, scry_error *err, const char *what)
{
	sqlite3_stmt *q;
	int rc = scry__store_prepare(s, sql, &q, err, what);
	if (rc)
		return rc;
	rc = bind_run(s, q, v, n, err, what);
	sqlite3_finalize(q); /* its error, if any, is rc's */
	return rc;
}

int scry__store_row(scry_store *s, const char *sql, const scry__sqlv *v, int n, sqlite3_stmt **q, scry_error *err,
                    const char *what)
{
	*q = NULL;
	sqlite3_stmt *st;
	int rc = scry__store_prepare(s, sql, &st, err, what);
	if (rc)
		return rc;
	rc = scry__store_bind(st, v, n) != SQLITE_OK ? scry__store_fail(s, err, what) : scry__store_step(s, st, err, what);
	if (rc == 1)
		*q = st;
	else
		sqlite3_finalize(st);
	return rc;
}

int scry__store_int(scry_store *s, const char *sql, int64_t *v, scry_error *err, const char *what)
{
	sqlite3_stmt *q;
	*v = 0;
	int rc = scry__store_row(s, sql, NULL, 0, &q, err, what);
	if (rc == 1) {
		*v = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
		rc = 0;
	}
	return rc;
}

void *scry__cursor_open(scry_store *s, const char *sql, size_t size, int *rc, scry_error *err, const char *what)
{
	scry__cursor *c = scry__calloc(1, size);
	if (!c) {
		*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		return NULL;
	}
	c->store = s;
	if ((*rc = scry__store_prepare(s, sql, &c->q, err, what)) != 0) {
		scry__free(c);
		return NULL;
	}
	return c;
}

int scry__cursor_next(scry__cursor *c, scry_error *err, const char *what)
{
	return scry__store_step(c->store, c->q, err, what);
}

int scry__cursor_row(scry__cursor *c, const void *out, scry_error *err, const char *fn, const char *what)
{
	if (!c || !out)
		return scry__fail(err, SCRY_EINVAL, "%s: arguments are required", fn);
	return scry__cursor_next(c, err, what);
}

void scry__cursor_free(scry__cursor *c)
{
	if (!c)
		return;
	sqlite3_finalize(c->q);
	scry__free(c);
}

static sqlite3_stmt *kept(scry_store *s, int which)
{
	if (!s->q[which] && sqlite3_prepare_v3(s->db, kept_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s->q[which],
	                                       NULL) != SQLITE_OK)
		return NULL;
	sqlite3_reset(s->q[which]); /* returns the last step's error, already reported */
	sqlite3_clear_bindings(s->q[which]);
	return s->q[which];
}

int scry__store_run_kept(scry_store *s, int which, const scry__sqlv *v, int n, scry_error *err, const char *what)
{
	sqlite3_stmt *q = kept(s, which);
	return q ? bind_run(s, q, v, n, err, what) : scry__store_fail(s, err, what);
}

int scry__store_kept_row(scry_store *s, int which, const scry__sqlv *v, int n, scry_error *err, const char *what)
{
	sqlite3_stmt *q = kept(s, which);
	if (!q || scry__store_bind(q, v, n) != SQLITE_OK)
		return scry__store_fail(s, err, what);
	return scry__store_step(s, q, err, what);
}

void scry__store_cleanup(scry_store *s, const char *sql)
{
	(void)sqlite3_exec(s->db, sql, NULL, NULL, NULL); /* its result is moot: store_internal.h */
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

/* Checks that an existing file looks like SQLite before SQLite touches it. */
static int check_file_header(const char *path, bool *exists, scry_error *err)
{
	struct stat st;
	*exists = stat(path, &st) == 0;
	if (!*exists || st.st_size == 0)
		return 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot read %s: %s", path, strerror(errno));
	char head[16] = { 0 };
	size_t n = fread(head, 1, sizeof head, f);
	fclose(f);
	if (n < 16 || memcmp(head, "SQLite format 3", 16) != 0)
		return scry__fail(err, SCRY_ECORRUPT,
		                  "%s is not a scry store (not a SQLite database); it was left untouched. "
		                  "Pass --store with another file name", path);
	return 0;
}

/* Runs a script that opens and commits its own transaction, undone if it fails. */
static int exec_script(scry_store *s, const char *sql, scry_error *err, const char *what)
{
	int rc = scry__store_exec(s, sql, err, what);
	if (rc)
		scry__store_cleanup(s, "ROLLBACK");
	return rc;
}

static int setup_schema(scry_store *s, bool read_only, scry_error *err)
{
	int64_t tables, version;
	/* Reading the schema is what detects a corrupt file or a non-database. */
	int rc = scry__store_int(s, "SELECT count(*) FROM sqlite_master", &tables, err, "opening the store");
	if (rc || (rc = scry__store_int(s, "PRAGMA user_version", &version, err, "reading the store version")))
		return rc;
	if (version > SCRY_STORE_SCHEMA_VERSION)
		return scry__fail(err, SCRY_ESCHEMA,
		                  "%s was written by a newer scry (store schema %lld; this scry %s reads up to %d); "
		                  "upgrade scry to read it",
		                  s->path, (long long)version, scry_version(), SCRY_STORE_SCHEMA_VERSION);
	if (version == 0 && tables > 0)
		return scry__fail(err, SCRY_ESCHEMA,
		                  "%s is a SQLite database but not a scry store; it was left untouched. "
		                  "Pass --store with another file name", s->path);
	if (version > 0 && version < SCRY_STORE_SCHEMA_VERSION && !read_only) {
		/* v1 -> v2: portals, COPY data, session parameters, event flags. */
		if ((rc = exec_script(s, migrate_v2_sql, err, "upgrading the store to schema 2")) != 0)
			return rc;
		version = SCRY_STORE_SCHEMA_VERSION;
	}
	s->schema = (int)(version ? version : SCRY_STORE_SCHEMA_VERSION);
	if (version != 0)
		return 0;
	if (read_only)
		return scry__fail(err, SCRY_ENOTFOUND, "%s is an empty store", s->path);
	char sql[sizeof schema_sql + 256];
	snprintf(sql, sizeof sql, "BEGIN;\n%sPRAGMA user_version = %d;\nCOMMIT;", schema_sql, SCRY_STORE_SCHEMA_VERSION);
	return exec_script(s, sql, err, "creating the store schema");
}

/* Opens the SQLite file of a new handle (created 0600 when it is new). */
static int open_db(scry_store *s, const char *path, bool exists, const scry_store_options *o, scry_error *err)
{
	int flags = o->read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	flags |= SQLITE_OPEN_NOMUTEX; /* one thread per handle, by contract */
	if (!exists && !o->read_only && strcmp(path, ":memory:") && *path) {
		/* Query texts and parameters are the application's data: the store
		 * is created 0600 (SQLite gives its -wal/-shm files the same mode). */
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK)
		return s->db ? scry__store_fail(s, err, "opening the store")
		             : scry__fail(err, SCRY_ENOMEM, "out of memory opening %s", path);
	if (sqlite3_extended_result_codes(s->db, 1) != SQLITE_OK || sqlite3_busy_timeout(s->db, 10000) != SQLITE_OK)
		return scry__store_fail(s, err, "opening the store");
	return 0;
}

/* The connection's settings: WAL and durability for a writer, a 16 MiB page cache. */
static int configure(scry_store *s, const scry_store_options *o, scry_error *err)
{
	int rc = 0;
	if (!o->read_only &&
	    ((rc = scry__store_exec(s, "PRAGMA journal_mode=WAL", err, "enabling WAL")) != 0 ||
	     (rc = scry__store_exec(s, o->durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err,
	                            "setting synchronous")) != 0))
		return rc;
	/* A smaller cache only costs speed: its failure is not the caller's. */
	(void)sqlite3_exec(s->db, "PRAGMA cache_size=-16384", NULL, NULL, NULL);
	return 0;
}

int scry_store_open(scry_store **out, const char *path, const scry_store_options *opts, scry_error *err)
{
	if (!out || !path || !*path)
		return scry__fail(err, SCRY_EINVAL, "scry_store_open: a path is required");
	*out = NULL;
	scry_store_options o;
	int vrc = scry__opts_copy(err, &scry__abi_store_options, &o, opts);
	if (vrc)
		return vrc;
	bool exists;
	int rc = check_file_header(path, &exists, err);
	if (rc)
		return rc;
	if (!exists && (o.must_exist || o.read_only))
		return scry__fail(err, SCRY_ENOTFOUND, "no workload store at %s", path);

	scry_store *s = scry__calloc(1, sizeof *s);
	if (!s || !(s->path = scry__strdup(path))) {
		scry__free(s);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	if ((rc = open_db(s, path, exists, &o, err)) != 0 || (rc = setup_schema(s, o.read_only, err)) != 0 ||
	    (rc = configure(s, &o, err)) != 0 || (rc = scry_fingerprinter_new(&s->fpr, NULL, err)) != 0) {
		scry_store_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void scry_store_free(scry_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < SCRY__SQ_COUNT; i++)
		sqlite3_finalize(s->q[i]);
	if (s->db)
		sqlite3_close_v2(s->db);
	scry__store_forget_caches(s);
	scry__free(s->stmts);
	scry__free(s->patterns);
	scry__free(s->sessions);
	scry__u64map_free(&s->session_map);
	scry_fingerprinter_free(s->fpr);
	scry_buf_dispose(&s->tmpl);
	scry_buf_dispose(&s->lits);
	scry_buf_dispose(&s->params);
	scry_buf_dispose(&s->text);
	scry__free(s->path);
	scry__free(s);
}

/* ------------------------------------------------------------------ */
/* Imported log files (scry_logimport_feed_file recognises them): the  */
/* table is created on first use, so stores made before it need no     */
/* migration.                                                          */
/* ------------------------------------------------------------------ */

static const char log_files_sql[] =
	"CREATE TABLE IF NOT EXISTS log_files(\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT,\n"
	"  size INTEGER NOT NULL,\n"
	"  first_hash INTEGER NOT NULL,\n"
	"  last_hash INTEGER NOT NULL,\n"
	"  imported_us INTEGER NOT NULL);\n"
	"CREATE INDEX IF NOT EXISTS log_files_first ON log_files(first_hash);";

int scry_store_log_file_add(scry_store *s, const scry_log_file *file, scry_error *err)
{
	if (!s || !file)
		return scry__fail(err, SCRY_EINVAL, "scry_store_log_file_add: store and file are required");
	scry_log_file fcopy;
	int rc = scry__opts_copy(err, &scry__abi_log_file, &fcopy, file);
	if (rc || (rc = scry__store_exec(s, log_files_sql, err, "creating the log_files table")))
		return rc;
	const scry_log_file *f = &fcopy;
	return scry__store_run(s, "INSERT INTO log_files(name, size, first_hash, last_hash, imported_us) VALUES (?,?,?,?,?)",
	                       SCRY__VALUES(SCRY__TEXT(f->name), SCRY__INT((int64_t)f->size),
	                                    SCRY__INT((int64_t)f->first_hash), SCRY__INT((int64_t)f->last_hash),
	                                    SCRY__INT(scry__now_us())),
	                       err, "recording an imported log file");
}

int scry_store_log_files_find(scry_store *s, uint64_t first_hash, scry_log_file *out, size_t elem_size, size_t cap,
                              size_t *n, scry_error *err)
{
	if (!s || !n || (cap && !out))
		return scry__fail(err, SCRY_EINVAL, "scry_store_log_files_find: arguments are required");
	*n = 0;
	static const char what[] = "reading imported log files";
	int rc = cap ? scry__elem_check(err, &scry__abi_log_file, elem_size) : 0;
	if (rc || (rc = scry__store_exec(s, log_files_sql, err, "creating the log_files table")))
		return rc;
	sqlite3_stmt *st;
	if ((rc = scry__store_prepare(s, "SELECT size, last_hash, imported_us FROM log_files WHERE first_hash = ?"
	                                 " ORDER BY size DESC", &st, err, what)) != 0)
		return rc;
	if (scry__store_bind(st, SCRY__VALUES(SCRY__INT((int64_t)first_hash))) != SQLITE_OK)
		rc = scry__store_fail(s, err, what);
	while (!rc && (rc = scry__store_step(s, st, err, what)) == 1) {
		rc = 0;
		if (*n < cap) {
			/* Written as the caller's (possibly older, shorter) element. */
			scry_log_file f = { SCRY_LOG_FILE_VERSION, NULL, (uint64_t)sqlite3_column_int64(st, 0), first_hash,
			                    (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2) };
			memcpy((char *)out + *n * elem_size, &f, elem_size < sizeof f ? elem_size : sizeof f);
		}
		(*n)++;
	}
	sqlite3_finalize(st);
	if (*n > cap)
		*n = cap;
	return rc;
}
