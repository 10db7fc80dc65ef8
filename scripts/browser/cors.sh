#!/usr/bin/env bash
# A real browser (headless Chromium) uses the example server cross-origin, over loopback only:
#   - a page served from an allowed origin (--allow-origin http://127.0.0.1:PAGE_PORT) opens a
#     session (initialize), sends notifications/initialized, calls the `increment` tool twice
#     (1, then 2), reads Mcp-Session-Id from the response headers (CORS expose) and DELETEs
#     the session (204);
#   - the same page served from another origin (another port, not allowed) cannot open a
#     session: the CORS preflight gets no Access-Control-Allow-Origin, so fetch rejects.
# Each page writes its outcome into its DOM; Chromium's --dump-dom hands the DOM back here.
#
# Installs Debian's chromium when missing (apt-get update, apt-get install -y chromium; run
# as root). Everything started here is stopped on exit. Every wait is bounded. Prints
# `browser: N passed, M failed` last and exits non-zero on any failure.
#
# Usage: scripts/browser/cors.sh
#
# Environment:
#   BROWSER_BUILD_TIMEOUT  seconds for `cargo build --example mcp_server` (default 1200)
#   BROWSER_PAGE_TIMEOUT   seconds for one Chromium run (default 60)
#   BROWSER_KEEP           set to keep the work folder (pages, logs, dumped DOMs)
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"
BUILD_TIMEOUT="${BROWSER_BUILD_TIMEOUT:-1200}"
PAGE_TIMEOUT="${BROWSER_PAGE_TIMEOUT:-60}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-browser.XXXXXX")"

passed=0
failed=0
check() { # check NAME COMMAND...
  local name="$1"
  shift
  if "$@"; then
    echo "browser: ok   $name"
    passed=$((passed + 1))
  else
    echo "browser: FAIL $name"
    failed=$((failed + 1))
  fi
}
finish() {
  echo "browser: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

PIDS=()
cleanup() {
  local pid
  # Each child runs in its own process group (setsid).
  for pid in "${PIDS[@]}"; do
    stop_group "$pid" 25
  done
  if [ -n "${BROWSER_KEEP:-}" ]; then
    echo "browser: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # start LOG COMMAND...: runs COMMAND in its own process group
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  PIDS+=("$!")
}


wait_http() { # wait_http URL SECONDS: any HTTP answer counts
  local deadline=$((SECONDS + $2))
  until python3 - "$1" <<'EOF' >/dev/null 2>&1; do
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.3
  done
}

# --- Chromium -------------------------------------------------------------------------
CHROMIUM="$(command -v chromium || true)"
if [ -z "$CHROMIUM" ]; then
  echo "browser: installing Debian's chromium"
  if [ "$(id -u)" -ne 0 ]; then
    echo "browser: chromium is missing and this is not root: cannot apt-get install it"
  else
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq >"$WORK/apt.log" 2>&1 &&
      timeout 900 apt-get install -y -qq chromium >>"$WORK/apt.log" 2>&1 ||
      tail -n 20 "$WORK/apt.log"
  fi
  CHROMIUM="$(command -v chromium || true)"
fi
check "chromium is installed ($("${CHROMIUM:-false}" --version 2>/dev/null | head -n1))" test -n "$CHROMIUM"
[ -n "$CHROMIUM" ] || finish

# --- The example server ---------------------------------------------------------------
cd "$ROOT"
echo "browser: building the example server (cargo build --example mcp_server)"
if ! timeout "$BUILD_TIMEOUT" cargo build --quiet --example mcp_server; then
  check "cargo build --example mcp_server" false
  finish
fi
SERVER_PORT="$(free_port)"
PAGE_PORT="$(free_port)"
OTHER_PORT="$(free_port)"
SERVER="http://127.0.0.1:$SERVER_PORT/mcp"
ALLOWED="http://127.0.0.1:$PAGE_PORT"
OTHER="http://127.0.0.1:$OTHER_PORT"
start "$WORK/server.log" env RUST_LOG=info,tower_http=debug \
  "$ROOT/target/debug/examples/mcp_server" --bind "127.0.0.1:$SERVER_PORT" --allow-origin "$ALLOWED"
if ! wait_http "$SERVER" 30; then
  check "the example server answers at $SERVER" false
  cat "$WORK/server.log"
  finish
fi

# --- The pages: the same script served from two origins --------------------------------
mkdir -p "$WORK/allowed" "$WORK/other"
cat >"$WORK/page.html" <<EOF
<!doctype html>
<html><head><meta charset="utf-8"><title>MCP over CORS</title></head>
<body><pre id="result">pending</pre>
<script>
const SERVER = "$SERVER";
const VERSION = "2025-11-25";
const out = document.getElementById("result");
function timed(ms) {
  const c = new AbortController();
  setTimeout(() => c.abort(), ms);
  return c.signal;
}
async function rpc(sessionId, body) {
  const headers = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
  };
  if (sessionId) {
    headers["Mcp-Session-Id"] = sessionId;
    headers["MCP-Protocol-Version"] = VERSION;
  }
  return fetch(SERVER, { method: "POST", headers, body: JSON.stringify(body), signal: timed(5000) });
}
async function run() {
  const r = { origin: location.origin };
  try {
    const init = await rpc(null, { jsonrpc: "2.0", id: 1, method: "initialize", params: {
      protocolVersion: VERSION, capabilities: {}, clientInfo: { name: "chromium-page", version: "1" } } });
    r.initStatus = init.status;
    r.sessionId = init.headers.get("Mcp-Session-Id");
    r.initVersion = (await init.json()).result.protocolVersion;
    const note = await rpc(r.sessionId, { jsonrpc: "2.0", method: "notifications/initialized" });
    r.initializedStatus = note.status;
    r.increments = [];
    for (const id of [2, 3]) {
      const call = await rpc(r.sessionId, { jsonrpc: "2.0", id, method: "tools/call",
        params: { name: "increment", arguments: {} } });
      const answer = await call.json();
      r.increments.push(answer.result.content[0].text);
    }
    const del = await fetch(SERVER, { method: "DELETE", signal: timed(5000),
      headers: { "Mcp-Session-Id": r.sessionId, "MCP-Protocol-Version": VERSION } });
    r.deleteStatus = del.status;
    const after = await rpc(r.sessionId, { jsonrpc: "2.0", id: 4, method: "tools/list" });
    r.afterDeleteStatus = after.status;
  } catch (e) {
    r.error = e.name + ": " + e.message;
  }
  out.textContent = "RESULT " + JSON.stringify(r);
}
run();
</script></body></html>
EOF
cp "$WORK/page.html" "$WORK/allowed/index.html"
cp "$WORK/page.html" "$WORK/other/index.html"
start "$WORK/page.log" python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory "$WORK/allowed"
start "$WORK/other.log" python3 -m http.server "$OTHER_PORT" --bind 127.0.0.1 --directory "$WORK/other"
wait_http "$ALLOWED/" 15 && wait_http "$OTHER/" 15 || {
  check "the page servers answer" false
  finish
}

# Loads URL in headless Chromium and prints the JSON the page wrote ("{}" if none).
visit() {
  local name="$1" url="$2"
  # --virtual-time-budget lets the page's fetches finish before the DOM is dumped; the
  # outer timeout bounds the run if Chromium hangs.
  timeout -k 5 "$PAGE_TIMEOUT" "$CHROMIUM" --headless --no-sandbox --disable-gpu \
    --no-first-run --no-default-browser-check --disable-extensions --disable-sync \
    --disable-background-networking --disable-component-update \
    --user-data-dir="$WORK/profile-$name" --virtual-time-budget=20000 \
    --dump-dom "$url" >"$WORK/$name.dom" 2>"$WORK/$name.chromium.log"
  python3 - "$WORK/$name.dom" <<'EOF'
import html, re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
m = re.search(r"RESULT (\{.*?\})</pre>", text, re.S)
print(html.unescape(m.group(1)) if m else "{}")
EOF
}

field() { # field JSON EXPRESSION: evaluates a Python expression on the JSON as `r`
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
is() { [ "$1" = "$2" ] || { echo "browser:      got: $1  want: $2"; return 1; }; }

echo "browser: page from the allowed origin $ALLOWED"
good="$(visit allowed "$ALLOWED/index.html")"
echo "browser:   $good"
check "allowed origin: initialize answered 200" is "$(field "$good" 'r.get("initStatus")')" 200
check "allowed origin: Mcp-Session-Id readable by the script" \
  is "$(field "$good" 'len(r.get("sessionId") or "")')" 36
check "allowed origin: notifications/initialized answered 202" \
  is "$(field "$good" 'r.get("initializedStatus")')" 202
check "allowed origin: increment twice gives 1 then 2" \
  is "$(field "$good" 'r.get("increments")')" "['1', '2']"
check "allowed origin: DELETE answered 204" is "$(field "$good" 'r.get("deleteStatus")')" 204
check "allowed origin: the deleted session is gone (404)" \
  is "$(field "$good" 'r.get("afterDeleteStatus")')" 404
check "allowed origin: no script error" is "$(field "$good" 'r.get("error")')" None

echo "browser: page from the origin $OTHER, not allowed"
bad="$(visit other "$OTHER/index.html")"
echo "browser:   $bad"
check "other origin: the page ran" is "$(field "$bad" 'r.get("origin")')" "$OTHER"
check "other origin: fetch rejected (CORS)" \
  is "$(field "$bad" '(r.get("error") or "").split(":")[0]')" TypeError
check "other origin: no session id reached the script" is "$(field "$bad" 'r.get("sessionId")')" None

# The server's side: one session, opened by the allowed page and closed by its DELETE;
# the other page's preflight was answered without Access-Control-Allow-Origin.
opened="$(grep -c 'session opened' "$WORK/server.log" || true)"
deleted="$(grep -c 'reason=Deleted' "$WORK/server.log" || true)"
check "server: exactly one session opened and it was closed by DELETE" \
  is "$opened/$deleted" "1/1"
if [ "$failed" -gt 0 ]; then
  echo "browser: server log (last 30 lines):"
  tail -n 30 "$WORK/server.log"
fi
finish
