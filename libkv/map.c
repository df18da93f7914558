/*
 * map.c - store names, creating a store, attaching to one, detaching and
 * removing. Owns the rules that keep creation race-free:
 *
 *   - Exactly one creator wins: the backing object is opened O_CREAT|O_EXCL.
 *     Everyone else attaches to what the winner makes.
 *   - The creator reserves the whole size with posix_fallocate before
 *     mapping, so a full tmpfs is an error here (KV_ENOSPC), never a SIGBUS
 *     in some client later.
 *   - The creator fills in every byte, initialises the mutex, and stores
 *     the magic last with release ordering. An attacher checks the object's
 *     size before mapping it, and waits (briefly, bounded) for the magic, so
 *     no client ever maps or reads a half-made store.
 *   - An attacher validates the header against what this build would have
 *     laid out and keeps a private copy of the geometry (see kv_internal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "kv_internal.h"

#define KV_READY_WAIT_MS 1000 /* how long an attacher waits for a creator */

int kv_name_check(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return KV_ENAME;
	if (strchr(name, '/') != NULL)
		return strlen(name) < KV_PATH_MAX - 1 ? KV_OK : KV_ENAME;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		          c == '-';
		if (!ok || n >= KV_MAX_NAME)
			return KV_ENAME;
	}
	return KV_OK;
}

static bool is_file_store(const char *name)
{
	return strchr(name, '/') != NULL;
}

static void store_path(const char *name, char *out, size_t cap)
{
	if (is_file_store(name))
		snprintf(out, cap, "%s", name);
	else
		snprintf(out, cap, "/dev/shm/kv.%s", name);
}

/* Open the backing object: a POSIX shm object for a plain name, else the
 * file. O_NOFOLLOW so a planted symlink is never followed. */
static int open_object(const char *name, int oflags, mode_t mode)
{
	oflags |= O_NOFOLLOW | O_CLOEXEC;
	if (is_file_store(name))
		return open(name, oflags, mode);
	char shm[KV_MAX_NAME + 8];
	snprintf(shm, sizeof shm, "/kv.%s", name);
	return shm_open(shm, oflags, mode);
}

static int unlink_object(const char *name)
{
	if (is_file_store(name))
		return unlink(name);
	char shm[KV_MAX_NAME + 8];
	snprintf(shm, sizeof shm, "/kv.%s", name);
	return shm_unlink(shm);
}

static int status_of_errno(int e)
{
	switch (e) {
	case ENOENT:
		return KV_ENOSTORE;
	case EACCES:
	case EPERM:
	case EROFS:
		return KV_EPERM;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return KV_ENOSPC;
	case ENOMEM:
		return KV_ENOMEM;
	case EMFILE:
	case ENFILE:
		return KV_ENOFD;
	case ELOOP:
		return KV_ESYMLINK; /* O_NOFOLLOW met a link */
	case ENAMETOOLONG:
	case ENOTDIR:
		return KV_ENAME;
	case EEXIST:
		return KV_ESTOREEXISTS;
	default:
		return KV_ESYS;
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t load_magic(const void *base)
{
	return atomic_load_explicit((const _Atomic uint64_t *)base,
	                            memory_order_acquire);
}

static uint64_t magic_word(void)
{
	uint64_t w;
	memcpy(&w, KV_MAGIC, sizeof w);
	return w;
}

/* Check a header against the layout this build makes, and fill the
 * handle's private geometry from it. Only reads the mapping. */
static int adopt_geometry(struct kv *kv)
{
	const struct kv_hdr *h = kv__hdr(kv);

	if (h->format != KV_FORMAT_WORD)
		return KV_EVERSION;
	if (h->hdr_size != sizeof(struct kv_hdr) || h->max_key != KV_MAX_KEY)
		return KV_EVERSION;
	if (h->map_size != kv->size)
		return h->map_size > kv->size ? KV_ETRUNCATED : KV_ECORRUPT;

	struct kv_geometry g;
	uint64_t nb = h->nbuckets;
	if (nb < 64 || nb > kv->size / KV_CACHELINE)
		return KV_ECORRUPT;
	if (kv__classes(h->max_value, &g) != KV_OK)
		return KV_ECORRUPT;
	/* The index may have been sized from max_items or from the map size;
	 * everything after it follows from nbuckets, so recompute that part. */
	uint64_t ptab = KV_INDEX_OFF + nb * KV_CACHELINE;
	if (h->index_off != KV_INDEX_OFF || h->ptab_off != ptab ||
	    h->page_size != g.page_size || h->nclasses != g.nclasses ||
	    h->npages == 0 || h->npages > kv->size / g.page_size ||
	    (h->flags & ~KV_HF_NOEVICT) != 0)
		return KV_ECORRUPT;
	uint64_t arena = (ptab + h->npages * sizeof(struct kv_page) +
	                  KV_PAGE_ALIGN - 1) /
	                 KV_PAGE_ALIGN * KV_PAGE_ALIGN;
	if (h->arena_off != arena ||
	    arena + h->npages * (uint64_t)g.page_size > kv->size)
		return KV_ECORRUPT;
	for (uint32_t c = 0; c < g.nclasses; c++)
		if (h->class_size[c] != g.class_size[c])
			return KV_ECORRUPT;

	kv->seed = h->seed;
	kv->nbuckets = nb;
	kv->index_off = KV_INDEX_OFF;
	kv->ptab_off = ptab;
	kv->arena_off = arena;
	kv->npages = h->npages;
	kv->page_size = g.page_size;
	kv->arena_end = arena + h->npages * (uint64_t)g.page_size;
	kv->nclasses = g.nclasses;
	kv->max_key = KV_MAX_KEY;
	kv->max_value = h->max_value;
	kv->hflags = h->flags;
	for (uint32_t c = 0; c < g.nclasses; c++) {
		kv->class_size[c] = g.class_size[c];
		kv->class_per_page[c] = g.page_size / g.class_size[c];
	}
	return KV_OK;
}

/* Attach to the object open on fd: wait for the creator to size it and
 * publish the magic, then map and validate. Takes ownership of fd. */
static int attach_fd(int fd, const char *name, bool rdonly, struct kv **out)
{
	int rc;
	struct kv *kv = calloc(1, sizeof *kv);
	if (kv == NULL) {
		close(fd);
		return KV_ENOMEM;
	}
	kv->fd = fd;
	kv->rdonly = rdonly;
	store_path(name, kv->path, sizeof kv->path);

	uint64_t deadline = mono_ms() + KV_READY_WAIT_MS;
	struct stat st;
	for (;;) {
		if (fstat(fd, &st) != 0) {
			rc = status_of_errno(errno);
			goto fail;
		}
		if (!S_ISREG(st.st_mode)) {
			rc = KV_ENOTSTORE;
			goto fail;
		}
		/* A store anyone may write is a store anyone may corrupt or
		 * read through: never attach to one. */
		if (st.st_mode & S_IWOTH) {
			rc = KV_EWORLD;
			goto fail;
		}
		if ((uint64_t)st.st_size >= sizeof(struct kv_hdr))
			break;
		if (mono_ms() > deadline) {
			rc = st.st_size == 0 ? KV_ENOTREADY : KV_ETRUNCATED;
			goto fail;
		}
		sleep_ms(1);
	}

	kv->size = (size_t)st.st_size;
	kv->dev = (uint64_t)st.st_dev;
	kv->ino = (uint64_t)st.st_ino;
	int prot = rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
	void *m = mmap(NULL, kv->size, prot, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = status_of_errno(errno);
		goto fail;
	}
	kv->base = m;

	for (;;) {
		uint64_t magic = load_magic(kv->base);
		if (magic == magic_word())
			break;
		if (magic != 0) {
			rc = KV_ENOTSTORE;
			goto fail;
		}
		if (mono_ms() > deadline) {
			rc = KV_ENOTREADY;
			goto fail;
		}
		sleep_ms(1);
	}
	rc = adopt_geometry(kv);
	if (rc != KV_OK)
		goto fail;
	/* A store being destroyed is not attached to: its name is about to
	 * go (or its destroyer died first; kv_destroy again removes it). */
	if (kv__dead(kv)) {
		rc = KV_EDESTROYED;
		goto fail;
	}
	if (!rdonly) {
		rc = kv__boot_check(kv);
		if (rc != KV_OK)
			goto fail;
		kv->txmap = calloc(KV_TXMAP_SIZE, sizeof *kv->txmap);
		if (kv->txmap == NULL) {
			rc = KV_ENOMEM;
			goto fail;
		}
	}
	kv__rstat_attach(kv);
	*out = kv;
	return KV_OK;
fail:
	kv_close(kv);
	return rc;
}

int kv_open(const char *name, unsigned flags, kv_t **out)
{
	if (out == NULL || (flags & ~KV_RDWR) != 0)
		return KV_EINVAL;
	*out = NULL;
	int rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	bool rdonly = (flags & KV_RDWR) == 0;
	int fd = open_object(name, rdonly ? O_RDONLY : O_RDWR, 0);
	if (fd < 0)
		return status_of_errno(errno);
	return attach_fd(fd, name, rdonly, out);
}

/* Lay out a fresh, zero-filled mapping. The magic goes in last. */
static int init_store(uint8_t *base, const struct kv_geometry *g,
                      uint32_t create_flags)
{
	struct kv_hdr *h = (struct kv_hdr *)(void *)base;
	uint64_t seed;

	if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		return KV_ESYS;
	h->format = KV_FORMAT_WORD;
	h->hdr_size = sizeof *h;
	h->map_size = g->map_size;
	h->seed = seed;
	h->created_ms = kv__now_ms();
	h->index_off = g->index_off;
	h->nbuckets = g->nbuckets;
	h->ptab_off = g->ptab_off;
	h->arena_off = g->arena_off;
	h->npages = g->npages;
	h->page_size = g->page_size;
	h->nclasses = g->nclasses;
	h->max_key = KV_MAX_KEY;
	h->max_value = g->max_value;
	h->flags = (create_flags & KV_CREATE_NOEVICT) ? KV_HF_NOEVICT : 0;
	memcpy(h->class_size, g->class_size, sizeof h->class_size);

	struct kv_page *pt = (struct kv_page *)(void *)(base + g->ptab_off);
	for (uint64_t p = 0; p < g->npages; p++)
		atomic_store_explicit(&pt[p].cls, KV_PAGE_FREE,
		                      memory_order_relaxed);
	if (kv__init_mutex(&h->mutex) != 0)
		return KV_ESYS;
	/* The lock belongs to this boot (see kv__boot_check). */
	atomic_store_explicit(&h->boot_tag, kv__boot_tag(),
	                      memory_order_relaxed);
	atomic_store_explicit((_Atomic uint64_t *)(void *)h, magic_word(),
	                      memory_order_release);
	return KV_OK;
}

int kv_create(const char *name, const struct kv_options *opts, kv_t **out)
{
	static const struct kv_options defaults;
	struct kv_geometry g;
	int rc;

	if (out == NULL)
		return KV_EINVAL;
	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	if ((opts->flags &
	     ~(KV_CREATE_EXCL | KV_CREATE_NOEVICT | KV_CREATE_GID)) != 0)
		return KV_EINVAL;
	mode_t mode = opts->mode ? (mode_t)opts->mode : 0600;
	if ((mode & ~(mode_t)0777) != 0 || (mode & 0002) != 0 ||
	    (mode & 0600) != 0600)
		return KV_EINVAL;
	rc = kv__geometry(opts->size, opts->max_value, opts->max_items, &g);
	if (rc != KV_OK)
		return rc;

	uint64_t deadline = mono_ms() + KV_READY_WAIT_MS;
	int fd;
	for (;;) {
		fd = open_object(name, O_RDWR | O_CREAT | O_EXCL, mode);
		if (fd >= 0)
			break;
		if (errno != EEXIST)
			return status_of_errno(errno);
		if (opts->flags & KV_CREATE_EXCL)
			return KV_ESTOREEXISTS;
		/* Someone else created it: adopt it, whatever its size, but
		 * only if it is ours. Anyone can create a name in /dev/shm; a
		 * creator adopting another user's object would serve data
		 * that user controls. */
		fd = open_object(name, O_RDWR, 0);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; /* gone meanwhile: create it */
			return status_of_errno(errno);
		}
		struct stat st;
		if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
			close(fd);
			return KV_EOWNER;
		}
		rc = attach_fd(fd, name, false, out);
		/* A store being destroyed: its destroyer unlinks it in a
		 * moment, then the name is free for a new one. */
		if (rc != KV_EDESTROYED || mono_ms() > deadline)
			return rc;
		sleep_ms(5);
	}

	/* We are the creator. Anything failing from here removes the object,
	 * so a half-made store is never left behind. */
	uint8_t *base = MAP_FAILED;
	/* Group first, then mode: the object never has the wider mode while
	 * it belongs to the creator's default group. */
	if ((opts->flags & KV_CREATE_GID) &&
	    fchown(fd, (uid_t)-1, (gid_t)opts->gid) != 0) {
		rc = status_of_errno(errno);
		goto fail;
	}
	if (fchmod(fd, mode) != 0) {
		rc = status_of_errno(errno);
		goto fail;
	}
	int e = posix_fallocate(fd, 0, (off_t)g.map_size);
	if (e != 0) {
		rc = e == EINVAL || e == EOPNOTSUPP ? KV_ESYS
		                                    : status_of_errno(e);
		goto fail;
	}
	base = mmap(NULL, g.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	            0);
	if (base == MAP_FAILED) {
		rc = status_of_errno(errno);
		goto fail;
	}
	rc = init_store(base, &g, opts->flags);
	munmap(base, g.map_size);
	if (rc != KV_OK)
		goto fail;
	return attach_fd(fd, name, false, out);
fail:
	unlink_object(name);
	close(fd);
	return rc;
}

void kv_close(kv_t *kv)
{
	if (kv == NULL)
		return;
	if (kv->daemon)
		kv__daemon_release(kv);
	if (kv->rstat != NULL)
		kv__rstat_detach(kv);
	if (kv->base != NULL)
		munmap(kv->base, kv->size);
	if (kv->fd >= 0)
		close(kv->fd);
	free(kv->txmap);
	free(kv);
}

/* Mark the store open on fd destroyed, if it is a kv store and we may
 * write it. Only its first page is mapped. */
static void mark_dead(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < sizeof(struct kv_hdr))
		return;
	void *m = mmap(NULL, sizeof(struct kv_hdr), PROT_READ | PROT_WRITE,
	               MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return;
	struct kv_hdr *h = m;
	if (load_magic(h) == magic_word() && h->format == KV_FORMAT_WORD)
		atomic_fetch_or_explicit(&h->life, KV_LIFE_DEAD,
		                         memory_order_release);
	munmap(m, sizeof(struct kv_hdr));
}

void kv__mark_dead(kv_t *kv)
{
	if (!kv->rdonly)
		atomic_fetch_or_explicit(&kv__hdr(kv)->life, KV_LIFE_DEAD,
		                         memory_order_release);
}

int kv_destroy(const char *name)
{
	int rc = kv_name_check(name);
	if (rc != KV_OK)
		return rc;
	/* Mark first, unlink second: a handle attached to the old store
	 * must learn of it before a new store can take the name. A store
	 * we cannot open for writing is still unlinked if the directory
	 * lets us (its handles then learn only from kvd, see kv__maintain). */
	int fd = open_object(name, O_RDWR, 0);
	if (fd >= 0) {
		mark_dead(fd);
		close(fd);
	}
	if (unlink_object(name) != 0)
		return status_of_errno(errno);
	return KV_OK;
}

int kv__daemon_claim(kv_t *kv, pid_t *other)
{
	struct kv_hdr *h = kv__hdr(kv);

	*other = 0;
	if (kv->rdonly)
		return KV_ERDONLY;
	if (flock(kv->fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK)
			return KV_ESYS;
		*other = (pid_t)atomic_load(&h->daemon_pid);
		return KV_ESERVED;
	}
	atomic_store(&h->daemon_pid, (uint32_t)getpid());
	atomic_store(&h->daemon_beat, kv__now_ms());
	kv->daemon = true;
	return KV_OK;
}

void kv__daemon_release(kv_t *kv)
{
	if (!kv->daemon)
		return;
	atomic_store(&kv__hdr(kv)->daemon_pid, 0);
	flock(kv->fd, LOCK_UN);
	kv->daemon = false;
}

const char *kv__path(const kv_t *kv)
{
	return kv->path;
}

const char *kv__repair_note(const kv_t *kv)
{
	return kv->repair_note;
}

void kv__clear_repair_note(kv_t *kv)
{
	kv->repair_note[0] = '\0';
}

int kv__maintain(kv_t *kv)
{
	struct kv_hdr *h = kv__hdr(kv);
	struct stat st;

	if (kv__dead(kv))
		return KV_EDESTROYED;
	/* A store removed without kv destroy (rm) is dead all the same:
	 * say so in it, so that every handle still attached learns. */
	if (fstat(kv->fd, &st) == 0 && st.st_nlink == 0) {
		kv__mark_dead(kv);
		return KV_ENOSTORE;
	}
	atomic_store_explicit(&h->daemon_beat, kv__now_ms(),
	                      memory_order_relaxed);
	return kv__maintain_lock(kv);
}
