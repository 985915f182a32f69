"""Registry changes reach open subscriptions (real WebSocket, a SQLite store): deleting the
account ends its subscription at once, long before its next poll; a revoked key's ends at
its next poll."""
from __future__ import annotations

import pytest

from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.accounts.registry_stack import (ADMIN_KEY, CREATE, DELETE, ISSUE, LINK, REVOKE, link_inputs, migrated,
                                           registry_config, serving)
from tests.conftest import GraphQLClient
from tests.live.live_clients import WSClient
from tests.store_db import store_block


@pytest.fixture()
def registry_live(sqlite_url: str):
    world = World.generate(0, size=3)
    world.add_account("dave", size=3)
    migrated(sqlite_url)
    with ServerThread(world.combined_app()) as sims, \
            serving(registry_config(world, sims.url, store_block(sqlite_url), cache={"enabled": False},
                                    live={"min_interval_s": 1})) as server:
        client = GraphQLClient(server.url)
        assert "errors" not in client.query(CREATE, {"id": "dave"}, key=ADMIN_KEY)
        for link in link_inputs(world.accounts["dave"]):
            assert "errors" not in client.query(LINK, {"a": "dave", "l": link}, key=ADMIN_KEY)
        issued = client.query(ISSUE, {"a": "dave", "label": None}, key=ADMIN_KEY)["data"]["issueApiKey"]
        yield client, str(server.url).rstrip("/"), issued


async def test_deleting_the_account_ends_its_subscription(registry_live):
    client, url, issued = registry_live
    async with WSClient(url, key=issued["key"]) as ws:
        await ws.acked()
        op = await ws.subscribe(variables={"interval": 60})   # no poll during the test
        assert (await ws.event())["account"]["id"] == "dave"
        assert client.query(DELETE, {"id": "dave"}, key=ADMIN_KEY)["data"]["deleteAccount"] is True
        assert await ws.message(2) == {"id": op, "type": "complete"}


async def test_revoking_the_key_ends_its_subscription(registry_live):
    client, url, issued = registry_live
    async with WSClient(url, key=issued["key"]) as ws:
        await ws.acked()
        op = await ws.subscribe()
        await ws.event()
        assert client.query(REVOKE, {"a": "dave", "k": issued["keyId"]}, key=ADMIN_KEY)["data"]["revokeApiKey"] is True
        assert await ws.message(4) == {"id": op, "type": "complete"}
