/*
 * check.c - kv_check: walk the whole store and verify every invariant the
 * other files rely on. Used by tests after every fault, by `kv check`, and
 * by operators. It only reads.
 *
 * Invariants checked
 *   journal   at rest (IDLE, nothing pending)
 *   pages     pages above page_bump are free; free pages below it are on
 *             the free-page list; each class owns as many pages as it
 *             says, its partial list holds exactly its pages that are not
 *             full, doubly linked
 *   index     every bucket's sequence number is even; every slot names a
 *             chunk of the right class, below its page's bump, holding a
 *             well-formed item whose key hashes to this tag and lies at
 *             most KV_MAX_PROBE buckets from its home; no chunk is named
 *             twice and no key held twice; every bucket's overflow equals
 *             the number of keys that probe past it
 *   allocator each page's free list is acyclic, stays in its page below
 *             its bump, holds only chunks marked free and not linked; per
 *             page, used + free == handed out; used matches the index
 *   large     a large item's pages are its own (KV_PAGE_LARGE, owned by
 *             it) and its pieces name it, as many as its lengths say,
 *             each in one item only; every such page is a live item's
 *   counters  items, key and value bytes and bytes in use match the walk
 *
 * With a read-write handle the writer lock is held for the walk, so the
 * result is exact. A read-only handle cannot lock: it walks a live store,
 * and if it finds a problem while the store is changing it walks again
 * (a few times) before reporting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"

#define KV_CHECK_MAX_REPORTS 64

struct checker {
	struct kv *kv;
	void (*report)(void *ctx, const char *problem);
	void *ctx;
	unsigned problems;
	uint8_t *live;     /* bit per KV_CHUNK_UNIT of arena: a live chunk */
	uint8_t *freed;    /* same: a chunk on a free list */
	uint32_t *ovf;     /* expected overflow per bucket */
	uint64_t *cls_live;
	uint32_t *page_live; /* items the index links, per page */
	uint8_t *large;      /* bit per page: a live large item's */
	uint64_t hist[8];    /* keys by distance from home */
};

KV_PRINTF(2, 3) static void problem(struct checker *c,
                                                          const char *fmt,
                                                          ...)
{
	c->problems++;
	if (c->report == NULL || c->problems > KV_CHECK_MAX_REPORTS)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->report(c->ctx, msg);
}

static uint64_t unit(const struct kv *kv, uint64_t off)
{
	return (off - kv->arena_off) / KV_CHUNK_UNIT;
}

static bool bit_get(const uint8_t *m, uint64_t i)
{
	return (m[i / 8] >> (i % 8)) & 1u;
}

static void bit_set(uint8_t *m, uint64_t i)
{
	m[i / 8] |= (uint8_t)(1u << (i % 8));
}

static uint64_t ld64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* A chunk the index reaches (an item, what = "item", or a large item's
 * piece): false if it was reached before (reported); else mark it live,
 * check it lies below its page's bump (or the allocator will hand it out
 * again) and count it as a live chunk of cls. */
static bool live_chunk(struct checker *c, uint64_t off, uint32_t cls,
                       const char *what)
{
	struct kv *kv = c->kv;
	if (bit_get(c->live, unit(kv, off))) {
		problem(c, "%s at offset %llu is linked twice", what,
		        (unsigned long long)off);
		return false;
	}
	bit_set(c->live, unit(kv, off));
	uint64_t pg = (off - kv->arena_off) / kv->page_size;
	uint64_t idx = (off - kv->arena_off) % kv->page_size /
	               kv->class_size[cls];
	if (idx >= atomic_load(&kv__page(kv, pg)->bump))
		problem(c, "%s at offset %llu lies beyond its page's "
		           "handed-out chunks",
		        what, (unsigned long long)off);
	c->cls_live[cls]++;
	c->page_live[pg]++;
	return true;
}

static void check_index(struct checker *c, bool locked)
{
	struct kv *kv = c->kv;
	uint64_t items = 0, kbytes = 0, vbytes = 0, used = 0;

	for (uint64_t b = 0; b < kv->nbuckets; b++) {
		struct kv_bucket *bk = kv__bucket(kv, b);
		uint32_t seq = atomic_load_explicit(&bk->seq,
		                                    memory_order_relaxed);
		if (locked && (seq & 1u))
			problem(c, "bucket %llu left odd (seq %u)",
			        (unsigned long long)b, seq);
		for (unsigned s = 0; s < KV_SLOTS; s++) {
			uint64_t w = atomic_load_explicit(&bk->slot[s],
			                                  memory_order_relaxed);
			if (w == 0)
				continue;
			uint64_t off = KV_SLOT_OFF(w);
			uint32_t cls;
			if (kv__item_check(kv, off, &cls) != KV_OK) {
				problem(c,
				        "bucket %llu slot %u: bad item at "
				        "offset %llu",
				        (unsigned long long)b, s,
				        (unsigned long long)off);
				continue;
			}
			if (!live_chunk(c, off, cls, "item"))
				continue;
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base + off);
			uint64_t h = kv__hash(kv, kv__item_key(it), it->klen);
			/* Each key once: the first match on its probe must be
			 * this item. */
			struct kv_found f;
			if (kv__find_locked(kv, h, kv__item_key(it), it->klen,
			                    &f) == KV_OK &&
			    f.item != off)
				problem(c, "key at offset %llu is also at %llu",
				        (unsigned long long)off,
				        (unsigned long long)f.item);
			uint64_t home = kv__home(kv, h);
			uint64_t dist = kv__bdist(kv, home, b);
			if (KV_SLOT_TAG(w) != (uint16_t)(h >> 48))
				problem(c, "bucket %llu slot %u: tag mismatch",
				        (unsigned long long)b, s);
			if (((w & KV_SLOT_TTL) != 0) !=
			    ((it->flags & KV_IF_TTL) != 0))
				problem(c, "bucket %llu slot %u: ttl flag "
				           "differs from its item",
				        (unsigned long long)b, s);
			if (KV_SLOT_DIST(w) != dist)
				problem(c, "bucket %llu slot %u: records %u "
				           "buckets from home, is %llu",
				        (unsigned long long)b, s, KV_SLOT_DIST(w),
				        (unsigned long long)dist);
			if (dist > KV_MAX_PROBE) {
				problem(c, "bucket %llu slot %u: %llu buckets "
				           "from home",
				        (unsigned long long)b, s,
				        (unsigned long long)dist);
			} else {
				for (uint64_t d = 0; d < dist; d++)
					c->ovf[kv__badd(kv, home, d)]++;
				c->hist[kv__probe_bin(dist)]++;
			}
			struct kv_large_info li;
			if (kv__large_of(kv, off, &li) != KV_OK) {
				problem(c, "large item at offset %llu: its "
				           "pages or pieces do not check out",
				        (unsigned long long)off);
				li.s.npages = li.s.npieces = 0;
			}
			for (uint64_t n = 0, link = li.first; n < li.s.npages;
			     n++) {
				/* Walked again: a read-only walk's store may
				 * have changed since kv__large_of's. */
				if (link == 0 || link > kv->npages) {
					problem(c, "large item at offset %llu: "
					           "its pages changed",
					        (unsigned long long)off);
					break;
				}
				uint64_t p = link - 1;
				if (bit_get(c->large, p))
					problem(c, "page %llu belongs to two "
					           "items",
					        (unsigned long long)p);
				bit_set(c->large, p);
				link = atomic_load(&kv__page(kv, p)->next);
			}
			for (uint64_t i = 0; i < li.s.npieces; i++)
				if (live_chunk(c, li.piece[i], li.piece_cls[i],
				               "piece"))
					used += kv->class_size[li.piece_cls[i]];
			items++;
			kbytes += it->klen;
			vbytes += it->vlen;
			used += kv->class_size[cls] + li.s.npages * kv->page_size;
		}
	}
	for (uint64_t b = 0; b < kv->nbuckets; b++) {
		uint32_t ov = atomic_load_explicit(&kv__bucket(kv, b)->overflow,
		                                   memory_order_relaxed);
		if (ov != c->ovf[b])
			problem(c, "bucket %llu overflow %u, expected %u",
			        (unsigned long long)b, ov, c->ovf[b]);
	}
	struct kv_hdr *h = kv__hdr(kv);
	if (ld64(&h->items) != items)
		problem(c, "header counts %llu items, index holds %llu",
		        (unsigned long long)ld64(&h->items),
		        (unsigned long long)items);
	if (ld64(&h->key_bytes) != kbytes || ld64(&h->value_bytes) != vbytes)
		problem(c, "header key/value bytes %llu/%llu, index %llu/%llu",
		        (unsigned long long)ld64(&h->key_bytes),
		        (unsigned long long)ld64(&h->value_bytes),
		        (unsigned long long)kbytes,
		        (unsigned long long)vbytes);
	for (unsigned i = 0; i < 8; i++)
		if (ld64(&h->probe_hist[i]) != c->hist[i])
			problem(c, "probe histogram bin %u says %llu, index "
			           "holds %llu",
			        i, (unsigned long long)ld64(&h->probe_hist[i]),
			        (unsigned long long)c->hist[i]);
	if (ld64(&h->data_used) != used)
		problem(c, "header says %llu bytes in use, index holds %llu",
		        (unsigned long long)ld64(&h->data_used),
		        (unsigned long long)used);
}

/* One page of a class: its free list, counts and list membership. */
static void check_page(struct checker *c, uint64_t p, uint32_t k)
{
	struct kv *kv = c->kv;
	struct kv_page *pg = kv__page(kv, p);
	uint64_t size = kv->class_size[k];
	uint64_t start = kv->arena_off + p * kv->page_size;
	uint32_t per_page = kv->class_per_page[k];
	uint32_t used = atomic_load(&pg->used), bump = atomic_load(&pg->bump);
	uint32_t nfree = 0;

	if (bump > per_page || used > bump) {
		problem(c, "page %llu: used %u, bump %u of %u chunks",
		        (unsigned long long)p, used, bump, per_page);
		return;
	}
	uint64_t off = ld64(&pg->free_head);
	while (off != 0) {
		if (off < start || off >= start + (uint64_t)bump * size ||
		    (off - start) % size != 0) {
			problem(c, "page %llu: free list holds bad chunk %llu",
			        (unsigned long long)p, (unsigned long long)off);
			return;
		}
		uint64_t u = unit(kv, off);
		const struct kv_item *it =
		    (const struct kv_item *)(void *)(kv->base + off);
		if (bit_get(c->live, u) || it->klen != 0) {
			problem(c, "page %llu: free chunk %llu is live",
			        (unsigned long long)p, (unsigned long long)off);
			return;
		}
		if (bit_get(c->freed, u)) {
			problem(c, "page %llu: free list has a cycle",
			        (unsigned long long)p);
			return;
		}
		bit_set(c->freed, u);
		nfree++;
		off = ld64((_Atomic uint64_t *)(void *)(kv->base +
		                                        kv_free_link(off)));
	}
	if (c->page_live[p] != used)
		problem(c, "page %llu: used %u, index links %u",
		        (unsigned long long)p, used, c->page_live[p]);
	if (used + nfree != bump)
		problem(c, "page %llu: %u used + %u free != %u handed out",
		        (unsigned long long)p, used, nfree, bump);
	bool full = ld64(&pg->free_head) == 0 && bump == per_page;
	if (atomic_load(&pg->partial) != (full ? 0u : 1u))
		problem(c, "page %llu: %s but %s the partial list",
		        (unsigned long long)p, full ? "full" : "not full",
		        full ? "on" : "not on");
}

static void check_pages(struct checker *c)
{
	struct kv *kv = c->kv;
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t pb = ld64(&h->page_bump);
	uint64_t pages[KV_MAX_CLASSES] = {0}, used[KV_MAX_CLASSES] = {0};
	uint64_t partial[KV_MAX_CLASSES] = {0}, nfreepages = 0;

	if (pb > kv->npages) {
		problem(c, "page_bump %llu beyond %llu pages",
		        (unsigned long long)pb, (unsigned long long)kv->npages);
		return;
	}
	for (uint64_t p = 0; p < kv->npages; p++) {
		struct kv_page *pg = kv__page(kv, p);
		uint32_t k = atomic_load(&pg->cls);
		if (k == KV_PAGE_FREE) {
			if (p < pb)
				nfreepages++;
			if (c->page_live[p])
				problem(c, "free page %llu holds items",
				        (unsigned long long)p);
			continue;
		}
		if (k == KV_PAGE_LARGE && p < pb) {
			if (!bit_get(c->large, p))
				problem(c, "page %llu of a large item that no "
				           "live item owns",
				        (unsigned long long)p);
			if (atomic_load(&pg->used) || atomic_load(&pg->bump) ||
			    atomic_load(&pg->partial))
				problem(c, "page %llu of a large item has "
				           "chunks",
				        (unsigned long long)p);
			continue;
		}
		if (p >= pb || k >= kv->nclasses) {
			problem(c, "page %llu has class %u", (unsigned long long)p,
			        k);
			continue;
		}
		pages[k]++;
		used[k] += atomic_load(&pg->used);
		partial[k] += atomic_load(&pg->partial);
		check_page(c, p, k);
	}
	/* The free-page list holds exactly the free pages below page_bump. */
	uint8_t *onlist = calloc(kv->npages / 8 + 1, 1);
	uint64_t n = 0;
	if (onlist == NULL) {
		problem(c, "out of memory");
		return;
	}
	for (uint64_t link = ld64(&h->free_pages); link != 0;) {
		uint64_t p = link - 1;
		if (link > pb || link > kv->npages ||
		    atomic_load(&kv__page(kv, p)->cls) != KV_PAGE_FREE ||
		    bit_get(onlist, p)) {
			problem(c, "free-page list holds bad page %llu",
			        (unsigned long long)link);
			break;
		}
		bit_set(onlist, p);
		n++;
		link = atomic_load(&kv__page(kv, p)->next);
	}
	free(onlist);
	if (n != nfreepages)
		problem(c, "free-page list holds %llu of %llu free pages",
		        (unsigned long long)n, (unsigned long long)nfreepages);

	for (uint32_t k = 0; k < kv->nclasses; k++) {
		struct kv_class *cl = kv__class(kv, k);
		if (ld64(&cl->pages) != pages[k])
			problem(c, "class %u says %llu pages, owns %llu", k,
			        (unsigned long long)ld64(&cl->pages),
			        (unsigned long long)pages[k]);
		if (ld64(&cl->used) != used[k] || used[k] != c->cls_live[k])
			problem(c, "class %u: used %llu, pages %llu, index %llu",
			        k, (unsigned long long)ld64(&cl->used),
			        (unsigned long long)used[k],
			        (unsigned long long)c->cls_live[k]);
		/* Walk the partial list: its pages, linked both ways. */
		uint64_t count = 0, prev = 0;
		for (uint64_t link = ld64(&cl->partial); link != 0;) {
			if (link > pb) {
				problem(c, "class %u: partial list holds page "
				           "%llu beyond those in use",
				        k, (unsigned long long)link);
				break;
			}
			struct kv_page *pg = kv__page(kv, link - 1);
			if (atomic_load(&pg->cls) != k ||
			    atomic_load(&pg->partial) != 1 ||
			    atomic_load(&pg->prev) != prev ||
			    count > pages[k]) {
				problem(c, "class %u: partial list broken at "
				           "page %llu",
				        k, (unsigned long long)link);
				break;
			}
			count++;
			prev = link;
			link = atomic_load(&pg->next);
		}
		if (count != partial[k])
			problem(c, "class %u: %llu pages on the partial list, "
			           "%llu marked",
			        k, (unsigned long long)count,
			        (unsigned long long)partial[k]);
	}
}

static int walk(struct kv *kv, bool locked,
                void (*report)(void *ctx, const char *problem), void *ctx)
{
	struct checker c = {.kv = kv, .report = report, .ctx = ctx};
	uint64_t units = (kv->arena_end - kv->arena_off) / KV_CHUNK_UNIT + 1;
	int rc = KV_ENOMEM;

	c.live = calloc(units / 8 + 1, 1);
	c.freed = calloc(units / 8 + 1, 1);
	c.ovf = calloc(kv->nbuckets, sizeof *c.ovf);
	c.cls_live = calloc(KV_MAX_CLASSES, sizeof *c.cls_live);
	c.page_live = calloc(kv->npages, sizeof *c.page_live);
	c.large = calloc(kv->npages / 8 + 1, 1);
	if (!c.live || !c.freed || !c.ovf || !c.cls_live || !c.page_live ||
	    !c.large)
		goto out;

	struct kv_journal *j = kv__journal(kv);
	if (locked && atomic_load_explicit(&j->state, memory_order_relaxed) !=
	                  KV_J_IDLE)
		problem(&c, "journal is not at rest");
	check_index(&c, locked);
	check_pages(&c);
	rc = c.problems ? KV_ECORRUPT : KV_OK;
out:
	free(c.live);
	free(c.freed);
	free(c.ovf);
	free(c.cls_live);
	free(c.page_live);
	free(c.large);
	return rc;
}

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

static int check_unlocked(kv_t *kv,
                          void (*report)(void *ctx, const char *problem),
                          void *ctx);

int kv_check(kv_t *kv, void (*report)(void *ctx, const char *problem),
             void *ctx)
{
	if (kv == NULL)
		return KV_EINVAL;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	int src = kv__sync(kv);
	if (src != KV_OK)
		return src;
	if (!kv->rdonly) {
		/* Taking the lock repairs a stale or damaged one. */
		int rc = kv__lock(kv);
		if (rc != KV_OK)
			return rc;
		rc = walk(kv, true, report, ctx);
		kv__unlock(kv);
		return rc;
	}
	/* A read-only handle cannot repair the lock: say what would. */
	char why[200];
	bool lock_bad = kv__lock_state(kv, why, sizeof why) == KV_HOLDER_STALE;
	if (lock_bad && report != NULL) {
		char msg[400];
		snprintf(msg, sizeof msg,
		         "%s; a read-write attach repairs it (run kv check as "
		         "a user who may write the store, or start kvd)",
		         why);
		report(ctx, msg);
	}
	int rc = check_unlocked(kv, report, ctx);
	return lock_bad ? KV_ECORRUPT : rc;
}

/* Walk a read-only handle's store as of one generation: a private copy
 * of the handle whose geometry is one snapshot (kv->ix), so that another
 * thread following a resize meanwhile cannot change the sizes the walk's
 * arrays were made for. *gen receives the generation walked. */
static int walk_snapshot(kv_t *kv, void (*report)(void *ctx, const char *),
                         void *ctx, uint64_t *gen)
{
	struct kv *v = malloc(sizeof *v);
	if (v == NULL)
		return KV_ENOMEM;
	memcpy(v, kv, sizeof *v);
	const struct kv_ix *ix =
	    atomic_load_explicit(&kv->ix, memory_order_acquire);
	*gen = ix->gen;
	atomic_store_explicit(&v->size, (size_t)ix->map_size,
	                      memory_order_relaxed);
	atomic_store_explicit(&v->nbuckets, ix->nbuckets, memory_order_relaxed);
	atomic_store_explicit(&v->index_off, ix->index_off,
	                      memory_order_relaxed);
	atomic_store_explicit(&v->ptab_off, ix->ptab_off, memory_order_relaxed);
	atomic_store_explicit(&v->npages, ix->npages, memory_order_relaxed);
	atomic_store_explicit(&v->arena_end, ix->arena_end,
	                      memory_order_relaxed);
	int rc = walk(v, false, report, ctx);
	free(v);
	return rc;
}

static int check_unlocked(kv_t *kv,
                          void (*report)(void *ctx, const char *problem),
                          void *ctx)
{
	/* Unlocked: a problem seen while writers were busy may be theirs in
	 * flight, or a resize's (the walk read a retired index). Walk
	 * quietly until two walks see a quiet store. */
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t gen;
	for (int attempt = 0; attempt < 4; attempt++) {
		int rc = kv__sync(kv);
		if (rc != KV_OK)
			return rc;
		uint64_t v = ld64(&h->version), d = ld64(&h->deletes);
		uint64_t e = ld64(&h->expired);
		rc = walk_snapshot(kv, quiet, NULL, &gen);
		if (rc == KV_OK || rc == KV_ENOMEM)
			return rc;
		if (ld64(&h->version) == v && ld64(&h->deletes) == d &&
		    ld64(&h->expired) == e && ld64(&h->gen) == gen)
			break;
	}
	int rc = kv__sync(kv);
	return rc != KV_OK ? rc : walk_snapshot(kv, report, ctx, &gen);
}
