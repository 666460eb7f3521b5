/*
 * lib/verdict.c - per-pattern comparison of two replay runs (docs/verdict.md).
 *
 * Samples of both runs are read in (event, round) order and paired; each
 * pattern's verdict rests on the paired log-ratios log(candidate/baseline):
 * their median's distribution-free confidence interval (sign test: order
 * statistics of the sorted ratios) must lie above the threshold for a
 * regression. Pairing cancels the noise both sides saw at the same moment;
 * the sign test assumes nothing about the shape of latency distributions
 * and needs no random numbers, so a verdict is reproducible.
 *
 * With connections to both sides, regressed patterns get EXPLAIN (ANALYZE,
 * BUFFERS, FORMAT JSON) with a real captured parameter set, and patterns
 * that only work on the candidate are measured against the indexes their
 * plan lacks. Everything runs inside BEGIN ... ROLLBACK.
 */
#include "internal.h"

#include <libpq-fe.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#define CONFIDENCE_ALPHA 0.05 /* two-sided 95% intervals */
#define BEST_EVENTS 20        /* executions measured per side for a best-index check */
#define BEST_ROUNDS 2

/* ------------------------------------------------------------------ */
/* Small JSON reader for EXPLAIN (FORMAT JSON) output                  */
/* ------------------------------------------------------------------ */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
	jtype type;
	double num;
	char *str;          /* J_STR */
	struct jval *items; /* J_ARR / J_OBJ values */
	char **keys;        /* J_OBJ */
	size_t n;
} jval;

typedef struct jparser {
	const char *p, *end;
	int depth;
} jparser;

static void jfree(jval *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		jfree(&v->items[i]);
		if (v->keys)
			scry__free(v->keys[i]);
	}
	scry__free(v->items);
	scry__free(v->keys);
	scry__free(v->str);
	memset(v, 0, sizeof *v);
}

static void jskip(jparser *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

static int jhex(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Parses a string literal (at '"') into a new NUL-terminated UTF-8 string. */
static char *jstring(jparser *j)
{
	scry_buf b = SCRY_BUF_INIT;
	j->p++;
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;
		if (c != '\\') {
			scry__buf_put(&b, &c, 1);
			continue;
		}
		if (j->p >= j->end)
			break;
		c = *j->p++;
		switch (c) {
		case 'n': scry__buf_puts(&b, "\n"); break;
		case 't': scry__buf_puts(&b, "\t"); break;
		case 'r': scry__buf_puts(&b, "\r"); break;
		case 'b': scry__buf_puts(&b, "\b"); break;
		case 'f': scry__buf_puts(&b, "\f"); break;
		case 'u': {
			int cp = j->end - j->p >= 4 ? jhex(j->p) : -1;
			if (cp < 0)
				goto bad;
			j->p += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
				int lo = jhex(j->p + 2);
				if (lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					j->p += 6;
				}
			}
			char u[4];
			size_t k;
			if (cp < 0x80) {
				u[0] = (char)cp;
				k = 1;
			} else if (cp < 0x800) {
				u[0] = (char)(0xC0 | (cp >> 6));
				u[1] = (char)(0x80 | (cp & 0x3F));
				k = 2;
			} else if (cp < 0x10000) {
				u[0] = (char)(0xE0 | (cp >> 12));
				u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[2] = (char)(0x80 | (cp & 0x3F));
				k = 3;
			} else {
				u[0] = (char)(0xF0 | (cp >> 18));
				u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
				u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[3] = (char)(0x80 | (cp & 0x3F));
				k = 4;
			}
			scry__buf_put(&b, u, k);
			break;
		}
		default: scry__buf_put(&b, &c, 1); break; /* \" \\ \/ */
		}
	}
	if (j->p >= j->end)
		goto bad;
	j->p++;
	if (!b.ptr)
		return scry__strdup("");
	return b.ptr;
bad:
	scry_buf_dispose(&b);
	return NULL;
}

static int jparse(jparser *j, jval *v)
{
	memset(v, 0, sizeof *v);
	jskip(j);
	if (j->p >= j->end || ++j->depth > 200)
		return -1;
	int rc = 0;
	char c = *j->p;
	if (c == '{' || c == '[') {
		bool obj = c == '{';
		v->type = obj ? J_OBJ : J_ARR;
		j->p++;
		size_t cap = 0;
		for (;;) {
			jskip(j);
			if (j->p < j->end && *j->p == (obj ? '}' : ']') && v->n == 0) {
				j->p++;
				break;
			}
			if (v->n == cap) {
				cap = cap ? cap * 2 : 8;
				jval *ni = scry__realloc(v->items, cap * sizeof *ni);
				if (!ni)
					return -1;
				v->items = ni;
				if (obj) {
					char **nk = scry__realloc(v->keys, cap * sizeof *nk);
					if (!nk)
						return -1;
					v->keys = nk;
				}
			}
			if (obj) {
				jskip(j);
				if (j->p >= j->end || *j->p != '"')
					return -1;
				char *k = jstring(j);
				if (!k)
					return -1;
				jskip(j);
				if (j->p >= j->end || *j->p != ':') {
					scry__free(k);
					return -1;
				}
				j->p++;
				v->keys[v->n] = k;
			}
			rc = jparse(j, &v->items[v->n]);
			v->n++;
			if (rc)
				return rc;
			jskip(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
				j->p++;
				break;
			}
			return -1;
		}
	} else if (c == '"') {
		v->type = J_STR;
		if (!(v->str = jstring(j)))
			return -1;
	} else if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "null", 4)) {
		v->type = c == 't' ? J_BOOL : J_NULL;
		v->num = c == 't';
		j->p += 4;
	} else if (!strncmp(j->p, "false", 5)) {
		v->type = J_BOOL;
		j->p += 5;
	} else {
		char *e;
		v->type = J_NUM;
		v->num = strtod(j->p, &e);
		if (e == j->p)
			return -1;
		j->p = e;
	}
	j->depth--;
	return 0;
}

static const jval *jget(const jval *o, const char *key)
{
	if (!o || o->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->keys[i], key))
			return &o->items[i];
	return NULL;
}

static const char *jstr(const jval *o, const char *key)
{
	const jval *v = jget(o, key);
	return v && v->type == J_STR ? v->str : NULL;
}

static double jnum(const jval *o, const char *key)
{
	const jval *v = jget(o, key);
	return v && v->type == J_NUM ? v->num : 0;
}

/* ------------------------------------------------------------------ */
/* Plan summaries and the plan diff                                    */
/* ------------------------------------------------------------------ */

typedef struct plan_node {
	const jval *o;
	int depth;
} plan_node;

typedef struct plan_info {
	jval root;
	const jval *top;      /* the "Plan" object */
	plan_node *nodes;     /* preorder */
	size_t n, cap;
	double exec_ms;
	double removed;       /* rows removed by filter, all nodes, times loops */
	double buffers;       /* shared hit + read of the top node (cumulative) */
} plan_info;

static int plan_walk(plan_info *pi, const jval *o, int depth)
{
	if (!o || o->type != J_OBJ || depth > 100)
		return 0;
	if (scry__array_grow((void **)&pi->nodes, &pi->cap, pi->n, sizeof *pi->nodes, 16))
		return SCRY_ENOMEM;
	pi->nodes[pi->n++] = (plan_node){ o, depth };
	double loops = jnum(o, "Actual Loops");
	pi->removed += (jnum(o, "Rows Removed by Filter") + jnum(o, "Rows Removed by Join Filter")) * (loops > 0 ? loops : 1);
	const jval *kids = jget(o, "Plans");
	for (size_t i = 0; kids && kids->type == J_ARR && i < kids->n; i++) {
		int rc = plan_walk(pi, &kids->items[i], depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

static void plan_info_free(plan_info *pi)
{
	jfree(&pi->root);
	scry__free(pi->nodes);
	memset(pi, 0, sizeof *pi);
}

/* Parses EXPLAIN (FORMAT JSON) text. Returns 0, SCRY_EPARSE or SCRY_ENOMEM. */
static int plan_parse(const char *json, plan_info *pi)
{
	memset(pi, 0, sizeof *pi);
	jparser j = { json, json + strlen(json), 0 };
	if (jparse(&j, &pi->root)) {
		plan_info_free(pi);
		return SCRY_EPARSE;
	}
	const jval *first = pi->root.type == J_ARR && pi->root.n ? &pi->root.items[0] : &pi->root;
	pi->top = jget(first, "Plan");
	if (!pi->top) {
		plan_info_free(pi);
		return SCRY_EPARSE;
	}
	pi->exec_ms = jnum(first, "Execution Time");
	pi->buffers = jnum(pi->top, "Shared Hit Blocks") + jnum(pi->top, "Shared Read Blocks");
	int rc = plan_walk(pi, pi->top, 0);
	if (rc)
		plan_info_free(pi);
	return rc;
}

/* "Index Scan using orders_pkey on orders" / "Seq Scan on orders" / "Hash Join". */
static void node_label(scry_buf *b, const jval *o)
{
	const char *type = jstr(o, "Node Type");
	const char *rel = jstr(o, "Relation Name");
	const char *idx = jstr(o, "Index Name");
	const jval *kids = jget(o, "Plans");
	/* A bitmap heap scan names its index in its Bitmap Index Scan child. */
	if (!idx && kids && kids->type == J_ARR && kids->n == 1)
		idx = jstr(&kids->items[0], "Index Name");
	scry__buf_puts(b, type ? type : "?");
	if (idx)
		scry__buf_printf(b, " using %s", idx);
	if (rel)
		scry__buf_printf(b, " on %s", rel);
}

/* Indented one-line-per-node summary a person can read. */
static void plan_text(scry_buf *b, const plan_info *pi)
{
	for (size_t i = 0; i < pi->n; i++) {
		const jval *o = pi->nodes[i].o;
		scry__buf_printf(b, "%*s", pi->nodes[i].depth * 2, "");
		node_label(b, o);
		double loops = jnum(o, "Actual Loops");
		scry__buf_printf(b, " (est rows %.0f, actual rows %.0f", jnum(o, "Plan Rows"), jnum(o, "Actual Rows"));
		if (loops > 1)
			scry__buf_printf(b, " x %.0f loops", loops);
		double removed = jnum(o, "Rows Removed by Filter");
		if (removed > 0)
			scry__buf_printf(b, ", removed by filter %.0f", removed);
		double hit = jnum(o, "Shared Hit Blocks"), rd = jnum(o, "Shared Read Blocks");
		if (hit + rd > 0)
			scry__buf_printf(b, ", buffers hit %.0f read %.0f", hit, rd);
		scry__buf_puts(b, ")");
		const char *cond = jstr(o, "Index Cond");
		const char *filter = jstr(o, "Filter");
		if (cond)
			scry__buf_printf(b, " index cond: %s", cond);
		if (filter)
			scry__buf_printf(b, " filter: %s", filter);
		scry__buf_puts(b, "\n");
	}
	scry__buf_printf(b, "execution %.3f ms", pi->exec_ms);
}

/* Finds the scan of relation `rel` in a plan (first in preorder). */
static const jval *scan_of(const plan_info *pi, const char *rel)
{
	for (size_t i = 0; i < pi->n; i++) {
		const char *r = jstr(pi->nodes[i].o, "Relation Name");
		if (r && !strcmp(r, rel))
			return pi->nodes[i].o;
	}
	return NULL;
}

/*
 * One line: what changed between the plans. Scans whose access method
 * changed come first ("Index Scan using x on orders -> Seq Scan on orders"),
 * then the first other node type that changed, then the numbers.
 */
static void plan_diff(scry_buf *b, const plan_info *a, const plan_info *c)
{
	size_t start = b->size;
	const jval *ra = a->top, *rc = c->top; /* whose rows to show: the first changed scan, else the tops */
	for (size_t i = 0; i < c->n; i++) {
		const jval *cn = c->nodes[i].o;
		const char *rel = jstr(cn, "Relation Name");
		if (!rel || scan_of(c, rel) != cn)
			continue;
		const jval *an = scan_of(a, rel);
		if (!an)
			continue;
		const char *ta = jstr(an, "Node Type"), *tc = jstr(cn, "Node Type");
		const char *ia = jstr(an, "Index Name"), *ic = jstr(cn, "Index Name");
		if (ta && tc && !strcmp(ta, tc) && ((!ia && !ic) || (ia && ic && !strcmp(ia, ic))))
			continue;
		if (b->size > start)
			scry__buf_puts(b, "; ");
		else {
			ra = an;
			rc = cn;
		}
		node_label(b, an);
		scry__buf_puts(b, " -> ");
		node_label(b, cn);
	}
	if (b->size == start) {
		for (size_t i = 0; i < a->n && i < c->n; i++) {
			const char *ta = jstr(a->nodes[i].o, "Node Type"), *tc = jstr(c->nodes[i].o, "Node Type");
			if (ta && tc && strcmp(ta, tc)) {
				scry__buf_printf(b, "%s -> %s", ta, tc);
				break;
			}
		}
	}
	if (b->size == start)
		scry__buf_puts(b, a->n == c->n ? "same plan shape" : "plan shape changed");
	if (c->removed > 0 || a->removed > 0)
		scry__buf_printf(b, "; rows removed by filter %.0f -> %.0f", a->removed, c->removed);
	scry__buf_printf(b, "; est/actual rows %.0f/%.0f -> %.0f/%.0f", jnum(ra, "Plan Rows"), jnum(ra, "Actual Rows"),
	                 jnum(rc, "Plan Rows"), jnum(rc, "Actual Rows"));
	scry__buf_printf(b, "; buffers %.0f -> %.0f; execution %.3f -> %.3f ms", a->buffers, c->buffers, a->exec_ms,
	                 c->exec_ms);
}

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* Percentile (0..1) of sorted values, linear interpolation between ranks. */
static double quantile(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)h;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

/*
 * Sign-test confidence interval of a median: the k-th smallest and k-th
 * largest of n sorted values, with k the largest such that
 * P(Binomial(n, 1/2) < k) <= alpha/2. Returns k (1-based), 0 when n is too
 * small for any interval at this confidence.
 */
static size_t sign_test_k(size_t n, double alpha)
{
	if (n == 0)
		return 0;
	double cdf = 0, ln2n = (double)n * log(2.0);
	size_t k = 0;
	for (size_t i = 0; i <= n / 2; i++) {
		double lp = lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) - ln2n;
		cdf += exp(lp); /* P(X <= i) */
		if (cdf > alpha / 2)
			break;
		k = i + 1;
	}
	return k;
}

/* ------------------------------------------------------------------ */
/* The verdict                                                         */
/* ------------------------------------------------------------------ */

struct scry_verdict {
	scry_pattern_verdict *items;
	size_t n;
	size_t failures;
	scry_verdict_options opts;
	char *baseline_label, *candidate_label;
	int64_t baseline_run, candidate_run;
};

/* One (event, round) of a pattern, with what each side measured. */
typedef struct obs {
	int32_t pat;       /* index into the pattern table */
	uint8_t has_b, has_c;
	int64_t event;
	int32_t round;
	double b_ms, c_ms;
	int64_t b_rows, c_rows;
	char b_state[6], c_state[6];
} obs;

typedef struct pat_row {
	int64_t id;
	uint64_t fingerprint;
	char *normalized;
	int64_t count;
	double mean_ms;
} pat_row;

typedef struct sample_row {
	int64_t event, pattern, rows;
	int32_t round;
	double ms;
	char state[6];
} sample_row;

const char *scry_verdict_class_name(scry_verdict_class c)
{
	static const char *const names[] = { "unchanged", "regressed", "improved", "new-error",
		                             "rows-changed", "only-in-candidate", "insufficient-samples" };
	return (unsigned)c < 7 ? names[c] : "unknown";
}

void scry_verdict_options_init(scry_verdict_options *o)
{
	*o = (scry_verdict_options)SCRY_VERDICT_OPTIONS_INIT;
}

/* Logs through the caller's callback (scry__log does the formatting). */
#define vlog(o, level, ...) scry__log((o)->log, (o)->log_ctx, level, __VA_ARGS__)

static char *dup_buf(scry_buf *b)
{
	char *s = scry__strdup(b->ptr ? b->ptr : "");
	scry_buf_dispose(b);
	return s;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
	scry_buf b = SCRY_BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	scry__buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return dup_buf(&b);
}

/* Reads every sample of a run, ordered by event and round. */
static int load_samples(scry_store *store, int64_t run, sample_row **out, size_t *n, scry_error *err)
{
	sqlite3 *db = scry__store_db(store);
	sqlite3_stmt *q;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db,
	                       "SELECT x.event, st.pattern, x.round, x.latency_us, x.rows, x.sqlstate"
	                       " FROM samples x JOIN events e ON e.id = x.event JOIN statements st ON st.id = e.statement"
	                       " WHERE x.run = ? ORDER BY x.event, x.round",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(store, err, "reading samples");
	sqlite3_bind_int64(q, 1, run);
	size_t cap = 0;
	int r;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 4096)) {
			sqlite3_finalize(q);
			return scry__fail(err, SCRY_ENOMEM, "out of memory reading samples");
		}
		sample_row *s = &(*out)[(*n)++];
		s->event = sqlite3_column_int64(q, 0);
		s->pattern = sqlite3_column_int64(q, 1);
		s->round = sqlite3_column_int(q, 2);
		s->ms = (double)sqlite3_column_int64(q, 3) / 1000.0;
		s->rows = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 4);
		const unsigned char *st = sqlite3_column_text(q, 5);
		s->state[0] = 0;
		if (st)
			snprintf(s->state, sizeof s->state, "%s", st);
	}
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(store, err, "reading samples");
	return 0;
}

static int load_patterns(scry_store *store, pat_row **out, size_t *n, scry_error *err)
{
	sqlite3 *db = scry__store_db(store);
	sqlite3_stmt *q;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT id, fingerprint, normalized, count, total_us, timed FROM patterns ORDER BY id",
	                       -1, &q, NULL) != SQLITE_OK)
		return scry__store_fail(store, err, "reading patterns");
	size_t cap = 0;
	int r;
	while ((r = sqlite3_step(q)) == SQLITE_ROW) {
		if (scry__array_grow((void **)out, &cap, *n, sizeof **out, 256)) {
			sqlite3_finalize(q);
			return scry__fail(err, SCRY_ENOMEM, "out of memory reading patterns");
		}
		pat_row *p = &(*out)[(*n)++];
		p->id = sqlite3_column_int64(q, 0);
		p->fingerprint = (uint64_t)sqlite3_column_int64(q, 1);
		const char *t = (const char *)sqlite3_column_text(q, 2);
		p->normalized = scry__strdup(t ? t : "");
		p->count = sqlite3_column_int64(q, 3);
		int64_t timed = sqlite3_column_int64(q, 5);
		p->mean_ms = timed > 0 ? (double)sqlite3_column_int64(q, 4) / (double)timed / 1000.0 : 0;
	}
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return scry__store_fail(store, err, "reading patterns");
	return 0;
}

/* Binary search of a pattern id in the id-ordered table; -1 when absent. */
static int32_t pattern_index(const pat_row *p, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && p[lo].id == id ? (int32_t)lo : -1;
}

/* Merges both runs' samples (each ordered by event, round) into observations. */
static int merge_samples(const sample_row *b, size_t nb, const sample_row *c, size_t nc, const pat_row *pats,
                         size_t npats, obs **out, size_t *nout)
{
	obs *o = scry__malloc((nb + nc + 1) * sizeof *o);
	if (!o)
		return SCRY_ENOMEM;
	size_t i = 0, j = 0, k = 0;
	while (i < nb || j < nc) {
		int order;
		if (i >= nb)
			order = 1;
		else if (j >= nc)
			order = -1;
		else if (b[i].event != c[j].event)
			order = b[i].event < c[j].event ? -1 : 1;
		else
			order = b[i].round < c[j].round ? -1 : b[i].round > c[j].round;
		const sample_row *s = order <= 0 ? &b[i] : &c[j];
		obs *x = &o[k];
		memset(x, 0, sizeof *x);
		x->pat = pattern_index(pats, npats, s->pattern);
		x->event = s->event;
		x->round = s->round;
		if (order <= 0) {
			x->has_b = 1;
			x->b_ms = b[i].ms;
			x->b_rows = b[i].rows;
			memcpy(x->b_state, b[i].state, 6);
			i++;
		}
		if (order >= 0) {
			x->has_c = 1;
			x->c_ms = c[j].ms;
			x->c_rows = c[j].rows;
			memcpy(x->c_state, c[j].state, 6);
			j++;
		}
		if (x->pat >= 0)
			k++;
	}
	*out = o;
	*nout = k;
	return 0;
}

/* Counting sort of observations by pattern, keeping (event, round) order within one. */
static int group_by_pattern(obs **o, size_t n, size_t npats, size_t **start_out)
{
	size_t *start = scry__calloc(npats + 1, sizeof *start);
	obs *sorted = scry__malloc((n + 1) * sizeof *sorted);
	if (!start || !sorted) {
		scry__free(start);
		scry__free(sorted);
		return SCRY_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		start[(*o)[i].pat + 1]++;
	for (size_t p = 0; p < npats; p++)
		start[p + 1] += start[p];
	size_t *pos = scry__malloc((npats + 1) * sizeof *pos);
	if (!pos) {
		scry__free(start);
		scry__free(sorted);
		return SCRY_ENOMEM;
	}
	memcpy(pos, start, (npats + 1) * sizeof *pos);
	for (size_t i = 0; i < n; i++)
		sorted[pos[(*o)[i].pat]++] = (*o)[i];
	scry__free(pos);
	scry__free(*o);
	*o = sorted;
	*start_out = start;
	return 0;
}

/* Most frequent non-empty SQLSTATE among candidate failures that baseline did not have. */
static void common_state(const obs *o, size_t n, bool candidate, char out[6])
{
	out[0] = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		const char *s = candidate ? o[i].c_state : o[i].b_state;
		if (!*s || !strcmp(s, out))
			continue;
		size_t cnt = 0;
		for (size_t j = i; j < n; j++)
			cnt += !strcmp(candidate ? o[j].c_state : o[j].b_state, s);
		if (cnt > best) {
			best = cnt;
			memcpy(out, s, 6);
		}
	}
}

/* Statistics and class of one pattern from its observations. */
static int judge(scry_pattern_verdict *pv, const obs *o, size_t n, const scry_verdict_options *opts, double *scratch)
{
	double *bl = scratch, *cl = scratch + n, *lr = scratch + 2 * n;
	size_t nb = 0, nc = 0, np = 0;
	for (size_t i = 0; i < n; i++) {
		const obs *x = &o[i];
		bool bok = x->has_b && !x->b_state[0], cok = x->has_c && !x->c_state[0];
		pv->baseline_n += x->has_b;
		pv->candidate_n += x->has_c;
		pv->baseline_errors += x->has_b && !bok;
		pv->candidate_errors += x->has_c && !cok;
		if (bok)
			bl[nb++] = x->b_ms;
		if (cok)
			cl[nc++] = x->c_ms;
		if (x->has_b && x->has_c && bok && !cok)
			pv->new_failures++;
		if (bok && cok) {
			/* 1 us floor: a 0 us reading (coarse clocks) must not give log(0). */
			lr[np++] = log(fmax(x->c_ms, 0.001) / fmax(x->b_ms, 0.001));
			if (x->b_rows >= 0 && x->c_rows >= 0 && x->b_rows != x->c_rows)
				pv->rows_differ++;
		}
	}
	pv->pairs = (int64_t)np;
	qsort(bl, nb, sizeof *bl, cmp_double);
	qsort(cl, nc, sizeof *cl, cmp_double);
	qsort(lr, np, sizeof *lr, cmp_double);
	pv->baseline_p50_ms = quantile(bl, nb, 0.5);
	pv->baseline_p95_ms = quantile(bl, nb, 0.95);
	pv->baseline_p99_ms = quantile(bl, nb, 0.99);
	pv->candidate_p50_ms = quantile(cl, nc, 0.5);
	pv->candidate_p95_ms = quantile(cl, nc, 0.95);
	pv->candidate_p99_ms = quantile(cl, nc, 0.99);
	double delta = pv->candidate_p50_ms - pv->baseline_p50_ms;
	if (nb && nc)
		pv->impact_ms = (double)pv->executions * delta;
	pv->ratio = nb && nc && pv->baseline_p50_ms > 0 ? pv->candidate_p50_ms / pv->baseline_p50_ms : 0;
	pv->ratio_low = 0;
	pv->ratio_high = INFINITY;
	size_t k = sign_test_k(np, CONFIDENCE_ALPHA);
	if (np && k) {
		pv->ratio_low = exp(lr[k - 1]);
		pv->ratio_high = exp(lr[np - k]);
	} else if (nb && nc && np < (size_t)opts->min_samples) {
		/* Unpaired runs (different workloads): combine each side's median interval. */
		size_t kb = sign_test_k(nb, CONFIDENCE_ALPHA / 2), kc = sign_test_k(nc, CONFIDENCE_ALPHA / 2);
		if (kb && kc && bl[nb - kb] > 0)
			pv->ratio_low = cl[kc - 1] / bl[nb - kb];
		if (kb && kc && bl[kb - 1] > 0)
			pv->ratio_high = cl[nc - kc] / bl[kb - 1];
	}

	char st[6];
	if (nb == 0 && nc > 0 && pv->baseline_errors > 0) {
		common_state(o, n, false, st);
		/* Class 42 (undefined column/table/function...) and 3F (schema): the migration creates it. */
		if (!strncmp(st, "42", 2) || !strncmp(st, "3F", 2)) {
			pv->cls = SCRY_CLASS_ONLY_IN_CANDIDATE;
			pv->baseline_sqlstate = scry__strdup(st);
			pv->note = dup_printf("fails on baseline (SQLSTATE %s) and succeeds on candidate: needs a connection "
			                      "to the candidate to be judged against its best indexes", st);
			return 0;
		}
	}
	if (pv->new_failures > 0 && pv->candidate_errors > pv->baseline_errors) {
		pv->cls = SCRY_CLASS_NEW_ERROR;
		pv->flagged = 1;
		common_state(o, n, true, st);
		pv->candidate_sqlstate = scry__strdup(st);
		pv->note = dup_printf("%lld of %lld executions that succeed on baseline fail on candidate (SQLSTATE %s)",
		                      (long long)pv->new_failures, (long long)(pv->baseline_n - pv->baseline_errors), st);
		return 0;
	}
	bool enough = np >= (size_t)opts->min_samples ||
	              (np == 0 && nb >= (size_t)opts->min_samples && nc >= (size_t)opts->min_samples);
	if (!enough) {
		pv->cls = SCRY_CLASS_INSUFFICIENT;
		pv->note = dup_printf("%zu paired successful executions; %d needed", np, opts->min_samples);
		return 0;
	}
	if (pv->ratio_low > opts->threshold && delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_REGRESSED;
		pv->flagged = 1;
	} else if (pv->rows_differ > 0) {
		pv->cls = SCRY_CLASS_ROWS_CHANGED;
		pv->note = dup_printf("%lld of %zu paired executions return a different number of rows",
		                      (long long)pv->rows_differ, np);
	} else if (pv->ratio_high < 1.0 / opts->threshold && -delta > opts->min_delta_ms) {
		pv->cls = SCRY_CLASS_IMPROVED;
	} else {
		pv->cls = SCRY_CLASS_UNCHANGED;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Plans, error messages and best indexes (need connections)           */
/* ------------------------------------------------------------------ */

typedef struct stored_exec {
	int64_t id;
	char *query;
	int nparams;
	Oid *types;
	char **values;
	int *lengths, *formats;
} stored_exec;

static void exec_free(stored_exec *e)
{
	if (!e)
		return;
	for (int i = 0; i < e->nparams; i++)
		scry__free(e->values[i]);
	scry__free(e->query);
	scry__free(e->types);
	scry__free(e->values);
	scry__free(e->lengths);
	scry__free(e->formats);
	memset(e, 0, sizeof *e);
}

/* Reads up to `max` captured executions of a pattern, preferring `first_event` first. */
static int load_execs(scry_store *store, uint64_t fp, size_t max, stored_exec **out, size_t *n, scry_error *err)
{
	scry_event_filter f = SCRY_EVENT_FILTER_INIT;
	f.fingerprints = &fp;
	f.nfingerprints = 1;
	scry_event_iter *it;
	*out = NULL;
	*n = 0;
	int rc = scry_store_events(store, &f, &it, err);
	if (rc)
		return rc;
	stored_exec *v = scry__calloc(max ? max : 1, sizeof *v);
	if (!v) {
		scry_event_iter_free(it);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	const scry_stored_event *ev;
	while (*n < max && (rc = scry_event_iter_next(it, &ev, err)) == 1) {
		stored_exec *e = &v[*n];
		e->id = ev->id;
		e->query = scry__strndup(ev->query, ev->query_len);
		e->nparams = ev->nparams;
		if (ev->nparams > 0) {
			e->types = scry__calloc((size_t)ev->nparams, sizeof *e->types);
			e->values = scry__calloc((size_t)ev->nparams, sizeof *e->values);
			e->lengths = scry__calloc((size_t)ev->nparams, sizeof *e->lengths);
			e->formats = scry__calloc((size_t)ev->nparams, sizeof *e->formats);
		}
		(*n)++;
		if (!e->query || (ev->nparams > 0 && (!e->types || !e->values || !e->lengths || !e->formats))) {
			rc = SCRY_ENOMEM;
			break;
		}
		for (int i = 0; i < ev->nparams; i++) {
			const scry_param *p = &ev->params[i];
			e->types[i] = p->type_oid;
			e->formats[i] = p->format == SCRY_PARAM_BINARY;
			e->lengths[i] = p->length < 0 ? 0 : p->length;
			if (p->value && !(e->values[i] = scry__strndup(p->value, (size_t)(p->length < 0 ? 0 : p->length)))) {
				rc = SCRY_ENOMEM;
				break;
			}
		}
		if (rc < 0)
			break;
	}
	scry_event_iter_free(it);
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			exec_free(&v[i]);
		scry__free(v);
		*n = 0;
		return rc == SCRY_ENOMEM ? scry__fail(err, rc, "out of memory") : rc;
	}
	*out = v;
	return 0;
}

/* Runs `prefix` + the execution's text with its parameters. */
static PGresult *run_exec(PGconn *conn, const char *prefix, const stored_exec *e)
{
	scry_buf sql = SCRY_BUF_INIT;
	scry__buf_puts(&sql, prefix);
	scry__buf_puts(&sql, e->query);
	PGresult *r = PQexecParams(conn, sql.ptr, e->nparams, e->types, (const char *const *)e->values, e->lengths,
	                           e->formats, 0);
	scry_buf_dispose(&sql);
	return r;
}

static bool exec_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	PQclear(r);
	return ok;
}

static PGconn *connect_side(const char *conninfo, const scry_verdict_options *opts, const char *side)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		char msg[300];
		scry__pg_one_line(PQerrorMessage(c), msg, sizeof msg);
		vlog(opts, SCRY_LOG_WARNING, "cannot connect to the %s for plans: %s", side, msg);
		PQfinish(c);
		return NULL;
	}
	return c;
}

/*
 * EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) of one execution inside
 * BEGIN ... ROLLBACK. Returns the JSON (caller frees) or NULL, with the
 * server's message in *msg (caller frees) when it failed.
 */
static char *explain(PGconn *conn, const stored_exec *e, char **msg)
{
	*msg = NULL;
	if (!exec_ok(conn, "BEGIN") || !exec_ok(conn, "SET LOCAL statement_timeout = '60s'")) {
		char m[1024];
		scry__pg_result_message(NULL, conn, m, sizeof m);
		*msg = scry__strdup(m);
		exec_ok(conn, "ROLLBACK");
		return NULL;
	}
	PGresult *r = run_exec(conn, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ", e);
	char *json = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
		json = scry__strdup(PQgetvalue(r, 0, 0));
	} else {
		char m[1024];
		scry__pg_result_message(r, conn, m, sizeof m);
		*msg = scry__strdup(m);
	}
	PQclear(r);
	exec_ok(conn, "ROLLBACK");
	return json;
}

static void set_plan(scry_pattern_verdict *pv, const char *json_a, const char *json_c)
{
	plan_info a, c;
	bool ha = json_a && !plan_parse(json_a, &a), hc = json_c && !plan_parse(json_c, &c);
	scry_buf b = SCRY_BUF_INIT;
	if (ha) {
		plan_text(&b, &a);
		pv->baseline_plan = dup_buf(&b);
	}
	if (hc) {
		plan_text(&b, &c);
		pv->candidate_plan = dup_buf(&b);
	}
	if (ha && hc) {
		plan_diff(&b, &a, &c);
		pv->plan_change = dup_buf(&b);
	}
	if (ha)
		plan_info_free(&a);
	if (hc)
		plan_info_free(&c);
}

/* Plans of a regressed pattern on both sides, stored in `plans`. */
static void root_cause(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *ca, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	scry_error e = SCRY_ERROR_INIT;
	if (load_execs(store, pv->fingerprint, 1, &ex, &n, &e) || n == 0) {
		vlog(&v->opts, SCRY_LOG_WARNING, "no captured execution to explain: %s", e.message);
		return;
	}
	char *ma = NULL, *mc = NULL;
	char *ja = explain(ca, &ex[0], &ma);
	char *jc = explain(cc, &ex[0], &mc);
	if (ja)
		scry_store_plan_put(store, v->baseline_run, pv->fingerprint, ex[0].id, ja, NULL);
	if (jc)
		scry_store_plan_put(store, v->candidate_run, pv->fingerprint, ex[0].id, jc, NULL);
	if (!ja || !jc)
		vlog(&v->opts, SCRY_LOG_WARNING, "EXPLAIN failed: %s", ma ? ma : mc ? mc : "");
	set_plan(pv, ja, jc);
	scry__free(ja);
	scry__free(jc);
	scry__free(ma);
	scry__free(mc);
	exec_free(&ex[0]);
	scry__free(ex);
}

/* The candidate's message for a new error, from one failing execution. */
static void error_message(scry_store *store, scry_pattern_verdict *pv, PGconn *cc)
{
	stored_exec *ex;
	size_t n;
	if (load_execs(store, pv->fingerprint, 50, &ex, &n, NULL))
		return;
	for (size_t i = 0; i < n && !pv->candidate_error; i++) {
		char *msg = NULL;
		if (!exec_ok(cc, "BEGIN")) {
			exec_ok(cc, "ROLLBACK");
			break;
		}
		PGresult *r = run_exec(cc, "", &ex[i]);
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
			char m[1024];
			scry__pg_result_message(r, cc, m, sizeof m);
			msg = scry__strdup(m);
		}
		PQclear(r);
		exec_ok(cc, "ROLLBACK");
		pv->candidate_error = msg;
	}
	for (size_t i = 0; i < n; i++)
		exec_free(&ex[i]);
	scry__free(ex);
}

/* quote_ident() by the server itself: quotes only when needed (keywords included). */
static void quote_ident(PGconn *conn, scry_buf *b, const char *id)
{
	const char *params[1] = { id };
	PGresult *r = PQexecParams(conn, "SELECT quote_ident($1)", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		scry__buf_puts(b, PQgetvalue(r, 0, 0));
	} else {
		char *q = PQescapeIdentifier(conn, id, strlen(id));
		scry__buf_puts(b, q ? q : id);
		PQfreemem(q);
	}
	PQclear(r);
}

/* Is `w` a column of `cols` (a NUL-separated list)? */
static bool is_column(const char *cols, size_t ncols, const char *w)
{
	const char *p = cols;
	for (size_t i = 0; i < ncols; i++, p += strlen(p) + 1)
		if (!strcmp(p, w))
			return true;
	return false;
}

/*
 * Columns of `rel` named in a Seq Scan's Filter text, in order, deduplicated,
 * checked against the catalog (so casts, functions and literals drop out).
 */
static int filter_columns(PGconn *conn, const char *schema, const char *rel, const char *filter, scry_buf *cols_out,
                          int max_cols)
{
	scry_buf oid = SCRY_BUF_INIT;
	if (schema) { /* absent without VERBOSE: the name then resolves through search_path */
		quote_ident(conn, &oid, schema);
		scry__buf_puts(&oid, ".");
	}
	quote_ident(conn, &oid, rel);
	const char *params[1] = { oid.ptr };
	PGresult *r = PQexecParams(conn,
	                           "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
	                           " AND NOT attisdropped",
	                           1, NULL, params, NULL, NULL, 0);
	scry_buf_dispose(&oid);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return 0;
	}
	scry_buf all = SCRY_BUF_INIT;
	size_t ncols = (size_t)PQntuples(r);
	for (size_t i = 0; i < ncols; i++)
		scry__buf_put(&all, PQgetvalue(r, (int)i, 0), strlen(PQgetvalue(r, (int)i, 0)) + 1);
	PQclear(r);
	int found = 0;
	scry_buf seen = SCRY_BUF_INIT; /* NUL-separated, as in `all` */
	const char *p = filter;
	while (*p && found < max_cols) {
		if (*p == '\'') { /* skip a literal */
			for (p++; *p && !(*p == '\'' && p[1] != '\''); p += (*p == '\'' ? 2 : 1))
				;
			if (*p)
				p++;
			continue;
		}
		char word[128];
		size_t wl = 0;
		bool after_cast = p >= filter + 2 && p[-1] == ':' && p[-2] == ':';
		if (*p == '"') {
			for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"' ? 2 : 1))
				if (wl + 1 < sizeof word)
					word[wl++] = *p;
			if (*p)
				p++;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
			       *p == '$')
				if (wl + 1 < sizeof word)
					word[wl++] = *p++;
				else
					p++;
		} else {
			p++;
			continue;
		}
		word[wl] = 0;
		if (*p == '.' || *p == '(' || after_cast) /* a qualifier, a function, or a type */
			continue;
		if (wl && all.ptr && is_column(all.ptr, ncols, word) && !(seen.ptr && is_column(seen.ptr, (size_t)found, word))) {
			scry__buf_put(&seen, word, wl + 1);
			if (found)
				scry__buf_puts(cols_out, ", ");
			quote_ident(conn, cols_out, word);
			found++;
		}
	}
	scry_buf_dispose(&all);
	scry_buf_dispose(&seen);
	return found;
}

/* Times each execution `rounds` times inside savepoints; latencies in ms appended to out. */
static int time_execs(PGconn *conn, const stored_exec *ex, size_t n, int rounds, double *out)
{
	int k = 0;
	for (int r = 0; r < rounds; r++)
		for (size_t i = 0; i < n; i++) {
			if (!exec_ok(conn, "SAVEPOINT scry_best"))
				return -1;
			int64_t t0 = scry__monotonic_us();
			PGresult *res = run_exec(conn, "", &ex[i]);
			int64_t t1 = scry__monotonic_us();
			ExecStatusType st = PQresultStatus(res);
			PQclear(res);
			if (!exec_ok(conn, "ROLLBACK TO SAVEPOINT scry_best"))
				return -1;
			out[k++] = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ? (double)(t1 - t0) / 1000.0 : NAN;
		}
	return k;
}

/*
 * Judges a pattern that only works on the candidate against its best:
 * the indexes its plan lacks are created inside a transaction, the same
 * executions are timed without and with them, and the transaction is
 * rolled back so the candidate is unchanged.
 */
static void best_index(scry_verdict *v, scry_store *store, scry_pattern_verdict *pv, PGconn *cc)
{
	const scry_verdict_options *opts = &v->opts;
	stored_exec *ex = NULL;
	size_t n = 0;
	plan_info pi;
	bool have_plan = false;
	char *msg = NULL, *json = NULL;
	scry_buf ddl = SCRY_BUF_INIT;
	double *t = NULL;
	if (load_execs(store, pv->fingerprint, BEST_EVENTS, &ex, &n, NULL) || n == 0)
		goto done;
	json = explain(cc, &ex[0], &msg);
	if (!json) {
		vlog(opts, SCRY_LOG_WARNING, "EXPLAIN on the candidate failed: %s", msg ? msg : "");
		goto done;
	}
	scry_store_plan_put(store, v->candidate_run, pv->fingerprint, ex[0].id, json, NULL);
	if (plan_parse(json, &pi))
		goto done;
	have_plan = true;
	scry_buf b = SCRY_BUF_INIT;
	plan_text(&b, &pi);
	pv->candidate_plan = dup_buf(&b);
	/* One index per relation that a Seq Scan filters: its filter's columns, composite when several. */
	for (size_t i = 0; i < pi.n; i++) {
		const jval *o = pi.nodes[i].o;
		const char *type = jstr(o, "Node Type"), *rel = jstr(o, "Relation Name"), *filter = jstr(o, "Filter");
		if (!type || strcmp(type, "Seq Scan") || !rel || !filter)
			continue;
		scry_buf cols = SCRY_BUF_INIT;
		if (filter_columns(cc, jstr(o, "Schema"), rel, filter, &cols, 3) > 0) {
			const char *schema = jstr(o, "Schema");
			scry__buf_puts(&ddl, ddl.size ? "; CREATE INDEX ON " : "CREATE INDEX ON ");
			if (schema) {
				quote_ident(cc, &ddl, schema);
				scry__buf_puts(&ddl, ".");
			}
			quote_ident(cc, &ddl, rel);
			scry__buf_printf(&ddl, " (%s)", cols.ptr);
		}
		scry_buf_dispose(&cols);
	}
	if (!ddl.size) {
		scry__free((char *)pv->note);
		pv->note = dup_printf("fails on baseline (SQLSTATE %s); on candidate its plan has no filtered sequential "
		                      "scan, so it is at its best",
		                      pv->baseline_sqlstate ? pv->baseline_sqlstate : "?");
		goto done;
	}
	t = scry__calloc(2 * n * BEST_ROUNDS, sizeof *t);
	if (!t || !exec_ok(cc, "BEGIN") || !exec_ok(cc, "SET LOCAL statement_timeout = '60s'"))
		goto fail;
	int k1 = time_execs(cc, ex, n, BEST_ROUNDS, t);
	bool created = k1 > 0 && exec_ok(cc, ddl.ptr);
	if (!created) {
		char m[1024];
		scry__pg_result_message(NULL, cc, m, sizeof m);
		vlog(opts, SCRY_LOG_WARNING, "could not create %s: %s", ddl.ptr, m);
		goto fail;
	}
	int k2 = time_execs(cc, ex, n, BEST_ROUNDS, t + k1);
	exec_ok(cc, "ROLLBACK");
	if (k2 != k1)
		goto done;
	/* Paired like a run: the same execution without and with the index. */
	double *bl, *cl;
	double *tmp = scry__calloc(3 * (size_t)k1, sizeof *tmp);
	if (!tmp)
		goto done;
	bl = tmp;
	cl = tmp + k1;
	double *lr = tmp + 2 * (size_t)k1;
	size_t np = 0;
	for (int i = 0; i < k1; i++)
		if (!isnan(t[i]) && !isnan(t[k1 + i])) {
			cl[np] = t[i];
			bl[np] = t[k1 + i];
			lr[np] = log(fmax(t[i], 0.001) / fmax(t[k1 + i], 0.001));
			np++;
		}
	if (np) {
		qsort(bl, np, sizeof *bl, cmp_double);
		qsort(cl, np, sizeof *cl, cmp_double);
		qsort(lr, np, sizeof *lr, cmp_double);
		pv->best_p50_ms = quantile(bl, np, 0.5);
		pv->unindexed_p50_ms = quantile(cl, np, 0.5);
		pv->ratio = pv->best_p50_ms > 0 ? pv->unindexed_p50_ms / pv->best_p50_ms : 0;
		size_t k = sign_test_k(np, CONFIDENCE_ALPHA);
		pv->ratio_low = k ? exp(lr[k - 1]) : 0;
		pv->ratio_high = k ? exp(lr[np - k]) : INFINITY;
		double delta = pv->unindexed_p50_ms - pv->best_p50_ms;
		pv->suggested_index = scry__strdup(ddl.ptr);
		pv->flagged = pv->ratio_low > opts->threshold && delta > opts->min_delta_ms;
		scry__free((char *)pv->note);
		pv->note = dup_printf("%s: p50 %.3f ms as migrated vs %.3f ms with %s", pv->flagged ? "slower than its best"
		                                                                                   : "at its best",
		                      pv->unindexed_p50_ms, pv->best_p50_ms, ddl.ptr);
	}
	scry__free(tmp);
	goto done;
fail:
	exec_ok(cc, "ROLLBACK");
done:
	if (have_plan)
		plan_info_free(&pi);
	scry__free(t);
	scry__free(json);
	scry__free(msg);
	scry_buf_dispose(&ddl);
	for (size_t i = 0; i < n; i++)
		exec_free(&ex[i]);
	scry__free(ex);
}

/* ------------------------------------------------------------------ */

static int class_rank(const scry_pattern_verdict *p)
{
	if (p->flagged)
		return p->cls == SCRY_CLASS_NEW_ERROR ? 0 : 1;
	switch (p->cls) {
	case SCRY_CLASS_ROWS_CHANGED: return 2;
	case SCRY_CLASS_ONLY_IN_CANDIDATE: return 3;
	case SCRY_CLASS_INSUFFICIENT: return 4;
	case SCRY_CLASS_UNCHANGED: return 5;
	case SCRY_CLASS_IMPROVED: return 6;
	default: return 7;
	}
}

/* Worst first: failures, then by total time impact, then ratio. */
static int cmp_verdict(const void *x, const void *y)
{
	const scry_pattern_verdict *a = x, *b = y;
	int ra = class_rank(a), rb = class_rank(b);
	if (ra != rb)
		return ra - rb;
	if (a->impact_ms != b->impact_ms)
		return a->impact_ms > b->impact_ms ? -1 : 1;
	if (a->ratio != b->ratio)
		return a->ratio > b->ratio ? -1 : 1;
	return a->fingerprint < b->fingerprint ? -1 : a->fingerprint > b->fingerprint;
}

static void pattern_free_strings(scry_pattern_verdict *p)
{
	scry__free((char *)p->normalized);
	scry__free((char *)p->candidate_sqlstate);
	scry__free((char *)p->candidate_error);
	scry__free((char *)p->plan_change);
	scry__free((char *)p->baseline_plan);
	scry__free((char *)p->candidate_plan);
	scry__free((char *)p->suggested_index);
	scry__free((char *)p->baseline_sqlstate);
	scry__free((char *)p->note);
}

void scry_verdict_free(scry_verdict *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		pattern_free_strings(&v->items[i]);
	scry__free(v->items);
	scry__free(v->baseline_label);
	scry__free(v->candidate_label);
	scry__free(v);
}

int scry_verdict_compute(scry_verdict **out, scry_store *store, const char *baseline, const char *candidate,
                         const scry_verdict_options *opts, scry_error *err)
{
	if (!out || !store || !baseline || !candidate)
		return scry__fail(err, SCRY_EINVAL, "scry_verdict_compute: store and both labels are required");
	*out = NULL;
	scry_verdict_options o;
	int vrc = scry__opts_copy(err, &scry__abi_verdict_options, &o, opts);
	if (vrc)
		return vrc;
	if (!(o.threshold >= 1.0) || !(o.min_delta_ms >= 0) || !isfinite(o.threshold) || !isfinite(o.min_delta_ms))
		return scry__fail(err, SCRY_EINVAL, "threshold must be >= 1 and min_delta_ms >= 0 (got %g and %g)",
		                  o.threshold, o.min_delta_ms);
	if (o.min_samples < 1)
		o.min_samples = 1;
	o.baseline_conninfo = o.candidate_conninfo = NULL; /* not kept past the call */

	scry_verdict *v = scry__calloc(1, sizeof *v);
	if (!v)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	v->opts = o;
	v->baseline_label = scry__strdup(baseline);
	v->candidate_label = scry__strdup(candidate);
	sample_row *sb = NULL, *sc = NULL;
	pat_row *pats = NULL;
	obs *ob = NULL;
	size_t nsb = 0, nsc = 0, npats = 0, nob = 0, *start = NULL;
	double *scratch = NULL;
	PGconn *ca = NULL, *cc = NULL;
	int rc;
	if (!v->baseline_label || !v->candidate_label) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = scry_store_run_find(store, baseline, &v->baseline_run, err)) != 0 ||
	    (rc = scry_store_run_find(store, candidate, &v->candidate_run, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 0, 3);
	if ((rc = load_patterns(store, &pats, &npats, err)) != 0 ||
	    (rc = load_samples(store, v->baseline_run, &sb, &nsb, err)) != 0 ||
	    (rc = load_samples(store, v->candidate_run, &sc, &nsc, err)) != 0)
		goto out;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 1, 3);
	if (merge_samples(sb, nsb, sc, nsc, pats, npats, &ob, &nob) || group_by_pattern(&ob, nob, npats, &start)) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	scry__free(sb);
	scry__free(sc);
	sb = sc = NULL;
	size_t maxn = 0, npresent = 0;
	for (size_t p = 0; p < npats; p++) {
		size_t c = start[p + 1] - start[p];
		maxn = c > maxn ? c : maxn;
		npresent += c > 0;
	}
	scratch = scry__malloc((3 * maxn + 1) * sizeof *scratch);
	v->items = scry__calloc(npresent + 1, sizeof *v->items);
	if (!scratch || !v->items) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t p = 0; p < npats; p++) {
		size_t c = start[p + 1] - start[p];
		if (!c)
			continue;
		scry_pattern_verdict *pv = &v->items[v->n++];
		pv->fingerprint = pats[p].fingerprint;
		pv->normalized = pats[p].normalized;
		pats[p].normalized = NULL;
		pv->executions = pats[p].count;
		pv->captured_mean_ms = pats[p].mean_ms;
		judge(pv, ob + start[p], c, &o, scratch);
	}
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 2, 3);

	/* With connections: root causes, error messages, best indexes. */
	if (opts && opts->baseline_conninfo && opts->candidate_conninfo) {
		ca = connect_side(opts->baseline_conninfo, &o, "baseline");
		cc = connect_side(opts->candidate_conninfo, &o, "candidate");
	} else if (opts && opts->candidate_conninfo) {
		cc = connect_side(opts->candidate_conninfo, &o, "candidate");
	}
	for (size_t i = 0; i < v->n && cc; i++) {
		scry_pattern_verdict *pv = &v->items[i];
		if (pv->cls == SCRY_CLASS_REGRESSED && ca)
			root_cause(v, store, pv, ca, cc);
		else if (pv->cls == SCRY_CLASS_NEW_ERROR)
			error_message(store, pv, cc);
		else if (pv->cls == SCRY_CLASS_ONLY_IN_CANDIDATE)
			best_index(v, store, pv, cc);
	}
	qsort(v->items, v->n, sizeof *v->items, cmp_verdict);
	for (size_t i = 0; i < v->n; i++)
		v->failures += v->items[i].flagged != 0;
	if (o.progress)
		o.progress(o.progress_ctx, "verdict", 3, 3);
	rc = 0;
out:
	PQfinish(ca);
	PQfinish(cc);
	for (size_t i = 0; i < npats; i++)
		scry__free(pats[i].normalized);
	scry__free(pats);
	scry__free(sb);
	scry__free(sc);
	scry__free(ob);
	scry__free(start);
	scry__free(scratch);
	if (rc) {
		scry_verdict_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

size_t scry_verdict_count(const scry_verdict *v) { return v ? v->n : 0; }

const scry_pattern_verdict *scry_verdict_get(const scry_verdict *v, size_t i)
{
	return v && i < v->n ? &v->items[i] : NULL;
}

size_t scry_verdict_failures(const scry_verdict *v) { return v ? v->failures : 0; }

int scry_verdict_summarize(const scry_verdict *v, scry_verdict_summary *out)
{
	if (!out)
		return SCRY_EINVAL;
	scry_verdict_summary s;
	memset(&s, 0, sizeof s);
	if (v) {
		s.patterns = v->n;
		for (size_t i = 0; i < v->n; i++)
			if ((unsigned)v->items[i].cls < 7)
				s.by_class[v->items[i].cls]++;
		s.failures = v->failures;
		s.threshold = v->opts.threshold;
		s.min_delta_ms = v->opts.min_delta_ms;
		s.baseline_label = v->baseline_label;
		s.candidate_label = v->candidate_label;
		s.baseline_run = v->baseline_run;
		s.candidate_run = v->candidate_run;
	}
	return scry__out_copy(NULL, &scry__abi_verdict_summary, out, &s);
}
