"""The store's database stopped and restarted under a running gateway (PostgreSQL behind a
proxy the test cuts): known accounts keep reading from memory, marked in /health?ready;
writes answer REGISTRY_UNAVAILABLE and write nothing; no 500; the gateway recovers by itself
and nothing committed before is lost."""
from __future__ import annotations

import time

import httpx

from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.accounts.registry_stack import (ADMIN_KEY, CREATE, ISSUE, LINK, TOTAL, link_inputs, migrated,
                                           registry_config, serving)
from tests.conftest import GraphQLClient
from tests.store_db import PG_HOST, PG_PORT, store_block
from tests.tcp_proxy import tcp_proxy


def registry_health(url: str) -> dict:
    return httpx.get(url + "/health", params={"ready": ""}, timeout=10).json()["registry"]


def wait_for(check, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_the_database_going_down_and_back(postgres_url):
    world = World.generate(0, demo=False, size=4)
    world.add_account("jo", size=4)
    migrated(postgres_url)
    with ServerThread(world.combined_app()) as sims, tcp_proxy(PG_HOST, PG_PORT) as proxy:
        proxied = postgres_url.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
        store = {**store_block(proxied), "connect_timeout_s": 1.0}
        with serving(registry_config(world, sims.url, store, cache={"enabled": True})) as server:
            client = GraphQLClient(server.url)
            client.query(CREATE, {"id": "jo"}, key=ADMIN_KEY)
            for link in link_inputs(world.accounts["jo"]):
                client.query(LINK, {"a": "jo", "l": link}, key=ADMIN_KEY)
            key = client.query(ISSUE, {"a": "jo"}, key=ADMIN_KEY)["data"]["issueApiKey"]["key"]
            before = client.query(TOTAL, key=key)
            assert "errors" not in before and registry_health(server.url)["state"] == "ok"

            proxy.down()
            wait_for(lambda: registry_health(server.url)["state"] == "unavailable")
            health = registry_health(server.url)
            assert health["reads"] == "from memory" and health["accounts"] == 1
            assert "127.0.0.1" not in str(health)     # names no host, user or password
            during = client.query(TOTAL, key=key)     # a known account: answered from memory
            assert during["data"] == before["data"]
            for query, variables in ((CREATE, {"id": "kim"}), (LINK, {"a": "jo", "l": {"source": "CALICO", "token": "abcdefgh"}}),
                                     (ISSUE, {"a": "jo"})):
                started = time.monotonic()
                answer = client.post(query, variables, key=ADMIN_KEY)
                assert answer.status_code == 200, answer.text
                assert [e["extensions"]["code"] for e in answer.json()["errors"]] == ["REGISTRY_UNAVAILABLE"]
                assert time.monotonic() - started < 5
            # a key this process never saw cannot be looked up: 503, not a (false) 401
            unknown = client.post("{ viewer { id } }", key="bgk_never-seen")
            assert unknown.status_code == 503 and unknown.headers["retry-after"] == "1"
            assert unknown.json()["errors"][0]["extensions"]["code"] == "REGISTRY_UNAVAILABLE"
            cold = client.query("{ account(id: \"someone-else\") { id } }", key=ADMIN_KEY)
            assert [e["extensions"]["code"] for e in cold["errors"]] == ["REGISTRY_UNAVAILABLE"]

            proxy.up()
            wait_for(lambda: registry_health(server.url)["state"] == "ok")
            assert client.post("{ viewer { id } }", key="bgk_never-seen").status_code == 401
            assert "errors" not in client.query(CREATE, {"id": "kim"}, key=ADMIN_KEY)
            listing = client.query("{ accounts(ids: [\"jo\", \"kim\"]) { id links { source } } }", key=ADMIN_KEY)
            jo, kim = listing["data"]["accounts"]
            # every identity linked before the outage is still there (a OneBalance link per CAIP-10 id)
            linked = sum(len(l.get("accounts") or l.get("walletUuids") or [l]) for l in link_inputs(world.accounts["jo"]))
            assert len(jo["links"]) == linked
            assert kim == {"id": "kim", "links": []}       # the refused writes left nothing behind
            assert client.query(TOTAL, key=key)["data"] == before["data"]
