/*
 * sys_win32.c - sys.h on Windows (mingw-w64).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sys.h"

void cli_sys_init(void)
{
	/* Text mode would turn "\n" into "\r\n": values are bytes. */
	_setmode(_fileno(stdin), _O_BINARY);
	_setmode(_fileno(stdout), _O_BINARY);
}

uint64_t cli_sys_wall_ms(void)
{
	FILETIME ft;
	GetSystemTimePreciseAsFileTime(&ft);
	uint64_t t = (uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime;
	return (t - UINT64_C(116444736000000000)) / 10000u;
}

uint64_t cli_sys_mono_ms(void)
{
	return GetTickCount64();
}

void cli_sys_sleep_ms(unsigned ms)
{
	Sleep(ms);
}

int cli_sys_open_read(const char *path)
{
	return _open(path, _O_RDONLY | _O_BINARY | _O_NOINHERIT);
}

int cli_sys_open_trunc(const char *path)
{
	return _open(path, _O_WRONLY | _O_TRUNC | _O_BINARY | _O_NOINHERIT);
}

int cli_sys_lstat(const char *path, struct stat *st)
{
	return stat(path, st);
}

int cli_sys_mkstemp(char *tmpl)
{
	size_t n = strlen(tmpl);
	if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX") != 0) {
		errno = EINVAL;
		return -1;
	}
	for (int tries = 0; tries < 100; tries++) {
		unsigned r = (unsigned)rand() ^ (unsigned)GetTickCount() ^
		             (unsigned)GetCurrentProcessId() * 2654435761u;
		for (int i = 0; i < 6; i++, r /= 36)
			tmpl[n - 6 + i] = "0123456789abcdefghijklmnopqrstuvwxyz"[r % 36];
		int fd = _open(tmpl, _O_RDWR | _O_CREAT | _O_EXCL | _O_BINARY |
		                         _O_NOINHERIT,
		               _S_IREAD | _S_IWRITE);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

int cli_sys_fsync(int fd)
{
	return _commit(fd);
}

int cli_sys_replace(const char *from, const char *to)
{
	if (MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING |
	                              MOVEFILE_WRITE_THROUGH))
		return 0;
	errno = EACCES;
	return -1;
}

bool cli_sys_gmtime(time_t t, struct tm *out)
{
	return gmtime_s(out, &t) == 0;
}
