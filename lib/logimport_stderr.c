/*
 * lib/logimport_stderr.c - stderr logs for the log importer: the compiled
 * log_line_prefix and its matching, the record assembled from a prefixed
 * line, its continuation lines and its DETAIL:/STATEMENT: lines (-> `rec`),
 * and the wrappers that carry stderr lines (syslog, Google Cloud Logging).
 * See lib/logimport_session.c for what records become.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A tab-indented continuation line of a multi-line message or statement:
 * appended to the field it continues. */
static int stderr_continuation(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
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

/* A DETAIL: ... STATEMENT: line (label `code`): a field of the message
 * before it, from the same process. */
static int stderr_detail(scry_logimport *imp, int code, int64_t pid, span body, const char *p, size_t n,
                         uint64_t line, scry_error *err)
{
	int k = code - 8; /* DETAIL HINT QUERY CONTEXT LOCATION STATEMENT */
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

/* %n: "seconds.milliseconds" since the epoch. */
static void epoch_time(span v, rec *r)
{
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
}

/* The values the prefix matched into the record being assembled. */
static int stderr_prefix_values(scry_logimport *imp, rec *r)
{
	int rc = 0;
	for (int i = 0; i < imp->qend && !rc; i++) {
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
		case 'n': epoch_time(v, r); break;
		case 's':
			scry__logimport_time(imp, v.p, v.n, &r->sess_start_us);
			break;
		case 'e':
			if (v.n == 5)
				memcpy(r->sqlstate, v.p, 5);
			break;
		case 'u': rc = cur_put(imp, F_USER, v.p, v.n); break;
		case 'd': rc = cur_put(imp, F_DB, v.p, v.n); break;
		case 'a': rc = cur_put(imp, F_APP, v.p, v.n); break;
		case 'h': rc = cur_put(imp, F_CLIENT, v.p, v.n); break;
		case 'r':
			if (imp->cur_len[F_CLIENT] == (size_t)-1) {
				v = strip_port(v);
				rc = cur_put(imp, F_CLIENT, v.p, v.n);
			}
			break;
		}
	}
	return rc;
}

/* Session key: %c, else the process id (+ %s when present); its length. */
static size_t stderr_session_key(rec *r, int64_t pid, span sid, char *key, size_t cap)
{
	if (!sid.n)
		return (size_t)snprintf(key, cap, "%lld.%lld", (long long)pid, (long long)r->sess_start_us);
	int klen = snprintf(key, cap, "%.*s", (int)(sid.n > 40 ? 40 : sid.n), sid.p);
	/* %c is hex(session start).hex(pid): the start, to the second. */
	if (!r->sess_start_us) {
		long long start = strtoll(key, NULL, 16);
		if (start > 0 && start < INT64_MAX / 1000000)
			r->sess_start_us = (int64_t)start * 1000000;
	}
	return (size_t)klen;
}

/* A line with a severity: the record before it is complete, a new one starts. */
static int stderr_message(scry_logimport *imp, uint64_t line, int64_t pid, span sid, span sev, span body,
                          scry_error *err)
{
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
	if (stderr_prefix_values(imp, r))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	size_t klen = stderr_session_key(r, pid, sid, key, sizeof key);
	if (!r->has_time)
		r->time_us = 0;
	if (cur_put(imp, F_SID, key, klen) || cur_put(imp, F_SEV, sev.p, sev.n) || cur_put(imp, F_MSG, body.p, body.n))
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

static int stderr_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (n && p[0] == '\t')
		return stderr_continuation(imp, p, n, line, err);
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
	if (code >= 8)
		return stderr_detail(imp, code, pid, body, p, n, line, err);
	return stderr_message(imp, line, pid, sid, sev, body, err);
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
	span ln;
	while (k < max && next_head_line(p, n, &pos, &ln)) {
		size_t msg;
		k++;
		ok += prefix_match(imp, 0, ln.p, ln.n > 4096 ? 4096 : ln.n, 0, &msg);
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
	char *w = scry__logimport_json_string(p, n, &i, imp->wtext.ptr);
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

/* A stderr line, or a syslog / Cloud Logging line around stderr lines. */
static int stderr_or_wrapped_line(scry_logimport *imp, const char *p, size_t n, uint64_t line, scry_error *err)
{
	if (imp->wrapper != LOGWRAP_NONE)
		return scry__logimport_wrapped_line(imp, p, n, line, err);
	return stderr_line(imp, p, n, line, err);
}

int scry__logimport_stderr_lines(scry_logimport *imp, char *buf, size_t n, bool final, size_t *pos,
                                 scry_error *err)
{
	return scry__logimport_lines(imp, buf, n, final, pos, stderr_or_wrapped_line, err);
}
