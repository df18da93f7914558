/*
 * pykv.h - what the files of the Python extension module share: the Store
 * object, argument conversion and error raising. Private to python/.
 *
 * The module is a thin layer: every call converts its arguments, calls
 * libkv once (or a few times) and turns the status into a result or an
 * exception. What it adds is the bookkeeping a Python object needs:
 *
 *   - The GIL. Gets keep it: a lock-free read of a small value costs about
 *     as much as releasing and retaking the GIL, and waits only while a
 *     writer changes the very bucket it reads. Everything that may wait for
 *     the writer lock (put, delete, incr, flush, check, scans that meet a
 *     busy bucket) and gets of large values run without it.
 *   - Closing. A Store may be closed by one thread while another is inside
 *     a call that released the GIL. Such calls count themselves in
 *     `active`; close() then only detaches the handle from the object, and
 *     the last call to leave closes it (all under the GIL, so plain
 *     integers do).
 *   - fork(). A child inherits the mapping, and libkv's handle works there,
 *     but its reader-counter line belongs to the parent: sharing it would
 *     make both processes write one cache line on every get. So each call
 *     compares the handle's fork generation with the process's (one load;
 *     a pthread_atfork handler counts forks) and, on the first call in a
 *     child, attaches afresh and closes the inherited handle.
 */
#ifndef PYKV_H
#define PYKV_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/* The Store object. */
typedef struct {
	PyObject_HEAD
	kv_t *kv;           /* NULL once closed */
	kv_t *retired;      /* closed while calls ran without the GIL */
	char *name;         /* the store name, as libkv takes it */
	PyObject *name_obj; /* ... and as given (str), for .name and repr */
	unsigned flags;     /* KV_RDONLY or KV_RDWR */
	unsigned long gen;  /* pykv_fork_gen when kv was attached */
	Py_ssize_t active;  /* calls inside libkv without the GIL */
	PyObject *weakrefs;
} pykv_store;

extern PyTypeObject pykv_store_type;
extern PyTypeObject pykv_keyiter_type;

/* Forks this process has gone through (module.c's atfork handler). */
extern volatile unsigned long pykv_fork_gen;

kv_t *pykv_store_reattach(pykv_store *s);

/* The handle for a call, or NULL with an exception set (closed store, or
 * a failed re-attach after fork). */
static inline kv_t *pykv_store_kv(pykv_store *s)
{
	if (__builtin_expect(s->kv == NULL, 0)) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed store");
		return NULL;
	}
	if (__builtin_expect(s->gen != pykv_fork_gen, 0))
		return pykv_store_reattach(s);
	return s->kv;
}

/* Around a call made without the GIL: enter before
 * Py_BEGIN_ALLOW_THREADS, leave after Py_END_ALLOW_THREADS. */
static inline void pykv_store_enter(pykv_store *s)
{
	s->active++;
}
void pykv_store_leave(pykv_store *s);

/* A key or value as bytes: bytes, bytearray, memoryview (through the
 * buffer protocol, which also keeps a bytearray from being resized while
 * the GIL is released) or str (its UTF-8 form, cached by the str). */
typedef struct {
	const char *p;
	Py_ssize_t n;
	Py_buffer view; /* view.obj != NULL when a buffer is held */
} pykv_bytes;

/* Fill *b from o, or set TypeError (what: "key", "value") and return -1.
 * The bytes stay valid while o lives and until pykv_bytes_release. */
int pykv_bytes_slow(PyObject *o, pykv_bytes *b, const char *what);

static inline int pykv_bytes_get(PyObject *o, pykv_bytes *b, const char *what)
{
	b->view.obj = NULL;
	if (PyBytes_CheckExact(o)) {
		b->p = PyBytes_AS_STRING(o);
		b->n = PyBytes_GET_SIZE(o);
		return 0;
	}
	return pykv_bytes_slow(o, b, what);
}

static inline void pykv_bytes_release(pykv_bytes *b)
{
	if (b->view.obj != NULL)
		PyBuffer_Release(&b->view);
}

/* A TTL in seconds (int or float, > 0; None: none) as milliseconds,
 * rounded up so that a short TTL never becomes "no expiry". Returns 0 or
 * -1 with TypeError / ValueError / OverflowError set. */
int pykv_ttl_ms(PyObject *o, uint64_t *ms);

/* Keyword and positional arguments of a METH_FASTCALL | METH_KEYWORDS
 * call: names[0..nnames) in order, the first maxpos of which may be given
 * by position, the first nreq of which are required. out[] receives
 * borrowed references, NULL for those not given. */
int pykv_parse(const char *fname, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, const char *const *names, int nnames,
               int maxpos, int nreq, PyObject **out);

/* Raise the exception for status code rc (< 0), with the message
 * "what: <kv_strerror(rc)>". Always returns NULL. */
PyObject *pykv_error(int rc, const char *what);

/* A value of vlen bytes at least, read in full into a new bytes object:
 * the first try goes to a stack buffer (no allocation but the result);
 * a value that does not fit is read again straight into a bytes object of
 * its size, without the GIL when it is large. *rc is the status; on
 * KV_OK the result is returned, otherwise NULL (with an exception set
 * only when one was raised here, i.e. for memory). */
PyObject *pykv_get_value(pykv_store *s, kv_t *kv, const char *k, size_t kl,
                         uint64_t *version, int *rc);

/* The glob matcher of the kv command (cli/glob.c). */
bool cli_glob_match(const char *pat, const void *s, size_t n);

/* Keys collected by a scan, outside the GIL (iter.c). */
typedef struct {
	char *buf;        /* (size_t length, bytes) records */
	size_t used, cap;
	size_t nkeys;
	const char *glob; /* keep only matching keys; NULL: all */
	bool nomem;
} pykv_keys;

/* One kv_scan call of up to count slices into *ks, with the bounded wait
 * for a busy slice that "kv keys" has. Call without the GIL. */
int pykv_scan_step(kv_t *kv, uint64_t *cursor, size_t count, pykv_keys *ks);
/* The keys of *ks as a new list of bytes. */
PyObject *pykv_keys_list(const pykv_keys *ks);
void pykv_keys_free(pykv_keys *ks);
PyObject *pykv_keyiter_new(pykv_store *s);

#endif /* PYKV_H */
