#!/bin/sh
# demo.sh - install what is missing, build kv, and show it working: start kvd
# on a store of the default size, put a value from one process, read it back
# from another, then stop kvd by its pid and remove the store.
#
# The demo uses a store of its own, demo.PID, never 'default': a user's
# default store may hold real data or be served by a kvd of theirs, and a demo
# has no business adopting, changing or removing it. Because the name is
# unique, "the store this script made" is simply demo.PID, and the cleanup
# (also run on failure or Ctrl-C) can remove it without asking.
set -eu

cd "$(dirname "$0")/.."

sh scripts/deps.sh

# Reuse build/ if it is there (scripts/test.sh makes the same one); a new
# one leaves out tests and benchmarks, which the demo does not need. Either
# way only kv and kvd (and libkv under them) are built.
if [ ! -f build/meson-private/coredata.dat ]; then
	CC=gcc meson setup build -Dtests=false -Dbench=false
fi
ninja -C build cli/kv daemon/kvd

KVD=build/daemon/kvd
KV=build/cli/kv
STORE="demo.$$"
SHM="/dev/shm/kv.$STORE"

step() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'demo.sh: %s\n' "$*" >&2
	exit 1
}

{ [ -x "$KVD" ] && [ -x "$KV" ]; } || die "build did not produce $KVD and $KV"
# Pids are unique among live processes, so this can only be left over from a
# demo that was killed outright; still, never touch what we did not make.
[ ! -e "$SHM" ] || die "$SHM already exists; remove it with: $KV -s $STORE destroy --yes"

kvd_pid=""
made_store=0

cleanup() {
	c_rc=$?
	trap - EXIT INT TERM
	if [ -n "$kvd_pid" ] && kill -0 "$kvd_pid" 2>/dev/null; then
		kill "$kvd_pid" 2>/dev/null || true
		wait "$kvd_pid" 2>/dev/null || true
	fi
	if [ "$made_store" = 1 ]; then
		"$KV" -s "$STORE" destroy --yes 2>/dev/null || rm -f "$SHM"
	fi
	exit "$c_rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "start kvd on a new store '$STORE' of the default size (foreground, logging to stderr)"
"$KVD" -s "$STORE" </dev/null &
kvd_pid=$!
made_store=1
echo "kvd is pid $kvd_pid"

# kvd publishes the store only once it is fully initialised: wait for a
# client to be able to attach (5 s at most).
i=0
until "$KV" -s "$STORE" stats >/dev/null 2>&1; do
	kill -0 "$kvd_pid" 2>/dev/null || die "kvd exited before the store was ready"
	i=$((i + 1))
	[ "$i" -le 50 ] || die "store $STORE not ready after 5 s"
	sleep 0.1
done
ls -l "$SHM"

value="hello from the kv demo, $(date '+%H:%M:%S')"

step "one process puts a value"
# sh -c ... exec: the pid printed is the pid of the kv process itself.
sh -c 'echo "process $$: kv -s $1 put greeting \"$2\""; exec "$0" -s "$1" put greeting "$2"' \
	"$KV" "$STORE" "$value"

step "another process gets it"
got=$(sh -c 'echo "process $$: kv -s $1 get greeting" >&2; exec "$0" -s "$1" get greeting' \
	"$KV" "$STORE")
printf '%s\n' "$got"
[ "$got" = "$value" ] || die "got \"$got\", expected \"$value\""

step "stop kvd (pid $kvd_pid) with SIGTERM"
kill "$kvd_pid"
kvd_rc=0
wait "$kvd_pid" || kvd_rc=$?
kvd_pid=""
[ "$kvd_rc" -eq 0 ] || die "kvd exited with status $kvd_rc"
"$KV" -s "$STORE" get greeting >/dev/null ||
	die "the store did not outlive kvd"
echo "kvd exited cleanly; the store outlives it: kv get greeting still works"

step "remove the store: kv -s $STORE destroy --yes"
"$KV" -s "$STORE" destroy --yes
made_store=0
[ ! -e "$SHM" ] || die "$SHM is still there after destroy"
echo "$SHM is gone"

step "demo done"
