#!/usr/bin/env python3
"""test_differential - the same scripted sessions sent to Debian's
memcached 1.6 and to kvd, their replies compared byte for byte.

Each step of a session is sent on its own, followed by a `mn` (meta
no-op) whose "MN" reply marks the end of the step's reply, so a step
that answers nothing (noreply, a quiet meta flag) is seen to answer
nothing, and a step that answers too much is seen too. A step after
which the server closes the connection records "<closed>" (the next
step reconnects); one that gets no sentinel within a few seconds
records "<timeout>".

Replies are compared exactly, except where kvd and memcached
legitimately differ; each such rule is named in the session that uses
it:
  cas      the CAS unique of gets/gats and of meta's c flag: each server
           numbers its items its own way, so the number is replaced by
           "<cas>" (whether uniques change when they must is checked by
           cas steps, which answer STORED or EXISTS on both);
  version  the VERSION line's text;
  pad      memcached overwrites an incr/decr result that is shorter
           than the old value in place, padded with spaces ("100", decr
           95 -> "5  "); kvd stores the number's digits alone. Trailing
           spaces are stripped from values and the lengths (VALUE's
           bytes, VA's size, meta's s flag) fixed to match;
  ttl      meta's t flag (seconds left) may be a second or two apart
           between the servers' clocks (memcached's clock ticks once a
           second); it is rounded to the nearest multiple of 10 (the
           sessions set TTLs of 30 and 100 seconds);
  stats    `stats` is compared in shape only: STAT lines, then END;
  badchunk a data block longer than its length (no LF in it): memcached
           answers CLIENT_ERROR bad data chunk, then parses the rest of
           the value's line as a command (ERROR); kvd skips the rest of
           that line, so no byte of a value is ever run as a command
           (daemon/mc_proto.c, finish_bad_chunk). The ERROR after bad
           data chunk is dropped.
Where kvd refuses what memcached 1.6.18 accepts by accident (flags of
2^32 and more, truncated to 32 bits; keys with control characters,
which the protocol forbids), no step is sent: the two are documented as
different in daemon/mc_proto.c, and kvd's refusal is tested in
tests/unit/test_mc_proto.c.
The sessions cover storage commands with flags, exptime and noreply,
cas, incr/decr edge cases (wrap at 2^64, decr below 0, non-numeric,
delta not a number), append/prepend, delete, touch, gat/gats,
flush_all (also delayed), verbosity, the meta commands mg/ms/md/ma/mn
with their common flags, and errors: unknown commands, bad formats,
keys too long, negative exptime, lengths that are not numbers, values
too large, bad data chunks, quit.
"""

import math
import os
import re
import socket
import time

import netlib
from netlib import Closed, Conn

MN = b'MN\r\n'

# A step is bytes (sent as is), a callable taking the runner and giving
# bytes (for a step that needs an earlier reply, e.g. a cas unique), or
# ('sleep', seconds).

SESSIONS = []


def session(name, steps, norm=()):
    SESSIONS.append((name, steps, tuple(norm)))


def cas_of(runner, key):
    """The unique of KEY from the last gets reply that had it."""
    return runner.cas.get(key, 0)


# ---------------------------------------------------------------------------
session('storage', [
    b'set st_a 0 0 5\r\nhello\r\n',
    b'get st_a\r\n',
    b'set st_a 123 0 5\r\nworld\r\n',
    b'get st_a\r\n',
    b'set st_b 4294967295 0 3\r\nmax\r\n',
    b'get st_b\r\n',
    b'set st_empty 0 0 0\r\n\r\n',
    b'get st_empty\r\n',
    b'set st_bin 0 0 8\r\n\r\nEND\r\n\0\r\n',
    b'get st_bin\r\n',
    b'add st_a 0 0 1\r\nx\r\n',
    b'add st_c 7 0 1\r\nc\r\n',
    b'get st_c\r\n',
    b'replace st_nope 0 0 1\r\nx\r\n',
    b'replace st_c 8 0 2\r\ncc\r\n',
    b'get st_c\r\n',
    b'append st_c 99 0 3\r\n-ap\r\n',
    b'prepend st_c 99 0 3\r\npp-\r\n',
    b'get st_c\r\n',
    b'append st_nope 0 0 1\r\nx\r\n',
    b'prepend st_nope 0 0 1\r\nx\r\n',
    b'get st_nope\r\n',
    b'set st_nr 0 0 2 noreply\r\nnr\r\n',
    b'add st_nr 0 0 2 noreply\r\nxx\r\n',
    b'replace st_nr 0 0 2 noreply\r\nrr\r\n',
    b'append st_nr 0 0 1 noreply\r\na\r\n',
    b'prepend st_nr 0 0 1 noreply\r\np\r\n',
    b'get st_nr\r\n',
    b'get st_a st_nope st_b st_a st_empty\r\n',
    b'get st_n1 st_n2 st_n3\r\n',
    # several commands in one write: replies in order
    b'set st_p 0 0 1\r\n1\r\nget st_p\r\ndelete st_p\r\nget st_p\r\n',
    # spaces between tokens, a bare LF ending a line
    b'set st_sp  0  0  1\r\nx\r\n',
    b'get  st_sp \r\n',
    b'get st_sp\n',
    b'set st_lf 0 0 1\nx\r\n',
    b'get st_lf\r\n',
    # the longest key
    b'set ' + b'k' * 250 + b' 0 0 1\r\nx\r\n',
    b'get ' + b'k' * 250 + b'\r\n',
])

session('exptime', [
    b'set ex_100 0 100 1\r\nx\r\n',
    b'mg ex_100 t v\r\n',
    b'set ex_neg 0 -1 1\r\nx\r\n',
    b'get ex_neg\r\n',
    b'set ex_neg 0 -100 1\r\nx\r\n',
    b'get ex_neg\r\n',
    # over 30 days: a unix time, here long past
    b'set ex_old 0 2592001 1\r\nx\r\n',
    b'get ex_old\r\n',
    lambda r: b'set ex_abs 0 %d 1\r\nx\r\n' % (int(time.time()) + 100),
    b'mg ex_abs t\r\n',
    b'set ex_1 0 1 1\r\nx\r\n',
    b'get ex_1\r\n',
    b'set ex_2 0 1 1\r\n5\r\n',
    b'set ex_3 0 1 1\r\nx\r\n',
    b'set ex_4 0 1 1\r\nx\r\n',
    ('sleep', 2.2),
    b'get ex_1\r\n',
    # an expired item is absent to every command
    b'add ex_1 0 0 1\r\ny\r\n',
    b'get ex_1\r\n',
    b'incr ex_2 1\r\n',
    b'touch ex_3 10\r\n',
    b'append ex_4 0 0 1\r\nz\r\n',
    b'replace ex_4 0 0 1\r\nz\r\n',
    b'mg ex_4 v\r\n',
    b'delete ex_4\r\n',
], norm=('ttl',))

session('cas', [
    b'set cs_a 5 0 3\r\none\r\n',
    b'gets cs_a\r\n',
    lambda r: b'cas cs_a 6 0 3 %d\r\ntwo\r\n' % cas_of(r, b'cs_a'),
    b'get cs_a\r\n',
    # the unique seen before the last store is stale now
    lambda r: b'cas cs_a 0 0 5 %d\r\nthree\r\n' % cas_of(r, b'cs_a'),
    b'gets cs_a\r\n',
    lambda r: b'cas cs_a 0 0 4 %d noreply\r\nfour\r\n' % cas_of(r, b'cs_a'),
    b'get cs_a\r\n',
    lambda r: b'cas cs_a 0 0 4 %d noreply\r\nfive\r\n' % cas_of(r, b'cs_a'),
    b'get cs_a\r\n',
    b'cas cs_missing 0 0 1 1\r\nx\r\n',
    b'gets cs_missing\r\n',
    b'gets cs_a cs_missing cs_a\r\n',
    b'cas cs_a 0 0 1 abc\r\nx\r\n',
    b'cas cs_a 0 0 1\r\nx\r\n',
], norm=('cas',))

session('incr_decr', [
    b'set id_a 3 0 2\r\n10\r\n',
    b'incr id_a 5\r\n',
    b'decr id_a 3\r\n',
    b'get id_a\r\n',
    b'decr id_a 100\r\n',
    b'get id_a\r\n',
    b'incr id_a 18446744073709551615\r\n',
    b'incr id_a 1\r\n',
    b'set id_max 0 0 20\r\n18446744073709551615\r\n',
    b'incr id_max 1\r\n',
    b'get id_max\r\n',
    b'set id_big 0 0 3\r\n100\r\n',
    b'decr id_big 95\r\n',
    b'get id_big\r\n',
    b'incr id_big 1\r\n',
    b'incr id_a 18446744073709551616\r\n',
    b'incr id_a -1\r\n',
    b'incr id_a abc\r\n',
    b'decr id_a 1x\r\n',
    b'incr id_nope 1\r\n',
    b'decr id_nope 1\r\n',
    b'set id_s 0 0 3\r\nabc\r\n',
    b'incr id_s 1\r\n',
    b'decr id_s 1\r\n',
    b'set id_neg 0 0 2\r\n-1\r\n',
    b'incr id_neg 1\r\n',
    b'set id_long 0 0 21\r\n123456789012345678901\r\n',
    b'incr id_long 1\r\n',
    b'set id_empty 0 0 0\r\n\r\n',
    b'incr id_empty 1\r\n',
    b'set id_z 0 0 2\r\n01\r\n',
    b'incr id_z 1\r\n',
    b'incr id_a 2 noreply\r\n',
    b'decr id_a 1 noreply\r\n',
    b'get id_a\r\n',
    b'incr\r\n',
    b'incr id_a\r\n',
    b'incr id_a 1 2 3\r\n',
], norm=('pad',))

session('delete', [
    b'set dl_a 0 0 1\r\nx\r\n',
    b'delete dl_a\r\n',
    b'delete dl_a\r\n',
    b'get dl_a\r\n',
    b'set dl_b 0 0 1\r\nx\r\n',
    b'delete dl_b noreply\r\n',
    b'get dl_b\r\n',
    b'set dl_c 0 0 1\r\nx\r\n',
    b'delete dl_c 0\r\n',
    b'delete\r\n',
])

session('touch_gat', [
    b'set tg_a 1 0 2\r\naa\r\n',
    b'touch tg_a 100\r\n',
    b'mg tg_a t v f\r\n',
    b'touch tg_nope 10\r\n',
    b'touch tg_a 30 noreply\r\n',
    b'mg tg_a t\r\n',
    b'touch tg_a abc\r\n',
    b'touch tg_a\r\n',
    b'gat 100 tg_a\r\n',
    b'mg tg_a t\r\n',
    b'gat 0 tg_a tg_nope tg_a\r\n',
    b'mg tg_a t\r\n',
    b'gats 30 tg_a\r\n',
    b'gats 30 tg_nope\r\n',
    b'gat abc tg_a\r\n',
    b'gat 10\r\n',
    b'gat\r\n',
    b'touch tg_a -1\r\n',
    b'get tg_a\r\n',
], norm=('cas', 'ttl'))

session('flush_all', [
    b'set fa_a 0 0 1\r\nx\r\n',
    b'set fa_b 0 0 1\r\nx\r\n',
    b'flush_all\r\n',
    b'get fa_a fa_b\r\n',
    b'set fa_a 0 0 1\r\ny\r\n',
    b'get fa_a\r\n',
    b'flush_all noreply\r\n',
    b'get fa_a\r\n',
    b'set fa_a 0 0 1\r\nz\r\n',
    b'flush_all 0\r\n',
    b'get fa_a\r\n',
    b'flush_all abc\r\n',
    b'set fa_d 0 0 1\r\nd\r\n',
    b'flush_all 2\r\n',
    b'get fa_d\r\n',
    ('sleep', 3.2),
    b'get fa_d\r\n',
    b'set fa_e 0 0 1\r\ne\r\n',
    b'get fa_e\r\n',
])

session('verbosity_version', [
    b'verbosity 1\r\n',
    b'verbosity 0 noreply\r\n',
    b'verbosity\r\n',
    b'version\r\n',
    b'stats\r\n',
], norm=('version', 'stats'))

session('meta', [
    b'ms mt_a 3\r\nabc\r\n',
    b'ms mt_a 3 T100 F5\r\nabc\r\n',
    b'mg mt_a\r\n',
    b'mg mt_a v\r\n',
    b'mg mt_a v f t s k\r\n',
    b'mg mt_a k v O123 q\r\n',
    b'mg mt_nope v\r\n',
    b'mg mt_nope v q\r\n',
    b'mg mt_nope v k O9\r\n',
    b'mg mt_a c\r\n',
    b'mg mt_a T30 t v\r\n',
    b'mg mt_a v v\r\n',
    b'mg mt_a Oxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx v\r\n',
    b'mg mt_a Tabc\r\n',
    b'mg\r\n',
    b'ms mt_b 2\r\nab\r\n',
    b'ms mt_b 2 MA\r\ncd\r\n',
    b'ms mt_c 2 MA\r\nab\r\n',
    b'ms mt_b 2 MP\r\nxy\r\n',
    b'mg mt_b v\r\n',
    b'ms mt_b 2 ME\r\nqq\r\n',
    b'ms mt_d 2 ME\r\nqq\r\n',
    b'ms mt_b 2 MR\r\nrr\r\n',
    b'ms mt_nope 2 MR\r\nqq\r\n',
    b'ms mt_b 2 MS\r\nss\r\n',
    b'ms mt_b 2 MX\r\nzz\r\n',
    b'ms mt_b 2 q\r\nzz\r\n',
    b'ms mt_b 2 k O5\r\nzz\r\n',
    b'ms mt_b 2 C1\r\nzz\r\n',
    b'mg mt_b c\r\n',
    lambda r: b'ms mt_b 2 C%d\r\nok\r\n' % r.meta_cas,
    b'mg mt_b v\r\n',
    b'ms mt_b 2 T-1\r\nab\r\n',
    b'mg mt_b v\r\n',
    b'ms mt_b 2 Tabc\r\nab\r\n',
    b'ms mt_b 2 Z\r\nab\r\n',
    b'ms mt_b\r\n',
    b'ms mt_b abc\r\nzz\r\n',
    b'ms mt_f 2 F7 T0\r\nff\r\n',
    b'mg mt_f s v f t\r\n',
    b'md mt_f\r\n',
    b'md mt_f\r\n',
    b'md mt_f q\r\n',
    b'md mt_f k O7\r\n',
    b'ma mt_n\r\n',
    b'ma mt_n N0 J13\r\n',
    b'ma mt_n v\r\n',
    b'ma mt_n MD D20 v\r\n',
    b'ma mt_n MI D5 v\r\n',
    b'ma mt_n q\r\n',
    b'mg mt_n v\r\n',
    b'ma mt_n MX\r\n',
    b'ma mt_nope\r\n',
    b'ms mt_s 3\r\nabc\r\n',
    b'ma mt_s\r\n',
    b'mn\r\n',
    b'ms mt_q 1 q\r\n1\r\nmg mt_q v q\r\nmg mt_nope v q\r\nmn\r\n',
    b'ms bXRfYjY0 2 b\r\nbb\r\n',
    b'mg bXRfYjY0 b v k\r\n',
    b'mg mt_b64 v\r\n',
], norm=('cas', 'ttl', 'pad'))

session('errors', [
    b'foo\r\n',
    b'\r\n',
    b'GET st_a\r\n',
    b'get\r\n',
    b'get ' + b'k' * 251 + b'\r\n',
    b'set ' + b'k' * 251 + b' 0 0 1\r\nx\r\n',
    b'set er_a 0 0 -1\r\n',
    b'set er_a 0 0 abc\r\nx\r\n',
    b'set er_a abc 0 1\r\nx\r\n',
    b'set er_a -1 0 1\r\nx\r\n',
    b'set er_a 18446744073709551616 0 1\r\nx\r\n',
    b'set er_a 0 abc 1\r\nx\r\n',
    b'set er_a 0 0\r\n',
    b'set er_a 0 0 1 2 3 4\r\nx\r\n',
    b'set er_a\r\n',
    b'get er_a\r\n',
    # too large for any store: refused, the block swallowed
    b'set er_big 0 0 2000000\r\n' + b'x' * 2000000 + b'\r\n',
    b'get er_big\r\n',
    b'set er_ok 0 0 2\r\nok\r\n',
    b'get er_ok\r\n',
])

session('bad_chunk', [
    # a data block longer than its length: memcached answers bad data
    # chunk and then ERROR for the rest of the line, parsed as a command;
    # kvd skips the rest of that line ('badchunk')
    b'set bc_a 0 0 1\r\nxyz\r\n',
    b'get bc_a\r\n',
    b'set bc_a 0 0 3\r\nxyz\r\n',
    b'get bc_a\r\n',
    # shorter than its length: the block runs into the next line, whose
    # rest is an ERROR on both
    b'set bc_b 0 0 5\r\nab\r\nget bc_a\r\n',
    b'get bc_b\r\n',
    # a block ending in a bare LF where its CR LF should be
    b'set bc_c 0 0 2\r\nabc\n',
    b'get bc_c bc_a\r\n',
], norm=('badchunk',))

session('noreply', [
    # noreply silences the answers, errors included where memcached
    # silences them
    b'incr nr_nope 1 noreply\r\n',
    b'set nr_a 0 0 1\r\na\r\n',
    b'incr nr_a 1 noreply\r\n',
    b'incr nr_a x noreply\r\n',
    b'touch nr_nope 1 noreply\r\n',
    b'delete nr_nope noreply\r\n',
    b'add nr_a 0 0 1 noreply\r\nb\r\n',
    b'cas nr_a 0 0 1 1 noreply\r\nb\r\n',
    b'set nr_big 0 0 2000000 noreply\r\n' + b'x' * 2000000 + b'\r\n',
    b'get nr_a nr_big\r\n',
    b'set ' + b'k' * 250 + b' 0 0 1 noreply\r\nx\r\n',
    b'flush_all noreply\r\n',
    b'add nr_a 0 0 1\r\nb\r\n',
    # keys are any bytes but space and control characters
    b'set nr_\xff\xfe 0 0 1\r\nx\r\n',
    b'get nr_\xff\xfe\r\n',
])

session('quit', [
    b'set qt_a 0 0 1\r\nx\r\n',
    b'quit\r\n',
    b'get qt_a\r\n',
])


# ---------------------------------------------------------------------------

def norm_reply(reply, rules):
    r = reply
    if 'cas' in rules:
        r = re.sub(rb'^(VALUE \S+ \d+ \d+) \d+\r\n', rb'\1 <cas>\r\n', r,
                   flags=re.M)
        r = re.sub(rb'^((?:VA \d+|HD|EN|NF|NS|EX)(?: \S+)*?) c\d+', rb'\1 c<cas>',
                   r, flags=re.M)
    if 'version' in rules:
        r = re.sub(rb'^VERSION .*\r\n', b'VERSION <v>\r\n', r, flags=re.M)
    if 'ttl' in rules:
        def up(m):
            n = int(m.group(2))
            return m.group(1) + b't%d' % (int(math.floor(n / 10.0 + 0.5)) * 10)
        r = re.sub(rb'(^(?:VA \d+|HD)(?: \S+)*? )t(\d+)', up, r, flags=re.M)
    if 'badchunk' in rules:
        r = r.replace(b'CLIENT_ERROR bad data chunk\r\nERROR\r\n',
                      b'CLIENT_ERROR bad data chunk\r\n')
    if 'pad' in rules:
        r = unpad(r)
    if 'stats' in rules and r.startswith(b'STAT '):
        check_stats = re.fullmatch(rb'(STAT \S+ [^\r\n]*\r\n)+END\r\n', r)
        r = b'<stats>' if check_stats else b'<bad stats: %r>' % r[:200]
    return r


def unpad(r):
    out = b''
    pos = 0
    rx = re.compile(rb'(VALUE \S+ \d+ )(\d+)((?: \S+)?\r\n)|(VA )(\d+)((?: \S+)*\r\n)')
    while True:
        m = rx.search(r, pos)
        if not m:
            return out + r[pos:]
        if m.group(1):
            head, n, tail = m.group(1), int(m.group(2)), m.group(3)
        else:
            head, n, tail = m.group(4), int(m.group(5)), m.group(6)
        start = m.end()
        data = r[start:start + n]
        new = data.rstrip(b' ')
        tail = re.sub(rb' s\d+', b' s%d' % len(new), tail)
        out += r[pos:m.start()] + head + b'%d' % len(new) + tail + new
        pos = start + n


class Runner:
    """One server's side of the comparison: a connection (remade after
    the server closes one), and what earlier replies told (cas uniques)."""

    def __init__(self, name, connect):
        self.name = name
        self.connect = connect
        self.conn = None
        self.cas = {}
        self.meta_cas = 0

    def step(self, data):
        if self.conn is None:
            self.conn = self.connect()
        c = self.conn
        want = 1 + len(re.findall(rb'(?m)^mn(?:\r?\n| )', data))
        try:
            c.send(data + b'mn\r\n')
            got = b''
            for _ in range(want):
                got += c.until(MN)
            reply = got[:-len(MN)]
        except Closed:
            reply = c.buf + b'<closed>'
            self.reset()
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            reply = c.buf + b'<timeout>'
            self.reset()
        for m in re.finditer(rb'^VALUE (\S+) \d+ \d+ (\d+)\r\n', reply, re.M):
            self.cas[m.group(1)] = int(m.group(2))
        m = re.search(rb'^(?:HD|VA \d+)(?: \S+)*? c(\d+)', reply, re.M)
        if m:
            self.meta_cas = int(m.group(1))
        return reply

    def reset(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def close(self):
        self.reset()


def body(h):
    netlib.need_tool('memcached')
    _, mport = h.start_memcached()
    # memcached's item size limit is 1 MiB (-I): the same for kvd.
    k = h.start_kvd(['--max-value', '1M'])
    mc = Runner('memcached', lambda: Conn.tcp('127.0.0.1', mport, 5))
    kd = Runner('kvd', lambda: k.connect(timeout=5))
    diffs = []
    nsteps = 0
    for name, steps, rules in SESSIONS:
        for i, step in enumerate(steps):
            if isinstance(step, tuple):
                time.sleep(step[1])
                continue
            nsteps += 1
            a_req = step(mc) if callable(step) else step
            b_req = step(kd) if callable(step) else step
            a = mc.step(a_req)
            b = kd.step(b_req)
            na, nb = norm_reply(a, rules), norm_reply(b, rules)
            if os.environ.get('KV_NET_VERBOSE'):
                netlib.log('%s %d: %s -> %s' % (name, i, short(b_req), short(b)))
            if na != nb:
                diffs.append((name, i, b_req, a, b, rules))
    mc.close()
    kd.close()
    for name, i, req, a, b, rules in diffs:
        netlib.log('DIFF %s step %d%s:\n  request   %s\n  memcached %s\n  kvd       %s'
                   % (name, i, ' (normalised: %s)' % ','.join(rules) if rules else '',
                      short(req), short(a), short(b)))
    netlib.log('%d steps in %d sessions, %d differ' % (nsteps, len(SESSIONS), len(diffs)))
    netlib.check(not diffs, '%d replies differ from memcached' % len(diffs))
    k.stop()


def short(b):
    r = repr(b)
    return r if len(r) < 300 else r[:140] + ' ... ' + r[-140:]


if __name__ == '__main__':
    netlib.main('differential', body)
