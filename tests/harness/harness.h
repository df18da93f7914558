/*
 * harness.h - what every kv test binary shares: unique store names that are
 * always removed, child processes that are always reaped, and assertions
 * that print both sides (and the child's output) when they fail.
 *
 * Include this instead of <cmocka.h>: it pulls cmocka in with the headers
 * cmocka needs before it.
 *
 * Lifetime. Everything the harness hands out or starts is registered:
 * h_cleanup() kills (SIGKILL, by pid, never by name) and reaps every child
 * still running, destroys every store name it handed out or was told
 * about, unmounts what it mounted and removes its temporary directories.
 * It runs from an atexit handler in the process that first used the
 * harness (never in a forked child), and tests should also run it after
 * each test: pass h_teardown as the cmocka teardown, e.g.
 *
 *     cmocka_unit_test_teardown(test_x, h_teardown)
 *
 * so a failed test (cmocka longjmps out of it) still leaves nothing behind.
 *
 * Failures. Functions that can only fail through a broken environment
 * (fork, pipe, memfd) fail the current test with a message; functions whose
 * result a test may want to check return it.
 */
#ifndef KV_TEST_HARNESS_H
#define KV_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

/* ------------------------------------------------------------------------
 * Store names and cleanup
 */

/* A store name unique to this call: "t.<tag>.<pid>.<counter>" (tag is cut
 * so the name stays within KV_MAX_NAME). The string is owned by the
 * harness and stays valid until the process exits. The name is registered:
 * h_cleanup() calls kv_destroy() on it (a missing store is fine). */
const char *h_store_name(const char *tag);

/* Register a store name or file path made some other way, so h_cleanup()
 * destroys it too. The string is copied. */
void h_register_store(const char *name);

/* A fresh directory "/tmp/kvtest.<tag>.XXXXXX", removed with everything in
 * it by h_cleanup() (after the stores are destroyed). Owned by the harness. */
const char *h_tmpdir(const char *tag);

/* Mount a tmpfs with the given options ("size=4m") on dir. Returns true if
 * mounted; false if not permitted (not root, no CAP_SYS_ADMIN, no tmpfs),
 * so the test can skip(). A mount made here is unmounted by h_cleanup(). */
bool h_mount_tmpfs(const char *dir, const char *options);

/* Kill and reap every registered process, destroy every registered store,
 * unmount and remove what the harness made. Safe to call many times. */
void h_cleanup(void);

/* Memory for a test that may fail while holding it (a failed assertion
 * longjmps past any free): h_cleanup() frees every block not yet released
 * with h_free(). Fails the test when out of memory. */
void *h_alloc(size_t n);
void h_free(void *p);

/* cmocka setup/teardown shaped wrapper of h_cleanup(); returns 0. */
int h_teardown(void **state);

/* "/dev/shm/kv.<name>", the file behind a named (POSIX shm) store. The
 * string is owned by the harness and valid until the next call. */
const char *h_shm_path(const char *name);

/* ------------------------------------------------------------------------
 * Child processes
 */

/* How to start a child. Zero-initialise; every field is optional. */
struct h_spawn_opts {
	/* Bytes to give on standard input through a pipe, then EOF. With
	 * stdin_len 0 and stdin_data NULL, stdin is /dev/null (unless
	 * keep_stdin). */
	const void *stdin_data;
	size_t stdin_len;
	/* Keep a pipe to the child's stdin open (h_proc.stdin_fd) for the
	 * test to write to or close (h_close_stdin). Ignores stdin_data. */
	bool keep_stdin;
	/* NULL-terminated list of environment changes applied in the child:
	 * "NAME=VALUE" sets, a bare "NAME" unsets. */
	const char *const *env;
	/* Run the child as nobody:nogroup (65534); needs root, see
	 * h_require_root(). */
	bool as_nobody;
	/* Working directory of the child (NULL: the test's). */
	const char *cwd;
	/* Give the child a pseudo-terminal as stdout instead of a capture
	 * file (output is still captured, through the pty master). */
	bool stdout_tty;
};

/* A started child. stdout and stderr go to anonymous files (memfd), so a
 * child never blocks on a full pipe and output is kept whole and exact. */
struct h_proc {
	pid_t pid;       /* 0 once reaped */
	int stdin_fd;    /* write end of the stdin pipe, or -1 */
	int out_fd;      /* capture of stdout (memfd, or pty master) */
	int err_fd;      /* capture of stderr (memfd) */
	char **argv;     /* copy, for messages */
	int status;      /* raw wait status once reaped */
};

/* What a finished child did. out and err are NUL-terminated for
 * convenience, but out_len/err_len are the real lengths (binary-safe). */
struct h_result {
	int status;      /* raw wait status */
	int code;        /* exit code, or -1 if it did not exit normally */
	int sig;         /* terminating signal, or 0 */
	bool timed_out;  /* killed by the harness after the timeout */
	char *out;
	size_t out_len;
	char *err;
	size_t err_len;
	char *cmd;       /* the command line, for messages */
};

/* Default timeout for h_run and h_wait, in milliseconds: ten seconds,
 * times $KV_TEST_TIMEOUT_SCALE where that is set (meson sets it for the
 * sanitizer builds, whose processes start and run several times slower).
 * It is a hang detector, never a speed check. */
int h_timeout_ms(int ms);
#define H_TIMEOUT_MS h_timeout_ms(10000)

/* Start argv[0] (a path, or looked up in PATH) with argv. Registered, so
 * h_cleanup() kills it if the test does not. Fails the test if fork/exec
 * fails. The returned object is owned by the harness; it stays valid until
 * h_cleanup(). */
struct h_proc *h_start(const char *const argv[],
                       const struct h_spawn_opts *opts);

/* Wait up to timeout_ms for p to exit, then fill *r (if r is not NULL) with
 * its status and everything it wrote. On timeout the child is killed with
 * SIGKILL and reaped, r->timed_out is set and false is returned; true
 * otherwise. Release r with h_result_free(). */
bool h_wait(struct h_proc *p, int timeout_ms, struct h_result *r);

/* Send sig to p (if it has not been reaped), then wait as h_wait does. */
bool h_stop(struct h_proc *p, int sig, int timeout_ms, struct h_result *r);

/* Close the pipe to p's stdin (EOF for the child). */
void h_close_stdin(struct h_proc *p);

/* True while p (or any pid we may signal) is alive and not a zombie. */
bool h_alive(pid_t pid);

/* Everything p has written to stdout / stderr so far (a snapshot),
 * NUL-terminated; *len gets the length. Release with h_free() (or leave it
 * to h_cleanup()). */
char *h_read_out(struct h_proc *p, size_t *len);
char *h_read_err(struct h_proc *p, size_t *len);

/* Start, wait H_TIMEOUT_MS, collect. Fails the test on timeout (printing
 * what the child wrote). opts may be NULL. */
void h_run(struct h_result *r, const char *const argv[],
           const struct h_spawn_opts *opts);

/* Release what h_wait/h_run put in *r (else h_cleanup() does). */
void h_result_free(struct h_result *r);

/* Register a pid that is not our direct child (a daemon that detached):
 * h_cleanup() SIGKILLs it if still alive. The harness makes the test
 * process a child subreaper, so a detached grandchild is re-parented to it
 * and can be reaped: h_wait_pid_gone() does that. */
void h_track_pid(pid_t pid);
bool h_wait_pid_gone(pid_t pid, int timeout_ms);

/* Poll cond(ctx) every few milliseconds until it returns true (-> true) or
 * timeout_ms passes (-> false). */
bool h_wait_for(bool (*cond)(void *ctx), void *ctx, int timeout_ms);

/* Skip the current test unless running as root (needed for as_nobody and
 * mounts). */
void h_require_root(void);

/* ------------------------------------------------------------------------
 * kv and kvd
 */

/* Paths of the binaries under test, from $KV_BIN / $KVD_BIN (set by meson's
 * test_env). Fail the test when unset. */
const char *h_kv_bin(void);
const char *h_kvd_bin(void);

/* Run `kv -s store ARGS...` (store may be NULL: no -s). The argument list
 * ends with NULL. */
void h_kv(struct h_result *r, const char *store, ...);
/* Same with spawn options (stdin bytes, env, as_nobody). */
void h_kv_opts(struct h_result *r, const struct h_spawn_opts *opts,
               const char *store, ...);

/* Start `kvd -s store ARGS...` in the foreground (args end with NULL) and
 * wait until it serves the store: the store opens and reports this kvd's
 * pid. Fails the test (printing kvd's stderr) if kvd exits first or does
 * not get there in H_TIMEOUT_MS. The store name is registered. */
struct h_proc *h_kvd(const char *store, ...);

/* Run `kvd -s store ARGS...` to completion (args end with NULL), as
 * h_run does: for the cases where kvd must refuse to start, or detaches
 * (-d). The store name is registered. */
void h_kvd_run(struct h_result *r, const char *store, ...);

/* True when `name` opens (KV_RDONLY) and its header names pid as its
 * serving daemon (pid 0: any or none). */
bool h_store_served_by(const char *name, pid_t pid);

/* ------------------------------------------------------------------------
 * Assertions that print the child's output on failure
 */

#define H_ASSERT_EXIT(r, c) h__assert_exit((r), (c), __FILE__, __LINE__)
/* stdout equals exactly these bytes */
#define H_ASSERT_OUT(r, bytes, len)                                            \
	h__assert_bytes((r), "stdout", (r)->out, (r)->out_len, (bytes), (len), \
	                __FILE__, __LINE__)
#define H_ASSERT_OUT_STR(r, s) H_ASSERT_OUT((r), (s), strlen(s))
/* stderr contains the substring */
#define H_ASSERT_ERR_HAS(r, s) h__assert_has((r), "stderr", (r)->err, (s), \
                                             __FILE__, __LINE__)
#define H_ASSERT_OUT_HAS(r, s) h__assert_has((r), "stdout", (r)->out, (s), \
                                             __FILE__, __LINE__)
/* stderr is exactly one line, starting with prefix ("kv: ") */
#define H_ASSERT_ERR_LINE(r, prefix)                                           \
	h__assert_err_line((r), (prefix), __FILE__, __LINE__)
/* exit code c and one stderr line with prefix containing s */
#define H_ASSERT_FAILS(r, c, prefix, s)                                        \
	do {                                                                   \
		H_ASSERT_EXIT((r), (c));                                       \
		H_ASSERT_ERR_LINE((r), (prefix));                              \
		H_ASSERT_ERR_HAS((r), (s));                                    \
	} while (0)

/* Print a result (command, status, escaped stdout and stderr). */
void h_dump(const struct h_result *r);

void h__assert_exit(const struct h_result *r, int code, const char *file,
                    int line);
void h__assert_bytes(const struct h_result *r, const char *what,
                     const char *got, size_t got_len, const void *want,
                     size_t want_len, const char *file, int line);
void h__assert_has(const struct h_result *r, const char *what,
                   const char *got, const char *needle, const char *file,
                   int line);
void h__assert_err_line(const struct h_result *r, const char *prefix,
                        const char *file, int line);

#endif /* KV_TEST_HARNESS_H */
