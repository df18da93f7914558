/*
 * api.c - the public calls: argument checks, then the read path (index.c)
 * or a write under the lock with the journal (lock.c, alloc.c, index.c).
 *
 * Every public call validates its arguments before touching the store, so
 * a bad argument never changes anything. Writes check every condition that
 * could fail (flags, space, a corrupt free list) before the journal
 * transaction begins: once it begins, it commits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_internal.h"


/* Evictions one put may make before it gives up with KV_EFULL. */
#define KV_EVICT_TRIES 64

const char *kv_strerror(int code)
{
	switch (code) {
	case KV_OK:
		return "success";
#define KV__STR(name, val, msg)                                                \
	case KV_##name:                                                        \
		return msg;
		KV_ERRNO_MAP(KV__STR)
#undef KV__STR
	default:
		return "unknown error";
	}
}

const char *kv_errname(int code)
{
	switch (code) {
	case KV_OK:
		return "KV_OK";
#define KV__NAME(name, val, msg)                                               \
	case KV_##name:                                                        \
		return "KV_" #name;
		KV_ERRNO_MAP(KV__NAME)
#undef KV__NAME
	default:
		return "KV_EUNKNOWN";
	}
}

const char *kv_version(void)
{
	return KV_VERSION_STRING;
}

static int check_key(const kv_t *kv, const void *key, size_t klen)
{
	if (kv == NULL || (key == NULL && klen != 0))
		return KV_EINVAL;
	if (klen == 0 || klen > kv->max_key)
		return KV_EKEYSIZE;
	return KV_OK;
}

/* A lock-free lookup, falling back to one under the lock when a bucket
 * stays odd: its writer is slow or dead, and taking the lock waits for
 * the first and recovers the second. A read-only handle cannot lock. */
static int lookup(kv_t *kv, const void *key, size_t klen, uint64_t h,
                  struct kv_read *r)
{
	if (kv__dead(kv))
		return KV_EDESTROYED;
	int rc = kv__sync(kv);
	if (rc != KV_OK)
		return rc;
	rc = kv__lookup(kv, key, klen, h, false, r);
	if (rc == KV_EBUSY && !kv->rdonly &&
	    (r->deadline == 0 || kv__os_mono_ns() < r->deadline)) {
		rc = kv__lock_until(kv, r->deadline);
		if (rc != KV_OK)
			return rc;
		kv__make_even_locked(kv, kv__home(kv, h), KV_PATH_BUCKETS(kv));
		rc = kv__lookup(kv, key, klen, h, true, r);
		kv__unlock(kv);
	}
	return rc;
}

static int get_hashed_version(kv_t *kv, const void *key, size_t klen,
                              uint64_t h, void *buf, size_t cap,
                              size_t *vlen, uint64_t *version,
                              uint64_t deadline)
{
	struct kv_read r = {.buf = buf, .cap = cap, .deadline = deadline};
	int rc = lookup(kv, key, klen, h, &r);
	if (rc == KV_OK || rc == KV_ERANGE) {
		if (vlen != NULL)
			*vlen = r.vlen;
		if (version != NULL)
			*version = r.version;
	}
	kv__count_get(kv, rc == KV_OK || rc == KV_ERANGE);
	return rc;
}

static int get_hashed(kv_t *kv, const void *key, size_t klen, uint64_t h,
                      void *buf, size_t cap, size_t *vlen, uint64_t deadline)
{
	return get_hashed_version(kv, key, klen, h, buf, cap, vlen, NULL,
	                          deadline);
}

int kv_get_version(kv_t *kv, const void *key, size_t klen, void *buf,
                   size_t cap, size_t *vlen, uint64_t *version)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (buf == NULL && cap != 0)
		return KV_EINVAL;
	return get_hashed_version(kv, key, klen, kv__hash(kv, key, klen), buf,
	                          cap, vlen, version, 0);
}

/* Time left to live, in ms, of an item expiring at expire_ms: -1 for
 * never, 0 for due. */
static int64_t ttl_left(uint64_t expire_ms)
{
	if (expire_ms == 0)
		return -1;
	uint64_t now = kv__now_ms();
	return expire_ms > now ? (int64_t)(expire_ms - now) : 0;
}

int kv_get_info(kv_t *kv, const void *key, size_t klen, void *buf,
                size_t cap, size_t *vlen, struct kv_item_info *info)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (buf == NULL && cap != 0)
		return KV_EINVAL;
	struct kv_read r = {.buf = buf, .cap = cap};
	rc = lookup(kv, key, klen, kv__hash(kv, key, klen), &r);
	if (rc == KV_OK || rc == KV_ERANGE) {
		if (vlen != NULL)
			*vlen = r.vlen;
		if (info != NULL) {
			memset(info, 0, sizeof *info);
			info->version = r.version;
			info->ttl_ms = ttl_left(r.expire_ms);
			info->client_flags = r.cflags;
		}
	}
	kv__count_get(kv, rc == KV_OK || rc == KV_ERANGE);
	return rc;
}

int kv_get(kv_t *kv, const void *key, size_t klen, void *buf, size_t cap,
           size_t *vlen)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (buf == NULL && cap != 0)
		return KV_EINVAL;

	return get_hashed(kv, key, klen, kv__hash(kv, key, klen), buf, cap,
	                  vlen, 0);
}

/* Keys looked up together: enough misses in flight to cover the memory
 * latency, few enough that their lines stay in L1. */
#define KV_MGET_GROUP 16
/* A batch waits for busy buckets at most this long in all; after it, each
 * key gets one lock-free look and KV_EBUSY if its bucket is busy, so a
 * batch of any size ends within the bound of a single call. */
#define KV_MGET_WAIT_NS (1500ull * 1000000ull)

int kv_mget(kv_t *kv, struct kv_getv *v, size_t n)
{
	uint64_t hash[KV_MGET_GROUP];

	if (n == 0)
		return KV_OK;
	if (kv == NULL || v == NULL)
		return KV_EINVAL;
	uint64_t deadline = kv__os_mono_ns() + KV_MGET_WAIT_NS;
	for (size_t base = 0; base < n; base += KV_MGET_GROUP) {
		size_t g = n - base < KV_MGET_GROUP ? n - base : KV_MGET_GROUP;
		struct kv_getv *e = v + base;
		/* Three passes: start every bucket load, then every item
		 * load, then do the real lookups on warm lines. */
		for (size_t i = 0; i < g; i++) {
			e[i].vlen = 0;
			e[i].status = check_key(kv, e[i].key, e[i].klen);
			if (e[i].status == KV_OK && e[i].buf == NULL &&
			    e[i].cap != 0)
				e[i].status = KV_EINVAL;
			if (e[i].status != KV_OK)
				continue;
			hash[i] = kv__hash(kv, e[i].key, e[i].klen);
			kv__prefetch_bucket(kv, hash[i]);
		}
		for (size_t i = 0; i < g; i++)
			if (e[i].status == KV_OK)
				kv__prefetch_item(kv, hash[i]);
		for (size_t i = 0; i < g; i++) {
			if (e[i].status != KV_OK)
				continue;
			e[i].status = get_hashed(kv, e[i].key, e[i].klen,
			                         hash[i], e[i].buf, e[i].cap,
			                         &e[i].vlen, deadline);
		}
	}
	return KV_OK;
}

int kv_ttl(kv_t *kv, const void *key, size_t klen, int64_t *ttl_ms)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (ttl_ms == NULL)
		return KV_EINVAL;
	struct kv_read r = {0};
	rc = lookup(kv, key, klen, kv__hash(kv, key, klen), &r);
	if (rc == KV_ERANGE)
		rc = KV_OK;
	if (rc != KV_OK)
		return rc;
	*ttl_ms = ttl_left(r.expire_ms);
	return KV_OK;
}

/* An absolute expiry for a TTL given in ms (0: never), or 0 with
 * KV_EINVAL in *rc when it is too far out to add to now. */
static uint64_t expiry_for(uint64_t ttl_ms, int *rc)
{
	*rc = KV_OK;
	if (ttl_ms == 0)
		return 0;
	uint64_t now = kv__now_ms();
	if (ttl_ms > UINT64_MAX / 2 - now) {
		*rc = KV_EINVAL;
		return 0;
	}
	return now + ttl_ms;
}

static bool expired(const struct kv *kv, uint64_t item, uint64_t now)
{
	const struct kv_item *it =
	    (const struct kv_item *)(const void *)(kv->base + item);
	uint64_t e = kv__item_expire(it);
	return e != 0 && now >= e;
}

static void fill_item(struct kv *kv, const struct kv_alloc *a,
                      const void *key, size_t klen, const void *val,
                      size_t vlen, const struct kv_put_meta *m,
                      uint64_t version, const struct kv_large *lg,
                      uint64_t rest)
{
	struct kv_item *it = (struct kv_item *)(void *)(kv->base + a->chunk);
	uint8_t *p = (uint8_t *)(it + 1);

	it->vlen = (uint32_t)vlen;
	it->klen = (uint16_t)klen;
	it->cls = (uint8_t)a->cls;
	it->flags = (uint8_t)(kv_item_flags(m->expire, m->cflags) |
	                      (lg != NULL ? KV_IF_LARGE : 0));
	kv_item_set_version(it, version);
	KV_CRASHPOINT(2);
	if (m->expire) {
		memcpy(p, &m->expire, sizeof m->expire);
		p += sizeof m->expire;
	}
	if (m->cflags) {
		memcpy(p, &m->cflags, sizeof m->cflags);
		p += sizeof m->cflags;
	}
	if (lg != NULL) {
		/* val is the value's rest: the pages and pieces hold the
		 * bytes before it. */
		memcpy(p, lg, sizeof *lg);
		p += sizeof *lg;
	}
	memcpy(p, key, klen);
	p += klen;
	if (rest)
		memcpy(p, val, rest);
	KV_CRASHPOINT(3);
}

/* Does the index hold KV_EVICT_LOAD percent of its slots? */
static bool index_full(struct kv *kv)
{
	uint64_t items = atomic_load_explicit(&kv__hdr(kv)->items,
	                                      memory_order_relaxed);
	return items * 100 >= kv->nbuckets * KV_SLOTS * KV_EVICT_LOAD;
}

/* The body of a put, with the writer lock held: find the key and room for
 * it (evicting if the store allows), check the flags, then write the item
 * and publish it in one journal transaction. */
int kv__put_locked(struct kv *kv, uint64_t h, const void *key, size_t klen,
                   const void *val, size_t vlen,
                   const struct kv_put_meta *m)
{
	uint32_t flags = m->flags;
	struct kv_hdr *hdr = kv__hdr(kv);
	struct kv_found f;
	struct kv_alloc a;
	int rc;

	if (vlen > kv->max_value)
		return KV_EVALSIZE;
	struct kv_split sp;
	kv__split(kv_item_hdr_len(kv_item_flags(m->expire, m->cflags)), klen,
	          vlen, &sp);
	uint32_t cls = kv__class_for(kv, sp.chunk);
	bool old_expired, pages_short = false;
	/* Find the key and room for it. Making room evicts (each eviction
	 * its own committed delete), which may move keys: look again. */
	for (unsigned tries = 0;; tries++) {
		rc = kv__find_locked(kv, h, key, klen, &f);
		if (rc != KV_OK)
			return rc;
		old_expired = f.item && expired(kv, f.item, kv__now_ms());
		bool live = f.item && !old_expired;
		if ((flags & KV_PUT_NX) && live)
			return KV_EEXIST;
		if ((flags & (KV_PUT_XX | KV_PUT_CAS)) && !live)
			return KV_ENOTFOUND;
		if ((flags & KV_PUT_CAS) &&
		    KV_ITEM_VERSION((const struct kv_item *)(void *)(kv->base +
		                                                      f.item)) !=
		        m->cas)
			return KV_ECHANGED;
		/* A store that evicts, once its index is nearly full,
		 * keeps new keys near their home: a free slot further away
		 * is no room (evict.c). */
		bool room = f.have_free &&
		            (f.dist < KV_EVICT_REACH ||
		             (kv->hflags & KV_HF_NOEVICT) || !index_full(kv));
		/* A large value's pages first: putting never-used pages on
		 * the free-page list changes which chunk a peek picks. */
		pages_short = false;
		if (!f.item && !room)
			rc = KV_EFULL;
		else if (sp.large &&
		         (rc = kv__large_room_locked(kv, &sp, cls, false)) ==
		             KV_EFULL)
			pages_short = true;
		else if (rc == KV_OK || !sp.large)
			rc = cls < kv->nclasses ? kv__alloc_peek_locked(kv, cls, &a)
			                        : KV_EVALSIZE;
		if (rc != KV_EFULL || (kv->hflags & KV_HF_NOEVICT) ||
		    tries == KV_EVICT_TRIES)
			break;
		if (!f.item && !room)
			rc = kv__evict_on_path_locked(kv, h);
		else if (pages_short)
			rc = kv__large_room_locked(kv, &sp, cls, true);
		else
			rc = kv__make_room_locked(kv, cls);
		if (rc != KV_OK)
			break;
	}
	if (rc != KV_OK)
		return rc;

	kv__tx_begin_locked(kv, KV_TX_PUT);
	kv__alloc_pend_locked(kv, &a);
	uint64_t next = atomic_load_explicit(&hdr->version,
	                                     memory_order_relaxed) + 1;
	uint64_t version = m->version != 0 ? m->version : next;
	struct kv_large lg;
	const uint8_t *rest = val;
	kv__alloc_take_locked(kv, &a);
	if (sp.large) {
		rc = kv__large_take_locked(kv, &sp, a.chunk, &lg);
		if (rc != KV_OK) {
			/* Nothing applied: the journal is dropped unseen. */
			kv__tx_abort_locked(kv);
			return rc;
		}
		rest = kv__large_fill(kv, &sp, &lg, a.chunk, val);
	}
	fill_item(kv, &a, key, klen, rest, vlen, m, version,
	          sp.large ? &lg : NULL, sp.rest);
	uint64_t home = kv__home(kv, h);
	if (f.item)
		kv__mark_odd_locked(kv, f.bucket, 1);
	else
		kv__mark_odd_locked(kv, home, f.dist + 1);
	if (f.item) {
		kv__replace_locked(kv, h, &f, a.chunk);
		kv__account_removed_locked(kv, &f, old_expired);
	} else {
		kv__link_locked(kv, h, &f, a.chunk);
		kv__add64_locked(kv, &hdr->items, 1);
	}
	kv__add64_locked(kv, &hdr->key_bytes, (int64_t)klen);
	kv__add64_locked(kv, &hdr->value_bytes, (int64_t)vlen);
	kv__add64_locked(kv, &hdr->puts, 1);
	if (version == next)
		kv__tx_put64_locked(kv, &hdr->version, version);
	kv__tx_commit_locked(kv);
	kv__mark_even_locked(kv);
	kv__tx_end_locked(kv);
	return KV_OK;
}

int kv_put(kv_t *kv, const void *key, size_t klen, const void *val,
           size_t vlen, const struct kv_put_opts *opts)
{
	static const struct kv_put_opts none;
	const uint32_t known = KV_PUT_NX | KV_PUT_XX | KV_PUT_CAS;
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (opts == NULL)
		opts = &none;
	if (val == NULL && vlen != 0)
		return KV_EINVAL;
	/* At most one condition: "absent", "present" or "this version". */
	uint32_t cond = opts->flags & known;
	if ((opts->flags & ~known) != 0 || (cond & (cond - 1)) != 0)
		return KV_EINVAL;
	if (vlen > kv->max_value)
		return KV_EVALSIZE;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;
	uint64_t expire = expiry_for(opts->ttl_ms, &rc);
	if (rc != KV_OK)
		return rc;

	uint64_t h = kv__hash(kv, key, klen);
	rc = kv__lock(kv);
	if (rc != KV_OK)
		return rc;
	struct kv_put_meta m = {.expire = expire,
	                        .cflags = opts->client_flags,
	                        .flags = opts->flags,
	                        .cas = opts->cas};
	rc = kv__put_locked(kv, h, key, klen, val, vlen, &m);
	kv__unlock(kv);
	return rc;
}

/* A touch writes the item anew with the new expiry (the expiry lives in
 * the item, which is never changed once published), keeping its value,
 * flags and version, so a CAS taken before the touch still holds. The
 * value is copied out first: making room for the new copy may evict or
 * move the old one. */
int kv_touch(kv_t *kv, const void *key, size_t klen, uint64_t ttl_ms)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;
	uint64_t expire = expiry_for(ttl_ms, &rc);
	if (rc != KV_OK)
		return rc;

	uint64_t h = kv__hash(kv, key, klen);
	struct kv_found f;
	void *copy = NULL;
	rc = kv__lock(kv);
	if (rc != KV_OK)
		return rc;
	rc = kv__find_locked(kv, h, key, klen, &f);
	if (rc != KV_OK)
		goto out;
	if (!f.item || expired(kv, f.item, kv__now_ms())) {
		rc = KV_ENOTFOUND;
		goto out;
	}
	const struct kv_item *it =
	    (const struct kv_item *)(void *)(kv->base + f.item);
	uint32_t vlen = it->vlen;
	struct kv_put_meta m = {.expire = expire,
	                        .cflags = kv__item_cflags(it),
	                        .flags = KV_PUT_CAS,
	                        .cas = KV_ITEM_VERSION(it),
	                        .version = KV_ITEM_VERSION(it)};
	/* kv__find_locked checked the item's bounds: vlen <= max_value. */
	copy = malloc(vlen ? vlen : 1);
	if (copy == NULL) {
		rc = KV_ENOMEM;
		goto out;
	}
	rc = kv__value_locked(kv, f.item, copy);
	if (rc != KV_OK)
		goto out;
	rc = kv__put_locked(kv, h, key, klen, copy, vlen, &m);
	/* Touching a key that eviction removed while making room for its
	 * copy finds it gone, as a touch just after the eviction would. */
	if (rc == KV_ECHANGED)
		rc = KV_ENOTFOUND;
out:
	kv__unlock(kv);
	free(copy);
	return rc;
}

int kv_del(kv_t *kv, const void *key, size_t klen)
{
	int rc = check_key(kv, key, klen);
	if (rc != KV_OK)
		return rc;
	if (kv__dead(kv))
		return KV_EDESTROYED;
	if (kv->rdonly)
		return KV_ERDONLY;

	uint64_t h = kv__hash(kv, key, klen);
	struct kv_found f;

	rc = kv__lock(kv);
	if (rc != KV_OK)
		return rc;
	rc = kv__find_locked(kv, h, key, klen, &f);
	if (rc != KV_OK)
		goto out;
	if (!f.item) {
		rc = KV_ENOTFOUND;
		goto out;
	}
	bool was_expired = expired(kv, f.item, kv__now_ms());
	kv__remove_locked(kv, &f, was_expired ? KV_WHY_EXPIRED : KV_WHY_DELETED,
	                  false);
	/* An expired key was already invisible: deleting it finds nothing. */
	rc = was_expired ? KV_ENOTFOUND : KV_OK;
out:
	kv__unlock(kv);
	return rc;
}
