/*
 * lib/logimport_translate.c - logs written with lc_messages other than
 * English: which language a log is in (from its keywords), and the reader
 * that turns its severities, labels and messages back into the English
 * texts the rest of the importer reads. The keywords come from the server's
 * own message catalogs (lib/logimport_lang.c, generated).
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const en_sev[8] = { "LOG", "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "INFO", "DEBUG" };
static const char *const en_label[6] = { "DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT" };

const scry__loglang *scry__loglang_find(const char *code)
{
	if (!code || !*code)
		return NULL;
	for (const scry__loglang *l = scry__loglangs; l->code; l++) {
		size_t n = strlen(l->code);
		/* "de", "de_DE.UTF-8", "German" */
		if (!strcasecmp(code, l->name) || (!strncasecmp(code, l->code, n) &&
		                                    (code[n] == 0 || code[n] == '.' || code[n] == '@' ||
		                                     (code[n] == '_' && !strchr(l->code, '_')))))
			return l;
	}
	return NULL;
}

static size_t count(const char *p, size_t n, const char *s)
{
	size_t k = strlen(s), c = 0;
	if (!k)
		return 0;
	const char *e = p + n;
	while ((p = memmem(p, (size_t)(e - p), s, k)) != NULL) {
		c++;
		p += k;
	}
	return c;
}

/* The literal text of a format before its first directive. */
static size_t lead(const char *fmt)
{
	const char *d = strstr(fmt, "%s");
	return d ? (size_t)(d - fmt) : strlen(fmt);
}

/* Keywords of one language found in p, those that differ from English. */
static size_t hits(const char *p, size_t n, const char *const *sev, const char *const *label,
                   const char *const *msg)
{
	bool english = true;
	char w[128];
	size_t h = 0;
	for (int i = 0; i < 8; i++) {
		if (english && !strcmp(sev[i], en_sev[i]))
			continue;
		snprintf(w, sizeof w, "%s:  ", sev[i]);
		h += count(p, n, w);
		snprintf(w, sizeof w, ",%s,", sev[i]); /* csvlog */
		h += count(p, n, w);
		snprintf(w, sizeof w, "\"%s\"", sev[i]); /* jsonlog */
		h += count(p, n, w);
	}
	for (int i = 0; i < 6; i++) {
		if (english && !strncmp(label[i], en_label[i], strlen(en_label[i])))
			continue;
		h += count(p, n, label[i]);
	}
	for (int i = 0; i < SCRY__LOGLANG_NMSG; i++) {
		const char *m = msg[i];
		if (!m)
			continue;
		size_t k = lead(m);
		if (k < 4 || k >= sizeof w)
			continue;
		memcpy(w, m, k);
		w[k] = 0;
		h += count(p, n, w);
	}
	return h;
}

const scry__loglang *scry__loglang_detect(const char *p, size_t n)
{
	/* English: its messages only (most severities and labels are the same
	 * words in several languages). */
	size_t best = 0;
	for (int i = 0; i < SCRY__LOGLANG_NMSG; i++) {
		char w[128];
		size_t k = lead(scry__loglang_english[i]);
		if (k < 4 || k >= sizeof w)
			continue;
		memcpy(w, scry__loglang_english[i], k);
		w[k] = 0;
		best += count(p, n, w);
	}
	const scry__loglang *found = NULL;
	for (const scry__loglang *l = scry__loglangs; l->code; l++) {
		size_t h = hits(p, n, l->sev, l->label, l->msg);
		if (h > best) {
			best = h;
			found = l;
		}
	}
	return found;
}

int scry__loglang_severity_at(const scry__loglang *l, bool any, const char *p, size_t n, size_t *len)
{
	/* English first: the common case. */
	size_t k = 0;
	while (k < n && k < 10 && p[k] >= 'A' && p[k] <= 'Z')
		k++;
	size_t kw = k;
	while (k < n && k < 10 && p[k] >= '0' && p[k] <= '9')
		k++;
	if (k && k + 3 <= n && p[k] == ':' && p[k + 1] == ' ' && p[k + 2] == ' ') {
		for (int i = 0; i < 8; i++)
			if (strlen(en_sev[i]) == kw && !memcmp(en_sev[i], p, kw) && (kw == k || i == 7)) {
				*len = k;
				return i;
			}
		for (int i = 0; i < 6; i++)
			if (kw == k && strlen(en_label[i]) == k && !memcmp(en_label[i], p, k)) {
				*len = k;
				return 8 + i;
			}
	}
	if (!l && !any)
		return -1;
	for (const scry__loglang *c = l ? l : scry__loglangs; c->code; c++) {
		for (int i = 0; i < 8; i++) {
			size_t m = strlen(c->sev[i]);
			if (n >= m + 3 && !memcmp(p, c->sev[i], m) && !memcmp(p + m, ":  ", 3)) {
				*len = m;
				return i;
			}
		}
		for (int i = 0; i < 6; i++) {
			size_t m = strlen(c->label[i]);
			if (m >= 3 && n >= m && !memcmp(p, c->label[i], m)) {
				*len = m - 3;
				return 8 + i;
			}
		}
		if (l)
			break; /* only the log's language */
	}
	return -1;
}

const char *scry__loglang_english_severity(int code)
{
	return code < 0 ? NULL : code < 8 ? en_sev[code] : en_label[code - 8];
}

span scry__loglang_severity(const scry__loglang *l, span s)
{
	if (!l)
		return s;
	for (int i = 0; i < 8; i++)
		if (strlen(l->sev[i]) == s.n && !memcmp(l->sev[i], s.p, s.n))
			return (span){ en_sev[i], strlen(en_sev[i]) };
	return s;
}

/* Matches s against a collapsed format (literals and %s); captures the
 * text of each %s (the shortest before the next literal; the last one to
 * the end). Returns the number of captures or -1. */
static int match(const char *fmt, span s, span *cap, int maxcap)
{
	size_t i = 0;
	int nc = 0;
	while (*fmt) {
		const char *d = strstr(fmt, "%s");
		size_t lit = d ? (size_t)(d - fmt) : strlen(fmt);
		if (s.n - i < lit || memcmp(s.p + i, fmt, lit))
			return -1;
		i += lit;
		if (!d)
			return i == s.n ? nc : -1;
		fmt = d + 2;
		if (nc >= maxcap)
			return -1;
		const char *nd = strstr(fmt, "%s");
		size_t nlit = nd ? (size_t)(nd - fmt) : strlen(fmt);
		if (!nlit) {
			cap[nc++] = (span){ s.p + i, s.n - i };
			i = s.n;
			continue;
		}
		/* The last literal must end the text; others are the first occurrence. */
		const char *f;
		if (!nd) {
			if (s.n - i < nlit || memcmp(s.p + s.n - nlit, fmt, nlit))
				return -1;
			f = s.p + s.n - nlit;
		} else {
			f = memmem(s.p + i, s.n - i, fmt, nlit);
			if (!f)
				return -1;
		}
		cap[nc++] = (span){ s.p + i, (size_t)(f - (s.p + i)) };
		i = (size_t)(f - s.p);
	}
	return i == s.n ? nc : -1;
}

span scry__loglang_message(const scry__loglang *l, span s, scry_buf *buf, scry_error *err, int *rc)
{
	*rc = 0;
	if (!l || !s.n)
		return s;
	for (int i = 0; i < SCRY__LOGLANG_NMSG; i++) {
		const char *t = l->msg[i];
		if (!t || lead(t) > s.n || memcmp(s.p, t, lead(t)))
			continue;
		span cap[8];
		int nc = match(t, s, cap, 8);
		if (nc < 0)
			continue;
		scry__buf_clear(buf);
		const char *e = scry__loglang_english[i];
		int k = 0;
		while (*e) {
			const char *d = strstr(e, "%s");
			size_t lit = d ? (size_t)(d - e) : strlen(e);
			if (scry__buf_put(buf, e, lit) || (d && k < nc && scry__buf_put(buf, cap[k].p, cap[k].n))) {
				*rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
				return s;
			}
			if (!d)
				break;
			k++;
			e = d + 2;
		}
		return (span){ buf->ptr ? buf->ptr : "", buf->size };
	}
	return s;
}
