/*
 * lib/report_html.c - the HTML report: one self-contained page (inline CSS
 * and SVG, no script, nothing fetched from the network) that a CI job can
 * keep as an artifact and anyone can open.
 *
 * Sections: the summary, the table of every pattern, then per failing
 * pattern its reason, its latency distribution (baseline vs candidate: a
 * histogram of the replayed samples when the store is given, else the
 * p50/p95/p99 of each side) and its plan change; then the migration-impact
 * section when there is one. Reads the same scry_pattern_verdict fields as
 * the other formats (lib/report.c). Layout decisions in docs/cli.md.
 */
#include "internal.h"
#include "util/text.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_CHARTS 25  /* failing patterns drawn; the rest are in the table */
#define NBINS 32

/* HTML text: control characters other than newline and tab are not shown. */
static void esc(scry_buf *b, const char *s) { scry__buf_markup(b, s, "&#39;", "\n\t", 0); }

static const char css[] =
	"body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}"
	"main{max-width:1100px;margin:0 auto;padding:24px}"
	"h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}h3{font-size:15px;margin:0 0 6px}"
	".badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600;margin-right:8px}"
	".fail{background:#c62828}.pass{background:#2e7d32}"
	".meta{color:#5a6270}.cards{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0}"
	".card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;min-width:90px}"
	".card b{display:block;font-size:20px}"
	"table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}"
	"th,td{padding:5px 8px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}"
	"th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}"
	"tr.flagged td{background:#fdecea}code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}"
	"pre{background:#f3f4f6;padding:8px;overflow:auto;white-space:pre-wrap}"
	".pattern{background:#fff;border:1px solid #dde1e7;border-left:4px solid #c62828;border-radius:6px;"
	"padding:12px 16px;margin:12px 0}"
	".plan{margin:6px 0}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}"
	"footer{margin-top:30px;color:#5a6270;font-size:12px}";

/* ---------------- latency samples of the failing patterns ---------------- */

typedef struct lat_set {
	uint64_t fingerprint;
	double *ms[2];      /* baseline, candidate */
	size_t n[2], cap[2];
} lat_set;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Reads the successful samples of `sets` (one per failing pattern) from both runs. */
static int load_latencies(scry_store *store, int64_t runs[2], lat_set *sets, size_t nsets, scry_error *err)
{
	scry__u64map idx = { 0 };
	int rc = 0;
	for (size_t i = 0; !rc && i < nsets; i++)
		rc = scry__u64map_put(&idx, sets[i].fingerprint, (uint32_t)i + 1);
	for (int side = 0; !rc && side < 2; side++) {
		scry_sample_iter *it = NULL;
		if ((rc = scry_store_samples(store, runs[side], &it, err)))
			break;
		const scry_stored_sample *s;
		while ((rc = scry_sample_iter_next(it, &s, err)) == 1) {
			uint32_t k = scry__u64map_get(&idx, s->fingerprint);
			if (!k || s->sqlstate[0])
				continue;
			lat_set *ls = &sets[k - 1];
			if (scry__array_grow((void **)&ls->ms[side], &ls->cap[side], ls->n[side], sizeof(double), 64)) {
				rc = scry__fail(err, SCRY_ENOMEM, "out of memory reading samples");
				break;
			}
			ls->ms[side][ls->n[side]++] = (double)s->latency_us / 1000.0;
		}
		scry_sample_iter_free(it);
	}
	scry__u64map_free(&idx);
	for (size_t i = 0; !rc && i < nsets; i++)
		for (int side = 0; side < 2; side++)
			if (sets[i].n[side])
				qsort(sets[i].ms[side], sets[i].n[side], sizeof(double), cmp_double);
	return rc < 0 ? rc : 0;
}

/* ---------------- SVG charts ---------------- */

static const char *const side_color[2] = { "#1f77b4", "#ff7f0e" };
static const char *const side_name[2] = { "baseline", "candidate" };

#define W 640.0
#define H 190.0
#define L 46.0   /* left margin */
#define B 28.0   /* bottom margin */
#define T 10.0

static void chart_open(scry_buf *b, const char *label)
{
	scry__buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	                    "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", W, H, W, H);
	esc(b, label);
	scry__buf_printf(b, "\"><rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>"
	                    "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>",
	                 W, H, L, H - B, W - 8, H - B);
}

static double xpos(double ms, double lo, double hi)
{
	double f = (log10(ms) - log10(lo)) / (log10(hi) - log10(lo));
	return L + f * (W - L - 16);
}

static void x_ticks(scry_buf *b, double lo, double hi)
{
	for (double d = pow(10, floor(log10(lo))); d <= hi * 1.0001; d *= 10) {
		static const int mult[] = { 1, 2, 5 };
		for (int m = 0; m < 3; m++) {
			double v = d * mult[m];
			if (v < lo || v > hi)
				continue;
			double x = xpos(v, lo, hi);
			scry__buf_printf(b, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#eee\"/>"
			                    "<text x=\"%.1f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">%g</text>",
			                 x, T, x, H - B, x, H - B + 13, v);
		}
	}
	scry__buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">ms (log scale)</text>",
	                 W - 8, H - 3);
}

/* A histogram of both sides over log-spaced bins, each side as a share of its samples. */
static void histogram(scry_buf *b, const lat_set *ls, const char *label)
{
	double lo = INFINITY, hi = 0;
	for (int s = 0; s < 2; s++)
		if (ls->n[s]) {
			lo = fmin(lo, ls->ms[s][0]);
			hi = fmax(hi, ls->ms[s][ls->n[s] - 1]);
		}
	lo = fmax(lo * 0.9, 0.001);
	hi = fmax(hi * 1.1, lo * 10);
	double share[2][NBINS] = { { 0 } }, top = 0;
	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < ls->n[s]; i++) {
			double v = fmax(ls->ms[s][i], lo);
			int k = (int)((log10(v) - log10(lo)) / (log10(hi) - log10(lo)) * NBINS);
			share[s][k < 0 ? 0 : k >= NBINS ? NBINS - 1 : k] += 1.0 / (double)ls->n[s];
		}
		for (int k = 0; k < NBINS; k++)
			top = fmax(top, share[s][k]);
	}
	chart_open(b, label);
	x_ticks(b, lo, hi);
	double bw = (W - L - 16) / NBINS;
	for (int s = 0; s < 2; s++) {
		for (int k = 0; k < NBINS && top > 0; k++) {
			if (share[s][k] <= 0)
				continue;
			double h = share[s][k] / top * (H - B - T);
			scry__buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
			                    "fill-opacity=\"0.55\"><title>%s: %.0f%% of samples</title></rect>",
			                 L + k * bw + 1, H - B - h, bw - 2, h, side_color[s], side_name[s], share[s][k] * 100);
		}
		if (ls->n[s]) { /* the median, dashed */
			double x = xpos(ls->ms[s][ls->n[s] / 2], lo, hi);
			scry__buf_printf(b, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\" "
			                    "stroke-width=\"2\" stroke-dasharray=\"4 3\"/>", x, T, x, H - B, side_color[s]);
		}
	}
	scry__buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" fill=\"#555\" transform=\"rotate(-90 12 %.0f)\">"
	                    "share of samples</text></svg>", 12.0, (H - B) / 2 + 30, (H - B) / 2 + 30);
}

/* Without samples: the p50, p95 and p99 of each side as horizontal bars. */
static void quantile_bars(scry_buf *b, const scry_pattern_verdict *p, const char *label)
{
	double q[2][3] = { { p->baseline_p50_ms, p->baseline_p95_ms, p->baseline_p99_ms },
	                   { p->candidate_p50_ms, p->candidate_p95_ms, p->candidate_p99_ms } };
	static const char *const qn[3] = { "p50", "p95", "p99" };
	double hi = 0.001;
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < 3; k++)
			if (isfinite(q[s][k]))
				hi = fmax(hi, q[s][k]);
	chart_open(b, label);
	double rowh = (H - B - T) / 6;
	for (int k = 0; k < 3; k++)
		for (int s = 0; s < 2; s++) {
			double v = isfinite(q[s][k]) ? q[s][k] : 0;
			double y = T + (k * 2 + s) * rowh;
			double w = v / hi * (W - L - 80);
			scry__buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">%s %s</text>"
			                    "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
			                    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#333\">%.3f ms</text>",
			                 L - 4, y + rowh * 0.7, qn[k], s ? "C" : "B", L, y + 2, w, rowh - 4, side_color[s],
			                 L + w + 4, y + rowh * 0.7, v);
		}
	scry__buf_puts(b, "</svg>");
}

/* ---------------- page ---------------- */

static void p50_td(scry_buf *b, int64_t n, int64_t errors, double a, double c, double d)
{
	if (n > errors)
		scry__buf_printf(b, "<td class=\"n\">%.3f</td><td class=\"n\">%.3f</td><td class=\"n\">%.3f</td>", a, c, d);
	else
		scry__buf_puts(b, "<td class=\"n\">-</td><td class=\"n\">-</td><td class=\"n\">-</td>");
}

static void summary_section(scry_buf *b, const scry_verdict_summary *s, const char *heading)
{
	scry__buf_printf(b, "<section><h1><span class=\"badge %s\">%s</span>", s->failures ? "fail" : "pass",
	                 s->failures ? "FAIL" : "PASS");
	esc(b, heading);
	scry__buf_printf(b, ": %zu of %zu query patterns fail the gate</h1><p class=\"meta\">Baseline <code>", s->failures,
	                 s->patterns);
	esc(b, s->baseline_label);
	scry__buf_printf(b, "</code> (run %lld) vs candidate <code>", (long long)s->baseline_run);
	esc(b, s->candidate_label);
	scry__buf_printf(b, "</code> (run %lld); threshold %.2fx, floor %.2f ms.</p><div class=\"cards\">",
	                 (long long)s->candidate_run, s->threshold, s->min_delta_ms);
	scry__buf_printf(b, "<div class=\"card\"><b>%zu</b>patterns</div><div class=\"card\"><b>%zu</b>fail the gate</div>",
	                 s->patterns, s->failures);
	for (int c = 0; c < 7; c++)
		if (s->by_class[c])
			scry__buf_printf(b, "<div class=\"card\"><b>%zu</b>%s</div>", s->by_class[c],
			                 scry_verdict_class_name((scry_verdict_class)c));
	scry__buf_puts(b, "</div></section>");
}

static void pattern_table(scry_buf *b, const scry_verdict *v)
{
	scry__buf_puts(b, "<h2>Patterns</h2><table><thead><tr><th></th><th>Class</th><th>Ratio (95% CI)</th>"
	                  "<th>Base p50</th><th>p95</th><th>p99</th><th>Cand p50</th><th>p95</th><th>p99</th>"
	                  "<th>Impact ms</th><th>Fingerprint</th><th>Query</th></tr></thead><tbody>");
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry__buf_printf(b, "<tr%s><td>%s</td><td>%s</td><td class=\"n\">", p->flagged ? " class=\"flagged\"" : "",
		                 p->flagged ? "<b>FAIL</b>" : "", scry_verdict_class_name(p->cls));
		if (p->ratio > 0)
			scry__buf_printf(b, "%.2fx", p->ratio);
		if (p->ratio > 0 && isfinite(p->ratio_high))
			scry__buf_printf(b, " (%.2f-%.2f)", p->ratio_low, p->ratio_high);
		scry__buf_puts(b, "</td>");
		p50_td(b, p->baseline_n, p->baseline_errors, p->baseline_p50_ms, p->baseline_p95_ms, p->baseline_p99_ms);
		p50_td(b, p->candidate_n, p->candidate_errors, p->candidate_p50_ms, p->candidate_p95_ms, p->candidate_p99_ms);
		scry__buf_printf(b, "<td class=\"n\">%.1f</td><td><code id=\"t-%s\">%s</code></td><td><code>", p->impact_ms, fp, fp);
		esc(b, p->normalized);
		scry__buf_puts(b, "</code></td></tr>");
	}
	scry__buf_puts(b, "</tbody></table>");
}

static void failing_patterns(scry_buf *b, const scry_verdict *v, const lat_set *sets, size_t nsets)
{
	size_t shown = 0;
	for (size_t i = 0; i < scry_verdict_count(v); i++) {
		const scry_pattern_verdict *p = scry_verdict_get(v, i);
		if (!p->flagged)
			continue;
		if (!shown)
			scry__buf_puts(b, "<h2>Failing patterns</h2>");
		if (shown++ == MAX_CHARTS) {
			scry__buf_printf(b, "<p class=\"meta\">%zu more failing patterns are in the table above.</p>",
			                 scry_verdict_failures(v) - MAX_CHARTS);
			break;
		}
		char fp[17];
		scry_fingerprint_format(p->fingerprint, fp);
		scry__buf_printf(b, "<div class=\"pattern\" id=\"p-%s\"><h3>%s <code>%s</code></h3><pre>", fp,
		                 scry_verdict_class_name(p->cls), fp);
		esc(b, p->normalized);
		scry__buf_puts(b, "</pre><p>");
		scry_buf r = SCRY_BUF_INIT;
		scry__report_reason(&r, p);
		esc(b, r.ptr);
		scry__buf_inherit(b, &r);
		scry_buf_dispose(&r);
		scry__buf_puts(b, "</p>");
		const lat_set *ls = NULL;
		for (size_t k = 0; k < nsets; k++)
			if (sets[k].fingerprint == p->fingerprint && (sets[k].n[0] || sets[k].n[1]))
				ls = &sets[k];
		scry__buf_printf(b, "<div class=\"legend meta\">Latency distribution%s:<span style=\"background:%s\"></span>"
		                    "baseline<span style=\"background:%s\"></span>candidate%s</div>",
		                 ls ? "" : " (p50, p95, p99)", side_color[0], side_color[1],
		                 ls ? " (dashed: medians)" : "");
		char label[64];
		snprintf(label, sizeof label, "latency of %s, baseline vs candidate", fp);
		if (ls)
			histogram(b, ls, label);
		else
			quantile_bars(b, p, label);
		if (p->plan_change) {
			scry__buf_puts(b, "<p class=\"plan\"><b>Plan change:</b> ");
			esc(b, p->plan_change);
			scry__buf_puts(b, "</p>");
		}
		const char *plans[2] = { p->baseline_plan, p->candidate_plan };
		for (int s = 0; s < 2; s++)
			if (plans[s]) {
				scry__buf_printf(b, "<details><summary>%s plan</summary><pre>", s ? "Candidate" : "Baseline");
				esc(b, plans[s]);
				scry__buf_puts(b, "</pre></details>");
			}
		scry__buf_puts(b, "</div>");
	}
}

/* The migration-impact section: every value of a JSON object, by its path (SQLite's json_tree). */
static int migration_section(scry_buf *b, const char *json, scry_error *err)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = 0;
	if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT replace(substr(fullkey, 3), '\"', ''), atom FROM json_tree(?1) WHERE atom IS NOT NULL "
	                           "AND json_valid(?1) ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
		rc = scry__fail(err, SCRY_ENOMEM, "the HTML report: %s", db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
	scry__buf_puts(b, "<h2>Migration</h2><table><tbody>");
	while (sqlite3_step(st) == SQLITE_ROW) {
		scry__buf_puts(b, "<tr><th>");
		esc(b, (const char *)sqlite3_column_text(st, 0));
		scry__buf_puts(b, "</th><td>");
		esc(b, (const char *)sqlite3_column_text(st, 1));
		scry__buf_puts(b, "</td></tr>");
	}
	scry__buf_puts(b, "</tbody></table>");
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static int one_verdict(scry_buf *b, const scry_verdict *v, scry_store *store, const char *heading, scry_error *err)
{
	scry_verdict_summary s;
	scry_verdict_summarize(v, &s);
	summary_section(b, &s, heading);
	pattern_table(b, v);
	size_t nsets = 0;
	lat_set *sets = scry__calloc(MAX_CHARTS + 1, sizeof *sets);
	if (!sets)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	for (size_t i = 0; i < scry_verdict_count(v) && nsets < MAX_CHARTS; i++)
		if (scry_verdict_get(v, i)->flagged)
			sets[nsets++].fingerprint = scry_verdict_get(v, i)->fingerprint;
	int rc = 0;
	if (store && nsets) {
		int64_t runs[2] = { s.baseline_run, s.candidate_run };
		rc = load_latencies(store, runs, sets, nsets, err);
	}
	if (!rc)
		failing_patterns(b, v, sets, nsets);
	if (!rc && scry__report_excluded(b, scry__verdict_excluded(v), SCRY_REPORT_HTML))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	for (size_t i = 0; i < nsets; i++)
		for (int k = 0; k < 2; k++)
			scry__free(sets[i].ms[k]);
	scry__free(sets);
	return rc;
}

int scry_report_render_html(const scry_verdict *v, const scry_report_html_options *opts, scry_buf *out,
                            scry_error *err)
{
	if (!v || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_report_render_html: a verdict and an output buffer are required");
	scry_report_html_options o;
	int orc = scry__opts_copy(err, &scry__abi_report_html_options, &o, opts);
	if (orc)
		return orc;
	const char *title = o.title ? o.title : "scry report";
	scry_buf b = SCRY_BUF_INIT;
	scry__buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	                   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	                   "style-src 'unsafe-inline'; img-src data:\"><title>");
	esc(&b, title);
	scry__buf_printf(&b, "</title><style>%s</style></head><body><main>\n", css);
	int rc = one_verdict(&b, v, o.store, o.after_fix ? "Migration" : "scry", err);
	if (!rc && o.after_fix) {
		scry__buf_puts(&b, "<hr>");
		rc = one_verdict(&b, o.after_fix, o.store, "After the fix", err);
	}
	if (!rc && o.migration_json)
		rc = migration_section(&b, o.migration_json, err);
	if (!rc)
		scry__buf_printf(&b, "<footer>scry %s - a self-contained page: no script, nothing loaded from the "
		                     "network.</footer></main></body></html>\n", scry_version());
	/* A failed append is sticky (lib/internal.h): checked once, here. */
	if (!rc && (scry__buf_failed(&b) || !b.ptr || scry__buf_put(out, b.ptr, b.size)))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory rendering the HTML report");
	scry_buf_dispose(&b);
	return rc;
}
