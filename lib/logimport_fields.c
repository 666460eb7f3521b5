/*
 * lib/logimport_fields.c - the small parsers every log format shares:
 * times as PostgreSQL writes them (with zone abbreviations, resolved once
 * per import), integers, and the skipped-line counter with its examples.
 */
#include "logimport_internal.h"
#include "util/json.h" /* scry__utf8_len */

#include <stdio.h>
#include <string.h>

void scry__logimport_skip(scry_logimport *imp, uint64_t line, const char *reason, const char *text, size_t n)
{
	imp->st.skipped++;
	if (imp->st.nskip_samples >= SCRY_LOGIMPORT_SKIP_SAMPLES)
		return;
	scry_logimport_skip *s = &imp->st.skip_samples[imp->st.nskip_samples++];
	s->line = line;
	snprintf(s->reason, sizeof s->reason, "%s", reason);
	/* Valid UTF-8, cut on a character boundary: callers print it as JSON. */
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < sizeof s->text && text[i] != '\n'; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c < 0x80) {
			s->text[k++] = (c == '\t' || c < 0x20) ? ' ' : (char)c;
			continue;
		}
		size_t u = scry__utf8_len((const unsigned char *)text + i, n - i);
		if (!u) {
			s->text[k++] = '?';
			continue;
		}
		if (k + u + 1 > sizeof s->text)
			break;
		memcpy(s->text + k, text + i, u);
		k += u;
		i += u - 1;
	}
	s->text[k] = 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* Seconds east of UTC of a zone abbreviation; 0 (with a note) when it
 * cannot be resolved. Resolved once per import and abbreviation. */
static int zone_offset(scry_logimport *imp, const char *z, size_t n)
{
	if ((n == 3 && (!memcmp(z, "UTC", 3) || !memcmp(z, "GMT", 3))) || (n == 1 && z[0] == 'Z'))
		return 0;
	for (int k = 0; k < imp->ntz; k++)
		if (strlen(imp->tz[k].abbr) == n && !memcmp(imp->tz[k].abbr, z, n))
			return imp->tz[k].off;
	char abbr[12], note[200];
	memcpy(abbr, z, n);
	abbr[n] = 0;
	int off = 0;
	int r = scry__tz_abbrev(imp->tz_name, abbr, &off, note, sizeof note);
	if (r) {
		off = 0;
		if (!imp->tz_warned) {
			imp->tz_warned = true;
			snprintf(imp->st.warning, sizeof imp->st.warning,
			         "%.90s; read as UTC (pass the server's log_timezone: --timezone NAME)", note);
		}
	}
	if (imp->ntz < (int)(sizeof imp->tz / sizeof imp->tz[0])) {
		memcpy(imp->tz[imp->ntz].abbr, abbr, n + 1);
		imp->tz[imp->ntz].off = off;
		imp->tz[imp->ntz++].ok = r == 0;
	}
	return off;
}

/* Parses "YYYY-MM-DD HH:MM:SS[.ffffff][ TZ]" as PostgreSQL writes log
 * times. Returns bytes consumed (including the zone) or 0. */
size_t scry__logimport_time(scry_logimport *imp, const char *p, size_t n, int64_t *out)
{
	if (n < 19)
		return 0;
	int64_t sec;
	/* Consecutive lines mostly share their second: convert it once. */
	if (!memcmp(p, imp->tcache, 19)) {
		sec = imp->tcache_sec;
	} else {
		if (p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' || p[16] != ':')
			return 0;
		int y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
		int h = digits(p + 11, 2), mi = digits(p + 14, 2), s = digits(p + 17, 2);
		if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || mi < 0 || s < 0)
			return 0;
		sec = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
		memcpy(imp->tcache, p, 19);
		imp->tcache_sec = sec;
	}
	size_t i = 19;
	int64_t frac = 0;
	if (i < n && p[i] == '.') {
		int scale = 100000;
		for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
			frac += (p[i] - '0') * scale;
			scale /= 10;
		}
	}
	int64_t t = sec * 1000000 + frac;
	/* The zone, as PostgreSQL writes it: an abbreviation ("UTC", "CEST")
	 * or a numeric offset ("+04", "-0330"). Only the zone: whatever
	 * follows it ("UTC:10.0.0.1(...)", "UTC|user|") is the next field's. */
	if (i + 1 < n && p[i] == ' ') {
		const char *zp = p + i + 1;
		size_t avail = n - i - 1, zn = 0;
		if (zp[0] == '+' || zp[0] == '-') {
			zn = 1;
			while (zn < avail && zn < 5 && zp[zn] >= '0' && zp[zn] <= '9')
				zn++;
			/* "+04", "+0530": tzdb's numeric abbreviations. Never "+05:30",
			 * so "-03:10.0.0.1" is a zone and then the next field. */
			if (zn != 3 && zn != 5)
				zn = 0;
			else {
				int oh = digits(zp + 1, 2), om = zn > 3 ? digits(zp + 3, 2) : 0;
				int64_t off = ((int64_t)oh * 3600 + om * 60) * 1000000;
				t -= zp[0] == '+' ? off : -off;
			}
		} else {
			while (zn < avail && zn < 10 && ((zp[zn] >= 'A' && zp[zn] <= 'Z') || (zp[zn] >= 'a' && zp[zn] <= 'z')))
				zn++;
			if (zn && zn < avail && ((zp[zn] >= '0' && zp[zn] <= '9') || zp[zn] == '_'))
				zn = 0; /* not a zone: a word that goes on */
			if (zn)
				t -= (int64_t)zone_offset(imp, zp, zn) * 1000000;
		}
		if (zn)
			i += 1 + zn;
	}
	*out = t;
	return i;
}

int64_t scry__logimport_int(span s)
{
	int64_t v = 0;
	for (size_t i = 0; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++)
		if (!scry__dec_digit(&v, s.p[i] - '0'))
			return 0; /* beyond int64: no such process */
	return v;
}
