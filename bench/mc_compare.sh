#!/bin/sh
# mc_compare.sh - kvd's memcached protocol server against memcached 1.6, in
# one run, on this machine, driven by one client (mc-load, bench/mc_load.c).
#
#   sh bench/mc_compare.sh [--seconds S] [--keys N] [--threads T]
#                          [--mem-keys N] [--no-install] [--build DIR]
#                          [--out DIR]
#
# Installs memcached if it is missing (apt-get, as root), builds kvd, kv and
# mc-load in a release build dir, starts memcached and kvd, each with T
# worker threads (default 2), listening on loopback TCP and on a UNIX socket
# in a temp dir, loads the same N keys (default 100000, 100-byte values)
# into each, and runs the same rows against both: get and set, 1 and 50
# connections, one request per round trip and 16 pipelined, TCP and UNIX.
# Then memory per item: --mem-keys keys (default 1000000) of 100 bytes set
# into a fresh one of each. Stops what it started (by pid), removes what it
# made. Prints one table on stdout, progress on stderr, and writes
# OUT/mc_compare.csv and OUT/mc_memory.csv (default OUT: bench/out).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secs=2
keys=100000
mem_keys=1000000
threads=2
install=1
build="$root/build-compare"
out="$here/out"

while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) secs=$2; shift 2 ;;
	--keys) keys=$2; shift 2 ;;
	--mem-keys) mem_keys=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--no-install) install=0; shift ;;
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "mc_compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

t0=$(date +%s)
say() { printf '[mc_compare %4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*" >&2; }
die() { printf 'mc_compare.sh: %s\n' "$*" >&2; exit 1; }

if ! command -v memcached >/dev/null 2>&1; then
	[ "$install" = 1 ] && [ "$(id -u)" -eq 0 ] ||
		die "memcached is not installed (apt-get install memcached)"
	say "installing memcached"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends memcached >&2 || die "apt-get failed"
fi

say "building in $build"
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" --buildtype=release -Dtests=false -Dbench=true \
		>&2 || die "meson setup failed"
fi
ninja -C "$build" daemon/kvd cli/kv bench/mc-load >&2 || die "build failed"
kvd="$build/daemon/kvd"
kv="$build/cli/kv"
load="$build/bench/mc-load"

tmp=$(mktemp -d /tmp/kv-mc-compare.XXXXXX)
mkdir -p "$out"
pids=""
stores=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	for s in $stores; do "$kv" -s "$s" destroy --yes >/dev/null 2>&1; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for FILE PATTERN: until FILE has a line matching PATTERN (10 s).
wait_for() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -gt 100 ] && die "timed out waiting for '$2' in $1"
		sleep 0.1
	done
}

# start_memcached NAME PORT SOCK MEM_MB: prints its pid.
start_memcached() {
	memcached -u root -t "$threads" -m "$4" -c 4096 -U 0 -l 127.0.0.1 \
		-p "$2" >"$tmp/$1.log" 2>&1 &
	echo $!
}

# start_kvd NAME PORT SOCK SIZE [MAX_ITEMS]: prints its pid.
start_kvd() {
	"$kvd" -s "$1" --size "$4" ${5:+--max-items "$5"} \
		--threads "$threads" --listen "127.0.0.1:$2" \
		--listen "unix:$3" >"$tmp/$1.log" 2>&1 &
	echo $!
}

# memcached takes one kind of listener per process (-s disables TCP), so
# it runs twice: one on TCP, one on the socket, each loaded alike.
csv="$out/mc_compare.csv"
echo "server,op,transport,conns,depth,ops,seconds,ops_per_s,p50_us,p99_us" >"$csv"

mport=$(free_port)
msock="$tmp/memcached.sock"
m_tcp=$(start_memcached memcached-tcp "$mport" "" 2048)
memcached -u root -t "$threads" -m 2048 -c 4096 -U 0 -s "$msock" \
	>"$tmp/memcached-unix.log" 2>&1 &
m_unix=$!
kport=$(free_port)
ksock="$tmp/kvd.sock"
kstore="mccompare.$$"
k=$(start_kvd "$kstore" "$kport" "$ksock" 1G)
pids="$m_tcp $m_unix $k"
stores="$kstore"
wait_for "$tmp/$kstore.log" "listening on unix"
i=0
while [ ! -S "$msock" ]; do
	i=$((i + 1)); [ "$i" -gt 100 ] && die "memcached did not start"
	sleep 0.1
done

say "loading $keys keys into each"
"$load" --tcp "127.0.0.1:$mport" --load --keys "$keys" --seconds 0.1 \
	--label load >/dev/null
"$load" --unix "$msock" --load --keys "$keys" --seconds 0.1 \
	--label load >/dev/null
"$load" --tcp "127.0.0.1:$kport" --load --keys "$keys" --seconds 0.1 \
	--label load >/dev/null

rows=0
for op in get set; do
	for conns in 1 50; do
		for depth in 1 16; do
			for tr in tcp unix; do
				for server in memcached kvd; do
					if [ "$tr" = tcp ]; then
						port=$mport
						[ "$server" = kvd ] && port=$kport
						target="--tcp 127.0.0.1:$port"
					else
						sock=$msock
						[ "$server" = kvd ] && sock=$ksock
						target="--unix $sock"
					fi
					rows=$((rows + 1))
					say "row $rows/32: $server $op $tr conns=$conns depth=$depth"
					# shellcheck disable=SC2086
					"$load" $target --op "$op" --conns "$conns" \
						--depth "$depth" --keys "$keys" \
						--seconds "$secs" --label "$server" \
						>>"$csv" || die "mc-load failed"
				done
			done
		done
	done
done

# Memory per item: a fresh server of each, mem_keys keys of 100 bytes.
# RssAnon: a process's private memory. kvd's VmRSS also counts the store's
# pages it has touched (RssShmem), which the store's own figures already
# count; memcached keeps everything in private memory.
rss_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
say "memory: $mem_keys keys into a fresh memcached and kvd"
for p in $pids; do kill "$p" 2>/dev/null; done
for p in $pids; do wait "$p" 2>/dev/null; done
pids=""
"$kv" -s "$kstore" destroy --yes >/dev/null 2>&1
mport=$(free_port)
m=$(start_memcached memcached-mem "$mport" "" 4096)
kport=$(free_port)
kstore2="mccompare-mem.$$"
# The index sized for the keys (--max-items), as an operator sizes a
# store for its data; memcached grows its hash table as items come.
k=$(start_kvd "$kstore2" "$kport" "$tmp/kvd2.sock" 2G "$mem_keys")
pids="$m $k"
stores="$kstore $kstore2"
wait_for "$tmp/$kstore2.log" "listening on unix"
sleep 0.5
m_rss0=$(rss_kb "$m")
k_rss0=$(rss_kb "$k")
"$load" --tcp "127.0.0.1:$mport" --load --keys "$mem_keys" --seconds 0.1 \
	--label load >/dev/null
"$load" --tcp "127.0.0.1:$kport" --load --keys "$mem_keys" --seconds 0.1 \
	--label load >/dev/null
m_rss1=$(rss_kb "$m")
k_rss1=$(rss_kb "$k")
m_items=$(printf 'stats\r\nquit\r\n' | /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats\r\n"); buf = b""
while not buf.endswith(b"END\r\n"): buf += s.recv(65536)
for l in buf.split(b"\r\n"):
    if l.startswith(b"STAT curr_items "): print(int(l.split()[2]))
' "$mport")
kjson=$("$kv" -s "$kstore2" stats --json)
k_items=$(printf '%s' "$kjson" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
k_used=$(printf '%s' "$kjson" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["data_used"] + d["index_bytes"])')
mem="$out/mc_memory.csv"
{
	echo "server,items,bytes,bytes_per_item,how"
	echo "memcached,$m_items,$(( (m_rss1 - m_rss0) * 1024 )),$(( (m_rss1 - m_rss0) * 1024 / m_items )),private memory growth"
	echo "kvd,$k_items,$(( k_used + (k_rss1 - k_rss0) * 1024 )),$(( (k_used + (k_rss1 - k_rss0) * 1024) / k_items )),store chunks + index + kvd private memory growth"
} >"$mem"

say "done; writing the table"
/usr/bin/python3 - "$csv" "$mem" "$threads" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mem = list(csv.DictReader(open(sys.argv[2])))
by = {}
for r in rows:
    key = (r["op"], r["transport"], r["conns"], r["depth"])
    by.setdefault(key, {})[r["server"]] = r
print("kvd vs memcached 1.6, %s worker threads each, one client (mc-load) "
      "on the same machine; 100-byte values." % sys.argv[3])
print("Latency is of a round trip (with depth 16: of a batch of 16).")
print()
hdr = "%-4s %-5s %5s %5s | %12s %8s %8s | %12s %8s %8s | %6s" % (
    "op", "via", "conns", "depth", "memcached/s", "p50 us", "p99 us",
    "kvd/s", "p50 us", "p99 us", "kvd/mc")
print(hdr)
print("-" * len(hdr))
for key in sorted(by, key=lambda k: (k[0], int(k[2]), int(k[3]), k[1])):
    m, k = by[key].get("memcached"), by[key].get("kvd")
    if not m or not k:
        continue
    ratio = float(k["ops_per_s"]) / max(float(m["ops_per_s"]), 1)
    print("%-4s %-5s %5s %5s | %12.0f %8s %8s | %12.0f %8s %8s | %5.2fx" % (
        key[0], key[1], key[2], key[3], float(m["ops_per_s"]), m["p50_us"],
        m["p99_us"], float(k["ops_per_s"]), k["p50_us"], k["p99_us"], ratio))
print()
for r in mem:
    print("memory per item, %-9s %s items: %s bytes/item (%s)" % (
        r["server"], r["items"], r["bytes_per_item"], r["how"]))
EOF
