/*
 * lock.c - taking the writer lock, the redo journal, and recovery from a
 * writer that died holding the lock. The lock itself is the platform's
 * (os.h: a robust mutex in the header on Linux, a named mutex on Windows);
 * whatever it reports, this is the one place that acts on a dead holder
 * (got_lock), with one recovery for every platform.
 *
 * How a write works
 * -----------------
 * A writer holds the writer lock for the whole operation and changes the
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
 * When the lock reports that its holder died (EOWNERDEAD, WAIT_ABANDONED,
 * or a stale lock broken by lock_posix.c), the previous holder died
 * somewhere in those steps. kv__recover_locked looks at the journal:
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
 * Memory ordering: a killed process's stores to a shared mapping are not
 * lost (they are in the page cache, not in the process), so the journal
 * state seen by recovery is exactly what the writer had stored. The release
 * stores on state keep the compiler and CPU from reordering the entries
 * after the commit.
 */
#include <assert.h>
#include <string.h>

#include "kv_internal.h"
#include "os.h"


int kv__crash_armed;

void kv__crash_arm(int point)
{
	kv__crash_armed = point;
}

void kv__crash_fire(int point)
{
	(void)point;
	kv__os_die();
}

#define KV_LOCK_WAIT_MS 1500 /* longest wait for the writer lock */
#define KV_RESIZE_WAIT_MS 120000 /* and for a resizer's rebuild, more */
#define KV_RESIZE_BEAT_MS 500    /* while it beats at least this often */

/* The lock is ours: record it, repair what a dead holder (or damage) left,
 * and refuse a destroyed store. On failure the lock is given back. */
static int got_lock(struct kv *kv, bool died)
{
	kv__os_lock_taken(kv);
	/* A resize its writer did not finish first: until it is, the
	 * geometry does not fit together and nobody can follow it. Then
	 * follow a resize made since this handle last looked, before
	 * anything reads the index or the journal's offsets; and again
	 * after recovery, which may have finished one. */
	int rc = kv__finish_resize_locked(kv);
	if (rc == KV_OK)
		rc = kv__sync(kv);
	if (rc == KV_OK && (died ||
	    atomic_load_explicit(&kv__journal(kv)->state,
	                         memory_order_acquire) != KV_J_IDLE)) {
		/* A holder died, or the journal is not at rest under a lock
		 * nobody died holding (the bytes were changed behind our
		 * back): repair as after a death. */
		rc = kv__recover_locked(kv);
		if (rc == KV_OK)
			rc = kv__sync(kv);
	}
	if (died)
		kv__os_lock_consistent(kv);
	/* A resizer's mark outlives it only if it died holding the lock. */
	if (atomic_load_explicit(&kv__hdr(kv)->resizing, memory_order_relaxed))
		atomic_store_explicit(&kv__hdr(kv)->resizing, 0,
		                      memory_order_relaxed);
	if (rc == KV_OK && kv__dead(kv))
		rc = KV_EDESTROYED;
	if (rc != KV_OK)
		kv__os_lock_release(kv);
	return rc;
}

int kv__lock(struct kv *kv)
{
	return kv__lock_until(kv, 0);
}

int kv__lock_until(struct kv *kv, uint64_t deadline_ns)
{
	if (kv->rdonly)
		return KV_ERDONLY;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	/* Bounded: a live writer holds the lock for microseconds (a page
	 * steal or a flush slice for milliseconds); a holder that is gone is
	 * found and its lock repaired on the way (os.h). A call that does
	 * many lookups passes its own, earlier, deadline. */
	uint64_t until = kv__os_mono_ms() + KV_LOCK_WAIT_MS;
	if (deadline_ns != 0 && deadline_ns / 1000000u < until)
		until = deadline_ns / 1000000u;
	int rc = kv__os_lock_acquire(kv, until);
	/* A resizer rebuilds the index under the lock, for about 0.2 s per
	 * million keys: wait for it (it is alive, or the lock would have
	 * been found dead) unless the caller set its own deadline. */
	while (rc == KV_EBUSY && deadline_ns == 0) {
		uint32_t pid = atomic_load_explicit(&kv__hdr(kv)->resizing,
		                                    memory_order_relaxed);
		/* Only while it shows progress: a resizing word left by
		 * damage, or naming a process that is not resizing, costs
		 * the usual wait, not minutes. */
		uint64_t beat = atomic_load_explicit(
		    &kv__hdr(kv)->resize_beat, memory_order_relaxed);
		uint64_t now = kv__os_mono_ms();
		if (pid == 0 || beat > now || now - beat > KV_RESIZE_BEAT_MS ||
		    now > until + KV_RESIZE_WAIT_MS || kv__os_pid_gone(pid))
			break;
		rc = kv__os_lock_acquire(kv, beat + KV_RESIZE_BEAT_MS);
	}
	if (rc != KV_OK && rc != KV_LOCK_DIED)
		return rc;
	return got_lock(kv, rc == KV_LOCK_DIED);
}

void kv__unlock(struct kv *kv)
{
	kv__os_lock_release(kv);
}

int kv__maintain_lock(struct kv *kv)
{
	int rc = kv__os_lock_try(kv);
	if (rc == KV_EBUSY)
		return KV_OK; /* a live writer; or a stale lock, now broken */
	if (rc != KV_OK && rc != KV_LOCK_DIED)
		return rc;
	rc = got_lock(kv, rc == KV_LOCK_DIED);
	if (rc == KV_OK)
		kv__unlock(kv);
	return rc;
}

void kv__tx_begin_locked(struct kv *kv, uint32_t op)
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

void kv__tx_chain_locked(struct kv *kv, uint64_t first, uint64_t count,
                         uint32_t cls, uint64_t owner)
{
	struct kv_journal *j = kv__journal(kv);

	assert(j->n + 2 <= KV_LOG_MAX);
	if (j->n + 2 > KV_LOG_MAX)
		return; /* unreachable: operations are sized to fit */
	/* Not indexed: kv__tx_get does not see a chain entry's words, so a
	 * transaction reads no page it names after naming it. */
	j->ent[j->n].off = KV_LOG_CHAIN | first;
	j->ent[j->n].val = count;
	j->ent[j->n + 1].off = cls;
	j->ent[j->n + 1].val = owner;
	j->n += 2;
}

/* Apply the chain entry at ent[i] (see KV_LOG_CHAIN). Its words are
 * untrusted like any journal word: a page outside the table, a link out
 * of it or a class other than the two a chain may set stop it. */
static bool apply_chain(struct kv *kv, const struct kv_logent *e)
{
	uint64_t p = e[0].off & ~(KV_LOG_CHAIN | KV_LOG_W32);
	uint64_t count = e[0].val;
	uint64_t cls = e[1].off, owner = e[1].val;

	if (count > kv->npages || (cls != KV_PAGE_FREE && cls != KV_PAGE_LARGE))
		return false;
	for (uint64_t n = 0; n < count; n++) {
		if (p >= kv->npages)
			return false;
		struct kv_page *pg = kv__page(kv, p);
		atomic_store_explicit(&pg->cls, (uint32_t)cls,
		                      memory_order_release);
		atomic_store_explicit(&pg->free_head, owner,
		                      memory_order_release);
		p = (uint64_t)atomic_load_explicit(&pg->next,
		                                   memory_order_relaxed) - 1;
	}
	return true;
}

uint32_t kv__tx_room_locked(struct kv *kv)
{
	return KV_LOG_MAX - kv__journal(kv)->n;
}

void kv__tx_put64_locked(struct kv *kv, const void *addr, uint64_t val)
{
	tx_add(kv, kv__off(kv, addr), val);
}

void kv__tx_put32_locked(struct kv *kv, const void *addr, uint32_t val)
{
	tx_add(kv, kv__off(kv, addr) | KV_LOG_W32, val);
}

void kv__tx_put64u_locked(struct kv *kv, const void *addr, uint64_t val)
{
	if (kv__off(kv, addr) % 8 == 0) {
		kv__tx_put64_locked(kv, addr, val);
	} else {
		kv__tx_put32_locked(kv, addr, (uint32_t)val);
		kv__tx_put32_locked(kv, (const uint8_t *)addr + 4,
		                    (uint32_t)(val >> 32));
	}
}

/* Is off a place the journal may write: an aligned word inside the
 * writer-owned parts of the mapping? Journal bytes are untrusted. A
 * resize's transaction writes only header words, the geometry among
 * them (resize.c); every other writes no geometry. */
static bool log_target_ok(const struct kv *kv, uint64_t off, bool w32,
                          uint32_t op)
{
	uint64_t w = w32 ? 4 : 8;
	if (off % w != 0 || off > kv->size - w)
		return false;
	if (off >= offsetof(struct kv_hdr, page_bump) &&
	    off < offsetof(struct kv_hdr, class_size))
		return true;
	if (op == KV_TX_RESIZE)
		return !w32 && (off == offsetof(struct kv_hdr, map_size) ||
		                off == offsetof(struct kv_hdr, index_off) ||
		                off == offsetof(struct kv_hdr, nbuckets) ||
		                off == offsetof(struct kv_hdr, ptab_off) ||
		                off == offsetof(struct kv_hdr, npages) ||
		                off == offsetof(struct kv_hdr, gen));
	if (off >= KV_CLASS_OFF && off < KV_JOURNAL_OFF)
		return true;
	return off >= kv->arena_off &&
	       off < kv->index_off + kv__tail_bytes(kv->nbuckets, kv->npages,
	                                            kv->page_size);
}

static int apply(struct kv *kv, uint32_t n)
{
	struct kv_journal *j = kv__journal(kv);
	uint32_t op = j->op;
	int rc = KV_OK;

	for (uint32_t i = 0; i < n; i++) {
		if (j->ent[i].off & KV_LOG_CHAIN) {
			if (op == KV_TX_RESIZE || i + 1 >= n ||
			    !apply_chain(kv, &j->ent[i]))
				rc = KV_ECORRUPT;
			i++;
			continue;
		}
		uint64_t off = j->ent[i].off & ~KV_LOG_W32;
		bool w32 = (j->ent[i].off & KV_LOG_W32) != 0;
		if (!log_target_ok(kv, off, w32, op)) {
			rc = KV_ECORRUPT;
			continue;
		}
		if (w32)
			atomic_store_explicit(
			    (_Atomic uint32_t *)(void *)(kv->base + off),
			    (uint32_t)j->ent[i].val, memory_order_release);
		else
			atomic_store_explicit(
			    (_Atomic uint64_t *)(void *)(kv->base + off),
			    j->ent[i].val, memory_order_release);
		if (i == 0)
			KV_CRASHPOINT(7);
		if (i == 2) /* a resize's: mid-geometry (resize.c) */
			KV_CRASHPOINT(13);
	}
	atomic_thread_fence(memory_order_release);
	return rc;
}

void kv__tx_commit_locked(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);

	KV_CRASHPOINT(5);
	atomic_store_explicit(&j->state, KV_J_COMMIT, memory_order_release);
	KV_CRASHPOINT(6);
	(void)apply(kv, j->n);
	KV_CRASHPOINT(8);
}

void kv__tx_abort_locked(struct kv *kv)
{
	/* Before COMMIT and before any bucket was made odd or chunk
	 * filled: dropping the entries is the whole undo. */
	struct kv_journal *j = kv__journal(kv);
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	j->pend_chunk = 0;
	j->n = 0;
}

void kv__tx_end_locked(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);

	KV_CRASHPOINT(9);
	j->pend_chunk = 0;
	j->odd_count = 0;
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	j->n = 0;
	KV_CRASHPOINT(10);
}

void kv__mark_odd_locked(struct kv *kv, uint64_t first, uint32_t count)
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

void kv__make_even_locked(struct kv *kv, uint64_t first, uint64_t count)
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

void kv__mark_even_locked(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);
	kv__make_even_locked(kv, j->odd_first, j->odd_count);
}

int kv__recover_locked(struct kv *kv)
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
			    (_Atomic uint64_t *)(void *)(kv->base +
			                                 kv_free_link(c)),
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
	kv__make_even_locked(kv, 0, kv->nbuckets);
	j->pend_chunk = 0;
	j->odd_count = 0;
	j->n = 0;
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	atomic_fetch_add_explicit(&h->recoveries, 1, memory_order_relaxed);
	return rc;
}

int kv__finish_resize_locked(struct kv *kv)
{
	struct kv_journal *j = kv__journal(kv);

	if (!kv__resize_in_flight(kv))
		return KV_OK;
	/* Its words are header words only (log_target_ok), absolute
	 * values, gen last: applying them again is what its writer would
	 * have done. It made no bucket odd and popped no chunk. */
	int rc = j->n > KV_LOG_MAX ? KV_ECORRUPT : apply(kv, j->n);
	j->n = 0;
	atomic_store_explicit(&j->state, KV_J_IDLE, memory_order_release);
	atomic_fetch_add_explicit(&kv__hdr(kv)->recoveries, 1,
	                          memory_order_relaxed);
	return rc;
}

int kv__finish_resize(struct kv *kv)
{
	if (kv->rdonly || !kv__resize_in_flight(kv))
		return KV_OK;
	int rc = kv__os_lock_acquire(kv, kv__os_mono_ms() + KV_LOCK_WAIT_MS);
	if (rc != KV_OK && rc != KV_LOCK_DIED)
		return rc;
	bool died = rc == KV_LOCK_DIED;
	kv__os_lock_taken(kv);
	rc = kv__finish_resize_locked(kv);
	/* The resizer is the only holder that can have died here with
	 * the journal committed (the store was sound before it took the
	 * lock): finishing its words is the whole recovery. Any other
	 * state of the journal is left for the next full lock holder. */
	if (died)
		kv__os_lock_consistent(kv);
	atomic_store_explicit(&kv__hdr(kv)->resizing, 0, memory_order_relaxed);
	kv__os_lock_release(kv);
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

uint64_t kv__tx_get64_locked(struct kv *kv, const void *addr)
{
	uint64_t v;
	if (tx_lookup(kv, kv__off(kv, addr), &v))
		return v;
	return atomic_load_explicit((const _Atomic uint64_t *)addr,
	                            memory_order_relaxed);
}

uint32_t kv__tx_get32_locked(struct kv *kv, const void *addr)
{
	uint64_t v;
	if (tx_lookup(kv, kv__off(kv, addr), &v))
		return (uint32_t)v;
	return atomic_load_explicit((const _Atomic uint32_t *)addr,
	                            memory_order_relaxed);
}
