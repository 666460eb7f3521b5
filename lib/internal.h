/*
 * lib/internal.h - helpers shared by the library's modules. Not installed;
 * nothing here is exported (the version script keeps only scry_*, and these
 * use the scry__ prefix with hidden visibility).
 */
#ifndef SCRY_INTERNAL_H
#define SCRY_INTERNAL_H

#define SCRY_BUILDING 1
#include "scry/scry.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#define SCRY_HIDDEN __attribute__((visibility("hidden")))

/* Allocation through the installed scry_allocator. */
SCRY_HIDDEN void *scry__malloc(size_t n);
SCRY_HIDDEN void *scry__calloc(size_t count, size_t n);
SCRY_HIDDEN void *scry__realloc(void *p, size_t n);
SCRY_HIDDEN void scry__free(void *p);
SCRY_HIDDEN char *scry__strdup(const char *s);
SCRY_HIDDEN char *scry__strndup(const char *s, size_t n);

/* Fills err (if non-NULL) and returns code, so `return scry__fail(...)` reads well. */
SCRY_HIDDEN int scry__fail(scry_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Same with a va_list, for modules' own failure wrappers. */
SCRY_HIDDEN int scry__vfail(scry_error *err, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* Same, also recording errno / SQLite code in sys_code. */
SCRY_HIDDEN int scry__fail_sys(scry_error *err, int code, int sys_code,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * The versions of a struct crossing the API (lib/abi.c, docs/api.md): its
 * name, its size in this library, how many versions it had, and the size
 * of each version's layout (sizes[v - 1]).
 */
typedef struct scry__abi_type {
	const char *name;
	size_t size;
	unsigned int versions;
	const size_t *sizes;
	void (*init)(void *); /* fills the defaults; NULL = all zero */
} scry__abi_type;

extern SCRY_HIDDEN const scry__abi_type scry__abi_store_options, scry__abi_replay_options,
	scry__abi_verdict_options, scry__abi_pipeline_options, scry__abi_shadow_options,
	scry__abi_migration, scry__abi_proxy_options, scry__abi_pgwire_options,
	scry__abi_logimport_options, scry__abi_fingerprinter_options, scry__abi_event_filter,
	scry__abi_replay_result, scry__abi_store_info, scry__abi_pipeline_stats,
	scry__abi_verdict_summary, scry__abi_logimport_stats, scry__abi_pgwire_stats,
	scry__abi_proxy_stats, scry__abi_fingerprinter_stats, scry__abi_session_info,
	scry__abi_run_summary, scry__abi_pgwire_callbacks, scry__abi_event, scry__abi_sample,
	scry__abi_impact_options, scry__abi_impact_gate, scry__abi_impact_summary, scry__abi_log_file,
	scry__abi_report_html_options, scry__abi_compact_result;

/*
 * Copies a caller's input struct `src` (first field `unsigned int version`)
 * into `dst`, the library's own struct of type t: the defaults first, then
 * exactly the bytes of the version the caller declared; dst->version becomes
 * the current version. src may be NULL (defaults only). An unknown or zero
 * version gives SCRY_EINVAL with a message naming the struct.
 */
SCRY_HIDDEN int scry__opts_copy(scry_error *err, const scry__abi_type *t, void *dst, const void *src);

/*
 * Output structs (first field `size_t size`, set by the caller): check that
 * out is not NULL and out->size covers at least version 1 (SCRY_EINVAL
 * otherwise), then copy
 * the library's full struct `src` into `out`, only as many bytes as
 * out->size says, and set out->size to the bytes written. scry__out_copy
 * does both; scry__out_put assumes a passed check.
 */
SCRY_HIDDEN int scry__out_check(scry_error *err, const scry__abi_type *t, const void *out);
SCRY_HIDDEN void scry__out_put(const scry__abi_type *t, void *out, const void *src);
SCRY_HIDDEN int scry__out_copy(scry_error *err, const scry__abi_type *t, void *out, const void *src);

/*
 * Arrays passed with their element size (the caller's sizeof): check that
 * elem_size covers version 1 of t (SCRY_EINVAL otherwise); get element i as
 * the library's type: a pointer into the array when the sizes agree, else
 * a copy in `tmp` (t->size bytes) with the fields the caller lacks zeroed.
 */
SCRY_HIDDEN int scry__elem_check(scry_error *err, const scry__abi_type *t, size_t elem_size);
SCRY_HIDDEN const void *scry__elem_get(const scry__abi_type *t, void *tmp, const void *base, size_t i,
	size_t elem_size);

/*
 * scry_buf helpers: all return 0 or SCRY_ENOMEM. A failure is sticky: the
 * buffer keeps what it held but every later append fails too, until
 * scry__buf_clear or scry_buf_dispose; scry__buf_failed tells. So a
 * rendering may ignore each append's result and check scry__buf_failed once
 * at the end, but must check it: never use a buffer that failed as a result.
 */
SCRY_HIDDEN bool scry__buf_failed(const scry_buf *b);
/* Puts b in the failed state (later appends fail). Returns code. */
SCRY_HIDDEN int scry__buf_fail(scry_buf *b, int code);
/* Fails b when `from` (a scratch buffer whose text went into b) failed. */
SCRY_HIDDEN void scry__buf_inherit(scry_buf *b, const scry_buf *from);
SCRY_HIDDEN int scry__buf_grow(scry_buf *b, size_t extra);
SCRY_HIDDEN int scry__buf_put(scry_buf *b, const void *data, size_t n);
SCRY_HIDDEN int scry__buf_puts(scry_buf *b, const char *s);
SCRY_HIDDEN int scry__buf_printf(scry_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
SCRY_HIDDEN int scry__buf_vprintf(scry_buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
SCRY_HIDDEN int scry__buf_json_string(scry_buf *b, const char *s, size_t n);
/* Empties the buffer, keeping its memory; also forgets a failure. */
SCRY_HIDDEN void scry__buf_clear(scry_buf *b);
/* Appends keyword='value' to a libpq connection string (space-separated),
 * quoting the value by libpq's rules. */
SCRY_HIDDEN int scry__buf_conninfo_kv(scry_buf *b, const char *kw, const char *val);

/*
 * Growable arrays: makes room for element n of *arr (elements of `size`
 * bytes, capacity *cap), doubling from `first` elements. Returns 0 or
 * SCRY_ENOMEM (the array is left as it was).
 */
SCRY_HIDDEN int scry__array_grow(void **arr, size_t *cap, size_t n, size_t size, size_t first);

/*
 * A small open-addressing map: uint64 key -> uint32 value, where the value
 * is an index into the caller's entry array plus one (0 means absent).
 * Zero-initialise; free with scry__u64map_free.
 */
typedef struct scry__u64map {
	uint64_t *keys;
	uint32_t *vals; /* entry index + 1; 0 = empty slot */
	size_t mask, used;
} scry__u64map;
/* The value stored for key, or 0. */
SCRY_HIDDEN uint32_t scry__u64map_get(const scry__u64map *m, uint64_t key);
/* Sets key's value (val > 0). Returns 0 or SCRY_ENOMEM. */
SCRY_HIDDEN int scry__u64map_put(scry__u64map *m, uint64_t key, uint32_t val);
SCRY_HIDDEN void scry__u64map_free(scry__u64map *m);

/* Formats a message and passes it to a log callback; does nothing when fn is NULL. */
SCRY_HIDDEN void scry__log(scry_log_fn fn, void *ctx, scry_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A libpq message (possibly several lines) on one line, lines joined by "; ",
 * without the trailing newline; truncated to fit out[n]. */
SCRY_HIDDEN void scry__pg_one_line(const char *in, char *out, size_t n);
struct pg_conn;
struct pg_result;
/* A failed command's message: the server's primary message from r, else the
 * connection's error message (r may be NULL); on one line, as above. */
SCRY_HIDDEN void scry__pg_result_message(const struct pg_result *r, struct pg_conn *c, char *buf, size_t n);
/*
 * Fills err with SCRY_ECONNECT for a failed libpq connection (pg may be NULL
 * when libpq ran out of memory): where it tried, libpq's reason and what to
 * check next. `what` names the database for the person ("the target
 * database"), or NULL. Returns SCRY_ECONNECT.
 */
SCRY_HIDDEN int scry__pg_connect_fail(scry_error *err, struct pg_conn *pg, const char *what);

/* The one-line reason of a pattern's class, as every report format words it (lib/report.c). */
SCRY_HIDDEN void scry__report_reason(scry_buf *b, const scry_pattern_verdict *p);

/* Patterns a verdict did not judge (lib/filter.c), for the reports' footer. */
typedef struct scry__excluded_pattern {
	uint64_t fingerprint;
	char *normalized;
	const char *why;        /* static: "session setup", "--exclude", "not in --include" */
	int64_t executions;
} scry__excluded_pattern;
typedef struct scry__excluded {
	scry__excluded_pattern *v;
	size_t n, cap;
} scry__excluded;
SCRY_HIDDEN int scry__excluded_add(scry__excluded *x, uint64_t fingerprint, const char *normalized,
	const char *why, int64_t executions);
SCRY_HIDDEN void scry__excluded_free(scry__excluded *x);
/* The excluded patterns of a verdict (lib/verdict.c); NULL when none. */
SCRY_HIDDEN const scry__excluded *scry__verdict_excluded(const scry_verdict *v);
/* Appends the footer listing them (text, Markdown, HTML); nothing when there is none. */
SCRY_HIDDEN int scry__report_excluded(scry_buf *b, const scry__excluded *x, scry_report_format format);
/* The JSON report's "excluded" member (an array); nothing when there is none. */
struct scry__json;
SCRY_HIDDEN void scry__report_excluded_json(struct scry__json *j, const scry__excluded *x);

/*
 * Server notices (lib/pgnotice.c): the library never prints, so every
 * connection it opens gets a notice receiver that passes them to a log
 * callback: a module's receiver calls scry__pg_notice_log with its own
 * callback; scry__pg_notice_ignore drops them (short-lived probes).
 */
SCRY_HIDDEN void scry__pg_notice_log(scry_log_fn fn, void *ctx, const struct pg_result *r);
SCRY_HIDDEN void scry__pg_notice_ignore(void *arg, const struct pg_result *r);

/* Clocks, in microseconds. */
SCRY_HIDDEN int64_t scry__now_us(void);        /* CLOCK_REALTIME (Unix) */
SCRY_HIDDEN int64_t scry__monotonic_us(void);  /* CLOCK_MONOTONIC */

/*
 * Literal lifting (lib/fingerprint.c). For DML texts, splits `sql` into a
 * template (the text with each literal constant replaced by a one-byte
 * marker, SCRY__LIT_STRING or SCRY__LIT_NUMBER) and the literals' raw text.
 * Two texts with the same template have the same fingerprint (see
 * docs/fingerprint.md). Texts the lexer is not sure about get no literals:
 * the template is the whole text. Returns 0 or SCRY_ENOMEM.
 *   template_out: receives the template (appended)
 *   literals_out: receives the literals packed as (varint length, bytes)*
 *   nliterals: number of literals
 */
#define SCRY__LIT_STRING '\x01'
#define SCRY__LIT_NUMBER '\x02'
SCRY_HIDDEN int scry__lift_literals(const char *sql, size_t len,
	scry_buf *template_out, scry_buf *literals_out, int *nliterals);
/* scry_fingerprint_split() through PostgreSQL's scanner only (its fallback;
 * the tests compare the two). */
SCRY_HIDDEN int scry__split_scanner(const char *sql, size_t len, struct scry_statement_span **spans,
	size_t *count, scry_error *err);
/* Inverse: rebuilds the exact text from a template and packed literals. */
SCRY_HIDDEN int scry__splice_literals(const char *tmpl, size_t tlen,
	const unsigned char *lits, size_t llen, scry_buf *out);

/*
 * libpg_query guard (lib/pgquery_guard.c). scry__sql_depth() bounds from
 * above the depth of the parse tree of a SQL text (words and operator
 * characters along the bracket path, plus bracket depth). scry__pgq_run()
 * calls fn(arg), a libpg_query call on that text, where the stack can hold
 * its recursion: inline when the caller's stack has room (or, its size
 * unknown, up to SCRY__PGQ_INLINE_DEPTH), else on a thread with a stack
 * sized for the depth, up to SCRY__PGQ_MAX_DEPTH. Returns 0 when fn ran,
 * SCRY_EPARSE (err filled) when the text is nested deeper than that or the
 * thread could not start.
 */
#define SCRY__PGQ_INLINE_DEPTH 1000
#define SCRY__PGQ_MAX_DEPTH 100000
SCRY_HIDDEN size_t scry__sql_depth(const char *sql, size_t len);
/* Index past the comment (-- or nested block) starting at sql[i]; len when unterminated. */
SCRY_HIDDEN size_t scry__sql_skip_comment(const char *sql, size_t len, size_t i);
SCRY_HIDDEN int scry__pgq_run(const char *text, size_t len, void (*fn)(void *), void *arg,
	scry_error *err);

/* Appends decimal digit d to *v; false (with *v unchanged) when the result
 * would pass INT64_MAX. The decoders' digit runs come from the network and
 * from log files: never trust their length. */
static inline bool scry__dec_digit(int64_t *v, int d)
{
	if (*v > (INT64_MAX - d) / 10)
		return false;
	*v = *v * 10 + d;
	return true;
}

/* Varint (LEB128) helpers used by packed blobs. */
SCRY_HIDDEN int scry__buf_varint(scry_buf *b, uint64_t v);
/* Reads a varint; returns bytes consumed, 0 on truncated input. */
SCRY_HIDDEN size_t scry__read_varint(const unsigned char *p, size_t n, uint64_t *v);

/* Parameters packed into a blob: (oid varint, format byte, len+1 varint, bytes)*. */
SCRY_HIDDEN int scry__pack_params(scry_buf *b, const scry_param *params, int n);

/* Session startup parameters as stored (sessions.params, lib/session_params.c):
 * "key=value" lines, '\n' and '\\' in a value escaped as \n and \\. */
SCRY_HIDDEN int scry__session_param_put(scry_buf *b, const char *key, const char *value);
/* Reads the next pair from *p (advanced); key and value are unescaped into
 * `key`/`val` (cleared first). Returns 1 for a pair, 0 at the end, <0 on ENOMEM. */
SCRY_HIDDEN int scry__session_param_next(const char **p, scry_buf *key, scry_buf *val);

/*
 * The store owns its SQL: no other module gets its SQLite connection; they
 * go through the store's API (transactions included: scry_store_begin).
 * Fills err from the store's last SQLite error. Returns SCRY_ESTORE. */
SCRY_HIDDEN int scry__store_fail(scry_store *store, scry_error *err, const char *what);
/* An event iterator over the given ids, in the given order (ids missing from the store are skipped);
 * `ids` must stay valid while it is used. */
/*
 * Fixed whole-table queries of the store for the replay's sampler and
 * streaming loader (lib/store_admin.c holds their SQL; docs/store.md the
 * schema). Columns, by index:
 *   SCRY__Q_PATTERNS        id, fingerprint (NULL: unparsable), count, total_us, timed
 *   SCRY__Q_STATEMENTS      id, pattern, the template's first 200 bytes (ids descending)
 *   SCRY__Q_EVENT_STATEMENT statement (every event)
 *   SCRY__Q_EVENT_KEYS      id, session, statement, literals, params (capture order)
 *   SCRY__Q_EVENT_SPANS     session, id, start_us, fingerprint (capture order)
 *   SCRY__Q_COMPACTED       one row when the store was compacted (scry_store_compact)
 */
enum { SCRY__Q_PATTERNS, SCRY__Q_STATEMENTS, SCRY__Q_EVENT_STATEMENT, SCRY__Q_EVENT_KEYS, SCRY__Q_EVENT_SPANS,
	SCRY__Q_COMPACTED };
typedef struct scry__rows scry__rows;
SCRY_HIDDEN int scry__store_rows(scry_store *store, int query, scry__rows **out, scry_error *err);
/* 1: a row; 0: the end; < 0: an error (in err). */
SCRY_HIDDEN int scry__rows_next(scry__rows *r, scry_error *err);
SCRY_HIDDEN int64_t scry__rows_int(scry__rows *r, int col);
SCRY_HIDDEN bool scry__rows_null(scry__rows *r, int col);
SCRY_HIDDEN const void *scry__rows_blob(scry__rows *r, int col, size_t *n);
SCRY_HIDDEN void scry__rows_free(scry__rows *r);
SCRY_HIDDEN int scry__store_events_by_id(scry_store *store, const int64_t *ids, size_t n,
	scry_event_iter **out, scry_error *err);
/* An event iterator over one session's events in an id range, in chunks: prepare once (only the patterns
 * `fps`, when not NULL), then scry__event_iter_rebind() before each chunk. */
SCRY_HIDDEN int scry__store_session_events(scry_store *store, const uint64_t *fps, size_t nfps,
	scry_event_iter **out, scry_error *err);
/* The session, the range (after_id, last_id] and the most events the next chunk reads. */
SCRY_HIDDEN void scry__event_iter_rebind(scry_event_iter *it, int64_t session, int64_t after_id, int64_t last_id,
	int limit);

/*
 * Secrets out of a statement text (lib/redact.c): in CREATE/ALTER
 * ROLE|USER|GROUP ... PASSWORD, CREATE/ALTER USER MAPPING and CREATE/ALTER
 * SUBSCRIPTION, every string literal becomes '<redacted>'. Returns 0 (text
 * unchanged, *out NULL), 1 (*out: a new NUL-terminated text of *outlen
 * bytes, freed with scry__free) or SCRY_ENOMEM.
 */
SCRY_HIDDEN int scry__redact_secrets(const char *text, size_t len, char **out, size_t *outlen);

/*
 * The next word of a statement text (lib/util/sql_word.c): skips blanks,
 * comments and opening parentheses, copies the word upper-cased into `word`
 * (at most n - 1 letters, NUL-terminated) and returns the text after it.
 */
SCRY_HIDDEN const char *scry__sql_next_word(const char *p, char *word, size_t n);

#endif
