"""Per-request dataloaders: one upstream fetch per (source, identity), however often asked.

A loader per source is keyed by that source's identities (frozen dataclasses). Every
identity requested in the same tick is fetched concurrently in one batch, and the
loader's cache makes later asks in the same request free. Loaders are created per
request (in get_context), never shared, so one caller never sees another's cache.
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiodataloader import DataLoader

from gateway.domain.records import SourceFetch
from gateway.sources.catalog import Source
from gateway.sources.base import SourceClient
from gateway.upstream.pipeline import FetchOptions

def source_loader(client: SourceClient, asked: dict[str, FetchOptions], default: FetchOptions) -> DataLoader:
    """`asked` is the request's account id -> options map (filled by viewer/account/accounts);
    holding it rather than the context keeps the context free of reference cycles, so a
    finished request is freed by reference counting instead of the garbage collector."""
    async def batch(identities: list[Any]) -> list[SourceFetch]:
        return list(await asyncio.gather(*(client.fetch(identity, asked.get(identity.account_id, default))
                                           for identity in identities)))
    return DataLoader(batch)


def make_loaders(clients: dict[Source, SourceClient], asked: dict[str, FetchOptions],
                 default: FetchOptions) -> dict[Source, DataLoader]:
    return {source: source_loader(client, asked, default) for source, client in clients.items()}
