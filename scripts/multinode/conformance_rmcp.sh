#!/usr/bin/env bash
# The official MCP conformance suite against two nodes of the rmcp example sharing Redis,
# behind HAProxy round robin (no stickiness): every request of a scenario's session may land
# on either node, so a tool call's sampling, elicitation or roots answer is POSTed to the node
# that did not ask, the GET stream sits on the node that did not send the notification, and a
# stream is resumed through the other node.
#
# Checks: every scenario listed below passes (judged by scripts/interop/conformance.sh), and
# both nodes served each scenario's sessions: HAProxy counted requests on both servers, and
# each node's log shows sessions it restored from the store (a session opened on the other
# node), so no scenario passed by landing on one node.
#
# Usage: scripts/multinode/conformance_rmcp.sh
# Environment: REDIS_URL (default redis://127.0.0.1:6379; keys under a unique prefix, deleted
# afterwards), CONFORMANCE_SCENARIOS and CONFORMANCE_SCENARIOS_2026 (override the lists
# below; "" skips a pass), RMCP_NODES_STATE_KEY (the nodes' shared requestState key; random
# by default, "" for none: the multi round-trip scenarios then fail), plus what
# conformance.sh reads. Installs haproxy with apt-get when missing. Logs: .interop/logs/rmcp-nodes-*.log.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
LOG_DIR="${INTEROP_DIR:-$ROOT/.interop}/logs"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
PREFIX="tms-rmcp-nodes-$$-$RANDOM:"
mkdir -p "$LOG_DIR"

# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

# The 2025-11-25 scenarios whose sessions carry state, notifications, server-initiated
# requests or resumption (the others are one request each).
SCENARIOS="server-initialize server-session-lifecycle logging-set-level ping
tools-call-with-logging tools-call-with-progress tools-call-sampling tools-call-elicitation
elicitation-sep1034-defaults elicitation-sep1330-enums server-sse-polling
server-sse-multiple-streams resources-subscribe resources-unsubscribe tools-call-simple-text"
# The 2026-07-28 multi round-trip scenarios (SEP-2322, sessionless): each round is a new
# request, so the rounds alternate between the nodes; the nodes share a requestState key.
SCENARIOS_2026="input-required-result-basic-elicitation input-required-result-basic-sampling
input-required-result-basic-list-roots input-required-result-request-state
input-required-result-multiple-input-requests input-required-result-multi-round
input-required-result-tampered-state input-required-result-non-tool-request"

note() { echo "rmcp-nodes: $*"; }
die() {
  echo "FAIL rmcp-nodes setup: $*"
  exit 1
}

A_PID=""
B_PID=""
LB_PID=""
TMP="$(mktemp -d "${TMPDIR:-/tmp}/rmcp-nodes.XXXXXX")"
cleanup() {
  local rc=$?
  trap - EXIT
  for pid in "$LB_PID" "$A_PID" "$B_PID"; do
    [ -z "$pid" ] || stop_group "$pid" 25
  done
  redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need_package haproxy haproxy || die "cannot install haproxy"
need_package redis-cli redis-tools || die "cannot install redis-tools"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
redis-cli -u "$REDIS_URL" ping >/dev/null || die "no Redis at $REDIS_URL"

cd "$ROOT"
note "building the rmcp example (cargo build -p tower-mcp-session-suite --example rmcp_server)"
cargo build -p tower-mcp-session-suite --example rmcp_server || die "cargo build failed"
SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/rmcp_server"

STATE_KEY="${RMCP_NODES_STATE_KEY-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
A_PORT="$(free_port)"
B_PORT="$(free_port)"
LB_PORT="$(free_port)"
STATS_PORT="$(free_port)"
start_node() { # start_node NAME PORT: sets the node's PID in NAME_PID
  local log="$LOG_DIR/rmcp-nodes-$1.log"
  # The Host the conformance client sends is the balancer's, on loopback: allowed by default.
  local envs=("RUST_LOG=tower_mcp_session=debug,info")
  [ -z "$STATE_KEY" ] || envs+=("MCP_REQUEST_STATE_KEY=$STATE_KEY")
  env "${envs[@]}" setsid "$SERVER" --bind "127.0.0.1:$2" \
    --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" >"$log" 2>&1 </dev/null &
  eval "${1^^}_PID=$!"
  local deadline=$((SECONDS + 60))
  until http_answers "$2"; do
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$log"; die "node $1 did not come up"; }
    sleep 0.2
  done
}
start_node a "$A_PORT"
start_node b "$B_PORT"

cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-server-close
frontend mcp
    bind 127.0.0.1:$LB_PORT
    default_backend nodes
backend nodes
    balance roundrobin
    server a 127.0.0.1:$A_PORT
    server b 127.0.0.1:$B_PORT
listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /stats
EOF
"$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy -c rejected the config"
setsid "$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$LOG_DIR/rmcp-nodes-haproxy.log" 2>&1 </dev/null &
LB_PID=$!
until http_answers "$LB_PORT"; do
  kill -0 "$LB_PID" 2>/dev/null || die "haproxy exited: $(tail -n 5 "$LOG_DIR/rmcp-nodes-haproxy.log")"
  sleep 0.1
done
note "nodes a=127.0.0.1:$A_PORT b=127.0.0.1:$B_PORT behind HAProxy 127.0.0.1:$LB_PORT (round robin), Redis prefix $PREFIX"

problems=()
# run_pass SPEC SCENARIOS: conformance.sh at SPEC through the balancer; its PASS/FAIL lines.
run_pass() {
  local spec="$1" scenarios="$2" out="$LOG_DIR/rmcp-nodes-conformance-$1.out" rc=0 summary
  [ -n "$scenarios" ] || return 0
  # shellcheck disable=SC2086 # collapses the newlines
  CONFORMANCE_SPEC_VERSION="$spec" CONFORMANCE_SCENARIOS="$(echo $scenarios)" \
    bash "$ROOT/scripts/interop/conformance.sh" "http://127.0.0.1:$LB_PORT/mcp" >"$out" 2>&1 || rc=$?
  grep -E '^(PASS|FAIL) |^    \[' "$out" | sed -E "s/^(PASS|FAIL) /\1 [$spec] /" || true
  summary="$(grep -E '^conformance: [0-9]+ passed' "$out" | tail -n 1 || true)"
  [ -n "$summary" ] || { cat "$out"; die "conformance.sh stopped early (exit $rc)"; }
  note "spec $spec: $summary"
  [ "$rc" -eq 0 ] || problems+=("spec $spec: $summary")
}
run_pass 2025-11-25 "${CONFORMANCE_SCENARIOS-$SCENARIOS}"
run_pass 2026-07-28 "${CONFORMANCE_SCENARIOS_2026-$SCENARIOS_2026}"

served() { # served NAME: the requests HAProxy sent to server NAME
  curl -s -m 2 "http://127.0.0.1:$STATS_PORT/stats;csv" \
    | awk -F, -v s="$1" '$1 == "nodes" && $2 == s { print $8 }'
}
for name in a b; do
  requests="$(served "$name")"
  restored="$(grep -c "session restored from the store" "$LOG_DIR/rmcp-nodes-$name.log" || true)"
  note "node $name: $requests requests, $restored sessions restored from the store"
  [ "${requests:-0}" -gt 0 ] || problems+=("node $name served no request")
  [ "${restored:-0}" -gt 0 ] || problems+=("node $name restored no session: no session crossed to it")
done
kill -0 "$A_PID" 2>/dev/null && kill -0 "$B_PID" 2>/dev/null || problems+=("a node died")
if [ "${#problems[@]}" -gt 0 ]; then
  echo "FAIL rmcp-nodes: ${problems[*]} (output: $out)"
  exit 1
fi
echo "PASS rmcp-nodes: every scenario passed through two nodes"
