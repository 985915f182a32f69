"""Two gateway processes sharing one PostgreSQL store, over real HTTP: a change made through
one takes effect in the other within 1 s (the directory polls the change feed every 0.2 s),
and the store's accounts survive a restart."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import httpx

from gateway.server.serving import ServerThread, free_port
from gateway.simulation.world import World, to_toml
from tests.accounts.registry_stack import (ADMIN_KEY, CREATE, ISSUE, LINK, REVOKE, UNLINK, link_inputs, migrated,
                                           registry_config)
from tests.conftest import GraphQLClient
from tests.store_db import store_block
from tests.tooling import serve_process, wait_ready

WITHIN_S = 1.0
STATES = "{ viewer { sources { source state } holdings(first: 200) { nodes { wallet { source } } } } }"


@contextlib.contextmanager
def two_gateways(world: World, store_url: str, tmp_path) -> Iterator[tuple[list[str], Callable[[int], None]]]:
    migrated(store_url)
    with ServerThread(world.combined_app()) as sims:
        # memory caches on: a process must not answer from what it cached before a change
        raw = registry_config(world, sims.url, store_block(store_url), cache={"enabled": True})
        config = tmp_path / "gateway.toml"
        config.write_text(to_toml(raw))
        ports = [free_port(), free_port()]
        procs = [serve_process(str(config), port) for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]

        def restart(i: int) -> None:
            procs[i].terminate()
            procs[i].wait(timeout=10)
            procs[i] = serve_process(str(config), ports[i])
            wait_ready(urls[i], procs[i])
        try:
            for url, proc in zip(urls, procs):
                wait_ready(url, proc)
            yield urls, restart
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


def seen_within(check: Callable[[], bool], limit_s: float = WITHIN_S) -> float:
    """Seconds until `check()` holds, polled every 20 ms; fails past `limit_s`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < limit_s, f"not seen within {limit_s} s"
        time.sleep(0.02)


def status_of(client: GraphQLClient, key: str) -> int:
    return client.post("{ viewer { id } }", key=key).status_code


def test_a_change_in_one_process_takes_effect_in_the_other_within_a_second(store_url, tmp_path):
    """On PostgreSQL and on one SQLite file shared by both processes."""
    world = World.generate(0, demo=False, size=5)
    world.add_account("erin", size=5)
    with two_gateways(world, store_url, tmp_path) as (urls, restart):
        writer, reader = GraphQLClient(urls[0]), GraphQLClient(urls[1])
        assert "errors" not in writer.query(CREATE, {"id": "erin"}, key=ADMIN_KEY)
        links = link_inputs(world.accounts["erin"])
        cobo = next(l for l in links if l["source"] == "COBO")
        for link in links:
            if link is not cobo:
                assert "errors" not in writer.query(LINK, {"a": "erin", "l": link}, key=ADMIN_KEY)
        issued = writer.query(ISSUE, {"a": "erin"}, key=ADMIN_KEY)["data"]["issueApiKey"]
        key = issued["key"]
        figures = {"new key": seen_within(lambda: status_of(reader, key) == 200)}

        def sources() -> dict[str, str]:
            body = reader.query(STATES, key=key)
            return {s["source"]: s["state"] for s in body["data"]["viewer"]["sources"]}
        assert sources()["COBO"] == "NOT_CONFIGURED" and sources()["CALICO"] == "OK"
        assert "errors" not in writer.query(LINK, {"a": "erin", "l": cobo}, key=ADMIN_KEY)
        figures["new link"] = seen_within(lambda: sources()["COBO"] == "OK")

        # the reader has cached erin's Cobo reads; once unlinked they are never erin's again
        def cobo_holdings() -> int:
            nodes = reader.query(STATES, key=key)["data"]["viewer"]["holdings"]["nodes"]
            return sum(1 for n in nodes if n["wallet"]["source"] == "COBO")
        assert cobo_holdings() > 0
        assert "errors" not in writer.query(UNLINK, {"a": "erin", "s": "COBO"}, key=ADMIN_KEY)
        figures["unlink"] = seen_within(lambda: sources()["COBO"] == "NOT_CONFIGURED" and cobo_holdings() == 0)

        restart(1)   # the store's accounts and keys survive a restart
        assert status_of(reader, key) == 200 and sources()["CALICO"] == "OK"

        assert writer.query(REVOKE, {"a": "erin", "k": issued["keyId"]}, key=ADMIN_KEY)["data"]["revokeApiKey"]
        figures["revoked key"] = seen_within(lambda: status_of(reader, key) == 401)
        body = reader.post("{ viewer { id } }", key=key).json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        print(f"\n{store_url.split(':')[0]}: seen by the other process after (s, measured on a shared machine):",
              {k: round(v, 3) for k, v in figures.items()})


def test_a_deleted_account_is_gone_from_the_other_process(postgres_url, tmp_path):
    world = World.generate(0, demo=False, size=4)
    world.add_account("frank", size=4)
    with two_gateways(world, postgres_url, tmp_path) as (urls, _):
        writer, reader = GraphQLClient(urls[0]), GraphQLClient(urls[1])
        frank = "{ account(id: \"frank\") { id links { source } } }"
        # asked before it exists: NOT_FOUND (and remembered as absent until a change names it)
        assert reader.query(frank, key=ADMIN_KEY)["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        writer.query(CREATE, {"id": "frank"}, key=ADMIN_KEY)
        for link in link_inputs(world.accounts["frank"]):
            writer.query(LINK, {"a": "frank", "l": link}, key=ADMIN_KEY)
        # the reader loads it on an admin's first read by id, with every link
        seen_within(lambda: len(((reader.query(frank, key=ADMIN_KEY)["data"] or {}).get("account") or {}).get("links", [])) == 6)
        key = writer.query(ISSUE, {"a": "frank"}, key=ADMIN_KEY)["data"]["issueApiKey"]["key"]
        seen_within(lambda: status_of(reader, key) == 200)
        assert writer.query("mutation { deleteAccount(id: \"frank\") }", key=ADMIN_KEY)["data"]["deleteAccount"]
        seen_within(lambda: status_of(reader, key) == 401)
        body = reader.query("{ account(id: \"frank\") { id } }", key=ADMIN_KEY)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        health = httpx.get(urls[1] + "/health", params={"ready": ""}).json()
        assert health["registry"]["state"] == "ok" and health["registry"]["accounts"] == 0
