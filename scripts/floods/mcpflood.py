#!/usr/bin/env python3
"""Load generators for the flood scenarios (scripts/floods/*.sh). Python 3.11, stdlib only,
asyncio over raw sockets, loopback only. Every loop is bounded in count and in time.

Subcommands (each prints `key=value` lines and one `RESULT {json}` line, exit 0):

  park   PORT PID   2,000 parked initialize bodies beside a normal client (scenario 1)
  lockout PORT      attacker fills the table from 127.0.0.2-11, a client from 127.0.0.1
                    opens and calls a tool 20 times (scenario 2, --variant evict|perclient)
  evict  PORT       100k sessions, then opens at full rate beside a latency pool (scenario 3)
  pool   PORT IDS   (internal) calls `increment` on the ids in file IDS, records latencies

The verdicts are taken by the shell scripts from the RESULT line.
"""
import argparse
import asyncio
import json
import os
import socket
import sys
import time

PROTO = "2025-11-25"
INIT_BODY = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": PROTO, "capabilities": {},
               "clientInfo": {"name": "floods", "version": "1"}},
}, separators=(",", ":")).encode()


def init_request(port):
    return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {len(INIT_BODY)}\r\n\r\n").encode() + INIT_BODY


def call_request(port, sid, rid=2):
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": "increment", "arguments": {}}},
                      separators=(",", ":")).encode()
    return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: {PROTO}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def get_request(port, sid):
    return (f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            f"Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: {PROTO}\r\n\r\n").encode()


def tool_text(body):
    """The text of a tools/call result (JSON or one SSE event), or None."""
    try:
        if body.startswith(b"event:") or body.startswith(b"data:"):
            body = next(l for l in body.split(b"\n") if l.startswith(b"data:"))[5:]
        return json.loads(body)["result"]["content"][0]["text"]
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return None


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def ms(x):
    return None if x is None else round(x * 1000, 3)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Conn:
    """One HTTP/1.1 connection from a chosen 127.x.y.z source address, with a response
    parser that reads large chunks (fast enough to pipeline tens of thousands a second)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.buf = bytearray()

    @classmethod
    async def open(cls, port, src="127.0.0.1", timeout=5.0):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            sock.bind((src, 0))
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    def send(self, data):
        self.writer.write(data)

    def close(self):
        try:
            self.writer.transport.abort()
        except Exception:
            pass

    async def _fill(self):
        chunk = await self.reader.read(1 << 18)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    async def response(self, head_only=False):
        """(status, headers-lowercased bytes, body). With head_only, returns after the head
        (for a GET stream)."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            await self._fill()
        head = bytes(self.buf[:i]).lower()
        status = int(head[9:12])
        del self.buf[:i + 4]
        if head_only:
            return status, head, b""
        j = head.find(b"\r\ncontent-length:")
        if j >= 0:
            k = head.find(b"\r\n", j + 2)
            n = int(head[j + 17:k if k >= 0 else len(head)])
            while len(self.buf) < n:
                await self._fill()
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return status, head, body
        if b"transfer-encoding: chunked" in head:
            body = bytearray()
            while True:
                while (k := self.buf.find(b"\r\n")) < 0:
                    await self._fill()
                n = int(bytes(self.buf[:k]).split(b";")[0], 16)
                while len(self.buf) < k + 2 + n + 2:
                    await self._fill()
                body += self.buf[k + 2:k + 2 + n]
                del self.buf[:k + 2 + n + 2]
                if n == 0:
                    return status, head, bytes(body)
        return status, head, b""


def header(head, name):
    j = head.find(b"\r\n" + name + b":")
    if j < 0:
        return None
    k = head.find(b"\r\n", j + 2)
    return head[j + 3 + len(name):k if k >= 0 else len(head)].strip().decode()


async def open_one(port, src="127.0.0.1", timeout=5.0):
    """Opens one session on a fresh connection: (status, id, seconds, conn)."""
    t0 = time.monotonic()
    conn = await Conn.open(port, src, timeout)
    conn.send(init_request(port))
    status, head, _ = await asyncio.wait_for(conn.response(), timeout)
    return status, header(head, b"mcp-session-id"), time.monotonic() - t0, conn, head


async def call(conn, port, sid, timeout=5.0):
    t0 = time.monotonic()
    conn.send(call_request(port, sid))
    status, _, body = await asyncio.wait_for(conn.response(), timeout)
    return status, tool_text(body), time.monotonic() - t0


async def opener(port, src, deadline, count, window, out):
    """Opens up to `count` sessions on one keep-alive connection, `window` pipelined at a
    time, until `deadline`. Appends ids to out['ids'], counts statuses."""
    req = init_request(port)
    conn = None
    done = 0
    while done < count and time.monotonic() < deadline:
        try:
            if conn is None:
                conn = await Conn.open(port, src)
            n = min(window, count - done)
            conn.send(req * n)
            for _ in range(n):
                status, head, _ = await asyncio.wait_for(conn.response(), 10)
                out["status"][status] = out["status"].get(status, 0) + 1
                if status == 200:
                    out["ids"].append(header(head, b"mcp-session-id"))
                elif status == 429:
                    out["retry_after"].append(header(head, b"retry-after"))
                done += 1
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
            out["errors"] += 1
            if conn:
                conn.close()
            conn = None
            await asyncio.sleep(0.01)
    if conn:
        conn.close()


def new_out():
    return {"ids": [], "status": {}, "errors": 0, "retry_after": []}


async def open_many(port, total, srcs, conns, window, seconds):
    """Opens `total` sessions over `conns` connections spread over `srcs`; returns
    (out, seconds taken)."""
    out = new_out()
    deadline = time.monotonic() + seconds
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    t0 = time.monotonic()
    await asyncio.gather(*(opener(port, srcs[i % len(srcs)], deadline, per[i], window, out)
                           for i in range(conns)))
    return out, time.monotonic() - t0


# ---------------------------------------------------------------- scenario 1: parked bodies

async def park(args):
    port, pid = args.port, args.pid
    log = {"rss_baseline_kib": rss_kib(pid), "rss_max_kib": 0}
    stop = asyncio.Event()

    async def sample_rss():
        while not stop.is_set():
            r = rss_kib(pid)
            if r:
                log["rss_max_kib"] = max(log["rss_max_kib"], r)
            await asyncio.sleep(0.1)

    pad_len = 60000
    prefix = INIT_BODY[:-1] + b',"pad":"'
    body = prefix + b"x" * (pad_len - len(prefix) - 3) + b'"}}'
    assert len(body) == pad_len
    head = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Length: {pad_len}\r\n\r\n").encode()
    outcome = {}
    by_group = {"slow": {}, "fast": {}}

    async def trickler(i):
        # Even connections trickle a few bytes at a time (slow loris, meets the deadline);
        # odd ones a KiB at a time (together they meet the budget first).
        group = "slow" if i % 2 == 0 else "fast"
        step = args.slow_bytes if group == "slow" else args.fast_bytes
        src = f"127.0.{1 + i // 250}.{2 + i % 250}"
        try:
            conn = await Conn.open(port, src, timeout=10)
        except (OSError, asyncio.TimeoutError) as e:
            kind = f"connect-failed:{type(e).__name__}"
            outcome[kind] = outcome.get(kind, 0) + 1
            by_group[group][kind] = by_group[group].get(kind, 0) + 1
            return
        t_end = time.monotonic() + args.seconds
        answer = asyncio.ensure_future(conn.response(head_only=True))
        kind = None
        try:
            conn.send(head)
            sent = 0
            while time.monotonic() < t_end and not answer.done() and sent < pad_len - 1:
                n = min(step, pad_len - 1 - sent)  # never the last byte
                conn.send(body[sent:sent + n])
                sent += n
                await asyncio.wait([answer], timeout=args.interval)
            try:
                status, _, _ = await asyncio.wait_for(answer, 3)
                kind = str(status)
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                kind = "closed"
            except asyncio.TimeoutError:
                kind = "no-answer"
        except (ConnectionError, OSError):
            kind = "closed"
        finally:
            answer.cancel()
            conn.close()
        outcome[kind] = outcome.get(kind, 0) + 1
        by_group[group][kind] = by_group[group].get(kind, 0) + 1

    normal = {"opens": 0, "open_fail": [], "calls": 0, "call_fail": [], "lat": []}

    async def normal_client():
        await asyncio.sleep(1.0)  # the attack is under way
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            conn = None
            try:
                status, sid, dt, conn, _ = await open_one(port, timeout=5)
                normal["opens"] += 1
                normal["lat"].append(dt)
                if status != 200 or not sid:
                    normal["open_fail"].append(status)
                    conn.close()
                    await asyncio.sleep(0.2)
                    continue
                for expect in range(1, 11):  # ten calls a session, one each ~200 ms
                    await asyncio.sleep(0.2)
                    status, text, dt = await call(conn, port, sid)
                    normal["calls"] += 1
                    normal["lat"].append(dt)
                    if status != 200 or text != str(expect):
                        normal["call_fail"].append([status, text, expect])
                    if time.monotonic() >= end:
                        break
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                normal["open_fail"].append(type(e).__name__)
                await asyncio.sleep(0.2)
            finally:
                if conn:
                    conn.close()

    sampler = asyncio.ensure_future(sample_rss())
    t0 = time.monotonic()
    tasks = []
    for i in range(args.conns):
        tasks.append(asyncio.ensure_future(trickler(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.02)
    await asyncio.gather(normal_client(), *tasks)
    stop.set()
    await sampler
    lat = normal.pop("lat")
    result = {
        **log, "rss_rise_kib": log["rss_max_kib"] - (log["rss_baseline_kib"] or 0),
        "trickle": outcome, "trickle_by_group": by_group, "normal": normal,
        "normal_p50_ms": ms(pct(lat, 50)), "normal_max_ms": ms(max(lat) if lat else None),
        "seconds": round(time.monotonic() - t0, 1),
    }
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- scenario 2: lock-out

async def lockout(args):
    port = args.port
    attackers = [f"127.0.0.{i}" for i in range(2, 12)]
    legit = {"open_s": [], "fails": [], "ok": 0, "retried_503": 0}
    streams = []  # open GET streams of the attacker (connections)

    async def hold_stream(sid, src):
        if args.no_streams:
            return False
        try:
            conn = await Conn.open(port, src)
            conn.send(get_request(port, sid))
            status, _, _ = await asyncio.wait_for(conn.response(head_only=True), 5)
            if status == 200:
                streams.append(conn)
                return True
            conn.close()
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
            pass
        return False

    if args.variant == "evict":
        # Fill: 1,000 sessions from ten addresses, half of them holding a GET stream.
        out, secs = await open_many(port, args.fill, attackers, 10, 50, 30)
        held = 0
        ids = out["ids"]
        for k in range(0, len(ids) // 2, 50):
            got = await asyncio.gather(*(hold_stream(sid, attackers[(k + j) % 10])
                                         for j, sid in enumerate(ids[k:min(k + 50, len(ids) // 2)])))
            held += sum(got)
        fill = {"opened": len(ids), "status": out["status"], "seconds": round(secs, 2),
                "streams": held}
    else:
        # One address opens more than its share: 429 with Retry-After past it.
        out, secs = await open_many(port, args.fill, attackers[:1], 2, 25, 30)
        fill = {"opened": len(out["ids"]), "status": out["status"], "seconds": round(secs, 2),
                "retry_after": sorted(set(out["retry_after"]))}

    stop = asyncio.Event()
    refill = {"rounds": 0, "status": {}, "streams_opened": 0}

    async def refiller():
        # Keeps re-filling: rounds of 100 opens (half with a GET stream), bounded in count.
        r = 0
        while not stop.is_set() and r < args.refill_rounds:
            r += 1
            srcs = attackers if args.variant == "evict" else attackers[:1]
            o, _ = await open_many(port, 100, srcs, 2, 25, 5)
            for s, n in o["status"].items():
                refill["status"][s] = refill["status"].get(s, 0) + n
            if args.variant == "evict":
                # Streams of evicted sessions ended: drop their connections; keep <= 600.
                while len(streams) > 550:
                    streams.pop(0).close()
                got = await asyncio.gather(*(hold_stream(sid, srcs[j % len(srcs)])
                                             for j, sid in enumerate(o["ids"][:50])))
                refill["streams_opened"] += sum(got)
            refill["rounds"] = r
            await asyncio.sleep(0.01)

    rtask = asyncio.ensure_future(refiller())
    await asyncio.sleep(0.2)
    for attempt in range(args.tries):
        conn = None
        try:
            # A 503 at the limit despite eviction (concurrent opens race for the freed slot,
            # README Reliability, Floods) is retried at once, within the same 1 s, and counted.
            t0 = time.monotonic()
            for _ in range(3):
                status, sid, _, conn, _ = await open_one(port, "127.0.0.1", timeout=5)
                if status != 503:
                    break
                legit["retried_503"] += 1
                conn.close()
                conn = None
            dt = time.monotonic() - t0
            legit["open_s"].append(round(dt, 4))
            if status != 200 or not sid:
                legit["fails"].append([attempt, "open", status])
                continue
            status, text, _ = await call(conn, port, sid)
            if status != 200 or text != "1":
                legit["fails"].append([attempt, "call", status, text])
            elif dt >= 1.0:
                legit["fails"].append([attempt, "slow-open", dt])
            else:
                legit["ok"] += 1
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
            legit["fails"].append([attempt, type(e).__name__])
        finally:
            if conn:
                conn.close()
        await asyncio.sleep(args.gap)
    stop.set()
    await rtask
    for c in streams:
        c.close()
    result = {"variant": args.variant, "fill": fill, "refill": refill, "legit": legit,
              "legit_max_open_ms": ms(max(legit["open_s"]) if legit["open_s"] else None)}
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- scenario 3: eviction at scale

async def run_pool(port, ids, seconds, until=None):
    """Runs `pool` in another process (so its latencies are not the opener's event loop's)
    for `seconds`, or until the future `until` is done (then it is told to stop: SIGTERM)."""
    path = f"/tmp/floods-pool-{os.getpid()}-{time.monotonic_ns()}.ids"
    with open(path, "w") as f:
        f.write("\n".join(ids))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "pool", str(port), path, "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE)
    done = asyncio.ensure_future(proc.communicate())
    if until is not None:
        await asyncio.wait([done, until], return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            proc.terminate()
    out, _ = await done
    os.unlink(path)
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": "pool printed no result", "ok": 0, "bad": ["no result"]}


async def pool(args):
    port = args.port
    with open(args.ids) as f:
        ids = [l.strip() for l in f if l.strip()]
    lat, bad = [], []
    counts = {sid: 0 for sid in ids}
    await asyncio.sleep(0.3)  # let the opener ramp up
    end = time.monotonic() + args.seconds
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stopped.set)
    n_conns = min(10, len(ids))

    async def worker(k):
        mine = ids[k::n_conns]
        conn = await Conn.open(port)
        i = 0
        while time.monotonic() < end and not stopped.is_set():
            sid = mine[i % len(mine)]
            i += 1
            try:
                status, text, dt = await call(conn, port, sid)
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                bad.append([sid[:8], type(e).__name__])
                conn.close()
                conn = await Conn.open(port)
                continue
            counts[sid] += 1
            lat.append(dt)
            if status != 200 or text != str(counts[sid]):
                bad.append([sid[:8], status, text, counts[sid]])
            await asyncio.sleep(args.pace)
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(n_conns)))
    print("RESULT " + json.dumps({
        "calls": len(lat), "bad": bad[:20], "bad_count": len(bad),
        "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "max_ms": ms(max(lat) if lat else None)}))


async def evict(args):
    port = args.port
    srcs = [f"127.0.{a}.{b}" for a in range(1, 3) for b in range(1, 9)]
    res = {}

    async def phase(name, seconds, pool_ids, count=10_000_000):
        # Opens at full rate for `seconds` (at most `count`) beside a pool calling tools on
        # `pool_ids`.
        opened = asyncio.ensure_future(
            open_many(port, count, srcs, args.conns, args.window, seconds))
        pr = await run_pool(port, pool_ids, seconds, until=opened)
        out, secs = await opened
        res[name] = {"opens": len(out["ids"]), "status": out["status"], "errors": out["errors"],
                     "seconds": round(secs, 2), "opens_per_s": round(len(out["ids"]) / secs),
                     "pool": pr}
        return out["ids"]

    # 0. The pool alone: what latency this machine gives without the open load.
    quiet_pool, _ = await open_many(port, 50, srcs, 5, 10, 10)
    res["quiet"] = {"pool": await run_pool(port, quiet_pool["ids"], 2)}
    base_pool, _ = await open_many(port, 50, srcs, 5, 10, 10)
    # 1. Baseline: into the empty table (no eviction), the same load as phase 3, stopped well
    # before the limit (at 40 %) so that no open evicts.
    first = await phase("empty", args.phase_secs, base_pool["ids"], int(args.max_sessions * 0.4))
    # 2. Fill to the limit (minus the 50 opened last), as fast as possible, bounded in time.
    have = 100 + len(first)
    need = max(0, args.max_sessions - 50 - have)
    out, secs = await open_many(port, need, srcs, args.conns, args.window, args.fill_secs)
    res["fill"] = {"opened": len(out["ids"]) + have, "status": out["status"],
                   "errors": out["errors"], "seconds": round(secs, 2),
                   "opens_per_s": round(len(out["ids"]) / secs) if secs else None}
    existing, _ = await open_many(port, 50, srcs, 5, 10, 10)
    res["fill"]["opened"] += len(existing["ids"])
    res["existing"] = len(existing["ids"])
    # 3. At the limit: every open evicts one session.
    await phase("full", args.phase_secs, existing["ids"])
    # 4. The 50 existing sessions are all still there; the oldest ones were evicted.
    alive, gone = 0, 0
    conn = await Conn.open(port)
    for sid in existing["ids"]:
        status, _, _ = await call(conn, port, sid)
        alive += status == 200
    for sid in first[:200]:
        status, _, _ = await call(conn, port, sid)
        gone += status == 404
    conn.close()
    res["existing_alive"] = alive
    res["oldest_200_evicted"] = gone
    res["ratio_full_over_empty"] = round(res["full"]["opens_per_s"] / max(1, res["empty"]["opens_per_s"]), 3)
    print("RESULT " + json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("park")
    p.add_argument("port", type=int)
    p.add_argument("pid", type=int)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--slow-bytes", type=int, default=4)
    p.add_argument("--fast-bytes", type=int, default=1024)
    p = sub.add_parser("lockout")
    p.add_argument("port", type=int)
    p.add_argument("--variant", choices=["evict", "perclient"], required=True)
    p.add_argument("--fill", type=int, default=1000)
    p.add_argument("--tries", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.1)
    p.add_argument("--refill-rounds", type=int, default=200)
    p.add_argument("--no-streams", action="store_true", help="attacker holds no GET stream")
    p = sub.add_parser("evict")
    p.add_argument("port", type=int)
    p.add_argument("--max-sessions", type=int, default=100_000)
    p.add_argument("--phase-secs", type=float, default=10)
    p.add_argument("--fill-secs", type=float, default=60)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--window", type=int, default=64)
    p = sub.add_parser("pool")
    p.add_argument("port", type=int)
    p.add_argument("ids")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--pace", type=float, default=0.02)
    args = ap.parse_args()
    asyncio.run({"park": park, "lockout": lockout, "evict": evict, "pool": pool}[args.cmd](args))


if __name__ == "__main__":
    main()
