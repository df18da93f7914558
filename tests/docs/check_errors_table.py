#!/usr/bin/env python3
"""The README's table of status codes must list every code of kv.h's
KV_ERRNO_MAP, in order, with the same message: the table is what users
read, the X-macro list is what the library returns."""
import re
import sys

header, readme = sys.argv[1], sys.argv[2]
codes = re.findall(r'XX\((\w+), (-\d+), "([^"]*)"\)', open(header).read())
rows = re.findall(r'^\| (-\d+) \| `KV_(\w+)` \| (.*?) \|$',
                  open(readme).read(), re.M)
want = [(v, n, m) for n, v, m in codes]
if not codes:
    sys.exit("no KV_ERRNO_MAP entries found in " + header)
if rows != want:
    missing = [w for w in want if w not in rows]
    extra = [r for r in rows if r not in want]
    print("README status table differs from KV_ERRNO_MAP")
    for w in missing:
        print("  missing from README:", w)
    for r in extra:
        print("  not in kv.h:", r)
    sys.exit(1)
print(f"{len(rows)} status codes agree")
