#!/bin/sh
# run-libfuzzer.sh - the bounded libFuzzer run of one command-line target
# (suite `fuzz`).
#
#   run-libfuzzer.sh FUZZER SECONDS ARTIFACT_DIR DICT SEED_DIR...
#
# Copies the seed directories into a fresh temporary corpus (the run never
# writes into the source tree), fuzzes for SECONDS with a 5 s per-input
# timeout (an input running longer is a hang, and fails) and the
# dictionary DICT ("-" for none), prints the executions and coverage, and
# fails on any crash, sanitizer report, oracle finding, leak or hang.
# Failing inputs are left in ARTIFACT_DIR.
set -u
fuzzer=$1
seconds=$2
artifacts=$3
dict=$4
shift 4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvfuzz-cli.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/corpus" || exit 2
for d in "$@"; do
	cp "$d"/* "$tmp/corpus"/ 2>/dev/null
done
rm -f "$tmp/corpus"/README*
mkdir -p "$artifacts" || exit 2
set -- -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts/"
[ "$dict" != "-" ] && set -- "$@" -dict="$dict"

"$fuzzer" "$@" "$tmp/corpus" >"$tmp/log" 2>&1
rc=$?
grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$tmp/log"
if [ $rc -ne 0 ]; then
	echo "libFuzzer exited with $rc; its log:"
	tail -n 80 "$tmp/log"
	ls -l "$artifacts"
	exit 1
fi
exit 0
