/*
 * lib/abi.c - the versions of every struct that crosses the API, and the
 * copies that honour them (SQLite's iVersion pattern; see docs/api.md).
 *
 * Structs the caller fills in (options, filters, session descriptions)
 * start with `unsigned int version`: the library copies exactly the bytes
 * that version had and keeps its defaults for the rest. Structs the
 * library fills in for the caller start with `size_t size`: the library
 * writes only what fits. Each table below lists, per version, the size of
 * that version's layout (the end of its last field).
 *
 * Adding a field: append it at the end of the struct, then
 *   - input struct: bump its *_VERSION macro and append
 *     THROUGH(type, new_field) to its table here;
 *   - output struct: append THROUGH(type, new_field) to its table.
 * The static assertions below fail the build when a struct grew without
 * its table (or its version) following.
 */
#include "internal.h"

#include <stdalign.h>
#include <stddef.h>

/* The size of a layout that ends with `field`. */
#define THROUGH(T, field) (offsetof(T, field) + sizeof(((T *)0)->field))
#define ALIGN_UP(n, a) (((n) + (a)-1) / (a) * (a))

/*
 * Declares the table `name` of struct T: VERSIONS sizes, the last ending
 * with field `last`. An input struct passes its *_VERSION macro as VERSIONS.
 */
#define ABI_TABLE(name, T, init, VERSIONS, last, ...)                                      \
	static const size_t name##_sizes[] = { __VA_ARGS__ };                                  \
	_Static_assert(sizeof(name##_sizes) / sizeof(size_t) == (VERSIONS),                    \
		#T ": its version macro and its size table in lib/abi.c disagree: "            \
		"list one size per version");                                                  \
	_Static_assert(sizeof(T) == ALIGN_UP(THROUGH(T, last), alignof(T)),                    \
		#T " grew: append its new version's size to lib/abi.c (and bump its version "  \
		"macro if callers fill it in)");                                               \
	const scry__abi_type name = { #T, sizeof(T), (VERSIONS), name##_sizes, init };

static void store_options_init(void *o) { scry_store_options_init(o); }
static void replay_options_init(void *o) { scry_replay_options_init(o); }
static void verdict_options_init(void *o) { scry_verdict_options_init(o); }
static void pipeline_options_init(void *o) { scry_pipeline_options_init(o); }
static void shadow_options_init(void *o) { scry_shadow_options_init(o); }
static void proxy_options_init(void *o) { scry_proxy_options_init(o); }
static void pgwire_options_init(void *o) { scry_pgwire_options_init(o); }
static void logimport_options_init(void *o) { scry_logimport_options_init(o); }
static void fingerprinter_options_init(void *o) { scry_fingerprinter_options_init(o); }
static void impact_options_init(void *o) { scry_impact_options_init(o); }

/* ---- input structs: `unsigned int version` first ------------------------ */

ABI_TABLE(scry__abi_store_options, scry_store_options, store_options_init,
	SCRY_STORE_OPTIONS_VERSION, durable,
	THROUGH(scry_store_options, durable))
ABI_TABLE(scry__abi_replay_options, scry_replay_options, replay_options_init,
	SCRY_REPLAY_OPTIONS_VERSION, min_per_pattern,
	THROUGH(scry_replay_options, log_ctx),
	THROUGH(scry_replay_options, client_margin_ms),
	THROUGH(scry_replay_options, min_per_pattern))
ABI_TABLE(scry__abi_verdict_options, scry_verdict_options, verdict_options_init,
	SCRY_VERDICT_OPTIONS_VERSION, filter,
	THROUGH(scry_verdict_options, progress_ctx),
	THROUGH(scry_verdict_options, cancel),
	THROUGH(scry_verdict_options, filter))
ABI_TABLE(scry__abi_pipeline_options, scry_pipeline_options, pipeline_options_init,
	SCRY_PIPELINE_OPTIONS_VERSION, migration_timeout_s,
	THROUGH(scry_pipeline_options, log_ctx),
	THROUGH(scry_pipeline_options, max_migration_seconds),
	THROUGH(scry_pipeline_options, migration_timeout_s))
ABI_TABLE(scry__abi_shadow_options, scry_shadow_options, shadow_options_init,
	SCRY_SHADOW_OPTIONS_VERSION, migration_timeout_s,
	THROUGH(scry_shadow_options, in_place),
	THROUGH(scry_shadow_options, migration_timeout_s))
ABI_TABLE(scry__abi_report_html_options, scry_report_html_options, NULL,
	SCRY_REPORT_HTML_OPTIONS_VERSION, title,
	THROUGH(scry_report_html_options, title))
ABI_TABLE(scry__abi_migration, scry_migration, NULL,
	SCRY_MIGRATION_VERSION, output_ctx,
	THROUGH(scry_migration, output_ctx))
ABI_TABLE(scry__abi_proxy_options, scry_proxy_options, proxy_options_init,
	SCRY_PROXY_OPTIONS_VERSION, event_threads,
	THROUGH(scry_proxy_options, queue_bytes),
	THROUGH(scry_proxy_options, event_threads))
ABI_TABLE(scry__abi_pgwire_options, scry_pgwire_options, pgwire_options_init,
	SCRY_PGWIRE_OPTIONS_VERSION, max_copy_bytes,
	THROUGH(scry_pgwire_options, max_pending),
	THROUGH(scry_pgwire_options, max_copy_bytes))
ABI_TABLE(scry__abi_logimport_options, scry_logimport_options, logimport_options_init,
	SCRY_LOGIMPORT_OPTIONS_VERSION, force,
	THROUGH(scry_logimport_options, progress_ctx),
	THROUGH(scry_logimport_options, force))
ABI_TABLE(scry__abi_fingerprinter_options, scry_fingerprinter_options, fingerprinter_options_init,
	SCRY_FINGERPRINTER_OPTIONS_VERSION, cache_entries,
	THROUGH(scry_fingerprinter_options, cache_entries))
ABI_TABLE(scry__abi_event_filter, scry_event_filter, NULL,
	SCRY_EVENT_FILTER_VERSION, session_id,
	THROUGH(scry_event_filter, session_id))

ABI_TABLE(scry__abi_session_info, scry_session_info, NULL,
	SCRY_SESSION_INFO_VERSION, started_us,
	THROUGH(scry_session_info, started_us))
ABI_TABLE(scry__abi_log_file, scry_log_file, NULL,
	SCRY_LOG_FILE_VERSION, imported_us,
	THROUGH(scry_log_file, imported_us))
ABI_TABLE(scry__abi_run_summary, scry_run_summary, NULL,
	SCRY_RUN_SUMMARY_VERSION, summary_json,
	THROUGH(scry_run_summary, summary_json))
ABI_TABLE(scry__abi_pgwire_callbacks, scry_pgwire_callbacks, NULL,
	SCRY_PGWIRE_CALLBACKS_VERSION, ctx,
	THROUGH(scry_pgwire_callbacks, ctx))

ABI_TABLE(scry__abi_impact_options, scry_impact_options, impact_options_init,
	SCRY_IMPACT_OPTIONS_VERSION, log_ctx,
	THROUGH(scry_impact_options, log_ctx))
ABI_TABLE(scry__abi_impact_gate, scry_impact_gate, NULL,
	SCRY_IMPACT_GATE_VERSION, max_migration_seconds,
	THROUGH(scry_impact_gate, max_migration_seconds))

/* ---- array elements: passed with their size (the caller's stride) ------- */

ABI_TABLE(scry__abi_event, scry_event, NULL, 2, copy_len,
	THROUGH(scry_event, error_message),
	THROUGH(scry_event, copy_len))
ABI_TABLE(scry__abi_sample, scry_sample, NULL, 1, sqlstate,
	THROUGH(scry_sample, sqlstate))

/* ---- output structs: `size_t size` first (no version macro) ------------- */

ABI_TABLE(scry__abi_replay_result, scry_replay_result, NULL, 2, budget,
	THROUGH(scry_replay_result, lag_max_us),
	THROUGH(scry_replay_result, budget))
ABI_TABLE(scry__abi_store_info, scry_store_info, NULL, 1, schema_version,
	THROUGH(scry_store_info, schema_version))
ABI_TABLE(scry__abi_compact_result, scry_compact_result, NULL, 1, bytes_after,
	THROUGH(scry_compact_result, bytes_after))
ABI_TABLE(scry__abi_pipeline_stats, scry_pipeline_stats, NULL, 1, total_us,
	THROUGH(scry_pipeline_stats, total_us))
ABI_TABLE(scry__abi_verdict_summary, scry_verdict_summary, NULL, 1, candidate_run,
	THROUGH(scry_verdict_summary, candidate_run))
ABI_TABLE(scry__abi_logimport_stats, scry_logimport_stats, NULL, 2, nothing_reason,
	THROUGH(scry_logimport_stats, warning),
	THROUGH(scry_logimport_stats, nothing_reason))
ABI_TABLE(scry__abi_pgwire_stats, scry_pgwire_stats, NULL, 1, pending,
	THROUGH(scry_pgwire_stats, pending))
ABI_TABLE(scry__abi_proxy_stats, scry_proxy_stats, NULL, 1, bytes_from_server,
	THROUGH(scry_proxy_stats, bytes_from_server))
ABI_TABLE(scry__abi_fingerprinter_stats, scry_fingerprinter_stats, NULL, 1, errors,
	THROUGH(scry_fingerprinter_stats, errors))
ABI_TABLE(scry__abi_impact_summary, scry_impact_summary, NULL, 1, ninvalid_indexes,
	THROUGH(scry_impact_summary, ninvalid_indexes))

/* ---- copies ------------------------------------------------------------- */

int scry__opts_copy(scry_error *err, const scry__abi_type *t, void *dst, const void *src)
{
	memset(dst, 0, t->size);
	if (t->init)
		t->init(dst);
	unsigned int current = t->versions;
	memcpy(dst, &current, sizeof current);
	if (!src)
		return 0;
	unsigned int v;
	memcpy(&v, src, sizeof v);
	if (v < 1 || v > t->versions)
		return scry__fail(err, SCRY_EINVAL,
			"%s version %u is not supported (this library knows 1 to %u); "
			"initialise the struct with its _INIT macro or _init() function",
			t->name, v, t->versions);
	/* The caller's struct has exactly version v's fields: read no further. */
	memcpy((char *)dst + sizeof v, (const char *)src + sizeof v, t->sizes[v - 1] - sizeof v);
	return 0;
}

int scry__out_check(scry_error *err, const scry__abi_type *t, const void *out)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "the %s to fill in is NULL", t->name);
	size_t have;
	memcpy(&have, out, sizeof have);
	if (have >= t->sizes[0])
		return 0;
	return scry__fail(err, SCRY_EINVAL,
		"%s: its size field is %zu, smaller than any version of the struct; "
		"set it to sizeof(%s) (its _INIT macro does)", t->name, have, t->name);
}

void scry__out_put(const scry__abi_type *t, void *out, const void *src)
{
	size_t have;
	memcpy(&have, out, sizeof have);
	size_t n = have < t->size ? have : t->size;
	memcpy((char *)out + sizeof n, (const char *)src + sizeof n, n - sizeof n);
	memcpy(out, &n, sizeof n);
}

int scry__out_copy(scry_error *err, const scry__abi_type *t, void *out, const void *src)
{
	int rc = scry__out_check(err, t, out);
	if (!rc)
		scry__out_put(t, out, src);
	return rc;
}

int scry__elem_check(scry_error *err, const scry__abi_type *t, size_t elem_size)
{
	if (elem_size >= t->sizes[0])
		return 0;
	return scry__fail(err, SCRY_EINVAL,
		"the array's element size is %zu, smaller than any version of %s; pass sizeof(%s)",
		elem_size, t->name, t->name);
}

const void *scry__elem_get(const scry__abi_type *t, void *tmp, const void *base, size_t i, size_t elem_size)
{
	const char *p = (const char *)base + i * elem_size;
	if (elem_size == t->size)
		return p;
	size_t n = elem_size < t->size ? elem_size : t->size;
	memset(tmp, 0, t->size);
	memcpy(tmp, p, n);
	return tmp;
}
