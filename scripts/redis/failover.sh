#!/usr/bin/env bash
# Redis Cluster under load (issue 18, items 4 and 5): two example nodes on the cluster started
# by scripts/redis/servers.sh, behind HAProxy, and examples/load.rs calling `increment` on
# --sessions sessions through HAProxy.
#
# Usage: scripts/redis/servers.sh --cluster -- scripts/redis/failover.sh [failover] [placement]
#   (default: both)
#
#   failover   round robin; at FAILOVER_KILL_AT s (10) the master that owns the slot of a probe
#              session opened on node a (and of about a third of all sessions) is killed with
#              SIGKILL; its replica is promoted (cluster-node-timeout 2000 ms).
#              targets: no 404 (a live session lost), no 5xx other than 503, no transport
#              error, no JSON-RPC error other than the example's retriable -32010; every 503
#              carries Retry-After (the layer always sets it); the failure window and the
#              count by kind reported; and the bus still crosses nodes after the failover: the
#              probe session, live on a, DELETEd through b, answers 404 on a within 5 s (a's
#              copy is closed only by the bus's close event: a local hit reads no store).
#   placement  two runs without a fault, HAProxy `balance roundrobin` and then
#              `balance hdr(Mcp-Session-Id)` (consistent hashing): restores per 1,000
#              requests (the nodes' "session restored from the store" debug lines) and
#              requests/s of each. target: header hashing restores less than round robin.
# Environment: FAILOVER_SESSIONS (1000), FAILOVER_CONCURRENCY (32), FAILOVER_SECS (30),
# PLACEMENT_SECS (15). Prints PASS/FAIL lines and table rows; exits 1 on a missed target. Uses
# the release builds of the example and the load (built here). Installs haproxy when missing.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
SESSIONS="${FAILOVER_SESSIONS:-1000}"
CONCURRENCY="${FAILOVER_CONCURRENCY:-32}"
SECS="${FAILOVER_SECS:-30}"
KILL_AT="${FAILOVER_KILL_AT:-10}"
PLACEMENT_SECS="${PLACEMENT_SECS:-15}"
RUNS=("$@")
[ "${#RUNS[@]}" -gt 0 ] || RUNS=(failover placement)
: "${TMS_REDIS_CLUSTER:?run under scripts/redis/servers.sh --cluster}"
PREFIX="tms-failover:"

# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tms-failover.XXXXXX")"
passed=0
failed=0
note() { echo "failover: $*"; }
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
die() { echo "FAIL setup: $*"; exit 1; }

A_PID="" B_PID="" LB_PID="" LOAD_PID=""
cleanup() {
  local rc=$?
  trap - EXIT
  for pid in "$LOAD_PID" "$LB_PID" "$A_PID" "$B_PID"; do [ -z "$pid" ] || stop_group "$pid" 25; done
  [ -n "${FAILOVER_KEEP:-}" ] && echo "failover: logs kept in $TMP" || rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  note "installing Debian's haproxy"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null || die "apt-get install haproxy failed"
fi
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

cd "$ROOT"
note "building the example server and the load (release, --features redis)"
cargo build --quiet --release --example mcp_server --example load --features redis || die "cargo build failed"

IFS=, read -r -a URLS <<<"$TMS_REDIS_CLUSTER"
IFS=, read -r -a PIDS <<<"$TMS_REDIS_CLUSTER_PIDS"
FIRST_PORT="${URLS[0]##*:}"
A_PORT="$(free_port)"; B_PORT="$(free_port)"; LB_PORT="$(free_port)"; STATS_PORT="$(free_port)"

start_node() { # start_node NAME PORT
  local log="$TMP/node-$1.log" pid deadline
  RUST_LOG="info,tower_mcp_session::http::restore=debug" setsid "$TARGET/mcp_server" \
    --bind "127.0.0.1:$2" --redis-cluster --redis-url "$TMS_REDIS_CLUSTER" \
    --redis-prefix "$PREFIX" --max-sessions 100000 >>"$log" 2>&1 </dev/null &
  pid=$!
  if [ "$1" = a ]; then A_PID=$pid; else B_PID=$pid; fi
  deadline=$((SECONDS + 30))
  until curl -sf -m 1 "http://127.0.0.1:$2/ready" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log"; die "node $1 exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "node $1 is not ready after 30 s"
    sleep 0.05
  done
}
stop_nodes() {
  for pid in "$A_PID" "$B_PID" "$LB_PID"; do [ -z "$pid" ] || stop_group "$pid" 25; done
  A_PID="" B_PID="" LB_PID=""
}
start_lb() { # start_lb BALANCE
  cat >"$TMP/haproxy.cfg" <<CFG
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    retries 3
    option redispatch
    option http-server-close
frontend mcp
    bind 127.0.0.1:$LB_PORT
    default_backend nodes
backend nodes
    balance $1
    hash-type consistent
    option httpchk GET /ready
    http-check expect status 200
    default-server check inter 200ms fall 1 rise 1
    server a 127.0.0.1:$A_PORT
    server b 127.0.0.1:$B_PORT
listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /stats
CFG
  "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy -c rejected the config"
  setsid "$HAPROXY" -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 </dev/null &
  LB_PID=$!
  local deadline=$((SECONDS + 10))
  until [ "$(curl -s -m 2 "http://127.0.0.1:$STATS_PORT/stats;csv" | awk -F, '$1 == "nodes" && ($2 == "a" || $2 == "b") && $18 == "UP"' | wc -l)" = 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "HAProxy does not show both nodes UP"
    sleep 0.05
  done
}
start_all() { # start_all BALANCE
  : >"$TMP/node-a.log"; : >"$TMP/node-b.log"
  start_node a "$A_PORT"
  start_node b "$B_PORT"
  start_lb "$1"
}
start_load() { # start_load NAME SECS
  setsid "$TARGET/load" --url "http://127.0.0.1:$LB_PORT/mcp" --sessions "$SESSIONS" \
    --concurrency "$CONCURRENCY" --secs "$2" >"$TMP/$1.json" 2>"$TMP/$1.err" </dev/null &
  LOAD_PID=$!
  local deadline=$((SECONDS + 90))
  until grep -q calling "$TMP/$1.err"; do
    kill -0 "$LOAD_PID" 2>/dev/null || die "the load exited before calling: $(cat "$TMP/$1.err")"
    [ "$SECONDS" -lt "$deadline" ] || die "the load did not open its sessions within 90 s"
    sleep 0.02
  done
  LOAD_T0=$(date +%s%N)
}
at() {
  local now wait
  now=$(date +%s%N)
  wait=$(((LOAD_T0 + $1 * 1000000000 - now) / 1000000))
  [ "$wait" -le 0 ] || sleep "$(printf '%d.%03d' $((wait / 1000)) $((wait % 1000)))"
}
finish_load() { wait "$LOAD_PID" || true; LOAD_PID=""; }
restores() { cat "$TMP/node-a.log" "$TMP/node-b.log" | grep -c "session restored from the store" || true; }

mcp() { # mcp PORT [SESSION] BODY -> prints "STATUS SESSION-ID"
  python3 - "$@" <<'PY'
import http.client, sys
port, rest = int(sys.argv[1]), sys.argv[2:]
body = rest[-1]
headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
method = "POST"
if len(rest) == 2:
    headers["mcp-session-id"] = rest[0]
    headers["mcp-protocol-version"] = "2025-11-25"
    if body == "DELETE":
        method, body = "DELETE", ""
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
try:
    c.request(method, "/mcp", body=body, headers=headers)
    r = c.getresponse(); r.read()
    print(r.status, r.getheader("mcp-session-id") or "-")
except Exception as e:
    print("000 -")
PY
}
INIT='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}'
CALL='{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

live_port() { # a node that answers (the victim may be dead)
  local url
  for url in "${URLS[@]}"; do
    if [ "${url##*:}" != "${VICTIM_PORT:-}" ] && redis-cli -p "${url##*:}" ping >/dev/null 2>&1; then
      echo "${url##*:}"; return 0
    fi
  done
  echo "$FIRST_PORT"
}
master_of() { # master_of SLOT -> prints the port of the master that owns SLOT
  redis-cli -p "$(live_port)" cluster nodes 2>/dev/null | tr -d '\r' | awk -v slot="$1" '
    $3 ~ /master/ && $3 !~ /fail/ { for (i = 9; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = (n == 2 ? r[2] : r[1]);
      if (slot >= lo && slot <= hi) { split($2, a, "[:@]"); print a[2]; exit } } }'
}

run_failover() {
  start_all roundrobin
  # The probe session: opened on a directly; its slot's master is the one killed.
  read -r status PROBE <<<"$(mcp "$A_PORT" "$INIT")"
  [ "$status" = 200 ] || die "the probe session did not open on a ($status)"
  SLOT="$(redis-cli -p "$FIRST_PORT" cluster keyslot "$PREFIX{$PROBE}" | tr -d '\r')"
  VICTIM_PORT="$(master_of "$SLOT")"
  VICTIM_PID=""
  for i in "${!URLS[@]}"; do [ "${URLS[$i]##*:}" = "$VICTIM_PORT" ] && VICTIM_PID="${PIDS[$i]}"; done
  [ -n "$VICTIM_PID" ] || die "no PID for the master on port $VICTIM_PORT"
  note "probe session in slot $SLOT, owned by the master on port $VICTIM_PORT (pid $VICTIM_PID)"
  start_load failover "$SECS"
  at "$KILL_AT"
  kill -KILL "$VICTIM_PID"
  local t_kill=$SECONDS deadline=$((SECONDS + 30)) promoted=""
  until [ -n "$promoted" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "no replica took slot $SLOT over within 30 s"
    sleep 0.1
    promoted="$(master_of "$SLOT")"
    [ "$promoted" = "$VICTIM_PORT" ] && promoted=""
  done
  note "the replica on port $promoted owns slot $SLOT $((SECONDS - t_kill)) s after the kill"
  finish_load
  # The bus after the failover: DELETE through b closes a's live copy.
  read -r status _ <<<"$(mcp "$A_PORT" "$PROBE" "$CALL")"
  [ "$status" = 200 ] || fail bus "the probe session answers $status on a before the DELETE (want 200)"
  read -r status _ <<<"$(mcp "$B_PORT" "$PROBE" DELETE)"
  local bus_deadline=$((SECONDS + 5)) closed=""
  while [ "$SECONDS" -lt "$bus_deadline" ]; do
    read -r s _ <<<"$(mcp "$A_PORT" "$PROBE" "$CALL")"
    [ "$s" = 404 ] && { closed=1; break; }
    sleep 0.1
  done
  if [ "$status" = 204 ] && [ -n "$closed" ]; then
    pass bus "after the failover, DELETE through b (204) closed the probe session on a (404)"
  else
    fail bus "DELETE through b answered $status; a still serves the probe session after 5 s"
  fi
  local restores_n; restores_n="$(restores)"
  local out
  out="$(python3 - "$TMP/failover.json" "$CONCURRENCY" "$restores_n" "$KILL_AT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); concurrency = int(sys.argv[2]); restores = int(sys.argv[3]); kill_at = int(sys.argv[4])
k = {n: v["count"] for n, v in r["kinds"].items()}
w = r["window"] or {}
failed = sum(v for n, v in k.items() if n != "ok")
row = (f"| failover (kill -9 a master at {kill_at} s) | {r['calls']} | {k['ok']} | {failed}: 503 {k['busy']}, -32010 {k['unavailable']}, "
       f"404 {k['not_found']}, 5xx {k['http_5xx']}, transport {k['transport']}, other JSON-RPC {k['rpc_other']}, other HTTP {k['http_other']} | "
       + (f"{w['from_ms']:.0f}-{w['to_ms']:.0f} ms ({w['to_ms'] - w['from_ms']:.0f} ms)" if w else "none")
       + f" | {k['not_found']} | {r['per_sec']:.0f}/s | {restores} |")
problems = []
if k["ok"] == 0: problems.append("no call succeeded")
for n in ("not_found", "http_5xx", "transport", "rpc_other", "http_other"):
    if k[n]: problems.append(f"{k[n]} {n}")
print(row)
print("PASS" if not problems else "FAIL " + "; ".join(problems))
PY
)"
  echo "| run | calls | ok | failed by kind | failure window | sessions lost (404) | requests/s | restores |"
  echo "|---|---|---|---|---|---|---|---|"
  sed -n 1p <<<"$out"
  if [ "$(sed -n 2p <<<"$out")" = PASS ]; then pass failover "only 503/-32010 during the failover, no session lost"; else fail failover "$(sed -n 2p <<<"$out")"; fi
  cp "$TMP/failover.json" "${INTEROP_DIR:-$ROOT/.interop}/failover.json" 2>/dev/null || true
  stop_nodes
}

run_placement() {
  local rows=() rr="" hh=""
  for balance in roundrobin "hdr(Mcp-Session-Id)"; do
    start_all "$balance"
    start_load placement "$PLACEMENT_SECS"
    finish_load
    local n; n="$(restores)"
    local row
    row="$(python3 - "$TMP/placement.json" "$n" "$balance" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); restores = int(sys.argv[2]); balance = sys.argv[3]
per_k = restores * 1000 / max(1, r["calls"])
k = {n: v["count"] for n, v in r["kinds"].items()}
failed = sum(v for n, v in k.items() if n != "ok")
print(f"{per_k:.1f} | balance {balance} | {r['calls']} | {failed} | {restores} | {per_k:.1f} | {r['per_sec']:.0f}/s |")
PY
)"
    rows+=("| ${row#* | }")
    if [ "$balance" = roundrobin ]; then rr="${row%% *}"; else hh="${row%% *}"; fi
    stop_nodes
  done
  echo "| placement | calls | failed | restores | restores per 1,000 requests | requests/s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if python3 -c "import sys; sys.exit(0 if float('$hh') < float('$rr') else 1)"; then
    pass placement "header hashing: $hh restores per 1,000 requests, round robin $rr"
  else
    fail placement "header hashing restored $hh per 1,000 requests, round robin $rr"
  fi
}

for run in "${RUNS[@]}"; do
  case "$run" in
    failover) run_failover ;;
    placement) run_placement ;;
    *) die "unknown run $run (failover, placement)" ;;
  esac
done
echo "failover: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
