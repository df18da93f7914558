/*
 * module.c - the kv extension module: its exceptions, the conversions
 * every call shares (keys and values, TTLs, arguments, status codes), the
 * fork counter, and module initialisation.
 *
 * Exceptions. kv.Error carries libkv's status in .code (an int, < 0) and
 * .name ("KV_ENOSTORE"). Each subclass also derives from the built-in
 * exception a Python program would catch for the same trouble, so
 * `except FileNotFoundError` works on a missing store and `except
 * ValueError` on an oversized value. Statuses with no subclass raise
 * kv.Error itself. "Not found" is never an error code here: it is a
 * KeyError for s[k], del s[k] and s.ttl(k), and a result elsewhere.
 */
#include "pykv.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>

volatile unsigned long pykv_fork_gen;

static PyObject *err_base;

/* One exception class per row; a status not listed raises kv.Error. */
static struct err_class {
	const char *name; /* kv.NAME */
	int builtin;      /* index into add_exceptions()'s builtins, or -1 */
	int os_errno;     /* for OSError subclasses: the errno they carry */
	const char *doc;
	PyObject *cls;
} err_classes[] = {
	{"StoreNotFound", 0, ENOENT,
	 "The store does not exist (KV_ENOSTORE), or was destroyed while "
	 "attached (KV_EDESTROYED).\nAlso a FileNotFoundError.", NULL},
	{"PermissionDenied", 1, EACCES,
	 "This user may not attach to the store or adopt it (KV_EPERM, "
	 "KV_EOWNER, KV_EWORLD, KV_ESYMLINK).\nAlso a PermissionError.", NULL},
	{"ReadOnly", 1, EROFS,
	 "A write through a store attached with readonly=True (KV_ERDONLY)."
	 "\nAlso a PermissionError.", NULL},
	{"KeyTooLarge", 2, 0,
	 "The key is empty or longer than the store allows (KV_EKEYSIZE)."
	 "\nAlso a ValueError.", NULL},
	{"ValueTooLarge", 2, 0,
	 "The value is larger than the store's max_value (KV_EVALSIZE)."
	 "\nAlso a ValueError.", NULL},
	{"StoreFull", -1, 0,
	 "No room for the item, even after evicting (KV_EFULL).", NULL},
	{"Busy", 3, ETIMEDOUT,
	 "A live writer held the store's lock past the bound of about 1.5 s "
	 "(KV_EBUSY); try again.\nAlso a TimeoutError.", NULL},
	{"Corrupt", -1, 0,
	 "The store is damaged (KV_ECORRUPT, KV_ETRUNCATED, KV_ENOTSTORE); "
	 "Store.check() lists the problems.", NULL},
	{"VersionMismatch", -1, 0,
	 "The store was made by an incompatible build of kv "
	 "(KV_EVERSION).", NULL},
};

enum {
	E_NOTFOUND,
	E_PERM,
	E_RDONLY,
	E_KEYSIZE,
	E_VALSIZE,
	E_FULL,
	E_BUSY,
	E_CORRUPT,
	E_VERSION,
	E_COUNT
};

static struct err_class *err_for(int rc)
{
	switch (rc) {
	case KV_ENOSTORE:
	case KV_EDESTROYED:
		return &err_classes[E_NOTFOUND];
	case KV_EPERM:
	case KV_EOWNER:
	case KV_EWORLD:
	case KV_ESYMLINK:
		return &err_classes[E_PERM];
	case KV_ERDONLY:
		return &err_classes[E_RDONLY];
	case KV_EKEYSIZE:
		return &err_classes[E_KEYSIZE];
	case KV_EVALSIZE:
		return &err_classes[E_VALSIZE];
	case KV_EFULL:
		return &err_classes[E_FULL];
	case KV_EBUSY:
		return &err_classes[E_BUSY];
	case KV_ECORRUPT:
	case KV_ETRUNCATED:
	case KV_ENOTSTORE:
		return &err_classes[E_CORRUPT];
	case KV_EVERSION:
		return &err_classes[E_VERSION];
	default:
		return NULL;
	}
}

PyObject *pykv_error(int rc, const char *what)
{
	struct err_class *ec = err_for(rc);
	PyObject *cls = ec != NULL ? ec->cls : err_base;
	PyObject *exc = NULL, *msg, *v;

	if (rc == KV_ENOMEM)
		return PyErr_NoMemory();
	msg = PyUnicode_FromFormat("%s: %s", what, kv_strerror(rc));
	if (msg == NULL)
		return NULL;
	/* An OSError subclass gets an errno too: str(e) then reads
	 * "[Errno 2] store 'x': store does not exist". */
	if (ec != NULL && ec->os_errno != 0)
		exc = PyObject_CallFunction(cls, "iO", ec->os_errno, msg);
	else
		exc = PyObject_CallFunctionObjArgs(cls, msg, NULL);
	Py_DECREF(msg);
	if (exc == NULL)
		return NULL;
	v = PyLong_FromLong(rc);
	if (v == NULL || PyObject_SetAttrString(exc, "code", v) < 0) {
		Py_XDECREF(v);
		goto out;
	}
	Py_DECREF(v);
	v = PyUnicode_FromString(kv_errname(rc));
	if (v == NULL || PyObject_SetAttrString(exc, "name", v) < 0) {
		Py_XDECREF(v);
		goto out;
	}
	Py_DECREF(v);
	PyErr_SetObject(cls, exc);
out:
	Py_DECREF(exc);
	return NULL;
}

int pykv_bytes_slow(PyObject *o, pykv_bytes *b, const char *what)
{
	if (PyUnicode_Check(o)) {
		b->p = PyUnicode_AsUTF8AndSize(o, &b->n);
		return b->p != NULL ? 0 : -1;
	}
	if (PyBytes_Check(o)) {
		b->p = PyBytes_AS_STRING(o);
		b->n = PyBytes_GET_SIZE(o);
		return 0;
	}
	if (PyByteArray_Check(o) || PyMemoryView_Check(o)) {
		if (PyObject_GetBuffer(o, &b->view, PyBUF_SIMPLE) < 0) {
			b->view.obj = NULL;
			return -1;
		}
		b->p = b->view.buf;
		b->n = b->view.len;
		return 0;
	}
	PyErr_Format(PyExc_TypeError,
	             "%s must be bytes, bytearray, memoryview or str, not %.100s",
	             what, Py_TYPE(o)->tp_name);
	return -1;
}

/* Above this many ms a TTL is refused: it must fit kv_put_opts.ttl_ms
 * and, added to the clock, the store's 64-bit expiry. */
#define TTL_MAX_MS ((uint64_t)1 << 62)

int pykv_ttl_ms(PyObject *o, uint64_t *ms)
{
	double s;

	*ms = 0;
	if (o == NULL || o == Py_None)
		return 0;
	if (PyLong_Check(o)) {
		int overflow;
		long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
		if (v == -1 && PyErr_Occurred())
			return -1;
		if (overflow < 0 || (overflow == 0 && v <= 0))
			goto nonpositive;
		if (overflow > 0 || (uint64_t)v > TTL_MAX_MS / 1000)
			goto too_large;
		*ms = (uint64_t)v * 1000;
		return 0;
	}
	if (!PyFloat_Check(o)) {
		PyErr_Format(PyExc_TypeError,
		             "ttl must be an int or a float (seconds) or None, "
		             "not %.100s", Py_TYPE(o)->tp_name);
		return -1;
	}
	s = PyFloat_AS_DOUBLE(o);
	if (isnan(s)) {
		PyErr_SetString(PyExc_ValueError, "ttl must not be NaN");
		return -1;
	}
	if (s <= 0)
		goto nonpositive;
	if (s * 1000.0 >= (double)TTL_MAX_MS)
		goto too_large;
	*ms = (uint64_t)ceil(s * 1000.0);
	return 0;

nonpositive:
	PyErr_SetString(PyExc_ValueError,
	                "ttl must be greater than 0 (None: no expiry)");
	return -1;
too_large:
	PyErr_SetString(PyExc_OverflowError, "ttl is too large");
	return -1;
}

int pykv_parse(const char *fname, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, const char *const *names, int nnames,
               int maxpos, int nreq, PyObject **out)
{
	Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;

	if (nargs > maxpos) {
		PyErr_Format(PyExc_TypeError,
		             "%s() takes at most %d positional argument%s "
		             "(%zd given)", fname, maxpos, maxpos == 1 ? "" : "s",
		             nargs);
		return -1;
	}
	for (int i = 0; i < nnames; i++)
		out[i] = i < nargs ? args[i] : NULL;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
		int i;
		for (i = 0; i < nnames; i++)
			if (PyUnicode_CompareWithASCIIString(kw, names[i]) == 0)
				break;
		if (i == nnames) {
			PyErr_Format(PyExc_TypeError,
			             "%s() got an unexpected keyword argument "
			             "'%U'", fname, kw);
			return -1;
		}
		if (out[i] != NULL) {
			PyErr_Format(PyExc_TypeError,
			             "%s() got multiple values for argument '%s'",
			             fname, names[i]);
			return -1;
		}
		out[i] = args[nargs + k];
	}
	for (int i = 0; i < nreq; i++) {
		if (out[i] == NULL) {
			PyErr_Format(PyExc_TypeError,
			             "%s() missing required argument '%s'", fname,
			             names[i]);
			return -1;
		}
	}
	return 0;
}

static void on_fork_child(void)
{
	pykv_fork_gen++;
}

static PyObject *kv_reattach(PyObject *mod, PyObject *args)
{
	PyObject *name;
	int readonly;

	(void)mod;
	if (!PyArg_ParseTuple(args, "Op:_attach", &name, &readonly))
		return NULL;
	PyObject *kwargs = Py_BuildValue("{s:O}", "readonly",
	                                 readonly ? Py_True : Py_False);
	if (kwargs == NULL)
		return NULL;
	PyObject *a = PyTuple_Pack(1, name);
	if (a == NULL) {
		Py_DECREF(kwargs);
		return NULL;
	}
	PyObject *r = PyObject_Call((PyObject *)&pykv_store_type, a, kwargs);
	Py_DECREF(a);
	Py_DECREF(kwargs);
	return r;
}

PyDoc_STRVAR(destroy_doc,
"destroy($module, name, /)\n"
"--\n"
"\n"
"Remove the store NAME (kv_destroy). It is first marked destroyed, so\n"
"every Store still attached to it raises kv.StoreNotFound from its next\n"
"call; then its name is removed, and its memory goes once every process\n"
"has detached. kv.StoreNotFound if there is no such store.");

static PyObject *kv_destroy_fn(PyObject *mod, PyObject *name)
{
	PyObject *b = NULL;
	int rc;

	(void)mod;
	if (!PyUnicode_FSConverter(name, &b))
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = kv_destroy(PyBytes_AS_STRING(b));
	Py_END_ALLOW_THREADS
	if (rc != KV_OK) {
		PyObject *what = PyUnicode_FromFormat("destroy %R", name);
		if (what != NULL) {
			const char *w = PyUnicode_AsUTF8(what);
			if (w != NULL)
				pykv_error(rc, w);
			Py_DECREF(what);
		}
		Py_DECREF(b);
		return NULL;
	}
	Py_DECREF(b);
	Py_RETURN_NONE;
}

static PyMethodDef kv_methods[] = {
	{"destroy", kv_destroy_fn, METH_O, destroy_doc},
	{"_attach", kv_reattach, METH_VARARGS,
	 "_attach($module, name, readonly, /)\n--\n\nAttach to a store; "
	 "used to unpickle a Store in another process."},
	{NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(kv_doc,
"Shared-memory key-value store: get and put in memory, from any process.\n"
"\n"
"kv attaches to a store made by kvd (or by Store.create) and reads it\n"
"directly: a get is a lock-free memory read in this process, not a round\n"
"trip to a server. Writers are serialised by a robust lock inside the\n"
"store, so a process killed mid-write loses only that write.\n"
"\n"
"    import kv\n"
"    with kv.Store.create(\"demo\", size=\"64M\") as s:\n"
"        s[\"greeting\"] = \"hello\"          # str keys and values: UTF-8\n"
"        s.set(b\"session:42\", b\"...\", ttl=30)\n"
"        s[\"greeting\"]                      # b'hello'\n"
"        s.get(\"missing\")                   # None\n"
"\n"
"Keys and values are bytes, bytearray, memoryview or str (encoded as\n"
"UTF-8); values always come back as bytes. TTLs are seconds (int or\n"
"float). Errors are kv.Error and its subclasses.");

static struct PyModuleDef kv_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "kv",
	.m_doc = kv_doc,
	.m_size = -1,
	.m_methods = kv_methods,
};

static int add_exceptions(PyObject *m)
{
	PyObject *builtins[] = {PyExc_FileNotFoundError, PyExc_PermissionError,
	                        PyExc_ValueError, PyExc_TimeoutError};
	char qual[64];

	err_base = PyErr_NewExceptionWithDoc(
	    "kv.Error",
	    "Any error from kv. .code is libkv's status (a negative int) and\n"
	    ".name its name (\"KV_ENOSTORE\"); str(e) says what failed and why.",
	    PyExc_Exception, NULL);
	if (err_base == NULL)
		return -1;
	if (PyObject_SetAttrString(err_base, "code", Py_None) < 0 ||
	    PyObject_SetAttrString(err_base, "name", Py_None) < 0)
		return -1;
	Py_INCREF(err_base);
	if (PyModule_AddObject(m, "Error", err_base) < 0) {
		Py_DECREF(err_base);
		return -1;
	}
	for (int i = 0; i < E_COUNT; i++) {
		struct err_class *ec = &err_classes[i];
		PyObject *bases;

		if (ec->builtin >= 0)
			bases = PyTuple_Pack(2, err_base, builtins[ec->builtin]);
		else
			bases = PyTuple_Pack(1, err_base);
		if (bases == NULL)
			return -1;
		snprintf(qual, sizeof qual, "kv.%s", ec->name);
		ec->cls = PyErr_NewExceptionWithDoc(qual, ec->doc, bases, NULL);
		Py_DECREF(bases);
		if (ec->cls == NULL)
			return -1;
		Py_INCREF(ec->cls);
		if (PyModule_AddObject(m, ec->name, ec->cls) < 0) {
			Py_DECREF(ec->cls);
			return -1;
		}
	}
	return 0;
}

PyMODINIT_FUNC PyInit_kv(void);

PyMODINIT_FUNC PyInit_kv(void)
{
	static bool atfork_done;
	PyObject *m;

	if (!atfork_done) {
		if (pthread_atfork(NULL, NULL, on_fork_child) != 0)
			return PyErr_NoMemory();
		atfork_done = true;
	}
	if (PyType_Ready(&pykv_store_type) < 0 ||
	    PyType_Ready(&pykv_keyiter_type) < 0)
		return NULL;
	m = PyModule_Create(&kv_module);
	if (m == NULL)
		return NULL;
	if (add_exceptions(m) < 0)
		goto fail;
	Py_INCREF(&pykv_store_type);
	if (PyModule_AddObject(m, "Store", (PyObject *)&pykv_store_type) < 0) {
		Py_DECREF(&pykv_store_type);
		goto fail;
	}
	if (PyModule_AddStringConstant(m, "__version__", kv_version()) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_KEY", KV_MAX_KEY) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_VALUE_LIMIT", KV_MAX_VALUE_LIMIT) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
