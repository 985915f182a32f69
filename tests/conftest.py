"""Shared fixtures: the simulators and the gateway, each a real uvicorn server on loopback."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.records import Source
from gateway.serving import ServerThread
from gateway.simulators.world import World

ADMIN_KEY = "admin-key-for-tests"


@pytest.fixture(scope="session")
def demo_world() -> World:
    return World.generate(2, size=8)


@pytest.fixture(scope="session")
def sims(demo_world: World):
    with ServerThread(demo_world.combined_app()) as server:
        yield server


@pytest.fixture(scope="session")
def gateway_config(demo_world: World, sims: ServerThread):
    # No cache here: these tests count upstream calls per request (tests/test_resilience_e2e.py caches).
    raw = demo_world.config_dict(sims.url, auth={"admin_keys": [ADMIN_KEY]}, server={"graphiql": True, "introspection": True},
                                 cache={"enabled": False},
                                 # tests fire requests far faster than a client should
                                 limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
    for block in raw["sources"].values():
        # Deterministic per test: no retries, no breaker carried from one test to the next.
        block.update(timeout_s=1.0, max_retries=0, breaker_failures=1_000_000)
    from gateway.config import GatewayConfig
    return GatewayConfig.model_validate(raw)


@pytest.fixture(scope="session")
def gateway(gateway_config):
    with ServerThread(create_app(gateway_config)) as server:
        yield server


@pytest.fixture()
def clean_simulators(demo_world: World):
    """Every test starts with no faults, no latency and zeroed counters."""
    for control in demo_world.controls.values():
        control.reset()
    yield
    for control in demo_world.controls.values():
        control.reset()


class GraphQLClient:
    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=30)

    def post(self, query: str, variables: dict | None = None, key: str | None = "demo-key",
             headers: dict | None = None) -> httpx.Response:
        h = {"authorization": f"Bearer {key}"} if key else {}
        h.update(headers or {})
        return self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=h)

    def query(self, query: str, variables: dict | None = None, key: str | None = "demo-key") -> dict[str, Any]:
        response = self.post(query, variables, key)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def client(gateway: ServerThread) -> GraphQLClient:
    return GraphQLClient(gateway.url)


def upstream_counts(demo_world: World) -> dict[Source, int]:
    return {source: control.requests for source, control in demo_world.controls.items()}
