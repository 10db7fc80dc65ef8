#!/usr/bin/env python3
"""Keeps the sessions listed in ID_FILE in use: pings each every PERIOD seconds, for
DURATION seconds, over one keep-alive connection. Prints `pinged=<n> failed=<n>`.

Usage: keep_alive.py URL ID_FILE PERIOD DURATION
"""
import http.client
import sys
import time
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
ids = [line.strip() for line in open(sys.argv[2]) if line.strip()]
period, duration = float(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + duration
pinged = failed = 0
conn = None
while time.monotonic() < end:
    start = time.monotonic()
    for sid in ids:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            conn.request("POST", url.path, '{"jsonrpc":"2.0","id":1,"method":"ping"}', {
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                pinged += 1
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
            conn = None
    time.sleep(max(0.0, period - (time.monotonic() - start)))
print(f"pinged={pinged} failed={failed}")
sys.exit(0 if failed == 0 else 1)
