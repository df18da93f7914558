#!/usr/bin/env python3
"""What the build installs for operators must fit the kvd that was built:

    check_units.py KVD BINDIR SERVICE SOCKET KV_MAN KVD_MAN

KVD is the built kvd, BINDIR where it is installed, SERVICE the generated
kvd@.service, SOCKET dist/systemd/kvd@.socket, KV_MAN and KVD_MAN the
generated man pages. Checked:

  - the man pages were generated: roff whose .TH names the page and its
    section;
  - kvd@.service starts BINDIR/kvd in the foreground on the store named by
    the instance (-s %I), and every option either unit names, in a setting
    or in a comment, is one of "kvd --help";
  - the settings that would hide the store from its clients or delete it
    are absent: PrivateDevices= (a private /dev, so a private /dev/shm),
    RemoveIPC=yes, DynamicUser=yes, and -d (kvd must stay in the
    foreground under systemd);
  - kvd@.socket listens somewhere and hands kvd@NAME.service its
    listening sockets (Accept=no);
  - the configuration files the service reads are named in kvd(8), FILES;
  - with systemd-analyze on the machine, "systemd-analyze verify" of an
    instance of both units, run on the built kvd, reports nothing.

Each problem is printed on its own line; the exit status is 1 if there is
any.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

LONG = re.compile(r'(?<![\w-])--([a-z][a-z0-9-]*)')
SHORT = re.compile(r'(?<![\w%-])-([A-Za-z])(?![\w-])')
# Programs whose options the units' comments may show.
OTHER_PROGRAMS = {"systemctl", "journalctl", "useradd"}

problems = []


def problem(msg):
    problems.append(msg)


def unit_settings(text):
    """[(section, key, value)] of a unit file, comments left out."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, value = line.split("=", 1)
            out.append((section, key.strip(), value.strip()))
    return out


def kvd_options_named(text):
    """The long options a unit file names for kvd: on each line, those
    not after the name of another program."""
    named = set()
    for line in text.splitlines():
        other = False
        for w in line.replace("(", " ").split():
            if w in OTHER_PROGRAMS:
                other = True
            elif w.endswith("kvd") or w.startswith("KVD_OPTS="):
                other = False
            elif not other:
                named |= set(LONG.findall(w))
    return named


def values(settings, key):
    return [v for _, k, v in settings if k == key]


def check_page(path, name, section):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        problem("%s: not generated: %s" % (path, e.strerror))
        return ""
    m = re.search(r'^\.TH "?([^" ]+)"? "?(\w+)"?', text, re.M)
    if not m or (m.group(1), m.group(2)) != (name, section):
        problem("%s: not the roff of %s(%s)" % (path, name, section))
    return text


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    kvd, bindir, service, socket, kv_man, kvd_man = sys.argv[1:]

    check_page(kv_man, "kv", "1")
    kvd_page = check_page(kvd_man, "kvd", "8")

    p = subprocess.run([kvd, "--help"], stdout=subprocess.PIPE,
                       universal_newlines=True, timeout=30)
    if p.returncode != 0:
        sys.exit("kvd --help exited %d" % p.returncode)
    kvd_long = set(LONG.findall(p.stdout))
    kvd_short = set(re.findall(r'^\s+-([A-Za-z0-9]),', p.stdout, re.M))

    with open(service, encoding="utf-8") as f:
        service_text = f.read()
    with open(socket, encoding="utf-8") as f:
        socket_text = f.read()
    svc = unit_settings(service_text)
    sock = unit_settings(socket_text)

    # The service's command line.
    starts = values(svc, "ExecStart")
    if len(starts) != 1:
        problem("kvd@.service: %d ExecStart= lines, want 1" % len(starts))
    for cmd in starts:
        words = cmd.split()
        if words[0] != os.path.join(bindir, "kvd"):
            problem("kvd@.service: ExecStart= runs %s, not %s"
                    % (words[0], os.path.join(bindir, "kvd")))
        if "-s %I" not in cmd and "--store=%I" not in cmd:
            problem("kvd@.service: ExecStart= does not name the store by "
                    "the instance (-s %I)")
        for short in SHORT.findall(cmd):
            if short not in kvd_short:
                problem("kvd@.service: ExecStart= passes -%s, which kvd "
                        "--help does not list" % short)
        if "d" in SHORT.findall(cmd) or "daemon" in LONG.findall(cmd):
            problem("kvd@.service: kvd must stay in the foreground (no -d)")
    if values(svc, "Type") not in (["simple"], ["exec"]):
        problem("kvd@.service: Type= must be simple or exec (kvd does not "
                "fork, nor speak sd_notify)")

    # Every option either unit names, comments included, unless a comment
    # gives it to another program ("systemctl enable --now").
    for name, text in (("kvd@.service", service_text),
                       ("kvd@.socket", socket_text)):
        for opt in sorted(kvd_options_named(text) - kvd_long):
            problem("%s: names --%s, which kvd --help does not list"
                    % (name, opt))

    # What would hide or delete the store.
    for key, bad in (("PrivateDevices", None), ("RemoveIPC", "yes"),
                     ("DynamicUser", "yes"), ("ProtectProc", "invisible")):
        for v in values(svc, key):
            if bad is None or v == bad:
                problem("kvd@.service: %s=%s (see the unit's comments: the "
                        "store must stay visible to its clients and outlive "
                        "kvd)" % (key, v))
    if values(svc, "RemoveIPC") != ["no"]:
        problem("kvd@.service: RemoveIPC=no must be said outright")

    # The socket unit.
    if not any(k.startswith("Listen") for _, k, _ in sock):
        problem("kvd@.socket: no Listen...= setting")
    if values(sock, "Accept") not in ([], ["no"], ["false"]):
        problem("kvd@.socket: Accept= must stay no: kvd accepts the "
                "connections itself")
    for v in values(sock, "Service"):
        problem("kvd@.socket: Service=%s: kvd@NAME.socket must start "
                "kvd@NAME.service, its default" % v)

    # The configuration files, in kvd(8).
    for v in values(svc, "EnvironmentFile"):
        path = v.lstrip("-").replace("%I", "NAME").replace("%i", "NAME")
        if path not in kvd_page.replace("\\&", ""):
            problem("kvd@.service: reads %s, which kvd(8) does not name"
                    % path)

    verify(kvd, service, socket)

    for p in problems:
        print(p)
    if problems:
        print("%d problem(s) in the units or the man pages" % len(problems))
        return 1
    print("man pages generated; kvd@.service and kvd@.socket fit kvd")
    return 0


def verify(kvd, service, socket):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze not found: units not verified by systemd")
        return
    with tempfile.TemporaryDirectory(prefix="kv-units.") as d:
        with open(service, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r'^ExecStart=\S+', "ExecStart=" + os.path.abspath(kvd),
                      text, flags=re.M)
        svc = os.path.join(d, "kvd@kvtest.service")
        sock = os.path.join(d, "kvd@kvtest.socket")
        with open(svc, "w", encoding="utf-8") as f:
            f.write(text)
        shutil.copyfile(socket, sock)
        p = subprocess.run([analyze, "verify", "--man=no", svc, sock],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60, cwd=d)
        out = p.stdout.strip()
        if p.returncode != 0 or out:
            problem("systemd-analyze verify (exit %d):\n%s"
                    % (p.returncode, out))
        else:
            print("systemd-analyze verify: both units are clean")


if __name__ == "__main__":
    sys.exit(main())
