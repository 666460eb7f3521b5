/*
 * lib/logimport_jsonlog.c - jsonlog for the log importer: one JSON object
 * per line (also CloudNativePG's wrapped records) -> `rec`. See
 * lib/logimport_session.c for what records become.
 */
#include "logimport_internal.h"
#include "util/json.h"

#include <ctype.h>
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

static int json_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	/* Unescaped strings are never longer than the line: one reservation. */
	scry__buf_clear(&imp->scratch);
	if (scry__buf_grow(&imp->scratch, n + 8))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	char *w = imp->scratch.ptr;
	rec r;
	memset(&r, 0, sizeof r);
	r.line = line;
	span ts = { NULL, 0 }, sstart = { NULL, 0 }, state = { NULL, 0 };
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
		if (i >= n || p[i] != '"')
			goto bad;
		char *k = w;
		char *ke = scry__logimport_json_string(p, n, &i, w);
		if (!ke)
			goto bad;
		span key = { k, (size_t)(ke - k) };
		w = ke;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		if (i >= n || p[i] != ':')
			goto bad;
		i++;
		while (i < n && isspace((unsigned char)p[i]))
			i++;
		span val;
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
			/* An array (Cloud Logging labels...): skipped, strings aware. */
			int d = 0;
			for (; i < n; i++) {
				if (p[i] == '"') {
					size_t j = i;
					if (!scry__logimport_json_string(p, n, &j, w))
						goto bad;
					i = j - 1;
				} else if (p[i] == '[' || p[i] == '{') {
					d++;
				} else if ((p[i] == ']' || p[i] == '}') && --d == 0) {
					i++;
					break;
				}
			}
			continue;
		}
		if (i < n && p[i] == '"') {
			char *v = w;
			char *ve = scry__logimport_json_string(p, n, &i, w);
			if (!ve)
				goto bad;
			val = (span){ v, (size_t)(ve - v) };
			w = ve;
		} else {
			size_t s = i;
			while (i < n && p[i] != ',' && p[i] != '}')
				i++;
			val = (span){ p + s, i - s };
			while (val.n && isspace((unsigned char)val.p[val.n - 1]))
				val.n--;
		}
#define KEY(lit) (key.n == sizeof(lit) - 1 && !memcmp(key.p, lit, sizeof(lit) - 1))
		if (imp->wrapper == LOGWRAP_CNPG && !cnpg_record)
			continue; /* the wrapper's own keys ("level", "ts", "msg") */
		if (KEY("message"))
			r.message = val;
		else if (KEY("timestamp") || KEY("log_time"))
			ts = val;
		else if (KEY("session_id"))
			r.sid = val;
		else if (KEY("error_severity"))
			r.severity = val;
		else if (KEY("pid") || KEY("process_id"))
			r.pid = scry__logimport_int(val);
		else if (KEY("user") || KEY("user_name"))
			r.user = val;
		else if (KEY("dbname") || KEY("database_name"))
			r.db = val;
		else if (KEY("remote_host"))
			r.client = val;
		else if (KEY("connection_from"))
			r.client = strip_port(val);
		else if (KEY("session_start") || KEY("session_start_time"))
			sstart = val;
		else if (KEY("state_code") || KEY("sql_state_code"))
			state = val;
		else if (KEY("detail"))
			r.detail = val;
		else if (KEY("statement") || KEY("query"))
			r.statement = val;
		else if (KEY("application_name"))
			r.app = val;
		else if (KEY("context"))
			r.context = val;
#undef KEY
	}
	if (imp->wrapper == LOGWRAP_CNPG && !cnpg_record)
		return 0; /* the operator's own messages: not PostgreSQL records */
	if (!ts.n || !scry__logimport_time(imp, ts.p, ts.n, &r.time_us)) {
		scry__logimport_skip(imp, line, "jsonlog record without a valid timestamp", p, n);
		return 0;
	}
	r.has_time = true;
	r.sess_start = sstart;
	if (state.n == 5)
		memcpy(r.sqlstate, state.p, 5);
	return scry__logimport_record(imp, &r, err);
bad:
	scry__logimport_skip(imp, line, "malformed jsonlog record", p, n);
	return 0;
}

int scry__logimport_jsonlog_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
                                  scry_error *err)
{
	return scry__logimport_lines(imp, buf, n, final, pos, json_line, err);
}
