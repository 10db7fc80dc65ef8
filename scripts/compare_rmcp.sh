#!/usr/bin/env bash
# rmcp side by side: rmcp's own stateful server, rmcp per session through the layer
# (tower_mcp_session::rmcp::stateful) and rmcp's stateless mode behind the layer, same
# handler, each at 1k and 20k sessions: opens/s, tools/call requests/s, p50/p99 latency,
# RSS per session. A measurement, not a check: nothing is asserted.
#
# Usage: scripts/compare_rmcp.sh
#
# Builds, in release, the suite's rmcp_server (--mode rmcp-native | layer; TCP_NODELAY on
# accepted sockets) and the load client rmcp_load, then, per row, starts a fresh server on a
# free loopback port, runs the client against it and stops the server. Before measuring it
# waits (at most COMPARE_WAIT_SECS, default 600) while another engineer's flood scripts run
# (pgrep -f scripts/floods), and prints /proc/loadavg before and after.
#
# Environment:
#   COMPARE_SIZES       session counts (default "1000 20000")
#   COMPARE_CALLS       most tools/call requests per row (default 20000)
#   COMPARE_MAX_SECS    most seconds of each row's open phase and of its call phase (default 10)
#   COMPARE_CONCURRENCY requests in flight (default 32)
#   COMPARE_WAIT_SECS   most seconds to wait for the flood scripts (default 600)
#   COMPARE_REDIS       1 (default) adds the row layer-redis: the layer with --redis-url on a
#                       private redis-server started on a free loopback port (no persistence),
#                       with the Redis commands per tools/call (INFO's total_commands_processed
#                       over the row, opens included) and the keys left after the row; 0 skips it
#
# Output: one tab-separated row per (path, size), then the same as a markdown table
# (also written to target/compare-rmcp.md) with the ratios against rmcp's own server.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=lib/proc.sh
. "$SCRIPT_DIR/lib/proc.sh"

SIZES="${COMPARE_SIZES:-1000 20000}"
CALLS="${COMPARE_CALLS:-20000}"
MAX_SECS="${COMPARE_MAX_SECS:-10}"
CONCURRENCY="${COMPARE_CONCURRENCY:-32}"
WAIT_SECS="${COMPARE_WAIT_SECS:-600}"
OUT="$ROOT/target/compare-rmcp.md"
LOG="$ROOT/target/compare-rmcp-server.log"

trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$ROOT"
started=$SECONDS
echo "compare_rmcp: building (release) rmcp_server and rmcp_load"
cargo build --release -q -p tower-mcp-session-suite --example rmcp_server --example rmcp_load
SERVER="$ROOT/target/release/examples/rmcp_server"
CLIENT="$ROOT/target/release/examples/rmcp_load"

waited=0
while pgrep -f scripts/floods >/dev/null && [ "$waited" -lt "$WAIT_SECS" ]; do
  [ "$waited" -eq 0 ] && echo "compare_rmcp: flood scripts running (load $(cut -d' ' -f1-3 /proc/loadavg)); waiting up to ${WAIT_SECS}s"
  sleep 5
  waited=$((waited + 5))
done
if pgrep -f scripts/floods >/dev/null; then
  echo "compare_rmcp: flood scripts still running after ${WAIT_SECS}s; measuring anyway (figures taken on a busy machine)"
fi
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "compare_rmcp: load average before: $LOAD_BEFORE (waited ${waited}s)"

wait_ready() {
  local port="$1" deadline=$((SECONDS + 30))
  until python3 - "$port" <<'EOF' >/dev/null 2>&1
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/mcp")
c.getresponse()
EOF
  do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "compare_rmcp: the server did not come up; its log:"; cat "$LOG"; exit 1
    fi
    sleep 0.2
  done
}

REDIS_PID=""
REDIS_PORT=""
if [ "${COMPARE_REDIS:-1}" = 1 ]; then
  REDIS_PORT="$(free_port)"
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$ROOT/target/compare-rmcp-redis.log" 2>&1 </dev/null &
  REDIS_PID=$!
  trap 'stop_server; stop_group "$REDIS_PID" 25' EXIT
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
fi
redis_commands() { redis-cli -p "$REDIS_PORT" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }

# row LABEL MODE PROTOCOL SESSIONS [SERVER ARGS...]: a fresh server, one client run, one row.
ROWS=()
NOTES=()
row() {
  local label="$1" mode="$2" protocol="$3" n="$4" port line before=""
  shift 4
  port="$(free_port)"
  setsid "$SERVER" --mode "$mode" --bind "127.0.0.1:$port" --max-sessions $((n + 1000)) "$@" \
    >"$LOG" 2>&1 </dev/null &
  SERVER_PID=$!
  wait_ready "$port"
  line="$(timeout $((MAX_SECS * 2 + 30)) "$CLIENT" --url "http://127.0.0.1:$port/mcp" \
    --pid "$SERVER_PID" --sessions "$n" --protocol "$protocol" --calls "$CALLS" \
    --max-secs "$MAX_SECS" --concurrency "$CONCURRENCY" --label "$label")"
  stop_server
  echo "$line"
  ROWS+=("$line")
}
# redis_row SESSIONS: layer-redis, with its Redis commands per call and the keys it left.
redis_row() {
  local before after keys calls
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  before="$(redis_commands)"
  row layer-redis layer stateful "$1" --redis-url "redis://127.0.0.1:$REDIS_PORT"
  after="$(redis_commands)"
  keys="$(redis-cli -p "$REDIS_PORT" dbsize)"
  calls="$(cut -f9 <<<"${ROWS[-1]}")"
  NOTES+=("layer-redis at $1 sessions: $((after - before)) Redis commands for $1 opens and ${calls:-?} calls; $keys keys left")
}

printf 'path\tsessions\topens/s\tcalls/s\tp50_ms\tp99_ms\trss_B/session\terrors\tcalls\n'
for n in $SIZES; do
  row rmcp-native rmcp-native stateful "$n"
  row layer-stateful layer stateful "$n"
  row layer-stateless layer stateless "$n"
  [ -z "$REDIS_PORT" ] || redis_row "$n"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# The markdown table, with each layer row's ratios against rmcp-native at the same size.
{
  echo "| path | sessions | opens/s | tools/call req/s | p50 | p99 | RSS per session | req/s vs rmcp | RSS vs rmcp | errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}" | awk -F'\t' '
    $1 == "rmcp-native" { rps[$2] = $4; rss[$2] = $7 }
    {
      r1 = (rps[$2] > 0) ? sprintf("%.2f×", $4 / rps[$2]) : "—"
      r2 = (rss[$2] > 0) ? sprintf("%.2f×", $7 / rss[$2]) : "—"
      if ($1 == "rmcp-native") { r1 = "1"; r2 = "1" }
      printf "| %s | %s | %s | %s | %.2f ms | %.2f ms | %.1f KiB | %s | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7 / 1024, r1, r2, $8
    }'
} >"$OUT"
echo
cat "$OUT"
[ "${#NOTES[@]}" -eq 0 ] || printf '%s\n' "${NOTES[@]}" | tee -a "$OUT"
echo
echo "compare_rmcp: load average before $LOAD_BEFORE, after $LOAD_AFTER; $(nproc) cores; $((SECONDS - started)) s in all (table in $OUT)"
