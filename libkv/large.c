/*
 * large.c - items larger than the largest chunk: the writer's side (the
 * reader's is in index.c, kv__large_copy).
 *
 * An item whose header, key and value do not fit KV_CHUNK_MAX (an eighth
 * of a page) is a large item (format.h, struct kv_large, kv__split): its
 * chunk holds the header, the struct kv_large, the key and the value's
 * last bytes; the value's first bytes fill whole pages of its own, linked
 * through the page table's next words, and the bytes between fill up to
 * KV_MAX_PIECES pieces, chunks of the ordinary classes. Pages stay small
 * however large the values, and a value wastes only what its last
 * piece's and its chunk's classes round up.
 *
 * The pages come off the free-page list, where they are already linked:
 * the first npages of the list become the value's pages by cutting the
 * list after them, and one journal chain entry (KV_LOG_CHAIN) marks them
 * KV_PAGE_LARGE and names the owner. Freeing splices the chain back onto
 * the list the same way. Pieces are allocated as any chunk, and their
 * header words are journal entries, so their free-list links survive
 * until COMMIT. So a put or a delete of a value of any size is one
 * transaction of a bounded number of journal entries, as crash-safe as
 * any other: every value byte is written into memory that is still free
 * until COMMIT, so a writer that dies before it has changed nothing.
 *
 * Room: kv__large_room_locked first puts never-used pages on the list (in
 * batches that each fit a transaction), then evicts whole pages by the
 * page hand (evict.c) until the list holds enough. A page of a large item
 * is taken by evicting its owner, which frees every page and piece of it;
 * so is a page holding one of its pieces.
 */
#include <string.h>

#include "kv_internal.h"

/* kv__split's bounds: a large item's chunk holds its header, struct
 * kv_large and the longest key with room to spare, and the part of a
 * value short of a page fits KV_MAX_PIECES pieces and that room. */
#define KV_LARGE_HEAD_MAX (KV_ITEM_HDR_MAX + KV_MAX_KEY)
static_assert(KV_LARGE_HEAD_MAX < KV_CHUNK_MAX,
              "the longest key fits a large item's chunk");
static_assert((uint64_t)KV_MAX_PIECES * KV_PIECE_BYTES +
                      (KV_CHUNK_MAX - KV_LARGE_HEAD_MAX) >=
                  KV_PAGE_SIZE - 1,
              "a value's rest short of a page fits the pieces");

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

/* Free pages a large item needs beyond its own: for each class it takes
 * chunks of (its chunk's, its pieces'), what the class's partial pages
 * cannot give, in whole pages. Allocation takes from the partial pages
 * first (alloc.c), so this is exact. */
static uint64_t chunk_pages(struct kv *kv, const struct kv_split *s,
                            uint32_t head_cls)
{
	uint32_t cls[1 + KV_MAX_PIECES];
	uint64_t n = 0, pages = 0;

	cls[n++] = head_cls;
	for (uint64_t i = 0; i < s->npieces; i++)
		cls[n++] = kv__piece_class(kv, s, i);
	for (uint64_t i = 0; i < n; i++) {
		if (cls[i] >= kv->nclasses)
			continue;
		uint64_t want = 0;
		bool seen = false;
		for (uint64_t j = 0; j < n; j++) {
			want += cls[j] == cls[i];
			seen |= j < i && cls[j] == cls[i];
		}
		if (seen)
			continue;
		uint64_t per = kv->class_per_page[cls[i]], have = 0;
		uint64_t link = atomic_load(&kv__class(kv, cls[i])->partial);
		for (uint64_t g = 0; link != 0 && have < want && g < kv->npages;
		     g++) {
			uint64_t p = link_page(kv, link);
			if (p == kv->npages)
				break; /* damage: the allocator will say so */
			uint32_t used = atomic_load(&kv__page(kv, p)->used);
			have += used < per ? per - used : 0;
			link = atomic_load(&kv__page(kv, p)->next);
		}
		if (have < want)
			pages += (want - have + per - 1) / per;
	}
	return pages;
}

int kv__large_room_locked(struct kv *kv, const struct kv_split *s,
                          uint32_t head_cls, bool may_evict)
{
	for (uint64_t rounds = 0; rounds <= kv->npages + 1; rounds++) {
		uint64_t want = s->npages + chunk_pages(kv, s, head_cls), have;
		if (want > kv->npages)
			return KV_EFULL; /* larger than the whole store */
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

/* Take npages off the free-page list for the item at owner; *first
 * receives the first (index+1). */
static int take_pages(struct kv *kv, uint64_t npages, uint64_t owner,
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
	if (last == kv->npages)
		return KV_ECORRUPT;
	kv__tx_put64_locked(kv, &h->free_pages, link);
	kv__tx_put32_locked(kv, &kv__page(kv, last)->next, 0);
	kv__tx_chain_locked(kv, head - 1, npages, KV_PAGE_LARGE, owner);
	kv__add64_locked(kv, &h->data_used,
	                 (int64_t)(npages * (uint64_t)kv->page_size));
	*first = head;
	return KV_OK;
}

/* Journal a piece's header, naming its owner, and the first value bytes
 * up to the end of the chunk's free-list link (kv_free_link: 8 or 12
 * bytes in, by the chunk's alignment): the chunk stays on its page's free
 * list until COMMIT, so its link must survive until then, and only bytes
 * past it may be written directly. Returns the value bytes journaled. */
static uint64_t put_piece_head(struct kv *kv, uint64_t chunk, uint32_t cls,
                               uint64_t bytes, uint64_t owner,
                               const uint8_t *val)
{
	struct kv_item it = {.vlen = (uint32_t)bytes,
	                     .klen = KV_PIECE_KLEN,
	                     .cls = (uint8_t)cls,
	                     .flags = KV_IF_PIECE};
	uint8_t b[KV_ITEM_HDR + 8] = {0};
	uint64_t end = kv_free_link(chunk) + 8 - chunk; /* 16 or 20 */
	uint64_t n = end - KV_ITEM_HDR < bytes ? end - KV_ITEM_HDR : bytes;

	kv_item_set_version(&it, owner);
	memcpy(b, &it, sizeof it);
	memcpy(b + KV_ITEM_HDR, val, n);
	for (uint64_t o = 0; o < end;) {
		uint64_t w = 0;
		if ((chunk + o) % 8 == 0 && o + 8 <= end) {
			memcpy(&w, b + o, 8);
			kv__tx_put64_locked(kv, kv->base + chunk + o, w);
			o += 8;
		} else {
			uint32_t w32;
			memcpy(&w32, b + o, 4);
			kv__tx_put32_locked(kv, kv->base + chunk + o, w32);
			o += 4;
		}
	}
	return n;
}

uint32_t kv__piece_class(const struct kv *kv, const struct kv_split *s,
                         uint64_t i)
{
	return kv__class_for(kv, KV_ITEM_HDR + kv__piece_bytes(s, i));
}

int kv__large_take_locked(struct kv *kv, const struct kv_split *s,
                          uint64_t owner, struct kv_large *lg)
{
	memset(lg, 0, sizeof *lg);
	if (s->npages > 0) {
		uint64_t first;
		int rc = take_pages(kv, s->npages, owner, &first);
		if (rc != KV_OK)
			return rc;
		lg->first = (uint32_t)first;
		lg->npages = (uint32_t)s->npages;
	}
	for (uint64_t i = 0; i < s->npieces; i++) {
		uint32_t cls = kv__piece_class(kv, s, i);
		struct kv_alloc a;
		int rc = cls < kv->nclasses ? kv__alloc_peek_locked(kv, cls, &a)
		                            : KV_ECORRUPT;
		if (rc != KV_OK)
			return rc;
		kv__alloc_take_locked(kv, &a);
		lg->piece[i] = a.chunk;
	}
	return KV_OK;
}

const uint8_t *kv__large_fill(struct kv *kv, const struct kv_split *s,
                              const struct kv_large *lg, uint64_t owner,
                              const uint8_t *val)
{
	/* The pages are still on the free-page list in the mapping (the
	 * transaction has not committed), linked as they were taken; each
	 * piece's header and first bytes are journal entries (put_piece_head),
	 * so only its bytes after them are written here. */
	uint64_t link = lg->first;
	for (uint64_t n = 0; n < s->npages; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages)
			break; /* take_pages walked these links */
		memcpy(kv->base + kv->arena_off + p * kv->page_size, val,
		       kv->page_size);
		val += kv->page_size;
		link = atomic_load(&kv__page(kv, p)->next);
	}
	for (uint64_t i = 0; i < s->npieces; i++) {
		uint64_t n = kv__piece_bytes(s, i);
		uint64_t h = put_piece_head(kv, lg->piece[i],
		                            kv__piece_class(kv, s, i), n, owner,
		                            val);
		memcpy(kv->base + lg->piece[i] + KV_ITEM_HDR + h, val + h, n - h);
		val += n;
	}
	return val;
}

int kv__large_of(struct kv *kv, uint64_t item, struct kv_large_info *li)
{
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);
	uint64_t base = kv_item_hdr_len(it->flags & ~KV_IF_LARGE);
	struct kv_large lg;

	memset(li, 0, sizeof *li);
	kv__split(base, it->klen, it->vlen, &li->s);
	li->last = kv->npages;
	if (!(it->flags & KV_IF_LARGE))
		return li->s.large ? KV_ECORRUPT : KV_OK;
	if (!li->s.large)
		return KV_ECORRUPT;
	memcpy(&lg, (const uint8_t *)it + base, sizeof lg);
	if (lg.npages != li->s.npages || (lg.first == 0) != (lg.npages == 0))
		return KV_ECORRUPT;
	uint64_t link = lg.first;
	for (uint64_t n = 0; n < li->s.npages; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages)
			return KV_ECORRUPT;
		const struct kv_page *pg = kv__page(kv, p);
		if (atomic_load(&pg->cls) != KV_PAGE_LARGE ||
		    atomic_load(&pg->free_head) != item)
			return KV_ECORRUPT;
		li->last = p;
		link = atomic_load(&pg->next);
	}
	if (link != 0)
		return KV_ECORRUPT;
	li->first = lg.first;
	for (uint64_t i = 0; i < KV_MAX_PIECES; i++) {
		uint64_t off = lg.piece[i];
		if (i >= li->s.npieces) {
			if (off != 0)
				return KV_ECORRUPT;
			continue;
		}
		uint32_t cls;
		if (kv__chunk_check(kv, off, &cls) != KV_OK ||
		    cls != kv__piece_class(kv, &li->s, i))
			return KV_ECORRUPT;
		const struct kv_item *pc =
		    (const struct kv_item *)(const void *)(kv->base + off);
		if (pc->klen != KV_PIECE_KLEN || pc->flags != KV_IF_PIECE ||
		    pc->cls != cls || pc->vlen != kv__piece_bytes(&li->s, i) ||
		    KV_ITEM_VERSION(pc) != item)
			return KV_ECORRUPT;
		for (uint64_t j = 0; j < i; j++)
			if (li->piece[j] == off)
				return KV_ECORRUPT; /* one chunk named twice */
		li->piece[i] = off;
		li->piece_cls[i] = cls;
	}
	return KV_OK;
}

void kv__free_item_locked(struct kv *kv, uint32_t cls, uint64_t item)
{
	struct kv_hdr *h = kv__hdr(kv);
	struct kv_large_info li;

	/* A large item that does not check out keeps its pages and
	 * pieces: check reports them, and nothing is freed twice. */
	if (kv__large_of(kv, item, &li) == KV_OK && li.s.large) {
		if (li.s.npages > 0) {
			kv__tx_put32_locked(kv, &kv__page(kv, li.last)->next,
			                    (uint32_t)kv__tx_get64_locked(
			                        kv, &h->free_pages));
			kv__tx_put64_locked(kv, &h->free_pages, li.first);
			kv__tx_chain_locked(kv, li.first - 1, li.s.npages,
			                    KV_PAGE_FREE, 0);
			kv__add64_locked(kv, &h->data_used,
			                 -(int64_t)(li.s.npages *
			                            (uint64_t)kv->page_size));
		}
		for (uint64_t i = 0; i < li.s.npieces; i++)
			kv__free_chunk_locked(kv, li.piece_cls[i], li.piece[i]);
	}
	kv__free_chunk_locked(kv, cls, item);
}
