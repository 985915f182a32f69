"""One module per upstream: httpx client + pydantic models + normalizer.

`CLIENTS` maps each Source to its client class; `build_clients` makes the configured ones.
"""
from __future__ import annotations

import httpx

from gateway.config import GatewayConfig
from gateway.domain.records import Source
from gateway.domain.tokens import TokenRegistry
from gateway.upstream.response_cache import Cache, InFlight
from gateway.sources.base import SourceClient
from gateway.upstream.pipeline import Upstream


def client_classes() -> dict[Source, type[SourceClient]]:
    from gateway.sources.calico.client import CalicoClient
    from gateway.sources.cobo.client import CoboClient
    from gateway.sources.cryptofuse.client import CryptofuseClient
    from gateway.sources.dalp.client import DalpClient
    from gateway.sources.onebalance.client import OneBalanceClient

    return {Source.CALICO: CalicoClient, Source.CRYPTOFUSE: CryptofuseClient,
            Source.ONEBALANCE: OneBalanceClient, Source.COBO: CoboClient, Source.DALP: DalpClient}


def build_clients(config: GatewayConfig, http: httpx.AsyncClient, registry: TokenRegistry,
                  cache: Cache | None = None) -> dict[Source, SourceClient]:
    """The configured sources' clients, each behind its own Upstream guard; one cache and
    one in-flight table for the process."""
    classes = client_classes()
    inflight = InFlight()
    return {source: classes[source](source_config, http, registry,
                                    Upstream(source, source_config, http, cache, inflight))
            for source in Source
            if (source_config := config.sources.get(source)) is not None}
