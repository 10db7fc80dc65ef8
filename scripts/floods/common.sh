# Shared by scripts/floods/*.sh (source it). Starts the release example server on a free
# loopback port and stops it on exit; counts verdicts; prints the closing line.
#
# Environment:
#   FLOODS_SERVER_BIN  the built example (default target/release/examples/mcp_server; built
#                      with `cargo build --release --example mcp_server` if missing)
#   FLOODS_LOG_DIR     where server logs go (default $ROOT/target/floods)

FLOODS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$FLOODS_DIR/../.." && pwd)"
# shellcheck source=../lib/proc.sh
. "$FLOODS_DIR/../lib/proc.sh"

LOG_DIR="${FLOODS_LOG_DIR:-$ROOT/target/floods}"
mkdir -p "$LOG_DIR"
SERVER_BIN="${FLOODS_SERVER_BIN:-$ROOT/target/release/examples/mcp_server}"
PASSED=0
FAILED=0
SERVER_PID=""
PORT=""

# As many file descriptors as allowed (2,000 parked connections need more than 1,024).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ensure_server_bin() {
  if [ ! -x "$SERVER_BIN" ]; then
    (cd "$ROOT" && cargo build --release --example mcp_server --features redis) || return 1
  fi
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_group "$SERVER_PID"
  SERVER_PID=""
}

GEN_PID=""
stop_all() {
  if [ -n "$GEN_PID" ]; then
    stop_group "$GEN_PID" 10
    GEN_PID=""
  fi
  stop_server
}

# generate SECONDS ARGS...: runs `mcpflood.py ARGS` in its own process group (so the trap
# stops it and the pool process it may start), killed after SECONDS; sets RESULT to the JSON
# of its RESULT line ("{}" if none).
generate() {
  local limit="$1" out="$LOG_DIR/$NAME-generator.out"
  shift
  setsid timeout "$limit" python3 "$FLOODS_DIR/mcpflood.py" "$@" >"$out" 2>&1 </dev/null &
  GEN_PID=$!
  wait "$GEN_PID" || true
  GEN_PID=""
  local line
  line="$(grep '^RESULT ' "$out" | tail -n 1)" || true
  if [ -n "$line" ]; then RESULT="${line#RESULT }"; else
    RESULT='{}'
    echo "$NAME: the generator printed no result; its output:"
    tail -n 20 "$out"
  fi
}

# start_server NAME ARGS...: the example on 127.0.0.1:$PORT with ARGS, log in $LOG_DIR/NAME.log.
start_server() {
  local name="$1"
  shift
  stop_server
  PORT="$(free_port)"
  SERVER_LOG="$LOG_DIR/$name.log"
  RUST_LOG="${FLOODS_RUST_LOG:-warn}" setsid "$SERVER_BIN" --bind "127.0.0.1:$PORT" "$@" \
    >"$SERVER_LOG" 2>&1 </dev/null &
  SERVER_PID=$!
  local deadline=$((SECONDS + 20))
  until python3 - "$PORT" <<'EOF' >/dev/null 2>&1
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/mcp", headers={"Accept": "text/event-stream"})
c.getresponse()
EOF
  do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "$NAME: the server did not start; its log:"
      tail -n 30 "$SERVER_LOG"
      return 1
    fi
    sleep 0.2
  done
}

# check DESCRIPTION CONDITION-EXIT-STATUS: counts one verdict and prints it.
check() {
  local what="$1" rc="$2"
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1))
    echo "$NAME: ok   $what"
  else
    FAILED=$((FAILED + 1))
    echo "$NAME: FAIL $what"
  fi
}

# py_check DESCRIPTION PYTHON-EXPR: evaluates EXPR with `r` bound to the JSON in $RESULT.
py_check() {
  local rc=0
  RESULT="$RESULT" python3 -c 'import json, os, sys
r = json.loads(os.environ["RESULT"])
sys.exit(0 if eval(sys.argv[1]) else 1)' "$2" 2>/dev/null || rc=$?
  check "$1" "$rc"
}

server_alive_check() {
  local rc=0
  kill -0 "$SERVER_PID" 2>/dev/null || rc=1
  check "the server stayed up" "$rc"
}

finish() {
  stop_all
  echo "floods-$NAME: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
