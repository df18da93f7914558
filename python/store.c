/*
 * store.c - kv.Store: attaching and detaching, the mapping protocol, and
 * one method per libkv call.
 *
 * The read path is the one to keep short: s[k] and s.get(k) convert the
 * key without allocating (bytes and str point at their own bytes), call
 * kv_get into a stack buffer and make the one bytes object the caller
 * gets. Everything else may take the writer lock, so it runs without the
 * GIL (see pykv.h for the bookkeeping that makes that safe).
 */
#include "pykv.h"
#include "size.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A value up to this size is read into the stack first; a larger one is
 * read again straight into its bytes object. */
#define STACK_VALUE 4096
/* Values from this size on are copied out without the GIL. */
#define NOGIL_VALUE (64 * 1024)

static inline int get_call(kv_t *kv, const char *k, size_t kl, char *buf,
                           size_t cap, size_t *vlen, uint64_t *version)
{
	if (version != NULL)
		return kv_get_version(kv, k, kl, buf, cap, vlen, version);
	return kv_get(kv, k, kl, buf, cap, vlen);
}

PyObject *pykv_get_value(pykv_store *s, kv_t *kv, const char *k, size_t kl,
                         uint64_t *version, int *rcp)
{
	char stack[STACK_VALUE];
	size_t vlen = 0;
	int rc = get_call(kv, k, kl, stack, sizeof stack, &vlen, version);

	if (rc == KV_OK) {
		*rcp = rc;
		return PyBytes_FromStringAndSize(stack, (Py_ssize_t)vlen);
	}
	/* Too large for the stack: read it into a bytes object of its size.
	 * A writer may grow it in between; then KV_ERANGE again gives the
	 * new size. */
	while (rc == KV_ERANGE) {
		size_t cap = vlen;
		PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);

		if (b == NULL) {
			*rcp = KV_ENOMEM;
			return NULL;
		}
		char *buf = PyBytes_AS_STRING(b);
		if (cap >= NOGIL_VALUE) {
			pykv_store_enter(s);
			Py_BEGIN_ALLOW_THREADS
			rc = get_call(kv, k, kl, buf, cap, &vlen, version);
			Py_END_ALLOW_THREADS
			pykv_store_leave(s);
		} else {
			rc = get_call(kv, k, kl, buf, cap, &vlen, version);
		}
		if (rc == KV_OK) {
			if (vlen != cap && _PyBytes_Resize(&b, (Py_ssize_t)vlen) < 0) {
				*rcp = KV_ENOMEM;
				return NULL;
			}
			*rcp = rc;
			return b;
		}
		Py_DECREF(b);
	}
	*rcp = rc;
	return NULL;
}

/* --- attaching, closing, fork -------------------------------------------- */

void pykv_store_leave(pykv_store *s)
{
	if (--s->active == 0 && s->retired != NULL) {
		kv_t *r = s->retired;
		s->retired = NULL;
		kv_close(r);
	}
}

kv_t *pykv_store_reattach(pykv_store *s)
{
	kv_t *nkv = NULL;
	int rc;

	/* First call in a forked child. Every call comes through here first,
	 * and this runs with the GIL held throughout (kv_open is quick), so
	 * no thread of the child can be using the inherited handles: the
	 * threads counted in `active` were the parent's. If the store cannot
	 * be attached again, the inherited handle goes on working. */
	rc = kv_open(s->name, s->flags, &nkv);
	s->gen = pykv_fork_gen;
	s->active = 0;
	kv_close(s->retired);
	s->retired = NULL;
	if (rc != KV_OK)
		return s->kv;
	kv_close(s->kv);
	s->kv = nkv;
	return nkv;
}

static void store_detach(pykv_store *s)
{
	kv_t *kv = s->kv;

	s->kv = NULL;
	if (kv == NULL)
		return;
	if (s->gen != pykv_fork_gen) {
		/* Inherited across fork(), never used here: nobody in this
		 * process is inside a call with them. */
		kv_close(s->retired);
		s->retired = NULL;
		s->active = 0;
		kv_close(kv);
	} else if (s->active > 0) {
		s->retired = kv; /* closed by the last call to leave */
	} else {
		kv_close(kv);
	}
}

/* Set s->name and s->name_obj from a name argument (None: $KV_STORE,
 * else "default"). */
static int store_set_name(pykv_store *s, PyObject *name)
{
	PyObject *b = NULL;

	if (name == NULL || name == Py_None) {
		const char *env = getenv("KV_STORE");
		b = PyBytes_FromString(env != NULL && env[0] != '\0' ? env
		                                                     : "default");
		if (b == NULL)
			return -1;
	} else if (!PyUnicode_FSConverter(name, &b)) {
		return -1;
	}
	char *c = strdup(PyBytes_AS_STRING(b));
	PyObject *str = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(b),
	                                                 PyBytes_GET_SIZE(b));
	Py_DECREF(b);
	if (c == NULL || str == NULL) {
		free(c);
		Py_XDECREF(str);
		if (!PyErr_Occurred())
			PyErr_NoMemory();
		return -1;
	}
	free(s->name);
	s->name = c;
	Py_XSETREF(s->name_obj, str);
	return 0;
}

/* Attach s (already named) by kv_open, or by kv_create when opts is not
 * NULL. */
static int store_attach(pykv_store *s, unsigned flags,
                        const struct kv_options *opts)
{
	kv_t *kv = NULL;
	int rc;

	Py_BEGIN_ALLOW_THREADS
	if (opts != NULL)
		rc = kv_create(s->name, opts, &kv);
	else
		rc = kv_open(s->name, flags, &kv);
	Py_END_ALLOW_THREADS
	if (rc != KV_OK) {
		PyObject *what = PyUnicode_FromFormat("store %R", s->name_obj);
		if (what != NULL) {
			const char *w = PyUnicode_AsUTF8(what);
			if (w != NULL)
				pykv_error(rc, w);
			Py_DECREF(what);
		}
		return -1;
	}
	/* Another thread may have run __init__ on this object meanwhile. */
	store_detach(s);
	s->kv = kv;
	s->flags = opts != NULL ? KV_RDWR : flags;
	s->gen = pykv_fork_gen;
	return 0;
}

static int store_init(pykv_store *s, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"name", "readonly", NULL};
	PyObject *name = Py_None;
	int readonly = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$p:Store", kwlist,
	                                 &name, &readonly))
		return -1;
	if (s->active > 0) {
		PyErr_SetString(PyExc_RuntimeError,
		                "Store.__init__ on a store in use by another "
		                "thread");
		return -1;
	}
	store_detach(s);
	if (store_set_name(s, name) < 0)
		return -1;
	return store_attach(s, readonly ? KV_RDONLY : KV_RDWR, NULL);
}

static void store_dealloc(pykv_store *s)
{
	if (s->weakrefs != NULL)
		PyObject_ClearWeakRefs((PyObject *)s);
	kv_close(s->kv);
	kv_close(s->retired);
	free(s->name);
	Py_XDECREF(s->name_obj);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

/* "64M", "4G", "512KiB", "4096": kvd's --size syntax (cli/size.c). -1
 * junk, -2 too large; 0 is returned as a size for the caller to refuse. */
static int parse_size_str(const char *p, uint64_t *out)
{
	const char *why;
	int r = kv_size_parse(p, out, &why);
	if (r == -1 && strcmp(why, "must be greater than zero") == 0) {
		*out = 0;
		return 0;
	}
	return r;
}

/* A size argument: a positive int, or a str in kvd's syntax. */
static int parse_size(PyObject *o, const char *what, uint64_t max,
                      uint64_t *out)
{
	uint64_t v = 0;

	if (PyLong_Check(o)) {
		int overflow;
		long long n = PyLong_AsLongLongAndOverflow(o, &overflow);
		if (n == -1 && PyErr_Occurred())
			return -1;
		if (overflow > 0)
			goto too_large;
		if (overflow < 0 || n <= 0)
			goto zero;
		v = (uint64_t)n;
	} else if (PyUnicode_Check(o)) {
		Py_ssize_t len;
		const char *str = PyUnicode_AsUTF8AndSize(o, &len);
		if (str == NULL)
			return -1;
		int r = strlen(str) == (size_t)len ? parse_size_str(str, &v)
		                                   : -1;
		if (r == -2)
			goto too_large;
		if (r < 0) {
			PyErr_Format(PyExc_ValueError,
			             "%s: not a size (use bytes or a suffix: "
			             "64M, 4G, 512KiB): %R", what, o);
			return -1;
		}
		if (v == 0)
			goto zero;
	} else {
		PyErr_Format(PyExc_TypeError,
		             "%s must be an int or a str such as \"64M\", not "
		             "%.100s", what, Py_TYPE(o)->tp_name);
		return -1;
	}
	if (v > max)
		goto too_large;
	*out = v;
	return 0;
zero:
	PyErr_Format(PyExc_ValueError, "%s must be greater than 0", what);
	return -1;
too_large:
	PyErr_Format(PyExc_OverflowError, "%s is too large", what);
	return -1;
}

PyDoc_STRVAR(create_doc,
"create($type, /, name, *, size=\"64M\", max_value=None)\n"
"--\n"
"\n"
"Create the store NAME (None: $KV_STORE, else \"default\"), or adopt it\n"
"with its data if a compatible one exists, and attach to it read-write.\n"
"size is the whole mapping (an int of bytes, or \"64M\", \"4G\",\n"
"\"512KiB\"), reserved up front; max_value the largest value it will\n"
"accept (default size/16, at least 1M; at most 1G). Both apply\n"
"only when the store is created. A name with a '/' is a file-backed\n"
"store at that path.");

static PyObject *store_create(PyObject *cls, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"name", "size", "max_value", NULL};
	PyObject *name, *size = NULL, *maxv = Py_None;
	struct kv_options o = {0};

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OO:create", kwlist,
	                                 &name, &size, &maxv))
		return NULL;
	if (size == NULL)
		o.size = 64u << 20;
	else if (parse_size(size, "size", UINT64_MAX, &o.size) < 0)
		return NULL;
	if (maxv != Py_None) {
		uint64_t mv;
		if (parse_size(maxv, "max_value", UINT32_MAX, &mv) < 0)
			return NULL;
		o.max_value = (uint32_t)mv;
	}
	PyTypeObject *type = (PyTypeObject *)cls;
	pykv_store *s = (pykv_store *)type->tp_alloc(type, 0);
	if (s == NULL)
		return NULL;
	if (store_set_name(s, name) < 0 || store_attach(s, KV_RDWR, &o) < 0) {
		Py_DECREF(s);
		return NULL;
	}
	return (PyObject *)s;
}

PyDoc_STRVAR(close_doc,
"close($self, /)\n"
"--\n"
"\n"
"Detach from the store (which stays, with its data). Calls on a closed\n"
"Store raise ValueError; closing again does nothing. A call another\n"
"thread is still making finishes first.");

static PyObject *store_close(pykv_store *s, PyObject *unused)
{
	(void)unused;
	store_detach(s);
	Py_RETURN_NONE;
}

static PyObject *store_enter_ctx(pykv_store *s, PyObject *unused)
{
	(void)unused;
	if (pykv_store_kv(s) == NULL)
		return NULL;
	Py_INCREF(s);
	return (PyObject *)s;
}

static PyObject *store_exit_ctx(pykv_store *s, PyObject *args)
{
	(void)args;
	store_detach(s);
	Py_RETURN_FALSE;
}

/* --- reads ------------------------------------------------------------------ */

static PyObject *raise_keyerror(PyObject *key)
{
	PyObject *t = PyTuple_Pack(1, key);
	if (t != NULL) {
		PyErr_SetObject(PyExc_KeyError, t);
		Py_DECREF(t);
	}
	return NULL;
}

static PyObject *store_subscript(pykv_store *s, PyObject *key)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k;
	int rc;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return NULL;
	PyObject *v = pykv_get_value(s, kv, k.p, (size_t)k.n, NULL, &rc);
	pykv_bytes_release(&k);
	if (v != NULL || PyErr_Occurred())
		return v;
	if (rc == KV_ENOTFOUND)
		return raise_keyerror(key);
	return pykv_error(rc, "get");
}

PyDoc_STRVAR(get_doc,
"get($self, /, key, default=None)\n"
"--\n"
"\n"
"The value of key, as bytes, or default when the key is absent (or\n"
"expired). "
"A lock-free read of the shared memory: no system call, no lock.");

static PyObject *store_get(pykv_store *s, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"key", "default"};
	PyObject *a[2];
	pykv_bytes k;
	int rc;

	if (kwnames == NULL && nargs == 1) {
		a[0] = args[0];
		a[1] = NULL;
	} else if (pykv_parse("get", args, nargs, kwnames, names, 2, 2, 1,
	                      a) < 0) {
		return NULL;
	}
	kv_t *kv = pykv_store_kv(s);
	if (kv == NULL || pykv_bytes_get(a[0], &k, "key") < 0)
		return NULL;
	PyObject *v = pykv_get_value(s, kv, k.p, (size_t)k.n, NULL, &rc);
	pykv_bytes_release(&k);
	if (v != NULL || PyErr_Occurred())
		return v;
	if (rc == KV_ENOTFOUND) {
		v = a[1] != NULL ? a[1] : Py_None;
		Py_INCREF(v);
		return v;
	}
	return pykv_error(rc, "get");
}

static int store_contains(pykv_store *s, PyObject *key)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k;
	size_t vlen;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return -1;
	int rc = kv_get(kv, k.p, (size_t)k.n, NULL, 0, &vlen);
	pykv_bytes_release(&k);
	if (rc == KV_OK || rc == KV_ERANGE)
		return 1;
	if (rc == KV_ENOTFOUND)
		return 0;
	pykv_error(rc, "in");
	return -1;
}

PyDoc_STRVAR(gets_doc,
"gets($self, key, /)\n"
"--\n"
"\n"
"(value, version): the value of key and its version, an int that changes\n"
"with every put of the key: give it to cas() to write only if nobody\n"
"wrote in between.\n"
"KeyError when the key is absent.");

static PyObject *store_gets(pykv_store *s, PyObject *key)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k;
	uint64_t version = 0;
	int rc;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return NULL;
	PyObject *v = pykv_get_value(s, kv, k.p, (size_t)k.n, &version, &rc);
	pykv_bytes_release(&k);
	if (v == NULL) {
		if (PyErr_Occurred())
			return NULL;
		if (rc == KV_ENOTFOUND)
			return raise_keyerror(key);
		return pykv_error(rc, "gets");
	}
	PyObject *r = Py_BuildValue("(NK)", v, (unsigned long long)version);
	return r;
}

PyDoc_STRVAR(ttl_doc,
"ttl($self, key, /)\n"
"--\n"
"\n"
"Seconds the key has left to live (a float, to the millisecond), or None\n"
"when it never expires. KeyError when the key is absent.");

static PyObject *store_ttl(pykv_store *s, PyObject *key)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k;
	int64_t ms = 0;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return NULL;
	int rc = kv_ttl(kv, k.p, (size_t)k.n, &ms);
	pykv_bytes_release(&k);
	if (rc == KV_ENOTFOUND)
		return raise_keyerror(key);
	if (rc != KV_OK)
		return pykv_error(rc, "ttl");
	if (ms < 0)
		Py_RETURN_NONE;
	return PyFloat_FromDouble((double)ms / 1000.0);
}

/* Keys of a get_many result: the key as given when it is hashable as is
 * (bytes, str), else its bytes. */
static PyObject *result_key(PyObject *key, const pykv_bytes *k)
{
	if (PyBytes_Check(key) || PyUnicode_Check(key)) {
		Py_INCREF(key);
		return key;
	}
	return PyBytes_FromStringAndSize(k->p, k->n);
}

/* Keys per kv_mget call, and the stack room each gets for its value. */
#define MGET_CHUNK 32
#define MGET_SLOT 512

/* The entries of a kv_mget batch that did not fit their slot (KV_ERANGE)
 * and are smaller than NOGIL_VALUE: read them again in a second batch,
 * each straight into a bytes object of its size, so that their misses
 * overlap too. big[j] receives entry j's value, v[j].status its new
 * status; an entry that changed size again keeps KV_ERANGE and is read on
 * its own later. Returns 0, or -1 with MemoryError. */
static int mget_large(kv_t *kv, struct kv_getv *v, Py_ssize_t m,
                      PyObject **big)
{
	struct kv_getv w[MGET_CHUNK];
	Py_ssize_t at[MGET_CHUNK], n = 0;

	for (Py_ssize_t j = 0; j < m; j++) {
		if (v[j].status != KV_ERANGE || v[j].vlen >= NOGIL_VALUE)
			continue;
		big[j] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)v[j].vlen);
		if (big[j] == NULL)
			return -1;
		w[n] = (struct kv_getv){.key = v[j].key, .klen = v[j].klen,
		                        .buf = PyBytes_AS_STRING(big[j]),
		                        .cap = v[j].vlen};
		at[n++] = j;
	}
	if (n == 0)
		return 0;
	if (kv_mget(kv, w, (size_t)n) != KV_OK) {
		for (Py_ssize_t k = 0; k < n; k++)
			Py_CLEAR(big[at[k]]);
		return 0; /* each is read on its own */
	}
	for (Py_ssize_t k = 0; k < n; k++) {
		Py_ssize_t j = at[k];
		v[j].status = w[k].status;
		v[j].vlen = w[k].vlen;
		if (w[k].status != KV_OK) {
			Py_CLEAR(big[j]);
		} else if (w[k].vlen != w[k].cap &&
		           _PyBytes_Resize(&big[j], (Py_ssize_t)w[k].vlen) < 0) {
			return -1;
		}
	}
	return 0;
}

PyDoc_STRVAR(get_many_doc,
"get_many($self, keys, /)\n"
"--\n"
"\n"
"Get many keys at once: a dict of the keys that were found and their\n"
"values. The lookups are batched (kv_mget), so their memory misses\n"
"overlap: much faster than a loop of get() on a large store. Keys of the\n"
"dict are the keys as given; bytearray and memoryview keys come back as\n"
"bytes.");

static PyObject *store_get_many(pykv_store *s, PyObject *keys)
{
	struct kv_getv v[MGET_CHUNK];
	pykv_bytes kb[MGET_CHUNK];
	PyObject *big[MGET_CHUNK] = {NULL};
	PyObject *seq = NULL, *out = NULL;
	char *scratch = NULL;
	Py_ssize_t n, i, held = 0;
	kv_t *kv;

	if (PyUnicode_Check(keys) || PyBytes_Check(keys) ||
	    PyByteArray_Check(keys) || PyMemoryView_Check(keys)) {
		PyErr_SetString(PyExc_TypeError,
		                "get_many() takes an iterable of keys, not a "
		                "single key");
		return NULL;
	}
	/* A tuple of our own: nothing can change it under us. */
	if ((seq = PySequence_Tuple(keys)) == NULL)
		return NULL;
	/* Held from here on: inserting into the result may run a key's
	 * __hash__, which could close the store; the close then waits for
	 * this call to leave. */
	if ((kv = pykv_store_kv(s)) == NULL) {
		Py_DECREF(seq);
		return NULL;
	}
	pykv_store_enter(s);
	n = PyTuple_GET_SIZE(seq);
	if ((out = PyDict_New()) == NULL)
		goto fail;
	if (n > 0 && (scratch = malloc(MGET_CHUNK * MGET_SLOT)) == NULL) {
		PyErr_NoMemory();
		goto fail;
	}
	for (i = 0; i < n; i += MGET_CHUNK) {
		Py_ssize_t m = n - i < MGET_CHUNK ? n - i : MGET_CHUNK;

		for (held = 0; held < m; held++) {
			PyObject *key = PyTuple_GET_ITEM(seq, i + held);
			if (pykv_bytes_get(key, &kb[held], "key") < 0)
				goto fail;
			v[held] = (struct kv_getv){
			    .key = kb[held].p, .klen = (size_t)kb[held].n,
			    .buf = scratch + held * MGET_SLOT, .cap = MGET_SLOT};
		}
		int rc = kv_mget(kv, v, (size_t)m);
		if (rc != KV_OK) {
			pykv_error(rc, "get_many");
			goto fail;
		}
		if (mget_large(kv, v, m, big) < 0)
			goto fail;
		for (Py_ssize_t j = 0; j < m; j++) {
			PyObject *val, *key;

			rc = v[j].status;
			if (rc == KV_ENOTFOUND)
				continue;
			if (big[j] != NULL) {
				val = big[j];
				big[j] = NULL;
			} else if (rc == KV_OK) {
				val = PyBytes_FromStringAndSize(
				    v[j].buf, (Py_ssize_t)v[j].vlen);
			} else if (rc == KV_ERANGE) {
				val = pykv_get_value(s, kv, v[j].key,
				                     v[j].klen, NULL, &rc);
			} else {
				val = NULL;
			}
			if (val == NULL) {
				if (PyErr_Occurred())
					goto fail;
				if (rc == KV_ENOTFOUND) /* gone meanwhile */
					continue;
				pykv_error(rc, "get_many");
				goto fail;
			}
			key = result_key(PyTuple_GET_ITEM(seq, i + j), &kb[j]);
			if (key == NULL || PyDict_SetItem(out, key, val) < 0) {
				Py_XDECREF(key);
				Py_DECREF(val);
				goto fail;
			}
			Py_DECREF(key);
			Py_DECREF(val);
		}
		while (held > 0)
			pykv_bytes_release(&kb[--held]);
	}
	free(scratch);
	Py_DECREF(seq);
	pykv_store_leave(s);
	return out;
fail:
	for (Py_ssize_t j = 0; j < MGET_CHUNK; j++)
		Py_XDECREF(big[j]);
	while (held > 0)
		pykv_bytes_release(&kb[--held]);
	free(scratch);
	Py_DECREF(seq);
	Py_XDECREF(out);
	pykv_store_leave(s);
	return NULL;
}

/* --- writes ------------------------------------------------------------------ */

/* Put key = val with opts, without the GIL. Returns Py_True (stored),
 * Py_False (a condition failed: nx, xx, cas) or NULL with an exception. */
static PyObject *put(pykv_store *s, PyObject *key, PyObject *val,
                     const struct kv_put_opts *o, const char *what)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k, v;
	int rc;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return NULL;
	if (pykv_bytes_get(val, &v, "value") < 0) {
		pykv_bytes_release(&k);
		return NULL;
	}
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_put(kv, k.p, (size_t)k.n, v.p, (size_t)v.n, o);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	pykv_bytes_release(&v);
	pykv_bytes_release(&k);
	switch (rc) {
	case KV_OK:
		Py_RETURN_TRUE;
	case KV_EEXIST:
	case KV_ECHANGED:
		Py_RETURN_FALSE;
	case KV_ENOTFOUND:
		if (o != NULL && (o->flags & (KV_PUT_XX | KV_PUT_CAS)))
			Py_RETURN_FALSE;
		/* fall through */
	default:
		return pykv_error(rc, what);
	}
}

/* Delete key without the GIL: KV_OK, KV_ENOTFOUND, or an error raised
 * (returned as another status, with the exception set). */
static int del(pykv_store *s, PyObject *key, const char *what)
{
	kv_t *kv = pykv_store_kv(s);
	pykv_bytes k;
	int rc;

	if (kv == NULL || pykv_bytes_get(key, &k, "key") < 0)
		return KV_EINVAL;
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_del(kv, k.p, (size_t)k.n);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	pykv_bytes_release(&k);
	if (rc != KV_OK && rc != KV_ENOTFOUND)
		pykv_error(rc, what);
	return rc;
}

static int store_ass_subscript(pykv_store *s, PyObject *key, PyObject *val)
{
	if (val == NULL) {
		int rc = del(s, key, "del");
		if (rc == KV_ENOTFOUND)
			raise_keyerror(key);
		return rc == KV_OK ? 0 : -1;
	}
	PyObject *r = put(s, key, val, NULL, "set");
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

PyDoc_STRVAR(set_doc,
"set($self, /, key, value, *, ttl=None, nx=False, xx=False)\n"
"--\n"
"\n"
"Put value under key, replacing what was there. ttl: seconds to live\n"
"(int or float, > 0), None for no expiry. nx: only if the key is absent;\n"
"xx: only if it is present. Returns whether it stored (False only when\n"
"nx or xx said no).");

static PyObject *store_set(pykv_store *s, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"key", "value", "ttl", "nx", "xx"};
	PyObject *a[5];
	struct kv_put_opts o = {0};

	if (pykv_parse("set", args, nargs, kwnames, names, 5, 2, 2, a) < 0)
		return NULL;
	if (pykv_ttl_ms(a[2], &o.ttl_ms) < 0)
		return NULL;
	for (int i = 3; i < 5; i++) {
		int t = a[i] != NULL ? PyObject_IsTrue(a[i]) : 0;
		if (t < 0)
			return NULL;
		if (t)
			o.flags |= i == 3 ? KV_PUT_NX : KV_PUT_XX;
	}
	if (o.flags == (KV_PUT_NX | KV_PUT_XX)) {
		PyErr_SetString(PyExc_ValueError,
		                "set(): nx and xx cannot both be true");
		return NULL;
	}
	return put(s, a[0], a[1], &o, "set");
}

PyDoc_STRVAR(cas_doc,
"cas($self, /, key, value, version, *, ttl=None)\n"
"--\n"
"\n"
"Compare and swap: put value under key only if the key's version is still\n"
"version (from gets()). Returns False, storing nothing, when the key was\n"
"written or deleted since.");

static PyObject *store_cas(pykv_store *s, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"key", "value", "version", "ttl"};
	PyObject *a[4];
	struct kv_put_opts o = {.flags = KV_PUT_CAS};

	if (pykv_parse("cas", args, nargs, kwnames, names, 4, 3, 3, a) < 0)
		return NULL;
	if (!PyLong_Check(a[2])) {
		PyErr_Format(PyExc_TypeError, "version must be an int, not %.100s",
		             Py_TYPE(a[2])->tp_name);
		return NULL;
	}
	unsigned long long ver = PyLong_AsUnsignedLongLong(a[2]);
	if (ver == (unsigned long long)-1 && PyErr_Occurred())
		return NULL;
	o.cas = ver;
	if (pykv_ttl_ms(a[3], &o.ttl_ms) < 0)
		return NULL;
	return put(s, a[0], a[1], &o, "cas");
}

PyDoc_STRVAR(delete_doc,
"delete($self, key, /)\n"
"--\n"
"\n"
"Remove key. Returns whether it existed (del s[key] raises KeyError\n"
"instead).");

static PyObject *store_delete(pykv_store *s, PyObject *key)
{
	int rc = del(s, key, "delete");
	if (rc == KV_OK)
		Py_RETURN_TRUE;
	if (rc == KV_ENOTFOUND)
		Py_RETURN_FALSE;
	return NULL;
}

static PyObject *incr(pykv_store *s, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *what, bool negate)
{
	static const char *const names[] = {"key", "delta"};
	PyObject *a[2];
	long long delta = 1;
	int64_t result = 0;
	pykv_bytes k;
	int rc;

	if (pykv_parse(what, args, nargs, kwnames, names, 2, 2, 1, a) < 0)
		return NULL;
	if (a[1] != NULL) {
		if (!PyLong_Check(a[1])) {
			PyErr_Format(PyExc_TypeError,
			             "delta must be an int, not %.100s",
			             Py_TYPE(a[1])->tp_name);
			return NULL;
		}
		delta = PyLong_AsLongLong(a[1]);
		if (delta == -1 && PyErr_Occurred())
			return NULL;
	}
	if (negate) {
		if (delta == INT64_MIN) {
			PyErr_SetString(PyExc_OverflowError,
			                "decr(): delta is too large");
			return NULL;
		}
		delta = -delta;
	}
	kv_t *kv = pykv_store_kv(s);
	if (kv == NULL || pykv_bytes_get(a[0], &k, "key") < 0)
		return NULL;
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_incr(kv, k.p, (size_t)k.n, (int64_t)delta, &result);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	pykv_bytes_release(&k);
	if (rc != KV_OK)
		return pykv_error(rc, what);
	return PyLong_FromLongLong((long long)result);
}

PyDoc_STRVAR(incr_doc,
"incr($self, /, key, delta=1)\n"
"--\n"
"\n"
"Add delta to the decimal integer stored under key (an absent key counts\n"
"as 0), atomically with respect to every other writer; keeps the key's\n"
"TTL. Returns the new value. kv.Error (KV_ENOTNUM) if the value is not an\n"
"integer, (KV_EOVERFLOW) if the result would not fit in 64 bits.");

static PyObject *store_incr(pykv_store *s, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
	return incr(s, args, nargs, kwnames, "incr", false);
}

PyDoc_STRVAR(decr_doc,
"decr($self, /, key, delta=1)\n"
"--\n"
"\n"
"Subtract delta from the integer stored under key: incr(key, -delta).");

static PyObject *store_decr(pykv_store *s, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
	return incr(s, args, nargs, kwnames, "decr", true);
}

/* A list of our own, of (key, value) pairs, from what set_many takes (as
 * dict.update does: a dict, an object with keys() and [], or pairs), so
 * that nothing can change it under us. */
static PyObject *pairs_of(PyObject *m)
{
	if (PyDict_Check(m))
		return PyDict_Items(m);
	if (!PyObject_HasAttrString(m, "keys"))
		return PySequence_List(m);
	PyObject *keys = PyMapping_Keys(m);
	if (keys == NULL)
		return NULL;
	Py_ssize_t n = PyList_GET_SIZE(keys);
	PyObject *pairs = PyList_New(n);
	for (Py_ssize_t i = 0; pairs != NULL && i < n; i++) {
		PyObject *k = PyList_GET_ITEM(keys, i);
		PyObject *v = PyObject_GetItem(m, k);
		PyObject *p = v != NULL ? PyTuple_Pack(2, k, v) : NULL;
		Py_XDECREF(v);
		if (p == NULL)
			Py_CLEAR(pairs);
		else
			PyList_SET_ITEM(pairs, i, p);
	}
	Py_DECREF(keys);
	return pairs;
}

/* Items put per release of the GIL by set_many. */
#define SET_CHUNK 64

PyDoc_STRVAR(set_many_doc,
"set_many($self, /, mapping, *, ttl=None)\n"
"--\n"
"\n"
"Put every key and value of mapping (a dict, any mapping, or an iterable\n"
"of (key, value) pairs), all with the same ttl. Each put is atomic on its\n"
"own; on an error the puts before it stay done.");

static PyObject *store_set_many(pykv_store *s, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"mapping", "ttl"};
	PyObject *a[2], *pairs = NULL;
	PyObject *hold[SET_CHUNK];
	pykv_bytes kb[SET_CHUNK], vb[SET_CHUNK];
	struct kv_put_opts o = {0};
	Py_ssize_t n, i, held = 0, conv = 0;
	int rc = KV_OK;

	if (pykv_parse("set_many", args, nargs, kwnames, names, 2, 1, 1, a) < 0)
		return NULL;
	if (pykv_ttl_ms(a[1], &o.ttl_ms) < 0)
		return NULL;
	if (pykv_store_kv(s) == NULL)
		return NULL;
	if ((pairs = pairs_of(a[0])) == NULL)
		return NULL;
	n = PyList_GET_SIZE(pairs);
	for (i = 0; i < n && rc == KV_OK; i += SET_CHUNK) {
		Py_ssize_t m = n - i < SET_CHUNK ? n - i : SET_CHUNK, done = 0;

		for (held = conv = 0; conv < m; conv++) {
			PyObject *p = PySequence_Tuple(PyList_GET_ITEM(pairs,
			                                               i + conv));
			if (p == NULL)
				goto fail;
			hold[held++] = p;
			if (PyTuple_GET_SIZE(p) != 2) {
				PyErr_SetString(PyExc_ValueError,
				                "set_many(): items must be "
				                "(key, value) pairs");
				goto fail;
			}
			if (pykv_bytes_get(PyTuple_GET_ITEM(p, 0), &kb[conv],
			                   "key") < 0)
				goto fail;
			if (pykv_bytes_get(PyTuple_GET_ITEM(p, 1), &vb[conv],
			                   "value") < 0) {
				pykv_bytes_release(&kb[conv]);
				goto fail;
			}
		}
		/* Taken only now: making the pairs may run Python code, which
		 * could close the store. */
		kv_t *kv = pykv_store_kv(s);
		if (kv == NULL)
			goto fail;
		pykv_store_enter(s);
		Py_BEGIN_ALLOW_THREADS
		for (done = 0; done < m; done++) {
			rc = kv_put(kv, kb[done].p, (size_t)kb[done].n,
			            vb[done].p, (size_t)vb[done].n, &o);
			if (rc != KV_OK)
				break;
		}
		Py_END_ALLOW_THREADS
		pykv_store_leave(s);
		while (conv > 0) {
			conv--;
			pykv_bytes_release(&vb[conv]);
			pykv_bytes_release(&kb[conv]);
		}
		while (held > 0)
			Py_DECREF(hold[--held]);
	}
	Py_DECREF(pairs);
	if (rc != KV_OK)
		return pykv_error(rc, "set_many");
	Py_RETURN_NONE;
fail:
	while (conv > 0) {
		conv--;
		pykv_bytes_release(&vb[conv]);
		pykv_bytes_release(&kb[conv]);
	}
	while (held > 0)
		Py_DECREF(hold[--held]);
	Py_DECREF(pairs);
	return NULL;
}

PyDoc_STRVAR(flush_doc,
"flush($self, /)\n"
"--\n"
"\n"
"Remove every key; returns how many were removed. Works a slice of the\n"
"index at a time, so other writers are never blocked long; a key put\n"
"during the flush may survive it.");

static PyObject *store_flush(pykv_store *s, PyObject *unused)
{
	kv_t *kv = pykv_store_kv(s);
	uint64_t removed = 0;
	int rc;

	(void)unused;
	if (kv == NULL)
		return NULL;
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_flush(kv, &removed);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	if (rc != KV_OK)
		return pykv_error(rc, "flush");
	return PyLong_FromUnsignedLongLong(removed);
}

PyDoc_STRVAR(resize_doc,
"resize($self, size, /)\n"
"--\n"
"\n"
"Grow or shrink the store to size (an int of bytes, or \"256M\", \"4G\")\n"
"while it serves: every process attached keeps reading and writing and\n"
"follows the new size by itself; the index changes in proportion. Writers\n"
"wait while keys move and the index is rebuilt; readers do not. The same\n"
"size is not an error. A size the keys do not fit raises kv.Error\n"
"(KV_EFULL, nothing changed); a platform where stores cannot change size,\n"
"KV_ENOTSUP; past the store's growth limit, KV_ETOOBIG; too small a step,\n"
"KV_ETOOSMALL.");

static PyObject *store_resize(pykv_store *s, PyObject *arg)
{
	kv_t *kv = pykv_store_kv(s);
	uint64_t size;
	int rc;

	if (kv == NULL)
		return NULL;
	if (parse_size(arg, "size", UINT64_C(1) << 40, &size) != 0)
		return NULL;
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_resize(kv, size);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	if (rc != KV_OK)
		return pykv_error(rc, "resize");
	Py_RETURN_NONE;
}

/* --- the whole store ------------------------------------------------------ */

static Py_ssize_t store_len(pykv_store *s)
{
	kv_t *kv = pykv_store_kv(s);
	struct kv_stats st;

	if (kv == NULL)
		return -1;
	int rc = kv_stats(kv, &st);
	if (rc != KV_OK) {
		pykv_error(rc, "len");
		return -1;
	}
	return (Py_ssize_t)st.items;
}

PyDoc_STRVAR(stats_doc,
"stats($self, /)\n"
"--\n"
"\n"
"The store's figures (kv_stats in kv.h): sizes, counters since it was\n"
"created, and probe_hist, keys by distance from their home bucket.");

static int put_u64(PyObject *d, const char *k, uint64_t v)
{
	PyObject *o = PyLong_FromUnsignedLongLong(v);
	if (o == NULL)
		return -1;
	int r = PyDict_SetItemString(d, k, o);
	Py_DECREF(o);
	return r;
}

static PyObject *store_stats(pykv_store *s, PyObject *unused)
{
	kv_t *kv = pykv_store_kv(s);
	struct kv_stats st;

	(void)unused;
	if (kv == NULL)
		return NULL;
	int rc = kv_stats(kv, &st);
	if (rc != KV_OK)
		return pykv_error(rc, "stats");
	PyObject *d = PyDict_New();
	if (d == NULL)
		return NULL;
#define F(name)                                                                \
	if (put_u64(d, #name, st.name) < 0)                                    \
		goto fail;
	F(format_version) F(max_key) F(max_value) F(page_size) F(map_size)
	F(data_bytes) F(data_used) F(pages_total) F(pages_used) F(buckets)
	F(slots) F(items) F(key_bytes) F(value_bytes) F(puts) F(deletes)
	F(expired) F(recoveries) F(max_probe) F(created_ms) F(nclasses)
	F(daemon_pid) F(evictions) F(page_moves) F(evict) F(item_header)
	F(hits) F(misses) F(sweeps) F(sweep_ns) F(lock_repairs)
	F(mem_page_size) F(max_size) F(resizes)
#undef F
	PyObject *hist = PyList_New(8);
	if (hist == NULL)
		goto fail;
	for (Py_ssize_t i = 0; i < 8; i++) {
		PyObject *o = PyLong_FromUnsignedLongLong(st.probe_hist[i]);
		if (o == NULL) {
			Py_DECREF(hist);
			goto fail;
		}
		PyList_SET_ITEM(hist, i, o);
	}
	if (PyDict_SetItemString(d, "probe_hist", hist) < 0) {
		Py_DECREF(hist);
		goto fail;
	}
	Py_DECREF(hist);
	return d;
fail:
	Py_DECREF(d);
	return NULL;
}

/* Problems reported by kv_check, gathered without the GIL. */
struct problems {
	char *buf; /* NUL-terminated messages, one after another */
	size_t used, cap;
	bool nomem;
};

static void note_problem(void *ctx, const char *msg)
{
	struct problems *p = ctx;
	size_t n = strlen(msg) + 1;

	if (p->used + n > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 1024;
		while (cap < p->used + n)
			cap *= 2;
		char *b = realloc(p->buf, cap);
		if (b == NULL) {
			p->nomem = true;
			return;
		}
		p->buf = b;
		p->cap = cap;
	}
	memcpy(p->buf + p->used, msg, n);
	p->used += n;
}

PyDoc_STRVAR(check_doc,
"check($self, /)\n"
"--\n"
"\n"
"Walk the whole store and verify every invariant of the index and the\n"
"allocator: the list of problems found, empty when the store is sound.\n"
"Through a read-write Store it takes the writer lock, which first repairs\n"
"a lock left by a writer that died.");

static PyObject *store_check(pykv_store *s, PyObject *unused)
{
	kv_t *kv = pykv_store_kv(s);
	struct problems p = {0};
	int rc;

	(void)unused;
	if (kv == NULL)
		return NULL;
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	rc = kv_check(kv, note_problem, &p);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	if (rc != KV_OK && rc != KV_ECORRUPT) {
		free(p.buf);
		return pykv_error(rc, "check");
	}
	PyObject *list = PyList_New(0);
	for (size_t off = 0; list != NULL && off < p.used;) {
		size_t n = strlen(p.buf + off);
		PyObject *m = PyUnicode_DecodeUTF8(p.buf + off, (Py_ssize_t)n,
		                                   "replace");
		if (m == NULL || PyList_Append(list, m) < 0)
			Py_CLEAR(list);
		Py_XDECREF(m);
		off += n + 1;
	}
	/* A corrupt store whose report was lost still says so. */
	if (list != NULL && rc == KV_ECORRUPT && PyList_GET_SIZE(list) == 0) {
		PyObject *m = PyUnicode_FromString(
		    p.nomem ? "store is corrupt (out of memory listing "
		              "the problems)"
		            : "store is corrupt");
		if (m == NULL || PyList_Append(list, m) < 0)
			Py_CLEAR(list);
		Py_XDECREF(m);
	}
	free(p.buf);
	return list;
}

PyDoc_STRVAR(keys_doc,
"keys($self, /, pattern=None)\n"
"--\n"
"\n"
"Every live key, or those that match the shell-style glob pattern (str or\n"
"bytes: '*', '?', '[a-z]', '[!x]', backslash escapes; matched byte by\n"
"byte, as `kv keys` does). A lock-free scan: writers are never blocked;\n"
"a key added or removed meanwhile may or may not be listed.");

static PyObject *store_keys(pykv_store *s, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"pattern"};
	PyObject *a[1];
	pykv_keys ks = {0};
	pykv_bytes pat = {0};
	char *glob = NULL;
	uint64_t cursor = 0;
	int rc = KV_OK;

	if (pykv_parse("keys", args, nargs, kwnames, names, 1, 1, 0, a) < 0)
		return NULL;
	kv_t *kv = pykv_store_kv(s);
	if (kv == NULL)
		return NULL;
	if (a[0] != NULL && a[0] != Py_None) {
		if (pykv_bytes_get(a[0], &pat, "pattern") < 0)
			return NULL;
		if (memchr(pat.p, '\0', (size_t)pat.n) != NULL) {
			pykv_bytes_release(&pat);
			PyErr_SetString(PyExc_ValueError,
			                "keys(): pattern must not contain NUL");
			return NULL;
		}
		glob = strndup(pat.p, (size_t)pat.n);
		pykv_bytes_release(&pat);
		if (glob == NULL)
			return PyErr_NoMemory();
		/* "*" matches every key: skip the matcher. */
		if (strcmp(glob, "*") != 0)
			ks.glob = glob;
	}
	pykv_store_enter(s);
	Py_BEGIN_ALLOW_THREADS
	do
		rc = pykv_scan_step(kv, &cursor, 256, &ks);
	while (rc == KV_OK && cursor != 0);
	Py_END_ALLOW_THREADS
	pykv_store_leave(s);
	free(glob);
	PyObject *list = NULL;
	if (rc == KV_OK && ks.nomem)
		rc = KV_ENOMEM;
	if (rc == KV_OK)
		list = pykv_keys_list(&ks);
	else
		pykv_error(rc, "keys");
	pykv_keys_free(&ks);
	return list;
}

static PyObject *store_iter(pykv_store *s)
{
	if (pykv_store_kv(s) == NULL)
		return NULL;
	return pykv_keyiter_new(s);
}

/* --- attributes, repr, pickling ------------------------------------------- */

static PyObject *store_repr(pykv_store *s)
{
	if (s->name_obj == NULL)
		return PyUnicode_FromString("<kv.Store (not attached)>");
	return PyUnicode_FromFormat("<kv.Store %R (%s)>", s->name_obj,
	                            s->kv == NULL ? "closed"
	                            : s->flags == KV_RDWR ? "read-write"
	                                                  : "read-only");
}

static PyObject *store_reduce(pykv_store *s, PyObject *unused)
{
	(void)unused;
	if (s->name_obj == NULL) {
		PyErr_SetString(PyExc_TypeError,
		                "cannot pickle a Store that was never attached");
		return NULL;
	}
	PyObject *mod = PyImport_ImportModule("kv");
	if (mod == NULL)
		return NULL;
	PyObject *fn = PyObject_GetAttrString(mod, "_attach");
	Py_DECREF(mod);
	if (fn == NULL)
		return NULL;
	return Py_BuildValue("(N(OO))", fn, s->name_obj,
	                     s->flags == KV_RDWR ? Py_False : Py_True);
}

static PyObject *get_name(pykv_store *s, void *closure)
{
	(void)closure;
	PyObject *n = s->name_obj != NULL ? s->name_obj : Py_None;
	Py_INCREF(n);
	return n;
}

static PyObject *get_readonly(pykv_store *s, void *closure)
{
	(void)closure;
	return PyBool_FromLong(s->flags != KV_RDWR);
}

static PyObject *get_closed(pykv_store *s, void *closure)
{
	(void)closure;
	return PyBool_FromLong(s->kv == NULL);
}

static PyGetSetDef store_getset[] = {
	{"name", (getter)get_name, NULL,
	 "The store's name (or path, for a file-backed store).", NULL},
	{"readonly", (getter)get_readonly, NULL,
	 "True when attached read-only.", NULL},
	{"closed", (getter)get_closed, NULL, "True once close() was called.",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef store_methods[] = {
	{"create", (PyCFunction)(void (*)(void))store_create,
	 METH_VARARGS | METH_KEYWORDS | METH_CLASS, create_doc},
	{"close", (PyCFunction)store_close, METH_NOARGS, close_doc},
	{"__enter__", (PyCFunction)store_enter_ctx, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe Store itself."},
	{"__exit__", (PyCFunction)store_exit_ctx, METH_VARARGS,
	 "__exit__($self, /, *exc_info)\n--\n\nclose(); exceptions go on."},
	{"get", (PyCFunction)(void (*)(void))store_get, FASTKW, get_doc},
	{"set", (PyCFunction)(void (*)(void))store_set, FASTKW, set_doc},
	{"delete", (PyCFunction)store_delete, METH_O, delete_doc},
	{"incr", (PyCFunction)(void (*)(void))store_incr, FASTKW, incr_doc},
	{"decr", (PyCFunction)(void (*)(void))store_decr, FASTKW, decr_doc},
	{"ttl", (PyCFunction)store_ttl, METH_O, ttl_doc},
	{"gets", (PyCFunction)store_gets, METH_O, gets_doc},
	{"cas", (PyCFunction)(void (*)(void))store_cas, FASTKW, cas_doc},
	{"get_many", (PyCFunction)store_get_many, METH_O, get_many_doc},
	{"set_many", (PyCFunction)(void (*)(void))store_set_many, FASTKW,
	 set_many_doc},
	{"keys", (PyCFunction)(void (*)(void))store_keys, FASTKW, keys_doc},
	{"flush", (PyCFunction)store_flush, METH_NOARGS, flush_doc},
	{"resize", (PyCFunction)store_resize, METH_O, resize_doc},
	{"stats", (PyCFunction)store_stats, METH_NOARGS, stats_doc},
	{"check", (PyCFunction)store_check, METH_NOARGS, check_doc},
	{"__reduce__", (PyCFunction)store_reduce, METH_NOARGS,
	 "__reduce__($self, /)\n--\n\nPickled, a Store attaches again by "
	 "name in the process that unpickles it."},
	{NULL, NULL, 0, NULL},
};

static PyMappingMethods store_as_mapping = {
	.mp_length = (lenfunc)store_len,
	.mp_subscript = (binaryfunc)store_subscript,
	.mp_ass_subscript = (objobjargproc)store_ass_subscript,
};

static PySequenceMethods store_as_sequence = {
	.sq_contains = (objobjproc)store_contains,
};

PyDoc_STRVAR(store_doc,
"Store(name=None, *, readonly=False)\n"
"--\n"
"\n"
"A kv store attached to this process: a mapping of bytes keys to bytes\n"
"values that lives in shared memory, seen by every process that attaches\n"
"to the same name.\n"
"\n"
"name: the store (a name of letters, digits, '.', '_', '-' is\n"
"/dev/shm/kv.NAME; a name with a '/' is a file-backed store); None means\n"
"$KV_STORE, else \"default\". The store must exist (kvd or\n"
"Store.create made it): kv.StoreNotFound otherwise. readonly=True maps it\n"
"read-only, which needs only read permission and gets at full speed.\n"
"\n"
"Keys and values are bytes, bytearray, memoryview or str (UTF-8);\n"
"values come back as bytes. TTLs are seconds, int or float.\n"
"\n"
"    s[key]            the value; KeyError if absent\n"
"    s[key] = value    put\n"
"    del s[key]        remove; KeyError if absent\n"
"    key in s, len(s), iter(s) (the keys, as bytes)\n"
"\n"
"A Store is a context manager (close() on exit) and may be used by many\n"
"threads at once. After fork() the child attaches again on its first\n"
"call; pickled, a Store attaches again by name.");

PyTypeObject pykv_store_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "kv.Store",
	.tp_basicsize = sizeof(pykv_store),
	.tp_dealloc = (destructor)store_dealloc,
	.tp_repr = (reprfunc)store_repr,
	.tp_as_sequence = &store_as_sequence,
	.tp_as_mapping = &store_as_mapping,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = store_doc,
	.tp_weaklistoffset = offsetof(pykv_store, weakrefs),
	.tp_iter = (getiterfunc)store_iter,
	.tp_methods = store_methods,
	.tp_getset = store_getset,
	.tp_init = (initproc)store_init,
	.tp_new = PyType_GenericNew,
};
