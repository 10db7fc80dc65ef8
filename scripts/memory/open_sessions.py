#!/usr/bin/env python3
"""Opens N MCP sessions (initialize only, never closed) against URL over a few keep-alive
connections, bounded in time. Prints `opened=<n> failed=<n> seconds=<s> last_id=<id>`.

Usage: open_sessions.py URL N [THREADS] [DEADLINE_SECS] [KEEP_EVERY KEEP_FILE]

With KEEP_EVERY and KEEP_FILE, every KEEP_EVERY-th session id opened is written to KEEP_FILE
(one a line), for keep_alive.py to keep those sessions in use.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
total = int(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 300)
keep_every = int(sys.argv[5]) if len(sys.argv) > 6 else 0
kept = []

BODY = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "memory-load", "version": "1"}},
}).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

lock = threading.Lock()
state = {"opened": 0, "failed": 0, "last_id": ""}


def worker(count):
    conn = None
    for _ in range(count):
        if time.monotonic() > deadline:
            return
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            conn.request("POST", url.path, BODY, HEADERS)
            resp = conn.getresponse()
            resp.read()
            sid = resp.getheader("Mcp-Session-Id")
            ok = resp.status == 200 and sid
        except (OSError, http.client.HTTPException):
            ok, sid = False, None
            conn = None
        with lock:
            if ok:
                state["opened"] += 1
                if keep_every and state["opened"] % keep_every == 0:
                    kept.append(sid)
                else:
                    state["last_id"] = sid
            else:
                state["failed"] += 1


start = time.monotonic()
per = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]
workers = [threading.Thread(target=worker, args=(n,)) for n in per]
for w in workers:
    w.start()
for w in workers:
    w.join(max(0.0, deadline - time.monotonic()) + 15)
if keep_every:
    with open(sys.argv[6], "w") as f:
        f.write("".join(sid + "\n" for sid in kept))
print(f"opened={state['opened']} failed={state['failed']} "
      f"seconds={time.monotonic() - start:.1f} last_id={state['last_id']}")
sys.exit(0 if state["failed"] == 0 and state["opened"] == total else 1)
