/*
 * lib/store.c - the SQLite workload store (schema in docs/store.md).
 *
 * Texts are stored once, as templates: the literal-lifting lexer
 * (lib/fingerprint.c) replaces each literal of a DML text with a marker, and
 * the literals go with the event. A stream of one query with varying
 * constants then costs one `statements` row plus a few bytes per event, and
 * the exact text is rebuilt on read. Statement and pattern ids are cached in
 * memory so that an append touches SQLite only to insert rows.
 */
#include "internal.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* The store                                                           */
/* ------------------------------------------------------------------ */

typedef struct stmt_entry {
	int64_t id;
	int64_t pattern_index; /* into patterns[] */
	char *template_text;   /* to rule out hash collisions */
	size_t template_len;
	int nlits;             /* 0: the template is a raw text (it may hold marker bytes) */
} stmt_entry;

typedef struct pattern_entry {
	int64_t id;
	/* deltas accumulated during a batch, flushed at its end */
	int64_t d_count, d_errors, d_total_us, d_timed, first_us, last_us;
	bool dirty;
} pattern_entry;

typedef struct session_entry {
	int64_t id;
	int64_t started_us;
	int64_t events; /* sequence number of its last event */
	bool dirty;
} session_entry;

enum {
	Q_INSERT_EVENT,
	Q_INSERT_STATEMENT,
	Q_INSERT_PATTERN,
	Q_FIND_PATTERN,
	Q_UPDATE_PATTERN,
	Q_INSERT_SESSION,
	Q_FIND_SESSION,
	Q_UPDATE_SESSION,
	Q_INSERT_ERROR,
	Q_INSERT_SAMPLE,
	Q_COUNT
};

static const char *const query_sql[Q_COUNT] = {
	[Q_INSERT_EVENT] = "INSERT INTO events(session, seq, offset_us, duration_us, statement,"
	                   " literals, params, rows, sqlstate, kind, fetch, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
	[Q_INSERT_STATEMENT] = "INSERT INTO statements(hash, pattern, template, literals) VALUES (?,?,?,?)",
	[Q_INSERT_PATTERN] = "INSERT INTO patterns(fingerprint, normalized, parse_error, count, errors,"
	                     " total_us, timed, first_us, last_us) VALUES (?,?,?,0,0,0,0,?,?)",
	[Q_FIND_PATTERN] = "SELECT id FROM patterns WHERE fingerprint = ?",
	[Q_UPDATE_PATTERN] = "UPDATE patterns SET count = count + ?, errors = errors + ?, total_us = total_us + ?,"
	                     " timed = timed + ?, first_us = min(first_us, ?), last_us = max(last_us, ?) WHERE id = ?",
	[Q_INSERT_SESSION] = "INSERT INTO sessions(source, database, user_name, application, client, started_us, events)"
	                     " VALUES (?,?,?,?,?,?,0)",
	[Q_FIND_SESSION] = "SELECT started_us, events FROM sessions WHERE id = ?",
	[Q_UPDATE_SESSION] = "UPDATE sessions SET events = ? WHERE id = ?",
	[Q_INSERT_ERROR] = "INSERT INTO event_errors(event, message) VALUES (?,?)",
	[Q_INSERT_SAMPLE] = "INSERT INTO samples(run, event, round, latency_us, rows, sqlstate) VALUES (?,?,?,?,?,?)",
};

struct scry_store {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *q[Q_COUNT];
	scry_fingerprinter *fpr;
	scry__u64map stmt_map;      /* XXH3(template) -> stmts[] */
	stmt_entry *stmts;
	size_t nstmts, astmts;
	scry__u64map pattern_map;   /* fingerprint -> patterns[] */
	pattern_entry *patterns;
	size_t npatterns, apatterns;
	scry__u64map session_map;   /* session id -> sessions[] */
	session_entry *sessions;
	size_t nsessions, asessions;
	bool caches_loaded;
	bool txn_open;              /* scry_store_begin() without commit/rollback yet */
	scry_buf tmpl, lits, params, text;
	int schema;                 /* user_version of the file (older read-only stores stay old) */
};

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


sqlite3 *scry__store_sqlite(scry_store *s) { return s ? s->db : NULL; }

int scry__store_fail(scry_store *s, scry_error *err, const char *what)
{
	int code = s && s->db ? sqlite3_extended_errcode(s->db) : 0;
	const char *msg = s && s->db ? sqlite3_errmsg(s->db) : "no database";
	int primary = code & 0xff;
	if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
		return scry__fail_sys(err, SCRY_ECORRUPT, code,
		                      "%s: the store %s is corrupt (%s); restore it from a copy or capture again into a new file",
		                      what, s && s->path ? s->path : "", msg);
	if (primary == SQLITE_FULL)
		return scry__fail_sys(err, SCRY_ESTORE, code, "%s: disk full writing %s (%s); free space and retry",
		                      what, s && s->path ? s->path : "", msg);
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
		return scry__fail_sys(err, SCRY_ESTORE, code,
		                      "%s: the store %s is locked by another process (%s); retry when it is done",
		                      what, s && s->path ? s->path : "", msg);
	if (primary == SQLITE_READONLY)
		return scry__fail_sys(err, SCRY_ESTORE, code, "%s: the store %s is read-only (%s)", what,
		                      s && s->path ? s->path : "", msg);
	return scry__fail_sys(err, SCRY_ESTORE, code, "%s: %s", what, msg);
}

void scry_store_options_init(scry_store_options *o) { *o = (scry_store_options)SCRY_STORE_OPTIONS_INIT; }

const char *scry_store_path(const scry_store *s) { return s ? s->path : NULL; }

static int exec_sql(scry_store *s, const char *sql, scry_error *err, const char *what)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, what);
	return 0;
}

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

static int64_t query_int(scry_store *s, const char *sql, int *rc)
{
	sqlite3_stmt *st;
	int64_t v = 0;
	*rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (*rc != SQLITE_OK)
		return 0;
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else if (r != SQLITE_DONE)
		*rc = r;
	sqlite3_finalize(st);
	return v;
}

static int setup_schema(scry_store *s, bool read_only, scry_error *err)
{
	int rc;
	/* Reading the schema is what detects a corrupt file or a non-database. */
	int64_t tables = query_int(s, "SELECT count(*) FROM sqlite_master", &rc);
	if (rc != SQLITE_OK)
		return scry__store_fail(s, err, "opening the store");
	int64_t version = query_int(s, "PRAGMA user_version", &rc);
	if (rc != SQLITE_OK)
		return scry__store_fail(s, err, "reading the store version");
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
		if (sqlite3_exec(s->db, migrate_v2_sql, NULL, NULL, NULL) != SQLITE_OK) {
			int r = scry__store_fail(s, err, "upgrading the store to schema 2");
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return r;
		}
		version = SCRY_STORE_SCHEMA_VERSION;
	}
	s->schema = (int)(version ? version : SCRY_STORE_SCHEMA_VERSION);
	if (version == 0) {
		if (read_only)
			return scry__fail(err, SCRY_ENOTFOUND, "%s is an empty store", s->path);
		char sql[sizeof schema_sql + 256];
		snprintf(sql, sizeof sql, "BEGIN;\n%sPRAGMA user_version = %d;\nCOMMIT;", schema_sql,
		         SCRY_STORE_SCHEMA_VERSION);
		if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
			int r = scry__store_fail(s, err, "creating the store schema");
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return r;
		}
	}
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
	int flags = o.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	flags |= SQLITE_OPEN_NOMUTEX; /* one thread per handle, by contract */
	if (!exists && !o.read_only && strcmp(path, ":memory:") && *path) {
		/* Query texts and parameters are the application's data: the store
		 * is created 0600 (SQLite gives its -wal/-shm files the same mode). */
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		rc = s->db ? scry__store_fail(s, err, "opening the store")
		           : scry__fail(err, SCRY_ENOMEM, "out of memory opening %s", path);
		scry_store_free(s);
		return rc;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 10000);
	if ((rc = setup_schema(s, o.read_only, err)) != 0) {
		scry_store_free(s);
		return rc;
	}
	if (!o.read_only) {
		if ((rc = exec_sql(s, "PRAGMA journal_mode=WAL", err, "enabling WAL")) != 0 ||
		    (rc = exec_sql(s, o.durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err,
		                   "setting synchronous")) != 0) {
			scry_store_free(s);
			return rc;
		}
	}
	exec_sql(s, "PRAGMA cache_size=-16384", NULL, "");
	if ((rc = scry_fingerprinter_new(&s->fpr, NULL, err)) != 0) {
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
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->q[i]);
	if (s->db)
		sqlite3_close_v2(s->db);
	for (size_t i = 0; i < s->nstmts; i++)
		scry__free(s->stmts[i].template_text);
	scry__free(s->stmts);
	scry__free(s->patterns);
	scry__free(s->sessions);
	scry__u64map_free(&s->stmt_map);
	scry__u64map_free(&s->pattern_map);
	scry__u64map_free(&s->session_map);
	scry_fingerprinter_free(s->fpr);
	scry_buf_dispose(&s->tmpl);
	scry_buf_dispose(&s->lits);
	scry_buf_dispose(&s->params);
	scry_buf_dispose(&s->text);
	scry__free(s->path);
	scry__free(s);
}


void scry__store_forget_caches(scry_store *s)
{
	for (size_t i = 0; i < s->nstmts; i++)
		scry__free(s->stmts[i].template_text);
	s->nstmts = 0;
	s->npatterns = 0;
	scry__u64map_free(&s->stmt_map);
	scry__u64map_free(&s->pattern_map);
	s->caches_loaded = false;
}

static sqlite3_stmt *prepared(scry_store *s, int which)
{
	if (!s->q[which] && sqlite3_prepare_v3(s->db, query_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
	                                       &s->q[which], NULL) != SQLITE_OK)
		return NULL;
	sqlite3_reset(s->q[which]);
	sqlite3_clear_bindings(s->q[which]);
	return s->q[which];
}

/* Loads statement and pattern ids of an existing store into memory, once. */
static int load_caches(scry_store *s, scry_error *err)
{
	if (s->caches_loaded)
		return 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT id, fingerprint FROM patterns ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "loading patterns");
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (scry__array_grow((void **)&s->patterns, &s->apatterns, s->npatterns, sizeof *s->patterns, 256)) {
			sqlite3_finalize(st);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		pattern_entry *p = &s->patterns[s->npatterns];
		memset(p, 0, sizeof *p);
		p->id = sqlite3_column_int64(st, 0);
		if (sqlite3_column_type(st, 1) != SQLITE_NULL &&
		    scry__u64map_put(&s->pattern_map, (uint64_t)sqlite3_column_int64(st, 1), (uint32_t)s->npatterns + 1)) {
			sqlite3_finalize(st);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		s->npatterns++;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return scry__store_fail(s, err, "loading patterns");
	if (sqlite3_prepare_v2(s->db, "SELECT id, hash, pattern, template, literals FROM statements ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return scry__store_fail(s, err, "loading statements");
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (scry__array_grow((void **)&s->stmts, &s->astmts, s->nstmts, sizeof *s->stmts, 256)) {
			sqlite3_finalize(st);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		stmt_entry *e = &s->stmts[s->nstmts];
		e->id = sqlite3_column_int64(st, 0);
		int64_t pattern_id = sqlite3_column_int64(st, 2);
		e->pattern_index = -1;
		for (size_t i = 0; i < s->npatterns; i++) /* ids are dense: usually i == id-1 */
			if (s->patterns[(pattern_id - 1 + i) % s->npatterns].id == pattern_id) {
				e->pattern_index = (int64_t)((pattern_id - 1 + i) % s->npatterns);
				break;
			}
		e->nlits = sqlite3_column_int(st, 4);
		e->template_len = (size_t)sqlite3_column_bytes(st, 3);
		e->template_text = scry__strndup((const char *)sqlite3_column_text(st, 3), e->template_len);
		if (!e->template_text || e->pattern_index < 0 ||
		    scry__u64map_put(&s->stmt_map, (uint64_t)sqlite3_column_int64(st, 1), (uint32_t)s->nstmts + 1)) {
			scry__free(e->template_text);
			sqlite3_finalize(st);
			return scry__fail(err, SCRY_ECORRUPT, "the store's statements table is inconsistent");
		}
		s->nstmts++;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return scry__store_fail(s, err, "loading statements");
	s->caches_loaded = true;
	return 0;
}

int scry_store_session_add(scry_store *s, const scry_session_info *info, int64_t *session_id, scry_error *err)
{
	static const char *const sources[] = { "api", "proxy", "csvlog", "jsonlog", "stderr" };
	if (!s || !info || !session_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_add: arguments are required");
	scry_session_info icopy;
	int vrc = scry__opts_copy(err, &scry__abi_session_info, &icopy, info);
	if (vrc)
		return vrc;
	info = &icopy;
	sqlite3_stmt *q = prepared(s, Q_INSERT_SESSION);
	if (!q)
		return scry__store_fail(s, err, "adding a session");
	unsigned src = (unsigned)info->source < 5 ? (unsigned)info->source : 0;
	sqlite3_bind_text(q, 1, sources[src], -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, info->database, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 3, info->user, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 4, info->application, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 5, info->client, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 6, info->started_us);
	if (sqlite3_step(q) != SQLITE_DONE)
		return scry__store_fail(s, err, "adding a session");
	*session_id = sqlite3_last_insert_rowid(s->db);
	if (scry__array_grow((void **)&s->sessions, &s->asessions, s->nsessions, sizeof *s->sessions, 256) ||
	    scry__u64map_put(&s->session_map, (uint64_t)*session_id, (uint32_t)s->nsessions + 1))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	s->sessions[s->nsessions++] = (session_entry){ *session_id, info->started_us, 0, false };
	return 0;
}

int scry_store_session_end(scry_store *s, int64_t session_id, int64_t ended_us, scry_error *err)
{
	sqlite3_stmt *q;
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_end: store is NULL");
	if (sqlite3_prepare_v2(s->db, "UPDATE sessions SET ended_us = ? WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "ending a session");
	sqlite3_bind_int64(q, 1, ended_us);
	sqlite3_bind_int64(q, 2, session_id);
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	return r == SQLITE_DONE ? 0 : scry__store_fail(s, err, "ending a session");
}

int scry_store_session_set_params(scry_store *s, int64_t session_id, const char *params, scry_error *err)
{
	sqlite3_stmt *q;
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_session_set_params: store is NULL");
	if (sqlite3_prepare_v2(s->db, "UPDATE sessions SET params = ? WHERE id = ?", -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "recording session parameters");
	if (params && *params)
		sqlite3_bind_text(q, 1, params, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, session_id);
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(s, err, "recording session parameters");
	return sqlite3_changes(s->db) ? 0 : scry__fail(err, SCRY_ENOTFOUND, "session %lld does not exist", (long long)session_id);
}

static session_entry *find_session(scry_store *s, int64_t id, scry_error *err, int *rc)
{
	uint32_t k = scry__u64map_get(&s->session_map, (uint64_t)id);
	if (k)
		return &s->sessions[k - 1];
	sqlite3_stmt *q = prepared(s, Q_FIND_SESSION);
	if (!q) {
		*rc = scry__store_fail(s, err, "finding a session");
		return NULL;
	}
	sqlite3_bind_int64(q, 1, id);
	if (sqlite3_step(q) != SQLITE_ROW) {
		*rc = scry__fail(err, SCRY_ENOTFOUND, "event refers to session %lld, which does not exist", (long long)id);
		return NULL;
	}
	if (scry__array_grow((void **)&s->sessions, &s->asessions, s->nsessions, sizeof *s->sessions, 256) ||
	    scry__u64map_put(&s->session_map, (uint64_t)id, (uint32_t)s->nsessions + 1)) {
		*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		return NULL;
	}
	session_entry *e = &s->sessions[s->nsessions++];
	*e = (session_entry){ id, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1), false };
	return e;
}

/* Finds or creates the pattern of a text; returns its index in patterns[]. */
static int pattern_for(scry_store *s, const char *text, size_t len, bool truncated, int64_t now_us, int64_t *index,
                       scry_error *err)
{
	uint64_t fp = 0;
	scry_error perr = SCRY_ERROR_INIT;
	/* A truncated text is never fingerprinted: its cut may still parse, as something else. */
	int prc = truncated ? SCRY_EPARSE : scry_fingerprint_compute(s->fpr, text, len, &fp, &perr);
	if (prc && prc != SCRY_EPARSE)
		return scry__fail(err, prc, "%s", perr.message);
	if (prc) /* unparsable (or truncated): a key of its own, the hash of its text */
		fp = XXH3_64bits(text, len) | 1; /* never 0, which means "no key" to readers */
	uint32_t k = scry__u64map_get(&s->pattern_map, fp);
	if (k) {
		*index = k - 1;
		return 0;
	}
	scry__buf_clear(&s->text);
	if (!prc && scry_fingerprint_normalize(text, len, &s->text, NULL) != 0) {
		scry__buf_clear(&s->text);
		if (scry__buf_put(&s->text, text, len))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	sqlite3_stmt *q = prepared(s, Q_INSERT_PATTERN);
	if (!q)
		return scry__store_fail(s, err, "adding a pattern");
	if (prc) {
		sqlite3_bind_int64(q, 1, (int64_t)fp);
		sqlite3_bind_text(q, 2, text, (int)len, SQLITE_TRANSIENT);
		if (truncated)
			sqlite3_bind_text(q, 3, "text truncated at capture (over the capture limit); not replayed", -1,
			                  SQLITE_STATIC);
		else
			sqlite3_bind_text(q, 3, perr.message, -1, SQLITE_TRANSIENT);
	} else {
		sqlite3_bind_int64(q, 1, (int64_t)fp);
		sqlite3_bind_text(q, 2, s->text.ptr ? s->text.ptr : "", (int)s->text.size, SQLITE_TRANSIENT);
		sqlite3_bind_null(q, 3);
	}
	sqlite3_bind_int64(q, 4, now_us);
	sqlite3_bind_int64(q, 5, now_us);
	if (sqlite3_step(q) != SQLITE_DONE)
		return scry__store_fail(s, err, "adding a pattern");
	if (scry__array_grow((void **)&s->patterns, &s->apatterns, s->npatterns, sizeof *s->patterns, 256))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	pattern_entry *p = &s->patterns[s->npatterns];
	memset(p, 0, sizeof *p);
	p->id = sqlite3_last_insert_rowid(s->db);
	if (scry__u64map_put(&s->pattern_map, fp, (uint32_t)s->npatterns + 1))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	*index = (int64_t)s->npatterns++;
	return 0;
}

/* Finds or creates the statement row of the template in s->tmpl. */
static int statement_for(scry_store *s, const char *text, size_t len, int nlits, bool truncated, int64_t start_us,
                         stmt_entry **out, scry_error *err)
{
	uint64_t h = XXH3_64bits(s->tmpl.ptr, s->tmpl.size);
	uint32_t k = scry__u64map_get(&s->stmt_map, h);
	if (k) {
		stmt_entry *e = &s->stmts[k - 1];
		if (e->template_len == s->tmpl.size && (e->nlits > 0) == (nlits > 0) &&
		    !memcmp(e->template_text, s->tmpl.ptr, s->tmpl.size)) {
			*out = e;
			return 0;
		}
		/* A 64-bit hash collision (vanishingly rare), or a raw text holding
		 * marker bytes that equals a template: store the text whole. */
		scry__buf_clear(&s->tmpl);
		scry__buf_clear(&s->lits);
		if (scry__buf_put(&s->tmpl, text, len))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		nlits = 0;
		h = XXH3_64bits(s->tmpl.ptr, s->tmpl.size) ^ 0x5c5c5c5c5c5c5c5cull;
		if ((k = scry__u64map_get(&s->stmt_map, h)) != 0) {
			e = &s->stmts[k - 1];
			if (e->nlits == 0 && e->template_len == len && !memcmp(e->template_text, text, len)) {
				*out = e;
				return 0;
			}
			/* Yet another collision: a new row; the map then names it. */
		}
	}
	int64_t pidx = 0;
	int rc = pattern_for(s, text, len, truncated, start_us, &pidx, err);
	if (rc)
		return rc;
	sqlite3_stmt *q = prepared(s, Q_INSERT_STATEMENT);
	if (!q)
		return scry__store_fail(s, err, "adding a statement");
	sqlite3_bind_int64(q, 1, (int64_t)h);
	sqlite3_bind_int64(q, 2, s->patterns[pidx].id);
	sqlite3_bind_text(q, 3, s->tmpl.ptr ? s->tmpl.ptr : "", (int)s->tmpl.size, SQLITE_STATIC);
	sqlite3_bind_int(q, 4, nlits);
	if (sqlite3_step(q) != SQLITE_DONE)
		return scry__store_fail(s, err, "adding a statement");
	if (scry__array_grow((void **)&s->stmts, &s->astmts, s->nstmts, sizeof *s->stmts, 256))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	stmt_entry *e = &s->stmts[s->nstmts];
	e->id = sqlite3_last_insert_rowid(s->db);
	e->pattern_index = pidx;
	e->nlits = nlits;
	e->template_len = s->tmpl.size;
	e->template_text = scry__strndup(s->tmpl.ptr ? s->tmpl.ptr : "", s->tmpl.size);
	if (!e->template_text || scry__u64map_put(&s->stmt_map, h, (uint32_t)s->nstmts + 1))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	s->nstmts++;
	*out = e;
	return 0;
}

static int append_one(scry_store *s, const scry_event *ev, scry_error *err)
{
	const scry_event *ex = ev; /* the fields of version 2 (zero for an older caller's events) */
	int rc = 0;
	session_entry *sess = find_session(s, ev->session_id, err, &rc);
	if (!sess)
		return rc;
	size_t len = ev->query_len ? ev->query_len : (ev->query ? strlen(ev->query) : 0);
	const char *text = ev->query ? ev->query : "";
	scry__buf_clear(&s->tmpl);
	scry__buf_clear(&s->lits);
	int nlits;
	if (scry__lift_literals(text, len, &s->tmpl, &s->lits, &nlits))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	stmt_entry *st = NULL;
	bool truncated = (ex->flags & SCRY_EVENT_F_TRUNCATED) != 0;
	if (truncated) { /* kept whole, never lifted: it must not share a template with a complete text */
		scry__buf_clear(&s->tmpl);
		scry__buf_clear(&s->lits);
		if (scry__buf_put(&s->tmpl, text, len))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		nlits = 0;
	}
	if ((rc = statement_for(s, text, len, nlits, truncated, ev->start_us, &st, err)) != 0)
		return rc;
	pattern_entry *p = &s->patterns[st->pattern_index];
	bool failed = ev->sqlstate[0] != 0;
	if (!p->dirty) {
		p->dirty = true;
		p->first_us = p->last_us = ev->start_us;
	}
	p->d_count++;
	p->d_errors += failed;
	if (ev->duration_us >= 0) {
		p->d_total_us += ev->duration_us;
		p->d_timed++;
	}
	if (ev->start_us < p->first_us)
		p->first_us = ev->start_us;
	if (ev->start_us > p->last_us)
		p->last_us = ev->start_us;

	sqlite3_stmt *q = prepared(s, Q_INSERT_EVENT);
	if (!q)
		return scry__store_fail(s, err, "appending events");
	sess->events++;
	sess->dirty = true;
	sqlite3_bind_int64(q, 1, ev->session_id);
	sqlite3_bind_int64(q, 2, sess->events);
	sqlite3_bind_int64(q, 3, ev->start_us - sess->started_us);
	if (ev->duration_us >= 0)
		sqlite3_bind_int64(q, 4, ev->duration_us);
	sqlite3_bind_int64(q, 5, st->id);
	if (s->lits.size)
		sqlite3_bind_blob(q, 6, s->lits.ptr, (int)s->lits.size, SQLITE_STATIC);
	if (ev->nparams > 0) {
		scry__buf_clear(&s->params);
		if (scry__pack_params(&s->params, ev->params, ev->nparams))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		sqlite3_bind_blob(q, 7, s->params.ptr, (int)s->params.size, SQLITE_STATIC);
	}
	if (ev->rows >= 0)
		sqlite3_bind_int64(q, 8, ev->rows);
	if (failed)
		sqlite3_bind_text(q, 9, ev->sqlstate, (int)strnlen(ev->sqlstate, 5), SQLITE_STATIC);
	sqlite3_bind_int(q, 10, (int)ev->kind);
	if (ex->fetch_rows > 0)
		sqlite3_bind_int64(q, 11, ex->fetch_rows);
	if (ex->flags)
		sqlite3_bind_int(q, 12, (int)ex->flags);
	if (sqlite3_step(q) != SQLITE_DONE)
		return scry__store_fail(s, err, "appending events");
	int64_t event_id = sqlite3_last_insert_rowid(s->db);
	if (ex->copy_data && ex->copy_len) {
		/* COPY events are rare: prepared when needed (the prepared-statement
		 * array of struct scry_store keeps its layout, see docs/api.md). */
		sqlite3_stmt *qc;
		if (sqlite3_prepare_v2(s->db, "INSERT INTO event_copy(event, data) VALUES (?,?)", -1, &qc, NULL) != SQLITE_OK)
			return scry__store_fail(s, err, "appending events");
		sqlite3_bind_int64(qc, 1, event_id);
		sqlite3_bind_blob64(qc, 2, ex->copy_data, (sqlite3_uint64)ex->copy_len, SQLITE_STATIC);
		int qrc = sqlite3_step(qc);
		sqlite3_finalize(qc);
		if (qrc != SQLITE_DONE)
			return scry__store_fail(s, err, "appending events");
	}
	if (ev->error_message && *ev->error_message) {
		sqlite3_stmt *qe = prepared(s, Q_INSERT_ERROR);
		if (!qe)
			return scry__store_fail(s, err, "appending events");
		sqlite3_bind_int64(qe, 1, event_id);
		sqlite3_bind_text(qe, 2, ev->error_message, -1, SQLITE_STATIC);
		if (sqlite3_step(qe) != SQLITE_DONE)
			return scry__store_fail(s, err, "appending events");
	}
	return 0;
}

/* Writes the batch's pattern and session deltas. */
static int flush_deltas(scry_store *s, scry_error *err)
{
	for (size_t i = 0; i < s->npatterns; i++) {
		pattern_entry *p = &s->patterns[i];
		if (!p->dirty)
			continue;
		sqlite3_stmt *q = prepared(s, Q_UPDATE_PATTERN);
		if (!q)
			return scry__store_fail(s, err, "updating patterns");
		sqlite3_bind_int64(q, 1, p->d_count);
		sqlite3_bind_int64(q, 2, p->d_errors);
		sqlite3_bind_int64(q, 3, p->d_total_us);
		sqlite3_bind_int64(q, 4, p->d_timed);
		sqlite3_bind_int64(q, 5, p->first_us);
		sqlite3_bind_int64(q, 6, p->last_us);
		sqlite3_bind_int64(q, 7, p->id);
		if (sqlite3_step(q) != SQLITE_DONE)
			return scry__store_fail(s, err, "updating patterns");
	}
	for (size_t i = 0; i < s->nsessions; i++) {
		session_entry *e = &s->sessions[i];
		if (!e->dirty)
			continue;
		sqlite3_stmt *q = prepared(s, Q_UPDATE_SESSION);
		if (!q)
			return scry__store_fail(s, err, "updating sessions");
		sqlite3_bind_int64(q, 1, e->events);
		sqlite3_bind_int64(q, 2, e->id);
		if (sqlite3_step(q) != SQLITE_DONE)
			return scry__store_fail(s, err, "updating sessions");
	}
	return 0;
}

static void reset_deltas(scry_store *s)
{
	for (size_t i = 0; i < s->npatterns; i++) {
		pattern_entry *p = &s->patterns[i];
		p->d_count = p->d_errors = p->d_total_us = p->d_timed = 0;
		p->dirty = false;
	}
	for (size_t i = 0; i < s->nsessions; i++)
		s->sessions[i].dirty = false;
}

/* After a failed batch the in-memory caches may name rows that were rolled
 * back: drop them, they are reloaded from the file on the next append. */
static void drop_caches(scry_store *s)
{
	for (size_t i = 0; i < s->nstmts; i++)
		scry__free(s->stmts[i].template_text);
	s->nstmts = s->npatterns = s->nsessions = 0;
	scry__u64map_free(&s->stmt_map);
	scry__u64map_free(&s->pattern_map);
	scry__u64map_free(&s->session_map);
	s->caches_loaded = false;
}

/*
 * One batch (an append) is all or nothing: its own transaction, or a
 * savepoint inside the caller's (scry_store_begin). On failure the batch is
 * undone and the caches, which may name undone rows, are dropped.
 */
static int batch_begin(scry_store *s, scry_error *err, const char *what)
{
	return exec_sql(s, s->txn_open ? "SAVEPOINT scry_batch" : "BEGIN IMMEDIATE", err, what);
}

static int batch_end(scry_store *s, int rc, scry_error *err, const char *what)
{
	if (!rc)
		rc = exec_sql(s, s->txn_open ? "RELEASE scry_batch" : "COMMIT", err, what);
	if (rc) {
		if (s->txn_open) {
			sqlite3_exec(s->db, "ROLLBACK TO scry_batch", NULL, NULL, NULL);
			sqlite3_exec(s->db, "RELEASE scry_batch", NULL, NULL, NULL);
		} else {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		}
		drop_caches(s);
	}
	return rc;
}

int scry_store_begin(scry_store *s, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_begin: store is NULL");
	if (s->txn_open)
		return scry__fail(err, SCRY_EINVAL,
			"a transaction is already open on this store; commit or roll it back first");
	int rc = exec_sql(s, "BEGIN IMMEDIATE", err, "starting a transaction");
	if (!rc)
		s->txn_open = true;
	return rc;
}

int scry_store_commit(scry_store *s, scry_error *err)
{
	if (!s || !s->txn_open)
		return scry__fail(err, SCRY_EINVAL, "scry_store_commit: no transaction is open (scry_store_begin)");
	int rc = exec_sql(s, "COMMIT", err, "committing a transaction");
	if (rc) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		drop_caches(s);
	}
	s->txn_open = false;
	return rc;
}

void scry_store_rollback(scry_store *s)
{
	if (!s || !s->txn_open)
		return;
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->txn_open = false;
	/* Sessions, statements and patterns added since begin are gone: so are their cache entries. */
	drop_caches(s);
}

int scry_store_append(scry_store *s, const scry_event *events, size_t n, size_t event_size, scry_error *err)
{
	if (!s || (n && !events))
		return scry__fail(err, SCRY_EINVAL, "scry_store_append: store and events are required");
	int rc = scry__elem_check(err, &scry__abi_event, event_size);
	if (rc || n == 0)
		return rc;
	rc = load_caches(s, err);
	if (rc)
		return rc;
	if ((rc = batch_begin(s, err, "appending events")) != 0)
		return rc;
	reset_deltas(s);
	scry_event tmp;
	for (size_t i = 0; i < n && !rc; i++)
		rc = append_one(s, scry__elem_get(&scry__abi_event, &tmp, events, i, event_size), err);
	if (!rc)
		rc = flush_deltas(s, err);
	return batch_end(s, rc, err, "committing events");
}

int scry_store_info_get(scry_store *s, scry_store_info *out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_info_get: arguments are required");
	int rc = scry__out_check(err, &scry__abi_store_info, out);
	if (rc)
		return rc;
	scry_store_info info;
	memset(&info, 0, sizeof info);
	sqlite3_stmt *q;
	static const char sql[] =
		"SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sessions),"
		" (SELECT count(*) FROM patterns), (SELECT count(*) FROM statements),"
		" (SELECT count(*) FROM runs), (SELECT count(*) FROM samples),"
		" (SELECT min(first_us) FROM patterns), (SELECT max(last_us) FROM patterns),"
		" (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size)";
	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "reading store counts");
	if (sqlite3_step(q) != SQLITE_ROW) {
		sqlite3_finalize(q);
		return scry__store_fail(s, err, "reading store counts");
	}
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
/* Iterators                                                           */
/* ------------------------------------------------------------------ */

struct scry_event_iter {
	scry_store *store;
	sqlite3_stmt *q;
	scry_stored_event ev;
	scry_buf text;
	scry_param *params;
	int aparams;
	/* scry__store_events_by_id(): the ids to read, one point query each */
	const int64_t *ids;
	size_t nids, pos;
};

/*
 * The columns every event iterator reads (iter_next decodes them), FROM and
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

int scry__store_session_events(scry_store *s, const uint64_t *fps, size_t nfps, scry_event_iter **out,
                               scry_error *err)
{
	*out = NULL;
	scry_buf sql = SCRY_BUF_INIT;
	int rc = event_select(s, &sql);
	if (!rc)
		rc = scry__buf_puts(&sql, " WHERE e.id > ?2 AND e.id <= ?3 AND e.session = ?1");
	if (!rc && fps)
		rc = fingerprint_in(&sql, fps, nfps);
	if (!rc)
		rc = scry__buf_puts(&sql, " ORDER BY e.id LIMIT ?4");
	scry_event_iter *it = rc ? NULL : scry__calloc(1, sizeof *it);
	if (!it) {
		scry_buf_dispose(&sql);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	it->store = s;
	if (sqlite3_prepare_v2(s->db, sql.ptr, -1, &it->q, NULL) != SQLITE_OK) {
		rc = scry__store_fail(s, err, "reading events");
		scry_buf_dispose(&sql);
		scry_event_iter_free(it);
		return rc;
	}
	scry_buf_dispose(&sql);
	*out = it;
	return 0;
}

void scry__event_iter_rebind(scry_event_iter *it, int64_t session, int64_t after_id, int64_t last_id, int limit)
{
	sqlite3_reset(it->q);
	sqlite3_bind_int64(it->q, 1, session);
	sqlite3_bind_int64(it->q, 2, after_id);
	sqlite3_bind_int64(it->q, 3, last_id);
	sqlite3_bind_int(it->q, 4, limit);
}

int scry__store_events_by_id(scry_store *s, const int64_t *ids, size_t n, scry_event_iter **out, scry_error *err)
{
	*out = NULL;
	scry_event_iter *it = scry__calloc(1, sizeof *it);
	if (!it)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	it->store = s;
	it->ids = ids;
	it->nids = n;
	scry_buf sql = SCRY_BUF_INIT;
	if (event_select(s, &sql) || scry__buf_puts(&sql, " WHERE e.id = ?")) {
		scry_buf_dispose(&sql);
		scry_event_iter_free(it);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	if (sqlite3_prepare_v2(s->db, sql.ptr, -1, &it->q, NULL) != SQLITE_OK) {
		int rc = scry__store_fail(s, err, "reading events");
		scry_buf_dispose(&sql);
		scry_event_iter_free(it);
		return rc;
	}
	scry_buf_dispose(&sql);
	*out = it;
	return 0;
}

int scry_store_events(scry_store *s, const scry_event_filter *filter, scry_event_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_events: arguments are required");
	*out = NULL;
	scry_event_filter fcopy;
	int vrc = scry__opts_copy(err, &scry__abi_event_filter, &fcopy, filter);
	if (vrc)
		return vrc;
	filter = &fcopy;
	scry_buf sql = SCRY_BUF_INIT;
	int rc = event_select(s, &sql);
	if (!rc)
		rc = scry__buf_puts(&sql, " WHERE 1");
	if (!rc && filter && filter->session_id)
		rc = scry__buf_printf(&sql, " AND e.session = %lld", (long long)filter->session_id);
	if (!rc && filter && filter->fingerprints)
		rc = fingerprint_in(&sql, filter->fingerprints, filter->nfingerprints);
	if (!rc)
		rc = scry__buf_puts(&sql, " ORDER BY e.id");
	if (rc) {
		scry_buf_dispose(&sql);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	scry_event_iter *it = scry__calloc(1, sizeof *it);
	if (!it) {
		scry_buf_dispose(&sql);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	it->store = s;
	if (sqlite3_prepare_v2(s->db, sql.ptr, -1, &it->q, NULL) != SQLITE_OK) {
		scry_buf_dispose(&sql);
		rc = scry__store_fail(s, err, "reading events");
		scry_event_iter_free(it);
		return rc;
	}
	scry_buf_dispose(&sql);
	*out = it;
	return 0;
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

/* One step of an iterator's query: 1 a row, 0 the end, or a store error. */
static int iter_step(scry_store *s, sqlite3_stmt *q, scry_error *err, const char *what)
{
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW)
		return 1;
	return r == SQLITE_DONE ? 0 : scry__store_fail(s, err, what);
}

int scry_event_iter_next(scry_event_iter *it, const scry_stored_event **ev, scry_error *err)
{
	if (!it || !ev)
		return scry__fail(err, SCRY_EINVAL, "scry_event_iter_next: arguments are required");
	int r;
	for (;;) {
		if (it->ids) {
			if (it->pos >= it->nids)
				return 0;
			sqlite3_reset(it->q);
			sqlite3_bind_int64(it->q, 1, it->ids[it->pos++]);
		}
		r = iter_step(it->store, it->q, err, "reading events");
		if (r != 0 || !it->ids)
			break; /* an id that is gone (deleted meanwhile) is skipped */
	}
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->q;
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
	*ev = e;
	return 1;
}

void scry_event_iter_free(scry_event_iter *it)
{
	if (!it)
		return;
	sqlite3_finalize(it->q);
	scry_buf_dispose(&it->text);
	scry__free(it->params);
	scry__free(it);
}

struct scry_pattern_iter {
	scry_store *store;
	sqlite3_stmt *q;
	scry_pattern p;
};

int scry_store_patterns(scry_store *s, scry_pattern_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_patterns: arguments are required");
	*out = NULL;
	scry_pattern_iter *it = scry__calloc(1, sizeof *it);
	if (!it)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	it->store = s;
	if (sqlite3_prepare_v2(s->db,
	                       "SELECT id, fingerprint, normalized, parse_error, count, errors, total_us, timed,"
	                       " first_us, last_us FROM patterns ORDER BY count DESC, id",
	                       -1, &it->q, NULL) != SQLITE_OK) {
		int rc = scry__store_fail(s, err, "reading patterns");
		scry_pattern_iter_free(it);
		return rc;
	}
	*out = it;
	return 0;
}

int scry_pattern_iter_next(scry_pattern_iter *it, const scry_pattern **p, scry_error *err)
{
	if (!it || !p)
		return scry__fail(err, SCRY_EINVAL, "scry_pattern_iter_next: arguments are required");
	int r = iter_step(it->store, it->q, err, "reading patterns");
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->q;
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
	if (!it)
		return;
	sqlite3_finalize(it->q);
	scry__free(it);
}

/* ------------------------------------------------------------------ */
/* Runs, samples, plans                                                */
/* ------------------------------------------------------------------ */

int scry_store_run_begin(scry_store *s, const char *label, const char *target, const char *options_json,
                         int64_t *run_id, scry_error *err)
{
	if (!s || !label || !*label || !run_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_begin: a label is required");
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO runs(label, target, options, started_us) VALUES (?,?,?,?)", -1, &q,
	                       NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "starting a run");
	sqlite3_bind_text(q, 1, label, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, target, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, options_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, scry__now_us());
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(s, err, "starting a run");
	*run_id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int scry_store_run_end(scry_store *s, int64_t run_id, const scry_run_summary *sum, scry_error *err)
{
	if (!s || !sum)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_end: arguments are required");
	scry_run_summary scopy;
	int vrc = scry__opts_copy(err, &scry__abi_run_summary, &scopy, sum);
	if (vrc)
		return vrc;
	sum = &scopy;
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db,
	                       "UPDATE runs SET ended_us = ?, executions = ?, errors = ?, timeouts = ?, reconnects = ?,"
	                       " per_second = ?, summary = ? WHERE id = ?",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "ending a run");
	sqlite3_bind_int64(q, 1, scry__now_us());
	sqlite3_bind_int64(q, 2, sum->executions);
	sqlite3_bind_int64(q, 3, sum->errors);
	sqlite3_bind_int64(q, 4, sum->timeouts);
	sqlite3_bind_int64(q, 5, sum->reconnects);
	sqlite3_bind_double(q, 6, sum->per_second);
	sqlite3_bind_text(q, 7, sum->summary_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 8, run_id);
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(s, err, "ending a run");
	if (sqlite3_changes(s->db) == 0)
		return scry__fail(err, SCRY_ENOTFOUND, "no run with id %lld", (long long)run_id);
	return 0;
}

int scry_store_run_find(scry_store *s, const char *label, int64_t *run_id, scry_error *err)
{
	if (!s || !label || !run_id)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_find: arguments are required");
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db, "SELECT id FROM runs WHERE label = ? ORDER BY id DESC LIMIT 1", -1, &q, NULL) !=
	    SQLITE_OK)
		return scry__store_fail(s, err, "finding a run");
	sqlite3_bind_text(q, 1, label, -1, SQLITE_STATIC);
	int r = sqlite3_step(q);
	if (r == SQLITE_ROW)
		*run_id = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	if (r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_DONE)
		return scry__fail(err, SCRY_ENOTFOUND,
		                  "no replay run labelled '%s' in %s; run `scry replay --label %s` first (or check the label)",
		                  label, s->path, label);
	return scry__store_fail(s, err, "finding a run");
}

int scry_store_samples_append(scry_store *s, int64_t run_id, const scry_sample *samples, size_t n,
	size_t sample_size, scry_error *err)
{
	if (!s || (n && !samples))
		return scry__fail(err, SCRY_EINVAL, "scry_store_samples_append: arguments are required");
	int rc = scry__elem_check(err, &scry__abi_sample, sample_size);
	if (rc || (rc = batch_begin(s, err, "appending samples")))
		return rc;
	scry_sample tmp;
	for (size_t i = 0; i < n && !rc; i++) {
		sqlite3_stmt *q = prepared(s, Q_INSERT_SAMPLE);
		if (!q) {
			rc = scry__store_fail(s, err, "appending samples");
			break;
		}
		const scry_sample *x = scry__elem_get(&scry__abi_sample, &tmp, samples, i, sample_size);
		sqlite3_bind_int64(q, 1, run_id);
		sqlite3_bind_int64(q, 2, x->event_id);
		sqlite3_bind_int(q, 3, x->round);
		sqlite3_bind_int64(q, 4, x->latency_us);
		if (x->rows >= 0)
			sqlite3_bind_int64(q, 5, x->rows);
		if (x->sqlstate[0])
			sqlite3_bind_text(q, 6, x->sqlstate, (int)strnlen(x->sqlstate, 5), SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = scry__store_fail(s, err, "appending samples");
	}
	return batch_end(s, rc, err, "committing samples");
}

struct scry_sample_iter {
	scry_store *store;
	sqlite3_stmt *q;
	scry_stored_sample s;
};

int scry_store_run_complete(scry_store *s, int64_t run_id, scry_error *err)
{
	if (!s)
		return scry__fail(err, SCRY_EINVAL, "scry_store_run_complete: a store is required");
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db,
	                       "SELECT ended_us IS NOT NULL AND coalesce(json_extract(CASE WHEN json_valid(summary)"
	                       " THEN summary END, '$.complete'), 1) != 0 FROM runs WHERE id = ?",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "reading runs");
	sqlite3_bind_int64(q, 1, run_id);
	int r = sqlite3_step(q);
	int rc = r == SQLITE_ROW ? sqlite3_column_int(q, 0) != 0
	         : r == SQLITE_DONE ? scry__fail(err, SCRY_ENOTFOUND, "no run %lld in the store", (long long)run_id)
	                            : scry__store_fail(s, err, "reading runs");
	sqlite3_finalize(q);
	return rc;
}

static int samples_query(scry_store *s, int64_t run_id, const char *order, scry_sample_iter **out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_samples: arguments are required");
	*out = NULL;
	scry_sample_iter *it = scry__calloc(1, sizeof *it);
	if (!it)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	it->store = s;
	char sql[512];
	snprintf(sql, sizeof sql,
	         "SELECT x.event, st.pattern, p.fingerprint, x.round, x.latency_us, x.rows, x.sqlstate, e.session"
	         " FROM samples x JOIN events e ON e.id = x.event"
	         " JOIN statements st ON st.id = e.statement JOIN patterns p ON p.id = st.pattern"
	         " WHERE x.run = ? ORDER BY %s",
	         order);
	if (sqlite3_prepare_v2(s->db, sql, -1, &it->q, NULL) != SQLITE_OK) {
		int rc = scry__store_fail(s, err, "reading samples");
		scry_sample_iter_free(it);
		return rc;
	}
	sqlite3_bind_int64(it->q, 1, run_id);
	*out = it;
	return 0;
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
	if (!it || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_sample_iter_next: arguments are required");
	int r = iter_step(it->store, it->q, err, "reading samples");
	if (r <= 0)
		return r;
	sqlite3_stmt *q = it->q;
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
	if (!it)
		return;
	sqlite3_finalize(it->q);
	scry__free(it);
}

static int64_t pattern_id_of(scry_store *s, uint64_t fp, int *rc)
{
	sqlite3_stmt *q = prepared(s, Q_FIND_PATTERN);
	*rc = 0;
	if (!q) {
		*rc = SQLITE_ERROR;
		return 0;
	}
	sqlite3_bind_int64(q, 1, (int64_t)fp);
	int64_t id = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	return id;
}

int scry_store_plan_put(scry_store *s, int64_t run_id, uint64_t fp, int64_t event_id, const char *plan,
                        scry_error *err)
{
	if (!s || !plan)
		return scry__fail(err, SCRY_EINVAL, "scry_store_plan_put: arguments are required");
	int rc;
	int64_t pid = pattern_id_of(s, fp, &rc);
	if (rc)
		return scry__store_fail(s, err, "storing a plan");
	if (!pid)
		return scry__fail(err, SCRY_ENOTFOUND, "no pattern with fingerprint %016llx", (unsigned long long)fp);
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO plans(run, pattern, event, plan) VALUES (?,?,?,?)", -1, &q,
	                       NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "storing a plan");
	sqlite3_bind_int64(q, 1, run_id);
	sqlite3_bind_int64(q, 2, pid);
	if (event_id > 0)
		sqlite3_bind_int64(q, 3, event_id);
	sqlite3_bind_text(q, 4, plan, -1, SQLITE_STATIC);
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	return r == SQLITE_DONE ? 0 : scry__store_fail(s, err, "storing a plan");
}

int scry_store_plan_get(scry_store *s, int64_t run_id, uint64_t fp, scry_buf *out, scry_error *err)
{
	if (!s || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_plan_get: arguments are required");
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db,
	                       "SELECT pl.plan FROM plans pl JOIN patterns p ON p.id = pl.pattern"
	                       " WHERE pl.run = ? AND p.fingerprint = ?",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(s, err, "reading a plan");
	sqlite3_bind_int64(q, 1, run_id);
	sqlite3_bind_int64(q, 2, (int64_t)fp);
	int r = sqlite3_step(q);
	int rc = 0;
	if (r == SQLITE_ROW) {
		if (scry__buf_put(out, sqlite3_column_text(q, 0), (size_t)sqlite3_column_bytes(q, 0)))
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	} else if (r == SQLITE_DONE) {
		rc = scry__fail(err, SCRY_ENOTFOUND, "no plan for pattern %016llx in run %lld", (unsigned long long)fp,
		                (long long)run_id);
	} else {
		rc = scry__store_fail(s, err, "reading a plan");
	}
	sqlite3_finalize(q);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Imported log files (scry_logimport_feed_file recognises them): the  */
/* table is created on first use, so stores made before it need no     */
/* migration.                                                          */
/* ------------------------------------------------------------------ */

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
	if (sqlite3_exec(s->db, table_sql, NULL, NULL, NULL) != SQLITE_OK)
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
	if (sqlite3_prepare_v2(s->db,
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
	if (sqlite3_prepare_v2(s->db,
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
