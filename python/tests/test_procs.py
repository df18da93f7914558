"""Processes: a Store opened before fork() keeps working in the child,
under multiprocessing's fork and spawn start methods and with os.fork();
readers and writers in several processes at once see only whole values."""
import multiprocessing
import os
import queue
import threading
import time

import pytest

import kv
import workers

NWRITERS = 2
NREADERS = 2
NKEYS = 200
SECONDS = 1.5


def collect(results, expected, procs, timeout=120):
    """Wait for `expected` reports; fail on any child's error."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected:
        try:
            r = results.get(timeout=0.5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            assert not dead, "child died: %r" % [(p.pid, p.exitcode)
                                                 for p in dead]
            assert time.monotonic() < deadline, "children took too long"
            continue
        assert r[0] != "error", "child %d: %s" % (r[1], r[2])
        got.append(r)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, (p.pid, p.exitcode)
    return got


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_readers_and_writers(names, method):
    ctx = multiprocessing.get_context(method)
    name = names(method)
    s = kv.Store.create(name, size="32M")
    results = ctx.Queue()
    # The Store itself goes to every child: inherited across fork (the
    # child attaches again on its first call), pickled for spawn (it
    # attaches again by name).
    procs = [ctx.Process(target=workers.run_child,
                         args=(workers.write, s, w, NKEYS, SECONDS, results))
             for w in range(NWRITERS)]
    procs += [ctx.Process(target=workers.run_child,
                          args=(workers.read, s, NWRITERS, NKEYS, SECONDS,
                                results))
              for _ in range(NREADERS)]
    # And one that attaches by name, read-only.
    procs.append(ctx.Process(target=workers.attach_and_read,
                             args=(name, NWRITERS, NKEYS, SECONDS, results)))
    for p in procs:
        p.start()
    # The parent reads too, meanwhile.
    workers.read(s, NWRITERS, NKEYS, SECONDS, results)
    got = collect(results, len(procs) + 1, procs)

    readers = [r for r in got if r[0] == "reader"]
    assert sum(r[2] for r in readers) > 0
    # Every writer's last value of every key it wrote is what is stored.
    for _, w, _, last in (r for r in got if r[0] == "writer"):
        assert last, "writer %d wrote nothing" % w
        for k, seq in last.items():
            assert workers.check_value(k, s[k]) == (w, seq)
    assert s.check() == []
    s.close()


def mappings_of(name):
    """Start addresses of this process's mappings of store name."""
    with open("/proc/self/maps") as f:
        return [line.split("-")[0] for line in f
                if line.rstrip().endswith("/dev/shm/kv." + name)]


def test_os_fork(store):
    store["before"] = "fork"
    pids = []
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The first call attaches again and drops the inherited
                # mapping: one mapping still, at a new address.
                inherited = mappings_of(store.name)
                assert store["before"] == b"fork"
                now = mappings_of(store.name)
                assert len(inherited) == 1 and len(now) == 1
                assert now != inherited
                store["child%d" % i] = str(os.getpid())
                assert store.incr("children") >= 1
                # A grandchild, too.
                gpid = os.fork()
                if gpid == 0:
                    gcode = 1
                    try:
                        store["grandchild%d" % i] = "yes"
                        gcode = 0
                    finally:
                        os._exit(gcode)
                _, st = os.waitpid(gpid, 0)
                assert os.waitstatus_to_exitcode(st) == 0
                store.close()  # the child's copy only
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0
    # The parent's Store is untouched by the children closing theirs.
    assert store["children"] == b"3"
    for i, pid in enumerate(pids):
        assert store["child%d" % i] == str(pid).encode()
        assert store["grandchild%d" % i] == b"yes"
    store["after"] = "still works"
    assert store.check() == []


def test_fork_while_threads_write(store):
    """fork() while other threads are inside puts without the GIL: the
    child's first call attaches afresh and works."""
    stop = threading.Event()

    def writer(t):
        n = 0
        while not stop.is_set():
            store.set(b"t%d" % t, b"%d" % n + b"x" * 30000)
            n += 1
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    store["forked%d" % i] = "ok"
                    assert store["forked%d" % i] == b"ok"
                    assert store.get(b"t0") is not None
                    code = 0
                finally:
                    os._exit(code)
            _, st = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(st) == 0
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(store["forked%d" % i] == b"ok" for i in range(10))
    assert store.check() == []


def test_pool_fork_and_spawn(names):
    name = names()
    with kv.Store.create(name, size="8M") as s:
        s.set_many({b"k%d" % i: b"%d" % (i * i) for i in range(1000)})
        for method in ("fork", "spawn"):
            with multiprocessing.get_context(method).Pool(2) as pool:
                sums = pool.starmap(_square_sum, [(s, 0, 500), (s, 500, 1000)])
            assert sum(sums) == sum(i * i for i in range(1000))


def _square_sum(store, lo, hi):
    return sum(int(store[b"k%d" % i]) for i in range(lo, hi))


def test_parent_counts_survive_a_child(store):
    """A child that attaches again and closes the handle it inherited must
    leave the parent's reader counters alone: the parent's later gets
    still show in stats()."""
    store["k"] = "v"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            store["k"]
            store.close()
            code = 0
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(st) == 0
    before = store.stats()["hits"]
    for _ in range(100):
        store["k"]
    assert store.stats()["hits"] - before >= 100
