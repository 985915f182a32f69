"""gateway.upstream.response_cache: memory LRU, Redis backend (against a real Redis), in-flight de-duplication.

The Redis tests need a server (CI starts one on 127.0.0.1:6379; override with
BG_TEST_REDIS_URL). When none answers they fail in CI and skip elsewhere.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import pytest
import redis.asyncio as aioredis

from gateway.upstream.response_cache import (
    Cache,
    CachedResponse,
    InFlight,
    MemoryCache,
    RedisCache,
    build_cache,
    cache_key,
)
from tests.tooling import need_redis

REDIS_URL = os.environ.get("BG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DOWN_URL = "redis://user:s3cret-pw@127.0.0.1:1/0"  # nothing listens on port 1
CREDENTIAL = "sk_live_super_secret_credential"


def resp(body: bytes = b"{}", status: int = 200, fetched_at: float | None = None) -> CachedResponse:
    return CachedResponse(status=status, body=body, fetched_at=time.time() if fetched_at is None else fetched_at)


def key(n: object = 0) -> str:
    return cache_key("cobo", f"https://api.example/v1/balances/{n}", [("page", "1")], CREDENTIAL)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def redis_url() -> str:
    need_redis(REDIS_URL)
    return REDIS_URL


@pytest.fixture()
async def prefix(redis_url: str):
    """A unique key prefix per test; every key under it is deleted afterwards."""
    p = f"bgtest:{uuid.uuid4().hex}:"
    yield p
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=p + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture()
async def rcache(redis_url: str, prefix: str):
    cache = RedisCache(redis_url, prefix=prefix)
    yield cache
    await cache.close()


@pytest.fixture()
async def down_cache():
    cache = RedisCache(DOWN_URL, prefix="bgtest:down:")
    yield cache
    await cache.close()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def count_commands(cache: RedisCache) -> list[tuple]:
    """Record every command the client actually sends (each one opens/uses a connection)."""
    sent: list[tuple] = []
    client = cache._client
    original = client.execute_command

    async def counting(*args, **kwargs):
        sent.append(args)
        return await original(*args, **kwargs)

    client.execute_command = counting
    return sent


# --------------------------------------------------------------------------- keys and values


def test_cache_key_shape_and_canonical_params():
    k = cache_key("cobo", "https://x/y", [("b", "2"), ("a", "1")], CREDENTIAL)
    assert k.startswith("bg:v1:cobo:")
    digest = k.removeprefix("bg:v1:cobo:")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert k == cache_key("cobo", "https://x/y", [("a", "1"), ("b", "2")], CREDENTIAL)
    assert k == cache_key("cobo", "https://x/y", {"b": "2", "a": "1"}, CREDENTIAL)
    assert k != cache_key("cobo", "https://x/y", [("a", "1"), ("b", "3")], CREDENTIAL)
    assert k != cache_key("dalp", "https://x/y", [("a", "1"), ("b", "2")], CREDENTIAL)
    assert k != cache_key("cobo", "https://x/z", [("a", "1"), ("b", "2")], CREDENTIAL)
    # repeated params are kept, and boundaries are unambiguous
    assert cache_key("s", "u", [("a", "1"), ("a", "2")], "") != cache_key("s", "u", [("a", "1")], "")
    assert cache_key("s", "u", [("a", "b=c")], "") != cache_key("s", "u", [("a=b", "c")], "")


def test_credential_only_enters_the_hash():
    a = cache_key("cobo", "https://x/y", [], CREDENTIAL)
    b = cache_key("cobo", "https://x/y", [], CREDENTIAL + "2")
    assert a != b
    for k in (a, b):
        assert CREDENTIAL not in k and "secret" not in k


def test_cached_response_age():
    r = CachedResponse(status=200, body=b"x", fetched_at=100.0)
    assert r.age(now=103.5) == 3.5
    assert 0 <= resp().age() < 1
    with pytest.raises(Exception):
        r.status = 500  # frozen


def test_build_cache_picks_backend():
    assert isinstance(build_cache(None), MemoryCache)
    assert isinstance(build_cache(""), MemoryCache)
    mem = build_cache(None, max_entries=5, prefix="ignored-for-memory")
    assert isinstance(mem, MemoryCache) and mem.max_entries == 5
    red = build_cache("redis://127.0.0.1:6379/0", prefix="p:", max_entries=5)
    assert isinstance(red, RedisCache) and red.prefix == "p:"
    with pytest.raises(TypeError):
        build_cache(None, no_such_option=1)
    assert isinstance(mem, Cache) and isinstance(red, Cache)


# --------------------------------------------------------------------------- memory


async def test_memory_round_trip_and_counters():
    cache = MemoryCache()
    body = bytes(range(256)) * 10 + b"\x00"
    assert await cache.get(key()) is None
    await cache.set(key(), resp(body, status=503, fetched_at=12.5), keep_s=10)
    got = await cache.get(key())
    assert got == CachedResponse(status=503, body=body, fetched_at=12.5)
    d = cache.describe()
    assert d["backend"] == "memory" and d["healthy"] is True
    assert (d["entries"], d["hits"], d["misses"], d["errors"]) == (1, 1, 1, 0)
    assert "bg:v1" not in repr(d) and "https" not in repr(d)


async def test_memory_expiry_is_a_miss_and_evicts_lazily():
    cache = MemoryCache()
    await cache.set(key(1), resp(b"a"), keep_s=0.05)
    await cache.set(key(2), resp(b"b"), keep_s=10)
    assert await cache.get(key(1)) is not None
    await asyncio.sleep(0.08)
    assert len(cache) == 2  # nothing swept in the background
    assert await cache.get(key(1)) is None
    assert len(cache) == 1
    assert await cache.get(key(2)) is not None
    await cache.set(key(3), resp(b"c"), keep_s=0)  # nothing to keep
    assert await cache.get(key(3)) is None


async def test_memory_lru_by_count():
    cache = MemoryCache(max_entries=3)
    for i in range(3):
        await cache.set(key(i), resp(b"x"), keep_s=10)
    assert await cache.get(key(0)) is not None  # 0 becomes most recently used
    await cache.set(key(3), resp(b"x"), keep_s=10)  # evicts 1, the least recently used
    assert len(cache) == 3
    assert await cache.get(key(1)) is None
    for i in (0, 2, 3):
        assert await cache.get(key(i)) is not None


async def test_memory_lru_by_bytes():
    k0 = key(0)
    per_entry = len(k0) + 1000
    cache = MemoryCache(max_bytes=per_entry * 3)
    for i in range(3):
        await cache.set(key(i), resp(b"x" * 1000), keep_s=10)
    assert cache.describe()["bytes"] == per_entry * 3
    await cache.get(key(0))
    await cache.set(key(3), resp(b"y" * 1500), keep_s=10)  # needs room: evicts 1 then 2
    assert await cache.get(key(1)) is None
    assert await cache.get(key(2)) is None
    assert await cache.get(key(0)) is not None
    assert await cache.get(key(3)) is not None
    assert cache.describe()["bytes"] <= cache.max_bytes
    await cache.set(key(9), resp(b"z" * (per_entry * 4)), keep_s=10)  # larger than the whole cache
    assert await cache.get(key(9)) is None
    assert await cache.get(key(0)) is not None  # and it evicted nothing


async def test_memory_replacing_an_entry_keeps_byte_count_right():
    cache = MemoryCache()
    await cache.set(key(), resp(b"x" * 100), keep_s=10)
    await cache.set(key(), resp(b"x" * 10), keep_s=10)
    assert cache.describe()["bytes"] == len(key()) + 10
    assert (await cache.get(key())).body == b"x" * 10


# --------------------------------------------------------------------------- redis, live


async def test_redis_round_trip_binary_and_large(rcache: RedisCache, prefix: str, redis_url: str):
    bodies = [b"", b"\x00", b"\x00\xff\x00\r\n" * 7, os.urandom(3 * 1024 * 1024)]
    for i, body in enumerate(bodies):
        value = CachedResponse(status=200 + i, body=body, fetched_at=1_700_000_000.123456)
        await rcache.set(key(i), value, keep_s=30)
        assert await rcache.get(key(i)) == value
    assert await rcache.get(key("absent")) is None
    d = rcache.describe()
    assert d["backend"] == "redis" and d["healthy"] is True
    assert (d["hits"], d["misses"], d["errors"]) == (len(bodies), 1, 0)
    assert prefix not in repr(d) and "redis://" not in repr(d)
    # stored compactly (header + body, not JSON) and the credential is nowhere in Redis keys
    client = aioredis.from_url(redis_url)
    try:
        stored = await client.get(prefix + key(1))
        assert stored.endswith(b"\x00") and len(stored) - 1 <= 16
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        assert len(keys) == len(bodies)
        assert all(CREDENTIAL.encode() not in k for k in keys)
    finally:
        await client.aclose()


async def test_redis_ttl_expiry(rcache: RedisCache):
    await rcache.set(key(), resp(b"soon gone"), keep_s=0.05)
    assert (await rcache.get(key())).body == b"soon gone"
    await asyncio.sleep(0.1)
    assert await rcache.get(key()) is None
    await rcache.set(key(2), resp(), keep_s=0)  # no-op
    assert await rcache.get(key(2)) is None


async def test_redis_second_instance_sees_entries(rcache: RedisCache, redis_url: str, prefix: str):
    other = RedisCache(redis_url, prefix=prefix)  # another gateway process
    try:
        await rcache.set(key(), resp(b"shared", status=206, fetched_at=42.0), keep_s=30)
        assert await other.get(key()) == CachedResponse(206, b"shared", 42.0)
    finally:
        await other.close()
    isolated = RedisCache(redis_url, prefix=prefix + "other:")
    try:
        assert await isolated.get(key()) is None  # the prefix namespaces entries
    finally:
        await isolated.close()


# --------------------------------------------------------------------------- redis, down


async def test_redis_down_degrades_to_miss_without_raising(down_cache: RedisCache, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.cache")
    started = time.monotonic()
    assert await down_cache.get(key()) is None
    await down_cache.set(key(), resp(), keep_s=30)
    assert down_cache.healthy is False
    assert await down_cache.acquire_fill_lock(key(), 1.0) is True  # fetch yourself
    assert await down_cache.wait_for_fill(key(), 1.0) is None
    await down_cache.release_fill_lock(key())
    assert time.monotonic() - started < 1.0
    d = down_cache.describe()
    assert d["healthy"] is False and d["errors"] == 1 and d["misses"] == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per state change, not per failure
    assert "s3cret-pw" not in caplog.text and "***" in caplog.text
    assert "s3cret-pw" not in repr(d)


async def test_redis_down_backs_off_instead_of_hammering(down_cache: RedisCache):
    clock = FakeClock()
    down_cache._clock = clock
    sent = count_commands(down_cache)

    assert await down_cache.get(key()) is None
    assert len(sent) == 1 and down_cache.healthy is False
    failed_at = clock.t

    for _ in range(50):  # during the 1 s back-off nothing reaches the network
        assert await down_cache.get(key()) is None
        await down_cache.set(key(), resp(), keep_s=30)
    clock.t = failed_at + 0.9
    assert await down_cache.get(key()) is None
    assert len(sent) == 1
    assert down_cache.describe()["skipped"] == 101

    # back-off doubles on every failed retry, capped at 30 s
    for i, wait in enumerate([1, 2, 4, 8, 16, 30, 30]):
        assert down_cache._backoff_s == wait
        clock.t = failed_at + wait - 0.01
        await down_cache.get(key())
        assert len(sent) == i + 1, "retried before the back-off elapsed"
        clock.t = failed_at + wait
        await down_cache.get(key())
        assert len(sent) == i + 2, "did not retry once the back-off elapsed"
        failed_at = clock.t
    assert down_cache.healthy is False


async def test_redis_down_real_time_backoff():
    """Without a fake clock: a failure blocks further attempts for backoff_initial_s."""
    cache = RedisCache(DOWN_URL, backoff_initial_s=0.15)
    sent = count_commands(cache)
    try:
        await cache.get(key())
        for _ in range(20):
            await cache.get(key())
        assert len(sent) == 1
        await asyncio.sleep(0.2)
        await cache.get(key())
        assert len(sent) == 2
    finally:
        await cache.close()


async def test_redis_recovers_after_backoff(redis_url: str, prefix: str, caplog):
    caplog.set_level(logging.WARNING, logger="gateway.cache")
    clock = FakeClock()
    cache = RedisCache(DOWN_URL, prefix=prefix)
    cache._clock = clock
    try:
        await cache.set(key(), resp(b"lost"), keep_s=30)
        assert cache.healthy is False
        # the server comes back (here: the client now points at a live one)
        await cache._client.aclose()
        cache._client = aioredis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
        await cache.set(key(), resp(b"kept"), keep_s=30)  # still in back-off: skipped
        assert cache.healthy is False
        clock.t += 1.0
        assert await cache.get(key()) is None  # first try after back-off succeeds (empty)
        assert cache.healthy is True
        await cache.set(key(), resp(b"kept"), keep_s=30)
        assert (await cache.get(key())).body == b"kept"
        assert cache.describe()["healthy"] is True
        assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]  # down, up
    finally:
        await cache.close()


async def test_redis_timeout_counts_as_failure():
    """A server that accepts connections but never answers: op_timeout_s bounds every call."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # swallow everything, answer nothing
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", op_timeout_s=0.1)
    try:
        started = time.monotonic()
        assert await cache.get(key()) is None
        assert time.monotonic() - started < 0.5
        assert cache.healthy is False and cache.describe()["errors"] == 1
        started = time.monotonic()
        await cache.set(key(), resp(), keep_s=5)  # in back-off: immediate
        assert time.monotonic() - started < 0.05
    finally:
        await cache.close()
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- fill lock


async def test_fill_lock_one_winner_and_loser_gets_value(redis_url: str, prefix: str):
    a = RedisCache(redis_url, prefix=prefix)
    b = RedisCache(redis_url, prefix=prefix)
    value = resp(b"filled \x00 by the winner", fetched_at=77.0)
    try:
        won = await asyncio.gather(a.acquire_fill_lock(key(), 2.0), b.acquire_fill_lock(key(), 2.0))
        assert sorted(won) == [False, True]
        winner, loser = (a, b) if won[0] else (b, a)

        async def fill():
            await asyncio.sleep(0.1)
            await winner.set(key(), value, keep_s=30)
            await winner.release_fill_lock(key())

        started = time.monotonic()
        got, _ = await asyncio.gather(loser.wait_for_fill(key(), 2.0), fill())
        assert got == value
        assert time.monotonic() - started < 1.0
        # lock released: the next acquirer wins again
        assert await loser.acquire_fill_lock(key(), 2.0) is True
        await loser.release_fill_lock(key())
    finally:
        await a.close()
        await b.close()


async def test_fill_lock_wait_ends_when_winner_gives_up(redis_url: str, prefix: str):
    a = RedisCache(redis_url, prefix=prefix)
    b = RedisCache(redis_url, prefix=prefix)
    try:
        assert await a.acquire_fill_lock(key(), 2.0) is True
        assert await b.acquire_fill_lock(key(), 2.0) is False
        await b.release_fill_lock(key())  # not b's lock: must not delete it
        assert await b.acquire_fill_lock(key(), 2.0) is False

        async def give_up():
            await asyncio.sleep(0.05)
            await a.release_fill_lock(key())  # upstream failed, nothing stored

        started = time.monotonic()
        got, _ = await asyncio.gather(b.wait_for_fill(key(), 2.0), give_up())
        assert got is None
        assert time.monotonic() - started < 0.5
    finally:
        await a.close()
        await b.close()


async def test_fill_lock_wait_times_out_and_lock_expires(redis_url: str, prefix: str):
    a = RedisCache(redis_url, prefix=prefix)
    b = RedisCache(redis_url, prefix=prefix)
    try:
        assert await a.acquire_fill_lock(key(), 0.3) is True  # the winner then hangs
        started = time.monotonic()
        assert await b.wait_for_fill(key(), 0.1) is None
        assert 0.09 <= time.monotonic() - started < 0.3
        await asyncio.sleep(0.25)
        assert await b.acquire_fill_lock(key(), 1.0) is True  # the crashed winner's lock expired
        await b.release_fill_lock(key())
    finally:
        await a.close()
        await b.close()


async def test_memory_cache_fill_lock_surface():
    cache = MemoryCache()
    assert await cache.acquire_fill_lock(key(), 1.0) is True
    assert await cache.wait_for_fill(key(), 1.0) is None
    await cache.release_fill_lock(key())
    await cache.close()


# --------------------------------------------------------------------------- in-flight


async def test_inflight_shares_one_execution():
    inflight = InFlight()
    calls = 0
    gate = asyncio.Event()

    async def fetch():
        nonlocal calls
        calls += 1
        await gate.wait()
        return object()

    tasks = [asyncio.create_task(inflight.run("k", fetch)) for _ in range(20)]
    await asyncio.sleep(0.01)
    assert len(inflight) == 1
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert len(inflight) == 0
    # nothing is cached: a later call runs fn again
    await inflight.run("k", fetch)
    assert calls == 2


async def test_inflight_different_keys_run_separately():
    inflight = InFlight()
    seen = []

    async def fetch(tag):
        seen.append(tag)
        await asyncio.sleep(0.01)
        return tag

    got = await asyncio.gather(*(inflight.run(f"k{i % 3}", lambda i=i: fetch(i % 3)) for i in range(9)))
    assert sorted(seen) == [0, 1, 2]
    assert got == [i % 3 for i in range(9)]


async def test_inflight_exception_reaches_every_caller():
    inflight = InFlight()
    calls = 0

    async def boom():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("upstream 502")

    results = await asyncio.gather(*(inflight.run("k", boom) for _ in range(10)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "upstream 502" for r in results)
    assert len(inflight) == 0


async def test_inflight_first_caller_cancelled_others_still_served():
    inflight = InFlight()
    calls = 0
    finished = False

    async def fetch():
        nonlocal calls, finished
        calls += 1
        await asyncio.sleep(0.05)
        finished = True
        return "page"

    first = asyncio.create_task(inflight.run("k", fetch))
    await asyncio.sleep(0)  # first caller has started fn
    others = [asyncio.create_task(inflight.run("k", fetch)) for _ in range(5)]
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.gather(*others) == ["page"] * 5
    assert calls == 1 and finished
    assert len(inflight) == 0


async def test_inflight_all_callers_cancelled_does_not_leak():
    inflight = InFlight()
    done = asyncio.Event()

    async def fetch():
        await asyncio.sleep(0.02)
        done.set()
        raise ValueError("nobody is listening")  # must not be logged as "never retrieved"

    task = asyncio.create_task(inflight.run("k", fetch))
    await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.wait_for(done.wait(), 1)
    await asyncio.sleep(0)
    assert len(inflight) == 0
