"""The five upstream simulators in their own process, for the performance bench.

    .venv/bin/python -m bench.sims --port 9100 --accounts 200 [--large]

Serves the same deterministic world as `bench.common.build_world` (the bench builds it too,
to write the gateway's config), each simulator under `/<source>`, so the gateway's upstreams
do not share the bench client's or the gateway's interpreter. Besides each simulator's own
`/_control/*` routes it answers, for the bench only:

    GET /_bench/ready        -> {"digest": ...}  digest of the world's config (both sides must agree)
    GET /_bench/log?clear=1  -> {"calls": [[start, end, source, path, query, credential], ...]}
    PUT /_bench/latency      {"seconds": 0.05}   the same added latency on every simulator
    PUT /_bench/replay       {"on": true}        see `Replay`
    POST /_bench/reset       counters, faults, latency and the call log cleared

`start`/`end` are `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process of
this machine), taken around the simulator's whole handling of one request, latency included:
the bench compares them with its own request times to find the gateway's overhead.
`credential` is a short hash of the auth headers: it tells identities apart, nothing more.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from collections import deque
from typing import Any, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from bench.common import build_world, world_digest
from gateway.sources.catalog import Source
from gateway.simulation.world import World

AUTH_HEADERS = (b"authorization", b"x-api-key")


class Replay:
    """Memoizes a simulator's 200 answers by (path, query, credential) while `on`.

    Sits inside the simulator's ControlledApp, so counters, latency and faults still apply
    to every request; only building the JSON body is skipped on a repeat. Real upstreams
    spend their own CPU, not ours: on a 2-core box the simulators would otherwise take CPU
    from the gateway under load. The data is static, so a replay is byte-identical.
    """

    def __init__(self, app: Any, switch: dict[str, bool]):
        self.app = app
        self.switch = switch
        self.memo: dict[tuple, list[dict]] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.switch["on"]:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        key = (scope["path"], scope.get("query_string", b""), tuple(headers.get(h) for h in AUTH_HEADERS))
        messages = self.memo.get(key)
        if messages is not None:
            for message in messages:
                await send(message)
            return
        recorded: list[dict] = []

        async def recording_send(message: dict) -> None:
            recorded.append(message)
            await send(message)
        await self.app(scope, receive, recording_send)
        if recorded and recorded[0].get("status") == 200 and len(self.memo) < 50_000:
            self.memo[key] = recorded


class CallLog:
    """ASGI wrapper: one entry per upstream request, with its monotonic start and end."""

    def __init__(self, app: Any):
        self.app = app
        self.calls: deque = deque(maxlen=200_000)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or "/_control/" in path or path.startswith("/_bench"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        headers = dict(scope.get("headers") or [])
        credential = hashlib.sha256(b"\n".join(headers.get(h, b"") for h in AUTH_HEADERS)).hexdigest()[:12]
        source = path.strip("/").split("/", 1)[0]
        try:
            await self.app(scope, receive, send)
        finally:
            self.calls.append((started, time.monotonic(), source, path,
                               scope.get("query_string", b"").decode("latin-1"), credential))


def create_sims_app(world: World) -> Any:
    switch = {"on": False}
    controlled = {}
    for source in Source:
        app = world.app(source)          # a ControlledApp: counters, latency, faults
        app.app = Replay(app.app, switch)
        controlled[source] = app
    digest = world_digest(world)
    log: CallLog

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"digest": digest})

    async def call_log(request: Request) -> JSONResponse:
        calls = list(log.calls)
        if request.query_params.get("clear"):
            log.calls.clear()
        return JSONResponse({"calls": calls})

    async def latency(request: Request) -> JSONResponse:
        seconds = float((await request.json())["seconds"])
        for control in world.controls.values():
            control.latency_s = seconds
        return JSONResponse({"ok": True})

    async def replay(request: Request) -> JSONResponse:
        switch["on"] = bool((await request.json())["on"])
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> JSONResponse:
        for control in world.controls.values():
            control.reset()
        log.calls.clear()
        return JSONResponse({"ok": True})

    routes = [Route("/_bench/ready", ready), Route("/_bench/log", call_log),
              Route("/_bench/latency", latency, methods=["PUT"]), Route("/_bench/replay", replay, methods=["PUT"]),
              Route("/_bench/reset", reset, methods=["POST"]),
              *(Mount(f"/{source.key}", app=app) for source, app in controlled.items())]
    log = CallLog(Starlette(routes=routes))
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sims", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--large", action="store_true", help="add the large account (bench.common.LARGE)")
    args = parser.parse_args(argv)
    app = create_sims_app(build_world(args.accounts, large=args.large))
    # The same uvicorn settings as `python -m gateway serve` (uvloop, httptools, no access log).
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
