/*
 * lib/logimport.c - PostgreSQL server log import (csvlog, jsonlog, stderr):
 * the API. The layers are in their own files:
 *   1. framing: bytes -> records (lib/logimport_formats.c; a csvlog record
 *      may span lines inside quotes; jsonlog is one object per line; a
 *      stderr message is a prefixed line plus tab-indented continuation
 *      lines plus its DETAIL:/STATEMENT: lines);
 *   2. fields: each format fills one `rec` (time, session, severity,
 *      SQLSTATE, message, detail, statement): lib/logimport_csvlog.c,
 *      lib/logimport_jsonlog.c, lib/logimport_stderr.c, with the shared
 *      parsers of lib/logimport_fields.c;
 *   3. the session state machine turns records into events
 *      (lib/logimport_session.c): a `statement:` or `execute` line waits in
 *      its session for its `duration:` line (so log_statement=all plus
 *      log_min_duration_statement=0 gives one event, not two), an ERROR
 *      with its statement marks it failed.
 * Events go to the store in batches (lib/logimport_batch.c). Buffers are
 * reused: after warm-up no allocation happens per line.
 */
#include "logimport_internal.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

void scry_logimport_options_init(scry_logimport_options *opts)
{
	if (opts)
		*opts = (scry_logimport_options)SCRY_LOGIMPORT_OPTIONS_INIT;
}

int scry_log_format_parse(const char *name, scry_log_format *out)
{
	static const char *const names[] = { "csvlog", "jsonlog", "stderr", "auto" };
	for (int i = 0; i < 4; i++)
		if (name && !strcmp(name, names[i])) {
			*out = (scry_log_format)i;
			return 0;
		}
	return SCRY_EINVAL;
}

/* SCRY_EINVAL for a language without a message catalog, naming those there are. */
static int unknown_lang(const char *code, scry_error *err)
{
	scry_buf names = SCRY_BUF_INIT;
	for (const scry__loglang *l = scry__loglangs; l->code; l++)
		scry__buf_printf(&names, "%s%s", l == scry__loglangs ? "" : ", ", l->code);
	int rc = scry__fail(err, SCRY_EINVAL,
	                    "no message catalog for language '%s' (PostgreSQL 15 ships: C/en, %s); set "
	                    "lc_messages = 'C' on the server for logs scry can read",
	                    code, names.ptr && !scry__buf_failed(&names) ? names.ptr : "");
	scry_buf_dispose(&names);
	return rc;
}

/* Checks the options and fills in the defaults; the language in *lang
 * (NULL: English), or *lang_auto to detect it. */
static int check_options(scry_logimport_options *o, const scry__loglang **lang, bool *lang_auto, scry_error *err)
{
	if ((unsigned)o->format > SCRY_LOG_AUTO)
		return scry__fail(err, SCRY_EINVAL, "unknown log format %d (csvlog, jsonlog, stderr or auto)", (int)o->format);
	if (o->format != SCRY_LOG_STDERR && o->format != SCRY_LOG_AUTO && o->line_prefix && *o->line_prefix)
		return scry__fail(err, SCRY_EINVAL, "a log_line_prefix applies to stderr logs only");
	*lang = NULL;
	*lang_auto = !o->lang || !*o->lang || !strcmp(o->lang, "auto");
	if (!*lang_auto && strcmp(o->lang, "C") && strcmp(o->lang, "POSIX") && strncmp(o->lang, "en", 2) &&
	    !(*lang = scry__loglang_find(o->lang)))
		return unknown_lang(o->lang, err);
	if (!o->batch_events)
		o->batch_events = 4096;
	if (!o->max_record_bytes)
		o->max_record_bytes = (size_t)64 << 20;
	if (!o->max_open_sessions)
		o->max_open_sessions = 65536;
	return 0;
}

int scry_logimport_new(scry_logimport **out, scry_store *store, const scry_logimport_options *opts,
                       scry_error *err)
{
	if (!out || !store)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_new: out and store are required");
	*out = NULL;
	scry_logimport_options o;
	const scry__loglang *lang;
	bool lang_auto;
	int rc = scry__opts_copy(err, &scry__abi_logimport_options, &o, opts);
	if (rc || (rc = check_options(&o, &lang, &lang_auto, err)) != 0)
		return rc;
	scry_logimport *imp = scry__calloc(1, sizeof *imp);
	if (!imp)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	imp->store = store;
	imp->opts = o;
	imp->free_list = -1;
	imp->opts.line_prefix = NULL; /* not kept: compiled below */
	imp->opts.timezone = imp->opts.lang = NULL;
	imp->fmt = o.format;
	imp->lang = lang;
	imp->lang_auto = lang_auto;
	if (o.timezone && *o.timezone && !(imp->tz_name = scry__strdup(o.timezone)))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	bool have_prefix = o.line_prefix && *o.line_prefix;
	if (!rc && have_prefix && !(imp->prefix_given = scry__strdup(o.line_prefix)))
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
	if (!rc && have_prefix)
		rc = scry__logimport_compile_prefix(imp, o.line_prefix, err);
	/* What the options leave open is detected on the first bytes. */
	imp->detecting = o.format == SCRY_LOG_AUTO || (o.format == SCRY_LOG_STDERR && !have_prefix) || lang_auto;
	scry_store_info info = SCRY_STORE_INFO_INIT;
	if (!rc)
		rc = scry_store_info_get(store, &info, err);
	if (rc) {
		scry_logimport_free(imp);
		return rc;
	}
	imp->patterns_before = info.patterns;
	*out = imp;
	return 0;
}

int scry_logimport_feed(scry_logimport *imp, const void *data, size_t n, scry_error *err)
{
	if (!imp || (n && !data))
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed: importer and data are required");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed: the import is already finished");
	imp->st.bytes += n;
	/* Chunks are processed a few MB at a time so that the buffer stays small. */
	const char *d = data;
	while (n) {
		size_t k = n < ((size_t)4 << 20) ? n : ((size_t)4 << 20);
		if (scry__buf_put(&imp->in, d, k))
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		int rc = scry__logimport_process(imp, false, err);
		if (rc)
			return rc;
		d += k;
		n -= k;
	}
	return 0;
}

/* A non-empty log gave no statement: say why, as well as the lines show. */
static void explain_nothing(scry_logimport *imp)
{
	scry_logimport_stats *st = &imp->st;
	if (st->statements) {
		st->nothing_reason[0] = 0; /* a detection's doubt that did not stop the import */
		return;
	}
	if (!st->bytes || st->nothing_reason[0])
		return;
	const char *fmt = imp->fmt == SCRY_LOG_CSVLOG ? "csvlog" : imp->fmt == SCRY_LOG_JSONLOG ? "jsonlog" : "stderr";
	if (!st->records && st->skipped)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "no line could be read as %s%s (%llu skipped, see the examples): check --format%s", fmt,
		         imp->fmt == SCRY_LOG_STDERR ? " with this log_line_prefix" : "", (unsigned long long)st->skipped,
		         imp->fmt == SCRY_LOG_STDERR ? " and --prefix (SHOW log_line_prefix;)" : "");
	else if (st->records)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "%llu log records read, none of them a statement: the server did not log statements "
		         "(set log_statement = 'all' or log_min_duration_statement = 0)%s",
		         (unsigned long long)st->records,
		         imp->lang ? "" : ", or the log is in a language scry did not recognise (set lc_messages = 'C' or pass --lang)");
	else if (st->files_skipped)
		snprintf(st->nothing_reason, sizeof st->nothing_reason,
		         "every file was already imported into this store (--force imports it again)");
	else
		snprintf(st->nothing_reason, sizeof st->nothing_reason, "the log holds no complete record");
}

static void fill_stats(const scry_logimport *imp, scry_logimport_stats *stats)
{
	scry_logimport_stats st = imp->st;
	st.lines = imp->line;
	scry__out_put(&scry__abi_logimport_stats, stats, &st);
}

int scry_logimport_stats_get(const scry_logimport *imp, scry_logimport_stats *stats)
{
	int rc = scry__out_check(NULL, &scry__abi_logimport_stats, stats);
	if (!rc && imp) {
		fill_stats(imp, stats);
	} else if (!rc) {
		static const scry_logimport_stats zero;
		scry__out_put(&scry__abi_logimport_stats, stats, &zero);
	}
	return rc;
}

int scry_logimport_finish(scry_logimport *imp, scry_logimport_stats *stats, scry_error *err)
{
	if (!imp)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: importer is NULL");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_finish: already finished");
	if (stats) {
		int src = scry__out_check(err, &scry__abi_logimport_stats, stats);
		if (src)
			return src;
	}
	imp->finished = true;
	int rc = scry__logimport_process(imp, true, err);
	if (!rc && imp->fmt == SCRY_LOG_STDERR)
		rc = scry__logimport_wrapped_flush(imp, err);
	if (!rc && imp->fmt == SCRY_LOG_STDERR)
		rc = scry__logimport_stderr_finish(imp, err);
	/* Statements still waiting for a duration line: the log ended first. */
	if (!rc)
		rc = scry__logimport_flush_pending_all(imp, err);
	if (!rc)
		rc = scry__logimport_flush_batch(imp, err);
	if (!rc)
		rc = scry__logwriter_wait(imp->writer, err);
	if (!rc)
		rc = scry__logimport_record_files(imp, err);
	explain_nothing(imp);
	scry_store_info info = SCRY_STORE_INFO_INIT;
	if (!rc && (rc = scry_store_info_get(imp->store, &info, err)) == 0) {
		imp->st.patterns = (uint64_t)info.patterns;
		imp->st.new_patterns = (uint64_t)(info.patterns - imp->patterns_before);
	}
	if (stats)
		fill_stats(imp, stats);
	return rc;
}

void scry_logimport_free(scry_logimport *imp)
{
	if (!imp)
		return;
	scry__logwriter_free(imp->writer); /* after the batch in flight */
	for (size_t i = 0; i < imp->nsess; i++) {
		scry_buf_dispose(&imp->sess[i].ptext);
		scry_buf_dispose(&imp->sess[i].pparams);
	}
	scry__free(imp->sess);
	scry__free(imp->buckets);
	scry__free(imp->bev);
	scry__free(imp->evs);
	scry__free(imp->params);
	scry__free(imp->newsess);
	scry__free(imp->ends);
	scry__free(imp->prefix_copy);
	scry__free(imp->prefix_given);
	scry__free(imp->tz_name);
	for (size_t i = 0; i < imp->nfiles; i++)
		scry__free((char *)imp->files[i].name);
	scry__free(imp->files);
	scry_buf_dispose(&imp->xsev);
	scry_buf_dispose(&imp->xmsg);
	scry_buf_dispose(&imp->xdetail);
	scry_buf_dispose(&imp->xctx);
	scry_buf_dispose(&imp->wline);
	scry_buf_dispose(&imp->wtext);
	scry_buf_dispose(&imp->in);
	scry_buf_dispose(&imp->scratch);
	scry_buf_dispose(&imp->cur);
	scry_buf_dispose(&imp->arena);
	scry_buf_dispose(&imp->tmp);
	scry__free(imp);
}

int scry_logimport_file(scry_store *store, const char *path, const scry_logimport_options *opts,
                        scry_logimport_stats *stats, scry_error *err)
{
	scry_logimport *imp;
	int rc = scry_logimport_new(&imp, store, opts, err);
	if (rc)
		return rc;
	rc = scry_logimport_feed_file(imp, path, err);
	/* Even after a read error, keep what was read. */
	int frc = scry_logimport_finish(imp, stats, rc ? NULL : err);
	scry_logimport_free(imp);
	return rc ? rc : frc;
}
