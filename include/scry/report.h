/*
 * scry/report.h - renders a verdict for people and for CI.
 */
#ifndef SCRY_REPORT_H
#define SCRY_REPORT_H

#include "scry/core.h"
#include "scry/verdict.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Output formats. */
typedef enum scry_report_format {
	SCRY_REPORT_TEXT = 0,     /**< terminal table, worst first */
	SCRY_REPORT_JSON = 1,     /**< stable JSON, documented in docs/cli.md */
	SCRY_REPORT_MARKDOWN = 2, /**< for a pull-request comment */
	SCRY_REPORT_JUNIT = 3,    /**< JUnit XML: one test case per pattern */
	SCRY_REPORT_HTML = 4      /**< one self-contained HTML page (inline CSS and SVG, no script) */
} scry_report_format;

/** Parses "text", "json", "markdown", "junit", "html"; returns 0 or SCRY_EINVAL. */
SCRY_API int scry_report_format_parse(const char *name, scry_report_format *out);

/** Appends the rendering of `v` in `format` to `out`. */
SCRY_API int scry_report_render(const scry_verdict *v, scry_report_format format,
	scry_buf *out, scry_error *err);

/** What the HTML report shows besides the verdict. Fields are only ever appended. */
typedef struct scry_report_html_options {
	unsigned int version;            /**< SCRY_REPORT_HTML_OPTIONS_VERSION */
	/**
	 * The store holding the verdict's runs: each failing pattern then gets
	 * the histogram of its latencies, baseline vs candidate. NULL: the
	 * charts show the p50/p95/p99 of each side only.
	 */
	scry_store *store;
	/** A second verdict (after a fix), rendered after the first; or NULL. */
	const scry_verdict *after_fix;
	/**
	 * The migration-impact section: a JSON object (the pipeline's phase
	 * timings and replays, or a "migration_impact" object) shown as a
	 * table of its values; NULL for none.
	 */
	const char *migration_json;
	/** The page title; NULL = "scry report". */
	const char *title;
} scry_report_html_options;

/** Current version of scry_report_html_options. */
#define SCRY_REPORT_HTML_OPTIONS_VERSION 1
/** Defaults: no store, no fix, no migration section. */
#define SCRY_REPORT_HTML_OPTIONS_INIT { SCRY_REPORT_HTML_OPTIONS_VERSION, NULL, NULL, NULL, NULL }

/**
 * Appends the HTML report of `v` to `out`: one self-contained page (inline
 * CSS and SVG, no script, nothing fetched) with the summary, the table of
 * patterns, and per failing pattern its latency distribution and plan
 * change. scry_report_render(v, SCRY_REPORT_HTML, ...) is this with NULL
 * options.
 */
SCRY_API int scry_report_render_html(const scry_verdict *v, const scry_report_html_options *opts,
	scry_buf *out, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_REPORT_H */
