#!/usr/bin/python3
"""py_bench.py - the kv Python module against what a Python program would
use instead: gets and sets per second, from one process and from several,
in one run, one table.

    /usr/bin/python3 bench/py_bench.py [--seconds S] [--procs N]
                                       [--keys 10000,1000000]
                                       [--no-install] [--build DIR]
                                       [--idle-wait S] [--csv FILE]
                                       [--only dict,kv,lmdb,...]

Systems (keys of 12 bytes, values of 100 bytes, distinct per key, uniform
random, all hits):

  dict            a plain dict in the process: the ceiling. With several
                  processes each has its own copy (fork), nothing shared.
  kv              kv.Store, s[k] and s[k] = v (the module built here, in
                  a release build).
  kv get_many     kv.Store.get_many of 64 keys per call (gets only).
  lmdb            python3-lmdb on /dev/shm (writemap, no sync), one read
                  transaction per get ("with env.begin() as t: t.get(k)",
                  as a reader that must see the latest writes does), one
                  write transaction per set.
  lmdb 1 txn      the same, all gets of a 4096-key chunk in one read
                  transaction (gets only; readers see no newer writes).
  memcached       pymemcache to a memcached of our own on a UNIX socket,
                  one request per round trip (sets with noreply=False).
  redis           redis-py to a redis-server of our own on a UNIX socket,
                  one request per round trip.
  diskcache       python3-diskcache (SQLite) in a directory on /dev/shm.

Several processes: N forked processes (default: one per CPU), each with
its own client, pinned to CPU i % ncpu, started together; the figure is
the sum of their rates. Servers are not pinned.

Installs what is missing (Debian packages, with apt-get, when root):
python3-lmdb, python3-pymemcache, python3-redis, python3-diskcache,
redis-server, memcached. Builds the module in a release build dir
(default build-pybench/). Starts its own redis-server and memcached on
UNIX sockets in a fresh temp dir, stops them by pid, removes everything
it made. Prints the table on stdout, progress on stderr.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEBIAN_PYTHON = "/usr/bin/python3"
PACKAGES = ["python3-lmdb", "python3-pymemcache", "python3-redis",
            "python3-diskcache", "redis-server", "memcached"]
KEY_FMT = b"k:%010d"  # 12 bytes
VALUE_SIZE = 100
ORDER_LEN = 1 << 18   # pre-drawn random keys, cycled
CHUNK = 4096          # ops between clock reads
BATCH = 64            # keys per get_many

T0 = time.monotonic()


def say(msg):
    print("[py-bench %4.0fs] %s" % (time.monotonic() - T0, msg),
          file=sys.stderr, flush=True)


def die(msg):
    print("py_bench.py: " + msg, file=sys.stderr)
    sys.exit(1)


# --- setup -----------------------------------------------------------------

def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       capture_output=True, text=True)
    return "ok installed" in r.stdout


def install_missing(allowed):
    if shutil.which("dpkg-query") is None:
        return
    missing = [p for p in PACKAGES if not installed(p)]
    if not missing:
        return
    if not allowed or os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("missing: %s (not installing: --no-install or not root)"
            % " ".join(missing))
        return
    say("installing: " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq",
                        "--no-install-recommends"] + missing, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        say("apt-get install failed: " + " ".join(missing))


def build_module(build):
    """Build kv in a release build dir; return the directory holding it."""
    quiet = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if os.path.exists(os.path.join(build, "build.ninja")):
        r = subprocess.run(["meson", "setup", "--reconfigure", build,
                            "--buildtype=release", "-Dtests=false",
                            "-Dbench=false"], **quiet)
    else:
        r = subprocess.run(["meson", "setup", build, ROOT,
                            "--buildtype=release", "-Dtests=false",
                            "-Dbench=false"], **quiet)
    if r.returncode != 0:
        die("meson setup %s failed:\n%s" % (build, r.stdout.decode()))
    r = subprocess.run(["meson", "introspect", build, "--targets"],
                       capture_output=True, text=True)
    import json
    target = next((t for t in json.loads(r.stdout)
                   if t["name"].startswith("kv.cpython")), None)
    if target is None:
        die("no kv module target in %s" % build)
    out = target["filename"][0]
    rel = os.path.relpath(out, build)
    r = subprocess.run(["ninja", "-C", build, rel], **quiet)
    if r.returncode != 0:
        die("building %s failed:\n%s" % (rel, r.stdout.decode()))
    return os.path.dirname(out)


def cpu_busy():
    """Percent of all CPUs busy over half a second."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t1, i1 = sample()
    time.sleep(0.5)
    t2, i2 = sample()
    return 0 if t2 == t1 else round(100 * (1 - (i2 - i1) / (t2 - t1)))


def wait_idle(limit):
    """Wait (up to limit seconds) for the machine to calm down: every
    figure here is a share of the CPUs."""
    waited = 0
    while waited < limit:
        b = cpu_busy()
        if b < 15:
            return
        if waited % 10 == 0:
            say("waiting for the machine to calm down (%d%% busy)" % b)
        waited += 0.5
    say("the machine stays busy; measuring anyway (figures will be noisy)")


def wait_socket(path, proc, what):
    for _ in range(200):
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    say("%s did not start" % what)
    return False


# --- the systems ---------------------------------------------------------------
#
# Each system loads the keys, then makes a client (in whichever process
# measures) and gives the loops their calls. A loop runs `ops` operations
# over the pre-drawn keys starting at `pos` and returns nothing; the
# harness reads the clock every CHUNK ops.

class System:
    name = "?"
    sets = True
    keep_loaded = False  # a variant measured next reads the same data
    in_process = True    # False: a client of a server

    def load(self, keys, values):
        raise NotImplementedError

    def client(self):
        raise NotImplementedError

    def get_loop(self, c, order):
        raise NotImplementedError

    def set_loop(self, c, order, vals):
        raise NotImplementedError

    def check(self, c, keys, values):
        for i in random.Random(7).sample(range(len(keys)), 100):
            v = self.fetch(c, keys[i])
            if v != values[i]:
                die("%s: wrong value for %r: %r" % (self.name, keys[i], v))

    def close_client(self, c):
        pass

    def unload(self):
        pass


class DictSystem(System):
    name = "dict (ceiling)"

    def load(self, keys, values):
        self.d = dict(zip(keys, values))

    def client(self):
        return self.d

    def fetch(self, c, k):
        return c[k]

    def get_loop(self, c, order):
        for k in order:
            c[k]

    def set_loop(self, c, order, vals):
        for k, v in zip(order, vals):
            c[k] = v

    def unload(self):
        self.d = None


class KvSystem(System):
    name = "kv"
    keep_loaded = True  # for kv get_many

    def __init__(self, kv):
        self.kv = kv
        self.store = "pybench.%d" % os.getpid()
        self.s = None

    def load(self, keys, values):
        # Room for the keys with an index at about half load.
        size = max(4 << 20, len(keys) * 256)
        self.s = self.kv.Store.create(self.store, size=size)
        for i in range(0, len(keys), 1000):
            self.s.set_many(zip(keys[i:i + 1000], values[i:i + 1000]))

    def client(self):
        return self.kv.Store(self.store)

    def fetch(self, c, k):
        return c[k]

    def get_loop(self, c, order):
        for k in order:
            c[k]

    def set_loop(self, c, order, vals):
        for k, v in zip(order, vals):
            c[k] = v

    def close_client(self, c):
        c.close()

    def unload(self):
        if self.s is not None:
            self.s.close()
            self.kv.destroy(self.store)
            self.s = None


class KvManySystem(KvSystem):
    name = "kv get_many(%d)" % BATCH
    sets = False
    keep_loaded = False

    def __init__(self, parent):
        self.parent, self.kv, self.store = parent, parent.kv, parent.store

    def load(self, keys, values):
        pass  # reads kv's store, loaded just before

    def get_loop(self, c, order):
        gm = c.get_many
        for i in range(0, len(order), BATCH):
            gm(order[i:i + BATCH])

    def unload(self):
        self.parent.unload()


class LmdbSystem(System):
    name = "lmdb"

    def __init__(self, lmdb, parent=None):
        self.lmdb = lmdb
        self.parent = parent
        self.one_txn = parent is not None
        if parent is None:
            self.keep_loaded = True  # for the one-transaction variant
        else:
            self.name = "lmdb 1 txn/%d gets" % CHUNK
            self.sets = False
        self.dir = None

    def open(self):
        return self.lmdb.open(self.dir, map_size=8 << 30, writemap=True,
                              sync=False, metasync=False, max_readers=256)

    def load(self, keys, values):
        if self.parent is not None:
            self.dir = self.parent.dir  # reads lmdb's, loaded just before
            return
        self.dir = tempfile.mkdtemp(prefix="kv-pybench-lmdb.", dir="/dev/shm")
        env = self.open()
        for i in range(0, len(keys), 10000):
            with env.begin(write=True) as t:
                for k, v in zip(keys[i:i + 10000], values[i:i + 10000]):
                    t.put(k, v)
        env.close()

    def client(self):
        return self.open()

    def fetch(self, c, k):
        with c.begin() as t:
            return t.get(k)

    def get_loop(self, c, order):
        if self.one_txn:
            with c.begin() as t:
                g = t.get
                for k in order:
                    g(k)
            return
        begin = c.begin
        for k in order:
            with begin() as t:
                t.get(k)

    def set_loop(self, c, order, vals):
        begin = c.begin
        for k, v in zip(order, vals):
            with begin(write=True) as t:
                t.put(k, v)

    def close_client(self, c):
        c.close()

    def unload(self):
        if self.parent is not None:
            self.parent.unload()
        elif self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


class MemcachedSystem(System):
    name = "memcached"
    in_process = False

    def __init__(self, pymemcache, sock):
        self.mod, self.sock = pymemcache, sock

    def client(self):
        from pymemcache.client.base import Client
        return Client(self.sock, default_noreply=False)

    def load(self, keys, values):
        c = self.client()
        c.flush_all()
        for i in range(0, len(keys), 1000):
            failed = c.set_many(dict(zip(keys[i:i + 1000],
                                         values[i:i + 1000])))
            if failed:
                die("memcached: %d keys not stored" % len(failed))
        c.close()

    def fetch(self, c, k):
        return c.get(k)

    def get_loop(self, c, order):
        g = c.get
        for k in order:
            g(k)

    def set_loop(self, c, order, vals):
        s = c.set
        for k, v in zip(order, vals):
            s(k, v, noreply=False)

    def close_client(self, c):
        c.close()


class RedisSystem(System):
    name = "redis"
    in_process = False

    def __init__(self, redis, sock):
        self.mod, self.sock = redis, sock

    def client(self):
        return self.mod.Redis(unix_socket_path=self.sock)

    def load(self, keys, values):
        c = self.client()
        c.flushall()
        for i in range(0, len(keys), 1000):
            p = c.pipeline(transaction=False)
            for k, v in zip(keys[i:i + 1000], values[i:i + 1000]):
                p.set(k, v)
            p.execute()
        c.close()

    def fetch(self, c, k):
        return c.get(k)

    def get_loop(self, c, order):
        g = c.get
        for k in order:
            g(k)

    def set_loop(self, c, order, vals):
        s = c.set
        for k, v in zip(order, vals):
            s(k, v)

    def close_client(self, c):
        c.close()


class DiskcacheSystem(System):
    name = "diskcache"

    def __init__(self, diskcache):
        self.mod, self.dir = diskcache, None

    def load(self, keys, values):
        self.dir = tempfile.mkdtemp(prefix="kv-pybench-dc.", dir="/dev/shm")
        c = self.client()
        for i in range(0, len(keys), 10000):
            with c.transact():
                for k, v in zip(keys[i:i + 10000], values[i:i + 10000]):
                    c.set(k, v)
        c.close()

    def client(self):
        return self.mod.Cache(self.dir, size_limit=16 << 30)

    def fetch(self, c, k):
        return c.get(k)

    def get_loop(self, c, order):
        g = c.get
        for k in order:
            g(k)

    def set_loop(self, c, order, vals):
        s = c.set
        for k, v in zip(order, vals):
            s(k, v)

    def close_client(self, c):
        c.close()

    def unload(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


# --- measuring -------------------------------------------------------------------

MIN_CPU = 0.9   # a figure whose processes got less CPU is measured again
TRIES = 3


def timed_once(loop, c, order, vals, seconds):
    """(ops per second, share of the wall time this process was on a CPU)
    of loop over order (cycled) for about `seconds`."""
    n = 0
    pos = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    deadline = t0 + seconds
    while True:
        part = order[pos:pos + CHUNK]
        if vals is None:
            loop(c, part)
        else:
            loop(c, part, vals[pos:pos + CHUNK])
        n += len(part)
        pos = (pos + CHUNK) % len(order)
        t = time.perf_counter()
        if t >= deadline:
            return n / (t - t0), (time.process_time() - c0) / (t - t0)


def timed(loop, c, order, vals, seconds):
    """The best of three runs of seconds/3 (a moment when another process
    took the CPU does not decide the figure), with its CPU share."""
    return max(timed_once(loop, c, order, vals, seconds / 3)
               for _ in range(3))


def run_procs(system, loop, order, v, seconds, procs, ncpu):
    """[(ops/s, CPU share)] of `procs` forked processes run together."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pids = []
    for i in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(go_w)
                os.close(res_r)
                os.sched_setaffinity(0, {i % ncpu})
                c = system.client()
                # Each process its own slice of the random order.
                mine = order[i * 7919 % len(order):] + order
                timed_once(loop, c, mine, v, min(0.2, seconds))
                os.read(go_r, 1)
                # Together, one run: the processes must overlap.
                rate, share = timed_once(loop, c, mine, v, seconds)
                system.close_client(c)
                os.write(res_w, b"%f %f\n" % (rate, share))
                code = 0
            except BaseException as e:
                os.write(res_w, b"error %r\n" % e)
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(go_r)
    os.close(res_w)
    time.sleep(0.5)  # let every child connect and warm up
    os.write(go_w, b"x" * procs)
    os.close(go_w)
    data = b""
    while True:
        part = os.read(res_r, 4096)
        if not part:
            break
        data += part
    os.close(res_r)
    for pid in pids:
        os.waitpid(pid, 0)
    lines = data.decode().splitlines()
    if len(lines) != procs or any(x.startswith("error") for x in lines):
        die("%s with %d processes failed: %s" % (system.name, procs,
                                                 data.decode().strip()))
    return [tuple(float(f) for f in x.split()) for x in lines]


def measure(system, op, order, vals, seconds, procs, ncpu, short):
    """Aggregate ops/s of `procs` processes (1: this one). A figure of an
    in-process system whose processes got less than MIN_CPU of their
    CPUs (another process ran) is measured again, up to TRIES times, the
    last try reported; one that stays short is added to `short`. Socket
    clients wait for their server, and writers in several processes for
    each other, so their CPU share says nothing: never measured again."""
    loop = system.get_loop if op == "get" else system.set_loop
    v = None if op == "get" else vals
    for attempt in range(TRIES):
        if procs == 1:
            c = system.client()
            try:
                timed_once(loop, c, order, v, min(0.2, seconds))  # warm up
                rate, share = timed(loop, c, order, v, seconds)
            finally:
                system.close_client(c)
            shares = [share]
        else:
            res = run_procs(system, loop, order, v, seconds, procs, ncpu)
            rate = sum(r for r, _ in res)
            shares = [sh for _, sh in res]
        # Writers in several processes wait for each other's lock: their
        # CPU share says nothing either.
        judged = system.in_process and (op == "get" or procs == 1)
        if not judged or min(shares) >= MIN_CPU:
            return rate
        if attempt + 1 < TRIES:
            say("%s %s x%d: %.0f%% of a CPU; again" % (
                system.name, op, procs, 100 * min(shares)))
            wait_idle(15)
    short.append("%s %s, %d proc%s (%.0f%% of a CPU)" % (
        system.name, op, procs, "" if procs == 1 else "s",
        100 * min(shares)))
    return rate


def fmt_rate(r):
    if r is None:
        return "-"
    if r >= 1e6:
        return "%.2f M" % (r / 1e6)
    return "%.0f k" % (r / 1e3)


def fmt_keys(n):
    return "%dk" % (n // 1000) if n < 1000000 else "%dM" % (n // 1000000)


# --- main ----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keys", default="10000,1000000")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-pybench"))
    ap.add_argument("--csv")
    ap.add_argument("--idle-wait", type=float, default=60)
    ap.add_argument("--only", help="comma-separated systems to run "
                    "(dict,kv,lmdb,memcached,redis,diskcache)")
    a = ap.parse_args()

    # Debian's python3-* packages are for /usr/bin/python3.
    if os.path.exists(DEBIAN_PYTHON) and \
            os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON):
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON] + sys.argv)

    install_missing(not a.no_install)
    say("building the kv module (release) in " + a.build)
    sys.path.insert(0, build_module(a.build))
    import kv

    ncpu = os.cpu_count() or 1
    only = set(a.only.split(",")) if a.only else None
    tmp = tempfile.mkdtemp(prefix="kv-pybench.")
    servers = []

    def stop_servers():
        for p in servers:
            if p.poll() is None:
                p.terminate()
        for p in servers:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        servers.clear()

    def cleanup(*_):
        stop_servers()
        shutil.rmtree(tmp, ignore_errors=True)
        for s in systems:
            try:
                s.unload()
            except Exception:
                pass
    systems = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

    try:
        systems.append(DictSystem())
        kvs = KvSystem(kv)
        systems += [kvs, KvManySystem(kvs)]
        try:
            import lmdb
            lm = LmdbSystem(lmdb)
            systems += [lm, LmdbSystem(lmdb, parent=lm)]
        except ImportError:
            say("lmdb: python3-lmdb is not installed")
        try:
            import pymemcache
            if shutil.which("memcached"):
                sock = os.path.join(tmp, "memcached.sock")
                user = ["-u", "root"] if os.geteuid() == 0 else []
                p = subprocess.Popen(["memcached", "-s", sock, "-a", "0700",
                                      "-m", "2048", "-t", str(ncpu),
                                      "-c", "256"] + user,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                servers.append(p)
                if wait_socket(sock, p, "memcached"):
                    say("memcached pid %d on %s" % (p.pid, sock))
                    systems.append(MemcachedSystem(pymemcache, sock))
            else:
                say("memcached: not installed")
        except ImportError:
            say("memcached: python3-pymemcache is not installed")
        try:
            import redis
            if shutil.which("redis-server"):
                sock = os.path.join(tmp, "redis.sock")
                p = subprocess.Popen(
                    ["redis-server", "--port", "0", "--unixsocket", sock,
                     "--unixsocketperm", "700", "--save", "",
                     "--appendonly", "no", "--dir", tmp,
                     "--logfile", os.path.join(tmp, "redis.log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                servers.append(p)
                if wait_socket(sock, p, "redis-server"):
                    say("redis-server pid %d on %s" % (p.pid, sock))
                    systems.append(RedisSystem(redis, sock))
            else:
                say("redis: redis-server is not installed")
        except ImportError:
            say("redis: python3-redis is not installed")
        try:
            import diskcache
            systems.append(DiskcacheSystem(diskcache))
        except ImportError:
            say("diskcache: python3-diskcache is not installed")
        if only:
            keep = {"dict": "dict", "kv": "kv", "lmdb": "lmdb",
                    "memcached": "memcached", "redis": "redis",
                    "diskcache": "diskcache"}
            systems = [s for s in systems
                       if any(s.name.startswith(keep.get(o, o)) for o in only)]

        wait_idle(a.idle_wait)
        busy_before = cpu_busy()
        rows = []
        short = []
        rng = random.Random(1)
        for n in [int(x) for x in a.keys.split(",")]:
            keys = [KEY_FMT % i for i in range(n)]
            blob = rng.randbytes(VALUE_SIZE * n)
            values = [blob[i * VALUE_SIZE:(i + 1) * VALUE_SIZE]
                      for i in range(n)]
            del blob
            order = [keys[i] for i in
                     (rng.randrange(n) for _ in range(ORDER_LEN))]
            vals = [rng.randbytes(VALUE_SIZE) for _ in range(256)] * \
                (ORDER_LEN // 256)
            for s in systems:
                say("%s: loading %s keys" % (s.name, fmt_keys(n)))
                t = time.monotonic()
                s.load(keys, values)
                if getattr(s, "parent", None) is None:  # variants: sets ran
                    c = s.client()
                    s.check(c, keys, values)
                    s.close_client(c)
                say("%s: loaded in %.1fs; measuring" % (s.name,
                                                       time.monotonic() - t))
                row = {"system": s.name, "keys": n}
                row["get1"] = measure(s, "get", order, vals, a.seconds, 1,
                                      ncpu, short)
                row["getN"] = measure(s, "get", order, vals, a.seconds,
                                      a.procs, ncpu, short) \
                    if a.procs > 1 else None
                if s.sets:
                    row["set1"] = measure(s, "set", order, vals, a.seconds, 1,
                                          ncpu, short)
                    row["setN"] = measure(s, "set", order, vals, a.seconds,
                                          a.procs, ncpu, short) \
                        if a.procs > 1 else None
                else:
                    row["set1"] = row["setN"] = None
                rows.append(row)
                if not s.keep_loaded:
                    s.unload()
        stop_servers()
        busy_after = cpu_busy()
        report(rows, a, ncpu, busy_before, busy_after, kv, short)
    finally:
        cleanup()


def report(rows, a, ncpu, busy_before, busy_after, kv, short):
    import platform
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print()
    print("kv Python module %s against dict, python3-lmdb, pymemcache + "
          "memcached, redis-py + Redis, diskcache" % kv.__version__)
    print("machine: %s, %d CPUs; busy before the run %d%%, after %d%%; "
          "Python %s" % (cpu, ncpu, busy_before, busy_after,
                         platform.python_version()))
    print("keys of 12 B, values of 100 B, uniform random, all hits; %gs per "
          "figure (1 proc: best of 3 runs); N = %d processes (forked, "
          "pinned, one client each)" % (a.seconds, a.procs))
    print()
    hdr = ("system", "keys", "get/s 1 proc", "get/s %d procs" % a.procs,
           "set/s 1 proc", "set/s %d procs" % a.procs)
    widths = (22, 5, 13, 14, 13, 14)
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(hdr, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        cells = (r["system"], fmt_keys(r["keys"]), fmt_rate(r["get1"]),
                 fmt_rate(r["getN"]), fmt_rate(r["set1"]),
                 fmt_rate(r["setN"]))
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths))
              + " |")
    print()

    def find(name, n):
        return next((r for r in rows if r["system"] == name and
                     r["keys"] == n), None)
    for n in sorted({r["keys"] for r in rows}):
        k, d, l1 = find("kv", n), find("dict (ceiling)", n), find("lmdb", n)
        lt = next((r for r in rows if r["system"].startswith("lmdb 1 txn")
                   and r["keys"] == n), None)
        if k and d:
            ratio = d["get1"] / k["get1"]
            print("%s keys: kv get is %.2fx slower than dict (goal <= 2x: "
                  "%s)" % (fmt_keys(n), ratio,
                           "PASS" if ratio <= 2 else "MISS"))
        if k and l1:
            ratio = k["get1"] / l1["get1"]
            print("%s keys: kv get is %.1fx python-lmdb, txn per get (goal "
                  ">= 3x: %s)" % (fmt_keys(n), ratio,
                                  "PASS" if ratio >= 3 else "MISS"))
        if k and lt:
            print("%s keys: kv get is %.1fx python-lmdb, %s" % (
                fmt_keys(n), k["get1"] / lt["get1"], lt["system"]))
    for x in short:
        print("note: %s after %d tries: another process ran; noisy" % (
            x, TRIES))
    if busy_before >= 15 or busy_after >= 15:
        print("note: other processes were using the CPUs around the run "
              "(%d%% before, %d%% after): the figures are noisy"
              % (busy_before, busy_after))
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("system,keys,get_1,get_n,set_1,set_n,procs\n")
            for r in rows:
                f.write("%s,%d,%s,%s,%s,%s,%d\n" % (
                    r["system"], r["keys"],
                    *["" if r[x] is None else "%.0f" % r[x]
                      for x in ("get1", "getN", "set1", "setN")], a.procs))
        print("wrote " + a.csv)


if __name__ == "__main__":
    main()
