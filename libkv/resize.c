/*
 * resize.c - growing a store while it serves, and following a resize made
 * by another process. docs/resize.md tells the whole design and why
 * readers stay lock-free through it; in short:
 *
 *   - The index and page table sit after the arena (format.h). A grow
 *     lays out a bigger index and page table past the old end of the
 *     store, fills them under the writer lock while readers go on using
 *     the old ones (nothing they read changes), and publishes the new
 *     geometry in one journal transaction whose last word is the header's
 *     gen. The old index and page table become ordinary arena pages.
 *   - Every process reserves the store's max_map bytes of address space
 *     at attach, so its mapping grows in place: the base never moves and
 *     a thread reading the old mapping is never pulled from under.
 *   - Each call compares the header's gen with its handle's (one load
 *     of a line it reads anyway); a lock-free read compares again after
 *     its copy, and a read made across a resize is simply made again.
 *   - A writer killed before the commit leaves the old geometry, whole;
 *     one killed after it is finished by the next lock holder, like any
 *     other write.
 */
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_internal.h"

#define KV_GEOMETRY_WAIT_MS 1000 /* a resize being applied takes µs */
#define KV_SHRINK_GRACE_US 20000 /* before the old tail's memory goes */

static uint64_t ld64(const void *p)
{
	return atomic_load_explicit((const _Atomic uint64_t *)p,
	                            memory_order_relaxed);
}

/* Is g a layout this build could have made for the handle's page size,
 * within `mapped` bytes? */
static int check_geometry(const struct kv *kv, const struct kv_geometry *g)
{
	uint64_t ps = kv->page_size;

	if (g->map_size > KV_MAX_MAP || g->map_size % KV_PAGE_ALIGN != 0 ||
	    g->nbuckets < 64 || g->nbuckets > g->map_size / KV_CACHELINE ||
	    g->npages < 2 || g->npages > g->map_size / ps)
		return KV_ECORRUPT;
	if (g->index_off != KV_ARENA_OFF + g->npages * ps ||
	    g->ptab_off != g->index_off + g->nbuckets * KV_CACHELINE ||
	    g->index_off + kv__tail_bytes(g->nbuckets, g->npages,
	                                  kv->page_size) >
	        g->map_size)
		return KV_ECORRUPT;
	return KV_OK;
}

/* Map the object up to size bytes (lock-free callers hold sync_busy). */
static int map_upto(struct kv *kv, uint64_t size)
{
	if (size <= kv->mapped)
		return KV_OK;
	if (size > kv->reserved)
		return KV_ETOOBIG;
	uint64_t have;
	int rc = kv__os_size(&kv->os, &have);
	if (rc != KV_OK)
		return rc;
	if (have < size)
		return KV_ETRUNCATED;
	rc = kv__os_map_more(&kv->os, kv->base, kv->mapped, size, kv->rdonly);
	if (rc != KV_OK)
		return rc;
	kv->mapped = (size_t)size;
	return KV_OK;
}

/* Is a resize's transaction committed and being applied (or was its
 * writer killed doing so)? Its words then do not fit together until it
 * is done, or recovered by the next lock holder. */
bool kv__resize_in_flight(const struct kv *kv)
{
	const struct kv_journal *j = kv__journal(kv);
	return atomic_load_explicit(&j->state, memory_order_acquire) ==
	           KV_J_COMMIT &&
	       atomic_load_explicit((const _Atomic uint32_t *)&j->op,
	                            memory_order_relaxed) == KV_TX_RESIZE;
}

int kv__load_geometry(struct kv *kv, uint64_t *gen, struct kv_geometry *g)
{
	const struct kv_hdr *h = kv__hdr(kv);
	uint64_t deadline = kv__os_mono_ms() + KV_GEOMETRY_WAIT_MS;

	for (;;) {
		uint64_t g1 = atomic_load_explicit(&h->gen, memory_order_acquire);
		*g = (struct kv_geometry){0};
		g->map_size = ld64(&h->map_size);
		g->nbuckets = ld64(&h->nbuckets);
		g->index_off = ld64(&h->index_off);
		g->ptab_off = ld64(&h->ptab_off);
		g->npages = ld64(&h->npages);
		g->arena_off = KV_ARENA_OFF;
		g->page_size = kv->page_size;
		atomic_thread_fence(memory_order_acquire);
		uint64_t g2 = atomic_load_explicit(&h->gen, memory_order_relaxed);
		/* Words of one generation that do not fit together are a
		 * resize being applied (its writer stores gen last), or
		 * damage: wait a little for the first. */
		int rc = g1 != g2 ? KV_EBUSY : check_geometry(kv, g);
		if (rc == KV_OK)
			rc = map_upto(kv, g->map_size);
		if (rc == KV_OK) {
			*gen = g1;
			return KV_OK;
		}
		if (rc != KV_EBUSY && rc != KV_ECORRUPT &&
		    rc != KV_ETRUNCATED)
			return rc;
		if (rc != KV_EBUSY && !kv__resize_in_flight(kv))
			return rc;
		/* A resize still unfinished after that had its writer
		 * killed; the next writer to take the lock finishes it. */
		if (kv__os_mono_ms() > deadline)
			return rc == KV_EBUSY || kv__resize_in_flight(kv)
			           ? KV_EBUSY
			           : rc;
		kv__os_sleep_us(100);
	}
}

int kv__adopt_ix(struct kv *kv, uint64_t gen, const struct kv_geometry *g)
{
	struct kv_ix *ix = malloc(sizeof *ix);
	if (ix == NULL)
		return KV_ENOMEM;
	*ix = (struct kv_ix){
		.gen = gen,
		.map_size = g->map_size,
		.nbuckets = g->nbuckets,
		.index_off = g->index_off,
		.ptab_off = g->ptab_off,
		.npages = g->npages,
		.arena_end = KV_ARENA_OFF + g->npages * (uint64_t)kv->page_size,
		.older = atomic_load_explicit(&kv->ix, memory_order_relaxed),
	};
	kv->size = (size_t)g->map_size;
	kv->nbuckets = g->nbuckets;
	kv->index_off = g->index_off;
	kv->ptab_off = g->ptab_off;
	kv->npages = g->npages;
	kv->arena_end = ix->arena_end;
	/* Older snapshots stay until kv_close: another thread may be
	 * reading through one. There is one per resize. */
	atomic_store_explicit(&kv->ix, ix, memory_order_release);
	atomic_store_explicit(&kv->gen, gen, memory_order_release);
	return KV_OK;
}

int kv__sync_slow(struct kv *kv)
{
	const struct kv_hdr *h = kv__hdr(kv);
	int rc = KV_OK;

	while (atomic_flag_test_and_set_explicit(&kv->sync_busy,
	                                         memory_order_acquire))
		kv__os_yield();
	if (atomic_load_explicit(&h->gen, memory_order_acquire) !=
	    atomic_load_explicit(&kv->gen, memory_order_relaxed)) {
		uint64_t gen;
		struct kv_geometry g;
		rc = kv__load_geometry(kv, &gen, &g);
		if (rc == KV_OK)
			rc = kv__adopt_ix(kv, gen, &g);
	}
	atomic_flag_clear_explicit(&kv->sync_busy, memory_order_release);
	return rc;
}

/* ------------------------------------------------------------------------
 * Growing
 */

/* A resizer's progress, for the writers waiting for the lock (lock.c):
 * called at least every few milliseconds while it holds the lock. */
static void beat(struct kv *kv)
{
	atomic_store_explicit(&kv__hdr(kv)->resize_beat, kv__os_mono_ms(),
	                      memory_order_relaxed);
}

/* Set (pid) or clear (0) the resizing mark, beating first. */
static void mark_resizing(struct kv *kv, uint32_t pid)
{
	beat(kv);
	atomic_store_explicit(&kv__hdr(kv)->resizing, pid,
	                      memory_order_relaxed);
}

/* Place every key of the current index into the index at g (zeroed),
 * as a writer would have placed them one by one into a table that never
 * held anything else. Lock held; the new index is not yet visible to
 * anyone. hist and max_probe receive its probe statistics. */
static int rehash_locked(struct kv *kv, const struct kv_geometry *g,
                         uint64_t hist[8], uint64_t *max_probe)
{
	/* The new index's geometry, for the snapshot helpers. */
	const struct kv_ix nix = {.nbuckets = g->nbuckets,
	                          .index_off = g->index_off};
	uint64_t maxd = KV_PATH_BUCKETS(&nix);

	memset(hist, 0, 8 * sizeof *hist);
	*max_probe = 0;
	for (uint64_t b = 0; b < kv->nbuckets; b++) {
		const struct kv_bucket *ob = kv__bucket(kv, b);
		if (b % 4096 == 0) {
			KV_CRASHPOINT(11);
			beat(kv);
		}
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&ob->slot[s],
			                                  memory_order_relaxed);
			if (w == 0)
				continue;
			uint64_t off = KV_SLOT_OFF(w);
			uint32_t cls;
			if (kv__item_check(kv, off, &cls) != KV_OK)
				return KV_ECORRUPT;
			const struct kv_item *it =
			    (const struct kv_item *)(const void *)(kv->base +
			                                           off);
			uint64_t h = kv__hash(kv, kv__item_key(it), it->klen);
			uint64_t home = kv__ixhome(&nix, h);
			bool placed = false;
			for (uint64_t d = 0; d < maxd && !placed; d++) {
				struct kv_bucket *bk = kv__ixbucket(
				    kv, &nix, kv__ixbadd(&nix, home, d));
				for (unsigned q = 0; q < KV_SLOTS; q++) {
					if (atomic_load_explicit(
					        &bk->slot[q],
					        memory_order_relaxed) != 0)
						continue;
					atomic_store_explicit(
					    &bk->slot[q],
					    KV_SLOT_MAKE(h >> 48, d, off) |
					        (w & (KV_SLOT_REF |
					              KV_SLOT_TTL)),
					    memory_order_relaxed);
					for (uint64_t e = 0; e < d; e++)
						atomic_fetch_add_explicit(
						    &kv__ixbucket(
						         kv, &nix,
						         kv__ixbadd(&nix, home, e))
						         ->overflow,
						    1, memory_order_relaxed);
					hist[kv__probe_bin(d)]++;
					if (d + 1 > *max_probe)
						*max_probe = d + 1;
					placed = true;
					break;
				}
			}
			/* No room within the longest probe path: for a
			 * grow (a bigger index at a lower load) that means
			 * the old index held more than it can. */
			if (!placed)
				return KV_EFULL;
		}
	}
	return KV_OK;
}

/* In the open resize transaction: the geometry g and its index's probe
 * statistics, then commit. gen is its last word, so a process that sees
 * the new gen sees every other word (apply stores with release). */
static void publish_locked(struct kv *kv, const struct kv_geometry *g,
                           const uint64_t hist[8], uint64_t max_probe)
{
	struct kv_hdr *h = kv__hdr(kv);

	kv__tx_put64_locked(kv, &h->map_size, g->map_size);
	kv__tx_put64_locked(kv, &h->npages, g->npages);
	kv__tx_put64_locked(kv, &h->nbuckets, g->nbuckets);
	kv__tx_put64_locked(kv, &h->index_off, g->index_off);
	kv__tx_put64_locked(kv, &h->ptab_off, g->ptab_off);
	for (unsigned i = 0; i < 8; i++)
		kv__tx_put64_locked(kv, &h->probe_hist[i], hist[i]);
	if (max_probe > atomic_load_explicit(&h->max_probe,
	                                     memory_order_relaxed))
		kv__tx_put64_locked(kv, &h->max_probe, max_probe);
	kv__tx_put64_locked(kv, &h->sweep_hand, 0);
	kv__tx_put64_locked(kv, &h->gen,
	                    atomic_load_explicit(&h->gen,
	                                         memory_order_relaxed) +
	                        1);
	kv__tx_commit_locked(kv);
	kv__tx_end_locked(kv);
}

/* Build the new index and page table and publish them. Lock held, the
 * handle's geometry the store's, g laid out past the current end. */
static int grow_locked(struct kv *kv, const struct kv_geometry *g)
{
	uint64_t hist[8], max_probe;

	mark_resizing(kv, kv__os_pid());
	struct kv_page *np = (struct kv_page *)(void *)(kv->base + g->ptab_off);
	const struct kv_page *op = kv__page(kv, 0);
	memcpy(np, op, kv->npages * sizeof *np);
	for (uint64_t p = kv->npages; p < g->npages; p++)
		atomic_store_explicit(&np[p].cls, KV_PAGE_FREE,
		                      memory_order_relaxed);
	int rc = rehash_locked(kv, g, hist, &max_probe);
	if (rc != KV_OK) {
		mark_resizing(kv, 0);
		return rc == KV_EFULL ? KV_ECORRUPT : rc;
	}
	KV_CRASHPOINT(12);

	kv__tx_begin_locked(kv, KV_TX_RESIZE);
	publish_locked(kv, g, hist, max_probe);
	mark_resizing(kv, 0);
	return kv__sync(kv);
}

/* ------------------------------------------------------------------------
 * Shrinking
 *
 * The new index and page table go where the new arena ends, inside the
 * old arena, so first every item in a page at or past that point moves
 * to a page below it: each move is an ordinary committed transaction
 * (copy the item to a chunk below, point its slot at the copy, free the
 * original), so a lock-free reader sees the old or the new place, never
 * a torn one, and a shrinker killed between moves leaves a sound store
 * with some items moved. The writer lock is held throughout, so nobody
 * else allocates meanwhile, and the moves need no mark of their own on
 * the pages being emptied. Then, as for a grow, the new index and page
 * table are built off to the side and published in one transaction with
 * gen last, and the old tail's memory is given back. Its bytes stay
 * mapped and read as zeros: a reader still on the old index finds empty
 * buckets, re-checks gen and reads again, and never faults.
 */

/* Can every live item in pages at or past g's arena end move below it,
 * and does the smaller index hold them all? Counts only. */
static int shrink_fits(struct kv *kv, const struct kv_geometry *g)
{
	uint64_t np = g->npages, free_low = 0, need_pages = 0;
	uint64_t need[KV_MAX_CLASSES] = {0}, room[KV_MAX_CLASSES] = {0};
	uint64_t items = atomic_load(&kv__hdr(kv)->items);

	if (items * 100 > g->nbuckets * KV_SLOTS * KV_EVICT_LOAD)
		return KV_EFULL;
	for (uint64_t p = 0; p < kv->npages; p++) {
		const struct kv_page *pg = kv__page(kv, p);
		uint32_t c = atomic_load(&pg->cls);
		uint32_t used = atomic_load(&pg->used);
		if (c == KV_PAGE_FREE) {
			free_low += p < np;
			continue;
		}
		if (c == KV_PAGE_LARGE) {
			need_pages += p >= np;
			continue;
		}
		if (c >= kv->nclasses || used > kv->class_per_page[c])
			return KV_ECORRUPT;
		if (p >= np)
			need[c] += used;
		else
			room[c] += kv->class_per_page[c] - used;
	}
	for (uint32_t c = 0; c < kv->nclasses; c++)
		if (need[c] > room[c])
			need_pages += (need[c] - room[c] +
			               kv->class_per_page[c] - 1) /
			              kv->class_per_page[c];
	return need_pages <= free_low ? KV_OK : KV_EFULL;
}

/* Move the item in chunk old (class cls) to a chunk below page limit. */
static int move_below(struct kv *kv, uint64_t old, uint32_t cls,
                      uint64_t limit)
{
	struct kv_found f;
	struct kv_alloc a;
	uint64_t pred;
	int rc = kv__find_chunk_locked(kv, old, &f);
	if (rc == KV_OK && f.cls != cls)
		rc = KV_ECORRUPT;
	if (rc == KV_OK)
		rc = kv__alloc_below_locked(kv, cls, limit, &a, &pred);
	if (rc != KV_OK)
		return rc;
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + old);
	struct kv_large_info li;
	rc = kv__large_of(kv, old, &li);
	if (rc != KV_OK)
		return rc;
	uint64_t len = li.s.chunk;
	uint64_t h = kv__hash(kv, kv__item_key(it), it->klen);

	kv__tx_begin_locked(kv, KV_TX_PUT);
	kv__alloc_pend_locked(kv, &a);
	memcpy(kv->base + a.chunk, kv->base + old, len);
	kv__mark_odd_locked(kv, f.bucket, 1);
	kv__alloc_promote_locked(kv, &a, pred);
	kv__alloc_take_locked(kv, &a);
	kv__replace_locked(kv, h, &f, a.chunk);
	/* A large item's pages and pieces name their new owner. */
	if (li.s.npages > 0)
		kv__tx_chain_locked(kv, li.first - 1, li.s.npages, KV_PAGE_LARGE,
		                    a.chunk);
	for (uint64_t i = 0; i < li.s.npieces; i++)
		kv__tx_put64u_locked(kv, kv->base + li.piece[i] + 8, a.chunk);
	kv__free_chunk_locked(kv, cls, old);
	kv__tx_commit_locked(kv);
	kv__mark_even_locked(kv);
	kv__tx_end_locked(kv);
	return KV_OK;
}

/* A free page below limit for a large item's page to move to: off the
 * free-page list (*pred: the page before it, index+1, or 0 at the head),
 * else the next never-used page. */
static int free_page_below(struct kv *kv, uint64_t limit, uint64_t *q,
                           uint64_t *pred, bool *bump)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t link = atomic_load(&h->free_pages), prev = 0;

	for (uint64_t n = 0; link != 0 && n < kv->npages; n++) {
		if (link > kv->npages ||
		    atomic_load(&kv__page(kv, link - 1)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT;
		if (link - 1 < limit) {
			*q = link - 1;
			*pred = prev;
			*bump = false;
			return KV_OK;
		}
		prev = link;
		link = atomic_load(&kv__page(kv, link - 1)->next);
	}
	uint64_t pb = atomic_load(&h->page_bump);
	if (pb >= limit || pb >= kv->npages)
		return KV_EFULL;
	*q = pb;
	*bump = true;
	return KV_OK;
}

/* Move page p of the large item at item (found at f) to a free page
 * below limit; prev is the page before it in the item's chain (index+1),
 * or 0 if p is its first. *moved receives the new page. The bucket is
 * odd while the chain changes, so a reader copying the value meanwhile
 * reads it again. */
static int move_large_page(struct kv *kv, uint64_t item,
                           const struct kv_found *f, uint64_t prev,
                           uint64_t p, uint64_t limit, uint64_t *moved)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t q, qpred;
	bool bump;
	int rc = free_page_below(kv, limit, &q, &qpred, &bump);
	if (rc != KV_OK)
		return rc;
	/* q is free: its bytes are nobody's until the commit. */
	memcpy(kv->base + kv->arena_off + q * kv->page_size,
	       kv->base + kv->arena_off + p * kv->page_size, kv->page_size);
	struct kv_page *qp = kv__page(kv, q), *pp = kv__page(kv, p);
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);

	kv__tx_begin_locked(kv, KV_TX_PUT);
	kv__mark_odd_locked(kv, f->bucket, 1);
	if (bump)
		kv__tx_put64_locked(kv, &h->page_bump, q + 1);
	else if (qpred != 0)
		kv__tx_put32_locked(kv, &kv__page(kv, qpred - 1)->next,
		                    kv__tx_get32_locked(kv, &qp->next));
	else
		kv__tx_put64_locked(kv, &h->free_pages,
		                    kv__tx_get32_locked(kv, &qp->next));
	kv__tx_put32_locked(kv, &qp->next, kv__tx_get32_locked(kv, &pp->next));
	kv__tx_put32_locked(kv, &qp->cls, KV_PAGE_LARGE);
	kv__tx_put64_locked(kv, &qp->free_head, item);
	kv__tx_put32_locked(kv, &qp->used, 0);
	kv__tx_put32_locked(kv, &qp->bump, 0);
	kv__tx_put32_locked(kv, &qp->prev, 0);
	kv__tx_put32_locked(kv, &qp->partial, 0);
	if (prev != 0)
		kv__tx_put32_locked(kv, &kv__page(kv, prev - 1)->next,
		                    (uint32_t)(q + 1));
	else /* the item's own link: struct kv_large, 4-aligned */
		kv__tx_put32_locked(
		    kv, kv__item_key(it) - KV_ITEM_LARGE +
		            offsetof(struct kv_large, first),
		    (uint32_t)(q + 1));
	kv__tx_put32_locked(kv, &pp->cls, KV_PAGE_FREE);
	kv__tx_put64_locked(kv, &pp->free_head, 0);
	kv__tx_put32_locked(kv, &pp->next,
	                    (uint32_t)kv__tx_get64_locked(kv, &h->free_pages));
	kv__tx_put64_locked(kv, &h->free_pages, p + 1);
	kv__tx_commit_locked(kv);
	kv__mark_even_locked(kv);
	kv__tx_end_locked(kv);
	*moved = q;
	return KV_OK;
}

/* Move every page at or past limit of the large item at item below it. */
static int move_large(struct kv *kv, uint64_t item, uint64_t limit)
{
	struct kv_found f;
	struct kv_large_info li;
	int rc = kv__find_chunk_locked(kv, item, &f);
	if (rc == KV_OK)
		rc = kv__large_of(kv, item, &li);
	if (rc != KV_OK)
		return rc;
	if (li.s.npages == 0)
		return KV_ECORRUPT; /* a page's owner that has none */
	uint64_t prev = 0, link = li.first;
	for (uint64_t n = 0; n < li.s.npages; n++) {
		uint64_t p = link - 1;
		link = atomic_load(&kv__page(kv, p)->next);
		if (p >= limit) {
			beat(kv);
			rc = move_large_page(kv, item, &f, prev, p, limit, &p);
			if (rc != KV_OK)
				return rc;
		}
		prev = p + 1;
	}
	return KV_OK;
}

/* Move the piece in chunk old (class cls) to a chunk below page limit:
 * a copy, and its owner's struct kv_large names the copy. */
static int move_piece(struct kv *kv, uint64_t old, uint32_t cls,
                      uint64_t limit)
{
	const struct kv_item *pc =
	    (const struct kv_item *)(const void *)(kv->base + old);
	uint64_t item = KV_ITEM_VERSION(pc);
	struct kv_found f;
	struct kv_large_info li;
	struct kv_alloc a;
	uint64_t pred, i;
	int rc = kv__find_chunk_locked(kv, item, &f);
	if (rc == KV_OK)
		rc = kv__large_of(kv, item, &li);
	if (rc != KV_OK)
		return rc;
	for (i = 0; i < li.s.npieces && li.piece[i] != old; i++)
		;
	if (i == li.s.npieces || li.piece_cls[i] != cls)
		return KV_ECORRUPT; /* its owner does not name it */
	rc = kv__alloc_below_locked(kv, cls, limit, &a, &pred);
	if (rc != KV_OK)
		return rc;
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);
	/* The piece's slot in struct kv_large: only 4-aligned. */
	const uint8_t *slot = kv__item_key(it) - KV_ITEM_LARGE +
	                      offsetof(struct kv_large, piece) + i * 8;

	kv__tx_begin_locked(kv, KV_TX_PUT);
	kv__alloc_pend_locked(kv, &a);
	memcpy(kv->base + a.chunk, kv->base + old,
	       KV_ITEM_HDR + kv__piece_bytes(&li.s, i));
	kv__mark_odd_locked(kv, f.bucket, 1);
	kv__alloc_promote_locked(kv, &a, pred);
	kv__alloc_take_locked(kv, &a);
	kv__tx_put64u_locked(kv, slot, a.chunk);
	kv__free_chunk_locked(kv, cls, old);
	kv__tx_commit_locked(kv);
	kv__mark_even_locked(kv);
	kv__tx_end_locked(kv);
	return KV_OK;
}

/* Empty every page at or past limit. */
static int evacuate(struct kv *kv, uint64_t limit)
{
	for (uint64_t p = limit; p < kv->npages; p++) {
		struct kv_page *pg = kv__page(kv, p);
		uint32_t c = atomic_load(&pg->cls);
		beat(kv);
		if (c == KV_PAGE_FREE)
			continue;
		if (c == KV_PAGE_LARGE) {
			int rc = move_large(kv, atomic_load(&pg->free_head),
			                    limit);
			if (rc != KV_OK)
				return rc;
			if (atomic_load(&pg->cls) != KV_PAGE_FREE)
				return KV_ECORRUPT;
			continue;
		}
		if (c >= kv->nclasses)
			return KV_ECORRUPT;
		uint64_t start = kv->arena_off + p * kv->page_size;
		uint32_t bump = atomic_load(&pg->bump);
		for (uint32_t i = 0; i < bump && i < kv->class_per_page[c];
		     i++) {
			uint64_t chunk = start + (uint64_t)i *
			                             kv->class_size[c];
			const struct kv_item *it =
			    (const struct kv_item *)(const void *)(kv->base +
			                                           chunk);
			if (it->klen == 0)
				continue; /* free */
			int rc = it->klen == KV_PIECE_KLEN
			             ? move_piece(kv, chunk, c, limit)
			             : move_below(kv, chunk, c, limit);
			if (rc != KV_OK)
				return rc;
			if (atomic_load(&pg->cls) != c)
				break; /* its last item left: the page is free */
		}
		if (atomic_load(&pg->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT; /* an item the walk did not see */
	}
	return KV_OK;
}

/* Lock held, the handle's geometry the store's, g the smaller layout. */
static int shrink_locked(struct kv *kv, const struct kv_geometry *g)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t hist[8], max_probe;

	int rc = shrink_fits(kv, g);
	if (rc != KV_OK)
		return rc;
	mark_resizing(kv, kv__os_pid());
	rc = evacuate(kv, g->npages);
	if (rc != KV_OK)
		goto out;
	KV_CRASHPOINT(14);

	/* The new tail lies in pages now free, which nobody allocates while
	 * we hold the lock. Its page table: the pages below the new end as
	 * they are, the free-page list rebuilt from those of them that are
	 * free. */
	beat(kv);
	memset(kv->base + g->index_off, 0, g->map_size - g->index_off);
	struct kv_page *np = (struct kv_page *)(void *)(kv->base + g->ptab_off);
	memcpy(np, kv__page(kv, 0), g->npages * sizeof *np);
	uint64_t pb = atomic_load(&h->page_bump), head = 0;
	if (pb > g->npages)
		pb = g->npages;
	for (uint64_t p = pb; p-- > 0;) {
		if (atomic_load(&np[p].cls) != KV_PAGE_FREE)
			continue;
		atomic_store(&np[p].next, (uint32_t)head);
		head = p + 1;
	}
	/* KV_EFULL: a probe path in the smaller index would be too long
	 * (the load check above makes that rare); nothing is published. */
	rc = rehash_locked(kv, g, hist, &max_probe);
	if (rc != KV_OK)
		goto out;
	KV_CRASHPOINT(12);

	/* The allocator's words for the smaller page table, then the
	 * geometry (gen last). */
	kv__tx_begin_locked(kv, KV_TX_RESIZE);
	kv__tx_put64_locked(kv, &h->page_bump, pb);
	kv__tx_put64_locked(kv, &h->free_pages, head);
	kv__tx_put64_locked(kv, &h->page_hand, 0);
	publish_locked(kv, g, hist, max_probe);
	rc = kv__sync(kv);
out:
	mark_resizing(kv, 0);
	return rc;
}

#define RESIZE_AGAIN 1 /* resized meanwhile: the caller looks again */

/* Take the resizers' lock, then the writer lock once: that follows what
 * resizers before us published and finishes one killed after its commit,
 * so the generation compared is the store's, not this handle's last view
 * of it. RESIZE_AGAIN (nothing held) if it is not ix's any more; else
 * KV_OK with both held, or the writer lock given back already unless
 * keep. */
static int resize_locks(struct kv *kv, const struct kv_ix *ix, bool keep)
{
	int rc = kv__os_resize_lock(&kv->os);
	if (rc != KV_OK)
		return rc;
	rc = kv__lock(kv);
	if (rc != KV_OK) {
		kv__os_resize_unlock(&kv->os);
		return rc;
	}
	if (atomic_load_explicit(&kv->gen, memory_order_relaxed) != ix->gen) {
		kv__unlock(kv);
		kv__os_resize_unlock(&kv->os);
		return RESIZE_AGAIN;
	}
	if (!keep)
		kv__unlock(kv);
	return KV_OK;
}

static int shrink(struct kv *kv, const struct kv_ix *ix, uint64_t size)
{
	__extension__ typedef unsigned __int128 u128;
	if (!kv__os_can_grow())
		return KV_ENOTSUP;
	struct kv_geometry g = {.page_size = kv->page_size};
	u128 nb = (u128)ix->nbuckets * size / ix->map_size;
	int rc = kv__layout(size, nb < 64 ? 64 : (uint64_t)nb, &g);
	if (rc != KV_OK)
		return rc;
	/* The new index must not overlap the one in use. */
	if (g.map_size > ix->index_off)
		return KV_ETOOSMALL;
	rc = resize_locks(kv, ix, true);
	if (rc != KV_OK)
		return rc;
	rc = shrink_locked(kv, &g);
	kv__unlock(kv);
	/* Every process now maps the old tail for nothing: give its memory
	 * back (a later grow reserves it again), all of it to the object's
	 * end. Only a reader that checked gen just before the commit can
	 * still touch it, for the microseconds of one lookup; it is given
	 * those first. Should it fault a page of the hole in, that page
	 * comes out of the memory this has just freed. */
	if (rc == KV_OK) {
		uint64_t end = ix->map_size;
		if (kv__os_size(&kv->os, &end) != KV_OK || end < ix->map_size)
			end = ix->map_size;
		kv__os_sleep_us(KV_SHRINK_GRACE_US);
		kv__os_release(&kv->os, g.map_size, end);
	}
	kv__os_resize_unlock(&kv->os);
	return rc;
}

static int resize_serialised(struct kv *kv, uint64_t size);

int kv_resize(kv_t *kv, uint64_t size)
{

	if (kv == NULL)
		return KV_EINVAL;
	if (kv->rdonly)
		return KV_ERDONLY;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	int rc = kv__sync(kv);
	if (rc != KV_OK)
		return rc;
	size = size / KV_PAGE_ALIGN * KV_PAGE_ALIGN;

	while (atomic_flag_test_and_set_explicit(&kv->resize_busy,
	                                         memory_order_acquire))
		kv__os_sleep_ms(1);
	rc = resize_serialised(kv, size);
	atomic_flag_clear_explicit(&kv->resize_busy, memory_order_release);
	return rc;
}

static int resize_serialised(struct kv *kv, uint64_t size)
{
	__extension__ typedef unsigned __int128 u128;
	int rc;

	for (;;) {
		const struct kv_ix *ix =
		    atomic_load_explicit(&kv->ix, memory_order_acquire);
		uint64_t cur = ix->map_size;
		if (size == cur)
			return KV_OK;
		if (size < cur) {
			rc = shrink(kv, ix, size);
			if (rc == RESIZE_AGAIN)
				continue;
			return rc;
		}
		if (!kv__os_can_grow())
			return KV_ENOTSUP;
		if (size > kv->max_map || size > KV_MAX_MAP)
			return KV_ETOOBIG;
		if (size > kv->reserved)
			return KV_ENOMEM;

		/* The index grows with the store, so a store grown 4x holds
		 * 4x the keys at the same load. */
		struct kv_geometry g = {.page_size = kv->page_size};
		u128 nb = (u128)ix->nbuckets * size / cur;
		rc = kv__layout(size, (uint64_t)nb, &g);
		if (rc != KV_OK)
			return rc;
		/* The new index must not overlap anything in use. */
		if (g.index_off < cur)
			return KV_ETOOSMALL;

		/* Everything that does not need the writer lock is done
		 * before it, under the resizers' own lock, so writers wait
		 * only for the rehash. Memory first: a full tmpfs is an error
		 * here, never a fault later. */
		rc = resize_locks(kv, ix, false);
		if (rc == RESIZE_AGAIN)
			continue;
		if (rc != KV_OK)
			return rc;
		rc = kv__os_grow(&kv->os, cur, size);
		while (rc == KV_OK &&
		       atomic_flag_test_and_set_explicit(&kv->sync_busy,
		                                         memory_order_acquire))
			kv__os_yield();
		if (rc == KV_OK) {
			rc = map_upto(kv, size);
			atomic_flag_clear_explicit(&kv->sync_busy,
			                           memory_order_release);
		}
		/* Zero the new index and page table (a resizer killed before
		 * its commit leaves a half-built one there), which also maps
		 * their pages in. Nobody else uses these bytes: they lie
		 * past the store's end, and other resizers wait. */
		if (rc == KV_OK &&
		    atomic_load_explicit(&kv->gen, memory_order_relaxed) ==
		        ix->gen)
			memset(kv->base + g.index_off, 0,
			       g.map_size - g.index_off);
		if (rc != KV_OK) {
			kv__os_resize_unlock(&kv->os);
			return rc;
		}
		rc = kv__lock(kv);
		if (rc != KV_OK) {
			kv__os_resize_unlock(&kv->os);
			return rc;
		}
		/* Someone else resized first: start again from theirs. */
		if (atomic_load_explicit(&kv->gen, memory_order_relaxed) !=
		    ix->gen) {
			kv__unlock(kv);
			kv__os_resize_unlock(&kv->os);
			continue;
		}
		rc = grow_locked(kv, &g);
		kv__unlock(kv);
		kv__os_resize_unlock(&kv->os);
		return rc;
	}
}
