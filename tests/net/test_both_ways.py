#!/usr/bin/env python3
"""test_both_ways - one store, two ways in: the memcached protocol over
kvd's sockets, and the kv CLI on the shared mapping.

It proves that the two agree, at once (no cache in between):
  - a value set over the network is what `kv get` prints, byte for byte
    (CR, LF, NUL, 0xff, an empty value, a value with "END\\r\\n" in it);
  - a value put with `kv put` reads over the network with flags 0, and a
    `kv del` is a miss over the network; a network delete makes `kv get`
    exit 1;
  - client flags up to 2^32-1 survive, and a `kv put` of the key resets
    them to 0;
  - TTLs: `set k 0 100` gives `kv ttl` about 100; an absolute exptime
    (a unix time) the same; a negative exptime stores an already expired
    item; touch and gat change `kv ttl` (gat 0: no expiry, -1) and keep
    the value; a key put with `kv put --ttl 2s` is a miss over the
    network once it expires, and a network `set k 0 1` is gone for kv;
  - CAS: `kv put` of a key changes its gets unique, so a network cas with
    the old unique answers EXISTS, and one with the new unique stores;
    touch keeps the unique;
  - incr/decr from both sides act on the same number, also at once:
    1,000 network increments from 4 connections and 20 `kv incr` of the
    same key lose none, nor do 400 concurrent appends;
  - the TCP listener and the UNIX socket serve the same store, and the
    socket file has the store's mode.
"""

import os
import re
import threading
import time

import netlib
from netlib import check, eq


def gets(c, key):
    r = c.cmd(b'gets %s\r\n' % key)
    m = re.match(rb'VALUE (\S+) (\d+) (\d+) (\d+)\r\n', r)
    check(m, 'gets %s: %r' % (key, r[:200]))
    n = int(m.group(3))
    return r[m.end():m.end() + n], int(m.group(2)), int(m.group(4))


def ttl_of(h, k, key):
    rc, out, err = h.kv_run(k.store, 'ttl', key)
    if rc == 1:
        return None
    eq(rc, 0, 'kv ttl %s exit status (%s)' % (key, err))
    return float(out.decode())


def wait_gone(pred, limit):
    """Poll PRED() until it is true or LIMIT seconds pass; True if it
    became true."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def body(h):
    sock = os.path.join(h.tmp, 'kvd.sock')
    k = h.start_kvd(listen=('127.0.0.1:0', 'unix:' + sock))
    if k.store is None:
        netlib.skip('compares with the kv CLI: kvd only')
    c = k.connect()
    u = netlib.Conn.unix(sock)
    # the socket file carries the store's permissions (0600 by default)
    eq(oct(os.stat(sock).st_mode & 0o777), oct(os.stat('/dev/shm/kv.' + k.store).st_mode & 0o777),
       'mode of the UNIX socket (the store\'s)')

    # network -> kv: exact bytes
    cases = {
        b'bin': bytes(range(256)),
        b'crlf': b'a\r\nEND\r\nVALUE x 0 1\r\n',
        b'empty': b'',
        b'nul': b'\0\0\0',
    }
    for key, v in cases.items():
        eq(c.set(key, v, flags=9), b'STORED\r\n', 'set %r' % key)
        rc, out, err = h.kv_run(k.store, 'get', key)
        eq(rc, 0, 'kv get %r exit status (%s)' % (key, err))
        eq(out, v, 'kv get %r after a network set' % key)
        eq(c.get(key), (v, 9), 'network get %r' % key)

    # kv -> network: flags 0
    h.kv_ok(k.store, 'put', 'fromkv', input=b'cli\r\nbytes\xff')
    eq(c.get(b'fromkv'), (b'cli\r\nbytes\xff', 0), 'network get of a kv put key')
    eq(u.get(b'fromkv'), (b'cli\r\nbytes\xff', 0), 'same over the UNIX socket')

    # flags: the full 32 bits, and kv put resets them
    eq(c.set(b'fl', b'v', flags=2 ** 32 - 1), b'STORED\r\n', 'set flags 2^32-1')
    eq(c.get(b'fl'), (b'v', 2 ** 32 - 1), 'flags 2^32-1 read back')
    h.kv_ok(k.store, 'put', 'fl', 'w')
    eq(c.get(b'fl'), (b'w', 0), 'flags after a kv put of the key')

    # deletes both ways
    h.kv_ok(k.store, 'del', 'fromkv')
    eq(c.get(b'fromkv'), None, 'network get after kv del')
    eq(c.cmd(b'delete bin\r\n'), b'DELETED\r\n', 'network delete')
    eq(h.kv_run(k.store, 'get', 'bin')[0], 1, 'kv get after a network delete')

    # TTLs
    eq(c.cmd(b'set t100 0 100 1\r\nx\r\n'), b'STORED\r\n', 'set with exptime 100')
    t = ttl_of(h, k, 't100')
    check(t is not None and 98 <= t <= 100, 'kv ttl after exptime 100: %s' % t)
    eq(c.cmd(b'set tnone 0 0 1\r\nx\r\n'), b'STORED\r\n', 'set with exptime 0')
    eq(ttl_of(h, k, 'tnone'), -1.0, 'kv ttl after exptime 0')
    absolute = int(time.time()) + 200
    eq(c.cmd(b'set tabs 0 %d 1\r\nx\r\n' % absolute), b'STORED\r\n',
       'set with an absolute exptime')
    t = ttl_of(h, k, 'tabs')
    check(t is not None and 197 <= t <= 200, 'kv ttl after an absolute exptime '
          '(now + 200): %s' % t)
    eq(c.cmd(b'set tneg 0 -1 1\r\nx\r\n'), b'STORED\r\n', 'set with exptime -1')
    eq(c.get(b'tneg'), None, 'network get of an item set with exptime -1')
    eq(h.kv_run(k.store, 'get', 'tneg')[0], 1, 'kv get of an item set with exptime -1')

    eq(c.cmd(b'touch tnone 50\r\n'), b'TOUCHED\r\n', 'touch')
    t = ttl_of(h, k, 'tnone')
    check(t is not None and 48 <= t <= 50, 'kv ttl after touch 50: %s' % t)
    eq(h.kv_ok(k.store, 'get', 'tnone'), b'x', 'value after touch')
    eq(c.cmd(b'gat 0 tnone\r\n'), b'VALUE tnone 0 1\r\nx\r\nEND\r\n', 'gat 0')
    eq(ttl_of(h, k, 'tnone'), -1.0, 'kv ttl after gat 0 (no expiry)')
    eq(c.cmd(b'gat 30 tnone\r\n'), b'VALUE tnone 0 1\r\nx\r\nEND\r\n', 'gat 30')
    t = ttl_of(h, k, 'tnone')
    check(t is not None and 28 <= t <= 30, 'kv ttl after gat 30: %s' % t)

    h.kv_ok(k.store, 'put', '--ttl', '2s', 'short', 'soon gone')
    eq(c.get(b'short'), (b'soon gone', 0), 'network get of a kv put --ttl 2s key')
    check(wait_gone(lambda: c.get(b'short') is None, 5),
          'a kv put --ttl 2s key is still there over the network after 5 s')
    eq(c.cmd(b'set net1s 0 1 1\r\nx\r\n'), b'STORED\r\n', 'set with exptime 1')
    check(wait_gone(lambda: h.kv_run(k.store, 'get', 'net1s')[0] == 1, 5),
          'a network exptime 1 key is still there for kv after 5 s')

    # CAS: a kv put changes the unique; touch does not
    eq(c.set(b'cas', b'one'), b'STORED\r\n', 'set cas')
    v, fl, u1 = gets(c, b'cas')
    eq(c.cmd(b'touch cas 100\r\n'), b'TOUCHED\r\n', 'touch cas')
    eq(gets(c, b'cas')[2], u1, 'gets unique after touch (unchanged)')
    h.kv_ok(k.store, 'put', 'cas', 'two')
    v, fl, u2 = gets(c, b'cas')
    eq(v, b'two', 'gets after kv put')
    check(u2 != u1, 'gets unique did not change after a kv put (%d)' % u1)
    eq(c.cmd(b'cas cas 0 0 5 %d\r\nthree\r\n' % u1), b'EXISTS\r\n',
       'cas with the unique from before the kv put')
    eq(h.kv_ok(k.store, 'get', 'cas'), b'two', 'kv get after a refused cas')
    eq(c.cmd(b'cas cas 3 0 4 %d\r\nfour\r\n' % u2), b'STORED\r\n',
       'cas with the current unique')
    eq(h.kv_ok(k.store, 'get', 'cas'), b'four', 'kv get after cas')
    eq(c.get(b'cas'), (b'four', 3), 'network get after cas')
    h.kv_ok(k.store, 'del', 'cas')
    eq(c.cmd(b'cas cas 0 0 1 %d\r\nx\r\n' % u2), b'NOT_FOUND\r\n',
       'cas after kv del')

    # incr/decr from both sides
    h.kv_ok(k.store, 'put', 'n', '5')
    eq(c.cmd(b'incr n 3\r\n'), b'8\r\n', 'network incr of a kv put number')
    h.kv_ok(k.store, 'incr', 'n')
    eq(c.get(b'n'), (b'9', 0), 'network get after kv incr')
    eq(c.cmd(b'decr n 10\r\n'), b'0\r\n', 'network decr below 0')
    eq(h.kv_ok(k.store, 'get', 'n'), b'0', 'kv get after network decr')

    # concurrent read-modify-writes: 4 connections incr one key 250 times
    # each, 4 more append their own mark 100 times each, while the CLI
    # increments the same number 20 times; nothing is lost
    h.kv_ok(k.store, 'put', 'race', '0')
    h.kv_ok(k.store, 'put', 'marks', '')
    errors = []

    def incr_loop():
        try:
            with k.connect(timeout=30) as d:
                for _ in range(250):
                    r = d.cmd(b'incr race 1\r\n')
                    if not re.fullmatch(rb'\d+\r\n', r):
                        errors.append('incr under contention: %r' % r)
                        return
        except Exception as e:
            errors.append('incr connection: %s' % e)

    def append_loop(mark):
        try:
            with k.connect(timeout=30) as d:
                for _ in range(100):
                    r = d.cmd(b'append marks 0 0 1\r\n%s\r\n' % mark)
                    if r != b'STORED\r\n':
                        errors.append('append under contention: %r' % r)
                        return
        except Exception as e:
            errors.append('append connection: %s' % e)

    threads = [threading.Thread(target=incr_loop) for _ in range(4)]
    threads += [threading.Thread(target=append_loop, args=(m,)) for m in (b'a', b'b', b'c', b'd')]
    for t in threads:
        t.start()
    for _ in range(20):
        h.kv_ok(k.store, 'incr', 'race')
    for t in threads:
        t.join(60)
    check(not errors, '; '.join(errors[:5]))
    eq(c.get(b'race'), (b'1020', 0), 'a number incremented 1,000 times over the '
       'network and 20 times by kv, at once')
    marks = c.get(b'marks')[0]
    eq(len(marks), 400, 'length after 4 x 100 concurrent appends')
    for m in b'abcd':
        eq(marks.count(m), 100, 'appends of %r' % chr(m))

    # one store behind both listeners
    eq(u.set(b'viaunix', b'u'), b'STORED\r\n', 'set over the UNIX socket')
    eq(c.get(b'viaunix'), (b'u', 0), 'TCP get of a key set over the UNIX socket')
    eq(h.kv_ok(k.store, 'get', 'viaunix'), b'u', 'kv get of a key set over the UNIX socket')
    c.close()
    u.close()
    k.stop()


if __name__ == '__main__':
    netlib.main('both_ways', body)
