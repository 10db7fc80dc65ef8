#!/usr/bin/env bash
# Redis going away under two example nodes, and coming back: a private redis-server (no
# persistence, a free loopback port, started and killed by this script only; the shared Redis
# of the machine is not touched), nodes a and b on it, one session opened on a.
#
# Usage: scripts/multinode/redis_down.sh
#
# Checks, each printing one PASS/FAIL line:
#   live      with Redis down, the session live on a keeps answering (tools/list 200);
#   restore   the same session on b, which does not hold it: 503 with Retry-After, never 404
#             (the session may well exist);
#   open      initialize on a: 503 with Retry-After;
#   log-once  after several refused requests each node has logged the outage once;
#   back      Redis started again on the same port: within 15 s initialize on a answers 200
#             (the nodes reconnect by themselves) and a logs that the store is back, once.
# Ends with "redis-down: N passed, M failed"; exits 1 if M > 0 or the setup failed. Bounded:
# every wait has a timeout. Needs redis-server (Debian's redis-server package; installed when
# missing) and builds the release example (shared with scripts/multinode/run.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
LOG_DIR="${INTEROP_DIR:-$ROOT/.interop}/logs"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/mcp_server"
mkdir -p "$LOG_DIR"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
note() { echo "redis-down: $*"; }

REDIS_PID=""
A_PID=""
B_PID=""
cleanup() {
  for pid in "$A_PID" "$B_PID" "$REDIS_PID"; do
    [ -n "$pid" ] && stop_group "$pid" 25
  done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v redis-server >/dev/null; then
  note "installing Debian's redis-server"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

cd "$ROOT"
note "building the example server (cargo build --release --example mcp_server --features redis)"
cargo build --release --example mcp_server --features redis

REDIS_PORT="$(free_port)"
REDIS_LOG="$LOG_DIR/redis-down-redis.log"
start_redis() {
  : >>"$REDIS_LOG"
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >>"$REDIS_LOG" 2>&1 </dev/null &
  REDIS_PID=$!
  local deadline=$((SECONDS + 10))
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "redis-down: private redis-server did not start"; exit 1; }
    sleep 0.1
  done
}
start_redis
note "private Redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

start_node() { # start_node NAME PORT -> sets NAME_PID
  local log="$LOG_DIR/redis-down-$1.log" pid deadline
  : >"$log"
  setsid "$BIN" --bind "127.0.0.1:$2" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --redis-prefix "tms-redis-down:" >>"$log" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + 60))
  until http_answers "$2"; do
    kill -0 "$pid" 2>/dev/null || { echo "node $1 exited; log:"; tail -n 20 "$log"; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "node $1 did not answer"; exit 1; }
    sleep 0.1
  done
  if [ "$1" = a ]; then A_PID=$pid; else B_PID=$pid; fi
}
A_PORT="$(free_port)"
B_PORT="$(free_port)"
start_node a "$A_PORT"
start_node b "$B_PORT"

HDRS=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"redis-down","version":"1"}}}'
# post PORT BODY [SID]: prints "STATUS RETRY-AFTER" (RETRY-AFTER "-" when absent); the
# headers go to $HEAD_FILE.
HEAD_FILE="$(mktemp)"
post() {
  local extra=()
  [ -z "${3:-}" ] || extra=(-H "Mcp-Session-Id: $3" -H 'MCP-Protocol-Version: 2025-11-25')
  local status
  status="$(curl -s -m 10 -o /dev/null -D "$HEAD_FILE" -w '%{http_code}' "${HDRS[@]}" "${extra[@]}" \
    "http://127.0.0.1:$1/mcp" -d "$2")" || status=000
  local retry
  retry="$(grep -i '^retry-after:' "$HEAD_FILE" | awk '{print $2}' | tr -d '\r' || true)"
  echo "$status ${retry:--}"
}

read -r status _ <<<"$(post "$A_PORT" "$INIT")"
SID="$(grep -i '^mcp-session-id:' "$HEAD_FILE" | awk '{print $2}' | tr -d '\r')"
[ "$status" = 200 ] && [ -n "$SID" ] || { echo "redis-down: initialize on a answered $status"; exit 1; }
post "$A_PORT" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$SID" >/dev/null
note "session opened on a"

stop_group "$REDIS_PID" 25
REDIS_PID=""
note "private Redis stopped"

LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
read -r status _ <<<"$(post "$A_PORT" "$LIST" "$SID")"
if [ "$status" = 200 ]; then pass live "tools/list on a, which holds the session: 200"; else fail live "tools/list on a answered $status"; fi

read -r status retry <<<"$(post "$B_PORT" "$LIST" "$SID")"
if [ "$status" = 503 ] && [ "$retry" != - ]; then
  pass restore "the session on b (not held there): 503, Retry-After: $retry"
else
  fail restore "the session on b answered $status (Retry-After $retry); want 503 with Retry-After, never 404"
fi

read -r status retry <<<"$(post "$A_PORT" "$INIT")"
if [ "$status" = 503 ] && [ "$retry" != - ]; then
  pass open "initialize on a: 503, Retry-After: $retry"
else
  fail open "initialize on a answered $status (Retry-After $retry)"
fi

# More refused requests: the outage is still logged once per node.
for _ in 1 2 3 4 5; do
  post "$A_PORT" "$INIT" >/dev/null
  post "$B_PORT" "$LIST" "$SID" >/dev/null
done
down_a="$(grep -c 'session store unavailable' "$LOG_DIR/redis-down-a.log" || true)"
down_b="$(grep -c 'session store unavailable' "$LOG_DIR/redis-down-b.log" || true)"
if [ "$down_a" = 1 ] && [ "$down_b" = 1 ]; then
  pass log-once "each node logged the outage once (a: $down_a, b: $down_b) over 12 refused requests"
else
  fail log-once "outage lines: a $down_a, b $down_b (want 1 each)"
fi

start_redis
note "private Redis started again (empty: no persistence)"
deadline=$((SECONDS + 15))
status=000
while [ "$SECONDS" -lt "$deadline" ]; do
  read -r status _ <<<"$(post "$A_PORT" "$INIT")"
  [ "$status" = 200 ] && break
  sleep 0.2
done
back_a="$(grep -c 'session store reachable again' "$LOG_DIR/redis-down-a.log" || true)"
if [ "$status" = 200 ] && [ "$back_a" = 1 ]; then
  pass back "initialize on a: 200 again after Redis came back; a logged it once"
else
  fail back "initialize on a: $status; 'reachable again' lines: $back_a"
fi
rm -f "$HEAD_FILE"

echo "redis-down: $passed passed, $failed failed"
[ "$failed" = 0 ]
