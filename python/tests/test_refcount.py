"""A million calls leak no reference and no memory.

Each test warms up, then compares, before and after a long run of calls:
the reference counts of every object passed in or handed back, the number
of memory blocks Python has allocated (sys.getallocatedblocks: one leaked
object per call would add a million), and the resident set size (for
memory the module allocates with malloc). Under ASan the resident set
grows by design (freed memory waits in a quarantine), so there only the
first two are compared."""
import gc
import os
import sys

import kv

MILLION = 1000000


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Watch:
    """Counts to compare before and after a run of calls."""

    def __init__(self, *objs):
        self.objs = objs

    def snapshot(self):
        gc.collect()
        return ([sys.getrefcount(o) for o in self.objs],
                sys.getallocatedblocks(), rss_bytes())

    def run(self, body, n):
        body(1000)  # warm up: caches, free lists, the first exceptions
        refs0, blocks0, rss0 = self.snapshot()
        body(n)
        refs1, blocks1, rss1 = self.snapshot()
        assert refs1 == refs0, "reference counts moved: %r -> %r" % (refs0,
                                                                     refs1)
        assert blocks1 - blocks0 < 1000, "%d blocks more" % (blocks1 - blocks0)
        if not os.environ.get("KV_TEST_ASAN"):
            assert rss1 - rss0 < 8 << 20, "RSS grew by %d bytes" % (rss1 -
                                                                    rss0)


def test_reads(store):
    key, miss, default = b"key", b"absent", object()
    skey = "str-key-ü"
    value = b"v" * 100
    big = b"B" * 100000  # read through the second, allocating path
    store[key] = value
    store[skey] = value
    store["big"] = big
    w = Watch(store, key, miss, default, skey, value, big)

    def body(n):
        get = store.get
        for _ in range(n):
            store[key]
            get(key)
            get(miss, default)
            get(skey)
            key in store
            miss in store
    w.run(body, MILLION)

    def body2(n):
        for _ in range(n // 10):
            store["big"]
            store.gets(key)
            store.ttl(key)
            store.get_many([key, miss, skey, "big"])
            len(store)
    w.run(body2, MILLION)


def test_writes(store):
    key, value = b"wkey", bytearray(b"w" * 100)
    mv = memoryview(b"m" * 50)
    w = Watch(store, key, value, mv)

    def body(n):
        s = store.set
        for i in range(n):
            s(key, value)
            store[key] = mv
            s(key, value, ttl=60)
            s(key, value, nx=True)
            s(b"other", value, xx=True)
            store.incr(b"n")
            store.delete(b"n")
    w.run(body, MILLION // 4)

    def body2(n):
        for i in range(n // 100):
            _, ver = store.gets(key)
            store.cas(key, value, ver)
            store.cas(key, value, ver)
            store.set_many({key: value, b"k2": mv})
            store.set_many([(key, value)], ttl=5)
            store.keys()
            store.keys("w*")
            list(store)
            store.stats()
            store.check()
    w.run(body2, MILLION)


def test_errors(store):
    key, miss = b"key", b"absent"
    store[key] = "v"
    w = Watch(store, key, miss)

    def body(n):
        for _ in range(n):
            try:
                store[miss]
            except KeyError:
                pass
            try:
                store[1]
            except TypeError:
                pass
            try:
                store.incr(key)
            except kv.Error:
                pass
            try:
                store[b""] = key
            except kv.KeyTooLarge:
                pass
            try:
                del store[miss]
            except KeyError:
                pass
    w.run(body, MILLION // 10)

    def body2(n):
        for _ in range(n // 10):
            try:
                kv.Store("absent.%d" % os.getpid())
            except kv.StoreNotFound:
                pass
            with kv.Store(store.name, readonly=True) as r:
                r[key]
                try:
                    r[key] = key
                except kv.ReadOnly:
                    pass
    w.run(body2, MILLION // 100)
