/*
 * sys_posix.c - sys.h on Linux and other POSIX systems.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

void cli_sys_init(void)
{
	signal(SIGPIPE, SIG_IGN);
}

static uint64_t ms_of(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cli_sys_wall_ms(void)
{
	return ms_of(CLOCK_REALTIME);
}

uint64_t cli_sys_mono_ms(void)
{
	return ms_of(CLOCK_MONOTONIC);
}

void cli_sys_sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int cli_sys_open_read(const char *path)
{
	return open(path, O_RDONLY | O_CLOEXEC);
}

int cli_sys_open_trunc(const char *path)
{
	return open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
}

int cli_sys_lstat(const char *path, struct stat *st)
{
	return lstat(path, st);
}

int cli_sys_mkstemp(char *tmpl)
{
	return mkstemp(tmpl);
}

int cli_sys_fsync(int fd)
{
	return fsync(fd);
}

int cli_sys_replace(const char *from, const char *to)
{
	return rename(from, to);
}

bool cli_sys_gmtime(time_t t, struct tm *out)
{
	return gmtime_r(&t, out) != NULL;
}
