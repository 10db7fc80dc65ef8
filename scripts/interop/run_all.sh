#!/usr/bin/env bash
# Build and start the example server, then run the interop suites against it:
#   python.sh       the official MCP Python SDK client (mcp 2.x)
#   conformance.sh  the official MCP conformance suite (@modelcontextprotocol/conformance)
# The server is always stopped at the end. Exits non-zero if either suite
# failed or the server could not be started.
#
# Usage: scripts/interop/run_all.sh
#
# Environment:
#   INTEROP_PORT          port to bind (default: a free port picked at start)
#   INTEROP_READY_TIMEOUT seconds to wait for the server after the build (default 120)
#   INTEROP_SERVER_CMD    command to start the server instead of the example;
#                         it must accept "--bind 127.0.0.1:PORT" appended
#   plus everything python.sh and conformance.sh read.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
INTEROP_DIR="${INTEROP_DIR:-$ROOT/.interop}"
LOG_DIR="$INTEROP_DIR/logs"
READY_TIMEOUT="${INTEROP_READY_TIMEOUT:-120}"
mkdir -p "$LOG_DIR"
SERVER_LOG="$LOG_DIR/server.log"

# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="${INTEROP_PORT:-$(free_port)}"
BIND="127.0.0.1:$PORT"
URL="http://$BIND/mcp"

cd "$ROOT"
if [ -n "${INTEROP_SERVER_CMD:-}" ]; then
  read -r -a server_cmd <<<"$INTEROP_SERVER_CMD"
else
  echo "interop: building the example server (cargo build --example mcp_server)"
  if ! cargo build --example mcp_server; then
    echo "interop: cargo build --example mcp_server failed"
    echo "interop: 0 passed, 3 failed"
    exit 1
  fi
  server_cmd=(cargo run --quiet --example mcp_server --)
fi

echo "interop: starting ${server_cmd[*]} --bind $BIND (log: $SERVER_LOG)"
setsid "${server_cmd[@]}" --bind "$BIND" >"$SERVER_LOG" 2>&1 </dev/null &
SERVER_PID=$!

deadline=$((SECONDS + READY_TIMEOUT))
until http_answers "$PORT"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "interop: the server exited before answering; its log:"
    cat "$SERVER_LOG"
    echo "interop: 0 passed, 3 failed"
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "interop: the server did not answer on $BIND within ${READY_TIMEOUT}s; its log:"
    cat "$SERVER_LOG"
    echo "interop: 0 passed, 3 failed"
    exit 1
  fi
  sleep 0.5
done
echo "interop: server answers at $URL"

python_rc=0
conformance_rc=0
echo "==== python interop (official MCP Python SDK) ===="
bash "$SCRIPT_DIR/python.sh" "$URL" || python_rc=$?
echo "==== conformance (@modelcontextprotocol/conformance) ===="
bash "$SCRIPT_DIR/conformance.sh" "$URL" || conformance_rc=$?

server_alive=1
kill -0 "$SERVER_PID" 2>/dev/null || server_alive=0
stop_server

# Three verdicts: the Python client, the conformance suite, and the server
# having stayed up through both.
passed=0
failed=0
for rc in "$python_rc" "$conformance_rc" "$((1 - server_alive))"; do
  if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
if [ "$failed" -gt 0 ]; then
  [ "$server_alive" -eq 1 ] || echo "interop: the server exited before the end of the run"
  echo "interop: python.sh exit $python_rc, conformance.sh exit $conformance_rc; server log (last 50 lines):"
  tail -n 50 "$SERVER_LOG"
fi
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
