"""Calico's part of a holdings filter, resolver side: refusing an inverted window as a
client error, and reading the pushed-down fetches through the request's loaders. What
is pushed down, and when, is Calico's (gateway/sources/calico/window.py).
"""
from __future__ import annotations

from typing import Any

from gateway.config import AccountConfig
from gateway.domain.errors import ClientCode
from gateway.domain.records import SourceFetch
from gateway.sources.calico.window import inverted, pushdown, pushed_identities
from gateway.sources.catalog import Source
from resolvers.context import RequestContext
from resolvers.errors import client_error

__all__ = ["validate_window", "pushdown", "pushed_fetches"]


def validate_window(f: Any) -> None:
    if inverted(f.updated_after, f.updated_before):
        raise client_error(ClientCode.BAD_USER_INPUT, "`updatedAfter` must not be later than `updatedBefore`")


async def pushed_fetches(ctx: RequestContext, account: AccountConfig, params: dict[str, Any]) -> list[SourceFetch]:
    """Calico fetches with the filter pushed down (one per Calico identity, via the loader)."""
    client = ctx.state.clients.get(Source.CALICO)
    if client is None or account.calico is None:
        return []
    fetches = [await ctx.loaders.load(Source.CALICO, identity) for identity in pushed_identities(client, account, params)]
    ctx.note_failures(fetches)
    return fetches
