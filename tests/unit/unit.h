/*
 * unit.h - helpers shared by the in-process unit tests of libkv. They may
 * look inside the store (kv_internal.h): the point of a unit test is to pin
 * the invariants the public API cannot show.
 */
#ifndef KV_UNIT_H
#define KV_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "daemon.h"
#include "kv_internal.h"

/* assert_int_equal that names both status codes on failure. */
#define assert_kv(expected, actual)                                            \
	do {                                                                   \
		int e_ = (expected), a_ = (actual);                            \
		if (e_ != a_)                                                  \
			fail_msg("%s: expected %s, got %s (%s)", #actual,      \
			         kv_errname(e_), kv_errname(a_),               \
			         kv_strerror(a_));                             \
	} while (0)

static inline void u_report(void *ctx, const char *problem)
{
	(void)ctx;
	print_error("kv_check: %s\n", problem);
}

/* The store must pass kv_check. */
#define assert_sound(kv) assert_kv(KV_OK, kv_check((kv), u_report, NULL))

/* A new store with the given size, max value, index size and flags. */
static inline kv_t *u_create_flags(const char *tag, uint64_t size,
                                   uint32_t max_value, uint64_t max_items,
                                   uint32_t flags)
{
	struct kv_options o = {0};
	kv_t *kv = NULL;
	o.size = size;
	o.max_value = max_value;
	o.max_items = max_items;
	o.flags = KV_CREATE_EXCL | flags;
	assert_kv(KV_OK, kv_create(h_store_name(tag), &o, &kv));
	return kv;
}

static inline kv_t *u_create(const char *tag, uint64_t size,
                             uint32_t max_value, uint64_t max_items)
{
	return u_create_flags(tag, size, max_value, max_items, 0);
}

static inline int u_puts(kv_t *kv, const char *k, const char *v)
{
	return kv_put(kv, k, strlen(k), v, strlen(v), NULL);
}

/* Get a key that must exist and compare its value. */
static inline void u_expect(kv_t *kv, const void *k, size_t kl, const void *v,
                            size_t vl)
{
	char *buf = malloc(vl + 1);
	size_t n = 0;
	assert_non_null(buf);
	int rc = kv_get(kv, k, kl, buf, vl + 1, &n);
	if (rc != KV_OK)
		free(buf);
	assert_kv(KV_OK, rc);
	assert_int_equal(n, vl);
	assert_memory_equal(buf, v, vl);
	free(buf);
}

static inline void u_expect_str(kv_t *kv, const char *k, const char *v)
{
	u_expect(kv, k, strlen(k), v, strlen(v));
}

static inline void u_absent(kv_t *kv, const void *k, size_t kl)
{
	char buf[16];
	size_t n = 0;
	assert_kv(KV_ENOTFOUND, kv_get(kv, k, kl, buf, sizeof buf, &n));
}

/* The item offset of a key, from the index, or 0. Caller must not race
 * with writers. */
static inline uint64_t u_item_of(kv_t *kv, const void *k, size_t kl)
{
	struct kv_found f;
	assert_kv(KV_OK, kv__find_locked(kv, kv__hash(kv, k, kl), k, kl, &f));
	return f.item;
}

/* Sum over keys of (buckets probed to find it), walking the index. */
static inline double u_mean_probe(kv_t *kv)
{
	uint64_t n = 0, sum = 0;
	for (uint64_t b = 0; b < kv->nbuckets; b++) {
		struct kv_bucket *bk = kv__bucket(kv, b);
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = bk->slot[s];
			if (!w)
				continue;
			const struct kv_item *it = (const void *)(kv->base +
			                                          KV_SLOT_OFF(w));
			uint64_t home = kv__home(kv, kv__hash(kv, kv__item_key(it), it->klen));
			sum += (kv__bdist(kv, home, b)) + 1;
			assert_int_equal(KV_SLOT_DIST(w), kv__bdist(kv, home, b));
			n++;
		}
	}
	return n ? (double)sum / (double)n : 0.0;
}

#endif /* KV_UNIT_H */
