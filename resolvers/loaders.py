"""Per-request dataloaders: one upstream fetch per (source, identity), however often asked.

A loader per source is keyed by that source's identities (frozen dataclasses). Every
identity requested in the same tick is fetched concurrently in one batch, and the
loader's cache makes later asks in the same request free. Loaders are created per
request (in get_context), never shared, so one caller never sees another's cache.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from aiodataloader import DataLoader

from gateway.records import Source, SourceFetch
from gateway.sources.base import SourceClient
from gateway.upstream import CURRENT_OPTIONS, FetchOptions

OptionsFor = Callable[[str], FetchOptions]   # account id -> what the request asks of its reads


def source_loader(client: SourceClient, options_for: OptionsFor) -> DataLoader:
    async def one(identity: Any) -> SourceFetch:
        # Runs in its own task (gather), so this setting stays with this fetch.
        CURRENT_OPTIONS.set(options_for(identity.account_id))
        return await client.fetch(identity)

    async def batch(identities: list[Any]) -> list[SourceFetch]:
        return list(await asyncio.gather(*(one(identity) for identity in identities)))
    return DataLoader(batch)


def make_loaders(clients: dict[Source, SourceClient], options_for: OptionsFor) -> dict[Source, DataLoader]:
    return {source: source_loader(client, options_for) for source, client in clients.items()}
