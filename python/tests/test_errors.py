"""Every exception class of kv, each raised by a real cause.

Some causes are damage: the tests write into the store's mapping through
/dev/shm the way a bug or a stray writer would (a format word, the magic,
bucket sequence numbers), or use libkv's C API for an option the Python
API does not offer (a store that never evicts). The offsets used are those
of libkv/format.h.
"""
import ctypes
import mmap
import os
import struct
import sys

import pytest

import kv
from conftest import shm_path

INDEX_OFF_AT = 0x28  # libkv/format.h: the header's index_off field


def index_off(name):
    """Where the store's index starts (it follows the arena)."""
    with open(shm_path(name), "rb") as f:
        f.seek(INDEX_OFF_AT)
        return struct.unpack("<Q", f.read(8))[0]
BUCKET = 64             # one cache line per bucket; seq is its first word
FORMAT_OFF = 0x008      # struct kv_hdr.format


def poke(name, offset, data):
    with open(shm_path(name), "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            m[offset:offset + len(data)] = data


def hierarchy(exc, *bases):
    assert isinstance(exc, kv.Error)
    for b in bases:
        assert isinstance(exc, b), (exc, b)
    assert isinstance(exc.code, int) and exc.code < 0
    assert exc.name.startswith("KV_E")


def test_classes():
    assert issubclass(kv.Error, Exception)
    for cls, builtin in ((kv.StoreNotFound, FileNotFoundError),
                         (kv.PermissionDenied, PermissionError),
                         (kv.ReadOnly, PermissionError),
                         (kv.KeyTooLarge, ValueError),
                         (kv.ValueTooLarge, ValueError),
                         (kv.Busy, TimeoutError),
                         (kv.StoreFull, None), (kv.Corrupt, None),
                         (kv.VersionMismatch, None)):
        assert issubclass(cls, kv.Error)
        if builtin is not None:
            assert issubclass(cls, builtin)
        assert cls.__module__ == "kv"


def test_store_not_found(names):
    name = names()
    with pytest.raises(FileNotFoundError) as e:
        kv.Store(name)
    hierarchy(e.value, kv.StoreNotFound, OSError)
    assert e.value.name == "KV_ENOSTORE" and e.value.code == -2
    assert e.value.errno == 2
    assert "store %r: store does not exist" % name in str(e.value)
    with pytest.raises(kv.StoreNotFound):
        kv.Store(name, readonly=True)


def test_destroyed_under_us(names):
    name = names()
    s = kv.Store.create(name, size="4M")
    s["k"] = "v"
    kv.destroy(name)
    for call in (lambda: s["k"], lambda: s.set("k", "v"), lambda: len(s),
                 lambda: s.keys()):
        with pytest.raises(kv.StoreNotFound) as e:
            call()
        assert e.value.name == "KV_EDESTROYED"
    s.close()


def test_permission_world_writable(names):
    name = names()
    kv.Store.create(name, size="4M").close()
    os.chmod(shm_path(name), 0o666)
    with pytest.raises(PermissionError) as e:
        kv.Store(name)
    hierarchy(e.value, kv.PermissionDenied)
    assert e.value.name == "KV_EWORLD"


def test_permission_denied(names):
    """A user who may not read the store gets KV_EPERM."""
    name = names()
    kv.Store.create(name, size="4M").close()
    if os.geteuid() != 0:
        os.chmod(shm_path(name), 0o000)
        with pytest.raises(kv.PermissionDenied) as e:
            kv.Store(name, readonly=True)
        assert e.value.name == "KV_EPERM"
        return
    # Root reads anything: try as nobody, in a child.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                kv.Store(name, readonly=True)
                code = 1
            except kv.PermissionDenied as e:
                os.write(w, e.name.encode())
                code = 0 if isinstance(e, PermissionError) else 2
        finally:
            os._exit(code)
    os.close(w)
    got = os.read(r, 100)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and got == b"KV_EPERM"


def test_read_only(store):
    with kv.Store(store.name, readonly=True) as r:
        with pytest.raises(PermissionError) as e:
            r["k"] = "v"
        hierarchy(e.value, kv.ReadOnly)
        assert e.value.name == "KV_ERDONLY" and e.value.code == -16
        assert not isinstance(e.value, kv.PermissionDenied)


def test_key_too_large(store):
    store[b"k" * kv.MAX_KEY] = "longest key"
    assert store[b"k" * kv.MAX_KEY] == b"longest key"
    for bad in (b"k" * (kv.MAX_KEY + 1), b"", ""):
        for call in (lambda: store[bad], lambda: store.set(bad, "v"),
                     lambda: store.get(bad), lambda: bad in store,
                     lambda: store.delete(bad), lambda: store.incr(bad),
                     lambda: store.ttl(bad), lambda: store.gets(bad)):
            with pytest.raises(ValueError) as e:
                call()
            hierarchy(e.value, kv.KeyTooLarge)
            assert e.value.name == "KV_EKEYSIZE"


def test_value_too_large(names):
    with kv.Store.create(names(), size="8M", max_value=4096) as s:
        s["ok"] = b"x" * 4096
        with pytest.raises(ValueError) as e:
            s["no"] = b"x" * 4097
        hierarchy(e.value, kv.ValueTooLarge)
        assert e.value.name == "KV_EVALSIZE"
        assert "no" not in s


def test_store_full(names, build_dir):
    """A store created with eviction off answers KV_EFULL when full."""
    lib = ctypes.CDLL(os.path.join(build_dir, "libkv", "libkv.so"))

    class Options(ctypes.Structure):
        _fields_ = [("size", ctypes.c_uint64), ("mode", ctypes.c_uint32),
                    ("max_value", ctypes.c_uint32),
                    ("max_items", ctypes.c_uint64),
                    ("flags", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                    ("reserved", ctypes.c_uint32 * 6)]
    name = names()
    opts = Options(size=1 << 20, flags=0x2)  # KV_CREATE_NOEVICT
    handle = ctypes.c_void_p()
    rc = lib.kv_create(name.encode(), ctypes.byref(opts),
                       ctypes.byref(handle))
    assert rc == 0
    lib.kv_close(handle)
    with kv.Store(name) as s:
        assert s.stats()["evict"] == 0
        with pytest.raises(kv.StoreFull) as e:
            for i in range(100000):
                s[b"k%d" % i] = b"x" * 1000
        hierarchy(e.value)
        assert e.value.name == "KV_EFULL" and e.value.code == -5
        assert s.check() == []


def test_busy(names):
    """A write left unfinished (every bucket odd, nobody to finish it): a
    read-only reader gives up with KV_EBUSY after its bounded wait; a
    read-write one repairs it under the lock."""
    name = names()
    with kv.Store.create(name, size="4M") as s:
        s["k"] = "v"
        buckets = s.stats()["buckets"]
    base = index_off(name)
    with open(shm_path(name), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        for b in range(buckets):
            off = base + b * BUCKET
            seq, = struct.unpack_from("<I", m, off)
            struct.pack_into("<I", m, off, seq | 1)
    with kv.Store(name, readonly=True) as r:
        with pytest.raises(TimeoutError) as e:
            r["k"]
        hierarchy(e.value, kv.Busy)
        assert e.value.name == "KV_EBUSY" and e.value.code == -17
    with kv.Store(name) as s:
        assert s["k"] == b"v"  # healed on the way
    with kv.Store(name, readonly=True) as r:
        assert r["k"] == b"v"


def test_corrupt_check_lists_problems(names):
    name = names()
    with kv.Store.create(name, size="4M") as s:
        s.set_many({"k%d" % i: "v" for i in range(100)})
        buckets = s.stats()["buckets"]
    # Odd buckets under the lock: damage, which check() reports.
    poke(name, index_off(name) + (buckets // 2) * BUCKET,
         struct.pack("<I", 1))
    with kv.Store(name) as s:
        problems = s.check()
        assert problems and all(isinstance(p, str) for p in problems)


def test_corrupt_magic(names):
    name = names()
    kv.Store.create(name, size="4M").close()
    poke(name, 0, b"NOTASTOR")
    with pytest.raises(kv.Corrupt) as e:
        kv.Store(name)
    hierarchy(e.value)
    assert e.value.name == "KV_ENOTSTORE"


def test_corrupt_truncated(names):
    name = names()
    kv.Store.create(name, size="4M").close()
    os.truncate(shm_path(name), 2 << 20)
    with pytest.raises(kv.Corrupt) as e:
        kv.Store(name)
    assert e.value.name == "KV_ETRUNCATED"


def test_version_mismatch(names):
    name = names()
    kv.Store.create(name, size="4M").close()
    with open(shm_path(name), "rb") as f:
        f.seek(FORMAT_OFF)
        word, = struct.unpack("<I", f.read(4))
    poke(name, FORMAT_OFF, struct.pack("<I", word ^ 0xff))
    with pytest.raises(kv.VersionMismatch) as e:
        kv.Store(name)
    hierarchy(e.value)
    assert e.value.name == "KV_EVERSION" and e.value.code == -4
    assert "incompatible store format version" in str(e.value)
    with pytest.raises(kv.VersionMismatch):
        kv.Store.create(name)  # never adopted either


def test_plain_error(store):
    store["t"] = "not a number"
    with pytest.raises(kv.Error) as e:
        store.incr("t")
    assert type(e.value) is kv.Error
    assert (e.value.code, e.value.name) == (-26, "KV_ENOTNUM")
    assert str(e.value) == "incr: value is not a decimal integer"
    # Error's attributes exist on the class too.
    assert kv.Error.code is None and kv.Error.name is None


def test_no_exception_leaks_into_the_next_call(store):
    with pytest.raises(KeyError):
        store["absent"]
    assert store.get("absent") is None
    with pytest.raises(kv.KeyTooLarge):
        store[b""] = b"x"
    store["k"] = "v"
    assert sys.exc_info() == (None, None, None)
