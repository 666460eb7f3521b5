/*
 * lib/logimport_writer.c - the log importer's second thread: it writes a
 * batch of events to the store (scry_store_append: literal lifting,
 * fingerprints, SQLite inserts) while the importer reads, decompresses and
 * parses the next batch. One batch in flight at a time; the importer waits
 * for it before it touches the store itself (session rows, file records,
 * store info), so the store is never used by both threads at once.
 */
#include "logimport_internal.h"

#include <pthread.h>

struct scry__logwriter {
	scry_store *store;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool busy, quit;
	/* The batch being written (owned by the thread while busy). */
	scry_event *evs;
	size_t aevs, n;
	scry_param *params;
	size_t aparams;
	scry_buf arena;
	int rc;
	scry_error err;
};

static void *run(void *arg)
{
	scry__logwriter *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->busy && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->busy) {
			pthread_mutex_unlock(&w->mu);
			scry_error err = SCRY_ERROR_INIT;
			int rc = scry_store_append(w->store, w->evs, w->n, sizeof(scry_event), &err);
			pthread_mutex_lock(&w->mu);
			if (rc && !w->rc) {
				w->rc = rc;
				w->err = err;
			}
			w->busy = false;
			pthread_cond_broadcast(&w->cv);
			continue;
		}
		break; /* quit, nothing left */
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int scry__logwriter_start(scry__logwriter **out, scry_store *store)
{
	scry__logwriter *w = scry__calloc(1, sizeof *w);
	if (!w)
		return SCRY_ENOMEM;
	w->store = store;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->thread, NULL, run, w)) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		scry__free(w);
		return SCRY_EIO;
	}
	*out = w;
	return 0;
}

int scry__logwriter_wait(scry__logwriter *w, scry_error *err)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	while (w->busy)
		pthread_cond_wait(&w->cv, &w->mu);
	int rc = w->rc;
	if (rc && err)
		*err = w->err;
	w->rc = 0;
	pthread_mutex_unlock(&w->mu);
	return rc;
}

void scry__logwriter_submit(scry__logwriter *w, scry_event **evs, size_t *aevs, scry_param **params,
                            size_t *aparams, scry_buf *arena, size_t n)
{
	pthread_mutex_lock(&w->mu);
	/* Idle (the caller waited): swap the filled buffers with the spare ones. */
	scry_event *te = w->evs;
	size_t ta = w->aevs;
	w->evs = *evs;
	w->aevs = *aevs;
	*evs = te;
	*aevs = ta;
	scry_param *tp = w->params;
	size_t tpa = w->aparams;
	w->params = *params;
	w->aparams = *aparams;
	*params = tp;
	*aparams = tpa;
	scry_buf tb = w->arena;
	w->arena = *arena;
	*arena = tb;
	scry__buf_clear(arena);
	w->n = n;
	w->busy = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void scry__logwriter_free(scry__logwriter *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->quit = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	scry__free(w->evs);
	scry__free(w->params);
	scry_buf_dispose(&w->arena);
	scry__free(w);
}
