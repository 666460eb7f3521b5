/*
 * tests/test_store_merge.c - scry_store_merge(): stores from several
 * captures combined into one; patterns and statements deduplicated with
 * their counts summed, sessions kept apart, every event readable back with
 * its text, parameters and error; a failing input leaves the output as it was.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <scry/scry.h>

#include "pgtest.h"

static char dir[] = "/tmp/scry-test-merge-XXXXXX";

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* A store with one session per application, each running `texts`. */
static void make_store(const char *name, const char *const *apps, int napps, const char *const *texts, int ntexts,
	int64_t t0)
{
	char p[256];
	path_of(p, sizeof p, name);
	scry_store *s;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&s, p, NULL, &err) == 0, "%s", err.message);
	for (int a = 0; a < napps; a++) {
		scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_PROXY, "db", "u", apps[a], "10.0.0.1", t0 + a };
		int64_t sid;
		ck_assert_int_eq(scry_store_session_add(s, &si, &sid, &err), 0);
		for (int i = 0; i < ntexts; i++) {
			scry_param prm = { 23, SCRY_PARAM_TEXT, "42", 2 };
			scry_event ev = { .session_id = sid, .start_us = t0 + 1000 * i, .duration_us = 100 + i, .kind = SCRY_EVENT_SIMPLE,
			                  .query = texts[i], .rows = 1 };
			if (strstr(texts[i], "$1")) {
				ev.kind = SCRY_EVENT_EXTENDED;
				ev.nparams = 1;
				ev.params = &prm;
			}
			if (!strncmp(texts[i], "COPY", 4)) { /* its data travels with it */
				ev.copy_data = "1\tx\n";
				ev.copy_len = 4;
			}
			if (strstr(texts[i], "missing")) {
				memcpy(ev.sqlstate, "42P01", 6);
				ev.error_message = "relation \"missing\" does not exist";
				ev.rows = -1;
			}
			ck_assert_msg(scry_store_append(s, &ev, 1, sizeof ev, &err) == 0, "%s", err.message);
		}
	}
	scry_store_free(s);
}

/* An integer from the merged store "out.db". */
static int64_t out_int(const char *sql)
{
	char p[256];
	path_of(p, sizeof p, "out.db");
	return pgtest_sqlite_int(p, sql);
}

START_TEST(merge_fleet)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
	static const char *const a_texts[] = { "SELECT 1", "SELECT * FROM t WHERE id = $1", "SELECT * FROM missing", "@@ not sql" };
	static const char *const b_texts[] = { "SELECT 2", "SELECT * FROM t WHERE id = $1", "COPY t FROM STDIN", "@@ not sql" };
	static const char *const a_apps[] = { "web" };
	static const char *const b_apps[] = { "web", "worker" };
	make_store("a.db", a_apps, 1, a_texts, 4, 1000000);
	make_store("b.db", b_apps, 2, b_texts, 4, 2000000);

	char out_path[256], a[256], b[256];
	path_of(out_path, sizeof out_path, "out.db");
	path_of(a, sizeof a, "a.db");
	path_of(b, sizeof b, "b.db");
	scry_store *out;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_store_open(&out, out_path, NULL, &err), 0);
	int64_t ns, ne;
	ck_assert_msg(scry_store_merge(out, a, &ns, &ne, &err) == 0, "%s", err.message);
	ck_assert_int_eq(ns, 1);
	ck_assert_int_eq(ne, 4);
	ck_assert_msg(scry_store_merge(out, b, &ns, &ne, &err) == 0, "%s", err.message);
	ck_assert_int_eq(ns, 2);
	ck_assert_int_eq(ne, 8);

	scry_store_info info = SCRY_STORE_INFO_INIT;
	ck_assert_int_eq(scry_store_info_get(out, &info, &err), 0);
	ck_assert_int_eq(info.sessions, 3);
	ck_assert_int_eq(info.events, 12);
	/* SELECT 1/SELECT 2 share a pattern; t-lookup shared; missing; COPY; unparsable. */
	ck_assert_int_eq(info.patterns, 5);
	ck_assert_int_eq(out_int("SELECT count FROM patterns WHERE normalized LIKE '%FROM t WHERE%'"), 3);
	ck_assert_int_eq(out_int("SELECT count FROM patterns WHERE parse_error IS NOT NULL"), 3);
	ck_assert_int_eq(out_int("SELECT errors FROM patterns WHERE normalized LIKE '%missing%'"), 1);
	ck_assert_int_eq(out_int("SELECT total_us FROM patterns WHERE normalized LIKE '%FROM t WHERE%'"),
	                 101 * 3);
	ck_assert_int_eq(out_int("SELECT count(*) FROM statements WHERE template LIKE '%FROM t WHERE%'"), 1);
	/* Sessions kept apart: two "web" sessions. */
	ck_assert_int_eq(out_int("SELECT count(*) FROM sessions WHERE application = 'web'"), 2);

	/* Every event reads back as captured. */
	scry_event_iter *it;
	const scry_stored_event *ev;
	ck_assert_int_eq(scry_store_events(out, NULL, &it, &err), 0);
	int n = 0, with_params = 0, errors = 0, copies = 0;
	while (scry_event_iter_next(it, &ev, &err) == 1) {
		const char *want = n < 4 ? a_texts[n % 4] : b_texts[(n - 4) % 4];
		ck_assert_str_eq(ev->query, want);
		ck_assert_int_eq(ev->seq, n % 4 + 1);
		if (ev->nparams) {
			with_params++;
			ck_assert_int_eq(ev->params[0].length, 2);
			ck_assert(!memcmp(ev->params[0].value, "42", 2));
		}
		errors += ev->sqlstate[0] != 0;
		if (!strncmp(ev->query, "COPY", 4)) {
			ck_assert_uint_eq(ev->copy_len, 4);
			ck_assert(!memcmp(ev->copy_data, "1\tx\n", 4));
			copies++;
		}
		n++;
	}
	scry_event_iter_free(it);
	ck_assert_int_eq(n, 12);
	ck_assert_int_eq(with_params, 3);
	ck_assert_int_eq(errors, 1);
	ck_assert_int_eq(out_int("SELECT count(*) FROM event_errors"), 1);
	ck_assert_int_eq(copies, 2); /* b's two sessions: COPY data is not lost in a merge */

	/* The handle keeps appending correctly after a merge (its caches were dropped). */
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", "after", "x", 3000000 };
	int64_t sid;
	ck_assert_int_eq(scry_store_session_add(out, &si, &sid, &err), 0);
	scry_event e2 = { .session_id = sid, .start_us = 3000001, .duration_us = 5, .kind = SCRY_EVENT_SIMPLE,
	                  .query = "SELECT 3", .rows = 1 };
	ck_assert_msg(scry_store_append(out, &e2, 1, sizeof e2, &err) == 0, "%s", err.message);
	ck_assert_int_eq(scry_store_info_get(out, &info, &err), 0);
	ck_assert_int_eq(info.patterns, 5);
	ck_assert_int_eq(info.events, 13);

	/* Into itself, a missing input, a file that is not a store: refused, nothing changed. */
	ck_assert_int_eq(scry_store_merge(out, out_path, NULL, NULL, &err), SCRY_EINVAL);
	char bad[256];
	path_of(bad, sizeof bad, "missing.db");
	ck_assert_int_eq(scry_store_merge(out, bad, NULL, NULL, &err), SCRY_ENOTFOUND);
	path_of(bad, sizeof bad, "junk.db");
	FILE *f = fopen(bad, "w");
	fputs("this is not a store at all, just some text long enough for a header check......\n", f);
	fclose(f);
	ck_assert_int_ne(scry_store_merge(out, bad, NULL, NULL, &err), 0);
	ck_assert_int_eq(scry_store_info_get(out, &info, &err), 0);
	ck_assert_int_eq(info.events, 13);
	scry_store_free(out);

	/* The CLI: `scry workload merge OUT IN...`. */
	ck_assert_int_eq(pgtest_system("'%s' workload merge '%s/cli.db' '%s' '%s' --json | grep -q '\"events\":12'",
	                               pgtest_cli(), dir, a, b), 0);
	ck_assert_int_ne(pgtest_system("'%s' workload merge '%s' '%s' 2>/dev/null", pgtest_cli(), a, a), 0);
	ck_assert_int_eq(pgtest_system("'%s' workload merge '%s/cli2.db' 2>/dev/null", pgtest_cli(), dir), 2);
	pgtest_system("rm -rf '%s'", dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store_merge");
	TCase *tc = tcase_create("merge");
	tcase_add_test(tc, merge_fleet);
	suite_add_tcase(s, tc);
	return pgtest_run_suite(s, 1);
}
