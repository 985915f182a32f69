"""Redis Cluster: the redis_url grammar, every Redis-backed feature on a real three-master
cluster (and on one Redis server, as before), two gateway processes sharing a cluster,
and a master's failover under load.

The cluster is tests/redis_cluster.py's: six redis-server processes on loopback (three
masters, three replicas) started for the session when none answers.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import pytest

from gateway.config import ConfigError, PersistedQueriesConfig, parse_config
from gateway.sources.catalog import Source
from gateway.policy.persisted_queries import PersistedQueries, sha256_hex
from gateway.policy.rate_limit import RateLimiter, bucket_key
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.world import World, gateway_key
from gateway.upstream.redis_client import build_redis_client, cluster_url_from_seeds, open_pubsub, parse_redis_url
from gateway.upstream.response_cache import CachedResponse, RedisCache, cache_key, lock_key
from tests.tooling import serve_process, wait_ready
from tests.conftest import GraphQLClient
from tests.redis_cluster import LocalCluster, redis_cluster  # noqa: F401  (the session fixture)
from tests.tooling import need_redis

SINGLE_URL = "redis://127.0.0.1:6379/9"    # this module's database on the single server
ADMIN_KEY = "cluster-admin-key"

STATUS = """query($maxAge: Int) { viewer(maxAge: $maxAge) {
  sources { source state fromCache error { code } } holdings(first: 200) { totalCount } } }"""


# --------------------------------------------------------------------------- the URL


@pytest.mark.parametrize("url,cluster,nodes", [
    ("redis://127.0.0.1:6379/3", False, [("127.0.0.1", 6379)]),
    ("rediss://:pw@cache.internal:6380", False, [("cache.internal", 6380)]),
    ("redis+cluster://10.0.0.5:7000", True, [("10.0.0.5", 7000)]),
    ("rediss+cluster://u:pw@a:7000,b:7001,[::1]:7002/0", True, [("a", 7000), ("b", 7001), ("::1", 7002)]),
    ("redis+cluster://seed", True, [("seed", 6379)]),
])
def test_a_redis_url_names_one_server_or_a_cluster(url, cluster, nodes):
    target = parse_redis_url(url)
    assert target.cluster is cluster and list(target.nodes) == nodes
    assert target.tls is url.startswith("rediss")


def test_a_list_of_seed_nodes_is_a_cluster():
    config = parse_config('[cache]\nredis_url = ["redis://:pw@10.0.0.5:7000", "10.0.0.6:7000"]\n')
    assert config.cache.redis_url.get_secret_value() == "redis+cluster://:pw@10.0.0.5:7000,10.0.0.6:7000"
    assert cluster_url_from_seeds(["rediss://a:1"]) == "rediss+cluster://a:1"
    one = parse_config('[cache]\nredis_url = "redis+cluster://10.0.0.5:7000"\n')
    assert parse_redis_url(one.cache.redis_url.get_secret_value()).cluster


@pytest.mark.parametrize("url,why", [
    ("redis+clustr://:s3cret-pw@h:1", "must be a redis://"),
    ("memcached://:s3cret-pw@h:1", "must be a redis://"),
    ("redis+cluster://:s3cret-pw@h:1/2", "only database 0"),
    ("redis://:s3cret-pw@a:1,b:2", "redis+cluster://"),
    ("redis://:s3cret-pw@h:port", "port must be a number"),
    ("redis://:s3cret-pw@h:1/zero", "must be a number"),
    ("redis://:s3cret-pw@h:1?bogus=1", "unknown option 'bogus'"),
    ("redis://:s3cret-pw@h:1?socket_timeout=soon", "invalid value"),
])
def test_a_bad_redis_url_is_a_one_line_config_error_naming_the_field(url, why):
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[cache]\nredis_url = "{url}"\n')
    message = str(caught.value)
    assert "cache.redis_url" in message and why in message
    assert "\n" not in message and "s3cret-pw" not in message


def test_serve_refuses_a_bad_redis_url_in_one_line(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[cache]\nredis_url = "redis+clusterr://:s3cret-pw@127.0.0.1:1"\n')
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cache.redis_url" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret-pw" not in done.stderr + done.stdout


# --------------------------------------------------------------------------- each feature, on both


@pytest.fixture(params=["single", "cluster"])
def redis_url(request) -> str:
    if request.param == "single":
        need_redis(SINGLE_URL)
        return SINGLE_URL
    return request.getfixturevalue("redis_cluster").url


def _entry(n: object, prefix: str) -> str:
    return cache_key("cobo", f"https://api.example/v1/{prefix}/{n}", [("page", "1")], "credential")


async def test_cache_entries_round_trip_and_spread_over_the_masters(redis_url: str, request):
    prefix = f"bgtest:{uuid.uuid4().hex}:"
    a, b = RedisCache(redis_url, prefix=prefix), RedisCache(redis_url, prefix=prefix)
    try:
        values = {n: CachedResponse(200, f"page {n} \x00".encode(), 1_700_000_000.5 + n) for n in range(30)}
        for n, value in values.items():
            await a.set(_entry(n, prefix), value, keep_s=30)
        assert {n: await b.get(_entry(n, prefix)) for n in values} == values   # another process reads them
        assert a.describe()["errors"] == b.describe()["errors"] == 0
        assert a.describe()["topology"] == ("cluster" if "cluster" in redis_url else "single")
        if "cluster" in redis_url:
            cluster: LocalCluster = request.getfixturevalue("redis_cluster")
            owners = {cluster.master_of_key(prefix + _entry(n, prefix)) for n in values}
            assert len(owners) == 3                      # the digest spreads entries over every master
    finally:
        await a.close()
        await b.close()


async def test_fill_lock_across_two_processes_without_crossslot(redis_url: str):
    prefix = f"bgtest:{uuid.uuid4().hex}:"
    a, b = RedisCache(redis_url, prefix=prefix), RedisCache(redis_url, prefix=prefix)
    key = _entry("locked", prefix)
    value = CachedResponse(200, b"filled by the winner", 77.0)
    try:
        won = await asyncio.gather(a.acquire_fill_lock(key, 2.0), b.acquire_fill_lock(key, 2.0))
        assert sorted(won) == [False, True]
        winner, loser = (a, b) if won[0] else (b, a)

        async def fill() -> None:
            await asyncio.sleep(0.1)
            await winner.set(key, value, keep_s=30)
            await winner.release_fill_lock(key)

        got, _ = await asyncio.gather(loser.wait_for_fill(key, 3.0), fill())
        assert got == value                      # the probe read the entry and the lock in one script
        assert await loser.acquire_fill_lock(key, 2.0) is True   # released: free again
        await loser.release_fill_lock(key)
        assert a.healthy and b.healthy and a.describe()["errors"] == b.describe()["errors"] == 0
    finally:
        await a.close()
        await b.close()


def test_an_entry_and_its_fill_lock_share_a_slot():
    from redis.crc import key_slot
    for n in range(50):
        entry = "p:" + _entry(n, "slots")
        assert key_slot(lock_key(entry).encode()) == key_slot(entry.encode())
    with pytest.raises(ValueError):
        RedisCache("redis://127.0.0.1:1/0", prefix="{tag}:")


async def test_rate_limit_bucket_is_shared_between_processes(redis_url: str):
    client_id = f"key:{uuid.uuid4().hex[:16]}"
    clients = [build_redis_client(redis_url), build_redis_client(redis_url)]
    limiters = [RateLimiter(0.001, 4, c) for c in clients]
    try:
        verdicts = [await limiters[i % 2].check(client_id) for i in range(6)]
        assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 2
        assert [v.remaining for v in verdicts] == [3, 2, 1, 0, 0, 0]
        assert await clients[0].exists(bucket_key(client_id)) == 1
        assert all(limiter._redis_down_until == 0 for limiter in limiters)   # never fell back to local
    finally:
        for c in clients:
            await c.aclose()


async def test_persisted_queries_are_known_to_every_process(redis_url: str):
    query = "{ viewer { id } } # " + uuid.uuid4().hex
    digest = sha256_hex(query)
    clients = [build_redis_client(redis_url), build_redis_client(redis_url)]
    first, second = (PersistedQueries(PersistedQueriesConfig(), c) for c in clients)
    try:
        pq = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        assert (await second.resolve(None, pq))[1].code == "PERSISTED_QUERY_NOT_FOUND"
        assert await first.resolve(query, pq) == (query, None)
        assert await second.resolve(None, pq) == (query, None)
    finally:
        for c in clients:
            await c.aclose()


async def test_pub_sub_through_the_built_client(redis_url: str):
    channel = f"bgtest:notices:{uuid.uuid4().hex}"
    listener, sender = build_redis_client(redis_url, timeout_s=2), build_redis_client(redis_url, timeout_s=2)
    pubsub = await open_pubsub(listener)
    try:
        await pubsub.subscribe(channel)
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        await sender.publish(channel, b"account changed")   # on a cluster, from whichever node
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None and message["data"] == b"account changed"
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await sender.aclose()


# --------------------------------------------------------------------------- two gateway processes


class Pair:
    def __init__(self, world: World, urls: list[str], cluster: LocalCluster):
        self.world, self.urls, self.cluster = world, urls, cluster

    def calls(self) -> dict[Source, int]:
        return {s: c.requests for s, c in self.world.controls.items()}

    def query(self, url: str, account: str, **variables: Any) -> httpx.Response:
        return GraphQLClient(url).post(STATUS, variables, key=gateway_key(account))

    def cache_health(self, url: str) -> dict[str, Any]:
        return httpx.get(url + "/health", params={"ready": ""}, timeout=5).json()["cache"]


@pytest.fixture(scope="module")
def pair(redis_cluster: LocalCluster, tmp_path_factory) -> Iterator[Pair]:
    """Two gateway processes on one config whose redis_url is the cluster, over one set of simulators."""
    redis_cluster.wait_healthy()
    redis_cluster.flush()                  # an earlier run's buckets and entries
    world = World.generate(8, size=6)
    with ServerThread(world.combined_app()) as sims:
        config = tmp_path_factory.mktemp("pair") / "gateway.toml"
        config.write_text(world.config_toml(
            sims.url, cache={"redis_url": redis_cluster.url}, auth={"admin_keys": [ADMIN_KEY]},
            limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000,
                    "admin_rate_limit_per_s": 0.001, "admin_rate_limit_burst": 4}))
        ports = [free_port(), free_port()]
        procs = [serve_process(str(config), port) for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, proc in zip(urls, procs):
                wait_ready(url, proc, 60)
            yield Pair(world, urls, redis_cluster)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=15)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body


def test_a_cached_read_in_one_gateway_is_a_hit_in_the_other(pair: Pair):
    first = _ok(pair.query(pair.urls[0], "user-0001"))
    made = pair.calls()
    second = _ok(pair.query(pair.urls[1], "user-0001"))
    assert pair.calls() == made                                  # the second process asked no upstream
    assert all(s["fromCache"] for s in second["data"]["viewer"]["sources"])
    assert second["data"]["viewer"]["holdings"] == first["data"]["viewer"]["holdings"]
    health = pair.cache_health(pair.urls[1])
    assert health["backend"] == "redis" and health["topology"] == "cluster" and health["healthy"] is True


def test_a_fill_lock_makes_one_upstream_read_for_requests_spread_over_both(pair: Pair):
    for control in pair.world.controls.values():
        control.latency_s = 0.5
    try:
        before = pair.calls()
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda url: pair.query(url, "user-0002"), pair.urls * 3))
        for answer in answers:
            _ok(answer)
        after = pair.calls()
        # six requests over two processes at once; the size-6 account needs one read per source
        assert {s: after[s] - before[s] for s in Source} == {s: 1 for s in Source}
    finally:
        for control in pair.world.controls.values():
            control.latency_s = 0.0


def test_a_rate_limit_is_shared_by_both_gateways(pair: Pair):
    answers = [GraphQLClient(pair.urls[i % 2]).post("{ __typename }", key=ADMIN_KEY) for i in range(6)]
    assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
    left = [int(re.search(r";r=(\d+)", a.headers["ratelimit"]).group(1)) for a in answers]
    assert left == [3, 2, 1, 0, 0, 0]                            # one bucket, counted down by both
    assert all(a.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED" for a in answers[4:])


def test_a_master_failing_over_under_load_loses_no_request_and_answers_no_500(pair: Pair):
    """Kill a master while both gateways serve; its replica takes over. Every request in the
    meantime is answered in full (Redis is an optimisation: reads go to the upstreams), and
    afterwards the gateways share the cache through the new master again."""
    cluster = pair.cluster
    victim = cluster.masters()[0]
    heir = cluster.replica_of(victim)
    answers: list[tuple[float, float, httpx.Response]] = []   # (when it was sent, when answered, the answer)
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            account = f"user-{3 + (worker + n) % 4:04d}"
            # half the reads must be live: they take a fill lock and write the entry back
            sent = time.monotonic()
            answer = pair.query(pair.urls[n % 2], account, maxAge=0 if n % 2 else None)
            answers.append((sent, time.monotonic(), answer))

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load, w) for w in range(4)]
        try:
            time.sleep(0.5)
            killed = time.monotonic()
            if cluster.owned:
                cluster.kill(victim)
            else:                               # a cluster this session does not run: a manual failover
                cluster.node(heir).execute_command("CLUSTER FAILOVER", "FORCE")
            deadline = time.monotonic() + 30
            while cluster.roles().get(heir) != "master":
                assert time.monotonic() < deadline, f"the replica on {heir} was not promoted: {cluster.roles()}"
                time.sleep(0.1)
            promoted = time.monotonic()
            while not any(sent > promoted for sent, _, _ in answers):   # and some load on the new layout
                time.sleep(0.1)
        finally:
            stop.set()
        for future in running:
            future.result()
    if cluster.owned:
        cluster.restart(victim)                  # it rejoins as the new master's replica
    cluster.wait_healthy()

    # Some were in flight while the master was gone (sent then, or sent before and answered after:
    # with every worker waiting on the dead master, none may be *sent* inside a short window).
    assert any(sent < promoted and answered > killed for sent, answered, _ in answers)
    assert [a.status_code for _, _, a in answers if a.status_code != 200] == []
    for _, _, answer in answers:
        body = _ok(answer)
        assert all(s["state"] == "OK" for s in body["data"]["viewer"]["sources"])

    # Sharing comes back once the gateways' Redis back-off has passed.
    deadline = time.monotonic() + 45
    while not all(pair.cache_health(url)["healthy"] for url in pair.urls):
        assert time.monotonic() < deadline, [pair.cache_health(url) for url in pair.urls]
        for url in pair.urls:
            _ok(pair.query(url, "user-0008", maxAge=0))   # a request makes a gateway try Redis again
        time.sleep(0.5)
    _ok(pair.query(pair.urls[0], "user-0007"))
    made = pair.calls()
    second = _ok(pair.query(pair.urls[1], "user-0007"))
    assert pair.calls() == made and all(s["fromCache"] for s in second["data"]["viewer"]["sources"])
