#!/usr/bin/env python3
"""test_libmemcached_tools - kvd with libmemcached's command-line tools
(Debian's libmemcached-tools names them memccp, memccat, memcstat, ...;
other systems memcp, memcat, memcstat), over TCP and over kvd's UNIX
socket, checked against the store with the kv CLI.

It proves:
  - memcp copies files in (binary, empty, 300 KB) with flags and an
    expiry: `kv get` prints each file's exact bytes, `kv ttl` the expiry;
    `memcp --add` of an existing key is refused;
  - memcat reads them back byte for byte, with their flags (-F), and
    fails for a missing key;
  - memcexist, memctouch, memcrm answer for present and missing keys,
    and memcrm's delete is seen by `kv get` (exit 1);
  - memcstat prints kvd's stats, curr_items among them, with the right
    count; memcping connects;
  - memcflush empties the store: `kv get` exits 1 for every key and
    `kv keys` lists nothing.
"""

import os
import subprocess

import netlib
from netlib import check, eq


def tool(*names):
    return netlib.need_tool(*names)


def run(argv, timeout=30):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode('utf-8', 'replace')


def body(h):
    memcp = tool('memcp', 'memccp')
    memcat = tool('memcat', 'memccat')
    memstat = tool('memstat', 'memcstat')
    memflush = tool('memflush', 'memcflush')
    memrm = netlib.find_tool('memrm', 'memcrm')
    memexist = netlib.find_tool('memexist', 'memcexist')
    memtouch = netlib.find_tool('memtouch', 'memctouch')
    memping = netlib.find_tool('memping', 'memcping')

    sock = os.path.join(h.tmp, 'kvd.sock')
    k = h.start_kvd(listen=('127.0.0.1:0', 'unix:' + sock))
    if k.port is None:  # KV_NET_TARGET=memcached on the socket only
        netlib.skip('needs TCP and a UNIX socket')
    tcp = '--servers=127.0.0.1:%d' % k.port
    unix = '--servers=' + sock

    files = {
        'a.bin': b'hello\r\nworld\0x\r\nEND\r\n',
        'b.bin': os.urandom(300 * 1000),
        'c.txt': b'plain text\n' * 100,
        'empty': b'',
    }
    d = os.path.join(h.tmp, 'files')
    os.mkdir(d)
    paths = []
    for name, data in files.items():
        p = os.path.join(d, name)
        with open(p, 'wb') as f:
            f.write(data)
        paths.append(p)

    def store_get(key):
        return h.kv_run(k.store, 'get', key)

    # memcp: every file in, key = the file's base name
    rc, out, err = run([memcp, tcp, '--flags=7', '--expire=100'] + paths)
    eq(rc, 0, 'memcp exit status (%s)' % err)
    if k.store:
        for name, data in files.items():
            rc, out, err = store_get(name)
            eq(rc, 0, 'kv get %s after memcp (%s)' % (name, err))
            eq(out, data, 'kv get %s after memcp' % name)
        ttl = float(h.kv_ok(k.store, 'ttl', 'a.bin').decode())
        check(90 < ttl <= 100, 'kv ttl after memcp --expire=100: %s' % ttl)
    rc, out, err = run([memcp, tcp, '--add', paths[0]])
    check(rc != 0, 'memcp --add of an existing key succeeded')

    # memcat: back byte for byte (it ends each value with a newline), over
    # TCP and over the UNIX socket
    # (memcached serves TCP or a UNIX socket, not both at once)
    for where in (tcp, unix) if k.store else (tcp,):
        for name, data in files.items():
            rc, out, err = run([memcat, where, name])
            eq(rc, 0, 'memcat %s %s exit status (%s)' % (where, name, err))
            eq(out, data + b'\n', 'memcat %s %s' % (where, name))
    rc, out, err = run([memcat, tcp, '-F', 'a.bin'])
    eq(out, b'7\n' + files['a.bin'] + b'\n', 'memcat -F (flags first)')
    rc, out, err = run([memcat, tcp, 'no-such-key'])
    check(rc != 0, 'memcat of a missing key exit status 0')
    eq(out, b'', 'memcat of a missing key printed something')

    # a key put with kv reads with memcat, flags 0
    if k.store:
        h.kv_ok(k.store, 'put', 'fromkv', 'cli value')
        rc, out, err = run([memcat, tcp, '-F', 'fromkv'])
        eq(out, b'0\ncli value\n', 'memcat -F of a kv put key')
        h.kv_ok(k.store, 'del', 'fromkv')

    # memexist / memtouch / memrm
    if memexist:
        eq(run([memexist, tcp, 'a.bin'])[0], 0, 'memexist of a present key')
        check(run([memexist, tcp, 'no-such-key'])[0] != 0,
              'memexist of a missing key exit status 0')
    if memtouch:
        eq(run([memtouch, tcp, '--expire=500', 'c.txt'])[0], 0, 'memtouch')
        check(run([memtouch, tcp, '--expire=5', 'no-such-key'])[0] != 0,
              'memtouch of a missing key exit status 0')
        if k.store:
            ttl = float(h.kv_ok(k.store, 'ttl', 'c.txt').decode())
            check(490 < ttl <= 500, 'kv ttl after memtouch --expire=500: %s' % ttl)
            eq(h.kv_ok(k.store, 'get', 'c.txt'), files['c.txt'],
               'value after memtouch')
    if memrm:
        rc, out, err = run([memrm, tcp, 'c.txt'])
        eq(rc, 0, 'memrm exit status (%s)' % err)
        check(run([memrm, tcp, 'c.txt'])[0] != 0,
              'memrm of a missing key exit status 0')
        if k.store:
            eq(store_get('c.txt')[0], 1, 'kv get after memrm: exit status')
        del files['c.txt']

    # memstat: kvd's stats, items included
    rc, out, err = run([memstat, tcp])
    eq(rc, 0, 'memstat exit status (%s)' % err)
    text = out.decode('utf-8', 'replace')
    netlib.log(text)
    stats = {}
    for line in text.splitlines():
        if ':' in line and line.startswith('\t'):
            name, _, value = line.strip().partition(':')
            stats[name.strip()] = value.strip()
    for name in ('pid', 'uptime', 'version', 'curr_connections', 'cmd_get',
                 'cmd_set', 'get_hits', 'get_misses', 'curr_items'):
        check(name in stats, 'memstat printed no %s' % name)
    eq(int(stats['curr_items']), len(files), 'memstat curr_items')
    if memping:
        eq(run([memping, tcp])[0], 0, 'memping')

    # memflush: the store is empty
    rc, out, err = run([memflush, tcp])
    eq(rc, 0, 'memflush exit status (%s)' % err)
    for name in files:
        rc, out, err = run([memcat, tcp, name])
        check(rc != 0, 'memcat %s after memflush found it' % name)
        if k.store:
            eq(store_get(name)[0], 1, 'kv get %s after memflush: exit status' % name)
    if k.store:
        eq(h.kv_ok(k.store, 'keys'), b'', 'kv keys after memflush')
    k.stop()


if __name__ == '__main__':
    netlib.main('libmemcached_tools', body)
