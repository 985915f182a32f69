"""What a closed subscription leaves in the hub: nothing, freed by reference counting (no
garbage collection), and with Redis, a stopped poller's lock either freed once or handed
to the next poller of the same identity. A fake client and a fake Redis, no network."""
from __future__ import annotations

import asyncio
import gc
import json
import weakref
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from gateway.domain.records import SourceFetch, SourceState
from gateway.live import hub as hub_module
from gateway.live.hub import LiveHub
from gateway.sources.catalog import Source

KEY = (Source.COBO, "identity-1")


class FakeClient:
    def __init__(self) -> None:
        self.reads = 0

    async def fetch(self, identity, options):
        self.reads += 1
        return SourceFetch(source=Source.COBO, account_id="acct", state=SourceState.OK,
                           fetched_at=datetime.now(timezone.utc))

    def account_id_of(self, identity):
        return "acct"


class FakeRedis:
    """The commands the hub sends; a lock is a plain key, the release script compares its token."""

    connection_pool = SimpleNamespace(connection_kwargs={"db": 0})   # as redis-py's client has

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.released: list[str] = []
        self.published: list[str] = []

    async def eval(self, script, numkeys, key, token, *args):
        if self.keys.get(key) != token:
            return 0
        if script == hub_module._RELEASE:
            del self.keys[key]
            self.released.append(token)
        return 1

    async def set(self, key, value, nx=False, px=None):
        if nx and key in self.keys:
            return False
        self.keys[key] = value
        return True

    async def publish(self, channel, message):
        self.published.append(message)

    async def hset(self, *args):
        pass

    async def expire(self, *args):
        pass

    async def hdel(self, *args):
        pass

    async def hgetall(self, key):
        return {}


def open_one(hub: LiveHub):
    return hub.open([KEY], 30, client_id="client-1", account_id="acct")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def no_gc():
    """What is freed here is freed by reference counting: the collector does not run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_closed_subscription_and_its_poller_are_freed_without_a_collection(no_gc):
    hub = LiveHub({Source.COBO: FakeClient()}, floor_s=1, max_per_key=5)
    subscription = open_one(hub)
    assert await subscription.next() is not None       # the first read arrived
    poller = hub.pollers[KEY]
    task = poller.task
    gone_subscription, gone_poller = weakref.ref(subscription), weakref.ref(poller)
    subscription.close()
    await asyncio.wait([task])
    await settle()
    assert hub.describe() == {"subscriptions": 0, "pollers": 0, "tasks": 0, "polls": 0}
    assert hub.subscriptions == set() and hub.per_client == {} and hub.by_hash == {}
    assert not task.cancelled() and task.exception() is None   # ended, keeping no CancelledError
    del subscription, poller, task
    assert gone_subscription() is None
    assert gone_poller() is None


async def test_many_cycles_leave_no_object_of_the_hub_behind(no_gc):
    hub = LiveHub({Source.COBO: FakeClient()}, floor_s=1, max_per_key=5)
    refs = []
    for _ in range(50):
        subscription = open_one(hub)
        await subscription.next()
        refs += [weakref.ref(subscription), weakref.ref(hub.pollers[KEY])]
        subscription.close()
        await settle()
    del subscription
    await settle()
    assert [r for r in refs if r() is not None] == []


async def test_a_stopped_pollers_lock_is_freed_once_when_nobody_reopens_it():
    redis = FakeRedis()
    hub = LiveHub({Source.COBO: FakeClient()}, floor_s=1, max_per_key=5, redis=redis)
    subscription = open_one(hub)
    await subscription.next()
    await settle()                                      # the poller elected itself
    token = hub.pollers[KEY].token
    assert list(redis.keys.values()) == [token]
    subscription.close()
    await hub.shared.releaser
    assert redis.keys == {} and redis.released == [token]
    assert any('"released": true' in m for m in redis.published)   # the others take over at once
    await hub.close()


async def test_reopening_an_identity_takes_the_stopped_pollers_lock_over():
    redis = FakeRedis()
    hub = LiveHub({Source.COBO: FakeClient()}, floor_s=1, max_per_key=5, redis=redis)
    first = open_one(hub)
    await first.next()
    await settle()
    token = hub.pollers[KEY].token
    first.close()
    second = open_one(hub)                              # before the queued release was worked
    assert hub.pollers[KEY].token == token
    await second.next()
    await settle()
    assert redis.released == [] and list(redis.keys.values()) == [token]   # still ours, never freed
    second.close()
    await hub.shared.releaser
    assert redis.released == [token]
    await hub.close()


async def test_a_release_heard_while_the_follower_was_busy_is_not_lost():
    """Another process holds the lock; its release notice arrives while this process's
    poller is writing its wanted interval: the poller takes over at once, not after
    sleeping out a silent lock's two intervals."""
    redis = FakeRedis()
    hub = LiveHub({Source.COBO: FakeClient()}, floor_s=1, max_per_key=5, redis=redis)
    lock = hub.shared.lock_key(hub_module.key_hash(KEY))
    redis.keys[lock] = "the-other-process"
    released = []

    async def hset(*args):
        if not released:   # the other process lets go now
            released.append(True)
            del redis.keys[lock]
            hub.shared._dispatch(json.dumps({"k": hub_module.key_hash(KEY), "from": "elsewhere", "released": True}))
    redis.hset = hset
    subscription = open_one(hub)
    await subscription.next()
    for _ in range(20):
        await asyncio.sleep(0)
    poller = hub.pollers[KEY]
    assert released and poller.polls == 1 and redis.keys[lock] == poller.token
    subscription.close()
    await hub.close()


def test_deployments_in_two_databases_of_one_redis_hear_only_their_own_notices():
    # Redis delivers a channel to subscribers of every database: the channel names the database.
    from gateway.live.hub import SharedByRedis
    from gateway.upstream.redis_client import build_redis_client
    five, also_five, six = (SharedByRedis(build_redis_client(f"redis://127.0.0.1:6379/{db}")) for db in (5, 5, 6))
    assert five.channel == also_five.channel == "bg:live:notices:5"
    assert six.channel == "bg:live:notices:6"
