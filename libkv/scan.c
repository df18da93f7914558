/*
 * scan.c - kv_scan, a cursor over the keys of a store that takes no lock.
 *
 * How it works
 * ------------
 * The cursor is a home-bucket number. One step collects the keys whose
 * home is that bucket (they sit on its probe chain, each slot recording
 * its distance from home), validating the chain's sequence numbers as a
 * lookup does, then hands copies of the keys to the caller with no lock
 * and no pointer into the mapping held.
 *
 * What happens if the store changes meanwhile
 * -------------------------------------------
 * A key's home never changes: inserts place it on its home's chain, and
 * deletes only ever move it to another bucket of the same chain (see the
 * backward shift in index.c). So a key present from the start to the end
 * of a scan is on its home's chain when the cursor reaches that home and
 * is visited exactly once, whatever else was inserted, deleted or moved.
 * Keys added or removed during the scan may or may not be visited; a key
 * deleted and inserted again behind the cursor is not visited twice.
 *
 * Limitations: the key list of one home is read at one moment; a caller
 * that reads the values afterwards (kv dump) gets each value as of its own
 * read, not a snapshot of the whole store.
 */
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"

#define KV_SCAN_WAIT_NS (1500ull * 1000000ull)

int kv__keybuf_add(struct kv_keybuf *kb, const void *key, size_t klen)
{
	size_t need = kb->used + sizeof(size_t) + klen;
	if (need > kb->cap) {
		size_t cap = kb->cap ? kb->cap * 2 : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(kb->buf, cap);
		if (p == NULL)
			return KV_ENOMEM;
		kb->buf = p;
		kb->cap = cap;
	}
	memcpy(kb->buf + kb->used, &klen, sizeof klen);
	memcpy(kb->buf + kb->used + sizeof klen, key, klen);
	kb->used = need;
	kb->nkeys++;
	return KV_OK;
}

int kv_scan(kv_t *kv, uint64_t *cursor, size_t count,
            int (*fn)(void *ctx, const void *key, size_t klen), void *ctx)
{
	struct kv_keybuf kb = {0};
	int rc = KV_OK;

	if (kv == NULL || cursor == NULL || fn == NULL || count == 0)
		return KV_EINVAL;
	if (*cursor >= KV_CURSOR_END)
		return KV_EINVAL;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	rc = kv__sync(kv);
	if (rc != KV_OK)
		return rc;
	/* However many slices are asked for, the call waits for busy
	 * buckets at most KV_SCAN_WAIT_NS in all; a slice still busy then
	 * ends the call with KV_EBUSY, the cursor naming it. */
	uint64_t deadline = kv__os_mono_ns() + KV_SCAN_WAIT_NS;
	for (size_t i = 0; i < count && rc == KV_OK; i++) {
		uint64_t next = *cursor;
		rc = kv__collect_home(kv, &next, &kb, deadline);
		if (rc == KV_EBUSY && !kv->rdonly &&
		    kv__os_mono_ns() < deadline) {
			/* As for a get: a bucket stays odd, so wait for its
			 * writer (or recover it) under the lock, and heal a
			 * bucket that damage left odd. */
			rc = kv__lock_until(kv, deadline);
			if (rc == KV_OK) {
				kv__make_even_locked(
				    kv, kv__cursor_home(kv, *cursor),
				    KV_PATH_BUCKETS(kv));
				kv__unlock(kv);
				next = *cursor;
				rc = kv__collect_home(kv, &next, &kb,
				                      deadline);
			}
		}
		if (rc != KV_OK)
			break;
		for (size_t off = 0, k = 0; k < kb.nkeys && rc == KV_OK; k++) {
			size_t klen;
			memcpy(&klen, kb.buf + off, sizeof klen);
			rc = fn(ctx, kb.buf + off + sizeof klen, klen);
			off += sizeof klen + klen;
		}
		*cursor = next;
		if (next == 0)
			break;
	}
	free(kb.buf);
	return rc;
}
