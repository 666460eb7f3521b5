/*
 * lib/logimport_internal.h - what lib/logimport.c (sessions, events, API)
 * and lib/logimport_formats.c (csvlog, jsonlog, stderr parsing and framing)
 * share. Not installed.
 */
#ifndef SCRY_LOGIMPORT_INTERNAL_H
#define SCRY_LOGIMPORT_INTERNAL_H

#include "internal.h"

#include <sys/types.h>

typedef struct span {
	const char *p;
	size_t n;
} span;

#define SPAN_LIT(s) ((span){ s, sizeof(s) - 1 })

static inline bool span_starts(span s, const char *lit, size_t n)
{
	return s.n >= n && !memcmp(s.p, lit, n);
}
#define STARTS(s, lit) span_starts(s, lit, sizeof(lit) - 1)

static inline span span_skip(span s, size_t n)
{
	return (span){ s.p + n, s.n - n };
}

/* One log message, whatever the format. Spans point into format buffers
 * that stay valid while the record is processed. */
typedef struct rec {
	uint64_t line;
	int64_t time_us;
	bool has_time;
	int64_t pid;
	int64_t sess_start_us;   /* 0 when unknown */
	span sess_start;         /* or its text, parsed only when a session starts */
	span sid;                /* session key */
	span user, db, app, client;
	span severity;
	char sqlstate[6];
	span message, detail, statement;
} rec;

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

enum { P_NONE = 0, P_STMT, P_SWALLOW };

typedef struct session {
	char key[64];
	size_t keylen;
	int32_t next;            /* hash chain, or free list */
	bool used;
	uint64_t last_seen;
	int64_t store_id;        /* 0 until its first event; < 0: -(index+1) in newsess */
	uint32_t gen;            /* bumped when the slot is reused */
	int64_t start_us;
	char db[64], user[64], app[64], client[64];
	/* A statement waiting for its duration line (or the next statement). */
	int pstate;
	scry_event_kind pkind;
	int64_t pstart;
	scry_buf ptext;
	scry_buf pparams;        /* packed: (int32 length or -1, bytes)* */
	int pnparams;
} session;

/* An event waiting in the batch; strings live in the batch arena. */
typedef struct bevent {
	int64_t session_id, start_us, duration_us;
	scry_event_kind kind;
	size_t qoff, qlen, poff, plen, eoff;
	int nparams;
	bool has_error;
	char sqlstate[6];
} bevent;

/* A session row to add with the next batch, and its id once added. */
typedef struct newsess {
	char db[64], user[64], app[64], client[64];
	int64_t start_us;
	int64_t id;
	int32_t slot;            /* its session slot, if still the same generation */
	uint32_t gen;
} newsess;

/* A session end to record with the next batch. */
typedef struct sessend {
	int64_t id;              /* store id, or -(index+1) in newsess */
	int64_t ended_us;
} sessend;

/* log_line_prefix, compiled. */
typedef struct pitem {
	char esc;                /* 0 for a literal */
	bool padded;
	const char *lit;
	size_t litlen;
} pitem;

struct scry_logimport {
	scry_store *store;
	scry_logimport_options opts;
	scry_logimport_stats st;
	int64_t patterns_before;
	bool finished;

	/* framing */
	scry_buf in;             /* bytes not yet consumed */
	size_t scan;             /* csv: bytes of the current record already scanned */
	bool in_quote;
	bool discarding;         /* dropping an oversized record */
	uint64_t line;           /* physical lines consumed */
	scry_buf scratch;        /* json unescaping */

	/* stderr */
	pitem items[64];
	int nitems;
	char *prefix_copy;
	bool has_c, has_p, has_s;
	span mspan[64];          /* per-item matches of the last matched line */
	int qend;
	scry_buf cur;            /* the stderr record being assembled */
	bool cur_open;
	rec cur_rec;
	size_t cur_off[16], cur_len[16];
	int cur_last;            /* index of the field continuation lines extend */
	int64_t cur_pid;

	/* sessions */
	session *sess;
	size_t nsess, asess;
	int32_t *buckets;
	size_t nbuckets;
	int32_t free_list;
	size_t open_sessions;

	/* batch */
	bevent *bev;
	size_t nbev, abev;
	scry_buf arena;
	scry_event *evs;
	scry_param *params;
	size_t aparams;
	scry_buf tmp;
	newsess *newsess;        /* session rows and ends wait for the batch, so */
	size_t nnew, anew;       /* that they cost one transaction, not one each */
	sessend *ends;
	size_t nends, aends;
	bool tz_warned;
	session *last_sess;      /* cache of session_find(); reset when sess moves */
	char tcache[19];         /* last "YYYY-MM-DD HH:MM:SS" parsed */
	int64_t tcache_sec;
};

/* Fields of the stderr record buffer. */
enum { F_USER, F_DB, F_APP, F_CLIENT, F_SID, F_SEV, F_MSG, F_DETAIL, F_STMT, F_OTHER, F_COUNT };

/* lib/logimport.c */
/* Counts a line that cannot be used; keeps the first few as examples. */
SCRY_HIDDEN void scry__logimport_skip(scry_logimport *imp, uint64_t line, const char *reason, const char *text,
	size_t n);
/* Parses "YYYY-MM-DD HH:MM:SS[.ffffff][ TZ]"; returns bytes consumed or 0. */
SCRY_HIDDEN size_t scry__logimport_time(scry_logimport *imp, const char *p, size_t n, int64_t *out);
/* Leading decimal digits of s. */
SCRY_HIDDEN int64_t scry__logimport_int(span s);
/* ERROR, FATAL or PANIC. */
SCRY_HIDDEN bool scry__logimport_is_error(span s);
/* Turns one record, whatever its format, into events. */
SCRY_HIDDEN int scry__logimport_record(scry_logimport *imp, rec *r, scry_error *err);

/* lib/logimport_formats.c */
/* Consumes the complete records in imp->in; `final` at the end of input. */
SCRY_HIDDEN int scry__logimport_process(scry_logimport *imp, bool final, scry_error *err);
/* Hands the stderr record being assembled to scry__logimport_record(). */
SCRY_HIDDEN int scry__logimport_stderr_finish(scry_logimport *imp, scry_error *err);
/* Compiles a log_line_prefix; SCRY_EINVAL (with advice) without %c or %p. */
SCRY_HIDDEN int scry__logimport_compile_prefix(scry_logimport *imp, const char *prefix, scry_error *err);

#endif
