/*
 * tests/fuzz/fuzz_common.h - helpers shared by the fuzz targets: a
 * deterministic chunking RNG (whole-vs-chunked differentials), a digest
 * writer, and the failure macro (abort, so libFuzzer and the runner both
 * keep the input).
 */
#ifndef SCRY_FUZZ_COMMON_H
#define SCRY_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                              \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz check failed: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			abort();                                           \
		}                                                          \
	} while (0)

/* Equal contents of two scry_bufs (either may be empty with a NULL ptr). */
#define FUZZ_BUF_EQ(a, b) ((a).size == (b).size && (!(a).size || !memcmp((a).ptr, (b).ptr, (a).size)))

/* splitmix64: chunk sizes derived from the input, so a failure replays. */
static inline uint64_t fuzz_rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t fuzz_seed(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* A chunk length in [1, left]: mostly small, sometimes 1, sometimes large. */
static inline size_t fuzz_chunk(uint64_t *s, size_t left)
{
	uint64_t r = fuzz_rng(s);
	size_t k;
	switch (r & 3) {
	case 0: k = 1; break;
	case 1: k = 1 + (size_t)((r >> 8) % 7); break;
	case 2: k = 1 + (size_t)((r >> 8) % 64); break;
	default: k = 1 + (size_t)((r >> 8) % 4096); break;
	}
	return k < left ? k : left;
}
#endif
