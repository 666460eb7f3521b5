/*
 * lib/logimport_formats.c - the log formats of the log importer: framing
 * (bytes -> records) and fields (records -> `rec`) for csvlog, jsonlog and
 * stderr with log_line_prefix. See lib/logimport.c for what records become.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"
#include "util/json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* csvlog                                                              */
/* ------------------------------------------------------------------ */

static bool looks_like_time(const char *p, size_t n)
{
	return n >= 10 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[3]) && p[4] == '-' && p[7] == '-';
}

/* Strips ":port" / "(port)" from a client address. */
static span strip_port(span c)
{
	if (c.n && c.p[c.n - 1] == ')') {
		const char *o = memrchr(c.p, '(', c.n);
		if (o)
			c.n = (size_t)(o - c.p);
		return c;
	}
	if (c.n && c.p[0] != '[') {
		const char *o = memrchr(c.p, ':', c.n);
		if (o && o + 1 < c.p + c.n && isdigit((unsigned char)o[1]))
			c.n = (size_t)(o - c.p);
	}
	return c;
}

static int csv_fields(scry_logimport *imp, span *f, int nf, const char *p, size_t n, uint64_t line,
                      scry_error *err);

/* Splits one complete csvlog record (unquoting in place) and handles it. */
static int csv_record(scry_logimport *imp, char *p, size_t n, uint64_t line, scry_error *err)
{
	span f[32];
	int nf = 0;
	size_t i = 0;
	while (nf < 32) {
		if (i < n && p[i] == '"') {
			char *w = p + i + 1, *start = w;
			size_t j = i + 1;
			while (j < n) {
				if (p[j] == '"') {
					if (j + 1 < n && p[j + 1] == '"') {
						*w++ = '"';
						j += 2;
						continue;
					}
					break;
				}
				*w++ = p[j++];
			}
			f[nf++] = (span){ start, (size_t)(w - start) };
			i = j + 1;
		} else {
			const char *c = memchr(p + i, ',', n - i);
			size_t e = c ? (size_t)(c - p) : n;
			f[nf++] = (span){ p + i, e - i };
			i = e;
		}
		if (i >= n || p[i] != ',')
			break;
		i++;
	}
	return csv_fields(imp, f, nf, p, n, line, err);
}

static uint64_t count_lines(const char *p, size_t n)
{
	uint64_t c = 0;
	const char *e = p + n;
	while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		c++;
		p++;
	}
	return c;
}

/* The fast path: one pass over a record at p that frames it (the newline
 * outside quotes), splits its fields and counts its lines, without
 * touching the buffer until the record is known to be complete. Returns
 * the record's length, or -1 when it is incomplete or unusual (then the
 * careful path takes over). */
static ssize_t csv_fast(span *f, int *nfp, uint64_t *nlines, char *p, size_t n)
{
	int nf = 0;
	uint32_t dq = 0; /* fields holding "" */
	size_t i = 0;
	for (;;) {
		size_t start, end;
		if (i < n && p[i] == '"') {
			size_t j = i + 1;
			start = j;
			for (;;) {
				const char *q = memchr(p + j, '"', n - j);
				if (!q)
					return -1;
				j = (size_t)(q - p);
				if (j + 1 >= n)
					return -1;
				if (p[j + 1] != '"')
					break;
				if (nf < 32)
					dq |= 1u << nf;
				j += 2;
			}
			end = j;
			i = j + 1;
		} else {
			size_t j = i;
			while (j < n && p[j] != ',' && p[j] != '\n') {
				if (p[j] == '"')
					return -1; /* a quote inside a field: the careful path frames it (as it
					              does when the record arrives in pieces) */
				j++;
			}
			start = i;
			end = j;
			i = j;
		}
		if (nf < 32)
			f[nf] = (span){ p + start, end - start };
		nf++;
		if (i >= n)
			return -1;
		if (p[i] == ',') {
			i++;
			continue;
		}
		if (p[i] != '\n')
			return -1;
		break;
	}
	if (nf > 32)
		nf = 32;
	/* Complete: now undo the doubled quotes in place. */
	for (int k = 0; dq && k < nf; k++) {
		if (!(dq & (1u << k)))
			continue;
		dq &= ~(1u << k);
		char *w = (char *)f[k].p, *r = w, *e = w + f[k].n;
		while (r < e) {
			if (*r == '"')
				r++;
			*w++ = *r++;
		}
		f[k].n = (size_t)(w - f[k].p);
	}
	*nfp = nf;
	/* Newlines inside quotes are rare: one memchr pass over the record. */
	*nlines = count_lines(p, i) + 1;
	return (ssize_t)i;
}

static int csv_fields(scry_logimport *imp, span *f, int nf, const char *p, size_t n, uint64_t line,
                      scry_error *err)
{
	if (nf < 23) {
		scry__logimport_skip(imp, line, "not a csvlog record (too few fields)", p, n);
		return 0;
	}
	rec r;
	memset(&r, 0, sizeof r);
	r.line = line;
	if (!scry__logimport_time(imp, f[0].p, f[0].n, &r.time_us)) {
		scry__logimport_skip(imp, line, "csvlog record without a valid log_time", p, n);
		return 0;
	}
	r.has_time = true;
	r.user = f[1];
	r.db = f[2];
	r.pid = scry__logimport_int(f[3]);
	r.client = strip_port(f[4]);
	r.sid = f[5];
	r.sess_start = f[8];
	r.severity = f[11];
	if (f[12].n == 5)
		memcpy(r.sqlstate, f[12].p, 5);
	r.message = f[13];
	r.detail = f[14];
	r.statement = f[19];
	r.context = f[18];
	r.app = f[22];
	return scry__logimport_record(imp, &r, err);
}

/* Finds the end of the csv record starting at in.ptr[0], resuming the
 * scan at imp->scan. Returns its length (without the newline) or -1. */
static ssize_t csv_find_end(scry_logimport *imp, const char *p, size_t n)
{
	size_t i = imp->scan;
	while (i < n) {
		if (imp->in_quote) {
			const char *q = memchr(p + i, '"', n - i);
			if (!q) {
				i = n;
				break;
			}
			i = (size_t)(q - p);
			if (i + 1 >= n)
				break; /* need the next byte to tell "" from " */
			if (p[i + 1] == '"') {
				i += 2;
				continue;
			}
			imp->in_quote = false;
			i++;
		} else {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t e = nl ? (size_t)(nl - p) : n;
			const char *q = memchr(p + i, '"', e - i);
			if (q) {
				/* Only a quote that starts a field opens quoting (as in the
				 * fast path): a stray one inside a field is text, so that a
				 * malformed record is framed the same whatever the chunks. */
				if (q == p || q[-1] == ',')
					imp->in_quote = true;
				i = (size_t)(q - p) + 1;
				continue;
			}
			if (!nl) {
				i = n;
				break;
			}
			imp->scan = 0;
			return (ssize_t)e;
		}
	}
	imp->scan = i;
	return -1;
}


/* ------------------------------------------------------------------ */
/* jsonlog                                                             */
/* ------------------------------------------------------------------ */

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

/* Reads a JSON string at p[*i] (the opening quote) into w; returns the
 * end of the written bytes or NULL when malformed. */
static char *json_string(const char *p, size_t n, size_t *i, char *w)
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
		char *ke = json_string(p, n, &i, w);
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
					if (!json_string(p, n, &j, w))
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
			char *ve = json_string(p, n, &i, w);
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

/* ------------------------------------------------------------------ */
/* stderr with log_line_prefix                                         */
/* ------------------------------------------------------------------ */

int scry__logimport_severity_at(const scry_logimport *imp, const char *p, size_t n, size_t *len)
{
	return scry__loglang_severity_at(imp->lang, imp->detecting, p, n, len);
}

/* "SEVERITY:  " at p? Returns the severity's length or 0. */
static size_t severity_at(scry_logimport *imp, const char *p, size_t n)
{
	size_t k;
	return scry__logimport_severity_at(imp, p, n, &k) >= 0 ? k : 0;
}

static bool is_free_escape(char c)
{
	return !strchr("mtsnplcxevPQ", c);
}

static size_t scan_digits(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && isdigit((unsigned char)p[i]))
		i++;
	return i;
}

/* Length of a fixed-shape escape's value at p, or (size_t)-1. */
static size_t scan_fixed(scry_logimport *imp, char esc, const char *p, size_t n)
{
	size_t k;
	int64_t t;
	switch (esc) {
	case 'm': case 't': case 's':
		k = scry__logimport_time(imp, p, n, &t);
		return k ? k : (size_t)-1;
	case 'n':
		k = scan_digits(p, n);
		if (!k)
			return (size_t)-1;
		if (k < n && p[k] == '.')
			k += 1 + scan_digits(p + k + 1, n - k - 1);
		return k;
	case 'p': case 'l': case 'x':
		k = scan_digits(p, n);
		return k ? k : (size_t)-1;
	case 'P':
		return scan_digits(p, n);
	case 'Q':
		k = (n && p[0] == '-');
		return k + scan_digits(p + k, n - k);
	case 'c':
		k = 0;
		while (k < n && isxdigit((unsigned char)p[k]))
			k++;
		if (!k || k >= n || p[k] != '.')
			return (size_t)-1;
		k++;
		while (k < n && isxdigit((unsigned char)p[k]))
			k++;
		return k;
	case 'e':
		if (n < 5)
			return (size_t)-1;
		for (k = 0; k < 5; k++)
			if (!isalnum((unsigned char)p[k]))
				return (size_t)-1;
		return 5;
	case 'v':
		k = scan_digits(p, n);
		if (k < n && p[k] == '/')
			k += 1 + scan_digits(p + k + 1, n - k - 1);
		return k;
	}
	return (size_t)-1;
}

/* Matches items[i..] at p[pos..n); backtracks over free-form values. On
 * success returns the offset of the severity. */
static bool prefix_match(scry_logimport *imp, int i, const char *p, size_t n, size_t pos, size_t *msg)
{
	if (i == imp->nitems) {
		if (!severity_at(imp, p + pos, n - pos))
			return false;
		imp->qend = imp->nitems;
		*msg = pos;
		return true;
	}
	const pitem *it = &imp->items[i];
	if (!it->esc) {
		if (n - pos < it->litlen || memcmp(p + pos, it->lit, it->litlen))
			return false;
		return prefix_match(imp, i + 1, p, n, pos + it->litlen, msg);
	}
	if (it->esc == 'q') {
		if (prefix_match(imp, i + 1, p, n, pos, msg))
			return true;
		if (severity_at(imp, p + pos, n - pos)) {
			imp->qend = i;
			*msg = pos;
			return true;
		}
		return false;
	}
	if (!it->padded && !is_free_escape(it->esc)) {
		size_t k = scan_fixed(imp, it->esc, p + pos, n - pos);
		if (k == (size_t)-1)
			return false;
		imp->mspan[i] = (span){ p + pos, k };
		return prefix_match(imp, i + 1, p, n, pos + k, msg);
	}
	/* Free-form (user, database, application, host...): the shortest value
	 * after which the rest matches. Values may hold spaces. */
	const pitem *nx = i + 1 < imp->nitems && !imp->items[i + 1].esc ? &imp->items[i + 1] : NULL;
	/* Names are at most 63 bytes and host names 255: a cap keeps the
	 * backtracking linear on lines that do not match at all. */
	size_t last = n - pos > 256 ? pos + 256 : n;
	for (size_t end = pos; end <= last; end++) {
		if (nx) {
			const char *f = memmem(p + end, n - end, nx->lit, nx->litlen);
			if (!f || (size_t)(f - p) > last)
				return false;
			end = (size_t)(f - p);
		}
		imp->mspan[i] = (span){ p + pos, end - pos };
		if (prefix_match(imp, i + 1, p, n, end, msg))
			return true;
	}
	return false;
}

static span trim(span s)
{
	while (s.n && s.p[0] == ' ')
		s = span_skip(s, 1);
	while (s.n && s.p[s.n - 1] == ' ')
		s.n--;
	return s;
}

static int cur_put(scry_logimport *imp, int field, const char *p, size_t n)
{
	imp->cur_off[field] = imp->cur.size;
	imp->cur_len[field] = n;
	imp->cur_last = field;
	return scry__buf_put(&imp->cur, p, n);
}

/* Hands the assembled stderr record to scry__logimport_record(). */
int scry__logimport_stderr_finish(scry_logimport *imp, scry_error *err)
{
	if (!imp->cur_open)
		return 0;
	imp->cur_open = false;
	rec *r = &imp->cur_rec;
	span *fields[F_COUNT] = { &r->user, &r->db, &r->app, &r->client, &r->sid, &r->severity,
	                          &r->message, &r->detail, &r->statement, &r->context, NULL };
	for (int f = 0; f < F_OTHER; f++)
		*fields[f] = imp->cur_len[f] != (size_t)-1 ? (span){ imp->cur.ptr + imp->cur_off[f], imp->cur_len[f] }
		                                           : (span){ "", 0 };
	/* log_error_verbosity = verbose puts the SQLSTATE before every message. */
	if (r->message.n >= 7 && r->message.p[5] == ':' && r->message.p[6] == ' ') {
		bool ok = true;
		for (int k = 0; k < 5; k++)
			ok &= isdigit((unsigned char)r->message.p[k]) || isupper((unsigned char)r->message.p[k]);
		if (ok) {
			if (!r->sqlstate[0])
				memcpy(r->sqlstate, r->message.p, 5);
			r->message = span_skip(r->message, 7);
		}
	}
	return scry__logimport_record(imp, r, err);
}

static int stderr_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (n && p[0] == '\t') {
		/* A continuation line of a multi-line message or statement. */
		if (!imp->cur_open) {
			scry__logimport_skip(imp, line, "continuation line without the line it continues", p, n);
			return 0;
		}
		if (imp->cur_last != F_OTHER && imp->cur_off[imp->cur_last] + imp->cur_len[imp->cur_last] == imp->cur.size) {
			if (scry__buf_put(&imp->cur, "\n", 1) || scry__buf_put(&imp->cur, p + 1, n - 1))
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			imp->cur_len[imp->cur_last] += n;
		}
		return 0;
	}
	size_t msg;
	if (imp->no_prefix) {
		scry__logimport_skip(imp, line, "no usable log_line_prefix (see why nothing was imported)", p, n);
		return 0;
	}
	if (!prefix_match(imp, 0, p, n, 0, &msg)) {
		scry__logimport_skip(imp, line, "line does not start with log_line_prefix", p, n);
		return 0;
	}
	size_t sk;
	int code = scry__logimport_severity_at(imp, p + msg, n - msg, &sk);
	const char *en = scry__loglang_english_severity(code);
	span sev = { en, strlen(en) };
	span body = { p + msg + sk + 3, n - msg - sk - 3 };
	int64_t pid = -1;
	span sid = { NULL, 0 };
	for (int i = 0; i < imp->qend; i++) {
		if (imp->items[i].esc == 'p')
			pid = scry__logimport_int(imp->mspan[i]);
		else if (imp->items[i].esc == 'c')
			sid = imp->mspan[i];
	}
	if (code >= 8) {
		int k = code - 8; /* DETAIL HINT QUERY CONTEXT LOCATION STATEMENT */
		/* Belongs to the message before it, from the same process. */
		if (!imp->cur_open || (pid >= 0 && pid != imp->cur_pid)) {
			scry__logimport_skip(imp, line, "detail line without the message it belongs to", p, n);
			return 0;
		}
		int f = k == 0 ? F_DETAIL : k == 5 ? F_STMT : k == 3 ? F_CTX : F_OTHER;
		if (f == F_OTHER) {
			imp->cur_last = F_OTHER;
			return 0;
		}
		if (cur_put(imp, f, body.p, body.n))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return 0;
	}
	int rc = scry__logimport_stderr_finish(imp, err);
	if (rc)
		return rc;
	imp->cur_open = true;
	imp->cur_pid = pid;
	scry__buf_clear(&imp->cur);
	for (int f = 0; f < F_COUNT; f++)
		imp->cur_len[f] = (size_t)-1;
	rec *r = &imp->cur_rec;
	memset(r, 0, sizeof *r);
	r->line = line;
	r->pid = pid;
	char key[48];
	int klen = 0;
	for (int i = 0; i < imp->qend; i++) {
		if (!imp->items[i].esc || imp->items[i].esc == 'q')
			continue; /* literals: no value */
		span v = imp->mspan[i];
		/* Padded values, and a value that ends the prefix (whose separator
		 * space before the severity the prefix then lacks), lose their blanks. */
		if (imp->items[i].padded || i + 1 == imp->nitems)
			v = trim(v);
		switch (imp->items[i].esc) {
		case 'm': case 't':
			r->has_time = scry__logimport_time(imp, v.p, v.n, &r->time_us) != 0;
			break;
		case 'n': {
			int64_t sec = 0, us = 0;
			size_t k = 0;
			bool range = true;
			for (; k < v.n && isdigit((unsigned char)v.p[k]); k++)
				range = range && scry__dec_digit(&sec, v.p[k] - '0');
			int scale = 100000;
			for (k++; k < v.n && isdigit((unsigned char)v.p[k]); k++, scale /= 10)
				us += (v.p[k] - '0') * scale;
			range = range && sec <= INT64_MAX / 1000000 - 1;
			r->time_us = range ? sec * 1000000 + us : 0;
			r->has_time = range;
			break;
		}
		case 's':
			scry__logimport_time(imp, v.p, v.n, &r->sess_start_us);
			break;
		case 'e':
			if (v.n == 5)
				memcpy(r->sqlstate, v.p, 5);
			break;
		case 'u': cur_put(imp, F_USER, v.p, v.n); break;
		case 'd': cur_put(imp, F_DB, v.p, v.n); break;
		case 'a': cur_put(imp, F_APP, v.p, v.n); break;
		case 'h': cur_put(imp, F_CLIENT, v.p, v.n); break;
		case 'r':
			if (imp->cur_len[F_CLIENT] == (size_t)-1) {
				v = strip_port(v);
				cur_put(imp, F_CLIENT, v.p, v.n);
			}
			break;
		}
	}
	/* Session key: %c, else the process id (+ %s when present). */
	if (sid.n) {
		klen = snprintf(key, sizeof key, "%.*s", (int)(sid.n > 40 ? 40 : sid.n), sid.p);
		/* %c is hex(session start).hex(pid): the start, to the second. */
		if (!r->sess_start_us) {
			long long start = strtoll(key, NULL, 16);
			if (start > 0 && start < INT64_MAX / 1000000)
				r->sess_start_us = (int64_t)start * 1000000;
		}
	} else {
		klen = snprintf(key, sizeof key, "%lld.%lld", (long long)pid, (long long)r->sess_start_us);
	}
	if (!r->has_time)
		r->time_us = 0;
	if (cur_put(imp, F_SID, key, (size_t)klen) || cur_put(imp, F_SEV, sev.p, sev.n) ||
	    cur_put(imp, F_MSG, body.p, body.n))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

void scry__logimport_prefix_reset(scry_logimport *imp)
{
	scry__free(imp->prefix_copy);
	imp->prefix_copy = NULL;
	imp->nitems = 0;
	imp->has_c = imp->has_p = imp->has_s = false;
}

bool scry__logimport_prefix_match(scry_logimport *imp, const char *p, size_t n, size_t *msg)
{
	return prefix_match(imp, 0, p, n, 0, msg);
}

size_t scry__logimport_prefix_score(scry_logimport *imp, const char *p, size_t n, size_t max, size_t *looked)
{
	size_t ok = 0, k = 0, pos = 0;
	while (pos < n && k < max) {
		span ln = next_line(p, n, &pos);
		const char *l = ln.p;
		size_t len = ln.n;
		if (!len || l[0] == '\t')
			continue;
		if (len > 4096)
			len = 4096;
		size_t msg;
		k++;
		ok += prefix_match(imp, 0, l, len, 0, &msg);
	}
	*looked = k;
	return ok;
}

int scry__logimport_compile_prefix(scry_logimport *imp, const char *prefix, scry_error *err)
{
	imp->prefix_copy = scry__strdup(prefix ? prefix : "");
	if (!imp->prefix_copy)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	const char *p = imp->prefix_copy;
	char *w = imp->prefix_copy; /* literals are unescaped in place ("%%" -> "%") */
	pitem *lit = NULL;
	while (*p) {
		if (imp->nitems >= (int)(sizeof imp->items / sizeof imp->items[0]) - 1)
			return scry__fail(err, SCRY_EINVAL, "log_line_prefix is too long");
		if (*p != '%' || p[1] == '%') {
			if (!lit) {
				lit = &imp->items[imp->nitems++];
				*lit = (pitem){ 0, false, w, 0 };
			}
			*w++ = *p;
			lit->litlen++;
			p += *p == '%' ? 2 : 1;
			continue;
		}
		p++;
		bool padded = false;
		if (*p == '-')
			p++, padded = true;
		while (isdigit((unsigned char)*p))
			p++, padded = true;
		if (!*p)
			break;
		lit = NULL;
		imp->items[imp->nitems++] = (pitem){ *p, padded, NULL, 0 };
		if (*p == 'c')
			imp->has_c = true;
		if (*p == 'p')
			imp->has_p = true;
		p++;
	}
	if (!imp->has_c && !imp->has_p)
		return scry__fail(err, SCRY_EINVAL,
		                  "log_line_prefix '%s' has no session id (%%c) or process id (%%p), so lines cannot be "
		                  "told apart by session; add %%c or %%p to log_line_prefix on the server (for example "
		                  "log_line_prefix = '%%m [%%p] %%q%%u@%%d/%%a ') and import logs written after that",
		                  prefix ? prefix : "");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Wrappers around stderr lines: syslog, Google Cloud Logging           */
/* ------------------------------------------------------------------ */

static int unwrapped(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	if (imp->unwrap_sink) {
		if (scry__buf_put(imp->unwrap_sink, p, n) || scry__buf_put(imp->unwrap_sink, "\n", 1))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return 0;
	}
	return stderr_line(imp, p, n, line, err);
}

int scry__logimport_wrapped_flush(scry_logimport *imp, scry_error *err)
{
	if (!imp->wline.size)
		return 0;
	int rc = unwrapped(imp, imp->wline.ptr, imp->wline.size, imp->wline_no, err);
	scry__buf_clear(&imp->wline);
	return rc;
}

/* rsyslog writes control characters as #ooo (a tab: #011). */
static int put_unescaped(scry_buf *b, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		const char *h = memmem(p + i, n - i, "#011", 4);
		size_t e = h ? (size_t)(h - p) : n;
		if (scry__buf_put(b, p + i, e - i) || (h && scry__buf_put(b, "\t", 1)))
			return SCRY_ENOMEM;
		i = h ? e + 4 : n;
	}
	return 0;
}

/* "Mmm dd hh:mm:ss host ident[pid]: [N-M] text" (or an ISO time first).
 * With syslog_sequence_numbers, M > 1 is a piece of message N: a line of
 * its own when it starts with the tab PostgreSQL puts before continuation
 * lines, else the rest of a line longer than syslog's limit. */
static int syslog_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	size_t lim = n < 400 ? n : 400;
	const char *b = memmem(p, lim, "]: ", 3);
	if (!b) {
		scry__logimport_skip(imp, line, "not a syslog line from PostgreSQL (no ident[pid]: )", p, n);
		return 0;
	}
	const char *o = memrchr(p, '[', (size_t)(b - p));
	int64_t pid = o ? scry__logimport_int((span){ o + 1, (size_t)(b - o - 1) }) : -1;
	const char *t = b + 3, *e = p + n;
	long chunk = 1;
	if (t < e && *t == '[') {
		const char *q = t + 1;
		while (q < e && isdigit((unsigned char)*q))
			q++;
		if (q < e && *q == '-' && q > t + 1) {
			const char *c = ++q;
			chunk = 0;
			while (q < e && isdigit((unsigned char)*q))
				chunk = chunk * 10 + (*q++ - '0');
			if (q + 1 < e && q > c && q[0] == ']' && q[1] == ' ')
				t = q + 2;
			else
				chunk = 1;
		}
	}
	int rc;
	bool cont = chunk > 1 && (t < e && (*t == '\t' || (e - t >= 4 && !memcmp(t, "#011", 4))));
	if (chunk > 1 && !cont && imp->wline.size && pid == imp->wline_pid) {
		/* The rest of a long line. */
		if (put_unescaped(&imp->wline, t, (size_t)(e - t)))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		return 0;
	}
	if ((rc = scry__logimport_wrapped_flush(imp, err)) != 0)
		return rc;
	if (put_unescaped(&imp->wline, t, (size_t)(e - t)))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	imp->wline_pid = pid;
	imp->wline_no = line;
	return 0;
}

/* Google Cloud Logging (Cloud SQL): one JSON entry per line whose
 * "textPayload" is the server's stderr text. */
static int gcl_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	const char *k = memmem(p, n, "\"textPayload\"", 13);
	size_t i = k ? (size_t)(k - p) + 13 : n;
	while (i < n && (p[i] == ' ' || p[i] == ':'))
		i++;
	if (i >= n || p[i] != '"') {
		scry__logimport_skip(imp, line, "Cloud Logging entry without a textPayload", p, n);
		return 0;
	}
	scry__buf_clear(&imp->wtext);
	if (scry__buf_grow(&imp->wtext, n + 8))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	char *w = json_string(p, n, &i, imp->wtext.ptr);
	if (!w) {
		scry__logimport_skip(imp, line, "malformed Cloud Logging entry", p, n);
		return 0;
	}
	const char *t = imp->wtext.ptr, *e = w;
	while (t < e) {
		const char *nl = memchr(t, '\n', (size_t)(e - t));
		size_t len = nl ? (size_t)(nl - t) : (size_t)(e - t);
		int rc = len ? unwrapped(imp, t, len, line, err) : 0;
		if (rc)
			return rc;
		t += len + 1;
	}
	return 0;
}

int scry__logimport_wrapped_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	return imp->wrapper == LOGWRAP_GCL ? gcl_line(imp, p, n, line, err) : syslog_line(imp, p, n, line, err);
}

/* ------------------------------------------------------------------ */
/* Framing                                                             */
/* ------------------------------------------------------------------ */

/* Bytes looked at to detect the format, prefix and language. */
#define DETECT_BYTES ((size_t)256 << 10)

/* Consumes complete records from imp->in; `final` at end of input. */
int scry__logimport_process(scry_logimport *imp, bool final, scry_error *err)
{
	if (imp->detecting) {
		/* Enough of the log to see what it is, or all of it. */
		if (!imp->in.size || (imp->in.size < DETECT_BYTES && !final))
			return 0;
		int rc = scry__logimport_detect(imp, final, err);
		if (rc)
			return rc;
	}
	char *buf = imp->in.ptr;
	size_t n = imp->in.size, pos = 0;
	int rc = 0;
	while (pos < n && !rc) {
		char *p = buf + pos;
		size_t avail = n - pos;
		uint64_t line = imp->line + 1;
		if (imp->fmt == SCRY_LOG_CSVLOG) {
			if (imp->scan == 0 && !imp->discarding) {
				/* Resynchronise on a record start: a log cut in the middle of a
				 * quoted field must not flip quoting for the rest of the file. */
				if (avail < 10 && !final)
					break;
				if (!looks_like_time(p, avail)) {
					char *nl = memchr(p, '\n', avail);
					if (!nl && !final)
						break;
					size_t ll = nl ? (size_t)(nl - p) : avail;
					if (ll && !(ll == 1 && p[0] == '\r'))
						scry__logimport_skip(imp, line, "not the start of a csvlog record", p, ll);
					imp->line += nl != NULL;
					pos += ll + (nl != NULL);
					continue;
				}
				span f[32];
				int nf;
				uint64_t nl;
				ssize_t e = csv_fast(f, &nf, &nl, p, avail);
				if (e >= 0) {
					imp->line += nl;
					pos += (size_t)e + 1;
					rc = csv_fields(imp, f, nf, p, (size_t)e, line, err);
					continue;
				}
			}
			ssize_t e = csv_find_end(imp, p, avail);
			if (e < 0) {
				if (final) {
					imp->scan = 0;
					imp->in_quote = false;
					if (!imp->discarding)
						scry__logimport_skip(imp, line, "incomplete csvlog record at the end of the log", p, avail);
					imp->line += count_lines(p, avail) + 1;
					pos = n;
					break;
				}
				if (avail > imp->opts.max_record_bytes) {
					/* Too long: drop what we have, keep scanning for its end. */
					if (!imp->discarding)
						scry__logimport_skip(imp, line, "record longer than the limit (max_record_bytes)", p, avail);
					imp->discarding = true;
					imp->line += count_lines(p, imp->scan);
					pos += imp->scan;
					imp->scan = 0;
					continue;
				}
				break;
			}
			size_t len = (size_t)e;
			imp->line += count_lines(p, len) + 1;
			if (imp->discarding)
				imp->discarding = false;
			else {
				size_t l = len && p[len - 1] == '\r' ? len - 1 : len;
				rc = csv_record(imp, p, l, line, err);
			}
			pos += len + 1;
			continue;
		}
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
		if (imp->fmt == SCRY_LOG_JSONLOG)
			rc = json_line(imp, p, len, line, err);
		else if (imp->wrapper != LOGWRAP_NONE)
			rc = scry__logimport_wrapped_line(imp, p, len, line, err);
		else
			rc = stderr_line(imp, p, len, line, err);
	}
	if (pos) {
		memmove(buf, buf + pos, n - pos);
		imp->in.size = n - pos;
		if (imp->in.ptr)
			imp->in.ptr[imp->in.size] = 0;
	}
	return rc;
}

