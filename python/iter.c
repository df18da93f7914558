/*
 * iter.c - the keys of a store: Store.keys() and iter(Store), both over
 * kv_scan, the lock-free cursor over the index.
 *
 * A scan step runs without the GIL (it may meet a busy bucket and then
 * wait for, or recover, the writer lock), so the keys it visits are first
 * copied into a plain buffer and only turned into bytes objects once the
 * GIL is back. The iterator refills that buffer a few index slices at a
 * time, so iterating a store of any size holds only a few keys at once.
 * kv_scan's guarantee carries over: a key present for the whole iteration
 * is yielded exactly once; one added or removed meanwhile may or may not
 * be. Changing the store while iterating is allowed.
 */
#include "pykv.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A slice that a writer keeps busy is tried again for this long, as
 * "kv keys" does, before the scan gives up with KV_EBUSY. */
#define SCAN_BUSY_MS 1000

static int add_key(void *ctx, const void *key, size_t klen)
{
	pykv_keys *ks = ctx;
	size_t need = ks->used + sizeof klen + klen;

	if (ks->glob != NULL && !cli_glob_match(ks->glob, key, klen))
		return 0;
	if (need > ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 4096;
		while (cap < need)
			cap *= 2;
		char *b = realloc(ks->buf, cap);
		if (b == NULL) {
			ks->nomem = true;
			return 1; /* stop: positive, never a libkv status */
		}
		ks->buf = b;
		ks->cap = cap;
	}
	memcpy(ks->buf + ks->used, &klen, sizeof klen);
	memcpy(ks->buf + ks->used + sizeof klen, key, klen);
	ks->used = need;
	ks->nkeys++;
	return 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pykv_scan_step(kv_t *kv, uint64_t *cursor, size_t count, pykv_keys *ks)
{
	uint64_t busy_since = 0;

	for (;;) {
		int rc = kv_scan(kv, cursor, count, add_key, ks);
		if (rc > 0)
			return ks->nomem ? KV_ENOMEM : KV_OK;
		if (rc != KV_EBUSY)
			return rc;
		/* The cursor still names the busy slice: try it again. */
		if (busy_since == 0)
			busy_since = mono_ms();
		else if (mono_ms() - busy_since >= SCAN_BUSY_MS)
			return rc;
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
}

PyObject *pykv_keys_list(const pykv_keys *ks)
{
	PyObject *list = PyList_New((Py_ssize_t)ks->nkeys);
	size_t off = 0;

	if (list == NULL)
		return NULL;
	for (size_t i = 0; i < ks->nkeys; i++) {
		size_t klen;
		memcpy(&klen, ks->buf + off, sizeof klen);
		PyObject *k = PyBytes_FromStringAndSize(ks->buf + off + sizeof klen,
		                                        (Py_ssize_t)klen);
		if (k == NULL) {
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, (Py_ssize_t)i, k);
		off += sizeof klen + klen;
	}
	return list;
}

void pykv_keys_free(pykv_keys *ks)
{
	free(ks->buf);
	*ks = (pykv_keys){0};
}

/* --- the iterator ----------------------------------------------------------- */

/* Index slices per refill: a few keys each. */
#define ITER_SLICES 64

typedef struct {
	PyObject_HEAD
	pykv_store *store;
	uint64_t cursor;
	bool done;
	pykv_keys ks; /* keys of the last refill */
	size_t next;  /* offset of the next one to yield in ks.buf */
	size_t left;  /* keys not yet yielded */
} pykv_keyiter;

PyObject *pykv_keyiter_new(pykv_store *s)
{
	pykv_keyiter *it = PyObject_New(pykv_keyiter, &pykv_keyiter_type);
	if (it == NULL)
		return NULL;
	Py_INCREF(s);
	it->store = s;
	it->cursor = 0;
	it->done = false;
	it->ks = (pykv_keys){0};
	it->next = it->left = 0;
	return (PyObject *)it;
}

static void keyiter_dealloc(pykv_keyiter *it)
{
	pykv_keys_free(&it->ks);
	Py_XDECREF(it->store);
	PyObject_Free(it);
}

/* Scan on until some keys are in hand or the scan is complete. */
static int refill(pykv_keyiter *it)
{
	pykv_store *s = it->store;
	int rc = KV_OK;

	while (it->left == 0 && !it->done) {
		kv_t *kv = pykv_store_kv(s);
		if (kv == NULL)
			return -1;
		it->ks.used = it->ks.nkeys = 0;
		pykv_store_enter(s);
		Py_BEGIN_ALLOW_THREADS
		rc = pykv_scan_step(kv, &it->cursor, ITER_SLICES, &it->ks);
		Py_END_ALLOW_THREADS
		pykv_store_leave(s);
		if (rc != KV_OK) {
			pykv_error(rc, "iter");
			return -1;
		}
		it->next = 0;
		it->left = it->ks.nkeys;
		if (it->cursor == 0)
			it->done = true;
	}
	return 0;
}

static PyObject *keyiter_next(pykv_keyiter *it)
{
	size_t klen;

	if (it->left == 0 && refill(it) < 0)
		return NULL;
	if (it->left == 0)
		return NULL; /* StopIteration */
	memcpy(&klen, it->ks.buf + it->next, sizeof klen);
	PyObject *k = PyBytes_FromStringAndSize(
	    it->ks.buf + it->next + sizeof klen, (Py_ssize_t)klen);
	if (k == NULL)
		return NULL;
	it->next += sizeof klen + klen;
	it->left--;
	return k;
}

PyTypeObject pykv_keyiter_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kv.KeyIterator",
	.tp_basicsize = sizeof(pykv_keyiter),
	.tp_dealloc = (destructor)keyiter_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "An iterator over the keys of a Store (bytes), from a "
	          "lock-free scan.",
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)keyiter_next,
};
