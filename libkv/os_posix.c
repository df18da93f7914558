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

int kv__os_create(const char *name, const struct kv_os_create *c,
                  struct kv_os *o)
{
	mode_t mode = (mode_t)c->mode;
	int rc;

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
	int e = posix_fallocate(o->fd, 0, (off_t)c->size);
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
