#!/usr/bin/env bash
# The example server on Redis as production runs it (issue 18): run under
# scripts/redis/servers.sh, which sets the TMS_REDIS_* variables.
#
# Usage: scripts/redis/servers.sh -- scripts/redis/example.sh
#
# Checks, each printing one PASS/FAIL line:
#   tls          --redis-url rediss://app:…@localhost:P --redis-ca ca.pem: initialize answers 200
#   mtls         the same with --redis-cert/--redis-key on the server that requires them
#   cluster      --redis-cluster with the cluster's node URLs: initialize answers 200
#   wrong-pass   a wrong ACL password: the server exits non-zero at startup with Redis's error
#   wrong-ca     the wrong CA: exits non-zero naming the certificate problem
#   no-secret    neither password appears in any output of these servers
# Ends with "redis-example: N passed, M failed"; exits 1 if M > 0. Bounded: every wait has a
# timeout. Builds the example (debug) with --features redis.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"
: "${TMS_REDIS_TLS_PORT:?run under scripts/redis/servers.sh}"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

cd "$ROOT"
cargo build --quiet --example mcp_server --features redis
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/mcp_server"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/tms-redis-example.XXXXXX")"
NODE_PID=""
cleanup() { [ -n "$NODE_PID" ] && stop_group "$NODE_PID" 25; rm -rf "$OUT"; return 0; }
trap cleanup EXIT

C="$TMS_REDIS_CERTS"
PW="$TMS_REDIS_ACL_PASSWORD"
WRONG="wrong-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

initialize() { # initialize PORT -> prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/mcp" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}' || true
}

serves() { # serves NAME ARGS… : starts the example, expects initialize 200, stops it
  local name="$1"; shift
  local port; port="$(free_port)"
  setsid "$BIN" --bind "127.0.0.1:$port" --redis-prefix "tms-example:" "$@" \
    >"$OUT/$name.log" 2>&1 </dev/null &
  NODE_PID=$!
  local deadline=$((SECONDS + 20)) status=""
  until http_answers "$port"; do
    if ! kill -0 "$NODE_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.1
  done
  status="$(initialize "$port")"
  stop_group "$NODE_PID" 25
  NODE_PID=""
  if [ "$status" = 200 ]; then pass "$name" "initialize 200"; else fail "$name" "initialize answered '$status' (log: $(tail -c 400 "$OUT/$name.log"))"; fi
}

refuses() { # refuses NAME PATTERN ARGS… : the example exits non-zero, its output matching PATTERN
  local name="$1" pattern="$2"; shift 2
  local code=0
  timeout 20 "$BIN" --bind "127.0.0.1:$(free_port)" "$@" >"$OUT/$name.log" 2>&1 </dev/null || code=$?
  if [ "$code" != 0 ] && [ "$code" != 124 ] && grep -q -- "$pattern" "$OUT/$name.log"; then
    pass "$name" "exit $code: $(grep -o -- "$pattern.*" "$OUT/$name.log" | head -1 | cut -c1-120)"
  else
    fail "$name" "exit $code, output: $(tail -c 400 "$OUT/$name.log")"
  fi
}

serves tls --redis-url "rediss://app:$PW@localhost:$TMS_REDIS_TLS_PORT" --redis-ca "$C/ca.pem"
serves mtls --redis-url "rediss://app:$PW@localhost:$TMS_REDIS_MTLS_PORT" --redis-ca "$C/ca.pem" \
  --redis-cert "$C/client.pem" --redis-key "$C/client.key"
if [ -n "${TMS_REDIS_CLUSTER:-}" ]; then
  serves cluster --redis-cluster --redis-url "$TMS_REDIS_CLUSTER"
fi
refuses wrong-pass "authentication failed" --redis-url "redis://app:$WRONG@127.0.0.1:$TMS_REDIS_ACL_PORT"
refuses wrong-ca "invalid peer certificate" --redis-url "rediss://app:$PW@localhost:$TMS_REDIS_TLS_PORT" \
  --redis-ca "$C/other-ca.pem"

if grep -l -e "$PW" -e "$WRONG" "$OUT"/*.log >/dev/null 2>&1; then
  fail no-secret "a password appears in $(grep -l -e "$PW" -e "$WRONG" "$OUT"/*.log | xargs -n1 basename | tr '\n' ' ')"
else
  pass no-secret "no password in $(ls "$OUT" | wc -l) server outputs"
fi

echo "redis-example: $passed passed, $failed failed"
[ "$failed" = 0 ]
