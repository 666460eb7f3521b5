/*
 * lib/util/fill.h - filling a fixed-size part (a header, a body) from
 * bytes that arrive in chunks of any size (internal). Shared by the wire
 * decoder and the capture proxy, on their per-read path: static inline.
 */
#ifndef SCRY_UTIL_FILL_H
#define SCRY_UTIL_FILL_H

#include <stddef.h>
#include <string.h>

/* Appends to dst (holding *have of want bytes) what it still lacks, at most
 * len bytes of src; returns how many it took (the caller moves past them). */
static inline size_t scry__fill(void *dst, size_t *have, size_t want, const void *src, size_t len)
{
	size_t k = want - *have;
	if (k > len)
		k = len;
	memcpy((char *)dst + *have, src, k);
	*have += k;
	return k;
}

#endif
