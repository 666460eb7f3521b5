/*
 * lib/replay_workload.h - the captured workload as the replay engine holds it
 * in memory (lib/replay_workload.c loads and classifies it; lib/replay.c runs it).
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
	rstmt *st;
	size_t n, alloc;
	int64_t first_us, last_us;
} rsession;

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
} workload;

/* Loads the events of `store` (only the patterns of o->fingerprints, if any). */
SCRY_HIDDEN int scry__replay_load(scry_store *store, const scry_replay_options *o, workload *w,
	scry_error *err);
/* Frees what scry__replay_load() allocated; `w` is left empty. */
SCRY_HIDDEN void scry__replay_workload_free(workload *w);

/* lib/replay_exec.c: session state and connection parameters. */

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
