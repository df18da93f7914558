/*
 * sys_win32.c - sys.h on Windows (mingw-w64), Windows' side of detach.c's
 * calls, and of mc_net.c's (no network server: kvd.exe serves the store
 * in shared memory only).
 *
 * kvd.exe is a console program. It runs in the foreground and logs to
 * stderr; a service manager (a service wrapper such as WinSW or NSSM, or
 * Task Scheduler) runs it in the background, so there is no -d (options.c
 * refuses it with that advice) and kvd_detach() only fails.
 *
 * Stop requests
 *   A console control handler, which Windows runs on a thread of its own,
 *   records the first request and sets a manual-reset event; the serve
 *   loop's tick waits on that event (kvd_sys_wait), so the store is only
 *   ever touched from the main thread, as with the POSIX signals, and a
 *   request that comes during a long create stays set until the loop
 *   starts.
 *     - Ctrl-C and Ctrl-Break: the handler returns at once; kvd stops.
 *     - The console closing, and shutdown: Windows ends the process as
 *       soon as the handler returns (or after its time limit, 5 s for a
 *       closing console), so the handler does not return: it sleeps until
 *       main() has stopped cleanly and returned, which ends the process.
 *     - Logoff: ignored. Only services receive it, for any user's logoff,
 *       and a kvd run by a service manager must outlive a user's session.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvd.h"
#include "sys.h"

static HANDLE stop_event;         /* set by on_console */
static volatile LONG stop_type = -1; /* the first request's CTRL_..._EVENT */

static BOOL WINAPI on_console(DWORD type)
{
	switch (type) {
	case CTRL_C_EVENT:
	case CTRL_BREAK_EVENT:
	case CTRL_CLOSE_EVENT:
	case CTRL_SHUTDOWN_EVENT:
		break;
	case CTRL_LOGOFF_EVENT:
		return TRUE;
	default:
		return FALSE;
	}
	InterlockedCompareExchange(&stop_type, (LONG)type, -1);
	SetEvent(stop_event);
	if (type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT)
		return TRUE;
	Sleep(INFINITE);
	return TRUE;
}

/* Nothing to do: the store is a HANDLE, never one of the C runtime's
 * descriptors 0, 1 and 2. */
int kvd_sys_init(void)
{
	return 0;
}

int kvd_sys_requests_init(void)
{
	stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (stop_event == NULL) {
		kvd_fail("stop event: Windows error %lu",
		         (unsigned long)GetLastError());
		return -1;
	}
	/* A process started in a new process group (CREATE_NEW_PROCESS_GROUP,
	 * as service wrappers do) inherits "ignore Ctrl-C"; kvd takes it, as
	 * it takes SIGINT on POSIX. Without a console this fails, harmlessly:
	 * there is no Ctrl-C to take. */
	SetConsoleCtrlHandler(NULL, FALSE);
	if (!SetConsoleCtrlHandler(on_console, TRUE)) {
		kvd_fail("console control handler: Windows error %lu",
		         (unsigned long)GetLastError());
		return -1;
	}
	return 0;
}

enum kvd_request kvd_sys_wait(unsigned ms, char *why, size_t cap)
{
	if (WaitForSingleObject(stop_event, ms) != WAIT_OBJECT_0)
		return KVD_REQ_NONE;
	switch (stop_type) {
	case CTRL_C_EVENT:
		snprintf(why, cap, "Ctrl-C");
		break;
	case CTRL_BREAK_EVENT:
		snprintf(why, cap, "Ctrl-Break");
		break;
	case CTRL_CLOSE_EVENT:
		snprintf(why, cap, "console closed");
		break;
	default:
		snprintf(why, cap, "system shutdown");
		break;
	}
	return KVD_REQ_STOP;
}

uint64_t kvd_sys_mono_ms(void)
{
	return GetTickCount64();
}

void kvd_sys_sleep_ms(unsigned ms)
{
	Sleep(ms);
}

void kvd_sys_utc_stamp(char *buf, size_t cap)
{
	SYSTEMTIME t;

	GetSystemTime(&t);
	snprintf(buf, cap, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
	         (unsigned)t.wYear, (unsigned)t.wMonth, (unsigned)t.wDay,
	         (unsigned)t.wHour, (unsigned)t.wMinute, (unsigned)t.wSecond,
	         (unsigned)t.wMilliseconds);
}

/* A section's (or a file store's) access is its security descriptor,
 * made by libkv from --mode at creation: there are no bits to show or to
 * check here. */
int kvd_sys_store_mode(const char *path, unsigned *mode)
{
	(void)path;
	(void)mode;
	return 1;
}

/* ------------------------------------------------------------------------
 * kvd.h's detach.c calls
 */

int kvd_detach(int *ready_fd)
{
	*ready_fd = -1;
	kvd_fail("-d: %s", kvd_sys_no_detach());
	return -1;
}

void kvd_ready(int *ready_fd)
{
	*ready_fd = -1;
}

/* An errno value for a Windows error, for kvd.c's strerror(). */
static int errno_of(DWORD e)
{
	switch (e) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
		return ENOENT;
	case ERROR_ACCESS_DENIED:
	case ERROR_SHARING_VIOLATION:
	case ERROR_LOCK_VIOLATION:
	case ERROR_WRITE_PROTECT:
		return EACCES;
	case ERROR_FILENAME_EXCED_RANGE:
		return ENAMETOOLONG;
	case ERROR_DISK_FULL:
	case ERROR_HANDLE_DISK_FULL:
		return ENOSPC;
	case ERROR_INVALID_NAME:
	case ERROR_DIRECTORY:
		return EINVAL;
	default:
		return EIO;
	}
}

/* As on POSIX: a temporary file in the same directory, then a rename over
 * the path, so that a reader sees the old pid or the new one. */
int kvd_pidfile_write(const char *path)
{
	char tmp[MAX_PATH + 32], buf[32];
	DWORD put = 0;
	HANDLE h;
	int err = 0;
	int len;

	len = snprintf(tmp, sizeof(tmp), "%s.%lu.tmp", path,
	               (unsigned long)GetCurrentProcessId());
	if (len < 0 || (size_t)len >= sizeof(tmp))
		return ENAMETOOLONG;
	h = CreateFileA(tmp, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
	                FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE)
		return errno_of(GetLastError());
	len = snprintf(buf, sizeof(buf), "%lu\n",
	               (unsigned long)GetCurrentProcessId());
	if (!WriteFile(h, buf, (DWORD)len, &put, NULL) || put != (DWORD)len ||
	    !FlushFileBuffers(h))
		err = errno_of(GetLastError());
	if (!CloseHandle(h) && err == 0)
		err = errno_of(GetLastError());
	if (err == 0 &&
	    !MoveFileExA(tmp, path,
	                 MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
		err = errno_of(GetLastError());
	if (err != 0)
		DeleteFileA(tmp);
	return err;
}

int kvd_pidfile_remove(const char *path)
{
	char buf[32];
	DWORD n = 0;
	HANDLE h;
	BOOL ok;

	h = CreateFileA(path, GENERIC_READ,
	                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
	                NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
	if (h == INVALID_HANDLE_VALUE) {
		DWORD e = GetLastError();

		return e == ERROR_FILE_NOT_FOUND ? 0 : errno_of(e);
	}
	ok = ReadFile(h, buf, sizeof(buf) - 1, &n, NULL);
	CloseHandle(h);
	if (!ok)
		return errno_of(GetLastError());
	buf[n] = '\0';
	/* Someone else's now: theirs to remove. */
	if (strtoul(buf, NULL, 10) != GetCurrentProcessId())
		return 0;
	return DeleteFileA(path) ? 0 : errno_of(GetLastError());
}

/* kvd.h's network server: none on Windows (mc_net.c is not built, and
 * options.c refuses --listen and its companions), so nothing to serve. */
int kvd_net_start(const struct kvd_config *cfg, kv_t *kv,
                  struct kvd_net **net)
{
	(void)cfg;
	(void)kv;
	*net = NULL;
	return 0;
}

void kvd_net_tick(struct kvd_net *net)
{
	(void)net;
}

void kvd_net_log_stats(struct kvd_net *net)
{
	(void)net;
}

void kvd_net_stop(struct kvd_net *net)
{
	(void)net;
}

void kvd_sys_huge_hint(char *buf, size_t cap)
{
	snprintf(buf, cap, "kvd does not back stores with large pages on "
	         "Windows");
}
