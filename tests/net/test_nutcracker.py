#!/usr/bin/env python3
"""test_nutcracker - three kvd behind twemproxy (Debian's nutcracker),
with the configuration of tests/net/nutcracker.yml.example, its ports
replaced by free ones.

It proves:
  - nutcracker speaks to kvd: 10,000 keys set through the proxy
    (pipelined, 500 a batch) are all STORED;
  - each key is in exactly one kvd's store (read with `kv keys`: the
    three lists are disjoint, add up to 10,000, and each holds a fair
    share, so the ring spreads keys over all three), with the value set;
  - all 10,000 read back through the proxy, with multi-key gets that the
    proxy splits across the servers;
  - when one kvd stops (SIGTERM), the proxy ejects it after the failure
    limit: the keys that lived on it then miss instead of failing, they
    can be set again (now on the others, as `kv get` shows), and the
    keys of the other two stay readable; the stats port reports the
    ejection.
"""

import json
import os
import re
import socket
import time

import netlib
from netlib import Conn, check, eq

NKEYS = 10000
BATCH = 500
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'nutcracker.yml.example')


def key(i):
    return b'user:%06d' % i


def value(i):
    return b'v%d-%s' % (i, b'x' * (i % 37))


def config(proxy_port, ports):
    """The example file, its ports replaced: the listen port, then each
    server's in order."""
    with open(EXAMPLE) as f:
        text = f.read()
    text, n = re.subn(r'(listen: 127\.0\.0\.1:)\d+', r'\g<1>%d' % proxy_port, text)
    eq(n, 1, 'listen lines in %s' % EXAMPLE)
    it = iter(ports)
    text, n = re.subn(r'(- 127\.0\.0\.1:)\d+(:\d+ )',
                      lambda m: '%s%d%s' % (m.group(1), next(it), m.group(2)), text)
    eq(n, len(ports), 'server lines in %s' % EXAMPLE)
    return text


def stats(port):
    """nutcracker's stats: one JSON object per connection."""
    with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.decode())


def pipelined(c, reqs, per_reply):
    """Send REQS at once; read one reply per request with PER_REPLY."""
    c.send(b''.join(reqs))
    return [per_reply() for _ in reqs]


def body(h):
    nut = netlib.need_tool('nutcracker')
    kvds = [h.start_kvd(store=h.store_name('-' + t)) for t in 'abc']
    names = ['cache-a', 'cache-b', 'cache-c']

    # nutcracker on free ports (it cannot report a port of its own choosing:
    # a port taken meanwhile makes it exit, and we try others)
    proc = None
    for _ in range(5):
        pport, sport = netlib.free_port(), netlib.free_port()
        conf = os.path.join(h.tmp, 'nutcracker.yml')
        with open(conf, 'w') as f:
            f.write(config(pport, [k.port for k in kvds]))
        proc = h.start('nutcracker', [nut, '-c', conf, '-s', str(sport),
                                      '-a', '127.0.0.1', '-i', '100',
                                      '-o', os.path.join(h.tmp, 'nutcracker.log'),
                                      '-p', os.path.join(h.tmp, 'nutcracker.pid')])
        if netlib.wait_port('127.0.0.1', pport, proc, time.monotonic() + 10) and \
                netlib.wait_port('127.0.0.1', sport, proc, time.monotonic() + 5):
            break
        proc.stop()
        proc = None
    check(proc, 'nutcracker did not start')
    c = Conn.tcp('127.0.0.1', pport, 10)

    # 10,000 sets, pipelined
    t0 = time.monotonic()
    for lo in range(0, NKEYS, BATCH):
        reqs = [b'set %s 0 0 %d\r\n%s\r\n' % (key(i), len(value(i)), value(i))
                for i in range(lo, lo + BATCH)]
        replies = pipelined(c, reqs, c.line)
        bad = [r for r in replies if r != b'STORED\r\n']
        check(not bad, 'sets through nutcracker: %d not STORED, e.g. %r'
              % (len(bad), bad[:3]))
    netlib.log('%d sets through nutcracker in %.1f s' % (NKEYS, time.monotonic() - t0))

    # each key in exactly one store
    owner = {}
    if kvds[0].store:
        counts = []
        for n, k in enumerate(kvds):
            keys = h.kv_ok(k.store, 'keys', '-0').split(b'\0')[:-1]
            counts.append(len(keys))
            for kk in keys:
                check(kk not in owner, 'key %r in two stores' % kk)
                owner[kk] = n
        netlib.log('keys per kvd: %s' % counts)
        eq(sum(counts), NKEYS, 'keys in the three stores together')
        eq(set(owner), {key(i) for i in range(NKEYS)}, 'the keys in the stores')
        for n, cnt in enumerate(counts):
            check(cnt > NKEYS // 10, '%s holds only %d of %d keys' % (names[n], cnt, NKEYS))
        # values are the ones set (a sample per store, by the CLI)
        for i in range(0, NKEYS, 997):
            eq(h.kv_ok(kvds[owner[key(i)]].store, 'get', key(i).decode()), value(i),
               'kv get %s in its store' % key(i))

    else:
        # KV_NET_TARGET=memcached: ask each server itself
        for n, k in enumerate(kvds):
            with k.connect() as d:
                for lo in range(0, NKEYS, 100):
                    r = d.cmd(b'get ' + b' '.join(key(i) for i in range(lo, lo + 100)) + b'\r\n')
                    for kk in re.findall(rb'^VALUE (\S+) ', r, re.M):
                        check(kk not in owner, 'key %r on two servers' % kk)
                        owner[kk] = n
        eq(len(owner), NKEYS, 'keys on the three servers together')

    # all read back through the proxy, 100 keys a get
    for lo in range(0, NKEYS, 100):
        ks = [key(i) for i in range(lo, lo + 100)]
        r = c.cmd(b'get ' + b' '.join(ks) + b'\r\n')
        got = dict(re.findall(rb'VALUE (\S+) 0 \d+\r\n(.*?)\r\n', r, re.S))
        eq(len(got), 100, 'a 100-key get through nutcracker: hits')
        for i in range(lo, lo + 100):
            if got[key(i)] != value(i):
                eq(got[key(i)], value(i), 'value of %s through nutcracker' % key(i))

    # stop one kvd: the proxy ejects it
    dead = 1
    kvds[dead].stop()
    dead_keys = sorted(kk for kk, n in owner.items() if n == dead)
    live_keys = sorted(kk for kk, n in owner.items() if n != dead)
    probe = dead_keys[0]
    errors = 0
    deadline = time.monotonic() + 15
    while True:
        r = c.cmd(b'get %s\r\n' % probe)
        if r == b'END\r\n':
            break
        if not r.startswith(b'VALUE'):
            errors += 1
        check(time.monotonic() < deadline, 'nutcracker still does not answer a '
              'miss for a key of the stopped kvd after 15 s: %r' % r)
        time.sleep(0.05)
    netlib.log('the stopped kvd was ejected after %d failed requests' % errors)

    def get_retry(kk):
        """A get; one SERVER_ERROR is allowed, when the proxy tries the
        stopped kvd again after server_retry_timeout and ejects it again."""
        r = c.cmd(b'get %s\r\n' % kk)
        if r.startswith(b'SERVER_ERROR'):
            r = c.cmd(b'get %s\r\n' % kk)
        return r

    retries = 0
    for kk in dead_keys[:300]:
        r = get_retry(kk)
        eq(r, b'END\r\n', 'get through nutcracker of a key of the stopped kvd')
    for kk in live_keys[::20]:
        i = int(kk.split(b':')[1])
        r = get_retry(kk)
        eq(r, b'VALUE %s 0 %d\r\n%s\r\nEND\r\n' % (kk, len(value(i)), value(i)),
           'get through nutcracker of a key of a running kvd')
    # the stopped kvd's keys can be set again: now on the others
    for kk in dead_keys[:100]:
        r = c.cmd(b'set %s 0 0 3\r\nnew\r\n' % kk)
        if r.startswith(b'SERVER_ERROR'):
            retries += 1
            r = c.cmd(b'set %s 0 0 3\r\nnew\r\n' % kk)
        eq(r, b'STORED\r\n', 'set through nutcracker of a key of the stopped kvd')
        eq(get_retry(kk), b'VALUE %s 0 3\r\nnew\r\nEND\r\n' % kk,
           'get of it through nutcracker')
    found = 0
    for kk in dead_keys[:100] if kvds[0].store else ():
        for n in (0, 2):
            rc, out, _ = h.kv_run(kvds[n].store, 'get', kk.decode())
            if rc == 0:
                eq(out, b'new', 'kv get of a re-set key')
                found += 1
    if kvds[0].store:
        eq(found, 100, 'keys of the stopped kvd set again, found in the other stores')

    st = stats(sport)
    pool = st.get('kv', {})
    netlib.log('nutcracker pool stats: server_ejects %s forward_error %s; '
               '%s: %s' % (pool.get('server_ejects'), pool.get('forward_error'),
                           names[dead], json.dumps(pool.get(names[dead], {}))))
    check(pool.get('server_ejects', 0) >= 1, 'nutcracker stats: no server_ejects')
    check(pool.get(names[dead], {}).get('server_ejected_at', 0) > 0,
          'nutcracker stats: %s has no server_ejected_at' % names[dead])
    c.close()
    proc.stop()
    for n in (0, 2):
        kvds[n].stop()


if __name__ == '__main__':
    netlib.main('nutcracker', body)
