/*
 * daemon.h - the private calls kvd makes into libkv. Not installed.
 *
 * kvd links the library statically (the internal archive libkvcore.a), so
 * these need no export.
 */
#ifndef KV_DAEMON_H
#define KV_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

#include "kv.h"

/* Claim the store for this process as its serving daemon: an exclusive,
 * non-blocking flock(2) on the store's descriptor, released by the kernel
 * if the daemon dies, and our pid recorded in the header for others to see.
 * Returns KV_OK, or KV_ESERVED with *other set to the serving kvd's pid
 * (0 if unknown), or KV_ESYS. */
int kv__daemon_claim(kv_t *kv, pid_t *other);

/* Give the claim up: clear the recorded pid and drop the flock. */
void kv__daemon_release(kv_t *kv);

/* Periodic upkeep, called by kvd every few milliseconds: if a writer died
 * holding the lock, recover now (so read-only clients, which cannot take the
 * lock, are not left waiting); break a lock whose holder is gone; reset a
 * damaged mutex. Never blocks on a live writer.
 * Returns KV_OK; KV_EDESTROYED (the store was destroyed), KV_ENOSTORE (its
 * name was removed by other means: it is now marked destroyed for every
 * attached handle), or a negative status if the store is corrupt. */
int kv__maintain(kv_t *kv);

/* Mark the store destroyed for every attached handle (read-write handles
 * only; a no-op otherwise). */
void kv__mark_dead(kv_t *kv);

/* The writer lock as kv check shows it: writes one line to why and
 * returns 0 (free), 1 (held by a live thread), 2 (stale or damaged: the
 * next read-write lock repairs it) or 3 (held by a thread that cannot be
 * judged). Changes nothing. */
int kv__lock_state(kv_t *kv, char *why, size_t cap);

/* Break a writer lock that kv__lock_state calls 3 ("cannot be judged")
 * once it has stayed unchanged for settle_ms, or a stale one at once: for
 * an operator who knows no writer is stopped inside a write (kv check
 * --repair). Returns KV_OK (the next writer recovers it), KV_EBUSY (a live
 * holder, or the lock moved), KV_ERDONLY. */
int kv__break_unsure(kv_t *kv, unsigned settle_ms);

/* What the last lock repair through this handle did, or "" (cleared by
 * kv__clear_repair_note). */
const char *kv__repair_note(const kv_t *kv);
void kv__clear_repair_note(kv_t *kv);

/* One step of the expiry sweep, for kvd's tick: take the writer lock,
 * look at the next `buckets` index buckets after the sweep hand (kept in
 * the store, so a restarted kvd continues where the last one stopped),
 * remove every expired item there, release the lock. A step stops early
 * once it has removed 128 items, so a mass expiry is spread over many
 * short steps rather than one long hold of the lock. Reading items costs
 * a miss each, so only items flagged in their slot as having a TTL are
 * read. The time the lock was held is added to kv_stats.sweep_ns.
 * *expired (if not NULL) receives how many items were removed.
 * Returns KV_OK, KV_ERDONLY, or a status from taking the lock. */
int kv__sweep(kv_t *kv, uint64_t buckets, uint64_t *expired);

/* The path of the store's backing object ("/dev/shm/kv.NAME" or the file),
 * for log messages. Valid until kv_close(). */
const char *kv__path(const kv_t *kv);

#endif /* KV_DAEMON_H */
