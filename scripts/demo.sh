#!/usr/bin/env bash
# The demo: builds dpool, starts a local broker and two worker daemons (2 processes
# each), runs the seed program against them, then stops them (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
bin=build/bin
run=$(mktemp -d /tmp/dpool-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$run"
}
trap cleanup EXIT

# A port the broker picks itself, so the demo never collides with another service.
"$bin/dpool-broker" --bind 'tcp://127.0.0.1:*' --endpoint-file "$run/endpoint" \
    --log-level warn 2>"$run/broker.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$run/endpoint" ] && break; sleep 0.1; done
[ -s "$run/endpoint" ] || { echo "demo: the broker did not start" >&2; cat "$run/broker.log" >&2; exit 1; }
export DPOOL_BROKER=$(cat "$run/endpoint")
for i in 1 2; do
    "$bin/dpool-worker" --processes 2 --log-level warn 2>"$run/worker$i.log" &
    pids+=($!)
done
# Wait until both daemons have registered their 4 processes.
for _ in $(seq 100); do
    "$bin/dpool" status --json 2>/dev/null | grep -q '"processes": *4' && break
    sleep 0.1
done
echo "== seed_pool (Pool(3), ten apply_async, close, join) against $DPOOL_BROKER"
"$bin/seed_pool"
