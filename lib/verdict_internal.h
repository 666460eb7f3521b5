/*
 * lib/verdict_internal.h - what the verdict's files share: the verdict
 * itself (verdict.c), its statistics (verdict_stats.c), the plan model and
 * diff (verdict_plan.c), the probing of live clones (verdict_probe.c) and
 * the measurements on them (verdict_work.c).
 */
#ifndef SCRY_VERDICT_INTERNAL_H
#define SCRY_VERDICT_INTERNAL_H

#include "internal.h"

#include "scry/verdict.h"

#include <postgres_ext.h> /* Oid */

#define CONFIDENCE_ALPHA 0.05 /* two-sided 95% intervals */

struct scry_verdict {
	scry_pattern_verdict *items;
	size_t n;
	size_t failures;
	scry_verdict_options opts;
	char *baseline_label, *candidate_label;
	int64_t baseline_run, candidate_run;
	scry__excluded excluded; /* patterns the filter left out (lib/filter.c) */
};

/* One (event, round) of a pattern, with what each side measured. */
typedef struct obs {
	int32_t pat;       /* index into the pattern table */
	uint8_t has_b, has_c;
	int64_t event;
	int32_t round;
	double b_ms, c_ms;
	int64_t b_rows, c_rows;
	char b_state[6], c_state[6];  /* the root error when the pattern's own earlier failure aborted the transaction */
	int32_t b_abort, c_abort;     /* pattern index of another pattern whose failure aborted this one, else -1 */
} obs;

typedef struct pat_row {
	int64_t id;
	uint64_t fingerprint;
	char *normalized;
	int64_t count;
	double mean_ms;
} pat_row;

typedef struct sample_row {
	int64_t event, pattern, rows;
	int32_t round;
	double ms;
	char state[6];
	int64_t root_pattern; /* state 25P02: the pattern whose failure aborted the transaction, else 0 */
	char root_state[6];   /* ... and its SQLSTATE */
} sample_row;

/* Has the caller's cancel flag (scry_verdict_options.cancel) been set? */
static inline bool scry__verdict_cancelled(const scry_verdict_options *o) { return o->cancel && *o->cancel; }

/* Logs through the caller's callback (scry__log does the formatting). */
#define vlog(o, level, ...) scry__log((o)->log, (o)->log_ctx, level, __VA_ARGS__)

/* A copy of the buffer's text ("" when empty); disposes of the buffer. */
SCRY_HIDDEN char *scry__vdup_buf(scry_buf *b);
/* A formatted string, or NULL when out of memory. */
SCRY_HIDDEN char *scry__vdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- verdict_plan.c: EXPLAIN (FORMAT JSON) reader, plan summary and diff ---- */

typedef enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
	jtype type;
	double num;
	char *str;          /* J_STR */
	struct jval *items; /* J_ARR / J_OBJ values */
	char **keys;        /* J_OBJ */
	size_t n;
} jval;

SCRY_HIDDEN const jval *scry__jget(const jval *o, const char *key);
SCRY_HIDDEN const char *scry__jstr(const jval *o, const char *key);
SCRY_HIDDEN double scry__jnum(const jval *o, const char *key);

typedef struct plan_node {
	const jval *o;
	int depth;
} plan_node;

typedef struct plan_info {
	jval root;
	const jval *top;      /* the "Plan" object */
	plan_node *nodes;     /* preorder */
	size_t n, cap;
	double exec_ms, plan_ms;
	double removed;       /* rows removed by filter, all nodes, times loops */
	double buffers;       /* shared hit + read of the top node (cumulative) */
	bool analyzed;        /* EXPLAIN ANALYZE (actual rows, timings), else estimates only */
} plan_info;

/* Parses EXPLAIN (FORMAT JSON) text. Returns 0, SCRY_EPARSE or SCRY_ENOMEM. */
SCRY_HIDDEN int scry__plan_parse(const char *json, plan_info *pi);
SCRY_HIDDEN void scry__plan_free(plan_info *pi);
/* Indented one-line-per-node summary a person can read. */
SCRY_HIDDEN void scry__plan_text(scry_buf *b, const plan_info *pi);
/* Same node types and indexes, in the same order? */
SCRY_HIDDEN bool scry__plan_same_shape(const plan_info *a, const plan_info *c);
/* One line: what changed between the plans. */
SCRY_HIDDEN void scry__plan_diff(scry_buf *b, const plan_info *a, const plan_info *c);

/* ---- verdict_stats.c: pairing, statistics and classification ---- */

SCRY_HIDDEN int scry__cmp_double(const void *x, const void *y);
/* Does the text, past any characters of `skip`, start with one of the words (as a whole word)? */
SCRY_HIDDEN bool scry__starts_with_word(const char *text, const char *skip, const char *const *words,
	size_t nwords);
/* Percentile (0..1) of sorted values. */
SCRY_HIDDEN double scry__quantile(const double *v, size_t n, double q);
/* k of the sign-test confidence interval of a median (0: n too small). */
SCRY_HIDDEN size_t scry__sign_test_k(size_t n, double alpha);
/* Merges both runs' samples (each ordered by event, round) into observations. */
SCRY_HIDDEN int scry__verdict_merge(const sample_row *b, size_t nb, const sample_row *c, size_t nc,
	const pat_row *pats, size_t npats, obs **out, size_t *nout);
/* Counting sort of observations by pattern, keeping (event, round) order within one. */
SCRY_HIDDEN int scry__verdict_group(obs **o, size_t n, size_t npats, size_t **start_out);
/* Statistics and class of one pattern from its observations; scratch holds 3n doubles. */
SCRY_HIDDEN int scry__verdict_judge(scry_pattern_verdict *pv, const obs *o, size_t n,
	const scry_verdict_options *opts, const pat_row *pats, double *scratch);

/* 256 kB more read per execution: below it, work growth is not a regression. */
#define WORK_FLOOR_BLOCKS 32
/* Counts, no clock reads. */
#define EXPLAIN_WORK "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) "

/* ---- verdict_probe.c: the helpers verdict_work.c shares ---- */

/* One captured execution: its text and parameters, as libpq takes them. */
typedef struct stored_exec {
	int64_t id;
	char *query;
	int nparams;
	Oid *types;
	char **values;
	int *lengths, *formats;
} stored_exec;
SCRY_HIDDEN void scry__vexec_free(stored_exec *e);
/* Reads up to `max` captured executions of a pattern. */
SCRY_HIDDEN int scry__vexec_load(scry_store *store, uint64_t fp, size_t max, stored_exec **out, size_t *n,
	scry_error *err);
/* Runs `prefix` + the execution's text with its parameters (NULL when out of memory); `cancel` (may be NULL)
 * interrupts it (lib/util/pgexec.h). */
SCRY_HIDDEN struct pg_result *scry__vexec_run(struct pg_conn *conn, const char *prefix, const stored_exec *e,
	const volatile int *cancel);
/* Runs a command; true when it succeeded. */
SCRY_HIDDEN bool scry__vexec_ok(struct pg_conn *conn, const char *sql);
/* Stores a plan; a store failure is logged. */
SCRY_HIDDEN void scry__vkeep_plan(scry_store *store, const scry_verdict_options *opts, int64_t run, uint64_t fp,
	int64_t event, const char *json);
/* A connection whose notices go to the log; NULL (logged) when it fails. */
SCRY_HIDDEN struct pg_conn *scry__vconnect_side(const char *conninfo, const scry_verdict_options *opts,
	const char *side);
/* EXPLAIN (`prefix`) of one execution inside BEGIN ... ROLLBACK: the JSON, or NULL and the message in *msg. */
SCRY_HIDDEN char *scry__vexplain(struct pg_conn *conn, const char *prefix, const stored_exec *e, char **msg,
	const volatile int *cancel);
/* Sets the pattern's plans (text) and plan change from both sides' JSON (either may be NULL). */
SCRY_HIDDEN void scry__vset_plan(scry_pattern_verdict *pv, const char *json_a, const char *json_c);
/* Blocks an EXPLAIN (ANALYZE, BUFFERS) plan touched. */
SCRY_HIDDEN double scry__vplan_work(const plan_info *pi);

/* ---- verdict_probe.c: plans, error messages and best indexes on live clones ---- */

/* A connection to one side for the probes, or NULL (logged) when it fails or conninfo is NULL. */
SCRY_HIDDEN struct pg_conn *scry__verdict_connect(const scry_verdict *v, const char *conninfo, const char *side);
/* Completes the verdict's patterns from the clones (root causes of
 * regressions, new errors' messages, best indexes). ca may be NULL. */
SCRY_HIDDEN void scry__verdict_probe(scry_verdict *v, scry_store *store, struct pg_conn *ca, struct pg_conn *cc);
/* ---- verdict_work.c: repeated executions, work, plans of a run ---- */

/*
 * Repeats a pattern's captured executions on both sides, interleaved, each
 * in BEGIN ... ROLLBACK, until `want` pairs succeed (or it clearly cannot);
 * stores the samples in both runs (rounds from round0) and returns them as
 * observations (*out, caller frees). 1 when the pattern cannot be repeated.
 */
SCRY_HIDDEN int scry__verdict_repeat(scry_verdict *v, scry_store *store, const pat_row *pat, int32_t pat_index,
	size_t want, int32_t round0, struct pg_conn *ca, struct pg_conn *cc, obs **out, size_t *nout);

/* The work rule (plan changed, work grew by the threshold, timing ratio > 1): may make pv regressed. */
SCRY_HIDDEN void scry__verdict_apply_work(scry_pattern_verdict *pv, const scry_verdict_options *opts);
/* Work of both sides from two EXPLAIN ANALYZE BUFFERS plans; false when they are not both analyzed. */
SCRY_HIDDEN bool scry__verdict_work_from_plans(scry_pattern_verdict *pv, const char *json_a, const char *json_c);
/* Work of a judged pattern on two clones: a few sampled executions, interleaved; applies the work rule. */
SCRY_HIDDEN void scry__verdict_measure_work(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv,
	struct pg_conn *ca, struct pg_conn *cc);
/* Plans the store holds for both runs: shown for regressions, and wherever the plan's shape changed. */
SCRY_HIDDEN void scry__verdict_stored_plans(scry_verdict *v, scry_store *store);

/*
 * EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) inside BEGIN ...
 * ROLLBACK of one captured execution (real parameters) of every pattern (of
 * `fps`, if any) on `conninfo`, stored in `plans` for run_id; a plain
 * EXPLAIN (nothing runs) for statements that may write unless
 * analyze_writes. Called by the replay after a
 * run, so that `scry diff` of any two runs can name the plan change.
 * Failures are logged; returns 0 or SCRY_ENOMEM.
 */
SCRY_HIDDEN int scry__plans_record(scry_store *store, const char *conninfo, int64_t run_id, const uint64_t *fps,
	size_t nfps, bool analyze_writes, bool (*stop)(void *), void *stop_ctx, scry_log_fn log, void *log_ctx);

#endif /* SCRY_VERDICT_INTERNAL_H */
