"""Account.valueHistory and Account.holdingsAt, read from the history store (gateway/history/).
Arguments are checked before anything is read; nothing here calls an upstream."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from gateway.domain.errors import ClientCode
from gateway.domain.records import FxRate, HoldingRecord, SourceFetch, SourceState
from gateway.history import series
from gateway.history.codec import StoredRates
from gateway.sources.catalog import Source
from resolvers.context import RequestContext
from resolvers.currency import checked_currency
from resolvers.errors import client_error
from resolvers.holdings import ValueTotalView, value_total


@dataclass(slots=True)
class HoldingSnapshotView:
    taken_at: datetime
    holdings: list[HoldingRecord]
    account_id: str
    states: dict[Source, SourceState]
    rates: list[FxRate]


def _history(ctx: RequestContext) -> Any:
    history = ctx.state.history
    if history is None:
        raise client_error(ClientCode.BAD_USER_INPUT,
                           "this gateway keeps no history: it needs a [store] database and [history] enabled")
    return history


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


async def value_history(ctx: RequestContext, ref: Any, currency: str, start: datetime | None,
                        end: datetime | None, interval: str) -> list[series.ValuePointView]:
    currency = checked_currency(ctx, currency)
    history = _history(ctx)
    end = _utc(end) if end is not None else series.now()
    start = _utc(start) if start is not None else series.default_start(end, interval)
    if start > end:
        raise client_error(ClientCode.BAD_USER_INPUT, "`from` is after `to`", field="from")
    limit = history.config.max_points
    if series.count_buckets(start, end, interval) > limit:
        raise client_error(ClientCode.BAD_USER_INPUT,
                           f"from `from` to `to` by {interval} would be more than {limit} points: "
                           "narrow the range or take a longer interval", field="interval")
    points = await history.store.points(ref.id, start, end)
    return series.series(points, currency, interval)


async def holdings_at(ctx: RequestContext, ref: Any, at: datetime) -> HoldingSnapshotView | None:
    history = _history(ctx)
    stored = await history.store.snapshot_at(ref.id, _utc(at))
    if stored is None:
        return None
    for h in stored.holdings:
        ctx.seen_tokens.setdefault(h.token.id, h.token)
    return HoldingSnapshotView(taken_at=stored.taken_at, holdings=stored.holdings, account_id=ref.id,
                               states=stored.states, rates=stored.rates)


def snapshot_total(ctx: RequestContext, snapshot: HoldingSnapshotView, currency: str) -> ValueTotalView:
    """As totalValue answered when the snapshot was taken: its holdings, its sources' states,
    its rates."""
    currency = checked_currency(ctx, currency)
    fetches = [SourceFetch(source=s, account_id=snapshot.account_id, state=st) for s, st in snapshot.states.items()]
    return value_total(snapshot.holdings, currency, fetches, StoredRates(snapshot.rates).rate)
