/*
 * geometry.c - how a store of a given size is divided: index buckets, page
 * table, arena pages and size classes. Used by the creator to lay a store
 * out, and by every attacher to check that a header describes a layout this
 * build would have made (anything else is refused as corrupt).
 *
 * Size classes: 4-byte steps from 20 bytes (the smallest item, a 16-byte
 * header and a 1-byte key, is 17), then growth by 1/16 up to a sixteenth
 * of a page, then the sizes that cut a page into 16, 15, ... 8 chunks.
 * So a chunk is at most 3 bytes or 1/16 (up to 1/8 at the top) larger
 * than what it holds, and a page of any class leaves at most a sixteenth
 * of itself unused, or a few bytes for the top classes: an item up to the
 * largest class, KV_CHUNK_MAX, wastes at most 15 % of the memory it takes,
 * 12.5 % if its value has a byte (bench: kv-waste-bench). A larger item
 * keeps its value in whole pages and pieces (format.h, struct kv_large;
 * large.c), which waste only what the last piece's class rounds up, so
 * pages are KV_PAGE_SIZE whatever the largest value.
 */
#include <errno.h>

#include "kv_internal.h"

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int make_classes(uint32_t page_size, struct kv_geometry *g)
{
	uint64_t c = KV_MIN_CHUNK;
	uint32_t n = 0;

	/* Up to a sixteenth of a page: 4-byte steps, then growth by 1/16. */
	while (c < page_size / 16) {
		if (n == KV_MAX_CLASSES - 1)
			return KV_EINVAL;
		g->class_size[n++] = (uint32_t)c;
		uint64_t next = round_up(c + c / 16, KV_CHUNK_ALIGN);
		c = next > c + KV_CHUNK_ALIGN ? next : c + KV_CHUNK_ALIGN;
	}
	/* Then a page's 16th, 15th, ... 8th (rounded down to 4 bytes): each
	 * fills its page but for a few bytes, and each is at most 1/8 above
	 * the one before. */
	for (uint32_t per = 16; per >= 8; per--) {
		uint64_t d = page_size / per / KV_CHUNK_ALIGN * KV_CHUNK_ALIGN;
		if (n > 0 && d <= g->class_size[n - 1])
			continue;
		if (n == KV_MAX_CLASSES)
			return KV_EINVAL;
		g->class_size[n++] = (uint32_t)d;
	}
	g->nclasses = n;
	return g->class_size[n - 1] == KV_CHUNK_MAX ? KV_OK : KV_EINVAL;
}

int kv__classes(uint32_t max_value, struct kv_geometry *g)
{
	if (max_value == 0 || max_value > KV_MAX_VALUE_LIMIT)
		return KV_EINVAL;
	g->page_size = KV_PAGE_SIZE;
	g->max_value = max_value;
	return make_classes(g->page_size, g);
}

int kv__geometry(uint64_t map_size, uint32_t max_value, uint64_t max_items,
                 struct kv_geometry *g)
{
	*g = (struct kv_geometry){0};
	if (map_size == 0)
		map_size = KV_DEFAULT_SIZE;
	/* The default largest value is a sixteenth of the store, at least
	 * KV_DEFAULT_MAX_VALUE: a value larger than a page costs no more
	 * than its bytes, so the limit only keeps one value from taking
	 * more of the store than a caller meant. */
	if (max_value == 0) {
		uint64_t v = map_size / 16;
		if (v < KV_DEFAULT_MAX_VALUE)
			v = KV_DEFAULT_MAX_VALUE;
		if (v > KV_MAX_VALUE_LIMIT)
			v = KV_MAX_VALUE_LIMIT;
		max_value = (uint32_t)v;
	}
	if (max_value > KV_MAX_VALUE_LIMIT)
		return KV_EINVAL;
	if (map_size > KV_MAX_MAP)
		return KV_ETOOBIG;
	map_size = map_size / KV_PAGE_ALIGN * KV_PAGE_ALIGN;

	int rc = kv__classes(max_value, g);
	if (rc != KV_OK)
		return rc;

	/* Index: sized for max_items at a 4/5 load, else about 1/16 of the
	 * store, which suits items of a hundred or so bytes. At 7/8 the tail
	 * of linear probing reached the KV_MAX_PROBE cap on a 1M-key load,
	 * turning keys away with memory to spare. Any bucket count works
	 * (see kv__home), so nothing is rounded up. */
	uint64_t nb;
	if (max_items) {
		if (max_items > map_size / 16)
			return KV_ETOOSMALL;
		nb = (max_items * 5 + KV_SLOTS * 4 - 1) / (KV_SLOTS * 4);
	} else {
		nb = map_size / 16 / KV_CACHELINE;
	}
	if (nb < 64)
		nb = 64;
	return kv__layout(map_size, nb, g);
}

uint64_t kv__tail_bytes(uint64_t nbuckets, uint64_t npages,
                        uint32_t page_size)
{
	return round_up(nbuckets * KV_CACHELINE +
	                    npages * sizeof(struct kv_page),
	                page_size);
}

int kv__layout(uint64_t map_size, uint64_t nb, struct kv_geometry *g)
{
	uint64_t page = g->page_size;
	/* Pages first, then the index and the page table, padded to whole
	 * pages: as many pages as leave room for that tail. */
	if (map_size > KV_MAX_MAP)
		return KV_ETOOBIG;
	if (nb > map_size / KV_CACHELINE ||
	    map_size < KV_ARENA_OFF + nb * KV_CACHELINE)
		return KV_ETOOSMALL;
	uint64_t left = map_size - KV_ARENA_OFF - nb * KV_CACHELINE;
	uint64_t np = left / (page + sizeof(struct kv_page));
	while (np > 0 && np * page + kv__tail_bytes(nb, np, g->page_size) >
	                     map_size - KV_ARENA_OFF)
		np--;
	if (np < 2)
		return KV_ETOOSMALL;
	g->nbuckets = nb;
	g->npages = np;
	g->arena_off = KV_ARENA_OFF;
	g->index_off = KV_ARENA_OFF + np * page;
	g->ptab_off = g->index_off + nb * KV_CACHELINE;
	g->map_size = map_size;
	return KV_OK;
}

uint32_t kv__class_for(const struct kv *kv, uint64_t bytes)
{
	uint32_t lo = 0, hi = kv->nclasses; /* first class with size >= bytes */

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (kv->class_size[mid] < bytes)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo; /* == nclasses when nothing fits */
}

static _Atomic uint64_t test_clock;

uint64_t kv__now_ms(void)
{
	uint64_t pinned = atomic_load_explicit(&test_clock,
	                                       memory_order_relaxed);
	if (pinned)
		return pinned;
	return kv__os_wall_ms();
}

void kv__set_test_clock(uint64_t ms)
{
	atomic_store_explicit(&test_clock, ms, memory_order_relaxed);
}

uint64_t kv__default_max_map(uint64_t map_size)
{
	uint64_t floor = UINT64_C(16) << 30;
	uint64_t m = map_size <= KV_MAX_MAP / 16 ? map_size * 16 : KV_MAX_MAP;
	if (m < floor)
		m = floor;
	return m < KV_MAX_MAP ? m : KV_MAX_MAP;
}
