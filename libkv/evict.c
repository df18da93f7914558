/*
 * evict.c - making room in a full store: approximate LRU by CLOCK, within a
 * size class and between classes.
 *
 * How it works
 * ------------
 * Every index slot has a reference bit (format.h). A reader that hits a key
 * sets it, with one compare-and-swap and only if it is clear, so a hot key
 * costs its readers one shared write per eviction sweep rather than one per
 * read. When a put finds no chunk for its class, kv__make_room_locked runs a CLOCK
 * hand over that class's pages, chunk by chunk: an item whose bit is set
 * gets a second chance (the bit is cleared), the first item found clear (or
 * expired) is removed. Each removal is an ordinary committed delete, so an
 * eviction is exactly as crash-safe as kv_del.
 *
 * Between classes: evicting only within a class would lock memory into the
 * classes that filled the store first. So a class that has no page at all,
 * or that has evicted a page's worth of its own items (at least
 * KV_MOVE_PACE) since it last grew, takes a page from another class
 * instead: a CLOCK hand over all pages picks the next page of another
 * class, its items are evicted, and the emptied page goes to the
 * free-page list, where the class takes it. Under
 * steady pressure each class's share of pages thus follows its share of
 * the puts.
 *
 * When the index rather than memory is full (it holds KV_EVICT_LOAD
 * percent of its slots, and none is free within KV_EVICT_REACH buckets of
 * the key's home), kv__evict_on_path_locked evicts an item in those
 * buckets, by the same second-chance rule, and leaves its slot empty for
 * the key. So a full index costs a put a few cache lines, not a walk
 * along a probe path of up to KV_MAX_PROBE buckets that grows as the
 * index fills, and the keys it places cost gets no more.
 *
 * The hands and since_move are hints kept outside the journal: any value
 * is safe, as each is checked before use.
 *
 * Large items (large.c): a chunk that is a piece of one stands for it
 * (the CLOCK weighs the owner's bit; taking the page evicts the owner),
 * and a page of one is taken by evicting its owner, which frees all of
 * its pages and pieces at once.
 *
 * A read-only handle cannot set reference bits (its mapping is
 * read-only): it sets the item's bit in the read hints instead
 * (hint_posix.c), which count here as the reference bit does.
 *
 * Limitations: on Windows there are no read hints, so a read-only
 * handle's reads do not protect keys from eviction there. Taking a
 * page evicts every item on it at once, which for small items is a burst
 * of deletes under the lock (over 3,000 for 20-byte chunks in a 64 KiB page).
 */
#include <string.h>

#include "kv_internal.h"

/* A class evicts at least this many of its own items between pages it
 * takes from others, so a class of page-sized items (one per page) does
 * not empty another class's page on every eviction. */
#define KV_MOVE_PACE 32

static uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void st(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

/* Find the slot that links the item in chunk: hash its key, probe from its
 * home for a slot holding this offset. */
int kv__find_chunk_locked(struct kv *kv, uint64_t chunk, struct kv_found *f)
{
	uint32_t cls;
	if (kv__item_check(kv, chunk, &cls) != KV_OK)
		return KV_ECORRUPT;
	const struct kv_item *it =
	    (const struct kv_item *)(void *)(kv->base + chunk);
	uint64_t h = kv__hash(kv, kv__item_key(it), it->klen);
	uint64_t home = kv__home(kv, h);
	for (uint64_t d = 0; d <= KV_MAX_PROBE && d < kv->nbuckets; d++) {
		uint64_t b = kv__badd(kv, home, d);
		struct kv_bucket *bk = kv__bucket(kv, b);
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w != 0 && KV_SLOT_OFF(w) == chunk) {
				*f = (struct kv_found){.bucket = b,
				                       .slot = s,
				                       .dist = (uint32_t)d,
				                       .item = chunk,
				                       .cls = cls};
				return KV_OK;
			}
		}
	}
	return KV_ECORRUPT; /* a live chunk the index does not link */
}

/* Second chance for the item in slot f: clear its bit and return false if
 * it was set; true if it may go. Reads the item only if it has a TTL. With
 * hints, a read-only handle's hit (its read hint) counts as the bit does;
 * the hints are writable by every reader of the store, so each search
 * honours them on its first pass only, and a reader setting them without
 * end can delay an eviction but never prevent it. */
static bool may_evict(struct kv *kv, const struct kv_found *f, bool hints)
{
	_Atomic uint64_t *slot = &kv__bucket(kv, f->bucket)->slot[f->slot];
	uint64_t w = atomic_load_explicit(slot, memory_order_relaxed);
	if (w & KV_SLOT_TTL) {
		const struct kv_item *it =
		    (const struct kv_item *)(void *)(kv->base + f->item);
		uint64_t exp = kv__item_expire(it);
		if (exp != 0 && kv__now_ms() >= exp)
			return true;
	}
	bool read = hints && kv__hint_take(kv, f->item);
	if (!(w & KV_SLOT_REF))
		return !read;
	/* A reader may set it again at any time: that is the point. */
	atomic_compare_exchange_strong(slot, &w, w & ~KV_SLOT_REF);
	return false;
}

static void evict(struct kv *kv, const struct kv_found *f, bool keep_hole)
{
	const struct kv_item *it =
	    (const struct kv_item *)(void *)(kv->base + f->item);
	uint64_t exp = kv__item_expire(it);
	bool expired = exp != 0 && kv__now_ms() >= exp;
	kv__remove_locked(kv, f, expired ? KV_WHY_EXPIRED : KV_WHY_EVICTED,
	                  keep_hole);
}

/* The next page at or after p (wrapping) owned by cls, or npages. */
static uint64_t next_page_of(struct kv *kv, uint64_t p, uint32_t cls)
{
	for (uint64_t i = 0; i < kv->npages; i++) {
		uint64_t q = (p + i) % kv->npages;
		if (atomic_load_explicit(&kv__page(kv, q)->cls,
		                         memory_order_relaxed) == cls)
			return q;
	}
	return kv->npages;
}

/* CLOCK over the chunks of cls: evict one item. */
static int evict_in_class(struct kv *kv, uint32_t cls)
{
	struct kv_class *c = kv__class(kv, cls);
	uint64_t size = kv->class_size[cls];
	uint64_t per_page = kv->class_per_page[cls];
	/* Two sweeps of the class at most (the first may only clear bits).
	 * Its counts are untrusted: bound by what the arena can hold. */
	uint64_t used = ld(&c->used);
	if (used > kv->npages * per_page)
		used = kv->npages * per_page;
	uint64_t budget = 2 * (used + 1) + per_page;
	uint64_t second = budget / 2; /* hints count until then */
	uint64_t p = ld(&c->hand) % kv->npages, i = ld(&c->hand_chunk);

	while (budget-- > 0) {
		struct kv_page *pg = kv__page(kv, p);
		uint32_t bump = atomic_load(&pg->bump);
		if (bump > per_page)
			bump = (uint32_t)per_page;
		if (atomic_load(&pg->cls) != cls || i >= bump) {
			p = next_page_of(kv, (p + 1) % kv->npages, cls);
			if (p == kv->npages)
				return KV_EFULL; /* the class owns nothing */
			i = 0;
			continue;
		}
		uint64_t chunk = kv->arena_off + p * kv->page_size + i * size;
		i++;
		const struct kv_item *it =
		    (const struct kv_item *)(void *)(kv->base + chunk);
		if (it->klen == 0)
			continue; /* free */
		/* A piece stands for the large item that owns it. */
		uint64_t item =
		    it->klen == KV_PIECE_KLEN ? KV_ITEM_VERSION(it) : chunk;
		struct kv_found f;
		int rc = kv__find_chunk_locked(kv, item, &f);
		if (rc != KV_OK)
			return rc;
		if (!may_evict(kv, &f, budget > second))
			continue;
		st(&c->hand, p);
		st(&c->hand_chunk, i);
		evict(kv, &f, false);
		return KV_OK;
	}
	st(&c->hand, p);
	st(&c->hand_chunk, i);
	return KV_EFULL;
}

/* Evict the item whose chunk is at item, wherever its slot is. */
static int evict_item(struct kv *kv, uint64_t item)
{
	struct kv_found f;
	int rc = kv__find_chunk_locked(kv, item, &f);
	if (rc == KV_OK)
		evict(kv, &f, false);
	return rc;
}

/* Evict every item on page p, a page of class owner. */
static int evict_page_items(struct kv *kv, uint64_t p, uint32_t owner)
{
	uint64_t size = kv->class_size[owner];
	uint64_t start = kv->arena_off + p * kv->page_size;
	uint32_t bump = atomic_load(&kv__page(kv, p)->bump);

	for (uint32_t i = 0; i < bump && i < kv->class_per_page[owner]; i++) {
		const struct kv_item *it =
		    (const struct kv_item *)(void *)(kv->base + start +
		                                     i * size);
		if (atomic_load(&kv__page(kv, p)->cls) != owner)
			break; /* emptied: the page is free now */
		if (it->klen == 0)
			continue;
		/* A piece goes with the large item that owns it. */
		int rc = evict_item(kv, it->klen == KV_PIECE_KLEN
		                            ? KV_ITEM_VERSION(it)
		                            : start + i * size);
		if (rc != KV_OK)
			return rc;
	}
	return KV_OK;
}

int kv__take_page_locked(struct kv *kv, uint32_t cls, uint64_t *taken)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t p = ld(&h->page_hand) % kv->npages;

	for (uint64_t n = 0; n < kv->npages; n++, p = (p + 1) % kv->npages) {
		uint32_t owner = atomic_load(&kv__page(kv, p)->cls);
		int rc;
		if (owner == KV_PAGE_LARGE) /* its owner, and all of it */
			rc = evict_item(kv, ld(&kv__page(kv, p)->free_head));
		else if (owner != KV_PAGE_FREE && owner != cls &&
		         owner < kv->nclasses)
			rc = evict_page_items(kv, p, owner);
		else
			continue;
		if (rc != KV_OK)
			return rc;
		st(&h->page_hand, (p + 1) % kv->npages);
		if (atomic_load(&kv__page(kv, p)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT; /* the page did not empty */
		atomic_fetch_add_explicit(&h->page_moves, 1,
		                          memory_order_relaxed);
		*taken = p;
		return KV_OK;
	}
	return KV_EFULL; /* every page is cls's own */
}

int kv__make_room_locked(struct kv *kv, uint32_t cls)
{
	struct kv_class *c = kv__class(kv, cls);

	uint64_t pace = kv->class_per_page[cls] > KV_MOVE_PACE
	                    ? kv->class_per_page[cls]
	                    : KV_MOVE_PACE;
	if (ld(&c->pages) == 0 || ld(&c->since_move) >= pace) {
		uint64_t p;
		int rc = kv__take_page_locked(kv, cls, &p);
		if (rc == KV_OK) {
			/* The page will hold the class's newest items: put
			 * the hand just past it, so it is swept last. */
			st(&c->hand, (p + 1) % kv->npages);
			st(&c->hand_chunk, 0);
		}
		/* Taken or not (no other class owns a page), wait another
		 * pace before looking again: the look scans every page. */
		st(&c->since_move, 0);
		if (rc != KV_EFULL)
			return rc;
	}
	int rc = evict_in_class(kv, cls);
	if (rc == KV_OK)
		st(&c->since_move, ld(&c->since_move) + 1);
	return rc;
}

int kv__evict_on_path_locked(struct kv *kv, uint64_t hash)
{
	uint64_t home = kv__home(kv, hash);
	uint64_t reach = KV_PATH_BUCKETS(kv);
	if (reach > KV_EVICT_REACH)
		reach = KV_EVICT_REACH;
	/* Two rounds: the first clears reference bits, so the second always
	 * finds a victim. The slot says all a choice needs (the bit, the
	 * distance from its own home, whether it can expire): only the one
	 * item chosen is read. The victim's slot is left empty, so the key
	 * takes it: no key is moved, and the work is bounded by the reach
	 * however full the index. */
	for (int round = 0; round < 2; round++) {
		for (uint64_t d = 0; d < reach; d++) {
			uint64_t b = kv__badd(kv, home, d);
			struct kv_bucket *bk = kv__bucket(kv, b);
			for (unsigned s = 0; s < KV_SLOTS; s++) {
				uint64_t w = atomic_load_explicit(
				    &bk->slot[s], memory_order_relaxed);
				if (w == 0)
					continue;
				struct kv_found f = {.bucket = b,
				                     .slot = s,
				                     .dist = KV_SLOT_DIST(w),
				                     .item = KV_SLOT_OFF(w)};
				if (f.dist > KV_MAX_PROBE ||
				    f.item < kv->arena_off ||
				    f.item % KV_CHUNK_ALIGN != 0 ||
				    f.item > kv->arena_end - KV_MIN_CHUNK)
					return KV_ECORRUPT;
				if (!may_evict(kv, &f, round == 0))
					continue;
				if (kv__item_check(kv, f.item, &f.cls) != KV_OK)
					return KV_ECORRUPT;
				evict(kv, &f, true);
				return KV_OK;
			}
		}
	}
	return KV_EFULL;
}
