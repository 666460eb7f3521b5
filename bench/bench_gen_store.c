/*
 * bench/bench_gen_store.c - writes a large workload store through the public
 * store API, shaped like a `pgbench -S` capture through the proxy plus a few
 * hundred rare patterns (docs/benchmarks.md, "Scale"). Much faster than
 * running pgbench for hours; the texts are what the proxy records for
 * pgbench -S (simple protocol, one SELECT per Query message).
 *
 * usage: bench_gen_store STORE EVENTS [RARE_PATTERNS [SESSIONS [ACCOUNTS]]]
 *   defaults: 300 rare patterns (50 executions each), 8 sessions, 1000000 accounts
 */
#include <scry/scry.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s STORE EVENTS [RARE_PATTERNS [SESSIONS [ACCOUNTS]]]\n", argv[0]);
		return 2;
	}
	long long events = atoll(argv[2]);
	int rare = argc > 3 ? atoi(argv[3]) : 300;
	int nsess = argc > 4 ? atoi(argv[4]) : 8;
	long accounts = argc > 5 ? atol(argv[5]) : 1000000;
	if (events < 1 || rare < 0 || nsess < 1 || nsess > 1000 || accounts < 1) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	scry_error err = SCRY_ERROR_INIT;
	scry_store *s = NULL;
	if (scry_store_open(&s, argv[1], NULL, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	int64_t t0 = 1700000000000000LL;
	int64_t *sess = calloc((size_t)nsess, sizeof *sess);
	for (int i = 0; i < nsess; i++) {
		scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_PROXY, "bench", "postgres", "pgbench", "127.0.0.1", t0 };
		if (scry_store_session_add(s, &si, &sess[i], &err)) {
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
	}
	/* Rare pattern k: abalance + aid repeated k times (a distinct expression tree, so a distinct fingerprint). */
	long long rare_events = (long long)rare * 50;
	long long every = rare_events ? events / rare_events : 0;
	enum { BATCH = 5000 };
	static char texts[BATCH][4096];
	static scry_event ev[BATCH];
	unsigned long long rnd = 88172645463325252ULL;
	long long done = 0, nrare = 0;
	while (done < events) {
		size_t k = 0;
		for (; k < BATCH && done < events; k++, done++) {
			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			scry_event *e = &ev[k];
			memset(e, 0, sizeof *e);
			e->session_id = sess[done % nsess];
			e->start_us = t0 + done * 20;
			e->duration_us = 40 + (int64_t)(rnd % 40);
			e->kind = SCRY_EVENT_SIMPLE;
			e->rows = 1;
			long aid = (long)(rnd % (unsigned long long)accounts) + 1;
			if (every && done % every == every / 2 && nrare < rare_events) {
				int pat = (int)(nrare++ % rare) + 1;
				int n = snprintf(texts[k], sizeof texts[k], "SELECT abalance");
				for (int j = 0; j < pat && n < (int)sizeof texts[k] - 64; j++)
					n += snprintf(texts[k] + n, sizeof texts[k] - (size_t)n, " + aid");
				snprintf(texts[k] + n, sizeof texts[k] - (size_t)n, " FROM pgbench_accounts WHERE aid = %ld;", aid);
			} else {
				snprintf(texts[k], sizeof texts[k], "SELECT abalance FROM pgbench_accounts WHERE aid = %ld;", aid);
			}
			e->query = texts[k];
		}
		if (scry_store_append(s, ev, k, sizeof *ev, &err)) {
			fprintf(stderr, "%s\n", err.message);
			return 1;
		}
	}
	scry_store_info info;
	if (scry_store_info_get(s, &info, &err) == 0)
		printf("events %lld patterns %lld bytes %lld (%.1f B/event)\n", (long long)info.events,
		       (long long)info.patterns, (long long)info.file_bytes,
		       info.events ? (double)info.file_bytes / (double)info.events : 0.0);
	scry_store_free(s);
	free(sess);
	return 0;
}
