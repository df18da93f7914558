/*
 * check.c - kv_check: walk the whole store and verify every invariant the
 * other files rely on. Used by tests after every fault, by `kv check`, and
 * by operators. It only reads.
 *
 * Invariants checked
 *   journal   at rest (IDLE, nothing pending)
 *   pages     pages below page_bump belong to a class, the rest are free;
 *             each class owns as many pages as it says
 *   index     every bucket's sequence number is even; every slot names a
 *             chunk of the right class holding a well-formed item whose key
 *             hashes to this tag and lies at most KV_MAX_PROBE buckets from
 *             its home; no chunk is named twice; every bucket's overflow
 *             equals the number of keys that probe past it
 *   allocator every free list is acyclic, stays in its class, holds no
 *             live chunk and as many chunks as nfree says; for each class
 *             used + free + never-used == pages * chunks per page
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
	uint8_t *live;     /* bit per 32-byte arena unit: a live chunk */
	uint8_t *freed;    /* same: a chunk on a free list */
	uint32_t *ovf;     /* expected overflow per bucket */
	uint64_t *cls_live;
};

__attribute__((format(printf, 2, 3))) static void problem(struct checker *c,
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
	return (off - kv->arena_off) / KV_MIN_CHUNK;
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

static void check_pages(struct checker *c)
{
	struct kv *kv = c->kv;
	uint64_t pb = ld64(&kv__hdr(kv)->page_bump);
	uint64_t per_class[KV_MAX_CLASSES] = {0};

	if (pb > kv->npages) {
		problem(c, "page_bump %llu beyond %llu pages",
		        (unsigned long long)pb, (unsigned long long)kv->npages);
		pb = kv->npages;
	}
	for (uint64_t p = 0; p < kv->npages; p++) {
		uint32_t cls = atomic_load_explicit(&kv__page(kv, p)->cls,
		                                    memory_order_relaxed);
		if (p < pb && cls >= kv->nclasses)
			problem(c, "page %llu is in use but has class %u",
			        (unsigned long long)p, cls);
		else if (p >= pb && cls != KV_PAGE_FREE)
			problem(c, "page %llu is unused but has class %u",
			        (unsigned long long)p, cls);
		else if (p < pb)
			per_class[cls]++;
	}
	for (uint32_t k = 0; k < kv->nclasses; k++) {
		uint64_t pages = ld64(&kv__class(kv, k)->pages);
		if (pages != per_class[k])
			problem(c, "class %u says %llu pages, owns %llu", k,
			        (unsigned long long)pages,
			        (unsigned long long)per_class[k]);
	}
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
			if (bit_get(c->live, unit(kv, off))) {
				problem(c, "item at offset %llu is linked twice",
				        (unsigned long long)off);
				continue;
			}
			bit_set(c->live, unit(kv, off));
			const struct kv_item *it =
			    (const struct kv_item *)(void *)(kv->base + off);
			uint64_t h = kv__hash(kv, it + 1, it->klen);
			uint64_t home = h & kv->mask;
			uint64_t dist = (b - home) & kv->mask;
			if (KV_SLOT_TAG(w) != (uint16_t)(h >> 48))
				problem(c, "bucket %llu slot %u: tag mismatch",
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
					c->ovf[(home + d) & kv->mask]++;
			}
			items++;
			kbytes += it->klen;
			vbytes += it->vlen;
			used += kv->class_size[cls];
			c->cls_live[cls]++;
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
	if (ld64(&h->data_used) != used)
		problem(c, "header says %llu bytes in use, index holds %llu",
		        (unsigned long long)ld64(&h->data_used),
		        (unsigned long long)used);
}

static void check_class(struct checker *c, uint32_t k)
{
	struct kv *kv = c->kv;
	struct kv_class *cl = kv__class(kv, k);
	uint64_t size = kv->class_size[k];
	uint64_t per_page = kv->class_per_page[k];
	uint64_t pages = ld64(&cl->pages);
	uint64_t limit = pages * per_page;
	uint64_t nfree = 0;
	uint64_t bump = ld64(&cl->bump), end = ld64(&cl->bump_end);
	uint64_t unbumped = 0;

	if (pages > 0) {
		uint32_t bc;
		uint64_t page_start = bump - (bump - kv->arena_off) %
		                                 kv->page_size;
		if (bump < kv->arena_off || bump > kv->arena_end ||
		    end != page_start + per_page * size ||
		    (bump - page_start) % size != 0 ||
		    atomic_load_explicit(
		        &kv__page(kv, (page_start - kv->arena_off) /
		                          kv->page_size)
		             ->cls,
		        memory_order_relaxed) != k) {
			/* bump may sit exactly at the end of its page */
			if (!(bump == end && end > kv->arena_off &&
			      kv__chunk_check(kv, bump - size, &bc) == KV_OK &&
			      bc == k))
				problem(c, "class %u: bump range %llu..%llu is "
				           "not in one of its pages",
				        k, (unsigned long long)bump,
				        (unsigned long long)end);
		}
		if (end >= bump)
			unbumped = (end - bump) / size;
	} else if (bump != 0 || end != 0) {
		problem(c, "class %u owns no page but has a bump range", k);
	}

	uint64_t off = ld64(&cl->free_head);
	while (off != 0) {
		uint32_t oc;
		if (kv__chunk_check(kv, off, &oc) != KV_OK || oc != k) {
			problem(c, "class %u: free list holds bad chunk %llu",
			        k, (unsigned long long)off);
			break;
		}
		uint64_t u = unit(kv, off);
		if (bit_get(c->live, u)) {
			problem(c, "class %u: free chunk %llu is also linked",
			        k, (unsigned long long)off);
			break;
		}
		if (bit_get(c->freed, u)) {
			problem(c, "class %u: free list has a cycle at %llu",
			        k, (unsigned long long)off);
			break;
		}
		if (off >= bump && off < end) {
			problem(c, "class %u: free chunk %llu was never "
			           "handed out",
			        k, (unsigned long long)off);
			break;
		}
		bit_set(c->freed, u);
		if (++nfree > limit)
			break;
		off = atomic_load_explicit(
		    (_Atomic uint64_t *)(void *)(kv->base + off),
		    memory_order_relaxed);
	}
	uint64_t used = ld64(&cl->used);
	if (ld64(&cl->nfree) != nfree)
		problem(c, "class %u: nfree %llu, free list holds %llu", k,
		        (unsigned long long)ld64(&cl->nfree),
		        (unsigned long long)nfree);
	if (used != c->cls_live[k])
		problem(c, "class %u: used %llu, index holds %llu", k,
		        (unsigned long long)used,
		        (unsigned long long)c->cls_live[k]);
	if (c->cls_live[k] + nfree + unbumped != limit)
		problem(c,
		        "class %u: %llu live + %llu free + %llu unused != "
		        "%llu chunks",
		        k, (unsigned long long)c->cls_live[k],
		        (unsigned long long)nfree,
		        (unsigned long long)unbumped, (unsigned long long)limit);
}

static int walk(struct kv *kv, bool locked,
                void (*report)(void *ctx, const char *problem), void *ctx)
{
	struct checker c = {.kv = kv, .report = report, .ctx = ctx};
	uint64_t units = (kv->arena_end - kv->arena_off) / KV_MIN_CHUNK + 1;
	int rc = KV_ENOMEM;

	c.live = calloc(units / 8 + 1, 1);
	c.freed = calloc(units / 8 + 1, 1);
	c.ovf = calloc(kv->nbuckets, sizeof *c.ovf);
	c.cls_live = calloc(KV_MAX_CLASSES, sizeof *c.cls_live);
	if (!c.live || !c.freed || !c.ovf || !c.cls_live)
		goto out;

	struct kv_journal *j = kv__journal(kv);
	if (locked && atomic_load_explicit(&j->state, memory_order_relaxed) !=
	                  KV_J_IDLE)
		problem(&c, "journal is not at rest");
	check_pages(&c);
	check_index(&c, locked);
	for (uint32_t k = 0; k < kv->nclasses; k++)
		check_class(&c, k);
	rc = c.problems ? KV_ECORRUPT : KV_OK;
out:
	free(c.live);
	free(c.freed);
	free(c.ovf);
	free(c.cls_live);
	return rc;
}

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

int kv_check(kv_t *kv, void (*report)(void *ctx, const char *problem),
             void *ctx)
{
	if (kv == NULL)
		return KV_EINVAL;
	if (!kv->rdonly) {
		int rc = kv__lock(kv);
		if (rc != KV_OK)
			return rc;
		rc = walk(kv, true, report, ctx);
		kv__unlock(kv);
		return rc;
	}
	/* Unlocked: a problem seen while writers were busy may be theirs in
	 * flight. Walk quietly until two walks see a quiet store. */
	for (int attempt = 0; attempt < 4; attempt++) {
		struct kv_hdr *h = kv__hdr(kv);
		uint64_t v = ld64(&h->version), d = ld64(&h->deletes);
		uint64_t e = ld64(&h->expired);
		int rc = walk(kv, false, quiet, NULL);
		if (rc == KV_OK)
			return KV_OK;
		if (ld64(&h->version) == v && ld64(&h->deletes) == d &&
		    ld64(&h->expired) == e)
			break;
	}
	return walk(kv, false, report, ctx);
}
