"""One poller per (source, upstream identity), shared by every subscriber.

A subscriber (`LiveSubscription`) names the identities it watches and how often it wants
news. Each identity gets one `Poller` in this process, however many subscribers watch it:
it reads the identity once at start (a cached answer at most one interval old will do: that
is the "now" a new subscriber sees first), then polls it at the smallest interval any subscriber asked for,
never below `[live] min_interval_s`, through the source's normal pipeline (breaker,
concurrency limit, retries, deadline) with the cache bypassed. Every read is handed to
every subscriber of that identity; the last subscriber leaving stops the poller.

Across processes (a `[cache] redis_url`): a Redis lock per identity elects the one
process that polls it; it announces each poll on one pub/sub channel (per database), and the others
read the pages it just wrote to the shared response cache (no upstream call) or, for a
failed poll, the failure it announced. Plain PUBLISH/SUBSCRIBE, not sharded: a cluster
broadcasts plain messages to every node, so one subscription on any node of a Redis
Cluster hears every notice (the same code for `redis://` and `redis+cluster://`). Each
process writes the interval its subscribers want next to the lock, and the elected
poller takes the smallest. A poller that stops hearing notices for two intervals takes
the lock over (the elected process went away); one that stops (its last subscriber left)
says so, and another takes over at once. Without Redis every process polls for its
own subscribers.

Redis keys hold a hash of (source, identity), never the identity itself (it may hold a
credential). `end_account` / `end_client` are the hook for "this key was revoked / this
account was deleted": they end the matching subscriptions now.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Hashable

from gateway.domain.errors import UpstreamCode
from gateway.domain.records import SourceError, SourceFetch, SourceId, SourceState
from gateway.upstream.pipeline import FetchOptions
from gateway.upstream.redis_client import database_of, hash_tag, open_pubsub
from gateway.upstream.resilience import Deadline

log = logging.getLogger("gateway.live")

CHANNEL = "bg:live:notices"   # + ":<database>": Redis delivers a channel to every database's subscribers
LOCK_SLACK_S = 5.0            # a lock outlives its holder's next poll by this much
WANT_TTL_FACTOR = 3           # a process's wanted interval counts for this many intervals


class TooManySubscriptions(Exception):
    """The key has `[live] max_subscriptions_per_key` open already."""


Key = tuple[SourceId, Hashable]   # (source, identity)


def key_hash(key: Key) -> str:
    source, identity = key
    return hashlib.sha256(f"{source.value}\n{identity!r}".encode()).hexdigest()[:32]


@dataclass(eq=False)
class LiveSubscription:
    """One subscriber: the identities it watches and the reads not yet taken."""
    hub: LiveHub
    keys: list[Key]
    interval_s: float
    client_id: str
    account_id: str
    pending: dict[Key, SourceFetch] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    closed: bool = False

    def offer(self, key: Key, fetch: SourceFetch) -> None:
        self.pending[key] = fetch.handed_out()   # the newest read wins; a slow reader skips none that matter
        self.ready.set()

    def end(self) -> None:
        self.ended = True
        self.ready.set()

    async def next(self) -> dict[Key, SourceFetch] | None:
        """The reads that arrived since the last call (waits for one); None once ended."""
        while not self.pending and not self.ended:
            self.ready.clear()
            await self.ready.wait()
        if self.ended:
            return None
        taken, self.pending = self.pending, {}
        return taken

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._leave(self)


class Poller:
    """The poll loop of one (source, identity) in this process."""

    def __init__(self, hub: LiveHub, key: Key, client: Any) -> None:
        self.hub, self.key, self.client = hub, key, client
        self.hash = key_hash(key)
        self.subscribers: set[LiveSubscription] = set()
        self.latest: SourceFetch | None = None
        self.wake = asyncio.Event()       # the wanted interval changed, or a notice came
        self.notice: dict[str, Any] | None = None
        self.token = uuid.uuid4().hex
        self.claimed = False              # it has written a lock or a wanted interval to Redis
        self.task: asyncio.Task | None = None
        self.polls = 0                    # upstream polls this process made (tests, bench)

    @property
    def interval_s(self) -> float:
        wanted = min((s.interval_s for s in self.subscribers), default=self.hub.floor_s)
        return max(self.hub.floor_s, wanted)

    def deliver(self, fetch: SourceFetch) -> None:
        self.latest = fetch
        for subscriber in list(self.subscribers):
            subscriber.offer(self.key, fetch)

    def options(self, **kw: Any) -> FetchOptions:
        return FetchOptions(deadline=Deadline.after(self.hub.deadline_s), **kw)

    async def run(self) -> None:
        try:
            # "Now": a cached answer at most one interval old will do (another process's poll wrote it).
            self.deliver(await self.client.fetch(self.key[1], self.options(max_age_s=self.interval_s)))
            next_poll = time.monotonic() + self.interval_s
            while self.subscribers:
                if await self.hub.shared.elect(self):
                    wait = next_poll - time.monotonic()
                    if wait > 0:
                        await self._sleep(min(wait, self.interval_s))
                        next_poll = min(next_poll, time.monotonic() + self.interval_s)
                        continue
                    started = time.monotonic()   # polls keep their rate however long one takes
                    fetch = await self.client.fetch(self.key[1], self.options(bypass_cache=True))
                    self.polls += 1
                    self.hub.polls += 1
                    await self.hub.shared.announce(self, fetch)
                    self.deliver(fetch)
                    next_poll = max(time.monotonic(), started + await self.hub.shared.interval_for(self))
                else:
                    await self.hub.shared.want(self)
                    heard = await self._sleep(2 * self.interval_s + LOCK_SLACK_S, notices=True)
                    if heard is not None and heard.get("released"):
                        next_poll = time.monotonic()   # the poller elsewhere stopped: take over now
                    elif heard is not None:
                        self.deliver(await self._follow(heard))
                        next_poll = time.monotonic() + self.interval_s
        except asyncio.CancelledError:
            # Only the hub cancels a poller (its last subscriber left, or shutdown), and it has
            # queued the Redis bookkeeping already. Ending normally, rather than re-raising,
            # keeps no exception on the task: a cancelled task's stored exception holds the
            # frames that hold the poller that holds the task, a cycle only the rarely run
            # oldest-generation collection would free (server/app.py's gc.set_threshold).
            return
        except Exception:   # a bug: the subscribers end rather than hang
            log.exception("live poller failed source=%s", self.key[0].value)
            for subscriber in list(self.subscribers):
                subscriber.end()   # their closing stops this poller (LiveHub._leave)

    async def _sleep(self, seconds: float, *, notices: bool = False) -> dict[str, Any] | None:
        # A timer that sets the event, not asyncio.wait_for (a task per sleep, cancelled at each
        # wake). Cleared after waking, not before sleeping: a notice that came while this poller
        # was busy (a Redis command) wakes it at once instead of being lost until the timer.
        timer = asyncio.get_running_loop().call_later(max(0.0, seconds), self.wake.set)
        try:
            await self.wake.wait()
        finally:
            timer.cancel()
        self.wake.clear()
        heard, self.notice = self.notice, None
        return heard if notices else None

    async def _follow(self, notice: dict[str, Any]) -> SourceFetch:
        """Another process polled: its pages are in the shared cache, or it says what failed."""
        if notice.get("ok"):
            age = max(0.0, time.time() - float(notice["at"]))
            return await self.client.fetch(self.key[1], self.options(max_age_s=age + 1.0))
        code = notice.get("code")
        error = SourceError(code=code if code in {c.value for c in UpstreamCode} else UpstreamCode.UNAVAILABLE.value,
                            message=str(notice.get("message", ""))[:300])
        return SourceFetch(source=self.key[0], account_id=self.client.account_id_of(self.key[1]),
                           state=SourceState.FAILED, error=error, fetched_at=datetime.now(timezone.utc))


class LocalOnly:
    """No Redis: this process polls for its own subscribers."""

    async def elect(self, poller: Poller) -> bool:
        return True

    async def want(self, poller: Poller) -> None:
        pass

    async def announce(self, poller: Poller, fetch: SourceFetch) -> None:
        pass

    async def interval_for(self, poller: Poller) -> float:
        return poller.interval_s

    def adopt(self, poller: Poller) -> None:
        pass

    def release_later(self, poller: Poller, task: asyncio.Task | None) -> None:
        pass

    def start(self, hub: LiveHub) -> None:
        pass

    async def close(self) -> None:
        pass


# Extend the lock only while it is still ours (another process may have taken it over).
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class SharedByRedis:
    """The lock that elects one poller per identity across processes, and the notices."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        # Two deployments on one Redis server in different databases keep their locks apart;
        # their notices too, on a channel of their own.
        self.channel = f"{CHANNEL}:{database_of(redis)}"
        # Polls start together (a burst of subscribers): bound the commands in flight so the
        # client's connection pool is never exhausted (that would look like Redis being away).
        self.slots = asyncio.Semaphore(16)
        self.process = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.listener: asyncio.Task | None = None
        self.hub: LiveHub | None = None
        # Stopped pollers' bookkeeping not done yet: identity hash -> (lock token, its task)
        self.releases: dict[str, tuple[str, asyncio.Task | None]] = {}
        self.releaser: asyncio.Task | None = None

    @staticmethod
    def lock_key(hashed: str) -> str:
        """One identity's lock; its own hash tag, so a cluster spreads the locks over its masters."""
        return f"bg:live:{hash_tag(hashed)}:lock"

    @classmethod
    def _lock(cls, poller: Poller) -> str:
        return cls.lock_key(poller.hash)

    @staticmethod
    def wants_key(hashed: str) -> str:
        return f"bg:live:{hash_tag(hashed)}:want"

    @classmethod
    def _wants(cls, poller: Poller) -> str:
        return cls.wants_key(poller.hash)

    def start(self, hub: LiveHub) -> None:
        self.hub = hub
        if self.listener is None:
            self.listener = asyncio.get_running_loop().create_task(self._listen())

    async def elect(self, poller: Poller) -> bool:
        ttl_ms = int((2 * poller.interval_s + LOCK_SLACK_S) * 1000)
        poller.claimed = True
        try:
            async with self.slots:
                if await self.redis.eval(_EXTEND, 1, self._lock(poller), poller.token, ttl_ms):
                    return True
                return bool(await self.redis.set(self._lock(poller), poller.token, nx=True, px=ttl_ms))
        except Exception as exc:   # Redis away: poll for our own subscribers rather than for nobody
            log.warning("live: redis unavailable (%s); polling locally", type(exc).__name__)
            return True

    async def want(self, poller: Poller) -> None:
        expires = time.time() + WANT_TTL_FACTOR * poller.interval_s
        poller.claimed = True
        with contextlib.suppress(Exception):
            async with self.slots:
                await self.redis.hset(self._wants(poller), self.process, f"{poller.interval_s}:{expires}")
                await self.redis.expire(self._wants(poller), int(WANT_TTL_FACTOR * poller.interval_s) + 1)

    async def interval_for(self, poller: Poller) -> float:
        """The smallest interval any process's subscribers want (never below the floor)."""
        best = poller.interval_s
        with contextlib.suppress(Exception):
            now = time.time()
            async with self.slots:
                wants = await self.redis.hgetall(self._wants(poller))
            for raw in wants.values():
                interval, _, expires = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
                if float(expires) > now:
                    best = min(best, float(interval))
        return max(poller.hub.floor_s, best)

    async def announce(self, poller: Poller, fetch: SourceFetch) -> None:
        notice: dict[str, Any] = {"k": poller.hash, "from": self.process, "at": time.time(),
                                  "ok": fetch.state is not SourceState.FAILED}
        if fetch.error is not None:   # our own words (SourceError), never an upstream body
            notice.update(code=fetch.error.code, message=fetch.error.message)
        with contextlib.suppress(Exception):
            async with self.slots:
                await self.redis.publish(self.channel, json.dumps(notice))

    def adopt(self, poller: Poller) -> None:
        """A new poller of an identity whose stopped poller's entry is still queued takes
        its token: the lock (if that one held it) is then already this poller's."""
        queued = self.releases.pop(poller.hash, None)
        if queued is not None:
            poller.token, poller.claimed = queued[0], True

    def release_later(self, poller: Poller, task: asyncio.Task | None) -> None:
        """Queue a stopped poller's bookkeeping (nothing to do if it never wrote any)."""
        if not poller.claimed:
            return
        self.releases[poller.hash] = (poller.token, task)
        if self.releaser is None or self.releaser.done():
            self.releaser = asyncio.get_running_loop().create_task(self._release_queued())

    async def _release_queued(self) -> None:
        while self.releases:
            hashed = next(iter(self.releases))
            token, task = self.releases.pop(hashed)
            if task is not None and not task.done():
                # the cancelled poller may have a command in flight: free the lock after it
                await asyncio.wait([task])
            await self._release(hashed, token)

    async def _release(self, hashed: str, token: str) -> None:
        with contextlib.suppress(Exception):
            async with self.slots:
                if await self.redis.eval(_RELEASE, 1, self.lock_key(hashed), token):
                    # the others watching this identity elect a new poller now, not after a silence
                    await self.redis.publish(self.channel, json.dumps({"k": hashed, "from": self.process,
                                                                  "released": True}))
                    successor = self.hub.by_hash.get(hashed) if self.hub is not None else None
                    if successor is not None:   # opened here meanwhile (our own notices are not heard)
                        successor.notice = {"released": True}
                        successor.wake.set()
                await self.redis.hdel(self.wants_key(hashed), self.process)

    async def _listen(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = await open_pubsub(self.redis)
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # the node went away: subscribe again on a fresh connection
                log.warning("live: notice channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _dispatch(self, data: Any) -> None:
        try:
            notice = json.loads(data)
        except (TypeError, ValueError):
            return
        if not isinstance(notice, dict) or notice.get("from") == self.process or self.hub is None:
            return
        poller = self.hub.by_hash.get(notice.get("k"))
        if poller is not None:
            poller.notice = notice
            poller.wake.set()

    async def close(self) -> None:
        if self.releaser is not None:   # the stopped pollers' locks go now, not at their expiry
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.releaser, 2.0)
            self.releaser = None
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.listener
            self.listener = None


class LiveHub:
    """Every subscription and poller of this process."""

    def __init__(self, clients: dict[SourceId, Any], *, floor_s: float, max_per_key: int,
                 deadline_s: float = 10.0, redis: Any = None) -> None:
        self.clients = clients
        self.floor_s = floor_s
        self.max_per_key = max_per_key
        self.deadline_s = deadline_s
        self.shared: LocalOnly | SharedByRedis = SharedByRedis(redis) if redis is not None else LocalOnly()
        self.pollers: dict[Key, Poller] = {}
        self.by_hash: dict[str, Poller] = {}
        self.subscriptions: set[LiveSubscription] = set()
        self.per_client: dict[str, int] = {}
        self.polls = 0

    def is_full(self, client_id: str) -> bool:
        return self.per_client.get(client_id, 0) >= self.max_per_key

    def open(self, keys: list[Key], interval_s: float, *, client_id: str, account_id: str) -> LiveSubscription:
        if self.is_full(client_id):
            raise TooManySubscriptions()
        subscription = LiveSubscription(self, keys, max(self.floor_s, interval_s), client_id, account_id)
        self.subscriptions.add(subscription)
        self.per_client[client_id] = self.per_client.get(client_id, 0) + 1
        self.shared.start(self)
        for key in keys:
            poller = self.pollers.get(key)
            if poller is None:
                poller = self.pollers[key] = Poller(self, key, self.clients[key[0]])
                self.shared.adopt(poller)
                self.by_hash[poller.hash] = poller
                poller.subscribers.add(subscription)
                poller.task = asyncio.get_running_loop().create_task(poller.run())
            else:
                shorter = subscription.interval_s < poller.interval_s
                poller.subscribers.add(subscription)
                if poller.latest is not None:
                    subscription.offer(key, poller.latest)   # "now", without another read
                if shorter:
                    poller.wake.set()
        return subscription

    def _leave(self, subscription: LiveSubscription) -> None:
        self.subscriptions.discard(subscription)
        left = self.per_client.get(subscription.client_id, 1) - 1
        if left > 0:
            self.per_client[subscription.client_id] = left
        else:
            self.per_client.pop(subscription.client_id, None)
        for key in subscription.keys:
            poller = self.pollers.get(key)
            if poller is None:
                continue
            poller.subscribers.discard(subscription)
            if not poller.subscribers:   # the last one left: the poller stops (and frees its lock)
                del self.pollers[key]
                self.by_hash.pop(poller.hash, None)
                # Nothing of it is kept past its task: not its last read, and not the task
                # (whose frames refer to the poller: a cycle if the poller referred back).
                task, poller.task, poller.latest = poller.task, None, None
                if task is not None:
                    task.cancel()
                self.shared.release_later(poller, task)

    # -- the hook for revoked keys and deleted accounts ------------------------
    def end_where(self, match: Callable[[LiveSubscription], bool]) -> int:
        ended = [s for s in self.subscriptions if match(s)]
        for subscription in ended:
            subscription.end()
        return len(ended)

    def end_account(self, account_id: str) -> int:
        """An account was deleted (or its sources relinked): its subscriptions end now."""
        return self.end_where(lambda s: s.account_id == account_id)

    def end_client(self, client_id: str) -> int:
        """A key was revoked: the subscriptions opened with it end now."""
        return self.end_where(lambda s: s.client_id == client_id)

    def describe(self) -> dict[str, int]:
        return {"subscriptions": len(self.subscriptions), "pollers": len(self.pollers),
                "tasks": sum(1 for p in self.pollers.values() if p.task is not None and not p.task.done()),
                "polls": self.polls}

    async def close(self) -> None:
        for subscription in list(self.subscriptions):
            subscription.end()
            subscription.close()
        await self.shared.close()
