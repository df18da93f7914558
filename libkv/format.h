/*
 * format.h - the bytes of a kv store. Private to libkv and kvd; never
 * installed. Treat this file as a file-format specification: every struct
 * here lives in shared memory, is pinned with static_assert, and refers to
 * other parts of the mapping by byte offset from the start of the mapping,
 * never by pointer (each process maps the store at its own address).
 *
 * Layout of a mapping of map_size bytes:
 *
 *   0x0000  +---------------------------------------------+
 *           | struct kv_hdr           (4 KiB)             |  geometry, seed,
 *           |   0x000 magic "KVSTORE\0" (written last)    |  robust mutex,
 *           |   0x008 format word                         |  counters
 *           |   0x068 life: set when destroyed            |
 *           |   0x070 gen: bumped by each resize          |
 *           |   0x080 robust process-shared mutex (64 B)  |
 *           |   0x0c0 kvd, lock record, boot, repair word |
 *   0x1000  +---------------------------------------------+
 *           | struct kv_class[128]    (8 KiB)             |  allocator state
 *   0x3000  +---------------------------------------------+
 *           | struct kv_journal       (20 KiB)            |  redo log of the
 *           |                                             |  write in flight
 *   0x8000  +---------------------------------------------+
 *           | struct kv_rstat[512]    (32 KiB)            |  readers' hit and
 *           |                                             |  miss counters
 *  0x10000  +---------------------------------------------+  = arena_off
 *           | page 0 | page 1 | ... | page npages-1       |  items
 *           +---------------------------------------------+  = index_off
 *           | struct kv_bucket[nbuckets]  (64 B each)     |  the hash index
 *           +---------------------------------------------+  = ptab_off
 *           | struct kv_page[npages]      (32 B each)     |  page -> class
 *           +--- padded to a whole number of pages -------+  <= map_size
 *
 * The index and page table come after the arena, and together fill whole
 * pages, so that growing the store (resize.c) can build a bigger index and
 * page table past the old end of the mapping and then hand the old ones'
 * bytes to the arena as ordinary pages: the arena stays one run of pages.
 *
 * Who guards what
 *   - Geometry (magic .. class sizes) is written by the creator before
 *     the magic is published. Most of it never changes; map_size,
 *     index_off, nbuckets, ptab_off and npages change only when the store
 *     is resized, under the lock and through the journal, with gen
 *     bumped last (resize.c). Read it at attach time and whenever gen
 *     moves, validate it, and keep a private copy.
 *   - Everything else is guarded by the writer lock (os.h) and changed
 *     only through the redo journal (see lock.c), except bucket sequence
 *     counters, which writers bump around each change so lock-free readers
 *     can validate what they read (see index.c), and the fields of the
 *     header's 0x0c0 line and the life word, whose comments say who
 *     writes them.
 *
 * All multi-byte fields are little-endian host order; the format word and
 * magic make a store from a foreign build fail with KV_EVERSION rather than
 * be misread.
 */
#ifndef KV_FORMAT_H
#define KV_FORMAT_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h" /* KV_OS_LOCK_KIND */

/* Bump whenever any byte of the layout or any protocol on it changes. */
#define KV_FORMAT_VERSION 6u
/* Changes:
 *   1  first format.
 *   2  the store's life word (destroyed stores), the lock record, the
 *      boot tag and the repair word (stale locks); see struct kv_hdr.
 *   3  items may carry 32 bits of client flags (KV_IF_CFLAGS).
 *   4  the index and page table follow the arena; gen and max_map in the
 *      header; stores grow online (resize.c).
 *   5  pages are KV_PAGE_SIZE whatever the largest value, classes end at
 *      an eighth of a page; a larger item keeps its value in pages of its
 *      own and pieces (KV_IF_LARGE, KV_PAGE_LARGE, KV_IF_PIECE); journal
 *      chain entries.
 *   6  chunks are 4-aligned and the smallest class is 20 bytes (was 8
 *      and 32), so the smallest items waste at most 15 %; an item's
 *      version is two 32-bit halves, a free chunk's link is the 8-aligned
 *      word at 8 or 12 (kv_free_link), per-chunk bits are per
 *      KV_CHUNK_UNIT. */

/* The format word folds the layout version with the ABI facts the layout
 * depends on, so a store made by a build with another writer lock (a
 * pthread mutex of another size, or a Windows named mutex) or cache line
 * size is refused instead of misread. */
#define KV_CACHELINE 64u
#define KV_FORMAT_WORD                                                          \
	((KV_FORMAT_VERSION << 24) | ((uint32_t)KV_OS_LOCK_KIND << 8) |        \
	 KV_CACHELINE)

#define KV_MAGIC "KVSTORE"  /* 8 bytes with its NUL */
#define KV_MAX_CLASSES 128u
#define KV_SLOTS 7u          /* slots per bucket */
#define KV_MAX_PROBE 128u    /* buckets a key may sit from its home bucket */
#define KV_LOG_MAX 1248u     /* redo journal entries */
#define KV_MIN_CHUNK 20u     /* smallest size class */
#define KV_CHUNK_ALIGN 4u    /* every chunk size is a multiple of this */
/* Per-chunk bitmaps (read hints, kv check) give a bit to each
 * KV_CHUNK_UNIT bytes of the arena: no two chunks start in one unit, as
 * they start at least KV_MIN_CHUNK bytes apart. */
#define KV_CHUNK_UNIT 16u
#define KV_PAGE_ALIGN KV_SIZE_ALIGN /* kv.h: sizes round down to it */
#define KV_PAGE_SIZE (64u * 1024u) /* every store's allocator page */

#define KV_HDR_OFF 0x0000u
#define KV_CLASS_OFF 0x1000u
#define KV_JOURNAL_OFF 0x3000u
#define KV_RSTAT_OFF 0x8000u
#define KV_RSTAT_SLOTS 512u
#define KV_ARENA_OFF 0x10000u

/* ------------------------------------------------------------------------
 * Header. 4 KiB at offset 0.
 */
struct kv_hdr {
	/* Geometry: written once before the magic, then read-only. */
	char magic[8];          /* 0x000 KV_MAGIC, stored last at creation */
	uint32_t format;        /* 0x008 KV_FORMAT_WORD */
	uint32_t hdr_size;      /* 0x00c sizeof(struct kv_hdr) */
	uint64_t map_size;      /* 0x010 bytes of the whole mapping */
	uint64_t seed;          /* 0x018 XXH3 seed, random per store */
	uint64_t created_ms;    /* 0x020 creation time, ms since the epoch */
	/* map_size, index_off, nbuckets, ptab_off and npages change when
	 * the store is resized: through the journal, under the lock, before
	 * gen. */
	uint64_t index_off;     /* 0x028 offset of bucket 0 */
	uint64_t nbuckets;      /* 0x030 at least 64 */
	uint64_t ptab_off;      /* 0x038 offset of the page table */
	uint64_t arena_off;     /* 0x040 offset of page 0: KV_ARENA_OFF */
	uint64_t npages;        /* 0x048 pages in the arena */
	uint32_t page_size;     /* 0x050 bytes per page, multiple of 4 KiB */
	uint32_t nclasses;      /* 0x054 size classes in use */
	uint32_t max_key;       /* 0x058 longest key accepted */
	uint32_t max_value;     /* 0x05c longest value accepted */
	uint32_t flags;         /* 0x060 KV_HF_... */
	uint32_t reserved0;     /* 0x064 zero */
	/* 0x068: the store's life. KV_LIFE_DEAD is set (once, never
	 * cleared) by kv_destroy before it unlinks the store, and by kvd when
	 * it finds the store unlinked: every attached handle checks it at
	 * each call, so nobody goes on reading or writing a store that a new
	 * one of the same name has replaced. The low bits are kept zero.
	 * It shares the geometry's line, which nothing else writes, so the
	 * check costs readers no cache miss. */
	_Atomic uint64_t life;  /* 0x068 */
	/* 0x070: the geometry's generation, bumped (last, through the
	 * journal) by each resize. Every handle compares it with the one its
	 * private geometry belongs to at each call, and a lock-free read
	 * checks it again after its copy, so nobody acts on an index that a
	 * resize has retired (resize.c). Same line as life: no extra miss. */
	_Atomic uint64_t gen;   /* 0x070 */
	/* 0x078: how large the store may grow, set at creation: every
	 * attacher reserves this much address space, so that growing never
	 * moves a mapping other threads are reading. */
	uint64_t max_map;       /* 0x078 */

	/* 0x080: the platform's writer lock, alone in its cache line (os.h):
	 * a glibc robust mutex on Linux (lock_posix.c); unused on Windows,
	 * whose lock is the named mutex Local\kv.NAME:lock. */
	alignas(64) union {
		unsigned char lock[64];
		KV_OS_HDR_LOCK /* the platform's view of those bytes */
	};

	/* 0x0c0: who is alive. daemon_pid and daemon_beat: the serving
	 * daemon, written by kvd without the mutex (it holds an flock
	 * instead); read by anyone, advisory only.
	 * owner_*: the lock record, written by each holder of the mutex
	 * right after taking it (lock.c): the thread, its start time and its
	 * pid namespace, so a waiter can tell a live holder from a dead one
	 * whose id was reused. boot_tag: the boot the lock belongs to,
	 * checked at every read-write attach; a store that outlived a
	 * reboot has its lock reset (lock.c). repair: the repair word, a
	 * small lock of its own (tid << 32 | low bits of its start time)
	 * that serialises resetting the mutex; lock_repairs counts stale
	 * locks broken and mutexes reset. attach_pidns and ns_mixed: whether
	 * writers from more than one pid namespace use the store, in which
	 * case thread ids cannot be judged (lock_posix.c). resizing: advisory,
	 * set and cleared by a resizer while it holds the mutex, cleared by
	 * the next holder if it died. */
	_Atomic uint32_t daemon_pid;  /* 0x0c0 0 when no kvd serves */
	_Atomic uint32_t owner_tid;   /* 0x0c4 last holder's thread id */
	_Atomic uint64_t daemon_beat; /* 0x0c8 ms of kvd's last tick */
	_Atomic uint64_t owner_start; /* 0x0d0 its start, clock ticks */
	_Atomic uint32_t owner_pidns; /* 0x0d8 its pid namespace (inode) */
	_Atomic uint32_t attach_pidns;/* 0x0dc first read-write attacher's */
	_Atomic uint64_t boot_tag;    /* 0x0e0 boot id the lock belongs to */
	_Atomic uint64_t repair;      /* 0x0e8 0, or the repairer */
	_Atomic uint64_t lock_repairs;/* 0x0f0 */
	_Atomic uint32_t ns_mixed;    /* 0x0f8 1 once writers of two pid
	                               *       namespaces have attached */
	_Atomic uint32_t resizing;    /* 0x0fc pid of a writer rebuilding
	                               *       the index under the lock
	                               *       (resize.c), else 0: waiters
	                               *       for the lock wait longer,
	                               *       while resize_beat moves */

	/* 0x100: writer state, guarded by the mutex and changed only through
	 * the journal. Readers may load these racily for statistics. */
	_Atomic uint64_t page_bump;   /* 0x100 pages ever handed to a class */
	_Atomic uint64_t items;       /* 0x108 keys in the index */
	_Atomic uint64_t key_bytes;   /* 0x110 sum of their key lengths */
	_Atomic uint64_t value_bytes; /* 0x118 sum of their value lengths */
	_Atomic uint64_t puts;        /* 0x120 */
	_Atomic uint64_t deletes;     /* 0x128 */
	_Atomic uint64_t expired;     /* 0x130 expired items reclaimed */
	_Atomic uint64_t recoveries;  /* 0x138 dead-writer recoveries */
	_Atomic uint64_t version;     /* 0x140 last version handed to a put */
	_Atomic uint64_t max_probe;   /* 0x148 longest probe ever placed */
	_Atomic uint64_t data_used;   /* 0x150 bytes of chunks in use */
	_Atomic uint64_t free_pages;  /* 0x158 first page (index+1) of the
	                               *       free-page list, 0 = none */
	_Atomic uint64_t evictions;   /* 0x160 items evicted for room */
	_Atomic uint64_t page_moves;  /* 0x168 pages taken from a class */
	_Atomic uint64_t page_hand;   /* 0x170 CLOCK hand over pages */
	_Atomic uint64_t sweep_hand;  /* 0x178 expiry sweep's next bucket */
	_Atomic uint64_t sweeps;      /* 0x180 sweep steps run */
	_Atomic uint64_t sweep_ns;    /* 0x188 time spent in them */
	/* 0x190: counts of reader slots given up (see kv_rstat); atomic adds,
	 * no lock. */
	_Atomic uint64_t retired_hits;   /* 0x190 */
	_Atomic uint64_t retired_misses; /* 0x198 */
	/* 0x1a0: keys by distance from home: 0, 1, 2, 3, 4-7, 8-15, 16-31,
	 * 32+. Guarded by the mutex, changed through the journal. */
	_Atomic uint64_t probe_hist[8];  /* 0x1a0 */
	/* 0x1e0: the read-hint segment (struct kv_hint), as its System V
	 * shared-memory id + 1, 0 for none: set by compare-and-swap, without
	 * the mutex, by the creator or kvd (hint_posix.c). Untrusted like
	 * every byte: a segment is used only if it checks out. */
	_Atomic uint64_t hint_id;        /* 0x1e0 */
	/* 0x1e8: while resizing is set, the resizer's monotonic clock (ms)
	 * at its latest progress; a waiter for the lock waits on for a
	 * resizer only while this moves (lock.c). Advisory, no lock. */
	_Atomic uint64_t resize_beat;    /* 0x1e8 */
	uint64_t reserved3[2];           /* 0x1f0 */

	/* 0x200: chunk size of each class, ascending; immutable. */
	uint32_t class_size[KV_MAX_CLASSES]; /* 0x200 */

	char reserved4[4096 - 0x400];        /* 0x400 zero */
};

#define KV_HF_NOEVICT 0x1u /* store full is an error, never an eviction */
#define KV_LIFE_DEAD (UINT64_C(1) << 63) /* destroyed: detach */

static_assert(sizeof(struct kv_hdr) == 4096, "kv_hdr is one page");
static_assert(offsetof(struct kv_hdr, format) == 0x008, "layout");
static_assert(offsetof(struct kv_hdr, seed) == 0x018, "layout");
static_assert(offsetof(struct kv_hdr, arena_off) == 0x040, "layout");
static_assert(offsetof(struct kv_hdr, page_size) == 0x050, "layout");
static_assert(offsetof(struct kv_hdr, flags) == 0x060, "layout");
static_assert(offsetof(struct kv_hdr, lock) == 0x080, "layout");
static_assert(offsetof(struct kv_hdr, life) == 0x068, "layout");
static_assert(offsetof(struct kv_hdr, gen) == 0x070, "layout");
static_assert(offsetof(struct kv_hdr, max_map) == 0x078, "layout");
static_assert(offsetof(struct kv_hdr, daemon_pid) == 0x0c0, "layout");
static_assert(offsetof(struct kv_hdr, owner_tid) == 0x0c4, "layout");
static_assert(offsetof(struct kv_hdr, owner_start) == 0x0d0, "layout");
static_assert(offsetof(struct kv_hdr, boot_tag) == 0x0e0, "layout");
static_assert(offsetof(struct kv_hdr, repair) == 0x0e8, "layout");
static_assert(offsetof(struct kv_hdr, lock_repairs) == 0x0f0, "layout");
static_assert(offsetof(struct kv_hdr, page_bump) == 0x100, "layout");
static_assert(offsetof(struct kv_hdr, data_used) == 0x150, "layout");
static_assert(offsetof(struct kv_hdr, sweep_ns) == 0x188, "layout");
static_assert(offsetof(struct kv_hdr, probe_hist) == 0x1a0, "layout");
static_assert(offsetof(struct kv_hdr, hint_id) == 0x1e0, "layout");
static_assert(offsetof(struct kv_hdr, resize_beat) == 0x1e8, "layout");
static_assert(offsetof(struct kv_hdr, class_size) == 0x200, "layout");

/* ------------------------------------------------------------------------
 * Size classes and pages. Guarded by the mutex, changed only through the
 * journal.
 *
 * The arena is an array of equal pages. A page is free (on the free-page
 * list, or above page_bump: never used) or belongs to one class and is cut
 * into chunks of that class's size. Chunks [0, bump) of a page have been
 * handed out at least once: each is live (its item's klen is not 0) or
 * free (klen 0, on the page's own free list, linked through the 8 bytes
 * at kv_free_link: offset 8 or 12). Chunks [bump, per_page) were never used.
 *
 * A class keeps a doubly linked list of its partial pages: those with a
 * free or never-used chunk. A chunk comes from the first partial page, else
 * the class takes a free page. A page whose last chunk is freed goes back
 * to the free-page list, where any class can take it: memory is never
 * locked into the class that first used it.
 */
struct kv_class {
	_Atomic uint64_t partial;   /* 0x00 first partial page (index+1) */
	_Atomic uint64_t used;      /* 0x08 chunks holding an item */
	_Atomic uint64_t pages;     /* 0x10 pages owned */
	_Atomic uint64_t evictions; /* 0x18 items evicted from this class */
	_Atomic uint64_t hand;      /* 0x20 CLOCK hand: page index */
	_Atomic uint64_t hand_chunk;/* 0x28 and chunk within it */
	_Atomic uint64_t since_move;/* 0x30 evictions since it last gained a
	                             *      page from another class */
	uint64_t reserved;          /* 0x38 */
};

static_assert(sizeof(struct kv_class) == 64, "kv_class is a cache line");
static_assert(offsetof(struct kv_class, since_move) == 0x30, "layout");
static_assert(KV_CLASS_OFF + KV_MAX_CLASSES * sizeof(struct kv_class) ==
                  KV_JOURNAL_OFF,
              "classes end where the journal starts");

/* Page table entry, one per arena page. */
struct kv_page {
	_Atomic uint32_t cls;       /* 0x00 owning class, or KV_PAGE_FREE */
	_Atomic uint32_t used;      /* 0x04 live chunks */
	_Atomic uint32_t bump;      /* 0x08 chunks ever handed out */
	_Atomic uint32_t next;      /* 0x0c next page (index+1) on its list */
	_Atomic uint64_t free_head; /* 0x10 first free chunk, 0 = none */
	_Atomic uint32_t prev;      /* 0x18 previous partial page (index+1) */
	_Atomic uint32_t partial;   /* 0x1c 1 while on its class's list */
};

#define KV_PAGE_FREE 0xffffffffu
/* A page holding part of one large item's value (see struct kv_large):
 * next links the item's pages in value order (0 on its last), free_head
 * holds the offset of the item's chunk, used, bump, prev and partial are
 * 0. */
#define KV_PAGE_LARGE 0xfffffffeu

static_assert(sizeof(struct kv_page) == 32, "kv_page");
static_assert(offsetof(struct kv_page, free_head) == 0x10, "layout");

/* ------------------------------------------------------------------------
 * Redo journal. See lock.c for the protocol; in short, a writer records
 * every word it will change as (offset, new value), then sets state to
 * COMMIT, then applies the words. A writer that dies before COMMIT changed
 * nothing a reader can see; one that dies after it is finished by the next
 * lock holder, who applies the same words again (they are absolute values,
 * so applying twice is the same as once).
 */
struct kv_logent {
	uint64_t off; /* byte offset; KV_LOG_W32 set for a 4-byte word */
	uint64_t val;
};

#define KV_LOG_W32 (UINT64_C(1) << 63)
/* A chain entry: two entries that set, for each of `count` pages
 * following the page table's next links from page `first`, cls and
 * free_head (the owner word of a KV_PAGE_LARGE page). So giving a large
 * item its pages, or taking them back, costs two entries however many
 * pages it has. Applying it twice is applying it once: the links it
 * follows are ones no entry of the same transaction changes before the
 * last of the count pages.
 *   ent[i]   .off = KV_LOG_CHAIN | first, .val = count
 *   ent[i+1] .off = cls,                  .val = free_head */
#define KV_LOG_CHAIN (UINT64_C(1) << 62)

enum kv_jstate {
	KV_J_IDLE = 0,   /* nothing in flight */
	KV_J_BUILD = 1,  /* entries being recorded; none applied */
	KV_J_COMMIT = 2, /* entries complete; being applied */
};

struct kv_journal {
	_Atomic uint32_t state;   /* 0x00 enum kv_jstate */
	uint32_t n;               /* 0x04 entries recorded */
	uint64_t odd_first;       /* 0x08 first bucket whose seq we made odd */
	uint32_t odd_count;       /* 0x10 buckets from odd_first (wrapping) */
	uint32_t op;              /* 0x14 what the writer was doing, for logs */
	/* A chunk taken from a free list is overwritten by the new item
	 * before COMMIT; if the writer dies first, its link is restored. */
	uint64_t pend_chunk;      /* 0x18 chunk being filled, 0 = none */
	uint64_t pend_next;       /* 0x20 its free-list link before filling */
	uint64_t reserved[3];     /* 0x28 */
	struct kv_logent ent[KV_LOG_MAX]; /* 0x40 */
};

static_assert(offsetof(struct kv_journal, ent) == 0x40, "layout");
static_assert(KV_JOURNAL_OFF + sizeof(struct kv_journal) <= KV_RSTAT_OFF,
              "journal fits before the reader counters");

/* ------------------------------------------------------------------------
 * Reader counters: one cache line per attached read-write handle, so
 * counting a get writes only a line no other process touches. A handle
 * claims a free line (owner 0) at attach by compare-and-swap of its pid,
 * adds its counts into the header's retired_* at detach and frees the
 * line. A line whose owner died is claimed the same way by the next
 * attacher, which first adds its counts to retired_*. Read-only handles
 * cannot write the mapping and keep their counts in process memory.
 */
struct kv_rstat {
	_Atomic uint32_t owner;  /* 0x00 pid, 0 = free */
	uint32_t reserved0;      /* 0x04 */
	_Atomic uint64_t hits;   /* 0x08 */
	_Atomic uint64_t misses; /* 0x10 */
	uint64_t reserved[5];    /* 0x18 */
};

static_assert(sizeof(struct kv_rstat) == KV_CACHELINE, "one line each");
static_assert(KV_RSTAT_OFF + KV_RSTAT_SLOTS * sizeof(struct kv_rstat) ==
                  KV_ARENA_OFF,
              "reader counters end where the arena starts");

/* ------------------------------------------------------------------------
 * Index bucket: one cache line. A slot is 0 when empty, else
 *   bits 63..48  tag: the top 16 bits of the key's hash
 *   bits 47..40  dist: buckets from the key's home bucket to this one
 *   bits 39..2   offset of the item in the mapping (maps are < 1 TiB;
 *                items are 4-aligned, so the low 2 bits are free)
 *   bit  1       ttl: the item has an expiry (so the sweep reads only
 *                items that can expire)
 *   bit  0       ref: the CLOCK reference bit. Readers set it, with a
 *                compare-and-swap and only when it is clear, on a hit;
 *                eviction clears it and evicts items found clear.
 *
 * overflow counts the keys whose home bucket lies before this bucket in
 * probe order and that sit after it: a lookup may stop at the first bucket
 * that has no match and overflow 0. The counts are exact (decremented again
 * on delete), so deletion leaves no tombstones; and a delete moves a
 * displaced key back into the hole it leaves (dist says which keys may
 * move without hashing them again), so lookups never slow down with churn.
 * seq is odd while a writer changes the bucket.
 */
struct kv_bucket {
	_Atomic uint32_t seq;            /* 0x00 */
	_Atomic uint32_t overflow;       /* 0x04 */
	_Atomic uint64_t slot[KV_SLOTS]; /* 0x08 */
};

static_assert(sizeof(struct kv_bucket) == KV_CACHELINE, "bucket is a line");
static_assert(offsetof(struct kv_bucket, slot) == 8, "layout");
static_assert(KV_MAX_PROBE < 256, "dist fits its 8 bits");

#define KV_SLOT_OFF_BITS 40
#define KV_SLOT_OFF_MASK ((UINT64_C(1) << KV_SLOT_OFF_BITS) - 1)
#define KV_SLOT_TAG(w) ((uint16_t)((w) >> 48))
#define KV_SLOT_DIST(w) ((uint32_t)((w) >> KV_SLOT_OFF_BITS) & 0xffu)
#define KV_SLOT_REF UINT64_C(1)
#define KV_SLOT_TTL UINT64_C(2)
#define KV_SLOT_OFF(w) ((w) & KV_SLOT_OFF_MASK & ~UINT64_C(3))
#define KV_SLOT_MAKE(tag, dist, off)                                           \
	(((uint64_t)(tag) << 48) | ((uint64_t)(dist) << KV_SLOT_OFF_BITS) |    \
	 (uint64_t)(off))

/* ------------------------------------------------------------------------
 * Item: a header, then the key bytes, then the value bytes, in one chunk.
 * Written completely before it is published in a slot, and never changed
 * after. A free chunk has klen 0 and its free-list link at offset 8.
 */
struct kv_item {
	uint32_t vlen;          /* 0x00 value bytes */
	uint16_t klen;          /* 0x04 key bytes, 1..max_key; 0 = free */
	uint8_t cls;            /* 0x06 size class of the chunk */
	uint8_t flags;          /* 0x07 KV_IF_... */
	uint32_t version_lo;    /* 0x08 store-wide put counter at its put, */
	uint32_t version_hi;    /* 0x0c in halves: an item is only 4-aligned */
	/* 0x10: with KV_IF_TTL, the expiry (uint64_t ms since the epoch);
	 * then, with KV_IF_CFLAGS, the client flags (uint32_t); then, with
	 * KV_IF_LARGE, a struct kv_large (4-aligned, as all before it are
	 * multiples of 4); then the key bytes, then the value bytes (of a
	 * large item, the value's rest). Items without a TTL, flags or
	 * pages do not pay for them. */
};

#define KV_IF_TTL 0x1u
#define KV_IF_CFLAGS 0x2u
#define KV_IF_LARGE 0x4u /* the value continues in pages and pieces:
                          * struct kv_large */
#define KV_IF_KNOWN (KV_IF_TTL | KV_IF_CFLAGS | KV_IF_LARGE)
#define KV_IF_PIECE 0x8u /* a piece of a large item's value, not an item */
#define KV_ITEM_HDR 16u
#define KV_ITEM_TTL 8u    /* the expiry's bytes, when KV_IF_TTL */
#define KV_ITEM_CFLAGS 4u /* the client flags' bytes, when KV_IF_CFLAGS */
#define KV_ITEM_HDR_MAX (KV_ITEM_HDR + KV_ITEM_TTL + KV_ITEM_CFLAGS + 72u)
static_assert(sizeof(struct kv_item) == KV_ITEM_HDR, "kv_item header");
static_assert(alignof(struct kv_item) == KV_CHUNK_ALIGN, "4-aligned");
static_assert(offsetof(struct kv_item, version_lo) == 8, "layout");

#define KV_ITEM_VERSION(it)                                                    \
	(((uint64_t)(it)->version_hi << 32) | (uint64_t)(it)->version_lo)

static inline void kv_item_set_version(struct kv_item *it, uint64_t v)
{
	it->version_lo = (uint32_t)v;
	it->version_hi = (uint32_t)(v >> 32);
}

/* Where a free chunk keeps its free-list link: the 8-aligned word at 8 or
 * 12 bytes into it, over the version (klen, at 4, stays 0). */
static inline uint64_t kv_free_link(uint64_t chunk)
{
	return (chunk + 8u + 7u) & ~UINT64_C(7);
}
static_assert(KV_MIN_CHUNK >= 12u + 8u, "a 4-aligned chunk holds its link");
static_assert(KV_MIN_CHUNK >= KV_CHUNK_UNIT, "one chunk per unit");
static_assert(KV_PAGE_SIZE % KV_CHUNK_UNIT == 0, "pages hold whole units");

/* A large item: one whose header, key and value would not fit the
 * largest chunk, KV_CHUNK_MAX, an eighth of a page (the classes above it
 * would waste up to half of each page they take; see geometry.c). Its
 * value is split (kv__split) into:
 *   - npages whole pages of its own, linked from `first` through the page
 *     table (KV_PAGE_LARGE, owner word = the item's chunk): the value's
 *     first npages * KV_PAGE_SIZE bytes;
 *   - npieces pieces, chunks of the ordinary classes holding a header
 *     (struct kv_item with klen KV_PIECE_KLEN, flags KV_IF_PIECE, vlen the
 *     bytes it carries, version the owner's offset) and the next bytes:
 *     full ones (KV_PIECE_BYTES) and a last one of the class that fits;
 *   - the rest, in the item's own chunk after this and the key.
 * The lengths alone decide the split, so a damaged count or a piece that
 * carries another length is refused. */
#define KV_CHUNK_MAX (KV_PAGE_SIZE / 8)      /* largest class */
#define KV_MAX_PIECES 8u
#define KV_PIECE_KLEN 0xffffu                /* a piece, not an item */
#define KV_PIECE_BYTES (KV_CHUNK_MAX - 16u)  /* value bytes of a full piece */

struct kv_large {
	uint32_t first;  /* 0x00 first page of the value (index+1), 0 = none */
	uint32_t npages; /* 0x04 pages of the value */
	uint64_t piece[KV_MAX_PIECES]; /* 0x08 offsets of the pieces, in
	                                *      value order; unused: 0. Only
	                                *      4-aligned: read with memcpy */
};

#define KV_ITEM_LARGE 72u
static_assert(sizeof(struct kv_large) == KV_ITEM_LARGE, "kv_large");

/* Bytes of an item's header, expiry and client flags included. */
static inline uint64_t kv_item_hdr_len(uint8_t flags)
{
	return KV_ITEM_HDR + ((flags & KV_IF_TTL) ? KV_ITEM_TTL : 0) +
	       ((flags & KV_IF_CFLAGS) ? KV_ITEM_CFLAGS : 0) +
	       ((flags & KV_IF_LARGE) ? KV_ITEM_LARGE : 0);
}

/* How an item of these lengths is laid out; hlen is its header's length
 * without the struct kv_large. A small item (npages, npieces 0, large
 * false) is header, key and value in one chunk of `chunk` bytes. A large
 * one keeps its value's first npages pages in pages, the next bytes in
 * npieces pieces (all full but the last, which carries last_bytes), and
 * its last `rest` bytes in its chunk, which is filled to KV_CHUNK_MAX
 * whenever it has pieces. */
struct kv_split {
	bool large;
	uint64_t npages, npieces, last_bytes, rest, chunk;
};

static inline void kv__split(uint64_t hlen, uint64_t klen, uint64_t vlen,
                             struct kv_split *s)
{
	uint64_t all = hlen + klen + vlen;

	*s = (struct kv_split){.rest = vlen, .chunk = all};
	if (all <= KV_CHUNK_MAX)
		return;
	uint64_t h0 = hlen + KV_ITEM_LARGE + klen; /* < KV_CHUNK_MAX */
	uint64_t cap = KV_CHUNK_MAX - h0;
	uint64_t r = vlen % KV_PAGE_SIZE;
	s->large = true;
	s->npages = vlen / KV_PAGE_SIZE;
	s->rest = r;
	if (r > cap) {
		s->npieces = (r - cap + KV_PIECE_BYTES - 1) / KV_PIECE_BYTES;
		s->last_bytes = r - cap - (s->npieces - 1) * KV_PIECE_BYTES;
		s->rest = cap;
	}
	s->chunk = h0 + s->rest;
}

/* Bytes a piece carries: full, or the last one's. */
static inline uint64_t kv__piece_bytes(const struct kv_split *s, uint64_t i)
{
	return i + 1 < s->npieces ? KV_PIECE_BYTES : s->last_bytes;
}

/* The KV_IF_ bits of an item with this expiry and client flags. */
static inline uint8_t kv_item_flags(uint64_t expire, uint32_t cflags)
{
	return (uint8_t)((expire ? KV_IF_TTL : 0) | (cflags ? KV_IF_CFLAGS : 0));
}

/* ------------------------------------------------------------------------
 * Read hints: a System V shared-memory segment beside the store, named by
 * the header's hint_id, that every process allowed to read the store may
 * write (hint_posix.c). A read-only handle cannot set an index slot's
 * reference bit, so on a hit it sets the item's bit here instead: bit
 * (off - arena_off) / KV_CHUNK_UNIT of the words after this header, one
 * bit per place a chunk can start, sized for the store's max_map so
 * growing needs no new segment. Eviction treats either bit as a
 * reference and clears both (evict.c). Nothing here is data: any value
 * of any bit only changes which item is evicted next.
 */
#define KV_HINT_MAGIC "KVHINT2" /* 8 bytes with its NUL */

struct kv_hint {
	char magic[8];       /* 0x00 KV_HINT_MAGIC, written last */
	uint64_t seed;       /* 0x08 the store's seed */
	uint64_t created_ms; /* 0x10 the store's created_ms */
	uint64_t bits;       /* 0x18 max_map / KV_CHUNK_UNIT */
	uint64_t reserved[4];/* 0x20 */
	/* 0x40: the bits, in 64-bit words */
};

static_assert(sizeof(struct kv_hint) == 64, "kv_hint header is a line");

#endif /* KV_FORMAT_H */
