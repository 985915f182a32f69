"""A private simulators + gateway stack for tests that need their own config or process state."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from gateway.server.app import create_app
from gateway.config import GatewayConfig
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.conftest import GraphQLClient


@contextlib.contextmanager
def stack(sources: dict[str, Any] | None = None, per_source: dict[str, dict[str, Any]] | None = None,
          accounts: int = 0, **overrides: Any) -> Iterator[tuple[World, GraphQLClient, Any]]:
    """Simulators + one gateway; `sources` applies to every source block, `per_source` to one."""
    world = World.generate(accounts, size=6)
    with ServerThread(world.combined_app()) as sims:
        overrides.setdefault("limits", {"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        raw = world.config_dict(sims.url, **overrides)
        for name, block in raw["sources"].items():
            block.update({"timeout_s": 2.0, **(sources or {}), **(per_source or {}).get(name, {})})
        app = create_app(GatewayConfig.model_validate(raw))
        with ServerThread(app) as gateway:
            yield world, GraphQLClient(gateway.url), app


