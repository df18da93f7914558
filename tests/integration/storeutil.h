/*
 * storeutil.h - store-level helpers the integration tests share: put
 * through the library, count and compare whole stores key by key.
 * Failures fail the current cmocka test.
 */
#ifndef KV_TEST_STOREUTIL_H
#define KV_TEST_STOREUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "kv.h"

/* Run kv on a store: KV(&r, store, args...); KV_IN also gives it stdin. */
#define KV(r, store, ...) h_kv((r), (store), __VA_ARGS__, NULL)
#define KV_IN(r, in, len, store, ...)                                          \
	do {                                                                   \
		struct h_spawn_opts o_ = {.stdin_data = (in),                  \
		                          .stdin_len = (len)};                 \
		h_kv_opts((r), &o_, (store), __VA_ARGS__, NULL);               \
	} while (0)

/* kv CMD KEY [VAL] on store must exit 0. */
void expect_ok(const char *store, const char *cmd, const char *key,
               const char *val);

/* Each line (NULL-terminated, at most 4 words) of bad arguments, given
 * to kv -s store, must exit 2 with one "kv: " line and no output. */
void bad_command_lines(const char *store, const char *const lines[][5],
                       size_t n);

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
