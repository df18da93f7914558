#!/usr/bin/env python3
"""plot_waste.py CSV PNG

The memory each value size costs, from kv-waste-bench --csv: waste (all
the memory an item holds beyond its header, key and value) against the
value size, log scale, with the 15 % bound drawn in. Needs
python3-matplotlib.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    size = [int(r["value_bytes"]) for r in rows]
    waste = [100 * float(r["waste"]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(size, waste, "o-", markersize=3, label="waste")
    ax.axhline(15, color="red", linewidth=0.8, label="15 %")
    for x, name in ((8192, "largest class"), (65536, "a page")):
        ax.axvline(x, color="0.8", linewidth=0.8)
        ax.text(x, 19, " " + name, fontsize=8, color="0.4")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("value size (bytes; 16-byte keys)")
    ax.set_ylabel("memory wasted (%)")
    ax.set_ylim(0, 20)
    ax.set_title("kv: memory wasted per value size")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
