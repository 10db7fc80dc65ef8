#!/usr/bin/env bash
# Does the example server give memory back after many sessions expire?
#
# Builds the example in release mode, starts it on a free loopback port with a short idle
# timeout, opens MEM_SESSIONS sessions (initialize only, never closed) with a bounded
# python3 load client (open_sessions.py beside this script), waits for them all to expire
# and be swept, and prints the server's resident memory (VmRSS from /proc/PID/status)
# before the load, at its peak (VmHWM) and after expiry.
#
# Usage: scripts/memory/given_back.sh
#
# Environment:
#   MEM_SESSIONS     sessions to open (default 100000)
#   MEM_IDLE_SECS    --idle-timeout-secs of the server (default 2). With 2 s, only the last
#                    few seconds' sessions are alive at once; set it above the load's
#                    duration (e.g. 120) to have them all alive at the peak.
#   MEM_THREADS      load client threads, one keep-alive connection each (default 4)
#   MEM_LOAD_TIMEOUT seconds the load may take (default 600)
#   MEM_KEEP_EVERY   keep every Nth session in use (keep_alive.py pings it) while the others
#                    expire, so that live sessions stay scattered over the heap (default 0:
#                    none; 100 keeps 1%)
#   MEM_SERVER_ARGS  extra server flags (e.g. "--malloc-trim false")
#   MEM_BIN          server binary to run instead of building the example
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"
SESSIONS="${MEM_SESSIONS:-100000}"
IDLE="${MEM_IDLE_SECS:-2}"
THREADS="${MEM_THREADS:-4}"
KEEP_EVERY="${MEM_KEEP_EVERY:-0}"
LOAD_TIMEOUT="${MEM_LOAD_TIMEOUT:-600}"
LOG="$(mktemp "${TMPDIR:-/tmp}/mcp-memory.XXXXXX.log")"
KEPT="$LOG.kept"

SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && stop_group "$SERVER_PID"
  wait 2>/dev/null || true
  rm -f "$LOG" "$KEPT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
  echo "memory: $*"
  [ -s "$LOG" ] && tail -n 20 "$LOG"
  exit 1
}

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

cd "$ROOT"
if [ -n "${MEM_BIN:-}" ]; then
  BIN="$MEM_BIN"
else
  echo "memory: building the example server (cargo build --release --example mcp_server)"
  cargo build --quiet --release --example mcp_server || die "build failed"
  BIN="$ROOT/target/release/examples/mcp_server"
fi
PORT="$(free_port)"
URL="http://127.0.0.1:$PORT/mcp"

# shellcheck disable=SC2086 # MEM_SERVER_ARGS is a list of flags
RUST_LOG=warn "$BIN" --bind "127.0.0.1:$PORT" --idle-timeout-secs "$IDLE" \
  --max-sessions 200000 ${MEM_SERVER_ARGS:-} >"$LOG" 2>&1 </dev/null &
SERVER_PID=$!
for _ in $(seq 1 100); do
  python3 - "$PORT" <<'EOF' >/dev/null 2>&1 && break
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
c.request("GET", "/mcp")
c.getresponse()
EOF
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited"
  sleep 0.2
done
sleep 1
before="$(rss_kib "$SERVER_PID" VmRSS)"
[ -n "$before" ] || die "cannot read /proc/$SERVER_PID/status"

echo "memory: opening $SESSIONS sessions at $URL ($THREADS connections, idle timeout ${IDLE}s)"
keep_args=()
[ "$KEEP_EVERY" -gt 0 ] && keep_args=("$KEEP_EVERY" "$KEPT")
load="$(timeout -k 5 "$LOAD_TIMEOUT" python3 "$SCRIPT_DIR/open_sessions.py" "$URL" "$SESSIONS" "$THREADS" "$LOAD_TIMEOUT" "${keep_args[@]}")"
load_rc=$?
echo "memory: load: $load"
peak="$(rss_kib "$SERVER_PID" VmHWM)"
at_end="$(rss_kib "$SERVER_PID" VmRSS)"
last_id="${load##*last_id=}"

# Expiry plus one sweep interval (idle/4, within 1-60 s) plus a margin.
sweep=$((IDLE / 4))
[ "$sweep" -ge 1 ] || sweep=1
[ "$sweep" -le 60 ] || sweep=60
wait_secs=$((IDLE + sweep + 5))
keeper=""
if [ "$KEEP_EVERY" -gt 0 ]; then
  period=$((IDLE / 3))
  [ "$period" -ge 1 ] || period=1
  python3 "$SCRIPT_DIR/keep_alive.py" "$URL" "$KEPT" "$period" "$wait_secs" >"$KEPT.out" 2>&1 &
  keeper=$!
  echo "memory: keeping $(wc -l <"$KEPT") sessions in use (every ${period}s)"
fi
echo "memory: waiting ${wait_secs}s for the other sessions to expire and be swept"
sleep "$wait_secs"
if [ -n "$keeper" ]; then
  timeout 60 tail --pid="$keeper" -f /dev/null
  echo "memory: keep-alive: $(cat "$KEPT.out")"
  rm -f "$KEPT.out"
fi
kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited"
after="$(rss_kib "$SERVER_PID" VmRSS)"
status="$(python3 - "$PORT" "$last_id" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("POST", "/mcp", '{"jsonrpc":"2.0","id":2,"method":"ping"}',
          {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "Mcp-Session-Id": sys.argv[2], "MCP-Protocol-Version": "2025-11-25"})
print(c.getresponse().status)
EOF
)"

echo "memory: the last session opened now answers $status (404: expired)"
echo "memory: VmRSS before load:       $before KiB ($(mib "$before"))"
echo "memory: VmHWM peak:              $peak KiB ($(mib "$peak"))"
echo "memory: VmRSS when load ended:   $at_end KiB ($(mib "$at_end"))"
echo "memory: VmRSS after expiry:      $after KiB ($(mib "$after"))"
awk -v b="$before" -v p="$peak" -v a="$after" \
  'BEGIN { if (p > b) printf "memory: given back: %.0f%% of the growth\n", 100 * (p - a) / (p - b) }'
[ "$load_rc" -eq 0 ] && [ "$status" = 404 ]
