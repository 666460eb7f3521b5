/*
 * lib/proxy_writer.c - the capture proxy's writer thread: the only user of
 * the store handle between scry_proxy_start() and scry_proxy_wait(). It
 * appends queued events in batches, adds sessions lazily (again after a
 * rotation), counts every event it cannot write, and notices a store file
 * deleted or replaced under it. See docs/proxy.md.
 */
#define _GNU_SOURCE
#include "proxy_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void sess_free(sess_rec *s)
{
	if (!s)
		return;
	scry__free(s->database);
	scry__free(s->user);
	scry__free(s->application);
	scry__free(s->client);
	scry__free(s->params);
	scry__free(s);
}

/* ------------------------------------------------------------------ */
/* The writer                                                          */
/* ------------------------------------------------------------------ */

static void store_check(scry_proxy *p, bool now);

/* A store error: logged now, the first one kept for scry_proxy_wait(). A
 * deleted or replaced file is the clearer reason, so it is checked first. */
static void writer_fail(scry_proxy *p, int rc, const scry_error *e, size_t lost)
{
	if (!p->store_lost)
		store_check(p, true); /* reports the loss itself (then store_lost is set) */
	STAT_ADD(p, st_dropped, lost);
	plog(p, SCRY_LOG_ERROR, "store: %s (%zu events lost)", e->message, lost);
	pthread_mutex_lock(&p->mu);
	if (!p->first_rc) {
		p->first_rc = rc;
		p->first_err = *e;
	}
	pthread_mutex_unlock(&p->mu);
}

/* Remembers which file the store is, to notice it being deleted or replaced. */
static void store_identify(scry_proxy *p)
{
	struct stat st;
	const char *path = scry_store_path(p->store);
	p->have_ino = path && *path && strcmp(path, ":memory:") && stat(path, &st) == 0;
	if (p->have_ino) {
		p->st_dev = st.st_dev;
		p->st_ino = st.st_ino;
	}
	p->store_lost = false;
}

/* At most once a second (and at the end): is the store still the file at
 * its path? Events written into a deleted or replaced file are lost. */
static void store_check(scry_proxy *p, bool now)
{
	int64_t t = scry__monotonic_us();
	if (!p->have_ino || p->store_lost || (!now && t - p->last_check_us < 1000000))
		return;
	p->last_check_us = t;
	struct stat st;
	const char *path = scry_store_path(p->store);
	bool gone = stat(path, &st) != 0;
	if (!gone && st.st_dev == p->st_dev && st.st_ino == p->st_ino)
		return;
	p->store_lost = true;
	scry_error e = SCRY_ERROR_INIT;
	int rc = scry__fail(&e, SCRY_EIO, "the store file %s was %s while recording; events from now on are lost "
		"(restart the capture, or rotate with SIGHUP, to record into a new file)", path, gone ? "deleted" : "replaced");
	writer_fail(p, rc, &e, 0);
}

static void append_batch(scry_proxy *p, scry_event *evs, size_t *n)
{
	if (!*n)
		return;
	scry_error e = SCRY_ERROR_INIT;
	int rc = scry_store_append(p->store, evs, *n, sizeof(scry_event), &e);
	if (rc)
		writer_fail(p, rc, &e, *n);
	else
		STAT_ADD(p, st_recorded, *n);
	*n = 0;
}

static void write_items(scry_proxy *p, qitem *it, scry_event *evs)
{
	size_t n = 0;
	qitem *done = NULL; /* items whose event is in evs: freed after the append */
	while (it) {
		qitem *next = it->next;
		sess_rec *s = it->sess;
		if (it->type == ITEM_EVENT) {
			if (s->gen != p->store_gen) { /* the store was rotated: add the session again */
				s->gen = p->store_gen;
				s->session_id = 0;
				s->failed = false;
			}
			if (p->store_lost) {
				STAT_ADD(p, st_dropped, 1);
				qitem_free(it);
				it = next;
				continue;
			}
			if (!s->session_id && !s->failed) {
				scry_session_info info = { SCRY_SESSION_INFO_VERSION, SCRY_SOURCE_PROXY, s->database, s->user,
				                           s->application, s->client, s->started_us };
				scry_error e = SCRY_ERROR_INIT;
				int rc = scry_store_session_add(p->store, &info, &s->session_id, &e);
				if (!rc && s->params)
					rc = scry_store_session_set_params(p->store, s->session_id, s->params, &e);
				if (rc) {
					s->failed = true;
					writer_fail(p, rc, &e, 0);
					plog(p, SCRY_LOG_ERROR, "session of %s@%s from %s not recorded: its events are lost "
					     "(counted in events_dropped)", s->user, s->database, s->client);
				}
			}
			if (s->failed) {
				STAT_ADD(p, st_dropped, 1);
				qitem_free(it);
			} else {
				it->ev.session_id = s->session_id;
				evs[n++] = it->ev;
				it->next = done;
				done = it;
				if (n == p->opts.batch_events) {
					append_batch(p, evs, &n);
					while (done) {
						qitem *d = done;
						done = d->next;
						qitem_free(d);
					}
				}
			}
		} else { /* ITEM_END: the session's events are before it */
			append_batch(p, evs, &n);
			while (done) {
				qitem *d = done;
				done = d->next;
				qitem_free(d);
			}
			if (s->session_id && s->gen == p->store_gen && !p->store_lost) {
				scry_error e = SCRY_ERROR_INIT;
				int rc = scry_store_session_end(p->store, s->session_id, it->end_us, &e);
				if (rc)
					writer_fail(p, rc, &e, 0);
			}
			sess_free(s);
			qitem_free(it);
		}
		it = next;
	}
	append_batch(p, evs, &n);
	while (done) {
		qitem *d = done;
		done = d->next;
		qitem_free(d);
	}
}

void *scry__proxy_writer_main(void *arg)
{
	scry_proxy *p = arg;
	scry_event *evs = scry__malloc(p->opts.batch_events * sizeof *evs);
	pthread_mutex_lock(&p->mu);
	store_identify(p);
	for (;;) {
		/* Wait for a full batch, a stop, a rotation, or a short timeout with something queued. */
		while (!p->writer_stop && !p->swap_asked && p->q.n < p->opts.batch_events) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += WRITER_WAIT_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			p->writer_waiting = true;
			int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
			p->writer_waiting = false;
			if (rc == ETIMEDOUT && p->q.n)
				break;
			if (rc == ETIMEDOUT) {
				pthread_mutex_unlock(&p->mu);
				store_check(p, false);
				pthread_mutex_lock(&p->mu);
			}
		}
		qitem *items = p->q.head;
		bool last = p->writer_stop;
		bool swap = p->swap_asked;
		p->q = (qlist){ 0 };
		pthread_mutex_unlock(&p->mu);
		store_check(p, last || swap);
		if (items) {
			if (!evs) /* retry: one failed allocation must not drop every later batch */
				evs = scry__malloc(p->opts.batch_events * sizeof *evs);
			if (evs) {
				write_items(p, items, evs);
			} else { /* no memory for a batch array: drop, but keep sessions sane */
				for (qitem *it = items, *next; it; it = next) {
					next = it->next;
					if (it->type == ITEM_END)
						sess_free(it->sess);
					else
						STAT_ADD(p, st_dropped, 1);
					qitem_free(it);
				}
			}
		}
		pthread_mutex_lock(&p->mu);
		if (swap) { /* everything queued before the rotation is in the old store */
			p->prev_store = p->store;
			p->store = p->next_store;
			p->next_store = NULL;
			p->store_gen++;
			store_identify(p);
			p->swap_asked = false;
			pthread_cond_broadcast(&p->swap_cv);
		}
		if (last && !p->q.head)
			break;
	}
	p->writer_done = true; /* a later rotation swaps directly */
	pthread_mutex_unlock(&p->mu);
	scry__free(evs);
	return NULL;
}

int scry_proxy_switch_store(scry_proxy *p, scry_store *next, scry_store **previous, scry_error *err)
{
	if (previous)
		*previous = NULL;
	if (!p || !next || !previous)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_switch_store: proxy, next store and previous are required");
	pthread_mutex_lock(&p->mu);
	if (!p->started || p->waited || p->writer_done) { /* no writer thread: the caller owns the store */
		*previous = p->store;
		p->store = next;
		p->store_gen++;
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	while (p->swap_asked) /* another rotation in progress */
		pthread_cond_wait(&p->swap_cv, &p->mu);
	p->next_store = next;
	p->swap_asked = true;
	pthread_cond_signal(&p->cv);
	while (p->swap_asked)
		pthread_cond_wait(&p->swap_cv, &p->mu);
	*previous = p->prev_store;
	p->prev_store = NULL;
	pthread_mutex_unlock(&p->mu);
	return 0;
}
