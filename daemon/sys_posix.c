/*
 * sys_posix.c - sys.h on Linux and other POSIX systems.
 *
 * Stop requests are signals, blocked from kvd_sys_requests_init() on and
 * taken with sigtimedwait(): no handler ever runs in the middle of a
 * library call, and a signal that arrives while a large store is being
 * created waits, pending, for the serve loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvd.h"
#include "sys.h"

/* The signals the serve loop takes; set by kvd_sys_requests_init(). */
static sigset_t requests;

int kvd_sys_init(void)
{
	int fd;

	/* If kvd was started with fd 0, 1 or 2 closed, the store's
	 * descriptor could be given one of those numbers. open() returns the
	 * lowest free number: once it returns one above 2, all three are
	 * open. */
	do {
		fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			return -1;
	} while (fd <= 2);
	close(fd);
	return 0;
}

int kvd_sys_requests_init(void)
{
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&requests);
	sigaddset(&requests, SIGTERM);
	sigaddset(&requests, SIGINT);
	sigaddset(&requests, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &requests, NULL) != 0) {
		kvd_fail("signals: %s", strerror(errno));
		return -1;
	}
	return 0;
}

enum kvd_request kvd_sys_wait(unsigned ms, char *why, size_t cap)
{
	const struct timespec tick = {(time_t)(ms / 1000),
	                              (long)(ms % 1000) * 1000000L};
	siginfo_t si;
	int sig = sigtimedwait(&requests, &si, &tick);
	const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";

	if (sig == SIGHUP)
		return KVD_REQ_STATS;
	if (sig != SIGTERM && sig != SIGINT)
		return KVD_REQ_NONE; /* the tick (EAGAIN), or EINTR */
	if (si.si_code == SI_USER && si.si_pid > 0)
		snprintf(why, cap, "%s from pid %ld", name, (long)si.si_pid);
	else
		snprintf(why, cap, "%s", name);
	return KVD_REQ_STOP;
}

uint64_t kvd_sys_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kvd_sys_sleep_ms(unsigned ms)
{
	const struct timespec pause = {(time_t)(ms / 1000),
	                               (long)(ms % 1000) * 1000000L};

	nanosleep(&pause, NULL);
}

void kvd_sys_utc_stamp(char *buf, size_t cap)
{
	char sec[32];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, cap, "%s.%03ldZ", sec, now.tv_nsec / 1000000L);
}

int kvd_sys_store_mode(const char *path, unsigned *mode)
{
	struct stat sb;

	if (stat(path, &sb) != 0)
		return -1;
	*mode = (unsigned)sb.st_mode & 07777;
	return 0;
}

/* The tmpfs mount holding /dev/shm and its huge= option, from
 * /proc/self/mountinfo: "huge=never" when the option is absent (the
 * default), "" when /dev/shm is not found. */
static void shm_huge_option(char *out, size_t cap)
{
	char line[1024];
	size_t best = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	snprintf(out, cap, "%s", "");
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		/* id parent major:minor root mountpoint opts... - type src
		 * superopts */
		char mnt[512], *sep, *h;
		if (sscanf(line, "%*s %*s %*s %*s %511s", mnt) != 1)
			continue;
		size_t n = strlen(mnt);
		if (strncmp("/dev/shm", mnt, n) != 0 || n < best ||
		    (n > 1 && "/dev/shm"[n] != '\0' && "/dev/shm"[n] != '/'))
			continue;
		sep = strstr(line, " - ");
		if (sep == NULL)
			continue;
		best = n;
		h = strstr(sep, "huge=");
		if (h == NULL) {
			snprintf(out, cap, "%s", "huge=never");
		} else {
			size_t l = strcspn(h, ", \n");
			snprintf(out, cap, "%.*s", (int)l, h);
		}
	}
	fclose(f);
}

void kvd_sys_huge_hint(char *buf, size_t cap)
{
	char opt[64], sys[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled",
	                "re");

	if (f != NULL) {
		if (fgets(sys, sizeof sys, f) == NULL)
			sys[0] = '\0';
		fclose(f);
	}
	shm_huge_option(opt, sizeof opt);
	if (f == NULL)
		snprintf(buf, cap, "this kernel has no transparent huge pages "
		         "(no /sys/kernel/mm/transparent_hugepage)");
	else if (strstr(sys, "[deny]") != NULL)
		snprintf(buf, cap, "/sys/kernel/mm/transparent_hugepage/"
		         "shmem_enabled is 'deny': set it to 'advise'");
	else if (opt[0] != '\0' && strcmp(opt, "huge=never") == 0)
		snprintf(buf, cap, "/dev/shm is mounted with %s: remount it "
		         "with 'mount -o remount,huge=advise /dev/shm' (or set "
		         "huge=advise for /dev/shm in /etc/fstab)", opt);
	else if (opt[0] != '\0')
		snprintf(buf, cap, "/dev/shm is mounted with %s but the "
		         "kernel gave no huge page (memory too fragmented, or "
		         "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/"
		         "shmem_enabled is 'never')", opt);
	else
		snprintf(buf, cap, "huge pages are for stores in /dev/shm, "
		         "and /dev/shm is not mounted");
}
