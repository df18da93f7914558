/*
 * alloc.c - the size-class allocator inside the arena.
 *
 * The arena is an array of equal pages. A page belongs to at most one size
 * class (recorded in the page table) and is cut into chunks of that class's
 * size. Each class keeps a free list of chunks (linked through each free
 * chunk's first 8 bytes) and a bump range: the unused tail of the newest
 * page it took. A chunk comes from the free list, else from the bump range,
 * else from the next never-used page.
 *
 * Every change is recorded in the caller's open journal transaction (see
 * lock.c), and every read of allocator state goes through kv__tx_get so
 * that two changes in one transaction see each other. All values read from
 * the mapping are checked before use: a corrupt free list gives KV_ECORRUPT,
 * never a chunk outside its class.
 *
 * Waste: a chunk is at most 1/8 larger than the item in it (see
 * geometry.c), plus the unused tail of each page.
 */
#include "kv_internal.h"

int kv__chunk_check(const struct kv *kv, uint64_t off, uint32_t *cls)
{
	if (off < kv->arena_off || off >= kv->arena_end ||
	    off % KV_CHUNK_ALIGN != 0)
		return KV_ECORRUPT;
	uint64_t page = (off - kv->arena_off) / kv->page_size;
	uint64_t in = (off - kv->arena_off) % kv->page_size;
	uint32_t c = atomic_load_explicit(&kv__page(kv, page)->cls,
	                                  memory_order_relaxed);
	if (c >= kv->nclasses)
		return KV_ECORRUPT;
	if (in % kv->class_size[c] != 0 ||
	    in / kv->class_size[c] >= kv->class_per_page[c])
		return KV_ECORRUPT;
	*cls = c;
	return KV_OK;
}

int kv__alloc_peek(struct kv *kv, uint32_t cls, struct kv_alloc *a)
{
	struct kv_class *c = kv__class(kv, cls);
	uint64_t size = kv->class_size[cls];

	a->cls = cls;
	a->next = 0;
	uint64_t head = kv__tx_get64(kv, &c->free_head);
	if (head != 0) {
		uint32_t hc;
		if (kv__chunk_check(kv, head, &hc) != KV_OK || hc != cls)
			return KV_ECORRUPT;
		uint64_t next = kv__tx_get64(kv, kv->base + head);
		if (next != 0 &&
		    (kv__chunk_check(kv, next, &hc) != KV_OK || hc != cls))
			return KV_ECORRUPT;
		a->chunk = head;
		a->next = next;
		a->src = KV_SRC_FREE;
		return KV_OK;
	}
	uint64_t bump = kv__tx_get64(kv, &c->bump);
	uint64_t end = kv__tx_get64(kv, &c->bump_end);
	if (bump != 0 && bump + size <= end) {
		uint32_t hc;
		if (end > kv->arena_end ||
		    kv__chunk_check(kv, bump, &hc) != KV_OK || hc != cls)
			return KV_ECORRUPT;
		a->chunk = bump;
		a->src = KV_SRC_BUMP;
		return KV_OK;
	}
	uint64_t pb = kv__tx_get64(kv, &kv__hdr(kv)->page_bump);
	if (pb < kv->npages) {
		if (atomic_load_explicit(&kv__page(kv, pb)->cls,
		                         memory_order_relaxed) != KV_PAGE_FREE)
			return KV_ECORRUPT;
		a->chunk = kv->arena_off + pb * kv->page_size;
		a->src = KV_SRC_PAGE;
		return KV_OK;
	}
	return KV_EFULL;
}

void kv__alloc_pend(struct kv *kv, const struct kv_alloc *a)
{
	struct kv_journal *j = kv__journal(kv);

	if (a->src != KV_SRC_FREE)
		return;
	j->pend_next = a->next;
	atomic_thread_fence(memory_order_release);
	j->pend_chunk = a->chunk;
	atomic_thread_fence(memory_order_release);
}

static void add64(struct kv *kv, _Atomic uint64_t *field, int64_t delta)
{
	kv__tx_put64(kv, field, kv__tx_get64(kv, field) + (uint64_t)delta);
}

void kv__alloc_take(struct kv *kv, const struct kv_alloc *a)
{
	struct kv_class *c = kv__class(kv, a->cls);
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t size = kv->class_size[a->cls];

	switch (a->src) {
	case KV_SRC_FREE:
		kv__tx_put64(kv, &c->free_head, a->next);
		add64(kv, &c->nfree, -1);
		break;
	case KV_SRC_BUMP:
		kv__tx_put64(kv, &c->bump, a->chunk + size);
		break;
	case KV_SRC_PAGE: {
		uint64_t pb = (a->chunk - kv->arena_off) / kv->page_size;
		kv__tx_put32(kv, &kv__page(kv, pb)->cls, a->cls);
		kv__tx_put64(kv, &h->page_bump, pb + 1);
		add64(kv, &c->pages, 1);
		kv__tx_put64(kv, &c->bump, a->chunk + size);
		kv__tx_put64(kv, &c->bump_end,
		             a->chunk + size * kv->class_per_page[a->cls]);
		break;
	}
	}
	add64(kv, &c->used, 1);
	add64(kv, &h->data_used, (int64_t)size);
}

void kv__free_chunk(struct kv *kv, uint32_t cls, uint64_t chunk)
{
	struct kv_class *c = kv__class(kv, cls);

	kv__tx_put64(kv, kv->base + chunk, kv__tx_get64(kv, &c->free_head));
	kv__tx_put64(kv, &c->free_head, chunk);
	add64(kv, &c->nfree, 1);
	add64(kv, &c->used, -1);
	add64(kv, &kv__hdr(kv)->data_used, -(int64_t)kv->class_size[cls]);
}
