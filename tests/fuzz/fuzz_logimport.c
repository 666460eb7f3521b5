/*
 * tests/fuzz/fuzz_logimport.c - the log importer, every format, whole
 * versus chunked.
 *
 * Input: byte 0 picks the format (csvlog, jsonlog, stderr; for stderr the
 * text up to the first newline is the log_line_prefix, so the prefix parser
 * is fuzzed through the public entry too); the rest is the log. Two
 * importers write into two in-memory stores: one gets the log in one feed,
 * the other in random chunks (1 byte to 4 KB). Their statistics and the
 * events they recorded (text, session, times, rows, SQLSTATE, parameters)
 * must be identical.
 *
 * Built a second time as fuzz_logprefix (FUZZ_PREFIX_ONLY): stderr only,
 * the input's first line is the log_line_prefix, so the prefix parser and
 * the line matcher get the whole budget, through the public entry.
 *
 * Opening a store costs far more than an import of a few lines, so the two
 * stores are kept for 64 inputs (both see the same inputs in the same order)
 * and each input's digest covers the rows it added (ids above the last
 * seen), read with one prepared query.
 */
#include "fuzz_common.h"
#include "store_internal.h" /* the store's connection, to read the rows raw */
#include <scry/logimport.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static scry_store *stores[2];
static sqlite3 *raw[2];          /* a read-only connection beside the store (the store owns its own) */
static char paths[2][200];
static sqlite3_stmt *rows_q[2];
static int64_t last_id[2];
static unsigned uses;

static void remove_store(const char *path)
{
	char p[512];
	remove(path);
	snprintf(p, sizeof p, "%s-wal", path);
	remove(p);
	snprintf(p, sizeof p, "%s-shm", path);
	remove(p);
}

/* The last two stores of the process are removed at exit too. */
static void remove_stores_at_exit(void)
{
	for (int i = 0; i < 2; i++) {
		if (!stores[i])
			continue;
		sqlite3_finalize(rows_q[i]);
		sqlite3_close(raw[i]);
		scry_store_free(stores[i]);
		remove_store(paths[i]);
		stores[i] = NULL;
	}
}

static int import(int which, scry_log_format fmt, const char *prefix, const uint8_t *log, size_t n,
                  uint64_t *seed, scry_logimport_stats *st, scry_buf *digest)
{
	if (!stores[which]) {
		static bool registered;
		if (!registered)
			registered = atexit(remove_stores_at_exit) == 0;
		/* A file (in tmpfs when there is one), so that a second connection can read it. */
		const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		snprintf(paths[which], sizeof paths[which], "%s/scry-fuzz-logimport-%d-%d.db", dir, (int)getpid(), which);
		remove_store(paths[which]);
		FUZZ_CHECK(scry_store_open(&stores[which], paths[which], NULL, NULL) == 0, "store");
		FUZZ_CHECK(sqlite3_open_v2(paths[which], &raw[which], SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "raw");
		last_id[which] = 0;
	}
	scry_store *s = stores[which];
	scry_logimport_options o;
	scry_logimport_options_init(&o);
	o.format = fmt;
	o.line_prefix = prefix;
	o.batch_events = 7;
	o.max_record_bytes = 1 << 17; /* above any input: see docs/testing.md */
	o.max_open_sessions = 16;
	scry_logimport *imp = NULL;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_logimport_new(&imp, s, &o, &err);
	if (rc) {
		FUZZ_CHECK(rc == SCRY_EINVAL && fmt == SCRY_LOG_STDERR, "logimport_new: %d %s", rc, err.message);
		scry__buf_printf(digest, "refused: %s\n", err.message);
		return rc;
	}
	for (size_t off = 0; off < n;) {
		size_t k = seed ? fuzz_chunk(seed, n - off) : n;
		rc = scry_logimport_feed(imp, log + off, k, &err);
		FUZZ_CHECK(rc == 0, "feed: %d %s", rc, err.message);
		off += k;
	}
	rc = scry_logimport_finish(imp, st, &err);
	FUZZ_CHECK(rc == 0, "finish: %d %s", rc, err.message);
	scry_logimport_free(imp);
	/* The rows this input added, read raw (equal rows rebuild equal texts;
	 * fuzz_store exercises the readers): far cheaper than the iterator. */
	if (!rows_q[which])
		FUZZ_CHECK(sqlite3_prepare_v2(raw[which],
		                              "SELECT e.id, s.started_us + e.offset_us, e.duration_us, e.seq, e.kind, e.rows,"
		                              " e.sqlstate, st.template, e.literals, e.params, s.user_name, s.database,"
		                              " s.application, s.client FROM events e JOIN statements st ON st.id = e.statement"
		                              " JOIN sessions s ON s.id = e.session WHERE e.id > ? ORDER BY e.id",
		                              -1, &rows_q[which], NULL) == SQLITE_OK, "prepare");
	sqlite3_stmt *q = rows_q[which];
	sqlite3_bind_int64(q, 1, last_id[which]);
	while (sqlite3_step(q) == SQLITE_ROW) {
		last_id[which] = sqlite3_column_int64(q, 0);
		for (int c = 1; c < sqlite3_column_count(q); c++) {
			const void *v = sqlite3_column_blob(q, c);
			scry__buf_printf(digest, "|%d:", sqlite3_column_bytes(q, c));
			if (v)
				scry__buf_put(digest, v, (size_t)sqlite3_column_bytes(q, c));
		}
		scry__buf_puts(digest, "\n");
	}
	sqlite3_reset(q);
	for (unsigned i = 0; i < st->nskip_samples; i++)
		scry__buf_printf(digest, "skip line %llu: %s\n", (unsigned long long)st->skip_samples[i].line,
		                 st->skip_samples[i].reason);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
#ifdef FUZZ_PREFIX_ONLY
	/* fuzz_logprefix: always stderr; the whole input is prefix line + log. */
	scry_log_format fmt = SCRY_LOG_STDERR;
	const uint8_t *log = data;
	size_t n = size;
#else
	scry_log_format fmt = (scry_log_format)(data[0] % 3);
	const uint8_t *log = data + 1;
	size_t n = size - 1;
#endif
	char prefix[256] = "";
	if (fmt == SCRY_LOG_STDERR) {
		const uint8_t *nl = memchr(log, '\n', n < 200 ? n : 200);
		size_t k = nl ? (size_t)(nl - log) : 0;
		memcpy(prefix, log, k);
		prefix[k] = 0;
		log += nl ? k + 1 : 0;
		n -= nl ? k + 1 : 0;
	}
	uint64_t seed = fuzz_seed(data, size);
	scry_logimport_stats a = SCRY_LOGIMPORT_STATS_INIT, b = SCRY_LOGIMPORT_STATS_INIT;
	scry_buf da = SCRY_BUF_INIT, db = SCRY_BUF_INIT;
	int ra = import(0, fmt, prefix, log, n, NULL, &a, &da);
	int rb = import(1, fmt, prefix, log, n, &seed, &b, &db);
	FUZZ_CHECK(ra == rb, "status differs");
	FUZZ_CHECK(FUZZ_BUF_EQ(da, db), "events differ:\nwhole:\n%.*s\nchunked:\n%.*s",
	           (int)da.size, da.ptr ? da.ptr : "", (int)db.size, db.ptr ? db.ptr : "");
	FUZZ_CHECK(a.bytes == b.bytes && a.lines == b.lines && a.records == b.records && a.statements == b.statements &&
	           a.failed == b.failed && a.sessions == b.sessions && a.patterns == b.patterns &&
	           a.unpaired_durations == b.unpaired_durations && a.skipped == b.skipped,
	           "stats differ: lines %llu/%llu records %llu/%llu statements %llu/%llu skipped %llu/%llu",
	           (unsigned long long)a.lines, (unsigned long long)b.lines, (unsigned long long)a.records,
	           (unsigned long long)b.records, (unsigned long long)a.statements, (unsigned long long)b.statements,
	           (unsigned long long)a.skipped, (unsigned long long)b.skipped);
	scry_buf_dispose(&da);
	scry_buf_dispose(&db);
	if (++uses % 64 == 0) {
		for (int i = 0; i < 2; i++) {
			sqlite3_finalize(rows_q[i]);
			sqlite3_close(raw[i]);
			scry_store_free(stores[i]);
			remove_store(paths[i]);
			stores[i] = NULL;
			raw[i] = NULL;
			rows_q[i] = NULL;
		}
	}
	return 0;
}
