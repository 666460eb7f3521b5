/*
 * lib/util/map.c - the library's hash maps (see map.h).
 */
#include "util/map.h"

uint64_t scry__hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

/* ---- uint64 -> entry index (declared in lib/internal.h) ---------------- */

static int u64map_grow(scry__u64map *m)
{
	/* Small at first: a replay keeps one map per connection (its prepared
	 * statements), 2,000 connections at 12 kB each would be 24 MB. */
	size_t cap = m->keys ? (m->mask + 1) * 2 : 64;
	uint64_t *keys = scry__calloc(cap, sizeof *keys);
	uint32_t *vals = scry__calloc(cap, sizeof *vals);
	if (!keys || !vals) {
		scry__free(keys);
		scry__free(vals);
		return SCRY_ENOMEM;
	}
	for (size_t i = 0; m->keys && i <= m->mask; i++) {
		if (!m->vals[i])
			continue;
		size_t j = (size_t)(m->keys[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
		while (vals[j])
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	scry__free(m->keys);
	scry__free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->mask = cap - 1;
	return 0;
}

/* Returns the slot for key: vals[slot] is 0 when absent. */
static size_t u64map_slot(const scry__u64map *m, uint64_t key)
{
	size_t j = (size_t)(key * 0x9E3779B97F4A7C15ull) & m->mask;
	while (m->vals[j] && m->keys[j] != key)
		j = (j + 1) & m->mask;
	return j;
}

uint32_t scry__u64map_get(const scry__u64map *m, uint64_t key)
{
	if (!m->keys)
		return 0;
	return m->vals[u64map_slot(m, key)];
}

int scry__u64map_put(scry__u64map *m, uint64_t key, uint32_t val)
{
	if ((!m->keys || (m->used + 1) * 2 > m->mask + 1) && u64map_grow(m))
		return SCRY_ENOMEM;
	size_t j = u64map_slot(m, key);
	if (!m->vals[j])
		m->used++;
	m->keys[j] = key;
	m->vals[j] = val;
	return 0;
}

void scry__u64map_free(scry__u64map *m)
{
	scry__free(m->keys);
	scry__free(m->vals);
	memset(m, 0, sizeof *m);
}

/* ---- string -> pointer --------------------------------------------------- */

struct scry__strmap_entry {
	char *key;
	void *value;
	scry__strmap_entry *next;
};

static scry__strmap_entry **strmap_bucket(const scry__strmap *m, const char *key)
{
	return &m->buckets[scry__hash_bytes(key, strlen(key)) & (m->nbuckets - 1)];
}

void *scry__strmap_get(const scry__strmap *m, const char *key)
{
	if (!m->nbuckets)
		return NULL;
	for (scry__strmap_entry *e = *strmap_bucket(m, key); e; e = e->next)
		if (!strcmp(e->key, key))
			return e->value;
	return NULL;
}

static void strmap_drop(scry__strmap *m, scry__strmap_entry *e)
{
	if (m->unref)
		m->unref(e->value);
	scry__free(e->key);
	scry__free(e);
}

void scry__strmap_del(scry__strmap *m, const char *key)
{
	if (!m->nbuckets)
		return;
	for (scry__strmap_entry **pp = strmap_bucket(m, key); *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->key, key)) {
			scry__strmap_entry *e = *pp;
			*pp = e->next;
			strmap_drop(m, e);
			m->count--;
			return;
		}
	}
}

static int strmap_grow(scry__strmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
	scry__strmap_entry **b = scry__calloc(n, sizeof *b);
	if (!b)
		return SCRY_ENOMEM;
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (scry__strmap_entry *e = m->buckets[i], *next; e; e = next) {
			next = e->next;
			size_t j = scry__hash_bytes(e->key, strlen(e->key)) & (n - 1);
			e->next = b[j];
			b[j] = e;
		}
	}
	scry__free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

int scry__strmap_put(scry__strmap *m, const char *key, void *value)
{
	scry__strmap_del(m, key);
	if (m->count >= m->nbuckets && strmap_grow(m))
		return SCRY_ENOMEM;
	scry__strmap_entry *e = scry__malloc(sizeof *e);
	char *k = scry__strdup(key);
	if (!e || !k) {
		scry__free(e);
		scry__free(k);
		return SCRY_ENOMEM;
	}
	scry__strmap_entry **b = strmap_bucket(m, key);
	e->key = k;
	e->value = value;
	e->next = *b;
	*b = e;
	m->count++;
	return 0;
}

void scry__strmap_clear(scry__strmap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (scry__strmap_entry *e = m->buckets[i], *next; e; e = next) {
			next = e->next;
			strmap_drop(m, e);
		}
		m->buckets[i] = NULL;
	}
	m->count = 0;
}

void scry__strmap_free(scry__strmap *m)
{
	scry__strmap_clear(m);
	scry__free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = 0;
}
