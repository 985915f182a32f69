"""bench.scaleout's pieces that need no load run: its configs and its /proc reading."""
from __future__ import annotations

import tomllib

from bench.common import build_world
from bench.scaleout import REDIS_URL, config, host_busy
from gateway.config import GatewayConfig
from gateway.simulation.world import to_toml


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
