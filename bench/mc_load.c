/*
 * mc_load.c - a load driver for servers of the memcached text protocol:
 * kvd --listen and memcached, driven the same way, so their figures can
 * stand side by side (bench/mc_compare.sh runs both).
 *
 *   mc-load (--tcp HOST:PORT | --unix PATH) [--op get|set] [--conns N]
 *           [--depth D] [--keys K] [--vsize B] [--seconds S] [--load]
 *           [--label TEXT]
 *
 * One thread, one epoll loop over N non-blocking connections. Each
 * connection sends D requests in one write (D = 1: one request per round
 * trip; D > 1: pipelined), waits for all D replies, and sends the next D.
 * Keys are "key:NNNNNNNN" for a uniform random N below K, values B bytes.
 * A round trip's time, from the write to the last reply byte, is the
 * latency of each request in it: with depth D, every request of a batch
 * waits for the whole batch, so p50 and p99 are of batches. With --load,
 * the K keys are set first (pipelined, not timed).
 *
 * Prints one CSV line on stdout:
 *   label,op,transport,conns,depth,ops,seconds,ops_per_s,p50_us,p99_us
 * and progress on stderr. The driver shares the machine with the server:
 * on a small machine its own CPU use is part of every figure, equally for
 * every server it drives.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_DEPTH 256
#define RBUF (256 * 1024)
#define MAX_SAMPLES (1u << 22)

struct conn {
	int fd;
	char *out;       /* the batch being written */
	size_t out_len, out_off;
	unsigned want;   /* replies still due in this batch */
	char tail[8];    /* the last bytes read, for a marker split by reads */
	size_t tail_len;
	uint64_t t0;     /* when the batch's write began */
};

static const char *opt_tcp, *opt_unix, *opt_label = "server";
static int opt_set, opt_load;
static unsigned opt_conns = 1, opt_depth = 1, opt_vsize = 100;
static unsigned long opt_keys = 100000;
static double opt_seconds = 3.0;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void die(const char *what)
{
	fprintf(stderr, "mc-load: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int dial(void)
{
	int fd;
	if (opt_unix != NULL) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(opt_unix) >= sizeof sa.sun_path) {
			fprintf(stderr, "mc-load: socket path too long\n");
			exit(2);
		}
		strcpy(sa.sun_path, opt_unix);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
			die(opt_unix);
	} else {
		char host[256];
		const char *colon = strrchr(opt_tcp, ':');
		if (colon == NULL || (size_t)(colon - opt_tcp) >= sizeof host) {
			fprintf(stderr, "mc-load: --tcp HOST:PORT\n");
			exit(2);
		}
		memcpy(host, opt_tcp, (size_t)(colon - opt_tcp));
		host[colon - opt_tcp] = '\0';
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
		if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
			fprintf(stderr, "mc-load: cannot resolve %s\n", opt_tcp);
			exit(2);
		}
		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
			die(opt_tcp);
		freeaddrinfo(ai);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

/* Append one request for a random key (or key i, when i >= 0). */
static size_t add_request(char *p, const char *val, long i)
{
	unsigned long k = i >= 0 ? (unsigned long)i : next_rand() % opt_keys;
	if (opt_set || i >= 0) {
		int n = sprintf(p, "set key:%08lu 0 0 %u\r\n", k, opt_vsize);
		memcpy(p + n, val, opt_vsize);
		memcpy(p + n + opt_vsize, "\r\n", 2);
		return (size_t)n + opt_vsize + 2;
	}
	return (size_t)sprintf(p, "get key:%08lu\r\n", k);
}

/* Count the reply markers in fresh bytes, with the tail of the last read
 * in front so that a marker split by reads is counted once. */
static unsigned count_replies(struct conn *c, const char *buf, size_t n,
                              const char *mark)
{
	size_t ml = strlen(mark), keep = ml - 1;
	char join[32];
	unsigned found = 0;

	/* Markers that begin in the tail and end in this read. */
	size_t h = n < keep ? n : keep;
	memcpy(join, c->tail, c->tail_len);
	memcpy(join + c->tail_len, buf, h);
	for (size_t i = 0; i < c->tail_len && i + ml <= c->tail_len + h; i++)
		if (memcmp(join + i, mark, ml) == 0)
			found++;
	for (size_t i = 0; i + ml <= n; i++)
		if (buf[i] == mark[0] && memcmp(buf + i, mark, ml) == 0)
			found++;
	/* The tail: the stream's last keep bytes. */
	size_t tl = c->tail_len + n;
	if (n >= keep) {
		memcpy(c->tail, buf + n - keep, keep);
		c->tail_len = keep;
	} else {
		memcpy(join + c->tail_len, buf, n);
		size_t k = tl > keep ? keep : tl;
		memmove(c->tail, join + tl - k, k);
		c->tail_len = k;
	}
	return found;
}

/* Write what is left of the batch; watch for writability only while
 * something is. */
static void flush_out(int ep, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->fd, c->out + c->out_off,
		                  c->out_len - c->out_off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			die("write");
		c->out_off += (size_t)w;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (c->out_off < c->out_len)
		ev.events |= EPOLLOUT;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: mc-load (--tcp HOST:PORT | --unix PATH) [--op get|set]"
	        " [--conns N]\n"
	        "               [--depth D] [--keys K] [--vsize B] "
	        "[--seconds S] [--load]\n"
	        "               [--label TEXT]\n");
	exit(2);
}

static void load_keys(const char *val)
{
	int fd = dial();
	size_t cap = 64 * (opt_vsize + 64);
	char *buf = malloc(cap), *rb = malloc(RBUF);
	struct conn c = {.fd = fd};
	if (buf == NULL || rb == NULL)
		die("malloc");
	for (unsigned long i = 0; i < opt_keys; i += 64) {
		size_t len = 0;
		unsigned n = 0;
		for (unsigned long k = i; k < opt_keys && n < 64; k++, n++)
			len += add_request(buf + len, val, (long)k);
		for (size_t off = 0; off < len;) {
			ssize_t w = write(fd, buf + off, len - off);
			if (w <= 0)
				die("write");
			off += (size_t)w;
		}
		while (n > 0) {
			ssize_t r = read(fd, rb, RBUF);
			if (r <= 0)
				die("read");
			n -= count_replies(&c, rb, (size_t)r, "\r\n");
		}
	}
	close(fd);
	free(buf);
	free(rb);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--load") == 0) {
			opt_load = 1;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--tcp") == 0)
			opt_tcp = v;
		else if (strcmp(a, "--unix") == 0)
			opt_unix = v;
		else if (strcmp(a, "--op") == 0)
			opt_set = strcmp(v, "set") == 0;
		else if (strcmp(a, "--conns") == 0)
			opt_conns = (unsigned)atoi(v);
		else if (strcmp(a, "--depth") == 0)
			opt_depth = (unsigned)atoi(v);
		else if (strcmp(a, "--keys") == 0)
			opt_keys = strtoul(v, NULL, 10);
		else if (strcmp(a, "--vsize") == 0)
			opt_vsize = (unsigned)atoi(v);
		else if (strcmp(a, "--seconds") == 0)
			opt_seconds = atof(v);
		else if (strcmp(a, "--label") == 0)
			opt_label = v;
		else
			usage();
	}
	if ((opt_tcp == NULL) == (opt_unix == NULL) || opt_conns == 0 ||
	    opt_conns > MAX_CONNS || opt_depth == 0 || opt_depth > MAX_DEPTH ||
	    opt_keys == 0 || opt_vsize == 0 || opt_vsize > 65536)
		usage();

	char *val = malloc(opt_vsize);
	if (val == NULL)
		die("malloc");
	memset(val, 'v', opt_vsize);
	if (opt_load) {
		fprintf(stderr, "mc-load: %s: loading %lu keys\n", opt_label,
		        opt_keys);
		load_keys(val);
	}

	int ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	struct conn *cs = calloc(opt_conns, sizeof *cs);
	char *rb = malloc(RBUF);
	uint64_t *lat = malloc(MAX_SAMPLES * sizeof *lat);
	if (cs == NULL || rb == NULL || lat == NULL)
		die("malloc");
	size_t nlat = 0;
	const char *mark = opt_set ? "STORED\r\n" : "END\r\n";
	size_t batch_cap = opt_depth * (opt_vsize + 64);

	for (unsigned i = 0; i < opt_conns; i++) {
		struct conn *c = &cs[i];
		c->fd = dial();
		c->out = malloc(batch_cap);
		if (c->out == NULL)
			die("malloc");
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
			die("epoll_ctl");
	}

	uint64_t ops = 0, start = now_ns();
	uint64_t warm_end = start + 300000000ull; /* 0.3 s not counted */
	uint64_t end = warm_end + (uint64_t)(opt_seconds * 1e9);
	uint64_t counted_from = 0;
	for (unsigned i = 0; i < opt_conns; i++) {
		struct conn *c = &cs[i];
		for (unsigned d = 0; d < opt_depth; d++)
			c->out_len += add_request(c->out + c->out_len, val, -1);
		c->want = opt_depth;
		c->t0 = now_ns();
		flush_out(ep, c);
	}

	struct epoll_event evs[64];
	uint64_t t = now_ns();
	while (t < end) {
		int n = epoll_wait(ep, evs, 64, 100);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		t = now_ns();
		if (counted_from == 0 && t >= warm_end) {
			counted_from = t;
			ops = 0;
			nlat = 0;
		}
		for (int e = 0; e < n; e++) {
			struct conn *c = evs[e].data.ptr;
			if (evs[e].events & EPOLLOUT)
				flush_out(ep, c);
			for (;;) {
				ssize_t r = read(c->fd, rb, RBUF);
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					break;
				if (r <= 0) {
					fprintf(stderr, "mc-load: %s: the server "
					        "closed a connection\n", opt_label);
					return 1;
				}
				unsigned got = count_replies(c, rb, (size_t)r,
				                             mark);
				if (got > c->want) {
					fprintf(stderr, "mc-load: %s: more "
					        "replies than requests\n",
					        opt_label);
					return 1;
				}
				c->want -= got;
			}
			if (c->want == 0 && c->out_off == c->out_len) {
				uint64_t done = now_ns();
				ops += opt_depth;
				if (nlat < MAX_SAMPLES)
					lat[nlat++] = done - c->t0;
				c->out_len = c->out_off = 0;
				for (unsigned d = 0; d < opt_depth; d++)
					c->out_len += add_request(
					    c->out + c->out_len, val, -1);
				c->want = opt_depth;
				c->t0 = done;
				flush_out(ep, c);
			}
		}
	}
	double secs = (double)(t - counted_from) / 1e9;
	qsort(lat, nlat, sizeof *lat, cmp_u64);
	double p50 = nlat ? (double)lat[nlat / 2] / 1e3 : 0;
	double p99 = nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1e3 : 0;
	printf("%s,%s,%s,%u,%u,%llu,%.2f,%.0f,%.1f,%.1f\n", opt_label,
	       opt_set ? "set" : "get", opt_unix ? "unix" : "tcp", opt_conns,
	       opt_depth, (unsigned long long)ops, secs,
	       (double)ops / secs, p50, p99);
	for (unsigned i = 0; i < opt_conns; i++) {
		close(cs[i].fd);
		free(cs[i].out);
	}
	free(cs);
	free(rb);
	free(lat);
	free(val);
	close(ep);
	return 0;
}
