#!/usr/bin/env python3
"""Multi-node check: one session of the official MCP Python SDK (``mcp`` 2.x) through a
load balancer that sends consecutive requests to different nodes (run.sh drives it).

Usage: client.py URL STEP...

URL is the balancer's MCP endpoint. The session is opened (initialize, initialized) before
the first step; the steps then run in order:

  check:NAME=TEXT  starts a check; the previous one is reported (one PASS/FAIL line each)
  inc              calls the ``increment`` tool: the text must be the previous value + 1
                   (the first call: 1); the session's counter is shared by every node
  inc:NODE         the same, and the answer must come from NODE (the X-Multinode-Server
                   header the balancer sets to the name of the server that answered)
  both             the increments of the current check were answered by both nodes a and b;
                   if only one node answered them, up to 3 times: a ping (it moves the
                   balancer's round robin on by one) and one more increment (the SDK may send
                   more than one POST per call, e.g. tools/list before its first tools/call,
                   so the node a call lands on depends on what went before)
  pause:NAME       prints "PAUSE NAME" and waits for a line on stdin: "GO" goes on, "ABORT
                   REASON" fails the current check with REASON and skips the remaining steps
  close            closes the client: its DELETE carries the session id, answered 200/204

Throughout, every HTTP answer to a request that carries the session id is watched: a 404
(the session was declared unknown) or, for POST and DELETE, any status other than 2xx fails
the check that is running. Other statuses of the SDK's background GET stream (it reconnects
on its own when the node holding it goes away) are printed as notes.

Prints "PASS NAME: detail" / "FAIL NAME: detail" for each check, "note: ..." lines, and
"multinode client: N passed, M failed"; exits 1 if a check failed. Every step is bounded.

Environment: PY_MCP_MODE = auto (default, mcp.Client's default) or legacy;
PY_MCP_STEP_TIMEOUT = seconds per step (default 30); MULTINODE_PAUSE_TIMEOUT = seconds a
pause waits for its answer (default 90).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

STEP_TIMEOUT = float(os.environ.get("PY_MCP_STEP_TIMEOUT", "30"))
PAUSE_TIMEOUT = float(os.environ.get("MULTINODE_PAUSE_TIMEOUT", "90"))
MODE = os.environ.get("PY_MCP_MODE", "auto")
SERVER_HEADER = "x-multinode-server"


def say(line: str) -> None:
    # One write per line: run.sh reads the lines as they come.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:400]


@dataclass
class Check:
    name: str
    text: str
    problems: list[str] = field(default_factory=list)
    skipped: int = 0  # increments not run because the session broke before
    served: list[str] = field(default_factory=list)  # "value@node" per increment
    nodes: set[str] = field(default_factory=set)


@dataclass
class Answer:
    method: str
    status: int
    node: str


class Wire:
    """Every HTTP answer the SDK's client got, and the rule on those of the session."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.session_id: str | None = None
        self.deletes: list[tuple[str | None, int]] = []
        self.check: Check | None = None  # the check running when an answer arrives
        self.outside: list[str] = []  # problems seen while no check was running

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        method = request.method
        status = response.status_code
        node = response.headers.get(SERVER_HEADER, "?")
        self.answers.append(Answer(method, status, node))
        sid = response.headers.get("mcp-session-id")
        if sid and self.session_id is None:
            self.session_id = sid
        sent = request.headers.get("mcp-session-id")
        if method == "DELETE":
            self.deletes.append((sent, status))
        if not sent:
            return
        problem = None
        if status == 404:
            problem = f"{method} with the session id answered 404 by node {node}"
        elif method in ("POST", "DELETE") and not 200 <= status < 300:
            problem = f"{method} with the session id answered {status} by node {node}"
        elif method == "GET" and not 200 <= status < 300:
            say(f"note: the SDK's GET stream was answered {status} by node {node}")
        if problem is not None:
            (self.check.problems if self.check is not None else self.outside).append(problem)


class Session:
    """One mcp.Client over streamable_http_client; its context lives in its own task (it
    holds anyio task groups), so that closing it is a step like the others."""

    def __init__(self, url: str, wire: Wire) -> None:
        self.url = url
        self.wire = wire
        self.client: Client | None = None
        self.open_error: BaseException | None = None
        self.close_error: BaseException | None = None
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._done = anyio.Event()

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._run)

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                http = httpx2.AsyncClient(
                    timeout=httpx2.Timeout(30.0, read=300.0),
                    event_hooks={"request": [], "response": [self.wire.on_response]},
                )
                await stack.enter_async_context(http)
                transport = streamable_http_client(self.url, http_client=http)
                client = Client(transport, mode=MODE, read_timeout_seconds=STEP_TIMEOUT)
                self.client = await stack.enter_async_context(client)
                self._ready.set()
                await self._stop.wait()
                self.client = None
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on this session
            if self._ready.is_set():
                self.close_error = exc
            else:
                self.open_error = exc
        finally:
            self.client = None
            self._ready.set()
            self._done.set()

    async def wait_open(self) -> None:
        await self._ready.wait()
        if self.open_error is not None:
            raise self.open_error

    async def close(self) -> None:
        self._stop.set()
        await self._done.wait()
        if self.close_error is not None:
            raise self.close_error

    async def ping(self) -> None:
        if self.client is None:
            raise RuntimeError("the session is not open")
        await self.client.send_ping()

    async def increment(self) -> int:
        if self.client is None:
            raise RuntimeError("the session is not open")
        result = await self.client.call_tool("increment", {})
        texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
        if result.is_error or not texts:
            raise RuntimeError(f"increment answered isError={result.is_error}, texts {texts!r}")
        try:
            return int(texts[0].strip())
        except ValueError:
            raise RuntimeError(f"increment answered the non-integer text {texts[0]!r}") from None


async def read_answer() -> str:
    """One line from stdin (run.sh's answer to a pause), bounded by PAUSE_TIMEOUT."""
    with anyio.fail_after(PAUSE_TIMEOUT):
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    if not line:
        return "ABORT run.sh closed the control pipe"
    return line.strip()


async def run(url: str, steps: list[str]) -> int:
    wire = Wire()
    checks: list[Check] = []
    reported: list[bool] = []
    last = 0  # the counter value of the last increment answered
    broken: str | None = None  # why the remaining increments cannot run
    aborted: str | None = None

    def report(check: Check) -> None:
        if check.skipped:
            check.problems.append(f"{check.skipped} increment(s) not run: {broken}")
        ok = not check.problems
        detail = "; ".join(check.problems) if check.problems else check.text
        served = f" [{', '.join(check.served)}]" if check.served else ""
        say(f"{'PASS' if ok else 'FAIL'} {check.name}: {detail}{served}")
        reported.append(ok)

    def current() -> Check:
        if not checks:  # steps before any check: an unnamed one
            checks.append(Check("client", "session steps"))
            wire.check = checks[-1]
        return checks[-1]

    def last_post_node(mark: int) -> str:
        posts = [a for a in wire.answers[mark:] if a.method == "POST"]
        return posts[-1].node if posts else "?"

    async def increment(check: Check, node_wanted: str) -> None:
        nonlocal broken, last
        if broken is not None:
            check.skipped += 1
            return
        mark = len(wire.answers)
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                value = await session.increment()
        except Exception as exc:  # noqa: BLE001 - timeouts included
            traceback.print_exception(exc)  # to stderr: run.sh's multinode-client.log
            broken = f"increment {last + 1} failed in check {check.name}: {describe(exc)}"
            check.problems.append(broken)
            return
        node = last_post_node(mark)
        check.served.append(f"{value}@{node}")
        check.nodes.add(node)
        if value != last + 1:
            check.problems.append(f"increment answered {value}, expected {last + 1}")
        if node_wanted and node != node_wanted:
            check.problems.append(f"increment {value} answered by node {node}, expected {node_wanted}")
        last = value

    async with anyio.create_task_group() as tg:
        session = Session(url, wire)
        session.start(tg)
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                await session.wait_open()
            say(f"note: session {wire.session_id} open (protocol {session.client.protocol_version})")
        except Exception as exc:  # noqa: BLE001 - timeouts included
            broken = f"the session did not open: {describe(exc)}"
            say(f"note: {broken}")

        for step in steps:
            if aborted is not None:
                break
            kind, _, arg = step.partition(":")
            if kind == "check":
                if checks:
                    report(checks[-1])
                name, _, text = arg.partition("=")
                checks.append(Check(name, text or name))
                wire.check = checks[-1]
                continue
            check = current()
            if kind == "inc":
                await increment(check, arg)
            elif kind == "both":
                for _ in range(3):
                    if {"a", "b"} <= check.nodes or broken is not None:
                        break
                    mark = len(wire.answers)
                    try:
                        with anyio.fail_after(STEP_TIMEOUT):
                            await session.ping()
                    except Exception as exc:  # noqa: BLE001 - timeouts included
                        broken = f"ping failed in check {check.name}: {describe(exc)}"
                        check.problems.append(broken)
                        break
                    check.served.append(f"ping@{last_post_node(mark)}")
                    await increment(check, "")
                if broken is None and not {"a", "b"} <= check.nodes:
                    check.problems.append(
                        f"the increments were answered by {sorted(check.nodes) or 'no node'}, "
                        "expected both a and b (is the balancer round robin without stickiness?)"
                    )
            elif kind == "pause":
                say(f"PAUSE {arg}")
                try:
                    answer = await read_answer()
                except TimeoutError:
                    answer = f"ABORT no answer to pause {arg} within {PAUSE_TIMEOUT:.0f}s"
                if answer != "GO":
                    reason = answer.removeprefix("ABORT").strip() or f"pause {arg} aborted"
                    check.problems.append(reason)
                    aborted = reason
            elif kind == "close":
                if session.client is None and broken is not None:
                    check.problems.append(f"close not run: {broken}")
                    continue
                try:
                    with anyio.fail_after(STEP_TIMEOUT):
                        await session.close()
                except Exception as exc:  # noqa: BLE001 - timeouts included
                    check.problems.append(f"closing the client raised {describe(exc)}")
                broken = broken or "the client was closed"
                if not wire.deletes:
                    check.problems.append("closing the client sent no DELETE")
                else:
                    sent, status = wire.deletes[-1]
                    if sent != wire.session_id:
                        check.problems.append(f"DELETE carried {sent!r}, expected {wire.session_id!r}")
                    if status not in (200, 204):
                        check.problems.append(f"DELETE answered {status}, expected 204 (or 200)")
                    else:
                        check.served.append(f"DELETE {status}")
            else:
                check.problems.append(f"unknown step {step!r}")

        if checks:
            report(checks[-1])
        if wire.outside:
            say("FAIL session: " + "; ".join(wire.outside))
            reported.append(False)
        # Checks the abort left unreached are reported too, so that none goes missing.
        if aborted is not None:
            names = [s.partition(":")[2].partition("=")[0] for s in steps if s.startswith("check:")]
            for name in names[len(checks):]:
                say(f"FAIL {name}: not run: {aborted}")
                reported.append(False)

        with anyio.move_on_after(STEP_TIMEOUT) as scope:
            try:
                await session.close()
            except Exception as exc:  # noqa: BLE001
                say(f"note: closing the session raised {describe(exc)}")
        if scope.cancelled_caught:
            say("note: the session did not close in time; abandoning it")
        tg.cancel_scope.cancel()

    passed = sum(reported)
    failed = len(reported) - passed
    say(f"multinode client: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    url, steps = sys.argv[1], sys.argv[2:]
    # The SDK's own log (GET stream reconnections and the like) goes to stderr, which run.sh
    # keeps in .interop/logs/multinode-client.log; MULTINODE_CLIENT_DEBUG=1 for more.
    level = logging.DEBUG if os.environ.get("MULTINODE_CLIENT_DEBUG") else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpcore2").setLevel(logging.INFO)
    if urlsplit(url).path in ("", "/"):  # a base URL: the endpoint is /mcp
        url = url.rstrip("/") + "/mcp"
    say(f"note: mcp {version('mcp')} (mode={MODE}) against {url}")
    return anyio.run(run, url, steps)


if __name__ == "__main__":
    sys.exit(main())
