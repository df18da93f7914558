#!/usr/bin/env python3
"""plot_scaling.py RAW_CSV PNG KEYS VALUE_SIZE

Reader scaling from bench/compare.sh's raw.csv: aggregate get ops/s
against the number of reader (client) processes, one line per system and
access style, log scale (kv and the socket servers are orders of magnitude
apart). Needs python3-matplotlib.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LINES = [
    # (mode, phase, label, style)
    ("readers", "get-hit", "kv get (KV_RDWR)", "o-"),
    ("readers-ro", "get-hit", "kv get (KV_RDONLY)", "o:"),
    ("readers+w", "get-hit", "kv get + 100k puts/s writer", "o--"),
    ("lmdb", "get-hit", "LMDB get, txn renewed per get", "s-"),
    ("lmdb", "mget-16", "LMDB 16 gets per txn", "s--"),
    ("memcached", "get-hit", "memcached get, 1 per round trip", "^-"),
    ("memcached", "mget-16", "memcached multi-get of 16", "^--"),
    ("redis", "get-hit", "Redis GET, 1 per round trip", "v-"),
    ("redis", "mget-16", "Redis 16 GETs pipelined", "v--"),
]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    raw, png, keys, vsize = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    pts = {}
    with open(raw, newline="") as f:
        for row in csv.DictReader(f):
            if row["keys"] != keys or row["value_size"] != vsize:
                continue
            pts.setdefault((row["mode"], row["phase"]), []).append(
                (int(row["procs"]), float(row["ops_per_s"])))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    maxp = 1
    for mode, phase, label, style in LINES:
        p = sorted(pts.get((mode, phase), []))
        if not p:
            continue
        maxp = max(maxp, p[-1][0])
        ax.plot([x for x, _ in p], [y for _, y in p], style, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(1, maxp + 1))
    ax.set_xlabel("reader / client processes")
    ax.set_ylabel("gets per second, all processes (log scale)")
    ax.set_title(f"Reader scaling: {int(keys):,} keys, {vsize} B values, "
                 "uniform random hits")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
