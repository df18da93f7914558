/*
 * os_posix.c - os.h on Linux: clocks, randomness, processes, and the store
 * object, a POSIX shared-memory object /dev/shm/kv.NAME or a regular file
 * when the name holds a '/'.
 *
 * Objects are opened with O_NOFOLLOW, so a planted symbolic link is never
 * followed (KV_ESYMLINK), and created with O_EXCL, so exactly one creator
 * wins. The creator reserves the whole size with posix_fallocate before
 * anyone maps it: a full tmpfs is KV_ENOSPC at creation, never a SIGBUS in
 * a client later. kvd's claim is an flock(2) on the object, which the
 * kernel drops when kvd dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kv_internal.h"

uint64_t kv__os_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kv__os_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void kv__os_sleep_us(unsigned us)
{
	struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
	nanosleep(&ts, NULL);
}

void kv__os_yield(void)
{
	sched_yield();
}

int kv__os_random(void *buf, size_t n)
{
	return getrandom(buf, n, 0) == (ssize_t)n ? KV_OK : KV_ESYS;
}

uint32_t kv__os_pid(void)
{
	return (uint32_t)getpid();
}

_Noreturn void kv__os_die(void)
{
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

bool kv__os_pid_gone(uint32_t pid)
{
	return pid != 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static bool is_file_store(const char *name)
{
	return strchr(name, '/') != NULL;
}

void kv__os_store_path(const char *name, char *out, size_t cap)
{
	if (is_file_store(name))
		snprintf(out, cap, "%s", name);
	else
		snprintf(out, cap, "/dev/shm/kv.%s", name);
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

/* Open the backing object: a POSIX shm object for a plain name, else the
 * file. */
static int open_object(const char *name, int oflags, mode_t mode)
{
	oflags |= O_NOFOLLOW | O_CLOEXEC;
	if (is_file_store(name))
		return open(name, oflags, mode);
	char shm[KV_MAX_NAME + 8];
	snprintf(shm, sizeof shm, "/kv.%s", name);
	return shm_open(shm, oflags, mode);
}

static void identify(struct kv_os *o)
{
	struct stat st;
	if (fstat(o->fd, &st) == 0) {
		o->dev = (uint64_t)st.st_dev;
		o->ino = (uint64_t)st.st_ino;
	}
}

int kv__os_remove(const char *name)
{
	int r;
	if (is_file_store(name)) {
		r = unlink(name);
	} else {
		char shm[KV_MAX_NAME + 8];
		snprintf(shm, sizeof shm, "/kv.%s", name);
		r = shm_unlink(shm);
	}
	return r == 0 ? KV_OK : status_of_errno(errno);
}

int kv__os_remove_same(const char *name, const struct kv_os *o)
{
	char path[KV_PATH_MAX];
	struct stat st;
	kv__os_store_path(name, path, sizeof path);
	if (lstat(path, &st) != 0)
		return status_of_errno(errno);
	/* A new store may have taken the name since o was opened: never
	 * remove that one. (What is left is the instant between this check
	 * and the unlink.) */
	if ((uint64_t)st.st_dev != o->dev || (uint64_t)st.st_ino != o->ino)
		return KV_ENOSTORE;
	return kv__os_remove(name);
}

/* ------------------------------------------------------------------------
 * Huge pages (KV_CREATE_HUGE): transparent huge pages of tmpfs.
 *
 * Why these: a store is a named object that any process opens by name,
 * and /dev/shm's tmpfs gives 2 MiB pages to such objects without a
 * reserved pool, a separate mount or a root-only setting per store, and
 * it falls back to small pages, never to SIGBUS, when memory is too
 * fragmented. hugetlbfs needs pages reserved ahead and a mount of its
 * own, and a hugetlb memfd has no name another process can open.
 *
 * Whether tmpfs gives huge pages is the mount's huge= option (advise:
 * to mappings that ask with MADV_HUGEPAGE; within_size, always: to all),
 * overridden system-wide by /sys/kernel/mm/transparent_hugepage/
 * shmem_enabled "deny" and "force". The creator asks, then allocates
 * every page through a mapping that asked (MADV_POPULATE_WRITE, instead
 * of posix_fallocate, which would allocate small pages under advise), so
 * a full tmpfs is still an error here rather than a SIGBUS later; then
 * it checks that the kernel really mapped huge pages. Every process that
 * maps the object later gets them whole (the kernel aligns mappings of
 * such objects to 2 MiB): nothing else changes, and the store format
 * does not say how it is backed.
 */

/* Bytes of [base, base + len) mapped with huge pages, from
 * /proc/self/smaps; -1 when it cannot be read. */
static int64_t pmd_mapped(const void *base)
{
	char line[256];
	FILE *f = fopen("/proc/self/smaps", "re");
	bool in = false;
	int64_t kb = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned long lo, hi;
		long long v;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			if (in)
				break;
			in = (uintptr_t)lo == (uintptr_t)base;
			continue;
		}
		if (in && (sscanf(line, "ShmemPmdMapped: %lld kB", &v) == 1 ||
		           sscanf(line, "FilePmdMapped: %lld kB", &v) == 1)) {
			kb = (kb < 0 ? 0 : kb) + v;
		}
	}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

uint64_t kv__os_mem_page_size(const void *base, uint64_t size)
{
	uint64_t small = (uint64_t)sysconf(_SC_PAGESIZE);
	if (size < KV_HUGE_PAGE || ((uintptr_t)base & (KV_HUGE_PAGE - 1)))
		return small;
	/* The first byte is mapped (the header was read): a huge page
	 * there is the whole first 2 MiB. */
	(void)*(const volatile uint8_t *)base;
	return pmd_mapped(base) >= (int64_t)KV_HUGE_PAGE ? KV_HUGE_PAGE
	                                                 : small;
}

/* Size fd to size bytes of huge pages. 0, or a KV_ status (< 0). */
static int huge_back(int fd, uint64_t size)
{
	int rc = KV_OK;

	if (ftruncate(fd, (off_t)size) != 0)
		return status_of_errno(errno);
	void *m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
	               fd, 0);
	if (m == MAP_FAILED)
		return status_of_errno(errno);
	if ((uintptr_t)m & (KV_HUGE_PAGE - 1) ||
	    madvise(m, (size_t)size, MADV_HUGEPAGE) != 0) {
		/* Not aligned: the mount gives no huge pages (the kernel
		 * aligns only when it might); EINVAL: no THP at all. */
		rc = KV_ENOHUGE;
		goto out;
	}
	if (madvise(m, (size_t)size, MADV_POPULATE_WRITE) != 0) {
		/* ENOMEM: tmpfs is full (or its size= is smaller); EFAULT
		 * is the same seen through the mapping. EINVAL: a kernel
		 * before 5.14. */
		rc = errno == EINVAL ? KV_ENOHUGE
		     : errno == ENOMEM || errno == EFAULT ? KV_ENOSPC
		                                          : KV_ESYS;
		goto out;
	}
	if (pmd_mapped(m) < (int64_t)KV_HUGE_PAGE)
		rc = KV_ENOHUGE; /* asked for, not given: the mount says no */
out:
	munmap(m, (size_t)size);
	return rc;
}

int kv__os_create(const char *name, const struct kv_os_create *c,
                  struct kv_os *o)
{
	mode_t mode = (mode_t)c->mode;
	int rc;

	/* A file's pages come from its file system, not tmpfs. */
	if (c->huge && is_file_store(name))
		return KV_ENOHUGE;

	o->fd = open_object(name, O_RDWR | O_CREAT | O_EXCL, mode);
	if (o->fd < 0)
		return status_of_errno(errno);
	/* Group first, then mode: the object never has the wider mode while
	 * it belongs to the creator's default group. */
	if (c->set_gid && fchown(o->fd, (uid_t)-1, (gid_t)c->gid) != 0) {
		rc = status_of_errno(errno);
		goto fail;
	}
	if (fchmod(o->fd, mode) != 0) {
		rc = status_of_errno(errno);
		goto fail;
	}
	int e = c->huge ? huge_back(o->fd, c->size)
	                : posix_fallocate(o->fd, 0, (off_t)c->size);
	if (c->huge && e < 0) {
		rc = e;
		goto fail;
	}
	if (e != 0) {
		rc = e == EINVAL || e == EOPNOTSUPP ? KV_ESYS
		                                    : status_of_errno(e);
		goto fail;
	}
	identify(o);
	return KV_OK;
fail:
	kv__os_remove(name);
	close(o->fd);
	o->fd = -1;
	return rc;
}

int kv__os_open(const char *name, bool rdonly, bool must_own,
                struct kv_os *o)
{
	o->fd = open_object(name, rdonly ? O_RDONLY : O_RDWR, 0);
	if (o->fd < 0)
		return status_of_errno(errno);
	if (must_own) {
		/* Anyone can create a name in /dev/shm; a creator adopting
		 * another user's object would serve data that user
		 * controls. */
		struct stat st;
		if (fstat(o->fd, &st) != 0 || st.st_uid != geteuid()) {
			close(o->fd);
			o->fd = -1;
			return KV_EOWNER;
		}
	}
	identify(o);
	return KV_OK;
}

int kv__os_size(struct kv_os *o, uint64_t *size)
{
	struct stat st;
	if (fstat(o->fd, &st) != 0)
		return status_of_errno(errno);
	if (!S_ISREG(st.st_mode))
		return KV_ENOTSTORE;
	/* A store anyone may write is a store anyone may corrupt or read
	 * through: never attach to one. */
	if (st.st_mode & S_IWOTH)
		return KV_EWORLD;
	*size = (uint64_t)st.st_size;
	return KV_OK;
}

int kv__os_map(struct kv_os *o, uint64_t size, bool rdonly, void **base)
{
	int prot = rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
	void *m = mmap(NULL, (size_t)size, prot, MAP_SHARED, o->fd, 0);
	if (m == MAP_FAILED)
		return status_of_errno(errno);
	*base = m;
	return KV_OK;
}

int kv__os_map_reserved(struct kv_os *o, uint64_t size, uint64_t reserve,
                        bool rdonly, void **base, uint64_t *reserved)
{
	const uint64_t align = KV_HUGE_PAGE;
	uint64_t want = reserve > size ? reserve : size;
	want = (want + align - 1) / align * align;
	/* Address space only: no memory, no swap. Halve the ask until the
	 * address space gives it (a sanitizer's runtime may not). */
	for (;; want = want / 2 / align * align) {
		if (want < size) {
			*reserved = size;
			return kv__os_map(o, size, rdonly, base);
		}
		void *r = mmap(NULL, (size_t)(want + align), PROT_NONE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		               0);
		if (r == MAP_FAILED)
			continue;
		uintptr_t a = ((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1);
		uintptr_t end = (uintptr_t)r + (uintptr_t)(want + align);
		if (a > (uintptr_t)r)
			munmap(r, a - (uintptr_t)r);
		if (end > a + want)
			munmap((void *)(a + want), end - (a + want));
		int prot = rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
		void *m = mmap((void *)a, (size_t)size, prot,
		               MAP_SHARED | MAP_FIXED, o->fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			munmap((void *)a, (size_t)want);
			return status_of_errno(e);
		}
		*base = m;
		*reserved = want;
		return KV_OK;
	}
}

int kv__os_map_more(struct kv_os *o, void *base, uint64_t from, uint64_t to,
                    bool rdonly)
{
	int prot = rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
	if (to <= from)
		return KV_OK;
	void *m = mmap((uint8_t *)base + from, (size_t)(to - from), prot,
	               MAP_SHARED | MAP_FIXED, o->fd, (off_t)from);
	if (m == MAP_FAILED)
		return status_of_errno(errno);
	return KV_OK;
}

bool kv__os_can_grow(void)
{
	return true;
}

/* An open-file-description lock on byte 0: independent of kvd's flock on
 * the same object, and dropped with the descriptor, so a killed resizer
 * never leaves it held. */
static int resize_lock_op(struct kv_os *o, short type)
{
	struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0,
	                  .l_len = 1};
	while (fcntl(o->fd, F_OFD_SETLKW, &l) != 0)
		if (errno != EINTR)
			return status_of_errno(errno);
	return KV_OK;
}

int kv__os_resize_lock(struct kv_os *o)
{
	return resize_lock_op(o, F_WRLCK);
}

void kv__os_resize_unlock(struct kv_os *o)
{
	(void)resize_lock_op(o, F_UNLCK);
}

int kv__os_grow(struct kv_os *o, uint64_t from, uint64_t size)
{
	struct stat st;
	if (fstat(o->fd, &st) != 0)
		return status_of_errno(errno);
	if (from >= size)
		return KV_OK;
	int e = posix_fallocate(o->fd, (off_t)from, (off_t)(size - from));
	if (e == 0)
		return KV_OK;
	/* Give back what a partial allocation took: the store's size is
	 * the header's, and a larger object is only address space. */
	if ((uint64_t)st.st_size < size) {
		int t = ftruncate(o->fd, st.st_size);
		(void)t;
	}
	return e == ENOSPC ? KV_ENOSPC
	       : e == EINVAL || e == EOPNOTSUPP ? KV_ENOTSUP
	                                        : status_of_errno(e);
}

void kv__os_release(struct kv_os *o, uint64_t from, uint64_t to)
{
	if (from < to)
		(void)fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		                (off_t)from, (off_t)(to - from));
}

void kv__os_unmap(void *base, uint64_t size)
{
	if (base != NULL)
		munmap(base, (size_t)size);
}

void kv__os_close(struct kv_os *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
}

bool kv__os_removed(struct kv_os *o)
{
	struct stat st;
	return fstat(o->fd, &st) == 0 && st.st_nlink == 0;
}

int kv__os_claim(struct kv_os *o)
{
	if (flock(o->fd, LOCK_EX | LOCK_NB) == 0)
		return KV_OK;
	return errno == EWOULDBLOCK ? KV_ESERVED : KV_ESYS;
}

void kv__os_unclaim(struct kv_os *o)
{
	flock(o->fd, LOCK_UN);
}
