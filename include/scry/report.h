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
	SCRY_REPORT_JUNIT = 3     /**< JUnit XML: one test case per pattern */
} scry_report_format;

/** Parses "text", "json", "markdown", "junit"; returns 0 or SCRY_EINVAL. */
SCRY_API int scry_report_format_parse(const char *name, scry_report_format *out);

/** Appends the rendering of `v` in `format` to `out`. */
SCRY_API int scry_report_render(const scry_verdict *v, scry_report_format format,
	scry_buf *out, scry_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SCRY_REPORT_H */
