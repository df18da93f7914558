/*
 * sys_posix.h - the command line's platform facts on Linux and other POSIX
 * systems (see sys.h): groups from getgrnam, paths rooted at '/', -d.
 * Included through sys.h only.
 */
#ifndef KVD_SYS_POSIX_H
#define KVD_SYS_POSIX_H

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

static inline int kvd_sys_group_id(const char *name, uint32_t *gid)
{
	struct group *gr = getgrnam(name);

	if (gr == NULL)
		return -1;
	*gid = (uint32_t)gr->gr_gid;
	return 0;
}

static inline const char *kvd_sys_no_group(void)
{
	return NULL;
}

static inline const char *kvd_sys_no_detach(void)
{
	return NULL;
}

static inline int kvd_sys_absolute_path(const char *path, char *buf,
                                        size_t cap)
{
	char cwd[PATH_MAX];
	int n;

	if (path[0] == '/') {
		n = snprintf(buf, cap, "%s", path);
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return -1;
		n = snprintf(buf, cap, "%s/%s", cwd, path);
	}
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static inline const char *kvd_sys_run_dir(void)
{
	return geteuid() == 0 ? "/run" : "/tmp";
}

#define KVD_SYS_HELP_INTRO                                                    \
	"Create a kv shared-memory store, or adopt an existing one with its\n" \
	"data, and serve it until SIGTERM or SIGINT. The store outlives kvd.\n"

#define KVD_SYS_HELP_STORE                                                    \
	"  -s, --store NAME       store to serve (default: $KV_STORE, else\n"  \
	"                         'default'); a NAME with '/' is a file path\n"

#define KVD_SYS_HELP_ACCESS                                                   \
	"      --mode OCTAL       permissions of a new store (default 0600;\n" \
	"                         never world-writable)\n"                      \
	"      --group GROUP      group of a new store (name or number);\n"    \
	"                         with --mode 0640 its members may read,\n"    \
	"                         with 0660 also write\n"

#define KVD_SYS_HELP_DAEMON                                                   \
	"  -d, --daemon           detach, log to syslog, write a pid file\n"   \
	"      --pidfile PATH     pid file (default with -d:\n"                \
	"                         $XDG_RUNTIME_DIR/kvd.NAME.pid, else\n"       \
	"                         /run/kvd.NAME.pid as root, else\n"           \
	"                         /tmp/kvd.NAME.pid)\n"

/* Ends the sentence "... e.g. 64M, 4G, 512KiB. " */
#define KVD_SYS_HELP_CREATE                                                   \
	"--size, --mode, --group, --max-value\n"                              \
	"and --max-items apply when the store is created; an existing store\n" \
	"keeps its own.\n"

#define KVD_SYS_HELP_STOP                                                     \
	"Signals: SIGTERM, SIGINT stop kvd (the store stays); SIGHUP logs\n"   \
	"statistics, the expiry sweep's included.\n"

#endif /* KVD_SYS_POSIX_H */
