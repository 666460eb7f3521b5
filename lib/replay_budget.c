/*
 * lib/replay_budget.c - the replay budget: which captured events a budgeted
 * replay runs. A stratified sample chosen in streaming passes over the store
 * (memory grows with the sample and the number of patterns, not with the
 * number of events): per pattern, its executions are cut into as many
 * consecutive windows (in capture order) as it has places in the sample, and
 * each window gives one execution, preferably one whose parameter values were
 * not picked yet. Transactions are replayed whole, and the session-state
 * statements (SET, PREPARE, ...) of a replayed session come along.
 * See docs/pipeline.md, "Replay budget".
 */
#include "replay_workload.h"

#include <stdlib.h>
#include <xxhash.h>

/* What the first words of a statement make it, for the sampler. */
enum { TX_OTHER = 0, TX_BEGIN, TX_END, TX_STATE };

/* A transaction longer than this is not pulled in whole: its sampled statements run alone. */
#define MAX_TXN_EVENTS 1000
/* Session-state statements kept per session until the session is replayed. */
#define MAX_STATE_EVENTS 32
/* Estimated client round trip of one replayed execution, for budget_seconds. */
#define ROUND_TRIP_US 200.0

typedef struct bpat {
	int64_t id;
	int64_t present;  /* events of it in the store */
	int64_t captured; /* patterns.count (compaction keeps it) */
	int64_t quota, seen, sel_window;
	double mean_us;
	bool wanted;
} bpat;

typedef struct bstmt {
	uint32_t pat; /* index into pats + 1; 0 = unknown */
	uint8_t tx;
} bstmt;

/* An event of an open transaction: if the transaction is pulled in, it fills its pattern's window. */
typedef struct tev {
	int64_t id;
	uint32_t pat;     /* pats + 1; 0 = none */
	int64_t window;   /* its window in its pattern; -1 = none */
} tev;

typedef struct bsess {
	bool in_txn, txn_sel, txn_long, active;
	tev *txn;
	size_t ntxn, atxn;
	int64_t *state;
	size_t nstate, astate;
} bsess;

typedef struct sampler {
	bpat *pats;
	size_t npats, apats;
	scry__u64map pat_map;   /* pattern id -> pats + 1 */
	bstmt *stmts;           /* by statement id (ids are dense from 1) */
	size_t nstmts;
	bsess *sess;
	size_t nsess, asess;
	scry__u64map sess_map;  /* session id -> sess + 1 */
	scry__u64map values;    /* hash(pattern, literals, params) of picked events */
	int64_t *ids;
	size_t nids, aids;
} sampler;

static uint8_t tx_kind(const char *text)
{
	char w1[24], w2[24];
	const char *p = scry__sql_next_word(text, w1, sizeof w1);
	scry__sql_next_word(p, w2, sizeof w2);
	if (!strcmp(w1, "BEGIN") || !strcmp(w1, "START"))
		return TX_BEGIN;
	if ((!strcmp(w1, "COMMIT") || !strcmp(w1, "ROLLBACK")) && !strcmp(w2, "PREPARED"))
		return TX_OTHER;
	if (!strcmp(w1, "COMMIT") || !strcmp(w1, "END") || !strcmp(w1, "ABORT") ||
	    (!strcmp(w1, "ROLLBACK") && strcmp(w2, "TO")) || (!strcmp(w1, "PREPARE") && !strcmp(w2, "TRANSACTION")))
		return TX_END;
	if (!strcmp(w1, "SET") || !strcmp(w1, "RESET") || !strcmp(w1, "PREPARE") || !strcmp(w1, "DISCARD") ||
	    !strcmp(w1, "DEALLOCATE") || !strcmp(w1, "LISTEN") || !strcmp(w1, "UNLISTEN") || !strcmp(w1, "LOAD"))
		return TX_STATE;
	return TX_OTHER;
}

static void sampler_free(sampler *s)
{
	for (size_t i = 0; i < s->nsess; i++) {
		scry__free(s->sess[i].txn);
		scry__free(s->sess[i].state);
	}
	scry__free(s->sess);
	scry__free(s->pats);
	scry__free(s->stmts);
	scry__free(s->ids);
	scry__u64map_free(&s->pat_map);
	scry__u64map_free(&s->sess_map);
	scry__u64map_free(&s->values);
	memset(s, 0, sizeof *s);
}

static int pick(sampler *s, int64_t id)
{
	if (scry__array_grow((void **)&s->ids, &s->aids, s->nids, sizeof *s->ids, 1024))
		return SCRY_ENOMEM;
	s->ids[s->nids++] = id;
	return 0;
}

static int push_id(int64_t **arr, size_t *n, size_t *cap, int64_t id)
{
	if (scry__array_grow((void **)arr, cap, *n, sizeof **arr, 8))
		return SCRY_ENOMEM;
	(*arr)[(*n)++] = id;
	return 0;
}

/* Patterns (wanted ones: all, or o->fingerprints) and statements: what each is. */
static int load_dictionary(sampler *s, scry_store *store, const scry_replay_options *o, scry_error *err)
{
	scry__rows *q;
	int r, rc = scry__store_rows(store, SCRY__Q_PATTERNS, &q, err);
	if (rc)
		return rc;
	while ((r = scry__rows_next(q, err)) == 1) {
		if (scry__array_grow((void **)&s->pats, &s->apats, s->npats, sizeof *s->pats, 256) ||
		    scry__u64map_put(&s->pat_map, (uint64_t)scry__rows_int(q, 0), (uint32_t)s->npats + 1)) {
			scry__rows_free(q);
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		bpat *p = &s->pats[s->npats++];
		memset(p, 0, sizeof *p);
		p->id = scry__rows_int(q, 0);
		p->captured = scry__rows_int(q, 2);
		int64_t timed = scry__rows_int(q, 4);
		p->mean_us = timed ? (double)scry__rows_int(q, 3) / (double)timed : 0;
		p->sel_window = -1;
		uint64_t fp = (uint64_t)scry__rows_int(q, 1);
		p->wanted = !o->fingerprints;
		for (size_t i = 0; !p->wanted && i < o->nfingerprints; i++)
			p->wanted = o->fingerprints[i] == fp && !scry__rows_null(q, 1);
	}
	scry__rows_free(q);
	if (r < 0 || (rc = scry__store_rows(store, SCRY__Q_STATEMENTS, &q, err)))
		return r < 0 ? r : rc;
	while ((r = scry__rows_next(q, err)) == 1) {
		int64_t id = scry__rows_int(q, 0);
		if (id < 1 || id > INT32_MAX)
			continue;
		if (!s->stmts) { /* ids descending: the first is the largest */
			s->nstmts = (size_t)id + 1;
			if (!(s->stmts = scry__calloc(s->nstmts, sizeof *s->stmts))) {
				scry__rows_free(q);
				return scry__fail(err, SCRY_ENOMEM, "out of memory");
			}
		}
		bstmt *st = &s->stmts[id];
		st->pat = scry__u64map_get(&s->pat_map, (uint64_t)scry__rows_int(q, 1));
		size_t n;
		const char *t = scry__rows_blob(q, 2, &n);
		char head[201];
		snprintf(head, sizeof head, "%.*s", (int)(n < 200 ? n : 200), t ? t : "");
		st->tx = tx_kind(head);
	}
	scry__rows_free(q);
	return r < 0 ? r : 0;
}

static const bstmt *stmt_of(const sampler *s, int64_t id)
{
	static const bstmt none = { 0, TX_OTHER };
	return id > 0 && (size_t)id < s->nstmts ? &s->stmts[id] : &none;
}

/*
 * How many events of each pattern the store holds: the captured counts,
 * unless the store was compacted (which keeps the counts and deletes events):
 * then one pass over the events counts them.
 */
static int count_present(sampler *s, scry_store *store, scry_error *err)
{
	scry__rows *q;
	int r, rc = scry__store_rows(store, SCRY__Q_COMPACTED, &q, err);
	if (rc)
		return rc;
	r = scry__rows_next(q, err);
	scry__rows_free(q);
	if (r < 0)
		return r;
	if (r == 0) {
		for (size_t i = 0; i < s->npats; i++)
			s->pats[i].present = s->pats[i].captured;
		return 0;
	}
	if ((rc = scry__store_rows(store, SCRY__Q_EVENT_STATEMENT, &q, err)))
		return rc;
	while ((r = scry__rows_next(q, err)) == 1) {
		uint32_t p = stmt_of(s, scry__rows_int(q, 0))->pat;
		if (p)
			s->pats[p - 1].present++;
	}
	scry__rows_free(q);
	return r < 0 ? r : 0;
}

/*
 * Places per pattern: min(present, min_per_pattern) each, then the rest of
 * the budget in proportion to the captured counts (capped at what is
 * present). Returns the budget in executions: the one asked for, or the sum
 * of the minimums when they exceed it.
 */
static int64_t set_quotas(sampler *s, const scry_replay_options *o)
{
	int64_t min = o->min_per_pattern > 0 ? o->min_per_pattern : 1;
	int64_t base = 0, captured = 0, present = 0;
	double cost = 0;
	for (size_t i = 0; i < s->npats; i++) {
		bpat *p = &s->pats[i];
		if (!p->wanted || !p->present)
			continue;
		p->quota = p->present < min ? p->present : min;
		base += p->quota;
		int64_t c = p->captured > p->present ? p->captured : p->present;
		captured += c;
		present += p->present;
		cost += (double)c * ((p->mean_us > 0 ? p->mean_us : 1000.0) + ROUND_TRIP_US);
	}
	int64_t budget = o->budget > 0 ? o->budget : INT64_MAX;
	if (o->budget_seconds > 0 && captured > 0) {
		/* Both sides, every round, `concurrency` sessions at once. */
		double per_exec = cost / (double)captured * 2.0 * (double)(o->repeat + o->warmup) /
		                  (double)(o->concurrency > 0 ? o->concurrency : 1);
		double n = o->budget_seconds * 1e6 / per_exec;
		int64_t by_time = n >= 9e18 ? INT64_MAX : (int64_t)n;
		if (by_time < budget)
			budget = by_time;
	}
	int64_t asked = budget; /* what the report shows: the budget, not what the store could fill */
	if (budget > present)
		budget = present;
	int64_t rest = budget > base ? budget - base : 0;
	/* Twice: what a capped pattern could not take goes to the others. */
	for (int pass = 0; pass < 2 && rest > 0 && captured > 0; pass++) {
		int64_t given = 0, open_captured = 0;
		for (size_t i = 0; i < s->npats; i++) {
			bpat *p = &s->pats[i];
			if (p->wanted && p->quota < p->present)
				open_captured += p->captured > p->present ? p->captured : p->present;
		}
		if (!open_captured)
			break;
		for (size_t i = 0; i < s->npats; i++) {
			bpat *p = &s->pats[i];
			if (!p->wanted || p->quota >= p->present)
				continue;
			int64_t c = p->captured > p->present ? p->captured : p->present;
			int64_t add = (int64_t)((double)rest * (double)c / (double)open_captured);
			if (add > p->present - p->quota)
				add = p->present - p->quota;
			p->quota += add;
			given += add;
		}
		rest -= given;
	}
	/* What rounding down left (less than two per pattern): one more each to those that can take it. */
	for (bool gave = true; rest > 0 && gave;) {
		gave = false;
		for (size_t i = 0; i < s->npats && rest > 0; i++) {
			bpat *p = &s->pats[i];
			if (p->wanted && p->quota < p->present) {
				p->quota++;
				rest--;
				gave = true;
			}
		}
	}
	return asked > base ? asked : base;
}

/* Is the next event of p one of the sample? `vh` hashes its values; *window gets its window (-1: none). */
static int chosen(sampler *s, bpat *p, uint64_t vh, bool *out, int64_t *window)
{
	int64_t i = p->seen++;
	*out = false;
	*window = -1;
	if (p->quota <= 0 || i >= p->present)
		return 0; /* (events appended while we read, by a capture still running: not counted, not sampled) */
	if (p->quota >= p->present) {
		*out = true;
		return 0;
	}
	int64_t w = i * p->quota / p->present;
	*window = w;
	if (w <= p->sel_window)
		return 0;
	bool last = i + 1 >= p->present || (i + 1) * p->quota / p->present != w;
	uint64_t key = vh ^ ((uint64_t)p->id * 0x9E3779B97F4A7C15ull);
	key = key ? key : 1;
	if (!last && scry__u64map_get(&s->values, key))
		return 0; /* values already picked: look further in this window */
	p->sel_window = w;
	*out = true;
	return scry__u64map_put(&s->values, key, 1);
}

static bsess *session_of(sampler *s, int64_t id)
{
	uint32_t k = scry__u64map_get(&s->sess_map, (uint64_t)id);
	if (k)
		return &s->sess[k - 1];
	if (scry__array_grow((void **)&s->sess, &s->asess, s->nsess, sizeof *s->sess, 256) ||
	    scry__u64map_put(&s->sess_map, (uint64_t)id, (uint32_t)s->nsess + 1))
		return NULL;
	bsess *x = &s->sess[s->nsess++];
	memset(x, 0, sizeof *x);
	return x;
}

/* A sampled event joins the replay; its session's pending state statements come first. */
static int activate(sampler *s, bsess *x)
{
	if (x->active)
		return 0;
	x->active = true;
	for (size_t i = 0; i < x->nstate; i++)
		if (pick(s, x->state[i]))
			return SCRY_ENOMEM;
	scry__free(x->state);
	x->state = NULL;
	x->nstate = x->astate = 0;
	return 0;
}

/* Second pass: the choice itself, in capture order. */
static int choose(sampler *s, scry_store *store, scry_error *err)
{
	scry__rows *q;
	int r, rc = scry__store_rows(store, SCRY__Q_EVENT_KEYS, &q, err);
	if (rc)
		return rc;
	while (!rc && (r = scry__rows_next(q, err)) == 1) {
		int64_t id = scry__rows_int(q, 0);
		const bstmt *st = stmt_of(s, scry__rows_int(q, 2));
		if (!st->pat || !s->pats[st->pat - 1].wanted)
			continue;
		bpat *p = &s->pats[st->pat - 1];
		size_t nl, np;
		const void *lits = scry__rows_blob(q, 3, &nl), *params = scry__rows_blob(q, 4, &np);
		uint64_t vh = XXH3_64bits_withSeed(lits, nl, (uint64_t)np) ^ XXH3_64bits(params, np) * 31;
		bool take = false;
		int64_t window = -1;
		if ((rc = chosen(s, p, vh, &take, &window)))
			break;
		int64_t sid = scry__rows_int(q, 1);
		bool need = take || st->tx != TX_OTHER;
		if (!need && !scry__u64map_get(&s->sess_map, (uint64_t)sid))
			continue; /* the common case: nothing to remember */
		bsess *x = session_of(s, sid);
		if (!x) {
			rc = SCRY_ENOMEM;
			break;
		}
		if (st->tx == TX_BEGIN && !x->in_txn) {
			x->in_txn = true;
			x->txn_sel = x->txn_long = false;
			x->ntxn = 0;
		}
		if (x->in_txn) {
			if (x->ntxn < MAX_TXN_EVENTS) {
				if (scry__array_grow((void **)&x->txn, &x->atxn, x->ntxn, sizeof *x->txn, 8))
					rc = SCRY_ENOMEM;
				else
					x->txn[x->ntxn++] = (tev){ id, st->pat, window };
			} else {
				x->txn_long = true;
			}
			if (take) {
				x->txn_sel = true;
				if (!rc)
					rc = activate(s, x);
				if (!rc)
					rc = pick(s, id); /* kept even when the transaction proves too long */
			}
			if (!rc && st->tx == TX_END) {
				x->in_txn = false;
				if (x->txn_sel && !x->txn_long) {
					/* Pulled in whole: each of its statements counts as its window's pick. */
					for (size_t i = 0; !rc && i < x->ntxn; i++) {
						const tev *t = &x->txn[i];
						rc = pick(s, t->id);
						if (t->pat && t->window > s->pats[t->pat - 1].sel_window)
							s->pats[t->pat - 1].sel_window = t->window;
					}
				}
				x->ntxn = 0;
				if (x->atxn > 64) { /* give a long transaction's memory back */
					scry__free(x->txn);
					x->txn = NULL;
					x->atxn = 0;
				}
			}
			continue;
		}
		if (st->tx == TX_STATE) {
			if (x->active)
				rc = pick(s, id);
			else if (x->nstate < MAX_STATE_EVENTS)
				rc = push_id(&x->state, &x->nstate, &x->astate, id);
			continue;
		}
		if (take && !(rc = activate(s, x)))
			rc = pick(s, id);
	}
	scry__rows_free(q);
	if (rc)
		return scry__fail(err, rc, "out of memory sampling the workload");
	return r < 0 ? r : 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int scry__budget_select(scry_store *store, const scry_replay_options *o, scry__budget_plan *plan, scry_error *err)
{
	memset(plan, 0, sizeof *plan);
	sampler s;
	memset(&s, 0, sizeof s);
	int rc = load_dictionary(&s, store, o, err);
	if (!rc)
		rc = count_present(&s, store, err);
	if (rc) {
		sampler_free(&s);
		return rc;
	}
	plan->budget = set_quotas(&s, o);
	for (size_t i = 0; i < s.npats; i++)
		if (s.pats[i].wanted) {
			plan->present += s.pats[i].present;
			plan->captured += s.pats[i].captured > s.pats[i].present ? s.pats[i].captured : s.pats[i].present;
		}
	if ((rc = choose(&s, store, err))) {
		sampler_free(&s);
		return rc;
	}
	/* Capture order, each event once (a transaction's sampled statement is picked twice). */
	qsort(s.ids, s.nids, sizeof *s.ids, cmp_id);
	size_t k = 0;
	for (size_t i = 0; i < s.nids; i++)
		if (!k || s.ids[k - 1] != s.ids[i])
			s.ids[k++] = s.ids[i];
	plan->ids = s.ids;
	plan->n = k;
	s.ids = NULL;
	sampler_free(&s);
	return 0;
}

void scry__budget_plan_free(scry__budget_plan *plan)
{
	scry__free(plan->ids);
	memset(plan, 0, sizeof *plan);
}
