"""The README's Python example, run as written, prints what its comments
say it prints."""
import os
import re
import subprocess
import sys

from conftest import destroy_quietly, unique_name

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "..", "README.md")


def python_example():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "no python block in the README's Python section"
    return blocks[0]


def expected_output(code):
    """The outputs the example's comments announce, in order: a comment
    after a print(...) call, or on a line of its own right after one."""
    want = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*print\(.*\)\s*#\s*(.*)$", line)
        if m:
            want.append(m.group(1).strip())
        elif re.match(r"\s*print\(", line):
            nxt = lines[i + 1].strip()
            assert nxt.startswith("#"), "print without a comment: %r" % line
            want.append(nxt[1:].strip())
    return want


def test_readme_example():
    code = python_example()
    name = unique_name("readme")
    env = dict(os.environ, KV_STORE=name)
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env,
                           capture_output=True, text=True, timeout=60)
    finally:
        destroy_quietly(name)
    assert r.returncode == 0, r.stderr
    got = r.stdout.splitlines()
    want = expected_output(code)
    assert len(got) == len(want), (got, want)
    # A comment may explain after a colon: "# False: it changed".
    for g, w in zip(got, want):
        assert g == w or w.startswith(g + ":"), (g, w)
