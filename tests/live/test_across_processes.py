"""Two gateway processes sharing one Redis, and sharing a three-master Redis Cluster: one
poll per upstream identity per interval between them (a Redis lock elects the poller,
pub/sub tells the other), counted at the simulators, and both processes' subscribers see a
change.

The cluster is tests/redis_cluster.py's (six redis-server processes on loopback). There the
locks of different identities land on different masters (each lock key carries its own hash
tag), and a notice PUBLISHed on the master of one slot reaches the other process's
subscription, which redis-py holds on whichever node serves the channel's slot."""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from decimal import Decimal

import httpx
import pytest
import redis

from gateway.config import GatewayConfig
from gateway.domain.tokens import TokenRegistry
from gateway.live.hub import SharedByRedis, key_hash
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.world import World
from gateway.sources import build_clients
from gateway.sources.catalog import Source
from tests.live.live_clients import WSClient
from tests.redis_cluster import redis_cluster  # noqa: F401  (the session fixture)
from tests.tooling import need_redis, serve_process, wait_ready

REDIS_URL = os.environ.get("BG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
INTERVAL = 1


def live_locks(request, keys: list[str]) -> dict[str, int]:
    """Which of these lock keys Redis holds, each with the port of the node holding it."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        held = {key: cluster.master_of_key(key) for key in keys}
        return {key: port for key, port in held.items() if cluster.node(port).exists(key)}
    single = redis.Redis.from_url(REDIS_URL)
    return {key: 6379 for key in keys if single.exists(key)}


@pytest.fixture(scope="module", params=["single", "cluster"])
def two_gateways(request, tmp_path_factory):
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.wait_healthy()
        cluster.flush()          # an earlier run's locks would hold the election until they expire
        redis_url = cluster.url
    else:
        need_redis(REDIS_URL)
        redis_url = REDIS_URL
    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        settings = dict(cache={"redis_url": redis_url}, live={"min_interval_s": INTERVAL},
                        limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        raw = world.config_dict(sims.url, **settings)
        path = tmp_path_factory.mktemp("live") / "gateway.toml"
        path.write_text(world.config_toml(sims.url, **settings))
        config = GatewayConfig.model_validate(raw)
        clients = build_clients(config, httpx.AsyncClient(), TokenRegistry.default())
        keys = [(source, identity) for source, c in clients.items() for identity in c.identities(config.account("demo"))]
        identities = len(keys)
        lock_keys = [SharedByRedis.lock_key(key_hash(key)) for key in keys]
        ports = [free_port(), free_port()]
        procs = [serve_process(str(path), port) for port in ports]
        try:
            for port, proc in zip(ports, procs):
                wait_ready(f"http://127.0.0.1:{port}", proc)
            yield world, [f"http://127.0.0.1:{port}" for port in ports], identities, request.param, lambda: live_locks(request, lock_keys)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


async def test_one_read_per_identity_per_interval_across_two_processes(two_gateways):
    world, urls, identities, backend, locks = two_gateways
    wallet = world.accounts["demo"]["cobo"]["wallet_uuids"][0]
    row = world.datasets[Source.COBO].wallets[wallet][0]
    async with contextlib.AsyncExitStack() as stack:
        subscribers = []
        for i in range(10):
            ws = await stack.enter_async_context(WSClient(urls[i % 2]))
            await ws.acked()
            await ws.subscribe()
            subscribers.append(ws)
        for ws in subscribers:
            await ws.event(timeout=10)
        await asyncio.sleep(2.5 * INTERVAL)   # the election settles
        before = sum(c.requests for c in world.controls.values())
        window = 5.0
        await asyncio.sleep(window)
        reads = sum(c.requests for c in world.controls.values()) - before
        # one page per identity in this world: a read is one request. Two processes polling on
        # their own would make twice as many.
        assert identities * (window / INTERVAL - 1) <= reads <= identities * (window / INTERVAL + 1), (reads, identities)
        held = locks()
        assert len(held) == identities             # each identity's elected poller holds its lock
        if backend == "cluster":                   # spread over the masters: each lock its own slot
            assert len(set(held.values())) > 1, held

        new_amount = str(Decimal(row["amount"]) + 7)
        saved = dict(row)
        row.update(amount=new_amount, total=new_amount, pending="0", locked="0")
        changed_at = time.monotonic()
        try:
            latencies = []
            for ws in subscribers:   # both processes' subscribers: the follower reads the leader's poll
                event = await ws.event(timeout=INTERVAL + 5)
                latencies.append(time.monotonic() - changed_at)
                assert [Decimal(h["amount"]) for h in event["changed"]] == [Decimal(new_amount)]
        finally:
            row.clear()
            row.update(saved)
    assert max(latencies) <= INTERVAL + 2.5, latencies


async def test_when_the_polling_process_loses_its_subscribers_the_other_takes_over(two_gateways):
    world, urls, identities, _, _ = two_gateways
    wallet = world.accounts["demo"]["cobo"]["wallet_uuids"][0]
    row = world.datasets[Source.COBO].wallets[wallet][0]
    async with WSClient(urls[0]) as a, WSClient(urls[1]) as b:
        await a.acked()
        await b.acked()
        op_a = await a.subscribe()
        await a.event(timeout=10)
        await asyncio.sleep(1.5 * INTERVAL)   # A polls (it came first)
        await b.subscribe()
        await b.event(timeout=10)
        await a.complete(op_a)                # A's poller stops and says so
        await asyncio.sleep(0.5)
        new_amount = str(Decimal(row["amount"]) + 3)
        saved = dict(row)
        row.update(amount=new_amount, total=new_amount, pending="0", locked="0")
        try:
            event = await b.event(timeout=INTERVAL + 3)   # well before a silent lock would expire (2 intervals + 5 s)
            assert [Decimal(h["amount"]) for h in event["changed"]] == [Decimal(new_amount)]
        finally:
            row.clear()
            row.update(saved)
