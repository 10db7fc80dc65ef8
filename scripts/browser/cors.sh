#!/usr/bin/env bash
# A real browser (headless Chromium) uses the example servers cross-origin, over loopback only,
# both the crate's example (`mcp_server`) and the rmcp one (`rmcp_server`, rmcp behind the
# layer), each behind the crate's Origin guard and tower-http's CORS:
#   - a page served from an allowed origin (--allow-origin http://127.0.0.1:PAGE_PORT) opens a
#     session (initialize), sends notifications/initialized, calls the `increment` tool twice
#     (1, then 2), reads Mcp-Session-Id from the response headers (CORS expose) and DELETEs
#     the session (204);
#   - the same page served from another origin (another port, not allowed) cannot open a
#     session: the CORS preflight gets no Access-Control-Allow-Origin, so fetch rejects;
#   - the same page served as http://evil.localhost:PORT (Chromium resolves *.localhost to
#     loopback, as a DNS-rebinding name would) cannot either: the guard answers its preflight
#     403 before CORS (the server logs the refusal).
# Each page writes its outcome into its DOM; Chromium's --dump-dom hands the DOM back here.
#
# Installs Debian's chromium when missing (apt-get update, apt-get install -y chromium; run
# as root). Everything started here is stopped on exit. Every wait is bounded. Prints
# `browser: N passed, M failed` last and exits non-zero on any failure.
#
# Usage: scripts/browser/cors.sh
#
# Environment:
#   BROWSER_BUILD_TIMEOUT  seconds for building each example (default 1200)
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

# --- The examples ----------------------------------------------------------------------
cd "$ROOT"
echo "browser: building the example servers (cargo build --example mcp_server; cargo build -p tower-mcp-session-suite --example rmcp_server)"
if ! timeout "$BUILD_TIMEOUT" cargo build --quiet --example mcp_server; then
  check "cargo build --example mcp_server" false
  finish
fi
if ! timeout "$BUILD_TIMEOUT" cargo build --quiet -p tower-mcp-session-suite --example rmcp_server; then
  check "cargo build -p tower-mcp-session-suite --example rmcp_server" false
  finish
fi

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

# page SERVER_URL DIR: writes the test page for SERVER_URL into DIR. Answers may be JSON or
# SSE (rmcp answers requests as an SSE stream of one event): `message` reads either.
page() {
  mkdir -p "$2"
  cat >"$2/index.html" <<EOF
<!doctype html>
<html><head><meta charset="utf-8"><title>MCP over CORS</title></head>
<body><pre id="result">pending</pre>
<script>
const SERVER = "$1";
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
async function message(response) {
  const text = await response.text();
  if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    const data = text.split("\n").filter(l => l.startsWith("data:")).map(l => l.slice(5).trim())
      .filter(d => d.startsWith("{"));
    return JSON.parse(data[data.length - 1]);
  }
  return JSON.parse(text);
}
async function run() {
  const r = { origin: location.origin };
  try {
    const init = await rpc(null, { jsonrpc: "2.0", id: 1, method: "initialize", params: {
      protocolVersion: VERSION, capabilities: {}, clientInfo: { name: "chromium-page", version: "1" } } });
    r.initStatus = init.status;
    r.sessionId = init.headers.get("Mcp-Session-Id");
    r.initVersion = (await message(init)).result.protocolVersion;
    const note = await rpc(r.sessionId, { jsonrpc: "2.0", method: "notifications/initialized" });
    r.initializedStatus = note.status;
    r.increments = [];
    for (const id of [2, 3]) {
      const call = await rpc(r.sessionId, { jsonrpc: "2.0", id, method: "tools/call",
        params: { name: "increment", arguments: {} } });
      const answer = await message(call);
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
}

# run_against NAME SERVER_BINARY: serves the page from three origins against the server and
# checks each outcome.
run_against() {
  local name="$1" bin="$2"
  local server_port page_port other_port evil_port server allowed other evil
  server_port="$(free_port)"
  page_port="$(free_port)"
  other_port="$(free_port)"
  evil_port="$(free_port)"
  server="http://127.0.0.1:$server_port/mcp"
  allowed="http://127.0.0.1:$page_port"
  other="http://127.0.0.1:$other_port"
  evil="http://evil.localhost:$evil_port"
  local log="$WORK/$name-server.log"
  start "$log" env RUST_LOG=info,tower_http=debug,tower_mcp_session=debug \
    "$bin" --bind "127.0.0.1:$server_port" --allow-origin "$allowed"
  if ! wait_http "$server" 60; then
    check "$name: the server answers at $server" false
    cat "$log"
    return
  fi
  page "$server" "$WORK/$name-pages"
  local port
  for port in "$page_port" "$other_port" "$evil_port"; do
    start "$WORK/$name-page-$port.log" python3 -m http.server "$port" --bind 127.0.0.1 \
      --directory "$WORK/$name-pages"
  done
  if ! { wait_http "$allowed/" 15 && wait_http "$other/" 15 && wait_http "http://127.0.0.1:$evil_port/" 15; }; then
    check "$name: the page servers answer" false
    return
  fi

  echo "browser: $name: page from the allowed origin $allowed"
  local good bad rebound
  good="$(visit "$name-allowed" "$allowed/index.html")"
  echo "browser:   $good"
  check "$name: allowed origin: initialize answered 200" is "$(field "$good" 'r.get("initStatus")')" 200
  check "$name: allowed origin: Mcp-Session-Id readable by the script" \
    is "$(field "$good" 'len(r.get("sessionId") or "")')" 36
  check "$name: allowed origin: notifications/initialized answered 202" \
    is "$(field "$good" 'r.get("initializedStatus")')" 202
  check "$name: allowed origin: increment twice gives 1 then 2" \
    is "$(field "$good" 'r.get("increments")')" "['1', '2']"
  check "$name: allowed origin: DELETE answered 204" is "$(field "$good" 'r.get("deleteStatus")')" 204
  check "$name: allowed origin: the deleted session is gone (404)" \
    is "$(field "$good" 'r.get("afterDeleteStatus")')" 404
  check "$name: allowed origin: no script error" is "$(field "$good" 'r.get("error")')" None

  echo "browser: $name: page from the origin $other, not allowed"
  bad="$(visit "$name-other" "$other/index.html")"
  echo "browser:   $bad"
  check "$name: other origin: the page ran" is "$(field "$bad" 'r.get("origin")')" "$other"
  check "$name: other origin: fetch rejected (CORS)" \
    is "$(field "$bad" '(r.get("error") or "").split(":")[0]')" TypeError
  check "$name: other origin: no session id reached the script" is "$(field "$bad" 'r.get("sessionId")')" None

  echo "browser: $name: page from $evil, a foreign host that resolves to loopback"
  rebound="$(visit "$name-evil" "$evil/index.html")"
  echo "browser:   $rebound"
  check "$name: foreign host: the page ran" is "$(field "$rebound" 'r.get("origin")')" "$evil"
  check "$name: foreign host: fetch rejected" \
    is "$(field "$rebound" '(r.get("error") or "").split(":")[0]')" TypeError
  check "$name: foreign host: no session id reached the script" \
    is "$(field "$rebound" 'r.get("sessionId")')" None
  local refused
  refused="$(grep -c 'refused a request for a foreign host or origin' "$log" || true)"
  check "$name: server: the guard refused the foreign host's requests" test "$refused" -ge 1

  # One session, opened by the allowed page and closed by its DELETE (the layer's own log
  # lines, the same for both servers).
  local opened closed
  opened="$(grep -c 'tower_mcp_session::table: session opened' "$log" || true)"
  closed="$(grep -c 'tower_mcp_session::table: session closed.*reason=deleted' "$log" || true)"
  check "$name: server: exactly one session opened and it was closed by DELETE" \
    is "$opened/$closed" "1/1"
  if [ "$failed" -gt 0 ]; then
    echo "browser: $name: server log (last 30 lines):"
    tail -n 30 "$log"
  fi
}

run_against mcp_server "$ROOT/target/debug/examples/mcp_server"
run_against rmcp_server "$ROOT/target/debug/examples/rmcp_server"
finish
