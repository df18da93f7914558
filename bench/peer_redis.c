/*
 * peer_redis.c - Redis through hiredis on a UNIX socket.
 *
 * get-hit is one GET per round trip (redisCommandArgv: append, flush,
 * wait for the reply). mget-B is, by default, B GETs appended and flushed
 * together, then B replies read: hiredis pipelining, one round trip for B
 * keys. --style mget sends one MGET of B keys instead (one command, one
 * array reply). The load pipelines SETs 1000 at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis.h>

#include "peer.h"

#define LOAD_PIPE 1000u

struct rconn {
	redisContext *c;
	bool use_mget;
	char err[200];
};

static const char *r_errmsg(void *conn)
{
	struct rconn *r = conn;
	if (r->err[0])
		return r->err;
	return r->c && r->c->err ? r->c->errstr : "unexpected reply";
}

static int r_open(const struct peer_conf *cf, void **conn, char *err,
                  size_t errlen)
{
	struct rconn *r = calloc(1, sizeof *r);
	*conn = NULL;
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cf->style && strcmp(cf->style, "mget") == 0) {
		r->use_mget = true;
	} else if (cf->style && strcmp(cf->style, "pipeline") != 0) {
		snprintf(err, errlen, "redis: unknown --style %s", cf->style);
		free(r);
		return -1;
	}
	struct timeval tv = {10, 0};
	r->c = redisConnectUnixWithTimeout(cf->target, tv);
	if (r->c == NULL || r->c->err) {
		snprintf(err, errlen, "redis: connect %s: %s", cf->target,
		         r->c ? r->c->errstr : "out of memory");
		if (r->c)
			redisFree(r->c);
		free(r);
		return -1;
	}
	redisSetTimeout(r->c, tv);
	*conn = r;
	return 0;
}

static void r_close(void *conn)
{
	struct rconn *r = conn;
	redisFree(r->c);
	free(r);
}

static int r_flush(void *conn, char *err, size_t errlen)
{
	struct rconn *r = conn;
	redisReply *rep = redisCommand(r->c, "FLUSHALL");
	int ok = rep && rep->type == REDIS_REPLY_STATUS;
	if (!ok)
		snprintf(err, errlen, "redis: FLUSHALL: %s", r_errmsg(r));
	freeReplyObject(rep);
	return ok ? 0 : -1;
}

static int r_load(void *conn, const struct bench_keyset *ks,
                  const uint8_t *val, size_t vlen, char *err, size_t errlen)
{
	struct rconn *r = conn;
	for (size_t base = 0; base < ks->count; base += LOAD_PIPE) {
		size_t n = ks->count - base < LOAD_PIPE ? ks->count - base
		                                        : LOAD_PIPE;
		for (size_t i = 0; i < n; i++) {
			const char *argv[3] = {"SET", bench_key(ks, base + i),
			                       (const char *)val};
			size_t lens[3] = {3, ks->klen, vlen};
			if (redisAppendCommandArgv(r->c, 3, argv, lens) !=
			    REDIS_OK)
				goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			void *p;
			if (redisGetReply(r->c, &p) != REDIS_OK)
				goto fail;
			redisReply *rep = p;
			int ok = rep->type == REDIS_REPLY_STATUS;
			freeReplyObject(rep);
			if (!ok)
				goto fail;
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "redis: SET: %s", r_errmsg(r));
	return -1;
}

/* A GET reply: 0 string copied, 1 nil, -1 anything else. */
static int take_string(struct rconn *r, const redisReply *rep, uint8_t *buf,
                       size_t cap, size_t *vlen)
{
	if (rep->type == REDIS_REPLY_NIL)
		return 1;
	if (rep->type != REDIS_REPLY_STRING) {
		snprintf(r->err, sizeof r->err, "reply of type %d to GET",
		         rep->type);
		return -1;
	}
	*vlen = rep->len;
	if (rep->len <= cap)
		memcpy(buf, rep->str, rep->len);
	return 0;
}

static int r_get(void *conn, const char *key, size_t klen, uint8_t *buf,
                 size_t cap, size_t *vlen)
{
	struct rconn *r = conn;
	const char *argv[2] = {"GET", key};
	size_t lens[2] = {3, klen};
	redisReply *rep = redisCommandArgv(r->c, 2, argv, lens);
	if (rep == NULL)
		return -1;
	int rc = take_string(r, rep, buf, cap, vlen);
	freeReplyObject(rep);
	return rc;
}

static int r_mget(void *conn, const char *const *keys, size_t klen,
                  size_t n, uint8_t *buf, size_t cap, size_t want,
                  size_t *hits)
{
	struct rconn *r = conn;
	size_t got;

	*hits = 0;
	if (r->use_mget) {
		const char *argv[1 + 256];
		size_t lens[1 + 256];
		if (n > 256)
			return -1;
		argv[0] = "MGET";
		lens[0] = 4;
		for (size_t i = 0; i < n; i++) {
			argv[1 + i] = keys[i];
			lens[1 + i] = klen;
		}
		redisReply *rep = redisCommandArgv(r->c, (int)(n + 1), argv,
		                                   lens);
		if (rep == NULL)
			return -1;
		int rc = 0;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
			snprintf(r->err, sizeof r->err, "bad reply to MGET");
			rc = -1;
		}
		for (size_t i = 0; rc == 0 && i < n; i++) {
			int s = take_string(r, rep->element[i], buf, cap,
			                    &got);
			if (s < 0)
				rc = -1;
			else if (s == 0 && got == want)
				(*hits)++;
		}
		freeReplyObject(rep);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const char *argv[2] = {"GET", keys[i]};
		size_t lens[2] = {3, klen};
		if (redisAppendCommandArgv(r->c, 2, argv, lens) != REDIS_OK)
			return -1;
	}
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		void *p;
		if (redisGetReply(r->c, &p) != REDIS_OK)
			return -1; /* the connection is unusable now */
		int s = take_string(r, p, buf, cap, &got);
		freeReplyObject(p);
		if (s < 0)
			rc = -1;
		else if (s == 0 && got == want)
			(*hits)++;
	}
	return rc;
}

static int r_put(void *conn, const char *key, size_t klen,
                 const uint8_t *val, size_t vlen)
{
	struct rconn *r = conn;
	const char *argv[3] = {"SET", key, (const char *)val};
	size_t lens[3] = {3, klen, vlen};
	redisReply *rep = redisCommandArgv(r->c, 3, argv, lens);
	if (rep == NULL)
		return -1;
	int ok = rep->type == REDIS_REPLY_STATUS;
	if (!ok)
		snprintf(r->err, sizeof r->err, "reply of type %d to SET",
		         rep->type);
	freeReplyObject(rep);
	return ok ? 0 : -1;
}

static int r_memory(void *conn, uint64_t *bytes)
{
	struct rconn *r = conn;
	redisReply *rep = redisCommand(r->c, "INFO memory");
	int rc = -1;
	if (rep && rep->type == REDIS_REPLY_STRING) {
		const char *p = strstr(rep->str, "used_memory:");
		if (p) {
			*bytes = strtoull(p + strlen("used_memory:"), NULL, 10);
			rc = 0;
		}
	}
	freeReplyObject(rep);
	return rc;
}

const struct peer_driver peer_redis = {
	.name = "redis",
	.get_how = "one GET per round trip (hiredis, UNIX socket)",
	.batch_how = "B GETs pipelined in one round trip (hiredis); "
	             "--style mget: one MGET of B keys",
	.put_how = "one SET per round trip",
	.styles = "pipeline,mget",
	.open = r_open,
	.close = r_close,
	.flush = r_flush,
	.load = r_load,
	.get = r_get,
	.mget = r_mget,
	.put = r_put,
	.memory = r_memory,
	.memory_how = "INFO used_memory: the allocator's bytes for data, "
	              "dict and objects",
	.errmsg = r_errmsg,
};
