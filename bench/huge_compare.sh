#!/bin/sh
# huge_compare.sh - kv's gets on a store backed by 4 KiB pages and on one
# backed by 2 MiB huge pages (kvd --huge-pages, KV_CREATE_HUGE), at 1M and
# 10M keys, in one run, beside the latency of one dependent memory miss
# over a buffer of the same size backed the same way.
#
#   sh bench/huge_compare.sh [--seconds S] [--keys 1000000,10000000]
#                            [--build DIR] [--out DIR] [--no-install]
#
# Needs root: kv-bench runs in a mount namespace of its own (unshare -m)
# with a private tmpfs mounted huge=advise over /dev/shm, so huge pages
# are there whatever the machine's /dev/shm says, and the machine's own
# /dev/shm is never changed. Everything made there goes with the
# namespace.
#
# For each key count and each backing it runs kv-bench --phases
# get-hit,memory-latency,fresh: uniform random gets of present keys (12-
# byte keys, 100-byte values) for S seconds (default 2), the pointer chase
# (mem-chase: one dependent miss per step) over the store's index and
# arena in use, and a new reader process (its first 250 ms, its first S
# seconds, steady). Prints one table on stdout, progress on stderr, and
# writes OUT/huge.csv (default OUT: bench/out) and each run's kv-bench
# output to OUT/logs/.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=2
keys=1000000,10000000
build="$root/build-compare"
out="$root/bench/out"
install=1

while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	--keys) keys=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--no-install) install=0; shift ;;
	-h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "huge_compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

say() { printf '[huge-compare] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "huge_compare.sh: needs root (a mount namespace with a tmpfs" \
	     "of huge pages)" >&2
	exit 2
fi
if [ ! -d /sys/kernel/mm/transparent_hugepage ]; then
	echo "huge_compare.sh: this kernel has no transparent huge pages" >&2
	exit 2
fi
if [ "$install" = 1 ]; then
	sh "$root/scripts/deps.sh" >&2
fi
if [ ! -f "$build/build.ninja" ]; then
	say "configuring $build (release)"
	meson setup "$build" "$root" --buildtype=release -Dtests=false >&2
fi
say "building kv-bench"
ninja -C "$build" bench/kv-bench >&2
bench="$build/bench/kv-bench"

mkdir -p "$out/logs"
csv="$out/huge.csv"
echo "keys,pages,get_p50_ns,get_p99_ns,gets_per_s,chase_ns,p50_over_2_misses,fresh_250ms_p99_ns,fresh_first_p99_ns,steady_p99_ns,fresh_over_steady" > "$csv"

# The store: the keys' need plus room, at least 1 GiB, so that 1M keys sit
# in a store the size the fresh-reader figures were first taken on.
store_mib() {
	m=$(( $1 * 200 / 1048576 + 64 ))
	[ "$m" -lt 1024 ] && m=1024
	echo "$m"
}

run_one() { # keys pages
	k=$1
	p=$2
	mib=$(store_mib "$k")
	shm=$(( mib * 2 + 512 ))
	flag=""
	[ "$p" = 2M ] && flag=--huge-pages
	log="$out/logs/huge-$k-$p.txt"
	rcsv="$out/logs/huge-$k-$p.csv"
	say "$k keys, $p pages: load, get-hit, memory latency, fresh reader ($mib MiB store)"
	unshare -m --propagation private sh -c '
		mount -t tmpfs -o "size=${1}m,mode=1777,huge=advise" tmpfs /dev/shm &&
		shift && exec "$@"' sh "$shm" \
		"$bench" --keys "$k" --store-mib "$mib" --seconds "$seconds" \
		--phases get-hit,memory-latency,fresh --csv "$rcsv" $flag \
		> "$log" 2>&1 || {
		say "kv-bench failed; its output:"
		cat "$log" >&2
		exit 1
	}
	grep -q "memory pages backing the store: $([ "$p" = 2M ] && echo 2048 || echo 4) KiB" "$log" || {
		say "the store was not backed by $p pages; kv-bench said:"
		cat "$log" >&2
		exit 1
	}
	awk -F, -v k="$k" -v p="$p" '
		$2 == "get-hit" && $1 == "single" { p50 = $12; p99 = $13; ops = $10 }
		$2 == "mem-chase" { chase = $11 }
		$2 == "get-hit first 250ms" { f250 = $13 }
		$2 ~ /^get-hit first [0-9.]+s$/ { ffirst = $13 }
		$2 == "get-hit steady" { steady = $13 }
		END {
			printf "%s,%s,%s,%s,%.0f,%.1f,%.2f,%s,%s,%s,%.2f\n", k, p,
			    p50, p99, ops, chase, p50 / (2 * chase), f250,
			    ffirst, steady, ffirst / steady
		}' "$rcsv" >> "$csv"
}

for k in $(echo "$keys" | tr ',' ' '); do
	run_one "$k" 4K
	run_one "$k" 2M
done

echo
echo "kv gets with 4 KiB and 2 MiB pages; 12-byte keys, 100-byte values, uniform random; $seconds s per row."
echo "chase: one dependent miss over the store's index + arena in use, backed the same way."
echo "fresh: a new process's p99 over its first 250 ms / first $seconds s, against its own steady p99."
echo
awk -F, 'NR == 1 { next }
	NR == 2 {
		printf "%10s %5s | %8s %8s %10s | %8s %9s | %10s %10s %10s %7s\n",
		    "keys", "pages", "p50 ns", "p99 ns", "gets/s", "chase ns",
		    "p50/2miss", "fresh250ms", "fresh p99", "steady p99", "ratio"
		print "-----------------------------------------------------------------------------------------------------------"
	}
	{
		printf "%10s %5s | %8s %8s %10s | %8s %9s | %10s %10s %10s %6sx\n",
		    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
	}' "$csv"
echo
echo "goals: with huge pages a get's p50 <= 1.2 x two dependent misses (p50/2miss <= 1.2); fresh p99 <= 2 x steady."
