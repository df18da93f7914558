#!/bin/sh
# run-libfuzzer.sh - the bounded libFuzzer run of the `fuzz` suite.
#
#   run-libfuzzer.sh FUZZER CORPUS_DIR SECONDS ARTIFACT_DIR
#
# Copies the seed corpus into a fresh temporary directory (so the run never
# writes into the source tree), fuzzes for SECONDS with a 2 s per-input
# timeout, prints the number of executions and coverage, and fails on any
# crash, sanitizer report, leak, broken oracle or hang. Crashing inputs are
# left in ARTIFACT_DIR.
#
# Why 2 s: every libkv call must end within 2 s (kv.h: a wait gives up
# after about 1.5 s), and an input runs in milliseconds, because libkv's
# bounded waits (lock, read-only backoff, attach) run in virtual time in
# the fuzz executables (wrap.c), where the harness holds each call to 2 s
# of that clock. What is left for real time is work: an input still
# running after 2 s loops without waiting, which libFuzzer's default of
# 1200 s would hide.
set -u
fuzzer=$1
corpus=$2
seconds=$3
artifacts=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvfuzz-corpus.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
cp "$corpus"/* "$tmp"/ 2>/dev/null
rm -f "$tmp"/README*
mkdir -p "$artifacts" || exit 2

"$fuzzer" -max_total_time="$seconds" -timeout=2 -rss_limit_mb=4096 \
	-print_final_stats=1 -artifact_prefix="$artifacts/" "$tmp" \
	>"$tmp/.log" 2>&1
rc=$?
grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$tmp/.log"
if [ $rc -ne 0 ]; then
	echo "libFuzzer exited with $rc; its log:"
	tail -n 120 "$tmp/.log"
	ls -l "$artifacts"
	exit 1
fi
exit 0
