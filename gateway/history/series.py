"""From stored points to a value series: one point per interval, each the last snapshot
taken in that interval, valued in the asked currency at the rates stored with it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from gateway.domain import money
from gateway.domain.records import FxRate, Money, SourceState
from gateway.fx.rates import convert_sums
from gateway.history.codec import StoredRates, to_micros
from gateway.history.store import StoredPoint
from gateway.sources.catalog import Source

INTERVAL_S = {"HOUR": 3_600, "DAY": 86_400, "WEEK": 7 * 86_400}
# 1970-01-01 was a Thursday: weeks are counted from Monday 1969-12-29, 00:00 UTC.
_WEEK_ORIGIN_US = -3 * 86_400 * 1_000_000
_SOURCE_ORDER = list(Source)


@dataclass(slots=True)
class ValuePointView:
    at: datetime                 # when the snapshot behind the point was taken
    value: Money | None          # null when no source had data then
    complete: bool
    sources: list[Source]        # the sources whose data the point holds


def bucket_of(at: datetime, interval: str) -> int:
    us = to_micros(at)
    size = INTERVAL_S[interval] * 1_000_000
    return (us - _WEEK_ORIGIN_US) // size if interval == "WEEK" else us // size


def count_buckets(start: datetime, end: datetime, interval: str) -> int:
    return bucket_of(end, interval) - bucket_of(start, interval) + 1


def default_start(end: datetime, interval: str) -> datetime:
    """Without `from`: the 30 intervals up to `to`."""
    return end - timedelta(seconds=INTERVAL_S[interval] * 29)


def point_value(point: StoredPoint, currency: str) -> ValuePointView:
    sums: dict[str, list[Decimal]] = {}
    unpriced = sum(point.sums.unpriced.values())
    for by_currency in point.sums.by_source.values():
        for c, (amount, _) in by_currency.items():
            sums.setdefault(c, []).append(amount)
    totals = {c: money.dsum(v) for c, v in sums.items()}
    amount, used, missing = convert_sums(totals, currency, StoredRates(point.rates).rate)
    with_data = [s for s, st in point.states.items() if st in (SourceState.OK, SourceState.PARTIAL)]
    troubled = any(st in (SourceState.FAILED, SourceState.PARTIAL) for st in point.states.values())
    complete = not troubled and unpriced == 0 and not missing
    value = Money(amount, currency, used) if with_data else None
    return ValuePointView(at=point.taken_at, value=value, complete=complete,
                          sources=sorted(with_data, key=_SOURCE_ORDER.index))


def series(points: list[StoredPoint], currency: str, interval: str) -> list[ValuePointView]:
    """`points` oldest first; one value point per interval that has a snapshot."""
    last: dict[int, StoredPoint] = {}
    for p in points:
        last[bucket_of(p.taken_at, interval)] = p
    return [point_value(p, currency) for _, p in sorted(last.items())]


def now() -> datetime:
    return datetime.now(timezone.utc)
