/*
 * lib/logimport_internal.h - what the files of the log importer
 * (lib/logimport*.c, see lib/logimport.c) share. Not installed.
 */
#ifndef SCRY_LOGIMPORT_INTERNAL_H
#define SCRY_LOGIMPORT_INTERNAL_H

#include "internal.h"
#include "logimport_lang.h"

#include <ctype.h>
#include <sys/types.h>

typedef struct scry__logwriter scry__logwriter;

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

/* The line of p[0..n) at *pos (without its newline); advances *pos past it. */
static inline span next_line(const char *p, size_t n, size_t *pos)
{
	const char *l = p + *pos;
	const char *nl = memchr(l, '\n', n - *pos);
	size_t len = nl ? (size_t)(nl - l) : n - *pos;
	*pos += len + 1;
	return (span){ l, len };
}

/* The next line of p[0..n) at *pos that starts a message (not empty, not
 * a tab-indented continuation), in *out; false at the end. */
static inline bool next_head_line(const char *p, size_t n, size_t *pos, span *out)
{
	while (*pos < n) {
		*out = next_line(p, n, pos);
		if (out->n && out->p[0] != '\t')
			return true;
	}
	return false;
}

/* Offset just past the last `c` in s, or 0 (memrchr, which needs _GNU_SOURCE). */
static inline size_t span_rchr_end(span s, char c)
{
	size_t k = s.n;
	while (k && s.p[k - 1] != c)
		k--;
	return k;
}

/* Strips ":port" / "(port)" from a client address (csvlog, jsonlog, stderr). */
static inline span strip_port(span c)
{
	if (c.n && c.p[c.n - 1] == ')') {
		size_t o = span_rchr_end(c, '(');
		if (o)
			c.n = o - 1;
		return c;
	}
	if (c.n && c.p[0] != '[') {
		size_t o = span_rchr_end(c, ':');
		if (o && o < c.n && isdigit((unsigned char)c.p[o]))
			c.n = o - 1;
	}
	return c;
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
	span message, detail, statement, context;
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
	char *prefix_given;      /* the prefix as the options gave it, or NULL */
	bool no_prefix;          /* none could be detected: every line is skipped (nothing_reason says why) */
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
	size_t aevs;
	scry_param *params;
	size_t aparams;
	scry__logwriter *writer;  /* the thread that writes batches; NULL until the first */
	bool no_writer;          /* it could not be started: write in this thread */
	scry_buf tmp;
	newsess *newsess;        /* session rows and ends wait for the batch, so */
	size_t nnew, anew;       /* that they cost one transaction, not one each */
	sessend *ends;
	size_t nends, aends;
	bool tz_warned;
	struct { char abbr[12]; int off; bool ok; } tz[8]; /* zone abbreviations seen */
	int ntz;
	/* detection (format, log_line_prefix, language) on the first bytes */
	bool detecting;
	int fmt;                 /* the format being read (scry_log_format, never AUTO) */
	int wrapper;             /* LOGWRAP_* around the records */
	const scry__loglang *lang; /* the log's language; NULL = English */
	bool lang_auto;          /* detect it */
	scry_buf xsev, xmsg, xdetail, xctx; /* translated texts, in English */
	char *tz_name;           /* copy of opts.timezone */
	/* the file being fed (re-import detection) */
	uint64_t skip_bytes;     /* bytes of the input still to drop (already imported) */
	bool damaged;            /* a file was truncated or corrupt */
	/* syslog / Cloud Logging: the stderr line being joined from its pieces */
	scry_buf wline, wtext;
	int64_t wline_pid;
	uint64_t wline_no;
	scry_buf *unwrap_sink;   /* detection: unwrapped lines go here instead */
	scry_log_file *files;    /* files read, recorded in the store at finish */
	size_t nfiles, afiles;
	session *last_sess;      /* cache of session_find(); reset when sess moves */
	char tcache[19];         /* last "YYYY-MM-DD HH:MM:SS" parsed */
	int64_t tcache_sec;
};

enum { LOGWRAP_NONE = 0, LOGWRAP_SYSLOG, LOGWRAP_CNPG, LOGWRAP_GCL };

/* Fields of the stderr record buffer. */
enum { F_USER, F_DB, F_APP, F_CLIENT, F_SID, F_SEV, F_MSG, F_DETAIL, F_STMT, F_CTX, F_OTHER, F_COUNT };

/* lib/logimport_fields.c */
/* Counts a line that cannot be used; keeps the first few as examples. */
SCRY_HIDDEN void scry__logimport_skip(scry_logimport *imp, uint64_t line, const char *reason, const char *text,
	size_t n);
/* Parses "YYYY-MM-DD HH:MM:SS[.ffffff][ TZ]"; returns bytes consumed or 0. */
SCRY_HIDDEN size_t scry__logimport_time(scry_logimport *imp, const char *p, size_t n, int64_t *out);
/* Leading decimal digits of s. */
SCRY_HIDDEN int64_t scry__logimport_int(span s);

/* lib/logimport_session.c */
/* Turns one record, whatever its format, into events. */
SCRY_HIDDEN int scry__logimport_record(scry_logimport *imp, rec *r, scry_error *err);
/* Records the statements still waiting for a duration line (the log ended first). */
SCRY_HIDDEN int scry__logimport_flush_pending_all(scry_logimport *imp, scry_error *err);

/* lib/logimport_batch.c */
/* Hands the batch of events (with its session rows and ends) to the store. */
SCRY_HIDDEN int scry__logimport_flush_batch(scry_logimport *imp, scry_error *err);
/* Waits until the store is not in use by the writer thread (its error, if any). */
SCRY_HIDDEN int scry__logimport_store_idle(scry_logimport *imp, scry_error *err);

/* lib/logimport_formats.c */
/* Consumes the complete records in imp->in; `final` at the end of input. */
SCRY_HIDDEN int scry__logimport_process(scry_logimport *imp, bool final, scry_error *err);

/* lib/logimport_csvlog.c */
/* Consumes the complete csvlog records of buf[*pos..n); advances *pos. */
SCRY_HIDDEN int scry__logimport_csvlog_records(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
	scry_error *err);

/* lib/logimport_jsonlog.c */
/* Consumes the complete jsonlog lines of buf[*pos..n); advances *pos. */
SCRY_HIDDEN int scry__logimport_jsonlog_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
	scry_error *err);
/* Reads a JSON string at p[*i] (the opening quote) into w; returns the
 * end of the written bytes or NULL when malformed. */
SCRY_HIDDEN char *scry__logimport_json_string(const char *p, size_t n, size_t *i, char *w);

/* lib/logimport_stderr.c */
/* Consumes the complete stderr lines (or syslog / Cloud Logging lines
 * around them) of buf[*pos..n); advances *pos. */
SCRY_HIDDEN int scry__logimport_stderr_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
	scry_error *err);
/* Hands the stderr record being assembled to scry__logimport_record(). */
SCRY_HIDDEN int scry__logimport_stderr_finish(scry_logimport *imp, scry_error *err);
/* Compiles a log_line_prefix; SCRY_EINVAL (with advice) without %c or %p. */
SCRY_HIDDEN int scry__logimport_compile_prefix(scry_logimport *imp, const char *prefix, scry_error *err);
/* Frees and forgets a compiled prefix. */
SCRY_HIDDEN void scry__logimport_prefix_reset(scry_logimport *imp);
/* Lines of p[0..n) that start with the compiled prefix (of at most `max` lines looked at). */
SCRY_HIDDEN size_t scry__logimport_prefix_score(scry_logimport *imp, const char *p, size_t n, size_t max,
	size_t *looked);
/* Matches the compiled prefix at the start of a line; the message's offset in *msg. */
SCRY_HIDDEN bool scry__logimport_prefix_match(scry_logimport *imp, const char *p, size_t n, size_t *msg);
/* Severity or label at p followed by ":  ": its code (0-7 severities LOG..DEBUG, 8-13 labels
 * DETAIL..STATEMENT) and length, or -1. */
SCRY_HIDDEN int scry__logimport_severity_at(const scry_logimport *imp, const char *p, size_t n, size_t *len);
/* Unwraps syslog / Cloud Logging lines into the stderr lines they carry. */
SCRY_HIDDEN int scry__logimport_wrapped_line(scry_logimport *imp, const char *p, size_t n, uint64_t line,
	scry_error *err);
/* Hands a joined syslog line still waiting to the stderr reader. */
SCRY_HIDDEN int scry__logimport_wrapped_flush(scry_logimport *imp, scry_error *err);

/* lib/logimport_detect.c */
/* Detects what the options left open (format, log_line_prefix, language)
 * from the bytes in imp->in, then compiles the prefix. */
SCRY_HIDDEN int scry__logimport_detect(scry_logimport *imp, bool final, scry_error *err);

/* lib/logimport_input.c */
/* Records the files fed (scry_store_log_file_add). */
SCRY_HIDDEN int scry__logimport_record_files(scry_logimport *imp, scry_error *err);

/* lib/logimport_writer.c */
SCRY_HIDDEN int scry__logwriter_start(scry__logwriter **out, scry_store *store);
/* Waits until the batch in flight is written; its error, if any. */
SCRY_HIDDEN int scry__logwriter_wait(scry__logwriter *w, scry_error *err);
/* Hands a batch to the (idle) writer, taking the buffers and giving back empty spare ones. */
SCRY_HIDDEN void scry__logwriter_submit(scry__logwriter *w, scry_event **evs, size_t *aevs, scry_param **params,
	size_t *aparams, scry_buf *arena, size_t n);
SCRY_HIDDEN void scry__logwriter_free(scry__logwriter *w);

/* lib/logimport_translate.c */
SCRY_HIDDEN const scry__loglang *scry__loglang_find(const char *code);
/* The language of a sample of log text, or NULL for English. */
SCRY_HIDDEN const scry__loglang *scry__loglang_detect(const char *p, size_t n);
/* See scry__logimport_severity_at(): English, and `l`'s words (every
 * language's when `l` is NULL and `any`). */
SCRY_HIDDEN int scry__loglang_severity_at(const scry__loglang *l, bool any, const char *p, size_t n, size_t *len);
/* English name of a severity/label code. */
SCRY_HIDDEN const char *scry__loglang_english_severity(int code);
/* A translated severity in English (s unchanged when not one). */
SCRY_HIDDEN span scry__loglang_severity(const scry__loglang *l, span s);
/* A translated message rewritten in English into buf (s unchanged when no format matches). */
SCRY_HIDDEN span scry__loglang_message(const scry__loglang *l, span s, scry_buf *buf, scry_error *err, int *rc);

/* lib/logimport_tz.c */
/* Offset (seconds east of UTC) of a zone abbreviation: 0, or -1 unknown /
 * -2 ambiguous with a note saying so. `zone`: log_timezone, or NULL. */
SCRY_HIDDEN int scry__tz_abbrev(const char *zone, const char *abbr, int *offset, char *note, size_t cap);

/* Reads one complete line (without its newline) of a line-framed format. */
typedef int (*scry__logimport_line_fn)(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err);

/* The framing of the line formats (jsonlog, stderr and its wrappers):
 * hands the complete lines of buf[*pos..n) to `line_fn`, drops empty
 * ones, cut ones at the end (`final`) and oversized ones; advances *pos.
 * Static inline so that each format's file gets its own copy, with its
 * line reader inlined into the loop (this runs once per line). */
static inline int scry__logimport_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *posp,
                                        scry__logimport_line_fn line_fn, scry_error *err)
{
	size_t pos = *posp;
	int rc = 0;
	while (pos < n && !rc) {
		char *p = buf + pos;
		size_t avail = n - pos;
		uint64_t line = imp->line + 1;
		char *nl = memchr(p, '\n', avail);
		if (!nl && final) {
			/* The writer stopped in the middle of this line: a cut record. */
			if (!imp->discarding && !(avail == 1 && p[0] == '\r'))
				scry__logimport_skip(imp, line, "record cut at the end of the log (no final newline)", p, avail);
			if (imp->fmt == SCRY_LOG_STDERR && p[0] == '\t')
				imp->cur_open = false; /* the record it continues is cut too */
			imp->discarding = false;
			imp->line++;
			pos = n;
			break;
		}
		if (!nl && !final) {
			if (avail > imp->opts.max_record_bytes) {
				if (!imp->discarding)
					scry__logimport_skip(imp, line, "line longer than the limit (max_record_bytes)", p, avail);
				imp->discarding = true;
				pos = n;
			}
			break;
		}
		size_t len = nl ? (size_t)(nl - p) : avail;
		imp->line++;
		pos += len + (nl != NULL);
		if (imp->discarding) {
			imp->discarding = false;
			continue;
		}
		if (len == 0 || (len == 1 && p[0] == '\r'))
			continue;
		rc = line_fn(imp, p, len, line, err);
	}
	*posp = pos;
	return rc;
}

#endif
