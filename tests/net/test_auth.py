#!/usr/bin/env python3
"""test_auth - kvd --auth-file: memcached's ASCII authentication (a
`set` whose data is "user password"), checked next to `memcached -Y` with
the same file.

It proves:
  - before authenticating, every command (get, version, meta commands,
    stats, flush_all, delete, incr) is refused with CLIENT_ERROR
    unauthenticated, and the connection stays refused (or is closed); a
    set is taken as an attempt to authenticate, its data as the token,
    and a value that is not "user password" is refused: nothing is
    stored;
  - `set <any key> 0 0 N\\r\\nuser pass\\r\\n` answers STORED, and then
    commands work on that connection, for each user of the file;
  - a wrong password, an unknown user and a token without a space are
    refused with CLIENT_ERROR (memcached: "authentication failure" for a
    wrong password; kvd for all three);
  - a new connection starts unauthenticated again; the UNIX socket
    listener asks for authentication too;
  - stats count auth_cmds and auth_errors;
  - kvd refuses an --auth-file it cannot read or that has no user;
  - kvd listening on 0.0.0.0 without --auth-file logs a warning (and
    with one does not); nothing is sent to that listener but over
    loopback.
"""

import os
import re
import time

import netlib
from netlib import Closed, Conn, check, eq

# kvd's log line for a warning that names authentication (other warnings,
# e.g. about the open-file limit, may come and go with the machine)
AUTH_WARNING = r'(?im)^.*warning:.*auth.*$'

USERS = [('alice', 'secret'), ('bob', 'pw2:with:colons')]


def auth_cmd(user, pw):
    tok = ('%s %s' % (user, pw)).encode()
    return b'set auth 0 0 %d\r\n%s\r\n' % (len(tok), tok)


def first_reply(c, data, timeout=3):
    """Send DATA; the first reply line, or b'<closed>'."""
    c.send(data)
    c.sock.settimeout(timeout)
    try:
        return c.line()
    except Closed:
        return b'<closed>'
    except (ConnectionResetError, BrokenPipeError):
        return b'<closed>'


def refused_after(c):
    """After a refusal the connection is closed, or refuses again."""
    try:
        r = first_reply(c, b'get k\r\n')
    except OSError:
        return True
    return r in (b'<closed>', b'CLIENT_ERROR unauthenticated\r\n')


def check_server(name, connect, stats_ok=True):
    # unauthenticated: each kind of command refused
    for cmd in (b'get k\r\n', b'version\r\n', b'mg k v\r\n',
                b'ms k 1\r\nx\r\n', b'stats\r\n', b'flush_all\r\n',
                b'delete k\r\n', b'incr k 1\r\n'):
        with connect() as c:
            r = first_reply(c, cmd)
            eq(r, b'CLIENT_ERROR unauthenticated\r\n',
               '%s: %r before authenticating' % (name, cmd))
            check(refused_after(c), '%s: after refusing %r a get was served'
                  % (name, cmd))
    # before authenticating a set is an attempt to: its data a token
    with connect() as c:
        r = first_reply(c, b'set k 0 0 1\r\nx\r\n')
        check(r.startswith(b'CLIENT_ERROR ') or r == b'<closed>',
              '%s: a set of a value before authenticating: %r' % (name, r))

    # wrong password, unknown user, bad token: refused
    with connect() as c:
        eq(first_reply(c, auth_cmd('alice', 'wrong')),
           b'CLIENT_ERROR authentication failure\r\n',
           '%s: wrong password' % name)
    bad = {}
    for what, data in (('unknown user', auth_cmd('mallory', 'secret')),
                       ('no space', b'set auth 0 0 5\r\nalice\r\n'),
                       ('empty', b'set auth 0 0 0\r\n\r\n')):
        with connect() as c:
            bad[what] = first_reply(c, data)
            if name == 'kvd':
                check(bad[what].startswith(b'CLIENT_ERROR ') or bad[what] == b'<closed>',
                      '%s: %s: %r' % (name, what, bad[what]))
                check(refused_after(c), '%s: %s then a get was served' % (name, what))
    netlib.log('%s: unknown user %r, token without a space %r, empty %r'
               % (name, bad['unknown user'], bad['no space'], bad['empty']))

    # each user: STORED, then commands work
    for user, pw in USERS:
        with connect() as c:
            eq(first_reply(c, auth_cmd(user, pw)), b'STORED\r\n',
               '%s: authenticate as %s' % (name, user))
            eq(c.cmd(b'set k 0 0 2\r\n%s\r\n' % user[:2].encode()), b'STORED\r\n',
               '%s: set after authenticating' % name)
            eq(c.get(b'k'), (user[:2].encode(), 0), '%s: get after authenticating' % name)
            eq(c.get(b'auth'), None, '%s: the auth set stored nothing' % name)
            eq(c.cmd(b'mn\r\n'), b'MN\r\n', '%s: mn after authenticating' % name)
            check(c.cmd(b'version\r\n').startswith(b'VERSION '),
                  '%s: version after authenticating' % name)
            if stats_ok:
                st = c.cmd(b'stats\r\n')
                m1 = re.search(rb'STAT auth_cmds (\d+)', st)
                m2 = re.search(rb'STAT auth_errors (\d+)', st)
                check(m1 and m2, '%s: stats without auth_cmds/auth_errors' % name)
                check(int(m1.group(1)) >= 2 and int(m2.group(1)) >= 1,
                      '%s: auth_cmds %s auth_errors %s'
                      % (name, m1.group(1), m2.group(1)))
    # a new connection is unauthenticated again
    with connect() as c:
        eq(first_reply(c, b'get k\r\n'), b'CLIENT_ERROR unauthenticated\r\n',
           '%s: a new connection after another authenticated' % name)


def body(h):
    # memcached's file: user:password lines only; kvd's may also have
    # comments and blank lines
    plain = os.path.join(h.tmp, 'users.memcached')
    authfile = os.path.join(h.tmp, 'users')
    lines = ''.join('%s:%s\n' % (u, p) for u, p in USERS)
    with open(plain, 'w') as f:
        f.write(lines)
    with open(authfile, 'w') as f:
        f.write('# kvd users\n\n' + lines)
    os.chmod(plain, 0o600)
    os.chmod(authfile, 0o600)

    if netlib.find_tool('memcached'):
        _, mport = h.start_memcached(['-Y', plain])
        check_server('memcached', lambda: Conn.tcp('127.0.0.1', mport, 5))
    else:
        netlib.log('memcached not installed: no comparison')

    if os.environ.get('KV_NET_TARGET') == 'memcached':
        return
    sock = os.path.join(h.tmp, 'kvd.sock')
    k = h.start_kvd(['--auth-file', authfile],
                    listen=('127.0.0.1:0', 'unix:' + sock))
    check_server('kvd', k.connect)
    check_server('kvd (UNIX socket)', lambda: Conn.unix(sock, 5))
    # nothing was stored before authenticating
    eq(h.kv_run(k.store, 'get', 'auth')[0], 1, 'the auth set is not stored')
    k.stop()
    err = k.proc.stderr()
    check(not re.search(AUTH_WARNING, err), 'kvd with --auth-file warned:\n' + err)

    # bad auth files: kvd refuses to start
    empty = os.path.join(h.tmp, 'empty')
    open(empty, 'w').close()
    for path, what in ((os.path.join(h.tmp, 'missing'), 'a missing auth file'),
                       (empty, 'an auth file with no user')):
        bad = h.start_kvd(['--auth-file', path], wait=False)
        rc = bad.proc.proc.wait(20)
        bad.stopped = True
        eq(rc, 2, 'kvd with %s: exit status (%s)' % (what, bad.proc.stderr()))

    # a listener on every address without auth: a warning
    pub = h.start_kvd(listen=('0.0.0.0:0',))
    err = pub.proc.stderr()
    deadline = time.monotonic() + 5
    while not re.search(AUTH_WARNING, err) and time.monotonic() < deadline:
        time.sleep(0.05)
        err = pub.proc.stderr()
    check(re.search(AUTH_WARNING, err), 'kvd --listen 0.0.0.0:0 without '
          '--auth-file logged no warning:\n' + err)
    netlib.log('kvd --listen 0.0.0.0:0 logs: ' + err.replace('\n', ' | '))
    with Conn.tcp('127.0.0.1', pub.port, 5) as c:
        eq(c.cmd(b'mn\r\n'), b'MN\r\n', 'mn on the 0.0.0.0 listener over loopback')
    pub.stop()
    pub2 = h.start_kvd(['--auth-file', authfile], listen=('0.0.0.0:0',))
    time.sleep(0.3)
    pub2.stop()
    err = pub2.proc.stderr()
    check(not re.search(AUTH_WARNING, err), 'kvd --listen 0.0.0.0:0 with '
          '--auth-file warned:\n' + err)


if __name__ == '__main__':
    netlib.main('auth', body)
