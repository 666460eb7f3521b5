/*
 * lib/replay_workload.h - the captured workload as the replay engine holds it
 * in memory (lib/replay_workload.c loads and classifies it; lib/replay.c runs it,
 * through the engine's files listed in lib/replay_internal.h).
 * Private to the replay module.
 */
#ifndef SCRY_REPLAY_WORKLOAD_H
#define SCRY_REPLAY_WORKLOAD_H

#include "internal.h"

#include <libpq-fe.h>

/* What a statement does, decided once per distinct text (see classify()). */
enum {
	CLS_WRITE = 0,   /* may write: wrapped / skipped / executed per `writes` */
	CLS_READ,        /* provably read-only: runs as is */
	CLS_BEGIN,       /* BEGIN / START TRANSACTION */
	CLS_COMMIT,      /* COMMIT / END / PREPARE TRANSACTION: becomes ROLLBACK */
	CLS_TXN,         /* ROLLBACK, SAVEPOINT, RELEASE: as is */
	CLS_SESSION,     /* SET, SHOW, PREPARE, DISCARD, cursors...: as is, never wrapped */
	CLS_NOTXN,       /* VACUUM, CHECKPOINT: cannot run in a transaction, change no rows */
	CLS_2PC          /* COMMIT/ROLLBACK PREPARED: skipped unless writes execute */
};

/* A distinct (text, parameter types) pair; statements point to one. */
typedef struct itext {
	char *text;
	size_t len;
	uint64_t hash;
	uint32_t id;
	int nparams;
	Oid *types;
	uint8_t cls;
	uint8_t clears_prepared; /* DISCARD ALL / DEALLOCATE ALL drop our statements too */
	uint8_t cursorable;      /* a query DECLARE ... CURSOR FOR accepts (row-limited portals) */
} itext;

typedef struct rstmt {
	int64_t event_id;
	int64_t start_us;
	itext *t;
	uint8_t kind;
	int nparams;
	const char **values; /* one block: values, lengths, formats, bytes */
	int *lengths;
	int *formats;
	int64_t fetch;        /* row limit per Execute of the captured portal; 0 = one Execute */
	int64_t rows;         /* captured rows; -1 unknown */
	int64_t duration_us;  /* captured; -1 unknown */
	unsigned flags;       /* SCRY_EVENT_F_* */
	char *copy;           /* COPY FROM STDIN data (owned), NULL when none */
	size_t copy_len;
} rstmt;

typedef struct rsession {
	int64_t id;
	char *user;           /* captured user (owned), NULL when unknown */
	char *params;         /* captured startup parameters (owned), NULL when none */
	const char *role;     /* role to SET ROLE to (after --user-map), NULL = none */
	uint8_t role_ok[2];   /* per target: the replay user may SET ROLE to it */
	rstmt *st;            /* loaded mode: all its statements; streaming: NULL */
	size_t n, alloc;
	int64_t first_us, last_us;
	int64_t first_id, last_id; /* streaming: its events lie in this id range */
} rsession;

/*
 * Where a runner is in its session when the workload streams: a window of
 * its statements, [base, base + n), read in chunks (lib/replay_workload.c).
 * Statements before the pin (the first one the runner may still go back to:
 * the start of the A/B unit in progress) are dropped when more are read.
 * Zero-initialised.
 */
typedef struct scry__stmt_cursor {
	rstmt *st;        /* the window */
	itext **own;      /* per statement: its own text (simple protocol), or NULL */
	size_t n, cap;
	size_t base;      /* session index of st[0] */
	int64_t last_id;  /* last event id read */
} scry__stmt_cursor;

typedef struct workload {
	itext **texts;   /* by id */
	size_t ntexts, atexts;
	itext **table;   /* open addressing */
	size_t tcap;
	rsession *sess;
	size_t nsess, asess;
	size_t nstmts;
	int64_t first_us;
	scry__u64map sess_map; /* session id -> index in sess + 1 */
	/* classification per fingerprint: texts of one pattern differ only in constants */
	scry__u64map cls_map; /* fingerprint -> (cls | clears_prepared << 7) + 1 */
	/* With a budget (lib/replay_budget.c): what was sampled. */
	bool sampled;
	int64_t captured, budget;
	/*
	 * Without a budget the workload streams: sessions are known (ids, time
	 * and id ranges, counts) but their statements are read in chunks as the
	 * replay advances, through a read-only connection of its own (the sample
	 * writer thread uses the caller's).
	 */
	bool streaming;
	scry_store *reader;
	scry_event_iter *chunk_it;
	const uint64_t *fingerprints;
	size_t nfingerprints;
	size_t resident, resident_peak; /* statements held in memory now / at most (tests) */
	int error;                      /* a chunk failed to load: the code, message in err */
	scry_error err;
} workload;

/* The events a budgeted replay runs (lib/replay_budget.c). */
typedef struct scry__budget_plan {
	int64_t *ids;      /* event ids, ascending */
	size_t n;
	int64_t captured;  /* captured executions of the wanted patterns */
	int64_t present;   /* of them, events still in the store */
	int64_t budget;    /* executions the sample was sized for */
} scry__budget_plan;

/* Chooses the sample for o->budget / o->budget_seconds. */
SCRY_HIDDEN int scry__budget_select(scry_store *store, const scry_replay_options *o, scry__budget_plan *plan,
	scry_error *err);
SCRY_HIDDEN void scry__budget_plan_free(scry__budget_plan *plan);

/* Loads the events of `store` (only the patterns of o->fingerprints, if any). */
SCRY_HIDDEN int scry__replay_load(scry_store *store, const scry_replay_options *o, workload *w,
	scry_error *err);
/*
 * Statement `idx` of session `s` for the runner whose cursor is `c`; the
 * runner will not ask for statements before `pin` again (pin <= idx). A
 * streaming workload reads the next chunk when needed, dropping what lies
 * before the pin. NULL when a chunk could not be read (w->error, w->err).
 */
SCRY_HIDDEN const rstmt *scry__replay_stmt(workload *w, scry__stmt_cursor *c, const rsession *s, size_t idx,
	size_t pin);
/* Frees what a cursor holds. */
SCRY_HIDDEN void scry__stmt_cursor_close(workload *w, scry__stmt_cursor *c);
/* Frees what scry__replay_load() allocated; `w` is left empty. */
SCRY_HIDDEN void scry__replay_workload_free(workload *w);

/* lib/replay_exec.c: session state and connection parameters. */

/* statement_timeout plus the client's margin, in ms: how long the client
 * waits for an answer before it gives up on a server (0 = no limit). */
static inline int64_t scry__replay_client_limit_ms(const scry_replay_options *o)
{
	if (o->timeout_ms <= 0)
		return 0;
	return (int64_t)o->timeout_ms + (o->client_margin_ms > 0 ? o->client_margin_ms : 1000);
}

/* Connection keywords of a replay connection of session `s` (NULL: none):
 * TCP keepalives and tcp_user_timeout, the target, and the session's
 * captured startup parameters. Strings point into `store` or `s`. */
#define REPLAY_MAX_KEYS 12
SCRY_HIDDEN int scry__replay_conn_keys(const scry_replay_options *o, const rsession *s, const char *conninfo,
	const char **keys, const char **vals, scry_buf *store);
/* Decides each session's role (user map, --ignore-users) and asks the target
 * which of them the replay user may SET ROLE to; logs once per missing role. */
SCRY_HIDDEN int scry__replay_roles(const scry_replay_options *o, workload *w, PGconn *pg, int target,
	scry_error *err);
/* The setup query of a new connection: statement_timeout and SET ROLE. */
SCRY_HIDDEN int scry__replay_setup_sql(const scry_replay_options *o, const rsession *s, int target, scry_buf *out);

#endif
