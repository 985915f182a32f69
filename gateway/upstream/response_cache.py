"""Cache of raw upstream HTTP responses, one entry per upstream page.

Two backends share the `Cache` protocol:

* `MemoryCache`: per-process LRU bounded by entry count and body bytes.
* `RedisCache`: shared by every gateway process; any Redis failure degrades
  to a miss / no-op, marks the cache unhealthy and backs off (1 s doubling to
  30 s) before Redis is tried again.

`InFlight` de-duplicates concurrent fetches inside one process; the fill lock
on `RedisCache` (`acquire_fill_lock` / `wait_for_fill` / `release_fill_lock`)
does the same across processes.

Keys come from `cache_key`: the credential only ever enters the SHA-256
digest, never a key, a value or a log line. On a Redis Cluster an entry and its fill
lock share one slot (`lock_key`), so the scripts that touch both never meet CROSSSLOT.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import struct
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Hashable, Mapping, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from gateway.upstream.redis_client import build_redis_client, hash_tag, is_cluster_url, learn_layout

log = logging.getLogger("gateway.cache")

T = TypeVar("T")

KEY_PREFIX = "bg:v1:"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class CachedResponse:
    """A raw upstream answer; `fetched_at` is wall-clock epoch seconds."""

    status: int
    body: bytes
    fetched_at: float

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.fetched_at


def cache_key(
    source: str,
    url: str,
    params: list[tuple[str, str]] | Mapping[str, str],
    credential: str,
) -> str:
    """`bg:v1:<source>:<sha256 hex>` over a canonical encoding of the request.

    Params are sorted, so order (and dict vs list of pairs) does not matter;
    repeated params are kept. The credential is hashed, never embedded.
    """
    items = params.items() if isinstance(params, Mapping) else params
    pairs = sorted([str(k), str(v)] for k, v in items)
    canonical = json.dumps(
        [source, url, pairs, credential], ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    return f"{KEY_PREFIX}{source}:{hashlib.sha256(canonical).hexdigest()}"


# Binary value layout for Redis: version byte, status (uint16), fetched_at (double), body.
_HEADER = struct.Struct(">BHd")
_FORMAT_VERSION = 1


def encode_value(value: CachedResponse) -> bytes:
    return _HEADER.pack(_FORMAT_VERSION, value.status, value.fetched_at) + bytes(value.body)


def decode_value(raw: bytes) -> CachedResponse | None:
    """None for anything this version did not write (treated as a miss)."""
    if len(raw) < _HEADER.size:
        return None
    version, status, fetched_at = _HEADER.unpack_from(raw)
    if version != _FORMAT_VERSION:
        return None
    return CachedResponse(status=status, body=bytes(raw[_HEADER.size:]), fetched_at=fetched_at)


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class Cache(Protocol):
    healthy: bool

    async def get(self, key: str) -> CachedResponse | None: ...

    async def set(self, key: str, value: CachedResponse, keep_s: float) -> None: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- memory


class MemoryCache(Cache):
    """In-process LRU. Size is counted as len(key) + len(body) per entry.

    Expired entries are misses and are dropped when met (lazily) or when the
    LRU pushes them out. An entry larger than `max_bytes` is not stored.
    """

    backend = "memory"

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.healthy = True
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._bytes = 0
        # key -> (value, expires_at on the monotonic clock, size)
        self._entries: OrderedDict[str, tuple[CachedResponse, float, int]] = OrderedDict()
        self._clock: Callable[[], float] = time.monotonic

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        value, expires_at, _ = entry
        if self._clock() >= expires_at:
            self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    async def set(self, key: str, value: CachedResponse, keep_s: float) -> None:
        if key in self._entries:
            self._drop(key)
        size = len(key) + len(value.body)
        if keep_s <= 0 or size > self.max_bytes:
            return
        self._entries[key] = (value, self._clock() + keep_s, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        _, _, size = self._entries.pop(key)
        self._bytes -= size

    # Same fill-lock surface as RedisCache so callers need not branch; within
    # one process InFlight already de-duplicates, so these are trivial.
    async def acquire_fill_lock(self, key: str, ttl_s: float) -> bool:
        return True

    async def wait_for_fill(self, key: str, timeout_s: float) -> CachedResponse | None:
        return None

    async def release_fill_lock(self, key: str) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "healthy": self.healthy,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "errors": 0,
            "evictions": self.evictions,
        }


# --------------------------------------------------------------------------- redis


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***' (safe to log)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo or user else f"***@{host}"
        query = parts.query
        if "password=" in query:
            query = "&".join(
                "password=***" if p.startswith("password=") else p for p in query.split("&")
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except Exception:  # never let logging leak or crash
        return "<redis url>"


class _Unavailable(Exception):
    """Internal: Redis skipped (back-off) or failed; the caller degrades."""


# Delete the lock only if it is still ours (it may have expired and been re-taken).
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

# The entry and whether its fill lock is still held, in one round trip (KEYS: entry, lock).
_PROBE_LUA = """
return {redis.call('get', KEYS[1]), redis.call('exists', KEYS[2])}
"""


def lock_key(entry_key: str) -> str:
    """The fill lock of an entry: its hash tag is the entry's whole key, so a cluster
    keeps both in the entry's slot (an entry key holds no braces)."""
    return hash_tag(entry_key) + ":lock"


class RedisCache(Cache):
    """Shared cache in Redis; never raises on Redis trouble.

    Values are stored binary-safe as an 11-byte header (version, status,
    fetched_at) followed by the body, with a PX expiry of keep_s.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        op_timeout_s: float = 0.25,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        poll_interval_s: float = 0.02,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("a cache key prefix may not hold braces (they are Redis Cluster hash tags)")
        self.prefix = prefix
        self.op_timeout_s = op_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.healthy = True
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.skipped = 0  # operations not sent because of back-off
        self._safe_url = redact_url(url)
        self.topology = "cluster" if is_cluster_url(url) else "single"
        # No client-side retries: one attempt per operation, our back-off decides the rest.
        self._client = build_redis_client(url, timeout_s=op_timeout_s, retries=0)
        self._probe = self._client.register_script(_PROBE_LUA)
        self._release = self._client.register_script(_RELEASE_LUA)
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self._token = uuid.uuid4().hex  # identifies this process's fill locks
        # A cluster's layout is learnt once before the first operation, with more time than one operation.
        self._layout_known = self.topology == "single"
        self._layout_lock = asyncio.Lock()

    # ---- plumbing

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.healthy and self._clock() < self._retry_at:
            self.skipped += 1
            raise _Unavailable
        try:
            if not self._layout_known:
                await self._learn_layout()
            result = await asyncio.wait_for(fn(), self.op_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # RedisError, OSError, TimeoutError, protocol trouble
            self._failed(exc)
            raise _Unavailable from exc
        if not self.healthy:
            self.healthy = True
            self._backoff_s = 0.0
            log.warning("redis cache at %s is reachable again", self._safe_url)
        return result

    async def _learn_layout(self) -> None:
        async with self._layout_lock:
            if not self._layout_known:
                await asyncio.wait_for(learn_layout(self._client), max(2.0, 8 * self.op_timeout_s))
                self._layout_known = True

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = self._clock()
        if not self.healthy and now < self._retry_at:
            return  # a concurrent operation already failed and set the back-off
        if self.healthy:
            self._backoff_s = self.backoff_initial_s
            self.healthy = False
            log.warning(
                "redis cache at %s unavailable (%s); serving without it, retry in %.1fs",
                self._safe_url, type(exc).__name__, self._backoff_s,
            )
        else:
            self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
        self._retry_at = now + self._backoff_s

    def _k(self, key: str) -> str:
        return self.prefix + key

    # ---- Cache protocol

    async def get(self, key: str) -> CachedResponse | None:
        try:
            raw = await self._call(lambda: self._client.get(self._k(key)))
        except _Unavailable:
            self.misses += 1
            return None
        value = decode_value(raw) if raw is not None else None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def set(self, key: str, value: CachedResponse, keep_s: float) -> None:
        px = int(keep_s * 1000)
        if px <= 0:
            return
        data = encode_value(value)
        try:
            await self._call(lambda: self._client.set(self._k(key), data, px=px))
        except _Unavailable:
            pass

    # ---- cross-process fill lock

    async def acquire_fill_lock(self, key: str, ttl_s: float) -> bool:
        """True when this process must fetch (lock won, or Redis unusable)."""
        px = max(1, int(ttl_s * 1000))
        try:
            won = await self._call(
                lambda: self._client.set(lock_key(self._k(key)), self._token, nx=True, px=px)
            )
        except _Unavailable:
            return True
        return bool(won)

    async def wait_for_fill(self, key: str, timeout_s: float) -> CachedResponse | None:
        """Poll until the entry appears (returned), the lock is gone or timeout (None)."""
        deadline = self._clock() + timeout_s
        keys = [self._k(key), lock_key(self._k(key))]
        while True:
            try:
                raw, locked = await self._call(lambda: self._probe(keys=keys))
            except _Unavailable:
                return None
            if raw is not None:
                return decode_value(raw)
            if not locked:
                return None
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(self.poll_interval_s, remaining))

    async def release_fill_lock(self, key: str) -> None:
        try:
            await self._call(lambda: self._release(keys=[lock_key(self._k(key))], args=[self._token]))
        except _Unavailable:
            pass

    # ---- lifecycle / introspection

    async def close(self) -> None:
        closer = getattr(self._client, "aclose", None) or self._client.close
        try:
            await closer()
        except Exception:
            pass

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "topology": self.topology,   # one Redis server, or a Redis Cluster
            "healthy": self.healthy,
            "entries": None,  # not known: the Redis database may be shared
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "skipped": self.skipped,
            "backoff_s": self._backoff_s if not self.healthy else 0.0,
        }


# --------------------------------------------------------------------------- in-flight


class InFlight:
    """Concurrent callers with the same key share one execution of `fn`.

    `fn` runs in its own task; callers await it through `asyncio.shield`, so a
    cancelled caller (even the first) leaves the shared execution running for
    the others. The entry is removed as soon as `fn` finishes: nothing is
    cached here.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._execute(key, fn))
            task.add_done_callback(_consume_exception)
            if not task.done():
                self._tasks[key] = task
        return await asyncio.shield(task)

    def joining(self, key: Hashable) -> Awaitable[Any] | None:
        """The execution running for `key`, to await as `run` would, or None when there is none."""
        task = self._tasks.get(key)
        return None if task is None else asyncio.shield(task)

    async def _execute(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]


def _consume_exception(task: asyncio.Task[Any]) -> None:
    # Every waiter may have been cancelled; don't let the loop log "never retrieved".
    if not task.cancelled():
        task.exception()


# --------------------------------------------------------------------------- factory


def build_cache(redis_url: Any = None, **kw: Any) -> Cache:
    """RedisCache when a URL (str or pydantic SecretStr) is given, else MemoryCache.

    Keyword options meant for the other backend are ignored, so one config
    dict can serve both; unknown options raise TypeError.
    """
    if redis_url is not None and hasattr(redis_url, "get_secret_value"):
        redis_url = redis_url.get_secret_value()
    redis_opts = set(inspect.signature(RedisCache.__init__).parameters) - {"self", "url"}
    memory_opts = set(inspect.signature(MemoryCache.__init__).parameters) - {"self"}
    unknown = set(kw) - redis_opts - memory_opts
    if unknown:
        raise TypeError(f"build_cache: unknown option(s) {sorted(unknown)}")
    if redis_url:
        return RedisCache(redis_url, **{k: v for k, v in kw.items() if k in redis_opts})
    return MemoryCache(**{k: v for k, v in kw.items() if k in memory_opts})
