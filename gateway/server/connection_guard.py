"""Read deadlines and a header-size cap for uvicorn's HTTP/1.1 connections.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) and, with h11 only,
the size of an incomplete request head; it has no deadline for reading a request. A
client sending one header line every few seconds, or a body one byte at a time, holds a
connection (and a `limit_concurrency` slot) for as long as it likes. The protocols here
are uvicorn's own (httptools, or h11 when httptools is missing) with three more limits:

- `header_timeout_s`: from the connection's opening, or the first byte of a later
  request on it, until the end of that request's head;
- `body_timeout_s`: from the end of the head until the end of the body;
- `max_header_bytes`: the bytes a request head may take (httptools has no limit).

A request over a deadline is answered `408` (over the size, `431`) with a GraphQL-shaped
JSON body when nothing else is being answered on the connection, and the connection is
closed; a connection that never sends a byte is closed without an answer. The protocols
see only what uvicorn's parsers report: a new request cycle once a head is complete, and
whether its body is still coming (`cycle.more_body`).
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, NamedTuple

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.support import safe_json

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:   # httptools is optional for uvicorn: then h11 serves
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
HEADERS_TOO_LARGE = "REQUEST_HEADERS_TOO_LARGE"


class ReadLimits(NamedTuple):
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int


def _refusal(status: int, reason: str, code: str, message: str) -> bytes:
    body = safe_json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _ReadDeadlines:
    """Mixed into a uvicorn HTTP protocol (its `cycle`, `transport`, `loop` are used)."""

    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, limits: ReadLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None   # "head" | "body" | None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._await("head", self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._awaiting is None and not self._body_coming():
            self._await("head", self._limits.header_timeout_s)   # the first bytes of the next request
        if self._awaiting == "head":
            self._head_bytes += len(data)
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._stop()
        elif self.cycle is not before:   # a request head is complete
            self._stop()
            if self._body_coming():
                self._await("body", self._limits.body_timeout_s)
        elif self._awaiting == "body" and not self._body_coming():
            self._stop()
        elif self._awaiting == "head" and self._head_bytes > self._limits.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large", HEADERS_TOO_LARGE,
                         f"the request head is over {self._limits.max_header_bytes} bytes")

    def _body_coming(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body

    def _await(self, what: str, seconds: float) -> None:
        self._stop()
        self._awaiting = what
        self._head_bytes = 0
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._awaiting = None

    def _expired(self, what: str) -> None:
        self._timer = None
        self._awaiting = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:   # closed, or upgraded
            return
        if what == "head" and self._head_bytes == 0:
            self.transport.close()   # opened and never used: no request to answer
            return
        seconds = self._limits.header_timeout_s if what == "head" else self._limits.body_timeout_s
        self._refuse(408, "Request Timeout", REQUEST_TIMEOUT, f"the request {what} did not arrive within {seconds:g} s",
                     head=what == "head")

    def _refuse(self, status: int, reason: str, code: str, message: str, *, head: bool = True) -> None:
        self._stop()
        cycle = self.cycle
        # Answered only when nothing else is on the way: a head's refusal after the previous
        # response, a body's before the app starts answering the request.
        if (cycle is None or cycle.response_complete) if head else not cycle.response_started:
            self.transport.write(_refusal(status, reason, code, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True   # the app's receive() says http.disconnect; what it sends is dropped
            cycle.message_event.set()
        self.transport.close()


class GuardedH11Protocol(_ReadDeadlines, H11Protocol):
    pass


if HttpToolsProtocol is not None:
    class GuardedHttpToolsProtocol(_ReadDeadlines, HttpToolsProtocol):
        pass
else:
    GuardedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def protocol_factory(limits: ReadLimits, http: str = "auto") -> Any:
    """What uvicorn's `http=` option takes: a picklable callable making a guarded protocol
    (uvicorn passes it to worker processes)."""
    if http == "httptools" or (http == "auto" and GuardedHttpToolsProtocol is not None):
        if GuardedHttpToolsProtocol is None:
            raise RuntimeError("httptools is not installed")
        return functools.partial(GuardedHttpToolsProtocol, limits=limits)
    return functools.partial(GuardedH11Protocol, limits=limits)


def uvicorn_options(server: Any, http: str = "auto") -> dict[str, Any]:
    """The uvicorn options for a `[server]` config: keep-alive, the connection cap, the
    h11 head limit and the guarded protocol."""
    limits = ReadLimits(server.header_timeout_s, server.body_timeout_s, server.max_header_bytes)
    return {"timeout_keep_alive": server.keep_alive_timeout_s, "limit_concurrency": server.max_connections,
            "h11_max_incomplete_event_size": server.max_header_bytes, "http": protocol_factory(limits, http)}
