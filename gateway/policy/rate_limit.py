"""Per-client rate limiting: a token bucket per credential, shared through Redis when the
cache uses Redis (so N gateway processes enforce one limit), local otherwise.

Account callers and admin callers (an app backend's key) draw from buckets of two
policies, each per credential. `check(client_id, admin=...)` says whether the request may
go on and what is left (for the RateLimit headers, policy/rate_limit_headers.py);
`allow(client_id)` returns just the wait: 0 when the request may go on, else the seconds
until it could (sent as Retry-After). A Redis failure falls back to the local bucket
rather than failing open or closed for everyone.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.upstream.redis_client import hash_tag

log = logging.getLogger("gateway.ratelimit")

# KEYS[1] bucket; ARGV: rate/s, burst, now (s). Returns {wait ms (0 = allowed), tokens left x 1000}.
_LUA = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {math.ceil(wait * 1000), math.floor(tokens * 1000)}
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """One quota policy: a bucket of `burst` requests per credential, refilled at `rate`/s."""
    name: str      # the policy's name in the RateLimit headers: "default" or "admin"
    rate: float
    burst: int

    @property
    def window_s(self) -> int:
        """Seconds an empty bucket takes to fill (whole seconds, rounded up)."""
        return max(1, math.ceil(self.burst / self.rate))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The bucket after one request asked: refused when `wait_s` > 0."""
    policy: Policy
    wait_s: float      # 0: allowed; else seconds until one request's token is there
    tokens: float      # left in the bucket (after this request's, when allowed)

    @property
    def allowed(self) -> bool:
        return self.wait_s <= 0

    @property
    def remaining(self) -> int:
        """Whole requests that may follow at once."""
        return max(0, math.floor(self.tokens))

    @property
    def effective_window_s(self) -> int:
        """Seconds during which `remaining` is all that may be sent: until one more token is
        in the bucket (rounded up). Refused, it is the wait, as Retry-After says."""
        if not self.allowed:
            return max(1, math.ceil(self.wait_s))
        return max(1, math.ceil((math.floor(self.tokens) + 1 - self.tokens) / self.policy.rate))


class LocalBuckets:
    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client_id: str, now: float | None = None) -> float:
        return self.draw(client_id, now)[0]

    def draw(self, client_id: str, now: float | None = None) -> tuple[float, float]:
        """(wait, tokens left): take one token if there is one."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(client_id, (float(self.burst), now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client_id] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait, tokens


def bucket_key(client_id: str) -> str:
    """The credential's bucket; tagged with its id so a Redis Cluster keeps every key of one
    credential in one slot (a script may then touch several of them)."""
    return "bg:rl:" + hash_tag(client_id)


class RateLimiter:
    def __init__(self, rate: float, burst: int, redis_client: Any = None, *,
                 admin_rate: float | None = None, admin_burst: int | None = None):
        self.local = LocalBuckets(rate, burst)
        self.rate, self.burst = rate, burst
        self.policy = Policy("default", rate, burst)
        self.admin_policy = Policy("admin", admin_rate or rate, admin_burst or burst)
        self._local_admin = LocalBuckets(self.admin_policy.rate, self.admin_policy.burst)
        self.redis = redis_client
        self._script = redis_client.register_script(_LUA) if redis_client is not None else None
        self._redis_down_until = 0.0

    async def allow(self, client_id: str) -> float:
        return (await self.check(client_id)).wait_s

    async def check(self, client_id: str, *, admin: bool = False) -> Verdict:
        policy = self.admin_policy if admin else self.policy
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                waited_ms, tokens_milli = await self._script(keys=[bucket_key(client_id)],
                                                             args=[policy.rate, policy.burst, time.time()])
                return Verdict(policy, int(waited_ms) / 1000, int(tokens_milli) / 1000)
            except Exception as exc:  # any Redis trouble: enforce locally for a while
                log.warning("rate limiter: Redis unavailable (%s); enforcing per process", type(exc).__name__)
                self._redis_down_until = time.monotonic() + 5
        wait, tokens = (self._local_admin if admin else self.local).draw(client_id)
        return Verdict(policy, wait, tokens)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
