/*
 * kvd.h - the calls between kvd's files. Private to daemon/.
 *
 * kvd is split by concern:
 *   kvd.c      startup (create or adopt, claim), the serve loop, shutdown
 *   options.c  the command line: options, sizes, modes, the pid-file path
 *   detach.c   -d: double fork, the readiness pipe, the pid file (POSIX)
 *   log.c      log lines (stderr or syslog) and the one fatal error line
 *   mc_net.c   the memcached protocol server's sockets and threads (POSIX),
 *              around mc_proto.c's sessions (mc.h)
 *   sys.h      what kvd asks of the system: sys_posix.c, or sys_win32.c
 *              (which also has Windows' side of detach.c's calls)
 */
#ifndef KVD_H
#define KVD_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/* printf-style checking, for mingw's C99 stdio too (__MINGW_PRINTF_FORMAT
 * is gnu_printf under __USE_MINGW_ANSI_STDIO, which the build sets). */
#if defined(__MINGW_PRINTF_FORMAT)
#define KVD_PRINTF(f, a) __attribute__((format(__MINGW_PRINTF_FORMAT, f, a)))
#elif defined(__GNUC__)
#define KVD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KVD_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------
 * options.c
 */

/* At most this many --listen options. */
#define KVD_MAX_LISTEN 16

/* The longest UNIX socket path, NUL included: sizeof(sun_path) on Linux
 * (mc_net.c checks that the system's is at least this). */
#define KVD_UNIX_PATH_MAX 108

/* One --listen ADDR, checked for form only: names are resolved, and
 * sockets made, when kvd starts serving (mc_net.c). */
struct kvd_listen {
	const char *arg;              /* as given, for messages */
	bool is_unix;                 /* unix:PATH, else HOST:PORT */
	char host[256];               /* TCP: the host, without [ ] */
	char port[6];                 /* TCP: 0 to 65535, in decimal */
	char path[KVD_UNIX_PATH_MAX]; /* UNIX: the path, made absolute */
};

/* Everything the command line decides. The *_given flags let kvd tell "the
 * default" from "asked for explicitly", which matters when it adopts an
 * existing store whose fixed geometry may differ from what was asked. */
struct kvd_config {
	const char *store;       /* -s, else $KV_STORE, else "default" */
	struct kv_options opts;  /* zero fields mean the library default */
	bool size_given;
	bool mode_given;
	bool max_value_given;
	bool max_items_given;
	bool daemonize;          /* -d */
	bool quiet;              /* -q */
	bool verbose;            /* -v */
	uint64_t sweep_buckets;  /* --sweep-buckets: per tick, 0 = no sweep */
	char pidfile[PATH_MAX];  /* absolute path, or "" for no pid file */
	/* The memcached protocol server (mc_net.c). */
	struct kvd_listen listen[KVD_MAX_LISTEN]; /* --listen, in order */
	unsigned nlisten;
	unsigned threads;        /* --threads; 0: one per online CPU */
	unsigned max_conns;      /* --max-conns (default 1024) */
	unsigned idle_timeout;   /* --idle-timeout, seconds; 0: never */
	const char *auth_file;   /* --auth-file, or NULL */
	bool net_given;          /* one of the four above was given */
};

/* Parse argv into *cfg. Returns true when kvd should run; false when it
 * should exit at once with *status (0 after --help or --version, 2 after a
 * usage error, whose one-line message is already on stderr). Never exits;
 * may be called again with another argv (getopt_long starts afresh), but
 * permutes argv as getopt_long does. */
bool kvd_config_parse(int argc, char **argv, struct kvd_config *cfg,
                      int *status);

/* The parsers of option values, for kvd_config_parse and its fuzz target
 * (tests/fuzz_cli). Each returns 0 with *out set, or -1 with *why a static
 * string saying what is wrong; none prints anything.
 *
 * kvd_parse_size: a whole number of bytes, > 0, with an optional binary
 * suffix K, M, G, T (either case, optionally followed by "B", or by "iB"
 * after a suffix: 64M, 4G, 512KiB, 4096, 4096B); anything that overflows
 * 64 bits is refused.
 * kvd_parse_count: digits only (--max-items, --sweep-buckets); zero only
 * when allow_zero.
 * kvd_parse_mode: octal permission bits, at most 0777, never
 * world-writable, always with owner read and write.
 * kvd_parse_group: a group name (getgrnam; Windows has none, and there
 * options.c refuses --group before parsing it), else a decimal gid below
 * 4294967295. */
int kvd_parse_size(const char *s, uint64_t *out, const char **why);
int kvd_parse_count(const char *s, uint64_t *out, bool allow_zero,
                    const char **why);
int kvd_parse_mode(const char *s, uint32_t *out, const char **why);
int kvd_parse_group(const char *s, uint32_t *out, const char **why);

/* kvd_parse_listen: one --listen ADDR into *out (out->arg = s):
 * "HOST:PORT" (an IPv6 address in brackets: "[::1]:11211"; PORT 0 to
 * 65535, 0 letting the system pick) or "unix:PATH" (made absolute, shorter
 * than KVD_UNIX_PATH_MAX). */
int kvd_parse_listen(const char *s, struct kvd_listen *out,
                     const char **why);

/* Make path absolute against the current directory (a detached kvd chdirs
 * to "/" but must still find its pid file and store at exit). Returns 0, or
 * -1 with errno set. */
int kvd_absolute_path(const char *path, char *buf, size_t cap);

/* "16 MiB", "1.5 GiB", "4000 bytes": for log lines. */
void kvd_fmt_bytes(uint64_t bytes, char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * log.c
 */

enum kvd_level {
	KVD_DEBUG, /* only with -v */
	KVD_INFO,  /* suppressed by -q */
	KVD_WARN,  /* suppressed by -q */
	KVD_ERROR, /* always */
};

/* Set the verbosity (quiet wins over verbose). Until kvd_log_detached(),
 * lines go to stderr. */
void kvd_log_setup(bool quiet, bool verbose);

/* Where a detached kvd's lines go: tag ("warning: ", or "") then msg. */
typedef void kvd_log_sink(enum kvd_level level, const char *tag,
                          const char *msg);

/* From now on log lines go to sink (stderr is /dev/null; detach.c's sink
 * is syslog), fatal lines too, and also to fail_fd (the readiness pipe)
 * until kvd_log_fail_fd(-1). */
void kvd_log_detached(int fail_fd, kvd_log_sink *sink);
void kvd_log_fail_fd(int fd);

/* One log line: "<ISO-8601 UTC> kvd[PID]: message". */
void kvd_log(enum kvd_level level, const char *fmt, ...) KVD_PRINTF(2, 3);

/* The fatal line "kvd: <what>: <why>", for whoever started kvd. The caller
 * then exits 2. */
void kvd_fail(const char *fmt, ...) KVD_PRINTF(1, 2);

/* ------------------------------------------------------------------------
 * detach.c on POSIX; on Windows, sys_win32.c (no -d: options.c refuses it,
 * so kvd_detach only fails there; the pid file works)
 */

/* Detach from the terminal (-d). Returns 0 in the daemon, with *ready_fd
 * the write end of the readiness pipe; the process that called it never
 * returns on success: it waits for kvd_ready() or a fatal line from the
 * daemon and exits 0 or 2 with it. Returns -1 (fatal line written) if
 * detaching itself failed. */
int kvd_detach(int *ready_fd);

/* Leave the working directory (a detached kvd must not hold one busy),
 * tell the waiting parent the store is served, then close the pipe and set
 * *ready_fd to -1. */
void kvd_ready(int *ready_fd);

/* Write our pid to path atomically (a temporary file, then rename).
 * Returns 0 or an errno value. */
int kvd_pidfile_write(const char *path);

/* Remove path if it still names us. Returns 0 or an errno value. */
int kvd_pidfile_remove(const char *path);

/* ------------------------------------------------------------------------
 * mc_net.c on POSIX: the memcached protocol server (mc.h). Windows has no
 * server: options.c refuses --listen there, and sys_win32.c's versions of
 * these calls serve nothing.
 */

struct kvd_net;

/* Start serving the memcached protocol on the store kv, if there is
 * anything to listen on: cfg's --listen addresses and the sockets systemd
 * passed (LISTEN_FDS, when LISTEN_PID is ours; the variables are unset).
 * Loads --auth-file, makes every listener (a UNIX socket gets the store's
 * mode and group), starts the worker threads and logs "listening on ADDR"
 * for each listener. Call it from the main thread, with the stop signals
 * already held (kvd_sys_requests_init): the threads it starts block every
 * signal. Returns 0 with *net set (NULL when there is nothing to listen
 * on), or -1 with the fatal line written and nothing left behind. */
int kvd_net_start(const struct kvd_config *cfg, kv_t *kv,
                  struct kvd_net **net);

/* Kvd's tick: run what is due (a delayed flush_all). net may be NULL. */
void kvd_net_tick(struct kvd_net *net);

/* SIGHUP: log the server's counters (connections, bytes, commands). net
 * may be NULL. */
void kvd_net_log_stats(struct kvd_net *net);

/* Stop accepting, close every connection, join the threads, remove the
 * UNIX sockets that are still ours and free everything. net may be NULL. */
void kvd_net_stop(struct kvd_net *net);

#endif /* KVD_H */
