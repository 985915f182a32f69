"""Resilience primitives for the upstream fetch path: retries, retry budgets, breakers, limits, deadlines.

Everything here is small, synchronous where it can be, and safe to use from asyncio code: none of
these objects block, and none of them do I/O. Anything time-dependent takes an injectable `clock`
(default `time.monotonic`) so tests can drive it deterministically.

Typical use for one upstream call (the integration lives in the sources, not here):

    if not breaker.allow():                      # fast-fail while the source is known to be down
        raise UpstreamError(UNAVAILABLE, ...)
    budget.record_request()                      # first attempt deposits retry tokens
    for attempt in range(1, policy.max_attempts + 1):
        async with limiter:                      # bound concurrent calls to the source
            ...                                  # call with timeout=min(per_call, deadline.remaining())
        if ok: breaker.record_success(); break
        breaker.record_failure()
        if attempt == policy.max_attempts or not budget.try_spend(): give up
        wait = policy.delay(attempt, retry_after, rng)
        if wait >= deadline.remaining(): give up     # never sleep past the client's deadline
        await asyncio.sleep(wait)
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Callable

Clock = Callable[[], float]

# 2**60 * any sane base delay is astronomically larger than any max_delay_s; capping the exponent
# keeps `base * 2**n` from overflowing a float when a caller passes a silly attempt number.
_MAX_BACKOFF_EXPONENT = 60


# --------------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------------

@dataclass
class RetryPolicy:
    """How many times to try, how long to wait between tries, and which HTTP statuses are retryable.

    `max_attempts` counts the first attempt too: 3 means one call plus at most two retries.
    """

    max_attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})  # immutable, so a plain default is safe

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...) before the next one.

        Exponential backoff with FULL jitter (AWS architecture blog, "Exponential Backoff And
        Jitter"): uniform in [0, min(max_delay_s, base_delay_s * 2**(attempt-1))]. Full jitter
        de-synchronises clients that failed together, which is the point during an outage.

        When the upstream sent Retry-After, we honour it: the result is max(retry_after, jittered)
        and is deliberately NOT capped by max_delay_s -- only the caller's deadline may cut it short
        (the caller compares it to `Deadline.remaining()` and gives up rather than retry early).
        """
        exponent = min(max(attempt, 1) - 1, _MAX_BACKOFF_EXPONENT)
        cap = max(0.0, min(self.max_delay_s, self.base_delay_s * (2 ** exponent)))
        uniform = rng.uniform if rng is not None else random.uniform
        jittered = uniform(0.0, cap)
        if retry_after is not None:
            # A negative or garbage-small Retry-After never shortens our own backoff.
            return max(float(retry_after), jittered)
        return jittered

    def should_retry_status(self, status: int) -> bool:
        """True for statuses worth another try (rate limited / transient gateway errors)."""
        return status in self.retry_statuses


# --------------------------------------------------------------------------------------------------
# Retry budget
# --------------------------------------------------------------------------------------------------

class RetryBudget:
    """Per-source retry budget (cf. Finagle RetryBudget, Envoy retry_budget).

    Retries are limited to roughly `ratio` of recent first attempts, plus a floor of `min_per_s`
    retries per second so that a quiet source can still retry at all. Everything is counted over a
    sliding window of `window_s` seconds. This keeps an outage from turning every request into
    `max_attempts` requests (a retry storm) while still smoothing over sporadic failures.

    A retry is allowed when
        ratio * (first attempts in window) + min_per_s * window_s  >  retries spent in window
    and allowing it spends one.

    Not thread-safe; meant for one event loop (all methods are synchronous, so no awaits interleave).
    """

    def __init__(self, ratio: float = 0.2, min_per_s: float = 1.0, window_s: float = 10.0,
                 clock: Clock = time.monotonic):
        if ratio < 0 or min_per_s < 0:
            raise ValueError("ratio and min_per_s must be >= 0")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.window_s = window_s
        self._clock = clock
        # Timestamps of first attempts and of spent retries inside the window (oldest first).
        # One float per event, bounded by the window's length.
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        # Lifetime counters, for metrics / health output.
        self.retries_spent = 0
        self.retries_refused = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        for events in (self._requests, self._retries):
            while events and events[0] <= horizon:
                events.popleft()

    def record_request(self) -> None:
        """Record a first attempt; it deposits `ratio` retry tokens for the next `window_s`."""
        now = self._clock()
        self._prune(now)
        self._requests.append(now)

    def try_spend(self) -> bool:
        """Ask to retry once. Returns True (and spends a token) if the budget allows it."""
        now = self._clock()
        self._prune(now)
        tokens = self.ratio * len(self._requests) + self.min_per_s * self.window_s
        if tokens > len(self._retries):
            self._retries.append(now)
            self.retries_spent += 1
            return True
        self.retries_refused += 1
        return False


# --------------------------------------------------------------------------------------------------
# Circuit breaker
# --------------------------------------------------------------------------------------------------

class BreakerState(str, Enum):
    CLOSED = "CLOSED"        # normal: calls flow, consecutive failures are counted
    OPEN = "OPEN"            # tripped: calls fail fast until the cooldown has passed
    HALF_OPEN = "HALF_OPEN"  # cooldown passed: one probe call decides whether to close or reopen


class CircuitBreaker:
    """Per-source consecutive-failure circuit breaker.

    closed --(failure_threshold consecutive failures)--> open
    open --(allow() after cooldown_s)--> half_open, and that allow() call is the single probe
    half_open --(record_success)--> closed;  half_open --(record_failure)--> open (cooldown restarts)

    `state` reports the stored state: an open breaker whose cooldown has elapsed still reads OPEN
    until somebody calls `allow()`, which performs the transition (and takes the probe slot).

    Every call that `allow()` admitted must end in `record_success()` or `record_failure()`,
    including on cancellation. As a safety net, a probe that never reports back is considered lost
    after another `cooldown_s`, and the next `allow()` may start a fresh probe, so a forgotten
    probe cannot wedge the breaker in half_open forever.
    """

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Clock = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None          # clock() when the breaker last (re)opened
        self._probe_started_at: float | None = None  # set while a half-open probe is in flight

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May a call go to the upstream now? Non-blocking; admits at most one half-open probe."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self._state is BreakerState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.cooldown_s:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_started_at = now
            return True
        # HALF_OPEN: one probe at a time. Take over only a probe that is presumed lost.
        if self._probe_started_at is not None and now - self._probe_started_at < self.cooldown_s:
            return False
        self._probe_started_at = now
        return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker (from any state) and forget past failures."""
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        self._probe_started_at = None

    def record_failure(self) -> None:
        """A call failed (only count failures that say the *source* is unhealthy, not 4xx)."""
        self.consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._open()  # the probe failed: back to open, cooldown restarts now
        elif self._state is BreakerState.CLOSED and self.consecutive_failures >= self.failure_threshold:
            self._open()
        # OPEN: a late failure from a call admitted before the trip; keep the original cooldown.

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self.opened_at = self._clock()
        self._probe_started_at = None

    def seconds_until_probe(self) -> float:
        """How long until `allow()` will admit a probe; 0.0 unless the breaker is open."""
        if self._state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self._clock())

    def snapshot(self) -> dict:
        """JSON-friendly view for health/metrics endpoints."""
        return {
            "state": self._state.value,
            "consecutive_failures": self.consecutive_failures,
            "seconds_until_probe": self.seconds_until_probe(),
        }


# --------------------------------------------------------------------------------------------------
# Concurrency limiter
# --------------------------------------------------------------------------------------------------

class ConcurrencyLimiter:
    """`async with limiter:` bounds concurrent upstream calls; `limit=None` means unbounded.

    Counters (for metrics): `in_flight` inside the block now, `waiting` queued for a slot now,
    `peak` the highest `in_flight` ever observed. A task cancelled while waiting leaves cleanly.
    """

    def __init__(self, limit: int | None):
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 or None")
        self.limit = limit
        # asyncio.Semaphore binds to the running loop lazily (3.10+), so creating it here is fine.
        self._sem = asyncio.Semaphore(limit) if limit is not None else None
        self.in_flight = 0
        self.waiting = 0
        self.peak = 0

    async def __aenter__(self) -> "ConcurrencyLimiter":
        if self._sem is not None:
            self.waiting += 1
            try:
                await self._sem.acquire()
            finally:
                self.waiting -= 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.in_flight -= 1
        if self._sem is not None:
            self._sem.release()


# --------------------------------------------------------------------------------------------------
# Deadline
# --------------------------------------------------------------------------------------------------

class Deadline:
    """An absolute point on the monotonic clock by which one client request must be answered.

    Propagate one Deadline through every upstream call of a request, and derive each per-call
    timeout as min(call_timeout, deadline.remaining()); a retry whose delay would end past the
    deadline should not be attempted.
    """

    __slots__ = ("at", "_clock")

    def __init__(self, at: float, clock: Clock = time.monotonic):
        self.at = at  # clock() value of the deadline; math.inf means "no deadline"
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> "Deadline":
        """A deadline `seconds` from now (non-positive `seconds` gives an already expired one)."""
        return cls(clock() + seconds, clock)

    @classmethod
    def none(cls) -> "Deadline":
        """No deadline: remaining() is math.inf and expired() is always False."""
        return cls(math.inf)

    def remaining(self) -> float:
        """Seconds left, never negative; math.inf for Deadline.none()."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"
