/*
 * tests/abi/scry_v1.h - FROZEN copy of the structs of libscry's first
 * versioned ABI (SCRY_0.1), as a caller compiled against it saw them, with
 * the prototypes it called. Never edit this file when the headers change:
 * it is what an old caller looks like. tests/abi/v1_caller.c runs such a
 * caller against today's library (docs/api.md, "Versioning").
 *
 * It deliberately does not include the scry headers.
 */
#ifndef SCRY_V1_H
#define SCRY_V1_H

#include <stddef.h>
#include <stdint.h>

typedef struct v1_error {
	int code;
	int sys_code;
	char sqlstate[6];
	char message[512];
} v1_error;

typedef struct v1_buf {
	char *ptr;
	size_t size, asize;
} v1_buf;

typedef void (*v1_log_fn)(void *ctx, int level, const char *message);
typedef void (*v1_progress_fn)(void *ctx, const char *phase, uint64_t done, uint64_t total);

/* ---- store ---- */
typedef struct v1_store_options {
	unsigned int version;
	int read_only, must_exist, durable;
} v1_store_options;

typedef struct v1_session_info {
	unsigned int version;
	int source;
	const char *database, *user, *application, *client;
	int64_t started_us;
} v1_session_info;

typedef struct v1_param {
	uint32_t type_oid;
	int format;
	const char *value;
	int32_t length;
} v1_param;

typedef struct v1_event {
	int64_t session_id, start_us, duration_us;
	int kind;
	const char *query;
	size_t query_len;
	int nparams;
	const v1_param *params;
	int64_t rows;
	char sqlstate[6];
	const char *error_message;
} v1_event;

typedef struct v1_store_info {
	size_t size;
	int64_t events, sessions, patterns, statements, runs, samples, first_us, last_us, file_bytes;
	int schema_version;
} v1_store_info;

typedef struct v1_stored_event {
	int64_t id, session_id, seq, start_us, duration_us;
	int kind;
	const char *query;
	size_t query_len;
	int nparams;
	const v1_param *params;
	int64_t rows;
	char sqlstate[6];
	int64_t pattern_id;
	uint64_t fingerprint;
} v1_stored_event;

typedef struct v1_event_filter {
	unsigned int version;
	const uint64_t *fingerprints;
	size_t nfingerprints;
	int64_t session_id;
} v1_event_filter;

typedef struct v1_run_summary {
	unsigned int version;
	int64_t executions, errors, timeouts, reconnects;
	double per_second;
	const char *summary_json;
} v1_run_summary;

typedef struct v1_sample {
	int64_t event_id;
	int32_t round;
	int64_t latency_us, rows;
	char sqlstate[6];
} v1_sample;

typedef struct v1_stored_sample {
	int64_t event_id, pattern_id;
	uint64_t fingerprint;
	int32_t round;
	int64_t latency_us, rows;
	char sqlstate[6];
} v1_stored_sample;

/* ---- fingerprint ---- */
typedef struct v1_fingerprinter_options {
	unsigned int version;
	size_t cache_entries;
} v1_fingerprinter_options;

typedef struct v1_fingerprinter_stats {
	size_t size;
	uint64_t calls, hits, parses, errors;
} v1_fingerprinter_stats;

/* ---- pgwire ---- */
typedef struct v1_pgwire_callbacks {
	unsigned int version;
	void (*on_startup)(void *ctx, const void *startup);
	void (*on_event)(void *ctx, const v1_event *ev);
	void *ctx;
} v1_pgwire_callbacks;

typedef struct v1_pgwire_options {
	unsigned int version;
	size_t max_message_bytes, max_query_bytes;
	int64_t clock_offset_us;
	size_t max_pending;
} v1_pgwire_options;

typedef struct v1_pgwire_stats {
	size_t size;
	uint64_t messages_frontend, messages_backend, events, notices, parameter_status, pending;
} v1_pgwire_stats;

/* ---- log import ---- */
typedef struct v1_logimport_options {
	unsigned int version;
	int format;
	const char *line_prefix;
	size_t batch_events, max_record_bytes, max_open_sessions;
	v1_progress_fn progress;
	void *progress_ctx;
} v1_logimport_options;

typedef struct v1_logimport_skip {
	uint64_t line;
	char reason[96];
	char text[128];
} v1_logimport_skip;

typedef struct v1_logimport_stats {
	size_t size;
	uint64_t bytes, lines, records, statements, failed, sessions, patterns, new_patterns,
		unpaired_durations, skipped;
	unsigned nskip_samples;
	v1_logimport_skip skip_samples[5];
	char warning[160];
} v1_logimport_stats;

/* ---- replay ---- */
typedef struct v1_replay_options {
	unsigned int version;
	int mode;
	double speed;
	int concurrency, repeat, warmup, writes, timeout_ms;
	const uint64_t *fingerprints;
	size_t nfingerprints;
	v1_progress_fn progress;
	void *progress_ctx;
	v1_log_fn log;
	void *log_ctx;
} v1_replay_options;

typedef struct v1_replay_result {
	size_t size;
	int64_t run_id, executions, errors, timeouts, reconnects, skipped;
	double per_second;
	int64_t elapsed_us, lag_p50_us, lag_p99_us, lag_max_us;
} v1_replay_result;

/* ---- verdict, shadow, pipeline ---- */
typedef struct v1_verdict_options {
	unsigned int version;
	double threshold, min_delta_ms;
	int min_samples;
	const char *baseline_conninfo, *candidate_conninfo;
	v1_log_fn log;
	void *log_ctx;
	v1_progress_fn progress;
	void *progress_ctx;
} v1_verdict_options;

typedef struct v1_migration {
	unsigned int version;
	char *const *argv;
	const char *sql;
	void *fn;
	void *fn_ctx;
	void *output;
	void *output_ctx;
} v1_migration;

typedef struct v1_pipeline_options {
	unsigned int version;
	int mode;
	int no_settle;
	const v1_replay_options *replay;
	const v1_verdict_options *verdict;
	const v1_migration *fix;
	const char *label_prefix, *suffix;
	v1_progress_fn progress;
	void *progress_ctx;
	v1_log_fn log;
	void *log_ctx;
} v1_pipeline_options;

typedef struct v1_pipeline_stats {
	size_t size;
	int64_t clone_us, migrate_us, settle_us, replay_us, verdict_us, fix_us, total_us;
} v1_pipeline_stats;

/* ---- proxy ---- */
typedef struct v1_proxy_options {
	unsigned int version;
	const char *listen, *listen_unix, *upstream;
	size_t queue_events, batch_events, max_message_bytes, max_query_bytes;
	int max_connections;
	v1_log_fn log;
	void *log_ctx;
	size_t queue_bytes;
} v1_proxy_options;

typedef struct v1_proxy_stats {
	size_t size;
	uint64_t connections, connections_active, connections_failed, protocol_errors, events_captured,
		events_recorded, events_dropped, bytes_from_clients, bytes_from_server;
} v1_proxy_stats;

/* ---- the functions a version-1 caller used ---- */
const char *scry_version(void);
int scry_version_number(void);
void scry_buf_dispose(v1_buf *buf);

int scry_store_open(void **out, const char *path, const v1_store_options *opts, v1_error *err);
void scry_store_free(void *store);
int scry_store_session_add(void *store, const v1_session_info *info, int64_t *session_id, v1_error *err);
int scry_store_append(void *store, const v1_event *events, size_t n, size_t event_size, v1_error *err);
int scry_store_info_get(void *store, v1_store_info *out, v1_error *err);
int scry_store_events(void *store, const v1_event_filter *filter, void **it, v1_error *err);
int scry_event_iter_next(void *it, const v1_stored_event **ev, v1_error *err);
void scry_event_iter_free(void *it);
int scry_store_run_begin(void *store, const char *label, const char *target, const char *options_json,
	int64_t *run_id, v1_error *err);
int scry_store_run_end(void *store, int64_t run_id, const v1_run_summary *summary, v1_error *err);
int scry_store_samples_append(void *store, int64_t run_id, const v1_sample *samples, size_t n,
	size_t sample_size, v1_error *err);
int scry_store_samples(void *store, int64_t run_id, void **it, v1_error *err);
int scry_sample_iter_next(void *it, const v1_stored_sample **s, v1_error *err);
void scry_sample_iter_free(void *it);

int scry_fingerprinter_new(void **out, const v1_fingerprinter_options *opts, v1_error *err);
void scry_fingerprinter_free(void *f);
int scry_fingerprint_compute(void *f, const char *sql, size_t len, uint64_t *out, v1_error *err);
int scry_fingerprinter_stats_get(const void *f, v1_fingerprinter_stats *out);

int scry_pgwire_new(void **out, const v1_pgwire_callbacks *cb, const v1_pgwire_options *opts, v1_error *err);
void scry_pgwire_free(void *d);
int scry_pgwire_feed(void *d, int dir, const void *data, size_t len, int64_t now_us, v1_error *err);
int scry_pgwire_stats_get(const void *d, v1_pgwire_stats *out);

int scry_logimport_new(void **out, void *store, const v1_logimport_options *opts, v1_error *err);
int scry_logimport_feed(void *imp, const void *data, size_t n, v1_error *err);
int scry_logimport_finish(void *imp, v1_logimport_stats *stats, v1_error *err);
void scry_logimport_free(void *imp);

int scry_replay_new(void **out, void *store, const v1_replay_options *opts, v1_error *err);
int scry_replay_run(void *r, const char *conninfo, const char *label, v1_replay_result *out, v1_error *err);
void scry_replay_free(void *r);

int scry_pipeline_new(void **out, void *store, const char *target, const v1_pipeline_options *opts, v1_error *err);
int scry_pipeline_stats_get(const void *p, v1_pipeline_stats *out);
int scry_pipeline_replay_result_get(const void *p, int which, v1_replay_result *out);
void scry_pipeline_free(void *p);

int scry_proxy_new(void **out, void *store, const v1_proxy_options *opts, v1_error *err);
int scry_proxy_stats_get(const void *p, v1_proxy_stats *out);
void scry_proxy_free(void *p);

#endif
