"""The HTTP exchange-rate provider (`[fx.provider]`), read in the background.

Quotes are fetched at startup and every `refresh_every_s` through an `Upstream` (cache,
retries, breaker, concurrency limit, response size cap: the sources' own machinery), and
kept in the FxTable. A request never waits for the provider: it converts with the quotes
held then. When the provider fails, the last quotes stay in use until they are older than
`max_quote_age_s`, then they are dropped (totals needing them say complete: false). A bad
answer is logged by kind only, never its body.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx

from gateway.domain import money
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.records import FxRate, SourceFetch, SourceId, SourceState
from gateway.fx.config import CURRENCY, FxProviderConfig, parse_rate
from gateway.fx.rates import PROVIDER, FxTable
from gateway.upstream.pipeline import FetchOptions, Upstream
from gateway.upstream.resilience import Deadline
from gateway.upstream.response_cache import InFlight

log = logging.getLogger("gateway.fx")


class FxUpstream(SourceId):
    """The provider's name in the upstream machinery's metrics and messages."""
    FX = ("FX", "the exchange-rate provider")


class BadQuotes(ValueError):
    """The provider's answer is not the documented shape."""


def parse_quotes(body: bytes, base: str, wanted: list[str]) -> list[FxRate]:
    try:
        data = money.loads(body)
        if not isinstance(data, dict) or str(data.get("base", "")).upper() != base:
            raise BadQuotes("base")
        at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise BadQuotes("at")
        rates = data["rates"]
        if not isinstance(rates, dict):
            raise BadQuotes("rates")
    except (KeyError, ValueError, TypeError) as exc:
        raise BadQuotes(type(exc).__name__) from None
    out = []
    for currency, text in rates.items():
        code = str(currency).upper()
        if code not in wanted or code == base or not CURRENCY.match(code):
            continue
        if not isinstance(text, (str, Decimal)) or isinstance(text, bool):
            raise BadQuotes("rate")
        out.append(FxRate(base=code, quote=base, rate=parse_rate(str(text)), at=at.astimezone(timezone.utc),
                          source=PROVIDER))
    return out


class FxProvider:
    def __init__(self, config: FxProviderConfig, http: httpx.AsyncClient, table: FxTable, cache: Any = None):
        self.config = config
        self.table = table
        self.upstream = Upstream(FxUpstream.FX, config, http, cache, InFlight())
        self.fetched_at: datetime | None = None
        self.task: asyncio.Task | None = None
        self.failures = 0

    async def refresh(self, quiet: bool = False) -> bool:
        """One read of the quotes into the table; False (logged) when it failed."""
        wanted = [c for c in self.config.currencies if c != self.config.base]
        fetch = SourceFetch(source=FxUpstream.FX, account_id="", state=SourceState.OK)
        ok = False
        try:
            live = await self.upstream.get(fetch, f"{self.config.base_url}/rates",
                                           {"base": self.config.base, "symbols": ",".join(wanted)}, None,
                                           FetchOptions(deadline=Deadline.after(self.config.timeout_s * 3)))
            if not 200 <= live.status < 300:
                raise UpstreamError(UpstreamCode.BAD_RESPONSE, f"status {live.status}", status=live.status)
            quotes = parse_quotes(live.body, self.config.base, wanted)
            self.table.quoted = {(r.base, r.quote): r for r in quotes}
            self.fetched_at = datetime.now(timezone.utc)
            ok = True
        except (UpstreamError, BadQuotes) as exc:
            self.failures += 1
            code = exc.code.value if isinstance(exc, UpstreamError) else "UPSTREAM_BAD_RESPONSE"
            (log.info if quiet else log.warning)("fx: the rate provider failed (%s); keeping quotes younger than %.0fs",
                        code, self.config.max_quote_age_s)
            self._drop_old()
        finally:
            await self.upstream.finish(fetch, ok)
        return ok

    def _drop_old(self) -> None:
        now = datetime.now(timezone.utc)
        self.table.quoted = {k: r for k, r in self.table.quoted.items()
                             if (now - r.at).total_seconds() <= self.config.max_quote_age_s}

    async def run_forever(self, read_now: bool = False) -> None:
        """Reads every refresh_every_s; after a failure, sooner (1 s, doubling up to that)."""
        wait = 0.0 if read_now else self.config.refresh_every_s
        retry = 1.0
        while True:
            await asyncio.sleep(wait)
            if await self.refresh():
                wait, retry = self.config.refresh_every_s, 1.0
            else:
                wait, retry = min(retry, self.config.refresh_every_s), min(retry * 2, self.config.refresh_every_s)

    def start(self, read_now: bool = False) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run_forever(read_now), name="fx-provider")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
