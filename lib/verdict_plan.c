/*
 * lib/verdict_plan.c - the plan model of the verdict: a small JSON reader
 * for EXPLAIN (FORMAT JSON) output, a readable summary of a plan, and the
 * one-line diff of two plans (docs/verdict.md).
 */
#include "verdict_internal.h"
#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Small JSON reader for EXPLAIN (FORMAT JSON) output                  */
/* ------------------------------------------------------------------ */


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
			size_t k = scry__utf8_put(u, (unsigned)cp);
			scry__buf_put(&b, u, k);
			break;
		}
		default: scry__buf_put(&b, &c, 1); break; /* \" \\ \/ */
		}
	}
	if (j->p >= j->end || scry__buf_failed(&b))
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

const jval *scry__jget(const jval *o, const char *key)
{
	if (!o || o->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->keys[i], key))
			return &o->items[i];
	return NULL;
}

const char *scry__jstr(const jval *o, const char *key)
{
	const jval *v = scry__jget(o, key);
	return v && v->type == J_STR ? v->str : NULL;
}

double scry__jnum(const jval *o, const char *key)
{
	const jval *v = scry__jget(o, key);
	return v && v->type == J_NUM ? v->num : 0;
}

/* ------------------------------------------------------------------ */
/* Plan summaries and the plan diff                                    */
/* ------------------------------------------------------------------ */


static int plan_walk(plan_info *pi, const jval *o, int depth)
{
	if (!o || o->type != J_OBJ || depth > 100)
		return 0;
	if (scry__array_grow((void **)&pi->nodes, &pi->cap, pi->n, sizeof *pi->nodes, 16))
		return SCRY_ENOMEM;
	pi->nodes[pi->n++] = (plan_node){ o, depth };
	double loops = scry__jnum(o, "Actual Loops");
	pi->removed += (scry__jnum(o, "Rows Removed by Filter") + scry__jnum(o, "Rows Removed by Join Filter")) * (loops > 0 ? loops : 1);
	const jval *kids = scry__jget(o, "Plans");
	for (size_t i = 0; kids && kids->type == J_ARR && i < kids->n; i++) {
		int rc = plan_walk(pi, &kids->items[i], depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

void scry__plan_free(plan_info *pi)
{
	jfree(&pi->root);
	scry__free(pi->nodes);
	memset(pi, 0, sizeof *pi);
}

/* Parses EXPLAIN (FORMAT JSON) text. Returns 0, SCRY_EPARSE or SCRY_ENOMEM. */
int scry__plan_parse(const char *json, plan_info *pi)
{
	memset(pi, 0, sizeof *pi);
	jparser j = { json, json + strlen(json), 0 };
	if (jparse(&j, &pi->root)) {
		scry__plan_free(pi);
		return SCRY_EPARSE;
	}
	const jval *first = pi->root.type == J_ARR && pi->root.n ? &pi->root.items[0] : &pi->root;
	pi->top = scry__jget(first, "Plan");
	if (!pi->top) {
		scry__plan_free(pi);
		return SCRY_EPARSE;
	}
	pi->exec_ms = scry__jnum(first, "Execution Time");
	pi->plan_ms = scry__jnum(first, "Planning Time");
	pi->analyzed = scry__jget(pi->top, "Actual Rows") != NULL;
	pi->buffers = scry__jnum(pi->top, "Shared Hit Blocks") + scry__jnum(pi->top, "Shared Read Blocks");
	int rc = plan_walk(pi, pi->top, 0);
	if (rc)
		scry__plan_free(pi);
	return rc;
}

/* "Index Scan using orders_pkey on orders" / "Seq Scan on orders" / "Hash Join". */
static void node_label(scry_buf *b, const jval *o)
{
	const char *type = scry__jstr(o, "Node Type");
	const char *rel = scry__jstr(o, "Relation Name");
	const char *idx = scry__jstr(o, "Index Name");
	const jval *kids = scry__jget(o, "Plans");
	/* A bitmap heap scan names its index in its Bitmap Index Scan child. */
	if (!idx && kids && kids->type == J_ARR && kids->n == 1)
		idx = scry__jstr(&kids->items[0], "Index Name");
	scry__buf_puts(b, type ? type : "?");
	if (idx)
		scry__buf_printf(b, " using %s", idx);
	if (rel)
		scry__buf_printf(b, " on %s", rel);
}

/* Indented one-line-per-node summary a person can read. */
void scry__plan_text(scry_buf *b, const plan_info *pi)
{
	for (size_t i = 0; i < pi->n; i++) {
		const jval *o = pi->nodes[i].o;
		scry__buf_printf(b, "%*s", pi->nodes[i].depth * 2, "");
		node_label(b, o);
		double loops = scry__jnum(o, "Actual Loops");
		scry__buf_printf(b, " (est rows %.0f", scry__jnum(o, "Plan Rows"));
		if (pi->analyzed)
			scry__buf_printf(b, ", actual rows %.0f", scry__jnum(o, "Actual Rows"));
		if (loops > 1)
			scry__buf_printf(b, " x %.0f loops", loops);
		double removed = scry__jnum(o, "Rows Removed by Filter");
		if (removed > 0)
			scry__buf_printf(b, ", removed by filter %.0f", removed);
		double hit = scry__jnum(o, "Shared Hit Blocks"), rd = scry__jnum(o, "Shared Read Blocks");
		if (hit + rd > 0)
			scry__buf_printf(b, ", buffers hit %.0f read %.0f", hit, rd);
		scry__buf_puts(b, ")");
		const char *cond = scry__jstr(o, "Index Cond");
		const char *filter = scry__jstr(o, "Filter");
		if (cond)
			scry__buf_printf(b, " index cond: %s", cond);
		if (filter)
			scry__buf_printf(b, " filter: %s", filter);
		scry__buf_puts(b, "\n");
	}
	if (pi->analyzed)
		scry__buf_printf(b, "execution %.3f ms", pi->exec_ms);
	else
		scry__buf_printf(b, "estimated cost %.2f (EXPLAIN without ANALYZE)", scry__jnum(pi->top, "Total Cost"));
}

/* Finds the scan of relation `rel` in a plan (first in preorder). */
static const jval *scan_of(const plan_info *pi, const char *rel)
{
	for (size_t i = 0; i < pi->n; i++) {
		const char *r = scry__jstr(pi->nodes[i].o, "Relation Name");
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
void scry__plan_diff(scry_buf *b, const plan_info *a, const plan_info *c)
{
	size_t start = b->size;
	const jval *ra = a->top, *rc = c->top; /* whose rows to show: the first changed scan, else the tops */
	for (size_t i = 0; i < c->n; i++) {
		const jval *cn = c->nodes[i].o;
		const char *rel = scry__jstr(cn, "Relation Name");
		if (!rel || scan_of(c, rel) != cn)
			continue;
		const jval *an = scan_of(a, rel);
		if (!an)
			continue;
		const char *ta = scry__jstr(an, "Node Type"), *tc = scry__jstr(cn, "Node Type");
		const char *ia = scry__jstr(an, "Index Name"), *ic = scry__jstr(cn, "Index Name");
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
			const char *ta = scry__jstr(a->nodes[i].o, "Node Type"), *tc = scry__jstr(c->nodes[i].o, "Node Type");
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
	if (!a->analyzed || !c->analyzed) {
		scry__buf_printf(b, "; est rows %.0f -> %.0f; est cost %.2f -> %.2f", scry__jnum(ra, "Plan Rows"),
		                 scry__jnum(rc, "Plan Rows"), scry__jnum(a->top, "Total Cost"), scry__jnum(c->top, "Total Cost"));
		return;
	}
	scry__buf_printf(b, "; est/actual rows %.0f/%.0f -> %.0f/%.0f", scry__jnum(ra, "Plan Rows"), scry__jnum(ra, "Actual Rows"),
	                 scry__jnum(rc, "Plan Rows"), scry__jnum(rc, "Actual Rows"));
	scry__buf_printf(b, "; buffers %.0f -> %.0f; execution %.3f -> %.3f ms", a->buffers, c->buffers, a->exec_ms,
	                 c->exec_ms);
}

bool scry__plan_same_shape(const plan_info *a, const plan_info *c)
{
	if (a->n != c->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const char *ta = scry__jstr(a->nodes[i].o, "Node Type"), *tc = scry__jstr(c->nodes[i].o, "Node Type");
		const char *ia = scry__jstr(a->nodes[i].o, "Index Name"), *ic = scry__jstr(c->nodes[i].o, "Index Name");
		if (!ta != !tc || (ta && strcmp(ta, tc)) || !ia != !ic || (ia && strcmp(ia, ic)))
			return false;
	}
	return true;
}
