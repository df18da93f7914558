/*
 * index.c - the hash index: finding a key without a lock, and the writer's
 * probe, link and unlink.
 *
 * Probing
 * -------
 * A key's hash is XXH3-64 with the store's random seed. Its low 48 bits
 * pick a home bucket (scaled onto the bucket count, see kv__home), its top
 * 16 bits are the tag kept in the slot beside the item's offset. A key lives in the first bucket, in the order home,
 * home+1, ... (wrapping), that had a free slot when it was inserted, at
 * most KV_MAX_PROBE buckets from home. Each bucket counts in `overflow` the
 * keys that probed past it, so a lookup that finds no match in a bucket with
 * overflow 0 can stop: no key that hashes to home lies beyond. Deleting a
 * key decrements the counts it incremented. There are no tombstones, so a
 * store that has seen a billion deletes probes exactly as one that has
 * seen none.
 *
 * Lock-free reads
 * ---------------
 * Writers never change an item after publishing it. To replace a value
 * they write a new item and swap the slot; to delete they clear it (and
 * may move displaced keys of the same probe chain back towards home, the
 * backward shift: a key then appears in its new slot before it leaves the
 * old one); only then is the old chunk freed. Every such change happens
 * while the sequence number of each bucket it touches is odd. So a
 * reader:
 *
 *   1. loads seq (acquire); if odd, a writer is inside: retry;
 *   2. scans the slots, and for a tag match bounds-checks the offset and
 *      lengths against the arena, compares the key, copies the value;
 *   3. loads seq again after an acquire fence: if it is unchanged, the slot
 *      held that item for the whole read, so the chunk was not freed, not
 *      reused, and the bytes copied are exactly the item's. Otherwise retry.
 *
 * The reader stores nothing to shared memory. Bytes read before the check
 * may be garbage (a chunk reused under us); they are only ever compared,
 * bounded and copied into the caller's buffer, and are discarded when the
 * check fails. A bucket that stays odd (its writer is slow, or died) makes
 * the reader back off and, after about a millisecond, take the writer lock
 * itself, which also runs recovery if the holder died. A read-only handle
 * cannot take the lock; it keeps backing off, relying on kvd (or the next
 * writer) to recover, and gives up with KV_EBUSY after KV_RO_WAIT_MS.
 *
 * Limitations: a key inserted while a lookup is past its home bucket may be
 * missed, which is the same as the lookup happening first. Sequence numbers
 * are 32 bits: a reader stalled across exactly 2^31 writes to one bucket
 * could be fooled; every value it could return is still a whole value that
 * was stored under the same key, as the key is compared.
 */
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_internal.h"

#define KV_SPIN_FAST 64     /* retries before yielding */
#define KV_SPIN_MS 1        /* then yield for this long before the lock */
#define KV_RO_WAIT_MS 1000  /* read-only handles give up after this */
#define KV_MAX_SHIFTS 32    /* keys one delete may move back */

/* The seqlock protocol reads bytes a writer may be changing and throws
 * them away if it was; ThreadSanitizer cannot know that, so the few
 * functions that do it are not instrumented, and copy byte by byte rather
 * than through the intercepted memcpy/memcmp. */
#ifdef KV_TSAN
#define KV_RACY __attribute__((no_sanitize("thread"), noinline))
KV_RACY static void racy_copy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const volatile unsigned char *s = src;
	for (size_t i = 0; i < n; i++)
		d[i] = s[i];
}
KV_RACY static int racy_cmp(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a;
	const unsigned char *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return 1;
	return 0;
}
#else
#define KV_RACY
#define racy_copy memcpy
#define racy_cmp memcmp
#endif

uint64_t kv__hash(const struct kv *kv, const void *key, size_t klen)
{
	return XXH3_64bits_withSeed(key, klen, kv->seed);
}

static inline uint16_t tag_of(uint64_t h)
{
	return (uint16_t)(h >> 48);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static uint64_t mono_ns(void)
{
	return kv__os_mono_ns();
}

/* Back off after a failed validation. Returns false when the caller should
 * stop retrying and fall back. */
static bool backoff(struct kv_backoff *bo, bool rdonly)
{
	bo->tries++;
	if (bo->tries < KV_SPIN_FAST) {
		cpu_relax();
		return true;
	}
	uint64_t now = mono_ns();
	if (bo->deadline != 0 && now > bo->deadline)
		return false;
	if (bo->since == 0)
		bo->since = now;
	uint64_t limit = (rdonly ? KV_RO_WAIT_MS : KV_SPIN_MS) * 1000000ull;
	if (now - bo->since > limit)
		return false;
	if (rdonly && now - bo->since > 1000000ull)
		kv__os_sleep_us(100);
	else
		kv__os_yield();
	return true;
}

/* Could an item start at off with these lengths without any byte of it
 * lying outside its own chunk? cls is the class the item names. A writer
 * always puts an item in the smallest class that holds it (kv__class_for),
 * so its length must fall in that class's window: above the next smaller
 * class's chunk, within its own. A damaged length (or class) that would
 * reach into the next chunk, another key's bytes, falls outside it; only
 * a class and a length damaged to agree with each other could pass, and
 * even then the read stays within the arena. The chunk must also sit on
 * its class's grid within its page. Loads of the handle's private class
 * table and two divisions: cheap enough for the read path. */
static inline bool item_in_bounds(const struct kv *kv,
                                  const struct kv_ix *ix, uint64_t off,
                                  uint8_t cls, uint8_t flags, uint64_t hlen,
                                  uint64_t klen, uint64_t vlen,
                                  struct kv_split *sp)
{
	if (off < kv->arena_off || off % KV_CHUNK_ALIGN != 0 ||
	    off > ix->arena_end - KV_ITEM_HDR || cls >= kv->nclasses ||
	    vlen > kv->max_value)
		return false;
	/* A large item is one that must be: the lengths say so. */
	uint64_t base = hlen - ((flags & KV_IF_LARGE) ? KV_ITEM_LARGE : 0);
	kv__split(base, klen, vlen, sp);
	if (sp->large != ((flags & KV_IF_LARGE) != 0))
		return false;
	uint64_t total = sp->chunk;
	uint64_t size = kv->class_size[cls];
	uint64_t below = cls == 0 ? 0 : kv->class_size[cls - 1];
	if (vlen > kv->max_value || total <= below || total > size ||
	    total > ix->arena_end - off)
		return false;
	/* And the chunk must sit on its class's grid within its page, so a
	 * damaged slot offset into the middle of a chunk is refused too. */
	uint64_t in = (off - kv->arena_off) % kv->page_size;
	return in % size == 0 && in / size < kv->class_per_page[cls];
}

KV_RACY static bool ix_current(const struct kv *kv, const struct kv_ix *ix);

KV_RACY static int lookup_ix(struct kv *kv, const struct kv_ix *ix,
                              const void *key, size_t klen, uint64_t hash,
                              bool locked, struct kv_read *r)
{
	uint16_t tag = tag_of(hash);
	uint64_t home = kv__ixhome(ix, hash);
	uint64_t maxd = KV_PATH_BUCKETS(ix);
	uint32_t seen[KV_MAX_PROBE + 1]; /* seq of each bucket passed */
	struct kv_backoff bo = {0, 0, r->deadline};

restart:
	for (uint64_t d = 0; d < maxd; d++) {
		struct kv_bucket *bk = kv__ixbucket(kv, ix, kv__ixbadd(ix, home, d));
		uint32_t s1 = atomic_load_explicit(&bk->seq,
		                                   memory_order_acquire);
		if (!locked && (s1 & 1u))
			goto retry;
		seen[d] = s1;
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w == 0 || KV_SLOT_TAG(w) != tag)
				continue;
			uint64_t off = KV_SLOT_OFF(w);
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base + off);
			uint64_t ik = 0, iv = 0, hl = 0;
			uint8_t fl = 0;
			struct kv_split sp;
			/* A read-only handle's hit reads its read hint: start
			 * that miss now, beside the item's. */
			if (kv->rdonly && kv->hint != NULL)
				kv__hint_prefetch(kv, off);
			bool ok = off >= kv->arena_off &&
			          off % KV_CHUNK_ALIGN == 0 &&
			          off <= ix->arena_end - KV_ITEM_HDR;
			if (ok) {
				ik = it->klen;
				iv = it->vlen;
				fl = it->flags;
				hl = kv_item_hdr_len(fl);
				ok = (fl & ~KV_IF_KNOWN) == 0 &&
				     item_in_bounds(kv, ix, off, it->cls, fl, hl,
				                    ik, iv, &sp);
			}
			if (!ok) {
				/* Garbage: a torn read, or corruption if the
				 * bucket did not change meanwhile. */
				atomic_thread_fence(memory_order_acquire);
				if (locked || atomic_load_explicit(
				                  &bk->seq, memory_order_relaxed) ==
				                  s1)
					return KV_ECORRUPT;
				goto retry;
			}
			const uint8_t *ip = (const uint8_t *)it + hl;
			if (ik != klen || racy_cmp(ip, key, klen) != 0)
				continue;
			uint64_t exp = 0;
			uint32_t cf = 0;
			if (fl & KV_IF_TTL)
				racy_copy(&exp, it + 1, sizeof exp);
			if (fl & KV_IF_CFLAGS)
				racy_copy(&cf,
				          (const uint8_t *)(it + 1) +
				              ((fl & KV_IF_TTL) ? KV_ITEM_TTL : 0),
				          sizeof cf);
			uint64_t ver = KV_ITEM_VERSION(it);
			bool fits = iv <= r->cap;
			if (fits && (fl & KV_IF_LARGE)) {
				if (!kv__large_copy(kv, ix, off,
				                    ip - KV_ITEM_LARGE, ip + ik,
				                    &sp, r->buf)) {
					atomic_thread_fence(
					    memory_order_acquire);
					if (locked ||
					    atomic_load_explicit(
					        &bk->seq, memory_order_relaxed) ==
					        s1)
						return KV_ECORRUPT;
					goto retry;
				}
			} else if (fits && iv > 0) {
				racy_copy(r->buf, ip + ik, iv);
			}
			/* A hit needs only this bucket to have held still:
			 * the slot named this item for the whole copy. */
			atomic_thread_fence(memory_order_acquire);
			if (!locked && atomic_load_explicit(
			                   &bk->seq, memory_order_relaxed) != s1)
				goto retry;
			if (exp != 0 && kv__now_ms() >= exp)
				return KV_ENOTFOUND;
			/* Tell eviction this key is in use: one CAS, and only
			 * when the bit is clear, so hot keys cost no shared
			 * writes between sweeps. A read-only mapping cannot:
			 * it sets the item's read hint instead. */
			if (!(w & KV_SLOT_REF) && !kv->rdonly &&
			    ix_current(kv, ix))
				atomic_compare_exchange_strong_explicit(
				    &bk->slot[s], &w, w | KV_SLOT_REF,
				    memory_order_relaxed, memory_order_relaxed);
			else if (kv->hint != NULL && kv->rdonly)
				kv__hint_set(kv, off);
			r->vlen = iv;
			r->expire_ms = exp;
			r->version = ver;
			r->cflags = cf;
			r->item = off;
			return fits ? KV_OK : KV_ERANGE;
		}
		uint32_t ov = atomic_load_explicit(&bk->overflow,
		                                   memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (!locked &&
		    atomic_load_explicit(&bk->seq, memory_order_relaxed) != s1)
			goto retry;
		if (ov != 0)
			continue;
		/* A miss must hold for the whole path: a delete may have
		 * moved the key from a bucket not yet reached into one
		 * already passed. Any change on the path means look again. */
		for (uint64_t e = 0; !locked && e < d; e++) {
			struct kv_bucket *pb =
			    kv__ixbucket(kv, ix, kv__ixbadd(ix, home, e));
			if (atomic_load_explicit(&pb->seq,
			                         memory_order_relaxed) != seen[e])
				goto retry;
		}
		return KV_ENOTFOUND;
	}
	return KV_ENOTFOUND;
retry:
	/* A bucket that will not hold still may be one a resize retired:
	 * then the caller follows the resize instead of waiting on it. */
	if (!locked && !ix_current(kv, ix))
		return KV_EBUSY;
	if (!backoff(&bo, kv->rdonly))
		return KV_EBUSY;
	goto restart;
}

/* Is the snapshot a lock-free read used still the store's geometry? Asked
 * after the read, behind an acquire fence: a resize publishes gen after
 * everything the read could have seen of the new layout, and every write
 * made under the new layout comes after it. */
KV_RACY static bool ix_current(const struct kv *kv, const struct kv_ix *ix)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&kv__hdr(kv)->gen, memory_order_relaxed) ==
	       ix->gen;
}

int kv__lookup(struct kv *kv, const void *key, size_t klen, uint64_t hash,
               bool locked, struct kv_read *r)
{
	for (;;) {
		const struct kv_ix *ix =
		    atomic_load_explicit(&kv->ix, memory_order_acquire);
		int rc = lookup_ix(kv, ix, key, klen, hash, locked, r);
		/* Under the lock the handle's geometry is the store's. */
		if (locked || ix_current(kv, ix))
			return rc;
		rc = kv__sync_slow(kv);
		if (rc != KV_OK)
			return rc;
	}
}

/* Collect the keys whose home is bucket `home`: they lie on its probe
 * chain with dist equal to their distance from it. The chain's sequence
 * numbers are checked after the copy, as for a miss in kv__lookup, so the
 * set returned is one that existed at one moment. */
KV_RACY static int collect_ix(struct kv *kv, const struct kv_ix *ix,
                               uint64_t home, struct kv_keybuf *kb,
                               uint64_t deadline)
{
	uint64_t maxd = KV_PATH_BUCKETS(ix);
	uint32_t seen[KV_MAX_PROBE + 1];
	struct kv_backoff bo = {0, 0, deadline};
	uint64_t now = kv__now_ms();

restart:
	kb->used = 0;
	kb->nkeys = 0;
	for (uint64_t d = 0; d < maxd; d++) {
		struct kv_bucket *bk = kv__ixbucket(kv, ix, kv__ixbadd(ix, home, d));
		uint32_t s1 = atomic_load_explicit(&bk->seq,
		                                   memory_order_acquire);
		if (s1 & 1u)
			goto retry;
		seen[d] = s1;
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w == 0 || KV_SLOT_DIST(w) != d)
				continue;
			uint64_t off = KV_SLOT_OFF(w);
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base + off);
			if (off < kv->arena_off || off % KV_CHUNK_ALIGN ||
			    off > ix->arena_end - KV_ITEM_HDR)
				goto bad;
			uint64_t kl = it->klen, vl = it->vlen;
			uint8_t fl = it->flags;
			struct kv_split sp;
			uint64_t hl = kv_item_hdr_len(fl), exp = 0;
			if (kl == 0 || kl > kv->max_key ||
			    (fl & ~KV_IF_KNOWN) != 0 ||
			    !item_in_bounds(kv, ix, off, it->cls, fl, hl, kl,
			                    vl, &sp))
				goto bad;
			if (fl & KV_IF_TTL)
				racy_copy(&exp, it + 1, sizeof exp);
			if (exp != 0 && now >= exp)
				continue;
			if (kv__keybuf_add(kb, (const uint8_t *)it + hl,
			                   (size_t)kl) != KV_OK)
				return KV_ENOMEM;
		}
		uint32_t ov = atomic_load_explicit(&bk->overflow,
		                                   memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		for (uint64_t e = 0; e <= d; e++) {
			struct kv_bucket *pb =
			    kv__ixbucket(kv, ix, kv__ixbadd(ix, home, e));
			if (atomic_load_explicit(&pb->seq,
			                         memory_order_relaxed) != seen[e])
				goto retry;
		}
		if (ov == 0)
			return KV_OK;
		continue;
	bad:
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&bk->seq, memory_order_relaxed) == s1)
			return KV_ECORRUPT;
		goto retry;
	}
	return KV_OK;
retry:
	if (!ix_current(kv, ix))
		return KV_EBUSY; /* the caller follows the resize */
	if (!backoff(&bo, kv->rdonly))
		return KV_EBUSY;
	goto restart;
}

/* The smallest cursor position (a 48-bit hash prefix) whose home is
 * bucket b: kv__ixhome is floor(x * nbuckets / 2^48) for a hash whose low
 * 48 bits are x. */
static uint64_t ix_start(const struct kv_ix *ix, uint64_t b)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)((((u128)b << 48) + ix->nbuckets - 1) / ix->nbuckets);
}

uint64_t kv__cursor_home(const struct kv *kv, uint64_t cursor)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)(((u128)cursor * kv->nbuckets) >> 48);
}

int kv__collect_home(struct kv *kv, uint64_t *cursor, struct kv_keybuf *kb,
                     uint64_t deadline)
{
	__extension__ typedef unsigned __int128 u128;
	for (;;) {
		const struct kv_ix *ix =
		    atomic_load_explicit(&kv->ix, memory_order_acquire);
		uint64_t home =
		    (uint64_t)(((u128)*cursor * ix->nbuckets) >> 48);
		int rc = collect_ix(kv, ix, home, kb, deadline);
		if (ix_current(kv, ix)) {
			if (rc == KV_OK)
				*cursor = home + 1 == ix->nbuckets
				              ? 0
				              : ix_start(ix, home + 1);
			return rc;
		}
		rc = kv__sync_slow(kv);
		if (rc != KV_OK)
			return rc;
	}
}

void kv__prefetch_bucket(const struct kv *kv, uint64_t hash)
{
	const struct kv_ix *ix =
	    atomic_load_explicit(&kv->ix, memory_order_acquire);
	__builtin_prefetch(kv__ixbucket(kv, ix, kv__ixhome(ix, hash)), 0, 3);
}

/* Prefetch the item a key's home bucket points at for its tag. Only a
 * hint: nothing is validated and nothing read here is used. */
KV_RACY void kv__prefetch_item(const struct kv *kv, uint64_t hash)
{
	const struct kv_ix *ix =
	    atomic_load_explicit(&kv->ix, memory_order_acquire);
	const struct kv_bucket *bk = kv__ixbucket(kv, ix, kv__ixhome(ix, hash));
	uint16_t tag = tag_of(hash);
	for (unsigned s = 0; s < KV_SLOTS; s++) {
		uint64_t w = atomic_load_explicit(&bk->slot[s],
		                                  memory_order_relaxed);
		uint64_t off = KV_SLOT_OFF(w);
		if (w != 0 && KV_SLOT_TAG(w) == tag && off >= kv->arena_off &&
		    off < ix->arena_end - 3 * KV_CACHELINE) {
			/* A small item spans two or three lines; the copy
			 * would miss on each in turn. */
			__builtin_prefetch(kv->base + off, 0, 3);
			__builtin_prefetch(kv->base + off + KV_CACHELINE, 0, 3);
			__builtin_prefetch(kv->base + off + 2 * KV_CACHELINE, 0,
			                   3);
			return;
		}
	}
}

int kv__item_check(const struct kv *kv, uint64_t off, uint32_t *cls)
{
	uint32_t c;
	if (kv__chunk_check(kv, off, &c) != KV_OK)
		return KV_ECORRUPT;
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + off);
	struct kv_split sp;
	kv__split(kv_item_hdr_len(it->flags & ~KV_IF_LARGE), it->klen,
	          it->vlen, &sp);
	if (it->klen == 0 || it->klen > kv->max_key ||
	    it->vlen > kv->max_value || it->cls != c ||
	    (it->flags & ~KV_IF_KNOWN) != 0 ||
	    sp.large != ((it->flags & KV_IF_LARGE) != 0) ||
	    sp.chunk > kv->class_size[c])
		return KV_ECORRUPT;
	*cls = c;
	return KV_OK;
}

KV_RACY bool kv__large_copy(struct kv *kv, const struct kv_ix *ix,
                            uint64_t item, const uint8_t *meta,
                            const uint8_t *rest, const struct kv_split *s,
                            void *buf)
{
	struct kv_large lg;
	uint8_t *out = buf;

	racy_copy(&lg, meta, sizeof lg);
	if (lg.npages != s->npages)
		return false;
	/* Each page and piece must still be this item's: one freed and
	 * reused under the copy fails here or at the caller's sequence
	 * check. */
	uint64_t link = lg.first;
	for (uint64_t n = 0; n < s->npages; n++) {
		if (link == 0 || link > ix->npages)
			return false;
		const struct kv_page *pg =
		    (const struct kv_page *)(const void *)(kv->base +
		                                           ix->ptab_off) +
		    (link - 1);
		if (atomic_load_explicit(&pg->cls, memory_order_relaxed) !=
		        KV_PAGE_LARGE ||
		    atomic_load_explicit(&pg->free_head,
		                         memory_order_relaxed) != item)
			return false;
		racy_copy(out, kv->base + kv->arena_off +
		                   (link - 1) * kv->page_size,
		          kv->page_size);
		out += kv->page_size;
		link = atomic_load_explicit(&pg->next, memory_order_relaxed);
	}
	for (uint64_t i = 0; i < s->npieces; i++) {
		uint64_t off = lg.piece[i], n = kv__piece_bytes(s, i);
		if (off < kv->arena_off || off % KV_CHUNK_ALIGN != 0 ||
		    off > ix->arena_end || ix->arena_end - off < KV_ITEM_HDR + n)
			return false;
		struct kv_item ph;
		racy_copy(&ph, kv->base + off, sizeof ph);
		if (ph.klen != KV_PIECE_KLEN || ph.flags != KV_IF_PIECE ||
		    ph.vlen != n || KV_ITEM_VERSION(&ph) != item)
			return false;
		racy_copy(out, kv->base + off + KV_ITEM_HDR, n);
		out += n;
	}
	if (s->rest > 0)
		racy_copy(out, rest, s->rest);
	return true;
}

int kv__value_locked(struct kv *kv, uint64_t off, void *buf)
{
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + off);
	struct kv_large_info li;
	int rc = kv__large_of(kv, off, &li);
	if (rc != KV_OK)
		return rc;
	const uint8_t *key = kv__item_key(it);
	if (!li.s.large) {
		memcpy(buf, key + it->klen, it->vlen);
		return KV_OK;
	}
	return kv__large_copy(kv, atomic_load(&kv->ix), off,
	                      key - KV_ITEM_LARGE, key + it->klen, &li.s, buf)
	           ? KV_OK
	           : KV_ECORRUPT;
}

int kv__find_locked(struct kv *kv, uint64_t hash, const void *key,
                    size_t klen, struct kv_found *f)
{
	uint16_t tag = tag_of(hash);
	uint64_t home = kv__home(kv, hash);
	uint64_t maxd = KV_PATH_BUCKETS(kv);
	bool searching = true;

	*f = (struct kv_found){0};
	for (uint64_t d = 0; d < maxd; d++) {
		uint64_t b = kv__badd(kv, home, d);
		struct kv_bucket *bk = kv__bucket(kv, b);
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w == 0) {
				if (!f->have_free) {
					f->have_free = true;
					f->bucket = b;
					f->slot = s;
					f->dist = (uint32_t)d;
				}
				continue;
			}
			if (!searching || KV_SLOT_TAG(w) != tag)
				continue;
			uint64_t off = KV_SLOT_OFF(w);
			uint32_t cls;
			if (kv__item_check(kv, off, &cls) != KV_OK)
				return KV_ECORRUPT;
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base + off);
			if (it->klen == klen &&
			    memcmp(kv__item_key(it), key, klen) == 0) {
				f->bucket = b;
				f->slot = s;
				f->dist = (uint32_t)d;
				f->item = off;
				f->cls = cls;
				return KV_OK;
			}
		}
		if (searching && atomic_load_explicit(&bk->overflow,
		                                      memory_order_relaxed) == 0)
			searching = false;
		if (!searching && f->have_free)
			return KV_OK;
	}
	return KV_OK;
}

static void hist_add(struct kv *kv, uint64_t dist, int64_t delta)
{
	_Atomic uint64_t *c = &kv__hdr(kv)->probe_hist[kv__probe_bin(dist)];
	kv__tx_put64_locked(kv, c, kv__tx_get64_locked(kv, c) + (uint64_t)delta);
}

static uint64_t ttl_bit(const struct kv *kv, uint64_t item)
{
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);
	return (it->flags & KV_IF_TTL) ? KV_SLOT_TTL : 0;
}

void kv__link_locked(struct kv *kv, uint64_t hash, const struct kv_found *f,
              uint64_t item)
{
	uint64_t home = kv__home(kv, hash);
	struct kv_hdr *h = kv__hdr(kv);

	for (uint32_t d = 0; d < f->dist; d++) {
		struct kv_bucket *bk = kv__bucket(kv, kv__badd(kv, home, d));
		kv__tx_put32_locked(kv, &bk->overflow,
		             kv__tx_get32_locked(kv, &bk->overflow) + 1);
	}
	kv__tx_put64_locked(kv, &kv__bucket(kv, f->bucket)->slot[f->slot],
	             KV_SLOT_MAKE(tag_of(hash), f->dist, item) |
	                 ttl_bit(kv, item));
	hist_add(kv, f->dist, 1);
	if (f->dist + 1u > kv__tx_get64_locked(kv, &h->max_probe))
		kv__tx_put64_locked(kv, &h->max_probe, f->dist + 1u);
}

void kv__replace_locked(struct kv *kv, uint64_t hash, const struct kv_found *f,
                 uint64_t item)
{
	kv__tx_put64_locked(kv, &kv__bucket(kv, f->bucket)->slot[f->slot],
	             KV_SLOT_MAKE(tag_of(hash), f->dist, item) |
	                 ttl_bit(kv, item));
}

static void dec_overflow(struct kv *kv, uint64_t from, uint64_t n)
{
	for (uint64_t d = 0; d < n; d++) {
		struct kv_bucket *bk = kv__bucket(kv, kv__badd(kv, from, d));
		uint32_t ov = kv__tx_get32_locked(kv, &bk->overflow);
		kv__tx_put32_locked(kv, &bk->overflow, ov ? ov - 1 : 0);
	}
}

/* Backward shift
 * --------------
 * A key sits in the first bucket with a free slot when it was inserted.
 * When a delete frees a slot in bucket b, keys further on whose probe
 * passes b (overflow(b) counts them) would now have stopped at b: move the
 * nearest such key into the hole, which shortens its probe and leaves a
 * new hole further on; repeat. The layout thus stays as if the surviving
 * keys had been inserted into a table that never held the deleted ones,
 * and lookups cost the same after any amount of churn.
 *
 * A moved key is written into its new slot and cleared from its old one
 * in the same journal transaction, with every bucket in between held odd;
 * a lookup that passed the new slot before the move and reaches the old
 * one after it notices the changed sequence number on its path and looks
 * again (see kv__lookup). Returns how many buckets past the key's home
 * the delete changed. */
uint64_t kv__found_home(const struct kv *kv, const struct kv_found *f)
{
	return kv__badd(kv, f->bucket, kv->nbuckets - f->dist % kv->nbuckets);
}

uint64_t kv__unlink_locked(struct kv *kv, const struct kv_found *f, bool shift)
{
	uint64_t home = kv__found_home(kv, f);
	uint64_t hole_b = f->bucket, span = f->dist;
	uint32_t hole_s = f->slot;

	kv__tx_put64_locked(kv, &kv__bucket(kv, hole_b)->slot[hole_s], 0);
	dec_overflow(kv, home, f->dist);
	hist_add(kv, f->dist, -1);

	/* Each move lowers some key's dist, so this ends; the caps keep the
	 * journal bounded and the odd range from wrapping onto itself in a
	 * tiny table. Stopping early leaves every invariant intact. */
	/* The reserve leaves room for what the caller records after: the
	 * free of the item, a large one's pages and pieces included (each
	 * piece's free may move its page between lists). */
	for (int moves = 0; shift && moves < KV_MAX_SHIFTS &&
	                    kv__tx_room_locked(kv) >
	                        KV_MAX_PROBE + 64 + 16 * (KV_MAX_PIECES + 2);
	     moves++) {
		struct kv_bucket *hb = kv__bucket(kv, hole_b);
		uint32_t passing = kv__tx_get32_locked(kv, &hb->overflow);
		uint64_t from_b = 0;
		uint32_t from_s = 0, from_dist = 0;
		uint64_t from_w = 0;
		for (uint64_t c = 1; passing && c <= KV_MAX_PROBE &&
		                     span + c + 1 <= kv->nbuckets && !from_w;
		     c++) {
			uint64_t b = kv__badd(kv, hole_b, c);
			struct kv_bucket *bk = kv__bucket(kv, b);
			for (unsigned s = 0; s < KV_SLOTS; s++) {
				uint64_t w = kv__tx_get64_locked(kv, &bk->slot[s]);
				if (w == 0 || KV_SLOT_DIST(w) < c)
					continue;
				from_b = b;
				from_s = s;
				from_w = w;
				from_dist = (uint32_t)c;
				break;
			}
		}
		if (!from_w)
			break;
		/* The key's probe now ends at the hole: the buckets from
		 * the hole up to its old place no longer overflow for it. */
		kv__tx_put64_locked(kv, &hb->slot[hole_s],
		             KV_SLOT_MAKE(KV_SLOT_TAG(from_w),
		                          KV_SLOT_DIST(from_w) - from_dist,
		                          KV_SLOT_OFF(from_w)) |
		                 (from_w & (KV_SLOT_REF | KV_SLOT_TTL)));
		kv__tx_put64_locked(kv, &kv__bucket(kv, from_b)->slot[from_s], 0);
		dec_overflow(kv, hole_b, from_dist);
		hist_add(kv, KV_SLOT_DIST(from_w), -1);
		hist_add(kv, KV_SLOT_DIST(from_w) - from_dist, 1);
		hole_b = from_b;
		hole_s = from_s;
		span += from_dist;
	}
	return span;
}
