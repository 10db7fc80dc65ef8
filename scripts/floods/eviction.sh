#!/usr/bin/env bash
# Flood 3, eviction at scale: --max-sessions 100000 --evict-idlest --idle-timeout-secs 3600.
#
#   0. a second process calls `increment` on 50 sessions for 2 s (10 connections, one call
#      each 20 ms per connection) and records latencies: the machine's figure without load;
#   1. baseline: into the empty table, open sessions at full rate (8 connections, 64
#      pipelined) beside the same pool, for 10 s or until 40 % of the table (no eviction);
#      the pool is stopped when the opener stops, so its figures are all under load;
#   2. fill the table to 100,000 sessions (bounded to 60 s), the last 50 being the pool's;
#   3. the same load as 1 at the limit: every open evicts a sampled least-recently-requested
#      session; then every one of the 50 is called again and the 200 oldest are looked up.
#
# Asserts what holds on a loaded 2-core machine: the table filled to 100,000 (all 200);
# every pool call in both phases answered 200 with the session's next count (none of the 50
# was evicted); opens kept succeeding at the limit (>= 95 % 200; ~1 % 503 measured); opens/s at the limit is at least a third
# of opens/s into the empty table (eviction does not scan); some of the oldest were evicted.
# Prints opens/s and the pool's p50/p99 (the issue's targets, 20k opens/s and p99 < 5 ms,
# are printed beside the figures, not asserted: client and server share the cores).
#
# Usage: scripts/floods/eviction.sh   (FLOODS_SERVER_BIN, FLOODS_LOG_DIR: see common.sh)
#   FLOODS_EVICT_SESSIONS  table size (default 100000)
set -euo pipefail
NAME=eviction
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

MAX="${FLOODS_EVICT_SESSIONS:-100000}"
ensure_server_bin || { echo "floods-$NAME: 0 passed, 1 failed"; exit 1; }
start_server eviction --max-connections 4000 --max-sessions "$MAX" --evict-idlest --idle-timeout-secs 3600 ||
  { echo "floods-$NAME: 0 passed, 1 failed"; exit 1; }
echo "$NAME: load $(cut -d' ' -f1-3 /proc/loadavg); table of $MAX on port $PORT"
generate 150 evict "$PORT" --max-sessions "$MAX"
echo "$NAME: $RESULT"
echo "$NAME: load after $(cut -d' ' -f1-3 /proc/loadavg); server VmRSS $(grep VmRSS /proc/"$SERVER_PID"/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2-3)"
RESULT="$RESULT" python3 - <<'PY' || true
import json, os
r = json.loads(os.environ["RESULT"])
q = r.get("quiet", {}).get("pool", {})
print(f"eviction: no open load: pool {q.get('calls')} calls p50 {q.get('p50_ms')} ms p99 {q.get('p99_ms')} ms")
for k in ("empty", "full"):
    p = r.get(k, {})
    q = p.get("pool", {})
    print(f"eviction: {k:5} table: {p.get('opens_per_s')} opens/s (target 20000); pool "
          f"{q.get('calls')} calls p50 {q.get('p50_ms')} ms p99 {q.get('p99_ms')} ms "
          f"max {q.get('max_ms')} ms (target p99 < 5 ms)")
print(f"eviction: fill {r.get('fill', {}).get('opens_per_s')} opens/s; at the limit / empty = "
      f"{r.get('ratio_full_over_empty')}")
PY

py_check "the table filled to $MAX sessions, every open 200" \
  "r['fill']['opened'] == $MAX and set(r['fill']['status']) == {'200'}"
py_check "baseline pool: every call 200 with the next count" \
  'r["empty"]["pool"]["calls"] > 0 and r["empty"]["pool"]["bad_count"] == 0'
py_check "at the limit: every pool call 200 with the next count (none of the 50 evicted)" \
  'r["full"]["pool"]["calls"] > 0 and r["full"]["pool"]["bad_count"] == 0 and r["existing"] == 50 and r["existing_alive"] == 50'
# Not all 200: concurrent opens at the limit race for the slot one eviction frees and the loser
# gets 503 (README, Reliability, Floods).
py_check "at the limit: opens kept succeeding (>= 95 % 200, the rest 503: $(RESULT="$RESULT" python3 -c 'import json,os; print(json.loads(os.environ["RESULT"])["full"]["status"].get("503", 0))' 2>/dev/null))" \
  'r["full"]["opens"] > 1000 and set(r["full"]["status"]) <= {"200", "503"} and r["full"]["status"]["200"] >= 0.95 * sum(r["full"]["status"].values())'
py_check "at the limit, opens/s is at least 1/3 of opens/s into the empty table (ratio $(RESULT="$RESULT" python3 -c 'import json,os; print(json.loads(os.environ["RESULT"]).get("ratio_full_over_empty"))'))" \
  'r["ratio_full_over_empty"] >= 1 / 3'
py_check "the oldest sessions were the ones evicted (at least 100 of the first 200 are gone)" \
  'r["oldest_200_evicted"] >= 100'
server_alive_check
finish
