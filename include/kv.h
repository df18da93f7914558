/*
 * kv.h - the public interface of libkv, a shared-memory key-value store.
 *
 * A store is a named mapping (a POSIX shared-memory object /dev/shm/kv.NAME,
 * or a regular file when the name contains '/') that holds a hash index and
 * the memory for keys and values. Every process that attaches maps the same
 * bytes: gets are plain memory reads that take no lock and make no system
 * call; puts and deletes are serialised by a robust process-shared mutex that
 * lives in the mapping.
 *
 * Conventions
 *   - Every call returns KV_OK (0) or a negative KV_E... code. kv_strerror()
 *     turns a code into a one-line message, kv_errname() into its name.
 *   - Keys and values are byte strings: any bytes, NUL included, given as a
 *     pointer and a length. Nothing is NUL-terminated by the library.
 *   - The library never keeps a pointer to a caller's buffer after a call
 *     returns, and never hands out a pointer into the mapping: values are
 *     copied out, so a concurrent writer can never change bytes under you.
 *   - A kv_t handle may be used by many threads at once. kv_close() must not
 *     race with other calls on the same handle. No call is
 *     async-signal-safe: never call libkv from a signal handler (a handler
 *     that interrupted a write of the same thread would meet its lock).
 *   - The status codes listed for each call are all it returns, except
 *     KV_EDESTROYED, which any call on a handle may return: the store was
 *     destroyed (kv_destroy, `kv destroy`) after the handle attached, or
 *     kvd found it removed. The handle is dead for good; nothing it does
 *     reaches the new store of that name, if any. Close it and kv_open()
 *     again to use a new store.
 *   - A store may grow while handles are attached (kv_resize): every call
 *     on a handle first follows it, mapping the new size, and may then
 *     also return what that can: KV_ECORRUPT (the new geometry is not
 *     one libkv makes), KV_ETRUNCATED (the object is smaller than it
 *     says), KV_ETOOBIG (it grew past this handle's reserved address
 *     space), KV_EBUSY, KV_ENOMEM or KV_ESYS.
 *   - No call waits long: one that must wait for the writer lock gives up
 *     after about 1.5 s with KV_EBUSY, and only when a live thread really
 *     holds it. A lock left by a writer that is gone (killed, or from a
 *     previous boot of a file-backed store, or damaged bytes) is found
 *     and repaired by the next writer; see kv_check().
 */
#ifndef KV_H
#define KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KV_BUILDING_LIBRARY) && defined(_WIN32)
#define KV_API __declspec(dllexport)
#elif defined(KV_BUILDING_LIBRARY) && defined(__GNUC__)
#define KV_API __attribute__((visibility("default")))
#else
#define KV_API
#endif

#define KV_VERSION_MAJOR 0
#define KV_VERSION_MINOR 1
#define KV_VERSION_PATCH 0
#define KV_VERSION_STRING "0.1.0"

/* Limits. Keys are 1..KV_MAX_KEY bytes. Values are 0..max_value bytes,
 * where max_value is fixed when the store is created (a sixteenth of the
 * store's size, at least KV_DEFAULT_MAX_VALUE, unless kv_options says
 * otherwise; at most KV_MAX_VALUE_LIMIT). */
#define KV_MAX_KEY 4096u
#define KV_DEFAULT_MAX_VALUE (1024u * 1024u)
#define KV_MAX_VALUE_LIMIT (1024u * 1024u * 1024u)
#define KV_MAX_NAME 64u

/* Status codes: one list, used for the enum, kv_strerror and kv_errname. */
#define KV_ERRNO_MAP(XX)                                                       \
	XX(ENOTFOUND, -1, "key not found")                                     \
	XX(ENOSTORE, -2, "store does not exist")                               \
	XX(EPERM, -3, "permission denied")                                     \
	XX(EVERSION, -4, "incompatible store format version")                  \
	XX(EFULL, -5, "store is full")                                         \
	XX(EKEYSIZE, -6, "key is empty or too long")                           \
	XX(EVALSIZE, -7, "value is too large for this store")                  \
	XX(EINVAL, -8, "invalid argument")                                     \
	XX(ECORRUPT, -9, "store is corrupt")                                   \
	XX(ERANGE, -10, "buffer too small for value")                          \
	XX(EEXIST, -11, "key already exists")                                  \
	XX(ENAME, -12, "invalid store name")                                   \
	XX(ESTOREEXISTS, -13, "store already exists")                          \
	XX(ENOSPC, -14, "no space left to create the store")                   \
	XX(ENOMEM, -15, "out of memory")                                       \
	XX(ERDONLY, -16, "store is attached read-only")                        \
	XX(EBUSY, -17, "store is busy, try again")                             \
	XX(ESERVED, -18, "another kvd already serves this store")              \
	XX(ENOTREADY, -19, "store is not initialised")                         \
	XX(ESYS, -20, "system error")                                          \
	XX(ETOOSMALL, -21, "store size is too small")                          \
	XX(ETOOBIG, -22, "store size is too large")                            \
	XX(ENOTSTORE, -23, "not a kv store (bad magic)")                       \
	XX(ETRUNCATED, -24, "store is truncated")                              \
	XX(ECHANGED, -25, "key changed since its version was read")            \
	XX(ENOTNUM, -26, "value is not a decimal integer")                     \
	XX(EOVERFLOW, -27, "integer overflow")                                 \
	XX(ENOFD, -28, "too many open files")                                  \
	XX(EWORLD, -29, "store is world-writable")                             \
	XX(EOWNER, -30, "store is owned by another user")                      \
	XX(ESYMLINK, -31, "store path is a symbolic link")                     \
	XX(EDESTROYED, -32, "store was destroyed; attach to it again")         \
	XX(ENOHUGE, -33, "huge pages are not available for the store")        \
	XX(ENOTSUP, -34, "not supported for this store")

enum kv_status {
	KV_OK = 0,
#define KV__ERRNO_ENUM(name, val, msg) KV_##name = (val),
	KV_ERRNO_MAP(KV__ERRNO_ENUM)
#undef KV__ERRNO_ENUM
};

typedef struct kv kv_t;

/* Flags for kv_open(). */
#define KV_RDONLY 0x0u /* map read-only: gets only; needs read permission */
#define KV_RDWR 0x1u   /* map read-write: gets, puts, deletes */
#define KV_NOWARM 0x2u /* do not fill this process's page tables for the
                        * store in the background (see kv_open) */

/* A store's size is rounded down to a multiple of this. */
#define KV_SIZE_ALIGN 4096u

/* Options for kv_create(). Zero-initialise, then set what you need; a zero
 * field means "the default". */
struct kv_options {
	uint64_t size;      /* bytes of the whole mapping; default 64 MiB */
	uint32_t mode;      /* permission bits; default 0600 */
	uint32_t max_value; /* largest value in bytes; default size / 16,
	                     * at least 1 MiB; at most KV_MAX_VALUE_LIMIT */
	uint64_t max_items; /* index sized for this many keys; default from size */
	uint32_t flags;     /* KV_CREATE_... */
	uint32_t gid;       /* with KV_CREATE_GID: the store's group */
	uint64_t max_size;  /* how large kv_resize may grow it; default 16
	                     * times size, at least 16 GiB, at most 1 TiB.
	                     * Every process attached reserves this much
	                     * address space (not memory) */
	uint32_t reserved[4];
};

#define KV_CREATE_EXCL 0x1u /* fail with KV_ESTOREEXISTS rather than adopt */
#define KV_CREATE_NOEVICT 0x2u /* when full, puts fail with KV_EFULL instead
                                * of evicting least recently used items */
#define KV_CREATE_GID 0x4u     /* give a new store the group opts->gid (the
                                * creator must belong to it, or be root) */
#define KV_CREATE_HUGE 0x8u    /* back a new shared-memory store with 2 MiB
                                * huge pages (Linux: transparent huge pages
                                * of tmpfs, so /dev/shm must be mounted with
                                * huge=advise, within_size or always); the
                                * size is rounded up to 2 MiB. KV_ENOHUGE
                                * when the system gives none. Ignored when
                                * an existing store is adopted */

/* Options for kv_put(). Zero-initialise; NULL means all defaults. */
struct kv_put_opts {
	uint64_t ttl_ms; /* time to live in milliseconds; 0 = never expires */
	uint32_t flags;  /* KV_PUT_... */
	uint32_t client_flags; /* 32 bits stored with the item for the caller
	                        * (the memcached protocol's flags); read back
	                        * with kv_get_info. Items with 0 cost nothing */
	uint64_t cas;    /* with KV_PUT_CAS: the version the key must have */
	uint64_t reserved[1];
};

#define KV_PUT_NX 0x1u /* only if absent: KV_EEXIST if the key is live */
#define KV_PUT_XX 0x2u /* only if present: KV_ENOTFOUND if it is not */
#define KV_PUT_CAS 0x4u /* only if the key's version is opts->cas:
                         * KV_ECHANGED if it has another, KV_ENOTFOUND if
                         * the key is gone */

/* Store-wide figures. Counters count since the store was created. */
struct kv_stats {
	uint32_t format_version; /* KV_FORMAT_VERSION of the store */
	uint32_t max_key;        /* longest key accepted */
	uint32_t max_value;      /* longest value accepted */
	uint32_t page_size;      /* bytes per allocator page */
	uint64_t map_size;       /* bytes of the whole mapping */
	uint64_t data_bytes;     /* bytes of the value arena */
	uint64_t data_used;      /* arena bytes held by live chunks and
	                          * the pages of large values */
	uint64_t pages_total;    /* allocator pages */
	uint64_t pages_used;     /* pages assigned to a size class or
	                          * holding part of a large value */
	uint64_t buckets;        /* index buckets (cache lines) */
	uint64_t slots;          /* index slots (buckets * slots per bucket) */
	uint64_t items;          /* live keys (expired ones not yet reclaimed too) */
	uint64_t key_bytes;      /* sum of live key lengths */
	uint64_t value_bytes;    /* sum of live value lengths */
	uint64_t puts;           /* successful puts */
	uint64_t deletes;        /* successful deletes */
	uint64_t expired;        /* expired items reclaimed */
	uint64_t recoveries;     /* times a dead writer's lock was recovered */
	uint64_t max_probe;      /* longest probe (in buckets) of any key */
	uint64_t created_ms;     /* creation time, ms since the Unix epoch */
	uint32_t nclasses;       /* size classes */
	uint32_t daemon_pid;     /* pid of the kvd serving the store, or 0 */
	uint64_t evictions;      /* items evicted to make room */
	uint64_t page_moves;     /* pages taken from one class for another,
	                          * or for a large value */
	uint32_t evict;          /* 1: evicts when full; 0: KV_EFULL */
	uint32_t item_header;    /* bytes of an item's header beside its key
	                          * and value (8 more with a TTL) */
	uint64_t hits;           /* gets that found their key */
	uint64_t misses;         /* gets that did not. Both count gets through
	                          * read-write handles of every process; a
	                          * read-only handle cannot write the store, so
	                          * its gets appear only in its own kv_stats */
	uint64_t sweeps;         /* expiry sweep steps run (by kvd) */
	uint64_t sweep_ns;       /* time those steps held the writer lock */
	uint64_t lock_repairs;   /* writer locks found stale and broken, and
	                          * mutexes reset (damaged, or left by another
	                          * boot of a file-backed store) */
	/* Keys by distance from their home bucket: 0, 1, 2, 3, 4-7, 8-15,
	 * 16-31, 32 or more buckets. A lookup reads distance + 1 buckets. */
	uint64_t probe_hist[8];
	/* Bytes per page of the memory that backs the store, as this
	 * process maps it: 2097152 when huge pages back it, else the
	 * system's page size. */
	uint64_t mem_page_size;
	uint64_t max_size;       /* how large kv_resize may grow the store */
	uint64_t resizes;        /* times it has been resized */
};

/* Create a store, or adopt an existing compatible one with its data (unless
 * KV_CREATE_EXCL). The mapping's memory is reserved up front, so a full
 * tmpfs fails here with KV_ENOSPC rather than later with SIGBUS. The handle
 * is attached read-write. opts may be NULL.
 * An existing store is adopted only if this user owns it (KV_EOWNER: anyone
 * can create a name in /dev/shm) and it is not world-writable (KV_EWORLD).
 * Returns KV_OK; KV_ENAME, KV_EINVAL, KV_ETOOSMALL, KV_ETOOBIG, KV_ENOSPC,
 * KV_EPERM, KV_EVERSION, KV_ECORRUPT, KV_ESTOREEXISTS, KV_ENOTREADY,
 * KV_ENOTSTORE, KV_ETRUNCATED, KV_EWORLD, KV_EOWNER, KV_ESYMLINK,
 * KV_EDESTROYED (a store being destroyed kept its name past a second),
 * KV_EBUSY (its lock, left by another boot, is being reset by another
 * process past the bound), KV_ENOFD, KV_ENOMEM, KV_ESYS.
 * On success *out owns the handle; release it with kv_close(). */
KV_API int kv_create(const char *name, const struct kv_options *opts,
                     kv_t **out);

/* Attach to an existing store. flags is KV_RDONLY or KV_RDWR, optionally
 * with KV_NOWARM.
 * On a store of 32 MiB or more, kv_open starts a background thread that
 * maps the store's index and the pages in use into this process's page
 * tables (about 50 ms per GiB), so that the first gets do not each pay a
 * page fault; gets do not wait for it, and kv_close stops it. Pass
 * KV_NOWARM (or set the environment variable KV_NOWARM) for a handle that
 * makes a few calls and closes, or that must not start threads.
 * A store writable by every user is refused (KV_EWORLD).
 * Returns KV_OK; KV_ENAME, KV_ENOSTORE, KV_EPERM, KV_EVERSION, KV_ENOTSTORE,
 * KV_ETRUNCATED, KV_ECORRUPT, KV_ENOTREADY, KV_EWORLD, KV_ESYMLINK,
 * KV_EDESTROYED, KV_EBUSY (as for kv_create), KV_ENOFD, KV_ENOMEM,
 * KV_EINVAL, KV_ESYS. */
KV_API int kv_open(const char *name, unsigned flags, kv_t **out);

/* Detach and free the handle. NULL is allowed. The store stays. */
KV_API void kv_close(kv_t *kv);

/* Remove a store by name. It is first marked destroyed, so every handle
 * still attached to it gets KV_EDESTROYED from its next call; then its name
 * is removed (the memory goes once every process detaches). A name whose
 * object is not a kv store is removed all the same.
 * Returns KV_OK; KV_ENAME, KV_ENOSTORE, KV_EPERM, KV_ENOFD, KV_ENOMEM,
 * KV_ESYS. */
KV_API int kv_destroy(const char *name);

/* Grow or shrink the store to size bytes (rounded down to 4 KiB) while it
 * serves: every process attached goes on reading and writing, and follows
 * the new size by itself at its next call; the index changes in
 * proportion, so the store holds proportionally more (or fewer) keys at
 * the same probe lengths. A shrink first moves the items in the part given
 * up below the new end, then gives that part's memory back. Writers wait
 * while items move and the index is rebuilt (about 0.2 s per million
 * keys); lock-free readers do not. A writer killed at any point leaves the
 * store as it was or resized, never in between, every key intact.
 * Returns KV_OK (also when size is the current size); KV_EFULL (a shrink
 * the live keys do not fit: nothing changed); KV_ENOTSUP (Windows, whose
 * sections have a fixed size); KV_ETOOBIG (beyond the store's growth
 * limit, kv_options.max_size); KV_ETOOSMALL (too small a step: the new
 * index must fit past the current end, or below the one in use; or too
 * small for a store); KV_ENOSPC; KV_ERDONLY; KV_EBUSY; KV_ECORRUPT;
 * KV_EDESTROYED; KV_ENOMEM; KV_ESYS. */
KV_API int kv_resize(kv_t *kv, uint64_t size);

/* Copy the value of key into buf[0..cap). *vlen receives the value's length
 * in every case where the key was found, so a caller may size a buffer by
 * calling with cap 0. Takes no lock. On any status but KV_OK the contents of
 * buf are unspecified (a read that raced a writer may have begun a copy).
 * Returns KV_OK; KV_ENOTFOUND; KV_ERANGE (cap < *vlen);
 * KV_EKEYSIZE, KV_EINVAL, KV_ECORRUPT, KV_EBUSY, KV_ESYS. */
KV_API int kv_get(kv_t *kv, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen);

/* Insert or replace. The bytes are copied into the store. opts may be NULL.
 * Returns KV_OK; KV_EEXIST (KV_PUT_NX and the key is live); KV_ENOTFOUND
 * (KV_PUT_XX and it is not); KV_ECHANGED (KV_PUT_CAS and the version
 * differs); KV_EKEYSIZE; KV_EVALSIZE; KV_EFULL; KV_ERDONLY; KV_EINVAL;
 * KV_ECORRUPT; KV_EBUSY; KV_ESYS. On any error the store is unchanged. */
KV_API int kv_put(kv_t *kv, const void *key, size_t klen, const void *val,
                  size_t vlen, const struct kv_put_opts *opts);

/* Like kv_get, and also return the key's version (*version, if not
 * NULL): a number that changes with every put of the key, for a later
 * kv_put with KV_PUT_CAS. Same returns as kv_get; *version is set on
 * KV_ERANGE too, so cap 0 asks for the version and size alone. */
KV_API int kv_get_version(kv_t *kv, const void *key, size_t klen, void *buf,
                          size_t cap, size_t *vlen, uint64_t *version);

/* What kv_get_info tells about an item besides its value. */
struct kv_item_info {
	uint64_t version;      /* as kv_get_version: changes with every put */
	int64_t ttl_ms;        /* time left to live, -1 if it never expires */
	uint32_t client_flags; /* kv_put_opts.client_flags at its put; 0 for
	                        * keys put without */
	uint32_t reserved0;
	uint64_t reserved[2];
};

/* Like kv_get, and also fill *info (if not NULL) with the item's version,
 * time to live and client flags, all read in the same lock-free snapshot
 * as the value. Same returns as kv_get; *info is set on KV_ERANGE too. */
KV_API int kv_get_info(kv_t *kv, const void *key, size_t klen, void *buf,
                       size_t cap, size_t *vlen, struct kv_item_info *info);

/* Give a live key a new time to live (ttl_ms; 0 = never expires), keeping
 * its value, client flags and version. Returns KV_OK; KV_ENOTFOUND;
 * KV_EKEYSIZE; KV_ERDONLY; KV_EFULL; KV_EINVAL; KV_ECORRUPT; KV_EBUSY;
 * KV_ENOMEM; KV_ESYS. */
KV_API int kv_touch(kv_t *kv, const void *key, size_t klen, uint64_t ttl_ms);

/* Add delta to the decimal integer stored under key (an absent or
 * expired key counts as 0) and store the result as decimal text, keeping
 * the key's TTL; *result (if not NULL) receives it. Atomic with respect to
 * every other writer. Returns KV_OK; KV_ENOTNUM (the value is not an
 * optionally signed decimal integer of at most 20 digits); KV_EOVERFLOW
 * (the result would not fit in int64_t; nothing changes); KV_EKEYSIZE;
 * KV_EVALSIZE; KV_ERDONLY; KV_EFULL; KV_EINVAL; KV_ECORRUPT; KV_EBUSY;
 * KV_ESYS. */
KV_API int kv_incr(kv_t *kv, const void *key, size_t klen, int64_t delta,
                   int64_t *result);

/* Remove every key. Works a slice of the index at a time and releases the
 * writer lock between slices, so other writers are never blocked long; a
 * key put during the flush may survive it. *removed (if not NULL) receives
 * the number of keys removed. Returns KV_OK; KV_ERDONLY; KV_EINVAL;
 * KV_ECORRUPT; KV_EBUSY; KV_ESYS. */
KV_API int kv_flush(kv_t *kv, uint64_t *removed);

/* Figures of one size class. */
struct kv_class_stats {
	uint32_t chunk_size;  /* bytes per chunk */
	uint32_t per_page;    /* chunks per page */
	uint64_t pages;       /* pages the class owns */
	uint64_t used;        /* chunks holding an item */
	uint64_t evictions;   /* items evicted from this class */
	uint64_t reserved[4];
};

/* Fill *out for size class cls (0 .. kv_stats.nclasses - 1). Returns
 * KV_OK or KV_EINVAL. */
KV_API int kv_class_stats(kv_t *kv, uint32_t cls, struct kv_class_stats *out);

/* One key of a batched get (kv_mget). The caller fills key, klen, buf and
 * cap; the call fills vlen and status exactly as kv_get would (KV_OK,
 * KV_ENOTFOUND, KV_ERANGE with vlen set, KV_EKEYSIZE, ...). */
struct kv_getv {
	const void *key;
	size_t klen;
	void *buf;
	size_t cap;
	size_t vlen;
	int status;
};

/* Get n keys in one call. The index and item memory of different keys is
 * fetched in parallel, so a batch costs far less than n kv_get calls on a
 * store larger than the CPU caches. Each entry gets its own status; the
 * call returns KV_OK once every entry has one, or KV_EINVAL (kv or v NULL
 * with n > 0). Takes no lock on the fast path. */
KV_API int kv_mget(kv_t *kv, struct kv_getv *v, size_t n);

/* Visit the keys of a store a part at a time, taking no lock, so a scan of
 * any size never blocks writers. Start with *cursor = 0; each call visits
 * at most `count` slices of the index (a few keys each), calls
 * fn(ctx, key, klen) for every live key there, and advances *cursor; the
 * scan is complete when *cursor is 0 again. A key present for the whole
 * scan is visited exactly once (at least once if the store is resized
 * during the scan: the cursor is a hash prefix, so nothing is missed, but
 * a few keys may come twice); a key added or removed during it may be
 * visited or not. The key bytes passed to fn are a copy, valid only during
 * the call; fn may call any kv function, writes included. fn returns 0 to
 * go on, anything else to stop early (the call then returns it). Returns
 * KV_OK, fn's non-zero value, KV_EINVAL, KV_ENOMEM, KV_ECORRUPT or
 * KV_EBUSY. */
KV_API int kv_scan(kv_t *kv, uint64_t *cursor, size_t count,
                   int (*fn)(void *ctx, const void *key, size_t klen),
                   void *ctx);

/* Remove a key. Returns KV_OK; KV_ENOTFOUND; KV_EKEYSIZE; KV_ERDONLY;
 * KV_EINVAL; KV_ECORRUPT; KV_EBUSY; KV_ESYS. */
KV_API int kv_del(kv_t *kv, const void *key, size_t klen);

/* Remaining time to live of a key: *ttl_ms is -1 when it never expires.
 * Returns KV_OK; KV_ENOTFOUND; KV_EKEYSIZE; KV_EINVAL; KV_ECORRUPT;
 * KV_EBUSY; KV_ESYS. */
KV_API int kv_ttl(kv_t *kv, const void *key, size_t klen, int64_t *ttl_ms);

/* Fill *out with the store's figures. Returns KV_OK, KV_EDESTROYED or
 * KV_EINVAL. */
KV_API int kv_stats(kv_t *kv, struct kv_stats *out);

/* Walk the whole store and verify every invariant of the index and the
 * allocator. Each problem found is passed to report(ctx, message) when
 * report is not NULL. Takes the writer lock when the handle is read-write,
 * which first repairs a stale lock (its holder is gone) or a damaged one,
 * as every writer does. A read-only handle cannot repair: it reports such
 * a lock as a problem, with what to run.
 * Returns KV_OK when the store is sound, KV_ECORRUPT otherwise, or
 * KV_EBUSY (a live writer held the lock throughout), KV_EDESTROYED,
 * KV_EINVAL. */
KV_API int kv_check(kv_t *kv, void (*report)(void *ctx, const char *problem),
                    void *ctx);

/* Message for a status code: a static string, never NULL. */
KV_API const char *kv_strerror(int code);

/* Name of a status code ("KV_ENOTFOUND"): a static string, never NULL. */
KV_API const char *kv_errname(int code);

/* Version of the library, "MAJOR.MINOR.PATCH". */
KV_API const char *kv_version(void);

/* Check a store name: KV_OK, or KV_ENAME with no side effect. */
KV_API int kv_name_check(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* KV_H */
