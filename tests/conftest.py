"""Shared fixtures: the simulators and the gateway, each a real uvicorn server on loopback."""
from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from gateway.server.app import create_app
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread
from gateway.simulation.world import World, simulator_module
# fresh PostgreSQL databases and SQLite files for the store's tests
from tests.store_db import postgres_url, sqlite_url, store_url  # noqa: F401

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
    # No cache here: these tests count upstream calls per request (tests/upstream/test_resilience_e2e.py caches).
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


# Everything the gateway said to a client during the run, and every log record: the last
# test (test_zz_leaks.py) checks that no upstream credential or error body is in any of it.
from tests.capture import CAPTURED_LOGS, CAPTURED_RESPONSES, UPSTREAM_SECRETS  # noqa: E402


class _CaptureLogs(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            CAPTURED_LOGS.append(self.format(record))
        except Exception:  # never let capture break a test
            pass


def pytest_configure(config: Any) -> None:
    if UPSTREAM_SECRETS:      # configured already (conftest imported under a second name)
        return
    handler = _CaptureLogs(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(exc_text)s"))
    logging.getLogger().addHandler(handler)
    _record_world_secrets()


def _record_world_secrets() -> None:
    """Remember every upstream credential any test World hands out (not the gateway keys:
    the demo key is public by design)."""
    original = World.add_account

    def add_account(self: World, account_id: str, **kwargs: Any) -> dict[str, Any]:
        blocks = original(self, account_id, **kwargs)
        for block in blocks.values():
            for name in ("token", "api_key"):
                if isinstance(block.get(name), str):
                    UPSTREAM_SECRETS.add(block[name])
        return blocks
    World.add_account = add_account  # type: ignore[method-assign]
    for source in Source:
        api_key = simulator_module(source).source_block("http://127.0.0.1:1").get("api_key")
        if api_key:
            UPSTREAM_SECRETS.add(api_key)


class GraphQLClient:
    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=30, event_hooks={"response": [_capture]})

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


def _capture(response: httpx.Response) -> None:
    response.read()
    CAPTURED_RESPONSES.append(f"{response.headers}\n{response.text}")


def upstream_counts(demo_world: World) -> dict[Source, int]:
    return {source: control.requests for source, control in demo_world.controls.items()}


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Over the whole run: no upstream credential or error body in anything the gateway said."""
    from tests.capture import leaks
    found = leaks(CAPTURED_RESPONSES + CAPTURED_LOGS)
    if found:
        print(f"\nLEAK: {len(found)} responses or log lines hold an upstream credential or body, e.g. {found[:3]}")
        session.exitstatus = 1
