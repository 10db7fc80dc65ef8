#!/usr/bin/env bash
# The store going away under two example nodes, and coming back: a private redis-server (no
# persistence, a free loopback port, started and killed by this script only; the shared Redis
# of the machine is not touched), nodes a and b on it, one session opened on a.
#
# With BACKEND=postgres the store is a private PostgreSQL cluster instead: initdb into a
# temporary directory (as the postgres user when run as root), pg_ctl start on a free
# loopback port (socket in that directory), `pg_ctl stop -m fast` for the outage (the server
# terminates every connection: the nodes see their connections closed, then refused), and
# pg_ctl start again on the same port; the directory is removed at the end. The shared
# PostgreSQL of the machine is not touched. Needs PostgreSQL's server binaries
# (/usr/lib/postgresql/*/bin; Debian's postgresql package is installed when missing).
#
# Usage: scripts/multinode/redis_down.sh
#        BACKEND=postgres scripts/multinode/redis_down.sh
#
# Checks, each printing one PASS/FAIL line:
#   live      with Redis down, the session live on a keeps answering (tools/list 200);
#   restore   the same session on b, which does not hold it: 503 with Retry-After, never 404
#             (the session may well exist);
#   open      initialize on a: 503 with Retry-After;
#   log-once  after several refused requests each node has logged the outage once;
#   back      Redis started again on the same port: within 15 s initialize on a answers 200
#             (the nodes reconnect by themselves) and a logs that the store is back, once.
# Ends with "redis-down: N passed, M failed"; exits 1 if M > 0 or the setup failed. Bounded:
# every wait has a timeout. Needs redis-server (Debian's redis-server package; installed when
# missing) and builds the release example (shared with scripts/multinode/run.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
LOG_DIR="${INTEROP_DIR:-$ROOT/.interop}/logs"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/mcp_server"
mkdir -p "$LOG_DIR"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
BACKEND="${BACKEND:-redis}"
case "$BACKEND" in redis | postgres) ;; *) echo "redis-down: BACKEND must be redis or postgres" >&2; exit 2 ;; esac
LABEL=redis-down
FEATURES=redis
[ "$BACKEND" = redis ] || FEATURES="redis postgres"
[ "$BACKEND" = redis ] || LABEL=postgres-down
note() { echo "$LABEL: $*"; }

REDIS_PID=""
A_PID=""
B_PID=""
PGDATA_DIR=""
cleanup() {
  for pid in "$A_PID" "$B_PID" "$REDIS_PID"; do
    [ -n "$pid" ] && stop_group "$pid" 25
  done
  if [ -n "$PGDATA_DIR" ]; then
    stop_store >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR"
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if [ "$BACKEND" = redis ] && ! command -v redis-server >/dev/null; then
  note "installing Debian's redis-server"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

PG_BIN=""
if [ "$BACKEND" = postgres ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    note "installing Debian's postgresql (for initdb and pg_ctl)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  command -v psql >/dev/null || { echo "$LABEL: psql is missing"; exit 1; }
fi

cd "$ROOT"
note "building the example server (cargo build --release --example mcp_server --features \"$FEATURES\")"
cargo build --release --example mcp_server --features "$FEATURES"

REDIS_PORT="$(free_port)"
REDIS_LOG="$LOG_DIR/$LABEL-store.log"
# as_pg CMD...: CMD as the postgres user when run as root (initdb and postgres refuse root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
start_postgres() {
  if [ -z "$PGDATA_DIR" ]; then
    PGDATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/postgres-down.XXXXXX")"
    [ "$(id -u)" != 0 ] || chown postgres "$PGDATA_DIR"
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR/data" -A trust -U postgres -E UTF8 --no-sync \
      >>"$REDIS_LOG" 2>&1 || { echo "$LABEL: initdb failed; log:"; tail -n 20 "$REDIS_LOG"; exit 1; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w -t 20 \
    -o "-p $REDIS_PORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start \
    >>"$REDIS_LOG" 2>&1 || { echo "$LABEL: pg_ctl start failed; log:"; tail -n 20 "$PGDATA_DIR/server.log"; exit 1; }
}
# stop_store: the private store goes away (Redis: the process is killed; PostgreSQL: a fast
# shutdown, which terminates every connection).
stop_store() {
  if [ "$BACKEND" = postgres ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR/data" -m fast -w -t 20 stop >>"$REDIS_LOG" 2>&1
  else
    stop_group "$REDIS_PID" 25
    REDIS_PID=""
  fi
}
start_store() {
  if [ "$BACKEND" = postgres ]; then start_postgres; else start_redis; fi
}
store_url() {
  if [ "$BACKEND" = postgres ]; then
    echo "--postgres-url postgresql://postgres@127.0.0.1:$REDIS_PORT/postgres --postgres-schema tms_store_down"
  else
    echo "--redis-url redis://127.0.0.1:$REDIS_PORT --redis-prefix tms-redis-down:"
  fi
}
start_redis() {
  : >>"$REDIS_LOG"
  setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >>"$REDIS_LOG" 2>&1 </dev/null &
  REDIS_PID=$!
  local deadline=$((SECONDS + 10))
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "redis-down: private redis-server did not start"; exit 1; }
    sleep 0.1
  done
}
start_store
note "private $BACKEND on 127.0.0.1:$REDIS_PORT"

start_node() { # start_node NAME PORT -> sets NAME_PID
  local log="$LOG_DIR/$LABEL-$1.log" pid deadline store
  : >"$log"
  read -r -a store <<<"$(store_url)"
  setsid "$BIN" --bind "127.0.0.1:$2" "${store[@]}" >>"$log" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + 60))
  until http_answers "$2"; do
    kill -0 "$pid" 2>/dev/null || { echo "node $1 exited; log:"; tail -n 20 "$log"; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "node $1 did not answer"; exit 1; }
    sleep 0.1
  done
  if [ "$1" = a ]; then A_PID=$pid; else B_PID=$pid; fi
}
A_PORT="$(free_port)"
B_PORT="$(free_port)"
start_node a "$A_PORT"
start_node b "$B_PORT"

HDRS=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"redis-down","version":"1"}}}'
# post PORT BODY [SID]: prints "STATUS RETRY-AFTER" (RETRY-AFTER "-" when absent); the
# headers go to $HEAD_FILE.
HEAD_FILE="$(mktemp)"
post() {
  local extra=()
  [ -z "${3:-}" ] || extra=(-H "Mcp-Session-Id: $3" -H 'MCP-Protocol-Version: 2025-11-25')
  local status
  status="$(curl -s -m 10 -o /dev/null -D "$HEAD_FILE" -w '%{http_code}' "${HDRS[@]}" "${extra[@]}" \
    "http://127.0.0.1:$1/mcp" -d "$2")" || status=000
  local retry
  retry="$(grep -i '^retry-after:' "$HEAD_FILE" | awk '{print $2}' | tr -d '\r' || true)"
  echo "$status ${retry:--}"
}

read -r status _ <<<"$(post "$A_PORT" "$INIT")"
SID="$(grep -i '^mcp-session-id:' "$HEAD_FILE" | awk '{print $2}' | tr -d '\r')"
[ "$status" = 200 ] && [ -n "$SID" ] || { echo "$LABEL: initialize on a answered $status"; exit 1; }
post "$A_PORT" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$SID" >/dev/null
note "session opened on a"

stop_store
note "private $BACKEND stopped"

LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
read -r status _ <<<"$(post "$A_PORT" "$LIST" "$SID")"
if [ "$status" = 200 ]; then pass live "tools/list on a, which holds the session: 200"; else fail live "tools/list on a answered $status"; fi

read -r status retry <<<"$(post "$B_PORT" "$LIST" "$SID")"
if [ "$status" = 503 ] && [ "$retry" != - ]; then
  pass restore "the session on b (not held there): 503, Retry-After: $retry"
else
  fail restore "the session on b answered $status (Retry-After $retry); want 503 with Retry-After, never 404"
fi

read -r status retry <<<"$(post "$A_PORT" "$INIT")"
if [ "$status" = 503 ] && [ "$retry" != - ]; then
  pass open "initialize on a: 503, Retry-After: $retry"
else
  fail open "initialize on a answered $status (Retry-After $retry)"
fi

# More refused requests: the outage is still logged once per node.
for _ in 1 2 3 4 5; do
  post "$A_PORT" "$INIT" >/dev/null
  post "$B_PORT" "$LIST" "$SID" >/dev/null
done
down_a="$(grep -c 'session store unavailable' "$LOG_DIR/$LABEL-a.log" || true)"
down_b="$(grep -c 'session store unavailable' "$LOG_DIR/$LABEL-b.log" || true)"
if [ "$down_a" = 1 ] && [ "$down_b" = 1 ]; then
  pass log-once "each node logged the outage once (a: $down_a, b: $down_b) over 12 refused requests"
else
  fail log-once "outage lines: a $down_a, b $down_b (want 1 each)"
fi

start_store
if [ "$BACKEND" = postgres ]; then
  note "private PostgreSQL started again on the same port (its data kept)"
else
  note "private Redis started again (empty: no persistence)"
fi
deadline=$((SECONDS + 15))
status=000
while [ "$SECONDS" -lt "$deadline" ]; do
  read -r status _ <<<"$(post "$A_PORT" "$INIT")"
  [ "$status" = 200 ] && break
  sleep 0.2
done
back_a="$(grep -c 'session store reachable again' "$LOG_DIR/$LABEL-a.log" || true)"
if [ "$status" = 200 ] && [ "$back_a" = 1 ]; then
  pass back "initialize on a: 200 again after $BACKEND came back; a logged it once"
else
  fail back "initialize on a: $status; 'reachable again' lines: $back_a"
fi
rm -f "$HEAD_FILE"

echo "$LABEL: $passed passed, $failed failed"
[ "$failed" = 0 ]
