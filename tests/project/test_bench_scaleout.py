"""bench.scaleout's pieces that need no load run: its configs and its /proc reading."""
from __future__ import annotations

import tomllib

from bench.common import build_world
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
