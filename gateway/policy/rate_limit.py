"""Per-client rate limiting: a token bucket per credential, shared through Redis when the
cache uses Redis (so N gateway processes enforce one limit), local otherwise.

`allow(client_id)` returns 0 when the request may go on, else the seconds to wait
(sent as Retry-After). A Redis failure falls back to the local bucket rather than
failing open or closed for everyone.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger("gateway.ratelimit")

# KEYS[1] bucket; ARGV: rate/s, burst, now (s). Returns wait seconds * 1000 (0 = allowed).
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
return math.ceil(wait * 1000)
"""


class LocalBuckets:
    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client_id: str, now: float | None = None) -> float:
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
        return wait


class RateLimiter:
    def __init__(self, rate: float, burst: int, redis_client: Any = None):
        self.local = LocalBuckets(rate, burst)
        self.rate, self.burst = rate, burst
        self.redis = redis_client
        self._script = redis_client.register_script(_LUA) if redis_client is not None else None
        self._redis_down_until = 0.0

    async def allow(self, client_id: str) -> float:
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                waited_ms = await self._script(keys=[f"bg:rl:{client_id}"], args=[self.rate, self.burst, time.time()])
                return int(waited_ms) / 1000
            except Exception as exc:  # any Redis trouble: enforce locally for a while
                log.warning("rate limiter: Redis unavailable (%s); enforcing per process", type(exc).__name__)
                self._redis_down_until = time.monotonic() + 5
        return self.local.take(client_id)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
