/*
 * examples/c/fingerprint.c - fingerprint every statement of a .sql file.
 *
 *     cc fingerprint.c $(pkg-config --cflags --libs scry) -o fingerprint
 *     ./fingerprint queries.sql
 *
 * Prints one line per statement: its fingerprint (pg_query-compatible, the
 * same for the same query with other constants) and its normalized text.
 * Exit 0, or 1 when the file cannot be read or a statement does not parse.
 */
#include <scry/scry.h>

#include <stdio.h>
#include <stdlib.h>

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *data = malloc(cap);
	size_t r;
	while (data && (r = fread(data + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *bigger = realloc(data, cap *= 2);
			if (!bigger)
				free(data);
			data = bigger;
		}
	}
	fclose(f);
	*len = n;
	return data;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE.sql\n", argv[0]);
		return 2;
	}
	size_t len;
	char *sql = read_file(argv[1], &len);
	if (!sql) {
		perror(argv[1]);
		return 1;
	}
	scry_error err = SCRY_ERROR_INIT;
	scry_statement_span *spans = NULL;
	size_t n = 0;
	int status = 0;
	if (scry_fingerprint_split(sql, len, &spans, &n, &err) < 0) {
		fprintf(stderr, "%s: %s\n", argv[1], err.message);
		free(sql);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *stmt = sql + spans[i].offset;
		uint64_t fp;
		scry_buf norm = SCRY_BUF_INIT;
		if (scry_fingerprint_compute(NULL, stmt, spans[i].length, &fp, &err) < 0 ||
		    scry_fingerprint_normalize(stmt, spans[i].length, &norm, &err) < 0) {
			fprintf(stderr, "%s: statement %zu: %s\n", argv[1], i + 1, err.message);
			status = 1;
		} else {
			char hex[17];
			scry_fingerprint_format(fp, hex);
			printf("%s  %s\n", hex, norm.ptr ? norm.ptr : "");
		}
		scry_buf_dispose(&norm);
	}
	scry_statement_spans_free(spans);
	free(sql);
	return status;
}
