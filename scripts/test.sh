#!/bin/sh
# test.sh - install what is missing, build kv, and run the whole test suite
# five ways:
#
#   build/       gcc                                every suite
#   build-asan/  gcc -fsanitize=address,undefined   every suite
#   build-tsan/  gcc -fsanitize=thread              the "stress" and "net"
#                                                   suites, if stress has
#                                                   any test
#   build-fuzz/  clang                              the "fuzz" suite, with
#                                                   bounded libFuzzer runs
#   build-win/   mingw-w64, for 64-bit Windows      the "windows" suite, run
#                                                   under Wine
#
# It ends with one line "N passed, N failed" (", N skipped" appended when
# some were) summed over the five runs, and exits 1 if any build or test
# failed, or if no test ran at all. A build that fails counts as one failed
# test, so the line never claims a clean run that did not happen.
#
# This is what CI runs (.ci/run) and what the README tells a user to run.
# Knobs for quick local runs; CI and the README use neither:
#   KV_TEST_SKIP_ASAN=1   leave out the ASan+UBSan run
#   KV_TEST_SKIP_TSAN=1   leave out the ThreadSanitizer run
#   KV_TEST_SKIP_FUZZ=1   leave out the clang build with the fuzzers
#   KV_TEST_SKIP_WIN=1    leave out the Windows build and its Wine run
set -eu

cd "$(dirname "$0")/.."

sh scripts/deps.sh --test

# Every test inherits these. abort_on_error makes a sanitizer report end the
# test with SIGABRT, which meson records as a failure whatever the test's own
# exit code would have been.
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
TSAN_OPTIONS=halt_on_error=1
export ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS

# The sanitizer builds use gcc like the normal one: its runtimes come with
# gcc-12 itself, and with gcc meson needs no -Db_lundef=false (clang would,
# because its sanitizer runtime is linked into executables only).
CC=gcc
export CC

passed=0
failed=0
skipped=0
executed=0 # tests that ran and were not skipped, over all runs
status=0

note() { printf '\n==> %s\n' "$*"; }
warn() { printf 'test.sh: %s\n' "$*" >&2; }

# setup DIR [meson options...]: configure DIR, or reconfigure it if it is
# already a meson build directory. The options are passed either way, so a
# build dir someone configured by hand gets the settings this script needs;
# one configured with another compiler is wiped, since meson keeps the
# compiler it was first set up with.
setup() {
	s_dir=$1
	shift
	s_cc=${SETUP_CC:-gcc}
	if [ ! -f "$s_dir/meson-private/coredata.dat" ]; then
		CC=$s_cc meson setup "$s_dir" "$@"
	elif grep -q "^C compiler for the host machine: .* ($s_cc " \
		"$s_dir/meson-logs/meson-log.txt" 2>/dev/null; then
		CC=$s_cc meson setup --reconfigure "$s_dir" "$@"
	else
		CC=$s_cc meson setup --wipe "$s_dir" "$@"
	fi
}

# configure LABEL DIR [meson options...] and compile LABEL DIR: on failure
# count one failed test and return 1.
configure() {
	c_label=$1
	c_dir=$2
	shift 2
	note "$c_label: configure $c_dir/"
	setup "$c_dir" "$@" && return 0
	warn "$c_label: meson setup failed for $c_dir/"
	failed=$((failed + 1))
	status=1
	return 1
}

compile() {
	note "$1: build $2/"
	ninja -C "$2" && return 0
	warn "$1: build failed in $2/"
	failed=$((failed + 1))
	status=1
	return 1
}

# count PATTERN FILE: lines of FILE containing PATTERN (0 when none).
count() {
	grep -c -F -e "$1" "$2" || true
}

# run LABEL DIR WRAP [meson test options...]: run the tests of DIR (already
# built) under the command prefix WRAP (may be empty), and add the results
# from meson's testlog.json to the totals.
#
# testlog.json holds one JSON object per test, one per line, each with
# "result": "OK" | "EXPECTEDFAIL" | "SKIP" | "FAIL" | "TIMEOUT" |
# "UNEXPECTEDPASS" | "ERROR". A test's own output sits in that object as a
# JSON string, where its quotes are escaped, so the pattern '"result": "'
# can only match the real field. OK and EXPECTEDFAIL pass, SKIP is skipped,
# and every other result, including ones a later meson may add, fails.
run() {
	r_label=$1
	r_dir=$2
	r_wrap=$3
	shift 3
	r_log="$r_dir/meson-logs/testlog.json"
	# meson leaves the previous log in place when it runs nothing.
	rm -f "$r_log"
	note "$r_label: meson test -C $r_dir $*${r_wrap:+ (under $r_wrap)}"
	r_rc=0
	# shellcheck disable=SC2086 # r_wrap is a command prefix, split on purpose
	$r_wrap meson test -C "$r_dir" --no-rebuild --print-errorlogs \
		--num-processes 2 "$@" </dev/null || r_rc=$?
	if [ -f "$r_log" ]; then
		r_total=$(count '"result": "' "$r_log")
		r_pass=$(count '"result": "OK"' "$r_log")
		r_pass=$((r_pass + $(count '"result": "EXPECTEDFAIL"' "$r_log")))
		r_skip=$(count '"result": "SKIP"' "$r_log")
	else
		r_total=0 r_pass=0 r_skip=0
	fi
	r_fail=$((r_total - r_pass - r_skip))
	if [ "$r_total" -eq 0 ]; then
		# Nothing ran: a defect (no tests built, or meson failed before
		# running any), never a pass.
		warn "$r_label: no test ran in $r_dir/ (meson test exit $r_rc)"
		r_fail=1
	elif [ "$r_rc" -ne 0 ] && [ "$r_fail" -eq 0 ]; then
		warn "$r_label: meson test exited $r_rc with no failed test in its log"
		r_fail=1
	fi
	printf '%s: ran %s: %s ok, %s not ok, %s skipped\n' \
		"$r_label" "$r_total" "$r_pass" "$r_fail" "$r_skip"
	passed=$((passed + r_pass))
	failed=$((failed + r_fail))
	skipped=$((skipped + r_skip))
	executed=$((executed + r_total - r_skip))
	[ "$r_fail" -eq 0 ] || status=1
	return 0
}

# tsan_wrap DIR: decide how TSan binaries must be started on this machine and
# print the command prefix ("" or "setarch ARCH -R"); return 1 if they cannot
# run at all.
#
# TSan in gcc 12 and clang 14 assumes the kernel places mappings within a
# fixed range. With vm.mmap_rnd_bits above 28 (32 on some kernels) that is not
# so: clang's runtime dies with "FATAL: ThreadSanitizer: unexpected memory
# mapping", gcc 12's simply segfaults before main, nearly every run. Running
# with ASLR off (setarch -R, a personality that children inherit, so meson's
# test processes get it too) fixes both. We build a tiny threaded program
# with the same flags and try it: plain first, since setarch -R can be
# refused (e.g. by a container's seccomp policy), then under setarch.
tsan_wrap() {
	t_dir=$1
	t_src="$t_dir/kv-tsan-probe.c"
	t_bin="$t_dir/kv-tsan-probe"
	cat >"$t_src" <<'EOF'
#include <pthread.h>
static int n;
static void *run(void *arg) { (void)arg; __atomic_add_fetch(&n, 1, __ATOMIC_SEQ_CST); return 0; }
int main(void) { pthread_t t; if (pthread_create(&t, 0, run, 0)) return 1; pthread_join(t, 0); return n == 1 ? 0 : 1; }
EOF
	if ! "$CC" -fsanitize=thread -pthread -o "$t_bin" "$t_src" >&2; then
		warn "cannot build a ThreadSanitizer program with $CC"
		return 1
	fi
	# Three tries: where the mapping range is a matter of chance, one good
	# run proves little.
	t_arch=$(uname -m)
	if tsan_try "$t_bin" && tsan_try "$t_bin" && tsan_try "$t_bin"; then
		return 0
	fi
	if tsan_try setarch "$t_arch" -R "$t_bin" &&
		tsan_try setarch "$t_arch" -R "$t_bin"; then
		warn "TSan programs fail here with ASLR on; running the TSan tests under setarch $t_arch -R"
		printf 'setarch %s -R\n' "$t_arch"
		return 0
	fi
	warn "a ThreadSanitizer program fails here, with and without ASLR:"
	"$t_bin" >&2 || true
	return 1
}

# tsan_try COMMAND...: run it quietly, in a subshell so that the shell's own
# "Segmentation fault" notice is silenced too.
tsan_try() {
	("$@") >/dev/null 2>&1
}

# 1. The normal build and the whole suite.
if configure build build -Dtests=true -Dbench=true && compile build build; then
	run build build ""
fi

# 2. ASan + UBSan, the whole suite. Benchmarks are left out: they are not
# tests, and the normal build already compiles them.
if [ "${KV_TEST_SKIP_ASAN:-0}" = 1 ]; then
	note "asan: skipped (KV_TEST_SKIP_ASAN=1)"
elif configure asan build-asan -Dtests=true -Dbench=false \
	-Db_sanitize=address,undefined && compile asan build-asan; then
	run asan build-asan "" --timeout-multiplier 3
fi

# 3. ThreadSanitizer: the stress suite, and the net suite (kvd's worker
# threads under real clients), only if the stress suite has a test (listed
# before compiling, so an empty suite costs no build).
if [ "${KV_TEST_SKIP_TSAN:-0}" = 1 ]; then
	note "tsan: skipped (KV_TEST_SKIP_TSAN=1)"
elif configure tsan build-tsan -Dtests=true -Dbench=false \
	-Db_sanitize=thread; then
	# --list exits 1 saying "No suitable tests defined." (or "No tests
	# defined." when there are none at all) for an empty suite.
	l_rc=0
	stress=$(meson test -C build-tsan --no-rebuild --list --suite stress \
		2>/dev/null </dev/null) || l_rc=$?
	if [ "$l_rc" -ne 0 ] || [ -z "$stress" ]; then
		case "$stress" in
		"" | "No suitable tests defined." | "No tests defined.")
			note "tsan: the stress suite has no tests; nothing to run"
			;;
		*)
			warn "tsan: cannot list the stress suite: $stress"
			failed=$((failed + 1))
			status=1
			;;
		esac
	elif compile tsan build-tsan; then
		if wrap=$(tsan_wrap build-tsan); then
			run tsan build-tsan "$wrap" --suite stress \
				--suite net --timeout-multiplier 5
		else
			failed=$((failed + 1))
			status=1
		fi
	fi
fi

# 4. Fuzzing: the fuzz suite again in a clang build, the one where the
# libFuzzer targets exist, so besides replaying every corpus it runs each
# fuzzer for a bounded time (store images 60 s with a 2 s limit per input,
# tests/fuzz/run-libfuzzer.sh; CLI and dump parsers 20 s each).
# docs/fuzzing.md has the longer runs.
if [ "${KV_TEST_SKIP_FUZZ:-0}" = 1 ]; then
	note "fuzz: skipped (KV_TEST_SKIP_FUZZ=1)"
elif SETUP_CC=clang configure fuzz build-fuzz -Dtests=true -Dbench=false \
	-Db_lundef=false && compile fuzz build-fuzz; then
	run fuzz build-fuzz "" --suite fuzz --timeout-multiplier 2
fi

# 5. Windows: libkv cross-built with mingw-w64, its tests run under Wine
# (the cross file's exe_wrapper) in a Wine prefix of their own inside the
# build directory, whose wineserver is stopped afterwards.
if [ "${KV_TEST_SKIP_WIN:-0}" = 1 ]; then
	note "windows: skipped (KV_TEST_SKIP_WIN=1)"
elif configure windows build-win -Dtests=true -Dbench=false \
	--cross-file cross/x86_64-w64-mingw32.txt && compile windows build-win; then
	WINEPREFIX="$PWD/build-win/wineprefix"
	WINEDEBUG=-all
	export WINEPREFIX WINEDEBUG
	run windows build-win "" --suite windows
	wineserver -k 2>/dev/null || true
	unset WINEPREFIX WINEDEBUG
fi

if [ "$executed" -eq 0 ]; then
	warn "no test was executed: that is a failure, not a pass"
	status=1
fi

line="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || line="$line, $skipped skipped"
printf '\n%s\n' "$line"
exit "$status"
