/*
 * sys.h - what kvd asks of the system, behind one small private interface
 * (as libkv/os.h and cli/sys.h do), so that kvd.c, options.c and log.c
 * carry no platform conditionals. Private to daemon/.
 *
 *   POSIX (Linux)  sys_posix.c  signals, clocks, the store's mode bits
 *                  sys_posix.h  the command line's platform facts
 *                  detach.c     -d and the pid file
 *   Windows        sys_win32.c  the console's control events, clocks, the
 *                               pid file, and -d refused
 *                  sys_win32.h  the command line's platform facts
 *
 * daemon/meson.build picks the .c files. The command line's part is
 * inline, in sys_posix.h and sys_win32.h, because the fuzz target of kvd's
 * command line (tests/fuzz_cli) builds options.c alone: whatever
 * options.c asks of the system must come with its headers. The #ifdef
 * below is the only platform conditional in daemon/ outside those files
 * (kvd.h's KVD_PRINTF only names mingw's printf format for the compiler).
 */
#ifndef KVD_SYS_H
#define KVD_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * The serve loop's requests, clocks, the store: sys_posix.c, sys_win32.c
 */

/* First thing in main(). On POSIX, fills a closed fd 0, 1 or 2 with
 * /dev/null, so that the store's descriptor can never be one of them (a
 * log line written to "stderr" would land in the store). Returns 0, or -1
 * when there is nowhere to say why (exit 2). */
int kvd_sys_init(void);

/* From now on, stop requests are kept until kvd_sys_wait() takes them, so
 * that one arriving during a long create is not lost and no handler runs
 * in the middle of a library call.
 *   POSIX: SIGTERM, SIGINT (stop) and SIGHUP (statistics) are blocked and
 *          taken synchronously; SIGPIPE is ignored (a log reader that went
 *          away must not kill kvd).
 *   Windows: a console control handler sets an event for Ctrl-C,
 *          Ctrl-Break, the console closing, logoff and shutdown.
 * Returns 0, or -1 with the fatal line written (kvd_fail). */
int kvd_sys_requests_init(void);

enum kvd_request {
	KVD_REQ_NONE,  /* the time ran out: a tick */
	KVD_REQ_STOP,  /* stop serving */
	KVD_REQ_STATS, /* log the store's figures (SIGHUP) */
};

/* Wait at most ms for a request. For KVD_REQ_STOP, *why receives what
 * asked, for the log ("SIGTERM from pid 42", "SIGINT", "Ctrl-C"). */
enum kvd_request kvd_sys_wait(unsigned ms, char *why, size_t cap);

/* A monotonic clock in milliseconds, and a pause. */
uint64_t kvd_sys_mono_ms(void);
void kvd_sys_sleep_ms(unsigned ms);

/* The time now in UTC, as log lines show it: "2025-01-31T12:00:00.123Z". */
void kvd_sys_utc_stamp(char *buf, size_t cap);

/* The permission bits (07777) of the store's backing object at path (as
 * kv__path gives it). Returns 0 with *mode set; 1 where stores have no
 * such bits (Windows: a security descriptor, set at creation from --mode);
 * -1 with errno set. */
int kvd_sys_store_mode(const char *path, unsigned *mode);

/* Why a store cannot have huge pages here, and the setting to change, in
 * words for kvd's error line (KV_ENOHUGE). */
void kvd_sys_huge_hint(char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * The command line: inline, one header per platform. Each provides
 *
 *   int kvd_sys_group_id(const char *name, uint32_t *gid)
 *       the gid of group name: 0, or -1 if there is none;
 *   const char *kvd_sys_no_group(void), const char *kvd_sys_no_detach(void),
 *   const char *kvd_sys_no_net(void)
 *       NULL where --group, -d and the memcached protocol server's
 *       options (--listen...) work, else why they are refused;
 *   int kvd_sys_absolute_path(const char *path, char *buf, size_t cap)
 *       path made absolute against the current directory: 0, or -1 with
 *       errno set;
 *   const char *kvd_sys_run_dir(void)
 *       the directory of -d's default pid file when $XDG_RUNTIME_DIR is
 *       unset;
 *   KVD_SYS_HELP_*
 *       the parts of kvd --help that differ.
 */
#ifdef _WIN32
#include "sys_win32.h"
#else
#include "sys_posix.h"
#endif

#endif /* KVD_SYS_H */
