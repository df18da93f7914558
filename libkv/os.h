/*
 * os.h - everything libkv asks of the operating system, behind one small
 * private interface, the way libuv splits src/unix and src/win. The index,
 * allocator, journal, eviction and API code call only these; each platform
 * has its own files:
 *
 *   POSIX (Linux)  os_posix.c   clocks, randomness, processes, the store
 *                               object (shm_open or a file, mmap, flock)
 *                  lock_posix.c the writer lock: a glibc robust mutex in
 *                               the header, with stale-lock judging
 *                  owner.c      thread liveness from /proc, for lock_posix.c
 *   Windows        os_win32.c   clocks, randomness, processes, the store
 *                               object (a named section or a file mapping)
 *                  lock_win32.c the writer lock: a named mutex, whose
 *                               WAIT_ABANDONED is the owner-died case
 *
 * Only this header and those files contain platform conditionals.
 *
 * Conventions: every call returns KV_OK or a KV_E... status (never errno),
 * so the callers need no platform error codes.
 */
#ifndef KV_OS_H
#define KV_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv;

/* What the writer lock is, folded into the store's format word, so a store
 * is never used with another kind of lock: on Linux the size of the glibc
 * mutex that lives in the header, on Windows 'W' (a named mutex). */
#ifdef _WIN32
#define KV_OS_LOCK_KIND 0x57u
#define KV_OS_HDR_LOCK uint64_t unused;
#else
#include <pthread.h>
#define KV_OS_LOCK_KIND ((unsigned)sizeof(pthread_mutex_t))
#define KV_OS_HDR_LOCK pthread_mutex_t mutex;
#endif

/* ------------------------------------------------------------------------
 * Clocks, waiting, randomness, processes
 */
uint64_t kv__os_wall_ms(void);  /* ms since the Unix epoch */
uint64_t kv__os_mono_ns(void);  /* a monotonic clock */
void kv__os_sleep_us(unsigned us);
void kv__os_yield(void);
int kv__os_random(void *buf, size_t n); /* KV_OK or KV_ESYS */
uint32_t kv__os_pid(void);
/* End this process at once, as SIGKILL or TerminateProcess would: for the
 * crash tests' numbered crash points. */
_Noreturn void kv__os_die(void);
/* Is process pid certainly gone? (false when alive or when we cannot
 * tell) */
bool kv__os_pid_gone(uint32_t pid);

static inline uint64_t kv__os_mono_ms(void)
{
	return kv__os_mono_ns() / 1000000u;
}

static inline void kv__os_sleep_ms(unsigned ms)
{
	kv__os_sleep_us(ms * 1000u);
}

/* ------------------------------------------------------------------------
 * The store object: what a name refers to (a shared-memory object or a
 * file), opened, sized and mapped.
 */
#ifdef _WIN32
struct kv_os {
	void *file;    /* file stores: the file; else NULL */
	void *section; /* the file-mapping object */
	void *lock;    /* the writer lock: a named mutex */
	void *claim;   /* kvd's claim: a named mutex it holds */
	uint64_t size; /* bytes of the section */
	uint64_t dev, ino; /* identity (file stores: volume and file id) */
	wchar_t *wname;    /* the object's name, for the lock's name */
};
#else
struct kv_os {
	int fd;
	uint64_t dev, ino; /* identity of the object */
};
#endif

/* What kv_create asks of a new object. */
struct kv_os_create {
	uint64_t size;   /* bytes, reserved up front */
	uint32_t mode;   /* permission bits (POSIX); on Windows, whether
	                  * others may read (mode & 0044) */
	bool set_gid;
	uint32_t gid;
	bool huge;       /* back it with huge pages (KV_CREATE_HUGE) */
};

/* "/dev/shm/kv.NAME", "Local\kv.NAME" or the file's path, for messages. */
void kv__os_store_path(const char *name, char *out, size_t cap);

/* Create the object exclusively, sized and with its memory reserved, so a
 * full tmpfs or pagefile is an error here and never a fault later.
 * KV_ESTOREEXISTS if the name is taken. */
int kv__os_create(const char *name, const struct kv_os_create *c,
                  struct kv_os *o);

/* Open an existing object. With must_own, refuse one made by another user
 * (KV_EOWNER). */
int kv__os_open(const char *name, bool rdonly, bool must_own,
                struct kv_os *o);

/* Its size now (0 while a creator has not sized it), after checking it is
 * an object a store may live in: KV_ENOTSTORE (not a regular object),
 * KV_EWORLD (writable by everyone). */
int kv__os_size(struct kv_os *o, uint64_t *size);

int kv__os_map(struct kv_os *o, uint64_t size, bool rdonly, void **base);
/* Map size bytes at the start of an address range of *reserved bytes
 * (asked: reserve; less when the address space will not give that much,
 * never less than size), aligned to 2 MiB, so the mapping can grow in
 * place with kv__os_map_more. Unmap with kv__os_unmap(base, *reserved). */
int kv__os_map_reserved(struct kv_os *o, uint64_t size, uint64_t reserve,
                        bool rdonly, void **base, uint64_t *reserved);
/* Map bytes [from, to) of the object at base + from, inside the range
 * kv__os_map_reserved reserved. The bytes already mapped stay as they
 * are. KV_ENOTSUP where the platform cannot. */
int kv__os_map_more(struct kv_os *o, void *base, uint64_t from, uint64_t to,
                    bool rdonly);
/* Reserve memory for bytes [from, size) of the object, growing it to
 * size bytes if it is smaller, as at creation (KV_ENOSPC when there is
 * none): bytes a shrink released are reserved again. Never shrinks it. */
int kv__os_grow(struct kv_os *o, uint64_t from, uint64_t size);
/* Give the memory of bytes [from, to) back (a shrunk store's old tail);
 * they read as zeros from then on, in every mapping, and the object keeps
 * its size, so a process still reading them never faults. Best effort. */
void kv__os_release(struct kv_os *o, uint64_t from, uint64_t to);
/* Resizers of one store take turns: a lock on the object, released by
 * the system if the holder dies. Waits. */
int kv__os_resize_lock(struct kv_os *o);
void kv__os_resize_unlock(struct kv_os *o);
/* Can a store object grow at all here? */
bool kv__os_can_grow(void);
void kv__os_unmap(void *base, uint64_t size);
/* Bytes per page backing [base, base + size) in this process: huge or
 * not, as the kernel mapped the first bytes of it. */
uint64_t kv__os_mem_page_size(const void *base, uint64_t size);
void kv__os_close(struct kv_os *o);

/* Remove the name. The memory goes when the last process detaches. */
int kv__os_remove(const char *name);
/* The same, but only while the name still refers to the object o (opened
 * earlier): KV_ENOSTORE if it now names another one (or none). */
int kv__os_remove_same(const char *name, const struct kv_os *o);

/* Has the object's name been removed (unlinked) since we opened it? */
bool kv__os_removed(struct kv_os *o);

/* kvd's claim on the object: exclusive, released by the system when the
 * holder dies. KV_OK, KV_ESERVED (another process holds it), KV_ESYS. */
int kv__os_claim(struct kv_os *o);
void kv__os_unclaim(struct kv_os *o);

/* ------------------------------------------------------------------------
 * Read hints (format.h struct kv_hint; hint_posix.c on Linux; none on
 * Windows, where read-only handles' hits do not count toward recency).
 * kv__os_hint_open attaches the handle to the store's segment
 * (kv->hint, kv->hint_bits), making one first if create and the store has
 * none that checks out; any failure leaves the handle without hints, never
 * an error. A segment lives while any handle has it attached.
 */
void kv__os_hint_open(struct kv *kv, bool create);
void kv__os_hint_close(struct kv *kv);

/* ------------------------------------------------------------------------
 * The writer lock (lock_posix.c, lock_win32.c). lock.c builds the journal
 * and recovery on top; these only take and give the lock and say whether
 * its last holder died.
 */
#define KV_LOCK_DIED 1 /* taken; the previous holder died holding it */

/* A new store, before its magic is published: make its lock. */
int kv__os_lock_create(struct kv *kv);
/* A read-write attach: open the lock (and repair one left by another
 * boot). */
int kv__os_lock_attach(struct kv *kv);
void kv__os_lock_detach(struct kv *kv);
/* Take the lock, waiting until deadline (kv__os_mono_ms): KV_OK,
 * KV_LOCK_DIED, KV_EBUSY, or another status. A stale lock is repaired on
 * the way. */
int kv__os_lock_acquire(struct kv *kv, uint64_t deadline_ms);
/* The same without waiting (kvd's tick): KV_EBUSY when held. */
int kv__os_lock_try(struct kv *kv);
/* Right after taking it: record this thread as the holder. */
void kv__os_lock_taken(struct kv *kv);
/* After KV_LOCK_DIED and recovery: the lock is sound again. */
void kv__os_lock_consistent(struct kv *kv);
void kv__os_lock_release(struct kv *kv);

#endif /* KV_OS_H */
