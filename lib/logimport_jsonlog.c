/*
 * lib/logimport_jsonlog.c - jsonlog for the log importer: one JSON object
 * per line (also CloudNativePG's wrapped records) -> `rec`. See
 * lib/logimport_session.c for what records become.
 */
#include "logimport_internal.h"
#include "util/json.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *scry__logimport_json_string(const char *p, size_t n, size_t *i, char *w)
{
	size_t j = *i + 1;
	while (j < n) {
		const char *q = p + j;
		size_t run = 0;
		while (j + run < n && q[run] != '"' && q[run] != '\\')
			run++;
		memcpy(w, q, run);
		w += run;
		j += run;
		if (j >= n)
			return NULL;
		if (p[j] == '"') {
			*i = j + 1;
			return w;
		}
		if (j + 1 >= n)
			return NULL;
		char c = p[j + 1];
		j += 2;
		switch (c) {
		case 'n': *w++ = '\n'; break;
		case 't': *w++ = '\t'; break;
		case 'r': *w++ = '\r'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'u': {
			if (j + 4 > n)
				return NULL;
			unsigned cp = 0;
			for (int k = 0; k < 4; k++) {
				int h = hexval(p[j + k]);
				if (h < 0)
					return NULL;
				cp = cp << 4 | (unsigned)h;
			}
			j += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && j + 6 <= n && p[j] == '\\' && p[j + 1] == 'u') {
				unsigned lo = 0;
				for (int k = 0; k < 4; k++) {
					int h = hexval(p[j + 2 + k]);
					lo = lo << 4 | (unsigned)(h < 0 ? 0 : h);
				}
				if (lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					j += 6;
				}
			}
			w += scry__utf8_put(w, cp);
			break;
		}
		default: *w++ = c; break; /* \" \\ \/ */
		}
	}
	return NULL;
}

/* A JSON string at p[*i] unescaped at *w (advanced past it), in *out;
 * false when malformed. */
static inline bool json_str(const char *p, size_t n, size_t *i, char **w, span *out)
{
	char *e = scry__logimport_json_string(p, n, i, *w);
	if (!e)
		return false;
	*out = (span){ *w, (size_t)(e - *w) };
	*w = e;
	return true;
}

/* Skips the array at p[*i] (Cloud Logging labels...), strings aware (they
 * are unescaped at w, then forgotten); false when malformed. */
static bool json_skip_array(const char *p, size_t n, size_t *ip, char *w)
{
	size_t i = *ip;
	int d = 0;
	for (; i < n; i++) {
		if (p[i] == '"') {
			size_t j = i;
			if (!scry__logimport_json_string(p, n, &j, w))
				return false;
			i = j - 1;
		} else if (p[i] == '[' || p[i] == '{') {
			d++;
		} else if ((p[i] == ']' || p[i] == '}') && --d == 0) {
			i++;
			break;
		}
	}
	*ip = i;
	return true;
}

/* The string (unescaped at *w) or scalar value at p[*i]; false when malformed. */
static inline bool json_value(const char *p, size_t n, size_t *ip, char **w, span *val)
{
	if (*ip < n && p[*ip] == '"')
		return json_str(p, n, ip, w, val);
	size_t i = *ip, s = i;
	while (i < n && p[i] != ',' && p[i] != '}')
		i++;
	*val = (span){ p + s, i - s };
	while (val->n && isspace((unsigned char)val->p[val->n - 1]))
		val->n--;
	*ip = i;
	return true;
}

/* The fields of a jsonlog record, and the texts parsed once all are read. */
typedef struct jrec {
	rec r;
	span ts, sstart, state;
} jrec;

/* The keys read: jsonlog's names, and csvlog's (CloudNativePG's records). */
enum { JK_SPAN, JK_PID, JK_CLIENT_PORT };
static const struct {
	const char *k;
	size_t n;
	int kind;
	size_t off; /* of the span in jrec */
} json_keys[] = {
#define JK(lit, kind, field) { lit, sizeof(lit) - 1, kind, offsetof(jrec, field) }
	JK("message", JK_SPAN, r.message),              JK("error_severity", JK_SPAN, r.severity),
	JK("timestamp", JK_SPAN, ts),                   JK("log_time", JK_SPAN, ts),
	JK("session_id", JK_SPAN, r.sid),               JK("pid", JK_PID, r.pid),
	JK("process_id", JK_PID, r.pid),                JK("user", JK_SPAN, r.user),
	JK("user_name", JK_SPAN, r.user),               JK("dbname", JK_SPAN, r.db),
	JK("database_name", JK_SPAN, r.db),             JK("remote_host", JK_SPAN, r.client),
	JK("connection_from", JK_CLIENT_PORT, r.client), JK("session_start", JK_SPAN, sstart),
	JK("session_start_time", JK_SPAN, sstart),      JK("state_code", JK_SPAN, state),
	JK("sql_state_code", JK_SPAN, state),           JK("detail", JK_SPAN, r.detail),
	JK("statement", JK_SPAN, r.statement),          JK("query", JK_SPAN, r.statement),
	JK("application_name", JK_SPAN, r.app),         JK("context", JK_SPAN, r.context),
#undef JK
};

/* Takes one field by its key (others are ignored). */
static inline void json_field(jrec *j, span key, span val)
{
	for (size_t i = 0; i < sizeof json_keys / sizeof json_keys[0]; i++) {
		if (json_keys[i].n != key.n || memcmp(json_keys[i].k, key.p, key.n))
			continue;
		char *f = (char *)j + json_keys[i].off;
		if (json_keys[i].kind == JK_PID)
			*(int64_t *)f = scry__logimport_int(val);
		else
			*(span *)f = json_keys[i].kind == JK_CLIENT_PORT ? strip_port(val) : val;
		return;
	}
}

static int json_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	/* Unescaped strings are never longer than the line: one reservation. */
	scry__buf_clear(&imp->scratch);
	if (scry__buf_grow(&imp->scratch, n + 8))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	char *w = imp->scratch.ptr;
	jrec j;
	memset(&j, 0, sizeof j);
	j.r.line = line;
	size_t i = 0;
	while (i < n && isspace((unsigned char)p[i]))
		i++;
	if (i >= n || p[i] != '{') {
		scry__logimport_skip(imp, line, "not a jsonlog record (no JSON object)", p, n);
		return 0;
	}
	i++;
	/* CloudNativePG wraps the record: {"level":..,"logger":"postgres",
	 * "record":{"log_time":..,"user_name":..}}. Nested objects are read as
	 * if their keys were at the top (the record's keys are csvlog's names). */
	int depth = 0;
	bool cnpg_record = false;
	for (;;) {
		while (i < n && (isspace((unsigned char)p[i]) || p[i] == ','))
			i++;
		if (i < n && p[i] == '}') {
			if (depth == 0)
				break;
			depth--;
			i++;
			continue;
		}
		span key, val;
		if (i >= n || p[i] != '"' || !json_str(p, n, &i, &w, &key))
			goto bad;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		if (i >= n || p[i] != ':')
			goto bad;
		i++;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		if (i < n && p[i] == '{') {
			if (depth >= 4)
				goto bad;
			depth++;
			i++;
			if (key.n == 6 && !memcmp(key.p, "record", 6))
				cnpg_record = true;
			continue;
		}
		if (i < n && p[i] == '[') {
			if (!json_skip_array(p, n, &i, w))
				goto bad;
			continue;
		}
		if (!json_value(p, n, &i, &w, &val))
			goto bad;
		if (imp->wrapper == LOGWRAP_CNPG && !cnpg_record)
			continue; /* the wrapper's own keys ("level", "ts", "msg") */
		json_field(&j, key, val);
	}
	if (imp->wrapper == LOGWRAP_CNPG && !cnpg_record)
		return 0; /* the operator's own messages: not PostgreSQL records */
	if (!j.ts.n || !scry__logimport_time(imp, j.ts.p, j.ts.n, &j.r.time_us)) {
		scry__logimport_skip(imp, line, "jsonlog record without a valid timestamp", p, n);
		return 0;
	}
	j.r.has_time = true;
	j.r.sess_start = j.sstart;
	if (j.state.n == 5)
		memcpy(j.r.sqlstate, j.state.p, 5);
	return scry__logimport_record(imp, &j.r, err);
bad:
	scry__logimport_skip(imp, line, "malformed jsonlog record", p, n);
	return 0;
}

int scry__logimport_jsonlog_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
                                  scry_error *err)
{
	return scry__logimport_lines(imp, buf, n, final, pos, json_line, err);
}
