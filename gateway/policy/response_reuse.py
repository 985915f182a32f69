"""Answering a request with another one's response, after the gate has admitted it.

Two ways, both for the *same* request only (same caller, method, query string, body,
Content-Type and Accept), and both only with a response that has no errors:

- a kept response (policy/kept_responses.py), while every memoised upstream read behind
  it is unchanged;
- an identical request already running (coalescing): the newcomer waits for that
  response instead of executing the same operation again. Its data is then at most one
  request-duration older than its arrival, as with the upstream in-flight de-duplication
  it extends (upstream/response_cache.py InFlight). If the running request fails, is cancelled or
  answers with errors, each waiting request runs on its own.
"""
from __future__ import annotations

import asyncio
from typing import Any

from gateway.policy.kept_responses import KeptResponses
from gateway.upstream.ledger import ReadLedger

Shared = tuple[list[tuple[bytes, bytes]], bytes]   # headers (without the request id), body


class ResponseReuse:
    def __init__(self, app: Any, results: KeptResponses | None, *, coalesce: bool):
        self.app = app
        self.results = results
        self.coalesce = coalesce
        self.running: dict[tuple, asyncio.Future[Shared | None]] = {}
        self.metrics: Any = None   # the app's GatewayMetrics, set by create_app

    @property
    def enabled(self) -> bool:
        return self.results is not None or self.coalesce

    async def __call__(self, scope: dict, receive: Any, send: Any, key: tuple, body: bytes,
                       ledger: ReadLedger) -> None:
        """`ledger`: what this request reads (set by the gate for Upstream to fill in)."""
        if self.results is not None:
            stored = self.results.lookup(key)
            if stored is not None:
                self.metrics.response_cache("hit")
                await _send(send, stored.headers, stored.body)
                return
        if self.coalesce:
            running = self.running.get(key)
            if running is not None:
                shared = await asyncio.shield(running)
                if shared is not None:
                    self.metrics.response_cache("coalesced")
                    await _send(send, *shared)
                    return
        await self._run(scope, receive, send, key, body, ledger)

    async def _run(self, scope: dict, receive: Any, send: Any, key: tuple, body: bytes, ledger: ReadLedger) -> None:
        """Run the request; share its response with identical requests that arrive meanwhile,
        and keep it if it came wholly from memoised reads."""
        leader: asyncio.Future[Shared | None] | None = None
        if self.coalesce and key not in self.running:
            leader = self.running[key] = asyncio.get_running_loop().create_future()
        shared: Shared | None = None
        breakers = self.results.breaker_states() if self.results is not None else ()
        try:
            captured = _Captured(send)
            await self.app(scope, _replay(body, receive), captured)
            # a mutation (ledger.uncacheable) is never handed to an identical request waiting
            if captured.status == 200 and captured.complete and scope["state"].get("clean_result") \
                    and not ledger.uncacheable:
                shared = (captured.headers, b"".join(captured.body))
        finally:
            if leader is not None:
                del self.running[key]
                leader.set_result(shared)
        if shared is not None and self.results is not None and self.results.store(key, ledger, breakers, *shared):
            self.metrics.response_cache("stored")
        else:
            self.metrics.response_cache("miss")


async def _send(send: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that hands over the body already read, then defers to the real one."""
    pending = True

    async def wrapped() -> dict:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return wrapped


class _Captured:
    """A send() that passes everything on and remembers the response (status, headers, body)."""
    __slots__ = ("send", "status", "headers", "body", "complete")

    def __init__(self, send: Any):
        self.send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))   # before the request id is added to them
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        await self.send(message)
