"""Latency, fault injection and request counters shared by every simulator.

`ControlledApp` wraps one simulator's ASGI app. Besides the upstream's own routes it
answers `/_control/*` so a test in another process can steer it over HTTP:

    GET    /_control/stats            -> {"requests": n, "by_path": {...}, "log": [...]}
    POST   /_control/reset            clear counters, faults and latency
    POST   /_control/faults           add a Fault (JSON body, fields as below)
    DELETE /_control/faults           clear faults
    PUT    /_control/latency          {"seconds": 0.05}
    POST   /_control/balances         {"factor": "1.5"}: every balance this simulator holds,
                                      for every account, times the factor (values with them)
"""
from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import parse_qsl

# (status, message) -> (content type, body) in the upstream's own error shape.
ErrorShape = Callable[[int, str], tuple[str, bytes]]

FAULT_KINDS = ("status", "delay", "malformed", "wrong_shape", "huge", "disconnect")


@dataclass
class Fault:
    kind: str                       # one of FAULT_KINDS
    status: int = 503               # for "status"
    retry_after: int | None = None  # seconds, sent as Retry-After with "status"
    delay_s: float = 0.0            # for "delay" (then answers normally)
    times: int | None = None        # how many requests it hits; None = until cleared
    path: str | None = None         # only requests whose path contains this
    # Text put in the injected error body: distinctive, so tests can prove it never leaks.
    message: str = "injected fault (upstream error body)"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass
class SimControl:
    latency_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    by_path: collections.Counter = field(default_factory=collections.Counter)
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))

    def reset(self) -> None:
        self.latency_s = 0.0
        self.faults.clear()
        self.requests = 0
        self.by_path.clear()
        self.log.clear()

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path and fault.path not in path:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    def record(self, method: str, path: str, query: str) -> None:
        self.requests += 1
        self.by_path[path] += 1
        self.log.append({"method": method, "path": path, "params": parse_qsl(query, keep_blank_values=True)})

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_path": dict(self.by_path), "log": list(self.log),
                "latency_s": self.latency_s, "faults": [asdict(f) for f in self.faults]}


# Scales every balance of a simulator's dataset by a factor; returns the rows changed.
BalanceScaler = Callable[[Decimal], int]


class ControlledApp:
    """ASGI wrapper: control routes, request counting, latency and injected faults."""

    def __init__(self, app: Any, control: SimControl, error_shape: ErrorShape,
                 scale_balances: BalanceScaler | None = None):
        self.app = app
        self.control = control
        self.error_shape = error_shape
        self.scale_balances = scale_balances

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if "/_control/" in path:
            await self._control(scope, receive, send, path.split("/_control/", 1)[1])
            return
        self.control.record(scope["method"], path, scope.get("query_string", b"").decode("latin-1"))
        if self.control.latency_s:
            await asyncio.sleep(self.control.latency_s)
        fault = self.control.take_fault(path)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
            await self.app(scope, receive, send)
        elif fault.kind == "status":
            ctype, body = self.error_shape(fault.status, fault.message)
            headers = [(b"content-type", ctype.encode())]
            if fault.retry_after is not None:
                headers.append((b"retry-after", str(fault.retry_after).encode()))
            await _respond(send, fault.status, body, headers)
        elif fault.kind == "malformed":
            await _respond(send, 200, b'{"data": [{"truncated', [(b"content-type", b"application/json")])
        elif fault.kind == "wrong_shape":
            await _respond(send, 200, b'{"unexpected": [1, 2, 3], "data": "nope"}',
                           [(b"content-type", b"application/json")])
        elif fault.kind == "huge":
            body = b'{"padding": "' + b"x" * (64 * 1024 * 1024) + b'"}'
            await _respond(send, 200, body, [(b"content-type", b"application/json")])
        elif fault.kind == "disconnect":
            # Start a response and break off mid-body: the client sees a broken connection.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
            raise ConnectionAbortedError("simulated disconnect")

    async def _control(self, scope: dict, receive: Callable, send: Callable, action: str) -> None:
        method = scope["method"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body) if body else {}
            if action == "stats" and method == "GET":
                result: Any = self.control.stats()
            elif action == "reset" and method == "POST":
                self.control.reset()
                result = {"ok": True}
            elif action == "faults" and method == "POST":
                self.control.add_fault(Fault(**payload))
                result = {"ok": True}
            elif action == "faults" and method == "DELETE":
                self.control.faults.clear()
                result = {"ok": True}
            elif action == "latency" and method == "PUT":
                self.control.latency_s = float(payload["seconds"])
                result = {"ok": True}
            elif action == "balances" and method == "POST" and self.scale_balances is not None:
                factor = Decimal(str(payload["factor"]))
                if not factor.is_finite() or factor < 0:
                    raise ValueError("factor must be a non-negative number")
                result = {"ok": True, "rows": self.scale_balances(factor)}
            else:
                await _respond(send, 404, b'{"error": "no such control route"}',
                               [(b"content-type", b"application/json")])
                return
        except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
            await _respond(send, 400, json.dumps({"error": str(exc)}).encode(),
                           [(b"content-type", b"application/json")])
            return
        await _respond(send, 200, json.dumps(result, default=str).encode(),
                       [(b"content-type", b"application/json")])


async def _respond(send: Callable, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
