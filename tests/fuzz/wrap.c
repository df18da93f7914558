/*
 * wrap.c - what the fuzz executables take over from libc, for libkv's
 * calls and the harness's: shared file mappings and the monotonic clock.
 * They are linked with -Wl,--wrap=mmap,--wrap=mmap64,--wrap=munmap,
 * --wrap=clock_gettime,--wrap=nanosleep,--wrap=pthread_mutex_timedlock:
 * every call to those in objects we
 * link (libkv included) comes here.
 *
 * Guard regions
 * -------------
 * Every shared file mapping is put between two large PROT_NONE
 * guard regions, so that any access a little past either end of the store
 * faults at once (ASan reports it as a SEGV with a stack) instead of landing
 * silently in whatever mapping the kernel placed next to it. ASan cannot
 * see overflows of mmap'd memory on its own.
 * Only mappings of regular files with MAP_SHARED and no address hint are
 * guarded; everything else goes straight through.
 *
 * Virtual time
 * ------------
 * libkv's bounded waits (an attacher waiting up to 1 s for a creator's
 * magic, a read-only reader backing off up to 1 s on a bucket that stays
 * odd) sleep with nanosleep and measure with CLOCK_MONOTONIC. Here a
 * nanosleep returns at once and moves the monotonic clock on instead (16
 * times the request), so those waits run their whole course, every branch
 * of them, in milliseconds; one corrupt byte would otherwise cost a
 * fuzzing run seconds per input. The writer lock's wait (up to 1.5 s, in
 * slices of pthread_mutex_timedlock) is made virtual the same way, below.
 * Nothing else changes: CLOCK_REALTIME is untouched, and code that loops
 * without sleeping still takes real time, which libFuzzer's -timeout
 * bounds. KVFUZZ_REALTIME=1 turns all this off.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#define GUARD ((size_t)1 << 30) /* 1 GiB each side, address space only */
#define NRES 64

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd,
                    off_t off);
int __real_munmap(void *addr, size_t len);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
                    off_t off);
int __wrap_munmap(void *addr, size_t len);

static struct {
	uint8_t *map; /* what the caller got */
	uint8_t *lo;  /* the whole reservation */
	size_t total;
} res[NRES];
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER;

static void *guarded(void *addr, size_t len, int prot, int flags, int fd,
                     off_t off)
{
	struct stat st;
	if (addr != NULL || fd < 0 || !(flags & MAP_SHARED) || len == 0 ||
	    fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return __real_mmap(addr, len, prot, flags, fd, off);

	size_t page = 4096, span = (len + page - 1) / page * page;
	size_t total = span + 2 * GUARD;
	uint8_t *lo = __real_mmap(NULL, total, PROT_NONE,
	                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	                          -1, 0);
	if (lo == MAP_FAILED)
		return __real_mmap(addr, len, prot, flags, fd, off);
	void *m = __real_mmap(lo + GUARD, len, prot, flags | MAP_FIXED, fd, off);
	if (m == MAP_FAILED) {
		int e = errno;
		__real_munmap(lo, total);
		errno = e;
		return MAP_FAILED;
	}
	pthread_mutex_lock(&res_lock);
	for (int i = 0; i < NRES; i++) {
		if (res[i].map == NULL) {
			res[i].map = m;
			res[i].lo = lo;
			res[i].total = total;
			break;
		}
	}
	pthread_mutex_unlock(&res_lock);
	return m;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off)
{
	return guarded(addr, len, prot, flags, fd, off);
}

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
                    off_t off)
{
	return guarded(addr, len, prot, flags, fd, off);
}

int __wrap_munmap(void *addr, size_t len)
{
	pthread_mutex_lock(&res_lock);
	for (int i = 0; i < NRES; i++) {
		if (res[i].map != NULL && res[i].map == addr) {
			uint8_t *lo = res[i].lo;
			size_t total = res[i].total;
			res[i].map = NULL;
			pthread_mutex_unlock(&res_lock);
			return __real_munmap(lo, total);
		}
	}
	pthread_mutex_unlock(&res_lock);
	return __real_munmap(addr, len);
}

int __real_clock_gettime(clockid_t id, struct timespec *ts);
int __real_nanosleep(const struct timespec *req, struct timespec *rem);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts);
int __wrap_nanosleep(const struct timespec *req, struct timespec *rem);
void fuzz_sleep_real(long ns);

#define WARP 16

static _Atomic uint64_t warp_ns;

static bool warping(void)
{
	static int on = -1;
	if (on < 0) {
		const char *e = getenv("KVFUZZ_REALTIME");
		on = !(e != NULL && e[0] == '1');
	}
	return on == 1;
}

int __wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
	int rc = __real_clock_gettime(id, ts);
	if (rc == 0 && id == CLOCK_MONOTONIC && warping()) {
		uint64_t ns = (uint64_t)ts->tv_nsec + atomic_load(&warp_ns);
		ts->tv_sec += (time_t)(ns / 1000000000u);
		ts->tv_nsec = (long)(ns % 1000000000u);
	}
	return rc;
}

int __wrap_nanosleep(const struct timespec *req, struct timespec *rem)
{
	if (!warping() || req == NULL || req->tv_sec < 0 || req->tv_nsec < 0)
		return __real_nanosleep(req, rem);
	atomic_fetch_add(&warp_ns, WARP * ((uint64_t)req->tv_sec * 1000000000u +
	                                   (uint64_t)req->tv_nsec));
	sched_yield();
	if (rem != NULL)
		*rem = (struct timespec){0, 0};
	return 0;
}

/* The writer lock's wait: libkv waits for the lock in slices of
 * pthread_mutex_timedlock (2 to 50 ms of CLOCK_REALTIME), judging the
 * holder between slices, until its deadline on the monotonic clock. Here a
 * slice is a trylock: if the lock is taken, the monotonic clock moves on
 * by exactly the slice (not 16 times it: the deadline is kept to the
 * millisecond, and the harness measures every call by this clock) and
 * the slice times out at once. In a fuzzer nobody else can release the
 * lock during a slice (one process, and the dying writer is dead), so a
 * trylock answers as the wait would; errors (EOWNERDEAD, EINVAL,
 * ENOTRECOVERABLE on damaged bytes) are glibc's own either way. */
int __real_pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *abs);
int __wrap_pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *abs);

int __wrap_pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *abs)
{
	if (!warping() || abs == NULL || abs->tv_nsec < 0 ||
	    abs->tv_nsec >= 1000000000L)
		return __real_pthread_mutex_timedlock(m, abs);
	int e = pthread_mutex_trylock(m);
	if (e != EBUSY)
		return e;
	struct timespec now;
	__real_clock_gettime(CLOCK_REALTIME, &now);
	int64_t ns = ((int64_t)abs->tv_sec - (int64_t)now.tv_sec) * 1000000000 +
	             (abs->tv_nsec - now.tv_nsec);
	if (ns > 0)
		atomic_fetch_add(&warp_ns, (uint64_t)ns);
	sched_yield();
	return ETIMEDOUT;
}

/* A real sleep, for the harness's own polling. */
void fuzz_sleep_real(long ns)
{
	struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
	__real_nanosleep(&ts, NULL);
}
