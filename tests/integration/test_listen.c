/*
 * test_listen.c - kvd's memcached protocol listeners and the options that
 * shape them, with real kvd processes and real sockets on loopback and in
 * temporary directories: TCP on 127.0.0.1 and ::1, UNIX sockets with the
 * store's mode and group (stale and live socket files), the "listening on"
 * lines, a port in use at start, --max-conns, --idle-timeout, sockets
 * passed by systemd (LISTEN_FDS), SIGTERM with clients connected, a client
 * that never reads its replies, a thousand clients at once, and the
 * option errors.
 *
 * Ports: kvd binds port 0 and the test reads the port from its log, so
 * parallel runs never collide; a port "in use" is one the test itself
 * holds. Every socket has a receive and send timeout, so nothing waits
 * for ever; teardown closes them, kills what is left and removes stores.
 *
 * The protocol itself (mc_proto.c) is tested elsewhere; here it only has
 * to answer set, get, version and stats.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kv.h"

#define SIZE "16M"
#define IO_TIMEOUT_S 10

/* ------------------------------------------------------------------------
 * Sockets the test opens: all closed by teardown
 */

static int fds[2048];
static size_t nfds;

static int keep_fd(int fd)
{
	if (fd >= 0 && nfds < sizeof(fds) / sizeof(fds[0]))
		fds[nfds++] = fd;
	return fd;
}

static void drop_fd(int fd)
{
	for (size_t i = 0; i < nfds; i++) {
		if (fds[i] == fd) {
			fds[i] = fds[--nfds];
			break;
		}
	}
	close(fd);
}

static int teardown(void **state)
{
	while (nfds > 0)
		close(fds[--nfds]);
	return h_teardown(state);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void set_timeouts(int fd, int seconds)
{
	struct timeval tv = {seconds, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A connected socket, or -1 with errno set. */
static int try_connect(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	set_timeouts(fd, IO_TIMEOUT_S);
	if (connect(fd, sa, len) != 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return keep_fd(fd);
}

static int connect4(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = try_connect((const struct sockaddr *)&sa, sizeof(sa));
	if (fd < 0)
		fail_msg("connect 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

static int connect6(int port)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
	                          .sin6_port = htons((uint16_t)port),
	                          .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = try_connect((const struct sockaddr *)&sa, sizeof(sa));

	if (fd < 0)
		fail_msg("connect [::1]:%d: %s", port, strerror(errno));
	return fd;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = try_connect((const struct sockaddr *)&sa, sizeof(sa));
	if (fd < 0)
		fail_msg("connect unix:%s: %s", path, strerror(errno));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("send: %s", n < 0 ? strerror(errno) : "0");
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Read exactly len bytes (fails on EOF or timeout). */
static void recv_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, buf + got, len - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("recv after %zu of %zu bytes (\"%.*s\"): %s",
			         got, len, (int)got, buf,
			         n < 0 ? strerror(errno) : "end of stream");
		got += (size_t)n;
	}
}

/* The next reply must be exactly want. */
static void expect(int fd, const char *want)
{
	size_t len = strlen(want);
	char *buf = h_alloc(len + 1);

	recv_exact(fd, buf, len);
	buf[len] = '\0';
	if (memcmp(buf, want, len) != 0)
		fail_msg("reply \"%s\", wanted \"%s\"", buf, want);
	h_free(buf);
}

/* The peer closes: recv gives end of stream (what came before must be
 * exactly before, which may be ""). */
static void expect_closed(int fd, const char *before)
{
	char buf[256];
	size_t got = 0;

	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNRESET)
			break;
		if (n < 0)
			fail_msg("waiting for the close: %s (after \"%.*s\")",
			         strerror(errno), (int)got, buf);
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			break;
	}
	buf[got] = '\0';
	if (strcmp(buf, before) != 0)
		fail_msg("before the close: \"%s\", wanted \"%s\"", buf,
		         before);
}

/* set key value, then get it back. */
static void roundtrip(int fd, const char *key, const char *val)
{
	char req[512], want[512];

	snprintf(req, sizeof(req), "set %s 0 0 %zu\r\n%s\r\n", key,
	         strlen(val), val);
	send_str(fd, req);
	expect(fd, "STORED\r\n");
	snprintf(req, sizeof(req), "get %s\r\n", key);
	snprintf(want, sizeof(want), "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", key,
	         strlen(val), val);
	send_str(fd, req);
	expect(fd, want);
}

/* The number after "STAT name " in a stats reply, or -1. */
static long stat_of(int fd, const char *name)
{
	char buf[8192];
	size_t got = 0;
	char key[64];
	const char *p;

	send_str(fd, "stats\r\n");
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (n <= 0)
			fail_msg("stats: %s", n < 0 ? strerror(errno) : "closed");
		got += (size_t)n;
		buf[got] = '\0';
		if (got >= 5 && strcmp(buf + got - 5, "END\r\n") == 0)
			break;
		if (got == sizeof(buf) - 1)
			fail_msg("stats reply too long");
	}
	snprintf(key, sizeof(key), "STAT %s ", name);
	p = strstr(buf, key);
	return p == NULL ? -1 : strtol(p + strlen(key), NULL, 10);
}

/* ------------------------------------------------------------------------
 * kvd and its log
 */

/* Wait for kvd's log line "listening on <prefix>..." and return what
 * follows prefix up to the end of the line (or a space) in out. */
static void wait_listening(struct h_proc *p, const char *prefix, char *out,
                           size_t cap)
{
	char needle[256];
	uint64_t end = now_ms() + H_TIMEOUT_MS;

	snprintf(needle, sizeof(needle), "listening on %s", prefix);
	for (;;) {
		size_t len;
		char *err = h_read_err(p, &len);
		const char *at = strstr(err, needle);

		if (at != NULL) {
			size_t n;

			at += strlen(needle);
			n = strcspn(at, " \n");
			if (n >= cap)
				n = cap - 1;
			memcpy(out, at, n);
			out[n] = '\0';
			h_free(err);
			return;
		}
		if (!h_alive(p->pid) || now_ms() > end) {
			print_message("kvd's stderr:\n%s\n", err);
			fail_msg("kvd did not log \"%s\"", needle);
		}
		h_free(err);
		sleep_ms(5);
	}
}

static int wait_port(struct h_proc *p, const char *host)
{
	char port[16];
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "%s:", host);
	wait_listening(p, prefix, port, sizeof(port));
	return atoi(port);
}

/* kvd's stderr so far contains s. */
static bool log_has(struct h_proc *p, const char *s)
{
	size_t len;
	char *err = h_read_err(p, &len);
	bool has = strstr(err, s) != NULL;

	h_free(err);
	return has;
}

/* Wait until kvd's stderr contains s. */
static void wait_log(struct h_proc *p, const char *s)
{
	for (uint64_t end = now_ms() + H_TIMEOUT_MS; !log_has(p, s);) {
		if (now_ms() > end || !h_alive(p->pid))
			fail_msg("kvd did not log \"%s\"", s);
		sleep_ms(5);
	}
}

static void stop_ok(struct h_proc *p)
{
	struct h_result r;

	if (!h_stop(p, SIGTERM, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd did not stop on SIGTERM");
	}
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Does this machine have the IPv6 loopback? */
static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
	                          .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static long vm_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	if (kib < 0)
		fail_msg("no VmRSS in %s", path);
	return kib;
}

/* ------------------------------------------------------------------------
 * Listeners
 */

/* TCP on 127.0.0.1, port 0: the log names the real port; clients are
 * served; loopback needs no --auth-file warning; SIGTERM exits 0. */
static void test_listen_tcp4(void **state)
{
	const char *store = h_store_name("listen4");
	struct h_proc *p;
	int port, a, b;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--listen", "127.0.0.1:0",
	          "--threads", "2", NULL);
	port = wait_port(p, "127.0.0.1");
	assert_true(port > 0 && port < 65536);
	a = connect4(port);
	b = connect4(port);
	roundtrip(a, "k1", "one");
	roundtrip(b, "k2", "two");
	send_str(a, "get k2\r\n");
	expect(a, "VALUE k2 0 3\r\ntwo\r\nEND\r\n");
	/* A client a byte at a time holds up nobody else. */
	for (const char *q = "get k1\r\n"; *q != '\0'; q++) {
		send_all(b, q, 1);
		roundtrip(a, "k3", "meanwhile");
	}
	expect(b, "VALUE k1 0 3\r\none\r\nEND\r\n");
	/* The same store, through the library. */
	{
		struct h_result r;

		h_kv(&r, store, "get", "k1", NULL);
		H_ASSERT_EXIT(&r, 0);
		H_ASSERT_OUT_STR(&r, "one");
		h_result_free(&r);
	}
	wait_log(p, "memcached protocol: 2 worker threads");
	assert_false(log_has(p, "reachable from other machines"));
	stop_ok(p);
}

static void test_listen_tcp6(void **state)
{
	const char *store = h_store_name("listen6");
	struct h_proc *p;
	int port, fd;

	(void)state;
	if (!have_ipv6_loopback()) {
		print_message("(no IPv6 loopback [::1] on this machine: "
		              "skipped)\n");
		skip();
	}
	p = h_kvd(store, "--size", SIZE, "--listen", "[::1]:0", "--listen",
	          "127.0.0.1:0", NULL);
	port = wait_port(p, "[::1]");
	fd = connect6(port);
	roundtrip(fd, "six", "ipv6");
	fd = connect4(wait_port(p, "127.0.0.1"));
	send_str(fd, "get six\r\n");
	expect(fd, "VALUE six 0 4\r\nipv6\r\nEND\r\n");
	stop_ok(p);
}

/* unix:PATH gets the store's mode (and group: as root, a group of its
 * own); it is removed when kvd stops. */
static void test_listen_unix(void **state)
{
	const char *store = h_store_name("listenu");
	const char *dir = h_tmpdir("listenu");
	char path[100], arg[300], shown[300];
	struct stat sock, shm;
	struct h_proc *p;
	bool root = geteuid() == 0;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvd.sock", dir);
	snprintf(arg, sizeof(arg), "unix:%s", path);
	if (root)
		p = h_kvd(store, "--size", SIZE, "--mode", "0660", "--group",
		          "nogroup", "--listen", arg, NULL);
	else
		p = h_kvd(store, "--size", SIZE, "--mode", "0640", "--listen",
		          arg, NULL);
	wait_listening(p, "unix:", shown, sizeof(shown));
	assert_string_equal(shown, path);
	assert_int_equal(stat(path, &sock), 0);
	assert_int_equal(stat(h_shm_path(store), &shm), 0);
	assert_true(S_ISSOCK(sock.st_mode));
	assert_int_equal(sock.st_mode & 07777, shm.st_mode & 07777);
	assert_int_equal(sock.st_gid, shm.st_gid);
	if (root) {
		struct group *g = getgrnam("nogroup");

		if (g != NULL)
			assert_int_equal(sock.st_gid, g->gr_gid);
	}
	fd = connect_unix(path);
	roundtrip(fd, "u", "over a unix socket");
	stop_ok(p);
	assert_false(exists(path));
}

/* `kv resize` grows the store under a running kvd: its clients keep
 * their connections and their keys, kvd logs the new size and keeps
 * serving, and kv check finds the grown store sound. The refusals say
 * what to do instead. */
static void test_listen_resize(void **state)
{
	const char *store = h_store_name("listenrs");
	const char *dir = h_tmpdir("listenrs");
	char path[100], arg[300], shown[300], key[32], val[64];
	struct h_result r;
	struct h_proc *p;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvd.sock", dir);
	snprintf(arg, sizeof(arg), "unix:%s", path);
	p = h_kvd(store, "--size", SIZE, "--max-size", "128M", "--listen", arg,
	          NULL);
	wait_listening(p, "unix:", shown, sizeof(shown));
	fd = connect_unix(path);
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "before%d", i);
		snprintf(val, sizeof val, "value %d", i);
		roundtrip(fd, key, val);
	}

	h_kv(&r, store, "resize", "64M", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "from 16.0 MiB to 64.0 MiB");
	h_result_free(&r);
	wait_log(p, "resized to 64 MiB");
	assert_true(h_alive(p->pid));

	/* The same connection: old keys, new keys, through kvd's handle. */
	send_str(fd, "get before7\r\n");
	expect(fd, "VALUE before7 0 7\r\nvalue 7\r\nEND\r\n");
	roundtrip(fd, "after", "the store grew");
	h_kv(&r, store, "get", "before199", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_STR(&r, "value 199");
	h_result_free(&r);
	h_kv(&r, store, "stats", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "map_size           64.0 MiB");
	H_ASSERT_OUT_HAS(&r, "resizes            1");
	h_result_free(&r);
	h_kv(&r, store, "check", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	/* Refusals change nothing: 1.2 MB of values do not fit in 1 MiB. */
	static char big[100 * 1000 + 1];
	memset(big, 'b', sizeof big - 1);
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof key, "big%d", i);
		h_kv(&r, store, "put", key, big, NULL);
		H_ASSERT_EXIT(&r, 0);
		h_result_free(&r);
	}
	h_kv(&r, store, "resize", "1M", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "which do not fit in 1.0 MiB");
	h_result_free(&r);
	h_kv(&r, store, "resize", "63M", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "too small a step down");
	h_result_free(&r);
	h_kv(&r, store, "resize", "256M", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "may grow to 128.0 MiB at most");
	h_result_free(&r);
	h_kv(&r, store, "resize", "lots", NULL);
	H_ASSERT_FAILS(&r, 2, "kv: ", "not a size");
	h_result_free(&r);
	h_kv(&r, store, "resize", "64M", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "is already 64.0 MiB");
	h_result_free(&r);

	/* And shrinks under it: kvd logs it, the client keeps its keys. */
	h_kv(&r, store, "resize", "24M", NULL);
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_OUT_HAS(&r, "from 64.0 MiB to 24.0 MiB");
	h_result_free(&r);
	wait_log(p, "resized to 24 MiB");
	for (int i = 0; i < 200; i += 7) {
		char want[128];
		snprintf(key, sizeof key, "before%d", i);
		snprintf(val, sizeof val, "value %d", i);
		snprintf(want, sizeof want, "get %s\r\n", key);
		send_str(fd, want);
		snprintf(want, sizeof want, "VALUE %s 0 %zu\r\n%s\r\nEND\r\n",
		         key, strlen(val), val);
		expect(fd, want);
	}
	h_kv(&r, store, "check", NULL);
	H_ASSERT_EXIT(&r, 0);
	h_result_free(&r);

	roundtrip(fd, "last", "still serving");
	close(fd);
	stop_ok(p);
}

/* A socket file nothing listens on (a kvd that was killed) is replaced;
 * one something listens on, or a file that is not a socket, is an error
 * that leaves no store behind. */
static void test_listen_unix_stale_and_busy(void **state)
{
	const char *dir = h_tmpdir("listens");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[100], arg[300], shown[300];
	const char *store;
	struct h_result r;
	struct h_proc *p;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/kvd.sock", dir);
	snprintf(arg, sizeof(arg), "unix:%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);

	/* Stale: bound, never listened on, closed. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	close(fd);
	store = h_store_name("stale");
	p = h_kvd(store, "--size", SIZE, "--listen", arg, NULL);
	wait_listening(p, "unix:", shown, sizeof(shown));
	assert_true(log_has(p, "removed stale socket"));
	roundtrip(connect_unix(path), "s", "replaced");
	stop_ok(p);
	assert_false(exists(path));

	/* Busy: someone listens on it. */
	fd = keep_fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	assert_int_equal(listen(fd, 4), 0);
	store = h_store_name("busy");
	h_kvd_run(&r, store, "--size", SIZE, "--listen", arg, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "address already in use");
	assert_false(exists(h_shm_path(store)));
	assert_true(exists(path)); /* not ours to remove */
	h_result_free(&r);
	drop_fd(fd);
	unlink(path);

	/* Not a socket: left alone. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	store = h_store_name("notsock");
	h_kvd_run(&r, store, "--size", SIZE, "--listen", arg, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, "not a socket");
	assert_false(exists(h_shm_path(store)));
	assert_true(exists(path));
	h_result_free(&r);
}

/* A port in use is a start-up error, exit 2, and the store kvd made for
 * it is removed again. */
static void test_listen_port_in_use(void **state)
{
	const char *store = h_store_name("inuse");
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	char arg[64], line[128];
	struct h_result r;
	int fd;

	(void)state;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = keep_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(arg, sizeof(arg), "127.0.0.1:%d", ntohs(sa.sin_port));
	snprintf(line, sizeof(line), "kvd: listen %s: address already in use\n",
	         arg);

	h_kvd_run(&r, store, "--size", SIZE, "--listen", arg, NULL);
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, line);
	assert_false(exists(h_shm_path(store)));
	h_result_free(&r);
}

/* --max-conns 3: the 4th and 5th clients get memcached's error and are
 * closed; the 3 others are not disturbed; a freed place is taken again. */
static void test_listen_max_conns(void **state)
{
	const char *store = h_store_name("maxc");
	struct h_proc *p;
	int port, c[5], again;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--listen", "127.0.0.1:0",
	          "--max-conns", "3", NULL);
	port = wait_port(p, "127.0.0.1");
	for (int i = 0; i < 3; i++) {
		char key[8];

		c[i] = connect4(port);
		snprintf(key, sizeof(key), "m%d", i);
		roundtrip(c[i], key, "in"); /* accepted and served */
	}
	for (int i = 3; i < 5; i++) {
		c[i] = connect4(port);
		expect_closed(c[i], "ERROR Too many open connections\r\n");
	}
	for (int i = 0; i < 3; i++) {
		char key[8];

		snprintf(key, sizeof(key), "n%d", i);
		roundtrip(c[i], key, "still served");
	}
	assert_int_equal(stat_of(c[0], "rejected_connections"), 2);
	assert_int_equal(stat_of(c[0], "curr_connections") >= 3, 1);

	/* One leaves; its place is free again once kvd has seen it go. */
	drop_fd(c[2]);
	for (uint64_t end = now_ms() + H_TIMEOUT_MS;;) {
		char buf[64];
		ssize_t n;

		again = connect4(port);
		send_str(again, "version\r\n");
		n = recv(again, buf, sizeof(buf) - 1, 0);
		if (n > 8 && strncmp(buf, "VERSION ", 8) == 0)
			break;
		drop_fd(again);
		if (now_ms() > end)
			fail_msg("no place freed after a client left");
		sleep_ms(20);
	}
	roundtrip(again, "again", "in");
	stop_ok(p);
}

/* --idle-timeout 1: a silent client is closed; a talking one is not. */
static void test_listen_idle_timeout(void **state)
{
	const char *store = h_store_name("idle");
	struct h_proc *p;
	int port, quiet, busy;
	uint64_t start;
	char buf[64];
	ssize_t n;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--listen", "127.0.0.1:0",
	          "--idle-timeout", "1", NULL);
	port = wait_port(p, "127.0.0.1");
	quiet = connect4(port);
	busy = connect4(port);
	roundtrip(quiet, "q", "1");
	start = now_ms();
	/* The busy one speaks every 200 ms for 2.5 s. */
	while (now_ms() - start < 2500) {
		send_str(busy, "version\r\n");
		n = recv(busy, buf, sizeof(buf), 0);
		if (n <= 0)
			fail_msg("a busy client was closed after %llu ms",
			         (unsigned long long)(now_ms() - start));
		sleep_ms(200);
	}
	/* By now the quiet one has been closed (at 1 s, give or take the
	 * scan): it reads the end of the stream at once. */
	expect_closed(quiet, "");
	roundtrip(busy, "b", "still here");
	stop_ok(p);
}

/* Sockets passed by systemd: fd 3 with LISTEN_FDS=1 and LISTEN_PID set to
 * kvd's own pid (a shell sets it to $$, then execs kvd, keeping the pid).
 * A LISTEN_PID that is not kvd's is ignored. */
static void test_listen_systemd(void **state)
{
	const char *store = h_store_name("sd");
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	struct h_spawn_opts o = {0};
	struct h_proc *p;
	char shown[64], want[64];
	int fd;

	(void)state;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = keep_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(want, sizeof(want), "%d", ntohs(sa.sin_port));
	/* fd 9 in the shell (dash takes single-digit fds), 3 in kvd. */
	assert_int_equal(dup2(fd, 9), 9);
	keep_fd(9);
	h_register_store(store);
	{
		static const char *const env[] = {"LISTEN_FDNAMES=memcache",
		                                  NULL};
		const char *argv[] = {
			"/bin/sh", "-c",
			"LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\" 3<&9 9<&-",
			"sh", h_kvd_bin(), "-s", store, "--size", SIZE, NULL};

		o.env = env;
		p = h_start(argv, &o);
	}
	drop_fd(9);
	wait_listening(p, "127.0.0.1:", shown, sizeof(shown));
	assert_string_equal(shown, want);
	assert_true(log_has(p, "from systemd, memcache)"));
	/* The test's copy stays open, as systemd's does: kvd serves it. */
	roundtrip(connect4(atoi(want)), "sd", "activated");
	stop_ok(p);
	/* The socket is systemd's: still listening after kvd is gone. */
	{
		int c = connect4(atoi(want));

		drop_fd(c);
	}
	drop_fd(fd);

	/* Not for us: ignored, with a warning; no network server. */
	store = h_store_name("sd2");
	{
		static const char *const env[] = {"LISTEN_PID=1",
		                                  "LISTEN_FDS=1", NULL};
		const char *argv[] = {h_kvd_bin(), "-s", store, "--size", SIZE,
		                      NULL};

		h_register_store(store);
		o.env = env;
		p = h_start(argv, &o);
	}
	/* The warning comes once the store is served, when kvd looks for
	 * something to listen on (and finds nothing). */
	wait_log(p, "LISTEN_FDS=1 ignored");
	assert_false(log_has(p, "listening on"));
	stop_ok(p);
}

/* SIGTERM with clients connected, one in the middle of a command and one
 * with a reply it never reads: kvd exits 0 at once and the clients see
 * the end of the stream. */
static void test_listen_sigterm_with_clients(void **state)
{
	const char *store = h_store_name("term");
	struct h_proc *p;
	struct h_result r;
	int port, c[20];
	uint64_t start;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--listen", "127.0.0.1:0", NULL);
	port = wait_port(p, "127.0.0.1");
	for (int i = 0; i < 20; i++)
		c[i] = connect4(port);
	roundtrip(c[0], "t", "x");
	send_str(c[1], "set half 0 0 10\r\nabc");
	send_str(c[2], "get t\r\nget t\r\nget t\r\n");
	sleep_ms(50);
	start = now_ms();
	if (!h_stop(p, SIGTERM, H_TIMEOUT_MS, &r)) {
		h_dump(&r);
		fail_msg("kvd did not stop on SIGTERM");
	}
	H_ASSERT_EXIT(&r, 0);
	H_ASSERT_ERR_HAS(&r, "stopping");
	h_result_free(&r);
	print_message("(stopped in %llu ms)\n",
	              (unsigned long long)(now_ms() - start));
	for (int i = 3; i < 20; i++)
		expect_closed(c[i], "");
}

/* A client that sends gets without end and never reads: kvd stops reading
 * it once its reply is large, so kvd's memory stays bounded, and other
 * clients are served meanwhile. */
static void test_listen_never_reads(void **state)
{
	const char *store = h_store_name("noread");
	enum { VALUE = 200 * 1024 };
	char *val = h_alloc(VALUE + 64);
	char req[64], batch[9 * 1024];
	struct h_proc *p;
	long rss0, rss1;
	size_t sent = 0;
	uint64_t start, last_progress;
	int port, hog, other, rcvbuf = 4096;

	(void)state;
	p = h_kvd(store, "--size", "64M", "--listen", "127.0.0.1:0",
	          "--threads", "1", NULL);
	port = wait_port(p, "127.0.0.1");
	other = connect4(port);
	memset(val, 'v', VALUE);
	snprintf(req, sizeof(req), "set big 0 0 %d\r\n", VALUE);
	send_str(other, req);
	send_all(other, val, VALUE);
	send_str(other, "\r\n");
	expect(other, "STORED\r\n");
	roundtrip(other, "small", "x");
	rss0 = vm_rss_kib(p->pid);

	hog = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	keep_fd(hog);
	/* A small receive buffer, so that kvd's replies back up at once. */
	setsockopt(hog, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	{
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)port)};

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(hog, (const struct sockaddr *)&sa,
		                         sizeof(sa)), 0);
	}
	fcntl(hog, F_SETFL, O_NONBLOCK);
	for (size_t i = 0; i + 9 <= sizeof(batch); i += 9)
		memcpy(batch + i, "get big\r\n", 9);

	/* Send until kvd has stopped taking requests for half a second
	 * (each asks for 200 KiB of reply), or 5 s. */
	start = last_progress = now_ms();
	while (now_ms() - last_progress < 500 && now_ms() - start < 5000) {
		ssize_t n = send(hog, batch, sizeof(batch), MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			last_progress = now_ms();
		} else {
			sleep_ms(10);
		}
	}
	print_message("(the hog sent %zu bytes of gets, %zu MiB of replies "
	              "asked for)\n", sent, sent / 9 * (VALUE / 1024) / 1024);
	/* More asked for than kvd may buffer: the point of the test. */
	assert_true(sent / 9 * (size_t)VALUE > (size_t)256 * 1024 * 1024);

	/* Others are served while the hog stalls. */
	for (int i = 0; i < 20; i++) {
		char key[16];

		snprintf(key, sizeof(key), "o%d", i);
		roundtrip(other, key, "served");
	}
	roundtrip(connect4(port), "new", "client");
	rss1 = vm_rss_kib(p->pid);
	print_message("(kvd's VmRSS %ld KiB before, %ld KiB after)\n", rss0,
	              rss1);
	/* Bounded: the buffers of one connection, not the replies asked
	 * for (hundreds of MiB). */
	assert_true(rss1 - rss0 < 48 * 1024);
	assert_true(h_alive(p->pid));
	stop_ok(p);
}

/* A thousand clients at once, each doing a set and a get. */
static void test_listen_many_clients(void **state)
{
	enum { N = 1000 };
	const char *store = h_store_name("many");
	static int c[N];
	struct rlimit rl;
	struct h_proc *p;
	int port;

	(void)state;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail_msg("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur < 2 * N + 200) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >
		                  4 * N ? 4 * N : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	/* The test's own N clients, kvd's N, and some to spare (kvd
	 * inherits this limit). */
	if (rl.rlim_cur < N + 100) {
		print_message("(open-file limit %llu: cannot have %d clients: "
		              "skipped)\n", (unsigned long long)rl.rlim_cur, N);
		skip();
	}
	p = h_kvd(store, "--size", "64M", "--listen", "127.0.0.1:0",
	          "--max-conns", "1100", NULL);
	port = wait_port(p, "127.0.0.1");
	for (int i = 0; i < N; i++)
		c[i] = connect4(port);
	for (int i = 0; i < N; i++) {
		char req[64];

		snprintf(req, sizeof(req), "set c%d 0 0 %d\r\n%06d\r\n", i, 6,
		         i);
		send_str(c[i], req);
	}
	for (int i = 0; i < N; i++)
		expect(c[i], "STORED\r\n");
	for (int i = 0; i < N; i++) {
		char req[32];

		snprintf(req, sizeof(req), "get c%d\r\n", i);
		send_str(c[i], req);
	}
	for (int i = 0; i < N; i++) {
		char want[64];

		snprintf(want, sizeof(want), "VALUE c%d 0 6\r\n%06d\r\nEND\r\n",
		         i, i);
		expect(c[i], want);
	}
	assert_true(stat_of(c[0], "curr_connections") >= N);
	for (int i = 0; i < N; i++)
		drop_fd(c[i]);
	stop_ok(p);
}

/* ------------------------------------------------------------------------
 * Options
 */

static void refused(const char *want, ...)
{
	const char *store = h_store_name("opt");
	const char *argv[16];
	struct h_result r;
	va_list ap;
	int n = 0;

	argv[n++] = h_kvd_bin();
	argv[n++] = "-s";
	argv[n++] = store;
	argv[n++] = "--size";
	argv[n++] = SIZE;
	va_start(ap, want);
	while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	h_register_store(store);
	h_run(&r, argv, NULL);
	/* Exit 2, one fatal line (among the log lines of a failed start). */
	H_ASSERT_EXIT(&r, 2);
	H_ASSERT_ERR_HAS(&r, want);
	if (strncmp(r.err, "kvd: ", 5) != 0 &&
	    strstr(r.err, "\nkvd: ") == NULL) {
		h_dump(&r);
		fail_msg("no \"kvd: \" line");
	}
	assert_false(exists(h_shm_path(store)));
	h_result_free(&r);
}

static void test_listen_options(void **state)
{
	const char *dir = h_tmpdir("lopt");
	char longpath[300], arg[400], missing[300];
	struct h_result r;

	(void)state;
	refused("not an address", "--listen", "nonsense", NULL);
	refused("not a port", "--listen", "127.0.0.1:65536", NULL);
	refused("not a port", "--listen", "127.0.0.1:", NULL);
	refused("not a port", "--listen", "127.0.0.1:http", NULL);
	refused("needs brackets", "--listen", "::1:11211", NULL);
	refused("no host", "--listen", ":11211", NULL);
	refused("no path", "--listen", "unix:", NULL);
	memset(longpath, 'x', 200);
	longpath[200] = '\0';
	snprintf(arg, sizeof(arg), "unix:/tmp/%s", longpath);
	refused("too long", "--listen", arg, NULL);
	refused("--threads '0'", "--threads", "0", NULL);
	refused("--threads '1000'", "--threads", "1000", NULL);
	refused("--max-conns '0'", "--max-conns", "0", NULL);
	refused("--idle-timeout 'x'", "--idle-timeout", "x", NULL);
	refused("must not be empty", "--auth-file", "", NULL);
	/* Names that resolve to nothing, and missing auth files, are found
	 * at start, after the store is made: it is removed again. */
	refused("kvd: listen no-such-host.invalid:1",
	        "--listen", "no-such-host.invalid:1", NULL);
	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);
	refused("auth file", "--listen", "127.0.0.1:0", "--auth-file",
	        missing, NULL);

	/* --help tells of them all. */
	{
		const char *argv[] = {h_kvd_bin(), "--help", NULL};

		h_run(&r, argv, NULL);
		H_ASSERT_EXIT(&r, 0);
		H_ASSERT_OUT_HAS(&r, "--listen ADDR");
		H_ASSERT_OUT_HAS(&r, "unix:PATH");
		H_ASSERT_OUT_HAS(&r, "--threads N");
		H_ASSERT_OUT_HAS(&r, "--max-conns N");
		H_ASSERT_OUT_HAS(&r, "--idle-timeout SECONDS");
		H_ASSERT_OUT_HAS(&r, "--auth-file FILE");
		h_result_free(&r);
	}
}

/* Without --listen there is no server: no port, no threads; options of
 * the server alone only earn a warning. */
static void test_listen_none(void **state)
{
	const char *store = h_store_name("none");
	struct h_proc *p;

	(void)state;
	p = h_kvd(store, "--size", SIZE, "--threads", "2", NULL);
	wait_log(p, "memcached protocol is off");
	assert_false(log_has(p, "listening on"));
	stop_ok(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_listen_tcp4, teardown),
		cmocka_unit_test_teardown(test_listen_tcp6, teardown),
		cmocka_unit_test_teardown(test_listen_unix, teardown),
		cmocka_unit_test_teardown(test_listen_unix_stale_and_busy,
		                          teardown),
		cmocka_unit_test_teardown(test_listen_port_in_use, teardown),
		cmocka_unit_test_teardown(test_listen_max_conns, teardown),
		cmocka_unit_test_teardown(test_listen_idle_timeout, teardown),
		cmocka_unit_test_teardown(test_listen_systemd, teardown),
		cmocka_unit_test_teardown(test_listen_sigterm_with_clients,
		                          teardown),
		cmocka_unit_test_teardown(test_listen_never_reads, teardown),
		cmocka_unit_test_teardown(test_listen_many_clients, teardown),
		cmocka_unit_test_teardown(test_listen_options, teardown),
		cmocka_unit_test_teardown(test_listen_none, teardown),
		cmocka_unit_test_teardown(test_listen_resize, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
