#!/usr/bin/env bash
# Builds the example server once in release and runs every flood scenario against it
# (loopback only, each bounded in time, each server stopped by a trap):
#   parked_bodies.sh  2,000 parked initialize bodies beside a normal client
#   lockout.sh        a full table (with GET streams) and one greedy address vs a new client
#   eviction.sh       eviction at 100,000 sessions: opens/s and existing sessions' latency
# Ends with `floods: N passed, M failed` (one verdict per scenario script) and exits non-zero
# if any failed.
#
# Usage: scripts/floods/run_all.sh   (FLOODS_LOG_DIR: see common.sh)
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
start=$SECONDS

cd "$ROOT"
echo "floods: load $(cut -d' ' -f1-3 /proc/loadavg); building the example (cargo build --release --example mcp_server --features redis)"
if ! cargo build --release --example mcp_server --features redis; then
  echo "floods: the build failed"
  echo "floods: 0 passed, 3 failed"
  exit 1
fi
export FLOODS_SERVER_BIN="$ROOT/target/release/examples/mcp_server"

passed=0
failed=0
for scenario in parked_bodies lockout eviction; do
  echo "==== floods: $scenario ($((SECONDS - start)) s in) ===="
  if bash "$SCRIPT_DIR/$scenario.sh"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "floods: wall time $((SECONDS - start)) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "floods: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
