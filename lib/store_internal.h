/*
 * lib/store_internal.h - what the files of the store module share:
 *   lib/store.c        opening, the schema and its migration, SQL helpers, imported log files
 *   lib/store_write.c  appending: sessions, statements and patterns (cached), batches, transactions
 *   lib/store_read.c   event and pattern iterators, store counts
 *   lib/store_runs.c   replay runs, their samples and plans
 *   lib/store_admin.c  housekeeping: listing/deleting runs, compaction, the fixed queries
 *   lib/store_merge.c  scry_store_merge()
 * Other modules go through the public store API or the fixed queries of
 * internal.h (scry__store_rows); the schema and its SQL stay in these files
 * (docs/store.md).
 */
#ifndef SCRY_STORE_INTERNAL_H
#define SCRY_STORE_INTERNAL_H

#include "internal.h"

#include <sqlite3.h>

/* ------------------------------------------------------------------ */
/* The handle                                                          */
/* ------------------------------------------------------------------ */

typedef struct scry__stmt_entry {
	int64_t id;
	int64_t pattern_index; /* into patterns[] */
	char *template_text;   /* to rule out hash collisions */
	size_t template_len;
	int nlits;             /* 0: the template is a raw text (it may hold marker bytes) */
} scry__stmt_entry;

typedef struct scry__pattern_entry {
	int64_t id;
	/* deltas accumulated during a batch, flushed at its end */
	int64_t d_count, d_errors, d_total_us, d_timed, first_us, last_us;
	bool dirty;
} scry__pattern_entry;

typedef struct scry__session_entry {
	int64_t id;
	int64_t started_us;
	int64_t events; /* sequence number of its last event */
	bool dirty;
} scry__session_entry;

/* The statements each handle prepares once and keeps (their SQL: lib/store.c). */
enum {
	SCRY__SQ_INSERT_EVENT,
	SCRY__SQ_INSERT_STATEMENT,
	SCRY__SQ_INSERT_PATTERN,
	SCRY__SQ_FIND_PATTERN,
	SCRY__SQ_UPDATE_PATTERN,
	SCRY__SQ_INSERT_SESSION,
	SCRY__SQ_FIND_SESSION,
	SCRY__SQ_UPDATE_SESSION,
	SCRY__SQ_INSERT_ERROR,
	SCRY__SQ_INSERT_SAMPLE,
	SCRY__SQ_COUNT
};

struct scry_store {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *q[SCRY__SQ_COUNT];
	scry_fingerprinter *fpr;
	scry__u64map stmt_map;      /* XXH3(template) -> stmts[] */
	scry__stmt_entry *stmts;
	size_t nstmts, astmts;
	scry__u64map pattern_map;   /* fingerprint -> patterns[] */
	scry__pattern_entry *patterns;
	size_t npatterns, apatterns;
	scry__u64map session_map;   /* session id -> sessions[] */
	scry__session_entry *sessions;
	size_t nsessions, asessions;
	bool caches_loaded;
	bool txn_open;              /* scry_store_begin() without commit/rollback yet */
	scry_buf tmpl, lits, params, text;
	int schema;                 /* user_version of the file (older read-only stores stay old) */
};

/* The store's SQLite connection, for the store module's own files. */
SCRY_HIDDEN sqlite3 *scry__store_sqlite(scry_store *store);
/* Drops the handle's statement and pattern caches (reloaded on the next
 * append), after SQL changed those tables behind them (merge). */
SCRY_HIDDEN void scry__store_forget_caches(scry_store *store);

/* ------------------------------------------------------------------ */
/* SQL helpers (lib/store.c): every failure becomes a store error      */
/* (scry__store_fail) naming `what`.                                   */
/* ------------------------------------------------------------------ */

/* A value for a statement parameter (scry__store_bind). */
typedef struct scry__sqlv {
	char type;     /* 0 NULL, 'i' integer, 'd' real, 't' text, 'b' blob */
	int64_t i;
	double d;
	const void *p; /* text or blob; a NULL text binds NULL */
	int64_t n;     /* bytes of p; -1 for a text: up to its NUL */
} scry__sqlv;
#define SCRY__NULL ((scry__sqlv){ .type = 0 })
#define SCRY__INT(x) ((scry__sqlv){ .type = 'i', .i = (x) })
#define SCRY__REAL(x) ((scry__sqlv){ .type = 'd', .d = (x) })
#define SCRY__TEXT(x) ((scry__sqlv){ .type = 't', .p = (x), .n = -1 })
#define SCRY__TEXTN(x, len) ((scry__sqlv){ .type = 't', .p = (x), .n = (int64_t)(len) })
#define SCRY__BLOB(x, len) ((scry__sqlv){ .type = 'b', .p = (x), .n = (int64_t)(len) })
/* The values of ?1, ?2, ... as the (array, count) arguments of the helpers below. */
#define SCRY__VALUES(...) (const scry__sqlv[]){ __VA_ARGS__ }, \
	(int)(sizeof((const scry__sqlv[]){ __VA_ARGS__ }) / sizeof(scry__sqlv))

/* Binds v[0..n) to ?1..?n (values are not copied: they must live until the step).
 * SQLITE_OK or the first failure's code. */
SCRY_HIDDEN int scry__store_bind(sqlite3_stmt *q, const scry__sqlv *v, int n);
/* SQL text without parameters or results (one statement or several). 0 or a store error. */
SCRY_HIDDEN int scry__store_exec(scry_store *store, const char *sql, scry_error *err, const char *what);
/* Prepares one statement into *q. 0 or a store error. */
SCRY_HIDDEN int scry__store_prepare(scry_store *store, const char *sql, sqlite3_stmt **q, scry_error *err,
	const char *what);
/* Steps q once: 1 a row, 0 the end, or a store error. */
SCRY_HIDDEN int scry__store_step(scry_store *store, sqlite3_stmt *q, scry_error *err, const char *what);
/* Binds v to the handle's kept statement `which` (SCRY__SQ_*, prepared on first use) and runs it
 * to its end. 0 or a store error. */
SCRY_HIDDEN int scry__store_run_kept(scry_store *store, int which, const scry__sqlv *v, int n, scry_error *err,
	const char *what);
/* The same, stepped once: 1 a row (its columns in store->q[which] until the next use), 0 none, or
 * a store error. */
SCRY_HIDDEN int scry__store_kept_row(scry_store *store, int which, const scry__sqlv *v, int n, scry_error *err,
	const char *what);
/* A statement used once: prepared, bound, run to its end and finalized. 0 or a store error. */
SCRY_HIDDEN int scry__store_run(scry_store *store, const char *sql, const scry__sqlv *v, int n, scry_error *err,
	const char *what);
/* A statement used once for its first row: 1 with the row in *q (the caller finalizes it), 0 when
 * there is none, or a store error (*q NULL in both cases). */
SCRY_HIDDEN int scry__store_row(scry_store *store, const char *sql, const scry__sqlv *v, int n, sqlite3_stmt **q,
	scry_error *err, const char *what);
/* Runs `sql` that cleans up after a failed or finished step (ROLLBACK, ROLLBACK TO, DROP of a temp
 * table, DETACH). Its own result is moot: the first error is the one reported, and SQLite may have
 * rolled back already (it does on some errors, and then a ROLLBACK fails). */
SCRY_HIDDEN void scry__store_cleanup(scry_store *store, const char *sql);
/* The first column of the first row of a query without parameters (0 when there is no row). */
SCRY_HIDDEN int scry__store_int(scry_store *store, const char *sql, int64_t *v, scry_error *err, const char *what);

/*
 * The head of the store's iterators (the first member of each): their store
 * and query. scry__cursor_open allocates `size` zeroed bytes with the query
 * prepared (NULL and *rc on failure); scry__cursor_next steps it (1 a row, 0
 * the end, or a store error); scry__cursor_free finalizes and frees it.
 * scry__cursor_row is the step of a public iterator's next function `fn`:
 * SCRY_EINVAL without the iterator (c) or its out argument, else
 * scry__cursor_next.
 */
typedef struct scry__cursor {
	scry_store *store;
	sqlite3_stmt *q;
} scry__cursor;
SCRY_HIDDEN void *scry__cursor_open(scry_store *store, const char *sql, size_t size, int *rc, scry_error *err,
	const char *what);
SCRY_HIDDEN int scry__cursor_next(scry__cursor *c, scry_error *err, const char *what);
SCRY_HIDDEN void scry__cursor_free(scry__cursor *c);
SCRY_HIDDEN int scry__cursor_row(scry__cursor *c, const void *out, scry_error *err, const char *fn, const char *what);

/* ------------------------------------------------------------------ */
/* Batches (lib/store_write.c): one append is all or nothing, in its   */
/* own transaction or a savepoint of the caller's (scry_store_begin);  */
/* a failed batch is undone and drops the caches that may name undone  */
/* rows. batch_end commits (rc 0) or undoes (rc != 0); returns rc or   */
/* the commit's error.                                                 */
/* ------------------------------------------------------------------ */

SCRY_HIDDEN int scry__store_batch_begin(scry_store *store, scry_error *err, const char *what);
SCRY_HIDDEN int scry__store_batch_end(scry_store *store, int rc, scry_error *err, const char *what);

#endif
