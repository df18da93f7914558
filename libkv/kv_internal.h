/*
 * kv_internal.h - the process-side handle and the calls between libkv's
 * files. Private; never installed.
 *
 * The handle keeps a private, validated copy of the store's geometry taken
 * at attach time. Nothing on a hot path re-reads geometry from the mapping:
 * those bytes are shared with every process that can write the store, so
 * they are input, not truth.
 */
#ifndef KV_INTERNAL_H
#define KV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "format.h"
#include "kv.h"
#include "os.h"

#define KV_PATH_MAX 4096

/* printf-style checking, for mingw's C99 stdio too. */
#ifdef __MINGW_PRINTF_FORMAT
#define KV_PRINTF(f, a) __attribute__((format(__MINGW_PRINTF_FORMAT, f, a)))
#else
#define KV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#endif

#define KV_TXMAP_SIZE 4096u /* > KV_LOG_MAX, a power of two */
struct kv_txmap {
	uint64_t off;
	uint32_t gen;
	uint32_t idx;
};

/* The part of the geometry a resize changes, as lock-free readers see it:
 * one immutable snapshot per generation, published through kv.ix and
 * kept until kv_close (a reader may still hold an older one). */
struct kv_ix {
	uint64_t gen;
	uint64_t map_size;
	uint64_t nbuckets;
	uint64_t index_off;
	uint64_t ptab_off;
	uint64_t npages;
	uint64_t arena_end;
	struct kv_ix *older;
};

struct kv {
	uint8_t *base;       /* the mapping; never moves (see reserved) */
	_Atomic size_t size; /* the store's map_size at generation gen */
	size_t mapped;       /* bytes of the object mapped at base */
	size_t reserved;     /* address space reserved at base (>= mapped) */
	uint64_t max_map;    /* the store's growth limit (header max_map) */
	struct kv_os os;     /* the backing object (os.h) */
	bool rdonly;         /* mapped read-only */
	bool daemon;         /* this handle holds kvd's claim */
	bool lock_open;      /* kv__os_lock_attach succeeded */

	/* Validated copy of the geometry. The fields a resize changes
	 * (size, nbuckets, index_off, ptab_off, npages, arena_end) are
	 * rewritten only by kv__sync_slow, which runs when the store's gen
	 * differs from this handle's: never while a thread of this handle
	 * holds the writer lock, as no resize can happen then. So code under
	 * the lock reads them freely; lock-free code reads ix instead. */
	_Atomic uint64_t gen;
	_Atomic(struct kv_ix *) ix;
	atomic_flag sync_busy; /* serialises kv__sync_slow */
	atomic_flag resize_busy; /* serialises kv_resize on this handle (the
	                          * resizers' lock is per descriptor) */
	uint64_t seed;
	/* Atomic only so that two handles of one process on one store (two
	 * mappings: a ThreadSanitizer cannot see that their locks are one)
	 * are not reported: loads of them are plain moves. */
	_Atomic uint64_t nbuckets;
	_Atomic uint64_t index_off;
	_Atomic uint64_t ptab_off;
	uint64_t arena_off;
	_Atomic uint64_t arena_end;  /* arena_off + npages * page_size */
	_Atomic uint64_t npages;
	uint32_t page_size;
	uint32_t nclasses;
	uint32_t max_key;
	uint32_t max_value;
	uint32_t hflags;
	uint32_t class_size[KV_MAX_CLASSES];
	uint32_t class_per_page[KV_MAX_CLASSES];

	/* Where the open transaction recorded each word: a hash index over
	 * the journal's entries, so reading a word "as the transaction will
	 * leave it" costs O(1) however long the transaction. Entries carry
	 * the transaction's generation, so beginning one clears nothing.
	 * Used only by the writer-lock holder. */
	struct kv_txmap *txmap;
	uint32_t txgen;

	/* Hit and miss counters: a line of the mapping (read-write
	 * handles), else these. */
	struct kv_rstat *rstat;
	_Atomic uint64_t local_hits;
	_Atomic uint64_t local_misses;

	/* What the last lock repair through this handle did, for kv check
	 * and kvd's log ("" when none). */
	char repair_note[256];
	/* kvd's view of a lock whose holder it cannot judge (lock.c). */
	uint32_t unsure_word;
	uint64_t unsure_since;

	char path[KV_PATH_MAX]; /* backing object, for messages */

	/* The background warm-up of this handle's page tables, or NULL
	 * (warm_posix.c). */
	struct kv_warm *warm;
	/* Bytes per page backing the mapping (kv_stats), 0 until asked. */
	_Atomic uint64_t mem_page;

	/* The read-hint bits (format.h struct kv_hint), or NULL; set at
	 * open, before the handle is shared, then fixed. */
	_Atomic uint64_t *hint;
	uint64_t hint_bits;
	void *hint_seg; /* the segment as attached */
};

/* The read hint of the chunk at off (format.h struct kv_hint): which
 * bit, and whether the handle has it. */
static inline bool kv__hint_bit(const struct kv *kv, uint64_t off,
                                _Atomic uint64_t **word, uint64_t *mask)
{
	uint64_t u = (off - kv->arena_off) / KV_CHUNK_UNIT;
	if (kv->hint == NULL || off < kv->arena_off || u >= kv->hint_bits)
		return false;
	*word = &kv->hint[u / 64];
	*mask = UINT64_C(1) << (u % 64);
	return true;
}

static inline void kv__hint_prefetch(const struct kv *kv, uint64_t off)
{
	_Atomic uint64_t *w;
	uint64_t m;
	if (kv__hint_bit(kv, off, &w, &m))
		__builtin_prefetch((const void *)w, 0, 3);
}

/* A read-only handle's hit: set the bit, only when clear, so a hot key
 * costs one shared write per eviction pass. */
static inline void kv__hint_set(const struct kv *kv, uint64_t off)
{
	_Atomic uint64_t *w;
	uint64_t m;
	if (kv__hint_bit(kv, off, &w, &m) &&
	    !(atomic_load_explicit(w, memory_order_relaxed) & m))
		atomic_fetch_or_explicit(w, m, memory_order_relaxed);
}

/* Eviction: was the item read through a read-only handle since the last
 * pass? Clears the bit. */
static inline bool kv__hint_take(const struct kv *kv, uint64_t off)
{
	_Atomic uint64_t *w;
	uint64_t m;
	return kv__hint_bit(kv, off, &w, &m) &&
	       (atomic_load_explicit(w, memory_order_relaxed) & m) &&
	       (atomic_fetch_and_explicit(w, ~m, memory_order_relaxed) & m);
}

/* KV_TSAN: a ThreadSanitizer build. Code that reads the mapping racily
 * by design (index.c, warm_posix.c) is then left uninstrumented. */
#if defined(__SANITIZE_THREAD__)
#define KV_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KV_TSAN 1
#endif
#endif

#define KV_DEFAULT_SIZE (UINT64_C(64) << 20) /* kv_options.size 0 */
#define KV_HUGE_PAGE (UINT64_C(2) << 20)     /* KV_CREATE_HUGE's pages */

/* Warming (warm_posix.c; no-ops on Windows): stores smaller than this
 * are not warmed. */
#define KV_WARM_MIN (32u * 1024u * 1024u)
void kv__warm_start(struct kv *kv);
void kv__warm_stop(struct kv *kv);
bool kv__warm_done(const struct kv *kv); /* finished, or never started */

/* resize.c: follow a resize made elsewhere. kv__sync is the fast check
 * made at the start of every call; kv__sync_slow maps the grown store and
 * adopts its new geometry. */
int kv__sync_slow(struct kv *kv);

/* Has the store been destroyed under this handle? One load of a line that
 * nothing else writes. */
static inline bool kv__dead(const struct kv *kv)
{
	const struct kv_hdr *h = (const struct kv_hdr *)(const void *)kv->base;
	return (atomic_load_explicit(&h->life, memory_order_acquire) &
	        KV_LIFE_DEAD) != 0;
}

static inline struct kv_hdr *kv__hdr(const struct kv *kv)
{
	return (struct kv_hdr *)(void *)kv->base;
}

static inline int kv__sync(struct kv *kv)
{
	const struct kv_hdr *h = (const struct kv_hdr *)(const void *)kv->base;
	if (atomic_load_explicit(&h->gen, memory_order_acquire) ==
	    atomic_load_explicit(&kv->gen, memory_order_relaxed))
		return KV_OK;
	return kv__sync_slow(kv);
}

static inline struct kv_class *kv__class(const struct kv *kv, uint32_t c)
{
	return (struct kv_class *)(void *)(kv->base + KV_CLASS_OFF) + c;
}

static inline struct kv_journal *kv__journal(const struct kv *kv)
{
	return (struct kv_journal *)(void *)(kv->base + KV_JOURNAL_OFF);
}

static inline struct kv_bucket *kv__bucket(const struct kv *kv, uint64_t b)
{
	return (struct kv_bucket *)(void *)(kv->base + kv->index_off) + b;
}

static inline struct kv_page *kv__page(const struct kv *kv, uint64_t p)
{
	return (struct kv_page *)(void *)(kv->base + kv->ptab_off) + p;
}

/* A key's home bucket: the hash's low 48 bits mapped onto [0, nbuckets)
 * by a multiply and shift (no power-of-two size needed, so the index can
 * be sized to its load); the top 16 bits are the tag, independent of it. */
static inline uint64_t kv__home(const struct kv *kv, uint64_t hash)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)(((u128)(hash << 16) * kv->nbuckets) >> 64);
}

/* The same three for a lock-free reader's snapshot. */
static inline struct kv_bucket *kv__ixbucket(const struct kv *kv,
                                             const struct kv_ix *ix,
                                             uint64_t b)
{
	return (struct kv_bucket *)(void *)(kv->base + ix->index_off) + b;
}

static inline uint64_t kv__ixhome(const struct kv_ix *ix, uint64_t hash)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)(((u128)(hash << 16) * ix->nbuckets) >> 64);
}

static inline uint64_t kv__ixbadd(const struct kv_ix *ix, uint64_t b,
                                  uint64_t d)
{
	b += d;
	if (b >= ix->nbuckets)
		b -= ix->nbuckets;
	return b < ix->nbuckets ? b : b % ix->nbuckets;
}

/* Bucket b + d, wrapping. */
static inline uint64_t kv__badd(const struct kv *kv, uint64_t b, uint64_t d)
{
	b += d;
	if (b >= kv->nbuckets)
		b -= kv->nbuckets;
	return b < kv->nbuckets ? b : b % kv->nbuckets;
}

/* Buckets from `from` forward to `to`, wrapping. */
static inline uint64_t kv__bdist(const struct kv *kv, uint64_t from,
                                 uint64_t to)
{
	return to >= from ? to - from : to + kv->nbuckets - from;
}

/* An item's expiry (0: none) and key bytes. Only for items already
 * validated, or under the lock. */
static inline uint64_t kv__item_expire(const struct kv_item *it)
{
	uint64_t e = 0;
	if (it->flags & KV_IF_TTL)
		memcpy(&e, it + 1, sizeof e);
	return e;
}

static inline uint32_t kv__item_cflags(const struct kv_item *it)
{
	uint32_t c = 0;
	if (it->flags & KV_IF_CFLAGS)
		memcpy(&c, (const uint8_t *)(it + 1) +
		               ((it->flags & KV_IF_TTL) ? KV_ITEM_TTL : 0),
		       sizeof c);
	return c;
}

static inline const uint8_t *kv__item_key(const struct kv_item *it)
{
	return (const uint8_t *)it + kv_item_hdr_len(it->flags);
}

/* The probe histogram's bin for a key dist buckets from home. */
static inline unsigned kv__probe_bin(uint64_t dist)
{
	unsigned b = 0;
	if (dist < 4)
		return (unsigned)dist;
	for (b = 4, dist >>= 3; dist && b < 7; dist >>= 1)
		b++;
	return b;
}

static inline uint64_t kv__off(const struct kv *kv, const void *p)
{
	return (uint64_t)((const uint8_t *)p - kv->base);
}

/* geometry.c: size classes and layout, shared by create and attach. */
struct kv_geometry {
	uint64_t map_size;
	uint64_t max_map;
	uint64_t nbuckets;
	uint64_t index_off;
	uint64_t ptab_off;
	uint64_t arena_off;
	uint64_t npages;
	uint32_t page_size;
	uint32_t nclasses;
	uint32_t max_value;
	uint32_t class_size[KV_MAX_CLASSES];
};
int kv__classes(uint32_t max_value, struct kv_geometry *g);
int kv__geometry(uint64_t map_size, uint32_t max_value, uint64_t max_items,
                 struct kv_geometry *g);
/* Lay out map_size bytes with nb buckets, for g's page size: as many
 * pages as fit beside the index and page table (KV_ETOOSMALL if fewer
 * than two). */
int kv__layout(uint64_t map_size, uint64_t nb, struct kv_geometry *g);
/* Bytes of the index and page table, padded to whole pages. */
uint64_t kv__tail_bytes(uint64_t nbuckets, uint64_t npages,
                        uint32_t page_size);
#define KV_MAX_MAP (UINT64_C(1) << KV_SLOT_OFF_BITS) /* 1 TiB */
/* The default growth limit (kv_options.max_size 0): sixteen times the
 * store, at least 16 GiB of address space, at most KV_MAX_MAP. */
uint64_t kv__default_max_map(uint64_t map_size);
/* resize.c: make g (validated) the handle's geometry for generation gen:
 * the private fields and a new lock-free snapshot. */
int kv__adopt_ix(struct kv *kv, uint64_t gen, const struct kv_geometry *g);
/* resize.c: read the resizable part of the geometry from the header (a
 * consistent generation of it, waiting out a resize being applied) and
 * validate it against the handle's fixed geometry and mapping. */
int kv__load_geometry(struct kv *kv, uint64_t *gen, struct kv_geometry *g);
uint32_t kv__class_for(const struct kv *kv, uint64_t bytes);

/* index.c: a key's hash (XXH3, seeded per store). */
uint64_t kv__hash(const struct kv *kv, const void *key, size_t klen);

/* geometry.c: the clock, ms since the epoch; tests may pin it. */
uint64_t kv__now_ms(void);
void kv__set_test_clock(uint64_t ms); /* 0 = the real clock again */

/* lock.c: the writer lock and the redo journal. */
enum kv_holder {
	KV_HOLDER_NONE,   /* free, or left by a holder the kernel saw die */
	KV_HOLDER_LIVE,   /* a live thread holds it (or we cannot judge) */
	KV_HOLDER_STALE,  /* no live thread holds it: break it */
	KV_HOLDER_UNSURE, /* a thread of a process that maps the store, but
	                   * not recorded as the holder */
};
/* kvd's tick: recover a dead holder, break a stale lock; never waits. */
int kv__maintain_lock(struct kv *kv);
/* lock_posix.c, lock_win32.c: describe the writer lock without changing
 * anything (a kv_holder). */
int kv__lock_state(struct kv *kv, char *why, size_t cap);
int kv__lock(struct kv *kv);
/* The same, giving up by deadline_ns (kv__os_mono_ns; 0: the usual
 * bound) if that comes first. */
int kv__lock_until(struct kv *kv, uint64_t deadline_ns);
void kv__unlock(struct kv *kv);
int kv__recover_locked(struct kv *kv);
/* A resize committed but not wholly applied (its writer died between its
 * commit and its last word) leaves header geometry that does not fit
 * together: finish it. kv__finish_resize_locked needs no geometry, so it
 * comes before anything that reads it; kv__finish_resize takes and gives
 * back the lock around it, for an attach that cannot read the geometry
 * yet. Both do nothing when no such resize is pending. */
bool kv__resize_in_flight(const struct kv *kv);
int kv__finish_resize_locked(struct kv *kv);
int kv__finish_resize(struct kv *kv);
void kv__tx_begin_locked(struct kv *kv, uint32_t op);
/* Drop a transaction that has recorded entries only: no chunk filled, no
 * bucket made odd. */
void kv__tx_abort_locked(struct kv *kv);
/* Record a chain entry (format.h, KV_LOG_CHAIN): cls and free_head of
 * count pages from page first along their links. */
void kv__tx_chain_locked(struct kv *kv, uint64_t first, uint64_t count,
                         uint32_t cls, uint64_t owner);
uint32_t kv__tx_room_locked(struct kv *kv); /* journal entries left */
void kv__tx_put64_locked(struct kv *kv, const void *addr, uint64_t val);
void kv__tx_put32_locked(struct kv *kv, const void *addr, uint32_t val);
/* An 8-byte word that may be only 4-aligned (an item's version): one
 * entry, or two 4-byte ones. */
void kv__tx_put64u_locked(struct kv *kv, const void *addr, uint64_t val);
void kv__tx_commit_locked(struct kv *kv);
void kv__tx_end_locked(struct kv *kv);
void kv__mark_odd_locked(struct kv *kv, uint64_t first, uint32_t count);
void kv__mark_even_locked(struct kv *kv);
#define KV_PATH_BUCKETS(kv)                                                    \
	((kv)->nbuckets < KV_MAX_PROBE + 1 ? (kv)->nbuckets : KV_MAX_PROBE + 1)

/* Numbered points inside a write where a crash test may kill us. */
void kv__crash_arm(int point); /* 0 disarms */
#ifdef KV_CRASHPOINTS
extern int kv__crash_armed;
void kv__crash_fire(int point);
#define KV_CRASHPOINT(n)                                                       \
	do {                                                                   \
		if (__builtin_expect(kv__crash_armed == (n), 0))               \
			kv__crash_fire(n);                                     \
	} while (0)
#else
#define KV_CRASHPOINT(n) ((void)0)
#endif

/* Read a word as the open transaction will leave it: the last value
 * recorded for it, else what the mapping holds. */
uint64_t kv__tx_get64_locked(struct kv *kv, const void *addr);
uint32_t kv__tx_get32_locked(struct kv *kv, const void *addr);

/* alloc.c: chunks inside the arena. kv__alloc_peek_locked picks the chunk the
 * next allocation of a class returns without changing anything;
 * kv__alloc_pend_locked protects it in the journal before the caller fills it;
 * kv__alloc_take_locked and kv__free_chunk_locked record their changes in the open
 * transaction. */
enum kv_alloc_src {
	KV_SRC_FREE,     /* a partial page's free list */
	KV_SRC_BUMP,     /* a partial page's never-used chunks */
	KV_SRC_FREEPAGE, /* a page off the free-page list */
	KV_SRC_NEWPAGE,  /* a never-used page */
};
struct kv_alloc {
	uint64_t chunk;
	uint64_t next;  /* KV_SRC_FREE: the chunk's free-list link */
	uint64_t page;
	uint32_t cls;
	enum kv_alloc_src src;
};
int kv__alloc_peek_locked(struct kv *kv, uint32_t cls, struct kv_alloc *a);
void kv__alloc_pend_locked(struct kv *kv, const struct kv_alloc *a);
void kv__alloc_take_locked(struct kv *kv, const struct kv_alloc *a);
void kv__free_chunk_locked(struct kv *kv, uint32_t cls, uint64_t chunk);
/* For a shrink (resize.c): a chunk of cls in a page below limit (a
 * partial page, else a free page, else a never-used one), or KV_EFULL.
 * A free page that is not the head of the free-page list has *pred set to
 * the one before it (index+1), and kv__alloc_promote_locked, in the open
 * transaction before kv__alloc_take_locked, moves it to the head. */
int kv__alloc_below_locked(struct kv *kv, uint32_t cls, uint64_t limit,
                           struct kv_alloc *a, uint64_t *pred);
void kv__alloc_promote_locked(struct kv *kv, const struct kv_alloc *a,
                              uint64_t pred);
int kv__chunk_check(const struct kv *kv, uint64_t off, uint32_t *cls);

/* index.c */
struct kv_found {
	uint64_t bucket;  /* where the key is, or the first free slot */
	uint32_t slot;
	uint32_t dist;    /* buckets from home to bucket */
	uint64_t item;    /* offset of the item, 0 if absent */
	uint32_t cls;     /* its size class */
	bool have_free;   /* item == 0: a free slot was found */
};
struct kv_read {
	void *buf;          /* in: where to copy the value */
	size_t cap;         /* in: bytes available there */
	uint64_t deadline;  /* in: kv__os_mono_ns() after which a busy
	                     * bucket is not waited for (0: the usual
	                     * bounds); for calls that do many lookups */
	size_t vlen;        /* out: value length */
	uint64_t expire_ms; /* out: 0 = never */
	uint64_t version;   /* out */
	uint32_t cflags;    /* out: client flags */
	uint64_t item;      /* out: offset of the item */
};
struct kv_backoff {
	uint32_t tries;
	uint64_t since;
	uint64_t deadline; /* 0, or stop waiting after this */
};
int kv__lookup(struct kv *kv, const void *key, size_t klen, uint64_t hash,
               bool locked, struct kv_read *r);
int kv__find_locked(struct kv *kv, uint64_t hash, const void *key,
                    size_t klen, struct kv_found *f);
void kv__link_locked(struct kv *kv, uint64_t hash, const struct kv_found *f,
              uint64_t item);
void kv__replace_locked(struct kv *kv, uint64_t hash, const struct kv_found *f,
                 uint64_t item);
/* Unlink the key at f; with shift, move later keys back into the hole
 * (index.c), else leave the hole where it is. */
uint64_t kv__unlink_locked(struct kv *kv, const struct kv_found *f,
                           bool shift);
uint64_t kv__found_home(const struct kv *kv, const struct kv_found *f);
int kv__item_check(const struct kv *kv, uint64_t off, uint32_t *cls);
void kv__prefetch_bucket(const struct kv *kv, uint64_t hash);
/* Lock held: make buckets [first, first + count) even (wrapping). Under
 * the lock no write is in progress, so a bucket still odd was left so by
 * a dead writer or by damage; lock-free readers of it stop waiting. */
void kv__make_even_locked(struct kv *kv, uint64_t first, uint64_t count);

/* scan.c: a growable buffer of keys, each stored as a size_t length then
 * bytes; index.c fills it with the keys whose home is one bucket. */
struct kv_keybuf {
	uint8_t *buf;
	size_t used, cap;
	size_t nkeys;
};
int kv__keybuf_add(struct kv_keybuf *kb, const void *key, size_t klen);
/* kv_scan's cursor is a 48-bit hash prefix, not a bucket number, so it
 * keeps its meaning when a resize changes the bucket count: the keys
 * whose hash prefix is at least *cursor are those of its home bucket and
 * after (kv__ixhome is monotonic in the prefix). Collects the keys of
 * the cursor's home bucket and moves *cursor to the next bucket's first
 * prefix (0 after the last). deadline: kv__os_mono_ns() after which a
 * busy bucket is not waited for (0: the usual bounds). */
#define KV_CURSOR_END (UINT64_C(1) << 48)
int kv__collect_home(struct kv *kv, uint64_t *cursor, struct kv_keybuf *kb,
                     uint64_t deadline);
/* The cursor's home bucket in the handle's geometry (lock held). */
uint64_t kv__cursor_home(const struct kv *kv, uint64_t cursor);
void kv__prefetch_item(const struct kv *kv, uint64_t hash);

/* write.c: remove a found key in one committed transaction; add to a
 * counter in the open transaction; account for an item removed or
 * replaced (its chunk freed). */
enum kv_why { KV_WHY_DELETED, KV_WHY_EXPIRED, KV_WHY_EVICTED };
enum { KV_TX_PUT = 1, KV_TX_DEL = 2, KV_TX_RESIZE = 3 }; /* kv_journal.op */
/* keep_hole: leave the freed slot empty where it is (for a put that
 * evicted to have a slot near its key's home), rather than shift later
 * keys back into it. */
void kv__remove_locked(struct kv *kv, const struct kv_found *f,
                       enum kv_why why, bool keep_hole);
void kv__add64_locked(struct kv *kv, _Atomic uint64_t *field, int64_t delta);
void kv__account_removed_locked(struct kv *kv, const struct kv_found *f,
                                bool was_expired);

/* api.c: the body of a put, lock held. */
struct kv_put_meta {
	uint64_t expire;  /* ms since the epoch, 0 = never */
	uint32_t cflags;  /* client flags */
	uint32_t flags;   /* KV_PUT_NX, KV_PUT_XX or KV_PUT_CAS */
	uint64_t cas;     /* with KV_PUT_CAS */
	uint64_t version; /* the item's version: 0 = the next one (a put);
	                   * kv_touch keeps the old one */
};
int kv__put_locked(struct kv *kv, uint64_t h, const void *key, size_t klen,
                   const void *val, size_t vlen,
                   const struct kv_put_meta *m);

/* stats.c: reader-side counters. */
void kv__count_get(struct kv *kv, bool hit);
void kv__rstat_attach(struct kv *kv);
void kv__rstat_detach(struct kv *kv);
void kv__rstat_reset(struct kv *kv);

/* evict.c: make room. Lock held, no transaction open. */
/* evict.c: empty the next page the page hand finds that cls does not
 * own (KV_MAX_CLASSES: any), evicting every item on it; *taken receives
 * its number. */
int kv__take_page_locked(struct kv *kv, uint32_t cls, uint64_t *taken);

/* large.c: items larger than a chunk (format.h, struct kv_large).
 * kv__large_room_locked makes the free-page list hold the pages a large
 * item laid out as s, its chunk of class head_cls, needs (evicting whole
 * pages if may_evict), else KV_EFULL; in the put's transaction, after its chunk is taken,
 * kv__large_take_locked takes its pages and pieces for the item at owner
 * and fills *lg, and kv__large_fill writes the pieces' headers (naming
 * owner) and the value's bytes into them and returns where the rest
 * begins. kv__large_of checks a large item's
 * pages and pieces (li->s.large false for an item that is not large);
 * kv__free_item_locked frees an item's chunk, pages and pieces.
 * kv__large_copy copies a large value without the lock: false if what it
 * read cannot be the item's (the caller checks the bucket's sequence, as
 * for any read). */
struct kv_large_info {
	struct kv_split s;
	uint64_t first;               /* first page (index+1), 0 = none */
	uint64_t last;                /* last page */
	uint64_t piece[KV_MAX_PIECES];
	uint32_t piece_cls[KV_MAX_PIECES];
};
int kv__large_room_locked(struct kv *kv, const struct kv_split *s,
                          uint32_t head_cls, bool may_evict);
int kv__large_take_locked(struct kv *kv, const struct kv_split *s,
                          uint64_t owner, struct kv_large *lg);
const uint8_t *kv__large_fill(struct kv *kv, const struct kv_split *s,
                              const struct kv_large *lg, uint64_t owner,
                              const uint8_t *val);
int kv__large_of(struct kv *kv, uint64_t item, struct kv_large_info *li);
uint32_t kv__piece_class(const struct kv *kv, const struct kv_split *s,
                         uint64_t i);
void kv__free_item_locked(struct kv *kv, uint32_t cls, uint64_t item);
bool kv__large_copy(struct kv *kv, const struct kv_ix *ix, uint64_t item,
                    const uint8_t *meta, const uint8_t *rest,
                    const struct kv_split *s, void *buf);
/* Copy the value of the item at off (lock held: trusted, checked). */
int kv__value_locked(struct kv *kv, uint64_t off, void *buf);
int kv__make_room_locked(struct kv *kv, uint32_t cls);
/* Once its index holds KV_EVICT_LOAD percent of its slots, a store that
 * evicts places a new key within KV_EVICT_REACH buckets of its home, and
 * evicts one of their keys when they are full (evict.c): below that load
 * keys take the first free slot, however far. */
#define KV_EVICT_REACH 16u
#define KV_EVICT_LOAD 90u
int kv__evict_on_path_locked(struct kv *kv, uint64_t hash);
int kv__find_chunk_locked(struct kv *kv, uint64_t chunk, struct kv_found *f);

#endif /* KV_INTERNAL_H */
