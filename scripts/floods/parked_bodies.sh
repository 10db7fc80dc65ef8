#!/usr/bin/env bash
# Flood 1, parked initialize bodies, default peek settings (64 KiB, 10 s, 16 MiB), two runs
# on a fresh server each. 2,000 connections (from 127.0.1.2 on) each send `POST /mcp` with
# `Content-Length: 60000` and trickle the start of an initialize body every 250 ms, never the
# last byte, for at most 12 s, while a normal client opens a session every ~2 s and calls
# `increment` every 200 ms:
#   trickle  4 bytes a write (the issue's attack): asserted VmRSS rise <= 64 MiB.
#   budget   1 KiB a write, so together they exhaust the 16 MiB peek budget (503s): asserted
#            VmRSS rise <= FLOODS_PARKED_BUDGET_RSS_MIB (96). Measured ~74 MiB: 2,000 parked
#            requests cost ~49 MiB before any body byte (hyper's connections and request
#            state), plus the budget (README, Reliability, Floods).
# Both assert: every open and call of the normal client answered 200 with the expected count
# (its initialize arrives whole, so it never counts against the budget the tricklers hold);
# every trickling connection got 408 or 503 or was closed (counts printed); the server stayed up.
#
# Usage: scripts/floods/parked_bodies.sh   (FLOODS_SERVER_BIN, FLOODS_LOG_DIR: see common.sh)
set -euo pipefail
NAME=parked
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

CONNS="${FLOODS_PARKED_CONNS:-2000}"
# The bound of the budget-filling run (see the header): connections + peeked bytes as held.
BUDGET_RSS_MIB="${FLOODS_PARKED_BUDGET_RSS_MIB:-96}"
ensure_server_bin || { echo "floods-$NAME: 0 passed, 1 failed"; exit 1; }

# run LABEL BYTES-PER-WRITE RSS-BOUND-MIB EXPECTED-STATUSES(python set)
run() {
  local label="$1" bytes="$2" bound="$3" statuses="$4"
  start_server "parked-$label" --max-connections 4000 || { check "$label: the server started" 1; return 0; }
  sleep 0.5
  echo "$NAME: $label: load $(cut -d' ' -f1-3 /proc/loadavg); $CONNS connections trickling $bytes bytes every 250 ms"
  generate 60 park "$PORT" "$SERVER_PID" --conns "$CONNS" --seconds 12 \
    --slow-bytes "$bytes" --fast-bytes "$bytes"
  echo "$NAME: $label: $RESULT"
  echo "$NAME: $label: load after $(cut -d' ' -f1-3 /proc/loadavg)"
  local rise
  rise="$(RESULT="$RESULT" python3 -c 'import json,os; r=json.loads(os.environ["RESULT"]); print(round(r.get("rss_rise_kib",0)/1024,1))')"
  py_check "$label: VmRSS rise $rise MiB <= $bound MiB over the idle baseline" \
    "r['rss_rise_kib'] <= $bound * 1024"
  py_check "$label: the normal client's opens and calls all answered 200 with the expected count" \
    'r["normal"]["opens"] >= 3 and r["normal"]["calls"] >= 20 and not r["normal"]["open_fail"] and not r["normal"]["call_fail"]'
  py_check "$label: every trickling connection got one of $statuses or was closed ($CONNS in all)" \
    "set(r['trickle']) <= $statuses | {'closed'} and sum(r['trickle'].values()) == $CONNS"
  server_alive_check
  stop_server
}

# The issue's attack: a few bytes at a time; the 10 s peek deadline answers them (408).
run trickle 4 64 "{'408', '503'}"
# The same connections sending 1 KiB every 250 ms: together they exhaust the 16 MiB peek
# budget within seconds, so most are refused with 503 before their deadline.
run budget 1024 "$BUDGET_RSS_MIB" "{'408', '503'}"
finish
