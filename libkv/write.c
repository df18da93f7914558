/*
 * write.c - the write engine's bottom layer: removing a found key in one
 * committed journal transaction, and the accounting a removal or a
 * replacement makes. Below both evict.c (which removes to make room) and
 * api.c (puts and deletes), so neither calls back into the other.
 *
 * Every function here needs the writer lock (the _locked suffix, as
 * everywhere in libkv).
 */
#include "kv_internal.h"

void kv__add64_locked(struct kv *kv, _Atomic uint64_t *field, int64_t delta)
{
	kv__tx_put64_locked(kv, field, kv__tx_get64_locked(kv, field) + (uint64_t)delta);
}

/* Record the removal of the item at f (already unlinked or replaced). */
void kv__account_removed_locked(struct kv *kv, const struct kv_found *f,
                                bool was_expired)
{
	struct kv_hdr *h = kv__hdr(kv);
	const struct kv_item *old =
	    (const struct kv_item *)(const void *)(kv->base + f->item);

	kv__add64_locked(kv, &h->key_bytes, -(int64_t)old->klen);
	kv__add64_locked(kv, &h->value_bytes, -(int64_t)old->vlen);
	if (was_expired)
		kv__add64_locked(kv, &h->expired, 1);
	kv__free_item_locked(kv, f->cls, f->item);
}

void kv__remove_locked(struct kv *kv, const struct kv_found *f, enum kv_why why,
                       bool keep_hole)
{
	struct kv_hdr *hdr = kv__hdr(kv);

	kv__tx_begin_locked(kv, KV_TX_DEL);
	uint64_t span = kv__unlink_locked(kv, f, !keep_hole);
	kv__mark_odd_locked(kv, kv__found_home(kv, f), (uint32_t)span + 1);
	kv__account_removed_locked(kv, f, why == KV_WHY_EXPIRED);
	kv__add64_locked(kv, &hdr->items, -1);
	if (why == KV_WHY_DELETED)
		kv__add64_locked(kv, &hdr->deletes, 1);
	if (why == KV_WHY_EVICTED) {
		kv__add64_locked(kv, &hdr->evictions, 1);
		kv__add64_locked(kv, &kv__class(kv, f->cls)->evictions, 1);
	}
	kv__tx_commit_locked(kv);
	kv__mark_even_locked(kv);
	kv__tx_end_locked(kv);
}

