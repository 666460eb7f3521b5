/*
 * lib/settings.c - every option by name (scry/settings.h), and result
 * structs as JSON: what the bindings use instead of mirroring C structs.
 *
 * One table lists each key with the struct and field it sets; setting,
 * describing and the defaults all read it, so a field appended to an
 * options struct is one line here.
 */
#include "internal.h"
#include "util/json.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

typedef enum { T_INT, T_DOUBLE, T_BOOL, T_STRING, T_ENUM, T_FPLIST, T_INT64 } key_type;
typedef enum { S_STORE, S_REPLAY, S_VERDICT, S_PIPELINE, S_MIGRATION, S_FIX, S_FILTER } key_struct;

/* The verdict's pattern filter, by key; built into a scry_pattern_filter on use. */
typedef struct filter_keys {
	const char *include, *exclude; /* globs, one per line */
	int session_setup;
} filter_keys;

typedef struct key_def {
	const char *key;
	key_struct where;
	size_t offset;
	key_type type;
	const char *const *names; /* T_ENUM: NULL-terminated, index = value */
	const char *doc;
} key_def;

static const char *const replay_modes[] = { "fast", "timed", NULL };
static const char *const replay_writes[] = { "rollback", "skip", "execute", NULL };
static const char *const pipeline_modes[] = { "clones", "sequential", NULL };
static const char *const clone_providers[] = { "template", "given", "command", NULL };

static const key_def keys[] = {
	{ "store.read_only", S_STORE, offsetof(scry_store_options, read_only), T_BOOL, NULL,
	  "open the store read-only; the file must exist" },
	{ "store.must_exist", S_STORE, offsetof(scry_store_options, must_exist), T_BOOL, NULL,
	  "fail with SCRY_ENOTFOUND instead of creating a missing store" },
	{ "store.durable", S_STORE, offsetof(scry_store_options, durable), T_BOOL, NULL,
	  "fsync every batch (synchronous=FULL)" },
	{ "replay.mode", S_REPLAY, offsetof(scry_replay_options, mode), T_ENUM, replay_modes,
	  "fast: as fast as possible at `concurrency`; timed: original start offsets x speed" },
	{ "replay.speed", S_REPLAY, offsetof(scry_replay_options, speed), T_DOUBLE, NULL,
	  "timed mode: 2 = twice as fast" },
	{ "replay.concurrency", S_REPLAY, offsetof(scry_replay_options, concurrency), T_INT, NULL,
	  "fast mode: sessions replayed at once" },
	{ "replay.repeat", S_REPLAY, offsetof(scry_replay_options, repeat), T_INT, NULL,
	  "rounds recorded per execution (the pipeline's default is 5)" },
	{ "replay.warmup", S_REPLAY, offsetof(scry_replay_options, warmup), T_INT, NULL,
	  "rounds run first and not recorded (the pipeline's default is 1)" },
	{ "replay.writes", S_REPLAY, offsetof(scry_replay_options, writes), T_ENUM, replay_writes,
	  "statements that write: rollback their transactions, skip them, or execute and commit" },
	{ "replay.timeout_ms", S_REPLAY, offsetof(scry_replay_options, timeout_ms), T_INT, NULL,
	  "statement_timeout of each replayed statement, in milliseconds" },
	{ "replay.fingerprints", S_REPLAY, offsetof(scry_replay_options, fingerprints), T_FPLIST, NULL,
	  "replay only these patterns: fingerprints (16 hex digits) separated by commas; empty = all" },
	{ "replay.ignore_users", S_REPLAY, offsetof(scry_replay_options, ignore_users), T_BOOL, NULL,
	  "never SET ROLE to the captured user: every session runs as the target's user" },
	{ "replay.ignore_session_params", S_REPLAY, offsetof(scry_replay_options, ignore_session_params), T_BOOL, NULL,
	  "do not apply the captured startup parameters (search_path via options, DateStyle...)" },
	{ "replay.client_margin_ms", S_REPLAY, offsetof(scry_replay_options, client_margin_ms), T_INT, NULL,
	  "extra time after timeout_ms before giving up on a server that does not answer (0 = 1000)" },
	{ "replay.budget", S_REPLAY, offsetof(scry_replay_options, budget), T_INT64, NULL,
	  "replay a stratified sample of this many executions per side; 0 = everything (ci test-migration: 20000)" },
	{ "replay.budget_seconds", S_REPLAY, offsetof(scry_replay_options, budget_seconds), T_DOUBLE, NULL,
	  "or: a sample sized to replay in about this many seconds; 0 = none" },
	{ "replay.min_per_pattern", S_REPLAY, offsetof(scry_replay_options, min_per_pattern), T_INT, NULL,
	  "a budget keeps at least this many executions per pattern" },
	{ "verdict.threshold", S_VERDICT, offsetof(scry_verdict_options, threshold), T_DOUBLE, NULL,
	  "ratio of medians (candidate / baseline) above which a pattern regressed" },
	{ "verdict.min_delta_ms", S_VERDICT, offsetof(scry_verdict_options, min_delta_ms), T_DOUBLE, NULL,
	  "floor on the median's growth, in milliseconds" },
	{ "verdict.min_samples", S_VERDICT, offsetof(scry_verdict_options, min_samples), T_INT, NULL,
	  "samples needed per side to judge a pattern" },
	{ "verdict.baseline_conninfo", S_VERDICT, offsetof(scry_verdict_options, baseline_conninfo), T_STRING,
	  NULL, "scry_verdict_compute: connection to the baseline, for plans" },
	{ "verdict.candidate_conninfo", S_VERDICT, offsetof(scry_verdict_options, candidate_conninfo),
	  T_STRING, NULL, "scry_verdict_compute: connection to the candidate, for plans" },
	{ "verdict.fail_on_insufficient", S_VERDICT, offsetof(scry_verdict_options, fail_on_insufficient), T_BOOL,
	  NULL, "patterns with fewer than min_samples pairs fail the gate" },
	{ "verdict.repeat_to_min", S_VERDICT, offsetof(scry_verdict_options, repeat_to_min), T_BOOL, NULL,
	  "with both connections, repeat a pattern's captured executions until it has min_samples pairs" },
	{ "verdict.include", S_FILTER, offsetof(filter_keys, include), T_STRING, NULL,
	  "judge only patterns whose fingerprint or normalized text matches one of these globs (one per line)" },
	{ "verdict.exclude", S_FILTER, offsetof(filter_keys, exclude), T_STRING, NULL,
	  "do not judge patterns matching one of these globs (one per line)" },
	{ "verdict.judge_session_setup", S_FILTER, offsetof(filter_keys, session_setup), T_BOOL, NULL,
	  "also judge SET, SHOW, RESET, DISCARD and transaction control (excluded by default)" },
	{ "pipeline.mode", S_PIPELINE, offsetof(scry_pipeline_options, mode), T_ENUM, pipeline_modes,
	  "clones: two clones replayed interleaved; sequential: on the target itself, before and after" },
	{ "pipeline.no_settle", S_PIPELINE, offsetof(scry_pipeline_options, no_settle), T_BOOL, NULL,
	  "skip VACUUM ANALYZE after migrating" },
	{ "pipeline.label_prefix", S_PIPELINE, offsetof(scry_pipeline_options, label_prefix), T_STRING, NULL,
	  "prefix of the run labels (default \"pipeline\")" },
	{ "pipeline.suffix", S_PIPELINE, offsetof(scry_pipeline_options, suffix), T_STRING, NULL,
	  "suffix of the clones' names (default: unique)" },
	{ "pipeline.no_impact", S_PIPELINE, offsetof(scry_pipeline_options, no_impact), T_BOOL, NULL,
	  "do not replay the workload on the candidate while the migration runs" },
	{ "pipeline.impact_speed", S_PIPELINE, offsetof(scry_pipeline_options, impact_speed), T_DOUBLE, NULL,
	  "speed of the replay during the migration (1 = the captured rate)" },
	{ "pipeline.max_lock_wait_ms", S_PIPELINE, offsetof(scry_pipeline_options, max_lock_wait_ms), T_INT64, NULL,
	  "fail the gate when a replayed query waited longer on a lock the migration held (0 = off)" },
	{ "pipeline.max_migration_seconds", S_PIPELINE, offsetof(scry_pipeline_options, max_migration_seconds),
	  T_DOUBLE, NULL, "fail the gate when the migration took longer (0 = off)" },
	{ "pipeline.clone", S_PIPELINE, offsetof(scry_pipeline_options, clone), T_ENUM, clone_providers,
	  "how the clones are made: template (CREATE DATABASE ... TEMPLATE), given (baseline/candidate), command" },
	{ "pipeline.baseline", S_PIPELINE, offsetof(scry_pipeline_options, baseline), T_STRING, NULL,
	  "clone given: connection string of the baseline copy (never dropped)" },
	{ "pipeline.candidate", S_PIPELINE, offsetof(scry_pipeline_options, candidate), T_STRING, NULL,
	  "clone given: connection string of the candidate copy, where the migration runs (never dropped)" },
	{ "pipeline.clone_command", S_PIPELINE, offsetof(scry_pipeline_options, clone_command), T_STRING, NULL,
	  "clone command: `CMD create NAME` prints the clone's connection string, `CMD destroy NAME` removes it" },
	{ "pipeline.migration_timeout_s", S_PIPELINE, offsetof(scry_pipeline_options, migration_timeout_s), T_INT,
	  NULL, "kill a migration (or fix) command after this many seconds (0 = no limit)" },
	{ "migration.sql", S_MIGRATION, offsetof(scry_migration, sql), T_STRING, NULL,
	  "the migration as SQL statements, run in one transaction on the clone" },
	{ "fix.sql", S_FIX, offsetof(scry_migration, sql), T_STRING, NULL,
	  "a fix applied after the first verdict, as SQL, then validated again" },
};
#define NKEYS (sizeof keys / sizeof keys[0])

/*
 * Every field of every options struct is reachable by a key above (or by a
 * scry_settings_set_* function for callbacks and the migration): a field
 * appended to a struct fails the build here until it has its key.
 */
#define ENDS_WITH(T, field) \
	_Static_assert(sizeof(T) == ((offsetof(T, field) + sizeof(((T *)0)->field) + _Alignof(T) - 1) / _Alignof(T) * \
		_Alignof(T)), #T " grew: give its new field a key in lib/settings.c")
ENDS_WITH(scry_store_options, durable);
ENDS_WITH(scry_replay_options, min_per_pattern); /* user_map: API and --user-map only */
ENDS_WITH(scry_verdict_options, filter);
ENDS_WITH(scry_pipeline_options, migration_timeout_s);
ENDS_WITH(scry_migration, output_ctx);
#undef ENDS_WITH

/* One migration ("migration" or "fix") and what it owns. */
typedef struct owned_migration {
	scry_migration m;
	bool set;
	char **argv;
} owned_migration;

struct scry_settings {
	scry_store_options store;
	scry_replay_options replay;
	scry_verdict_options verdict;
	scry_pipeline_options pipeline;
	filter_keys fk, d_fk;
	scry_pattern_filter *filter; /* built from fk by scry_settings_verdict() */
	owned_migration mig[2]; /* migration, fix */
	/* Defaults, to describe them and to restore a key. */
	scry_store_options d_store;
	scry_replay_options d_replay;
	scry_verdict_options d_verdict;
	scry_pipeline_options d_pipeline;
	/* Which keys were set, by index in keys[]. */
	bool explicit_key[NKEYS];
	/* Strings and the fingerprint list, owned, by index in keys[]. */
	void *owned[NKEYS];
	/* The pipeline's replay options: `replay` with the pipeline's defaults. */
	scry_replay_options pipeline_replay;
	scry_log_fn log;
	void *log_ctx;
	scry_progress_fn progress;
	void *progress_ctx;
};

static void *field(scry_settings *s, const key_def *k, bool defaults)
{
	char *base = NULL;
	switch (k->where) {
	case S_STORE: base = (char *)(defaults ? &s->d_store : &s->store); break;
	case S_REPLAY: base = (char *)(defaults ? &s->d_replay : &s->replay); break;
	case S_VERDICT: base = (char *)(defaults ? &s->d_verdict : &s->verdict); break;
	case S_PIPELINE: base = (char *)(defaults ? &s->d_pipeline : &s->pipeline); break;
	case S_MIGRATION: base = (char *)&s->mig[0].m; break;
	case S_FIX: base = (char *)&s->mig[1].m; break;
	case S_FILTER: base = (char *)(defaults ? &s->d_fk : &s->fk); break;
	}
	return base + k->offset;
}

static void init_defaults(scry_settings *s)
{
	scry_store_options_init(&s->d_store);
	scry_replay_options_init(&s->d_replay);
	scry_verdict_options_init(&s->d_verdict);
	scry_pipeline_options_init(&s->d_pipeline);
	s->store = s->d_store;
	s->replay = s->d_replay;
	s->verdict = s->d_verdict;
	s->pipeline = s->d_pipeline;
	for (int i = 0; i < 2; i++) {
		scry_migration m = SCRY_MIGRATION_INIT;
		s->mig[i].m = m;
	}
}

int scry_settings_new(scry_settings **out, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_settings_new: out is NULL");
	*out = NULL;
	scry_settings *s = scry__calloc(1, sizeof *s);
	if (!s)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	init_defaults(s);
	*out = s;
	return 0;
}

static void free_argv(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		scry__free(argv[i]);
	scry__free(argv);
}

void scry_settings_free(scry_settings *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		scry__free(s->owned[i]);
	for (int i = 0; i < 2; i++)
		free_argv(s->mig[i].argv);
	scry_pattern_filter_free(s->filter);
	scry__free(s);
}

static const key_def *find_key(const char *key, size_t *index)
{
	for (size_t i = 0; key && i < NKEYS; i++)
		if (!strcmp(keys[i].key, key)) {
			*index = i;
			return &keys[i];
		}
	return NULL;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]))
			return *out = 1, 0;
		if (!strcasecmp(v, no[i]))
			return *out = 0, 0;
	}
	return SCRY_EINVAL;
}

/* Parses "a,b,c" hex fingerprints into a new array (NULL and 0 for ""). */
static int parse_fplist(const char *v, uint64_t **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	while (*v) {
		while (*v == ' ' || *v == ',')
			v++;
		if (!*v)
			break;
		char hex[17];
		size_t len = strcspn(v, ", ");
		if (len > 16)
			goto bad;
		memcpy(hex, v, len);
		hex[len] = '\0';
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 8))
			goto bad;
		if (scry_fingerprint_parse(hex, &(*out)[*n]))
			goto bad;
		(*n)++;
		v += len;
	}
	return 0;
bad:
	scry__free(*out);
	*out = NULL;
	*n = 0;
	return SCRY_EINVAL;
}

static int bad_value(scry_error *err, const key_def *k, const char *value)
{
	const char *want = "";
	char names[160] = "";
	switch (k->type) {
	case T_INT:
	case T_INT64: want = "an integer"; break;
	case T_DOUBLE: want = "a number"; break;
	case T_BOOL: want = "true or false"; break;
	case T_FPLIST: want = "fingerprints (16 hex digits) separated by commas"; break;
	case T_ENUM:
		for (int i = 0; k->names[i]; i++)
			snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "one of ",
			         k->names[i]);
		want = names;
		break;
	case T_STRING: want = "text"; break;
	}
	return scry__fail(err, SCRY_EINVAL, "setting %s: \"%s\" is not valid; it takes %s", k->key, value, want);
}

int scry_settings_set(scry_settings *s, const char *key, const char *value, scry_error *err)
{
	if (!s || !key)
		return scry__fail(err, SCRY_EINVAL, "scry_settings_set: settings or key is NULL");
	size_t idx = 0;
	const key_def *k = find_key(key, &idx);
	if (!k)
		return scry__fail(err, SCRY_EINVAL,
		                  "unknown setting \"%s\" (scry_settings_describe() lists them; see docs/api.md)", key);
	void *f = field(s, k, false);
	bool is_mig = k->where == S_MIGRATION || k->where == S_FIX;
	if (!value) { /* restore the default */
		if (is_mig) {
			*(const char **)f = NULL;
		} else {
			memcpy(f, field(s, k, true),
			       k->type == T_INT || k->type == T_BOOL || k->type == T_ENUM ? sizeof(int)
			       : k->type == T_DOUBLE ? sizeof(double) : k->type == T_INT64 ? sizeof(int64_t)
			       : sizeof(void *));
			if (k->type == T_FPLIST)
				s->replay.nfingerprints = 0;
		}
		scry__free(s->owned[idx]);
		s->owned[idx] = NULL;
		s->explicit_key[idx] = false;
		return 0;
	}
	char *end = NULL;
	errno = 0;
	switch (k->type) {
	case T_INT: {
		long v = strtol(value, &end, 10);
		if (!*value || *end || errno || v < -2147483647L || v > 2147483647L)
			return bad_value(err, k, value);
		*(int *)f = (int)v;
		break;
	}
	case T_INT64: {
		long long v = strtoll(value, &end, 10);
		if (!*value || *end || errno)
			return bad_value(err, k, value);
		*(int64_t *)f = (int64_t)v;
		break;
	}
	case T_DOUBLE: {
		double v = strtod(value, &end);
		if (!*value || *end || errno || !isfinite(v))
			return bad_value(err, k, value);
		*(double *)f = v;
		break;
	}
	case T_BOOL: {
		int v;
		if (parse_bool(value, &v))
			return bad_value(err, k, value);
		*(int *)f = v;
		break;
	}
	case T_ENUM: {
		int found = -1;
		for (int i = 0; k->names[i]; i++)
			if (!strcmp(k->names[i], value))
				found = i;
		if (found < 0)
			return bad_value(err, k, value);
		*(int *)f = found;
		break;
	}
	case T_STRING: {
		char *copy = scry__strdup(value);
		if (!copy)
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		scry__free(s->owned[idx]);
		s->owned[idx] = copy;
		*(const char **)f = copy;
		if (is_mig) { /* SQL replaces a callback or a command */
			owned_migration *om = &s->mig[k->where == S_FIX];
			free_argv(om->argv);
			om->argv = NULL;
			om->m.argv = NULL;
			om->m.fn = NULL;
			om->set = true;
		}
		break;
	}
	case T_FPLIST: {
		uint64_t *list;
		size_t n;
		if (parse_fplist(value, &list, &n))
			return bad_value(err, k, value);
		scry__free(s->owned[idx]);
		s->owned[idx] = list;
		s->replay.fingerprints = list;
		s->replay.nfingerprints = n;
		break;
	}
	}
	s->explicit_key[idx] = true;
	return 0;
}

/* The default of a key, as text. */
static void default_text(scry_settings *d, const key_def *k, char *out, size_t n)
{
	if (k->where == S_MIGRATION || k->where == S_FIX) {
		snprintf(out, n, "%s", "");
		return;
	}
	const void *f = field(d, k, true);
	switch (k->type) {
	case T_INT: snprintf(out, n, "%d", *(const int *)f); break;
	case T_INT64: snprintf(out, n, "%lld", (long long)*(const int64_t *)f); break;
	case T_BOOL: snprintf(out, n, "%s", *(const int *)f ? "true" : "false"); break;
	case T_DOUBLE: snprintf(out, n, "%g", *(const double *)f); break;
	case T_ENUM: snprintf(out, n, "%s", k->names[*(const int *)f]); break;
	case T_STRING:
	case T_FPLIST: snprintf(out, n, "%s", ""); break;
	}
}

int scry_settings_describe(scry_buf *out, scry_error *err)
{
	static const char *const type_names[] = { "int", "double", "bool", "string", "enum", "fingerprints", "int" };
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_settings_describe: out is NULL");
	scry_settings *d;
	int rc = scry_settings_new(&d, err);
	if (rc)
		return rc;
	scry__json j;
	scry__json_init(&j, out);
	scry__json_array(&j);
	for (size_t i = 0; i < NKEYS; i++) {
		const key_def *k = &keys[i];
		char def[64];
		default_text(d, k, def, sizeof def);
		scry__json_object(&j);
		scry__json_kstr(&j, "key", k->key);
		scry__json_kstr(&j, "type", type_names[k->type]);
		scry__json_kstr(&j, "default", def);
		if (k->type == T_ENUM) {
			scry__json_key(&j, "values");
			scry__json_array(&j);
			for (int v = 0; k->names[v]; v++)
				scry__json_str(&j, k->names[v]);
			scry__json_end(&j);
		}
		scry__json_kstr(&j, "doc", k->doc);
		scry__json_end(&j);
	}
	scry__json_end(&j);
	rc = scry__buf_failed(out) ? SCRY_ENOMEM : 0;
	scry_settings_free(d);
	return rc ? scry__fail(err, rc, "out of memory") : 0;
}

void scry_settings_set_log(scry_settings *s, scry_log_fn fn, void *ctx)
{
	if (!s)
		return;
	s->log = fn;
	s->log_ctx = ctx;
}

void scry_settings_set_progress(scry_settings *s, scry_progress_fn fn, void *ctx)
{
	if (!s)
		return;
	s->progress = fn;
	s->progress_ctx = ctx;
}

static owned_migration *which_migration(scry_settings *s, const char *which, scry_error *err)
{
	if (s && which && !strcmp(which, "migration"))
		return &s->mig[0];
	if (s && which && !strcmp(which, "fix"))
		return &s->mig[1];
	scry__fail(err, SCRY_EINVAL, "settings: no migration named \"%s\" (\"migration\" or \"fix\")",
	           which ? which : "(null)");
	return NULL;
}

/* Forgets the SQL of a migration (its key). */
static void clear_sql(scry_settings *s, owned_migration *om)
{
	size_t idx = 0;
	find_key(om == &s->mig[0] ? "migration.sql" : "fix.sql", &idx);
	scry__free(s->owned[idx]);
	s->owned[idx] = NULL;
	s->explicit_key[idx] = false;
	om->m.sql = NULL;
}

int scry_settings_set_migration_fn(scry_settings *s, const char *which, scry_migration_fn fn, void *ctx,
                                   scry_error *err)
{
	owned_migration *om = which_migration(s, which, err);
	if (!om)
		return SCRY_EINVAL;
	clear_sql(s, om);
	free_argv(om->argv);
	om->argv = NULL;
	om->m.argv = NULL;
	om->m.fn = fn;
	om->m.fn_ctx = ctx;
	om->set = fn != NULL;
	return 0;
}

int scry_settings_set_migration_argv(scry_settings *s, const char *which, const char *const *argv,
                                     scry_error *err)
{
	owned_migration *om = which_migration(s, which, err);
	if (!om)
		return SCRY_EINVAL;
	if (!argv || !argv[0])
		return scry__fail(err, SCRY_EINVAL, "settings: the %s command is empty", which);
	size_t n = 0;
	while (argv[n])
		n++;
	char **copy = scry__calloc(n + 1, sizeof *copy);
	for (size_t i = 0; copy && i < n; i++)
		if (!(copy[i] = scry__strdup(argv[i]))) {
			free_argv(copy);
			copy = NULL;
		}
	if (!copy)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	clear_sql(s, om);
	free_argv(om->argv);
	om->argv = copy;
	om->m.argv = copy;
	om->m.fn = NULL;
	om->set = true;
	return 0;
}

int scry_settings_set_migration_output(scry_settings *s, const char *which, scry_output_fn fn, void *ctx,
                                       scry_error *err)
{
	owned_migration *om = which_migration(s, which, err);
	if (!om)
		return SCRY_EINVAL;
	om->m.output = fn;
	om->m.output_ctx = ctx;
	return 0;
}

const scry_store_options *scry_settings_store(const scry_settings *s)
{
	return s ? &s->store : NULL;
}

const scry_replay_options *scry_settings_replay(const scry_settings *cs)
{
	if (!cs)
		return NULL;
	scry_settings *s = (scry_settings *)cs;
	s->replay.log = s->log;
	s->replay.log_ctx = s->log_ctx;
	s->replay.progress = s->progress;
	s->replay.progress_ctx = s->progress_ctx;
	return &s->replay;
}

/* Adds each line of `globs` to the filter. */
static int add_globs(scry_pattern_filter *f, int include, const char *globs)
{
	for (const char *p = globs; p && *p;) {
		size_t n = strcspn(p, "\n");
		if (n) {
			char *g = scry__strndup(p, n);
			int rc = g ? scry_pattern_filter_add(f, include, g, NULL) : SCRY_ENOMEM;
			scry__free(g);
			if (rc)
				return rc;
		}
		p += n + (p[n] == '\n');
	}
	return 0;
}

/* Rebuilds the verdict's filter from the "verdict.include/exclude/..." keys. */
static void build_filter(scry_settings *s)
{
	scry_pattern_filter_free(s->filter);
	s->filter = NULL;
	s->verdict.filter = NULL;
	if (!s->fk.include && !s->fk.exclude && !s->fk.session_setup)
		return; /* the default filter */
	if (scry_pattern_filter_new(&s->filter, NULL) || add_globs(s->filter, 1, s->fk.include) ||
	    add_globs(s->filter, 0, s->fk.exclude)) {
		/* Out of memory: judge everything rather than silently less. */
		scry_pattern_filter_free(s->filter);
		s->filter = NULL;
		s->fk.session_setup = 1;
		if (scry_pattern_filter_new(&s->filter, NULL))
			return;
	}
	scry_pattern_filter_set_session_setup(s->filter, s->fk.session_setup);
	s->verdict.filter = s->filter;
}

const scry_verdict_options *scry_settings_verdict(const scry_settings *cs)
{
	if (!cs)
		return NULL;
	scry_settings *s = (scry_settings *)cs;
	build_filter(s);
	s->verdict.log = s->log;
	s->verdict.log_ctx = s->log_ctx;
	s->verdict.progress = s->progress;
	s->verdict.progress_ctx = s->progress_ctx;
	return &s->verdict;
}

static bool replay_key_set(const scry_settings *s, const char *key)
{
	size_t idx = 0;
	return find_key(key, &idx) && s->explicit_key[idx];
}

const scry_pipeline_options *scry_settings_pipeline(const scry_settings *cs)
{
	if (!cs)
		return NULL;
	scry_settings *s = (scry_settings *)cs;
	bool any_replay = false;
	for (size_t i = 0; i < NKEYS; i++)
		any_replay |= keys[i].where == S_REPLAY && s->explicit_key[i];
	s->pipeline.replay = NULL;
	if (any_replay) {
		s->pipeline_replay = *scry_settings_replay(s);
		/* The pipeline's own defaults, unless set (docs/pipeline.md). */
		if (!replay_key_set(s, "replay.repeat"))
			s->pipeline_replay.repeat = 5;
		if (!replay_key_set(s, "replay.warmup"))
			s->pipeline_replay.warmup = 1;
		s->pipeline.replay = &s->pipeline_replay;
	}
	s->pipeline.verdict = scry_settings_verdict(s);
	s->pipeline.fix = s->mig[1].set ? &s->mig[1].m : NULL;
	s->pipeline.log = s->log;
	s->pipeline.log_ctx = s->log_ctx;
	s->pipeline.progress = s->progress;
	s->pipeline.progress_ctx = s->progress_ctx;
	return &s->pipeline;
}

const scry_migration *scry_settings_migration(const scry_settings *s, const char *which)
{
	owned_migration *om = which_migration((scry_settings *)s, which, NULL);
	return om && om->set ? &om->m : NULL;
}

/* ------------------------------------------------------------------ */
/* Results as JSON                                                     */

/* A field of a result struct, for the JSON writers below. */
typedef struct json_field {
	const char *name;
	size_t offset;
	char type; /* 'l' int64_t, 'i' int, 'd' double */
} json_field;

#define F(st, name, type) { #name, offsetof(st, name), type }
static const json_field replay_fields[] = {
	F(scry_replay_result, run_id, 'l'), F(scry_replay_result, executions, 'l'),
	F(scry_replay_result, errors, 'l'), F(scry_replay_result, timeouts, 'l'),
	F(scry_replay_result, reconnects, 'l'), F(scry_replay_result, skipped, 'l'),
	F(scry_replay_result, per_second, 'd'), F(scry_replay_result, elapsed_us, 'l'),
	F(scry_replay_result, lag_p50_us, 'l'), F(scry_replay_result, lag_p99_us, 'l'),
	F(scry_replay_result, lag_max_us, 'l'),
};
static const json_field info_fields[] = {
	F(scry_store_info, events, 'l'), F(scry_store_info, sessions, 'l'), F(scry_store_info, patterns, 'l'),
	F(scry_store_info, statements, 'l'), F(scry_store_info, runs, 'l'), F(scry_store_info, samples, 'l'),
	F(scry_store_info, first_us, 'l'), F(scry_store_info, last_us, 'l'), F(scry_store_info, file_bytes, 'l'),
	F(scry_store_info, schema_version, 'i'),
};
static const json_field stats_fields[] = {
	F(scry_pipeline_stats, clone_us, 'l'), F(scry_pipeline_stats, migrate_us, 'l'),
	F(scry_pipeline_stats, settle_us, 'l'), F(scry_pipeline_stats, replay_us, 'l'),
	F(scry_pipeline_stats, verdict_us, 'l'), F(scry_pipeline_stats, fix_us, 'l'),
	F(scry_pipeline_stats, total_us, 'l'),
};
#undef F
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* Writes the fields of `base` as one JSON object. */
static void json_fields(scry__json *j, const void *base, const json_field *f, size_t n)
{
	scry__json_object(j);
	for (size_t i = 0; i < n; i++) {
		const char *p = (const char *)base + f[i].offset;
		if (f[i].type == 'd') {
			double d;
			memcpy(&d, p, sizeof d);
			scry__json_knum(j, f[i].name, d, "%.3f");
		} else if (f[i].type == 'l') {
			int64_t v;
			memcpy(&v, p, sizeof v);
			scry__json_kint(j, f[i].name, v);
		} else {
			int v;
			memcpy(&v, p, sizeof v);
			scry__json_kint(j, f[i].name, v);
		}
	}
	scry__json_end(j);
}

/* The sticky buffer's verdict on a JSON rendering into `out`. */
static int json_done(scry_buf *out, scry_error *err)
{
	return scry__buf_failed(out) ? scry__fail(err, SCRY_ENOMEM, "out of memory") : 0;
}

int scry_store_info_json(scry_store *store, scry_buf *out, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_store_info_json: out is NULL");
	scry_store_info info = SCRY_STORE_INFO_INIT;
	int rc = scry_store_info_get(store, &info, err);
	if (rc)
		return rc;
	scry__json j;
	scry__json_init(&j, out);
	json_fields(&j, &info, info_fields, NFIELDS(info_fields));
	return json_done(out, err);
}

int scry_replay_run_json(scry_replay *r, const char *conninfo, const char *label, scry_buf *out,
                         scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_replay_run_json: out is NULL");
	scry_replay_result res = SCRY_REPLAY_RESULT_INIT;
	int rc = scry_replay_run(r, conninfo, label, &res, err);
	if (rc && rc != SCRY_ECANCELED)
		return rc;
	scry__json j;
	scry__json_init(&j, out);
	json_fields(&j, &res, replay_fields, NFIELDS(replay_fields));
	return json_done(out, err) ? SCRY_ENOMEM : rc;
}

int scry_pipeline_stats_json(const scry_pipeline *p, scry_buf *out, scry_error *err)
{
	if (!p || !out)
		return scry__fail(err, SCRY_EINVAL, "scry_pipeline_stats_json: pipeline or out is NULL");
	scry_pipeline_stats st = SCRY_PIPELINE_STATS_INIT;
	if (scry_pipeline_stats_get(p, &st))
		return scry__fail(err, SCRY_EINVAL, "scry_pipeline_stats_json: no statistics");
	static const char *const runs[] = { "baseline", "candidate", "fixed", "fixed_baseline" };
	static const scry_pipeline_replay which[] = { SCRY_PIPELINE_BASELINE, SCRY_PIPELINE_CANDIDATE,
	                                              SCRY_PIPELINE_FIXED, SCRY_PIPELINE_FIXED_BASELINE };
	scry__json j;
	scry__json_init(&j, out);
	scry__json_object(&j);
	for (size_t i = 0; i < NFIELDS(stats_fields); i++) {
		int64_t v;
		memcpy(&v, (const char *)&st + stats_fields[i].offset, sizeof v);
		scry__json_kint(&j, stats_fields[i].name, v);
	}
	for (size_t i = 0; i < 4; i++) {
		scry_replay_result r = SCRY_REPLAY_RESULT_INIT;
		scry_pipeline_replay_result_get(p, which[i], &r);
		scry__json_key(&j, runs[i]);
		json_fields(&j, &r, replay_fields, NFIELDS(replay_fields));
	}
	scry__json_end(&j);
	return json_done(out, err);
}
