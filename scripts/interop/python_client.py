#!/usr/bin/env python3
"""Interop check: the official MCP Python SDK (``mcp`` 2.x) against our server.

Usage: python_client.py URL   (the MCP endpoint, e.g. http://127.0.0.1:3000/mcp;
                              a base URL such as http://127.0.0.1:3000 gets /mcp)

Uses the SDK's own Streamable HTTP client (``streamable_http_client`` under
``mcp.Client``) exactly as an application would, plus one raw HTTP request
(httpx2, a dependency of mcp 2.x) to probe a terminated session. Checks:

  1. two concurrent sessions get distinct, non-empty Mcp-Session-Id values
  2. session A: increment, increment -> "1", "2" (isError false)
  3. session B: increment -> "1" (counter is per session)
  4. test_simple_text -> not isError, text "This is a simple text response for testing."
  5. closing client A sends DELETE with A's session id, answered 200/204
  6. a raw POST carrying A's terminated session id is answered 404
  7. session B still works after A's deletion: increment -> "2"
  8. a new client gets a fresh session id and increment -> "1"

Prints one line per check and a final "python interop: N passed, M failed";
exits 1 if any check failed. Each step is time-bounded.

Environment: PY_MCP_MODE = "auto" (default: what mcp.Client does out of the
box: probe server/discover, fall back to initialize) or "legacy" (initialize
only). PY_MCP_STEP_TIMEOUT = seconds per step (default 30).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import version
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

SIMPLE_TEXT = "This is a simple text response for testing."
STEP_TIMEOUT = float(os.environ.get("PY_MCP_STEP_TIMEOUT", "30"))
MODE = os.environ.get("PY_MCP_MODE", "auto")


class CheckFailed(Exception):
    pass


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


@dataclass
class Wire:
    """What one client's HTTP client saw: session ids issued, DELETEs sent."""

    session_ids: list[str] = field(default_factory=list)
    deletes: list[tuple[str | None, int]] = field(default_factory=list)  # (session id sent, status)

    async def on_response(self, response: httpx2.Response) -> None:
        sid = response.headers.get("mcp-session-id")
        if sid and sid not in self.session_ids:
            self.session_ids.append(sid)
        if response.request.method == "DELETE":
            self.deletes.append((response.request.headers.get("mcp-session-id"), response.status_code))

    @property
    def session_id(self) -> str | None:
        return self.session_ids[-1] if self.session_ids else None


class Session:
    """One mcp.Client over streamable_http_client, with its wire observer.

    The client's context (it holds anyio task groups) lives in its own task,
    so sessions can be opened and closed in any order.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.wire = Wire()
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
                # The timeouts mcp's own default client uses (30 s, 300 s read for SSE);
                # the steps are bounded separately.
                http = httpx2.AsyncClient(
                    timeout=httpx2.Timeout(30.0, read=300.0),
                    event_hooks={"request": [], "response": [self.wire.on_response]},
                )
                # We own the httpx2 client (the transport leaves a provided client
                # open), so it is closed last, after the transport sent its DELETE.
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

    async def call_text(self, tool: str) -> str:
        assert self.client is not None
        result = await self.client.call_tool(tool, {})
        expect(not result.is_error, f"{tool} returned isError=true: {dump_content(result.content)}")
        texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
        expect(len(texts) > 0, f"{tool} returned no text content: {dump_content(result.content)}")
        return texts[0]

    async def increment(self) -> int:
        text = (await self.call_text("increment")).strip()
        try:
            return int(text)
        except ValueError:
            raise CheckFailed(f"increment returned non-integer text {text!r}") from None


def describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:500]


def dump_content(content: list[Any]) -> str:
    return repr([c.model_dump(mode="json", exclude_none=True) for c in content])[:300]


async def raw_post_status(url: str, session_id: str, protocol_version: str) -> tuple[int, str]:
    body = {"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-session-id": session_id,
        "mcp-protocol-version": protocol_version,
    }
    async with httpx2.AsyncClient(timeout=STEP_TIMEOUT) as http:
        response = await http.post(url, json=body, headers=headers)
        return response.status_code, response.text[:200]


async def run(url: str) -> int:
    results: list[tuple[str, bool, str]] = []
    state: dict[str, Any] = {}
    sessions: list[Session] = []

    async with anyio.create_task_group() as tg:

        def new_session() -> Session:
            s = Session(url)
            sessions.append(s)
            s.start(tg)
            return s

        async def check(name: str, fn: Callable[[], Awaitable[str]]) -> None:
            # Each check is bounded; a failed check does not stop the later ones
            # (those that need what it was meant to produce then fail too).
            try:
                with anyio.fail_after(STEP_TIMEOUT * 2):
                    detail = await fn()
                results.append((name, True, detail))
            except Exception as exc:  # noqa: BLE001 - report everything, timeouts included
                if isinstance(exc, CheckFailed):
                    detail = str(exc)
                else:
                    detail = describe(exc)
                    if os.environ.get("PY_MCP_TRACEBACK"):
                        traceback.print_exception(exc)
                results.append((name, False, detail))
            ok, detail = results[-1][1], results[-1][2]
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

        def need(key: str) -> Any:
            if key not in state:
                raise CheckFailed(f"not run: an earlier step did not produce {key!r}")
            return state[key]

        async def two_sessions() -> str:
            a, b = new_session(), new_session()  # both connect at the same time
            await a.wait_open()
            await b.wait_open()
            sid_a, sid_b = a.wire.session_id, b.wire.session_id
            expect(bool(sid_a) and bool(sid_b), f"missing Mcp-Session-Id (A={sid_a!r}, B={sid_b!r})")
            expect(sid_a != sid_b, f"both sessions got the same id {sid_a!r}")
            assert a.client is not None
            state.update(a=a, b=b, sid_a=sid_a, sid_b=sid_b, version=a.client.protocol_version)
            return f"A={sid_a} B={sid_b} protocol={state['version']}"

        async def increment_a() -> str:
            a: Session = need("a")
            values = [await a.increment(), await a.increment()]
            expect(values == [1, 2], f"A increments returned {values}, expected [1, 2]")
            return f"A: {values}"

        async def increment_b() -> str:
            b: Session = need("b")
            value = await b.increment()
            expect(value == 1, f"B increment returned {value}, expected 1 (counter must be per session)")
            return f"B: [{value}]"

        async def simple_text() -> str:
            a: Session = need("a")
            text = await a.call_text("test_simple_text")
            expect(text == SIMPLE_TEXT, f"text {text!r}, expected {SIMPLE_TEXT!r}")
            return repr(text)

        async def close_a() -> str:
            a: Session = need("a")
            sid_a = need("sid_a")
            await a.close()
            state["a_closed"] = True
            expect(len(a.wire.deletes) > 0, "closing the client sent no DELETE")
            sent, status = a.wire.deletes[-1]
            expect(sent == sid_a, f"DELETE carried session id {sent!r}, expected {sid_a!r}")
            expect(status in (200, 204), f"DELETE answered {status}, expected 204 (or 200)")
            return f"DELETE {sid_a} -> {status}"

        async def old_id_404() -> str:
            need("a_closed")
            status, text = await raw_post_status(url, need("sid_a"), need("version"))
            expect(status == 404, f"POST with terminated session id answered {status}, expected 404: {text!r}")
            return "POST tools/list with the terminated id -> 404"

        async def b_survives() -> str:
            b: Session = need("b")
            need("a_closed")
            value = await b.increment()
            expect(value == 2, f"B increment returned {value}, expected 2")
            return f"B: [1, {value}]"

        async def fresh_session() -> str:
            c = new_session()
            await c.wait_open()
            sid_c = c.wire.session_id
            expect(bool(sid_c), "no Mcp-Session-Id for the new session")
            expect(sid_c not in (state.get("sid_a"), state.get("sid_b")), f"new session reused id {sid_c!r}")
            value = await c.increment()
            expect(value == 1, f"new session increment returned {value}, expected 1")
            return f"C={sid_c}: [{value}]"

        await check("two concurrent sessions have distinct ids", two_sessions)
        await check("session A increments to 2", increment_a)
        await check("session B increments to 1", increment_b)
        await check("test_simple_text", simple_text)
        await check("closing client A sends DELETE", close_a)
        await check("terminated session id gets 404", old_id_404)
        await check("session B unaffected by A's deletion", b_survives)
        await check("new session starts at 1", fresh_session)

        # Close whatever is still open (B, C, or anything a failed step left).
        with anyio.move_on_after(STEP_TIMEOUT) as scope:
            for s in sessions:
                try:
                    await s.close()
                except Exception as exc:  # noqa: BLE001
                    print(f"note: closing a session raised {describe(exc)}", flush=True)
        if scope.cancelled_caught:
            print("note: sessions did not close in time; abandoning them", flush=True)
        tg.cancel_scope.cancel()

    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    print(f"python interop: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="MCP endpoint URL, e.g. http://127.0.0.1:3000/mcp")
    args = parser.parse_args()
    url = args.url
    if urlsplit(url).path in ("", "/"):  # a base URL: the endpoint is /mcp
        url = url.rstrip("/") + "/mcp"
    print(f"python interop: mcp {version('mcp')} (mode={MODE}) against {url}", flush=True)
    return anyio.run(run, url)


if __name__ == "__main__":
    sys.exit(main())
