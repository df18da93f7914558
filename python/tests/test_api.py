"""Every call of kv.Store, with the types it takes and what it returns."""
import inspect
import json
import os
import pickle
import pydoc
import sys
import threading
import time

import pytest

import kv
from conftest import unique_name


# --- attaching -------------------------------------------------------------

def test_create_attach_close(names):
    name = names()
    s = kv.Store.create(name, size="4M")
    assert s.name == name and not s.readonly and not s.closed
    s["k"] = "v"
    # Attaching by name sees the same store; so does a read-only attach.
    with kv.Store(name) as t, kv.Store(name, readonly=True) as r:
        assert t["k"] == b"v" and r["k"] == b"v"
        assert r.readonly and repr(r).endswith("(read-only)>")
    assert t.closed and r.closed
    s.close()
    s.close()  # again: nothing
    assert s.closed and repr(s) == "<kv.Store %r (closed)>" % name
    with pytest.raises(ValueError, match="closed store"):
        s["k"]
    with pytest.raises(ValueError):
        s.set("k", "v")
    with pytest.raises(ValueError):
        len(s)


def test_create_adopts(names):
    name = names()
    with kv.Store.create(name, size="4M") as s:
        s["kept"] = "yes"
    # Created again: adopted with its data; size applies only at creation.
    with kv.Store.create(name, size="16M") as s:
        assert s["kept"] == b"yes"
        assert s.stats()["map_size"] == 4 << 20


def test_default_name_from_environment(names, monkeypatch):
    name = names()
    monkeypatch.setenv("KV_STORE", name)
    with kv.Store.create(None, size="4M") as s:
        assert s.name == name
        s["x"] = "1"
    with kv.Store() as s:
        assert s.name == name and s["x"] == b"1"
    monkeypatch.delenv("KV_STORE")
    s = kv.Store.__new__(kv.Store)  # not attached: every call refuses
    with pytest.raises(ValueError):
        s.get("x")


def test_create_sizes(names):
    for size, want in ((4 << 20, 4 << 20), ("4M", 4 << 20),
                       ("8MiB", 8 << 20), ("4096k", 4 << 20),
                       ("6291456", 6 << 20), ("6291456B", 6 << 20)):
        with kv.Store.create(names(), size=size) as s:
            assert s.stats()["map_size"] == want
    with kv.Store.create(names(), size="8M", max_value="2k") as s:
        assert s.stats()["max_value"] == 2048
        s["ok"] = b"x" * 2048
        with pytest.raises(kv.ValueTooLarge):
            s["big"] = b"x" * 2049
    with kv.Store.create(names(), size="8M", max_value=1000) as s:
        assert s.stats()["max_value"] == 1000
    for bad in ("", "M", "64X", "4iB", "-1", "1.5M"):
        with pytest.raises(ValueError, match="not a size"):
            kv.Store.create(names(), size=bad)
    with pytest.raises(ValueError, match="greater than 0"):
        kv.Store.create(names(), size=0)
    with pytest.raises(ValueError, match="greater than 0"):
        kv.Store.create(names(), size="0M")
    with pytest.raises(OverflowError):
        kv.Store.create(names(), size=1 << 70)
    with pytest.raises(OverflowError):
        kv.Store.create(names(), size="99999999999T")
    with pytest.raises(TypeError):
        kv.Store.create(names(), size=4.5)
    with pytest.raises(OverflowError):
        kv.Store.create(names(), max_value=1 << 40)
    # Too small for a store: libkv says so.
    with pytest.raises(kv.Error) as e:
        kv.Store.create(names(), size=4096)
    assert e.value.name == "KV_ETOOSMALL"


def test_file_backed(tmp_path):
    path = str(tmp_path / "store.kv")
    with kv.Store.create(path, size="4M") as s:
        s["k"] = "on disk"
    with kv.Store(tmp_path / "store.kv") as s:  # a PathLike will do
        assert s.name == path and s["k"] == b"on disk"
    kv.destroy(path)
    assert not os.path.exists(path)


def test_bad_names(names):
    with pytest.raises(kv.Error) as e:
        kv.Store("no spaces allowed")
    assert e.value.code == -12 and e.value.name == "KV_ENAME"
    with pytest.raises(kv.Error):
        kv.Store("x" * 65)
    with pytest.raises(ValueError):
        kv.Store("nul\0inside")
    with pytest.raises(TypeError):
        kv.Store(42)
    with pytest.raises(TypeError):
        kv.Store(names(), True)  # readonly is keyword-only
    with pytest.raises(kv.StoreNotFound):
        kv.destroy(unique_name("absent"))


def test_context_manager_closes_on_error(names):
    with pytest.raises(RuntimeError):
        with kv.Store.create(names(), size="4M") as s:
            raise RuntimeError("boom")
    assert s.closed


# --- the mapping protocol --------------------------------------------------

def test_mapping(store):
    assert len(store) == 0 and "k" not in store and list(store) == []
    store["k"] = "v"
    store[b"b"] = bytearray(b"ba")
    store[bytearray(b"c")] = memoryview(b"mv")
    assert store["k"] == b"v" and store[b"k"] == b"v"
    assert store[b"b"] == b"ba" and store["c"] == b"mv"
    assert "k" in store and b"c" in store and bytearray(b"b") in store
    assert len(store) == 3
    assert sorted(store) == [b"b", b"c", b"k"]
    assert all(type(k) is bytes for k in store)
    del store["k"]
    assert "k" not in store and len(store) == 2
    with pytest.raises(KeyError) as e:
        store["k"]
    assert e.value.args == ("k",)
    with pytest.raises(KeyError):
        del store["k"]
    # A tuple key is a TypeError, and KeyError keeps its key whole.
    with pytest.raises(TypeError):
        store[("a", "b")]


def test_values_come_back_as_bytes(store):
    store["s"] = "text"
    store["e"] = ""
    assert type(store["s"]) is bytes and store["e"] == b""
    assert "e" in store  # an empty value is still a value


def test_round_trips(store):
    every_byte = bytes(range(256))
    store[every_byte] = every_byte * 3
    assert store[every_byte] == every_byte * 3
    store[b"nul\0in\0key"] = b"\0\0value\0"
    assert store[b"nul\0in\0key"] == b"\0\0value\0"
    assert b"nul" not in store  # a key is its bytes, not a C string
    store["naïve ключ 鍵 🔑"] = "värde 値 ✓"
    assert store["naïve ключ 鍵 🔑".encode()] == "värde 値 ✓".encode()
    assert "naïve ключ 鍵 🔑".encode() in list(store)
    # str keys and their UTF-8 bytes are the same key.
    store["é"] = b"1"
    assert store[b"\xc3\xa9"] == b"1"
    with pytest.raises(UnicodeEncodeError):
        store["\udc80"] = b"lone surrogate"


def test_large_values(names):
    with kv.Store.create(names(), size="64M", max_value="4M") as s:
        for n in (4095, 4096, 4097, 65535, 65536, 1 << 20, 4 << 20):
            v = os.urandom(n)
            s["big"] = v
            assert s["big"] == v and s.get("big") == v
            assert s.gets("big")[0] == v
            assert s.get_many(["big"]) == {"big": v}


def test_noncontiguous_memoryview(store):
    with pytest.raises(BufferError):
        store["k"] = memoryview(b"abcdef")[::2]


def test_type_errors(store):
    for bad in (1, 1.5, None, object(), ["k"]):
        with pytest.raises(TypeError, match="key must be"):
            store[bad]
        with pytest.raises(TypeError, match="key must be"):
            store.get(bad)
        with pytest.raises(TypeError, match="key must be"):
            store.set(bad, "v")
        with pytest.raises(TypeError):
            bad in store
    for bad in (1, None, 2.5, object()):
        with pytest.raises(TypeError, match="value must be"):
            store["k"] = bad
        with pytest.raises(TypeError):
            store.set("k", bad)
    with pytest.raises(TypeError):
        store.get()
    with pytest.raises(TypeError):
        store.get("a", "b", "c")
    with pytest.raises(TypeError, match="unexpected keyword"):
        store.get("a", dflt=1)
    with pytest.raises(TypeError, match="multiple values"):
        store.get("a", None, default=1)
    with pytest.raises(TypeError):
        store.set("k")
    with pytest.raises(TypeError):
        store.set("k", "v", 5)  # ttl is keyword-only
    with pytest.raises(TypeError, match="ttl"):
        store.set("k", "v", ttl="5")
    with pytest.raises(TypeError, match="delta"):
        store.incr("n", 1.5)
    with pytest.raises(TypeError, match="version"):
        store.cas("k", "v", "1")
    with pytest.raises(TypeError):
        store.get_many("abc")  # a str is one key, not keys
    with pytest.raises(TypeError):
        store.get_many(5)
    with pytest.raises(TypeError):
        store.set_many(5)
    with pytest.raises(TypeError):
        store.keys(5)


# --- get, set, delete ----------------------------------------------------------

def test_get(store):
    assert store.get("k") is None
    sentinel = object()
    assert store.get("k", sentinel) is sentinel
    assert store.get("k", default=b"d") == b"d"
    store["k"] = "v"
    assert store.get("k") == b"v" and store.get(key="k") == b"v"


def test_set_flags(store):
    assert store.set("k", "1") is True
    assert store.set("k", "2", nx=True) is False
    assert store["k"] == b"1"
    assert store.set("new", "n", nx=True) is True
    assert store.set("absent", "x", xx=True) is False
    assert "absent" not in store
    assert store.set("k", "3", xx=True) is True and store["k"] == b"3"
    with pytest.raises(ValueError, match="nx and xx"):
        store.set("k", "4", nx=True, xx=True)
    assert store.set(key="kw", value="ok") is True and store["kw"] == b"ok"


def test_delete(store):
    assert store.delete("k") is False
    store["k"] = "v"
    assert store.delete("k") is True
    assert store.delete(b"k") is False


# --- TTLs ----------------------------------------------------------------------

def test_ttl(store):
    store["forever"] = "x"
    assert store.ttl("forever") is None
    store.set("int", "x", ttl=100)
    assert 99 < store.ttl("int") <= 100
    store.set("float", "x", ttl=2.5)
    assert 2.4 < store.ttl("float") <= 2.5
    store.set("tiny", "x", ttl=0.0001)  # rounds up to 1 ms, never "forever"
    try:
        left = store.ttl("tiny")
    except KeyError:
        left = 0.0  # the millisecond passed: it expired, as it should
    assert left is not None and left <= 0.001
    with pytest.raises(KeyError):
        store.ttl("absent")
    for bad in (0, -1, 0.0, -0.5):
        with pytest.raises(ValueError, match="greater than 0"):
            store.set("k", "v", ttl=bad)
    with pytest.raises(ValueError):
        store.set("k", "v", ttl=float("nan"))
    with pytest.raises(OverflowError):
        store.set("k", "v", ttl=float("inf"))
    with pytest.raises(OverflowError):
        store.set("k", "v", ttl=1 << 64)
    store.set("k", "v", ttl=None)
    assert store.ttl("k") is None


def test_expiry(store):
    store.set("short", "gone soon", ttl=0.5)  # room for a stalled VM
    assert store["short"] == b"gone soon"
    time.sleep(0.7)
    assert store.get("short") is None and "short" not in store
    with pytest.raises(KeyError):
        store["short"]


# --- incr, decr ----------------------------------------------------------------

def test_incr_decr(store):
    assert store.incr("n") == 1
    assert store.incr("n", 41) == 42
    assert store.incr("n", delta=-2) == 40
    assert store.decr("n") == 39
    assert store.decr("n", 40) == -1
    assert store["n"] == b"-1"
    assert store.decr("fresh", 5) == -5
    store["text"] = "abc"
    with pytest.raises(kv.Error) as e:
        store.incr("text")
    assert e.value.name == "KV_ENOTNUM" and type(e.value) is kv.Error
    store["max"] = str(2 ** 63 - 1)
    with pytest.raises(kv.Error) as e:
        store.incr("max")
    assert e.value.name == "KV_EOVERFLOW"
    assert store["max"] == str(2 ** 63 - 1).encode()  # unchanged
    with pytest.raises(OverflowError):
        store.incr("n", 2 ** 63)
    with pytest.raises(OverflowError):
        store.decr("n", -(2 ** 63))
    # incr keeps the TTL.
    store.set("t", "5", ttl=100)
    assert store.incr("t") == 6 and store.ttl("t") is not None


# --- versions and compare-and-swap ------------------------------------------------

def test_gets_cas(store):
    with pytest.raises(KeyError):
        store.gets("k")
    store["k"] = "v1"
    value, version = store.gets("k")
    assert value == b"v1" and isinstance(version, int)
    assert store.cas("k", "v2", version) is True
    assert store["k"] == b"v2"
    assert store.cas("k", "v3", version) is False  # stale version
    assert store["k"] == b"v2"
    _, v2 = store.gets("k")
    assert v2 != version
    assert store.cas("k", "v3", v2, ttl=50) is True
    assert 49 < store.ttl("k") <= 50
    store.delete("k")
    assert store.cas("k", "v4", v2) is False and "k" not in store
    with pytest.raises(OverflowError):
        store.cas("k", "v", -1)


# --- batches ------------------------------------------------------------------------

def test_get_many(store):
    assert store.get_many([]) == {}
    data = {b"k%d" % i: b"v%d" % i for i in range(100)}
    store.set_many(data)
    got = store.get_many(list(data) + [b"absent"])
    assert got == data
    # Keys come back as given; bytearray and memoryview as bytes.
    store["s"] = "str"
    got = store.get_many(["s", b"k1", bytearray(b"k2"), memoryview(b"k3"),
                          "nope"])
    assert got == {"s": b"str", b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}
    # Any iterable; a generator too.
    assert store.get_many(b"k%d" % i for i in range(3)) == {
        b"k0": b"v0", b"k1": b"v1", b"k2": b"v2"}
    # Values larger than the batch's scratch room.
    store["big"] = b"x" * 100000
    assert store.get_many(["big", "s"]) == {"big": b"x" * 100000,
                                            "s": b"str"}
    # Every size, across batches: in the first batch's room, read again
    # in a second batch, or on their own (64 KiB and more).
    sized = {b"z%d" % i: os.urandom(n) for i, n in enumerate(
        [0, 1, 511, 512, 513, 600, 4096, 5000, 65535, 65536, 70000] * 7)}
    store.set_many(sized)
    assert store.get_many(list(sized) + [b"nope"] * 5) == sized
    with pytest.raises(kv.KeyTooLarge):
        store.get_many(["ok", b""])
    with pytest.raises(TypeError):
        store.get_many([1])


def test_set_many(store):
    store.set_many({"a": "1", b"b": bytearray(b"2")})
    store.set_many([("c", "3"), (b"d", b"4")])
    store.set_many(((b"e%d" % i, b"%d" % i) for i in range(300)), ttl=60)
    assert store["a"] == b"1" and store["b"] == b"2"
    assert store["c"] == b"3" and store["d"] == b"4"
    assert store["e299"] == b"299" and 59 < store.ttl("e0") <= 60
    assert store.ttl("a") is None
    assert store.set_many({}) is None

    class Mapping:
        def keys(self):
            return ["m"]

        def __getitem__(self, k):
            return "mapped"
    store.set_many(Mapping())
    assert store["m"] == b"mapped"
    with pytest.raises(ValueError, match="pairs"):
        store.set_many([("a", "b", "c")])
    with pytest.raises(TypeError):
        store.set_many([("a", 1)])
    # On an error the puts before it stay done.
    with pytest.raises(kv.KeyTooLarge):
        store.set_many([("before", "1"), (b"", "x"), ("after", "2")])
    with pytest.raises(kv.KeyTooLarge):
        store.set_many([("p%d" % i, "v") for i in range(100)] + [(b"", "x")])
    assert store["p99"] == b"v"


# --- keys, iteration, flush ------------------------------------------------------------

def test_keys_and_glob(store):
    for k in (b"session:1", b"session:22", b"user:1", b"user:x", b"a*b",
              b"bin\0key", "ключ".encode()):
        store[k] = "v"
    assert sorted(store.keys()) == sorted(store)
    assert sorted(store.keys("session:*")) == [b"session:1", b"session:22"]
    assert sorted(store.keys(b"user:?")) == [b"user:1", b"user:x"]
    assert store.keys("user:[0-9]") == [b"user:1"]
    assert store.keys("user:[!0-9]") == [b"user:x"]
    assert store.keys("a\\*b") == [b"a*b"]
    assert store.keys("bin?key") == [b"bin\0key"]
    assert store.keys("клю*") == ["ключ".encode()]
    assert len(store.keys("*")) == 7 and len(store.keys(None)) == 7
    assert store.keys("zzz*") == []
    with pytest.raises(ValueError, match="NUL"):
        store.keys("a\0")


def test_iteration_many_keys(store):
    want = {b"key:%05d" % i for i in range(5000)}
    store.set_many((k, k) for k in want)
    it = iter(store)
    assert iter(it) is it
    got = list(it)
    assert len(got) == len(want) and set(got) == want
    with pytest.raises(StopIteration):
        next(it)
    # Changing the store while iterating is allowed: a key present all
    # along is seen exactly once; keys added or removed meanwhile may or
    # may not be seen, but never twice.
    seen, deleted = [], set()
    for i, k in enumerate(store):
        seen.append(k)
        if i % 10 == 0:
            store[b"new:%d" % i] = "x"
        if i % 7 == 0:
            d = b"key:%05d" % (i * 3 % 5000)
            store.delete(d)
            deleted.add(d)
    assert len(seen) == len(set(seen))
    assert want - deleted <= set(seen)


def test_flush(store):
    store.set_many({"k%d" % i: "v" for i in range(50)})
    assert store.flush() == 50
    assert len(store) == 0 and store.flush() == 0


def test_resize(store):
    """The store grows in place; another handle follows by itself, and
    the keys stay."""
    store.set_many({"k%d" % i: "v%d" % i for i in range(100)})
    name = store.name
    with kv.Store(name, readonly=True) as other:
        assert other["k5"] == b"v5"
        store.resize("32M")
        assert store.stats()["map_size"] == 32 << 20
        assert other.stats()["map_size"] == 32 << 20
        assert other.stats()["resizes"] == 1
        assert other["k99"] == b"v99" and len(other) == 100
    store.resize(32 << 20)  # the same size: nothing to do
    store.resize("16M")  # and shrinks, the keys moving down
    assert other_keys_ok(store, 100)
    store.set_many({"big%d" % i: b"x" * 100000 for i in range(40)})
    with pytest.raises(kv.Error) as e:
        store.resize("2M")  # too small for what it holds
    assert e.value.name == "KV_EFULL"
    assert store.stats()["map_size"] == 16 << 20
    assert other_keys_ok(store, 100) and store["big39"] == b"x" * 100000
    with pytest.raises(ValueError):
        store.resize("lots")
    assert store.check() == []


def other_keys_ok(store, n):
    return all(store["k%d" % i] == b"v%d" % i for i in range(n))


# --- stats, check --------------------------------------------------------------------

def test_stats(store):
    store["k"] = "v"
    store["k"]
    store.get("absent")
    st = store.stats()
    for field in ("format_version", "max_key", "max_value", "map_size",
                  "items", "puts", "deletes", "hits", "misses", "buckets",
                  "evictions", "probe_hist", "daemon_pid", "data_used"):
        assert field in st
    assert st["items"] == 1 and st["puts"] == 1 and st["max_key"] == kv.MAX_KEY
    assert st["hits"] >= 1 and st["misses"] >= 1
    assert len(st["probe_hist"]) == 8 and sum(st["probe_hist"]) == 1
    assert st["map_size"] == 8 << 20


def test_check(store, names):
    store.set_many({"k%d" % i: "v" * i for i in range(200)})
    assert store.check() == []
    with kv.Store(store.name, readonly=True) as r:
        assert r.check() == []


# --- readonly -----------------------------------------------------------------------------

def test_readonly(store):
    store["k"] = "v"
    with kv.Store(store.name, readonly=True) as r:
        assert r["k"] == b"v" and r.get_many(["k"]) == {"k": b"v"}
        assert r.keys() == [b"k"] and len(r) == 1 and r.ttl("k") is None
        for call in (lambda: r.set("k", "x"), lambda: r.delete("k"),
                     lambda: r.incr("n"), lambda: r.flush(),
                     lambda: r.set_many({"a": "b"}),
                     lambda: r.cas("k", "x", 1)):
            with pytest.raises(kv.ReadOnly) as e:
                call()
            assert isinstance(e.value, PermissionError)
            assert e.value.name == "KV_ERDONLY"
        with pytest.raises(kv.ReadOnly):
            r["k"] = "x"
        with pytest.raises(kv.ReadOnly):
            del r["k"]
    assert store["k"] == b"v"


# --- threads, pickling, docs ---------------------------------------------------------

def test_threads_share_a_store(store):
    errors = []

    def work(t):
        try:
            for i in range(2000):
                k = b"t%d:%d" % (t, i % 50)
                store[k] = b"%d" % i
                assert store[k] == b"%d" % i  # only this thread writes k
                store.incr("shared")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store["shared"] == b"8000"


def test_close_while_other_threads_write(names):
    # close() from one thread while others are inside calls that released
    # the GIL: they finish, later calls raise ValueError, nothing crashes.
    name = names()
    s = kv.Store.create(name, size="16M")
    outcomes = []
    deadline = time.monotonic() + 30

    def writer():
        n = 0
        try:
            while time.monotonic() < deadline:
                s.set(b"w%d" % (n % 100), b"x" * 50000)
                n += 1
            outcomes.append("never closed")
        except ValueError:
            outcomes.append("closed")
        except Exception as e:  # pragma: no cover
            outcomes.append(e)
    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    s.close()
    for t in threads:
        t.join()
    assert outcomes == ["closed"] * 3
    with kv.Store(name) as t:
        assert t.check() == []


def test_closed_by_python_code_mid_call(names):
    """Python code a call runs (a key's __hash__, a mapping's keys())
    may close the store: the call finishes or raises ValueError, and
    nothing is used after it was freed."""
    s = kv.Store.create(names(), size="8M")
    s.set_many({b"a": b"1", b"b": b"2" * 100000})

    class Closing(bytes):
        def __hash__(self):
            s.close()
            return bytes.__hash__(self)
    got = s.get_many([Closing(b"a"), b"b", Closing(b"a")])
    assert got == {b"a": b"1", b"b": b"2" * 100000} and s.closed

    s = kv.Store(s.name)

    class Mapping:
        def keys(self):
            s.close()
            return [b"k"]

        def __getitem__(self, k):
            return b"v"
    with pytest.raises(ValueError, match="closed"):
        s.set_many(Mapping())
    s = kv.Store(s.name)

    def pairs():
        yield b"x", b"1"
        s.close()
        yield b"y", b"2"
    with pytest.raises(ValueError, match="closed"):
        s.set_many(pairs())
    with kv.Store(s.name) as t:
        assert t.check() == [] and "y" not in t


def test_pickle(store):
    store["k"] = "v"
    again = pickle.loads(pickle.dumps(store))
    try:
        assert again is not store and again.name == store.name
        assert again["k"] == b"v" and not again.readonly
    finally:
        again.close()
    with kv.Store(store.name, readonly=True) as r:
        ro = pickle.loads(pickle.dumps(r))
        assert ro.readonly
        ro.close()


def test_docstrings():
    assert kv.__doc__ and "Store" in kv.__doc__
    assert kv.__version__.count(".") == 2
    for name in ("get", "set", "delete", "incr", "decr", "ttl", "gets", "cas",
                 "get_many", "set_many", "keys", "flush", "stats", "check",
                 "close", "create"):
        fn = getattr(kv.Store, name)
        assert fn.__doc__ and len(fn.__doc__) > 40, name
        inspect.signature(fn)  # help() shows the real parameters
    for cls in (kv.Error, kv.StoreNotFound, kv.PermissionDenied, kv.ReadOnly,
                kv.KeyTooLarge, kv.ValueTooLarge, kv.StoreFull, kv.Busy,
                kv.Corrupt, kv.VersionMismatch):
        assert cls.__doc__, cls
    text = pydoc.render_doc(kv.Store, renderer=pydoc.plaintext)
    assert "mapping of bytes keys" in text
    assert "get_many(self, keys, /)" in text
    assert str(inspect.signature(kv.Store)) == "(name=None, *, readonly=False)"
    assert str(inspect.signature(kv.Store.set)) == \
        "(self, /, key, value, *, ttl=None, nx=False, xx=False)"
    assert str(inspect.signature(kv.destroy)) == "(name, /)"
    assert kv.destroy.__doc__


def test_stub_matches_module():
    """kv.pyi names everything the module has, and nothing else."""
    import ast
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "kv.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    top = {n.name for n in tree.body
           if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    top |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign)
            for t in [n.target]}
    public = {n for n in dir(kv) if not n.startswith("_")} | {"__version__"}
    assert top == public
    store_cls = next(n for n in tree.body
                     if isinstance(n, ast.ClassDef) and n.name == "Store")
    stubbed = {n.name for n in store_cls.body
               if isinstance(n, ast.FunctionDef)}
    real = {n for n in dir(kv.Store)
            if not n.startswith("_") or n in ("__getitem__", "__setitem__",
                                              "__delitem__", "__contains__",
                                              "__len__", "__iter__",
                                              "__enter__", "__exit__",
                                              "__init__")}
    assert real - {"name", "readonly", "closed"} <= stubbed


def test_install_dir_is_on_sys_path(build_dir):
    """`meson install` puts the module where this python looks: on Debian
    /usr/local/lib/python3.X/dist-packages (prefix /usr/local), which is
    not meson's own default."""
    with open(os.path.join(build_dir, "meson-info",
                           "intro-installed.json")) as f:
        installed = json.load(f)
    dest = [d for src, d in installed.items()
            if os.path.basename(src).startswith("kv.cpython")]
    assert len(dest) == 1
    where = os.path.dirname(dest[0])
    stub = os.path.join(where, "kv.pyi")
    assert stub in installed.values()
    if where.startswith(("/usr/local/", "/usr/lib/")):
        assert where in sys.path, (where, sys.path)


def test_sanitizer_runtime_when_asked():
    """In the ASan build the module is instrumented and the runtime is in
    this process (preloaded by meson test): the suite never passes there
    without ASan watching."""
    if not os.environ.get("KV_TEST_ASAN"):
        return
    with open("/proc/self/maps") as f:
        assert any("libasan" in line for line in f)
    assert os.path.realpath(kv.__file__).startswith(
        os.path.realpath(os.environ["KV_TEST_BUILD_DIR"]))
