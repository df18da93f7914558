#!/bin/sh
# compare.sh - kv against Redis, memcached and LMDB: the same keys, the same
# values, the same workloads, in the same run, on this machine.
#
#   sh bench/compare.sh [--seconds S] [--keys N] [--no-install] [--no-sweep]
#                       [--idle-wait S] [--min-cpu PCT] [--build DIR]
#                       [--out DIR]
#
# Installs what is missing (Debian packages, with apt-get, when root),
# builds kv-bench and peer-bench in a release build dir, starts its own
# redis-server and memcached on UNIX sockets in a temp dir (never touching
# a system instance), puts LMDB in a temp dir on /dev/shm, runs the matrix,
# stops everything it started (by pid) and removes what it made. Prints one
# table on stdout; progress goes to stderr. Writes bench/out/compare.csv
# (the table), raw.csv (every measured row), mem.csv, scaling.png and the
# tools' own output under logs/.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secs=2
keys=1000000
small=10000
vsize=100
writer_rate=100000
install=1
sweep=1
idle_wait=60
min_cpu=90
build="$root/build-compare"
out="$here/out"

usage() {
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) secs=$2; shift 2 ;;
	--keys) keys=$2; shift 2 ;;
	--no-install) install=0; shift ;;
	--no-sweep) sweep=0; shift ;;
	--idle-wait) idle_wait=$2; shift 2 ;;
	--min-cpu) min_cpu=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

t_start=$(date +%s)
say() {
	printf '[compare %4ss] %s\n' "$(( $(date +%s) - t_start ))" "$*" >&2
}
die() {
	printf 'compare.sh: %s\n' "$*" >&2
	exit 1
}
nap() {
	sleep 0.1 2>/dev/null || sleep 1
}

# Percent of all CPUs busy over one second, from /proc/stat.
cpu_busy() {
	set -- $(head -n 1 /proc/stat)
	t1=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + ${9:-0}))
	i1=$(($5 + $6))
	sleep 1
	set -- $(head -n 1 /proc/stat)
	t2=$(($2 + $3 + $4 + $5 + $6 + $7 + $8 + ${9:-0}))
	i2=$(($5 + $6))
	[ $((t2 - t1)) -gt 0 ] || { echo 0; return; }
	echo $((100 * ((t2 - t1) - (i2 - i1)) / (t2 - t1)))
}

# Other sessions may share this machine: wait (a while) for it to calm
# down, since every figure here is a share of two cores.
wait_idle() {
	waited=0
	while [ "$waited" -lt "$idle_wait" ]; do
		b=$(cpu_busy)
		[ "$b" -lt 15 ] && return 0
		[ $((waited % 10)) = 0 ] &&
		    say "waiting for the machine to calm down ($b% busy)"
		waited=$((waited + 1))
	done
	say "the machine stays busy; measuring anyway (figures will be noisy)"
}

# --- what is running, and how to stop it --------------------------------
tmp=""
lmdb_dir=""
server_pids=""
cur=""
store="cmp$$"

cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$cur" ]; then
		kill "$cur" 2>/dev/null
		wait "$cur" 2>/dev/null
	fi
	for p in $server_pids; do
		kill "$p" 2>/dev/null
	done
	for p in $server_pids; do
		wait "$p" 2>/dev/null
	done
	[ -n "$tmp" ] && rm -rf "$tmp"
	[ -n "$lmdb_dir" ] && rm -rf "$lmdb_dir"
	# Stores a killed kv-bench could have left (it destroys its own).
	rm -f "/dev/shm/kv.$store" /dev/shm/kv."$store".* 2>/dev/null
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# Run a tool in the background and wait for it, so that a signal to this
# script is handled at once (cleanup stops the tool by pid).
run() {
	"$@" &
	cur=$!
	wait "$cur"
	rc=$?
	cur=""
	return $rc
}

# --- 1. packages ----------------------------------------------------------
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}
need="meson ninja-build pkg-config gcc libxxhash-dev redis-server memcached
liblmdb-dev libhiredis-dev libmemcached-dev python3-matplotlib"
missing=""
if command -v dpkg-query >/dev/null 2>&1; then
	for p in $need; do
		installed "$p" || missing="$missing $p"
	done
fi
if [ -n "$missing" ]; then
	if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] &&
	    command -v apt-get >/dev/null 2>&1; then
		say "installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null 2>&1 ||
		    say "apt-get update failed; trying the install anyway"
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $missing \
		    >/dev/null 2>&1 || say "apt-get install failed:$missing"
	else
		say "missing:$missing (not installing: --no-install or not root)"
	fi
fi

# --- 2. build -------------------------------------------------------------
say "building kv-bench and peer-bench (release) in $build"
if [ -f "$build/build.ninja" ]; then
	meson setup --reconfigure "$build" --buildtype=release -Dtests=false \
	    >/dev/null 2>&1 || die "meson setup --reconfigure $build failed"
else
	meson setup "$build" "$root" --buildtype=release -Dtests=false \
	    >/dev/null 2>&1 || die "meson setup $build failed"
fi
ninja -C "$build" bench/kv-bench bench/peer-bench >"${TMPDIR:-/tmp}/kv-compare-build.$$.log" 2>&1 || {
	cat "${TMPDIR:-/tmp}/kv-compare-build.$$.log" >&2
	rm -f "${TMPDIR:-/tmp}/kv-compare-build.$$.log"
	die "build failed"
}
rm -f "${TMPDIR:-/tmp}/kv-compare-build.$$.log"
kvb="$build/bench/kv-bench"
peerb="$build/bench/peer-bench"
built=$("$peerb" --list | tr '\n' ' ')

mkdir -p "$out/logs" || die "cannot make $out"
rm -f "$out"/*.csv "$out"/logs/* "$out/scaling.png"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kv-compare.XXXXXX") || die "mktemp failed"
lmdb_dir=$(mktemp -d /dev/shm/kv-compare-lmdb.XXXXXX) || die "mktemp failed"

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
if [ "$ncpu" -gt 1 ]; then readers="1-$ncpu"; else readers=1; fi
wait_idle
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy_before=$(cpu_busy)

# --- 3. servers -----------------------------------------------------------
wait_socket() { # path pid name
	i=0
	while [ ! -S "$1" ]; do
		kill -0 "$2" 2>/dev/null || return 1
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		nap
	done
	return 0
}

have_redis=0
have_memcached=0
have_lmdb=0
case " $built " in *" lmdb "*) have_lmdb=1 ;; esac
if case " $built " in *" redis "*) true ;; *) false ;; esac &&
    command -v redis-server >/dev/null 2>&1; then
	redis-server --port 0 --unixsocket "$tmp/redis.sock" \
	    --unixsocketperm 700 --save '' --appendonly no --dir "$tmp" \
	    --logfile "$tmp/redis.log" --daemonize no >/dev/null 2>&1 &
	server_pids="$server_pids $!"
	if wait_socket "$tmp/redis.sock" $!; then
		have_redis=1
		say "redis-server pid $! on $tmp/redis.sock"
	else
		say "redis-server did not start; see above"
	fi
else
	say "redis: no redis-server or peer-bench built without hiredis"
fi
if case " $built " in *" memcached "*) true ;; *) false ;; esac &&
    command -v memcached >/dev/null 2>&1; then
	user=""
	[ "$(id -u)" = 0 ] && user="-u root"
	# shellcheck disable=SC2086
	memcached -s "$tmp/memcached.sock" -a 0700 -m 2048 -t "$ncpu" -c 256 \
	    $user >"$tmp/memcached.log" 2>&1 &
	server_pids="$server_pids $!"
	if wait_socket "$tmp/memcached.sock" $!; then
		have_memcached=1
		say "memcached pid $! on $tmp/memcached.sock"
	else
		say "memcached did not start: $(cat "$tmp/memcached.log")"
	fi
else
	say "memcached: no memcached or peer-bench built without libmemcached"
fi

# --- 4. the matrix --------------------------------------------------------
# Each tool writes its CSV and its own table (logs/); progress on stderr.
say "kv: $keys keys: put, get, mixed, mget 16/64, memory latency, readers $readers (RDWR, RDONLY, + writer ${writer_rate}/s), 10k keys"
run "$kvb" --keys "$keys" --value-size "$vsize" --seconds "$secs" \
    --store "$store" --readers "$readers" --writer-rate "$writer_rate" \
    --open both --batch 16,64 --min-cpu "$min_cpu" \
    --phases put-replace,get-hit,mixed,mget,memory-latency,readers,get-hit-10k \
    --csv "$out/kv.csv" >"$out/logs/kv.txt" ||
    die "kv-bench failed; see $out/logs/kv.txt"

peer_run() { # system target keys tag extra-args...
	sys=$1 target=$2 n=$3 tag=$4
	shift 4
	say "$sys: $n keys ($tag)"
	run "$peerb" --system "$sys" --target "$target" --keys "$n" \
	    --value-size "$vsize" --seconds "$secs" --csv "$out/$sys-$tag.csv" \
	    --min-cpu "$min_cpu" \
	    "$@" >"$out/logs/$sys-$tag.txt" ||
	    say "$sys failed ($tag); see $out/logs/$sys-$tag.txt"
}
# The large runs first, so each store is loaded fresh and its memory
# figure is not muddled by an earlier, smaller data set.
for sys in redis memcached lmdb; do
	eval have=\$have_$sys
	[ "$have" = 1 ] || continue
	case $sys in
	redis) target="$tmp/redis.sock" ;;
	memcached) target="$tmp/memcached.sock" ;;
	lmdb) target="$lmdb_dir/main" ;;
	esac
	peer_run "$sys" "$target" "$keys" main --clients "$readers" \
	    --batch 16,64
	[ "$sys" = lmdb ] && target="$lmdb_dir/small"
	peer_run "$sys" "$target" "$small" small --clients 1 --batch 16 \
	    --phases get-hit,mget
done

sweep_list=""
if [ "$sweep" = 1 ]; then
	# Key counts from cache-resident to well past the last-level cache,
	# then value sizes from 16 B to 64 KiB (fewer keys as values grow).
	sweep_list="10000:100 100000:100 4000000:100 1000000:16 500000:1000 100000:4000 16000:65536"
	i=0
	for kv in $sweep_list; do
		i=$((i + 1))
		n=${kv%%:*}
		v=${kv#*:}
		say "kv sweep: $n keys x $v B"
		run "$kvb" --keys "$n" --value-size "$v" --seconds 1 \
		    --min-cpu "$min_cpu" \
		    --store "$store.s$i" --phases get-hit,mget --batch 16 \
		    --csv "$out/sweep-$i.csv" >"$out/logs/sweep-$i.txt" ||
		    say "kv sweep $n x $v failed; see $out/logs/sweep-$i.txt"
	done
fi

# Stop the servers now: the table does not need them.
for p in $server_pids; do kill "$p" 2>/dev/null; done
for p in $server_pids; do wait "$p" 2>/dev/null; done
server_pids=""
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
busy_after=$(cpu_busy)

# --- 5. the table ---------------------------------------------------------
raw="$out/raw.csv"
first=1
for f in "$out"/kv.csv "$out"/redis-*.csv "$out"/memcached-*.csv \
    "$out"/lmdb-*.csv "$out"/sweep-*.csv; do
	[ -f "$f" ] || continue
	if [ $first = 1 ]; then
		head -n 1 "$f" >"$raw"
		first=0
	fi
	tail -n +2 "$f" >>"$raw"
done
[ $first = 0 ] || die "no results"
echo "system,keys,key_size,value_size,bytes_per_item,overhead_per_item,waste_pct,overhead_ex_waste" \
    >"$out/mem.csv"
cat "$out"/logs/*.txt | sed -n 's/^# mem: //p' | awk '{
	delete f
	for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	print f["system"] "," f["keys"] "," f["key_size"] "," f["value_size"] \
	    "," f["bytes_per_item"] "," f["overhead_per_item"] "," f["waste_pct"] \
	    "," f["overhead_ex_waste"]
}' >>"$out/mem.csv"

chase=$(sed -n 's/^# get-hit .*(mem-chase \([0-9.]*\) ns over \([0-9]*\) MiB).*/\1 ns over \2 MiB/p' "$out/logs/kv.txt")
kvbuild=$(sed -n 's/^# kv-bench [^,]*, build \([^,]*\),.*/\1/p' "$out/logs/kv.txt")
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
ver_redis=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')
ver_mc=$(memcached -V 2>/dev/null | sed 's/memcached //')
ver_lmdb=$(dpkg-query -W -f='${Version}' liblmdb-dev 2>/dev/null)

echo
echo "kv compared with Redis ${ver_redis:-?}, memcached ${ver_mc:-?}, LMDB ${ver_lmdb:-?}"
echo "machine: ${cpu:-?}, $ncpu CPUs; busy before the run $busy_before%, after $busy_after% (load average $load_before / $load_after)"
echo "kv-bench build: ${kvbuild:-?}; $keys keys of 12 B, $vsize B values, uniform random; ${secs}s per run"
echo "get-hit: kv_get | Redis GET, 1 per round trip | memcached get, 1 per round trip | LMDB read txn renewed per get"
echo "batched: kv_mget | Redis GETs pipelined | memcached multi-key get | LMDB N gets per read txn"
echo "procs: kv reader processes / peer client processes, pinned to CPU i % $ncpu; servers unpinned"
[ -n "$chase" ] && echo "memory yardstick: one dependent miss = $chase (pointer chase, same run)"
echo
awk -v K="$keys" -v S="$small" -v N="$ncpu" -v WR="$writer_rate" \
    -v V="$vsize" -v sweep="$sweep_list" -v csv="$out/compare.csv" \
    -f "$here/compare.awk" "$raw" "$out/mem.csv"
echo
for sys in redis memcached lmdb; do
	eval have=\$have_$sys
	[ "$have" = 1 ] || echo "note: $sys was not measured (see the progress lines above)"
done
for f in "$out"/logs/*.txt; do
	sed -n "s|^# WARNING: |warning ($(basename "$f" .txt)): |p" "$f"
done
if [ "$busy_before" -ge 15 ] || [ "$busy_after" -ge 15 ]; then
	echo "note: other processes were using the CPUs around the run ($busy_before% before, $busy_after% after): the figures are noisy"
fi

# Debian's python3-matplotlib is for /usr/bin/python3, which need not be
# the python3 first on PATH (pyenv, a venv).
py=""
for p in /usr/bin/python3 python3; do
	if command -v "$p" >/dev/null 2>&1 &&
	    "$p" -c 'import matplotlib' >/dev/null 2>&1; then
		py=$p
		break
	fi
done
if [ -n "$py" ]; then
	if "$py" "$here/plot_scaling.py" "$raw" "$out/scaling.png" "$keys" \
	    "$vsize" 2>"$out/logs/plot.txt"; then
		echo "wrote $out/compare.csv, $out/raw.csv, $out/scaling.png"
	else
		echo "wrote $out/compare.csv, $out/raw.csv; the plot failed (see $out/logs/plot.txt)"
	fi
else
	echo "wrote $out/compare.csv, $out/raw.csv; no plot: python3-matplotlib is not installed"
fi
say "done"
