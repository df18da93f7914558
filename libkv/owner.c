/*
 * owner.c - who holds a lock, and is that thread still there? The Linux
 * answers, from /proc, for the stale-lock detection in lock.c.
 *
 * A thread is named by its id (tid), which the kernel reuses once the
 * thread is gone. So a tid alone proves nothing: a lock word naming tid
 * 1234 may have been left by a thread that died on a previous boot, and
 * 1234 may now be some unrelated thread. Three facts narrow it down:
 *
 *   - the boot: /proc/sys/kernel/random/boot_id is new on every boot, so a
 *     store that records the boot its lock belongs to knows, at attach,
 *     that no holder from another boot can be alive;
 *   - the thread's start time (field 22 of /proc/TID/task/TID/stat, in
 *     clock ticks since boot): a reused tid has a later start time than
 *     the one its holder recorded;
 *   - whether the thread's process maps the store at all
 *     (/proc/TID/maps, by device and inode): a thread that does not cannot
 *     be holding its lock.
 *
 * Each answer may also be "cannot tell" (another user's process whose
 * maps we may not read, a /proc we cannot open): callers then treat the
 * holder as alive, because wrongly breaking a live writer's lock lets two
 * writers in at once, while wrongly waiting only costs a KV_EBUSY.
 *
 * Limits: tids are per pid namespace. A store shared by processes in
 * different pid namespaces cannot judge one another's threads by tid; the
 * lock record carries the holder's pid namespace so that case is
 * recognised and never judged (see lock.c).
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kv_internal.h"
#include "lock_posix.h"

/* Read a small /proc file into buf (NUL-terminated). Returns bytes read,
 * or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return (ssize_t)n;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint64_t kv__boot_tag_parse(const char *s)
{
	/* A boot id is a UUID; its first 16 hex digits are tag enough. */
	uint64_t tag = 0;
	unsigned digits = 0;
	for (; *s && digits < 16; s++) {
		int v = hexval(*s);
		if (v < 0)
			continue; /* the dashes */
		tag = tag << 4 | (uint64_t)v;
		digits++;
	}
	return digits == 16 ? tag : 0;
}

static _Atomic uint64_t boot_tag_cache;
static uint64_t boot_tag_override;

uint64_t kv__boot_tag(void)
{
	if (boot_tag_override != 0)
		return boot_tag_override;
	uint64_t t = atomic_load_explicit(&boot_tag_cache,
	                                  memory_order_relaxed);
	if (t != 0)
		return t;
	char buf[64];
	if (read_small("/proc/sys/kernel/random/boot_id", buf, sizeof buf) <= 0)
		return 0; /* unknown: the boot check is skipped */
	t = kv__boot_tag_parse(buf);
	atomic_store_explicit(&boot_tag_cache, t, memory_order_relaxed);
	return t;
}

void kv__set_test_boot_tag(uint64_t tag)
{
	boot_tag_override = tag;
}

uint32_t kv__gettid(void)
{
	return (uint32_t)syscall(SYS_gettid);
}

/* The start time and state of thread tid, from its stat line. */
int kv__thread_start(uint32_t tid, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%u/task/%u/stat", tid, tid);
	ssize_t n = read_small(path, buf, sizeof buf);
	if (n == -ENOENT || n == -ESRCH) {
		/* /proc mounted with hidepid hides other users' live
		 * processes the same way: only the kernel's own answer
		 * (kill works on thread ids, and EPERM means alive) says
		 * gone. */
		return kill((pid_t)tid, 0) != 0 && errno == ESRCH
		           ? KV_THREAD_GONE
		           : KV_THREAD_UNKNOWN;
	}
	if (n <= 0)
		return KV_THREAD_UNKNOWN;
	/* "tid (comm) S ppid ...": comm may hold spaces and parentheses,
	 * so fields are counted from the last ')'. */
	char *p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return KV_THREAD_UNKNOWN;
	p += 2;
	char state = *p;
	if (state == 'Z' || state == 'X' || state == 'x')
		return KV_THREAD_GONE; /* exited; only its id lingers */
	/* p is at field 3; the start time is field 22. */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return KV_THREAD_UNKNOWN;
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno != 0 || end == p)
		return KV_THREAD_UNKNOWN;
	*start = v;
	return KV_THREAD_ALIVE;
}

uint32_t kv__pidns(void)
{
	struct stat st;
	if (stat("/proc/self/ns/pid", &st) != 0)
		return 0;
	return (uint32_t)st.st_ino;
}

int kv__thread_maps(uint32_t tid, uint64_t dev, uint64_t ino)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%u/maps", tid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return errno == ENOENT || errno == ESRCH ? 0 : -1;
	char line[512];
	unsigned maj = major((dev_t)dev), min = minor((dev_t)dev);
	int found = 0;
	bool any = false;
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned lmaj, lmin;
		unsigned long long lino;
		any = true;
		/* start-end perms offset major:minor inode [path] */
		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &lmaj, &lmin,
		           &lino) == 3 &&
		    lmaj == maj && lmin == min && lino == ino) {
			found = 1;
			break;
		}
	}
	fclose(f);
	/* Opening another user's maps fails above; what we could open and
	 * read is the whole list. An empty one is a kernel thread's. */
	return found ? 1 : any ? 0 : 2;
}
