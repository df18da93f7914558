/*
 * peer_lmdb.c - LMDB, an environment in a directory on /dev/shm, opened
 * by each client process on its own (an MDB_env must not cross a fork).
 *
 * Reads: every process keeps one read-only transaction handle. get-hit
 * renews it for every get and resets it after (mdb_txn_renew, mdb_get,
 * copy out, mdb_txn_reset): one consistent snapshot per get, which is what
 * a kv_get gives. mget-B renews it once for B gets: the per-transaction
 * cost (taking a reader slot, reading the meta pages) is paid once per B.
 * Writes: MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC, LMDB's fastest and
 * least durable setting, one write transaction per put. The load puts the
 * keys in key order with MDB_APPEND, 100 000 per transaction, which packs
 * the leaf pages full: the smallest and fastest tree LMDB can have here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "peer.h"

#define LOAD_TXN 100000u

struct lconn {
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *rtxn; /* reset between uses */
	int last;
	char err[200];
};

static const char *l_errmsg(void *conn)
{
	struct lconn *l = conn;
	return l->err[0] ? l->err : mdb_strerror(l->last);
}

static void l_close(void *conn)
{
	struct lconn *l = conn;
	if (l->rtxn)
		mdb_txn_abort(l->rtxn);
	if (l->env)
		mdb_env_close(l->env);
	free(l);
}

static int l_open(const struct peer_conf *cf, void **conn, char *err,
                  size_t errlen)
{
	struct lconn *l = calloc(1, sizeof *l);
	MDB_txn *txn = NULL;
	const char *what = "out of memory";
	int rc = ENOMEM;

	*conn = NULL;
	if (l == NULL)
		goto fail;
	if (cf->style && strcmp(cf->style, "txn") != 0) {
		snprintf(err, errlen, "lmdb: unknown --style %s", cf->style);
		free(l);
		return -1;
	}
	/* Room for the data four times over, and never under 64 MiB: the
	 * file is sparse, only what is written takes memory. */
	size_t map = (size_t)cf->keys * (cf->klen + cf->vlen + 64u) * 4u +
	             (64u << 20);
	/* ...and never under the file an earlier, larger load left. */
	char file[4096];
	struct stat sb;
	snprintf(file, sizeof file, "%s/data.mdb", cf->target);
	if (stat(file, &sb) == 0 && (size_t)sb.st_size > map)
		map = (size_t)sb.st_size;
	what = "mdb_env_create";
	if ((rc = mdb_env_create(&l->env)) != 0)
		goto fail;
	what = "mdb_env_set_mapsize";
	if ((rc = mdb_env_set_mapsize(l->env, map)) != 0)
		goto fail;
	mdb_env_set_maxreaders(l->env, 256);
	mkdir(cf->target, 0700);
	what = "mdb_env_open";
	if ((rc = mdb_env_open(l->env, cf->target,
	                       MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC |
	                           MDB_NOTLS | MDB_NORDAHEAD,
	                       0600)) != 0)
		goto fail;
	what = "open the database";
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &l->dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	txn = NULL;
	what = "begin a read transaction";
	if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->rtxn)) != 0)
		goto fail;
	mdb_txn_reset(l->rtxn);
	*conn = l;
	return 0;
fail:
	snprintf(err, errlen, "lmdb: %s %s: %s", what, cf->target,
	         mdb_strerror(rc));
	if (txn)
		mdb_txn_abort(txn);
	if (l)
		l_close(l);
	return -1;
}

static int l_flush(void *conn, char *err, size_t errlen)
{
	struct lconn *l = conn;
	MDB_txn *txn;
	int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_drop(txn, l->dbi, 0);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc != 0)
		snprintf(err, errlen, "lmdb: empty the database: %s",
		         mdb_strerror(rc));
	return rc ? -1 : 0;
}

static int l_load(void *conn, const struct bench_keyset *ks,
                  const uint8_t *val, size_t vlen, char *err, size_t errlen)
{
	struct lconn *l = conn;
	MDB_txn *txn = NULL;
	int rc = 0;

	for (size_t i = 0; i < ks->count && rc == 0; i++) {
		if (txn == NULL && (rc = mdb_txn_begin(l->env, NULL, 0,
		                                       &txn)) != 0)
			break;
		MDB_val k = {ks->klen, (void *)(uintptr_t)bench_key(ks, i)};
		MDB_val d = {vlen, (void *)(uintptr_t)val};
		rc = mdb_put(txn, l->dbi, &k, &d, MDB_APPEND);
		if (rc == 0 && (i + 1) % LOAD_TXN == 0) {
			rc = mdb_txn_commit(txn);
			txn = NULL;
		}
	}
	if (rc == 0 && txn) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	if (rc != 0)
		snprintf(err, errlen, "lmdb: load: %s", mdb_strerror(rc));
	return rc ? -1 : 0;
}

static inline int get_in(struct lconn *l, const char *key, size_t klen,
                         uint8_t *buf, size_t cap, size_t *vlen)
{
	MDB_val k = {klen, (void *)(uintptr_t)key}, d;
	int rc = mdb_get(l->rtxn, l->dbi, &k, &d);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0) {
		l->last = rc;
		return -1;
	}
	*vlen = d.mv_size;
	if (d.mv_size <= cap)
		memcpy(buf, d.mv_data, d.mv_size);
	return 0;
}

static int l_get(void *conn, const char *key, size_t klen, uint8_t *buf,
                 size_t cap, size_t *vlen)
{
	struct lconn *l = conn;
	int rc = mdb_txn_renew(l->rtxn);
	if (rc != 0) {
		l->last = rc;
		return -1;
	}
	int s = get_in(l, key, klen, buf, cap, vlen);
	mdb_txn_reset(l->rtxn);
	return s;
}

static int l_mget(void *conn, const char *const *keys, size_t klen,
                  size_t n, uint8_t *buf, size_t cap, size_t want,
                  size_t *hits)
{
	struct lconn *l = conn;
	size_t got;
	int rc = mdb_txn_renew(l->rtxn), ret = 0;

	*hits = 0;
	if (rc != 0) {
		l->last = rc;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int s = get_in(l, keys[i], klen, buf, cap, &got);
		if (s < 0)
			ret = -1;
		else if (s == 0 && got == want)
			(*hits)++;
	}
	mdb_txn_reset(l->rtxn);
	return ret;
}

static int l_put(void *conn, const char *key, size_t klen,
                 const uint8_t *val, size_t vlen)
{
	struct lconn *l = conn;
	MDB_txn *txn;
	MDB_val k = {klen, (void *)(uintptr_t)key};
	MDB_val d = {vlen, (void *)(uintptr_t)val};
	int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_put(txn, l->dbi, &k, &d, 0);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	l->last = rc;
	return rc ? -1 : 0;
}

static int l_memory(void *conn, uint64_t *bytes)
{
	struct lconn *l = conn;
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(l->env, &info) != 0 || mdb_env_stat(l->env, &st) != 0)
		return -1;
	*bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	return 0;
}

const struct peer_driver peer_lmdb = {
	.name = "lmdb",
	.get_how = "mdb_txn_renew + mdb_get + copy + mdb_txn_reset per get "
	           "(env on /dev/shm)",
	.batch_how = "B gets in one renewed read transaction",
	.put_how = "one write transaction per put (WRITEMAP, NOSYNC)",
	.styles = "txn",
	.in_process = true,
	.open = l_open,
	.close = l_close,
	.flush = l_flush,
	.load = l_load,
	.get = l_get,
	.mget = l_mget,
	.put = l_put,
	.memory = l_memory,
	.memory_how = "pages in use: (last page number + 1) x page size",
	.errmsg = l_errmsg,
};
