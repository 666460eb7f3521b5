/*
 * lib/filter.c - which patterns a verdict judges (scry/filter.h), and the
 * footer of the reports that lists the ones it did not.
 */
#define _GNU_SOURCE /* FNM_CASEFOLD */
#include "internal.h"
#include "util/json.h"

#include <fnmatch.h>
#include <stdio.h>

typedef struct glob_list {
	char **v;
	size_t n, cap;
} glob_list;

struct scry_pattern_filter {
	glob_list include, exclude;
	int session_setup; /* judge it */
};

int scry_pattern_filter_new(scry_pattern_filter **out, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_pattern_filter_new: out is NULL");
	*out = scry__calloc(1, sizeof **out);
	return *out ? 0 : scry__fail(err, SCRY_ENOMEM, "out of memory");
}

static void globs_free(glob_list *g)
{
	for (size_t i = 0; i < g->n; i++)
		scry__free(g->v[i]);
	scry__free(g->v);
}

void scry_pattern_filter_free(scry_pattern_filter *f)
{
	if (!f)
		return;
	globs_free(&f->include);
	globs_free(&f->exclude);
	scry__free(f);
}

int scry_pattern_filter_add(scry_pattern_filter *f, int include, const char *glob, scry_error *err)
{
	if (!f || !glob || !*glob)
		return scry__fail(err, SCRY_EINVAL, "an %s pattern must not be empty", include ? "include" : "exclude");
	glob_list *g = include ? &f->include : &f->exclude;
	char *copy = scry__strdup(glob);
	if (!copy || scry__array_grow((void **)&g->v, &g->cap, g->n, sizeof *g->v, 4)) {
		scry__free(copy);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	g->v[g->n++] = copy;
	return 0;
}

void scry_pattern_filter_set_session_setup(scry_pattern_filter *f, int judge)
{
	if (f)
		f->session_setup = judge != 0;
}

int scry_is_session_setup(const char *sql)
{
	static const char *const words[] = { "SET", "SHOW", "RESET", "DISCARD", "BEGIN", "COMMIT", "END", "ROLLBACK",
	                                     "ABORT", "SAVEPOINT", "RELEASE" };
	char w[16];
	if (!sql)
		return 0;
	const char *rest = scry__sql_next_word(sql, w, sizeof w);
	for (size_t i = 0; i < sizeof words / sizeof *words; i++)
		if (!strcmp(w, words[i]))
			return 1;
	if (!strcmp(w, "START")) { /* START TRANSACTION */
		char w2[16];
		scry__sql_next_word(rest, w2, sizeof w2);
		return !strcmp(w2, "TRANSACTION");
	}
	return 0;
}

static bool any_match(const glob_list *g, const char *hex, const char *text)
{
	for (size_t i = 0; i < g->n; i++)
		if (fnmatch(g->v[i], hex, FNM_CASEFOLD) == 0 || (text && fnmatch(g->v[i], text, FNM_CASEFOLD) == 0))
			return true;
	return false;
}

int scry_pattern_filter_match(const scry_pattern_filter *f, uint64_t fingerprint, const char *normalized,
                              const char **why)
{
	char hex[17];
	scry_fingerprint_format(fingerprint, hex);
	const char *reason = NULL;
	bool included = f && f->include.n && any_match(&f->include, hex, normalized);
	if (f && any_match(&f->exclude, hex, normalized))
		reason = "--exclude";
	else if (f && f->include.n && !included)
		reason = "not in --include";
	else if (!included && !(f && f->session_setup) && scry_is_session_setup(normalized))
		reason = "session setup";
	if (why)
		*why = reason;
	return reason == NULL;
}

/* ------------------------------------------------------------------ */
/* The reports' footer                                                  */

int scry__excluded_add(scry__excluded *x, uint64_t fingerprint, const char *normalized, const char *why,
                       int64_t executions)
{
	char *copy = scry__strdup(normalized ? normalized : "");
	if (!copy || scry__array_grow((void **)&x->v, &x->cap, x->n, sizeof *x->v, 8)) {
		scry__free(copy);
		return SCRY_ENOMEM;
	}
	x->v[x->n++] = (scry__excluded_pattern){ fingerprint, copy, why, executions };
	return 0;
}

void scry__excluded_free(scry__excluded *x)
{
	for (size_t i = 0; i < x->n; i++)
		scry__free(x->v[i].normalized);
	scry__free(x->v);
	memset(x, 0, sizeof *x);
}

void scry__report_excluded_json(scry__json *j, const scry__excluded *x)
{
	if (!x || !x->n)
		return;
	scry__json_key(j, "excluded");
	scry__json_array(j);
	for (size_t i = 0; i < x->n; i++) {
		char fp[17];
		scry_fingerprint_format(x->v[i].fingerprint, fp);
		scry__json_object(j);
		scry__json_kstr(j, "fingerprint", fp);
		scry__json_kstr(j, "query", x->v[i].normalized);
		scry__json_kstr(j, "reason", x->v[i].why);
		scry__json_kint(j, "executions", x->v[i].executions);
		scry__json_end(j);
	}
	scry__json_end(j);
}

/* Counts by reason, in a fixed order, for the one-line summary. */
static const char *const reasons[] = { "session setup", "--exclude", "not in --include" };

int scry__report_excluded(scry_buf *b, const scry__excluded *x, scry_report_format format)
{
	if (!x || !x->n)
		return 0;
	int rc = 0;
	bool md = format == SCRY_REPORT_MARKDOWN, html = format == SCRY_REPORT_HTML;
	rc = scry__buf_printf(b, html ? "<footer><p>" : md ? "\n---\n" : "\n");
	rc = rc ? rc : scry__buf_printf(b, "Not judged: %zu pattern%s (", x->n, x->n == 1 ? "" : "s");
	bool first = true;
	for (size_t r = 0; !rc && r < 3; r++) {
		size_t n = 0;
		for (size_t i = 0; i < x->n; i++)
			n += !strcmp(x->v[i].why, reasons[r]);
		if (n)
			rc = scry__buf_printf(b, "%s%zu %s", first ? "" : ", ", n, reasons[r]);
		first = first && !n;
	}
	rc = rc ? rc : scry__buf_puts(b, html ? "; still replayed, not gated on):</p><ul>"
	                                     : "; still replayed, not gated on):\n");
	for (size_t i = 0; !rc && i < x->n; i++) {
		char fp[17];
		scry_fingerprint_format(x->v[i].fingerprint, fp);
		/* One line each, at most 100 bytes of the query (cut on a UTF-8 boundary). */
		size_t len = strlen(x->v[i].normalized);
		if (len > 100) {
			len = 100;
			while (len && ((unsigned char)x->v[i].normalized[len] & 0xC0) == 0x80)
				len--;
		}
		scry_buf q = SCRY_BUF_INIT;
		for (size_t k = 0; !rc && k < len; k++) {
			char c = x->v[i].normalized[k];
			c = c == '\n' || c == '\r' || c == '\t' ? ' ' : c;
			if (html && (c == '<' || c == '>' || c == '&' || c == '"'))
				rc = scry__buf_puts(&q, c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : "&quot;");
			else if (md && (c == '`' || c == '|'))
				rc = scry__buf_puts(&q, "'");
			else
				rc = scry__buf_put(&q, &c, 1);
		}
		const char *qs = q.ptr ? q.ptr : "";
		const char *more = len < strlen(x->v[i].normalized) ? "..." : "";
		if (!rc && html)
			rc = scry__buf_printf(b, "<li><code>%s</code> <code>%s%s</code> (%s)</li>", fp, qs, more, x->v[i].why);
		else if (!rc && md)
			rc = scry__buf_printf(b, "- `%s` `%s%s` (%s)\n", fp, qs, more, x->v[i].why);
		else if (!rc)
			rc = scry__buf_printf(b, "  %s  %s%s  (%s)\n", fp, qs, more, x->v[i].why);
		scry_buf_dispose(&q);
	}
	return rc ? rc : html ? scry__buf_puts(b, "</ul></footer>") : 0;
}
