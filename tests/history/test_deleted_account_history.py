"""A deleted registry account takes its history with it: an account created later under the
same id (another user, perhaps) starts with none. Real HTTP, SQLite and PostgreSQL."""
from __future__ import annotations

import time
from datetime import datetime

from gateway.history.store import HistoryStore
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from tests.accounts.registry_stack import ADMIN_KEY, CREATE, DELETE, ISSUE, LINK, link_inputs, migrated, registry_config, serving
from tests.conftest import GraphQLClient
from tests.store_db import run_async, store_block


def _last_snapshot(store: dict, account_id: str) -> datetime | None:
    async def run() -> datetime | None:
        engine = create_engine(StoreConfig.model_validate(store))
        try:
            return await HistoryStore(engine).last_taken_at(account_id)
        finally:
            await engine.dispose()
    return run_async(run)


def test_deleting_an_account_deletes_its_history(store_url: str):
    world = World.generate(0, size=4)
    world.add_account("carol", size=4)
    store = store_block(store_url)
    migrated(store_url)
    with ServerThread(world.combined_app()) as sims, \
            serving(registry_config(world, sims.url, store, cache={"enabled": False},
                                    history={"snapshot_every_s": 0})) as server:
        client = GraphQLClient(server.url)
        assert "errors" not in client.query(CREATE, {"id": "carol"}, key=ADMIN_KEY)
        for link in link_inputs(world.accounts["carol"]):
            assert "errors" not in client.query(LINK, {"a": "carol", "l": link}, key=ADMIN_KEY)
        key = client.query(ISSUE, {"a": "carol", "label": None}, key=ADMIN_KEY)["data"]["issueApiKey"]["key"]
        assert client.query("{ viewer { holdings(first: 1) { totalCount } } }", key=key)["data"]["viewer"]
        deadline = time.monotonic() + 10
        while _last_snapshot(store, "carol") is None:   # written in the background
            assert time.monotonic() < deadline, "no snapshot was written"
            time.sleep(0.05)
        assert client.query(DELETE, {"id": "carol"}, key=ADMIN_KEY)["data"]["deleteAccount"] is True
        assert _last_snapshot(store, "carol") is None
        assert "errors" not in client.query(CREATE, {"id": "carol"}, key=ADMIN_KEY)
        assert _last_snapshot(store, "carol") is None
