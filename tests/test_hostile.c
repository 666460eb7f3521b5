/*
 * tests/test_hostile.c - hostile statements in the library (issue 17):
 * deeply nested expressions must not overflow the stack in any libpg_query
 * call scry makes (fingerprint, normalize, replay's classifying parse), and
 * where they parse, the values must equal pg_query's; marker bytes anywhere
 * in a text must round-trip through the store exactly; NUL bytes give the
 * documented error; the splitter frees everything on a scanner error (this
 * suite runs under LeakSanitizer with no suppression for scry's code).
 * tests/test_hostile.sh drives the same inputs through the proxy, the log
 * importer and the CLI.
 */
#include "internal.h"

#include <check.h>
#include "pgtest.h"
#include <pg_query.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *rep(char *p, const char *piece, int n)
{
	size_t k = strlen(piece);
	for (int i = 0; i < n; i++, p += k)
		memcpy(p, piece, k);
	*p = 0;
	return p;
}

/* The shapes that recurse in libpg_query's walkers, at size n. */
static char *shape(int k, int n)
{
	size_t cap = (size_t)n * 24 + 64;
	char *s = malloc(cap), *p = s;
	p = rep(p, "SELECT ", 1);
	switch (k) {
	case 0: p = rep(rep(p, "1+", n), "1", 1); break;
	case 1: p = rep(rep(rep(p, "(", n), "1", 1), ")", n); break;
	case 2: p = rep(rep(rep(p, "CASE WHEN true THEN ", n), "1", 1), " END", n); break;
	case 3: p = rep(rep(rep(p, "ARRAY[", n), "1", 1), "]", n); break;
	case 4: p = rep(rep(p, "1", 1), " UNION SELECT 1", n); break;
	case 5: p = rep(rep(p, "1", 1), "::int", n); break;
	case 6: p = rep(rep(p, "1 WHERE a=1", 1), " OR a=2", n); break;
	case 7: p = rep(rep(p, "- ", n), "1", 1); break;
	case 8: p = rep(rep(p, "'a'", 1), "||'b'", n); break;
	case 9: p = rep(rep(p, "* FROM a", 1), " JOIN a b ON true", n); break;
	}
	return s;
}
#define NSHAPES 10

/* pg_query's own fingerprint, on a thread with a stack large enough for anything tested. */
typedef struct ref_call {
	const char *text;
	int ok;
	uint64_t fp;
} ref_call;

static void *ref_thread(void *p)
{
	ref_call *c = p;
	PgQueryFingerprintResult r = pg_query_fingerprint(c->text);
	c->ok = !r.error;
	c->fp = r.fingerprint;
	pg_query_free_fingerprint_result(r);
	return NULL;
}

/* Runs fn(arg) on a thread with a stack of `stack` bytes and waits for it. */
static void on_thread(void *(*fn)(void *), void *arg, size_t stack)
{
	pthread_attr_t a;
	pthread_t t;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, stack);
	ck_assert_int_eq(pthread_create(&t, &a, fn, arg), 0);
	pthread_join(t, NULL);
	pthread_attr_destroy(&a);
}

static ref_call reference(const char *text)
{
	ref_call c = { text, 0, 0 };
	on_thread(ref_thread, &c, (size_t)512 << 20);
	return c;
}

/* Each deep shape: fingerprint (cached and not) and normalize return 0 or
 * SCRY_EPARSE, never crash; a value equals pg_query's. Run on a 1 MB thread
 * stack, the smallest a caller is assumed to have. */
typedef struct deep_case {
	int shape, n;
	int failures;
	char msg[256];
} deep_case;

static void *deep_thread(void *p)
{
	deep_case *d = p;
	char *sql = shape(d->shape, d->n);
	size_t len = strlen(sql);
	scry_fingerprinter *f = NULL;
	scry_fingerprinter_new(&f, NULL, NULL);
	for (int round = 0; round < 2; round++) {
		uint64_t fp = 0;
		scry_error err = SCRY_ERROR_INIT;
		int rc = scry_fingerprint_compute(round ? f : NULL, sql, len, &fp, &err);
		if (rc != 0 && rc != SCRY_EPARSE) {
			snprintf(d->msg, sizeof d->msg, "rc %d", rc);
			d->failures++;
		}
		if (rc == 0 && d->n <= 20000) {
			ref_call r = reference(sql);
			if (!r.ok || r.fp != fp) {
				snprintf(d->msg, sizeof d->msg, "fingerprint differs from pg_query's");
				d->failures++;
			}
		}
	}
	scry_buf out = SCRY_BUF_INIT;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_fingerprint_normalize(sql, len, &out, &err);
	if (rc != 0 && rc != SCRY_EPARSE) {
		snprintf(d->msg, sizeof d->msg, "normalize rc %d", rc);
		d->failures++;
	}
	scry_buf_dispose(&out);
	scry_fingerprinter_free(f);
	free(sql);
	return NULL;
}

START_TEST(deep_expressions_do_not_crash)
{
	static const int sizes[] = { 500, 3000, 12000, 30000, 120000 };
	for (int k = 0; k < NSHAPES; k++) {
		for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
			deep_case d = { k, sizes[j], 0, "" };
			on_thread(deep_thread, &d, (size_t)1 << 20);
			ck_assert_msg(d.failures == 0, "shape %d n %d: %s", k, sizes[j], d.msg);
		}
	}
}
END_TEST

START_TEST(too_deep_is_a_clear_error)
{
	char *sql = shape(0, 150000);
	uint64_t fp;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_int_eq(scry_fingerprint_compute(NULL, sql, strlen(sql), &fp, &err), SCRY_EPARSE);
	ck_assert_msg(strstr(err.message, "nested too deeply"), "%s", err.message);
	scry_buf out = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_fingerprint_normalize(sql, strlen(sql), &out, &err), SCRY_EPARSE);
	ck_assert_ptr_null(strstr(err.message, "1+1+1")); /* the message does not echo the text */
	scry_buf_dispose(&out);
	free(sql);
}
END_TEST

/* The bound never underestimates: every level of a shape counts. */
START_TEST(depth_bound)
{
	for (int k = 0; k < NSHAPES; k++) {
		char *sql = shape(k, 1000);
		ck_assert_uint_ge(scry__sql_depth(sql, strlen(sql)), 1000);
		free(sql);
	}
	/* Wide but shallow texts stay cheap (inline). */
	scry_buf b = SCRY_BUF_INIT;
	scry__buf_puts(&b, "SELECT * FROM t WHERE id IN (");
	for (int i = 0; i < 50000; i++)
		scry__buf_printf(&b, "%s%d", i ? "," : "", i);
	scry__buf_puts(&b, ")");
	ck_assert_uint_le(scry__sql_depth(b.ptr, b.size), 20);
	scry__buf_clear(&b);
	scry__buf_puts(&b, "INSERT INTO t (a, b) VALUES ");
	for (int i = 0; i < 20000; i++)
		scry__buf_printf(&b, "%s(%d, 'x''y')", i ? "," : "", i);
	ck_assert_uint_le(scry__sql_depth(b.ptr, b.size), 20);
	scry_buf_dispose(&b);
	/* Strings, quoted identifiers, dollar quotes and comments hide nothing and count nothing. */
	const char *t = "SELECT E'\\'((' || 'a''(' || $q$ ((( $q$ || \"a\"\"(\" /* ((( /* ( */ */ -- (((\n";
	ck_assert_uint_le(scry__sql_depth(t, strlen(t)), 16);
}
END_TEST

/* A new store in a fresh temporary directory; close_tmp_store() removes both. */
static char tmp_dir[64];
static scry_store *open_tmp_store(void)
{
	snprintf(tmp_dir, sizeof tmp_dir, "/tmp/scry-test-hostile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
	char path[128];
	snprintf(path, sizeof path, "%s/s.db", tmp_dir);
	scry_store *s = NULL;
	scry_error err = SCRY_ERROR_INIT;
	ck_assert_msg(scry_store_open(&s, path, NULL, &err) == 0, "%s", err.message);
	return s;
}

static void close_tmp_store(scry_store *s)
{
	scry_store_free(s);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Marker bytes in comments, strings, identifiers: the store gives back the exact text. */
START_TEST(marker_bytes_round_trip)
{
	scry_store *s = open_tmp_store();
	scry_error err = SCRY_ERROR_INIT;
	scry_session_info si = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_API, "db", "u", "a", "[local]", 1 };
	int64_t sid;
	ck_assert_int_eq(scry_store_session_add(s, &si, &sid, &err), 0);
	static const char *texts[] = {
		"SELECT 1 /* \x01 */", "SELECT 2 /* \x02 */", "SELECT 3 -- \x03\n",
		"SELECT 'a\x01' , 4", "SELECT \"\x02\" FROM t WHERE a = 5",
		"SELECT 6 /* \x01\x02\x03 */ , 'x'", "SELECT 1 /* plain */", "SELECT 7, 'y' /* \x01 */",
	};
	enum { N = sizeof texts / sizeof *texts };
	scry_event evs[N];
	for (int i = 0; i < N; i++) {
		memset(&evs[i], 0, sizeof evs[i]);
		evs[i].session_id = sid;
		evs[i].start_us = 10 + i;
		evs[i].duration_us = 5;
		evs[i].query = texts[i];
		evs[i].rows = -1;
	}
	ck_assert_int_eq(scry_store_append(s, evs, N, sizeof *evs, &err), 0);
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, &err), 0);
	const scry_stored_event *e;
	int i = 0, rc;
	while ((rc = scry_event_iter_next(it, &e, &err)) == 1) {
		ck_assert_int_lt(i, N);
		ck_assert_uint_eq(e->query_len, strlen(texts[i]));
		ck_assert_msg(!memcmp(e->query, texts[i], e->query_len), "text %d changed", i);
		i++;
	}
	ck_assert_msg(rc == 0, "%s", err.message);
	ck_assert_int_eq(i, N);
	scry_event_iter_free(it);
	close_tmp_store(s);
}
END_TEST

/* Lifting never produces a template with a marker that was a byte of the text. */
START_TEST(lifting_refuses_marker_bytes)
{
	for (int b = 0; b < 4; b++) {
		char sql[64];
		int n = snprintf(sql, sizeof sql, "SELECT 1, 'x' /* %c */", b ? b : 'z');
		if (b == 0)
			sql[n - 4] = 0; /* a NUL in the comment */
		scry_buf t = SCRY_BUF_INIT, l = SCRY_BUF_INIT;
		int nlits;
		ck_assert_int_eq(scry__lift_literals(sql, (size_t)n, &t, &l, &nlits), 0);
		ck_assert_int_eq(nlits, 0);
		ck_assert_uint_eq(t.size, (size_t)n);
		scry_buf_dispose(&t);
		scry_buf_dispose(&l);
	}
}
END_TEST

/* A NUL anywhere, comments included, is the documented error, cached or not. */
START_TEST(nul_anywhere_is_an_error)
{
	static const char t1[] = "SELECT 1 /* \0 */", t2[] = "SELECT 1, 'a' -- \0\n", t3[] = "SELECT '\0'";
	const char *texts[] = { t1, t2, t3 };
	size_t lens[] = { sizeof t1 - 1, sizeof t2 - 1, sizeof t3 - 1 };
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	for (int i = 0; i < 3; i++) {
		for (int cached = 0; cached < 2; cached++) {
			uint64_t fp;
			scry_error err = SCRY_ERROR_INIT;
			ck_assert_int_eq(scry_fingerprint_compute(cached ? f : NULL, texts[i], lens[i], &fp, &err), SCRY_EPARSE);
			ck_assert_msg(strstr(err.message, "NUL byte at position"), "%s", err.message);
		}
		scry_buf out = SCRY_BUF_INIT;
		scry_error err = SCRY_ERROR_INIT;
		ck_assert_int_eq(scry_fingerprint_normalize(texts[i], lens[i], &out, &err), SCRY_EPARSE);
		ck_assert_msg(strstr(err.message, "NUL byte at position"), "%s", err.message);
		scry_buf_dispose(&out);
	}
	scry_fingerprinter_free(f);
}
END_TEST

/* Scanner errors: the statements before are kept and nothing leaks (LSan). */
START_TEST(split_scanner_error_frees_everything)
{
	static const char *texts[] = { "SELECT 1; SELECT 'unterminated", "SELECT 1; SELECT 2 /* open",
	                               "SELECT 1; SELECT 2; SELECT $$x", "'", "SELECT 1; SELECT 2" };
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		scry_statement_span *sp;
		size_t n;
		ck_assert_int_eq(scry_fingerprint_split(texts[i], strlen(texts[i]), &sp, &n, NULL), 0);
		ck_assert_uint_ge(n, 1);
		scry_statement_spans_free(sp);
	}
	static const char nul[] = "SELECT 1; SELECT 2\0; SELECT 3";
	scry_statement_span *sp;
	size_t n;
	ck_assert_int_eq(scry_fingerprint_split(nul, sizeof nul - 1, &sp, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	scry_statement_spans_free(sp);
}
END_TEST

/* Secrets never reach a message: one helper, used by every error and log line. */
START_TEST(redaction)
{
	static const char *cases[][2] = {
		{ "host=x password=secret dbname=y", "host=x password=*** dbname=y" },
		{ "password = 'se cr\\'et' user=u", "password =*** user=u" },
		{ "postgresql://bob:hunter2@db:5432/shop", "postgresql://bob:***@db:5432/shop" },
		{ "postgres://u:p@ss@h/db", "postgres://u:***@h/db" },
		{ "x?sslmode=require&password=abc&user=u", "x?sslmode=require&password=***&user=u" },
		{ "PGPASSWORD=xyz", "PGPASSWORD=***" },
		{ "postgresql://bob@db/shop", "postgresql://bob@db/shop" },
		{ "passwordless=1 pass=2", "passwordless=1 pass=2" },
		{ "'host=a Password=b' does not parse", "'host=a Password=***' does not parse" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char out[256];
		ck_assert_str_eq(scry_redact_secrets(cases[i][0], out, sizeof out), cases[i][1]);
	}
	char tiny[8];
	ck_assert_str_eq(scry_redact_secrets("password=abcdefgh", tiny, sizeof tiny), "passwor");
	/* Through the library's error path. */
	scry_error err = SCRY_ERROR_INIT;
	scry__fail(&err, SCRY_EINVAL, "the connection string '%s' does not parse", "host=a password=hunter2 x");
	ck_assert_ptr_null(strstr(err.message, "hunter2"));
}
END_TEST

START_TEST(control_characters_escaped)
{
	scry_buf b = SCRY_BUF_INIT;
	const char in[] = "a\x1b[31mb\tc\nd\re\x7f f\xc2\x9b g\xc3\xa9";
	ck_assert_int_eq(scry_escape_controls(in, sizeof in - 1, &b), 0);
	ck_assert_str_eq(b.ptr, "a\\x1b[31mb\tc\nd\\x0de\\x7f f\\u009b g\xc3\xa9");
	scry_buf_dispose(&b);
}
END_TEST

/* Long digit runs saturate or become "unknown", never wrap (UBSan checks the rest). */
static int64_t last_rows = 7;
static void rows_cb(void *ctx, const scry_event *ev)
{
	(void)ctx;
	last_rows = ev->rows;
}

static void put_msg(scry_buf *b, char type, const char *body, size_t n)
{
	unsigned char hdr[5] = { (unsigned char)type, 0, 0, 0, 0 };
	uint32_t len = (uint32_t)n + 4;
	hdr[1] = (unsigned char)(len >> 24), hdr[2] = (unsigned char)(len >> 16);
	hdr[3] = (unsigned char)(len >> 8), hdr[4] = (unsigned char)len;
	scry__buf_put(b, hdr, 5);
	scry__buf_put(b, body, n);
}

static int64_t rows_of(const char *tag)
{
	scry_pgwire_callbacks cb = { SCRY_PGWIRE_CALLBACKS_VERSION, NULL, rows_cb, NULL };
	scry_pgwire *d;
	ck_assert_int_eq(scry_pgwire_new(&d, &cb, NULL, NULL), 0);
	static const char startup[] = "\0\0\0\x12" "\0\x03\0\0" "user\0app\0\0";
	ck_assert_int_eq(scry_pgwire_feed(d, SCRY_PGWIRE_FRONTEND, startup, sizeof startup - 1, 1, NULL), 0);
	scry_buf be = SCRY_BUF_INIT, fe = SCRY_BUF_INIT;
	put_msg(&be, 'R', "\0\0\0\0", 4);
	put_msg(&be, 'Z', "I", 1);
	ck_assert_int_eq(scry_pgwire_feed(d, SCRY_PGWIRE_BACKEND, be.ptr, be.size, 2, NULL), 0);
	put_msg(&fe, 'Q', "INSERT INTO t VALUES (1)", 25);
	ck_assert_int_eq(scry_pgwire_feed(d, SCRY_PGWIRE_FRONTEND, fe.ptr, fe.size, 3, NULL), 0);
	scry__buf_clear(&be);
	put_msg(&be, 'C', tag, strlen(tag) + 1);
	put_msg(&be, 'Z', "I", 1);
	last_rows = 7;
	ck_assert_int_eq(scry_pgwire_feed(d, SCRY_PGWIRE_BACKEND, be.ptr, be.size, 4, NULL), 0);
	scry_buf_dispose(&be);
	scry_buf_dispose(&fe);
	scry_pgwire_free(d);
	return last_rows;
}

START_TEST(long_digit_runs)
{
	ck_assert_int_eq(rows_of("INSERT 0 5"), 5);
	ck_assert_int_eq(rows_of("INSERT 0 9223372036854775807"), INT64_MAX);
	ck_assert_int_eq(rows_of("INSERT 0 9223372036854775808"), -1);
	ck_assert_int_eq(rows_of("INSERT 0 99999999999999999999999999999999"), -1);

	/* A log whose numbers overflow every field: durations, pids, %n, %c. */
	scry_store *s = open_tmp_store();
	scry_error err = SCRY_ERROR_INIT;
	scry_logimport_options o;
	scry_logimport_options_init(&o);
	o.format = SCRY_LOG_STDERR;
	o.line_prefix = "%t [%p] %c %n ";
	scry_logimport *imp;
	ck_assert_int_eq(scry_logimport_new(&imp, s, &o, &err), 0);
	const char *log =
		"2026-01-01 00:00:00 UTC [12] 6779a1b2.c 1735689600.5 LOG:  duration: 18446744073709551617 ms  statement: SELECT 1\n"
		"2026-01-01 00:00:00 UTC [99999999999999999999999] 99999999999999999999.c 99999999999999999999.5 LOG:  duration: 0.5 ms  statement: SELECT 2\n"
		"2026-01-01 00:00:00 UTC [13] 7fffffffffffffff.d 1735689600.5 LOG:  duration: 9223372036854775.807 ms  statement: SELECT 3\n";
	ck_assert_int_eq(scry_logimport_feed(imp, log, strlen(log), &err), 0);
	scry_logimport_stats st = SCRY_LOGIMPORT_STATS_INIT;
	ck_assert_int_eq(scry_logimport_finish(imp, &st, &err), 0);
	scry_logimport_free(imp);
	ck_assert_uint_eq(st.statements, 3);
	scry_event_iter *it;
	ck_assert_int_eq(scry_store_events(s, NULL, &it, &err), 0);
	const scry_stored_event *e;
	int n = 0;
	while (scry_event_iter_next(it, &e, &err) == 1) {
		if (!strcmp(e->query, "SELECT 1"))
			ck_assert_int_eq(e->duration_us, -1); /* not 1 ms after wrapping */
		if (!strcmp(e->query, "SELECT 2"))
			ck_assert_int_eq(e->duration_us, 500);
		if (!strcmp(e->query, "SELECT 3"))
			ck_assert_int_eq(e->duration_us, -1);
		n++;
	}
	ck_assert_int_eq(n, 3);
	scry_event_iter_free(it);
	close_tmp_store(s);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("hostile");
	TCase *tc = tcase_create("hostile");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, deep_expressions_do_not_crash);
	tcase_add_test(tc, too_deep_is_a_clear_error);
	tcase_add_test(tc, depth_bound);
	tcase_add_test(tc, marker_bytes_round_trip);
	tcase_add_test(tc, lifting_refuses_marker_bytes);
	tcase_add_test(tc, nul_anywhere_is_an_error);
	tcase_add_test(tc, split_scanner_error_frees_everything);
	tcase_add_test(tc, redaction);
	tcase_add_test(tc, control_characters_escaped);
	tcase_add_test(tc, long_digit_runs);
	suite_add_tcase(su, tc);
	int status = pgtest_run_suite(su, 0);
	pg_query_exit();
	return status;
}
