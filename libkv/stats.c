/*
 * stats.c - the figures of a store: reader-side hit and miss counters
 * (one cache line per attached read-write handle, see kv_rstat in
 * format.h), kv_stats and kv_class_stats.
 *
 * The counters are statistics, not state: they live outside the journal,
 * are updated with plain relaxed loads and stores by their one owner, and
 * may lose a count when several threads share one handle or a process
 * forks with a handle open. In exchange a get pays about a nanosecond and
 * never writes a cache line another process reads on its hot path.
 */
#include "kv_internal.h"

static struct kv_rstat *rstat(const struct kv *kv, uint32_t i)
{
	return (struct kv_rstat *)(void *)(kv->base + KV_RSTAT_OFF) + i;
}

static uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* Move a line's counts into the header's retired totals. The caller owns
 * the line. */
static void retire(struct kv *kv, struct kv_rstat *r)
{
	struct kv_hdr *h = kv__hdr(kv);
	atomic_fetch_add_explicit(&h->retired_hits, ld(&r->hits),
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&h->retired_misses, ld(&r->misses),
	                          memory_order_relaxed);
	atomic_store_explicit(&r->hits, 0, memory_order_relaxed);
	atomic_store_explicit(&r->misses, 0, memory_order_relaxed);
}

static bool pid_dead(uint32_t pid)
{
	return kv__os_pid_gone(pid);
}

void kv__rstat_attach(struct kv *kv)
{
	uint32_t me = kv__os_pid();

	kv->rstat = NULL;
	if (kv->rdonly)
		return;
	for (int pass = 0; pass < 2 && kv->rstat == NULL; pass++) {
		for (uint32_t i = 0; i < KV_RSTAT_SLOTS; i++) {
			struct kv_rstat *r = rstat(kv, i);
			uint32_t owner = atomic_load_explicit(
			    &r->owner, memory_order_relaxed);
			/* First pass: free lines; second: lines whose owner
			 * died without detaching. */
			if (pass == 0 ? owner != 0 : owner == 0 ||
			                                 !pid_dead(owner))
				continue;
			if (!atomic_compare_exchange_strong(&r->owner, &owner,
			                                    me))
				continue;
			retire(kv, r);
			kv->rstat = r;
			return;
		}
	}
	/* Every line is taken by a live process: count locally. */
}

void kv__rstat_reset(struct kv *kv)
{
	/* Called for a store that outlived a reboot, before this boot's
	 * first read-write attach claims a line: every owner is gone. */
	for (uint32_t i = 0; i < KV_RSTAT_SLOTS; i++) {
		struct kv_rstat *r = rstat(kv, i);
		if (atomic_load_explicit(&r->owner, memory_order_relaxed) == 0)
			continue;
		retire(kv, r);
		atomic_store_explicit(&r->owner, 0, memory_order_release);
	}
}

void kv__rstat_detach(struct kv *kv)
{
	struct kv_rstat *r = kv->rstat;
	if (r == NULL)
		return;
	kv->rstat = NULL;
	/* A handle inherited across fork() names its parent's line: the
	 * child closing it must neither fold the parent's counts nor free
	 * the line the parent still writes. */
	if (atomic_load_explicit(&r->owner, memory_order_relaxed) !=
	    (uint32_t)kv__os_pid())
		return;
	retire(kv, r);
	atomic_store_explicit(&r->owner, 0, memory_order_release);
}

void kv__count_get(struct kv *kv, bool hit)
{
	_Atomic uint64_t *c;
	if (kv->rstat != NULL)
		c = hit ? &kv->rstat->hits : &kv->rstat->misses;
	else
		c = hit ? &kv->local_hits : &kv->local_misses;
	atomic_store_explicit(c, ld(c) + 1, memory_order_relaxed);
}

/* What backs the mapping, found once per handle: the kernel tells only
 * through /proc/self/smaps, whose every read walks all of this process's
 * mappings (slow in a big process, and very slow under a sanitizer). The
 * first kv_stats of the handle pays it; a store's backing never changes. */
static uint64_t mem_page_size(struct kv *kv, uint64_t size)
{
	uint64_t v = atomic_load_explicit(&kv->mem_page, memory_order_relaxed);
	if (v == 0) {
		v = kv__os_mem_page_size(kv->base, size);
		atomic_store_explicit(&kv->mem_page, v, memory_order_relaxed);
	}
	return v;
}

int kv_stats(kv_t *kv, struct kv_stats *out)
{
	if (kv == NULL || out == NULL)
		return KV_EINVAL;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	int rc = kv__sync(kv);
	if (rc != KV_OK)
		return rc;
	struct kv_hdr *h = kv__hdr(kv);
	/* Without the lock: the geometry from the handle's snapshot. */
	const struct kv_ix *ix =
	    atomic_load_explicit(&kv->ix, memory_order_acquire);

	*out = (struct kv_stats){0};
	out->format_version = KV_FORMAT_VERSION;
	out->max_key = kv->max_key;
	out->max_value = kv->max_value;
	out->page_size = kv->page_size;
	out->map_size = ix->map_size;
	out->data_bytes = ix->arena_end - kv->arena_off;
	out->data_used = ld(&h->data_used);
	out->pages_total = ix->npages;
	uint64_t pb = ld(&h->page_bump), freep = 0;
	for (uint64_t p = 0; p < pb && p < ix->npages; p++)
		freep += atomic_load_explicit(&((struct kv_page *)(void *)(kv->base + ix->ptab_off) + p)->cls,
		                              memory_order_relaxed) ==
		         KV_PAGE_FREE;
	out->pages_used = (pb < ix->npages ? pb : ix->npages) - freep;
	out->buckets = ix->nbuckets;
	out->slots = ix->nbuckets * KV_SLOTS;
	out->items = ld(&h->items);
	out->key_bytes = ld(&h->key_bytes);
	out->value_bytes = ld(&h->value_bytes);
	out->puts = ld(&h->puts);
	out->deletes = ld(&h->deletes);
	out->expired = ld(&h->expired);
	out->recoveries = ld(&h->recoveries);
	out->lock_repairs = ld(&h->lock_repairs);
	out->item_header = KV_ITEM_HDR;
	out->max_probe = ld(&h->max_probe);
	out->created_ms = h->created_ms;
	out->nclasses = kv->nclasses;
	out->evictions = ld(&h->evictions);
	out->page_moves = ld(&h->page_moves);
	out->evict = (kv->hflags & KV_HF_NOEVICT) ? 0 : 1;
	out->sweeps = ld(&h->sweeps);
	out->sweep_ns = ld(&h->sweep_ns);
	out->mem_page_size = mem_page_size(kv, ix->map_size);
	out->max_size = kv->max_map;
	out->resizes = ix->gen;
	for (unsigned i = 0; i < 8; i++)
		out->probe_hist[i] = ld(&h->probe_hist[i]);
	out->hits = ld(&h->retired_hits) + ld(&kv->local_hits);
	out->misses = ld(&h->retired_misses) + ld(&kv->local_misses);
	for (uint32_t i = 0; i < KV_RSTAT_SLOTS; i++) {
		struct kv_rstat *r = rstat(kv, i);
		if (atomic_load_explicit(&r->owner, memory_order_relaxed)) {
			out->hits += ld(&r->hits);
			out->misses += ld(&r->misses);
		}
	}
	uint32_t pid = atomic_load_explicit(&h->daemon_pid,
	                                    memory_order_relaxed);
	/* The pid is advisory: report it only while that process lives. */
	if (pid != 0 && !kv__os_pid_gone(pid))
		out->daemon_pid = pid;
	return KV_OK;
}

int kv_class_stats(kv_t *kv, uint32_t cls, struct kv_class_stats *out)
{
	if (kv == NULL || out == NULL || cls >= kv->nclasses)
		return KV_EINVAL;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	struct kv_class *c = kv__class(kv, cls);
	*out = (struct kv_class_stats){0};
	out->chunk_size = kv->class_size[cls];
	out->per_page = kv->class_per_page[cls];
	out->pages = ld(&c->pages);
	out->used = ld(&c->used);
	out->evictions = ld(&c->evictions);
	return KV_OK;
}
