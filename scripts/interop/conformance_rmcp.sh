#!/usr/bin/env bash
# Run the official MCP conformance suite against the rmcp example
# (suite/examples/rmcp_server: rmcp, the official Rust SDK, one stateful rmcp
# session per layer session): every server scenario of the pinned suite whose
# spec list includes 2025-11-25, at spec 2025-11-25, judged by conformance.sh.
#
# Usage: scripts/interop/conformance_rmcp.sh
#
# Environment:
#   CONFORMANCE_SCENARIOS  space-separated list overriding the scenario list below
#   INTEROP_READY_TIMEOUT  seconds to wait for the server after the build (default 120)
#   RMCP_EXPECTED_FAILURES space-separated scenarios allowed to fail (default: the
#                          ones listed below that rmcp itself cannot pass)
#   plus everything conformance.sh reads.
#
# Exit status: 0 if every scenario outside RMCP_EXPECTED_FAILURES passed.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
INTEROP_DIR="${INTEROP_DIR:-$ROOT/.interop}"
LOG_DIR="$INTEROP_DIR/logs"
READY_TIMEOUT="${INTEROP_READY_TIMEOUT:-120}"
mkdir -p "$LOG_DIR"
SERVER_LOG="$LOG_DIR/rmcp-server.log"

# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

# The server scenarios of @modelcontextprotocol/conformance 0.2.0-alpha.12 whose
# spec list includes 2025-11-25 (`conformance list --server`).
ALL_2025_11_25="server-initialize server-session-lifecycle logging-set-level ping
completion-complete tools-list tools-call-simple-text tools-call-image tools-call-audio
tools-call-embedded-resource tools-call-mixed-content tools-call-with-logging tools-call-error
tools-call-with-progress tools-call-sampling tools-call-elicitation json-schema-2020-12
elicitation-sep1034-defaults server-sse-polling server-sse-multiple-streams
elicitation-sep1330-enums resources-list resources-read-text resources-read-binary
resources-templates-read resources-subscribe resources-unsubscribe prompts-list
prompts-get-simple prompts-get-with-args prompts-get-embedded-resource prompts-get-with-image
dns-rebinding-protection"

# Scenarios allowed to fail because of rmcp itself (none with rmcp 3.9; see SCENARIOS.md,
# "The rmcp example").
EXPECTED_FAILURES="${RMCP_EXPECTED_FAILURES-}"

http_answers() {
  python3 - "$1" <<'EOF' >/dev/null 2>&1
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/mcp", headers={"Accept": "text/event-stream"})
c.getresponse()
EOF
}

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_group "$SERVER_PID"
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(free_port)"
BIND="127.0.0.1:$PORT"
URL="http://$BIND/mcp"

cd "$ROOT"
echo "conformance_rmcp: building the rmcp example (cargo build -p tower-mcp-session-suite --example rmcp_server)"
cargo build -p tower-mcp-session-suite --example rmcp_server
setsid "$ROOT/target/debug/examples/rmcp_server" --bind "$BIND" >"$SERVER_LOG" 2>&1 </dev/null &
SERVER_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until http_answers "$PORT"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "conformance_rmcp: the server did not come up; its log:"
    cat "$SERVER_LOG"
    exit 1
  fi
  sleep 0.5
done

out="$LOG_DIR/conformance-rmcp.out"
rc=0
CONFORMANCE_SCENARIOS="${CONFORMANCE_SCENARIOS:-$(echo $ALL_2025_11_25)}" \
  bash "$SCRIPT_DIR/conformance.sh" "$URL" >"$out" 2>&1 || rc=$?
grep -E '^(PASS|FAIL) |^    \[|^conformance: ' "$out" || true

kill -0 "$SERVER_PID" 2>/dev/null || { echo "conformance_rmcp: the server died; log in $SERVER_LOG"; exit 1; }
[ "$rc" -eq 0 ] && exit 0
unexpected=()
for s in $(grep -E '^FAIL ' "$out" | sed -E 's/^FAIL ([^:]+):.*/\1/'); do
  case " $EXPECTED_FAILURES " in
    *" $s "*) echo "conformance_rmcp: $s failed as expected (rmcp itself)" ;;
    *) unexpected+=("$s") ;;
  esac
done
if [ "${#unexpected[@]}" -gt 0 ]; then
  echo "conformance_rmcp: unexpected failures: ${unexpected[*]} (full output: $out)"
  exit 1
fi
echo "conformance_rmcp: only the expected failures"
