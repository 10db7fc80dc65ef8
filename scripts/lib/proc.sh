# Shell helpers shared by the project's scripts (source it; it defines functions and SERVER_PID).

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# stop_group PID [TENTHS]: stops a child started with setsid (its own process group): TERM to
# the group, up to TENTHS x 0.2 s (default 50: 10 s) for it to exit, then KILL; reaps it.
stop_group() {
  local pid="$1" tries="${2:-50}"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tries"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# http_answers PORT: whether anything speaks HTTP at 127.0.0.1:PORT/mcp (any status counts: a GET
# without a session is expected to be refused with a 4xx).
http_answers() {
  python3 - "$1" <<'PY' >/dev/null 2>&1
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/mcp", headers={"Accept": "text/event-stream"})
c.getresponse()
PY
}

# The one server a script starts in its own process group: set SERVER_PID; stop_server stops it
# (the script sets `trap stop_server EXIT`).
SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_group "$SERVER_PID"
  SERVER_PID=""
}

# need_package COMMAND PACKAGE: installs Debian's PACKAGE with apt-get when COMMAND is missing
# (as root, or through sudo); returns non-zero if that fails.
need_package() {
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] && return 0
  echo "installing Debian's $2 (apt-get)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
