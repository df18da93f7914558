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

static inline const char *kvd_sys_no_net(void)
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

#define KVD_SYS_HELP_NET                                                      \
	"\n"                                                                  \
	"The memcached protocol (off unless --listen is given or systemd\n"   \
	"passes listening sockets, LISTEN_FDS):\n"                            \
	"      --listen ADDR      serve it on ADDR, repeatable: HOST:PORT for\n" \
	"                         TCP (127.0.0.1:11211, [::1]:11211,\n"       \
	"                         localhost:11211; port 0: any free port, as\n" \
	"                         logged), or unix:PATH for a UNIX socket\n"   \
	"                         with the store's mode and group\n"          \
	"      --threads N        worker threads (default: one per CPU)\n"    \
	"      --max-conns N      clients served at once (default 1024); one\n" \
	"                         more gets \"ERROR Too many open\n"          \
	"                         connections\" and is closed\n"              \
	"      --idle-timeout SECONDS\n"                                      \
	"                         close a client idle that long (default 0:\n" \
	"                         never, as memcached)\n"                      \
	"      --auth-file FILE   clients must log in first with a\n"         \
	"                         user:password line of FILE (memcached -Y)\n" \
	"\n"

/* Ends the sentence "... e.g. 64M, 4G, 512KiB. " */
#define KVD_SYS_HELP_CREATE                                                   \
	"--size, --mode, --group, --max-value,\n"                             \
	"--max-items and --huge-pages apply when the store is created; an\n"  \
	"existing store keeps its own.\n"

#define KVD_SYS_HELP_STOP                                                     \
	"Signals: SIGTERM, SIGINT stop kvd (the store stays); SIGHUP logs\n"   \
	"statistics, the expiry sweep's and the memcached protocol's\n"       \
	"included.\n"

#endif /* KVD_SYS_POSIX_H */
