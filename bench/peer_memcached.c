/*
 * peer_memcached.c - memcached through libmemcached on a UNIX socket,
 * ASCII protocol (the default; the binary protocol is deprecated).
 *
 * get-hit is one memcached_get() per round trip (libmemcached mallocs the
 * value; we copy it out and free it, as a caller would). mget-B is one
 * memcached_mget() of B keys ("get k1 k2 ... kB", a single request) and
 * memcached_fetch_result() into a reused result. The load streams
 * "set ... noreply" on a raw connection of its own (see m_load).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "peer.h"

struct mconn {
	memcached_st *m;
	memcached_result_st result;
	bool have_result;
	memcached_return_t last;
	char path[108];
	char err[200];
};

static const char *m_errmsg(void *conn)
{
	struct mconn *c = conn;
	if (c->err[0])
		return c->err;
	return memcached_strerror(c->m, c->last);
}

static int m_open(const struct peer_conf *cf, void **conn, char *err,
                  size_t errlen)
{
	struct mconn *c = calloc(1, sizeof *c);
	*conn = NULL;
	if (c == NULL || (c->m = memcached_create(NULL)) == NULL) {
		snprintf(err, errlen, "memcached: out of memory");
		free(c);
		return -1;
	}
	if (cf->style && strcmp(cf->style, "mget") != 0) {
		snprintf(err, errlen, "memcached: unknown --style %s",
		         cf->style);
		goto fail;
	}
	memcached_return_t rc =
	    memcached_server_add_unix_socket(c->m, cf->target);
	if (rc != MEMCACHED_SUCCESS) {
		snprintf(err, errlen, "memcached: server %s: %s", cf->target,
		         memcached_strerror(c->m, rc));
		goto fail;
	}
	if (memcached_result_create(c->m, &c->result) == NULL) {
		snprintf(err, errlen, "memcached: out of memory");
		goto fail;
	}
	c->have_result = true;
	snprintf(c->path, sizeof c->path, "%s", cf->target);
	/* Connect now, so a missing server shows here. */
	memcached_return_t vr = memcached_version(c->m);
	if (vr != MEMCACHED_SUCCESS) {
		snprintf(err, errlen, "memcached: connect %s: %s", cf->target,
		         memcached_strerror(c->m, vr));
		goto fail;
	}
	*conn = c;
	return 0;
fail:
	if (c->have_result)
		memcached_result_free(&c->result);
	memcached_free(c->m);
	free(c);
	return -1;
}

static void m_close(void *conn)
{
	struct mconn *c = conn;
	if (c->have_result)
		memcached_result_free(&c->result);
	memcached_free(c->m);
	free(c);
}

static int m_flush(void *conn, char *err, size_t errlen)
{
	struct mconn *c = conn;
	memcached_return_t rc = memcached_flush(c->m, 0);
	if (rc != MEMCACHED_SUCCESS) {
		snprintf(err, errlen, "memcached: flush_all: %s",
		         memcached_strerror(c->m, rc));
		return -1;
	}
	return 0;
}

/* Write all of buf to fd. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* The load speaks the ASCII protocol itself on a connection of its own:
 * "set KEY 0 0 LEN noreply" in 256 KiB writes, then "version" as a
 * barrier (a connection's commands run in order, so its answer means
 * every set before it is done). libmemcached's NOREPLY + BUFFER_REQUESTS
 * mode was tried first and now and then lost the tail of the load. */
static int m_load(void *conn, const struct bench_keyset *ks,
                  const uint8_t *val, size_t vlen, char *err, size_t errlen)
{
	struct mconn *c = conn;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t cap = 256u << 10, used = 0;
	char *buf = malloc(cap + ks->klen + vlen + 64);
	int fd = -1, ret = -1;

	if (buf == NULL) {
		snprintf(err, errlen, "memcached: out of memory");
		return -1;
	}
	if (strlen(c->path) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "memcached: socket path too long");
		goto out;
	}
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		snprintf(err, errlen, "memcached: connect %s: %s", c->path,
		         strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < ks->count; i++) {
		int n = snprintf(buf + used, 64 + ks->klen, "set %.*s 0 0 %zu "
		                 "noreply\r\n", (int)ks->klen,
		                 bench_key(ks, i), vlen);
		used += (size_t)n;
		memcpy(buf + used, val, vlen);
		used += vlen;
		buf[used++] = '\r';
		buf[used++] = '\n';
		if (used >= cap || i + 1 == ks->count) {
			if (write_all(fd, buf, used) != 0)
				goto io;
			used = 0;
		}
	}
	if (write_all(fd, "version\r\n", 9) != 0)
		goto io;
	used = 0;
	while (used < 64) {
		ssize_t r = read(fd, buf + used, 64 - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto io;
		used += (size_t)r;
		if (memchr(buf, '\n', used))
			break;
	}
	if (used < 8 || memcmp(buf, "VERSION ", 8) != 0) {
		snprintf(err, errlen, "memcached: load: unexpected answer "
		         "'%.*s'", (int)strcspn(buf, "\r\n"), buf);
		goto out;
	}
	ret = 0;
	goto out;
io:
	snprintf(err, errlen, "memcached: load: %s",
	         errno ? strerror(errno) : "connection closed");
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static int m_get(void *conn, const char *key, size_t klen, uint8_t *buf,
                 size_t cap, size_t *vlen)
{
	struct mconn *c = conn;
	uint32_t flags;
	size_t len = 0;
	char *v = memcached_get(c->m, key, klen, &len, &flags, &c->last);

	if (v == NULL)
		return c->last == MEMCACHED_NOTFOUND ? 1 : -1;
	*vlen = len;
	if (len <= cap)
		memcpy(buf, v, len);
	free(v);
	return 0;
}

static int m_mget(void *conn, const char *const *keys, size_t klen,
                  size_t n, uint8_t *buf, size_t cap, size_t want,
                  size_t *hits)
{
	struct mconn *c = conn;
	size_t lens[256];

	*hits = 0;
	if (n > 256)
		return -1;
	for (size_t i = 0; i < n; i++)
		lens[i] = klen;
	c->last = memcached_mget(c->m, keys, lens, n);
	if (c->last != MEMCACHED_SUCCESS)
		return -1;
	memcached_result_st *res;
	while ((res = memcached_fetch_result(c->m, &c->result, &c->last)) !=
	       NULL) {
		size_t len = memcached_result_length(res);
		if (len <= cap)
			memcpy(buf, memcached_result_value(res), len);
		if (len == want)
			(*hits)++;
	}
	return c->last == MEMCACHED_END || c->last == MEMCACHED_SUCCESS ||
	               c->last == MEMCACHED_NOTFOUND
	           ? 0
	           : -1;
}

static int m_put(void *conn, const char *key, size_t klen,
                 const uint8_t *val, size_t vlen)
{
	struct mconn *c = conn;
	c->last = memcached_set(c->m, key, klen, (const char *)val, vlen, 0, 0);
	return c->last == MEMCACHED_SUCCESS ? 0 : -1;
}

struct stat_sum {
	uint64_t bytes;
	int found;
};

static memcached_return_t add_stat(const memcached_instance_st *server,
                                   const char *key, size_t key_length,
                                   const char *value, size_t value_length,
                                   void *context)
{
	struct stat_sum *s = context;
	char v[32];
	(void)server;
	if ((key_length == 14 && memcmp(key, "total_malloced", 14) == 0) ||
	    (key_length == 10 && memcmp(key, "hash_bytes", 10) == 0)) {
		size_t n = value_length < sizeof v - 1 ? value_length
		                                       : sizeof v - 1;
		memcpy(v, value, n);
		v[n] = '\0';
		s->bytes += strtoull(v, NULL, 10);
		s->found++;
	}
	return MEMCACHED_SUCCESS;
}

static int m_memory(void *conn, uint64_t *bytes)
{
	struct mconn *c = conn;
	struct stat_sum s = {0};
	/* "stats slabs" has total_malloced (slab pages handed to classes),
	 * "stats" has hash_bytes (the hash table). */
	if (memcached_stat_execute(c->m, "slabs", add_stat, &s) !=
	        MEMCACHED_SUCCESS ||
	    memcached_stat_execute(c->m, NULL, add_stat, &s) !=
	        MEMCACHED_SUCCESS ||
	    s.found < 2)
		return -1;
	*bytes = s.bytes;
	return 0;
}

const struct peer_driver peer_memcached = {
	.name = "memcached",
	.get_how = "one get per round trip (libmemcached, ASCII, UNIX "
	           "socket)",
	.batch_how = "one multi-key get of B keys per round trip "
	             "(memcached_mget + fetch_result)",
	.put_how = "one set per round trip",
	.styles = "mget",
	.open = m_open,
	.close = m_close,
	.flush = m_flush,
	.load = m_load,
	.get = m_get,
	.mget = m_mget,
	.put = m_put,
	.memory = m_memory,
	.memory_how = "slab pages (total_malloced) + hash table (hash_bytes)",
	.errmsg = m_errmsg,
};
