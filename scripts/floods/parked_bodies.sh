#!/usr/bin/env bash
# Flood 1, parked initialize bodies: 2,000 connections each send `POST /mcp` with
# `Content-Length: 60000` and trickle the start of an initialize body (half 4 bytes, half
# 1 KiB every 250 ms, never the last byte, for at most 12 s) while a normal client opens
# sessions and calls `increment` every 200 ms. Default peek settings (64 KiB, 10 s, 16 MiB).
#
# Asserts: the server's VmRSS rises at most 64 MiB over its idle baseline; every open and
# call of the normal client succeeded with the expected count; every trickling connection got
# 408 or 503 or was closed (counts printed); the server stayed up.
#
# Usage: scripts/floods/parked_bodies.sh   (FLOODS_SERVER_BIN, FLOODS_LOG_DIR: see common.sh)
set -euo pipefail
NAME=parked
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

CONNS="${FLOODS_PARKED_CONNS:-2000}"
ensure_server_bin || { echo "floods-$NAME: 0 passed, 1 failed"; exit 1; }
start_server parked --max-connections 4000 || { echo "floods-$NAME: 0 passed, 1 failed"; exit 1; }
sleep 0.5
echo "$NAME: load $(cut -d' ' -f1-3 /proc/loadavg); $CONNS trickling connections against port $PORT"
out="$(timeout 60 python3 "$FLOODS_DIR/mcpflood.py" park "$PORT" "$SERVER_PID" --conns "$CONNS" --seconds 12)" || true
RESULT="$(result_of "$out")"
echo "$NAME: $RESULT"
echo "$NAME: load after $(cut -d' ' -f1-3 /proc/loadavg)"

py_check "generator finished" 'r.get("trickle") is not None'
py_check "VmRSS rise $(RESULT="$RESULT" python3 -c 'import json,os; r=json.loads(os.environ["RESULT"]); print(round(r.get("rss_rise_kib",0)/1024,1))') MiB <= 64 MiB (baseline and peak in the RESULT line)" \
  'r["rss_rise_kib"] <= 64 * 1024'
py_check "the normal client opened sessions and called the tool, all answered 200 with the expected count" \
  'r["normal"]["opens"] >= 3 and r["normal"]["calls"] >= 20 and not r["normal"]["open_fail"] and not r["normal"]["call_fail"]'
py_check "every trickling connection got 408 or 503 or was closed ($CONNS in all)" \
  "set(r['trickle']) <= {'408', '503', 'closed'} and sum(r['trickle'].values()) == $CONNS"
server_alive_check
finish
