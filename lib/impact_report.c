/*
 * lib/impact_report.c - the "While the migration ran" section in every
 * report format. See include/scry/impact.h and docs/impact.md.
 */
#include "internal.h"
#include "util/json.h"
#include "util/text.h"

#include <inttypes.h>
#include <stdio.h>

static double ms(int64_t us) { return (double)us / 1000.0; }

/* "ALTER TABLE orders ... held AccessExclusiveLock on orders for 4.21 s; 312 queries waited up to 4.10 s" */
static void headline(const scry_impact *im, scry_buf *b)
{
	const scry_impact_lock *l = scry_impact_lock_get(im, 0);
	scry_impact_summary s = SCRY_IMPACT_SUMMARY_INIT;
	scry_impact_summarize(im, &s);
	if (l) {
		scry__buf_one_line(b, l->statement, 60, SCRY__ONE_LINE_ESCAPE);
		scry__buf_printf(b, " held %s on %s for %.2f s", l->mode, l->relation, ms(l->held_us) / 1000.0);
	} else {
		scry__buf_puts(b, "no table lock that blocks reads or writes was held");
	}
	const scry_impact_wait *w = scry_impact_wait_get(im, 0);
	if (w) {
		/* The table only when every waiting pattern waited on the same one. */
		const char *rel = w->relation;
		for (size_t i = 1; rel[0] && scry_impact_wait_get(im, i); i++)
			if (strcmp(scry_impact_wait_get(im, i)->relation, rel))
				rel = "";
		scry__buf_printf(b, "; %" PRId64 " %s%s%s waited up to %.2f s", s.waits,
		                 s.waits == 1 ? "query" : "queries", rel[0] ? " on " : "", rel,
		                 ms(s.max_wait_us) / 1000.0);
	} else {
		scry__buf_puts(b, "; no query waited on the migration");
	}
}

static void names(const scry_impact *im, scry_impact_object which, scry_buf *b)
{
	const char *n = scry_impact_object_get(im, which, 0);
	if (!n) {
		scry__buf_puts(b, "none");
		return;
	}
	for (size_t i = 0; (n = scry_impact_object_get(im, which, i)); i++)
		scry__buf_printf(b, "%s%s", i ? ", " : "", n);
}

static void gate_lines(const scry_impact *im, const scry_impact_gate *g, bool md, scry_buf *b)
{
	if (!g)
		return;
	scry_impact_summary s = SCRY_IMPACT_SUMMARY_INIT;
	scry_impact_summarize(im, &s);
	if (g->max_lock_wait_ms > 0)
		scry__buf_printf(b, "%sGate --max-lock-wait %" PRId64 " ms: %s (longest wait %.0f ms)\n", md ? "- " : "",
		                 g->max_lock_wait_ms,
		                 s.max_wait_us > g->max_lock_wait_ms * 1000 ? "FAILED" : "passed", ms(s.max_wait_us));
	if (g->max_migration_seconds > 0)
		scry__buf_printf(b, "%sGate --max-migration-seconds %g: %s (the migration took %.2f s)\n",
		                 md ? "- " : "", g->max_migration_seconds,
		                 (double)s.duration_us / 1e6 > g->max_migration_seconds ? "FAILED" : "passed",
		                 (double)s.duration_us / 1e6);
}

static void render_text(const scry_impact *im, const scry_impact_gate *g, bool md, scry_buf *b)
{
	scry_impact_summary s = SCRY_IMPACT_SUMMARY_INIT;
	scry_impact_summarize(im, &s);
	scry__buf_puts(b, md ? "\n## While the migration ran\n\n" : "\n== While the migration ran ==\n\n");
	if (md)
		scry__buf_puts(b, "**");
	headline(im, b);
	scry__buf_puts(b, md ? ".**\n\n" : ".\n\n");
	scry__buf_printf(b, "%sThe migration took %.2f s (%" PRId64 " lock samples)", md ? "- " : "",
	                 (double)s.duration_us / 1e6, s.polls);
	if (s.wal_bytes >= 0)
		scry__buf_printf(b, "; %.1f MB of WAL written meanwhile", (double)s.wal_bytes / 1e6);
	scry__buf_puts(b, md ? ".\n- Tables rewritten: " : ".\nTables rewritten: ");
	names(im, SCRY_IMPACT_REWRITTEN, b);
	scry__buf_puts(b, md ? "\n- New indexes: " : "\nNew indexes: ");
	names(im, SCRY_IMPACT_NEW_INDEX, b);
	scry__buf_puts(b, md ? "\n- Invalid indexes left behind: " : "\nInvalid indexes left behind: ");
	names(im, SCRY_IMPACT_INVALID_INDEX, b);
	scry__buf_puts(b, "\n");
	gate_lines(im, g, md, b);

	const scry_impact_lock *l;
	if (scry_impact_lock_get(im, 0))
		scry__buf_puts(b, md ? "\n| lock | table | held | from | statement |\n|---|---|---:|---:|---|\n"
		                     : "\nLocks the migration held:\n");
	for (size_t i = 0; (l = scry_impact_lock_get(im, i)); i++) {
		if (md) {
			scry__buf_printf(b, "| %s | %s | %.0f ms | %.2f s | `", l->mode, l->relation, ms(l->held_us),
			                 ms(l->start_us) / 1000.0);
			scry__buf_one_line(b, l->statement, 100, SCRY__ONE_LINE_ESCAPE);
			scry__buf_puts(b, "` |\n");
		} else {
			scry__buf_printf(b, "  %-22s on %-20s %8.0f ms  (from %.2f s)  ", l->mode, l->relation,
			                 ms(l->held_us), ms(l->start_us) / 1000.0);
			scry__buf_one_line(b, l->statement, 80, SCRY__ONE_LINE_ESCAPE);
			scry__buf_puts(b, "\n");
		}
	}
	for (size_t i = 0; (l = scry_impact_lock_get(im, i)); i++) {
		bool said = false; /* one line per piece of advice */
		for (size_t j = 0; j < i && !said; j++)
			said = l->advice && scry_impact_lock_get(im, j)->advice &&
			       !strcmp(scry_impact_lock_get(im, j)->advice, l->advice);
		if (l->advice && !said)
			scry__buf_printf(b, "%sAdvice (%s on %s): %s\n", md ? "\n> " : "  ", l->mode, l->relation, l->advice);
	}
	/* Row-lock waits behind a statement whose table lock was not listed (a backfill UPDATE). */
	const scry_impact_wait *w;
	for (size_t i = 0; (w = scry_impact_wait_get(im, i)); i++) {
		bool said = false;
		for (size_t j = 0; (l = scry_impact_lock_get(im, j)) && !said; j++)
			said = l->advice && w->advice && !strcmp(l->advice, w->advice);
		for (size_t j = 0; j < i && !said; j++)
			said = w->advice && scry_impact_wait_get(im, j)->advice &&
			       !strcmp(scry_impact_wait_get(im, j)->advice, w->advice);
		if (w->advice && !said) {
			scry__buf_puts(b, md ? "\n> Advice (queries waited behind `" : "  Advice (queries waited behind ");
			scry__buf_one_line(b, w->blocker, 60, SCRY__ONE_LINE_ESCAPE);
			scry__buf_printf(b, "%s): %s\n", md ? "`" : "", w->advice);
		}
	}

	if (scry_impact_wait_get(im, 0))
		scry__buf_puts(b, md ? "\n| pattern | waited | longest | total | on | query |\n|---|---:|---:|---:|---|---|\n"
		                     : "\nQueries that waited on the migration:\n");
	for (size_t i = 0; (w = scry_impact_wait_get(im, i)); i++) {
		const char *on = w->relation[0] ? w->relation : w->lock;
		if (md)
			scry__buf_printf(b, "| `%016" PRIx64 "` | %" PRId64 " | %.0f ms | %.0f ms | %s | `", w->fingerprint,
			                 w->count, ms(w->max_wait_us), ms(w->total_wait_us), on);
		else
			scry__buf_printf(b, "  %016" PRIx64 "  %5" PRId64 " waited, longest %7.0f ms, total %8.0f ms on %-12s ",
			                 w->fingerprint, w->count, ms(w->max_wait_us), ms(w->total_wait_us), on);
		scry__buf_one_line(b, w->query, md ? 100 : 60, SCRY__ONE_LINE_ESCAPE);
		scry__buf_puts(b, md ? "` |\n" : "\n");
	}

	const scry_impact_pattern *p;
	bool any = false;
	for (size_t i = 0; (p = scry_impact_pattern_get(im, i)); i++) {
		if (!p->exceeded)
			continue;
		if (!any)
			scry__buf_puts(b, md ? "\n| pattern | during p50 | baseline p50 | during p95 | baseline p95 | p95 ratio | max | errors |\n|---|---:|---:|---:|---:|---:|---:|---|\n"
			                     : "\nPatterns slower while the migration ran:\n");
		any = true;
		char errs[32] = "";
		if (p->errors)
			snprintf(errs, sizeof errs, "%" PRId64 " (%s)", p->errors, p->sqlstate);
		scry__buf_printf(b, md ? "| `%016" PRIx64 "` | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2fx | %.0f ms | %s |\n"
		                       : "  %016" PRIx64 "  p50 %.2f ms vs %.2f ms, p95 %.2f ms vs %.2f ms (%.2fx), max %.0f ms  %s\n",
		                 p->fingerprint, p->during_p50_ms, p->baseline_p50_ms, p->during_p95_ms, p->baseline_p95_ms,
		                 p->p95_ratio, p->during_max_ms, errs[0] ? errs : (md ? "-" : ""));
	}
}

static void jnames(scry__json *j, const scry_impact *im, scry_impact_object which, const char *key)
{
	scry__json_key(j, key);
	scry__json_array(j);
	const char *n;
	for (size_t i = 0; (n = scry_impact_object_get(im, which, i)); i++)
		scry__json_str(j, n);
	scry__json_end(j);
}

static void jfp(scry__json *j, uint64_t fp)
{
	char hex[17];
	snprintf(hex, sizeof hex, "%016" PRIx64, fp);
	scry__json_kstr(j, "fingerprint", hex);
}

static void render_json(const scry_impact *im, const scry_impact_gate *g, scry_buf *b)
{
	scry_impact_summary s = SCRY_IMPACT_SUMMARY_INIT;
	scry_impact_summarize(im, &s);
	scry_buf h = SCRY_BUF_INIT;
	headline(im, &h);
	scry__buf_inherit(b, &h);
	scry__json j;
	scry__json_init(&j, b);
	scry__json_object(&j);
	scry__json_kstr(&j, "summary", h.ptr ? h.ptr : "");
	scry_buf_dispose(&h);
	scry__json_knum(&j, "duration_ms", ms(s.duration_us), "%.3f");
	scry__json_kint(&j, "polls", s.polls);
	scry__json_kint(&j, "wal_bytes", s.wal_bytes);
	scry__json_knum(&j, "max_lock_wait_ms", ms(s.max_wait_us), "%.3f");
	scry__json_kint(&j, "queries_waited", s.waits);
	scry__json_key(&j, "locks");
	scry__json_array(&j);
	const scry_impact_lock *l;
	for (size_t i = 0; (l = scry_impact_lock_get(im, i)); i++) {
		scry__json_object(&j);
		scry__json_kstr(&j, "relation", l->relation);
		scry__json_kstr(&j, "mode", l->mode);
		scry__json_knum(&j, "held_ms", ms(l->held_us), "%.3f");
		scry__json_knum(&j, "start_ms", ms(l->start_us), "%.3f");
		scry__json_kstr(&j, "statement", l->statement);
		scry__json_kstr(&j, "advice", l->advice);
		scry__json_end(&j);
	}
	scry__json_end(&j);
	scry__json_key(&j, "waits");
	scry__json_array(&j);
	const scry_impact_wait *w;
	for (size_t i = 0; (w = scry_impact_wait_get(im, i)); i++) {
		scry__json_object(&j);
		jfp(&j, w->fingerprint);
		scry__json_kstr(&j, "query", w->query);
		scry__json_kstr(&j, "relation", w->relation);
		scry__json_kstr(&j, "lock", w->lock);
		scry__json_kstr(&j, "blocker", w->blocker);
		scry__json_kstr(&j, "advice", w->advice);
		scry__json_kint(&j, "count", w->count);
		scry__json_knum(&j, "max_wait_ms", ms(w->max_wait_us), "%.3f");
		scry__json_knum(&j, "total_wait_ms", ms(w->total_wait_us), "%.3f");
		scry__json_end(&j);
	}
	scry__json_end(&j);
	scry__json_key(&j, "patterns");
	scry__json_array(&j);
	const scry_impact_pattern *p;
	for (size_t i = 0; (p = scry_impact_pattern_get(im, i)); i++) {
		scry__json_object(&j);
		jfp(&j, p->fingerprint);
		scry__json_kint(&j, "executions", p->executions);
		scry__json_knum(&j, "baseline_p50_ms", p->baseline_p50_ms, "%.3f");
		scry__json_knum(&j, "during_p50_ms", p->during_p50_ms, "%.3f");
		scry__json_knum(&j, "baseline_p95_ms", p->baseline_p95_ms, "%.3f");
		scry__json_knum(&j, "during_p95_ms", p->during_p95_ms, "%.3f");
		scry__json_knum(&j, "during_max_ms", p->during_max_ms, "%.3f");
		scry__json_knum(&j, "ratio", p->ratio, "%.3f");
		scry__json_knum(&j, "p95_ratio", p->p95_ratio, "%.3f");
		scry__json_kint(&j, "errors", p->errors);
		scry__json_kstr(&j, "sqlstate", p->sqlstate);
		scry__json_kbool(&j, "exceeded", p->exceeded);
		scry__json_end(&j);
	}
	scry__json_end(&j);
	jnames(&j, im, SCRY_IMPACT_REWRITTEN, "rewritten");
	jnames(&j, im, SCRY_IMPACT_NEW_INDEX, "new_indexes");
	jnames(&j, im, SCRY_IMPACT_INVALID_INDEX, "invalid_indexes");
	scry__json_key(&j, "gate");
	scry__json_object(&j);
	scry__json_kint(&j, "max_lock_wait_ms", g ? g->max_lock_wait_ms : 0);
	scry__json_knum(&j, "max_migration_seconds", g ? g->max_migration_seconds : 0.0, "%g");
	scry__json_kint(&j, "failures", (int64_t)scry_impact_failures(im, g));
	scry__json_end(&j);
	scry__json_end(&j);
}

/* XML text (JUnit) and HTML (a fragment): control characters other than newline and tab dropped. */
static void xml_text(scry_buf *b, const char *s) { scry__buf_markup(b, s, NULL, "\n\t", 0); }

static void render_junit(const scry_impact *im, const scry_impact_gate *g, scry_buf *b)
{
	scry_impact_summary s = SCRY_IMPACT_SUMMARY_INIT;
	scry_impact_summarize(im, &s);
	scry_buf h = SCRY_BUF_INIT;
	headline(im, &h);
	scry__buf_inherit(b, &h);
	bool lock_fail = g && g->max_lock_wait_ms > 0 && s.max_wait_us > g->max_lock_wait_ms * 1000;
	bool time_fail = g && g->max_migration_seconds > 0 && (double)s.duration_us / 1e6 > g->max_migration_seconds;
	scry__buf_printf(b, "<testsuite name=\"scry migration impact\" tests=\"2\" failures=\"%d\" time=\"%.3f\">\n",
	                 (int)lock_fail + (int)time_fail, (double)s.duration_us / 1e6);
	scry__buf_puts(b, "<testcase classname=\"scry.impact\" name=\"lock waits\">");
	if (lock_fail) {
		scry__buf_printf(b, "<failure message=\"a query waited %.0f ms on the migration (limit %" PRId64 " ms)\">",
		                 ms(s.max_wait_us), g->max_lock_wait_ms);
		xml_text(b, h.ptr);
		scry__buf_puts(b, "</failure>");
	}
	scry__buf_puts(b, "<system-out>");
	xml_text(b, h.ptr);
	scry__buf_puts(b, "</system-out></testcase>\n<testcase classname=\"scry.impact\" name=\"migration duration\">");
	if (time_fail)
		scry__buf_printf(b, "<failure message=\"the migration took %.2f s (limit %g s)\"/>",
		                 (double)s.duration_us / 1e6, g->max_migration_seconds);
	scry__buf_puts(b, "</testcase>\n</testsuite>\n");
	scry_buf_dispose(&h);
}

int scry_impact_render(const scry_impact *im, const scry_impact_gate *gate, scry_report_format format,
	scry_buf *out, scry_error *err)
{
	if (!im || !out)
		return scry__fail(err, SCRY_EINVAL, "sampler or output is NULL");
	scry_impact_gate g;
	if (gate) {
		int rc = scry__opts_copy(err, &scry__abi_impact_gate, &g, gate);
		if (rc)
			return rc;
		gate = &g;
	}
	/* Appends are not checked one by one: the buffer's failure is sticky,
	 * checked once at the end. */
	scry_buf b = SCRY_BUF_INIT;
	switch (format) {
	case SCRY_REPORT_JSON: render_json(im, gate, &b); break;
	case SCRY_REPORT_JUNIT: render_junit(im, gate, &b); break;
	case SCRY_REPORT_MARKDOWN: render_text(im, gate, true, &b); break;
	case SCRY_REPORT_HTML: {
		/* A fragment: the text section, escaped, for a page of the caller's. */
		scry_buf t = SCRY_BUF_INIT;
		render_text(im, gate, false, &t);
		scry__buf_inherit(&b, &t);
		scry__buf_puts(&b, "<section class=\"impact\"><pre>");
		xml_text(&b, t.ptr);
		scry__buf_puts(&b, "</pre></section>\n");
		scry_buf_dispose(&t);
		break;
	}
	case SCRY_REPORT_TEXT:
	default: render_text(im, gate, false, &b); break;
	}
	int rc = scry__buf_failed(&b) || !b.ptr ? SCRY_ENOMEM : scry__buf_put(out, b.ptr, b.size);
	scry_buf_dispose(&b);
	return rc ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
}
