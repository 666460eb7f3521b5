/*
 * lib/proxy_setup.c - the capture proxy's options, addresses, listeners,
 * TLS contexts and public lifecycle (new, start, stop, wait, free).
 */
#define _GNU_SOURCE
#include "proxy_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL for any) and port. */
int scry__split_hostport(const char *s, char *host, size_t hostsz, char *port, size_t portsz)
{
	const char *colon;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(rb - s - 1), s + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -1;
		snprintf(host, hostsz, "%.*s", (int)(colon - s), s);
	}
	snprintf(port, portsz, "%s", colon + 1);
	if (!*port || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
		return -1;
	return 0;
}

static int resolve_upstream(scry_proxy *p, scry_error *err)
{
	const char *u = p->upstream;
	if (u[0] == '/') {
		/* A socket file, or libpq-style "DIR[:PORT]" holding .s.PGSQL.PORT. */
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		struct stat st;
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", u);
		char *colon = strrchr(dir, ':');
		const char *port = "5432";
		if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
			*colon = 0;
			port = colon + 1;
		}
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
			if ((size_t)snprintf(path, sizeof path, "%s/.s.PGSQL.%s", dir, port) >= sizeof path)
				return scry__fail(err, SCRY_EINVAL, "upstream socket path '%s' is too long", u);
		} else if ((size_t)snprintf(path, sizeof path, "%s", u) >= sizeof path) {
			return scry__fail(err, SCRY_EINVAL, "upstream socket path '%s' is too long", u);
		}
		struct sockaddr_un *sun = (struct sockaddr_un *)&p->up_addr;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		p->up_len = sizeof *sun;
		return 0;
	}
	char host[256], port[16];
	if (scry__split_hostport(u, host, sizeof host, port, sizeof port) || !*host)
		return scry__fail(err, SCRY_EINVAL,
			"upstream '%s' is not HOST:PORT or a socket path (e.g. 127.0.0.1:5432)", u);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc || !res)
		return scry__fail(err, SCRY_EINVAL, "cannot resolve the upstream host '%s': %s", host, gai_strerror(rc));
	memcpy(&p->up_addr, res->ai_addr, res->ai_addrlen);
	p->up_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* A TCP listener for worker w: the first binds the asked address (PORT 0:
 * any free port); with several workers each binds the same port with
 * SO_REUSEPORT and the kernel spreads connections over them. */
static int listen_tcp(scry_proxy *p, worker *w, bool reuseport, scry_error *err)
{
	char host[256], port[16];
	if (scry__split_hostport(p->listen, host, sizeof host, port, sizeof port))
		return scry__fail(err, SCRY_EINVAL, "listen address '%s' is not HOST:PORT (e.g. 127.0.0.1:6432)", p->listen);
	if (p->port)
		snprintf(port, sizeof port, "%d", p->port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc || !res)
		return scry__fail(err, SCRY_EINVAL, "cannot resolve the listen address '%s': %s", p->listen, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	}
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return scry__fail_sys(err, SCRY_EIO, e, "cannot listen on %s: %s", p->listen, strerror(e));
	}
	freeaddrinfo(res);
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	p->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                         : ((struct sockaddr_in *)&sa)->sin_port);
	w->listen_fd[0] = fd;
	return 0;
}

static int listen_unix(scry_proxy *p, worker *w, scry_error *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(p->listen_unix) >= sizeof sun.sun_path)
		return scry__fail(err, SCRY_EINVAL, "Unix socket path '%s' is too long", p->listen_unix);
	strcpy(sun.sun_path, p->listen_unix);
	struct stat st;
	if (lstat(p->listen_unix, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(p->listen_unix); /* a stale socket from an earlier run */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) || listen(fd, 1024)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return scry__fail_sys(err, SCRY_EIO, e, "cannot listen on %s: %s", p->listen_unix, strerror(e));
	}
	w->listen_fd[1] = fd;
	return 0;
}

/* "a,b,c" -> a NULL-terminated list of copies (empty items ignored). */
static int split_list(const char *s, char ***out, scry_error *err)
{
	size_t n = 1;
	for (const char *q = s; *q; q++)
		n += *q == ',';
	char **l = scry__calloc(n + 1, sizeof *l);
	if (!l)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	size_t k = 0;
	for (const char *q = s; *q;) {
		size_t len = strcspn(q, ",");
		if (len && !(l[k++] = scry__strndup(q, len))) {
			*out = l;
			return scry__fail(err, SCRY_ENOMEM, "out of memory");
		}
		q += len;
		if (*q == ',')
			q++;
	}
	*out = l;
	if (!k)
		return scry__fail(err, SCRY_EINVAL, "empty filter list '%s' (give comma-separated names)", s);
	return 0;
}

static int setup_tls(scry_proxy *p, scry_error *err)
{
	const scry_proxy_options *o = &p->opts;
	if ((o->tls_cert == NULL) != (o->tls_key == NULL))
		return scry__fail(err, SCRY_EINVAL, "TLS to clients needs both a certificate (tls_cert) and its key (tls_key)");
	int rc;
	if (o->tls_cert && (rc = scry__tls_server_ctx(&p->tls_server, o->tls_cert, o->tls_key, err)) != 0)
		return rc;
	bool unix_up = p->up_addr.ss_family == AF_UNIX;
	if (o->upstream_sslmode) {
		p->up_sslmode = scry__tls_sslmode(o->upstream_sslmode);
		if (p->up_sslmode < 0)
			return scry__fail(err, SCRY_EINVAL,
				"unknown upstream sslmode '%s' (disable, prefer, require, verify-ca or verify-full)", o->upstream_sslmode);
		if (unix_up && p->up_sslmode >= SCRY__SSL_REQUIRE)
			return scry__fail(err, SCRY_EINVAL,
				"upstream sslmode %s needs a TCP upstream (HOST:PORT): there is no TLS on a Unix socket", o->upstream_sslmode);
	} else {
		p->up_sslmode = SCRY__SSL_PREFER; /* libpq's default */
	}
	if (unix_up)
		p->up_sslmode = SCRY__SSL_DISABLE; /* as libpq: no TLS on Unix sockets */
	static const char *const names[] = { "disable", "prefer", "require", "verify-ca", "verify-full" };
	p->opts.upstream_sslmode = names[p->up_sslmode];
	if (p->up_sslmode == SCRY__SSL_DISABLE) {
		if (o->upstream_sslrootcert || o->upstream_sslcert || o->upstream_sslkey)
			return scry__fail(err, SCRY_EINVAL, "upstream TLS files were given, but the upstream sslmode is disable");
		return 0;
	}
	if (!unix_up) {
		char port[16];
		if (scry__split_hostport(p->upstream, p->up_host, sizeof p->up_host, port, sizeof port))
			p->up_host[0] = 0;
	}
	return scry__tls_client_ctx(&p->tls_client, p->up_sslmode, o->upstream_sslrootcert, o->upstream_sslcert,
		o->upstream_sslkey, err);
}

void scry_proxy_options_init(scry_proxy_options *opts)
{
	if (opts)
		*opts = (scry_proxy_options)SCRY_PROXY_OPTIONS_INIT;
}

/* Zero options take their defaults. */
static void options_defaults(scry_proxy_options *o)
{
	if (!o->queue_events)
		o->queue_events = 65536;
	if (!o->batch_events)
		o->batch_events = 2048;
	if (!o->max_message_bytes)
		o->max_message_bytes = 256u << 20;
	if (!o->max_query_bytes)
		o->max_query_bytes = 16u << 20;
	if (o->max_connections <= 0)
		o->max_connections = 10000;
	if (!o->queue_bytes)
		o->queue_bytes = 256u << 20;
}

/* The session filters (databases, users, applications) and the sampling rate. */
static int setup_filters(scry_proxy *p, scry_error *err)
{
	const char *flist[3] = { p->opts.databases, p->opts.users, p->opts.applications };
	int rc;
	for (int i = 0; i < 3; i++)
		if (flist[i] && (rc = split_list(flist[i], &p->filter[i], err)) != 0)
			return rc;
	if (p->opts.sample_rate < 0 || p->opts.sample_rate > 1)
		return scry__fail(err, SCRY_EINVAL, "sample_rate %g is not between 0 and 1 (a fraction of sessions)",
			p->opts.sample_rate);
	return 0;
}

/* Worker k's epoll set, read buffer and listeners (all in its epoll set,
 * with the stop eventfd). */
static int setup_worker(scry_proxy *p, int k, uint64_t seed, scry_error *err)
{
	worker *w = &p->workers[k];
	w->proxy = p;
	w->rng = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->rbuf = scry__malloc(READ_CHUNK);
	if (w->epfd < 0 || !w->rbuf)
		return w->rbuf ? scry__fail_sys(err, SCRY_EIO, errno, "cannot create the event loop: %s", strerror(errno))
		               : scry__fail(err, SCRY_ENOMEM, "out of memory");
	int rc;
	if (p->listen && (rc = listen_tcp(p, w, p->nworkers > 1, err)) != 0)
		return rc;
	if (k == 0 && p->listen_unix && (rc = listen_unix(p, w, err)) != 0)
		return rc;
	w->stop_ep.tag = TAG_STOP;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->stop_ep };
	epoll_ctl(w->epfd, EPOLL_CTL_ADD, p->stopfd, &ev);
	for (int i = 0; i < 2; i++) {
		if (w->listen_fd[i] < 0)
			continue;
		w->listen_ep[i].tag = TAG_LISTEN;
		w->listen_ep[i].fd = w->listen_fd[i];
		struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &w->listen_ep[i] };
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->listen_fd[i], &lev);
	}
	return 0;
}

/* The proxy's allocations: locks, copies of the addresses, the workers
 * (their descriptors -1 until made). */
static int proxy_alloc(scry_proxy *p, const scry_proxy_options *o, scry_error *err)
{
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_cond_init(&p->cv, &ca);
	pthread_cond_init(&p->swap_cv, &ca);
	pthread_condattr_destroy(&ca);
	p->listen = o->listen ? scry__strdup(o->listen) : NULL;
	p->listen_unix = o->listen_unix ? scry__strdup(o->listen_unix) : NULL;
	p->upstream = scry__strdup(o->upstream);
	p->nworkers = p->opts.event_threads > 1 ? (p->opts.event_threads < 64 ? p->opts.event_threads : 64) : 1;
	p->workers = scry__calloc((size_t)p->nworkers, sizeof *p->workers);
	for (int k = 0; p->workers && k < p->nworkers; k++)
		p->workers[k].epfd = p->workers[k].listen_fd[0] = p->workers[k].listen_fd[1] = p->workers[k].spare_sfd = -1;
	if ((o->listen && !p->listen) || (o->listen_unix && !p->listen_unix) || !p->upstream || !p->workers)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	return 0;
}

int scry_proxy_new(scry_proxy **out, scry_store *store, const scry_proxy_options *opts, scry_error *err)
{
	if (!out)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_new: out is required");
	*out = NULL;
	if (!store || !opts)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_new: a store and options (listen, upstream) are required");
	/* Options of an older version keep the defaults of the fields added since. */
	scry_proxy_options o;
	int vrc = scry__opts_copy(err, &scry__abi_proxy_options, &o, opts);
	if (vrc)
		return vrc;
	if (!o.listen && !o.listen_unix)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs an address to listen on (listen or listen_unix)");
	if (!o.upstream || !*o.upstream)
		return scry__fail(err, SCRY_EINVAL, "the proxy needs the upstream server's address (HOST:PORT)");
	scry_proxy *p = scry__calloc(1, sizeof *p);
	if (!p)
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	p->store = store;
	p->opts = o;
	p->stopfd = -1;
	options_defaults(&p->opts);
	int rc;
	if ((rc = proxy_alloc(p, &o, err)) != 0 || (rc = resolve_upstream(p, err)) != 0 ||
	    (rc = setup_tls(p, err)) != 0 || (rc = setup_filters(p, err)) != 0)
		goto fail;
	p->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->stopfd < 0) {
		rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot create the event loop: %s", strerror(errno));
		goto fail;
	}
	uint64_t seed = (uint64_t)scry__now_us() ^ ((uint64_t)getpid() << 32);
	for (int k = 0; k < p->nworkers; k++)
		if ((rc = setup_worker(p, k, seed, err)) != 0)
			goto fail;
	p->clock_offset = scry__now_us() - scry__monotonic_us();
	*out = p;
	return 0;
fail:
	scry_proxy_free(p);
	return rc;
}

int scry_proxy_port(const scry_proxy *p) { return p ? p->port : 0; }

/* Joins the event loops, then tells the writer to finish what they queued. */
static void join_threads(scry_proxy *p)
{
	for (int k = 0; k < p->nworkers; k++)
		if (p->workers[k].running) {
			pthread_join(p->workers[k].thread, NULL);
			p->workers[k].running = false;
		}
	pthread_mutex_lock(&p->mu);
	p->writer_stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->writer_thread, NULL);
}

/*
 * How many connections fit in the open-files limit while leaving room for
 * the store: each connection takes two descriptors, and SQLite opens its
 * -wal/-shm/journal files when it needs them (a rotation opens a second
 * store). Taking the last descriptors would lose events, so the proxy stops
 * accepting at this budget instead (clients wait in the backlog).
 */
#define FD_HEADROOM 24

static uint64_t fd_budget(scry_proxy *p)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	uint64_t used = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		while (readdir(d))
			used++;
		closedir(d);
	}
	uint64_t avail = rl.rlim_cur > used + FD_HEADROOM ? (uint64_t)rl.rlim_cur - used - FD_HEADROOM : 0;
	uint64_t n = avail / 2 > 0 ? avail / 2 : 1;
	if (n < (uint64_t)p->opts.max_connections)
		plog(p, SCRY_LOG_WARNING, "the open-files limit (%llu) allows %llu simultaneous connections; "
		     "more wait until one closes (raise ulimit -n)", (unsigned long long)rl.rlim_cur, (unsigned long long)n);
	return n;
}

int scry_proxy_start(scry_proxy *p, scry_error *err)
{
	if (!p || p->started)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_start: the proxy is missing or already started");
	p->fd_budget = fd_budget(p);
	int rc = pthread_create(&p->writer_thread, NULL, scry__proxy_writer_main, p);
	if (rc)
		return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's writer thread: %s", strerror(rc));
	for (int k = 0; k < p->nworkers; k++) {
		rc = pthread_create(&p->workers[k].thread, NULL, scry__proxy_loop_main, &p->workers[k]);
		if (rc) {
			scry_proxy_stop(p);
			join_threads(p);
			return scry__fail_sys(err, SCRY_EIO, rc, "cannot start the proxy's event loop: %s", strerror(rc));
		}
		p->workers[k].running = true;
	}
	p->started = true;
	return 0;
}

void scry_proxy_stop(scry_proxy *p)
{
	if (!p || p->stopfd < 0)
		return;
	__atomic_store_n(&p->stopping, 1, __ATOMIC_RELAXED);
	uint64_t one = 1;
	ssize_t rc = write(p->stopfd, &one, sizeof one);
	(void)rc;
}

int scry_proxy_stopping(const scry_proxy *p)
{
	return !p || __atomic_load_n(&p->stopping, __ATOMIC_RELAXED);
}


int scry_proxy_wait(scry_proxy *p, scry_error *err)
{
	if (!p)
		return scry__fail(err, SCRY_EINVAL, "scry_proxy_wait: proxy is NULL");
	if (p->started && !p->waited) {
		join_threads(p);
		p->waited = true;
	}
	if (p->first_rc) {
		if (err)
			*err = p->first_err;
		return p->first_rc;
	}
	return 0;
}

int scry_proxy_stats_get(const scry_proxy *p, scry_proxy_stats *out)
{
	scry_proxy_stats st = { 0 };
	if (p) {
		st.connections = STAT_GET(p, st_conns);
		st.connections_active = STAT_GET(p, st_active);
		st.connections_failed = STAT_GET(p, st_failed);
		st.protocol_errors = STAT_GET(p, st_proto);
		st.events_captured = STAT_GET(p, st_captured);
		st.events_recorded = STAT_GET(p, st_recorded);
		st.events_dropped = STAT_GET(p, st_dropped);
		st.bytes_from_clients = STAT_GET(p, st_bin);
		st.bytes_from_server = STAT_GET(p, st_bout);
	}
	return scry__out_copy(NULL, &scry__abi_proxy_stats, out, &st);
}

void scry_proxy_free(scry_proxy *p)
{
	if (!p)
		return;
	if (p->started && !p->waited) {
		scry_proxy_stop(p);
		scry_proxy_wait(p, NULL);
	}
	for (int k = 0; p->workers && k < p->nworkers; k++) {
		worker *w = &p->workers[k];
		for (int i = 0; i < 2; i++)
			if (w->listen_fd[i] >= 0)
				close(w->listen_fd[i]);
		if (w->listen_fd[1] >= 0 && p->listen_unix)
			unlink(p->listen_unix);
		if (w->epfd >= 0)
			close(w->epfd);
		scry__free(w->rbuf);
	}
	scry__free(p->workers);
	if (p->stopfd >= 0)
		close(p->stopfd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	pthread_cond_destroy(&p->swap_cv);
	scry__tls_ctx_free(p->tls_server);
	scry__tls_ctx_free(p->tls_client);
	for (int i = 0; i < 3; i++) {
		for (char **f = p->filter[i]; f && *f; f++)
			scry__free(*f);
		scry__free(p->filter[i]);
	}
	scry__free(p->listen);
	scry__free(p->listen_unix);
	scry__free(p->upstream);
	scry__free(p);
}
