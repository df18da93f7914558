/*
 * log.c - kvd's log lines and its one fatal error line.
 *
 * Two kinds of output, kept apart on purpose:
 *
 *   - Log lines, for an operator reading a terminal or a service manager's
 *     journal: "2025-01-31T12:00:00.123Z kvd[4242]: message" on stderr in
 *     the foreground. A detached kvd's stderr is /dev/null, so there they
 *     go to the sink detach.c gives, syslog(3) (facility daemon; syslog
 *     adds its own time and pid). kvd.exe on Windows never detaches.
 *
 *   - The fatal line, for whoever started kvd: exactly one "kvd: <what>:
 *     <why>", untimestamped, like any command-line tool, then exit 2. While
 *     a detaching kvd has not reported readiness, the line goes down the
 *     readiness pipe so that the parent prints it on the caller's stderr
 *     (see detach.c).
 *
 * Each line is formatted into one buffer and written with one write(2), so
 * lines never interleave with anything else writing to the same stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvd.h"
#include "sys.h"

#define LINE_MAX_BYTES 1024

static bool log_quiet;
static bool log_verbose;
static kvd_log_sink *log_sink; /* once detached: where lines go */
static int log_fail_fd = STDERR_FILENO;

void kvd_log_setup(bool quiet, bool verbose)
{
	log_quiet = quiet;
	log_verbose = verbose && !quiet;
}

void kvd_log_detached(int fail_fd, kvd_log_sink *sink)
{
	log_sink = sink;
	log_fail_fd = fail_fd;
}

void kvd_log_fail_fd(int fd)
{
	log_fail_fd = fd < 0 ? STDERR_FILENO : fd;
}

/* Write all of buf, retrying short writes; a log line that cannot be
 * written is dropped (there is nowhere left to complain). */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Append "\n" to a line of at most cap bytes built by snprintf calls that
 * may have truncated it; returns its length. */
static size_t finish_line(char *line, size_t cap, int used)
{
	size_t len = used < 0 ? 0 : (size_t)used;

	if (len > cap - 2)
		len = cap - 2;
	line[len++] = '\n';
	line[len] = '\0';
	return len;
}

static void log_v(enum kvd_level level, const char *fmt, va_list ap)
	KVD_PRINTF(2, 0);

static void log_v(enum kvd_level level, const char *fmt, va_list ap)
{
	static const char *const tag[] = {"debug: ", "", "warning: ",
	                                  "error: "};
	char line[LINE_MAX_BYTES];
	char stamp[32];
	int used;

	if ((log_quiet && level != KVD_ERROR) ||
	    (level == KVD_DEBUG && !log_verbose))
		return;

	if (log_sink != NULL) {
		char msg[LINE_MAX_BYTES];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		log_sink(level, tag[level], msg);
		return;
	}

	kvd_sys_utc_stamp(stamp, sizeof(stamp));
	used = snprintf(line, sizeof(line), "%s kvd[%ld]: %s", stamp,
	                (long)getpid(), tag[level]);
	if (used >= 0 && (size_t)used < sizeof(line)) {
		int n = vsnprintf(line + used, sizeof(line) - (size_t)used, fmt,
		                  ap);

		if (n > 0)
			used += n;
	}
	write_all(STDERR_FILENO, line, finish_line(line, sizeof(line), used));
}

void kvd_log(enum kvd_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_v(level, fmt, ap);
	va_end(ap);
}

void kvd_fail(const char *fmt, ...)
{
	char line[LINE_MAX_BYTES];
	va_list ap;
	size_t len;
	int used, n;

	va_start(ap, fmt);
	used = snprintf(line, sizeof(line), "kvd: ");
	n = vsnprintf(line + used, sizeof(line) - (size_t)used, fmt, ap);
	va_end(ap);
	if (n > 0)
		used += n;
	len = finish_line(line, sizeof(line), used);

	/* Once detached, the journal should show why kvd stopped too; syslog
	 * names us already, so without the "kvd: " and the newline. */
	if (log_sink != NULL) {
		line[len - 1] = '\0';
		log_sink(KVD_ERROR, "", line + 5);
		line[len - 1] = '\n';
	}
	write_all(log_fail_fd, line, len);
}
