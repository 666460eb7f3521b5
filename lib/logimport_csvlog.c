/*
 * lib/logimport_csvlog.c - csvlog for the log importer: framing (a record
 * may span lines inside quotes) and fields (-> `rec`). See
 * lib/logimport_session.c for what records become.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <ctype.h>
#include <string.h>

static bool looks_like_time(const char *p, size_t n)
{
	return n >= 10 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[3]) && p[4] == '-' && p[7] == '-';
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

/* The careful path of csv_step(): the record's end is found over calls
 * (a record in pieces, quotes inside fields); an oversized record is
 * dropped while its end is looked for, a cut one at the end of the log. */
static bool csv_careful(scry_logimport *imp, char *p, size_t avail, bool final, uint64_t line, size_t *used,
                        int *rc, scry_error *err)
{
	ssize_t e = csv_find_end(imp, p, avail);
	if (e < 0) {
		if (final) {
			imp->scan = 0;
			imp->in_quote = false;
			if (!imp->discarding)
				scry__logimport_skip(imp, line, "incomplete csvlog record at the end of the log", p, avail);
			imp->line += count_lines(p, avail) + 1;
			*used = avail;
			return false;
		}
		if (avail > imp->opts.max_record_bytes) {
			/* Too long: drop what we have, keep scanning for its end. */
			if (!imp->discarding)
				scry__logimport_skip(imp, line, "record longer than the limit (max_record_bytes)", p, avail);
			imp->discarding = true;
			imp->line += count_lines(p, imp->scan);
			*used = imp->scan;
			imp->scan = 0;
			return true;
		}
		return false;
	}
	size_t len = (size_t)e;
	imp->line += count_lines(p, len) + 1;
	if (imp->discarding)
		imp->discarding = false;
	else {
		size_t l = len && p[len - 1] == '\r' ? len - 1 : len;
		*rc = csv_record(imp, p, l, line, err);
	}
	*used = len + 1;
	return true;
}

/* One record (or skipped line) of the csvlog framing at p[0..avail): the
 * bytes consumed in *used, the record handler's result in *rc; false when
 * the framing stops here (more input must come first, or the end). The fast
 * path frames and splits a record in one pass; csv_careful() takes over
 * for everything else. Forced inline: it runs once per record, in the
 * loop of its only caller. */
__attribute__((always_inline)) static inline bool csv_step(scry_logimport *imp, char *p, size_t avail, bool final,
                                                           size_t *used, int *rc, scry_error *err)
{
	uint64_t line = imp->line + 1;
	if (imp->scan == 0 && !imp->discarding) {
		/* Resynchronise on a record start: a log cut in the middle of a
		 * quoted field must not flip quoting for the rest of the file. */
		if (avail < 10 && !final)
			return false;
		if (!looks_like_time(p, avail)) {
			char *nl = memchr(p, '\n', avail);
			if (!nl && !final)
				return false;
			size_t ll = nl ? (size_t)(nl - p) : avail;
			if (ll && !(ll == 1 && p[0] == '\r'))
				scry__logimport_skip(imp, line, "not the start of a csvlog record", p, ll);
			imp->line += nl != NULL;
			*used = ll + (nl != NULL);
			return true;
		}
		span f[32];
		int nf;
		uint64_t nl;
		ssize_t e = csv_fast(f, &nf, &nl, p, avail);
		if (e >= 0) {
			imp->line += nl;
			*used = (size_t)e + 1;
			*rc = csv_fields(imp, f, nf, p, (size_t)e, line, err);
			return true;
		}
	}
	return csv_careful(imp, p, avail, final, line, used, rc, err);
}

int scry__logimport_csvlog_records(scry_logimport *imp, char *buf, size_t n, bool final, size_t *posp,
                                   scry_error *err)
{
	size_t pos = *posp;
	int rc = 0;
	while (pos < n && !rc) {
		size_t used = 0;
		bool more = csv_step(imp, buf + pos, n - pos, final, &used, &rc, err);
		pos += used;
		if (!more)
			break;
	}
	*posp = pos;
	return rc;
}
