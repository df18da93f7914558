"""netlib.py - what the net suite's tests share: starting kvd (and, for the
tests that compare, Debian's memcached) on a free loopback port or a UNIX
socket, a raw memcached text-protocol connection, the kv CLI, and the
rules every test follows:

  - each test is one process, run by meson with a timeout, and every
    socket it opens has a timeout of its own, so nothing waits forever;
  - it starts its own servers, with store names that carry its pid, and
    a finally (Harness.close) stops each by pid and destroys each store;
  - kvd must stop cleanly on SIGTERM: exit status 0 and nothing from a
    sanitizer on its stderr (in the ASan build a leak found at exit
    fails the test here);
  - a tool that is missing makes the test exit 77 (meson's "skipped")
    with the reason; scripts/deps.sh --test installs them all.

Standard library only (pymemcache is imported by the one test that uses
it).

To check a test itself rather than kvd, run it with KV_NET_TARGET=memcached
(and KV_BIN/KVD_BIN set): its network half then runs against Debian's
memcached, and the checks through the kv CLI are left out.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77

# Debian's python3-* modules live here; a python3 found first on PATH
# (a virtualenv, a python built by hand) may not look there.
DEBIAN_DIST = '/usr/lib/python3/dist-packages'


def log(*args):
    print(*args, flush=True)


def skip(reason):
    log('SKIP: ' + reason)
    sys.exit(SKIP)


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


def eq(got, want, what):
    if got != want:
        raise TestFailure('%s:\n  want %r\n  got  %r' % (what, want, got))


def find_tool(*names):
    """The path of the first of NAMES found on PATH or in /usr/sbin, or
    None."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path='/usr/sbin:/sbin')
        if path:
            return path
    return None


def need_tool(*names):
    """The path of the first of NAMES found (Debian renames some tools:
    libmemcached-tools has memccat for memcat), or exit 77."""
    path = find_tool(*names)
    if not path:
        skip('%s is not installed (scripts/deps.sh --test installs it)'
             % ' or '.join(names))
    return path


def import_pymemcache():
    try:
        import pymemcache  # noqa: F401
    except ImportError:
        if os.path.isdir(DEBIAN_DIST) and DEBIAN_DIST not in sys.path:
            sys.path.append(DEBIAN_DIST)
        try:
            import pymemcache  # noqa: F401,F811
        except ImportError:
            skip('pymemcache is not installed (Debian: python3-pymemcache)')
    import pymemcache.client.base
    return pymemcache


def binaries():
    kv = os.environ.get('KV_BIN')
    kvd = os.environ.get('KVD_BIN')
    if not kv or not kvd:
        skip('KV_BIN and KVD_BIN are not set (run under meson test)')
    return kv, kvd


def free_port():
    """A loopback TCP port that was free a moment ago. Only for servers
    that cannot bind port 0 and report it (memcached, nutcracker): the
    caller retries with another if the server then fails to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(host, port, proc, deadline):
    """Wait until HOST:PORT accepts, or PROC exits, or DEADLINE passes.
    True when it accepts."""
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


SANITIZER_MARKS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                   'runtime error:', 'ThreadSanitizer', 'SUMMARY: ')


class Process:
    """A child started by a test: its stderr collected by a thread (so a
    chatty child never blocks on a full pipe), stopped by pid."""

    def __init__(self, name, argv, env=None, stdout=subprocess.DEVNULL):
        self.name = name
        self.argv = argv
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=stdout, stderr=subprocess.PIPE,
                                     env=env)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF
            self.cond.notify_all()

    def stderr(self):
        with self.cond:
            return '\n'.join(x for x in self.lines if x is not None)

    def wait_line(self, pattern, timeout):
        """The first match of regex PATTERN in a stderr line, waiting up
        to TIMEOUT seconds; None on timeout or EOF."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = 0
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    i += 1
                    if line is None:
                        return None
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after TIMEOUT. The exit status, or None
        when it had to be killed."""
        if self.proc.poll() is not None:
            self.reader.join(2)
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
            rc = None
        self.reader.join(2)
        return rc


class Harness:
    """What one test started: stopped and removed by close(), which every
    test calls in a finally. close() also checks that each kvd stopped
    cleanly, and raises TestFailure if one did not."""

    def __init__(self, name):
        self.name = name
        self.kv, self.kvd = binaries()
        self.procs = []       # Process, in start order
        self.kvds = []        # Kvd
        self.stores = []      # store names to destroy
        self.tmp = tempfile.mkdtemp(prefix='kv-net-%s-%d.' % (name, os.getpid()))
        self.seq = 0

    def store_name(self, tag=''):
        self.seq += 1
        return 'net-%s%s-%d-%d' % (self.name, tag, os.getpid(), self.seq)

    # --- kvd --------------------------------------------------------------

    def start_kvd(self, args=(), size='64M', listen=('127.0.0.1:0',),
                  store=None, wait=True):
        """Start kvd serving a new store on LISTEN (port 0: the port it
        logs). Returns a Kvd whose .port is the TCP port (if any)."""
        if os.environ.get('KV_NET_TARGET') == 'memcached':
            return self._memcached_as_kvd(args, listen)
        store = store or self.store_name()
        self.stores.append(store)
        argv = [self.kvd, '-s', store, '--size', size]
        for spec in listen:
            argv += ['--listen', spec]
        argv += list(args)
        proc = Process('kvd', argv)
        self.procs.append(proc)
        k = Kvd(self, proc, store, listen)
        self.kvds.append(k)
        if wait:
            k.wait_ready()
        return k

    def _memcached_as_kvd(self, args, listen):
        """KV_NET_TARGET=memcached: run the test's network half against
        Debian's memcached instead (kvd's options mapped to memcached's),
        to check the test itself. Store checks are left out (.store is
        None)."""
        margs = []
        args = list(args)
        while args:
            a = args.pop(0)
            v = args.pop(0) if a in ('--max-conns', '--auth-file', '--max-value',
                                     '--idle-timeout', '--threads') else None
            if a == '--max-conns':
                margs += ['-c', v]
            elif a == '--auth-file':
                margs += ['-Y', v]
            elif a == '--max-value':
                margs += ['-I', v]
            elif a == '--idle-timeout':
                margs += ['-o', 'idle_timeout=' + v]
        unix = [s[5:] for s in listen if s.startswith('unix:')]
        proc, port = self.start_memcached(margs, unix=unix[0] if unix and not
                                          [s for s in listen if not s.startswith('unix:')]
                                          else None)
        k = Kvd(self, proc, None, listen)
        k.port = port
        k.unix = unix[0] if port is None else None
        k.stopped = True  # memcached: no clean-exit check
        self.kvds.append(k)
        return k

    def kv_run(self, store, *args, input=None, timeout=20):
        """Run the kv CLI on STORE: (exit status, stdout bytes, stderr)."""
        r = subprocess.run([self.kv, '-s', store] + list(args), input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return r.returncode, r.stdout, r.stderr.decode('utf-8', 'replace')

    def kv_ok(self, store, *args, input=None):
        rc, out, err = self.kv_run(store, *args, input=input)
        if rc != 0:
            raise TestFailure('kv -s %s %s: exit %d: %s'
                              % (store, ' '.join(map(str, args)), rc, err))
        return out

    # --- memcached ----------------------------------------------------------

    def start_memcached(self, args=(), unix=None):
        """Debian's memcached on a free loopback port (or UNIX socket
        UNIX), for the tests that compare kvd with it. Returns
        (Process, port or None)."""
        exe = need_tool('memcached')
        user = ['-u', 'root'] if os.geteuid() == 0 else []
        for _ in range(5):
            if unix:
                port = None
                where = ['-s', unix, '-a', '0700']
            else:
                port = free_port()
                where = ['-l', '127.0.0.1', '-p', str(port)]
            argv = [exe, '-U', '0', '-t', '2'] + user + where + list(args)
            proc = Process('memcached', argv)
            self.procs.append(proc)
            deadline = time.monotonic() + 10
            if unix:
                while time.monotonic() < deadline and proc.alive():
                    if os.path.exists(unix):
                        break
                    time.sleep(0.02)
                if proc.alive():
                    return proc, None
            elif wait_port('127.0.0.1', port, proc, deadline):
                return proc, port
            proc.stop()
        raise TestFailure('memcached did not start: %s' % proc.stderr())

    def start(self, name, argv, env=None):
        """Any other helper process, stopped by close()."""
        proc = Process(name, argv, env=env)
        self.procs.append(proc)
        return proc

    # --- the end ------------------------------------------------------------

    def close(self):
        problems = []
        for k in self.kvds:
            if not k.stopped:
                problems += k.stop(check=True, raise_=False)
        for p in reversed(self.procs):
            p.stop()
        for store in self.stores:
            try:
                self.kv_run(store, 'destroy', '--yes')
            except Exception as e:  # keep cleaning up
                problems.append('kv destroy %s: %s' % (store, e))
            shm = '/dev/shm/kv.' + store
            if os.path.exists(shm):
                problems.append('store %s still exists after kv destroy' % store)
                try:
                    os.unlink(shm)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise TestFailure('; '.join(problems))


class Kvd:
    def __init__(self, h, proc, store, listen):
        self.h = h
        self.proc = proc
        self.store = store
        self.listen = listen
        self.port = None
        self.unix = None
        self.stopped = False
        self.pid = proc.pid

    def wait_ready(self, timeout=20):
        tcp = [s for s in self.listen if not s.startswith('unix:')]
        unix = [s[5:] for s in self.listen if s.startswith('unix:')]
        if tcp:
            host = tcp[0].rsplit(':', 1)[0].strip('[]')
            m = self.proc.wait_line(r'listening on \[?%s\]?:(\d+)'
                                    % re.escape(host), timeout)
            if not m:
                self.fail_start()
            self.port = int(m.group(1))
            self.host = host
        if unix:
            self.unix = unix[0]
            m = self.proc.wait_line(r'listening on (unix:)?%s'
                                    % re.escape(self.unix), timeout)
            if not m:
                self.fail_start()
        return self

    def fail_start(self):
        time.sleep(0.2)
        raise TestFailure('kvd did not log "listening on" (%s):\n%s'
                          % ('exited %s' % self.proc.proc.returncode
                             if not self.proc.alive() else 'still running',
                             self.proc.stderr()))

    def connect(self, timeout=10):
        if self.port is not None:
            return Conn.tcp('127.0.0.1', self.port, timeout)
        return Conn.unix(self.unix, timeout)

    def stop(self, check=True, raise_=True):
        """SIGTERM and wait; with CHECK, a kvd that does not exit 0 or
        whose stderr has a sanitizer report is a failure."""
        self.stopped = True
        rc = self.proc.stop(timeout=15)
        problems = []
        if check and self.store is not None:
            err = self.proc.stderr()
            if rc != 0:
                problems.append('kvd -s %s exited %s after SIGTERM:\n%s'
                                % (self.store, rc, err[-4000:]))
            elif any(m in err for m in SANITIZER_MARKS):
                problems.append('kvd -s %s: sanitizer report on stderr:\n%s'
                                % (self.store, err[-4000:]))
        if problems and raise_:
            raise TestFailure('; '.join(problems))
        return problems


class Closed(Exception):
    pass


class Conn:
    """A raw memcached text-protocol connection with a timeout on every
    wait, and a buffer so replies can be read by line or by length."""

    def __init__(self, sock, timeout):
        self.sock = sock
        sock.settimeout(timeout)
        self.buf = b''

    @classmethod
    def tcp(cls, host, port, timeout=10):
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s, timeout)

    @classmethod
    def unix(cls, path, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise Closed('connection closed by the server')
        self.buf += chunk

    def line(self):
        """One reply line, "\\r\\n" included."""
        while True:
            i = self.buf.find(b'\r\n')
            if i >= 0:
                out, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return out
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until(self, suffix):
        """Every byte up to and including the first SUFFIX."""
        while True:
            i = self.buf.find(suffix)
            if i >= 0:
                out, self.buf = self.buf[:i + len(suffix)], self.buf[i + len(suffix):]
                return out
            self._fill()

    def read_all(self, timeout=5):
        """Everything until the server closes (or TIMEOUT passes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self._fill()
        except (Closed, socket.timeout, ConnectionResetError):
            pass
        out, self.buf = self.buf, b''
        return out

    def is_closed(self, timeout=2):
        """True if the server closes the connection within TIMEOUT (reads
        and drops anything it sends first)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def reply(self):
        """One whole reply to one command: a value list up to END, or a
        single line (meta replies with a value included)."""
        first = self.line()
        if first.startswith(b'VALUE '):
            out = first
            while True:
                parts = first.split()
                n = int(parts[3])
                out += self.exact(n + 2)
                first = self.line()
                out += first
                if first == b'END\r\n':
                    return out
                if not first.startswith(b'VALUE '):
                    raise TestFailure('bad value list: %r' % out)
        if first.startswith(b'VA '):
            n = int(first.split()[1])
            return first + self.exact(n + 2)
        if first.startswith(b'STAT '):
            out = first
            while first != b'END\r\n':
                first = self.line()
                out += first
            return out
        return first

    def cmd(self, data):
        """Send one command and read its whole reply."""
        self.send(data)
        return self.reply()

    def get(self, key):
        r = self.cmd(b'get %s\r\n' % _b(key))
        if r == b'END\r\n':
            return None
        m = re.match(rb'VALUE \S+ (\d+) (\d+)\r\n', r)
        check(m, 'bad get reply %r' % r[:200])
        n = int(m.group(2))
        return r[m.end():m.end() + n], int(m.group(1))

    def set(self, key, value, flags=0, exptime=0):
        value = _b(value)
        r = self.cmd(b'set %s %d %d %d\r\n%s\r\n'
                     % (_b(key), flags, exptime, len(value), value))
        return r


def _b(x):
    return x if isinstance(x, bytes) else str(x).encode()


def main(name, body):
    """Run BODY(harness), always closing the harness; exit 0, 1 or 77."""
    h = None
    rc = 0

    def on_term(signum, frame):
        # meson's timeout: stop, but through the finally below, so what
        # the test started is still stopped and removed
        raise TestFailure('stopped by signal %d (timeout?)' % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        h = Harness(name)
        body(h)
    except TestFailure as e:
        log('FAIL: %s' % e)
        rc = 1
    except SystemExit:
        raise
    except BaseException:
        import traceback
        traceback.print_exc()
        rc = 1
    finally:
        if h is not None:
            try:
                h.close()
            except TestFailure as e:
                log('FAIL (cleanup): %s' % e)
                rc = 1
    if rc == 0:
        log('PASS: %s' % name)
    sys.exit(rc)
