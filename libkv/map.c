/*
 * map.c - store names, creating a store, attaching to one, detaching and
 * removing. Owns the rules that keep creation race-free:
 *
 *   - Exactly one creator wins: the backing object is created exclusively
 *     (os.h). Everyone else attaches to what the winner makes.
 *   - The creator reserves the whole size before mapping, so a full tmpfs
 *     or pagefile is an error here (KV_ENOSPC), never a fault in some
 *     client later.
 *   - The creator fills in every byte, initialises the mutex, and stores
 *     the magic last with release ordering. An attacher checks the object's
 *     size before mapping it, and waits (briefly, bounded) for the magic, so
 *     no client ever maps or reads a half-made store.
 *   - An attacher validates the header against what this build would have
 *     laid out and keeps a private copy of the geometry (see kv_internal.h).
 */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "kv_internal.h"
#include "os.h"

#define KV_READY_WAIT_MS 1000 /* how long an attacher waits for a creator */

int kv_name_check(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return KV_ENAME;
	if (strchr(name, '/') != NULL)
		return strlen(name) < KV_PATH_MAX - 1 ? KV_OK : KV_ENAME;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		          c == '-';
		if (!ok || n >= KV_MAX_NAME)
			return KV_ENAME;
	}
	return KV_OK;
}

static uint64_t load_magic(const void *base)
{
	return atomic_load_explicit((const _Atomic uint64_t *)base,
	                            memory_order_acquire);
}

static uint64_t magic_word(void)
{
	uint64_t w;
	memcpy(&w, KV_MAGIC, sizeof w);
	return w;
}

/* Attach a read-write handle to the store's writer lock, once. */
static int open_lock(struct kv *kv)
{
	if (kv->lock_open)
		return KV_OK;
	int rc = kv__os_lock_attach(kv);
	if (rc == KV_OK)
		kv->lock_open = true;
	return rc;
}

/* Check a header against the layout this build makes, and fill the
 * handle's private geometry from it. Only reads the mapping. The parts a
 * resize may change are read by kv__load_geometry (resize.c), which
 * tells a resize in progress from damage. */
static int adopt_geometry(struct kv *kv)
{
	const struct kv_hdr *h = kv__hdr(kv);

	if (h->format != KV_FORMAT_WORD)
		return KV_EVERSION;
	if (h->hdr_size != sizeof(struct kv_hdr) || h->max_key != KV_MAX_KEY)
		return KV_EVERSION;

	struct kv_geometry g;
	if (kv__classes(h->max_value, &g) != KV_OK)
		return KV_ECORRUPT;
	if (h->page_size != g.page_size || h->nclasses != g.nclasses ||
	    h->arena_off != KV_ARENA_OFF ||
	    (h->flags & ~KV_HF_NOEVICT) != 0)
		return KV_ECORRUPT;
	for (uint32_t c = 0; c < g.nclasses; c++)
		if (h->class_size[c] != g.class_size[c])
			return KV_ECORRUPT;

	kv->seed = h->seed;
	kv->arena_off = KV_ARENA_OFF;
	kv->page_size = g.page_size;
	kv->nclasses = g.nclasses;
	kv->max_key = KV_MAX_KEY;
	kv->max_value = h->max_value;
	kv->hflags = h->flags;
	for (uint32_t c = 0; c < g.nclasses; c++) {
		kv->class_size[c] = g.class_size[c];
		kv->class_per_page[c] = g.page_size / g.class_size[c];
	}
	/* A resizer killed between its commit and its last word leaves
	 * geometry that does not fit together; a writer finishes its
	 * resize (a reader waits for one, kv__load_geometry). */
	int rc;
	if (!kv->rdonly && kv__resize_in_flight(kv)) {
		rc = open_lock(kv);
		if (rc == KV_OK)
			rc = kv__finish_resize(kv);
		if (rc != KV_OK)
			return rc;
	}
	uint64_t gen;
	rc = kv__load_geometry(kv, &gen, &g);
	if (rc != KV_OK)
		return rc;
	return kv__adopt_ix(kv, gen, &g);
}

/* Attach to the object open in *o (the handle takes it over): wait for
 * the creator to size it and publish the magic, then map and validate. */
static int attach_obj(struct kv_os *o, const char *name, bool rdonly,
                      struct kv **out)
{
	int rc;
	struct kv *kv = calloc(1, sizeof *kv);
	if (kv == NULL) {
		kv__os_close(o);
		return KV_ENOMEM;
	}
	kv->os = *o;
	kv->rdonly = rdonly;
	kv__os_store_path(name, kv->path, sizeof kv->path);

	uint64_t deadline = kv__os_mono_ms() + KV_READY_WAIT_MS;
	uint64_t size = 0;
	for (;;) {
		rc = kv__os_size(&kv->os, &size);
		if (rc != KV_OK)
			goto fail;
		if (size >= sizeof(struct kv_hdr))
			break;
		if (kv__os_mono_ms() > deadline) {
			rc = size == 0 ? KV_ENOTREADY : KV_ETRUNCATED;
			goto fail;
		}
		kv__os_sleep_ms(1);
	}

	/* The header first: how much address space to reserve is in it. */
	void *m;
	rc = kv__os_map(&kv->os, sizeof(struct kv_hdr), rdonly, &m);
	if (rc != KV_OK)
		goto fail;
	uint64_t max_map = 0;
	for (;;) {
		uint64_t magic = load_magic(m);
		if (magic == magic_word()) {
			max_map = ((const struct kv_hdr *)m)->max_map;
			break;
		}
		if (magic != 0 || kv__os_mono_ms() > deadline) {
			kv__os_unmap(m, sizeof(struct kv_hdr));
			rc = magic != 0 ? KV_ENOTSTORE : KV_ENOTREADY;
			goto fail;
		}
		kv__os_sleep_ms(1);
	}
	kv__os_unmap(m, sizeof(struct kv_hdr));
	if (max_map > KV_MAX_MAP)
		max_map = KV_MAX_MAP;
	uint64_t reserved;
	rc = kv__os_map_reserved(&kv->os, size, max_map, rdonly, &m,
	                         &reserved);
	if (rc != KV_OK)
		goto fail;
	kv->base = m;
	kv->mapped = (size_t)size;
	kv->reserved = (size_t)reserved;
	kv->max_map = max_map;
	rc = adopt_geometry(kv);
	if (rc != KV_OK)
		goto fail;
	/* A store being destroyed is not attached to: its name is about to
	 * go (or its destroyer died first; kv_destroy again removes it). */
	if (kv__dead(kv)) {
		rc = KV_EDESTROYED;
		goto fail;
	}
	if (!rdonly) {
		rc = open_lock(kv);
		if (rc != KV_OK)
			goto fail;
		kv->txmap = calloc(KV_TXMAP_SIZE, sizeof *kv->txmap);
		if (kv->txmap == NULL) {
			rc = KV_ENOMEM;
			goto fail;
		}
	}
	kv__rstat_attach(kv);
	/* A read-only handle records its hits in the read hints; a
	 * read-write one clears them as it evicts (evict.c), and makes
	 * them if the store has none. */
	kv__os_hint_open(kv, !rdonly);
	*out = kv;
	return KV_OK;
fail:
	kv_close(kv);
	return rc;
}

int kv_open(const char *name, unsigned flags, kv_t **out)
{
	if (out == NULL || (flags & ~(KV_RDWR | KV_NOWARM)) != 0)
		return KV_EINVAL;
	*out = NULL;
	int rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	bool rdonly = (flags & KV_RDWR) == 0;
	struct kv_os o;
	rc = kv__os_open(name, rdonly, false, &o);
	if (rc != KV_OK)
		return rc;
	rc = attach_obj(&o, name, rdonly, out);
	if (rc == KV_OK && !(flags & KV_NOWARM))
		kv__warm_start(*out);
	return rc;
}

/* Lay out a fresh, zero-filled mapping. The magic goes in last. */
static int init_store(struct kv *kv, const struct kv_geometry *g,
                      uint32_t create_flags)
{
	uint8_t *base = kv->base;
	struct kv_hdr *h = (struct kv_hdr *)(void *)base;
	uint64_t seed;

	if (kv__os_random(&seed, sizeof seed) != KV_OK)
		return KV_ESYS;
	h->format = KV_FORMAT_WORD;
	h->hdr_size = sizeof *h;
	h->map_size = g->map_size;
	h->seed = seed;
	h->created_ms = kv__now_ms();
	h->index_off = g->index_off;
	h->nbuckets = g->nbuckets;
	h->ptab_off = g->ptab_off;
	h->arena_off = g->arena_off;
	h->npages = g->npages;
	h->page_size = g->page_size;
	h->nclasses = g->nclasses;
	h->max_key = KV_MAX_KEY;
	h->max_value = g->max_value;
	h->flags = (create_flags & KV_CREATE_NOEVICT) ? KV_HF_NOEVICT : 0;
	h->max_map = g->max_map;
	memcpy(h->class_size, g->class_size, sizeof h->class_size);

	struct kv_page *pt = (struct kv_page *)(void *)(base + g->ptab_off);
	for (uint64_t p = 0; p < g->npages; p++)
		atomic_store_explicit(&pt[p].cls, KV_PAGE_FREE,
		                      memory_order_relaxed);
	int rc = kv__os_lock_create(kv);
	if (rc != KV_OK)
		return rc;
	atomic_store_explicit((_Atomic uint64_t *)(void *)h, magic_word(),
	                      memory_order_release);
	return KV_OK;
}

int kv_create(const char *name, const struct kv_options *opts, kv_t **out)
{
	static const struct kv_options defaults;
	struct kv_geometry g;
	int rc;

	if (out == NULL)
		return KV_EINVAL;
	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	if ((opts->flags &
	     ~(KV_CREATE_EXCL | KV_CREATE_NOEVICT | KV_CREATE_GID |
	       KV_CREATE_HUGE)) != 0)
		return KV_EINVAL;
	uint32_t mode = opts->mode ? opts->mode : 0600;
	if ((mode & ~0777u) != 0 || (mode & 0002) != 0 ||
	    (mode & 0600) != 0600)
		return KV_EINVAL;
	uint64_t size = opts->size;
	if (opts->flags & KV_CREATE_HUGE) {
		/* Whole huge pages: a mapping's last partial one would be
		 * backed by small pages. */
		uint64_t hp = KV_HUGE_PAGE, sz = size ? size : KV_DEFAULT_SIZE;
		if (sz > UINT64_MAX - hp)
			return KV_ETOOBIG;
		size = (sz + hp - 1) / hp * hp;
	}
	rc = kv__geometry(size, opts->max_value, opts->max_items, &g);
	if (rc != KV_OK)
		return rc;
	if (opts->max_size > KV_MAX_MAP)
		return KV_ETOOBIG;
	g.max_map = opts->max_size != 0 ? opts->max_size
	                                : kv__default_max_map(g.map_size);
	g.max_map = g.max_map / KV_PAGE_ALIGN * KV_PAGE_ALIGN;
	if (g.max_map < g.map_size)
		g.max_map = g.map_size;

	struct kv_os_create c = {
		.size = g.map_size,
		.mode = mode,
		.set_gid = (opts->flags & KV_CREATE_GID) != 0,
		.gid = opts->gid,
		.huge = (opts->flags & KV_CREATE_HUGE) != 0,
	};
	uint64_t deadline = kv__os_mono_ms() + KV_READY_WAIT_MS;
	struct kv_os o;
	for (;;) {
		rc = kv__os_create(name, &c, &o);
		if (rc == KV_OK)
			break;
		if (rc != KV_ESTOREEXISTS)
			return rc;
		if (opts->flags & KV_CREATE_EXCL)
			return KV_ESTOREEXISTS;
		/* Someone else created it: adopt it, whatever its size, but
		 * only if it is ours. */
		rc = kv__os_open(name, false, true, &o);
		if (rc == KV_ENOSTORE)
			continue; /* gone meanwhile: create it */
		if (rc != KV_OK)
			return rc;
		rc = attach_obj(&o, name, false, out);
		/* A store being destroyed: its destroyer removes it in a
		 * moment, then the name is free for a new one. */
		if (rc != KV_EDESTROYED || kv__os_mono_ms() > deadline)
			return rc;
		kv__os_sleep_ms(5);
	}

	/* We are the creator. Anything failing from here removes the object,
	 * so a half-made store is never left behind. */
	struct kv maker = {.os = o, .size = g.map_size};
	void *base;
	rc = kv__os_map(&maker.os, g.map_size, false, &base);
	if (rc != KV_OK)
		goto fail;
	maker.base = base;
	rc = init_store(&maker, &g, opts->flags);
	/* The lock the maker made is kept by the handle (attach_obj opens it
	 * again); the named kind needs one holder meanwhile. */
	kv__os_unmap(base, g.map_size);
	if (rc != KV_OK)
		goto fail;
	rc = attach_obj(&maker.os, name, false, out);
	kv__os_lock_detach(&maker);
	return rc;
fail:
	kv__os_lock_detach(&maker);
	kv__os_remove(name);
	kv__os_close(&maker.os);
	return rc;
}

void kv_close(kv_t *kv)
{
	if (kv == NULL)
		return;
	kv__warm_stop(kv); /* before the mapping goes */
	if (kv->daemon)
		kv__daemon_release(kv);
	if (kv->rstat != NULL)
		kv__rstat_detach(kv);
	if (kv->lock_open)
		kv__os_lock_detach(kv);
	kv__os_hint_close(kv);
	kv__os_unmap(kv->base, kv->reserved);
	kv__os_close(&kv->os);
	free(kv->txmap);
	for (struct kv_ix *ix = atomic_load(&kv->ix), *next; ix; ix = next) {
		next = ix->older;
		free(ix);
	}
	free(kv);
}

/* Mark the store open in *o destroyed, if it is a kv store and we may
 * write it. Only its first page is mapped. */
static void mark_dead(struct kv_os *o)
{
	uint64_t size;
	void *m;
	if (kv__os_size(o, &size) != KV_OK || size < sizeof(struct kv_hdr) ||
	    kv__os_map(o, sizeof(struct kv_hdr), false, &m) != KV_OK)
		return;
	struct kv_hdr *h = m;
	if (load_magic(h) == magic_word() && h->format == KV_FORMAT_WORD)
		atomic_fetch_or_explicit(&h->life, KV_LIFE_DEAD,
		                         memory_order_release);
	kv__os_unmap(m, sizeof(struct kv_hdr));
}

void kv__mark_dead(kv_t *kv)
{
	if (!kv->rdonly)
		atomic_fetch_or_explicit(&kv__hdr(kv)->life, KV_LIFE_DEAD,
		                         memory_order_release);
}

int kv_destroy(const char *name)
{
	int rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	/* Mark first, remove second: a handle attached to the old store
	 * must learn of it before a new store can take the name. A store
	 * we cannot open for writing is still removed if the directory
	 * lets us (its handles then learn only from kvd, see kv__maintain). */
	struct kv_os o;
	rc = kv__os_open(name, false, false, &o);
	if (rc == KV_ENOSTORE)
		return rc;
	if (rc != KV_OK)
		return kv__os_remove(name); /* not ours to mark: remove it */
	mark_dead(&o);
	/* Remove the name only while it still names what we marked: two
	 * destroyers racing a new create must not remove the new store. */
	rc = kv__os_remove_same(name, &o);
	kv__os_close(&o);
	return rc;
}

int kv__daemon_claim(kv_t *kv, pid_t *other)
{
	struct kv_hdr *h = kv__hdr(kv);

	*other = 0;
	if (kv->rdonly)
		return KV_ERDONLY;
	int rc = kv__os_claim(&kv->os);
	if (rc == KV_ESERVED)
		*other = (pid_t)atomic_load(&h->daemon_pid);
	if (rc != KV_OK)
		return rc;
	atomic_store(&h->daemon_pid, kv__os_pid());
	atomic_store(&h->daemon_beat, kv__now_ms());
	kv->daemon = true;
	return KV_OK;
}

void kv__daemon_release(kv_t *kv)
{
	if (!kv->daemon)
		return;
	atomic_store(&kv__hdr(kv)->daemon_pid, 0);
	kv__os_unclaim(&kv->os);
	kv->daemon = false;
}

const char *kv__path(const kv_t *kv)
{
	return kv->path;
}

const char *kv__repair_note(const kv_t *kv)
{
	return kv->repair_note;
}

void kv__clear_repair_note(kv_t *kv)
{
	kv->repair_note[0] = '\0';
}

int kv__maintain(kv_t *kv)
{
	struct kv_hdr *h = kv__hdr(kv);

	if (kv__dead(kv))
		return KV_EDESTROYED;
	/* A store removed without kv destroy (rm) is dead all the same:
	 * say so in it, so that every handle still attached learns. */
	if (kv__os_removed(&kv->os)) {
		kv__mark_dead(kv);
		return KV_ENOSTORE;
	}
	atomic_store_explicit(&h->daemon_beat, kv__now_ms(),
	                      memory_order_relaxed);
	return kv__maintain_lock(kv);
}
