"""The history store on a real database (SQLite and PostgreSQL): series over many intervals
converted at each point's stored rates, holdingsAt's choice of snapshot, and compaction
(every snapshot for a day, hourly for 30 days, daily after)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from gateway.config import HistoryConfig
from gateway.domain.records import (AmountPrecision, FxRate, HoldingRecord, Money, SourceState, Token, WalletKind,
                                    WalletRecord)
from gateway.history import series
from gateway.history.codec import Snapshot
from gateway.history.service import History
from gateway.history.tables import history_holdings, history_points, metadata
from gateway.sources.catalog import Source
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from tests.store_db import store_block

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=timezone.utc)
WALLET = WalletRecord(id="w1", account_id="a", source=Source.DALP, kind=WalletKind.CUSTODIAL, local_id="0x1")


def holding(amount: str, value: str | None, currency: str = "EUR", source: Source = Source.DALP) -> HoldingRecord:
    return HoldingRecord(id=f"h-{source.value}-{currency}", account_id="a", wallet=WALLET,
                         token=Token(id="eip155:1/erc20:0x1", symbol="BOND", asset_key="bond", decimals=18),
                         source=source, amount=Decimal(amount), precision=AmountPrecision.EXACT,
                         value=None if value is None else Money(Decimal(value), currency))


def rate(r: str, at: datetime) -> FxRate:
    return FxRate(base="EUR", quote="USD", rate=Decimal(r), at=at, source="config")


@pytest.fixture()
async def history(store_url: str):
    engine = create_engine(StoreConfig.model_validate(store_block(store_url)))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    h = History(engine, HistoryConfig())
    yield h
    await h.close()


async def test_each_point_converts_at_its_own_rate_and_one_point_per_interval(history: History):
    for day in range(5):
        for hour in (1, 13):   # two snapshots a day: the day's point is the later one
            at = NOW - timedelta(days=4 - day) + timedelta(hours=hour - 12)
            await history.store.write(Snapshot("a", at, [holding("1", f"{100 + day}.{hour:02d}")],
                                               {Source.DALP: SourceState.OK}, [rate(f"1.{day}", at)]))
    points = await history.store.points("a", NOW - timedelta(days=10), NOW + timedelta(days=1))
    daily = series.series(points, "USD", "DAY")
    assert [p.at.hour for p in daily] == [13] * 5
    for day, p in enumerate(daily):
        assert p.value.amount == Decimal(f"{100 + day}.13") * Decimal(f"1.{day}")   # that day's rate, exactly
        assert p.value.rate.rate == Decimal(f"1.{day}") and p.complete and p.sources == [Source.DALP]
    assert len(series.series(points, "USD", "HOUR")) == 10
    assert len(series.series(points, "EUR", "WEEK")) in (1, 2)
    # in EUR nothing converts; in GBP there was no rate then: incomplete, the EUR part left out
    assert series.series(points, "EUR", "DAY")[0].value.amount == Decimal("100.13")
    gbp = series.series(points, "GBP", "DAY")[0]
    assert gbp.complete is False and gbp.value.amount == 0


async def test_holdings_at_is_the_last_snapshot_at_or_before(history: History):
    first, second = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    await history.store.write(Snapshot("a", first, [holding("1", "10")], {Source.DALP: SourceState.OK}))
    await history.store.write(Snapshot("a", second, [holding("2", "20")], {Source.DALP: SourceState.FAILED}))
    assert await history.store.snapshot_at("a", first - timedelta(microseconds=1)) is None
    got = await history.store.snapshot_at("a", second - timedelta(microseconds=1))
    assert got.taken_at == first and got.holdings[0].amount == Decimal("1")
    got = await history.store.snapshot_at("a", NOW)
    assert got.taken_at == second and got.states == {Source.DALP: SourceState.FAILED}
    assert await history.store.snapshot_at("b", NOW) is None


async def test_unchanged_holdings_are_stored_once(history: History):
    for minutes in range(5):
        await history.store.write(Snapshot("a", NOW + timedelta(minutes=minutes), [holding("1", "10")],
                                           {Source.DALP: SourceState.OK}))
    async with history.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(history_points)) == 5
        assert await conn.scalar(select(func.count()).select_from(history_holdings)) == 1


async def test_compaction_keeps_raw_then_hourly_then_daily(history: History):
    times = []
    for minutes in range(0, 60 * 24 * 40, 45):   # a snapshot every 45 minutes for 40 days
        times.append(NOW - timedelta(minutes=minutes))
    for i, at in enumerate(times):
        await history.store.write(Snapshot("a", at, [holding("1", str(i))], {Source.DALP: SourceState.OK}))
    deleted = await history.compact_once(NOW)
    points = await history.store.points("a", NOW - timedelta(days=50), NOW)
    kept = [p.taken_at for p in points]
    assert deleted == len(times) - len(kept)
    recent = [t for t in kept if t > NOW - timedelta(hours=24)]
    hourly = [t for t in kept if NOW - timedelta(days=30) <= t <= NOW - timedelta(hours=24)]
    daily = [t for t in kept if t < NOW - timedelta(days=30)]
    assert len(recent) == 32                                     # every snapshot of the last day
    assert len({(t.date(), t.hour) for t in hourly}) == len(hourly)   # one per hour
    assert len({t.date() for t in daily}) == len(daily) and 9 <= len(daily) <= 11   # one per day
    # each kept one is the last of its bucket
    hour_of = lambda t: (t.date(), t.hour)   # noqa: E731
    edges = {hour_of(NOW - timedelta(hours=24)), hour_of(NOW - timedelta(days=30))}   # buckets split by a cut-off
    assert all(max(o for o in times if hour_of(o) == hour_of(t)) == t for t in hourly if hour_of(t) not in edges)
    assert all(max(o for o in times if o.date() == t.date()) == t for t in daily
               if t < NOW - timedelta(days=31))
    # holdings no point refers to are gone
    async with history.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(history_holdings)) == len(kept)
