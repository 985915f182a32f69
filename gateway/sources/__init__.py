"""One folder per upstream (gateway/sources/<name>/): its spec, client, config models,
simulator and anything else specific to it. The catalog (catalog.py) lists them.

`client_classes` maps each Source to its client class; `build_clients` makes the configured ones.
"""
from __future__ import annotations

from typing import Any, Protocol

import httpx

from gateway.domain.tokens import TokenRegistry
from gateway.upstream.response_cache import Cache, InFlight
from gateway.sources.base import SourceClient
from gateway.sources.catalog import SPEC_OF, Source
from gateway.upstream.pipeline import Upstream


class _Configured(Protocol):
    """The part of gateway.config.GatewayConfig read here."""
    @property
    def sources(self) -> Any: ...


def client_classes() -> dict[Source, type[SourceClient]]:
    return {source: spec.client for source, spec in SPEC_OF.items()}


def build_clients(config: _Configured, http: httpx.AsyncClient, registry: TokenRegistry,
                  cache: Cache | None = None) -> dict[Source, SourceClient]:
    """The configured sources' clients, each behind its own Upstream guard; one cache and
    one in-flight table for the process."""
    inflight = InFlight()
    return {source: spec.client(source_config, http, registry,
                                Upstream(source, source_config, http, cache, inflight))
            for source, spec in SPEC_OF.items()
            if (source_config := config.sources.get(source)) is not None}
