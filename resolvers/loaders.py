"""Per-request reads: one upstream fetch per (source, identity), however often asked.

One dataloader per request, keyed by (source, identity) (identities are frozen
dataclasses): every read asked in the same tick, whatever its source, is fetched
concurrently in one batch, and the loader's cache makes later asks in the same request
free. The loader is created per request (in get_context), never shared, so one caller
never sees another's cache.
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiodataloader import DataLoader

from gateway.domain.records import SourceFetch
from gateway.sources.catalog import Source
from gateway.sources.base import SourceClient
from gateway.upstream.pipeline import FetchOptions


class Loaders:
    """The request's reads. `asked` is the request's account id -> options map (filled by
    viewer/account/accounts); holding it rather than the context keeps the context free of
    reference cycles, so a finished request is freed by reference counting instead of the
    garbage collector."""

    def __init__(self, clients: dict[Source, SourceClient], asked: dict[str, FetchOptions], default: FetchOptions):
        async def batch(keys: list[tuple[Source, Any]]) -> list[SourceFetch | Exception]:
            fetches = await asyncio.gather(*(clients[source].fetch(identity, asked.get(identity.account_id, default))
                                             for source, identity in keys), return_exceptions=True)
            for fetch in fetches:
                if isinstance(fetch, BaseException) and not isinstance(fetch, Exception):
                    raise fetch   # cancelled: the whole batch is
            return fetches        # an exception (a bug: fetch never raises) fails its own key only
        self._loader: DataLoader = DataLoader(batch)

    def load(self, source: Source, identity: Any) -> asyncio.Future[SourceFetch]:
        return self._loader.load((source, identity))

    def prime(self, source: Source, identity: Any, fetch: SourceFetch) -> None:
        self._loader.prime((source, identity), fetch)
