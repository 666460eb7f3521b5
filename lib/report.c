/*
 * lib/report.c - renders a verdict as text, JSON, Markdown or JUnit XML.
 *
 * Every renderer reads the same scry_pattern_verdict fields, in the
 * verdict's order (worst first), so the four formats always agree. The JSON
 * keys are documented in docs/cli.md and only ever added to.
 */
#include "internal.h"
#include "util/json.h"
#include "util/text.h"

#include <math.h>
#include <stdio.h>

int scry_report_format_parse(const char *name, scry_report_format *out)
{
	static const char *const names[] = { "text", "json", "markdown", "junit", "html" };
	for (int i = 0; name && i < 5; i++)
		if (!strcmp(name, names[i])) {
			*out = (scry_report_format)i;
			return 0;
		}
	if (name && !strcmp(name, "md")) {
		*out = SCRY_REPORT_MARKDOWN;
		return 0;
	}
	return SCRY_EINVAL;
}

static const char *verdict_word(const scry_verdict_summary *s)
{
	return s->failures ? "FAIL" : "PASS";
}

/* Work beside time: blocks per execution on each side, and whether the plan changed. */
static void work(scry_buf *b, const scry_pattern_verdict *p)
{
	if (!p->work_measured)
		return;
	scry__buf_printf(b, "; work %.0f -> %.0f blocks", p->baseline_work, p->candidate_work);
	if (p->baseline_work > 0)
		scry__buf_printf(b, " (%.2fx)", p->candidate_work / p->baseline_work);
	if (p->plan_changed)
		scry__buf_puts(b, ", plan changed");
}

/* The one-line reason of a pattern, shared by every format (and lib/report_html.c). */
void scry__report_reason(scry_buf *b, const scry_pattern_verdict *p)
{
	switch (p->cls) {
	case SCRY_CLASS_REGRESSED:
	case SCRY_CLASS_IMPROVED:
	case SCRY_CLASS_UNCHANGED:
		scry__buf_printf(b, "p50 %.3f -> %.3f ms, ratio %.2fx", p->baseline_p50_ms, p->candidate_p50_ms, p->ratio);
		if (isfinite(p->ratio_high))
			scry__buf_printf(b, " (95%% CI %.2f-%.2f)", p->ratio_low, p->ratio_high);
		scry__buf_printf(b, ", %lld paired executions", (long long)p->pairs);
		work(b, p);
		if (p->note)
			scry__buf_printf(b, "; %s", p->note);
		break;
	case SCRY_CLASS_NEW_ERROR:
		scry__buf_printf(b, "new error %s", p->candidate_sqlstate ? p->candidate_sqlstate : "");
		if (p->candidate_error)
			scry__buf_printf(b, ": %s", p->candidate_error);
		scry__buf_printf(b, " (%lld executions that succeed on baseline fail on candidate)",
		                 (long long)p->new_failures);
		break;
	case SCRY_CLASS_ONLY_IN_CANDIDATE:
		if (p->suggested_index)
			scry__buf_printf(b, "only in candidate: p50 %.3f ms as migrated vs %.3f ms with %s, ratio %.2fx",
			                 p->unindexed_p50_ms, p->best_p50_ms, p->suggested_index, p->ratio);
		else
			scry__buf_printf(b, "%s", p->note ? p->note : "only in candidate");
		if (p->suggested_index && isfinite(p->ratio_high))
			scry__buf_printf(b, " (95%% CI %.2f-%.2f)", p->ratio_low, p->ratio_high);
		if (p->captured_mean_ms > 0)
			scry__buf_printf(b, "; captured mean %.3f ms", p->captured_mean_ms);
		break;
	default:
		scry__buf_printf(b, "%s", p->note ? p->note : "");
	}
}

/* A p50 cell: "-" when the side has no successful sample. */
static void p50_cell(char *out, size_t n, int64_t samples, int64_t errors, double ms)
{
	if (samples > errors)
		snprintf(out, n, "%.3f", ms);
	else
		snprintf(out, n, "-");
}

/* A work cell: "12->1418" blocks per execution, "-" when not measured. */
static void work_cell(char *out, size_t n, const scry_pattern_verdict *p)
{
	if (p->work_measured)
		snprintf(out, n, "%.0f->%.0f", p->baseline_work, p->candidate_work);
	else
		snprintf(out, n, "-");
}

/* ---------------- text ---------------- */

static void render_text(const scry_verdict *v, const scry_verdict_summary *s, scry_buf *b)
{
	scry__buf_printf(b, "scry diff: baseline '%s' (run %lld) vs candidate '%s' (run %lld); threshold %.2fx, floor %.2f ms\n",
	                 s->baseline_label, (long long)s->baseline_run, s->candidate_label, (long long)s->candidate_run,
	                 s->threshold, s->min_delta_ms);
	scry__buf_printf(b, "%s: %zu of %zu patterns fail the gate (%zu regressed, %zu new-error, %zu only-in-candidate, "
	                    "%zu rows-changed, %zu improved, %zu unchanged, %zu insufficient-samples)\n\n",
	                 verdict_word(s), s->failures, s->patterns, s->by_class[SCRY_CLASS_REGRESSED],
	                 s->by_class[SCRY_CLASS_NEW_ERROR], s->by_class[SCRY_CLASS_ONLY_IN_CANDIDATE],
	                 s->by_class[SCRY_CLASS_ROWS_CHANGED], s->by_class[SCRY_CLASS_IMPROVED],
	                 s->by_class[SCRY_CLASS_UNCHANGED], s->by_class[SCRY_CLASS_INSUFFICIENT]);
	scry__buf_printf(b, "%-4s %-20s %8s %15s %10s %10s %13s %11s %9s  %-16s %s\n", "", "CLASS", "RATIO", "95% CI",
	                 "BASE p50", "CAND p50", "WORK blocks", "IMPACT ms", "N", "FINGERPRINT", "QUERY");
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		char fp[17], ci[40] = "-", ratio[20] = "-", n[24];
		scry_fingerprint_format(p->fingerprint, fp);
		if (p->ratio > 0)
			snprintf(ratio, sizeof ratio, "%.2fx", p->ratio);
		if (p->ratio > 0 && isfinite(p->ratio_high))
			snprintf(ci, sizeof ci, "%.2f-%.2f", p->ratio_low, p->ratio_high);
		snprintf(n, sizeof n, "%lld/%lld", (long long)p->baseline_n, (long long)p->candidate_n);
		char bp[24], cp[24];
		p50_cell(bp, sizeof bp, p->baseline_n, p->baseline_errors, p->baseline_p50_ms);
		p50_cell(cp, sizeof cp, p->candidate_n, p->candidate_errors, p->candidate_p50_ms);
		char wk[40];
		work_cell(wk, sizeof wk, p);
		scry__buf_printf(b, "%-4s %-20s %8s %15s %10s %10s %13s %11.1f %9s  %-16s ", p->flagged ? "FAIL" : "",
		                 scry_verdict_class_name(p->cls), ratio, ci, bp, cp, wk, p->impact_ms, n, fp);
		scry__buf_one_line(b, p->normalized, 70, 0);
		scry__buf_puts(b, "\n");
		if (p->flagged || p->cls == SCRY_CLASS_ONLY_IN_CANDIDATE || p->cls == SCRY_CLASS_ROWS_CHANGED ||
		    p->cls == SCRY_CLASS_INSUFFICIENT) {
			scry__buf_puts(b, "       why: ");
			scry__report_reason(b, p);
			scry__buf_puts(b, "\n");
		}
		if (p->plan_change)
			scry__buf_printf(b, "       plan: %s\n", p->plan_change);
	}
}

/* ---------------- JSON ---------------- */

/* Milliseconds with three decimals; null when not measured. */
static void jms(scry__json *j, const char *key, double x)
{
	scry__json_knum(j, key, x, "%.3f");
}

static void render_json(const scry_verdict *v, const scry_verdict_summary *s, scry_buf *b)
{
	scry__json j;
	scry__json_init(&j, b);
	scry__json_object(&j);
	scry__json_key(&j, "baseline");
	scry__json_object(&j);
	scry__json_kstr(&j, "label", s->baseline_label);
	scry__json_kint(&j, "run", s->baseline_run);
	scry__json_end(&j);
	scry__json_key(&j, "candidate");
	scry__json_object(&j);
	scry__json_kstr(&j, "label", s->candidate_label);
	scry__json_kint(&j, "run", s->candidate_run);
	scry__json_end(&j);
	scry__json_knum(&j, "threshold", s->threshold, "%.6g");
	scry__json_knum(&j, "min_delta_ms", s->min_delta_ms, "%.6g");
	scry__json_key(&j, "summary");
	scry__json_object(&j);
	scry__json_kstr(&j, "verdict", s->failures ? "fail" : "pass");
	scry__json_kint(&j, "patterns", (int64_t)s->patterns);
	scry__json_kint(&j, "failures", (int64_t)s->failures);
	for (int c = 0; c < 7; c++) {
		char key[32];
		snprintf(key, sizeof key, "%s", scry_verdict_class_name((scry_verdict_class)c));
		for (char *p = key; *p; p++)
			if (*p == '-')
				*p = '_';
		scry__json_kint(&j, key, (int64_t)s->by_class[c]);
	}
	scry__json_end(&j);
	scry__json_key(&j, "patterns");
	scry__json_array(&j);
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry__json_object(&j);
		scry__json_kstr(&j, "fingerprint", fp);
		scry__json_kstr(&j, "query", p->normalized);
		scry__json_kstr(&j, "class", scry_verdict_class_name(p->cls));
		scry__json_kbool(&j, "flagged", p->flagged);
		scry__json_kint(&j, "baseline_n", p->baseline_n);
		scry__json_kint(&j, "candidate_n", p->candidate_n);
		scry__json_kint(&j, "pairs", p->pairs);
		scry__json_kint(&j, "baseline_errors", p->baseline_errors);
		scry__json_kint(&j, "candidate_errors", p->candidate_errors);
		scry__json_kint(&j, "new_failures", p->new_failures);
		scry__json_kint(&j, "rows_differ", p->rows_differ);
		scry__json_kint(&j, "executions", p->executions);
		bool has_base = p->baseline_n > p->baseline_errors, has_cand = p->candidate_n > p->candidate_errors;
		jms(&j, "baseline_p50_ms", has_base ? p->baseline_p50_ms : NAN);
		jms(&j, "baseline_p95_ms", has_base ? p->baseline_p95_ms : NAN);
		jms(&j, "baseline_p99_ms", has_base ? p->baseline_p99_ms : NAN);
		jms(&j, "candidate_p50_ms", has_cand ? p->candidate_p50_ms : NAN);
		jms(&j, "candidate_p95_ms", has_cand ? p->candidate_p95_ms : NAN);
		jms(&j, "candidate_p99_ms", has_cand ? p->candidate_p99_ms : NAN);
		scry__json_knum(&j, "ratio", p->ratio > 0 ? p->ratio : NAN, "%.6g");
		scry__json_knum(&j, "ratio_low", p->ratio > 0 && isfinite(p->ratio_high) ? p->ratio_low : NAN, "%.6g");
		scry__json_knum(&j, "ratio_high", p->ratio > 0 ? p->ratio_high : NAN, "%.6g");
		jms(&j, "impact_ms", p->impact_ms);
		jms(&j, "captured_mean_ms", p->captured_mean_ms > 0 ? p->captured_mean_ms : NAN);
		scry__json_kstr(&j, "baseline_sqlstate", p->baseline_sqlstate);
		scry__json_kstr(&j, "candidate_sqlstate", p->candidate_sqlstate);
		scry__json_kstr(&j, "candidate_error", p->candidate_error);
		scry__json_kstr(&j, "suggested_index", p->suggested_index);
		jms(&j, "best_p50_ms", p->suggested_index ? p->best_p50_ms : NAN);
		jms(&j, "unindexed_p50_ms", p->suggested_index ? p->unindexed_p50_ms : NAN);
		scry__json_kstr(&j, "plan_change", p->plan_change);
		scry__json_knum(&j, "baseline_work", p->work_measured ? p->baseline_work : NAN, "%.6g");
		scry__json_knum(&j, "candidate_work", p->work_measured ? p->candidate_work : NAN, "%.6g");
		scry__json_kbool(&j, "plan_changed", p->plan_changed);
		scry__json_kbool(&j, "work_regressed", p->work_regressed);
		scry__json_kbool(&j, "tail_regressed", p->tail_regressed);
		scry__json_knum(&j, "p95_ratio", p->p95_ratio > 0 ? p->p95_ratio : NAN, "%.6g");
		scry__json_knum(&j, "server_ratio", p->server_ratio > 0 ? p->server_ratio : NAN, "%.6g");
		scry__json_kint(&j, "baseline_aborted", p->baseline_aborted);
		scry__json_kint(&j, "candidate_aborted", p->candidate_aborted);
		scry__json_kstr(&j, "baseline_plan", p->baseline_plan);
		scry__json_kstr(&j, "candidate_plan", p->candidate_plan);
		scry_buf r = SCRY_BUF_INIT;
		scry__report_reason(&r, p);
		scry__json_key(&j, "reason");
		scry__json_strn(&j, r.ptr ? r.ptr : "", r.size);
		scry__buf_inherit(b, &r);
		scry_buf_dispose(&r);
		scry__json_end(&j);
	}
	scry__json_end(&j);                                   /* patterns */
	scry__report_excluded_json(&j, scry__verdict_excluded(v)); /* patterns not judged (lib/filter.c) */
	scry__json_end(&j);
	scry__buf_puts(b, "\n");
}

/* ---------------- Markdown ---------------- */

/* Text safe inside a Markdown table cell and inline code. */
static void md_cell(scry_buf *b, const char *s, size_t max)
{
	scry_buf t = SCRY_BUF_INIT;
	scry__buf_one_line(&t, s, max, 0);
	for (size_t i = 0; i < t.size; i++) {
		char c = t.ptr[i];
		if (c == '|')
			scry__buf_puts(b, "\\|");
		else if (c == '`')
			scry__buf_puts(b, "'");
		else
			scry__buf_put(b, &c, 1);
	}
	scry__buf_inherit(b, &t);
	scry_buf_dispose(&t);
}

static void render_markdown(const scry_verdict *v, const scry_verdict_summary *s, scry_buf *b)
{
	scry__buf_printf(b, "### scry: %s - %zu of %zu query patterns fail the gate\n\n", verdict_word(s), s->failures,
	                 s->patterns);
	scry__buf_printf(b, "Baseline `%s` vs candidate `%s`; threshold %.2fx, floor %.2f ms. %zu regressed, %zu new-error, "
	                    "%zu only-in-candidate, %zu rows-changed, %zu improved, %zu unchanged, %zu insufficient-samples.\n\n",
	                 s->baseline_label, s->candidate_label, s->threshold, s->min_delta_ms,
	                 s->by_class[SCRY_CLASS_REGRESSED], s->by_class[SCRY_CLASS_NEW_ERROR],
	                 s->by_class[SCRY_CLASS_ONLY_IN_CANDIDATE], s->by_class[SCRY_CLASS_ROWS_CHANGED],
	                 s->by_class[SCRY_CLASS_IMPROVED], s->by_class[SCRY_CLASS_UNCHANGED],
	                 s->by_class[SCRY_CLASS_INSUFFICIENT]);
	scry__buf_puts(b, "| | Class | Ratio (95% CI) | Baseline p50 ms | Candidate p50 ms | Work blocks | Impact ms | Fingerprint | Query |\n"
	                  "|---|---|---|---:|---:|---:|---:|---|---|\n");
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry__buf_printf(b, "| %s | %s | ", p->flagged ? "**FAIL**" : "", scry_verdict_class_name(p->cls));
		if (p->ratio > 0)
			scry__buf_printf(b, "%.2fx", p->ratio);
		if (p->ratio > 0 && isfinite(p->ratio_high))
			scry__buf_printf(b, " (%.2f-%.2f)", p->ratio_low, p->ratio_high);
		char bp[24], cp[24];
		p50_cell(bp, sizeof bp, p->baseline_n, p->baseline_errors, p->baseline_p50_ms);
		p50_cell(cp, sizeof cp, p->candidate_n, p->candidate_errors, p->candidate_p50_ms);
		char wk[40];
		work_cell(wk, sizeof wk, p);
		scry__buf_printf(b, " | %s | %s | %s | %.1f | `%s` | `", bp, cp, wk, p->impact_ms, fp);
		md_cell(b, p->normalized, 80);
		scry__buf_puts(b, "` |\n");
	}
	bool details = false;
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		if (!p->flagged && p->cls != SCRY_CLASS_ONLY_IN_CANDIDATE)
			continue;
		if (!details)
			scry__buf_puts(b, "\n#### Why\n");
		details = true;
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry__buf_printf(b, "\n**`%s`** %s: ", fp, scry_verdict_class_name(p->cls));
		scry_buf r = SCRY_BUF_INIT;
		scry__report_reason(&r, p);
		md_cell(b, r.ptr, 400);
		scry__buf_inherit(b, &r);
		scry_buf_dispose(&r);
		scry__buf_puts(b, "\n");
		if (p->plan_change)
			scry__buf_printf(b, "\nPlan change: %s\n", p->plan_change);
		if (p->baseline_plan)
			scry__buf_printf(b, "\n<details><summary>Baseline plan</summary>\n\n```\n%s\n```\n</details>\n",
			                 p->baseline_plan);
		if (p->candidate_plan)
			scry__buf_printf(b, "\n<details><summary>Candidate plan</summary>\n\n```\n%s\n```\n</details>\n",
			                 p->candidate_plan);
	}
}

/* ---------------- JUnit XML ---------------- */

/* XML 1.0 text: a control character it does not allow becomes a space. */
static void xml(scry_buf *b, const char *s) { scry__buf_markup(b, s, "&apos;", "\n\t\r", ' '); }

static void render_junit(const scry_verdict *v, const scry_verdict_summary *s, scry_buf *b)
{
	size_t skipped = s->by_class[SCRY_CLASS_INSUFFICIENT];
	scry__buf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"scry\" tests=\"%zu\" failures=\"%zu\">\n",
	                 s->patterns, s->failures);
	scry__buf_puts(b, "  <testsuite name=\"scry diff ");
	xml(b, s->baseline_label);
	scry__buf_puts(b, " vs ");
	xml(b, s->candidate_label);
	scry__buf_printf(b, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\">\n", s->patterns, s->failures,
	                 skipped);
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry_buf name = SCRY_BUF_INIT, r = SCRY_BUF_INIT;
		scry__buf_printf(&name, "%s ", fp);
		scry__buf_one_line(&name, p->normalized, 100, 0);
		scry__report_reason(&r, p);
		scry__buf_puts(b, "    <testcase classname=\"scry.patterns\" name=\"");
		xml(b, name.ptr);
		scry__buf_puts(b, "\">\n");
		if (p->flagged) {
			scry__buf_printf(b, "      <failure type=\"%s\" message=\"", scry_verdict_class_name(p->cls));
			xml(b, r.ptr);
			scry__buf_puts(b, "\">");
			xml(b, r.ptr);
			if (p->plan_change) {
				scry__buf_puts(b, "\nplan change: ");
				xml(b, p->plan_change);
			}
			if (p->candidate_plan) {
				scry__buf_puts(b, "\ncandidate plan:\n");
				xml(b, p->candidate_plan);
			}
			scry__buf_puts(b, "</failure>\n");
		} else if (p->cls == SCRY_CLASS_INSUFFICIENT) {
			scry__buf_puts(b, "      <skipped message=\"");
			xml(b, r.ptr);
			scry__buf_puts(b, "\"/>\n");
		} else {
			scry__buf_printf(b, "      <system-out>%s: ", scry_verdict_class_name(p->cls));
			xml(b, r.ptr);
			scry__buf_puts(b, "</system-out>\n");
		}
		scry__buf_puts(b, "    </testcase>\n");
		scry__buf_inherit(b, &name);
		scry__buf_inherit(b, &r);
		scry_buf_dispose(&name);
		scry_buf_dispose(&r);
	}
	scry__buf_puts(b, "  </testsuite>\n</testsuites>\n");
}

int scry_report_render(const scry_verdict *v, scry_report_format format, scry_buf *out, scry_error *err)
{
	if (!v || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_report_render: a verdict and an output buffer are required");
	if (format == SCRY_REPORT_HTML)
		return scry_report_render_html(v, NULL, out, err);
	scry_verdict_summary s = SCRY_VERDICT_SUMMARY_INIT;
	scry_verdict_summarize(v, &s);
	scry_buf b = SCRY_BUF_INIT;
	switch (format) {
	case SCRY_REPORT_TEXT: render_text(v, &s, &b); break;
	case SCRY_REPORT_JSON: render_json(v, &s, &b); break;
	case SCRY_REPORT_MARKDOWN: render_markdown(v, &s, &b); break;
	case SCRY_REPORT_JUNIT: render_junit(v, &s, &b); break;
	default: return scry__fail(err, SCRY_EINVAL, "unknown report format %d", (int)format);
	}
	if (format == SCRY_REPORT_TEXT || format == SCRY_REPORT_MARKDOWN) /* the footer: patterns not judged */
		scry__report_excluded(&b, scry__verdict_excluded(v), format);
	/* A failed append is sticky (lib/internal.h): check once, at the end.
	 * Captured SQL, server messages and labels may hold terminal escapes:
	 * every human-readable format gets them escaped (JSON escapes its own). */
	int rc = scry__buf_failed(&b) ? SCRY_ENOMEM
	         : !b.ptr ? 0
	         : format == SCRY_REPORT_JSON ? scry__buf_put(out, b.ptr, b.size)
	                                      : scry_escape_controls(b.ptr, b.size, out);
	scry_buf_dispose(&b);
	return rc ? scry__fail(err, SCRY_ENOMEM, "out of memory rendering the report") : 0;
}
