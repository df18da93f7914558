/*
 * lock_posix.c - the writer lock on Linux: a glibc robust, process-shared
 * mutex in the store's header, and what to do when it names a holder that
 * is gone. lock.c builds the journal and recovery on top (os.h).
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "kv_internal.h"
#include "lock_posix.h"
#include "os.h"

/* ThreadSanitizer's pthread_mutex_timedlock records the lock as taken only
 * when it returns 0, not EOWNERDEAD (its lock and trylock do both), and
 * then reports our unlock as one of a mutex not held. Tell it. */
#if defined(__SANITIZE_THREAD__)
#define KV_TSAN_LOCK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KV_TSAN_LOCK 1
#endif
#endif
#ifdef KV_TSAN_LOCK
#include <sanitizer/tsan_interface.h>
static void tsan_owner_dead_acquired(pthread_mutex_t *m)
{
	__tsan_mutex_pre_lock(m, 0);
	__tsan_mutex_post_lock(m, 0, 0);
}
#else
static void tsan_owner_dead_acquired(pthread_mutex_t *m)
{
	(void)m;
}
#endif

/* ------------------------------------------------------------------------
 * The lock word and stale locks
 * -----------------------------
 * hdr.mutex is a glibc robust, process-shared mutex. Its first 32 bits are
 * the futex word of the kernel's robust-futex ABI: 0 when free, else the
 * holder's thread id, with FUTEX_WAITERS set while someone sleeps on it and
 * FUTEX_OWNER_DIED set by the kernel when the holder exits. The kernel sets
 * that bit only for a holder that exits on this boot with the mutex on its
 * robust list, so a lock word can still name a holder that is gone:
 *
 *   - a file-backed store that outlived a reboot (or was copied to another
 *     machine) while a writer held its lock;
 *   - a holder that exited without a robust list the kernel could walk;
 *   - damaged bytes: any tid at all, or a mutex kind glibc does not expect.
 *
 * Such a lock no live thread will ever release. kv__lock therefore waits in
 * short slices and, between them, judges the holder (judge()):
 *
 *   - a tid of 0 with the lock taken, or our own tid while this thread holds
 *     no kv lock, cannot be a holder;
 *   - a tid with no thread behind it (the kernel says ESRCH; a zombie
 *     counts as gone) is gone;
 *   - a kernel thread (it maps nothing) cannot be holding it.
 * A live thread that recorded itself as the holder (the lock record:
 * tid, start time, pid namespace, written right after taking the lock and
 * cleared at unlock) holds it. Any other live thread is "unsure": a
 * reused id, or a process that does not seem to map the store, may still
 * be a new holder that has not yet written its record.
 *
 * A stale lock is broken exactly as the kernel would have done it had the
 * holder exited normally: one compare-and-swap of the word from the value
 * judged to FUTEX_OWNER_DIED (keeping the waiters bit), then a wake-up. The
 * next locker, whoever it is, gets EOWNERDEAD and runs the one recovery
 * (kv__recover_locked), so the journal is replayed or rolled back and every bucket
 * made even, as after any death. Two processes that judge the same lock
 * stale at once race on the compare-and-swap: one wins, the other finds the
 * word changed and simply tries the lock again. Nothing else is written, so
 * breaking cannot hurt a holder that took the lock in the meantime.
 *
 * A mutex whose other bytes are damaged (its kind, or glibc's "not
 * recoverable" mark) is re-initialised instead, which is not a single
 * atomic step: the repair word (hdr.repair) serialises it, itself a
 * compare-and-swap lock whose holder is judged the same way. A read-write
 * attach that finds the store's boot tag differs from this boot resets the
 * mutex the same way: no holder from another boot can be alive.
 *
 * Limits. A holder in another pid namespace (its record says so) is never
 * judged: its tid means nothing here; and once writers of two namespaces
 * have attached (hdr.ns_mixed), no unrecorded holder is judged. A holder
 * that took the lock but has not yet written its record (a window of a
 * few stores, but one a debugger may hold open for minutes) cannot be
 * told from damage that named a live thread. Such a lock is "unsure":
 * libkv calls answer KV_EBUSY; kvd breaks
 * it only after seeing it unchanged for KV_UNSURE_BREAK_MS; and an
 * operator who knows no writer is stopped breaks it at once with
 * `kv check --repair` (kv__break_unsure).
 */
#define KV_REPAIR_WAIT_MS 1000
#define KV_SLICE_MIN_MS 2
#define KV_SLICE_MAX_MS 50
#define KV_UNSURE_BREAK_MS 30000

#ifndef __GLIBC__
#error "lock.c reads glibc's pthread_mutex_t layout; port it for this libc"
#endif
static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0,
              "the futex word opens the mutex");

/* glibc's marks in __owner (nptl's pthreadP.h). */
#define KV_MUTEX_INCONSISTENT INT_MAX
#define KV_MUTEX_NOTRECOVERABLE (INT_MAX - 1)

static _Thread_local unsigned tls_held; /* kv writer locks this thread holds */
static _Thread_local uint32_t tls_tid;
static _Thread_local uint64_t tls_start;
static _Thread_local uint32_t tls_pidns;

static_assert(sizeof(pthread_mutex_t) <= sizeof(((struct kv_hdr *)0)->lock),
              "the mutex fits the header's lock line");

static pthread_mutex_t *kv__mutex(struct kv_hdr *h)
{
	return &h->mutex;
}

static _Atomic uint32_t *lock_word(struct kv_hdr *h)
{
	return (_Atomic uint32_t *)(void *)&kv__mutex(h)->__data.__lock;
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)(void *)w, FUTEX_WAKE, INT_MAX, NULL,
	        NULL, 0);
}

/* The kind a mutex made by init_mutex has, elision bits aside. */
static int expected_kind(void)
{
	static _Atomic int kind = -1;
	int k = atomic_load_explicit(&kind, memory_order_relaxed);
	if (k < 0) {
		pthread_mutex_t m;
		memset(&m, 0, sizeof m);
		if (kv__init_mutex(&m) != 0)
			return -1;
		k = m.__data.__kind;
		pthread_mutex_destroy(&m);
		atomic_store_explicit(&kind, k, memory_order_relaxed);
	}
	return k;
}

int kv__init_mutex(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int e = pthread_mutexattr_init(&a);
	if (e == 0)
		e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (e == 0)
		e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (e == 0)
		e = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return e;
}

/* Are the mutex's bytes ones glibc can work with? The lock word may hold
 * anything (judge() deals with it); the kind must be ours, or glibc would
 * treat the word by another protocol. */
static bool mutex_sane(struct kv_hdr *h)
{
	int kind = atomic_load_explicit(
	    (_Atomic int *)(void *)&kv__mutex(h)->__data.__kind,
	    memory_order_relaxed);
	int owner = atomic_load_explicit(
	    (_Atomic int *)(void *)&kv__mutex(h)->__data.__owner,
	    memory_order_relaxed);
	/* Exact: glibc never sets elision bits on a robust kind, and
	 * refuses (EINVAL) one that has them. */
	return kind == expected_kind() &&
	       owner != KV_MUTEX_NOTRECOVERABLE;
}

/* This thread's identity, for the lock record: its tid, start time and
 * pid namespace, read once per thread (a forked child, whose one thread
 * has a new tid, starts afresh: see fork_child). Taken before the lock,
 * so the holder's window between taking it and recording itself is a few
 * stores. */
static void fork_child(void)
{
	tls_tid = 0;
}

static void register_fork(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

static void self_ident(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	if (tls_tid != 0)
		return;
	pthread_once(&once, register_fork);
	uint32_t tid = kv__gettid();
	uint64_t start = 0;
	if (kv__thread_start(tid, &start) != KV_THREAD_ALIVE)
		start = 0;
	tls_start = start;
	tls_pidns = kv__pidns();
	tls_tid = tid;
}

static void record_owner(struct kv_hdr *h)
{
	self_ident();
	atomic_store_explicit(&h->owner_start, tls_start,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->owner_pidns, tls_pidns,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->owner_tid, tls_tid, memory_order_release);
}

enum kv_holder kv__judge(struct kv *kv, uint32_t word, char *why, size_t cap)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint32_t tid = word & FUTEX_TID_MASK;

	why[0] = '\0';
	if (word == 0 || (word & FUTEX_OWNER_DIED))
		return KV_HOLDER_NONE; /* glibc hands it to the next locker */
	if (tid == 0) {
		snprintf(why, cap, "lock word %#x names no thread", word);
		return KV_HOLDER_STALE;
	}
	self_ident();
	uint32_t me = tls_tid;
	uint32_t rtid = atomic_load_explicit(&h->owner_tid,
	                                     memory_order_acquire);
	uint64_t rstart = atomic_load_explicit(&h->owner_start,
	                                       memory_order_relaxed);
	uint32_t rns = atomic_load_explicit(&h->owner_pidns,
	                                    memory_order_relaxed);
	bool recorded = rtid == tid;
	/* First, since a tid of another namespace may equal any of ours. */
	if (recorded && rns != 0 && tls_pidns != 0 && rns != tls_pidns) {
		snprintf(why, cap,
		         "held by thread %u of another pid namespace", tid);
		return KV_HOLDER_LIVE;
	}
	/* Writers of several pid namespaces share this store: a holder that
	 * has not recorded itself yet may be one of another namespace,
	 * whose tid means nothing here. Never judge it stale. */
	bool mixed = atomic_load_explicit(&h->ns_mixed,
	                                  memory_order_relaxed) != 0;
	if (mixed && !recorded) {
		snprintf(why, cap,
		         "held by thread %u, not recorded as the holder, and "
		         "writers of several pid namespaces share the store",
		         tid);
		return KV_HOLDER_UNSURE;
	}
	if (tid == me) {
		if (tls_held > 0) {
			snprintf(why, cap, "held by this thread");
			return KV_HOLDER_LIVE;
		}
		snprintf(why, cap,
		         "lock word names this thread (%u), which does not "
		         "hold it", tid);
		return KV_HOLDER_STALE;
	}
	uint64_t start = 0;
	int t = kv__thread_start(tid, &start);
	if (t == KV_THREAD_GONE) {
		snprintf(why, cap, "held by thread %u, which no longer exists",
		         tid);
		return KV_HOLDER_STALE;
	}
	if (t != KV_THREAD_ALIVE) {
		snprintf(why, cap, "held by thread %u (cannot tell whether "
		         "it is alive)", tid);
		return KV_HOLDER_LIVE;
	}
	if (recorded && (rstart == 0 || start == rstart)) {
		snprintf(why, cap, "held by live thread %u", tid);
		return KV_HOLDER_LIVE;
	}
	/* Not recorded (or recorded by an earlier thread of the same id
	 * that died holding it, whose record a new holder has not yet
	 * replaced): the holder in the few stores before its record, or
	 * damage. Only a thread that maps nothing at all is surely no
	 * holder; what maps reports can differ from fstat through overlayfs
	 * or a btrfs subvolume, so "does not map it" is not proof. */
	int m = kv__thread_maps(tid, kv->os.dev, kv->os.ino);
	if (m == 2) {
		snprintf(why, cap,
		         "lock word names thread %u, a kernel thread", tid);
		return KV_HOLDER_STALE;
	}
	snprintf(why, cap,
	         "held by live thread %u, which has not recorded itself as "
	         "the holder, and whose process %s", tid,
	         m > 0    ? "maps the store"
	         : m == 0 ? "does not seem to map the store"
	                  : "we may not inspect");
	return KV_HOLDER_UNSURE;
}

/* Break a stale lock whose word was seen as `word`: what the kernel does
 * for a holder that exits. Returns true if this call broke it. */
static bool break_lock(struct kv *kv, uint32_t word, const char *why)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint32_t v = word;
	uint32_t dead = FUTEX_OWNER_DIED | (word & FUTEX_WAITERS);
	if (!atomic_compare_exchange_strong_explicit(lock_word(h), &v, dead,
	                                             memory_order_acq_rel,
	                                             memory_order_relaxed))
		return false;
	futex_wake_all(lock_word(h));
	atomic_fetch_add_explicit(&h->lock_repairs, 1, memory_order_relaxed);
	snprintf(kv->repair_note, sizeof kv->repair_note,
	         "broke a stale writer lock: %s", why);
	return true;
}

/* The repair word: (tid << 32) | low 32 bits of the thread's start. */
static bool repairer_gone(uint64_t w)
{
	uint32_t tid = (uint32_t)(w >> 32);
	uint64_t start = 0;
	if (tid == 0)
		return true;
	int t = kv__thread_start(tid, &start);
	if (t == KV_THREAD_GONE)
		return true;
	return t == KV_THREAD_ALIVE && (uint32_t)start != (uint32_t)w;
}

static int repair_enter(struct kv *kv, uint64_t deadline)
{
	struct kv_hdr *h = kv__hdr(kv);
	self_ident();
	uint32_t me = tls_tid;
	uint64_t mine = (uint64_t)me << 32 | (uint32_t)tls_start;
	for (;;) {
		uint64_t w = 0;
		if (atomic_compare_exchange_strong(&h->repair, &w, mine))
			return KV_OK;
		if (w == mine)
			return KV_OK; /* left by this very thread: ours */
		if (repairer_gone(w) &&
		    atomic_compare_exchange_strong(&h->repair, &w, mine))
			return KV_OK;
		if (kv__os_mono_ms() >= deadline)
			return KV_EBUSY;
		kv__os_sleep_ms(1);
	}
}

static void repair_leave(struct kv *kv)
{
	atomic_store(&kv__hdr(kv)->repair, 0);
}

/* Under the repair word: make a fresh mutex that the next locker takes
 * with EOWNERDEAD, so it recovers whatever the old one guarded. */
/* Under the repair word: make the mutex a fresh one that the next locker
 * takes with EOWNERDEAD, so it recovers whatever the old one guarded.
 *
 * Never let the mutex be free while its bytes are rewritten: a locker that
 * took it in that gap, and then the one handed EOWNERDEAD, would both hold
 * it. So the lock word is first taken (compare-and-swap from the value
 * seen to our own tid: glibc lockers then wait on it), the other bytes are
 * copied from a mutex made in private memory, the kind last, and only then
 * is the word turned to FUTEX_OWNER_DIED and the waiters woken. A reset
 * that dies half way leaves the word naming a dead thread: stale, and
 * broken as any other. */
static bool reset_mutex(struct kv *kv, const char *why)
{
	struct kv_hdr *h = kv__hdr(kv);
	pthread_mutex_t fresh;

	memset(&fresh, 0, sizeof fresh);
	if (kv__init_mutex(&fresh) != 0)
		return false;
	self_ident();
	uint32_t me = tls_tid & FUTEX_TID_MASK;
	uint32_t w = atomic_load_explicit(lock_word(h), memory_order_acquire);
	if (!atomic_compare_exchange_strong(lock_word(h), &w, me))
		return false; /* it moved: the caller looks again */
	const unsigned char *src = (const unsigned char *)&fresh;
	unsigned char *dst = (unsigned char *)kv__mutex(h);
	size_t kind_off = offsetof(pthread_mutex_t, __data.__kind);
	for (size_t i = sizeof(uint32_t); i < sizeof fresh; i++)
		if (i < kind_off || i >= kind_off + sizeof(int))
			atomic_store_explicit((_Atomic unsigned char *)(dst + i),
			                      src[i], memory_order_relaxed);
	atomic_store_explicit((_Atomic int *)(void *)&kv__mutex(h)->__data.__kind,
	                      fresh.__data.__kind, memory_order_release);
	/* From our own tid only: had someone else judged us stale and
	 * broken the word meanwhile, the lock is theirs to hand out. */
	uint32_t ours = me;
	if (!atomic_compare_exchange_strong(lock_word(h), &ours,
	                                    FUTEX_OWNER_DIED | FUTEX_WAITERS))
		return false;
	futex_wake_all(lock_word(h));
	atomic_fetch_add_explicit(&h->lock_repairs, 1, memory_order_relaxed);
	snprintf(kv->repair_note, sizeof kv->repair_note,
	         "reset the writer lock: %s", why);
	return true;
}

/* reset_mutex, again while the lock word keeps moving, until deadline. */
static int reset_until(struct kv *kv, const char *why, uint64_t deadline)
{
	while (!reset_mutex(kv, why)) {
		if (kv__os_mono_ms() >= deadline)
			return KV_EBUSY;
		kv__os_sleep_ms(1);
	}
	return KV_OK;
}

static int repair_mutex(struct kv *kv, uint64_t deadline)
{
	struct kv_hdr *h = kv__hdr(kv);
	int rc = repair_enter(kv, deadline);
	if (rc != KV_OK)
		return rc;
	if (!mutex_sane(h))
		rc = reset_until(kv, "its bytes were damaged", deadline);
	repair_leave(kv);
	return rc;
}

int kv__os_lock_attach(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t boot = kv__boot_tag();

	if (kv->rdonly)
		return KV_OK;
	/* Note writers from more than one pid namespace (see kv__judge). */
	self_ident();
	uint32_t ns = tls_pidns, first = 0;
	if (ns != 0 &&
	    !atomic_compare_exchange_strong(&h->attach_pidns, &first, ns) &&
	    first != ns)
		atomic_store(&h->ns_mixed, 1);
	if (boot == 0)
		return KV_OK;
	uint64_t was = atomic_load_explicit(&h->boot_tag, memory_order_acquire);
	if (was == boot)
		return KV_OK;
	/* 0: made by a process that could not read the boot id. Its lock may
	 * be in use right now, so it is claimed for this boot, not reset. */
	if (was == 0 && atomic_compare_exchange_strong(&h->boot_tag, &was, boot))
		return KV_OK;
	if (was == boot)
		return KV_OK;
	int rc = repair_enter(kv, kv__os_mono_ms() + KV_REPAIR_WAIT_MS);
	if (rc != KV_OK)
		return rc;
	if (atomic_load(&h->boot_tag) != boot) {
		/* Nothing of another boot is alive: the lock's holder, the
		 * daemon, the owners of reader-counter lines. The first
		 * read-write attach of this boot gets here before any
		 * process of this boot can have used them. */
		rc = reset_until(kv, "the store outlived a reboot, or comes "
		                     "from another machine",
		                 kv__os_mono_ms() + KV_REPAIR_WAIT_MS);
		if (rc != KV_OK) {
			repair_leave(kv);
			return rc;
		}
		atomic_store(&h->owner_tid, 0);
		atomic_store(&h->daemon_pid, 0);
		kv__rstat_reset(kv);
		atomic_store_explicit(&h->boot_tag, boot,
		                      memory_order_release);
	}
	repair_leave(kv);
	return KV_OK;
}

int kv__os_lock_create(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	if (kv__init_mutex(kv__mutex(h)) != 0)
		return KV_ESYS;
	/* The lock belongs to this boot (see kv__os_lock_attach). */
	atomic_store_explicit(&h->boot_tag, kv__boot_tag(),
	                      memory_order_relaxed);
	return KV_OK;
}

void kv__os_lock_detach(struct kv *kv)
{
	(void)kv; /* the mutex lives in the mapping */
}

void kv__os_lock_taken(struct kv *kv)
{
	tls_held++;
	record_owner(kv__hdr(kv));
}

void kv__os_lock_consistent(struct kv *kv)
{
	pthread_mutex_consistent(kv__mutex(kv__hdr(kv)));
}

void kv__os_lock_release(struct kv *kv)
{
	/* No record outlives its holder: a record names the holder, or
	 * nobody (see kv__judge). */
	atomic_store_explicit(&kv__hdr(kv)->owner_tid, 0,
	                      memory_order_release);
	if (tls_held > 0)
		tls_held--;
	pthread_mutex_unlock(kv__mutex(kv__hdr(kv)));
}

int kv__os_lock_acquire(struct kv *kv, uint64_t deadline)
{
	struct kv_hdr *h = kv__hdr(kv);

	/* Between slices of the wait, the holder is judged, and a stale lock
	 * is broken. */
	self_ident();
	unsigned slice = KV_SLICE_MIN_MS;
	for (;;) {
		if (!mutex_sane(h)) {
			int rc = repair_mutex(kv, deadline);
			if (rc != KV_OK)
				return rc;
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += (long)slice * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		int e = pthread_mutex_timedlock(kv__mutex(h), &until);
		if (e == 0)
			return KV_OK;
		if (e == EOWNERDEAD) {
			tsan_owner_dead_acquired(kv__mutex(h));
			return KV_LOCK_DIED;
		}
		if (kv__os_mono_ms() >= deadline)
			return KV_EBUSY;
		if (e == ETIMEDOUT) {
			char why[160];
			uint32_t w = atomic_load_explicit(
			    lock_word(h), memory_order_acquire);
			if (kv__judge(kv, w, why, sizeof why) ==
			    KV_HOLDER_STALE)
				(void)break_lock(kv, w, why);
			if (slice < KV_SLICE_MAX_MS)
				slice *= 2;
			continue;
		}
		/* ENOTRECOVERABLE, EINVAL, EDEADLK...: bytes glibc cannot
		 * work with. Reset them, once the repair word is ours. */
		int rc = repair_enter(kv, deadline);
		if (rc != KV_OK)
			return rc;
		if (!mutex_sane(h))
			(void)reset_mutex(kv, e == ENOTRECOVERABLE
			                          ? "it was marked not recoverable"
			                          : "its bytes were damaged");
		repair_leave(kv);
		kv__os_sleep_ms(1);
	}
}

int kv__os_lock_try(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);

	self_ident();
	if (!mutex_sane(h)) {
		int rc = repair_mutex(kv, kv__os_mono_ms() + 10);
		if (rc != KV_OK)
			return KV_EBUSY; /* someone else is at it */
	}
	int e = pthread_mutex_trylock(kv__mutex(h));
	if (e == 0 || e == EOWNERDEAD)
		kv->unsure_word = 0; /* whatever we saw held has moved */
	if (e == 0)
		return KV_OK;
	if (e == EOWNERDEAD)
		return KV_LOCK_DIED; /* ThreadSanitizer's trylock saw it taken */
	if (e != EBUSY) {
		if (repair_enter(kv, kv__os_mono_ms() + 10) == KV_OK) {
			if (!mutex_sane(h))
				(void)reset_mutex(kv, "its bytes were damaged");
			repair_leave(kv);
		}
		return KV_EBUSY;
	}
	char why[160];
	uint32_t w = atomic_load_explicit(lock_word(h), memory_order_acquire);
	enum kv_holder j = kv__judge(kv, w, why, sizeof why);
	if (j == KV_HOLDER_UNSURE) {
		uint64_t now = kv__os_mono_ms();
		if (w != kv->unsure_word) {
			kv->unsure_word = w;
			kv->unsure_since = now;
		} else if (now - kv->unsure_since >= KV_UNSURE_BREAK_MS) {
			snprintf(why + strlen(why), sizeof why - strlen(why),
			         ", for %d ms", KV_UNSURE_BREAK_MS);
			j = KV_HOLDER_STALE;
		}
	} else {
		kv->unsure_word = 0;
	}
	if (j == KV_HOLDER_STALE)
		(void)break_lock(kv, w, why);
	return KV_EBUSY;
}

int kv__break_unsure(struct kv *kv, unsigned settle_ms)
{
	struct kv_hdr *h = kv__hdr(kv);
	char why[160];

	if (kv->rdonly)
		return KV_ERDONLY;
	uint32_t w = atomic_load_explicit(lock_word(h), memory_order_acquire);
	uint32_t r = atomic_load_explicit(&h->owner_tid, memory_order_acquire);
	enum kv_holder j = kv__judge(kv, w, why, sizeof why);
	if (j == KV_HOLDER_STALE) {
		(void)break_lock(kv, w, why);
		return KV_OK;
	}
	if (j != KV_HOLDER_UNSURE)
		return j == KV_HOLDER_LIVE ? KV_EBUSY : KV_OK;
	/* The same word and record for settle_ms: nobody is moving. */
	kv__os_sleep_ms(settle_ms);
	if (atomic_load(lock_word(h)) != w || atomic_load(&h->owner_tid) != r)
		return KV_EBUSY;
	snprintf(why + strlen(why), sizeof why - strlen(why),
	         "; broken on request");
	return break_lock(kv, w, why) ? KV_OK : KV_EBUSY;
}

int kv__lock_state(struct kv *kv, char *why, size_t cap)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t boot = kv__boot_tag();

	if (!mutex_sane(h)) {
		snprintf(why, cap, "writer lock is damaged (its bytes are not "
		         "a mutex this build made)");
		return KV_HOLDER_STALE;
	}
	uint64_t tag = atomic_load(&h->boot_tag);
	if (boot != 0 && tag != 0 && tag != boot) {
		snprintf(why, cap, "writer lock belongs to another boot (the "
		         "store outlived a reboot)");
		return KV_HOLDER_STALE;
	}
	uint32_t w = atomic_load_explicit(lock_word(h), memory_order_acquire);
	char sub[160];
	enum kv_holder j = kv__judge(kv, w, sub, sizeof sub);
	if (j == KV_HOLDER_NONE && (w & FUTEX_OWNER_DIED)) {
		snprintf(why, cap, "writer lock was left by a writer that "
		         "died; the next writer recovers it");
		return KV_HOLDER_STALE;
	}
	snprintf(why, cap, "writer lock %s", j == KV_HOLDER_NONE ? "free" : sub);
	return (int)j;
}

