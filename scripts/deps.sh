#!/bin/sh
# deps.sh - install the Debian packages kv needs to build and test it, and
# only those that are missing. Safe to run again and again: when everything is
# there it changes nothing and needs no root.
#
# Used by scripts/demo.sh and scripts/test.sh; runs with no stdin (CI).
set -eu

# What building kv and running its test suite need. Notes on the list:
#  - meson Depends on python3 (and python3-setuptools, ninja-build), so
#    --no-install-recommends still brings the Python it runs on.
#  - dpkg-dev is only a Recommends of meson, but we want it: meson asks
#    `dpkg-architecture` for the multiarch libdir. Without it meson falls back
#    to "lib64" (bookworm has a real /usr/lib64), and a `meson install` would
#    put libkv and kv.pc in /usr/local/lib64, where neither ld.so nor
#    pkg-config look on Debian.
#  - gcc's sanitizer runtimes (libasan8, libubsan1, libtsan2) are hard
#    dependencies of gcc-12, so the ASan/UBSan and TSan builds need nothing
#    more.
#  - scdoc turns docs/man/*.scd into the kv(1) and kvd(8) man pages at
#    build time.
#  - libevent-dev: the event loop of kvd's memcached protocol server (each
#    worker thread runs one; kvd links libevent_core only).
#  - python3-dev: the headers the kv Python module (python/) is built
#    against, for Debian's python3; python3-distutils, which meson's
#    python module imports to find where that python3 keeps its modules.
BUILD_PKGS="gcc libc6-dev meson ninja-build pkg-config dpkg-dev libxxhash-dev libcmocka-dev scdoc libevent-dev python3-dev python3-distutils"

# Extra packages only the tests need (scripts/test.sh passes --test): clang
# and its fuzzer runtime, for the libFuzzer targets of the fuzz suite; and
# mingw-w64 and Wine, to cross-build libkv for Windows and run its Windows
# tests (wine is the wrapper that puts /usr/bin/wine on PATH, wine64 the
# 64-bit loader it runs). For the net suite (tests/net): memcached, whose
# replies kvd's are compared with, and the real clients run against kvd:
# libmemcached-tools (memcapable and the memcp/memcat/memstat/memflush
# tools, which Debian installs as memccapable, memccp, memccat,
# memcstat, memcflush...), pymemcache for Debian's python3, and
# nutcracker (twemproxy). Installing memcached or nutcracker does not
# start either here (no init system); if one does start, it takes only
# its default ports, which the tests never use. python3-pytest runs the
# python suite (python/tests).
TEST_EXTRA_PKGS="clang libclang-rt-14-dev gcc-mingw-w64-x86-64 wine wine64 python3 memcached libmemcached-tools python3-pymemcache nutcracker python3-pytest"

PKGS="$BUILD_PKGS"
[ "${1:-}" = "--test" ] && PKGS="$BUILD_PKGS $TEST_EXTRA_PKGS"

say() { printf 'deps: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
	say "dpkg-query not found: this script installs with apt on Debian 12."
	say "On another system install these (or their equivalents) yourself:"
	say "  $PKGS"
	exit 2
fi

installed() {
	# "install ok installed" is the only state in which a package is usable;
	# anything else (absent, removed with config files left, half-installed)
	# counts as missing. A multiarch package prints one status per arch.
	case "$(dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null || true)" in
	*"install ok installed"*) return 0 ;;
	*) return 1 ;;
	esac
}

missing=""
for p in $PKGS; do
	installed "$p" || missing="$missing $p"
done
missing="${missing# }"

if [ -z "$missing" ]; then
	say "all needed packages are installed"
	exit 0
fi

say "missing: $missing"

# Root, or sudo. With no terminal on stdin (CI), sudo must not prompt: -n
# makes it fail at once instead of hanging when it would need a password.
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	if [ -t 0 ]; then SUDO="sudo"; else SUDO="sudo -n"; fi
else
	say "need root to install packages, and sudo is not installed."
	say "As root run:  apt-get update && apt-get install $missing"
	exit 2
fi

# On a fresh cloud machine unattended-upgrades may hold the dpkg lock for a
# while after boot: wait for it (DPkg::Lock::Timeout) rather than fail.

say "apt-get update"
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
say "apt-get install $missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive \
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing

still=""
for p in $missing; do
	installed "$p" || still="$still $p"
done
if [ -n "$still" ]; then
	say "still not installed after apt-get:$still"
	exit 2
fi
say "installed: $missing"
