#!/usr/bin/env bash
# Multi-node check: two example servers (nodes a and b) that share their sessions through
# Redis (or PostgreSQL with BACKEND=postgres), behind HAProxy balancing round robin with no
# stickiness, so that consecutive requests of one session go to different nodes.
#
# Usage: scripts/multinode/run.sh              (Redis)
#        BACKEND=postgres scripts/multinode/run.sh   (PostgreSQL: --postgres-url, a schema
#                                                     of this run's own, dropped at the end)
#
# What it does (everything on 127.0.0.1):
#   - installs HAProxy with apt-get when it is missing (and redis-tools for redis-cli); fails
#     if Redis does not answer PING at REDIS_URL (never skips);
#   - builds the example once (cargo build --release --example mcp_server --features redis);
#   - starts nodes a and b on free ports, both with --redis-url REDIS_URL and
#     --redis-prefix tms-multinode:<unique>: (node_cmd below is the one place that says how a
#     node starts), then HAProxy (generated config, foreground, round robin, TCP health
#     checks every 200 ms, a stats page used to wait for a node to be marked DOWN/UP);
#   - checks, each printing one PASS/FAIL line:
#     a        the official Python SDK client (client.py) through HAProxy: increment 4 times
#              -> 1,2,3,4, answered by both nodes (the counter lives in Redis);
#     b        node a killed with SIGKILL between two calls of that session: the next calls
#              go on at 5,6 through b;
#     c-restart-a  a restarted on the same port and prefix: the session goes on at 7..10,
#              answered by both nodes;
#     c-rolling-b  rolling deploy: b stopped with SIGTERM (it must exit within 15 s), the
#              session goes on through a, b restarted, the session goes on through both; then
#              the client closes: DELETE 204 (never a 404, never a restart from 1);
#     d        a GET SSE stream held directly on node a, tools/call increment sent directly to
#              node b: the stream on a receives the notifications/message log entry (10 s);
#     e        a session used on both nodes, DELETE directly on a -> 204, then a POST with
#              its id directly to a -> 404 and directly to b -> 404;
#     f        the conformance suite (scripts/interop/conformance.sh, its default scenarios:
#              all run on sessions) against HAProxy's URL;
#     nodes-up both nodes and HAProxy are still running at the end;
#   - stops everything it started and deletes its own Redis keys (SCAN of the prefix, DEL in
#     batches; never FLUSHALL).
# Ends with "multinode: N passed, M failed" and exits 1 if M > 0 or the setup failed.
#
# Environment:
#   BACKEND                redis (default) or postgres: what the nodes share
#   REDIS_URL              Redis shared by the nodes (default redis://127.0.0.1:6379)
#   POSTGRES_URL           PostgreSQL shared by the nodes with BACKEND=postgres (default
#                          postgresql://postgres@127.0.0.1:5432/test); the run's schema is
#                          tms_multinode_<unique>, dropped at the end (DROP SCHEMA … CASCADE)
#   INTEROP_DIR            where the Python venv, the conformance tools and the logs live
#                          (default <repo>/.interop, shared with scripts/interop)
#   MULTINODE_CONFORMANCE_SCENARIOS  scenarios for check f instead of conformance.sh's defaults
#   MULTINODE_SERVER_CMD   command to start a node instead of the example (then nothing is
#                          built); it must accept "--bind 127.0.0.1:PORT --redis-url URL
#                          --redis-prefix PREFIX" appended
#   MULTINODE_IN_MEMORY=1  start the nodes WITHOUT the Redis flags (each node alone): only
#                          to see this script catch a server that does not share sessions;
#                          checks a-e then fail
#   plus PY_MCP_MODE, PY_MCP_STEP_TIMEOUT (client.py) and what conformance.sh reads.
# Logs: .interop/logs/multinode-{a,b,haproxy,client}.log (the haproxy log has one line
# per request, with the server that answered it).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
INTEROP_DIR="${INTEROP_DIR:-$ROOT/.interop}"
LOG_DIR="$INTEROP_DIR/logs"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
# redis-cli 7.0 sends an empty user name for redis://:PASSWORD@host (and fails): it gets the
# same URL with the user "default", which is what the empty one means.
REDIS_CLI_URL="${REDIS_URL/:\/\/:/://default:}"
PREFIX="tms-multinode:$(date +%s)-$$-$RANDOM:"
BACKEND="${BACKEND:-redis}"
case "$BACKEND" in redis | postgres) ;; *) echo "multinode: BACKEND must be redis or postgres, not '$BACKEND'" >&2; exit 2 ;; esac
# The Redis run builds what the other scripts build (no second release build of the crate).
FEATURES=redis
[ "$BACKEND" = redis ] || FEATURES="redis postgres"
POSTGRES_URL="${POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
SCHEMA="tms_multinode_$(date +%s)_$$_$RANDOM"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/mcp_server"
VENV="$INTEROP_DIR/venv"
PROTO="2025-11-25"
NODE_READY_TIMEOUT=20 # seconds for a node to answer HTTP after it is started
LB_TIMEOUT=10         # seconds for HAProxy to mark a server UP or DOWN
TERM_TIMEOUT=15       # seconds a node gets to exit after SIGTERM
CLIENT_TIMEOUT=150    # outer bound of client.py (checks a-c)
NOTIFY_TIMEOUT=10     # seconds for the notification of check d

# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

mkdir -p "$LOG_DIR"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/multinode.XXXXXX")"

passed=0
failed=0
failed_names=()
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); failed_names+=("$1"); echo "FAIL $1: $2"; }
note() { echo "multinode: $*"; }
# redact TEXT: TEXT with the password of any URL in it (scheme://user:password@) masked.
redact() { sed -E 's#(://[^:/@ ]*:)[^@ ]*@#\1***@#g' <<<"$*"; }

# A setup step failed: nothing can be checked.
die_setup() {
  fail setup "$*"
  stop_all
  redis_cleanup
  echo "multinode: $passed passed, $failed failed"
  exit 1
}

# ---------------------------------------------------------------------------------------
# Processes: nodes a and b, HAProxy, the client and the GET stream of check d, each tracked
# by pid; the nodes and HAProxy run in their own process groups (setsid) so that stop_group
# and kill -- -PID reach everything they start.
A_PID=""
B_PID=""
A_PORT=""
B_PORT=""
LB_PID=""
CLIENT_PID=""
GET_PID=""

node_pid() { if [ "$1" = a ]; then echo "$A_PID"; else echo "$B_PID"; fi; }
node_port() { if [ "$1" = a ]; then echo "$A_PORT"; else echo "$B_PORT"; fi; }
set_node_pid() { if [ "$1" = a ]; then A_PID="$2"; else B_PID="$2"; fi; }

# node_cmd PORT: sets NODE_CMD to the command of one node listening on 127.0.0.1:PORT: the
# release example with the shared Redis store and bus under this run's prefix. The one place
# that says how a node starts.
node_cmd() {
  if [ -n "${MULTINODE_SERVER_CMD:-}" ]; then
    read -r -a NODE_CMD <<<"$MULTINODE_SERVER_CMD"
  else
    NODE_CMD=("$BIN")
  fi
  NODE_CMD+=(--bind "127.0.0.1:$1")
  if [ "${MULTINODE_IN_MEMORY:-0}" = 1 ]; then
    :
  elif [ "$BACKEND" = postgres ]; then
    NODE_CMD+=(--postgres-url "$POSTGRES_URL" --postgres-schema "$SCHEMA")
  else
    NODE_CMD+=(--redis-url "$REDIS_URL" --redis-prefix "$PREFIX")
  fi
}

# start_node NAME: starts node NAME (a or b) on its port and waits until it answers HTTP.
start_node() {
  local name="$1" port pid log="$LOG_DIR/multinode-$1.log" deadline
  port="$(node_port "$name")"
  node_cmd "$port"
  echo "==== $(date -u +%FT%TZ) multinode: starting node $name: $(redact "${NODE_CMD[*]}")" >>"$log"
  setsid "${NODE_CMD[@]}" >>"$log" 2>&1 </dev/null &
  pid=$!
  set_node_pid "$name" "$pid"
  deadline=$((SECONDS + NODE_READY_TIMEOUT))
  until http_answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      set_node_pid "$name" ""
      echo "node $name exited before answering on 127.0.0.1:$port; its log ends with:"
      tail -n 20 "$log"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "node $name did not answer on 127.0.0.1:$port within ${NODE_READY_TIMEOUT}s; its log ends with:"
      tail -n 20 "$log"
      return 1
    fi
    sleep 0.1
  done
  note "node $name (pid $pid) answers on 127.0.0.1:$port"
}

# kill_node NAME: SIGKILL to node NAME's process group, reaped.
kill_node() {
  local pid
  pid="$(node_pid "$1")"
  [ -n "$pid" ] || return 0
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  set_node_pid "$1" ""
}

# term_node NAME: SIGTERM to node NAME's process group; false (after a SIGKILL) if it did not
# exit within TERM_TIMEOUT seconds.
term_node() {
  local pid deadline
  pid="$(node_pid "$1")"
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + TERM_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill_node "$1"
      return 1
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  set_node_pid "$1" ""
}

# lb_status NAME: HAProxy's status (UP, DOWN, ...) of server NAME, from its stats page.
lb_status() {
  curl -s --max-time 2 "http://127.0.0.1:$STATS_PORT/stats;csv" 2>/dev/null \
    | awk -F, -v s="$1" '$1 == "nodes" && $2 == s { print $18 }' || true
}

# wait_lb NAME STATUS: waits up to LB_TIMEOUT seconds for HAProxy to show server NAME as STATUS.
wait_lb() {
  local deadline=$((SECONDS + LB_TIMEOUT)) status=""
  while :; do
    status="$(lb_status "$1")"
    [ "$status" != "$2" ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "HAProxy still shows server $1 as '${status:-nothing}' after ${LB_TIMEOUT}s, expected $2"
      return 1
    fi
    sleep 0.1
  done
}

stop_all() {
  [ -z "$GET_PID" ] || { kill "$GET_PID" 2>/dev/null || true; wait "$GET_PID" 2>/dev/null || true; GET_PID=""; }
  [ -z "$CLIENT_PID" ] || { stop_group "$CLIENT_PID" 10; CLIENT_PID=""; }
  [ -z "$LB_PID" ] || { stop_group "$LB_PID" 25; LB_PID=""; }
  [ -z "$A_PID" ] || { stop_group "$A_PID"; A_PID=""; }
  [ -z "$B_PID" ] || { stop_group "$B_PID"; B_PID=""; }
}

# Deletes this run's keys only: SCAN for the prefix, DEL in batches of 100 (once).
REDIS_OK=0 # set once Redis answered PING: before that there is nothing to clean
REDIS_CLEANED=0
redis_cleanup() {
  [ "$REDIS_OK" -eq 1 ] && [ "$REDIS_CLEANED" -eq 0 ] || return 0
  REDIS_CLEANED=1
  if [ "$BACKEND" = postgres ]; then
    if timeout 20 psql -X -q -v ON_ERROR_STOP=1 "$POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" \
      >/dev/null 2>"$TMP/pg-drop.err"; then
      note "dropped the PostgreSQL schema $SCHEMA"
    else
      note "dropping the PostgreSQL schema $SCHEMA failed: $(head -c 300 "$TMP/pg-drop.err")"
    fi
    return 0
  fi
  local keys="$TMP/redis-keys" n
  if ! timeout 20 redis-cli --no-auth-warning -u "$REDIS_CLI_URL" --scan --pattern "${PREFIX}*" >"$keys" 2>"$TMP/redis-scan.err"; then
    note "could not list the Redis keys under $PREFIX: $(head -c 300 "$TMP/redis-scan.err")"
    return 0
  fi
  n="$(grep -c . "$keys" || true)"
  if [ "$n" -gt 0 ]; then
    timeout 20 xargs -r -d '\n' -n 100 redis-cli --no-auth-warning -u "$REDIS_CLI_URL" del <"$keys" >/dev/null \
      || note "deleting the Redis keys under $PREFIX failed"
  fi
  note "deleted $n Redis key(s) under $PREFIX"
}

# The script's own stdout/stderr, for the cleanup: a signal may run it in the middle of a
# command whose output goes to a file.
exec {OUT}>&1 {ERR}>&2
cleanup() {
  local rc=$?
  trap - EXIT
  exec 1>&"$OUT" 2>&"$ERR"
  stop_all
  redis_cleanup
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Setup: HAProxy, Redis, the build, the Python venv, the conformance tools.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# apt_install PACKAGE: installs a Debian package (apt-get update first).
apt_install() {
  command -v apt-get >/dev/null || die_setup "$1 is missing and there is no apt-get to install it"
  note "installing $1 (apt-get)"
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; then
    die_setup "apt-get install $1 failed"
  fi
}

HAPROXY="$(command -v haproxy || true)"
[ -n "$HAPROXY" ] || [ ! -x /usr/sbin/haproxy ] || HAPROXY=/usr/sbin/haproxy
if [ -z "$HAPROXY" ]; then
  apt_install haproxy
  HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
  [ -x "$HAPROXY" ] || die_setup "haproxy not found after installing it"
fi
note "$("$HAPROXY" -v | head -n 1)"

if [ "$BACKEND" = postgres ]; then
  command -v psql >/dev/null || apt_install postgresql-client
  command -v psql >/dev/null || die_setup "psql not found after installing postgresql-client"
  PG_SHOWN="$(redact "$POSTGRES_URL")"
  one="$(timeout 5 psql -X -At "$POSTGRES_URL" -c 'SELECT 1' 2>&1 || true)"
  [ "$one" = 1 ] || die_setup "PostgreSQL at $PG_SHOWN does not answer SELECT 1 (got: $(redact "${one:-nothing}")); the multi-node check needs it"
  REDIS_OK=1 # the store answered: the cleanup drops this run's schema
  note "PostgreSQL at $PG_SHOWN answers; this run's schema (and NOTIFY channel) is $SCHEMA"
else
  command -v redis-cli >/dev/null || apt_install redis-tools
  command -v redis-cli >/dev/null || die_setup "redis-cli not found after installing redis-tools"
  REDIS_SHOWN="$(redact "$REDIS_URL")"
  pong="$(timeout 5 redis-cli --no-auth-warning -u "$REDIS_CLI_URL" ping 2>&1 || true)"
  [ "$pong" = PONG ] || die_setup "Redis at $REDIS_SHOWN does not answer PING (got: $(redact "${pong:-nothing}")); the multi-node check needs it"
  REDIS_OK=1
  note "Redis at $REDIS_SHOWN answers PING; this run's keys start with $PREFIX"
fi

cd "$ROOT"
if [ -n "${MULTINODE_SERVER_CMD:-}" ]; then
  note "nodes run MULTINODE_SERVER_CMD: $MULTINODE_SERVER_CMD"
else
  note "building the example server (cargo build --release --example mcp_server --features \"$FEATURES\")"
  cargo build --release --example mcp_server --features "$FEATURES" || die_setup "cargo build --release --example mcp_server --features \"$FEATURES\" failed"
  [ -x "$BIN" ] || die_setup "no binary at $BIN after the build"
fi
if [ "${MULTINODE_IN_MEMORY:-0}" = 1 ]; then
  note "MULTINODE_IN_MEMORY=1: the nodes do NOT share sessions; checks a-e are expected to fail"
elif [ -z "${MULTINODE_SERVER_CMD:-}" ] \
  && ! { "$BIN" --help | grep -q -- '--redis-url' && "$BIN" --help | grep -q -- '--postgres-url'; }; then
  die_setup "the example server has no --redis-url/--postgres-url flags ($BIN --help)"
fi

# The Python venv exactly as scripts/interop/python.sh makes it (same place, same stamp, so
# the two share it): the official MCP Python SDK pinned by scripts/interop/requirements.txt.
REQUIREMENTS="$ROOT/scripts/interop/requirements.txt"
want="$( { python3 -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  note "python venv already set up in $VENV"
else
  note "creating $VENV with $(python3 --version) and $(grep -E '^mcp==' "$REQUIREMENTS")"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die_setup "python3 -m venv failed"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS" \
    || die_setup "pip install -r $REQUIREMENTS failed"
  echo "$want" >"$VENV/.installed"
fi

# The conformance tools are installed now rather than in the middle of the checks: a run of
# conformance.sh with an empty scenario list installs and verifies them and checks nothing
# (the URL is not contacted). If that ever fails, check f installs them itself.
if CONFORMANCE_SCENARIOS=" " bash "$ROOT/scripts/interop/conformance.sh" "http://127.0.0.1:9/mcp" \
  >"$LOG_DIR/multinode-conformance-install.log" 2>&1; then
  note "conformance tools ready ($(grep -m1 'conformance: Node' "$LOG_DIR/multinode-conformance-install.log" || true))"
else
  note "installing the conformance tools up front failed (check f will try again):"
  tail -n 20 "$LOG_DIR/multinode-conformance-install.log"
fi

# ---------------------------------------------------------------------------------------
# Nodes and HAProxy.
START=$SECONDS
ports=() # four distinct free ports: node a, node b, HAProxy, its stats page
while [ "${#ports[@]}" -lt 4 ]; do
  port="$(free_port)"
  case " ${ports[*]} " in *" $port "*) ;; *) ports+=("$port") ;; esac
done
A_PORT="${ports[0]}"
B_PORT="${ports[1]}"
LB_PORT="${ports[2]}"
STATS_PORT="${ports[3]}"
LB_URL="http://127.0.0.1:$LB_PORT/mcp"
for name in a b; do : >"$LOG_DIR/multinode-$name.log"; done
: >"$LOG_DIR/multinode-haproxy.log"

start_node a || die_setup "node a did not start"
start_node b || die_setup "node b did not start"

# Round robin on every request (HTTP mode balances each request of a keep-alive connection
# on its own; no cookie, no stick table, no prefer-last-server: no stickiness). TCP health
# checks every 200 ms, one failure marks a server DOWN, one success UP again. Timeouts long
# enough for the SSE streams of the checks. A connection refused (a node that died before its
# check noticed) is retried on the other server (option redispatch); the checks wait for
# the DOWN mark anyway before going on. http-server-close: one server connection per
# request, so that no request is sent on a pooled idle connection a node is closing at that
# moment (its idle timeout, its shutdown), which would look like a node failure and is not
# what is tested here. X-Multinode-Server names the server that answered.
cat >"$TMP/haproxy.cfg" <<EOF
global
    log stderr format raw local0 info
    maxconn 512

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    timeout http-request 10s
    timeout queue 5s
    retries 2
    option redispatch
    option http-server-close

frontend mcp
    bind 127.0.0.1:$LB_PORT
    default_backend nodes

backend nodes
    balance roundrobin
    http-response set-header X-Multinode-Server %[srv_name]
    default-server check inter 200ms fall 1 rise 1
    server a 127.0.0.1:$A_PORT
    server b 127.0.0.1:$B_PORT

listen stats
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /stats
EOF
cp "$TMP/haproxy.cfg" "$LOG_DIR/multinode-haproxy.cfg"
"$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die_setup "haproxy -c rejected the generated config ($LOG_DIR/multinode-haproxy.cfg)"
setsid "$HAPROXY" -db -f "$TMP/haproxy.cfg" >>"$LOG_DIR/multinode-haproxy.log" 2>&1 </dev/null &
LB_PID=$!
for name in a b; do
  if ! msg="$(wait_lb "$name" UP)"; then
    tail -n 20 "$LOG_DIR/multinode-haproxy.log"
    die_setup "$msg"
  fi
done
http_answers "$LB_PORT" || die_setup "HAProxy does not answer on 127.0.0.1:$LB_PORT"
note "HAProxy (pid $LB_PID) balances $LB_URL over a=127.0.0.1:$A_PORT b=127.0.0.1:$B_PORT (stats :$STATS_PORT)"

# ---------------------------------------------------------------------------------------
# Checks a-c: client.py drives one session through HAProxy; at each PAUSE this script acts
# on the nodes (and waits for HAProxy to see it) and answers GO, or ABORT with the reason.
# (Each check lists the counts and the nodes that answered; "both" may add a ping and an
# increment when the round robin's parity kept one node out.)
steps=(
  "check:a=increments through HAProxy count 1,2,3,4 (each one more), answered by both nodes" inc inc inc inc both
  "check:b=node a killed (SIGKILL) between calls: the session goes on through b"
  pause:kill-a inc:b inc:b
  "check:c-restart-a=node a restarted (same port, same prefix): the session goes on, answered by both nodes"
  pause:restart-a inc inc inc inc both
  "check:c-rolling-b=rolling deploy: b stopped (SIGTERM), the session goes on through a; b restarted, on both nodes; DELETE 204"
  pause:stop-b inc:a inc:a pause:restart-b inc inc inc inc both close
)

# pause_action NAME: what a PAUSE asks for; prints the reason and returns 1 if it failed. Runs
# in this shell (not in a $(...) subshell): it starts and reaps the nodes and sets their pids.
pause_action() {
  case "$1" in
    kill-a)
      kill_node a
      wait_lb a DOWN
      ;;
    restart-a)
      start_node a && wait_lb a UP
      ;;
    stop-b)
      term_node b || { echo "node b did not exit within ${TERM_TIMEOUT}s of SIGTERM (killed)"; return 1; }
      wait_lb b DOWN
      ;;
    restart-b)
      start_node b && wait_lb b UP
      ;;
    *)
      echo "unknown pause $1"
      return 1
      ;;
  esac
}

echo "==== checks a-c: the official Python SDK client through HAProxy ===="
mkfifo "$TMP/to-client" "$TMP/from-client"
# Opened read-write, so that opening never blocks whoever comes first; the end of the client
# is seen by its pid, and its last lines are read after it exited.
exec {to_client}<>"$TMP/to-client" {from_client}<>"$TMP/from-client"
setsid timeout --kill-after=5 "$CLIENT_TIMEOUT" "$VENV/bin/python" -u "$SCRIPT_DIR/client.py" "$LB_URL" "${steps[@]}" \
  <"$TMP/to-client" >"$TMP/from-client" 2>"$LOG_DIR/multinode-client.log" &
CLIENT_PID=$!

client_line() {
  local line="$1" why
  case "$line" in
    PASS\ *)
      passed=$((passed + 1))
      echo "$line"
      ;;
    FAIL\ *)
      failed=$((failed + 1))
      name="${line#FAIL }"
      failed_names+=("${name%%:*}")
      echo "$line"
      ;;
    PAUSE\ *)
      note "pause ${line#PAUSE }"
      if pause_action "${line#PAUSE }" >"$TMP/pause.out" 2>&1; then
        sed 's/^/    /' "$TMP/pause.out"
        echo GO >&"$to_client"
      else
        sed 's/^/    /' "$TMP/pause.out"
        why="$(tr '\n' ' ' <"$TMP/pause.out")"
        echo "ABORT ${line#PAUSE }: ${why:-failed}" >&"$to_client"
      fi
      ;;
    *) echo "    $line" ;;
  esac
}

# Reads the client's lines until it exited and its last line was read. A read that times out
# keeps what it got of a line (bash hands it over) for the next read.
client_checks=0
partial=""
client_gone=0
while :; do
  if IFS= read -r -t 0.5 -u "$from_client" line; then
    line="$partial$line"
    partial=""
    case "$line" in PASS\ * | FAIL\ *) client_checks=$((client_checks + 1)) ;; esac
    client_line "$line"
  else
    partial+="$line"
    [ "$client_gone" -eq 0 ] || break
    # One more round of reads after the exit is seen: the lines it wrote last.
    kill -0 "$CLIENT_PID" 2>/dev/null || client_gone=1
  fi
done
[ -z "$partial" ] || client_line "$partial"
client_rc=0
wait "$CLIENT_PID" 2>/dev/null || client_rc=$?
CLIENT_PID=""
exec {to_client}>&- {from_client}>&-
if [ "$client_rc" -ne 0 ] && [ "$client_checks" -eq 0 ]; then
  fail client "client.py exited $client_rc without reporting a check (timeout: 124); its stderr:"
  tail -n 30 "$LOG_DIR/multinode-client.log"
elif [ "$client_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  fail client "client.py exited $client_rc although every check it reported passed; its stderr:"
  tail -n 30 "$LOG_DIR/multinode-client.log"
fi
# The nodes must be back as the checks left them: both up (an aborted pause may leave one down).
for name in a b; do
  if [ -z "$(node_pid "$name")" ] || ! kill -0 "$(node_pid "$name")" 2>/dev/null; then
    note "node $name is not running after checks a-c; starting it again for the next checks"
    { start_node "$name" && wait_lb "$name" UP; } || note "node $name could not be started again"
  fi
done

# ---------------------------------------------------------------------------------------
# Raw HTTP helpers for checks d and e (curl, straight to one node's port).

# rpc PORT SID JSON: POSTs JSON to 127.0.0.1:PORT/mcp (with the session's headers if SID is
# not empty); sets RPC_STATUS (000 if curl failed), RPC_BODY and RPC_SID (the
# Mcp-Session-Id of the answer).
rpc() {
  local port="$1" sid="$2" body="$3"
  local args=(-s --max-time 10 -o "$TMP/rpc.body" -D "$TMP/rpc.hdr" -w '%{http_code}'
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  [ -z "$sid" ] || args+=(-H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTO")
  : >"$TMP/rpc.body"
  : >"$TMP/rpc.hdr"
  RPC_STATUS="$(curl "${args[@]}" --data-binary "$body" "http://127.0.0.1:$port/mcp")" || RPC_STATUS=000
  RPC_BODY="$(head -c 2000 "$TMP/rpc.body")"
  RPC_SID="$(tr -d '\r' <"$TMP/rpc.hdr" | awk -F': *' 'tolower($1) == "mcp-session-id" { print $2 }' | tail -n 1)"
}

# open_session PORT: initialize + notifications/initialized at 127.0.0.1:PORT; sets OPEN_SID,
# or OPEN_ERR (why not) and returns 1.
open_session() {
  OPEN_SID=""
  OPEN_ERR=""
  rpc "$1" "" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'"$PROTO"'","capabilities":{},"clientInfo":{"name":"multinode","version":"1"}}}'
  if [ "$RPC_STATUS" != 200 ] || [ -z "$RPC_SID" ]; then
    OPEN_ERR="initialize at :$1 answered $RPC_STATUS, session id '${RPC_SID}': ${RPC_BODY:0:300}"
    return 1
  fi
  OPEN_SID="$RPC_SID"
  rpc "$1" "$OPEN_SID" '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  if [ "$RPC_STATUS" != 202 ]; then
    OPEN_ERR="notifications/initialized at :$1 answered $RPC_STATUS (expected 202): ${RPC_BODY:0:300}"
    return 1
  fi
}

# increment PORT SID: tools/call increment; sets INC_TEXT to the answer's text (empty if the
# answer is not a result with text content).
increment() {
  rpc "$1" "$2" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"increment","arguments":{}}}'
  INC_TEXT="$(python3 -c '
import json, sys
raw = sys.stdin.read()
# A JSON body, or an SSE stream whose data lines hold the response.
datas = [l[5:].strip() for l in raw.splitlines() if l.startswith("data:")]
for text in (datas or [raw]):
    try:
        msg = json.loads(text)
    except ValueError:
        continue
    if isinstance(msg, dict) and "result" in msg:
        r = msg["result"]
        if not r.get("isError"):
            print(next((c["text"] for c in r.get("content", []) if c.get("type") == "text"), ""))
        break
' <<<"$RPC_BODY" 2>/dev/null || true)"
}

# ---------------------------------------------------------------------------------------
echo "==== check d: a notification crosses nodes (GET stream on a, increment on b) ===="
check_d() {
  local name=d sse="$TMP/d.sse" hdr="$TMP/d.hdr" deadline status
  open_session "$A_PORT" || { fail "$name" "$OPEN_ERR"; return; }
  local sid="$OPEN_SID"
  : >"$sse"
  : >"$hdr"
  curl -sN --max-time $((NOTIFY_TIMEOUT + 15)) -D "$hdr" -o "$sse" \
    -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTO" \
    "http://127.0.0.1:$A_PORT/mcp" &
  GET_PID=$!
  deadline=$((SECONDS + 5))
  until grep -q '^HTTP/[0-9.]* ' "$hdr"; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$GET_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  status="$(awk 'NR == 1 { print $2 }' "$hdr")"
  if [ "$status" != 200 ] || ! grep -qi '^content-type: *text/event-stream' "$hdr"; then
    fail "$name" "GET stream on node a answered '${status:-nothing}' (expected 200 text/event-stream): $(tr -d '\r' <"$hdr" | head -n 5 | tr '\n' ' ') $(head -c 300 "$sse")"
    return
  fi
  increment "$B_PORT" "$sid"
  if [ "$RPC_STATUS" != 200 ] || [ "$INC_TEXT" != 1 ]; then
    fail "$name" "increment directly on node b answered $RPC_STATUS, text '$INC_TEXT' (expected 200, 1): ${RPC_BODY:0:300}"
    return
  fi
  deadline=$((SECONDS + NOTIFY_TIMEOUT))
  until grep -q 'notifications/message' "$sse"; do
    if [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 0.05
  done
  local event
  event="$(grep -m1 'notifications/message' "$sse" || true)"
  if [ -z "$event" ]; then
    fail "$name" "no notifications/message on node a's GET stream within ${NOTIFY_TIMEOUT}s of the increment on node b (stream so far: $(head -c 300 "$sse" | tr '\n' ' '))"
  elif ! grep -Eq '"counter": ?1[,}]' <<<"$event" || ! grep -q "$sid" <<<"$event"; then
    fail "$name" "the log entry on a's stream is not about this session's count 1: ${event:0:300}"
  else
    pass "$name" "GET stream on a got the log entry of the increment on b: ${event:0:200}"
  fi
}
check_d
if [ -n "$GET_PID" ]; then
  kill "$GET_PID" 2>/dev/null || true
  wait "$GET_PID" 2>/dev/null || true
  GET_PID=""
fi

echo "==== check e: DELETE on one node ends the session on both ===="
check_e() {
  local name=e status problems=()
  open_session "$B_PORT" || { fail "$name" "$OPEN_ERR"; return; }
  local sid="$OPEN_SID"
  increment "$B_PORT" "$sid"
  [ "$RPC_STATUS" = 200 ] && [ "$INC_TEXT" = 1 ] \
    || problems+=("increment on b answered $RPC_STATUS '$INC_TEXT' (expected 200, 1)")
  increment "$A_PORT" "$sid"
  [ "$RPC_STATUS" = 200 ] && [ "$INC_TEXT" = 2 ] \
    || problems+=("increment on a answered $RPC_STATUS '$INC_TEXT' (expected 200, 2)")
  status="$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X DELETE \
    -H "Mcp-Session-Id: $sid" -H "MCP-Protocol-Version: $PROTO" "http://127.0.0.1:$A_PORT/mcp")" || status=000
  [ "$status" = 204 ] || problems+=("DELETE on a answered $status (expected 204)")
  increment "$A_PORT" "$sid"
  [ "$RPC_STATUS" = 404 ] || problems+=("POST on a after the DELETE answered $RPC_STATUS (expected 404): ${RPC_BODY:0:200}")
  increment "$B_PORT" "$sid"
  [ "$RPC_STATUS" = 404 ] || problems+=("POST on b after the DELETE answered $RPC_STATUS (expected 404): ${RPC_BODY:0:200}")
  if [ "${#problems[@]}" -eq 0 ]; then
    pass "$name" "session used on b (1) and a (2), DELETE on a -> 204, then POST on a -> 404, on b -> 404"
  else
    fail "$name" "$(printf '%s; ' "${problems[@]}" | sed 's/; $//')"
  fi
}
check_e

echo "==== check f: the conformance suite through HAProxy ===="
f_rc=0
if [ -n "${MULTINODE_CONFORMANCE_SCENARIOS:-}" ]; then
  CONFORMANCE_SCENARIOS="$MULTINODE_CONFORMANCE_SCENARIOS" bash "$ROOT/scripts/interop/conformance.sh" "$LB_URL" 2>&1 \
    | sed -u 's/^/    /' || f_rc=$?
else
  bash "$ROOT/scripts/interop/conformance.sh" "$LB_URL" 2>&1 | sed -u 's/^/    /' || f_rc=$?
fi
if [ "$f_rc" -eq 0 ]; then
  pass f "conformance suite through HAProxy (round robin over a and b): every scenario passed"
else
  fail f "conformance suite through HAProxy: exit $f_rc (its scenario lines above)"
fi

# ---------------------------------------------------------------------------------------
down=()
for name in a b; do
  pid="$(node_pid "$name")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || down+=("node $name")
done
kill -0 "$LB_PID" 2>/dev/null || down+=("HAProxy")
if [ "${#down[@]}" -eq 0 ]; then
  pass nodes-up "both nodes and HAProxy still running after the checks"
else
  fail nodes-up "not running at the end: ${down[*]}"
fi

note "checks took $((SECONDS - START))s after the build"
stop_all
redis_cleanup
if [ "$failed" -gt 0 ]; then
  note "failed: ${failed_names[*]}"
  for name in a b; do
    echo "---- last 30 lines of $LOG_DIR/multinode-$name.log ----"
    tail -n 30 "$LOG_DIR/multinode-$name.log"
  done
  echo "---- last 30 lines of $LOG_DIR/multinode-haproxy.log ----"
  tail -n 30 "$LOG_DIR/multinode-haproxy.log"
  echo "---- end of logs ----"
fi
echo "multinode: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
