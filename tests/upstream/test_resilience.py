"""Unit tests for gateway.resilience: deterministic (fake clocks, seeded rng), no network, fast."""
from __future__ import annotations

import asyncio
import math
import random

import pytest

from gateway.upstream.resilience import (
    BreakerState,
    CircuitBreaker,
    ConcurrencyLimiter,
    Deadline,
    RetryBudget,
    RetryPolicy,
)


class FakeClock:
    """A manually advanced monotonic clock."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------------------------ RetryPolicy

def test_policy_defaults():
    p = RetryPolicy()
    assert (p.max_attempts, p.base_delay_s, p.max_delay_s) == (3, 0.1, 2.0)
    assert p.retry_statuses == frozenset({429, 502, 503, 504})


def test_backoff_bounds_full_jitter():
    p = RetryPolicy(base_delay_s=0.1, max_delay_s=2.0)
    rng = random.Random(1234)
    for attempt in range(1, 12):
        cap = min(2.0, 0.1 * 2 ** (attempt - 1))
        samples = [p.delay(attempt, None, rng) for _ in range(300)]
        assert all(0.0 <= s <= cap for s in samples)
        # Full jitter spans the whole range, not just the top of it.
        assert min(samples) < 0.1 * cap
        assert max(samples) > 0.9 * cap


def test_backoff_grows_then_caps():
    p = RetryPolicy(base_delay_s=0.1, max_delay_s=2.0)

    def mean(attempt: int) -> float:
        rng = random.Random(7)
        return sum(p.delay(attempt, None, rng) for _ in range(2000)) / 2000

    means = [mean(a) for a in range(1, 8)]
    # Expected mean is cap/2: 0.05, 0.1, 0.2, 0.4, 0.8, then capped at 1.0.
    for a, m in zip(range(1, 8), means):
        assert m == pytest.approx(min(2.0, 0.1 * 2 ** (a - 1)) / 2, rel=0.1)
    assert means[0] < means[1] < means[2] < means[3] < means[4]
    assert means[5] == pytest.approx(means[6], rel=0.1)


def test_backoff_is_deterministic_with_seeded_rng_and_survives_huge_attempts():
    p = RetryPolicy()
    a = [p.delay(n, None, random.Random(42)) for n in range(1, 6)]
    b = [p.delay(n, None, random.Random(42)) for n in range(1, 6)]
    assert a == b
    assert 0.0 <= p.delay(10_000, None, random.Random(0)) <= p.max_delay_s
    assert 0.0 <= p.delay(0, None, random.Random(0)) <= p.base_delay_s  # nonsense attempt: treated as 1


def test_retry_after_is_honoured_and_not_capped_by_max_delay():
    p = RetryPolicy(base_delay_s=0.1, max_delay_s=2.0)
    rng = random.Random(3)
    # Retry-After larger than the jittered backoff (and than max_delay): returned as is.
    assert p.delay(1, 5.0, rng) == 5.0
    assert p.delay(4, 30.0, rng) == 30.0
    # Retry-After smaller than the backoff never shortens it: result is max(retry_after, jitter).
    for _ in range(200):
        d = p.delay(5, 0.01, rng)
        assert 0.01 <= d <= 1.6
    # Retry-After: 0 still yields a valid jittered delay.
    assert 0.0 <= p.delay(2, 0.0, rng) <= 0.2


def test_retry_statuses():
    p = RetryPolicy()
    for status in (429, 502, 503, 504):
        assert p.should_retry_status(status)
    for status in (200, 400, 401, 403, 404, 500, 501):
        assert not p.should_retry_status(status)
    assert RetryPolicy(retry_statuses=frozenset({500})).should_retry_status(500)


# ------------------------------------------------------------------------------------ RetryBudget

def test_budget_floor_allows_min_rate_then_refuses():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10.0, clock=clock)
    # No requests at all: the floor is min_per_s * window_s = 10 retries per window.
    assert [budget.try_spend() for _ in range(12)] == [True] * 10 + [False] * 2
    assert budget.retries_spent == 10
    assert budget.retries_refused == 2


def test_budget_refuses_beyond_ratio_plus_floor():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10.0, clock=clock)
    for _ in range(100):
        budget.record_request()  # deposits 0.2 * 100 = 20 tokens, plus the floor of 10
    allowed = sum(budget.try_spend() for _ in range(100))
    assert allowed == 30
    assert budget.retries_spent == 30
    assert budget.retries_refused == 70


def test_budget_without_floor_tracks_ratio_exactly():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_s=0.0, window_s=10.0, clock=clock)
    assert budget.try_spend() is False  # nothing deposited
    for _ in range(4):
        budget.record_request()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


def test_budget_recovers_after_window():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10.0, clock=clock)
    assert sum(budget.try_spend() for _ in range(15)) == 10
    clock.advance(5.0)
    assert budget.try_spend() is False  # still inside the window
    clock.advance(5.0)  # the spent retries are now window_s old and drop out
    assert sum(budget.try_spend() for _ in range(15)) == 10
    assert budget.retries_spent == 20
    assert budget.retries_refused == 5 + 1 + 5


def test_budget_deposits_expire_with_the_window():
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_per_s=0.0, window_s=10.0, clock=clock)
    for _ in range(3):
        budget.record_request()
    clock.advance(10.0)  # deposits older than the window no longer count
    assert budget.try_spend() is False


def test_budget_sliding_window_is_gradual():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_s=0.2, window_s=10.0, clock=clock)  # 2 per window
    assert budget.try_spend() is True
    clock.advance(4.0)
    assert budget.try_spend() is True
    assert budget.try_spend() is False
    clock.advance(6.0)  # only the first retry has aged out
    assert budget.try_spend() is True
    assert budget.try_spend() is False


def test_budget_rejects_bad_config():
    with pytest.raises(ValueError):
        RetryBudget(window_s=0)
    with pytest.raises(ValueError):
        RetryBudget(ratio=-1)


# --------------------------------------------------------------------------------- CircuitBreaker

def test_breaker_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=3, cooldown_s=30.0, clock=clock)
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 2
    b.record_success()  # a success resets the streak
    assert b.consecutive_failures == 0
    for _ in range(3):
        assert b.allow()
        b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.opened_at == clock.now
    assert b.consecutive_failures == 3


def test_breaker_fast_fails_while_open():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=30.0, clock=clock)
    b.record_failure()
    for _ in range(10):
        assert b.allow() is False
        clock.advance(2.9)
    assert b.state is BreakerState.OPEN  # 29 s < cooldown


def test_breaker_exactly_one_half_open_probe_after_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=2, cooldown_s=30.0, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.advance(30.0)
    assert b.state is BreakerState.OPEN  # state is stored; allow() performs the transition
    assert b.allow() is True
    assert b.state is BreakerState.HALF_OPEN
    # While the probe is in flight nobody else gets through.
    assert [b.allow() for _ in range(20)] == [False] * 20
    clock.advance(10.0)
    assert b.allow() is False


def test_breaker_closes_on_probe_success():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=5.0, clock=clock)
    b.record_failure()
    clock.advance(5.0)
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.consecutive_failures == 0
    assert b.opened_at is None
    assert all(b.allow() for _ in range(5))


def test_breaker_reopens_on_probe_failure_and_restarts_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=2, cooldown_s=5.0, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.advance(7.0)
    assert b.allow()
    b.record_failure()  # the probe failed: one failure is enough to reopen
    assert b.state is BreakerState.OPEN
    assert b.opened_at == clock.now
    assert b.allow() is False
    clock.advance(4.9)
    assert b.allow() is False
    clock.advance(0.1)
    assert b.allow() is True and b.state is BreakerState.HALF_OPEN
    assert b.allow() is False


def test_breaker_late_failure_while_open_keeps_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10.0, clock=clock)
    b.record_failure()
    opened = b.opened_at
    clock.advance(6.0)
    b.record_failure()  # a call admitted before the trip reports late
    assert b.opened_at == opened
    clock.advance(4.0)
    assert b.allow() is True


def test_breaker_lost_probe_is_replaced_after_another_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10.0, clock=clock)
    b.record_failure()
    clock.advance(10.0)
    assert b.allow()  # probe starts and never reports back (e.g. cancelled)
    clock.advance(9.9)
    assert b.allow() is False
    clock.advance(0.1)
    assert b.allow() is True  # a fresh single probe
    assert b.allow() is False


def test_breaker_snapshot():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=2, cooldown_s=30.0, clock=clock)
    assert b.snapshot() == {"state": "CLOSED", "consecutive_failures": 0, "seconds_until_probe": 0.0}
    b.record_failure()
    b.record_failure()
    clock.advance(12.0)
    snap = b.snapshot()
    assert snap["state"] == "OPEN"
    assert snap["consecutive_failures"] == 2
    assert snap["seconds_until_probe"] == pytest.approx(18.0)
    clock.advance(100.0)
    assert b.snapshot()["seconds_until_probe"] == 0.0
    b.allow()
    assert b.snapshot() == {"state": "HALF_OPEN", "consecutive_failures": 2, "seconds_until_probe": 0.0}


def test_breaker_state_is_a_str_enum():
    assert BreakerState.CLOSED == "CLOSED"
    assert BreakerState.OPEN.value == "OPEN"
    assert BreakerState.HALF_OPEN.value == "HALF_OPEN"
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


# ----------------------------------------------------------------------------- ConcurrencyLimiter

async def _hammer(limiter: ConcurrencyLimiter, tasks: int = 50) -> tuple[int, int]:
    """Run `tasks` concurrent holders; return (max in_flight seen inside, max waiting seen)."""
    seen_in_flight = 0
    seen_waiting = 0

    async def worker() -> None:
        nonlocal seen_in_flight, seen_waiting
        async with limiter:
            seen_in_flight = max(seen_in_flight, limiter.in_flight)
            seen_waiting = max(seen_waiting, limiter.waiting)
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return seen_in_flight, seen_waiting


async def test_limiter_never_exceeds_limit_under_50_tasks():
    limiter = ConcurrencyLimiter(5)
    seen_in_flight, seen_waiting = await _hammer(limiter, 50)
    assert seen_in_flight == 5
    assert limiter.peak == 5
    assert seen_waiting > 0
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_limiter_none_is_unbounded_noop():
    limiter = ConcurrencyLimiter(None)
    seen_in_flight, seen_waiting = await _hammer(limiter, 50)
    assert seen_in_flight == 50
    assert limiter.peak == 50
    assert seen_waiting == 0
    assert limiter.in_flight == 0


async def test_limiter_releases_on_error_and_on_cancelled_waiter():
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(RuntimeError):
        async with limiter:
            raise RuntimeError("boom")
    assert limiter.in_flight == 0

    release = asyncio.Event()

    async def holder() -> None:
        async with limiter:
            await release.wait()

    async def waiter() -> None:
        async with limiter:
            pass

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert limiter.in_flight == 1 and limiter.waiting == 1
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    assert limiter.waiting == 0
    release.set()
    await h
    assert limiter.in_flight == 0
    async with limiter:  # the slot is free again
        assert limiter.in_flight == 1


def test_limiter_rejects_bad_limit():
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0)


# ---------------------------------------------------------------------------------------- Deadline

def test_deadline_math():
    clock = FakeClock()
    d = Deadline.after(2.5, clock=clock)
    assert d.remaining() == pytest.approx(2.5)
    assert not d.expired()
    clock.advance(1.0)
    assert d.remaining() == pytest.approx(1.5)
    clock.advance(1.5)
    assert d.remaining() == 0.0
    assert d.expired()
    clock.advance(10.0)
    assert d.remaining() == 0.0  # never negative


def test_deadline_non_positive_is_already_expired():
    clock = FakeClock()
    assert Deadline.after(0, clock=clock).expired()
    assert Deadline.after(-1, clock=clock).remaining() == 0.0


def test_deadline_none_is_infinite():
    d = Deadline.none()
    assert d.remaining() == math.inf
    assert not d.expired()
    assert min(5.0, d.remaining()) == 5.0


def test_deadline_after_uses_real_monotonic_clock_by_default():
    d = Deadline.after(60)
    assert 59.0 < d.remaining() <= 60.0
    assert not d.expired()
