/*
 * lib/logimport_detect.c - what a log is, from its first bytes, when the
 * options leave it open: its format (csvlog, jsonlog, stderr, and the
 * wrappers around them), its language (lib/logimport_translate.c) and, for
 * stderr, its log_line_prefix. The prefix is chosen among the prefixes of
 * managed services and common configurations and prefixes inferred from
 * the lines themselves (times, pids, session ids, "user@db", "key=value"),
 * as the one that matches the most of the first lines.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Bytes of the log looked at and lines scored per candidate prefix. */
#define SCORE_LINES 400
#define INFER_LINES 40

static const char *const known_prefixes[] = {
	"%m [%p] %q%u@%d ",                                  /* Debian / Ubuntu */
	"%m [%p] ",                                          /* PostgreSQL's default */
	"%t:%r:%u@%d:[%p]:",                                 /* Amazon RDS / Aurora */
	"%m|%u|%d|%c|",                                      /* pgreplay */
	"[%m] [%p] ",
	"%m [%p] %q%u@%d/%a ",
	"%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",   /* pgBadger */
	"%t [%p]: user=%u,db=%d,app=%a,client=%h ",
	"%t [%p]: [%l-1] ",
	"%m [%p]: [%l-1] db=%d,user=%u ",                    /* Google Cloud SQL */
	"%t-%c-",                                            /* Azure */
	"%m [%p] %q[user=%u,db=%d,app=%a] ",
	"%m [%p]: [%l-1] %quser=%u,db=%d,app=%a,client=%h ",
	"%m %c %p ",
	"< %m > ",
	"%t [%p] ",
	"%t ",
	"%m ",
	NULL
};

static bool is_time_at(const char *p, size_t n)
{
	return n >= 19 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[3]) && p[4] == '-' &&
	       p[7] == '-' && p[10] == ' ' && p[13] == ':' && p[16] == ':';
}

/* Where the severity starts in a line, or -1. */
static ssize_t severity_pos(scry_logimport *imp, const char *l, size_t n)
{
	for (size_t i = 0; i < n && i < 400; i++) {
		if (i && isalnum((unsigned char)l[i - 1]))
			continue;
		size_t k;
		if (scry__logimport_severity_at(imp, l + i, n - i, &k) >= 0)
			return (ssize_t)i;
	}
	return -1;
}

static bool word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || (unsigned char)c >= 0x80;
}

/* Appends a literal, doubling '%'. */
static void lit(scry_buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		scry__buf_put(b, p[i] == '%' ? "%%" : p + i, p[i] == '%' ? 2 : 1);
}

static char key_escape(const char *k, size_t n)
{
	static const struct { const char *k; char e; } keys[] = {
		{ "user", 'u' }, { "usr", 'u' }, { "db", 'd' }, { "database", 'd' }, { "dbname", 'd' },
		{ "app", 'a' }, { "application", 'a' }, { "application_name", 'a' }, { "appname", 'a' },
		{ "client", 'h' }, { "host", 'h' }, { "remote", 'r' }, { "client_addr", 'h' }, { "pid", 'p' },
		{ "session", 'c' }, { "sid", 'c' }, { "line", 'l' }, { "xid", 'x' }, { "vxid", 'v' },
		{ "query_id", 'Q' }, { "qid", 'Q' }, { "backend", 'b' }, { "state", 'e' }, { "sqlstate", 'e' },
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strlen(keys[i].k) == n && !strncasecmp(keys[i].k, k, n))
			return keys[i].e;
	return 0;
}

/* The prefix infer() writes, and the escapes it used. Appends are not
 * checked one by one: the buffer's failure is sticky (the caller checks). */
typedef struct infer_st {
	scry_buf *out;
	bool used[128];
} infer_st;

static void esc(infer_st *st, char c)
{
	scry__buf_put(st->out, (const char[]){ '%', c }, 2);
	st->used[(int)c] = true;
}

/* A time (%m, %t), an epoch time (%n) or a session id (%c) at q: its
 * length, or 0. */
static size_t infer_stamp(scry_logimport *imp, infer_st *st, const char *q, size_t left)
{
	int64_t tv;
	size_t k;
	if (is_time_at(q, left) && (k = scry__logimport_time(imp, q, left, &tv)) != 0) {
		esc(st, q[19] == '.' ? 'm' : 't');
		return k;
	}
	size_t d = 0;
	while (d < left && isdigit((unsigned char)q[d]))
		d++;
	if (d >= 9 && d + 1 < left && q[d] == '.' && isdigit((unsigned char)q[d + 1])) {
		k = d + 1;
		while (k < left && isdigit((unsigned char)q[k]))
			k++;
		esc(st, 'n');
		return k;
	}
	size_t h = 0;
	while (h < left && isxdigit((unsigned char)q[h]))
		h++;
	if (h == 8 && h + 1 < left && q[h] == '.' && isxdigit((unsigned char)q[h + 1])) {
		k = h + 1;
		while (k < left && isxdigit((unsigned char)q[k]))
			k++;
		if (k == left || !word_char(q[k])) {
			esc(st, 'c');
			return k;
		}
	}
	return 0;
}

/* A number at t[i] (a process id, then a line number): its length, or 0. */
static size_t infer_digits(infer_st *st, const char *t, size_t i, size_t left)
{
	const char *q = t + i;
	size_t d = 0;
	while (d < left && isdigit((unsigned char)q[d]))
		d++;
	if (!d || (d < left && word_char(q[d]) && q[d] != '-'))
		return 0;
	if (!st->used['l'] && i && t[i - 1] == '[' && d < left && q[d] == '-')
		esc(st, 'l');
	else if (!st->used['p'])
		esc(st, 'p');
	else if (!st->used['l'])
		esc(st, 'l');
	else
		lit(st->out, q, d);
	return d;
}

/* "key=value" with a known key at q: its length, or 0. */
static size_t infer_keyvalue(infer_st *st, const char *q, size_t left)
{
	if (!isalpha((unsigned char)q[0]) && q[0] != '_')
		return 0;
	size_t w = 0;
	while (w < left && (isalnum((unsigned char)q[w]) || q[w] == '_'))
		w++;
	char e;
	if (w >= left || q[w] != '=' || (e = key_escape(q, w)) == 0)
		return 0;
	lit(st->out, q, w + 1);
	/* The value runs to a separator; a space ends it only before
	 * the next key= or the end ("app=my app,client=..."). */
	size_t v = w + 1;
	while (v < left && q[v] != ',' && q[v] != ']' && q[v] != ';' && q[v] != '|') {
		if (q[v] == ' ') {
			size_t r = v;
			while (r < left && q[r] == ' ')
				r++;
			size_t kw = r;
			while (kw < left && (isalnum((unsigned char)q[kw]) || q[kw] == '_'))
				kw++;
			if (r == left || (kw > r && kw < left && q[kw] == '='))
				break;
		}
		v++;
	}
	if (e == 'h' && memchr(q + w + 1, '(', v - w - 1))
		e = 'r';
	esc(st, e);
	return v;
}

/* A value up to a separator at q (host, host(port), user@, a name): its
 * length, or 0. */
static size_t infer_value(infer_st *st, const char *q, size_t left)
{
	if (!((word_char(q[0]) && q[0] != '-' && q[0] != '.') || q[0] == '[' || q[0] == ':'))
		return 0;
	size_t w = 0;
	if (left >= 7 && !memcmp(q, "[local]", 7))
		w = 7;
	else
		/* (an IPv6 address goes on over ':' followed by a hex digit) */
		while (w < left && (word_char(q[w]) || (q[w] == ':' && w > 0 && w + 1 < left &&
		                                         isxdigit((unsigned char)q[w + 1]) && !memchr(q, '.', w))))
			w++;
	if (!w)
		return 0;
	/* host(port) */
	if (w < left && q[w] == '(') {
		size_t c = w + 1;
		while (c < left && isdigit((unsigned char)q[c]))
			c++;
		if (c > w + 1 && c < left && q[c] == ')') {
			esc(st, 'r');
			return c + 1;
		}
	}
	bool ip = true;
	for (size_t c = 0; c < w; c++)
		ip &= isxdigit((unsigned char)q[c]) || q[c] == '.' || q[c] == ':';
	if ((ip && memchr(q, '.', w) && isdigit((unsigned char)q[0])) || (w == 7 && q[0] == '[')) {
		esc(st, st->used['h'] ? 'r' : 'h');
		return w;
	}
	if (w < left && q[w] == '@' && !st->used['u']) {
		esc(st, 'u');
		lit(st->out, "@", 1);
		return w + 1;
	}
	const char *e = "uda";
	while (*e && st->used[(int)*e])
		e++;
	if (*e && !isdigit((unsigned char)q[0]))
		esc(st, *e);
	else
		lit(st->out, q, w);
	return w;
}

/* A log_line_prefix for the prefix text t[0..m) of one line (check
 * scry__buf_failed(out)). */
static void infer(scry_logimport *imp, const char *t, size_t m, scry_buf *out)
{
	infer_st st = { out, { false } };
	size_t i = 0;
	while (i < m) {
		const char *q = t + i;
		size_t left = m - i, k;
		if ((k = infer_stamp(imp, &st, q, left)) != 0 || (k = infer_digits(&st, t, i, left)) != 0 ||
		    (k = infer_keyvalue(&st, q, left)) != 0 || (k = infer_value(&st, q, left)) != 0) {
			i += k;
			continue;
		}
		lit(out, q, 1);
		i++;
	}
}

/* The same prefix with %q before its first session-only escape. */
static bool with_q(const char *pf, scry_buf *out)
{
	for (const char *p = pf; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		if (p[1] && strchr("udahr", p[1])) {
			/* Before the literal text that leads to it, from the last escape's end. */
			const char *s = p;
			while (s > pf && s[-1] != ' ' && s[-1] != ']' && !(s - 2 >= pf && s[-2] == '%'))
				s--;
			if (s == pf)
				return false;
			scry__buf_put(out, pf, (size_t)(s - pf));
			scry__buf_puts(out, "%q");
			scry__buf_puts(out, s);
			return true;
		}
		if (p[1] == 'q')
			return false;
	}
	return false;
}

typedef struct cand {
	char text[160];
	size_t score;
	int escapes;
} cand;

/* Escapes in a prefix, %q not counted (it adds no field). */
static int escapes(const char *p)
{
	int k = 0;
	for (; *p; p++)
		if (*p == '%' && p[1]) {
			k += p[1] != '%' && p[1] != 'q';
			p++;
		}
	return k;
}

static void try_prefix(scry_logimport *imp, const char *pf, const char *p, size_t n, cand *best, size_t *looked)
{
	if (strlen(pf) >= sizeof best->text || !strcmp(pf, best->text))
		return;
	scry__logimport_prefix_reset(imp);
	scry_error e = SCRY_ERROR_INIT;
	scry__logimport_compile_prefix(imp, pf, &e);
	if (!imp->nitems)
		return;
	size_t sc = scry__logimport_prefix_score(imp, p, n, SCORE_LINES, looked);
	int ne = escapes(pf);
	if (sc > best->score || (sc == best->score && sc && ne > best->escapes)) {
		snprintf(best->text, sizeof best->text, "%s", pf);
		best->score = sc;
		best->escapes = ne;
	}
}

/* `given`: the prefix the caller gave, which matches none of the lines:
 * the error then names the prefix the lines have. */
static int detect_prefix(scry_logimport *imp, const char *p, size_t n, const char *given, scry_error *err)
{
	cand best = { "", 0, 0 };
	size_t looked = 0;
	for (int i = 0; known_prefixes[i]; i++)
		try_prefix(imp, known_prefixes[i], p, n, &best, &looked);
	/* Prefixes inferred from the lines themselves. */
	scry_buf pf = SCRY_BUF_INIT, q = SCRY_BUF_INIT;
	size_t pos = 0, seen = 0;
	const char *first = NULL;
	size_t firstlen = 0;
	span ln;
	while (seen < INFER_LINES && next_head_line(p, n, &pos, &ln)) {
		const char *l = ln.p;
		size_t len = ln.n;
		if (!first) {
			first = l;
			firstlen = len;
		}
		ssize_t sp = severity_pos(imp, l, len);
		if (sp <= 0)
			continue;
		seen++;
		scry__buf_clear(&pf);
		infer(imp, l, (size_t)sp, &pf);
		if (!pf.ptr || scry__buf_failed(&pf))
			continue;
		try_prefix(imp, pf.ptr, p, n, &best, &looked);
		scry__buf_clear(&q);
		if (with_q(pf.ptr, &q) && !scry__buf_failed(&q))
			try_prefix(imp, q.ptr, p, n, &best, &looked);
	}
	scry_buf_dispose(&pf);
	scry_buf_dispose(&q);
	scry__logimport_prefix_reset(imp);
	/* Bad log lines are never an error: when no prefix can be used, every
	 * line is skipped and the reason says why (stats.nothing_reason). */
	if (!best.score && given) { /* nothing matches better: keep the given one */
		scry_error e = SCRY_ERROR_INIT;
		scry__logimport_compile_prefix(imp, given, &e);
		return 0;
	}
	if (!best.score) {
		int k = firstlen > 60 ? 60 : (int)firstlen;
		imp->no_prefix = true;
		snprintf(imp->st.nothing_reason, sizeof imp->st.nothing_reason,
		         "cannot tell this stderr log's log_line_prefix (no known or inferred one matches its lines, the "
		         "first: '%.*s'): pass --prefix (SHOW log_line_prefix;), or --format", k, first ? first : "");
		return 0;
	}
	if (given) {
		scry_error e = SCRY_ERROR_INIT;
		scry__logimport_compile_prefix(imp, given, &e);
		snprintf(imp->st.nothing_reason, sizeof imp->st.nothing_reason,
		         "log_line_prefix '%.30s' matches none of the first %zu lines; they look written with '%.50s' "
		         "(check SHOW log_line_prefix;, trailing space included)",
		         given, looked, best.text);
		return 0;
	}
	scry_error e = SCRY_ERROR_INIT;
	if (scry__logimport_compile_prefix(imp, best.text, &e)) {
		/* No %c or %p: sessions cannot be told apart. */
		imp->no_prefix = true;
		snprintf(imp->st.nothing_reason, sizeof imp->st.nothing_reason,
		         "the lines look written with log_line_prefix '%.60s', which has no %%c or %%p to tell sessions "
		         "apart: add %%p to log_line_prefix on the server for logs scry can read", best.text);
		return 0;
	}
	size_t len = strlen(imp->st.detected);
	snprintf(imp->st.detected + len, sizeof imp->st.detected - len,
	         "%slog_line_prefix '%s' (matches %zu of the first %zu lines)", len ? ", " : "", best.text, best.score,
	         looked);
	return 0;
}

/* A JSON key followed (after ':' and blanks) by `what`. */
static bool key_then(const char *l, size_t len, const char *key, const char *what)
{
	size_t kn = strlen(key), wn = strlen(what);
	const char *k = memmem(l, len, key, kn);
	if (!k)
		return false;
	size_t i = (size_t)(k - l) + kn;
	while (i < len && (l[i] == ' ' || l[i] == ':'))
		i++;
	return len - i >= wn && !memcmp(l + i, what, wn);
}

/* csvlog, jsonlog, stderr, or a wrapper: what most of the first lines are. */
static int detect_format(scry_logimport *imp, const char *p, size_t n)
{
	size_t pos = 0, lines = 0, csv = 0, json = 0, gcl = 0, cnpg = 0, syslog = 0;
	while (pos < n && lines < 200) {
		span ln = next_line(p, n, &pos);
		const char *l = ln.p;
		size_t len = ln.n;
		while (len && (l[0] == ' ' || l[0] == '\r'))
			l++, len--;
		if (!len)
			continue;
		lines++;
		if (l[0] == '{') {
			if (memmem(l, len, "\"textPayload\"", 13) || memmem(l, len, "\"jsonPayload\"", 13))
				gcl++;
			else if (key_then(l, len, "\"record\"", "{") || key_then(l, len, "\"logger\"", "\"postgres\""))
				cnpg++;
			else if (memmem(l, len, "\"error_severity\"", 16) || memmem(l, len, "\"timestamp\"", 11))
				json++;
			continue;
		}
		if (is_time_at(l, len)) {
			int64_t t;
			size_t k = scry__logimport_time(imp, l, len, &t);
			if (k && k < len && l[k] == ',')
				csv++;
			continue;
		}
		/* syslog: "Mon DD HH:MM:SS host ident[pid]: " */
		if (len > 16 && isupper((unsigned char)l[0]) && islower((unsigned char)l[1]) && l[3] == ' ' &&
		    l[6] == ' ' && l[9] == ':' && l[12] == ':' && l[15] == ' ')
			syslog++;
	}
	size_t best = csv > json ? csv : json;
	if (gcl > best) {
		imp->wrapper = LOGWRAP_GCL;
		return SCRY_LOG_STDERR;
	}
	if (cnpg > best) {
		imp->wrapper = LOGWRAP_CNPG;
		return SCRY_LOG_JSONLOG;
	}
	if (syslog > best) {
		imp->wrapper = LOGWRAP_SYSLOG;
		return SCRY_LOG_STDERR;
	}
	if (best && best * 4 >= lines)
		return csv >= json ? SCRY_LOG_CSVLOG : SCRY_LOG_JSONLOG;
	return SCRY_LOG_STDERR;
}

int scry__logimport_detect(scry_logimport *imp, bool final, scry_error *err)
{
	(void)final;
	const char *p = imp->in.ptr ? imp->in.ptr : "";
	size_t n = imp->in.size;
	if (!n && !final)
		return 0;
	imp->st.detected[0] = 0;
	static const char *const names[] = { "csvlog", "jsonlog", "stderr" };
	static const char *const wraps[] = { "", " in syslog", " in CloudNativePG JSON", " in Google Cloud Logging JSON" };
	if (imp->fmt == SCRY_LOG_AUTO) {
		imp->fmt = detect_format(imp, p, n);
		snprintf(imp->st.detected, sizeof imp->st.detected, "format %s%s", names[imp->fmt], wraps[imp->wrapper]);
	} else if (imp->fmt == SCRY_LOG_STDERR && detect_format(imp, p, n) == SCRY_LOG_STDERR &&
	           imp->wrapper != LOGWRAP_NONE) {
		/* stderr as asked, inside a wrapper (syslog, Cloud Logging). */
		snprintf(imp->st.detected, sizeof imp->st.detected, "format %s%s", names[imp->fmt], wraps[imp->wrapper]);
	} else {
		imp->wrapper = LOGWRAP_NONE;
	}
	if (imp->lang_auto) {
		imp->lang = scry__loglang_detect(p, n);
		if (imp->lang) {
			size_t len = strlen(imp->st.detected);
			snprintf(imp->st.detected + len, sizeof imp->st.detected - len, "%slanguage %s (%s), read with "
			         "PostgreSQL's translated keywords", len ? ", " : "", imp->lang->name, imp->lang->code);
		}
	}
	int rc = 0;
	if (imp->fmt == SCRY_LOG_STDERR && imp->nitems && imp->wrapper == LOGWRAP_NONE && n) {
		/* A prefix given that matches none of the lines (a missing trailing
		 * space, another server's): say so up front, with the one they have. */
		size_t looked = 0;
		if (!scry__logimport_prefix_score(imp, p, n, SCORE_LINES, &looked) && looked && imp->prefix_given)
			rc = detect_prefix(imp, p, n, imp->prefix_given, err);
	} else if (imp->fmt == SCRY_LOG_STDERR && !imp->nitems && n) {
		if (imp->wrapper == LOGWRAP_NONE) {
			rc = detect_prefix(imp, p, n, NULL, err);
		} else {
			/* The prefix is that of the stderr lines inside the wrapper. */
			scry_buf lines = SCRY_BUF_INIT;
			imp->unwrap_sink = &lines;
			size_t pos = 0;
			while (pos < n && !rc) {
				span ln = next_line(p, n, &pos);
				if (ln.n)
					rc = scry__logimport_wrapped_line(imp, ln.p, ln.n, 0, err);
			}
			if (!rc)
				rc = scry__logimport_wrapped_flush(imp, err);
			imp->unwrap_sink = NULL;
			/* Detection's skipped lines are not the import's. */
			imp->st.skipped = 0;
			imp->st.nskip_samples = 0;
			if (!rc)
				rc = detect_prefix(imp, lines.ptr ? lines.ptr : "", lines.size, NULL, err);
			scry_buf_dispose(&lines);
		}
	}
	imp->detecting = false;
	return rc;
}
