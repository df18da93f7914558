#!/usr/bin/env python3
"""mkseeds.py - write the seed corpora of the command-line fuzz targets.

    python3 tests/fuzz_cli/mkseeds.py BUILD_DIR

writes tests/fuzz_cli/corpus/<target>/seed-* (and removes the old seed-*
files; inputs merged from fuzzing runs, which have other names, stay):

  fuzz-dump      dumps made by real `kv dump` runs of a store served by a
                 real kvd from BUILD_DIR (version 2): empty, plain keys,
                 keys with TTLs, binary keys (one with a NUL, put there by
                 `kv load` of a hand-made dump, then dumped again), keys
                 with client flags (loaded the same way), a 4096-byte key,
                 a larger value; then truncated and corrupted variants of
                 them, one per check of docs/dump-format.md; and version-1
                 dumps (no client flags in the records, as kv wrote before
                 version 2) made from them, with some of their variants, so
                 the reader's version-1 path stays covered;
  fuzz-kv-args   argv sets for every command and option of kv, good and
                 bad, with absurd --ttl, --cas and DELTA values and globs;
  fuzz-kvd-args  the same for kvd, with absurd sizes, counts, modes,
                 groups, names and pid files.

An argv set is its words joined by NUL bytes (see fuzz_cli.h). Run it
again after changing the format or the command lines; it is not run by
the build.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import ctypes
import ctypes.util

# XXH64 from the system's libxxhash, as kv uses.
_xxh = ctypes.CDLL(ctypes.util.find_library('xxhash') or 'libxxhash.so.0')
_xxh.XXH64.restype = ctypes.c_uint64
_xxh.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]


def xxh64(data):
    return _xxh.XXH64(data, len(data), 0)

HERE = os.path.dirname(os.path.abspath(__file__))


def out_dir(target):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith('seed-'):
            os.remove(os.path.join(d, f))
    return d


def write(d, name, data):
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(data)


# ---------------------------------------------------------------------------
# Dumps


def real_dumps(build):
    kv = os.path.join(build, 'cli', 'kv')
    kvd = os.path.join(build, 'daemon', 'kvd')
    store = 'fcli-seed-%d' % os.getpid()
    tmp = tempfile.mkdtemp(prefix='fcli-seed.')
    pidfile = os.path.join(tmp, 'kvd.pid')
    env = dict(os.environ, KV_STORE=store)
    dumps = {}

    def run(*args, data=None):
        r = subprocess.run([kv] + list(args), input=data, env=env,
                           capture_output=True)
        if r.returncode != 0:
            raise SystemExit('kv %s: %s' % (args, r.stderr.decode()))
        return r.stdout

    def dump(name):
        path = os.path.join(tmp, name)
        run('dump', path)
        with open(path, 'rb') as f:
            dumps[name] = f.read()

    subprocess.run([kvd, '-d', '-q', '-s', store, '--size', '4M',
                    '--pidfile', pidfile], check=True, env=env)
    try:
        dump('empty')
        run('put', 'a', '1')
        dump('one')
        run('put', 'greeting', 'hello, world')
        run('put', 'counter', '41')
        run('incr', 'counter')
        run('put', '--ttl', '1h', 'session', 'token-1234')
        run('put', '--ttl', '10d', 'long-lived', 'x' * 40)
        run('put', '--ttl', '500ms', 'brief', 'soon gone')
        dump('ttl')
        run('flush', '--yes')
        for k in [b'\x01\x02\x03', b'caf\xc3\xa9', b'\xff\xfe', b'line\nbreak',
                  b'tab\there', b' ']:
            run('put', '--', k, b'\x01 binary \xff')
        run('put', 'empty-value', '')
        run('put', 'from-stdin', data=bytes(range(256)) * 4)
        dump('binary')
        # A key with a NUL cannot come from argv: load it from a dump
        # made by hand, then dump the store again.
        run('load', '--nx', data=make_dump([rec(b'nul\x00key', b'value')]))
        dump('nul-key')
        run('flush', '--yes')
        # Nor can client flags: the same way.
        run('load', data=make_dump([
            rec(b'flags-0', b'zero', flags=0),
            rec(b'flags-1', b'one', flags=1),
            rec(b'flags-42', b'forty-two', ttl=3600000, flags=42),
            rec(b'flags-max', b'all ones', flags=0xFFFFFFFF),
            rec(b'flags-max-ttl', b'', ttl=7200000, flags=0xFFFFFFFF),
            rec(b'flags-high', b'\x00\xff', flags=0x80000000)],
            dump_ms=int(time.time() * 1000)))
        dump('flags')
        run('flush', '--yes')
        run('put', 'k' * 4096, 'longest key')
        run('put', '--ttl', '2h', 'big', data=b'v' * 3000)
        dump('big')
    finally:
        with open(pidfile) as f:
            pid = int(f.read())
        os.kill(pid, 15)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            subprocess.run(['sleep', '0.05'])
        subprocess.run([kv, 'destroy', '--yes'], env=env)
        shutil.rmtree(tmp)
    return dumps


def make_dump(records, count=None, dump_ms=1735689600000, version=2,
              flags=0):
    """A dump of records (made by rec() with the same version)."""
    body = b'KVDUMP\0\0' + struct.pack('<IIQ', version, flags, dump_ms)
    body += b''.join(records)
    body += struct.pack('<IQ', 0xFFFFFFFF,
                        len(records) if count is None else count)
    return body + struct.pack('<Q', xxh64(body))


def rehash(d):
    body = d[:-8]
    return body + struct.pack('<Q', xxh64(body))


def rec(k, v, ttl=-1, klen=None, vlen=None, flags=0, version=2):
    """One record: u32 klen, u32 vlen, i64 ttl_ms, then (version 2) u32
    client_flags, key, value."""
    head = struct.pack('<IIq', len(k) if klen is None else klen,
                       len(v) if vlen is None else vlen, ttl)
    if version != 1:
        head += struct.pack('<I', flags)
    return head + k + v


def records(d):
    """The (key, value, ttl, flags) of each record of a sound version-2
    dump."""
    assert struct.unpack_from('<I', d, 8)[0] == 2
    out, off = [], 24
    while struct.unpack_from('<I', d, off)[0] != 0xFFFFFFFF:
        klen, vlen, ttl, flags = struct.unpack_from('<IIqI', d, off)
        k = d[off + 20:off + 20 + klen]
        out.append((k, d[off + 20 + klen:off + 20 + klen + vlen], ttl,
                    flags))
        off += 20 + klen + vlen
    return out


def as_v1(d):
    """A sound version-2 dump as kv wrote it in version 1: the same
    header but for the version, records without client flags."""
    dump_ms = struct.unpack_from('<Q', d, 16)[0]
    return make_dump([rec(k, v, ttl, version=1)
                      for k, v, ttl, _ in records(d)],
                     dump_ms=dump_ms, version=1)


def dump_seeds(build):
    d = out_dir('fuzz-dump')
    real = real_dumps(build)
    for name, data in real.items():
        write(d, 'kv-' + name, data)
    one, ttl = real['one'], real['ttl']
    # Cut short: in the magic, the header, a record header (in its ttl_ms,
    # then in its client_flags), a key, the end record; and a bare magic.
    write(d, 'trunc-magic', one[:5])
    write(d, 'trunc-header', one[:20])
    write(d, 'trunc-record-head', ttl[:24 + 10])
    write(d, 'trunc-record-flags', ttl[:24 + 18])
    write(d, 'trunc-record-body', ttl[:24 + 20 + 3])
    write(d, 'trunc-end', one[:-5])
    write(d, 'trunc-mark', one[:-19])
    write(d, 'empty-file', b'')
    # The header's checks: versions never defined, and a version-2 dump
    # called version 1 and the other way round.
    write(d, 'bad-magic', b'KVDUMQ' + one[6:])
    for name, v in (('version-0', 0), ('version-3', 3),
                    ('version-max', 0xFFFFFFFF)):
        write(d, name, rehash(one[:8] + struct.pack('<I', v) + one[12:]))
    write(d, 'v2-called-v1', rehash(ttl[:8] + struct.pack('<I', 1) + ttl[12:]))
    v1_ttl = as_v1(ttl)
    write(d, 'v1-called-v2',
          rehash(v1_ttl[:8] + struct.pack('<I', 2) + v1_ttl[12:]))
    write(d, 'flags-1', one[:12] + struct.pack('<I', 1) + one[16:])
    # Records that cannot be.
    write(d, 'klen-0', make_dump([rec(b'', b'v')]))
    write(d, 'klen-4097', make_dump([rec(b'k' * 4097, b'')]))
    write(d, 'vlen-huge', make_dump([rec(b'k', b'', vlen=64 * 1024 * 1024 + 1)]))
    write(d, 'vlen-max-cut', make_dump([rec(b'k', b'', vlen=64 * 1024 * 1024)]))
    write(d, 'ttl-minus-2', make_dump([rec(b'k', b'v', ttl=-2)]))
    write(d, 'ttl-max', make_dump([rec(b'k', b'v', ttl=2**63 - 1)]))
    write(d, 'ttl-zero', make_dump([rec(b'k', b'v', ttl=0)]))
    write(d, 'klen-overflow', make_dump([rec(b'k', b'', klen=0xFFFFFFFE)]))
    # Any client flags are fine, an end mark among them too.
    write(d, 'client-flags', make_dump([
        rec(b'a', b'1', flags=0xFFFFFFFF), rec(b'b', b'', flags=0x80000000),
        rec(b'c', b'3', ttl=5000, flags=1)]))
    # The end record's checks.
    bad = bytearray(ttl)
    bad[30] ^= 0x40
    write(d, 'checksum-flip', bytes(bad))
    bad = bytearray(real['flags'])
    bad[24 + 17] ^= 0x01
    write(d, 'checksum-flip-flags', bytes(bad))
    write(d, 'count-wrong', make_dump([rec(b'a', b'1')], count=2))
    write(d, 'count-huge', make_dump([rec(b'a', b'1')], count=2**64 - 1))
    write(d, 'trailing', one + b'\0')
    write(d, 'two-ends', one + one[24 + 22:])
    # The store's limits: a long key and a big value, then a good record.
    write(d, 'limits', make_dump([rec(b'a', b'1'), rec(b'k' * 300, b'v' * 70),
                                  rec(b'b', b'2', ttl=5000)]))
    write(d, 'dump-time-0', make_dump([rec(b'a', b'1', ttl=10)], dump_ms=0))
    write(d, 'dump-time-max', make_dump([rec(b'a', b'1', ttl=10)],
                                        dump_ms=2**64 - 1))
    # Truncated after whole records, so --partial would keep some.
    write(d, 'partial', rehash(real['binary'])[:len(real['binary']) // 2])

    # Version 1, as kv wrote it before client flags: the real dumps
    # without them, docs/dump-format.md's example, and the variants
    # whose offsets differ from version 2's.
    for name in ('one', 'ttl', 'binary', 'nul-key', 'big', 'flags'):
        write(d, 'v1-kv-' + name, as_v1(real[name]))
    write(d, 'v1-example', make_dump([rec(b'a', b'1', version=1)],
                                     version=1))
    v1_one = as_v1(one)
    write(d, 'v1-trunc-record-head', v1_ttl[:24 + 10])
    write(d, 'v1-trunc-record-body', v1_ttl[:24 + 16 + 3])
    write(d, 'v1-trunc-end', v1_one[:-5])
    write(d, 'v1-klen-0', make_dump([rec(b'', b'v', version=1)], version=1))
    write(d, 'v1-vlen-huge', make_dump(
        [rec(b'k', b'', vlen=64 * 1024 * 1024 + 1, version=1)], version=1))
    write(d, 'v1-ttl-minus-2', make_dump([rec(b'k', b'v', ttl=-2, version=1)],
                                         version=1))
    write(d, 'v1-count-wrong', make_dump([rec(b'a', b'1', version=1)],
                                         count=2, version=1))
    write(d, 'v1-two-ends', v1_one + v1_one[24 + 18:])
    write(d, 'v1-limits', make_dump(
        [rec(b'a', b'1', version=1), rec(b'k' * 300, b'v' * 70, version=1),
         rec(b'b', b'2', ttl=5000, version=1)], version=1))
    v1_bin = as_v1(real['binary'])
    write(d, 'v1-partial', rehash(v1_bin)[:len(v1_bin) // 2])


# ---------------------------------------------------------------------------
# Command lines

KV_LINES = [
    # Every command, as meant.
    ['get', 'k'], ['put', 'k', 'v'], ['put', 'k'], ['del', 'k'], ['ttl', 'k'],
    ['info', 'k'], ['incr', 'n'], ['incr', 'n', '5'], ['decr', 'n', '3'],
    ['keys'], ['keys', 'user:*'], ['keys', '-0', '[a-z]?x*'], ['stats'],
    ['stats', '--json'], ['check'], ['flush', '--yes'], ['flush', '-y'],
    ['dump'], ['dump', 'out.kvd'], ['dump', '--force', '-'], ['load'],
    ['load', '--nx', '--partial', 'in.kvd'], ['load', '-f'],
    ['destroy', '--yes'], ['help'], ['help', 'put'], ['--help'], ['-h'],
    ['--version'], ['put', '--help'], ['get', '-h', 'k'],
    # The store, every way.
    ['-s', 'cache', 'get', 'k'], ['--store', 'cache', 'get', 'k'],
    ['--store=cache', 'get', 'k'], ['-scache', 'get', 'k'],
    ['get', 'k', '-s', 'cache'], ['-s', '/tmp/file-store', 'stats'],
    ['-s', '', 'stats'], ['KV_STORE=envstore', 'stats'],
    ['KV_STORE=', 'stats'], ['KV_STORE=env', '-s', 'opt', 'stats'],
    # put's options.
    ['put', '--ttl', '30s', 'k', 'v'], ['put', '--ttl=5m', 'k', 'v'],
    ['put', '--nx', 'k', 'v'], ['put', '--xx', 'k', 'v'],
    ['put', '--cas', '7', 'k', 'v'], ['put', '--nx', '--xx', 'k', 'v'],
    ['put', '--cas', '1', '--nx', 'k', 'v'], ['put', '--cas=', 'k', 'v'],
    ['put', 'k', '--', '-1'], ['put', '--', '-k', '-v'],
    # Absurd durations.
    ['put', '--ttl', '0', 'k', 'v'], ['put', '--ttl', '0ms', 'k', 'v'],
    ['put', '--ttl', '-5', 'k', 'v'], ['put', '--ttl', '-', 'k', 'v'],
    ['put', '--ttl', '', 'k', 'v'], ['put', '--ttl', 's', 'k', 'v'],
    ['put', '--ttl', '1ms', 'k', 'v'], ['put', '--ttl', '500ms', 'k', 'v'],
    ['put', '--ttl', '2h', 'k', 'v'], ['put', '--ttl', '1d', 'k', 'v'],
    ['put', '--ttl', '3653d', 'k', 'v'], ['put', '--ttl', '3654d', 'k', 'v'],
    ['put', '--ttl', '315619200000ms', 'k', 'v'],
    ['put', '--ttl', '315619200001ms', 'k', 'v'],
    ['put', '--ttl', '315619200', 'k', 'v'],
    ['put', '--ttl', '315619201s', 'k', 'v'],
    ['put', '--ttl', '18446744073709551615', 'k', 'v'],
    ['put', '--ttl', '18446744073709551616ms', 'k', 'v'],
    ['put', '--ttl', '9' * 40 + 'd', 'k', 'v'],
    ['put', '--ttl', '0' * 40 + '1s', 'k', 'v'],
    ['put', '--ttl', '5x', 'k', 'v'], ['put', '--ttl', '5 s', 'k', 'v'],
    ['put', '--ttl', '5S', 'k', 'v'], ['put', '--ttl', '1.5h', 'k', 'v'],
    ['put', '--ttl', '+5', 'k', 'v'], ['put', '--ttl', '0x10', 'k', 'v'],
    ['put', '--ttl', '5msec', 'k', 'v'], ['put', '--ttl', '5m\n', 'k', 'v'],
    # Absurd versions.
    ['put', '--cas', '0', 'k', 'v'],
    ['put', '--cas', '18446744073709551615', 'k', 'v'],
    ['put', '--cas', '18446744073709551616', 'k', 'v'],
    ['put', '--cas', '-1', 'k', 'v'], ['put', '--cas', 'abc', 'k', 'v'],
    ['put', '--cas', '7 ', 'k', 'v'],
    # Absurd deltas.
    ['incr', 'n', '9223372036854775807'], ['incr', 'n', '9223372036854775808'],
    ['incr', 'n', '--', '-9223372036854775808'],
    ['incr', 'n', '--', '-9223372036854775809'],
    ['decr', 'n', '--', '-9223372036854775808'],
    ['decr', 'n', '9223372036854775807'], ['decr', 'n', '+5'],
    ['incr', 'n', '0005'], ['incr', 'n', ''], ['incr', 'n', '+'],
    ['incr', 'n', '1e3'], ['incr', 'n', '0' * 30 + '7'],
    ['incr', 'n', '9' * 30],
    # Globs.
    ['keys', '*'], ['keys', '[!abc]'], ['keys', '[^]]'], ['keys', '[]]'],
    ['keys', '['], ['keys', '\\'], ['keys', 'a\\*'], ['keys', '[a-]'],
    ['keys', '[\\]]'], ['keys', '[z-a]'], ['keys', '[a-\\'],
    ['keys', '*a*a*a*a*a*b', 'a' * 60], ['keys', '?*?*?', 'abc'],
    # Mistakes.
    [], ['frob'], ['get'], ['get', 'a', 'b'], ['put'], ['put', 'a', 'b', 'c'],
    ['stats', 'x'], ['get', '--json', 'k'], ['get', '--ttl', '5s', 'k'],
    ['--frob'], ['--frob=1', 'get', 'k'], ['-x', 'get', 'k'],
    ['-yx', 'flush'], ['--yes=1', 'flush'], ['--help=1'], ['get', 'k', '-s'],
    ['get', 'k', '--store'], ['--', 'get', 'k'], ['--', '--help'],
    ['-', 'get'], ['get', '-', 'k'], ['--st', 'x', 'get', 'k'],
    ['-ys', 'st', 'flush'], ['-sy', 'flush'], ['flush'], ['destroy'],
    ['-' + 'y' * 300], ['--' + 'x' * 300 + '=v'], ['get', 'k\x01\x7f\xff'],
    ['get\n', 'k'], ['help', 'frob'], ['help', 'a', 'b'], ['-0', 'get', 'k'],
    ['help', '--help'], ['--help', 'help', 'keys'],
]

KVD_LINES = [
    [], ['-s', 'cache'], ['--store=cache', '--size', '64M'],
    ['--size', '4G', '--mode', '0640', '--group', 'root'],
    ['--max-value', '1M', '--max-items', '1000'], ['-d'],
    ['-d', '--pidfile', '/tmp/kvd.pid'], ['--pidfile', 'rel/kvd.pid'],
    ['--sweep-buckets', '0'], ['--sweep-buckets', '4096'], ['-q'], ['-v'],
    ['-qv'], ['-h'], ['--help'], ['-V'], ['--version'], ['-s', '/tmp/a/b'],
    ['KV_STORE=env'], ['KV_STORE=', '-d'], ['KV_STORE=bad name'],
    # Sizes.
    ['--size', '4096'], ['--size', '4096B'], ['--size', '512KiB'],
    ['--size', '1k'], ['--size', '1kb'], ['--size', '1KIB'], ['--size', '1t'],
    ['--size', '0'], ['--size', '0M'], ['--size', '-1'], ['--size', '1.5G'],
    ['--size', '64 M'], ['--size', ' 64M'], ['--size', ''], ['--size', 'M'],
    ['--size', '4iB'], ['--size', '4MBB'], ['--size', '4MiBB'],
    ['--size', '16777215T'], ['--size', '16777216T'],
    ['--size', '18446744073709551615'], ['--size', '18446744073709551616'],
    ['--size', '18446744073709551615K'], ['--size', '9' * 30],
    ['--size', '9' * 30 + 'x'], ['--size', '0' * 40 + '1M'],
    ['--size', '0x40'], ['--size', '+64M'], ['--size', '64M\n'],
    ['--max-value', '64M'], ['--max-value', '65M'],
    ['--max-value', '67108864'], ['--max-value', '67108865'],
    ['--max-value', '0'], ['--max-value', '1'], ['--max-value', '1T'],
    # Counts.
    ['--max-items', '1'], ['--max-items', '0'], ['--max-items', '1k'],
    ['--max-items', '18446744073709551615'],
    ['--max-items', '18446744073709551616'], ['--max-items', ''],
    ['--sweep-buckets', '-1'], ['--sweep-buckets', '18446744073709551616'],
    # Modes.
    ['--mode', '0600'], ['--mode', '600'], ['--mode', '0660'],
    ['--mode', '0602'], ['--mode', '0666'], ['--mode', '0777'],
    ['--mode', '0400'], ['--mode', '0700'], ['--mode', '1777'],
    ['--mode', '0800'], ['--mode', ''], ['--mode', 'abc'],
    ['--mode', '0' * 30 + '600'], ['--mode', '-0600'], ['--mode', '0o600'],
    # Groups.
    ['--group', 'root'], ['--group', '0'], ['--group', 'nogroup'],
    ['--group', '65534'], ['--group', '4294967295'],
    ['--group', '4294967294'], ['--group', '4294967296'],
    ['--group', '+5'], ['--group', ' 5'], ['--group', '-1'], ['--group', ''],
    ['--group', '0x10'], ['--group', 'nosuchgroup'], ['--group', '5 '],
    # Names and pid files.
    ['-s', 'n' * 64], ['-s', 'n' * 65], ['-s', 'bad name'], ['-s', ''],
    ['-s', 'a/' + 'b' * 5000], ['-d', '-s', 'a/' + 'b' * 4000],
    ['--pidfile', ''], ['--pidfile', 'p' * 5000], ['-s', 'x\ny'],
    # Mistakes.
    ['--frob'], ['-x'], ['--size'], ['-s'], ['extra'], ['-d', 'extra'],
    ['--si', '64M'], ['--s', 'x'], ['--max', '5'], ['--daemon=1'],
    ['--', '-d'], ['-dqz'], ['--size=', '1'], ['--mode=0660', '--mode=0606'],
    ['--size\n'], ['-\x01'], ['-:'], ['--quiet='], ['-v', '-v\xbfY'],
    ['extra', '-s'], ['-q', '-qx'],
    # The memcached protocol server.
    ['--listen', '127.0.0.1:11211'], ['--listen', '[::1]:0'],
    ['--listen', 'localhost:11211', '--listen', 'unix:/run/kvd.sock'],
    ['--listen', 'unix:rel.sock'], ['--listen', 'unix:'],
    ['--listen', 'unix:/' + 's' * 120], ['--listen', 'unix:a\nb'],
    ['--listen', '::1:11211'], ['--listen', ':11211'],
    ['--listen', '127.0.0.1:'], ['--listen', '127.0.0.1:65535'],
    ['--listen', '127.0.0.1:65536'], ['--listen', '127.0.0.1:000080'],
    ['--listen', '[fe80::1%eth0]:11211'], ['--listen', '[::1]11211'],
    ['--listen', '[]:1'], ['--listen', 'a b:1'], ['--listen', 'h' * 300 + ':1'],
    ['--listen=0.0.0.0:11211'] * 17,
    ['--threads', '1'], ['--threads', '256'], ['--threads', '257'],
    ['--threads', '0'], ['--max-conns', '1'], ['--max-conns', '1000000'],
    ['--max-conns', '1000001'], ['--max-conns', '0'],
    ['--idle-timeout', '0'], ['--idle-timeout', '4294967295'],
    ['--idle-timeout', '4294967296'], ['--idle-timeout', '5m'],
    ['--auth-file', '/etc/kv/users'], ['--auth-file', ''],
    ['--auth-file=x', '--threads=2', '--max-conns=10', '--idle-timeout=60'],
]


def argv_seeds():
    for target, lines in (('fuzz-kv-args', KV_LINES),
                          ('fuzz-kvd-args', KVD_LINES)):
        d = out_dir(target)
        for i, words in enumerate(lines):
            data = b'\0'.join(w.encode('latin1') for w in words)
            write(d, '%03d' % i, data)


def main():
    if len(sys.argv) != 2:
        raise SystemExit('usage: mkseeds.py BUILD_DIR')
    dump_seeds(sys.argv[1])
    argv_seeds()


if __name__ == '__main__':
    main()
