"""Code the multi-process tests run in child processes. A module of its
own so that children started with "spawn" can import it by name.

Every value checks itself: it names its key, its writer and sequence
number, and carries a payload of a size that varies (so items move
between size classes) made from them. A reader that sees torn bytes,
another key's bytes or a half-written value notices.
"""
import os
import random
import struct
import time

import kv

HDR = struct.Struct("<HIQI")  # key length, writer, sequence, payload length


def make_value(key, writer, seq, size):
    """The one value (key, writer, seq, size) can have: a header, the key,
    and a payload that repeats the writer and sequence number."""
    unit = struct.pack("<QI", seq, writer)
    payload = (unit * (size // len(unit) + 1))[:size]
    return HDR.pack(len(key), writer, seq, size) + key + payload


def check_value(key, value):
    """(writer, seq) of a sound value for key; raises AssertionError. A
    value is sound when it is exactly what make_value makes from its own
    header, so a torn value (parts of two puts) or another key's value
    never passes."""
    assert len(value) >= HDR.size, "short value %r" % value[:40]
    klen, writer, seq, size = HDR.unpack_from(value)
    assert value[HDR.size:HDR.size + klen] == key, "value of another key"
    assert value == make_value(key, writer, seq, size), \
        "torn value for %r" % key
    return writer, seq


def writer_keys(writer, nkeys):
    return [b"w%d:%d" % (writer, i) for i in range(nkeys)]


def write(store, writer, nkeys, seconds, results):
    """Put self-checking values into this writer's keys for a while;
    report the last sequence number of each key."""
    rng = random.Random(writer)
    keys = writer_keys(writer, nkeys)
    last = {}
    seq = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            seq += 1
            k = rng.choice(keys)
            size = rng.choice((8, 100, 700, 3000, 20000))
            store.set(k, make_value(k, writer, seq, size))
            last[k] = seq
    results.put(("writer", writer, os.getpid(), last))


def read(store, nwriters, nkeys, seconds, results):
    """Get random keys of every writer for a while and check each value."""
    rng = random.Random(os.getpid())
    keys = [k for w in range(nwriters) for k in writer_keys(w, nkeys)]
    hits = misses = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            k = rng.choice(keys)
            v = store.get(k)
            if v is None:
                misses += 1
            else:
                check_value(k, v)
                hits += 1
        batch = rng.sample(keys, 16)
        for k, v in store.get_many(batch).items():
            check_value(k, v)
            hits += 1
    results.put(("reader", os.getpid(), hits, misses))


def run_child(target, store, *args):
    """Run target in a child; a failure is reported, not lost."""
    results = args[-1]
    try:
        target(store, *args)
    except BaseException as e:  # reported to the parent
        results.put(("error", os.getpid(), repr(e)))
        raise


def attach_and_read(name, nwriters, nkeys, seconds, results):
    """A child that attaches by name itself (the usual spawn pattern)."""
    with kv.Store(name, readonly=True) as s:
        run_child(read, s, nwriters, nkeys, seconds, results)
