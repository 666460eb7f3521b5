/*
 * lib/logimport_input.c - reading log files: compression recognised by
 * content (gzip, bzip2, xz, zstd, or plain; standard input too), damage
 * reported after what could be read, files already imported into the store
 * recognised, and rotated files put in order by their first timestamp.
 */
#define _GNU_SOURCE
#include "logimport_internal.h"

#include <bzlib.h>
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* Decompression                                                       */
/* ------------------------------------------------------------------ */

enum { K_PLAIN, K_GZIP, K_BZIP2, K_XZ, K_ZSTD };
static const char *const kind_names[] = { "plain", "gzip", "bzip2", "xz", "zstd" };

typedef struct src {
	int fd;
	int kind;
	unsigned char *ib;       /* compressed input */
	size_t ilen, ipos;
	bool ieof;
	bool ended;              /* the compressed stream ended properly */
	bool started;            /* a stream is open in the decoder */
	uint64_t raw;            /* bytes read from the file */
	uint64_t out;            /* bytes decoded */
	z_stream z;
	bz_stream bz;
	lzma_stream xz;
	ZSTD_DStream *zs;
	char err[200];           /* why reading stopped early */
} src;

enum { IBUF = 1 << 18 };

static int fill(src *s)
{
	if (s->ipos < s->ilen || s->ieof)
		return 0;
	ssize_t r;
	do
		r = read(s->fd, s->ib, IBUF);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		snprintf(s->err, sizeof s->err, "%s", strerror(errno));
		return -1;
	}
	s->ilen = (size_t)r;
	s->ipos = 0;
	s->raw += (uint64_t)r;
	if (r == 0)
		s->ieof = true;
	return 0;
}

static int src_open(src *s, int fd)
{
	memset(s, 0, sizeof s[0]);
	s->fd = fd;
	s->ib = scry__malloc(IBUF);
	if (!s->ib)
		return SCRY_ENOMEM;
	/* Enough bytes to recognise the format. */
	while (s->ilen < 6 && !s->ieof) {
		ssize_t r = read(fd, s->ib + s->ilen, IBUF - s->ilen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(s->err, sizeof s->err, "%s", strerror(errno));
			return SCRY_EIO;
		}
		if (r == 0)
			s->ieof = true;
		s->ilen += (size_t)r;
		s->raw += (uint64_t)r;
	}
	const unsigned char *m = s->ib;
	size_t n = s->ilen;
	if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		s->kind = K_GZIP;
	else if (n >= 4 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h' && m[3] >= '1' && m[3] <= '9')
		s->kind = K_BZIP2;
	else if (n >= 6 && !memcmp(m, "\xFD" "7zXZ\0", 6))
		s->kind = K_XZ;
	else if (n >= 4 && !memcmp(m, "\x28\xB5\x2F\xFD", 4))
		s->kind = K_ZSTD;
	else
		s->kind = K_PLAIN;
	if (s->kind == K_ZSTD && !(s->zs = ZSTD_createDStream()))
		return SCRY_ENOMEM;
	return 0;
}

static void stream_end(src *s);

static void src_close(src *s)
{
	stream_end(s);
	if (s->zs)
		ZSTD_freeDStream(s->zs);
	scry__free(s->ib);
	s->ib = NULL;
}

/* A new stream (the first, or the next member of a concatenation). */
static int stream_start(src *s)
{
	int ok = 1;
	switch (s->kind) {
	case K_GZIP:
		memset(&s->z, 0, sizeof s->z);
		ok = inflateInit2(&s->z, 15 + 16) == Z_OK;
		break;
	case K_BZIP2:
		memset(&s->bz, 0, sizeof s->bz);
		ok = BZ2_bzDecompressInit(&s->bz, 0, 0) == BZ_OK;
		break;
	case K_XZ:
		s->xz = (lzma_stream)LZMA_STREAM_INIT;
		ok = lzma_stream_decoder(&s->xz, UINT64_MAX, LZMA_CONCATENATED) == LZMA_OK;
		break;
	case K_ZSTD:
		ok = !ZSTD_isError(ZSTD_initDStream(s->zs));
		break;
	}
	s->started = ok && s->kind != K_ZSTD;
	s->ended = false;
	return ok ? 0 : SCRY_ENOMEM;
}

static void stream_end(src *s)
{
	if (s->started) {
		if (s->kind == K_GZIP)
			inflateEnd(&s->z);
		else if (s->kind == K_BZIP2)
			BZ2_bzDecompressEnd(&s->bz);
		else if (s->kind == K_XZ)
			lzma_end(&s->xz);
	}
	s->started = false;
}

/* src_read() of a plain file: the bytes src_open() buffered first, then
 * straight from the file. */
static ssize_t plain_read(src *s, char *out, size_t cap)
{
	if (s->ipos < s->ilen) {
		size_t k = s->ilen - s->ipos < cap ? s->ilen - s->ipos : cap;
		memcpy(out, s->ib + s->ipos, k);
		s->ipos += k;
		s->out += k;
		return (ssize_t)k;
	}
	ssize_t r;
	do
		r = read(s->fd, out, cap);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		snprintf(s->err, sizeof s->err, "%s", strerror(errno));
		return -1;
	}
	s->raw += (uint64_t)r;
	s->out += (uint64_t)r;
	return r;
}

/* What src_read()'s loop does after a step. */
enum { STEP_ON, STEP_NEXT, STEP_STOP };

/* At the end of the input: xz reports its (concatenated) end only when
 * told there is no more input. Decodes into out[*got..cap). */
static int xz_finish(src *s, char *out, size_t cap, size_t *got)
{
	s->xz.next_in = NULL;
	s->xz.avail_in = 0;
	s->xz.next_out = (uint8_t *)out + *got;
	s->xz.avail_out = cap - *got;
	lzma_ret r = lzma_code(&s->xz, LZMA_FINISH);
	*got = cap - s->xz.avail_out;
	if (r == LZMA_STREAM_END) {
		stream_end(s);
		s->ended = true;
		s->kind = K_PLAIN; /* nothing more to decode */
		s->ipos = s->ilen = 0;
		s->ieof = true;
		return STEP_STOP;
	}
	if (r == LZMA_OK && *got < cap)
		return STEP_NEXT;
	if (r != LZMA_OK && r != LZMA_BUF_ERROR) {
		stream_end(s);
		s->kind = K_PLAIN;
		s->ipos = s->ilen = 0;
		snprintf(s->err, sizeof s->err, "the xz data is %s after %llu bytes of log",
		         r == LZMA_DATA_ERROR || r == LZMA_FORMAT_ERROR ? "corrupt" : "truncated",
		         (unsigned long long)(s->out + *got));
		return STEP_STOP;
	}
	return *got == cap ? STEP_STOP : STEP_ON;
}

/* Runs the decoder once from the input buffered into o[0..*out_left);
 * *in_left and *out_left are what remains of each. Returns 1 when the
 * stream ended, -1 when the data is bad (*why says how, or NULL), else 0. */
static int decode(src *s, char *o, size_t *in_left, size_t *out_left, const char **why)
{
	switch (s->kind) {
	case K_GZIP: {
		s->z.next_in = s->ib + s->ipos;
		s->z.avail_in = (uInt)*in_left;
		s->z.next_out = (Bytef *)o;
		s->z.avail_out = (uInt)*out_left;
		int r = inflate(&s->z, Z_NO_FLUSH);
		*in_left = s->z.avail_in;
		*out_left = s->z.avail_out;
		if (r == Z_STREAM_END)
			return 1;
		if (r != Z_OK && r != Z_BUF_ERROR) {
			*why = s->z.msg;
			return -1;
		}
		return 0;
	}
	case K_BZIP2: {
		s->bz.next_in = (char *)s->ib + s->ipos;
		s->bz.avail_in = (unsigned)*in_left;
		s->bz.next_out = o;
		s->bz.avail_out = (unsigned)*out_left;
		int r = BZ2_bzDecompress(&s->bz);
		*in_left = s->bz.avail_in;
		*out_left = s->bz.avail_out;
		if (r == BZ_STREAM_END)
			return 1;
		if (r != BZ_OK) {
			*why = "corrupt bzip2 data";
			return -1;
		}
		return 0;
	}
	case K_XZ: {
		s->xz.next_in = s->ib + s->ipos;
		s->xz.avail_in = *in_left;
		s->xz.next_out = (uint8_t *)o;
		s->xz.avail_out = *out_left;
		lzma_ret r = lzma_code(&s->xz, s->ieof && !*in_left ? LZMA_FINISH : LZMA_RUN);
		*in_left = s->xz.avail_in;
		*out_left = s->xz.avail_out;
		if (r == LZMA_STREAM_END)
			return 1;
		if (r != LZMA_OK && r != LZMA_BUF_ERROR) {
			*why = "corrupt xz data";
			return -1;
		}
		return 0;
	}
	case K_ZSTD: {
		ZSTD_inBuffer ib = { s->ib + s->ipos, *in_left, 0 };
		ZSTD_outBuffer ob = { o, *out_left, 0 };
		size_t r = ZSTD_decompressStream(s->zs, &ob, &ib);
		*in_left -= ib.pos;
		*out_left -= ob.pos;
		if (ZSTD_isError(r)) {
			*why = ZSTD_getErrorName(r);
			return -1;
		}
		s->ended = r == 0; /* a frame ended; another may follow */
		return 0;
	}
	}
	return 0;
}

/* Reads up to cap decoded bytes. Returns the count, 0 at a clean end, or
 * -1 when the input is damaged or unreadable (s->err says why); the bytes
 * decoded before the damage are returned by the calls before. */
static ssize_t src_read(src *s, char *out, size_t cap)
{
	if (s->err[0])
		return -1;
	if (s->kind == K_PLAIN)
		return plain_read(s, out, cap);
	size_t got = 0;
	while (got < cap) {
		if (fill(s))
			break;
		if (s->ipos >= s->ilen && s->ieof && s->kind == K_XZ && s->started) {
			int step = xz_finish(s, out, cap, &got);
			if (step == STEP_STOP)
				break;
			if (step == STEP_NEXT)
				continue;
		}
		if (s->ipos >= s->ilen && s->ieof) {
			if (!s->ended && (s->started || s->kind == K_ZSTD) && (s->out > 0 || s->raw > 0))
				snprintf(s->err, sizeof s->err,
				         "the %s data is truncated: it ends after %llu bytes of log, without its end marker",
				         kind_names[s->kind], (unsigned long long)(s->out + got));
			break;
		}
		if (s->ended) {
			/* Data after a finished stream: another member (gzip, bzip2). */
			s->ended = false;
			if (s->kind == K_GZIP && s->ilen - s->ipos >= 1 && s->ib[s->ipos] != 0x1f) {
				s->ipos = s->ilen; /* trailing garbage (zero padding): gzip ignores it too */
				s->ended = true;
				continue;
			}
		}
		if (!s->started && s->kind != K_ZSTD && stream_start(s))
			return -1;
		size_t before_in = s->ilen - s->ipos, avail_out = cap - got;
		size_t in_left = before_in, out_left = avail_out;
		const char *why = NULL;
		int st = decode(s, out + got, &in_left, &out_left, &why);
		bool bad = st < 0, done = st > 0;
		s->ipos += before_in - in_left;
		got += avail_out - out_left;
		if (bad) {
			s->out += got;
			snprintf(s->err, sizeof s->err, "the %s data is corrupt after %llu bytes of log (%s)",
			         kind_names[s->kind], (unsigned long long)s->out, why ? why : "bad data");
			return got ? (ssize_t)got : -1;
		}
		if (done) {
			stream_end(s);
			s->ended = true;
		}
		if (before_in == in_left && avail_out == out_left && !done && !(s->ipos >= s->ilen)) {
			/* No progress with input and room: the decoder is stuck. */
			snprintf(s->err, sizeof s->err, "the %s data is corrupt after %llu bytes of log",
			         kind_names[s->kind], (unsigned long long)(s->out + got));
			break;
		}
	}
	s->out += got;
	if (got)
		return (ssize_t)got;
	return s->err[0] ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Identity of a file: size, hashes of its first and last 64 KiB       */
/* ------------------------------------------------------------------ */

/* A file is known by its size, the hash of its first FIRSTBLOCK bytes (the
 * lookup key: the same for a file and what it grows into) and the hash of
 * its last IDBLOCK bytes. */
enum { IDBLOCK = 1 << 16, FIRSTBLOCK = 256 };

typedef struct ident {
	unsigned char first[FIRSTBLOCK];
	size_t nfirst;
	unsigned char ring[IDBLOCK]; /* the last IDBLOCK bytes, circular */
	uint64_t size;
} ident;

static void ident_add(ident *id, const char *p, size_t n)
{
	if (id->nfirst < FIRSTBLOCK) {
		size_t k = FIRSTBLOCK - id->nfirst < n ? FIRSTBLOCK - id->nfirst : n;
		memcpy(id->first + id->nfirst, p, k);
		id->nfirst += k;
	}
	if (n >= IDBLOCK) {
		p += n - IDBLOCK;
		id->size += n - IDBLOCK;
		n = IDBLOCK;
	}
	size_t at = (size_t)(id->size % IDBLOCK);
	size_t k = IDBLOCK - at < n ? IDBLOCK - at : n;
	memcpy(id->ring + at, p, k);
	memcpy(id->ring, p + k, n - k);
	id->size += n;
}

static uint64_t ident_last(const ident *id)
{
	if (id->size <= IDBLOCK)
		return XXH3_64bits(id->ring, (size_t)id->size);
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	size_t at = (size_t)(id->size % IDBLOCK);
	XXH3_64bits_update(&st, id->ring + at, IDBLOCK - at);
	XXH3_64bits_update(&st, id->ring, at);
	return XXH3_64bits_digest(&st);
}

/* Reads a file's decoded bytes through `upto` (or the whole file) into id. */
static int ident_read(const char *path, uint64_t upto, ident *id, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	src s;
	int rc = src_open(&s, fd);
	while (!rc && id->size < upto) {
		size_t want = upto - id->size < cap ? (size_t)(upto - id->size) : cap;
		ssize_t r = src_read(&s, buf, want);
		if (r <= 0)
			break;
		ident_add(id, buf, (size_t)r);
	}
	src_close(&s);
	close(fd);
	return rc;
}

/* How many bytes at the start of `path` this store already imported: 0,
 * or the size of the largest earlier import whose content is this file's
 * start (the whole file when unchanged). */
static int already_imported(scry_logimport *imp, const char *path, uint64_t *skip, scry_error *err)
{
	*skip = 0;
	ident *id = scry__calloc(1, sizeof *id);
	char *buf = scry__malloc(IDBLOCK);
	int rc = 0;
	if (!id || !buf) {
		rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		goto out;
	}
	if (ident_read(path, FIRSTBLOCK, id, buf, IDBLOCK) || !id->nfirst)
		goto out;
	scry_log_file found[8];
	size_t nf = 0;
	if ((rc = scry_store_log_files_find(imp->store, XXH3_64bits(id->first, id->nfirst), found, sizeof found[0], 8,
	                                    &nf, err)))
		goto out;
	for (size_t i = 0; i < nf && !*skip; i++) {
		if (found[i].size < id->nfirst || (found[i].size > FIRSTBLOCK && id->nfirst < FIRSTBLOCK))
			continue;
		memset(id, 0, sizeof *id);
		ident_read(path, found[i].size, id, buf, IDBLOCK);
		if (id->size == found[i].size && ident_last(id) == found[i].last_hash)
			*skip = found[i].size;
	}
out:
	scry__free(id);
	scry__free(buf);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Feeding a file                                                      */
/* ------------------------------------------------------------------ */

/* The end of one file: detection runs on what there is, and a last
 * record without its newline was cut (counted as skipped). */
static int file_end(scry_logimport *imp, scry_error *err)
{
	return scry__logimport_process(imp, true, err);
}

int scry_logimport_feed_file(scry_logimport *imp, const char *path, scry_error *err)
{
	if (!imp || !path)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed_file: importer and path are required");
	if (imp->finished)
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_feed_file: the import is already finished");
	bool is_stdin = !strcmp(path, "-");
	const char *name = is_stdin ? "standard input" : path;
	uint64_t skip = 0;
	int rc;
	/* Only regular files are looked at twice: a pipe (<(zcat ...)) would
	 * lose what the first look read. */
	struct stat pre;
	bool regular = !is_stdin && !stat(path, &pre) && S_ISREG(pre.st_mode);
	if (regular && !imp->opts.force &&
	    ((rc = scry__logimport_store_idle(imp, err)) != 0 || (rc = already_imported(imp, path, &skip, err)) != 0))
		return rc;
	int fd = is_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return scry__fail_sys(err, SCRY_EIO, errno, "cannot open %s: %s", name, strerror(errno));
	struct stat sb;
	uint64_t total = (!fstat(fd, &sb) && S_ISREG(sb.st_mode)) ? (uint64_t)sb.st_size : 0;
	imp->st.files++;
	src s;
	if ((rc = src_open(&s, fd)) != 0) {
		rc = rc == SCRY_ENOMEM ? scry__fail(err, SCRY_ENOMEM, "out of memory")
		                       : scry__fail(err, SCRY_EIO, "cannot read %s: %s", name, s.err);
		src_close(&s);
		close(fd);
		return rc;
	}
	ident *id = regular ? scry__calloc(1, sizeof *id) : NULL;
	enum { CHUNK = 1 << 20 };
	uint64_t skipped = 0;
	for (;;) {
		if (scry__buf_grow(&imp->in, CHUNK)) {
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
			break;
		}
		char *dst = imp->in.ptr + imp->in.size;
		ssize_t r = src_read(&s, dst, CHUNK);
		if (r < 0) {
			imp->damaged = true;
			rc = scry__fail(err, SCRY_EIO, "%s: %s; the records read before this point are imported", name, s.err);
			break;
		}
		if (r == 0)
			break;
		if (id)
			ident_add(id, dst, (size_t)r);
		size_t n = (size_t)r;
		if (skipped < skip) {
			/* Already imported: drop it. */
			size_t k = skip - skipped < n ? (size_t)(skip - skipped) : n;
			skipped += k;
			memmove(dst, dst + k, n - k);
			n -= k;
		}
		imp->in.size += n;
		imp->in.ptr[imp->in.size] = 0;
		imp->st.bytes += n;
		if (n && (rc = scry__logimport_process(imp, false, err)) != 0)
			break;
		if (imp->opts.progress)
			imp->opts.progress(imp->opts.progress_ctx, "import", s.raw, total);
	}
	if (rc != SCRY_ENOMEM && !(rc && !imp->damaged)) {
		scry_error ferr = SCRY_ERROR_INIT;
		int frc = file_end(imp, &ferr);
		if (frc && !rc) {
			rc = frc;
			if (err)
				*err = ferr;
		}
	}
	imp->st.bytes_skipped += skipped;
	if (skip && skipped == skip && id && id->size == skip)
		imp->st.files_skipped++;
	if (!rc && id && id->size > skip) {
		/* Remember it, to be recorded with the import's last batch. */
		char *copy = scry__strdup(path);
		if (!copy || scry__array_grow((void **)&imp->files, &imp->afiles, imp->nfiles, sizeof *imp->files, 4)) {
			scry__free(copy);
			rc = scry__fail(err, SCRY_ENOMEM, "out of memory");
		} else {
			imp->files[imp->nfiles++] = (scry_log_file){ SCRY_LOG_FILE_VERSION, copy, id->size,
			                                              XXH3_64bits(id->first, id->nfirst), ident_last(id), 0 };
		}
	}
	scry__free(id);
	src_close(&s);
	close(fd);
	return rc;
}

int scry__logimport_record_files(scry_logimport *imp, scry_error *err)
{
	int rc = 0;
	for (size_t i = 0; i < imp->nfiles && !rc; i++)
		rc = scry_store_log_file_add(imp->store, &imp->files[i], err);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Rotated files in order                                              */
/* ------------------------------------------------------------------ */

/* The first "YYYY-MM-DD HH:MM:SS[.ffffff]" in p, as a comparable string
 * (fraction padded to 6 digits), or "". */
static void first_time(const char *p, size_t n, char out[32])
{
	out[0] = 0;
	for (size_t i = 0; i + 19 <= n; i++) {
		const char *q = p + i;
		if (q[4] == '-' && q[7] == '-' && (q[10] == ' ' || q[10] == 'T') && q[13] == ':' && q[16] == ':' &&
		    q[0] >= '1' && q[0] <= '2') {
			bool ok = true;
			static const int dig[] = { 0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18 };
			for (int k = 0; k < 14 && ok; k++)
				ok = q[dig[k]] >= '0' && q[dig[k]] <= '9';
			if (ok) {
				memcpy(out, q, 19);
				out[10] = ' ';
				out[19] = '.';
				size_t f = 0;
				if (i + 19 < n && q[19] == '.')
					for (; f < 6 && i + 20 + f < n && q[20 + f] >= '0' && q[20 + f] <= '9'; f++)
						out[20 + f] = q[20 + f];
				for (; f < 6; f++)
					out[20 + f] = '0';
				out[26] = 0;
				return;
			}
		}
	}
}

typedef struct ordent {
	char t[32];
	size_t i;
} ordent;

static int cmp_ord(const void *a, const void *b)
{
	const ordent *x = a, *y = b;
	/* Undated files after the dated ones, in their given order. */
	if (!x->t[0] || !y->t[0])
		return x->t[0] ? -1 : y->t[0] ? 1 : (x->i > y->i) - (x->i < y->i);
	int c = strcmp(x->t, y->t);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

int scry_logimport_order_files(const char *const *paths, size_t n, size_t *order, scry_error *err)
{
	if ((n && (!paths || !order)))
		return scry__fail(err, SCRY_EINVAL, "scry_logimport_order_files: paths and order are required");
	ordent *e = scry__calloc(n ? n : 1, sizeof *e);
	char *buf = scry__malloc(IDBLOCK);
	if (!e || !buf) {
		scry__free(e);
		scry__free(buf);
		return scry__fail(err, SCRY_ENOMEM, "out of memory");
	}
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		e[i].i = i;
		struct stat sb;
		if (!strcmp(paths[i], "-") || stat(paths[i], &sb) || !S_ISREG(sb.st_mode))
			continue; /* standard input, pipes: cannot be read twice (they keep their place) */
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = scry__fail_sys(err, SCRY_EIO, errno, "cannot open %s: %s", paths[i], strerror(errno));
			break;
		}
		src s;
		size_t got = 0;
		if (!src_open(&s, fd)) {
			ssize_t r;
			while (got < IDBLOCK && (r = src_read(&s, buf + got, IDBLOCK - got)) > 0)
				got += (size_t)r;
		}
		src_close(&s);
		close(fd);
		first_time(buf, got, e[i].t);
	}
	if (!rc) {
		qsort(e, n, sizeof *e, cmp_ord);
		for (size_t i = 0; i < n; i++)
			order[i] = e[i].i;
	}
	scry__free(e);
	scry__free(buf);
	return rc;
}
