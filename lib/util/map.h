/*
 * lib/util/map.h - the library's hash maps (internal): scry__u64map (uint64
 * key -> entry index, open addressing) and scry__strmap (string key ->
 * pointer, chained), and the one byte-string hash they use. Modules use
 * these instead of writing their own tables.
 */
#ifndef SCRY_UTIL_MAP_H
#define SCRY_UTIL_MAP_H

#include "internal.h"

/* FNV-1a over n bytes: cheap and good enough for names and keys. */
SCRY_HIDDEN uint64_t scry__hash_bytes(const void *p, size_t n);

typedef struct scry__strmap_entry scry__strmap_entry;

/*
 * String key -> void *value. Keys are copied. `unref`, when set, is called
 * on a value when it leaves the map (replaced, deleted, cleared, freed).
 * Zero-initialise (then set unref); free with scry__strmap_free.
 */
typedef struct scry__strmap {
	scry__strmap_entry **buckets;
	size_t nbuckets, count;
	void (*unref)(void *value);
} scry__strmap;

/* The value stored under key, or NULL. */
SCRY_HIDDEN void *scry__strmap_get(const scry__strmap *m, const char *key);
/* Stores value under key, replacing (and unref'ing) any. Returns 0 or
 * SCRY_ENOMEM; on failure the map does not take the value. */
SCRY_HIDDEN int scry__strmap_put(scry__strmap *m, const char *key, void *value);
/* Removes key (unref'ing its value); absent keys are ignored. */
SCRY_HIDDEN void scry__strmap_del(scry__strmap *m, const char *key);
/* Removes every entry, keeping the table. */
SCRY_HIDDEN void scry__strmap_clear(scry__strmap *m);
SCRY_HIDDEN void scry__strmap_free(scry__strmap *m);

#endif
