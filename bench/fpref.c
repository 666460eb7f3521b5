/*
 * bench/fpref.c - the reference for bench/fingerprint_file.sh: reads SQL
 * from a file, splits it with libpg_query's pg_query_split_with_scanner()
 * and prints pg_query_fingerprint() of each statement, one per line
 * (16 hex digits, or "error"). Built by the script with gcc -O2.
 */
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	FILE *f = argc > 1 ? fopen(argv[1], "rb") : stdin;
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	size_t cap = 1 << 20, n = 0, r;
	char *buf = malloc(cap);
	while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (n + 1 >= cap)
			buf = realloc(buf, cap *= 2);
	}
	if (!buf)
		return 1;
	buf[n] = 0;
	PgQuerySplitResult sp = pg_query_split_with_scanner(buf);
	if (sp.error) {
		fprintf(stderr, "split: %s\n", sp.error->message);
		return 1;
	}
	for (int i = 0; i < sp.n_stmts; i++) {
		char *s = strndup(buf + sp.stmts[i]->stmt_location, (size_t)sp.stmts[i]->stmt_len);
		PgQueryFingerprintResult fp = pg_query_fingerprint(s);
		if (fp.error)
			puts("error");
		else
			puts(fp.fingerprint_str);
		pg_query_free_fingerprint_result(fp);
		free(s);
	}
	pg_query_free_split_result(sp);
	free(buf);
	return 0;
}
