"""A simulated exchange-rate provider for the demo and the tests: `GET /rates?base=USD&
symbols=EUR,GBP` -> `{"base", "at", "rates": {"EUR": "1.0850"}}` (decimal strings), with the
shared control routes (faults, latency, counters: gateway/simulation/control.py) and
`PUT /_rates` to change a quote while it runs."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.simulation.control import ControlledApp, SimControl


@dataclass
class Rates:
    base: str = "USD"
    # what one unit of each currency costs in `base`
    quotes: dict[str, Decimal] = field(default_factory=lambda: {"EUR": Decimal("1.0850"), "GBP": Decimal("1.2700"),
                                                                 "CHF": Decimal("1.1300")})
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _error(status: int, message: str) -> tuple[str, bytes]:
    return "application/json", json.dumps({"error": message}).encode()


def create_app(rates: Rates, control: SimControl | None = None) -> ControlledApp:
    async def quotes(request: Request) -> Response:
        base = request.query_params.get("base", rates.base).upper()
        if base != rates.base:
            return JSONResponse({"error": f"only base {rates.base}"}, status_code=400)
        symbols = [s.upper() for s in request.query_params.get("symbols", "").split(",") if s]
        chosen = {c: str(q) for c, q in rates.quotes.items() if not symbols or c in symbols}
        return JSONResponse({"base": base, "at": rates.at.isoformat().replace("+00:00", "Z"), "rates": chosen})

    async def set_quotes(request: Request) -> Response:
        body = await request.json()
        rates.quotes.update({c.upper(): Decimal(str(v)) for c, v in body.get("rates", {}).items()})
        rates.at = datetime.now(timezone.utc)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/rates", quotes, methods=["GET"]), Route("/_rates", set_quotes, methods=["PUT"])])
    return ControlledApp(app, control or SimControl(), _error)
