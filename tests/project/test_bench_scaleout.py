"""bench.scaleout: its configs, its /proc reading, its view of a cluster, and one quick run with the
registry on PostgreSQL."""
from __future__ import annotations

import asyncio
import re
import tomllib

import asyncpg

from bench.common import build_world
from bench.registry_load import PG_HOST, PG_PORT, PG_USER
from bench.scaleout import REDIS_URL, config, host_busy
from gateway.config import GatewayConfig
from gateway.simulation.world import to_toml
from tests.redis_cluster import redis_cluster  # noqa: F401  (the session fixture)


def test_redis_topologies_point_cache_limits_and_apq_at_db_13():
    world = build_world(2)
    shared = config(world, "http://127.0.0.1:1", cache=True, redis=True)
    alone = config(world, "http://127.0.0.1:1", cache=False, redis=False)
    assert tomllib.loads(to_toml(shared)) == shared
    assert GatewayConfig.model_validate(shared).cache.redis_url.get_secret_value() == REDIS_URL
    assert GatewayConfig.model_validate(alone).cache.redis_url is None
    assert alone["cache"]["enabled"] is False


def test_host_busy_is_cumulative_and_never_exceeds_the_total():
    busy0, total0 = host_busy()
    busy1, total1 = host_busy()
    assert 0 <= busy0 <= total0 and busy1 >= busy0 and total1 >= total0


def test_the_cluster_is_measured_over_every_node_and_only_bg_keys_are_deleted(redis_cluster):
    import redis as redis_py
    from bench.scaleout import cluster_nodes

    shared = cluster_nodes(redis_cluster.url)
    assert sorted(port for port, _ in shared.nodes) == sorted(redis_cluster.ports) and shared.url == redis_cluster.url
    client = redis_py.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        keys = [f"bg:bench-test:{i}" for i in range(40)]   # spread over every master
        for key in keys:
            client.set(key, b"x")
        client.set("other:bench-test", b"kept")
        cpu0, commands0, _ = shared.stats()
        assert shared.flush_bg() >= len(keys)
        cpu1, commands1, by_command = shared.stats()
        assert commands1 > commands0 and cpu1 >= cpu0 and by_command["del"] >= len(keys)
        assert not any(client.exists(key) for key in keys)
        assert client.get("other:bench-test") == b"kept"
    finally:
        client.delete("other:bench-test")
        client.close()


def test_quick_run_with_the_registry_prints_postgresql_load_per_request(capsys):
    """`bench.scaleout --quick --registry` for real (wrk, the simulators, two gateway
    processes, Redis db 13, a PostgreSQL database of its own): every row carries the
    registry's load per request, and it is the feed polls, not a query per request."""
    from bench import scaleout
    from bench.common import wrk_available
    from bench.registry_load import NoPostgres, registry_database
    from tests.tooling import missing, need_redis

    if not wrk_available():
        missing("bench.scaleout needs wrk (Debian: wrk)")
    need_redis(REDIS_URL)
    args = scaleout.parse_args(["--quick", "--registry"])
    try:
        with registry_database() as pg:
            status, measured = scaleout.run(args, scaleout.SINGLE, pg)
            name = pg.name
    except NoPostgres as exc:
        missing(f"bench.scaleout --registry needs PostgreSQL on 127.0.0.1:5432 ({exc})")
    out = capsys.readouterr().out
    assert status == 0, out                   # no bad response, both sharing checks held
    assert set(measured) == {(t, q) for t in ("1p-redis", "2p-redis") for q in ("small, cached", "all balances, uncached")}
    assert "pg xacts/req" in out and "PostgreSQL per request: xacts" in out
    first_look_ups = [float(x) for x in re.findall(r"first look-up of each key\): xacts ([0-9.]+)", out)]
    assert len(first_look_ups) == 2 and all(x >= 1 for x in first_look_ups), out   # one query (at least) per new key
    for (topo, query), m in measured.items():
        load = m["pg"]
        # every process polls the change feed (a transaction each 0.2 s): some, in every row
        assert load["xacts"] > 0 and load["returned"] > 0, (topo, query, load)
        # ... and a known key is not looked up again: far less than a first look-up per request
        assert load["xacts"] < min(first_look_ups) / 2, (topo, query, load, first_look_ups)
        # rows written: at most one lastUsedAt flush per process (every 10 s, each key it saw)
        assert load["written"] * m["requests"] <= int(topo[0]) * (args.accounts + 3), (topo, query, load)
    small = measured["1p-redis", "small, cached"]   # thousands of requests against 5 polls a second
    assert small["pg"]["xacts"] < 0.1, small["pg"]

    async def gone() -> bool:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 0
        finally:
            await conn.close()
    assert asyncio.run(gone())                 # the bench dropped its database


def test_with_the_registry_the_config_file_holds_no_account_and_names_the_store():
    world = build_world(2)
    store = {"url": "postgresql://postgres@127.0.0.1:5432/bg_bench_x", "encryption_keys": ["A" * 43 + "="]}
    raw = config(world, "http://127.0.0.1:1", cache=True, redis=True, store=store)
    assert tomllib.loads(to_toml(raw)) == raw
    parsed = GatewayConfig.model_validate(raw)
    assert "accounts" not in raw and parsed.accounts == [] and parsed.store is not None
    assert parsed.store.url.get_secret_value() == store["url"]
