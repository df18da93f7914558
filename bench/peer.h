/*
 * peer.h - what peer-bench asks of a peer store (Redis, memcached, LMDB):
 * a connection per client process, a load, a get, a batched get, a put and
 * the memory it holds. One driver per store, each in its own file and
 * built only when its client library is found (see meson.build).
 *
 * Every call copies a value out into the caller's buffer, as kv_get does,
 * so no side is spared the copy. A connection is used by one process only:
 * peer-bench opens it in the client process itself, after fork().
 */
#ifndef KV_PEER_H
#define KV_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

struct peer_conf {
	const char *target; /* UNIX socket (redis, memcached); dir (lmdb) */
	uint64_t keys;      /* keys the store is loaded with */
	unsigned klen, vlen;
	const char *style;  /* batching: driver-specific, NULL = default */
};

struct peer_driver {
	const char *name;
	const char *get_how;   /* one line each, for the report */
	const char *batch_how;
	const char *put_how;
	const char *styles;    /* batching styles, the default first */
	bool in_process;       /* no server: a client's CPU share says
	                        * whether it had its core (--min-cpu) */

	/* Connect (or open). On failure *conn is NULL and err says why. */
	int (*open)(const struct peer_conf *c, void **conn, char *err,
	            size_t errlen);
	void (*close)(void *conn);
	/* Remove every key of the store. */
	int (*flush)(void *conn, char *err, size_t errlen);
	/* Put the keys of ks (in order, each once) with val, as fast as the
	 * store allows (pipelined, unacknowledged, one transaction...). */
	int (*load)(void *conn, const struct bench_keyset *ks,
	            const uint8_t *val, size_t vlen, char *err,
	            size_t errlen);
	/* 0: found, copied into buf[0..cap) and *vlen set; 1: absent;
	 * -1: error (see errmsg). */
	int (*get)(void *conn, const char *key, size_t klen, uint8_t *buf,
	           size_t cap, size_t *vlen);
	/* n keys in one round trip (or one read transaction); *hits counts
	 * those found with a value of exactly want bytes. 0 or -1. */
	int (*mget)(void *conn, const char *const *keys, size_t klen,
	            size_t n, uint8_t *buf, size_t cap, size_t want,
	            size_t *hits);
	/* Insert or replace, acknowledged. 0 or -1. */
	int (*put)(void *conn, const char *key, size_t klen,
	           const uint8_t *val, size_t vlen);
	/* Bytes the store holds for its data now (server memory, file). */
	int (*memory)(void *conn, uint64_t *bytes);
	/* What the memory figure counts, for the report. */
	const char *memory_how;
	const char *(*errmsg)(void *conn);
};

#ifdef PEER_REDIS
extern const struct peer_driver peer_redis;
#endif
#ifdef PEER_MEMCACHED
extern const struct peer_driver peer_memcached;
#endif
#ifdef PEER_LMDB
extern const struct peer_driver peer_lmdb;
#endif

#endif /* KV_PEER_H */
