#!/usr/bin/env bash
# Run the official MCP Python SDK client (python_client.py) against a running
# MCP Streamable HTTP server.
#
# Usage: scripts/interop/python.sh URL
#   URL is the MCP endpoint (http://127.0.0.1:3000/mcp) or a base URL
#   (http://127.0.0.1:3000), to which /mcp is appended. MCP_URL may be set
#   instead of passing an argument.
#
# Creates (idempotently) a venv in .interop/venv (gitignored) with the exact
# versions in requirements.txt beside this script (mcp 2.x and its pinned
# dependency closure), then runs python_client.py in it.
#
# Environment:
#   INTEROP_DIR      where the venv lives (default: <repo>/.interop)
#   PYTHON           interpreter used to create the venv (default: python3)
#   PY_MCP_MODE      auto (default, mcp.Client's default) or legacy
#   PY_MCP_STEP_TIMEOUT  seconds per client step (default 30)
#   PY_MCP_TIMEOUT   outer bound for the whole client run in seconds (default 300)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
INTEROP_DIR="${INTEROP_DIR:-$ROOT/.interop}"
VENV="$INTEROP_DIR/venv"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="$SCRIPT_DIR/requirements.txt"
STAMP="$VENV/.installed"

die() { echo "python.sh: $*" >&2; exit 2; }

URL="${1:-${MCP_URL:-}}"
[ -n "$URL" ] || die "usage: $0 URL   (e.g. http://127.0.0.1:3000/mcp)"
if [[ "$URL" =~ ^https?://[^/]+/?$ ]]; then
  URL="${URL%/}/mcp"
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
want="$( { "$PYTHON" -c 'import sys; print(sys.version)'; cat "$REQUIREMENTS"; } | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "python: venv already set up in $VENV"
else
  echo "python: creating $VENV with $("$PYTHON" --version) and $(grep -E '^mcp==' "$REQUIREMENTS")"
  rm -rf "$VENV"
  mkdir -p "$INTEROP_DIR"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQUIREMENTS"
  echo "$want" >"$STAMP"
fi

exec timeout --kill-after=10 "${PY_MCP_TIMEOUT:-300}" \
  "$VENV/bin/python" "$SCRIPT_DIR/python_client.py" "$URL"
