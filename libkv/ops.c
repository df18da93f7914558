/*
 * ops.c - operations built from the primitives of api.c and index.c:
 * atomic increment, flush, and the incremental expiry sweep kvd runs.
 *
 * Each holds the writer lock only for a bounded amount of work: an
 * increment is one read and one put; flush and the sweep work a slice of
 * the index at a time and let other writers in between slices. Every
 * removal is an ordinary journaled delete, so a crash in the middle of a
 * flush or a sweep leaves a sound store with part of the work done.
 */
#include <stdio.h>

#include "daemon.h"
#include "kv_internal.h"

#define KV_FLUSH_SLICE 256 /* buckets per lock hold */
#define KV_SWEEP_MAX 128   /* removals per sweep step */
#define KV_NUM_MAX 20      /* digits of an int64_t, sign apart */

static uint64_t mono_ns(void)
{
	return kv__os_mono_ns();
}

/* Parse an optionally signed decimal integer that fills the whole value. */
static int parse_int(const uint8_t *p, size_t n, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	uint64_t v = 0;

	if (n > 0 && (p[0] == '-' || p[0] == '+')) {
		neg = p[0] == '-';
		i = 1;
	}
	if (i == n || n - i > KV_NUM_MAX)
		return KV_ENOTNUM;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return KV_ENOTNUM;
		uint64_t d = (uint64_t)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return KV_ENOTNUM;
		v = v * 10 + d;
	}
	if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
		return KV_ENOTNUM;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return KV_OK;
}

int kv_incr(kv_t *kv, const void *key, size_t klen, int64_t delta,
            int64_t *result)
{
	if (kv == NULL || (key == NULL && klen != 0))
		return KV_EINVAL;
	if (klen == 0 || klen > kv->max_key)
		return KV_EKEYSIZE;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;

	uint64_t h = kv__hash(kv, key, klen);
	struct kv_found f;
	int64_t cur = 0, next;
	uint64_t expire = 0;
	uint32_t cflags = 0;
	int rc = kv__lock(kv);
	if (rc != KV_OK)
		return rc;
	rc = kv__find_locked(kv, h, key, klen, &f);
	if (rc != KV_OK)
		goto out;
	if (f.item) {
		const struct kv_item *it =
		    (const struct kv_item *)(void *)(kv->base + f.item);
		uint64_t e = kv__item_expire(it);
		if (e == 0 || kv__now_ms() < e) {
			expire = e;
			cflags = kv__item_cflags(it);
			rc = parse_int(kv__item_key(it) + it->klen, it->vlen,
			               &cur);
			if (rc != KV_OK)
				goto out;
		}
	}
	if (__builtin_add_overflow(cur, delta, &next)) {
		rc = KV_EOVERFLOW;
		goto out;
	}
	char buf[24];
	int n = snprintf(buf, sizeof buf, "%lld", (long long)next);
	struct kv_put_meta m = {.expire = expire, .cflags = cflags};
	rc = kv__put_locked(kv, h, key, klen, buf, (size_t)n, &m);
	if (rc == KV_OK && result != NULL)
		*result = next;
out:
	kv__unlock(kv);
	return rc;
}

/* Remove every item in buckets [first, first + n) that `pick` selects.
 * Removing from a bucket can pull keys back into it (the backward shift),
 * so each bucket is rescanned until nothing in it is picked. Keys only
 * ever move into the bucket being emptied or later ones, never into one
 * already done. Lock held. */
static uint64_t remove_in(struct kv *kv, uint64_t first, uint64_t n,
                          bool only_expired, int *rc)
{
	uint64_t removed = 0, now = kv__now_ms();

	for (uint64_t i = 0; i < n && *rc == KV_OK; i++) {
		struct kv_bucket *bk = kv__bucket(kv, kv__badd(kv, first, i));
		for (unsigned s = 0; s < KV_SLOTS && *rc == KV_OK; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w == 0 || (only_expired && !(w & KV_SLOT_TTL)))
				continue;
			struct kv_found f;
			*rc = kv__find_chunk_locked(kv, KV_SLOT_OFF(w), &f);
			if (*rc != KV_OK)
				break;
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base +
			                                     f.item);
			uint64_t e = kv__item_expire(it);
			bool exp = e != 0 && now >= e;
			if (only_expired && !exp)
				continue;
			kv__remove_locked(kv, &f,
			                  exp ? KV_WHY_EXPIRED : KV_WHY_DELETED,
			                  false);
			removed++;
			s = (unsigned)-1; /* look at this bucket again */
		}
	}
	return removed;
}

int kv_flush(kv_t *kv, uint64_t *removed)
{
	if (kv == NULL)
		return KV_EINVAL;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;
	uint64_t total = 0, gen = 0;
	int rc = KV_OK;
	/* A slice of buckets per lock hold. A resize meanwhile renumbers
	 * the buckets: start again from the first, so no key that was there
	 * before the flush survives it. */
	for (uint64_t b = 0; rc == KV_OK; b += KV_FLUSH_SLICE) {
		rc = kv__lock(kv);
		if (rc != KV_OK)
			break;
		uint64_t g = atomic_load_explicit(&kv->gen,
		                                  memory_order_relaxed);
		if (b != 0 && g != gen)
			b = 0;
		gen = g;
		if (b >= kv->nbuckets) {
			kv__unlock(kv);
			break;
		}
		uint64_t n = kv->nbuckets - b < KV_FLUSH_SLICE
		                 ? kv->nbuckets - b
		                 : KV_FLUSH_SLICE;
		total += remove_in(kv, b, n, false, &rc);
		kv__unlock(kv);
	}
	if (removed != NULL)
		*removed = total;
	return rc;
}

int kv__sweep(kv_t *kv, uint64_t buckets, uint64_t *expired)
{
	struct kv_hdr *h = kv__hdr(kv);
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;
	int rc = kv__lock(kv);
	if (rc != KV_OK)
		return rc;
	if (buckets > kv->nbuckets)
		buckets = kv->nbuckets;
	uint64_t t0 = mono_ns();
	uint64_t first = atomic_load_explicit(&h->sweep_hand,
	                                      memory_order_relaxed) %
	                 kv->nbuckets;
	uint64_t n = 0, i;
	/* A bucket at a time, so a mass expiry is spread over many steps
	 * (at most KV_SWEEP_MAX removals each) instead of one long hold. The
	 * sweep also heals a bucket damage left odd (no write is in progress
	 * while we hold the lock), so readers that cannot lock are served. */
	for (i = 0; i < buckets && n < KV_SWEEP_MAX && rc == KV_OK; i++) {
		uint64_t b = kv__badd(kv, first, i);
		kv__make_even_locked(kv, b, 1);
		n += remove_in(kv, b, 1, true, &rc);
	}
	atomic_store_explicit(&h->sweep_hand, kv__badd(kv, first, i),
	                      memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sweeps, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sweep_ns, mono_ns() - t0,
	                          memory_order_relaxed);
	kv__unlock(kv);
	if (expired != NULL)
		*expired = n;
	return rc;
}
