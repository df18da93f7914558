#!/usr/bin/env python3
"""The man pages kv(1) and kvd(8) must document what the programs' --help
says they accept, and nothing they do not: --help is the programs' own
word, the pages are what operators read.

    check_man.py KV KVD KV_MAN KVD_MAN

KV and KVD are the built programs, KV_MAN and KVD_MAN the pages as scdoc
generated them (roff). Checked, each way:

  kv(1)   every command of "kv --help" is an entry of COMMANDS, and every
          entry there is a command; every option "kv COMMAND --help"
          lists for a command (in its usage line or its "Options:") is an
          entry inside that command's entry, and the command takes every
          option entered there; the options of "kv --help" are entries of
          OPTIONS.
  kvd(8)  every option of "kvd --help" is an entry of OPTIONS, and every
          entry there is an option of kvd.
  both    an option given a short form in --help ("-s, --store") has the
          same in the page; each short form the page gives appears in
          --help; every long option the page mentions anywhere is one of
          kv's or kvd's; the environment variables --help names are
          entries of ENVIRONMENT; the exit statuses --help lists are the
          entries of EXIT STATUS.

An entry is what scdoc makes of a line followed by an indented block: the
roff text line just before ".RS". Each problem is printed on its own line
naming the option, command or section; the exit status is 1 if there is
any.
"""
import re
import subprocess
import sys

LONG = re.compile(r'(?<![\w-])--([a-z][a-z0-9-]*)')
SHORT = re.compile(r'(?<![\w-])-([A-Za-z0-9])(?![\w-])')
# A --help option line: "  -s, --store NAME" or "      --size BYTES".
# Continuation lines are indented further, and never match.
HELP_TERM = re.compile(r'^ {1,8}(?:-([A-Za-z0-9]), )?--([a-z][a-z0-9-]*)')
ENV = re.compile(r'\$([A-Z][A-Z0-9_]+)')
# Programs whose options the pages may show in examples.
OTHER_PROGRAMS = {"systemctl", "journalctl", "systemd-analyze", "useradd",
                  "xargs", "awk", "cmp", "kill"}

problems = []


def problem(msg):
    problems.append(msg)


def run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=30)
    if p.returncode != 0:
        sys.exit("%s exited %d: %s" % (" ".join(argv), p.returncode,
                                        p.stderr.strip()))
    return p.stdout


def help_section(text, title):
    """The lines of the block of a --help text headed exactly `title`
    ("Options:", "Commands:"), up to the next blank line."""
    out, inside = [], False
    for line in text.splitlines():
        if line == title:
            inside = True
        elif inside and line.strip() == "":
            break
        elif inside:
            out.append(line)
    return out


def help_terms(lines):
    """{long: short or None} of the option lines among `lines`."""
    terms = {}
    for line in lines:
        m = HELP_TERM.match(line)
        if m:
            terms[m.group(2)] = m.group(1)
    return terms


def help_exits(text):
    """The exit statuses an "Exit status: ..." paragraph lists."""
    m = re.search(r'^Exit status:(.*?)(?:\n\n|\Z)', text, re.S | re.M)
    if not m:
        return set()
    return set(re.findall(r'(?:^|[:;,])\s+(\d+)\s', ":" + m.group(1)))


def roff_text(line):
    """A roff text line as a reader sees it, near enough: no font changes,
    no zero-width or special characters."""
    line = re.sub(r'\\f[BIRP]', '', line)
    line = line.replace("\\&", "").replace("\\(aq", "'")
    line = line.replace("\\*(Aq", "'").replace("\\-", "-")
    line = line.replace("\\e", "\\")
    return line


class Entry:
    def __init__(self, section, depth, term, parent):
        self.section, self.depth, self.term = section, depth, term
        self.parent = parent

    def inside(self, other):
        e = self.parent
        while e is not None and e is not other:
            e = e.parent
        return e is other


class Page:
    """A scdoc-generated man page: its text, and its entries (a paragraph
    followed by an indented block), each with its section, its nesting
    depth and the entry it sits in."""

    def __init__(self, path):
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.text = []          # every text line, normalised
        self.entries = []
        section, para, stack = None, [], []
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for line in lines:
            if line.startswith(".SH "):
                section = line[4:].strip().strip('"')
                para, stack = [], []
            elif line.startswith(".RS"):
                # An indented block: an entry's body if a paragraph comes
                # right before it, else (a list item, a literal block)
                # just a level of indentation.
                entry = None
                if para:
                    entry = Entry(section, len(stack), " ".join(para),
                                  next((e for e in reversed(stack) if e),
                                       None))
                    self.entries.append(entry)
                stack.append(entry)
                para = []
            elif line.startswith(".RE"):
                if stack:
                    stack.pop()
                para = []
            elif line.startswith(".") or line.startswith("'"):
                para = []
            else:
                t = roff_text(line)
                self.text.append(t)
                para.append(t)
        if not self.entries:
            sys.exit("%s: no entries found: not a page scdoc made?" % path)

    def section_entries(self, section, depth=None):
        return [e for e in self.entries
                if e.section == section and
                (depth is None or e.depth == depth)]

    def options_in(self, entries):
        """{long: short or None} of the entries that define options: an
        entry whose term starts with "-X, --long" or "--long"."""
        found = {}
        for e in entries:
            m = re.match(r'(?:-([A-Za-z0-9]), )?--([a-z][a-z0-9-]*)', e.term)
            if m:
                found[m.group(2)] = m.group(1)
        return found

    def all_text(self):
        return "\n".join(self.text)


def compare_options(page, where, documented, wanted, accepted, what):
    """Each option of `wanted` ({long: short}) must be an entry of
    `documented` with the same short form; each of `documented` must be
    one that `accepted` (a set of long names) holds."""
    for opt, short in sorted(wanted.items()):
        if opt not in documented:
            problem("%s: --%s (%s) is not documented in %s"
                    % (page.name, opt, what, where))
        elif short and documented[opt] != short:
            problem("%s: --%s is documented in %s without its short form "
                    "-%s" % (page.name, opt, where, short))
    for opt, short in sorted(documented.items()):
        if opt not in accepted:
            problem("%s: --%s is documented in %s, but %s does not take it"
                    % (page.name, opt, where, what))


def check_common(page, help_texts, known_long):
    helps = "\n".join(help_texts)
    help_short = set(SHORT.findall(helps))
    # Short forms: each one the page gives must be one --help knows.
    for e in page.entries:
        m = re.match(r'-([A-Za-z0-9]), --([a-z][a-z0-9-]*)', e.term)
        if m and m.group(1) not in help_short:
            problem("%s: -%s (for --%s) is documented in %s, but --help "
                    "has no -%s" % (page.name, m.group(1), m.group(2), e.section,
                                   m.group(1)))
    # Mentions: any --word anywhere must be a real option of kv or kvd,
    # unless the page gives it to another program ("systemctl enable
    # --now"): the nearest program named before it on its line decides.
    mentioned = set()
    for line in page.text:
        words = line.split()
        owner = None
        for w in words:
            if w in ("kv", "kvd"):
                owner = "kv"
            elif w in OTHER_PROGRAMS:
                owner = w
            elif owner in (None, "kv"):
                mentioned |= set(LONG.findall(w))
    for opt in sorted(mentioned - known_long):
        problem("%s: mentions --%s, an option neither kv nor kvd has"
                % (page.name, opt))
    # Environment.
    env_entries = {e.term.strip() for e in page.section_entries("ENVIRONMENT")}
    for var in sorted(set(ENV.findall(helps))):
        if var not in env_entries:
            problem("%s: $%s (in --help) is not an entry of ENVIRONMENT"
                    % (page.name, var))
    # Exit statuses.
    want = set()
    for t in help_texts:
        want |= help_exits(t)
    have = {e.term.strip() for e in page.section_entries("EXIT STATUS", 0)}
    if not want:
        problem("%s: no 'Exit status:' paragraph found in --help" % page.name)
    for s in sorted(want - have):
        problem("%s: exit status %s (in --help) is not an entry of EXIT "
                "STATUS" % (page.name, s))
    for s in sorted(have - want):
        problem("%s: exit status %s is documented in EXIT STATUS, but "
                "--help does not list it" % (page.name, s))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    kv, kvd, kv_man, kvd_man = sys.argv[1:]

    kv_help = run([kv, "--help"])
    commands = [l.split()[0] for l in help_section(kv_help, "Commands:")]
    if not commands:
        sys.exit("no commands found in 'kv --help'")
    cmd_help = {c: run([kv, c, "--help"]) for c in commands}
    kvd_help = run([kvd, "--help"])

    kv_long = set(LONG.findall(kv_help))
    for t in cmd_help.values():
        kv_long |= set(LONG.findall(t))
    kvd_long = set(LONG.findall(kvd_help))

    # kv(1)
    page = Page(kv_man)
    top = page.section_entries("COMMANDS", 0)
    blocks = {}
    for e in top:
        blocks[(e.term.split() or [""])[0]] = e
    for c in commands:
        if c not in blocks:
            problem("%s: command '%s' (in kv --help) is not an entry of "
                    "COMMANDS" % (page.name, c))
    for c in sorted(blocks):
        if c not in commands:
            problem("%s: COMMANDS documents '%s', which kv --help does not "
                    "list" % (page.name, c))
    global_opts = help_terms(help_section(kv_help, "Options:"))
    compare_options(page, "OPTIONS",
                    page.options_in(page.section_entries("OPTIONS", 0)),
                    global_opts, set(global_opts), "kv")
    common = set(help_terms(help_section(cmd_help[commands[0]],
                                         "Common options:")))
    for c in commands:
        text = cmd_help[c]
        usage = text.splitlines()[0] if text else ""
        wanted = help_terms(help_section(text, "Options:"))
        for opt in LONG.findall(usage):
            wanted.setdefault(opt, None)
        for opt in common:
            wanted.pop(opt, None)
        # "-y or --yes": a short form --help gives in prose.
        for short, opt in re.findall(r'(?<![\w-])-([A-Za-z0-9]) or --'
                                     r'([a-z][a-z0-9-]*)', text):
            if opt in wanted and wanted[opt] is None:
                wanted[opt] = short
        if c not in blocks:
            continue
        block = blocks[c]
        nested = [e for e in page.entries if e.inside(block)]
        accepted = set(LONG.findall(text))
        compare_options(page, "COMMANDS, entry '%s'" % c,
                        page.options_in(nested), wanted, accepted,
                        "kv %s" % c)
    check_common(page, [kv_help] + list(cmd_help.values()),
                 kv_long | kvd_long)

    # kvd(8)
    page = Page(kvd_man)
    opts = help_terms(kvd_help.splitlines())
    if not opts:
        sys.exit("no options found in 'kvd --help'")
    compare_options(page, "OPTIONS",
                    page.options_in(page.section_entries("OPTIONS", 0)),
                    opts, set(opts), "kvd")
    check_common(page, [kvd_help], kv_long | kvd_long)

    for p in problems:
        print(p)
    if problems:
        print("%d problem(s): the man pages (docs/man/*.scd) and --help "
              "disagree" % len(problems))
        return 1
    print("kv(1): %d commands, kvd(8): %d options: both agree with --help"
          % (len(commands), len(opts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
