"""Pushing a holdings filter down to Calico, whose /assets takes start_time, end_time,
asset_symbols and crypto_sources.

The gateway always applies the filter itself too; the push-down changes what Calico
returns only where that matters:
- a time window always goes to Calico: which snapshot Calico answers with is Calico's to
  decide (`start_time`/`end_time`: "data fetched after/before this time");
- symbols and providers go to Calico only when its unfiltered answer hit the 100-row
  limit (possibly truncated): the filtered answer can hold rows the truncated one lost.
  Otherwise filtering the full answer here is the same result without another call.

The filter `f` is the resolvers' holdings selection: `sources`, `symbols`, `providers`,
`updated_after`, `updated_before` (resolvers/calico_window.py reads it from GraphQL).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from gateway.domain.records import SourceFetch
from gateway.sources.base import ConfiguredAccount
from gateway.sources.calico.client import CalicoClient, CalicoIdentity


def inverted(updated_after: datetime | None, updated_before: datetime | None) -> bool:
    """A window that ends before it starts (Calico would be asked for nothing sensible)."""
    return bool(updated_after and updated_before and updated_after > updated_before)


def _ms(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def pushdown(f: Any, fetches: list[SourceFetch]) -> dict[str, Any] | None:
    """The Calico query parameters this filter calls for, or None when no extra call is useful."""
    calico = CalicoClient.source
    if f.sources and calico not in f.sources:
        return None
    window = f.updated_after is not None or f.updated_before is not None
    truncated = any(w.code == "POSSIBLY_TRUNCATED" for x in fetches if x.source is calico for w in x.warnings)
    params: dict[str, Any] = {}
    if window:
        params.update(start_time_ms=_ms(f.updated_after), end_time_ms=_ms(f.updated_before))
    if window or truncated:
        if f.symbols:
            params["asset_symbols"] = tuple(sorted({s.upper() for s in f.symbols}))
        if f.providers:
            params["crypto_sources"] = tuple(sorted({p.lower() for p in f.providers}))
    return params or None


def pushed_identities(client: CalicoClient, account: ConfiguredAccount, params: dict[str, Any]) -> list[CalicoIdentity]:
    """The account's Calico identities with the filter pushed down (one fetch each)."""
    return [replace(identity, **params) for identity in client.identities(account)]
