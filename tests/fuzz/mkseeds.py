#!/usr/bin/env python3
"""mkseeds.py - write the hand-made seed inputs of the store-image fuzzer.

    tests/fuzz/mkseeds.py [OUTDIR]      (default: tests/fuzz/corpus)

Each seed names one kind of damage to the template store (see the input
format at the top of fuzz_store.c); the file name says which. Offsets are
relative to the regions the harness defines, so seeds keep their meaning
when the template changes. Seeds that crash or hang today live in
tests/fuzz/regress/ instead and are written by hand there.
"""
import os
import sys

# Regions (fuzz_store.c, region_off).
HDR, HDRW, CLASS, JHEAD, JENTS, RSTAT, INDEX, HOT, PTAB, ARENA4, ITEM, FREE, \
    FILE, ARENA = range(14)

# Value table (fuzz_store.c, analyse): vsel numbers.
FIXED = [0, 1, 2, 3, 7, 8, 0x10, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff,
         0x100, 0xfff, 0x1000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
         0xffffffff, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
         (1 << 64) - 2]
V = {('n', x): i for i, x in enumerate(FIXED)}
GEO = ['npages-1', 'npages', 'npages+1', 'nb-1', 'nb', 'nb+1', 'ncls-1',
       'ncls', 'size', 'size-8', 'size-16', 'arena_off', 'arena_off+8',
       'arena_end-32', 'arena_end-16', 'arena_end-8', 'arena_end',
       'ptab_off', 'index_off', 'page_size', 'page_size-1', 'PAGE_FREE',
       'LOG_MAX', 'LOG_MAX+1', 'max_value', 'max_value+1', 'MAX_KEY',
       'MAX_KEY+1', 'now', 'now-1', 'MAX_PROBE', 'MAX_PROBE+1',
       'arena_off+page', 'arena_bytes']
for i, g in enumerate(GEO):
    V[g] = len(FIXED) + i
assert len(FIXED) + len(GEO) == 61
ITEMS, FREES, LINKS = 61, 160, 200


def n(x):
    """vsel of a fixed number."""
    return V[('n', x)]


def rel3(r):
    return (r & 0xffffff).to_bytes(3, 'little')


def raw(region, rel, data):
    return bytes([0, region]) + rel3(rel) + bytes([len(data)]) + data


def val(width, region, rel, vsel, rawv=None):
    b = bytes([1 if width == 4 else 2, region]) + rel3(rel) + bytes([vsel])
    if vsel == 255:
        b += (rawv & (2**64 - 1)).to_bytes(8, 'little')
    return b


def v32(region, rel, vsel, rawv=None):
    return val(4, region, rel, vsel, rawv)


def v64(region, rel, vsel, rawv=None):
    return val(8, region, rel, vsel, rawv)


def jent(idx, region, rel, w, vsel, rawv=None):
    b = bytes([3]) + idx.to_bytes(2, 'little') + bytes([region]) + \
        rel3(rel) + bytes([w, vsel])
    if vsel == 255:
        b += (rawv & (2**64 - 1)).to_bytes(8, 'little')
    return b


def jhead(state, count):
    return bytes([4, state]) + count.to_bytes(2, 'little')


def odd(bucket):
    return bytes([5]) + bucket.to_bytes(2, 'little')


def add(width, region, rel, delta):
    return bytes([6 if width == 8 else 7, region]) + rel3(rel) + \
        bytes([delta & 0xff])


def copy(rs, src, rd, dst, length):
    return bytes([8, rs]) + rel3(src) + bytes([rd]) + rel3(dst) + \
        bytes([length])


def item(j, off):
    return (j << 8) | off


# The LOCK patch (kind 9): a field of the writer lock or of the words a
# holder is judged by, and a value from fuzz_store.c's lock_value().
LW, COUNT, OWNER, NUSERS, KIND, SPINS, LPREV, LNEXT, OTID, OSTART, OPIDNS, \
    BOOT, REPAIR, LIFE, DPID, DBEAT = range(16)
L = {n: i for i, n in enumerate([
    'zero', 'me', 'me|waiters', 'srv', 'srv|waiters', 'gone',
    'gone|waiters', 'gone|died', 'died', 'died|waiters', 'waiters', 'init',
    'inconsistent', 'notrecoverable', 'kind', 'kind|pi', 'kind|pp',
    'kind-robust', 'kind-pshared', 'kind|elision', 'kind+recursive',
    'kind+errorcheck', 'start', 'start+1', 'srv start', 'boot', 'boot^1',
    'pidns', 'pidns+1', 'repair me', 'repair srv', 'repair gone'])}
assert len(L) == 32


def lockp(field, what, rawv=None):
    """Set a lock field to lock value `what` (a name of L), or to rawv."""
    if rawv is not None:
        return bytes([9, field, 255]) + \
            (rawv & (2**64 - 1)).to_bytes(8, 'little')
    return bytes([9, field, L[what]])


LATER = bytes([10])  # the patches after it land on what the writer left


def crash(point, op):
    """The variant byte of a dying writer at crash point `point` (1-10)
    inside operation `op` (0 put, 1 put into a free chunk, 2 replace,
    3 delete with a backward shift): 1 + v % 10 and (v >> 4) % 4."""
    for v in range(128):
        if 1 + v % 10 == point and (v >> 4) % 4 == op:
            return v
    raise ValueError((point, op))


# Field offsets.
H = dict(magic=0, format=8, hdr_size=0xc, map_size=0x10, seed=0x18,
         index_off=0x28, nbuckets=0x30, ptab_off=0x38, arena_off=0x40,
         npages=0x48, page_size=0x50, nclasses=0x54, max_key=0x58,
         max_value=0x5c, flags=0x60, daemon_pid=0xc0, class_size=0x200)
W = dict(page_bump=0, items=8, key_bytes=0x10, value_bytes=0x18,
         version=0x40, max_probe=0x48, data_used=0x50, free_pages=0x58,
         page_hand=0x70, sweep_hand=0x78)
C = dict(partial=0, used=8, pages=0x10, hand=0x20, hand_chunk=0x28,
         since_move=0x30)
P = dict(cls=0, used=4, bump=8, next=0xc, free_head=0x10, prev=0x18,
         partial=0x1c)
J = dict(state=0, n=4, odd_first=8, odd_count=0x10, pend_chunk=0x18,
         pend_next=0x20)


def cls(c, f):
    return c * 64 + C[f]


def page(p, f):
    return p * 32 + P[f]


def hot(i, f):
    """Bucket i of the hot region (1 is the colliding keys' home)."""
    return i * 64 + {'seq': 0, 'overflow': 4}.get(f, 0) + \
        (8 + 8 * int(f[4:]) if f.startswith('slot') else 0)


def seeds():
    s = {}
    s['empty'] = b''
    s['mode-none'] = b'\x00\x00'
    for m, name in [(0x01, 'rdonly'), (0x02, 'flush'), (0x04, 'forklock'),
                    (0x10, 'recover'), (0x20, 'late'), (0x40, 'sweep'),
                    (0x80, 'nocheck'), (0x73, 'mixed')]:
        s['mode-' + name] = bytes([m, 0x21])
    # Crash points (1 + v % 10) x operations ((v >> 4) % 4).
    for v in [0x00, 0x13, 0x15, 0x27, 0x34, 0x36, 0x17, 0x39]:
        s['crash-point%d-op%d' % (1 + v % 10, (v >> 4) % 4)] = \
            bytes([0x08, v])
    s['crash-then-rdonly'] = bytes([0x09, 0x37])

    # Header.
    s['hdr-magic-bad'] = b'\x00\x00' + raw(HDR, 0, b'KVSTORF\x00')
    s['hdr-magic-zero'] = b'\x01\x00' + raw(HDR, 0, bytes(8))
    s['hdr-format'] = b'\x00\x00' + v32(HDR, H['format'], n(0))
    s['hdr-size'] = b'\x00\x00' + v32(HDR, H['hdr_size'], n(0x100))
    s['hdr-mapsize-big'] = b'\x00\x00' + add(8, HDR, H['map_size'], 8)
    s['hdr-mapsize-small'] = b'\x00\x00' + add(8, HDR, H['map_size'], -8)
    s['hdr-nbuckets-63'] = b'\x00\x00' + v64(HDR, H['nbuckets'], 255, 63)
    s['hdr-nbuckets-huge'] = b'\x00\x00' + v64(HDR, H['nbuckets'], n(1 << 63))
    # nbuckets - 1 with the page table moved to match: a valid geometry
    # whose page table lies over the last bucket.
    s['hdr-geometry-shifted'] = b'\x00\x00' + \
        v64(HDR, H['nbuckets'], V['nb-1']) + add(8, HDR, H['ptab_off'], -64)
    s['hdr-npages-0'] = b'\x00\x00' + v64(HDR, H['npages'], n(0))
    s['hdr-npages-more'] = b'\x00\x00' + v64(HDR, H['npages'], V['npages+1'])
    s['hdr-npages-less'] = b'\x02\x05' + v64(HDR, H['npages'], V['npages-1'])
    s['hdr-pagesize'] = b'\x00\x00' + v32(HDR, H['page_size'], n(0x1000))
    s['hdr-nclasses'] = b'\x00\x00' + add(4, HDR, H['nclasses'], 1)
    s['hdr-maxkey'] = b'\x00\x00' + v32(HDR, H['max_key'], n(0xfff))
    for x in [0, 1, 0xffff, 0x80000000]:
        s['hdr-maxvalue-%x' % x] = b'\x00\x11' + \
            v32(HDR, H['max_value'], n(x))
    s['hdr-maxvalue-larger'] = b'\x00\x12' + \
        v32(HDR, H['max_value'], 255, 50000)
    s['hdr-flags-noevict'] = b'\x00\x00' + v32(HDR, H['flags'], n(1))
    s['hdr-flags-bad'] = b'\x00\x00' + v32(HDR, H['flags'], n(2))
    s['hdr-classsize'] = b'\x00\x00' + add(4, HDR, H['class_size'] + 8, 8)
    s['hdr-daemonpid'] = b'\x00\x00' + v32(HDR, H['daemon_pid'], n(1))

    # Writer counters.
    s['counters-items'] = b'\x00\x00' + v64(HDRW, W['items'], n(0))
    s['counters-version-max'] = b'\x00\x00' + \
        v64(HDRW, W['version'], n((1 << 64) - 1))
    s['counters-hands-huge'] = b'\x40\x00' + \
        v64(HDRW, W['page_hand'], n((1 << 64) - 1)) + \
        v64(HDRW, W['sweep_hand'], n((1 << 64) - 2))
    s['freepages-to-used-page'] = b'\x00\x00' + \
        v64(HDRW, W['free_pages'], LINKS + 1)
    s['freepages-beyond'] = b'\x00\x00' + \
        v64(HDRW, W['free_pages'], V['npages+1'])
    s['pagebump-lower'] = b'\x00\x03' + \
        v64(HDRW, W['page_bump'], V['npages-1']) + \
        v32(PTAB, page(27, 'cls'), V['PAGE_FREE'])
    s['pagebump-beyond'] = b'\x00\x00' + \
        v64(HDRW, W['page_bump'], V['npages+1'])

    # Classes.
    s['class-partial-beyond'] = b'\x00\x00' + \
        v64(CLASS, cls(0, 'partial'), V['npages+1'])
    s['class-partial-cycle'] = b'\x00\x00' + \
        v64(CLASS, cls(0, 'partial'), LINKS + 1) + \
        v32(PTAB, page(0, 'next'), LINKS + 1)
    s['class-hand-huge'] = b'\x00\x07' + \
        v64(CLASS, cls(30, 'hand_chunk'), n(0x7fffffff)) + \
        v64(CLASS, cls(30, 'hand'), n((1 << 64) - 1))
    s['class-used-huge'] = b'\x00\x00' + \
        v64(CLASS, cls(30, 'used'), n(0x7fffffff))
    s['class-since-move'] = b'\x00\x00' + \
        v64(CLASS, cls(30, 'since_move'), n(0xffff))

    # Page table.
    s['page-cls-beyond'] = b'\x00\x00' + v32(PTAB, page(0, 'cls'), V['ncls'])
    s['page-cls-7f'] = b'\x00\x00' + v32(PTAB, page(1, 'cls'), n(0x7f))
    s['page-free-page-owned'] = b'\x00\x00' + v32(PTAB, page(12, 'cls'), n(0))
    s['page-bump-over'] = b'\x00\x00' + v32(PTAB, page(0, 'bump'), n(0xffff))
    s['page-used-zero'] = b'\x00\x00' + v32(PTAB, page(4, 'used'), n(0))
    s['page-next-wild'] = b'\x00\x00' + \
        v32(PTAB, page(12, 'next'), V['npages+1'])
    s['page-freehead-other-page'] = b'\x00\x00' + \
        v64(PTAB, page(0, 'free_head'), FREES + 30)
    s['page-freehead-misaligned'] = b'\x00\x00' + \
        add(8, PTAB, page(1, 'free_head'), 4)

    # Free lists.
    s['freelist-self-cycle'] = b'\x00\x00' + v64(FREE, item(0, 8), FREES + 0)
    s['freelist-two-cycle'] = b'\x00\x00' + v64(FREE, item(1, 8), FREES + 0)
    s['freelist-to-live'] = b'\x00\x00' + v64(FREE, item(0, 8), ITEMS + 0)
    s['freelist-chunk-marked-live'] = b'\x00\x00' + \
        v32(FREE, item(0, 4), n(7))

    # Index.
    s['slot-offset-arena-end'] = b'\x00\x00' + \
        raw(HOT, hot(1, 'slot0'), (0x1f0000 - 16).to_bytes(5, 'little'))
    s['slot-offset-beyond-map'] = b'\x00\x00' + \
        raw(HOT, hot(1, 'slot1'), (0x200000).to_bytes(5, 'little'))
    s['slot-offset-header'] = b'\x00\x00' + \
        raw(HOT, hot(1, 'slot2'), (0x100).to_bytes(5, 'little'))
    s['slot-offset-far'] = b'\x00\x00' + \
        raw(HOT, hot(2, 'slot0'), b'\xf8\xff\xff\xff\xff')
    s['slot-offset-plus8'] = b'\x02\x00' + add(8, HOT, hot(1, 'slot3'), 8)
    s['slot-dist-wrong'] = b'\x00\x00' + raw(HOT, hot(2, 'slot1') + 5,
                                             b'\xc8')
    s['slot-dist-zero'] = b'\x00\x03' + raw(HOT, hot(3, 'slot0') + 5, b'\x00')
    s['slot-duplicate'] = b'\x00\x00' + \
        copy(HOT, hot(1, 'slot0'), HOT, hot(4, 'slot6'), 8)
    s['slot-reserved-bit'] = b'\x00\x00' + add(8, HOT, hot(1, 'slot4'), 4)
    s['overflow-home-zero'] = b'\x00\x00' + \
        v32(HOT, hot(1, 'overflow'), n(0))
    s['overflow-huge'] = b'\x10\x01' + \
        v32(HOT, hot(1, 'overflow'), n(0xffffffff))
    s['overflow-plus1'] = b'\x00\x02' + add(4, HOT, hot(2, 'overflow'), 1)
    s['seq-odd-home'] = b'\x00\x00' + v32(HOT, hot(1, 'seq'), n(1))
    s['seq-odd-rdonly'] = b'\x01\x00' + v32(HOT, hot(1, 'seq'), n(3))
    s['seq-odd-bucket0'] = b'\x00\x00' + odd(0)

    # Items.
    s['item-vlen-huge'] = b'\x00\x00' + v32(ITEM, item(0, 0), n(0xffffffff))
    s['item-vlen-over-max'] = b'\x00\x00' + \
        v32(ITEM, item(1, 0), V['max_value+1'])
    s['item-klen-zero'] = b'\x00\x00' + raw(ITEM, item(2, 4), b'\x00\x00')
    s['item-klen-big'] = b'\x00\x00' + raw(ITEM, item(3, 4), b'\x01\x10')
    s['item-cls-wrong'] = b'\x00\x00' + raw(ITEM, item(4, 6), b'\x63')
    s['item-flags-bad'] = b'\x00\x00' + raw(ITEM, item(5, 7), b'\xfe')
    s['item-flags-ttl'] = b'\x00\x00' + raw(ITEM, item(6, 7), b'\x01')
    s['item-key-byte'] = b'\x00\x00' + add(4, ITEM, item(7, 16), 1)

    # Journal.
    s['journal-commit-wild'] = b'\x00\x00' + jhead(2, 4) + \
        jent(0, HOT, hot(1, 'slot0'), 0, V['arena_end-8']) + \
        jent(1, PTAB, page(0, 'bump'), 1, n(0xffff)) + \
        jent(2, HDRW, W['free_pages'], 0, LINKS + 5) + \
        jent(3, 0, 0x123456, 0x80, n(7))
    s['journal-commit-header'] = b'\x10\x00' + jhead(2, 2) + \
        jent(0, HDR, H['magic'], 0, n(0)) + \
        jent(1, HDR, H['nbuckets'], 0, n(1))
    s['journal-commit-too-many'] = b'\x00\x00' + jhead(2, 1249)
    s['journal-commit-all'] = b'\x00\x00' + jhead(2, 1248)
    s['journal-commit-counters'] = b'\x00\x00' + jhead(2, 3) + \
        jent(0, HDRW, W['items'], 0, n(0)) + \
        jent(1, CLASS, cls(0, 'partial'), 0, n(0)) + \
        jent(2, HOT, hot(1, 'overflow'), 1, n(0))
    s['journal-build-pend-live'] = b'\x00\x00' + jhead(1, 0) + \
        v64(JHEAD, J['pend_chunk'], ITEMS + 3) + \
        v64(JHEAD, J['pend_next'], n(0))
    s['journal-build-pend-free'] = b'\x00\x00' + jhead(1, 0) + \
        v64(JHEAD, J['pend_chunk'], FREES + 2) + \
        v64(JHEAD, J['pend_next'], FREES + 2)
    s['journal-build-pend-edge'] = b'\x00\x00' + jhead(1, 0) + \
        v64(JHEAD, J['pend_chunk'], V['arena_end-16'])
    s['journal-build-pend-beyond'] = b'\x00\x00' + jhead(1, 0) + \
        v64(JHEAD, J['pend_chunk'], V['size-8'])
    s['journal-build-odd-range'] = b'\x00\x00' + jhead(1, 0) + \
        v64(JHEAD, J['odd_first'], n((1 << 64) - 1)) + \
        v32(JHEAD, J['odd_count'], n(0xffffffff))
    s['journal-state-3'] = b'\x00\x00' + jhead(3, 0)
    s['journal-state-ff'] = b'\x01\x00' + jhead(0xff, 7)
    s['journal-commit-forklock'] = b'\x04\x00' + jhead(2, 1) + \
        jent(0, HOT, hot(2, 'seq'), 1, n(1))
    s['journal-commit-recover'] = b'\x10\x00' + jhead(2, 1) + \
        jent(0, PTAB, page(12, 'cls'), 1, n(0))

    # The small template (variant bit 7): a 64-bucket index, nearly full,
    # the colliding keys' probes wrapping around its end.
    s['small-none'] = b'\x00\x80'
    s['small-rdonly-flush'] = b'\x03\x85'
    s['small-crash-shift'] = b'\x08\xb3'
    s['small-crash-insert'] = b'\x08\x87'
    s['small-sweep-late'] = b'\x60\x91'
    s['small-overflow-wrap'] = b'\x00\x81' + \
        v32(HOT, hot(2, 'overflow'), n(0)) + \
        add(4, HOT, hot(3, 'overflow'), 1)
    s['small-dist-wrap'] = b'\x02\x82' + raw(HOT, hot(3, 'slot2') + 5,
                                              b'\x7f')
    s['small-seq-odd'] = b'\x01\x83' + v32(HOT, hot(2, 'seq'), n(1))
    s['small-journal-shift'] = b'\x00\x84' + jhead(2, 2) + \
        copy(HOT, hot(3, 'slot0'), JENTS, 8, 8) + \
        v64(JENTS, 0, n(0)) + jent(1, HOT, hot(3, 'slot0'), 0, n(0))

    # The writer lock and what its holder is judged by (LOCK patches; the
    # thread ids are resolved when the input runs: this thread, the fork
    # server, which maps the store, and a thread that cannot exist).
    s['lock-stale-gone'] = b'\x00\x00' + lockp(LW, 'gone') + \
        lockp(OTID, 'gone')
    s['lock-stale-gone-waiters'] = b'\x00\x01' + lockp(LW, 'gone|waiters')
    s['lock-stale-reused'] = b'\x00\x02' + lockp(LW, 'srv') + \
        lockp(OTID, 'srv') + lockp(OSTART, 'start+1')
    s['lock-live-recorded'] = b'\x00\x03' + lockp(LW, 'srv') + \
        lockp(OTID, 'srv') + lockp(OSTART, 'srv start')
    s['lock-live-unsure'] = b'\x01\x04' + lockp(LW, 'srv|waiters')
    s['lock-other-pidns'] = b'\x00\x05' + lockp(LW, 'gone') + \
        lockp(OTID, 'gone') + lockp(OPIDNS, 'pidns+1')
    s['lock-names-self'] = b'\x00\x06' + lockp(LW, 'me')
    s['lock-no-tid'] = b'\x00\x07' + lockp(LW, 'waiters')
    s['lock-init'] = b'\x00\x08' + lockp(LW, 'init')
    s['lock-owner-died'] = b'\x10\x09' + lockp(LW, 'died|waiters')
    s['lock-stale-rdonly'] = b'\x01\x0a' + lockp(LW, 'gone') + \
        odd(1636)
    for k in ['kind|pi', 'kind|pp', 'kind-robust', 'kind-pshared',
              'kind|elision', 'kind+recursive', 'kind+errorcheck', 'zero']:
        s['mutex-kind-' + k.replace('|', '-').replace('+', '-')] = \
            b'\x00\x0b' + lockp(KIND, k)
    s['mutex-kind-and-holder'] = b'\x00\x0c' + lockp(KIND, 'kind|pi') + \
        lockp(LW, 'srv')
    s['mutex-inconsistent'] = b'\x00\x0d' + lockp(OWNER, 'inconsistent')
    s['mutex-notrecoverable'] = b'\x00\x0e' + \
        lockp(OWNER, 'notrecoverable')
    s['mutex-count-huge'] = b'\x00\x0f' + lockp(COUNT, None, 0xffffffff)
    s['mutex-nusers'] = b'\x00\x10' + lockp(NUSERS, None, 0x80000000)
    s['mutex-list-wild'] = b'\x00\x11' + \
        lockp(LPREV, None, 0xdeadbeef0) + lockp(LNEXT, None, 8)
    s['mutex-spins'] = b'\x00\x12' + lockp(SPINS, None, 0xffffffff)
    s['mutex-bytes-ff'] = b'\x00\x13' + raw(HDR, 0x80, b'\xff' * 32) + \
        raw(HDR, 0xa0, b'\xff' * 32)
    s['mutex-bytes-zero'] = b'\x00\x14' + raw(HDR, 0x80, bytes(32)) + \
        raw(HDR, 0xa0, bytes(8))
    s['repair-held-gone'] = b'\x00\x15' + lockp(REPAIR, 'repair gone') + \
        lockp(KIND, 'kind|pp')
    s['repair-held-live'] = b'\x00\x16' + lockp(REPAIR, 'repair srv') + \
        lockp(KIND, 'kind|pp')
    s['repair-held-self'] = b'\x00\x17' + lockp(REPAIR, 'repair me') + \
        lockp(OWNER, 'notrecoverable')
    s['boot-other'] = b'\x00\x18' + lockp(BOOT, 'boot^1') + \
        lockp(LW, 'srv') + lockp(OTID, 'srv') + lockp(OSTART, 'srv start')
    s['boot-other-rdonly'] = b'\x01\x19' + lockp(BOOT, 'boot^1') + \
        lockp(LW, 'gone')
    s['boot-zero'] = b'\x00\x1a' + lockp(BOOT, 'zero')
    s['boot-other-repair-held'] = b'\x00\x1a' + lockp(BOOT, 'boot^1') + \
        lockp(REPAIR, 'repair srv')
    s['life-dead'] = b'\x00\x1b' + lockp(LIFE, None, 1 << 63)
    s['life-dead-rdonly'] = b'\x01\x1c' + lockp(LIFE, None, 1 << 63)
    s['life-low-bits'] = b'\x00\x1d' + lockp(LIFE, None, 1)
    s['daemon-live'] = b'\x40\x1e' + lockp(DPID, 'srv') + \
        lockp(DBEAT, None, 1700000060000)
    s['lock-record-only'] = b'\x00\x1f' + lockp(OTID, 'srv') + \
        lockp(OSTART, 'zero')

    # Half-committed journals left by a writer killed inside its commit
    # (crash point 7: after the first entry was applied; 6: right after
    # the commit), then the store's lock damaged as a reboot, a live
    # holder or stray bytes would leave it (LATER: on the dead writer's
    # store).
    s['half-commit-stale-lock'] = bytes([0x08, crash(7, 0)]) + LATER + \
        lockp(LW, 'gone')
    s['half-commit-shift-other-boot'] = bytes([0x08, crash(7, 3)]) + \
        LATER + lockp(BOOT, 'boot^1')
    s['half-commit-free-chunk-kind'] = bytes([0x08, crash(7, 1)]) + \
        LATER + lockp(KIND, 'kind|pp')
    s['half-commit-replace-live-lock'] = bytes([0x08, crash(6, 2)]) + \
        LATER + lockp(LW, 'srv') + lockp(OTID, 'srv') + \
        lockp(OSTART, 'srv start')
    s['half-commit-rdonly-unsure'] = bytes([0x09, crash(7, 2)]) + LATER + \
        lockp(LW, 'srv')
    s['half-commit-repair-held'] = bytes([0x08, crash(6, 3)]) + LATER + \
        lockp(REPAIR, 'repair srv') + lockp(KIND, 'zero')
    s['building-stale-lock-rdonly'] = bytes([0x09, crash(5, 1)]) + \
        LATER + lockp(LW, 'gone')
    s['forklock-then-boot'] = bytes([0x04, 0x21]) + LATER + \
        lockp(BOOT, 'boot^1')
    # By hand: the entries of the template's last write (they stay behind
    # a finished write) committed again under a stale lock.
    s['journal-recommit-stale-lock'] = b'\x00\x00' + jhead(2, 13) + \
        lockp(LW, 'gone')
    s['journal-commit-lock-entry'] = b'\x00\x00' + jhead(2, 1) + \
        jent(0, HDR, 0x80, 1, n(0x7fffffff))

    # Reader counters.
    s['rstat-owner-dead'] = b'\x00\x00' + v32(RSTAT, 0, n(0x7fffffff))
    s['rstat-owner-minus1'] = b'\x00\x00' + v32(RSTAT, 0, n(0xffffffff))
    s['rstat-counts-huge'] = b'\x00\x00' + v64(RSTAT, 8, n((1 << 64) - 1))
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, 'seed-' + name), 'wb') as f:
            f.write(data)
    print('wrote %d seeds to %s' % (len(seeds()), out))


if __name__ == '__main__':
    main()
