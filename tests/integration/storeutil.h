/*
 * storeutil.h - store-level helpers the integration tests share: put
 * through the library, count and compare whole stores key by key.
 * Failures fail the current cmocka test.
 */
#ifndef KV_TEST_STOREUTIL_H
#define KV_TEST_STOREUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/* kv_open(store, KV_RDWR), failing the test if it does not open. */
kv_t *attach(const char *store);

/* kv_put with a TTL (0: none), failing the test on any error. */
void lib_put(kv_t *kv, const void *key, size_t klen, const void *val,
             size_t vlen, uint64_t ttl_ms);

/* The value of a key, malloc'd (free it); NULL if absent. */
char *get_value(kv_t *kv, const void *key, size_t klen, size_t *vlen);

/* Every live key of a store, by kv_scan. */
struct keylist {
	size_t n, cap;
	char **k;
	size_t *len;
};
void all_keys(kv_t *kv, struct keylist *l);
void keylist_free(struct keylist *l);

/* How many live keys the store has, counted by kv_scan. */
size_t count_keys(const char *store);

/* Every key of a is in b with the same bytes and (within tol_ms) the same
 * TTL, and b holds nothing else. */
void compare_stores(const char *a, const char *b, int64_t tol_ms);

#endif
