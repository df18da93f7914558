/*
 * sys_win32.h - the command line's platform facts on Windows (see sys.h).
 * Included through sys.h only.
 *
 * kvd.exe is a console program that runs in the foreground: it has no -d
 * (a service manager runs it in the background), and Windows has no POSIX
 * groups, so --group is refused; a store's access comes from --mode alone
 * (libkv/os_win32.c: the creator only, or with group or other read bits
 * also every authenticated user, read-only).
 */
#ifndef KVD_SYS_WIN32_H
#define KVD_SYS_WIN32_H

#include <errno.h>
#include <stdlib.h>

static inline int kvd_sys_group_id(const char *name, uint32_t *gid)
{
	(void)name;
	(void)gid;
	return -1;
}

static inline const char *kvd_sys_no_group(void)
{
	return "not available on Windows, which has no POSIX groups; a "
	       "store's access comes from --mode (0600: its creator only; "
	       "0640: every authenticated user may also read)";
}

static inline const char *kvd_sys_no_detach(void)
{
	return "not available on Windows: kvd.exe runs in the foreground; to "
	       "run it in the background, run it under a service manager (a "
	       "service wrapper such as WinSW or NSSM, or Task Scheduler)";
}

static inline const char *kvd_sys_no_net(void)
{
	return "not available on Windows: kvd.exe has no network server (it "
	       "serves the store in shared memory only; the memcached "
	       "protocol needs kvd on Linux)";
}

static inline int kvd_sys_absolute_path(const char *path, char *buf,
                                        size_t cap)
{
	errno = 0;
	if (_fullpath(buf, path, cap) == NULL) {
		if (errno == 0)
			errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Only -d uses it, and -d is refused. */
static inline const char *kvd_sys_run_dir(void)
{
	const char *tmp = getenv("TEMP");

	return tmp != NULL && tmp[0] != '\0' ? tmp : ".";
}

#define KVD_SYS_HELP_INTRO                                                    \
	"Create a kv shared-memory store, or adopt an existing one with its\n" \
	"data, and serve it until Ctrl-C, Ctrl-Break or the console closes.\n" \
	"The store (the section Local\\kv.NAME) lives while kvd or a client\n"  \
	"has it open.\n"

#define KVD_SYS_HELP_STORE                                                    \
	"  -s, --store NAME       store to serve (default: %KV_STORE%, else\n" \
	"                         'default'); a NAME with '/' or '\\' is a\n"  \
	"                         file path\n"

#define KVD_SYS_HELP_ACCESS                                                   \
	"      --mode OCTAL       access to a new store (default 0600: its\n"  \
	"                         creator only; 0640 or 0644: every\n"         \
	"                         authenticated user may also read)\n"

#define KVD_SYS_HELP_DAEMON                                                   \
	"      --pidfile PATH     write kvd's pid to PATH while it serves\n"

/* No network server on Windows: options.c refuses its options. */
#define KVD_SYS_HELP_NET ""

/* Ends the sentence "... e.g. 64M, 4G, 512KiB. " */
#define KVD_SYS_HELP_CREATE                                                   \
	"--size, --mode, --max-value and\n"                                   \
	"--max-items apply when the store is created; an existing store\n"     \
	"keeps its own.\n"

#define KVD_SYS_HELP_STOP                                                     \
	"Stopping: Ctrl-C, Ctrl-Break, closing the console and shutdown\n"   \
	"stop kvd cleanly. kvd.exe has no -d and no --group: to run it in\n" \
	"the background, run it under a service manager.\n"

#endif /* KVD_SYS_WIN32_H */
