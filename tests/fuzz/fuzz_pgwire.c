/*
 * tests/fuzz/fuzz_pgwire.c - the wire-protocol decoder, both directions.
 *
 * Input: segments [ctl][len lo][len hi][bytes...]; ctl bit 0 is the
 * direction (0 client->server, 1 server->client). Two decoders see the same
 * segments in the same order: one gets each segment whole, the other in
 * random chunks (1 byte to 4 KB, from a seed derived from the input). Their
 * callbacks (startup, every event field) and their return codes after every
 * segment must be identical: the decoder is sans-I/O and must not depend on
 * how the bytes were cut.
 */
#include "fuzz_common.h"
#include "internal.h"
#include <scry/pgwire.h>

typedef struct sink {
	scry_buf out;
} sink;

static void on_startup(void *ctx, const scry_pgwire_startup *st)
{
	sink *s = ctx;
	scry__buf_printf(&s->out, "S%d.%d|%s|%s|%s\n", st->protocol_major, st->protocol_minor,
	                 st->user ? st->user : "(null)", st->database ? st->database : "(null)",
	                 st->application ? st->application : "(null)");
}

static void on_event(void *ctx, const scry_event *ev)
{
	sink *s = ctx;
	scry__buf_printf(&s->out, "E%d|%lld|%lld|%lld|%.5s|%d|", (int)ev->kind, (long long)ev->start_us,
	                 (long long)ev->duration_us, (long long)ev->rows, ev->sqlstate, ev->nparams);
	size_t qn = ev->query_len ? ev->query_len : (ev->query ? strlen(ev->query) : 0);
	scry__buf_put(&s->out, ev->query ? ev->query : "", qn);
	for (int i = 0; i < ev->nparams; i++) {
		const scry_param *p = &ev->params[i];
		scry__buf_printf(&s->out, "|%u/%d/%d:", p->type_oid, (int)p->format, (int)p->length);
		if (p->value && p->length > 0)
			scry__buf_put(&s->out, p->value, (size_t)p->length);
	}
	scry__buf_printf(&s->out, "|%s\n", ev->error_message ? ev->error_message : "");
}

static scry_pgwire *decoder(sink *s)
{
	scry_pgwire_callbacks cb = { SCRY_PGWIRE_CALLBACKS_VERSION, on_startup, on_event, s };
	scry_pgwire_options o;
	scry_pgwire_options_init(&o);
	o.max_message_bytes = 1 << 16; /* exercise the limits, keep memory small */
	o.max_query_bytes = 2000;
	o.max_pending = 64;
	scry_pgwire *d = NULL;
	FUZZ_CHECK(scry_pgwire_new(&d, &cb, &o, NULL) == 0, "scry_pgwire_new");
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sink a = { SCRY_BUF_INIT }, b = { SCRY_BUF_INIT };
	scry_pgwire *whole = decoder(&a), *chunked = decoder(&b);
	uint64_t seed = fuzz_seed(data, size);
	size_t i = 0;
	int64_t now = 1000;
	int rca = 0, rcb = 0;
	while (i < size) {
		unsigned ctl = data[i++];
		size_t len = 0;
		if (i < size)
			len = data[i++];
		if (i < size)
			len |= (size_t)data[i++] << 8;
		if (len > size - i)
			len = size - i;
		scry_pgwire_dir dir = (ctl & 1) ? SCRY_PGWIRE_BACKEND : SCRY_PGWIRE_FRONTEND;
		const uint8_t *seg = data + i;
		i += len;
		now += 1 + (ctl >> 4);
		scry_error ea = SCRY_ERROR_INIT, eb = SCRY_ERROR_INIT;
		rca = scry_pgwire_feed(whole, dir, seg, len, now, &ea);
		rcb = 0;
		for (size_t off = 0; off < len || (len == 0 && off == 0);) {
			size_t k = len ? fuzz_chunk(&seed, len - off) : 0;
			scry_error e = SCRY_ERROR_INIT;
			int rc = scry_pgwire_feed(chunked, dir, seg + off, k, now, &e);
			if (rc && !rcb) {
				rcb = rc;
				eb = e;
			}
			off += k;
			if (len == 0)
				break;
		}
		if (!rcb && rca) { /* an earlier error of b is repeated by every call */
			scry_error e = SCRY_ERROR_INIT;
			rcb = scry_pgwire_feed(chunked, dir, seg, 0, now, &e);
			eb = e;
		}
		FUZZ_CHECK(rca == rcb, "return codes differ: whole %d (%s), chunked %d (%s)", rca,
		           ea.message, rcb, eb.message);
		FUZZ_CHECK(FUZZ_BUF_EQ(a.out, b.out),
		           "callbacks differ:\nwhole:\n%.*s\nchunked:\n%.*s", (int)a.out.size,
		           a.out.ptr ? a.out.ptr : "", (int)b.out.size, b.out.ptr ? b.out.ptr : "");
		(void)scry_pgwire_state(whole);
		(void)scry_pgwire_tx_status(whole);
		if (rca)
			break;
	}
	FUZZ_CHECK(scry_pgwire_state(whole) == scry_pgwire_state(chunked), "states differ");
	FUZZ_CHECK(scry_pgwire_tx_status(whole) == scry_pgwire_tx_status(chunked), "tx status differs");
	scry_pgwire_stats sa = SCRY_PGWIRE_STATS_INIT, sb = SCRY_PGWIRE_STATS_INIT;
	scry_pgwire_stats_get(whole, &sa);
	scry_pgwire_stats_get(chunked, &sb);
	FUZZ_CHECK(!memcmp(&sa, &sb, sizeof sa), "stats differ");
	scry_pgwire_free(whole);
	scry_pgwire_free(chunked);
	scry_buf_dispose(&a.out);
	scry_buf_dispose(&b.out);
	return 0;
}
