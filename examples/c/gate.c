/*
 * examples/c/gate.c - gate a migration with libscry: the heart of
 * `scry ci test-migration`, in one function call sequence.
 *
 *     cc gate.c $(pkg-config --cflags --libs scry) -o gate
 *     ./gate scry.db "dbname=shop" "CREATE INDEX ...; ALTER TABLE ..."
 *
 * Clones the target, applies the SQL migration to one clone, replays the
 * captured workload on both, prints the Markdown report and exits like the
 * CLI: 0 safe, 1 error, 4 the migration failed, 5 regressions. Ctrl-C
 * cancels the run (the clones are dropped).
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */
#include <scry/scry.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static scry_pipeline *running; /* under lock */

static void on_log(void *ctx, scry_log_level level, const char *message)
{
	(void)ctx;
	if (level >= SCRY_LOG_WARNING)
		fprintf(stderr, "gate: %s\n", message);
}

/* A thread waits for SIGINT/SIGTERM and cancels: no work in a signal handler. */
static void *wait_signal(void *arg)
{
	sigset_t *set = arg;
	int sig;
	if (sigwait(set, &sig) == 0) {
		pthread_mutex_lock(&lock);
		if (running)
			scry_pipeline_cancel(running);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s STORE TARGET-CONNINFO MIGRATION-SQL\n", argv[0]);
		return 2;
	}
	scry_error err = SCRY_ERROR_INIT;
	scry_store *store = NULL;
	scry_store_options so = SCRY_STORE_OPTIONS_INIT;
	so.must_exist = 1; /* a typo'd path is an error, not a new empty store */
	if (scry_store_open(&store, argv[1], &so, &err) < 0) {
		fprintf(stderr, "gate: %s\n", err.message);
		return 1;
	}
	scry_pipeline_options po = SCRY_PIPELINE_OPTIONS_INIT;
	po.log = on_log;
	scry_pipeline *p = NULL;
	if (scry_pipeline_new(&p, store, argv[2], &po, &err) < 0) {
		fprintf(stderr, "gate: %s\n", err.message);
		scry_store_free(store);
		return 1;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	running = p;
	pthread_t waiter;
	pthread_create(&waiter, NULL, wait_signal, &set);
	pthread_detach(waiter);

	scry_migration m = SCRY_MIGRATION_INIT;
	m.sql = argv[3];
	int rc = scry_pipeline_run(p, &m, &err), status;
	if (rc == SCRY_EMIGRATION) {
		fprintf(stderr, "gate: the migration failed: %s\n", err.message);
		status = 4;
	} else if (rc < 0) {
		fprintf(stderr, "gate: %s\n", err.message);
		status = 1;
	} else {
		scry_buf report = SCRY_BUF_INIT;
		if (scry_pipeline_report(p, SCRY_REPORT_MARKDOWN, &report, &err) < 0) {
			fprintf(stderr, "gate: %s\n", err.message);
			status = 1;
		} else {
			fputs(report.ptr ? report.ptr : "", stdout);
			status = scry_pipeline_failures(p) ? 5 : 0;
		}
		scry_buf_dispose(&report);
	}
	pthread_mutex_lock(&lock);
	running = NULL;
	pthread_mutex_unlock(&lock);
	scry_pipeline_free(p);
	scry_store_free(store);
	return status;
}
