/*
 * lock.c - the writer lock, the redo journal, and recovery from a writer
 * that died holding the lock. This is the one place that handles
 * EOWNERDEAD.
 *
 * How a write works
 * -----------------
 * A writer holds the robust mutex for the whole operation and changes the
 * store in four steps:
 *
 *   1. tx_begin: journal state := BUILD. If the new item goes into a chunk
 *      popped from a free list, the chunk's free-list link is saved in the
 *      journal (pend_chunk, pend_next) before the chunk is overwritten.
 *      The item's bytes are written into the chunk; no reader can reach it.
 *   2. mark_odd: every bucket the operation will change gets an odd
 *      sequence number, so a lock-free reader that looks at it retries.
 *      The range is recorded in the journal first.
 *   3. The writer records each word it will change as (offset, new value)
 *      in the journal, then stores state := COMMIT (release). This is the
 *      commit point. Then it applies the words in order.
 *   4. mark_even, then state := IDLE.
 *
 * What recovery does
 * ------------------
 * When pthread_mutex_lock returns EOWNERDEAD the previous holder died
 * somewhere in those steps. kv__recover looks at the journal:
 *
 *   - IDLE: it died outside an operation; nothing to do.
 *   - BUILD: nothing visible has changed. If it had started filling a
 *     chunk popped from a free list, that chunk's link is put back. The
 *     operation is lost, as it was never acknowledged.
 *   - COMMIT: the operation is finished by applying every recorded word
 *     again. Each is an absolute value, so applying it twice is the same as
 *     once, and recovery may itself be killed and rerun.
 *
 * Then every bucket left odd is made even, and the journal is reset. A
 * writer killed at any instruction thus loses at most its own operation,
 * recovery costs a bounded amount of work, and readers (who never wait on
 * the lock) only ever retried the few buckets the dead writer held odd.
 *
 * Memory ordering: a SIGKILLed process's stores to a shared mapping are not
 * lost (they are in the page cache, not in the process), so the journal
 * state seen by recovery is exactly what the writer had stored. The release
 * stores on state keep the compiler and CPU from reordering the entries
 * after the commit.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "kv_internal.h"


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

int kv__crash_armed;

void kv__crash_arm(int point)
{
	kv__crash_armed = point;
}

void kv__crash_fire(int point)
{
	(void)point;
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

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
 *   - a tid with no thread behind it (or a zombie) is gone;
 *   - a tid whose thread started after the start time the holder recorded
 *     (the lock record, written right after taking the lock) was reused;
 *   - a tid that did not record itself and whose process does not map this
 *     store cannot be holding its lock.
 *
 * A stale lock is broken exactly as the kernel would have done it had the
 * holder exited normally: one compare-and-swap of the word from the value
 * judged to FUTEX_OWNER_DIED (keeping the waiters bit), then a wake-up. The
 * next locker, whoever it is, gets EOWNERDEAD and runs the one recovery
 * (kv__recover), so the journal is replayed or rolled back and every bucket
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
 * judged: its tid means nothing here. A holder that took the lock but has
 * not yet written its record (a window of a few instructions, but one a
 * debugger may hold open for minutes), and whose process maps the store or
 * may not be inspected, cannot be told from damage that named a live
 * thread. Such a lock is "unsure": libkv calls answer KV_EBUSY; kvd breaks
 * it only after seeing it unchanged for KV_UNSURE_BREAK_MS; and an
 * operator who knows no writer is stopped breaks it at once with
 * `kv check --repair` (kv__break_unsure).
 */
#define KV_LOCK_WAIT_MS 1500 /* longest wait for the writer lock */
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
/* Elision bits of __kind, which a process's tunables may set or not. */
#define KV_KIND_ELISION_MASK 0x300

static _Thread_local unsigned tls_held; /* kv writer locks this thread holds */
static _Thread_local uint32_t tls_tid;
static _Thread_local uint64_t tls_start;
static _Thread_local uint32_t tls_pidns;

static _Atomic uint32_t *lock_word(struct kv_hdr *h)
{
	return (_Atomic uint32_t *)(void *)&h->mutex.__data.__lock;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
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
		k = m.__data.__kind & ~KV_KIND_ELISION_MASK;
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
	    (_Atomic int *)(void *)&h->mutex.__data.__kind,
	    memory_order_relaxed);
	int owner = atomic_load_explicit(
	    (_Atomic int *)(void *)&h->mutex.__data.__owner,
	    memory_order_relaxed);
	return (kind & ~KV_KIND_ELISION_MASK) == expected_kind() &&
	       owner != KV_MUTEX_NOTRECOVERABLE;
}

/* This thread's identity, for the lock record. tid is the one glibc put in
 * the lock word; the rest is read from /proc once per thread (and again in
 * a forked child, whose tid differs). */
static void self_ident(uint32_t tid)
{
	if (tls_tid == tid)
		return;
	uint64_t start = 0;
	if (kv__thread_start(tid, &start) != KV_THREAD_ALIVE)
		start = 0;
	tls_start = start;
	tls_pidns = kv__pidns();
	tls_tid = tid;
}

static void record_owner(struct kv_hdr *h)
{
	uint32_t tid = atomic_load_explicit(lock_word(h),
	                                    memory_order_relaxed) &
	               FUTEX_TID_MASK;
	self_ident(tid);
	atomic_store_explicit(&h->owner_start, tls_start,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->owner_pidns, tls_pidns,
	                      memory_order_relaxed);
	atomic_store_explicit(&h->owner_tid, tid, memory_order_release);
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
	uint32_t me = kv__gettid();
	uint32_t rtid = atomic_load_explicit(&h->owner_tid,
	                                     memory_order_acquire);
	uint64_t rstart = atomic_load_explicit(&h->owner_start,
	                                       memory_order_relaxed);
	uint32_t rns = atomic_load_explicit(&h->owner_pidns,
	                                    memory_order_relaxed);
	self_ident(me);
	/* First, since a tid of another namespace may equal any of ours. */
	if (rtid == tid && rns != 0 && tls_pidns != 0 && rns != tls_pidns) {
		snprintf(why, cap,
		         "held by thread %u of another pid namespace", tid);
		return KV_HOLDER_LIVE;
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
	if (rtid == tid) {
		if (rstart == 0 || start == rstart) {
			snprintf(why, cap, "held by live thread %u", tid);
			return KV_HOLDER_LIVE;
		}
		snprintf(why, cap,
		         "held by thread %u, which is gone (its id now names "
		         "a thread started later)", tid);
		return KV_HOLDER_STALE;
	}
	int m = kv__thread_maps(tid, kv->dev, kv->ino);
	if (m == 0) {
		snprintf(why, cap,
		         "lock word names thread %u, whose process does not "
		         "map this store", tid);
		return KV_HOLDER_STALE;
	}
	snprintf(why, cap,
	         "held by live thread %u, which has not recorded itself as "
	         "the holder, and whose process %s", tid,
	         m > 0 ? "maps the store" : "we may not inspect");
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
	uint32_t me = kv__gettid();
	self_ident(me);
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
		if (mono_ms() >= deadline)
			return KV_EBUSY;
		sleep_ms(1);
	}
}

static void repair_leave(struct kv *kv)
{
	atomic_store(&kv__hdr(kv)->repair, 0);
}

/* Under the repair word: make a fresh mutex that the next locker takes
 * with EOWNERDEAD, so it recovers whatever the old one guarded. */
static void reset_mutex(struct kv *kv, const char *why)
{
	struct kv_hdr *h = kv__hdr(kv);
	kv__init_mutex(&h->mutex);
	atomic_store_explicit(lock_word(h), FUTEX_OWNER_DIED,
	                      memory_order_release);
	futex_wake_all(lock_word(h));
	atomic_fetch_add_explicit(&h->lock_repairs, 1, memory_order_relaxed);
	snprintf(kv->repair_note, sizeof kv->repair_note,
	         "reset the writer lock: %s", why);
}

static int repair_mutex(struct kv *kv, uint64_t deadline)
{
	struct kv_hdr *h = kv__hdr(kv);
	int rc = repair_enter(kv, deadline);
	if (rc != KV_OK)
		return rc;
	if (!mutex_sane(h))
		reset_mutex(kv, "its bytes were damaged");
	repair_leave(kv);
	return KV_OK;
}

int kv__boot_check(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	uint64_t boot = kv__boot_tag();

	if (kv->rdonly || boot == 0)
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
	int rc = repair_enter(kv, mono_ms() + KV_REPAIR_WAIT_MS);
	if (rc != KV_OK)
		return rc;
	if (atomic_load(&h->boot_tag) != boot) {
		/* Nothing of another boot is alive: the lock's holder, the
		 * daemon, the owners of reader-counter lines. The first
		 * read-write attach of this boot gets here before any
		 * process of this boot can have used them. */
		reset_mutex(kv, "the store outlived a reboot, or comes from "
		                "another machine");
		atomic_store(&h->owner_tid, 0);
		atomic_store(&h->daemon_pid, 0);
		kv__rstat_reset(kv);
		atomic_store_explicit(&h->boot_tag, boot,
		                      memory_order_release);
	}
	repair_leave(kv);
	return KV_OK;
}

static int got_lock(struct kv *kv, bool owner_died)
{
	struct kv_hdr *h = kv__hdr(kv);

	if (owner_died)
		tsan_owner_dead_acquired(&h->mutex);
	tls_held++;
	record_owner(h);
	int rc = KV_OK;
	if (owner_died ||
	    atomic_load_explicit(&kv__journal(kv)->state,
	                         memory_order_acquire) != KV_J_IDLE) {
		/* A holder died, or the journal is not at rest under a lock
		 * nobody died holding (the bytes were changed behind our
		 * back): repair as after a death. */
		rc = kv__recover(kv);
	}
	if (owner_died)
		pthread_mutex_consistent(&h->mutex);
	if (rc == KV_OK && kv__dead(kv))
		rc = KV_EDESTROYED;
	if (rc != KV_OK)
		kv__unlock(kv);
	return rc;
}

int kv__lock(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);

	if (kv->rdonly)
		return KV_ERDONLY;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	/* Bounded: a live writer holds the lock for microseconds (a page
	 * steal or a flush slice for milliseconds). Between slices of the
	 * wait, the holder is judged, and a stale lock is broken. */
	uint64_t now = mono_ms(), deadline = now + KV_LOCK_WAIT_MS;
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
		int e = pthread_mutex_timedlock(&h->mutex, &until);
		if (e == 0)
			return got_lock(kv, false);
		if (e == EOWNERDEAD)
			return got_lock(kv, true);
		now = mono_ms();
		if (now >= deadline)
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
		if (e == ENOTRECOVERABLE || !mutex_sane(h))
			reset_mutex(kv, e == ENOTRECOVERABLE
			                    ? "it was marked not recoverable"
			                    : "its bytes were damaged");
		repair_leave(kv);
		sleep_ms(1);
	}
}

void kv__unlock(struct kv *kv)
{
	if (tls_held > 0)
		tls_held--;
	pthread_mutex_unlock(&kv__hdr(kv)->mutex);
}

int kv__maintain_lock(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);

	if (!mutex_sane(h)) {
		int rc = repair_mutex(kv, mono_ms() + 10);
		if (rc != KV_OK)
			return KV_OK; /* someone else is at it */
	}
	int e = pthread_mutex_trylock(&h->mutex);
	if (e == 0 || e == EOWNERDEAD) {
		int rc = got_lock(kv, e == EOWNERDEAD);
		if (rc == KV_OK)
			kv__unlock(kv);
		return rc;
	}
	if (e != EBUSY) {
		if (repair_enter(kv, mono_ms() + 10) == KV_OK) {
			reset_mutex(kv, "it was marked not recoverable");
			repair_leave(kv);
		}
		return KV_OK;
	}
	char why[160];
	uint32_t w = atomic_load_explicit(lock_word(h), memory_order_acquire);
	enum kv_holder j = kv__judge(kv, w, why, sizeof why);
	if (j == KV_HOLDER_UNSURE) {
		uint64_t now = mono_ms();
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
	return KV_OK;
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
	sleep_ms(settle_ms);
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

void kv__tx_begin(struct kv *kv, uint32_t op)
{
	struct kv_journal *j = kv__journal(kv);

	j->n = 0;
	j->op = op;
	if (++kv->txgen == 0) { /* wrapped: forget every old entry */
		memset(kv->txmap, 0, KV_TXMAP_SIZE * sizeof *kv->txmap);
		kv->txgen = 1;
	}
	j->pend_chunk = 0;
	j->pend_next = 0;
	j->odd_count = 0;
	atomic_store_explicit(&j->state, KV_J_BUILD, memory_order_release);
	KV_CRASHPOINT(1);
}

static uint32_t txmap_hash(uint64_t off)
{
	return (uint32_t)(((off >> 2) * UINT64_C(0x9e3779b97f4a7c15)) >> 52) &
	       (KV_TXMAP_SIZE - 1);
}

static void tx_add(struct kv *kv, uint64_t off, uint64_t val)
{
	struct kv_journal *j = kv__journal(kv);

	/* Every operation records a bounded number of words (a probe path of
	 * at most KV_MAX_PROBE buckets plus a few counters). */
	assert(j->n < KV_LOG_MAX);
	if (j->n >= KV_LOG_MAX)
		return; /* unreachable: operations are sized to fit */
	j->ent[j->n].off = off;
	j->ent[j->n].val = val;
	/* Index it: the latest entry for an offset wins. */
	uint64_t key = off & ~KV_LOG_W32;
	for (uint32_t h = txmap_hash(key);; h = (h + 1) & (KV_TXMAP_SIZE - 1)) {
		struct kv_txmap *m = &kv->txmap[h];
		if (m->gen != kv->txgen || m->off == key) {
			m->gen = kv->txgen;
			m->off = key;
			m->idx = j->n;
			break;
		}
	}
	j->n++;
}

uint32_t kv__tx_room(struct kv *kv)
{
	return KV_LOG_MAX - kv__journal(kv)->n;
}

void kv__tx_put64(struct kv *kv, const void *addr, uint64_t val)
{
	tx_add(kv, kv__off(kv, addr), val);
}

void kv__tx_put32(struct kv *kv, const void *addr, uint32_t val)
{
	tx_add(kv, kv__off(kv, addr) | KV_LOG_W32, val);
}

/* Is off a place the journal may write: an aligned word inside the
 * writer-owned parts of the mapping? Journal bytes are untrusted. */
static bool log_target_ok(const struct kv *kv, uint64_t off, bool w32)
{
	uint64_t w = w32 ? 4 : 8;
	if (off % w != 0 || off > kv->size - w)
		return false;
	if (off >= offsetof(struct kv_hdr, page_bump) &&
	    off < offsetof(struct kv_hdr, class_size))
		return true;
	if (off >= KV_CLASS_OFF && off < KV_JOURNAL_OFF)
		return true;
	if (off >= kv->index_off && off < kv->arena_end)
		return true;
	return false;
}

static int apply(struct kv *kv, uint32_t n)
{
	struct kv_journal *j = kv__journal(kv);
	int rc = KV_OK;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = j->ent[i].off & ~KV_LOG_W32;
		bool w32 = (j->ent[i].off & KV_LOG_W32) != 0;
		if (!log_target_ok(kv, off, w32)) {
			rc = KV_ECORRUPT;
			continue;
		}
		if (w32)
			atomic_store_explicit(
			    (_Atomic uint32_t *)(void *)(kv->base + off),
			    (uint32_t)j->ent[i].val, memory_order_relaxed);
		else
			atomic_store_explicit(
			    (_Atomic uint64_t *)(void *)(kv->base + off),
			    j->ent[i].val, memory_order_relaxed);
		if (i == 0)
			KV_CRASHPOINT(7);
	}
	atomic_thread_fence(memory_order_release);
	return rc;
}

void kv__tx_commit(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);

	KV_CRASHPOINT(5);
	atomic_store_explicit(&j->state, KV_J_COMMIT, memory_order_release);
	KV_CRASHPOINT(6);
	(void)apply(kv, j->n);
	KV_CRASHPOINT(8);
}

void kv__tx_end(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);

	KV_CRASHPOINT(9);
	j->pend_chunk = 0;
	j->odd_count = 0;
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	j->n = 0;
	KV_CRASHPOINT(10);
}

void kv__mark_odd(struct kv *kv, uint64_t first, uint32_t count)
{
	struct kv_journal *j = kv__journal(kv);

	j->odd_first = first;
	j->odd_count = count;
	atomic_thread_fence(memory_order_release);
	for (uint32_t i = 0; i < count; i++) {
		struct kv_bucket *b = kv__bucket(kv, kv__badd(kv, first, i));
		uint32_t s = atomic_load_explicit(&b->seq,
		                                  memory_order_relaxed);
		atomic_store_explicit(&b->seq, s | 1u, memory_order_relaxed);
		if (i == 0)
			KV_CRASHPOINT(4);
	}
	/* The odd sequence numbers must be visible before any change to the
	 * buckets they guard. */
	atomic_thread_fence(memory_order_release);
}

void kv__make_even(struct kv *kv, uint64_t first, uint64_t count)
{
	if (count > kv->nbuckets)
		count = kv->nbuckets;
	for (uint64_t i = 0; i < count; i++) {
		struct kv_bucket *b = kv__bucket(kv, kv__badd(kv, first, i));
		uint32_t s = atomic_load_explicit(&b->seq,
		                                  memory_order_relaxed);
		if (s & 1u)
			atomic_store_explicit(&b->seq, s + 1,
			                      memory_order_release);
	}
}

void kv__mark_even(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);
	kv__make_even(kv, j->odd_first, j->odd_count);
}

int kv__recover(struct kv *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	struct kv_journal *j = kv__journal(kv);
	int rc = KV_OK;

	uint32_t state = atomic_load_explicit(&j->state, memory_order_acquire);
	if (state == KV_J_COMMIT) {
		if (j->n > KV_LOG_MAX)
			rc = KV_ECORRUPT;
		else
			rc = apply(kv, j->n);
	} else if (state == KV_J_BUILD && j->pend_chunk != 0) {
		uint64_t c = j->pend_chunk;
		if (c >= kv->arena_off && c % KV_CHUNK_ALIGN == 0 &&
		    c + KV_MIN_CHUNK <= kv->arena_end) {
			/* Still on its page's free list: mark it free again
			 * and put back the link the new item overwrote. */
			atomic_store_explicit(
			    (_Atomic uint32_t *)(void *)(kv->base + c + 4), 0,
			    memory_order_relaxed);
			atomic_store_explicit(
			    (_Atomic uint64_t *)(void *)(kv->base + c +
			                                 KV_FREE_LINK),
			    j->pend_next, memory_order_relaxed);
		} else {
			rc = KV_ECORRUPT;
		}
	} else if (state != KV_J_IDLE && state != KV_J_BUILD) {
		rc = KV_ECORRUPT;
	}

	/* Make every odd bucket even. The journal names the range the dead
	 * writer held, but a full pass costs one load per cache line and also
	 * heals a range the writer had not yet recorded completely. */
	kv__make_even(kv, 0, kv->nbuckets);
	j->pend_chunk = 0;
	j->odd_count = 0;
	j->n = 0;
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	atomic_fetch_add_explicit(&h->recoveries, 1, memory_order_relaxed);
	return rc;
}

static bool tx_lookup(struct kv *kv, uint64_t off, uint64_t *val)
{
	struct kv_journal *j = kv__journal(kv);

	/* Only an open transaction's own entries count; between transactions
	 * the log holds the last one's, already applied. */
	if (atomic_load_explicit(&j->state, memory_order_relaxed) !=
	    KV_J_BUILD)
		return false;
	for (uint32_t h = txmap_hash(off);; h = (h + 1) & (KV_TXMAP_SIZE - 1)) {
		const struct kv_txmap *m = &kv->txmap[h];
		if (m->gen != kv->txgen)
			return false;
		if (m->off == off && m->idx < j->n && m->idx < KV_LOG_MAX) {
			*val = j->ent[m->idx].val;
			return true;
		}
	}
}

uint64_t kv__tx_get64(struct kv *kv, const void *addr)
{
	uint64_t v;
	if (tx_lookup(kv, kv__off(kv, addr), &v))
		return v;
	return atomic_load_explicit((const _Atomic uint64_t *)addr,
	                            memory_order_relaxed);
}

uint32_t kv__tx_get32(struct kv *kv, const void *addr)
{
	uint64_t v;
	if (tx_lookup(kv, kv__off(kv, addr), &v))
		return (uint32_t)v;
	return atomic_load_explicit((const _Atomic uint32_t *)addr,
	                            memory_order_relaxed);
}
