/*
 * lib/logimport_tz.c - time zone abbreviations in log times ("CET",
 * "EDT"), resolved through the system's zone database (TZif files under
 * $TZDIR or /usr/share/zoneinfo). PostgreSQL writes log times with the
 * abbreviation of log_timezone, or a numeric "+04" when the zone has none;
 * numeric ones never come here.
 *
 * With the server's log_timezone name (scry_logimport_options.timezone), the
 * abbreviation is looked up in that zone only. Without it, every zone of the
 * database is read and the abbreviation is resolved when all the zones that
 * use it now (since 2000, or in their current rule) agree on its offset;
 * otherwise ("IST": India, Ireland, Israel) it is ambiguous and the caller
 * says so.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OFFS 8

typedef struct tzscan {
	const char *abbr;
	int offs[MAX_OFFS];
	char zone[MAX_OFFS][48];
	int noffs;
} tzscan;

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void add_off(tzscan *z, int off, const char *zone)
{
	for (int i = 0; i < z->noffs; i++)
		if (z->offs[i] == off)
			return;
	if (z->noffs < MAX_OFFS) {
		snprintf(z->zone[z->noffs], sizeof z->zone[0], "%s", zone);
		z->offs[z->noffs++] = off;
	}
}

/* POSIX TZ footer: "CET-1CEST,M3.5.0,M10.5.0/3", "<+04>-4". */
static const char *tz_name(const char *p, const char **name, size_t *n)
{
	if (*p == '<') {
		const char *e = strchr(p, '>');
		if (!e)
			return NULL;
		*name = p + 1;
		*n = (size_t)(e - p - 1);
		return e + 1;
	}
	const char *s = p;
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
		p++;
	*name = s;
	*n = (size_t)(p - s);
	return *n ? p : NULL;
}

static const char *tz_off(const char *p, int *west)
{
	int sign = 1;
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if (*p < '0' || *p > '9')
		return NULL;
	int h = 0, m = 0, s = 0;
	while (*p >= '0' && *p <= '9')
		h = h * 10 + (*p++ - '0');
	if (*p == ':') {
		p++;
		while (*p >= '0' && *p <= '9')
			m = m * 10 + (*p++ - '0');
		if (*p == ':') {
			p++;
			while (*p >= '0' && *p <= '9')
				s = s * 10 + (*p++ - '0');
		}
	}
	*west = sign * (h * 3600 + m * 60 + s);
	return p;
}

static void footer(tzscan *z, const char *f, const char *zone)
{
	const char *name;
	size_t n;
	int west;
	const char *p = tz_name(f, &name, &n);
	if (!p || !(p = tz_off(p, &west)))
		return;
	int std = -west;
	if (n == strlen(z->abbr) && !memcmp(name, z->abbr, n))
		add_off(z, std, zone);
	if (*p == ',' || *p == '\n' || !*p)
		return;
	if (!(p = tz_name(p, &name, &n)))
		return;
	int dst = std + 3600;
	if (*p && *p != ',' && tz_off(p, &west))
		dst = -west;
	if (n == strlen(z->abbr) && !memcmp(name, z->abbr, n))
		add_off(z, dst, zone);
}

/* Reads one TZif file: the offsets `abbr` has there since 2000. */
static void tzif(tzscan *z, const unsigned char *d, size_t n, const char *zone)
{
	if (n < 44 || memcmp(d, "TZif", 4))
		return;
	int v2 = d[4] >= '2';
	size_t off = 0;
	int tsize = 4;
	for (int pass = 0; pass < 1 + v2; pass++) {
		if (off + 44 > n)
			return;
		const unsigned char *h = d + off;
		uint32_t isut = be32(h + 20), isstd = be32(h + 24), leap = be32(h + 28), timecnt = be32(h + 32),
		         typecnt = be32(h + 36), charcnt = be32(h + 40);
		size_t body = off + 44;
		size_t need = (size_t)timecnt * (size_t)tsize + timecnt + (size_t)typecnt * 6 + charcnt +
		              (size_t)leap * (size_t)(tsize + 4) + isstd + isut;
		if (body + need > n || typecnt > 256)
			return;
		if (pass == v2) {
			const unsigned char *times = d + body, *idx = times + (size_t)timecnt * (size_t)tsize;
			const unsigned char *types = idx + timecnt, *chars = types + (size_t)typecnt * 6;
			bool used[256] = { false };
			for (uint32_t i = 0; i < timecnt; i++) {
				int64_t t = tsize == 8 ? (int64_t)((uint64_t)be32(times + 8 * i) << 32 | be32(times + 8 * i + 4))
				                       : (int64_t)(int32_t)be32(times + 4 * i);
				if (t >= 946684800 && idx[i] < typecnt)
					used[idx[i]] = true;
			}
			if (!timecnt && typecnt)
				used[0] = true;
			for (uint32_t t = 0; t < typecnt; t++) {
				if (!used[t])
					continue;
				const unsigned char *tt = types + 6 * t;
				if (tt[5] >= charcnt)
					continue;
				const char *a = (const char *)chars + tt[5];
				size_t al = strnlen(a, charcnt - tt[5]);
				if (al == strlen(z->abbr) && !memcmp(a, z->abbr, al))
					add_off(z, (int)(int32_t)be32(tt), zone);
			}
			if (v2) {
				const unsigned char *f = d + body + need;
				if (f < d + n && *f == '\n') {
					char foot[128];
					size_t fl = (size_t)(d + n - f - 1);
					if (fl >= sizeof foot)
						fl = sizeof foot - 1;
					memcpy(foot, f + 1, fl);
					foot[fl] = 0;
					footer(z, foot, zone);
				}
			}
			return;
		}
		off = body + need;
		tsize = 8;
	}
}

static void read_zone(tzscan *z, const char *path, const char *zone)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	unsigned char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	tzif(z, buf, n, zone);
}

static tzscan *walk_scan;
static size_t walk_root;

static int walk(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	const char *rel = path + walk_root;
	if (*rel == '/')
		rel++;
	if (type == FTW_D && (!strcmp(rel, "posix") || !strcmp(rel, "right")))
		return FTW_SKIP_SUBTREE;
	if (type == FTW_F && ftw->level > 0 && !strchr(rel, '.'))
		read_zone(walk_scan, path, rel);
	return FTW_CONTINUE;
}

static const char *tzdir(void)
{
	const char *d = getenv("TZDIR");
	return d && *d ? d : "/usr/share/zoneinfo";
}

int scry__tz_abbrev(const char *zone, const char *abbr, int *offset, char *note, size_t cap)
{
	tzscan z;
	memset(&z, 0, sizeof z);
	z.abbr = abbr;
	if (zone && *zone) {
		char path[512];
		if (strstr(zone, "..")) {
			snprintf(note, cap, "time zone name '%s' is not a zone of the zone database", zone);
			return -1;
		}
		snprintf(path, sizeof path, "%s/%s", tzdir(), zone);
		read_zone(&z, path, zone);
	} else {
		/* nftw's callback has no context argument: one scan at a time. */
		static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
		pthread_mutex_lock(&lock);
		walk_scan = &z;
		walk_root = strlen(tzdir());
		nftw(tzdir(), walk, 16, FTW_PHYS | FTW_ACTIONRETVAL);
		walk_scan = NULL;
		pthread_mutex_unlock(&lock);
	}
	if (z.noffs == 1) {
		*offset = z.offs[0];
		return 0;
	}
	if (!z.noffs) {
		if (zone && *zone)
			snprintf(note, cap, "time zone '%s' does not use the abbreviation '%s' in the system's zone database",
			         zone, abbr);
		else
			snprintf(note, cap, "time zone abbreviation '%s' is not in the system's zone database", abbr);
		return -1;
	}
	size_t k = (size_t)snprintf(note, cap, "time zone abbreviation '%s' is ambiguous (", abbr);
	for (int i = 0; i < z.noffs && k < cap; i++) {
		int o = z.offs[i] < 0 ? -z.offs[i] : z.offs[i];
		k += (size_t)snprintf(note + k, cap - k, "%s%c%02d:%02d", i ? ", " : "", z.offs[i] < 0 ? '-' : '+',
		                      o / 3600, o / 60 % 60);
	}
	if (k < cap)
		snprintf(note + k, cap - k, ")");
	return -2;
}
