/*
 * harness.c - shared test support: unique store names, child processes
 * with captured output and timeouts, and cleanup of both. See harness.h for
 * the contract of each call.
 *
 * Invariants
 *   - Every store name handed out or registered is destroyed by
 *     h_cleanup(); every child started is killed (by its pid) and reaped.
 *   - Cleanup (atexit, h_cleanup, a stop signal) touches only what the
 *     calling process registered: a child forked to exec leaves with
 *     _exit() if the exec fails, and a forked child that uses the harness
 *     itself starts with an empty registry (see init()), so neither can
 *     destroy the parent's stores or kill the parent's children.
 *   - Children die with the test process (PR_SET_PDEATHSIG), and SIGTERM,
 *     SIGINT or SIGHUP to the test process (meson's timeout) still kill its
 *     children and remove its stores before it dies.
 *   - The test process is a child subreaper, so a daemon that detaches
 *     (double fork) is re-parented to it and can be reaped by pid.
 *
 * Output capture
 *   stdout and stderr of a child go to anonymous memory files (memfd): the
 *   child never blocks on a full pipe, nothing needs draining while it
 *   runs, and the bytes are read back whole with their exact length. Only
 *   stdin is a pipe (fed while waiting), since "reading until EOF from a
 *   pipe" is what a shell gives a command. With stdout_tty the child's
 *   stdout is a pseudo-terminal whose master is drained while waiting.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"

#define NOBODY_ID 65534
#define MAX_DIRS 64
#define MAX_ARGS 64

/* One started child, with what the harness needs to feed and drain it. */
struct proc_slot {
	struct h_proc pub;
	bool reaped;
	const unsigned char *in;  /* stdin bytes still to write */
	size_t in_left;
	char *tty_buf;            /* what the pty master gave so far */
	size_t tty_len, tty_cap;
};

/* A store name handed out or registered. The string lives until the
 * process exits (a test may keep it across h_cleanup()); live says whether
 * the next h_cleanup() must destroy the store. */
struct name_slot {
	char *name;
	bool live;
};

static struct {
	pid_t owner;              /* process that runs the cleanup */
	unsigned counter;
	struct proc_slot **procs; /* started since the last cleanup */
	size_t nprocs, cap_procs;
	struct name_slot *names;
	size_t nnames, cap_names;
	char *dirs[MAX_DIRS];
	int ndirs;
	char *mounts[MAX_DIRS];
	int nmounts;
	pid_t *tracked;           /* detached daemons, by pid */
	size_t ntracked, cap_tracked;
	void **blocks;            /* memory handed out, freed by h_cleanup */
	size_t nblocks, cap_blocks;
	char shm_path[256];
} H;

/* Make room for one more element in a growing array. */
#define GROW(arr, n, cap)                                                      \
	do {                                                                   \
		if ((n) == (cap)) {                                            \
			size_t c_ = (cap) != 0 ? (cap) * 2 : 64;               \
			void *p_ = realloc((arr), c_ * sizeof(*(arr)));        \
			if (p_ == NULL)                                        \
				fail_msg("harness: out of memory");            \
			(arr) = p_;                                            \
			(cap) = c_;                                            \
		}                                                              \
	} while (0)

static void untrack(pid_t pid);

static void at_exit(void)
{
	if (getpid() == H.owner)
		h_cleanup();
}

/* The test process is being stopped from outside (meson's timeout sends
 * SIGTERM, a person presses ^C): no atexit handler will run, so do the part
 * of h_cleanup() that matters and is safe in a signal handler (kill,
 * waitpid, shm_unlink/unlink, umount2, rmdir: plain system calls), then die
 * of the same signal. A forked child that has not exec'd yet leaves it all
 * alone. */
static void on_stop_signal(int sig)
{
	if (getpid() == H.owner) {
		for (size_t i = 0; i < H.nprocs; i++)
			if (H.procs[i]->pub.pid > 0)
				kill(H.procs[i]->pub.pid, SIGKILL);
		for (size_t i = 0; i < H.ntracked; i++)
			kill(H.tracked[i], SIGKILL);
		for (size_t i = 0; i < H.nprocs; i++)
			if (H.procs[i]->pub.pid > 0)
				waitpid(H.procs[i]->pub.pid, NULL, 0);
		for (size_t i = 0; i < H.nnames; i++)
			if (H.names[i].live)
				(void)kv_destroy(H.names[i].name);
		for (int i = H.nmounts - 1; i >= 0; i--)
			(void)umount2(H.mounts[i], MNT_DETACH);
		for (int i = H.ndirs - 1; i >= 0; i--)
			(void)rmdir(H.dirs[i]);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void init(void)
{
	pid_t me = getpid();

	if (H.owner == me)
		return;
	if (H.owner != 0) {
		/* A forked child of a test that uses the harness itself: what
		 * the parent registered is the parent's to clean up. Forget it
		 * without freeing (the memory stays reachable for LSan), and
		 * keep the atexit handler and signal handlers inherited. */
		for (size_t i = 0; i < H.nprocs; i++) {
			H.procs[i]->reaped = true;
			H.procs[i]->pub.pid = 0;
		}
		for (size_t i = 0; i < H.nnames; i++)
			H.names[i].live = false;
		H.ntracked = 0;
		H.nmounts = 0;
		H.ndirs = 0;
		H.owner = me;
		return;
	}
	H.owner = me;
	/* Writing to the stdin pipe of a child that exited early must give
	 * EPIPE, not kill the test. Children get SIGPIPE back before exec. */
	signal(SIGPIPE, SIG_IGN);
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGTERM, on_stop_signal);
	signal(SIGINT, on_stop_signal);
	signal(SIGHUP, on_stop_signal);
	atexit(at_exit);
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fail_msg("harness: out of memory");
	return p;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n != 0 ? n : 1);

	if (p == NULL)
		fail_msg("harness: out of memory");
	return p;
}

/* Memory a test holds while it may fail (cmocka longjmps out of a failed
 * test, past any free): registered, so h_cleanup() frees what is left. */
void *h_alloc(size_t n)
{
	void *p;

	init();
	GROW(H.blocks, H.nblocks, H.cap_blocks);
	p = xmalloc(n);
	H.blocks[H.nblocks++] = p;
	return p;
}

void h_free(void *p)
{
	if (p == NULL)
		return;
	for (size_t i = H.nblocks; i-- > 0;) {
		if (H.blocks[i] == p) {
			H.blocks[i] = H.blocks[--H.nblocks];
			free(p);
			return;
		}
	}
	/* Not ours, or already freed by h_cleanup(): leave it alone. */
	print_error("harness: h_free(%p): not a live harness block\n", p);
}

static void free_blocks(void)
{
	for (size_t i = 0; i < H.nblocks; i++)
		free(H.blocks[i]);
	free(H.blocks);
	H.blocks = NULL;
	H.nblocks = H.cap_blocks = 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Names, directories, mounts, cleanup
 */

/* Register name; returns the harness's copy. */
static const char *register_name(const char *name)
{
	init();
	for (size_t i = 0; i < H.nnames; i++) {
		if (strcmp(H.names[i].name, name) == 0) {
			H.names[i].live = true;
			return H.names[i].name;
		}
	}
	GROW(H.names, H.nnames, H.cap_names);
	H.names[H.nnames].name = xstrdup(name);
	H.names[H.nnames].live = true;
	return H.names[H.nnames++].name;
}

void h_register_store(const char *name)
{
	(void)register_name(name);
}

const char *h_store_name(const char *tag)
{
	char buf[KV_MAX_NAME + 1];
	char t[24];
	size_t n = 0;

	init();
	/* Keep only name characters of the tag, and few enough of them. */
	for (const char *p = tag != NULL ? tag : "x";
	     *p != '\0' && n < sizeof(t) - 1; p++) {
		char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-')
			t[n++] = c;
	}
	t[n] = '\0';
	snprintf(buf, sizeof(buf), "t.%s.%ld.%u", t, (long)getpid(),
	         ++H.counter);
	return register_name(buf);
}

const char *h_shm_path(const char *name)
{
	snprintf(H.shm_path, sizeof(H.shm_path), "/dev/shm/kv.%s", name);
	return H.shm_path;
}

const char *h_tmpdir(const char *tag)
{
	char buf[128];

	init();
	if (H.ndirs == MAX_DIRS)
		fail_msg("harness: too many temporary directories");
	snprintf(buf, sizeof(buf), "/tmp/kvtest.%s.XXXXXX",
	         tag != NULL ? tag : "x");
	if (mkdtemp(buf) == NULL)
		fail_msg("harness: mkdtemp %s: %s", buf, strerror(errno));
	H.dirs[H.ndirs++] = xstrdup(buf);
	return H.dirs[H.ndirs - 1];
}

bool h_mount_tmpfs(const char *dir, const char *options)
{
	init();
	if (H.nmounts == MAX_DIRS)
		fail_msg("harness: too many mounts");
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
		return false;
	H.mounts[H.nmounts++] = xstrdup(dir);
	return true;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		fprintf(stderr, "harness: cannot remove %s: %s\n", path,
		        strerror(errno));
	return 0;
}

/* Kill and reap one child we started. */
static void reap_proc(struct proc_slot *s)
{
	if (s->reaped)
		return;
	kill(s->pub.pid, SIGKILL);
	while (waitpid(s->pub.pid, &s->pub.status, 0) < 0 && errno == EINTR)
		;
	s->reaped = true;
	s->pub.pid = 0;
}

static void free_proc(struct proc_slot *s)
{
	if (s->pub.stdin_fd >= 0)
		close(s->pub.stdin_fd);
	if (s->pub.out_fd >= 0)
		close(s->pub.out_fd);
	if (s->pub.err_fd >= 0)
		close(s->pub.err_fd);
	for (char **a = s->pub.argv; a != NULL && *a != NULL; a++)
		free(*a);
	free(s->pub.argv);
	free(s->tty_buf);
	free(s);
}

void h_cleanup(void)
{
	init();
	/* Processes first: a kvd must not be serving a store we remove. */
	for (size_t i = 0; i < H.nprocs; i++) {
		reap_proc(H.procs[i]);
		free_proc(H.procs[i]);
	}
	H.nprocs = 0;
	while (H.ntracked > 0) {
		pid_t pid = H.tracked[H.ntracked - 1];

		if (h_alive(pid)) {
			kill(pid, SIGKILL);
			(void)h_wait_pid_gone(pid, 5000);
		}
		untrack(pid);
	}
	/* Anything re-parented to us (a detached daemon's helpers). */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;

	for (size_t i = 0; i < H.nnames; i++) {
		int rc;

		if (!H.names[i].live)
			continue;
		H.names[i].live = false;
		rc = kv_destroy(H.names[i].name);
		if (rc != KV_OK && rc != KV_ENOSTORE && rc != KV_ENAME)
			fprintf(stderr, "harness: kv_destroy(%s): %s\n",
			        H.names[i].name, kv_strerror(rc));
	}

	for (int i = H.nmounts - 1; i >= 0; i--) {
		if (umount2(H.mounts[i], MNT_DETACH) != 0)
			fprintf(stderr, "harness: umount %s: %s\n", H.mounts[i],
			        strerror(errno));
		free(H.mounts[i]);
	}
	H.nmounts = 0;
	for (int i = H.ndirs - 1; i >= 0; i--) {
		nftw(H.dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(H.dirs[i]);
	}
	H.ndirs = 0;
	free_blocks();
}

int h_teardown(void **state)
{
	(void)state;
	h_cleanup();
	return 0;
}

void h_require_root(void)
{
	if (geteuid() != 0) {
		print_message("(not root: skipped)\n");
		skip();
	}
}

/* ------------------------------------------------------------------------
 * Children
 */

static int make_memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		fail_msg("harness: memfd_create: %s", strerror(errno));
	return fd;
}

/* In the child, after fork: wire up fds, drop to nobody if asked, apply
 * env, exec. Reports errno through errfd (close-on-exec) on failure. */
/* A program run as nobody must be reachable by nobody, and a build under a
 * private directory (root's home is 0700) is not. Such programs run from a
 * copy in a world-readable temporary directory, made once per process and
 * removed with the harness's other directories. Returns a path to exec,
 * owned by the caller. */
static char *nobody_reachable(const char *path)
{
	static char dir[160];
	char dst[512];
	struct stat st;
	const char *base = strrchr(path, '/');

	if (base == NULL)
		return xstrdup(path); /* found on PATH, as nobody would */
	base++;
	if (dir[0] == '\0' || stat(dir, &st) != 0) {
		snprintf(dir, sizeof(dir), "%s", h_tmpdir("nobody-bin"));
		if (chmod(dir, 0755) != 0)
			fail_msg("harness: chmod %s: %s", dir, strerror(errno));
	}
	snprintf(dst, sizeof(dst), "%s/%s", dir, base);
	if (stat(dst, &st) != 0) {
		int in = open(path, O_RDONLY | O_CLOEXEC);
		int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		               0755);
		char buf[65536];
		ssize_t n;
		if (in < 0 || out < 0)
			fail_msg("harness: copy %s to %s: %s", path, dst,
			         strerror(errno));
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n)
				fail_msg("harness: copy %s: %s", dst,
				         strerror(errno));
		close(in);
		if (close(out) != 0 || n < 0)
			fail_msg("harness: copy %s: %s", dst, strerror(errno));
	}
	return xstrdup(dst);
}

static void child_exec(const char *path, char *const argv[],
                       const struct h_spawn_opts *o, int in_fd, int out_fd,
                       int err_fd, int errfd)
{
	sigset_t none;
	int e;

	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (in_fd >= 0 && dup2(in_fd, 0) < 0)
		goto fail;
	if (dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		goto fail;
	if (o->cwd != NULL && chdir(o->cwd) != 0)
		goto fail;
	if (o->as_nobody) {
		if (setgroups(0, NULL) != 0 || setgid(NOBODY_ID) != 0 ||
		    setuid(NOBODY_ID) != 0)
			goto fail;
	}
	/* If the test process dies without cleaning up, so do we (set after
	 * the uid change, which clears it). A daemon that detaches leaves
	 * this behind with its fork; the harness tracks it by pid instead. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != H.owner)
		_exit(127);
	for (const char *const *e2 = o->env; e2 != NULL && *e2 != NULL; e2++) {
		const char *eq = strchr(*e2, '=');

		if (eq == NULL) {
			unsetenv(*e2);
		} else {
			char name[256];
			size_t n = (size_t)(eq - *e2);

			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			memcpy(name, *e2, n);
			name[n] = '\0';
			setenv(name, eq + 1, 1);
		}
	}
	if (strchr(path, '/') != NULL)
		execv(path, argv);
	else
		execvp(path, argv);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0) {
		/* nothing more to say */
	}
	_exit(127);
}

static char *join_argv(char *const argv[])
{
	size_t n = 1;
	char *s;

	for (int i = 0; argv[i] != NULL; i++)
		n += strlen(argv[i]) + 3;
	s = h_alloc(n);
	s[0] = '\0';
	for (int i = 0; argv[i] != NULL; i++) {
		if (i > 0)
			strcat(s, " ");
		if (argv[i][0] == '\0' || strpbrk(argv[i], " \t\n*'\"") != NULL) {
			strcat(s, "'");
			strcat(s, argv[i]);
			strcat(s, "'");
		} else {
			strcat(s, argv[i]);
		}
	}
	return s;
}

struct h_proc *h_start(const char *const argv[],
                       const struct h_spawn_opts *opts)
{
	static const struct h_spawn_opts none;
	const struct h_spawn_opts *o = opts != NULL ? opts : &none;
	struct proc_slot *s;
	int inpipe[2] = {-1, -1}, errpipe[2];
	int in_fd = -1, out_fd, err_fd, child_out;
	int argc = 0, e = 0;
	ssize_t n;
	pid_t pid;

	init();
	GROW(H.procs, H.nprocs, H.cap_procs);
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		fail_msg("harness: out of memory");
	while (argv[argc] != NULL)
		argc++;
	s->pub.argv = xmalloc(sizeof(char *) * (size_t)(argc + 1));
	for (int i = 0; i < argc; i++)
		s->pub.argv[i] = xstrdup(argv[i]);
	s->pub.argv[argc] = NULL;

	if (o->keep_stdin || o->stdin_data != NULL || o->stdin_len != 0) {
		if (pipe2(inpipe, O_CLOEXEC) != 0)
			fail_msg("harness: pipe: %s", strerror(errno));
		in_fd = inpipe[0];
	} else {
		in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (in_fd < 0)
			fail_msg("harness: /dev/null: %s", strerror(errno));
	}
	err_fd = make_memfd("stderr");
	if (o->stdout_tty) {
		int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

		if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
			fail_msg("harness: pty: %s", strerror(errno));
		child_out = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (child_out < 0)
			fail_msg("harness: pty slave: %s", strerror(errno));
		fcntl(m, F_SETFL, O_NONBLOCK);
		out_fd = m;
	} else {
		out_fd = make_memfd("stdout");
		child_out = out_fd;
	}
	if (pipe2(errpipe, O_CLOEXEC) != 0)
		fail_msg("harness: pipe: %s", strerror(errno));

	char *path = o->as_nobody ? nobody_reachable(s->pub.argv[0])
	                          : xstrdup(s->pub.argv[0]);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("harness: fork: %s", strerror(errno));
	if (pid == 0)
		child_exec(path, s->pub.argv, o, in_fd, child_out, err_fd,
		           errpipe[1]);
	free(path);

	close(errpipe[1]);
	close(in_fd);
	if (child_out != out_fd)
		close(child_out);
	s->pub.pid = pid;
	s->pub.out_fd = out_fd;
	s->pub.err_fd = err_fd;
	s->pub.stdin_fd = inpipe[1];
	s->tty_buf = NULL;
	if (inpipe[1] >= 0 && !o->keep_stdin) {
		fcntl(inpipe[1], F_SETFL, O_NONBLOCK);
		s->in = o->stdin_data;
		s->in_left = o->stdin_len;
	}
	H.procs[H.nprocs++] = s;

	/* Did exec work? The pipe closes on exec, or carries errno. */
	do
		n = read(errpipe[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(errpipe[0]);
	if (n == (ssize_t)sizeof(e)) {
		reap_proc(s);
		fail_msg("harness: cannot start %s%s: %s", argv[0],
		         o->as_nobody ? " as nobody" : "", strerror(e));
	}
	return &s->pub;
}

static struct proc_slot *slot_of(struct h_proc *p)
{
	return (struct proc_slot *)p; /* pub is the first member */
}

/* Feed stdin and drain the pty: what must happen while a child runs. */
static void pump(struct proc_slot *s)
{
	if (s->pub.stdin_fd >= 0 && s->in != NULL) {
		while (s->in_left > 0) {
			ssize_t n = write(s->pub.stdin_fd, s->in, s->in_left);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) { /* EPIPE: the child does not want it */
				s->in_left = 0;
				break;
			}
			s->in += n;
			s->in_left -= (size_t)n;
		}
		if (s->in_left == 0) {
			close(s->pub.stdin_fd);
			s->pub.stdin_fd = -1;
			s->in = NULL;
		}
	}
	if (s->pub.out_fd >= 0 && isatty(s->pub.out_fd)) {
		for (;;) {
			char buf[4096];
			ssize_t n = read(s->pub.out_fd, buf, sizeof(buf));

			if (n <= 0)
				break;
			if (s->tty_len + (size_t)n + 1 > s->tty_cap) {
				size_t cap = (s->tty_cap + (size_t)n) * 2;
				char *nb = realloc(s->tty_buf, cap);

				if (nb == NULL)
					break;
				s->tty_buf = nb;
				s->tty_cap = cap;
			}
			memcpy(s->tty_buf + s->tty_len, buf, (size_t)n);
			s->tty_len += (size_t)n;
		}
	}
}

static char *read_fd_all(int fd, size_t *len)
{
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fstat(fd, &st) != 0)
		st.st_size = 0;
	buf = h_alloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got,
		                  (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*len = got;
	return buf;
}

char *h_read_out(struct h_proc *p, size_t *len)
{
	struct proc_slot *s = slot_of(p);

	if (p->out_fd >= 0 && isatty(p->out_fd)) {
		char *b;

		pump(s);
		b = h_alloc(s->tty_len + 1);
		if (s->tty_len != 0)
			memcpy(b, s->tty_buf, s->tty_len);
		b[s->tty_len] = '\0';
		*len = s->tty_len;
		return b;
	}
	return read_fd_all(p->out_fd, len);
}

char *h_read_err(struct h_proc *p, size_t *len)
{
	return read_fd_all(p->err_fd, len);
}

void h_close_stdin(struct h_proc *p)
{
	struct proc_slot *s = slot_of(p);

	if (p->stdin_fd >= 0) {
		close(p->stdin_fd);
		p->stdin_fd = -1;
	}
	s->in = NULL;
	s->in_left = 0;
}

/* Reap p if it has exited. True once reaped. */
static bool poll_exit(struct proc_slot *s)
{
	pid_t r;

	if (s->reaped)
		return true;
	do
		r = waitpid(s->pub.pid, &s->pub.status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == s->pub.pid || (r < 0 && errno == ECHILD)) {
		s->reaped = true;
		s->pub.pid = 0;
	}
	return s->reaped;
}

static void fill_result(struct h_proc *p, struct h_result *r, bool timed_out)
{
	memset(r, 0, sizeof(*r));
	r->status = p->status;
	r->code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
	r->sig = WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0;
	r->timed_out = timed_out;
	r->out = h_read_out(p, &r->out_len);
	r->err = h_read_err(p, &r->err_len);
	r->cmd = join_argv(p->argv);
}

bool h_wait(struct h_proc *p, int timeout_ms, struct h_result *r)
{
	struct proc_slot *s = slot_of(p);
	long long end = now_ms() + timeout_ms;
	long step_us = 100;
	bool timed_out = false;

	for (;;) {
		pump(s);
		if (poll_exit(s))
			break;
		if (now_ms() >= end) {
			timed_out = true;
			reap_proc(s);
			break;
		}
		struct timespec ts = {0, step_us * 1000};
		nanosleep(&ts, NULL);
		if (step_us < 5000)
			step_us *= 2;
	}
	pump(s);
	if (r != NULL)
		fill_result(p, r, timed_out);
	return !timed_out;
}

bool h_stop(struct h_proc *p, int sig, int timeout_ms, struct h_result *r)
{
	if (!slot_of(p)->reaped)
		kill(p->pid, sig);
	return h_wait(p, timeout_ms, r);
}

void h_run(struct h_result *r, const char *const argv[],
           const struct h_spawn_opts *opts)
{
	struct h_proc *p = h_start(argv, opts);

	if (!h_wait(p, H_TIMEOUT_MS, r)) {
		h_dump(r);
		fail_msg("timed out after %d ms (killed): %s", H_TIMEOUT_MS,
		         r->cmd);
	}
}

void h_result_free(struct h_result *r)
{
	h_free(r->out);
	h_free(r->err);
	h_free(r->cmd);
	memset(r, 0, sizeof(*r));
}

bool h_alive(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *paren;
	bool alive = false;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		/* "pid (comm) S ...": the state follows the last ')'. */
		paren = strrchr(buf, ')');
		alive = paren != NULL && paren[1] == ' ' && paren[2] != 'Z' &&
		        paren[2] != 'X';
	}
	fclose(f);
	return alive;
}

void h_track_pid(pid_t pid)
{
	init();
	GROW(H.tracked, H.ntracked, H.cap_tracked);
	H.tracked[H.ntracked++] = pid;
}

/* A tracked pid that is gone must not be killed later: the number may
 * belong to someone else by then. */
static void untrack(pid_t pid)
{
	for (size_t i = 0; i < H.ntracked; i++) {
		if (H.tracked[i] == pid) {
			H.tracked[i] = H.tracked[--H.ntracked];
			return;
		}
	}
}

bool h_wait_pid_gone(pid_t pid, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	for (;;) {
		/* Ours (directly or as subreaper): reap it. */
		pid_t r = waitpid(pid, NULL, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD && !h_alive(pid))) {
			untrack(pid);
			return true;
		}
		if (now_ms() >= end)
			return false;
		sleep_ms(2);
	}
}

bool h_wait_for(bool (*cond)(void *ctx), void *ctx, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	for (;;) {
		if (cond(ctx))
			return true;
		if (now_ms() >= end)
			return false;
		sleep_ms(2);
	}
}

int h_timeout_ms(int ms)
{
	static int scale;

	if (scale == 0) {
		const char *e = getenv("KV_TEST_TIMEOUT_SCALE");
		long v = e != NULL ? strtol(e, NULL, 10) : 1;

		scale = v >= 1 && v <= 20 ? (int)v : 1;
	}
	return ms * scale;
}

/* ------------------------------------------------------------------------
 * kv and kvd
 */

static const char *env_bin(const char *var)
{
	const char *p = getenv(var);

	if (p == NULL || *p == '\0')
		fail_msg("$%s is not set (run the tests through meson test)",
		         var);
	return p;
}

const char *h_kv_bin(void)
{
	return env_bin("KV_BIN");
}

const char *h_kvd_bin(void)
{
	return env_bin("KVD_BIN");
}

static void build_argv(const char *argv[], const char *bin,
                       const char *store, va_list ap)
{
	int n = 0;
	const char *a;

	argv[n++] = bin;
	if (store != NULL) {
		argv[n++] = "-s";
		argv[n++] = store;
	}
	while ((a = va_arg(ap, const char *)) != NULL) {
		if (n == MAX_ARGS - 1)
			fail_msg("harness: too many arguments");
		argv[n++] = a;
	}
	argv[n] = NULL;
}

void h_kv(struct h_result *r, const char *store, ...)
{
	const char *argv[MAX_ARGS];
	va_list ap;

	va_start(ap, store);
	build_argv(argv, h_kv_bin(), store, ap);
	va_end(ap);
	h_run(r, argv, NULL);
}

void h_kv_opts(struct h_result *r, const struct h_spawn_opts *opts,
               const char *store, ...)
{
	const char *argv[MAX_ARGS];
	va_list ap;

	va_start(ap, store);
	build_argv(argv, h_kv_bin(), store, ap);
	va_end(ap);
	h_run(r, argv, opts);
}

void h_kvd_run(struct h_result *r, const char *store, ...)
{
	const char *argv[MAX_ARGS];
	va_list ap;

	va_start(ap, store);
	build_argv(argv, h_kvd_bin(), store, ap);
	va_end(ap);
	if (store != NULL)
		h_register_store(store);
	h_run(r, argv, NULL);
}

bool h_store_served_by(const char *name, pid_t pid)
{
	struct kv_stats st;
	kv_t *kv = NULL;
	bool ok;

	if (kv_open(name, KV_RDONLY, &kv) != KV_OK)
		return false;
	ok = kv_stats(kv, &st) == KV_OK &&
	     (pid == 0 || st.daemon_pid == (uint32_t)pid);
	kv_close(kv);
	return ok;
}

struct h_proc *h_kvd(const char *store, ...)
{
	const char *argv[MAX_ARGS];
	struct h_proc *p;
	struct h_result r;
	long long end;
	va_list ap;

	va_start(ap, store);
	build_argv(argv, h_kvd_bin(), store, ap);
	va_end(ap);
	h_register_store(store);
	p = h_start(argv, NULL);
	end = now_ms() + H_TIMEOUT_MS;
	for (;;) {
		pid_t pid = p->pid;

		if (poll_exit(slot_of(p))) {
			fill_result(p, &r, false);
			h_dump(&r);
			h_result_free(&r);
			fail_msg("kvd exited before serving store '%s'", store);
		}
		if (h_store_served_by(store, pid))
			return p;
		if (now_ms() >= end) {
			h_stop(p, SIGKILL, 1000, &r);
			h_dump(&r);
			h_result_free(&r);
			fail_msg("kvd did not serve store '%s' within %d ms",
			         store, H_TIMEOUT_MS);
		}
		sleep_ms(2);
	}
}

/* ------------------------------------------------------------------------
 * Assertions
 */

/* Print bytes C-escaped, at most a few KiB. */
static void print_bytes(const char *label, const char *b, size_t n)
{
	char line[4200];
	size_t o = 0, shown = n > 4000 ? 4000 : n;

	for (size_t i = 0; i < shown && o < sizeof(line) - 8; i++) {
		unsigned char c = (unsigned char)b[i];

		if (c == '\n') {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "\\n");
		} else if (c == '\\') {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "\\\\");
		} else if (c >= 0x20 && c < 0x7f) {
			line[o++] = (char)c;
		} else {
			o += (size_t)snprintf(line + o, sizeof(line) - o,
			                      "\\x%02x", c);
		}
	}
	line[o] = '\0';
	print_error("  %s (%zu bytes): \"%s\"%s\n", label, n, line,
	            shown < n ? " ..." : "");
}

void h_dump(const struct h_result *r)
{
	print_error("  command: %s\n", r->cmd != NULL ? r->cmd : "?");
	if (r->timed_out)
		print_error("  status: killed after timeout\n");
	else if (r->sig != 0)
		print_error("  status: killed by signal %d\n", r->sig);
	else
		print_error("  status: exit %d\n", r->code);
	print_bytes("stdout", r->out != NULL ? r->out : "", r->out_len);
	print_bytes("stderr", r->err != NULL ? r->err : "", r->err_len);
}

void h__assert_exit(const struct h_result *r, int code, const char *file,
                    int line)
{
	if (r->code == code && r->sig == 0 && !r->timed_out)
		return;
	print_error("exit status: expected %d, got %d\n", code, r->code);
	h_dump(r);
	_fail(file, line);
}

void h__assert_bytes(const struct h_result *r, const char *what,
                     const char *got, size_t got_len, const void *want,
                     size_t want_len, const char *file, int line)
{
	if (got_len == want_len &&
	    (want_len == 0 || memcmp(got, want, want_len) == 0))
		return;
	print_error("%s differs from what was expected\n", what);
	print_bytes("expected", want, want_len);
	print_bytes("got     ", got != NULL ? got : "", got_len);
	h_dump(r);
	_fail(file, line);
}

void h__assert_has(const struct h_result *r, const char *what,
                   const char *got, const char *needle, const char *file,
                   int line)
{
	if (got != NULL && strstr(got, needle) != NULL)
		return;
	print_error("%s does not contain \"%s\"\n", what, needle);
	h_dump(r);
	_fail(file, line);
}

void h__assert_err_line(const struct h_result *r, const char *prefix,
                        const char *file, int line)
{
	size_t plen = strlen(prefix);
	const char *nl = r->err != NULL ? memchr(r->err, '\n', r->err_len) :
	                                  NULL;

	if (r->err_len > plen && memcmp(r->err, prefix, plen) == 0 &&
	    nl == r->err + r->err_len - 1)
		return;
	print_error("stderr is not exactly one line starting with \"%s\"\n",
	            prefix);
	h_dump(r);
	_fail(file, line);
}
