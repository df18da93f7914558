#!/usr/bin/env python3
"""test_memcapable - libmemcached's protocol conformance checker,
memcapable (Debian ships it as memccapable), in ASCII mode against kvd.

It proves that kvd passes every ASCII test memcapable has: storage
commands with and without noreply, get/gets/multi-get, cas, incr/decr,
append/prepend, delete, flush_all, verbosity, version, stats and quit.
Debian's memcached runs the same checks first, as the baseline: kvd must
pass every test memcached passes, and memcapable must run the same set
of tests against both (a test it skips is named in the output).
"""

import re
import subprocess

import netlib


def memcapable(exe, port):
    r = subprocess.run([exe, '-a', '-h', '127.0.0.1', '-p', str(port),
                        '-t', '5'],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode('utf-8', 'replace')
    results = {}
    for line in out.splitlines():
        m = re.match(r'^(ascii .*?)\s+\[(\w+)\]\s*$', line)
        if m:
            results[m.group(1)] = m.group(2).lower()
    return r.returncode, out, results


def body(h):
    exe = netlib.need_tool('memcapable', 'memccapable')

    base = {}
    if netlib.find_tool('memcached'):
        _, mport = h.start_memcached()
        rc, out, base = memcapable(exe, mport)
        netlib.log('memcached baseline:\n' + out)
        netlib.check(base, 'memcapable printed no results against memcached')
    else:
        netlib.log('memcached not installed: no baseline')

    k = h.start_kvd()
    rc, out, res = memcapable(exe, k.port)
    netlib.log('kvd:\n' + out)
    netlib.check(res, 'memcapable printed no results against kvd (exit %d)' % rc)

    failed = sorted(t for t, v in res.items() if v not in ('pass', 'skip'))
    skipped = sorted(t for t, v in res.items() if v == 'skip')
    if skipped:
        netlib.log('memcapable skipped against kvd: ' + ', '.join(skipped))
    netlib.check(not failed, 'memcapable tests failed against kvd: %s'
                 % ', '.join(failed))
    netlib.check('fail' not in out.lower(),
                 'memcapable printed a failure against kvd')
    netlib.eq(rc, 0, 'memcapable exit status against kvd')
    if base:
        missing = sorted(set(base) - set(res))
        netlib.check(not missing, 'memcapable ran tests against memcached '
                     'that it did not run against kvd: %s' % ', '.join(missing))
        worse = sorted(t for t in base if base[t] == 'pass' and res.get(t) != 'pass')
        netlib.check(not worse, 'passed against memcached, not against kvd: %s'
                     % ', '.join(worse))
    netlib.log('%d memcapable ASCII tests passed against kvd' %
               sum(1 for v in res.values() if v == 'pass'))
    k.stop()


if __name__ == '__main__':
    netlib.main('memcapable', body)
