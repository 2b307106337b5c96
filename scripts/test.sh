#!/usr/bin/env bash
# The test command: builds dpool twice and runs the whole criterion suite with ctest
# on each build: once as released (RelWithDebInfo), once under AddressSanitizer +
# UndefinedBehaviorSanitizer. Any test failure or any sanitizer report (from a test
# or from a daemon a test started) fails the run. Then fuzz/run.sh runs every fuzz
# target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${DPOOL_TEST_JOBS:-2}

echo "== build (RelWithDebInfo)"
scripts/setup.sh build
echo "== ctest (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
scripts/setup.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DDPOOL_SANITIZE=ON
reports=$(mktemp -d /tmp/dpool-sanitizers.XXXXXX)
trap 'rm -rf "$reports"' EXIT
# Reports go to files, so a report from a daemon started by a test is seen too.
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
echo "== ctest (sanitizers)"
status=0
ctest --test-dir build-asan --output-on-failure -j "$jobs" || status=$?
if compgen -G "$reports/*" >/dev/null; then
    echo "== sanitizer reports:" >&2
    cat "$reports"/* >&2
    status=1
fi
[ "$status" = 0 ] || exit "$status"

# libFuzzer targets for every decoder of network bytes, 10 s each from their seed corpus
# (about 60 s in all); a crash, leak or sanitizer report fails the run.
echo "== fuzz (libFuzzer, clang)"
fuzz/run.sh || exit 1
echo "== all tests passed, with and without sanitizers, and under the fuzzers"
