/*
 * tests/fuzz/fuzz_store.c - opening a corrupted workload store.
 *
 * Input: a whole store file (the seeds are small real stores; libFuzzer and
 * the runner corrupt them). It is written to a temporary file and opened;
 * every read path the CLI uses runs over it: info, events with their texts
 * and parameters, patterns, the runs "base" and "cand" with their samples
 * and a plan (the seed runs.db has both runs). Any outcome but a crash, a leak or a hang is
 * fine: a clear error (SCRY_ECORRUPT, SCRY_ESTORE, SCRY_EVERSION...) or
 * rows.
 */
#include "fuzz_common.h"
#include "internal.h"
#include <scry/store.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(path, sizeof path, "%s/scry-fuzz-store-%d.db", dir, (int)getpid());
	return 0;
}

static void rm(void)
{
	char p[80];
	unlink(path);
	snprintf(p, sizeof p, "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof p, "%s-journal", path);
	unlink(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 20)
		return 0;
	rm();
	FILE *f = fopen(path, "wb");
	FUZZ_CHECK(f, "cannot write %s", path);
	fwrite(data, 1, size, f);
	fclose(f);
	scry_store_options o;
	scry_store_options_init(&o);
	o.must_exist = 1; /* read-write: the schema checks and upgrades run too */
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	if (scry_store_open(&s, path, &o, &err) == 0) {
		scry_store_info info = SCRY_STORE_INFO_INIT;
		(void)scry_store_info_get(s, &info, &err);
		scry_event_iter *it = NULL;
		if (scry_store_events(s, NULL, &it, &err) == 0) {
			const scry_stored_event *e;
			int n = 0;
			while (n++ < 10000 && scry_event_iter_next(it, &e, &err) == 1)
				FUZZ_CHECK(e->query && e->query[e->query_len] == 0, "event text not terminated");
			scry_event_iter_free(it);
		}
		scry_pattern_iter *pi = NULL;
		if (scry_store_patterns(s, &pi, &err) == 0) {
			const scry_pattern *p;
			int n = 0;
			while (n++ < 10000 && scry_pattern_iter_next(pi, &p, &err) == 1)
				;
			scry_pattern_iter_free(pi);
		}
		for (int r = 0; r < 2; r++) { /* the runs `scry diff` would read */
			int64_t run = 0;
			if (scry_store_run_find(s, r ? "cand" : "base", &run, &err) != 0)
				continue;
			scry_sample_iter *si = NULL;
			if (scry_store_samples(s, run, &si, &err) == 0) {
				const scry_stored_sample *sm;
				int n = 0;
				while (n++ < 10000 && scry_sample_iter_next(si, &sm, &err) == 1)
					;
				scry_sample_iter_free(si);
			}
			scry_buf plan = SCRY_BUF_INIT;
			(void)scry_store_plan_get(s, run, 0, &plan, &err);
			scry_buf_dispose(&plan);
		}
		scry_store_free(s);
	}
	rm();
	return 0;
}
