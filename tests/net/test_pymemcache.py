#!/usr/bin/env python3
"""test_pymemcache - kvd with a real Python client, pymemcache's
base.Client and its standard serializer, and the same items seen through
the kv CLI.

It proves:
  - every storage and retrieval call pymemcache makes works against kvd:
    set/get/get_many/gets/cas/incr/decr/delete/touch/add/replace/
    append/prepend, with and without noreply;
  - client flags round-trip: the serializer marks str, int and pickled
    values with flags, and gets each back as the type it stored;
  - values are binary-safe (CR, LF, NUL, every byte value) and a value
    near the max size round-trips;
  - a key set over the network is in the store: `kv get` prints the exact
    bytes the serializer sent; and a key put with `kv put` reads back over
    the network as bytes with flags 0.
"""

import os
import pickle

import netlib
from netlib import check, eq


def serde_of(pymemcache):
    import pymemcache.serde as serde
    for name in ('default_serde', 'pickle_serde'):
        if hasattr(serde, name):
            return getattr(serde, name)
    return serde.LegacyWrappingSerde(serde.python_memcache_serializer,
                                     serde.python_memcache_deserializer)


def body(h):
    pymemcache = netlib.import_pymemcache()
    from pymemcache.client.base import Client
    k = h.start_kvd()
    c = Client(('127.0.0.1', k.port), serde=serde_of(pymemcache),
               connect_timeout=5, timeout=10, default_noreply=False)
    raw = k.connect()

    def flags_of(key):
        r = raw.get(key)
        check(r is not None, 'raw get %s: absent' % key)
        return r[1]

    def store_bytes(key):
        if k.store is None:
            return None
        rc, out, err = h.kv_run(k.store, 'get', key)
        eq(rc, 0, 'kv get %s exit status (%s)' % (key, err))
        return out

    # str, int, dict, bytes: each comes back as itself, by its flags
    values = {
        'str': 'h\u00e9llo w\u00f6rld',
        'int': 42,
        'dict': {'a': 1, 'b': [1, 2, 3], 'c': 'x'},
        'bytes': bytes(range(256)) + b'\r\n\0END\r\n',
    }
    for key, v in values.items():
        eq(c.set(key, v), True, 'set %s' % key)
    for key, v in values.items():
        eq(c.get(key), v, 'get %s' % key)
    eq(flags_of('str'), 16, 'flags of a str (FLAG_TEXT)')
    eq(flags_of('int'), 2, 'flags of an int (FLAG_INTEGER)')
    eq(flags_of('dict'), 1, 'flags of a dict (FLAG_PICKLE)')
    eq(flags_of('bytes'), 0, 'flags of bytes')
    if k.store:
        eq(store_bytes('str'), values['str'].encode(), 'kv get of a str item')
        eq(store_bytes('int'), b'42', 'kv get of an int item')
        eq(pickle.loads(store_bytes('dict')), values['dict'],
           'kv get of a pickled item, unpickled')
        eq(store_bytes('bytes'), values['bytes'], 'kv get of a binary item')

    # get_many: hits and misses
    got = c.get_many(['str', 'int', 'nope', 'dict', 'bytes', 'nope2'])
    eq(got, values, 'get_many')
    eq(c.get_many([]), {}, 'get_many of no keys')
    # a get_many of 300 keys is one command line of over 9 KB, as
    # memcached serves it (its line limit does not apply to get)
    many = {'many-key-%05d' % i: i for i in range(300)}
    eq(c.set_many(many), [], 'set_many of 300 keys: keys not stored')
    eq(c.get_many(list(many) + ['nope']), many, 'get_many of 300 keys')
    c.delete_many(list(many))
    eq(c.get('nope'), None, 'get of a missing key')

    # a large value, just under 1 MiB with the key and item overhead
    big = os.urandom(900 * 1024)
    eq(c.set('big', big), True, 'set of a 900 KiB value')
    eq(c.get('big'), big, 'get of a 900 KiB value')
    if k.store:
        eq(store_bytes('big'), big, 'kv get of a 900 KiB value')

    # add / replace
    eq(c.add('str', 'other'), False, 'add of an existing key')
    eq(c.get('str'), values['str'], 'value after a refused add')
    eq(c.add('fresh', 'one'), True, 'add of a new key')
    eq(c.replace('absent', 'x'), False, 'replace of a missing key')
    eq(c.get('absent'), None, 'a refused replace stores nothing')
    eq(c.replace('fresh', 'two'), True, 'replace of an existing key')
    eq(c.get('fresh'), 'two', 'value after replace')

    # append / prepend keep the item's flags (bytes: 0)
    eq(c.set('ap', b'mid'), True, 'set ap')
    eq(c.append('ap', b'-end'), True, 'append')
    eq(c.prepend('ap', b'start-'), True, 'prepend')
    eq(c.get('ap'), b'start-mid-end', 'value after append and prepend')
    eq(c.append('absent', b'x'), False, 'append to a missing key')
    eq(c.prepend('absent', b'x'), False, 'prepend to a missing key')
    eq(c.set('txt', 'abc'), True, 'set txt')
    eq(c.append('txt', b'def'), True, 'append to a str item')
    eq(c.get('txt'), 'abcdef', 'append keeps the item flags (still a str)')
    if k.store:
        eq(store_bytes('ap'), b'start-mid-end', 'kv get after append/prepend')

    # gets / cas
    v, cas1 = c.gets('fresh')
    eq(v, 'two', 'gets value')
    check(cas1 is not None, 'gets returned no cas unique')
    eq(c.cas('fresh', 'three', cas1), True, 'cas with the current unique')
    eq(c.cas('fresh', 'four', cas1), False, 'cas with a stale unique')
    eq(c.get('fresh'), 'three', 'value after a refused cas')
    eq(c.cas('absent', 'x', cas1), None, 'cas of a missing key (NOT_FOUND)')
    v, cas2 = c.gets('fresh')
    check(cas2 != cas1, 'the cas unique changed after a store')
    eq(c.gets('absent'), (None, None), 'gets of a missing key')

    # incr / decr
    eq(c.set('n', 10), True, 'set n')
    eq(c.incr('n', 5), 15, 'incr')
    eq(c.decr('n', 3), 12, 'decr')
    eq(c.decr('n', 100), 0, 'decr below 0 stops at 0')
    eq(c.incr('n', 2 ** 64 - 1), 2 ** 64 - 1, 'incr to 2^64-1')
    eq(c.incr('n', 1), 0, 'incr wraps at 2^64')
    eq(c.incr('absent', 1), None, 'incr of a missing key')
    eq(c.decr('absent', 1), None, 'decr of a missing key')
    eq(c.incr('int', 8), 50, 'incr of an int item')
    eq(c.get('int'), 50, 'an int item after incr is still an int')
    if k.store:
        eq(store_bytes('n'), b'0', 'kv get after incr')

    # touch
    eq(c.touch('fresh', 100), True, 'touch')
    eq(c.touch('absent', 100), False, 'touch of a missing key')
    if k.store:
        out = h.kv_ok(k.store, 'ttl', 'fresh').decode().strip()
        check(90 < float(out) <= 100, 'kv ttl after touch 100: %s' % out)

    # delete
    eq(c.delete('fresh'), True, 'delete')
    eq(c.delete('fresh'), False, 'delete of a missing key')
    eq(c.get('fresh'), None, 'get after delete')
    if k.store:
        rc, _, _ = h.kv_run(k.store, 'get', 'fresh')
        eq(rc, 1, 'kv get after a network delete: exit status')

    # noreply: the calls return at once, the next round trip sees them
    eq(c.set('nr', 'quiet', noreply=True), True, 'set noreply')
    c.delete('str', noreply=True)
    c.incr('n', 7, noreply=True)
    eq(c.get_many(['nr', 'str', 'n']), {'nr': 'quiet', 'n': 7},
       'after noreply calls (incr keeps the int flags)')

    # a key put with the kv CLI reads over the network with flags 0
    if k.store:
        payload = b'from the cli\r\nEND\r\n\0\xff'
        h.kv_ok(k.store, 'put', 'clikey', input=payload)
        eq(c.get('clikey'), payload, 'pymemcache get of a kv put key')
        eq(flags_of('clikey'), 0, 'flags of a kv put key')
        h.kv_ok(k.store, 'put', 'clinum', '41')
        eq(c.incr('clinum', 1), 42, 'incr of a kv put number')
        eq(store_bytes('clinum'), b'42', 'kv get after a network incr')

    # stats and version answer
    st = c.stats()
    check(b'curr_items' in st or 'curr_items' in st, 'stats has curr_items')
    check(c.version(), 'version is empty')
    c.close()
    raw.close()
    k.stop()


if __name__ == '__main__':
    netlib.main('pymemcache', body)
