/*
 * tests/test_fingerprint.c - scry's fingerprints are pg_query's, for every
 * input: a corpus of SQL we did not write (the postgresql package's SQL
 * files), constant-varied variants of it made by a blind mutator, and
 * hand-picked cases where a constant's value changes the parse tree. Each
 * value is compared with pg_query_fingerprint() through a fingerprinter
 * with a cache (first and repeated calls), a tiny evicting cache, and none.
 */
#include "internal.h"
#include "sqlcorpus.h"

#include <check.h>
#include "pgtest.h"
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VARIANTS 4

/* pg_query's verdict on a text: the fingerprint, or an error. */
typedef struct expected {
	int ok;
	uint64_t fp;
} expected;

static expected reference(const char *sql)
{
	PgQueryFingerprintResult r = pg_query_fingerprint(sql);
	expected e = { r.error == NULL, r.error ? 0 : r.fingerprint };
	pg_query_free_fingerprint_result(r);
	return e;
}

/* Checks one text through `f` against pg_query; returns 1 when it matched. */
static int same_as_pg_query(scry_fingerprinter *f, const char *sql, size_t len, const char *what)
{
	expected want = reference(sql);
	uint64_t got = 0;
	scry_error err = SCRY_ERROR_INIT;
	int rc = scry_fingerprint_compute(f, sql, len, &got, &err);
	if (want.ok && (rc != 0 || got != want.fp)) {
		fprintf(stderr, "MISMATCH (%s): pg_query %016llx, scry %016llx rc=%d (%s)\n  text: %s\n", what,
		        (unsigned long long)want.fp, (unsigned long long)got, rc, err.message, sql);
		return 0;
	}
	if (!want.ok && rc != SCRY_EPARSE) {
		fprintf(stderr, "MISMATCH (%s): pg_query fails, scry rc=%d fp=%016llx\n  text: %s\n", what, rc,
		        (unsigned long long)got, sql);
		return 0;
	}
	if (!want.ok && !strstr(err.message, "at position")) {
		fprintf(stderr, "error without position (%s): %s\n", what, err.message);
		return 0;
	}
	return 1;
}

static sqlcorpus corpus;

static void load_corpus(void)
{
	if (!corpus.n)
		sqlcorpus_load(&corpus, NULL);
}

START_TEST(corpus_is_there)
{
	load_corpus();
	/* The postgresql package ships ~150 SQL files with thousands of statements. */
	ck_assert_msg(corpus.files >= 20, "found %zu SQL files; is the postgresql package installed?", corpus.files);
	ck_assert_uint_ge(corpus.n, 3000);
	ck_assert_uint_ge(corpus.views, 50);
}
END_TEST

START_TEST(corpus_matches_pg_query)
{
	load_corpus();
	scry_fingerprinter *cached, *tiny;
	scry_fingerprinter_options o = SCRY_FINGERPRINTER_OPTIONS_INIT;
	ck_assert_int_eq(scry_fingerprinter_new(&cached, NULL, NULL), 0);
	o.cache_entries = 8; /* evicts constantly */
	ck_assert_int_eq(scry_fingerprinter_new(&tiny, &o, NULL), 0);
	size_t bad = 0;
	for (size_t i = 0; i < corpus.n; i++) {
		const char *s = corpus.stmts[i];
		size_t n = corpus.lens[i];
		bad += !same_as_pg_query(NULL, s, n, "no cache");
		bad += !same_as_pg_query(cached, s, n, "cache, first");
		bad += !same_as_pg_query(cached, s, n, "cache, repeated");
		bad += !same_as_pg_query(tiny, s, n, "tiny cache");
	}
	scry_fingerprinter_stats st = SCRY_FINGERPRINTER_STATS_INIT;
	scry_fingerprinter_stats_get(cached, &st);
	ck_assert_uint_eq(st.calls, 2 * corpus.n);
	/* Every repeated call that parsed the first time is a hit. */
	ck_assert_uint_ge(st.hits, corpus.n - st.errors);
	scry_fingerprinter_free(cached);
	scry_fingerprinter_free(tiny);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

START_TEST(variants_match_pg_query)
{
	load_corpus();
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	size_t bad = 0, total = 0;
	for (size_t i = 0; i < corpus.n; i++) {
		bad += !same_as_pg_query(f, corpus.stmts[i], corpus.lens[i], "original");
		for (unsigned v = 0; v < VARIANTS; v++) {
			size_t n = 0;
			char *m = sqlcorpus_mutate(corpus.stmts[i], corpus.lens[i], (unsigned)(i * VARIANTS + v), &n);
			bad += !same_as_pg_query(f, m, n, "variant");
			total++;
			free(m);
		}
	}
	scry_fingerprinter_stats st = SCRY_FINGERPRINTER_STATS_INIT;
	scry_fingerprinter_stats_get(f, &st);
	fprintf(stderr, "variants: %zu statements, %zu variants, %llu cache hits, %llu parses, %llu errors\n",
	        corpus.n, total, (unsigned long long)st.hits, (unsigned long long)st.parses,
	        (unsigned long long)st.errors);
	/* The cache path must really be exercised by the variants. */
	ck_assert_uint_ge(st.hits, 1000);
	scry_fingerprinter_free(f);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* Statements where a constant is lexed or parsed in an unusual way. */
static const char *const tricky[] = {
	"SELECT * FROM orders WHERE id = 42",
	"SELECT * FROM orders WHERE total > 19.99 AND qty < -3 AND x = - 7",
	"SELECT * FROM t WHERE big = 2147483647 OR big = 2147483648 OR big = -2147483648",
	"SELECT * FROM t WHERE big = 9223372036854775807 OR b = 99999999999999999999",
	"SELECT 00000000002147483648, 000001, 0000000000000000000000000000007",
	"SELECT * FROM users WHERE name = 'O''Reilly' AND note = ''''",
	"SELECT * FROM t WHERE id IN (1, 2, 3)",
	"SELECT * FROM t WHERE id IN (1, 2, 3, 4) AND s IN ('a', 'b')",
	"SELECT 'x'::varchar(10), 1::numeric(10,2), 'a'::char(3), 'b'::character varying(20)",
	"SELECT 1::float(10)",
	"SELECT x::float(10), y::float(30) FROM t WHERE z = 1",
	"SELECT 1::float(30), CAST(2 AS float(24)), 3::float (25), 4::float(53)",
	"SELECT CAST(a AS float(24)), b::float (25), c::float(53), d::varchar(10), e::int[3] FROM t",
	"SELECT 1::float(54)",
	"SELECT 1::float(0)",
	"SELECT '{1}'::int[3], '{2}'::int[5]",
	"SELECT '{1}'::int ARRAY[3], '{{1}}'::int[3][4]",
	"SELECT x::int[--c\n3] FROM t",
	"SELECT x::int[/*c*/3] FROM t",
	"SELECT x::int[ 3 ] FROM t WHERE y = 4",
	"SELECT ARRAY[1,2,3], arr[2], arr[1:3] FROM t",
	"SELECT E'a\\nb', E'it\\'s' FROM t WHERE x = 5",
	"SELECT e'x' || 'y'",
	"SELECT $$dollar 'quoted' 5$$, $tag$x$tag$ WHERE 1 = 1",
	"SELECT /* c 1 */ 1 -- trailing 2\n FROM t /* 3 /* nested 4 */ 5 */ WHERE a = 6",
	"SELECT 1 /* unterminated comment 2",
	"SELECT CURRENT_TIMESTAMP(3), current_time(1)",
	"SELECT localtimestamp(2), localtime (0), current_timestamp /* p */ (6)",
	"SELECT CURRENT_TIMESTAMP, current_date, localtime WHERE 1 = 2",
	"SELECT 1; CREATE SEQUENCE s INCREMENT 5",
	"SELECT 1; COMMENT ON TABLE t IS 'a'",
	"SELECT 1; SELECT 2; UPDATE t SET a = 3",
	"SELECT 1;; SELECT 2",
	"SELECT 1e10, 1.5e-3, .5, 5., 1.e5, 1E+2",
	"SELECT 1e, 1.2.3, 1..2",
	"SELECT 'a'\n'b' AS continued",
	"SELECT 'a' /* c */\n 'b'",
	"SELECT 'a' 'b'",
	"SELECT interval '1 day', interval(3) '2 hours', timestamp(3) '2020-01-01', time(2) with time zone '10:00'",
	"SELECT 1::bit(3), 'x'::bit varying(5), '1'::interval second(3), '1'::interval day to second(2)",
	"SELECT * FROM t ORDER BY 2 LIMIT 10 OFFSET 20",
	"SELECT * FROM t FETCH FIRST 5 ROWS ONLY",
	"SELECT * FROM t OFFSET 3 ROWS FETCH NEXT -2 ROWS WITH TIES",
	"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') RETURNING id",
	"INSERT INTO t VALUES (1, 2.5, 'z', -4) ON CONFLICT (a) DO UPDATE SET b = 7",
	"UPDATE t SET a = a + 1, b = 'z' WHERE id = 7",
	"DELETE FROM t WHERE created < now() - interval '30 days' AND id <> 12",
	"WITH x AS (SELECT 1 AS a) SELECT * FROM x WHERE a = 2",
	"WITH s AS (SELECT 1 AS id) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = 5",
	"VALUES (1, 2), (3, 4)",
	"TABLE t",
	"((SELECT 1)) UNION (SELECT 2)",
	"SELECT B'101', X'ff', U&'d\\0061t\\+000061', N'x' WHERE 1 = 1",
	"SELECT U&'d!0061t' UESCAPE '!'",
	"SELECT 0x1F, 1_000, 123abc",
	"SELECT * FROM t WHERE a = $1 AND b = 5 AND c = $2",
	"SELECT 'δ', 'ü' FROM \"Tàble\" WHERE \"weird\"\"name\" = 1",
	"SELECT \"unterminated FROM t WHERE a = 1",
	"SELECT 1 FROM t TABLESAMPLE BERNOULLI (10) REPEATABLE (42)",
	"SELECT date '2020-01-01' + 3, int4 '5', date'2020-01-02'",
	"SELECT 1 WHERE 'a' LIKE 'b' ESCAPE 'c' AND 'x' SIMILAR TO 'y'",
	"SELECT EXTRACT('year' FROM ts), EXTRACT(month FROM ts), ts AT TIME ZONE 'UTC' FROM t",
	"SELECT substring('abc' FROM 2 FOR 1), trim(both 'x' FROM 'xax'), position('b' IN 'abc')",
	"SELECT count(*) FILTER (WHERE a > 3) OVER (ORDER BY b ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) FROM t",
	"SELECT * FROM t WHERE a = 1 FOR UPDATE SKIP LOCKED",
	"SELECT * FROM f(1, 'a') AS x(a varchar(10), b numeric(3,1))",
	"SELECT * FORM t WHERE id = 5",
	"SELECT 'unterminated",
	"SELECT 1 +",
	"select\t1\r\nfrom\ft\vwhere a=-1",
	"SELECT a=-1, a<>-2.5, a!=+3, a@-4 FROM t",
	"SELECT 1 AS \"x\", 2 x, 3 AS y",
	"CREATE TABLE t (a varchar(10), b int[3], c float(10), d numeric(5,2) DEFAULT 1.5)",
	"ALTER TABLE t ALTER COLUMN a SET STATISTICS 100",
	"SET statement_timeout = 5000",
	"EXPLAIN SELECT * FROM t WHERE a = 1",
	"COPY t FROM stdin WITH (FORMAT csv, DELIMITER ';')",
	"",
	"   ",
	"-- just a comment",
};

START_TEST(tricky_cases_match_pg_query)
{
	size_t bad = 0;
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	size_t n = sizeof tricky / sizeof tricky[0];
	for (unsigned round = 0; round < 40; round++) {
		for (size_t i = 0; i < n; i++) {
			size_t len = 0;
			char *m = round ? sqlcorpus_mutate(tricky[i], strlen(tricky[i]), round * 1000 + (unsigned)i, &len)
			                : strdup(tricky[i]);
			len = strlen(m);
			bad += !same_as_pg_query(f, m, len, "tricky (cache)");
			bad += !same_as_pg_query(f, m, len, "tricky (cache, again)");
			bad += !same_as_pg_query(NULL, m, len, "tricky (no cache)");
			free(m);
		}
	}
	scry_fingerprinter_free(f);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

/* The pairs that once fooled the cache: same shape, different fingerprints. */
START_TEST(value_shaped_trees_differ)
{
	static const char *const pairs[][2] = {
		/* (a cast of a constant is itself a constant to pg_query: cast columns) */
		{ "SELECT x::float(10) FROM t", "SELECT x::float(30) FROM t" },
		{ "SELECT x::int[3] FROM t", "SELECT x::int[5] FROM t" },
		{ "SELECT x::int[--c\n3]", "SELECT x::int[--c\n5]" },
		{ "SELECT CURRENT_TIMESTAMP(3)", "SELECT CURRENT_TIMESTAMP(6)" },
		{ "SELECT localtime /* c */ (1)", "SELECT localtime /* c */ (2)" },
		{ "SELECT 1; CREATE SEQUENCE s INCREMENT 5", "SELECT 1; CREATE SEQUENCE s INCREMENT 7" },
		{ "SELECT 1; COMMENT ON TABLE t IS 'a'", "SELECT 1; COMMENT ON TABLE t IS 'b'" },
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		scry_fingerprinter *f;
		ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
		uint64_t a, b;
		ck_assert_int_eq(scry_fingerprint_compute(f, pairs[i][0], strlen(pairs[i][0]), &a, NULL), 0);
		ck_assert_int_eq(scry_fingerprint_compute(f, pairs[i][1], strlen(pairs[i][1]), &b, NULL), 0);
		ck_assert_msg(a != b, "pair %zu: the cache answered the second text with the first's value", i);
		ck_assert_uint_eq(a, reference(pairs[i][0]).fp);
		ck_assert_uint_eq(b, reference(pairs[i][1]).fp);
		scry_fingerprinter_free(f);
	}
}
END_TEST

/* A raw text holding the marker bytes must not meet a cached template. */
START_TEST(marker_bytes_do_not_alias_templates)
{
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	static const char *const pairs[][2] = {
		{ "SELECT 5", "SELECT \x02" },
		{ "SELECT 'a', 1.5", "SELECT \x01, \x03" },
		{ "SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = \x01" },
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
		for (int k = 0; k < 2; k++) {
			ck_assert(same_as_pg_query(f, pairs[i][k], strlen(pairs[i][k]), "marker"));
			ck_assert(same_as_pg_query(f, pairs[i][k], strlen(pairs[i][k]), "marker again"));
		}
	/* A comment or string holding a marker byte parses: it is its own key. */
	const char *ok = "SELECT 1 /* \x02 */";
	ck_assert(same_as_pg_query(f, ok, strlen(ok), "marker in comment"));
	ck_assert(same_as_pg_query(f, "SELECT 7", 8, "after marker in comment"));
	scry_fingerprinter_free(f);
}
END_TEST

/* Texts that differ only in constants do not go through the parser again. */
START_TEST(constants_do_not_reparse)
{
	static const char *const texts[] = {
		"SELECT * FROM orders WHERE customer_id = 17 AND status = 'open' LIMIT 10",
		"SELECT * FROM orders WHERE customer_id = 99182 AND status = 'it''s' LIMIT 5",
		"SELECT * FROM orders WHERE customer_id = 2147483647 AND status = '' LIMIT 1",
		"SELECT * FROM orders WHERE customer_id = 3 AND status = 'closed' LIMIT 100",
	};
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	uint64_t first = 0;
	for (size_t i = 0; i < 4; i++) {
		uint64_t fp;
		ck_assert_int_eq(scry_fingerprint_compute(f, texts[i], strlen(texts[i]), &fp, NULL), 0);
		ck_assert_uint_eq(fp, reference(texts[i]).fp);
		if (i == 0)
			first = fp;
		ck_assert_uint_eq(fp, first);
	}
	scry_fingerprinter_stats st = SCRY_FINGERPRINTER_STATS_INIT;
	scry_fingerprinter_stats_get(f, &st);
	ck_assert_uint_eq(st.calls, 4);
	ck_assert_uint_eq(st.parses, 1);
	ck_assert_uint_eq(st.hits, 3);
	/* A big integer is a different token kind (FCONST): one more parse, same value. */
	const char *big = "SELECT * FROM orders WHERE customer_id = 2147483648 AND status = 'x' LIMIT 1";
	uint64_t fp;
	ck_assert_int_eq(scry_fingerprint_compute(f, big, strlen(big), &fp, NULL), 0);
	ck_assert_uint_eq(fp, reference(big).fp);
	scry_fingerprinter_stats_get(f, &st);
	ck_assert_uint_eq(st.parses, 2);
	/* Comments (sqlcommenter, marginalia) do not stop lifting. */
	const char *commented[] = {
		"/* app:web,route:/orders */ SELECT * FROM orders WHERE id = 5 -- line 12\n",
		"/* app:web,route:/orders */ SELECT * FROM orders WHERE id = 6 -- line 12\n",
		"/* app:web,route:/orders */ SELECT * FROM orders WHERE id = 6 -- line 13\n",
	};
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(scry_fingerprint_compute(f, commented[i], strlen(commented[i]), &fp, NULL), 0);
		ck_assert_uint_eq(fp, reference(commented[i]).fp);
	}
	scry_fingerprinter_stats_get(f, &st);
	ck_assert_uint_eq(st.parses, 4); /* one for the shape, one for the other comment */
	scry_fingerprinter_free(f);
}
END_TEST

START_TEST(syntax_error_has_position)
{
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	for (int round = 0; round < 2; round++) { /* errors are not cached: same answer twice */
		scry_error err = SCRY_ERROR_INIT;
		uint64_t fp = 123;
		const char *bad = "SELECT * FORM t WHERE id = 5";
		ck_assert_int_eq(scry_fingerprint_compute(f, bad, strlen(bad), &fp, &err), SCRY_EPARSE);
		ck_assert_int_eq(err.code, SCRY_EPARSE);
		ck_assert_msg(strstr(err.message, "syntax error at or near \"FORM\"") != NULL, "%s", err.message);
		ck_assert_msg(strstr(err.message, "at position 10") != NULL, "%s", err.message);
	}
	scry_fingerprinter_stats st = SCRY_FINGERPRINTER_STATS_INIT;
	scry_fingerprinter_stats_get(f, &st);
	ck_assert_uint_eq(st.errors, 2);
	/* Not NUL-terminated input: only len bytes are read. */
	const char buf[] = "SELECT 1 garbage after";
	uint64_t a, b;
	ck_assert_int_eq(scry_fingerprint_compute(f, buf, 8, &a, NULL), 0);
	ck_assert_int_eq(scry_fingerprint_compute(NULL, "SELECT 1", 8, &b, NULL), 0);
	ck_assert_uint_eq(a, b);
	ck_assert_int_eq(scry_fingerprint_compute(f, NULL, 0, &a, NULL), SCRY_EINVAL);
	scry_fingerprinter_free(f);
}
END_TEST

START_TEST(batch_keeps_going)
{
	const char *sqls[] = { "SELECT 1", "SELECT * FORM t", "SELECT 2", "UPDATE t SET a = 1 WHERE", "SELECT 3" };
	uint64_t fps[5];
	int status[5];
	scry_fingerprinter *f;
	ck_assert_int_eq(scry_fingerprinter_new(&f, NULL, NULL), 0);
	ck_assert_int_eq(scry_fingerprint_batch(f, sqls, NULL, 5, fps, status), 2);
	ck_assert_int_eq(status[0], 0);
	ck_assert_int_eq(status[1], SCRY_EPARSE);
	ck_assert_int_eq(status[2], 0);
	ck_assert_int_eq(status[3], SCRY_EPARSE);
	ck_assert_int_eq(status[4], 0);
	ck_assert_uint_eq(fps[0], reference("SELECT 1").fp);
	ck_assert_uint_eq(fps[2], fps[0]);
	ck_assert_uint_eq(fps[4], fps[0]);
	ck_assert_uint_eq(fps[1], 0);
	size_t lens[2] = { 6 + 2, 8 };
	const char *two[] = { "SELECT 9 trailing", "SELECT 8" };
	ck_assert_int_eq(scry_fingerprint_batch(NULL, two, lens, 2, fps, status), 0);
	ck_assert_uint_eq(fps[0], fps[1]);
	ck_assert_int_eq(scry_fingerprint_batch(f, NULL, NULL, 0, NULL, NULL), 0);
	ck_assert_int_eq(scry_fingerprint_batch(f, NULL, NULL, 1, fps, status), SCRY_EINVAL);
	scry_fingerprinter_free(f);
}
END_TEST

START_TEST(normalize_matches_pg_query)
{
	load_corpus();
	size_t bad = 0;
	for (size_t i = 0; i < corpus.n; i += 3) {
		PgQueryNormalizeResult r = pg_query_normalize(corpus.stmts[i]);
		scry_buf out = SCRY_BUF_INIT;
		scry_error err = SCRY_ERROR_INIT;
		int rc = scry_fingerprint_normalize(corpus.stmts[i], corpus.lens[i], &out, &err);
		if (r.error ? rc != SCRY_EPARSE : (rc != 0 || strcmp(out.ptr ? out.ptr : "", r.normalized_query))) {
			fprintf(stderr, "normalize mismatch: %s\n", corpus.stmts[i]);
			bad++;
		}
		scry_buf_dispose(&out);
		pg_query_free_normalize_result(r);
	}
	ck_assert_uint_eq(bad, 0);
	scry_buf out = SCRY_BUF_INIT;
	ck_assert_int_eq(scry_fingerprint_normalize("SELECT * FROM t WHERE a = 5 AND b = 'x'", 39, &out, NULL), 0);
	ck_assert_str_eq(out.ptr, "SELECT * FROM t WHERE a = $1 AND b = $2");
	scry_buf_dispose(&out);
}
END_TEST

START_TEST(split_statements)
{
	const char *sql = "-- head\nSELECT 1;\n\n/* c */ SELECT 'a;b' ; ;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ "
	                  "LANGUAGE sql;\nSELECT 2";
	scry_statement_span *sp;
	size_t n;
	ck_assert_int_eq(scry_fingerprint_split(sql, strlen(sql), &sp, &n, NULL), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(strncmp(sql + sp[0].offset, "SELECT 1", sp[0].length), 0);
	ck_assert_uint_eq(sp[0].length, 8);
	ck_assert_int_eq(strncmp(sql + sp[1].offset, "SELECT 'a;b'", sp[1].length), 0);
	ck_assert_uint_eq(sp[1].length, 12);
	ck_assert_int_eq(strncmp(sql + sp[2].offset, "CREATE FUNCTION", 15), 0);
	ck_assert_int_eq(strncmp(sql + sp[3].offset, "SELECT 2", sp[3].length), 0);
	ck_assert_uint_eq(sp[3].length, 8);
	scry_statement_spans_free(sp);
	ck_assert_int_eq(scry_fingerprint_split("", 0, &sp, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	scry_statement_spans_free(sp);

	/* What the scanner cannot split becomes one last statement that fails
	 * to parse with its position; the statements before it are kept. */
	static const struct {
		const char *sql;
		size_t len;
		const char *last;
		size_t last_len;
		const char *error;
	} broken[] = {
#define BROKEN(sql, last, error) { sql, sizeof(sql) - 1, last, sizeof(last) - 1, error }
		BROKEN("SELECT 1; SELECT 'oops; SELECT 2;", "SELECT 'oops; SELECT 2", "unterminated quoted string"),
		BROKEN("SELECT 1; SELECT 3 /* oops", "SELECT 3 /* oops", "unterminated /* comment"),
		BROKEN("SELECT 1;\nSELECT 'd\xce\xb4' || 'x", "SELECT 'd\xce\xb4' || 'x", "at position 16"),
		BROKEN("SELECT 1; SELECT 2 \0 x", "SELECT 2 \0 x", "NUL byte at position 10"),
		BROKEN("SELECT 1;\0SELECT 2;", "\0SELECT 2", "NUL byte at position 1"),
#undef BROKEN
	};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		scry_error err = SCRY_ERROR_INIT;
		ck_assert_int_eq(scry_fingerprint_split(broken[i].sql, broken[i].len, &sp, &n, &err), 0);
		ck_assert_uint_eq(n, 2);
		ck_assert_uint_eq(sp[0].length, 8);
		const char *last = broken[i].sql + sp[1].offset;
		ck_assert_uint_eq(sp[1].length, broken[i].last_len);
		ck_assert_int_eq(memcmp(last, broken[i].last, broken[i].last_len), 0);
		uint64_t fp;
		ck_assert_int_eq(scry_fingerprint_compute(NULL, last, sp[1].length, &fp, &err), SCRY_EPARSE);
		ck_assert_msg(strstr(err.message, broken[i].error) != NULL, "%s", err.message);
		scry_statement_spans_free(sp);
	}
}
END_TEST

/* The store rebuilds texts from template + literals: that must be lossless. */
START_TEST(lift_splice_round_trip)
{
	load_corpus();
	scry_buf t = SCRY_BUF_INIT, l = SCRY_BUF_INIT, back = SCRY_BUF_INIT;
	size_t bad = 0, lifted = 0;
	for (size_t i = 0; i < corpus.n; i++) {
		for (unsigned v = 0; v < 2; v++) {
			size_t n = 0;
			char *m = v ? sqlcorpus_mutate(corpus.stmts[i], corpus.lens[i], (unsigned)i, &n)
			            : strdup(corpus.stmts[i]);
			n = strlen(m);
			int nl;
			scry__buf_clear(&t);
			scry__buf_clear(&l);
			scry__buf_clear(&back);
			ck_assert_int_eq(scry__lift_literals(m, n, &t, &l, &nl), 0);
			lifted += nl > 0;
			ck_assert_int_eq(scry__splice_literals(t.ptr, t.size, (const unsigned char *)l.ptr, l.size, &back), 0);
			if (back.size != n || memcmp(back.ptr, m, n)) {
				fprintf(stderr, "round trip lost bytes: %s\n", m);
				bad++;
			}
			free(m);
		}
	}
	scry_buf_dispose(&t);
	scry_buf_dispose(&l);
	scry_buf_dispose(&back);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_ge(lifted, 100);
}
END_TEST

/* `scry fingerprint --json FILE` agrees with pg_query on every corpus file. */
START_TEST(cli_agrees_on_corpus)
{
	const char *cli = getenv("SCRY_CLI");
	if (!cli) {
		fprintf(stderr, "SCRY_CLI not set; run through ctest\n");
		return;
	}
	glob_t g;
	memset(&g, 0, sizeof g);
	glob("/usr/share/postgresql/[0-9]*/*.sql", 0, NULL, &g);
	glob("/usr/share/postgresql/[0-9]*/extension/*.sql", GLOB_APPEND, NULL, &g);
	ck_assert_uint_ge(g.gl_pathc, 20);
	char out[] = "/tmp/scry-fp-cli-XXXXXX", in[] = "/tmp/scry-fp-cli-in-XXXXXX";
	int fd = mkstemp(out);
	ck_assert_int_ge(fd, 0);
	close(fd);
	/* All files in one input (one CLI process: quick under ASan too). */
	fd = mkstemp(in);
	ck_assert_int_ge(fd, 0);
	FILE *cat = fdopen(fd, "w");
	for (size_t fi = 0; fi < g.gl_pathc; fi++) {
		size_t len = 0;
		char *text = sqlcorpus_read_file(g.gl_pathv[fi], &len);
		ck_assert_ptr_nonnull(text);
		fwrite(text, 1, len, cat);
		fputs("\n;\n", cat);
		free(text);
	}
	fclose(cat);
	const char *inputs[1] = { in };
	size_t checked = 0, bad = 0;
	for (size_t fi = 0; fi < 1; fi++) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "'%s' fingerprint --json '%s' > %s 2>/dev/null", cli, inputs[fi], out);
		int rc = system(cmd);
		(void)rc;
		size_t len = 0, olen = 0;
		char *text = sqlcorpus_read_file(inputs[fi], &len);
		char *res = sqlcorpus_read_file(out, &olen);
		ck_assert_ptr_nonnull(text);
		ck_assert_ptr_nonnull(res);
		/* Reference: pg_query's own split, then pg_query_fingerprint per statement. */
		PgQuerySplitResult r = pg_query_split_with_scanner(text);
		char *line = res;
		for (int i = 0; !r.error && i < r.n_stmts; i++) {
			size_t off = (size_t)r.stmts[i]->stmt_location;
			size_t n = r.stmts[i]->stmt_len ? (size_t)r.stmts[i]->stmt_len : len - off;
			char *stmt = strndup(text + off, n);
			int empty = 1;
			for (char *p = stmt; *p; p++)
				if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != ';')
					empty = 0;
			if (empty) {
				free(stmt);
				continue;
			}
			expected want = reference(stmt);
			char *nl = line ? strchr(line, '\n') : NULL;
			if (!nl) {
				fprintf(stderr, "%s: CLI printed fewer lines than statements\n", inputs[fi]);
				bad++;
				free(stmt);
				break;
			}
			*nl = 0;
			char hex[17];
			scry_fingerprint_format(want.fp, hex);
			int ok = want.ok ? strncmp(line, "{\"fingerprint\":\"", 16) == 0 && strncmp(line + 16, hex, 16) == 0
			                 : strncmp(line, "{\"error\":", 9) == 0;
			if (!ok) {
				fprintf(stderr, "%s statement %d: pg_query %s, CLI %.60s\n", inputs[fi], i,
				        want.ok ? hex : "error", line);
				bad++;
			}
			checked++;
			line = nl + 1;
			free(stmt);
		}
		pg_query_free_split_result(r);
		free(text);
		free(res);
	}
	unlink(out);
	unlink(in);
	globfree(&g);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_ge(checked, 3000);
}
END_TEST

/* The fast splitter finds exactly the statements PostgreSQL's scanner finds:
 * on every corpus file whole (functions with dollar quotes, comments, E''
 * strings), on corpus statements glued with tricky separators, and on
 * hand-made edge cases. */
static void same_split(const char *sql, size_t len, size_t *diffs)
{
	scry_statement_span *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	ck_assert_int_eq(scry_fingerprint_split(sql, len, &a, &na, NULL), 0);
	ck_assert_int_eq(scry__split_scanner(sql, len, &b, &nb, NULL), 0);
	bool same = na == nb;
	for (size_t i = 0; same && i < na; i++)
		same = a[i].offset == b[i].offset && a[i].length == b[i].length;
	if (!same) {
		fprintf(stderr, "split differs (%zu vs %zu statements) on: %.200s\n", na, nb, sql);
		(*diffs)++;
	}
	scry_statement_spans_free(a);
	scry_statement_spans_free(b);
}

START_TEST(fast_split_matches_scanner)
{
	size_t diffs = 0;
	glob_t g;
	memset(&g, 0, sizeof g);
	glob("/usr/share/postgresql/[0-9]*/*.sql", 0, NULL, &g);
	glob("/usr/share/postgresql/[0-9]*/extension/*.sql", GLOB_APPEND, NULL, &g);
	ck_assert_uint_ge(g.gl_pathc, 20);
	for (size_t fi = 0; fi < g.gl_pathc; fi++) {
		size_t len = 0;
		char *text = sqlcorpus_read_file(g.gl_pathv[fi], &len);
		ck_assert_ptr_nonnull(text);
		same_split(text, len, &diffs);
		free(text);
	}
	globfree(&g);
	static const char *const seps[] = { ";", ";;", " ; ", ";\n-- c;\n", "; /* ; /* nested */ */ ", ";\r\n",
	                                    "\n;\n", "; foo; ", "; 1; ", ");(", ";--x\r" };
	unsigned seed = 7;
	scry_buf b = SCRY_BUF_INIT;
	for (int round = 0; round < 3000; round++) {
		scry__buf_clear(&b);
		int k = 1 + (int)(sqlcorpus_rand(&seed) % 4);
		for (int j = 0; j < k; j++) {
			size_t i = sqlcorpus_rand(&seed) % corpus.n;
			scry__buf_put(&b, corpus.stmts[i], corpus.lens[i]);
			scry__buf_puts(&b, seps[sqlcorpus_rand(&seed) % (sizeof seps / sizeof seps[0])]);
		}
		same_split(b.ptr, b.size, &diffs);
	}
	scry_buf_dispose(&b);
	static const char *const edge[] = {
		"SELECT 1; SELECT 'a;b'; foo; SELECT (1;2); SELECT 3",
		"SELECT E'x\\';y'; SELECT 2", "SELECT e'\\\\'; SELECT 2", "SELECT somee'a\\'; SELECT 2",
		"SELECT $$;$$; SELECT $a$ $b$ ; $a$; SELECT $1; SELECT a$b; SELECT 2",
		"SELECT $ab$a$;$ab$; SELECT 1", "SELECT \"a;\"\"b\"; SELECT 2", "SELECT 1 -- x;\rSELECT 2; SELECT 3",
		"SELECT 1 /* a /* b */ ; */; SELECT 2", "1; 2;; SELECT 3 ", ";;;", "", "   ", "-- only",
		"SELECT (1; SELECT 2", "SELECT ))); SELECT 2", "SELECT 'unterminated; SELECT 2", "SELECT $$ open",
		"SELECT /* open", "SELECT \"open", "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END; SELECT 2",
		"select 1e5; select 1.5e-3;select x'1F';select U&'d\\0061t'; select B'101'", "ünïcode; SELECT 1",
		"VACUUM; ANALYZE t; CHECKPOINT", "frobnicate 1; SELECT 2", "SELECT 1 ;; ; SELECT 2 ; ",
	};
	for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
		same_split(edge[i], strlen(edge[i]), &diffs);
	ck_assert_uint_eq(diffs, 0);
}
END_TEST

START_TEST(format_and_parse)
{
	char hex[17];
	scry_fingerprint_format(0x0123456789abcdefull, hex);
	ck_assert_str_eq(hex, "0123456789abcdef");
	scry_fingerprint_format(0, hex);
	ck_assert_str_eq(hex, "0000000000000000");
	uint64_t v;
	ck_assert_int_eq(scry_fingerprint_parse("FFFFFFFFFFFFFFFF", &v), 0);
	ck_assert_uint_eq(v, UINT64_MAX);
	ck_assert_int_eq(scry_fingerprint_parse("abc", &v), 0);
	ck_assert_uint_eq(v, 0xabc);
	ck_assert_int_eq(scry_fingerprint_parse("12345678901234567", &v), SCRY_EINVAL);
	ck_assert_int_eq(scry_fingerprint_parse("xyz", &v), SCRY_EINVAL);
	ck_assert_int_eq(scry_fingerprint_parse("", &v), SCRY_EINVAL);
	ck_assert_int_eq(scry_fingerprinter_new(NULL, NULL, NULL), SCRY_EINVAL);
	scry_fingerprinter_free(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fingerprint");
	TCase *tc = tcase_create("fingerprint");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, corpus_is_there);
	tcase_add_test(tc, corpus_matches_pg_query);
	tcase_add_test(tc, variants_match_pg_query);
	tcase_add_test(tc, tricky_cases_match_pg_query);
	tcase_add_test(tc, value_shaped_trees_differ);
	tcase_add_test(tc, constants_do_not_reparse);
	tcase_add_test(tc, marker_bytes_do_not_alias_templates);
	tcase_add_test(tc, syntax_error_has_position);
	tcase_add_test(tc, batch_keeps_going);
	tcase_add_test(tc, normalize_matches_pg_query);
	tcase_add_test(tc, split_statements);
	tcase_add_test(tc, lift_splice_round_trip);
	tcase_add_test(tc, cli_agrees_on_corpus);
	tcase_add_test(tc, fast_split_matches_scanner);
	tcase_add_test(tc, format_and_parse);
	suite_add_tcase(s, tc);
	int status = pgtest_run_suite(s, 0);
	sqlcorpus_free(&corpus);
	pg_query_exit(); /* frees libpg_query's per-thread memory context */
	return status;
}
