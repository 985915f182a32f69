"""Pushing a holdings filter down to Calico, whose /assets takes start_time, end_time,
asset_symbols and crypto_sources.

The gateway always applies the filter itself too; the push-down changes what Calico
returns only where that matters:
- a time window always goes to Calico: which snapshot Calico answers with is Calico's to
  decide (`start_time`/`end_time`: "data fetched after/before this time");
- symbols and providers go to Calico only when its unfiltered answer hit the 100-row
  limit (possibly truncated): the filtered answer can hold rows the truncated one lost.
  Otherwise filtering the full answer here is the same result without another call.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.config import AccountConfig
from gateway.domain.errors import ClientCode
from gateway.domain.records import SourceFetch
from gateway.sources.catalog import Source
from resolvers.context import RequestContext
from resolvers.errors import client_error


def validate_window(f: Any) -> None:
    if f.updated_after and f.updated_before and f.updated_after > f.updated_before:
        raise client_error(ClientCode.BAD_USER_INPUT, "`updatedAfter` must not be later than `updatedBefore`")


def _ms(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def pushdown(f: Any, fetches: list[SourceFetch]) -> dict[str, Any] | None:
    """The Calico query parameters this filter calls for, or None when no extra call is useful."""
    if f.sources and Source.CALICO not in f.sources:
        return None
    window = f.updated_after is not None or f.updated_before is not None
    truncated = any(w.code == "POSSIBLY_TRUNCATED" for x in fetches if x.source is Source.CALICO for w in x.warnings)
    params: dict[str, Any] = {}
    if window:
        params.update(start_time_ms=_ms(f.updated_after), end_time_ms=_ms(f.updated_before))
    if window or truncated:
        if f.symbols:
            params["asset_symbols"] = tuple(sorted({s.upper() for s in f.symbols}))
        if f.providers:
            params["crypto_sources"] = tuple(sorted({p.lower() for p in f.providers}))
    return params or None


async def pushed_fetches(ctx: RequestContext, account: AccountConfig, params: dict[str, Any]) -> list[SourceFetch]:
    """Calico fetches with the filter pushed down (one per Calico identity, via the loader)."""
    client = ctx.state.clients.get(Source.CALICO)
    if client is None or account.calico is None:
        return []
    identities = [replace(identity, **params) for identity in client.identities(account)]
    fetches = [await ctx.loaders[Source.CALICO].load(identity) for identity in identities]
    ctx.note_failures(fetches)
    return fetches
