/*
 * bench/bench_replay.c - workload builders for bench/replay.sh.
 *
 *   bench_replay import-csvlog STORE FILE...  appends the `statement:` lines of
 *                                             PostgreSQL csvlog files as events
 *                                             (one session per csvlog session id)
 *   bench_replay many STORE N                 N sessions of two statements each,
 *                                             all overlapping (a 2,000-session replay)
 *   bench_replay cancel-probe STORE CONNINFO  replays 64 busy sessions, cancels from
 *                                             another thread after 1 s, prints how
 *                                             long scry_replay_run took to return (ms)
 *   bench_replay timer-probe N                how late N bare timerfd wakeups 2.5 ms
 *                                             apart are on this machine (p50/p99/max us):
 *                                             the floor under timed mode's start lag
 *
 * The csvlog reader is deliberately minimal (simple-protocol statements only):
 * it exists so that the benchmark does not depend on the log importer module.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <scry/scry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NFIELDS 32

/* Reads one CSV record (quoted fields may span lines). Returns number of fields, 0 at EOF. */
static int read_record(FILE *f, char **fields, size_t *cap, char **buf)
{
	size_t n = 0, nf = 0;
	int c, in_q = 0, any = 0;
	size_t starts[NFIELDS];
	starts[0] = 0;
	while ((c = fgetc(f)) != EOF) {
		any = 1;
		if (n + 2 >= *cap) {
			*cap = *cap ? *cap * 2 : 65536;
			*buf = realloc(*buf, *cap);
		}
		if (in_q) {
			if (c == '"') {
				int d = fgetc(f);
				if (d == '"') {
					(*buf)[n++] = '"';
				} else {
					in_q = 0;
					if (d != EOF)
						ungetc(d, f);
				}
			} else {
				(*buf)[n++] = (char)c;
			}
		} else if (c == '"') {
			in_q = 1;
		} else if (c == ',') {
			(*buf)[n++] = 0;
			if (nf + 1 < NFIELDS)
				starts[++nf] = n;
		} else if (c == '\n') {
			break;
		} else {
			(*buf)[n++] = (char)c;
		}
	}
	if (!any)
		return 0;
	(*buf)[n] = 0;
	for (size_t i = 0; i <= nf; i++)
		fields[i] = *buf + starts[i];
	return (int)nf + 1;
}

/* "2026-11-25 02:15:25.123 UTC" -> Unix microseconds (the zone is assumed UTC). */
static int64_t parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	int ms = 0;
	if (sscanf(s, "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
	           &tm.tm_sec, &ms) < 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000000 + ms * 1000;
}

typedef struct sess {
	char key[64];
	int64_t id;
} sess;

static int import_csvlog(scry_store *st, int nfiles, char **files)
{
	sess *ss = NULL;
	size_t nss = 0, css = 0;
	scry_event *evs = calloc(10000, sizeof *evs);
	char **texts = calloc(10000, sizeof *texts);
	size_t nev = 0;
	long total = 0;
	scry_error err = SCRY_ERROR_INIT;
	char *buf = NULL;
	size_t cap = 0;
	for (int fi = 0; fi < nfiles; fi++) {
		FILE *f = fopen(files[fi], "r");
		if (!f) {
			perror(files[fi]);
			return 1;
		}
		char *fl[NFIELDS];
		int nf;
		while ((nf = read_record(f, fl, &cap, &buf)) > 0) {
			if (nf < 14 || strcmp(fl[11], "LOG") || strncmp(fl[13], "statement: ", 11))
				continue;
			int64_t t = parse_time(fl[0]);
			size_t k;
			for (k = 0; k < nss && strcmp(ss[k].key, fl[5]); k++) {
			}
			if (k == nss) {
				if (nss == css) {
					css = css ? css * 2 : 64;
					ss = realloc(ss, css * sizeof *ss);
				}
				snprintf(ss[k].key, sizeof ss[k].key, "%s", fl[5]);
				scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_CSVLOG, fl[2], fl[1], "pgbench", "[local]", t };
				if (scry_store_session_add(st, &info, &ss[k].id, &err)) {
					fprintf(stderr, "%s\n", err.message);
					return 1;
				}
				nss++;
			}
			scry_event *e = &evs[nev];
			memset(e, 0, sizeof *e);
			texts[nev] = strdup(fl[13] + 11);
			e->session_id = ss[k].id;
			e->start_us = t;
			e->duration_us = -1;
			e->kind = SCRY_EVENT_SIMPLE;
			e->query = texts[nev];
			e->rows = -1;
			if (++nev == 10000) {
				if (scry_store_append(st, evs, nev, sizeof(scry_event), &err)) {
					fprintf(stderr, "%s\n", err.message);
					return 1;
				}
				for (size_t i = 0; i < nev; i++)
					free(texts[i]);
				total += (long)nev;
				nev = 0;
			}
		}
		fclose(f);
	}
	if (nev && scry_store_append(st, evs, nev, sizeof(scry_event), &err)) {
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	for (size_t i = 0; i < nev; i++)
		free(texts[i]);
	total += (long)nev;
	printf("%ld events, %zu sessions\n", total, nss);
	free(buf);
	free(evs);
	free(texts);
	free(ss);
	return 0;
}

static int many(scry_store *st, int n)
{
	scry_error err = SCRY_ERROR_INIT;
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < n; k++) {
		scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "postgres", "postgres", "many", "[local]", t0 };
		int64_t id;
		if (scry_store_session_add(st, &info, &id, &err))
			goto fail;
		scry_event e[2];
		memset(e, 0, sizeof e);
		for (int i = 0; i < 2; i++) {
			e[i].session_id = id;
			e[i].start_us = t0 + i * 1000000;
			e[i].duration_us = -1;
			e[i].rows = 1;
		}
		e[0].query = "SELECT pg_sleep(1)";
		e[1].query = "SELECT abalance FROM pgbench_accounts WHERE aid = 1";
		if (scry_store_append(st, e, 2, sizeof(scry_event), &err))
			goto fail;
	}
	printf("%d sessions, %d events\n", n, 2 * n);
	return 0;
fail:
	fprintf(stderr, "%s\n", err.message);
	return 1;
}

static int64_t mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* The same wait as the replay loop (epoll on an absolute CLOCK_MONOTONIC timerfd). */
static int timer_probe(int n)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, 0), ep = epoll_create1(0);
	struct epoll_event e = { .events = EPOLLIN };
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
	int64_t *late = calloc((size_t)n, sizeof *late);
	for (int i = 0; i < n; i++) {
		int64_t due = mono_us() + 2500;
		struct itimerspec its = { .it_value = { due / 1000000, (due % 1000000) * 1000 } };
		timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL);
		epoll_wait(ep, &e, 1, -1);
		uint64_t ticks;
		if (read(fd, &ticks, sizeof ticks) < 0)
			return 1;
		late[i] = mono_us() - due;
	}
	qsort(late, (size_t)n, sizeof *late, cmp_i64);
	printf("%.3f %.3f %.3f\n", late[n / 2] / 1000.0, late[n * 99 / 100] / 1000.0, late[n - 1] / 1000.0);
	free(late);
	close(fd);
	close(ep);
	return 0;
}

static int64_t g_cancel_at;

static void *cancel_after(void *arg)
{
	usleep(1000000);
	g_cancel_at = mono_us();
	scry_replay_cancel(arg);
	return NULL;
}

static int cancel_probe(scry_store *st, const char *conninfo)
{
	scry_error err = SCRY_ERROR_INIT;
	int64_t t0 = 1700000000000000LL;
	for (int k = 0; k < 64; k++) {
		scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "postgres", "postgres", "cancel", "[local]", t0 };
		int64_t id;
		if (scry_store_session_add(st, &info, &id, &err))
			goto fail;
		scry_event e[50];
		memset(e, 0, sizeof e);
		for (int i = 0; i < 50; i++) {
			e[i].session_id = id;
			e[i].start_us = t0 + i;
			e[i].duration_us = -1;
			e[i].rows = 1;
			e[i].query = "SELECT pg_sleep(0.2)";
		}
		if (scry_store_append(st, e, 50, sizeof(scry_event), &err))
			goto fail;
	}
	scry_replay_options o = SCRY_REPLAY_OPTIONS_INIT;
	o.concurrency = 64;
	scry_replay *r = NULL;
	if (scry_replay_new(&r, st, &o, &err))
		goto fail;
	pthread_t th;
	pthread_create(&th, NULL, cancel_after, r);
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	int rc = scry_replay_run(r, conninfo, "cancel-probe", &res, &err);
	int64_t back = mono_us();
	pthread_join(th, NULL);
	scry_replay_free(r);
	if (rc != SCRY_ECANCELED) {
		fprintf(stderr, "expected a cancelled replay, got %d: %s\n", rc, err.message);
		return 1;
	}
	printf("%.1f %lld\n", (back - g_cancel_at) / 1000.0, (long long)res.executions);
	return 0;
fail:
	fprintf(stderr, "%s\n", err.message);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "timer-probe"))
		return timer_probe(atoi(argv[2]));
	if (argc < 4 || (strcmp(argv[1], "import-csvlog") && strcmp(argv[1], "many") && strcmp(argv[1], "cancel-probe"))) {
		fprintf(stderr, "usage: bench_replay import-csvlog STORE FILE... | many STORE N | cancel-probe STORE CONNINFO"
		        " | timer-probe N\n");
		return 2;
	}
	scry_store *st = NULL;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(&st, argv[2], NULL, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	int rc = !strcmp(argv[1], "many")           ? many(st, atoi(argv[3]))
	         : !strcmp(argv[1], "cancel-probe") ? cancel_probe(st, argv[3])
	                                            : import_csvlog(st, argc - 3, argv + 3);
	scry_store_free(st);
	return rc;
}
