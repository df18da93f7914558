/*
 * detach.c - running kvd as a classic daemon (-d), and its pid file.
 *
 * How -d works
 *   The process the caller started (the parent) makes a pipe and forks. The
 *   child calls setsid() to leave the caller's session and terminal, and
 *   forks again so that the daemon (the grandchild) is not a session leader
 *   and can never reacquire a controlling terminal; the child exits at
 *   once. The daemon points stdin, stdout and stderr at /dev/null, closes
 *   every other descriptor it inherited, then creates and claims the store, writes the pid file and only then reports
 *   readiness down the pipe.
 *
 *   The parent blocks on the pipe, so "kvd -d && use the store" is safe:
 *     - one NUL byte means "serving": the parent exits 0;
 *     - text is the daemon's fatal line ("kvd: <what>: <why>\n", which can
 *       never contain a NUL): the parent prints it on the caller's stderr
 *       and exits 2;
 *     - end of file with nothing read means the daemon died without a word
 *       (killed, crashed): the parent says so and exits 2.
 *
 * The pid file
 *   Written after the claim, so the kvd holding the claim is the only one
 *   that can be writing it, and atomically (temporary file in the same
 *   directory, then rename(2)), so a reader sees the old pid or the new one,
 *   never a half-written number. rename(2) also replaces a symlink planted
 *   at the path instead of writing through it. At stop it is removed only
 *   if it still holds our pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "kvd.h"

/* The parent's side: relay the daemon's verdict and return the exit status
 * the parent must exit with. */
static int await_ready(int fd)
{
	char buf[1024];
	size_t got = 0;

	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got == 0 && buf[0] == '\0')
			return 0;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			break;
	}
	if (got == 0) {
		fprintf(stderr,
		        "kvd: daemon: exited before the store was served\n");
		return 2;
	}
	fwrite(buf, 1, got, stderr);
	return 2;
}

/* Point fd 0, 1 and 2 at /dev/null, so that nothing the daemon or a library
 * prints can block on, or raise SIGPIPE from, the caller's terminal or a
 * pipe long since closed. */
static int null_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	int rc = -1;

	if (fd < 0)
		goto out;
	for (int i = 0; i <= 2; i++)
		if (dup2(fd, i) < 0)
			goto out;
	rc = 0;
out:
	if (fd > 2)
		close(fd);
	return rc;
}

/* A detached kvd's log lines: syslog adds the time and our pid. */
static void to_syslog(enum kvd_level level, const char *tag, const char *msg)
{
	static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

	syslog(prio[level], "%s%s", tag, msg);
}

/* Close every descriptor the caller left open except stdio and keep: a
 * daemon holding, say, the write end of a pipe its starter reads to the end
 * would leave that starter waiting for as long as kvd runs. */
static void close_inherited(int keep)
{
	unsigned k = (unsigned)keep;

	if ((keep <= 3 || close_range(3, k - 1, 0) == 0) &&
	    close_range(k + 1, ~0u, 0) == 0)
		return;
	/* Kernels before 5.9 lack close_range(2). */
	for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < max; fd++)
		if (fd != keep)
			close((int)fd);
}

int kvd_detach(int *ready_fd)
{
	int pipefd[2];
	pid_t pid;
	int status;

	/* Nothing buffered may be written twice by the children. */
	fflush(NULL);
	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		kvd_fail("detach: pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		kvd_fail("detach: fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid > 0) {
		/* The parent. The child exits as soon as it has forked; the
		 * verdict comes from the daemon through the pipe. */
		close(pipefd[1]);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		exit(await_ready(pipefd[0]));
	}

	/* The child. From here a failure goes down the pipe. */
	close(pipefd[0]);
	kvd_log_fail_fd(pipefd[1]);
	if (setsid() < 0) {
		kvd_fail("detach: setsid: %s", strerror(errno));
		_exit(2);
	}
	pid = fork();
	if (pid < 0) {
		kvd_fail("detach: fork: %s", strerror(errno));
		_exit(2);
	}
	if (pid > 0)
		_exit(0);

	/* The daemon. */
	if (null_stdio() != 0) {
		kvd_fail("detach: /dev/null: %s", strerror(errno));
		_exit(2);
	}
	close_inherited(pipefd[1]);
	/* LOG_NDELAY connects now, while we still know the failure is ours
	 * to report; a system without a syslog socket just drops the lines. */
	openlog("kvd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	kvd_log_detached(pipefd[1], to_syslog);
	*ready_fd = pipefd[1];
	return 0;
}

void kvd_ready(int *ready_fd)
{
	static const char ok = '\0';

	/* Last, so nothing before had to cope with a changed working
	 * directory (a file-backed store may be a relative path). */
	if (chdir("/") != 0)
		kvd_log(KVD_WARN, "chdir /: %s", strerror(errno));
	if (*ready_fd < 0)
		return;
	/* If the parent is gone (killed while waiting) there is no one left
	 * to tell; SIGPIPE is ignored, so the write just fails. */
	while (write(*ready_fd, &ok, 1) < 0 && errno == EINTR)
		;
	close(*ready_fd);
	*ready_fd = -1;
	kvd_log_fail_fd(-1);
}

int kvd_pidfile_write(const char *path)
{
	char tmp[PATH_MAX];
	char buf[32];
	int fd = -1;
	int err = 0;
	int len;

	len = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if (len < 0 || (size_t)len >= sizeof(tmp)) {
		err = ENAMETOOLONG;
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		tmp[0] = '\0';
		goto out;
	}
	/* mkostemp makes it 0600; a pid file is for everyone to read. */
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	errno = 0; /* a short write sets none */
	if (fchmod(fd, 0644) != 0 || write(fd, buf, (size_t)len) != len ||
	    fsync(fd) != 0) {
		err = errno != 0 ? errno : EIO;
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		err = errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		err = errno;
		goto out;
	}
	tmp[0] = '\0';
out:
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0' && err != ENAMETOOLONG)
		unlink(tmp);
	return err;
}

int kvd_pidfile_remove(const char *path)
{
	char buf[32];
	ssize_t n;
	int err = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		err = errno;
		goto out;
	}
	buf[n] = '\0';
	/* Someone else's now (an operator pointed another kvd at the same
	 * --pidfile): theirs to remove. */
	if (strtol(buf, NULL, 10) != (long)getpid())
		goto out;
	if (unlink(path) != 0)
		err = errno;
out:
	close(fd);
	return err;
}
