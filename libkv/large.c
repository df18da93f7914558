/*
 * large.c - values larger than a page: the writer's side (the reader's is
 * in index.c, kv__large_copy).
 *
 * An item whose header, key and value do not fit one KV_PAGE_SIZE page is
 * a large item (format.h, struct kv_large): its chunk, of an ordinary size
 * class, holds the header, the key, {first, npages} and the value's last
 * bytes; the value's first bytes fill npages pages of its own, linked
 * through the page table's next words in value order. Pages stay small
 * however large the values, and a value wastes only what its chunk's
 * class rounds up (at most 1/9 of the chunk, which holds less than a page
 * of the value).
 *
 * The pages come off the free-page list, where they are already linked:
 * the first npages of the list become the value's pages by cutting the
 * list after them, and one journal chain entry (KV_LOG_CHAIN) marks them
 * KV_PAGE_LARGE and names the owner. Freeing splices the chain back onto
 * the list the same way. So a put or a delete of a value of any size is
 * one transaction of a bounded number of journal entries, as crash-safe as
 * any other: the value's bytes are written into pages that are still on
 * the free list, so a writer that dies before COMMIT has changed nothing.
 *
 * Room: kv__large_room_locked first puts never-used pages on the list (in
 * batches that each fit a transaction), then evicts whole pages by the
 * page hand (evict.c) until the list holds enough. A page of a large item
 * is taken by evicting its owner, which frees every page of it.
 */
#include <string.h>

#include "kv_internal.h"

static uint64_t link_page(const struct kv *kv, uint64_t link)
{
	return link >= 1 && link <= kv->npages ? link - 1 : kv->npages;
}

/* Pages on the free-page list, counted up to want (mapping state: call
 * outside a transaction). KV_ECORRUPT for a list that leaves the table or
 * holds a page that is not free. */
static int count_free(struct kv *kv, uint64_t want, uint64_t *have)
{
	uint64_t link = atomic_load(&kv__hdr(kv)->free_pages), n = 0;
	while (link != 0 && n < want) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages ||
		    atomic_load(&kv__page(kv, p)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT;
		n++;
		link = atomic_load(&kv__page(kv, p)->next);
	}
	*have = n;
	return KV_OK;
}

/* Put up to want never-used pages on the free-page list, one committed
 * transaction. *added receives how many. */
static int add_new_pages(struct kv *kv, uint64_t want, uint64_t *added)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t pb = atomic_load(&h->page_bump);

	*added = 0;
	if (pb >= kv->npages)
		return KV_OK;
	uint64_t m = kv->npages - pb;
	if (m > want)
		m = want;
	if (m > KV_LOG_MAX - 8)
		m = KV_LOG_MAX - 8;
	for (uint64_t i = 0; i < m; i++)
		if (atomic_load(&kv__page(kv, pb + i)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT;
	kv__tx_begin_locked(kv, KV_TX_PUT);
	uint64_t head = kv__tx_get64_locked(kv, &h->free_pages);
	for (uint64_t i = 0; i < m; i++)
		kv__tx_put32_locked(kv, &kv__page(kv, pb + i)->next,
		                    i + 1 < m ? (uint32_t)(pb + i + 2)
		                              : (uint32_t)head);
	kv__tx_put64_locked(kv, &h->free_pages, pb + 1);
	kv__tx_put64_locked(kv, &h->page_bump, pb + m);
	kv__tx_commit_locked(kv);
	kv__tx_end_locked(kv);
	*added = m;
	return KV_OK;
}

int kv__large_room_locked(struct kv *kv, uint64_t npages, bool may_evict)
{
	/* One more than the value needs: its chunk may need a page too. */
	uint64_t want = npages + 1, have;

	if (want > kv->npages)
		return KV_EFULL; /* larger than the whole store */
	for (uint64_t rounds = 0; rounds <= kv->npages + 1; rounds++) {
		int rc = count_free(kv, want, &have);
		if (rc != KV_OK || have >= want)
			return rc;
		uint64_t added;
		rc = add_new_pages(kv, want - have, &added);
		if (rc != KV_OK)
			return rc;
		if (added > 0)
			continue;
		if (!may_evict)
			return KV_EFULL;
		uint64_t p;
		rc = kv__take_page_locked(kv, KV_MAX_CLASSES, &p);
		if (rc != KV_OK)
			return rc;
	}
	return KV_EFULL;
}

int kv__large_take_locked(struct kv *kv, uint64_t npages, uint64_t owner,
                          uint64_t *first)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t head = kv__tx_get64_locked(kv, &h->free_pages);
	uint64_t link = head, last = kv->npages;

	for (uint64_t n = 0; n < npages; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages ||
		    kv__tx_get32_locked(kv, &kv__page(kv, p)->cls) !=
		        KV_PAGE_FREE)
			return KV_ECORRUPT;
		last = p;
		link = kv__tx_get32_locked(kv, &kv__page(kv, p)->next);
	}
	if (npages == 0 || last == kv->npages)
		return KV_ECORRUPT;
	kv__tx_put64_locked(kv, &h->free_pages, link);
	kv__tx_put32_locked(kv, &kv__page(kv, last)->next, 0);
	kv__tx_chain_locked(kv, head - 1, npages, KV_PAGE_LARGE, owner);
	kv__add64_locked(kv, &h->data_used,
	                 (int64_t)(npages * (uint64_t)kv->page_size));
	*first = head;
	return KV_OK;
}

void kv__large_fill(struct kv *kv, uint64_t first, const uint8_t *val,
                    uint64_t vlen)
{
	/* The pages are still on the free-page list in the mapping (the
	 * transaction has not committed), linked as they were taken. */
	uint64_t link = first;
	while (vlen > 0) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages)
			return; /* kv__large_take_locked walked these links */
		uint64_t n = vlen < kv->page_size ? vlen : kv->page_size;
		memcpy(kv->base + kv->arena_off + p * kv->page_size, val, n);
		val += n;
		vlen -= n;
		link = atomic_load(&kv__page(kv, p)->next);
	}
}

int kv__large_pages_of(struct kv *kv, uint64_t item, uint64_t *first,
                       uint64_t *npages, uint64_t *last)
{
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);
	uint64_t base = kv_item_hdr_len(it->flags & ~KV_IF_LARGE);
	uint64_t np = kv__large_npages(base, it->klen, it->vlen);
	struct kv_large lg;

	*first = 0;
	*npages = 0;
	*last = kv->npages;
	if (!(it->flags & KV_IF_LARGE))
		return np == 0 ? KV_OK : KV_ECORRUPT;
	memcpy(&lg, (const uint8_t *)it + base, sizeof lg);
	if (lg.npages != np || np == 0)
		return KV_ECORRUPT;
	uint64_t link = lg.first;
	for (uint64_t n = 0; n < np; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages)
			return KV_ECORRUPT;
		const struct kv_page *pg = kv__page(kv, p);
		if (atomic_load(&pg->cls) != KV_PAGE_LARGE ||
		    atomic_load(&pg->free_head) != item)
			return KV_ECORRUPT;
		*last = p;
		link = atomic_load(&pg->next);
	}
	if (link != 0)
		return KV_ECORRUPT;
	*first = lg.first;
	*npages = np;
	return KV_OK;
}

void kv__free_item_locked(struct kv *kv, uint32_t cls, uint64_t item)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t first, np, last;

	/* A chain that does not check out is left where it is: check
	 * reports the pages, and nothing is freed twice. */
	if (kv__large_pages_of(kv, item, &first, &np, &last) == KV_OK &&
	    np > 0) {
		kv__tx_put32_locked(kv, &kv__page(kv, last)->next,
		                    (uint32_t)kv__tx_get64_locked(
		                        kv, &h->free_pages));
		kv__tx_put64_locked(kv, &h->free_pages, first);
		kv__tx_chain_locked(kv, first - 1, np, KV_PAGE_FREE, 0);
		kv__add64_locked(kv, &h->data_used,
		                 -(int64_t)(np * (uint64_t)kv->page_size));
	}
	kv__free_chunk_locked(kv, cls, item);
}
