/*
 * hint_posix.c - the read-hint segment (format.h, struct kv_hint): where
 * read-only handles record their hits, so that the keys they read are not
 * the first evicted.
 *
 * Why a System V segment: it must be writable by every process that may
 * read the store (a read-only reader cannot write the store itself, and
 * must not be able to), and nothing those processes can do to it may hurt
 * anyone else beyond the eviction order. A file (a second object in
 * /dev/shm) could be truncated by any of them, and every process mapping
 * it would die of SIGBUS at its next hit; a full tmpfs would do the same
 * to a write into a hole. A System V segment has a fixed size nobody can
 * change, only its creator (or root) can remove or re-permission it, a
 * process that has it attached keeps it even then, and its pages come
 * from memory, not from a tmpfs that fills. It is sized for the store's
 * max_map, one bit per 16 bytes (1/128 of it), and like any shared memory
 * takes memory only for the pages touched: about 1/128 of the arena that
 * read-only readers hit.
 *
 * Its permissions are the store's, with write added wherever read is: the
 * users who may read the store may set hints, and no one else may touch
 * it. Its owner must be the store's owner, and its header must name the
 * store's seed and creation time, or it is not used: the header's hint_id
 * is untrusted like every byte of the mapping.
 *
 * Lifetime: a read-write attach (kvd's among them) makes one when the
 * store has none that checks out, and marks it for removal at once
 * (IPC_RMID): Linux lets a process attach a segment so marked by its id
 * for as long as anyone has it attached, and frees it when the last one
 * detaches. So a segment lives exactly while some handle of its store
 * does, and nothing (a destroyed store, a store removed with rm, a
 * killed process) can leave one behind. While kvd serves a store, its
 * hints live; a store nobody has open loses them, which only resets the
 * recency of read-only reads, and the next read-write attach makes new
 * ones. A read-only handle uses the segment there was when it opened.
 */
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv_internal.h"

static uint64_t magic_word(void)
{
	uint64_t w;
	memcpy(&w, KV_HINT_MAGIC, sizeof w);
	return w;
}

static uint64_t seg_bytes(uint64_t max_map)
{
	return sizeof(struct kv_hint) + max_map / KV_CHUNK_UNIT / 8;
}

/* Attach segment id and check that it is this store's: owned by the
 * store's owner, large enough, and its header naming the store. */
static struct kv_hint *attach_checked(int id, const struct kv_hdr *h,
                                      uint64_t max_map, uid_t owner)
{
	struct shmid_ds ds;
	if (shmctl(id, IPC_STAT, &ds) != 0 || ds.shm_perm.uid != owner ||
	    (uint64_t)ds.shm_segsz < seg_bytes(max_map))
		return NULL;
	void *m = shmat(id, NULL, 0);
	if (m == (void *)-1)
		return NULL;
	const struct kv_hint *hs = m;
	if (atomic_load_explicit((const _Atomic uint64_t *)(const void *)
	                             hs->magic,
	                         memory_order_acquire) != magic_word() ||
	    hs->seed != h->seed || hs->created_ms != h->created_ms ||
	    hs->bits != max_map / KV_CHUNK_UNIT) {
		shmdt(m);
		return NULL;
	}
	return m;
}

/* Make a segment for the store and publish it in the header in place of
 * `was`. Returns it attached, or NULL. */
static struct kv_hint *make(struct kv_hdr *h, uint64_t was, uint64_t max_map,
                            const struct stat *st)
{
	mode_t mode = st->st_mode & 0666;
	mode |= (mode & 0444) >> 1; /* who may read it may set hints */
	int id = shmget(IPC_PRIVATE, (size_t)seg_bytes(max_map),
	                IPC_CREAT | IPC_EXCL | (int)mode);
	if (id < 0)
		return NULL;
	struct shmid_ds ds;
	if (shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.gid != st->st_gid) {
		ds.shm_perm.gid = st->st_gid;
		(void)shmctl(id, IPC_SET, &ds);
	}
	struct kv_hint *hs = shmat(id, NULL, 0);
	/* Attached or not, it goes when its last user detaches. */
	shmctl(id, IPC_RMID, NULL);
	if (hs == (void *)-1)
		return NULL;
	hs->seed = h->seed;
	hs->created_ms = h->created_ms;
	hs->bits = max_map / KV_CHUNK_UNIT;
	atomic_store_explicit((_Atomic uint64_t *)(void *)hs->magic,
	                      magic_word(), memory_order_release);
	if (!atomic_compare_exchange_strong(&h->hint_id, &was,
	                                    (uint64_t)id + 1)) {
		/* Another process published one first: use that. */
		shmdt(hs);
		return NULL;
	}
	return hs;
}

void kv__os_hint_open(struct kv *kv, bool create)
{
	struct kv_hdr *h = kv__hdr(kv);
	struct stat st;
	if (kv->hint != NULL || fstat(kv->os.fd, &st) != 0)
		return;
	uint64_t max_map = kv->max_map;
	if (max_map < kv->size)
		return;
	for (int attempt = 0; attempt < 3; attempt++) {
		uint64_t id = atomic_load_explicit(&h->hint_id,
		                                   memory_order_acquire);
		struct kv_hint *hs = NULL;
		if (id != 0 && id <= (uint64_t)INT32_MAX + 1)
			hs = attach_checked((int)(id - 1), h, max_map,
			                    st.st_uid);
		if (hs == NULL && create && !kv->rdonly &&
		    st.st_uid == geteuid())
			hs = make(h, id, max_map, &st);
		if (hs != NULL) {
			kv->hint_seg = hs;
			kv->hint_bits = hs->bits;
			kv->hint = (_Atomic uint64_t *)(void *)(hs + 1);
			return;
		}
		if (!create || atomic_load(&h->hint_id) == id)
			return;
		/* Lost a race to publish: attach the winner's. */
	}
}

void kv__os_hint_close(struct kv *kv)
{
	if (kv->hint_seg != NULL)
		shmdt(kv->hint_seg);
	kv->hint_seg = NULL;
	kv->hint = NULL;
}
