#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang and runs each one from its seed corpus
# (fuzz/corpus/<target>/, copied to a scratch folder so the repository is not touched)
# for a bounded time. Any crash, leak, timeout, out-of-memory or sanitizer report fails
# the run, printing the reproducer's path, its bytes and the start of the report.
#   fuzz/run.sh                 every target, DPOOL_FUZZ_SECONDS (default 10) seconds each
#   fuzz/run.sh --make-corpus   (re)writes the generated seeds into fuzz/corpus
#   fuzz/run.sh TARGET FILE...  runs a target on the given inputs only (a reproducer)
# DPOOL_FUZZ_BUILD sets the build folder (default build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DPOOL_FUZZ_BUILD:-build-fuzz}
seconds=${DPOOL_FUZZ_SECONDS:-10}

# The sanitizers report to the fuzzer's own output (scripts/test.sh exports a log_path
# for its ctest runs, which would hide the report from this script).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

command -v clang >/dev/null || { echo "fuzz: clang not found (scripts/setup.sh installs it)" >&2; exit 1; }
work=$(mktemp -d /tmp/dpool-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
if ! cmake -S fuzz -B "$build" -DCMAKE_C_COMPILER=clang >"$work/build.log" 2>&1 ||
    ! cmake --build "$build" -j "$(nproc)" >>"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

if [ "${1:-}" = --make-corpus ]; then
    "$build/make_corpus" fuzz/corpus
    exit
fi
if [ $# -gt 0 ]; then
    target=$1
    shift
    "$build/$target" -artifact_prefix="$work/" "$@"
    exit
fi
artifacts="$build/artifacts"
mkdir -p "$artifacts"
targets=$(tr ';' ' ' <"$build/targets.txt")
count=0 total_runs=0 failed=0
for target in $targets; do
    mkdir -p "$work/$target/corpus" "$work/$target/crash"
    cp fuzz/corpus/"$target"/* "$work/$target/corpus/"
    seeds=$(find "$work/$target/corpus" -type f | wc -l)
    log="$work/$target/log"
    status=0
    # -timeout: one input running 10 s is a hang. -malloc_limit_mb: one allocation over
    # 256 MiB is a crash: no decoder may let a few bytes ask for that much. -seed: the
    # test command explores the same mutations each time (FUZZ_SEED=0 for a random one),
    # so a run that passed here passes in CI; longer runs by hand search further.
    "$build/$target" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
        -malloc_limit_mb=256 -print_final_stats=1 \
        -artifact_prefix="$work/$target/crash/" "$work/$target/corpus" >"$log" 2>&1 || status=$?
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    count=$((count + 1))
    total_runs=$((total_runs + ${runs:-0}))
    found=$(find "$work/$target/crash" -type f | head -n 1)
    if [ "$status" = 0 ] && [ -z "$found" ]; then
        grown=$(find "$work/$target/corpus" -type f | wc -l)
        echo "fuzz: $target: ${runs:-0} runs in ${seconds} s, corpus $seeds -> $grown, no crash"
        continue
    fi
    failed=$((failed + 1))
    echo "fuzz: $target FAILED (exit $status)" >&2
    if [ -n "$found" ]; then
        kept="$artifacts/$target-$(basename "$found")"
        cp "$found" "$kept"
        echo "fuzz: reproducer: $kept (replay: fuzz/run.sh $target $kept)" >&2
        echo "fuzz: its first bytes:" >&2
        od -A d -t x1 "$kept" | head -n 8 >&2
    fi
    echo "fuzz: report:" >&2
    grep -n -m 1 -E '==dpool-fuzz==|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|Deadly|SUMMARY' "$log" |
        cut -d: -f1 | { read -r first || first=1; tail -n "+$first" "$log" | head -n 40; } >&2
done
if [ "$failed" != 0 ]; then
    echo "fuzz: $failed of $count targets failed" >&2
    exit 1
fi
echo "fuzz: $count targets, $total_runs runs, no crash"
