/*
 * lib/replay_record.c - what a replay records: its first fatal error, the
 * samples (batched to a writer thread so that SQLite never stalls the event
 * loop) and, at the end, each target's result in its runs row. See
 * lib/replay_internal.h for the engine's other files.
 */
#define _GNU_SOURCE
#include "replay_internal.h"
#include "util/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int scry__replay_fatal(ctx *x, int code, const char *fmt, ...)
{
	if (x->fatal)
		return x->fatal;
	x->fatal = code;
	va_list ap;
	va_start(ap, fmt);
	scry__vfail(x->err, code, fmt, ap);
	va_end(ap);
	return code;
}

int scry__replay_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */
/* The sample writer thread                                            */
/* ------------------------------------------------------------------ */

static void *writer_main(void *arg)
{
	writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->closing)
			pthread_cond_wait(&w->cv, &w->mu);
		batch *b = w->head;
		if (!b)
			break;
		w->head = b->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->mu);
		if (!w->rc) {
			w->rc = scry_store_samples_append(w->store, w->run_id[b->target], b->s, b->n, sizeof(scry_sample), &w->err);
			if (w->rc)
				atomic_store(&w->failed, 1);
		}
		scry__free(b);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void writer_push(writer *w, batch *b)
{
	b->next = NULL;
	pthread_mutex_lock(&w->mu);
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Writes what is queued and stops the thread. Returns the first store error. */
static int writer_close(writer *w, scry_error *err)
{
	if (!w->started)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->th, NULL);
	w->started = false;
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	if (w->rc && err)
		*err = w->err;
	return w->rc;
}

int scry__replay_writer_start(ctx *x, scry_error *err)
{
	x->wr.store = x->rp->store;
	x->wr.run_id[0] = x->tg[0].run_id;
	x->wr.run_id[1] = x->tg[1].run_id;
	pthread_mutex_init(&x->wr.mu, NULL);
	pthread_cond_init(&x->wr.cv, NULL);
	if (pthread_create(&x->wr.th, NULL, writer_main, &x->wr) != 0) {
		pthread_mutex_destroy(&x->wr.mu);
		pthread_cond_destroy(&x->wr.cv);
		return scry__fail(err, SCRY_EIO, "cannot start the sample writer thread");
	}
	x->wr.started = true;
	return 0;
}

void scry__replay_writer_dispose(ctx *x)
{
	writer_close(&x->wr, NULL);
	for (int i = 0; i < 2; i++) {
		scry__free(x->tg[i].cur);
		x->tg[i].cur = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Samples                                                             */
/* ------------------------------------------------------------------ */

void scry__replay_record(ctx *x, runner *r, rconn *c, int64_t latency)
{
	if (r->round < x->o->warmup)
		return;
	target *t = &x->tg[c->target];
	if (!t->cur) {
		if (!(t->cur = scry__malloc(sizeof *t->cur))) {
			scry__replay_fatal(x, SCRY_ENOMEM, "out of memory recording samples");
			return;
		}
		t->cur->target = c->target;
		t->cur->n = 0;
	}
	scry_sample *s = &t->cur->s[t->cur->n++];
	memset(s, 0, sizeof *s);
	s->event_id = CUR_STMT(x, r)->event_id;
	s->round = r->round - x->o->warmup;
	s->latency_us = latency;
	s->rows = c->error ? -1 : c->rows;
	if (c->error)
		snprintf(s->sqlstate, sizeof s->sqlstate, "%s", c->sqlstate[0] ? c->sqlstate : "XX000");
	t->res.executions++;
	if (c->error) {
		t->res.errors++;
		if (!strcmp(s->sqlstate, "57014")) {
			if (c->cancel_sent)
				t->cancels++; /* the captured cancel, replayed: not a timeout */
			else
				t->res.timeouts++;
		}
	}
	if (t->cur->n == BATCH_SAMPLES) {
		writer_push(&x->wr, t->cur);
		t->cur = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

static int64_t pct(const int64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* Target i's summary JSON for its runs row (docs/store.md); `complete` when the run succeeded. */
static void summary_json(scry_buf *b, const ctx *x, int i, int64_t elapsed, bool complete)
{
	const scry_replay_result *res = &x->tg[i].res;
	scry__json j;
	scry__json_init(&j, b);
	scry__json_object(&j);
	scry__json_kint(&j, "skipped", res->skipped);
	scry__json_kint(&j, "elapsed_us", elapsed);
	scry__json_kint(&j, "lag_p50_us", res->lag_p50_us);
	scry__json_kint(&j, "lag_p99_us", res->lag_p99_us);
	scry__json_kint(&j, "lag_max_us", res->lag_max_us);
	scry__json_kint(&j, "cancels", x->tg[i].cancels);
	scry__json_kint(&j, "client_timeouts", x->tg[i].client_timeouts);
	scry__json_kint(&j, "not_replayable", x->tg[i].not_replayable);
	scry__json_kbool(&j, "complete", complete);
	scry__json_end(&j);
}

/* Fills target i's result, ends its runs row and copies the result to *out. */
static int target_result(ctx *x, int i, int64_t elapsed, int rc, scry_replay_result *out)
{
	const workload *w = x->w;
	scry_replay_result *res = &x->tg[i].res;
	res->run_id = x->tg[i].run_id;
	x->rp->client_timeouts[i] = x->tg[i].client_timeouts;
	res->elapsed_us = elapsed;
	res->per_second = elapsed > 0 ? (double)res->executions * 1e6 / (double)elapsed : 0;
	res->lag_p50_us = pct(x->lags, x->nlags, 0.50);
	res->lag_p99_us = pct(x->lags, x->nlags, 0.99);
	res->lag_max_us = x->nlags ? x->lags[x->nlags - 1] : 0;
	if (w->sampled) {
		res->captured = w->captured;
		res->sampled = (int64_t)w->nstmts;
		res->budget = w->budget;
	}
	scry_buf summary = SCRY_BUF_INIT;
	summary_json(&summary, x, i, elapsed, !rc);
	/* Out of memory: the summary's counts are still stored, without the JSON. */
	scry_run_summary sum = { SCRY_RUN_SUMMARY_VERSION, res->executions, res->errors, res->timeouts,
	                         res->reconnects, res->per_second,
	                         scry__buf_failed(&summary) ? NULL : summary.ptr };
	scry_error eerr = SCRY_ERROR_INIT;
	int erc = scry_store_run_end(x->rp->store, x->tg[i].run_id, &sum, rc ? &eerr : x->err);
	scry_buf_dispose(&summary);
	if (out)
		scry__out_put(&scry__abi_replay_result, out, res);
	return erc;
}

int scry__replay_results(ctx *x, int64_t elapsed, bool cancelled, scry_replay_result **outs)
{
	while (x->nactive)
		scry__replay_runner_finish(x, x->active[0]);
	for (int i = 0; i < x->ntargets; i++)
		if (x->tg[i].cur) {
			writer_push(&x->wr, x->tg[i].cur);
			x->tg[i].cur = NULL;
		}
	int rc = x->fatal;
	scry_error ferr = SCRY_ERROR_INIT;
	int frc = writer_close(&x->wr, &ferr);
	if (frc && (!rc || rc == SCRY_ESTORE)) {
		rc = frc;
		if (x->err)
			*x->err = ferr;
	}
	if (!rc && cancelled)
		rc = scry__fail(x->err, SCRY_ECANCELED, "the replay was cancelled; the samples recorded so far are kept");

	if (x->nlags)
		qsort(x->lags, x->nlags, sizeof *x->lags, scry__replay_cmp_i64);
	for (int i = 0; i < x->ntargets; i++) {
		int erc = target_result(x, i, elapsed, rc, outs[i]);
		if (!rc && erc)
			rc = erc;
	}
	return rc;
}
