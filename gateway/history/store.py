"""Reading and writing snapshots (gateway/history/tables.py) on an SQLAlchemy AsyncEngine."""
from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.records import FxRate, HoldingRecord, SourceState
from gateway.history import codec
from gateway.history.tables import history_holdings, history_points
from gateway.sources.catalog import Source

T = TypeVar("T")


@dataclass(slots=True)
class StoredPoint:
    taken_at: datetime
    sums: codec.PointSums
    states: dict[Source, SourceState]
    rates: list[FxRate]


@dataclass(slots=True)
class StoredSnapshot:
    taken_at: datetime
    holdings: list[HoldingRecord]
    states: dict[Source, SourceState]
    rates: list[FxRate]


class HistoryUnavailable(Exception):
    """The database did not answer a read; the message names no URL and quotes no value."""


def _reads(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A read that fails in the database (down, unreachable, no schema) raises HistoryUnavailable."""
    @functools.wraps(method)
    async def read(self: "HistoryStore", *args: Any) -> T:
        try:
            return await method(self, *args)
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
            raise HistoryUnavailable(f"the history store did not answer ({type(exc).__name__})") from None
    return read


class HistoryStore:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def last_taken_at(self, account_id: str) -> datetime | None:
        async with self.engine.connect() as conn:
            us = await conn.scalar(select(func.max(history_points.c.taken_at))
                                   .where(history_points.c.account_id == account_id))
        return None if us is None else codec.from_micros(us)

    async def write(self, snapshot: codec.Snapshot) -> None:
        """One point, and its holdings unless this account already stored the same ones."""
        digest, payload = codec.holdings_payload(snapshot.holdings)
        async with self.engine.begin() as conn:
            holdings_id = await conn.scalar(
                select(history_holdings.c.id).where(and_(history_holdings.c.account_id == snapshot.account_id,
                                                         history_holdings.c.digest == digest)))
            if holdings_id is None:
                holdings_id = (await conn.execute(insert(history_holdings).values(
                    account_id=snapshot.account_id, digest=digest, payload=payload))).inserted_primary_key[0]
            await conn.execute(insert(history_points).values(
                account_id=snapshot.account_id, taken_at=codec.to_micros(snapshot.taken_at),
                sums=codec.sums_json(snapshot.holdings), states=codec.states_json(snapshot.states),
                rates=codec.rates_json(snapshot.rates), holdings_id=holdings_id))

    @_reads
    async def points(self, account_id: str, start: datetime, end: datetime) -> list[StoredPoint]:
        """Every stored point with start <= taken_at <= end, oldest first."""
        p = history_points.c
        query = (select(p.taken_at, p.sums, p.states, p.rates)
                 .where(and_(p.account_id == account_id, p.taken_at >= codec.to_micros(start),
                             p.taken_at <= codec.to_micros(end)))
                 .order_by(p.taken_at))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        # Rates repeat from point to point: parse each distinct text once.
        rates: dict[str, list[FxRate]] = {}
        return [StoredPoint(codec.from_micros(r.taken_at), codec.PointSums.parse(r.sums), codec.parse_states(r.states),
                            rates.setdefault(r.rates, codec.parse_rates(r.rates))) for r in rows]

    @_reads
    async def snapshot_at(self, account_id: str, at: datetime) -> StoredSnapshot | None:
        """The last snapshot taken at or before `at`."""
        p, h = history_points.c, history_holdings.c
        query = (select(p.taken_at, p.states, p.rates, h.payload)
                 .join_from(history_points, history_holdings, p.holdings_id == h.id)
                 .where(and_(p.account_id == account_id, p.taken_at <= codec.to_micros(at)))
                 .order_by(p.taken_at.desc()).limit(1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredSnapshot(codec.from_micros(row.taken_at), codec.parse_holdings(row.payload),
                              codec.parse_states(row.states), codec.parse_rates(row.rates))

    @_reads
    async def first_taken_at(self, account_id: str) -> datetime | None:
        async with self.engine.connect() as conn:
            us = await conn.scalar(select(func.min(history_points.c.taken_at))
                                   .where(history_points.c.account_id == account_id))
        return None if us is None else codec.from_micros(us)

    async def forget(self, account_id: str) -> int:
        """Every point and holding of the account, gone (it was deleted: an account created
        later under the same id must not inherit its history). Returns points deleted."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(history_points).where(history_points.c.account_id == account_id))
            await conn.execute(delete(history_holdings).where(history_holdings.c.account_id == account_id))
        return result.rowcount or 0

    async def compact(self, now: datetime, raw_for_s: float, hourly_for_s: float, daily_for_s: float) -> int:
        """Downsample: keep every point younger than raw_for_s, then the last of each hour
        until hourly_for_s, then the last of each UTC day (until daily_for_s; 0 keeps them
        forever). Holdings no point refers to any more are deleted. Returns points deleted."""
        now_us = codec.to_micros(now)
        deleted = 0
        async with self.engine.begin() as conn:
            for older_than_s, younger_than_s, bucket_us in ((raw_for_s, hourly_for_s, 3_600_000_000),
                                                            (hourly_for_s, None, 86_400_000_000)):
                p = history_points.c
                upper = now_us - int(older_than_s * 1_000_000)
                bucket = p.taken_at // bucket_us   # integer division on every backend (SQLAlchemy 2)
                ranked = (select(p.id, func.row_number().over(partition_by=(p.account_id, bucket),
                                                               order_by=p.taken_at.desc()).label("rn"))
                          .where(p.taken_at < upper))
                if younger_than_s is not None:
                    ranked = ranked.where(p.taken_at >= now_us - int(younger_than_s * 1_000_000))
                ranked = ranked.subquery()
                result = await conn.execute(delete(history_points).where(
                    history_points.c.id.in_(select(ranked.c.id).where(ranked.c.rn > 1))))
                deleted += result.rowcount or 0
            if daily_for_s > 0:
                result = await conn.execute(delete(history_points).where(
                    history_points.c.taken_at < now_us - int(daily_for_s * 1_000_000)))
                deleted += result.rowcount or 0
            if deleted:
                await conn.execute(delete(history_holdings).where(
                    ~history_holdings.c.id.in_(select(history_points.c.holdings_id).distinct())))
        return deleted
