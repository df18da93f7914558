/*
 * alloc.c - the size-class allocator inside the arena (see format.h for
 * pages, classes and chunk states).
 *
 * A chunk of class c comes from the class's first partial page: its free
 * list if it has one, else its next never-used chunk. A class with no
 * partial page takes a page from the free-page list, else the next
 * never-used page of the arena. Freeing a chunk puts it on its page's free
 * list; a page whose last chunk is freed leaves its class and goes back to
 * the free-page list, so memory a class no longer holds is open to every
 * class.
 *
 * Every change is recorded in the caller's open journal transaction (see
 * lock.c), and every read of allocator state goes through kv__tx_get so that
 * several changes in one transaction see each other. Every value read from
 * the mapping is checked before use: a corrupt list gives KV_ECORRUPT,
 * never a chunk outside its page and class.
 *
 * Waste: a chunk is at most 1/16 larger than the item in it (1/8 for the
 * top classes), and a page of a class leaves at most a sixteenth of
 * itself unused (geometry.c); together at most 11 % of what an item
 * holds. Items larger than the largest class are large.c's.
 */
#include "kv_internal.h"

static inline uint64_t page_start(const struct kv *kv, uint64_t p)
{
	return kv->arena_off + p * kv->page_size;
}

static inline uint64_t page_of(const struct kv *kv, uint64_t off)
{
	return (off - kv->arena_off) / kv->page_size;
}

int kv__chunk_check(const struct kv *kv, uint64_t off, uint32_t *cls)
{
	if (off < kv->arena_off || off >= kv->arena_end ||
	    off % KV_CHUNK_ALIGN != 0)
		return KV_ECORRUPT;
	uint64_t page = page_of(kv, off);
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

/* A page number taken from a list link (index+1), or npages if bad. */
static uint64_t link_page(const struct kv *kv, uint64_t link)
{
	return link >= 1 && link <= kv->npages ? link - 1 : kv->npages;
}

/* The chunk a partial page p of class cls hands out next: from its free
 * list, else its next never-used chunk. */
static int partial_chunk(struct kv *kv, uint32_t cls, uint64_t p,
                         struct kv_alloc *a)
{
	struct kv_page *pg = kv__page(kv, p);
	uint64_t head = kv__tx_get64_locked(kv, &pg->free_head);

	a->page = p;
	if (head != 0) {
		uint32_t hc;
		if (kv__chunk_check(kv, head, &hc) != KV_OK || hc != cls ||
		    page_of(kv, head) != p)
			return KV_ECORRUPT;
		uint64_t next =
		    kv__tx_get64_locked(kv, kv->base + kv_free_link(head));
		if (next != 0 && (kv__chunk_check(kv, next, &hc) != KV_OK ||
		                  page_of(kv, next) != p))
			return KV_ECORRUPT;
		a->chunk = head;
		a->next = next;
		a->src = KV_SRC_FREE;
		return KV_OK;
	}
	uint32_t bump = kv__tx_get32_locked(kv, &pg->bump);
	if (bump >= kv->class_per_page[cls])
		return KV_ECORRUPT; /* a full page on the list */
	a->chunk = page_start(kv, p) + bump * (uint64_t)kv->class_size[cls];
	a->src = KV_SRC_BUMP;
	return KV_OK;
}

int kv__alloc_peek_locked(struct kv *kv, uint32_t cls, struct kv_alloc *a)
{
	/* Below the end of the arena: the first partial page, else the
	 * head of the free-page list, else the next never-used page. */
	uint64_t pred;
	return kv__alloc_below_locked(kv, cls, kv->npages, a, &pred);
}

void kv__alloc_pend_locked(struct kv *kv, const struct kv_alloc *a)
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
	kv__tx_put64_locked(kv, field, kv__tx_get64_locked(kv, field) + (uint64_t)delta);
}

static void add32(struct kv *kv, _Atomic uint32_t *field, int32_t delta)
{
	kv__tx_put32_locked(kv, field, kv__tx_get32_locked(kv, field) + (uint32_t)delta);
}

/* Put page p at the head of its class's partial list. */
static void partial_push(struct kv *kv, uint32_t cls, uint64_t p)
{
	struct kv_class *c = kv__class(kv, cls);
	struct kv_page *pg = kv__page(kv, p);
	uint64_t head = kv__tx_get64_locked(kv, &c->partial);

	kv__tx_put32_locked(kv, &pg->next, (uint32_t)head);
	kv__tx_put32_locked(kv, &pg->prev, 0);
	kv__tx_put32_locked(kv, &pg->partial, 1);
	if (head != 0 && link_page(kv, head) < kv->npages)
		kv__tx_put32_locked(kv, &kv__page(kv, head - 1)->prev,
		             (uint32_t)(p + 1));
	kv__tx_put64_locked(kv, &c->partial, p + 1);
}

/* Take page p off its class's partial list. */
static void partial_remove(struct kv *kv, uint32_t cls, uint64_t p)
{
	struct kv_class *c = kv__class(kv, cls);
	struct kv_page *pg = kv__page(kv, p);
	uint32_t next = kv__tx_get32_locked(kv, &pg->next);
	uint32_t prev = kv__tx_get32_locked(kv, &pg->prev);

	if (prev != 0 && link_page(kv, prev) < kv->npages)
		kv__tx_put32_locked(kv, &kv__page(kv, prev - 1)->next, next);
	else
		kv__tx_put64_locked(kv, &c->partial, next);
	if (next != 0 && link_page(kv, next) < kv->npages)
		kv__tx_put32_locked(kv, &kv__page(kv, next - 1)->prev, prev);
	kv__tx_put32_locked(kv, &pg->next, 0);
	kv__tx_put32_locked(kv, &pg->prev, 0);
	kv__tx_put32_locked(kv, &pg->partial, 0);
}

static bool page_full(struct kv *kv, uint32_t cls, uint64_t p)
{
	struct kv_page *pg = kv__page(kv, p);
	return kv__tx_get64_locked(kv, &pg->free_head) == 0 &&
	       kv__tx_get32_locked(kv, &pg->bump) >= kv->class_per_page[cls];
}

void kv__alloc_take_locked(struct kv *kv, const struct kv_alloc *a)
{
	struct kv_class *c = kv__class(kv, a->cls);
	struct kv_hdr *h = kv__hdr(kv);
	struct kv_page *pg = kv__page(kv, a->page);

	switch (a->src) {
	case KV_SRC_FREE:
		kv__tx_put64_locked(kv, &pg->free_head, a->next);
		break;
	case KV_SRC_BUMP:
		add32(kv, &pg->bump, 1);
		break;
	case KV_SRC_FREEPAGE:
	case KV_SRC_NEWPAGE:
		if (a->src == KV_SRC_FREEPAGE)
			kv__tx_put64_locked(kv, &h->free_pages,
			             kv__tx_get32_locked(kv, &pg->next));
		else
			kv__tx_put64_locked(kv, &h->page_bump, a->page + 1);
		kv__tx_put32_locked(kv, &pg->cls, a->cls);
		kv__tx_put32_locked(kv, &pg->used, 0);
		kv__tx_put32_locked(kv, &pg->bump, 1);
		kv__tx_put64_locked(kv, &pg->free_head, 0);
		kv__tx_put32_locked(kv, &pg->next, 0);
		kv__tx_put32_locked(kv, &pg->prev, 0);
		kv__tx_put32_locked(kv, &pg->partial, 0);
		add64(kv, &c->pages, 1);
		if (!page_full(kv, a->cls, a->page))
			partial_push(kv, a->cls, a->page);
		break;
	}
	add32(kv, &pg->used, 1);
	if (a->src != KV_SRC_FREEPAGE && a->src != KV_SRC_NEWPAGE &&
	    page_full(kv, a->cls, a->page))
		partial_remove(kv, a->cls, a->page);
	add64(kv, &c->used, 1);
	add64(kv, &h->data_used, (int64_t)kv->class_size[a->cls]);
}

void kv__free_chunk_locked(struct kv *kv, uint32_t cls, uint64_t chunk)
{
	struct kv_class *c = kv__class(kv, cls);
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t p = page_of(kv, chunk);
	struct kv_page *pg = kv__page(kv, p);
	bool was_full = page_full(kv, cls, p);
	uint32_t used = kv__tx_get32_locked(kv, &pg->used);

	add64(kv, &c->used, -1);
	add64(kv, &h->data_used, -(int64_t)kv->class_size[cls]);
	if (used <= 1) {
		/* The page's last chunk: the page leaves the class. Its chunk
		 * states no longer matter, as bump returns to 0. */
		if (!was_full)
			partial_remove(kv, cls, p);
		kv__tx_put32_locked(kv, &pg->cls, KV_PAGE_FREE);
		kv__tx_put32_locked(kv, &pg->used, 0);
		kv__tx_put32_locked(kv, &pg->bump, 0);
		kv__tx_put64_locked(kv, &pg->free_head, 0);
		kv__tx_put32_locked(kv, &pg->next,
		             (uint32_t)kv__tx_get64_locked(kv, &h->free_pages));
		kv__tx_put64_locked(kv, &h->free_pages, p + 1);
		add64(kv, &c->pages, -1);
		return;
	}
	/* Mark the chunk free (klen 0) and link it into its page. */
	kv__tx_put32_locked(kv, kv->base + chunk + offsetof(struct kv_item, klen), 0);
	kv__tx_put64_locked(kv, kv->base + kv_free_link(chunk),
	             kv__tx_get64_locked(kv, &pg->free_head));
	kv__tx_put64_locked(kv, &pg->free_head, chunk);
	kv__tx_put32_locked(kv, &pg->used, used - 1);
	if (was_full)
		partial_push(kv, cls, p);
}

int kv__alloc_below_locked(struct kv *kv, uint32_t cls, uint64_t limit,
                           struct kv_alloc *a, uint64_t *pred)
{
	struct kv_hdr *h = kv__hdr(kv);

	*a = (struct kv_alloc){.cls = cls};
	*pred = 0;
	/* A partial page of the class below the limit. Lists are walked
	 * at most npages steps: a cycle is damage, not a hang. */
	uint64_t link = kv__tx_get64_locked(kv, &kv__class(kv, cls)->partial);
	for (uint64_t n = 0; link != 0 && n < kv->npages; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages)
			return KV_ECORRUPT;
		struct kv_page *pg = kv__page(kv, p);
		if (kv__tx_get32_locked(kv, &pg->cls) != cls)
			return KV_ECORRUPT;
		if (p < limit)
			return partial_chunk(kv, cls, p, a);
		link = kv__tx_get32_locked(kv, &pg->next);
	}
	/* A free page below it; *pred is the page before it on the list. */
	uint64_t prev = 0;
	link = kv__tx_get64_locked(kv, &h->free_pages);
	for (uint64_t n = 0; link != 0 && n < kv->npages; n++) {
		uint64_t p = link_page(kv, link);
		if (p == kv->npages ||
		    kv__tx_get32_locked(kv, &kv__page(kv, p)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT;
		if (p < limit) {
			a->page = p;
			a->chunk = page_start(kv, p);
			a->src = KV_SRC_FREEPAGE;
			*pred = prev;
			return KV_OK;
		}
		prev = link;
		link = kv__tx_get32_locked(kv, &kv__page(kv, p)->next);
	}
	uint64_t pb = kv__tx_get64_locked(kv, &h->page_bump);
	if (pb < limit && pb < kv->npages) {
		if (kv__tx_get32_locked(kv, &kv__page(kv, pb)->cls) != KV_PAGE_FREE)
			return KV_ECORRUPT;
		a->page = pb;
		a->chunk = page_start(kv, pb);
		a->src = KV_SRC_NEWPAGE;
		return KV_OK;
	}
	return KV_EFULL;
}

void kv__alloc_promote_locked(struct kv *kv, const struct kv_alloc *a,
                              uint64_t pred)
{
	struct kv_hdr *h = kv__hdr(kv);
	if (a->src != KV_SRC_FREEPAGE || pred == 0)
		return;
	struct kv_page *pg = kv__page(kv, a->page);
	kv__tx_put32_locked(kv, &kv__page(kv, pred - 1)->next,
	                    kv__tx_get32_locked(kv, &pg->next));
	kv__tx_put32_locked(kv, &pg->next,
	                    (uint32_t)kv__tx_get64_locked(kv, &h->free_pages));
	kv__tx_put64_locked(kv, &h->free_pages, a->page + 1);
}
