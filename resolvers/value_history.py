"""Account.valueHistory and Account.holdingsAt, read from the history store (gateway/history/).
Arguments are checked before anything is read; nothing here calls an upstream."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from graphql import GraphQLError

from gateway.domain.errors import ClientCode, UpstreamError
from gateway.domain.records import FxRate, HoldingRecord, SourceFetch, SourceState
from gateway.history import backfill, series
from gateway.history.codec import StoredRates
from gateway.history.store import HistoryUnavailable
from gateway.sources.catalog import Source
from gateway.sources.cryptofuse.history import HistoryReader
from resolvers.context import RequestContext, UpstreamProblem
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


HISTORY_UNAVAILABLE = "HISTORY_UNAVAILABLE"   # the store did not answer (docs/ERRORS.md)
MAX_POINTS = 10_000   # without a [history] (no store), the default of its max_points


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _unavailable(exc: HistoryUnavailable) -> Exception:
    return GraphQLError(str(exc), extensions={"code": HISTORY_UNAVAILABLE})


async def value_history(ctx: RequestContext, ref: Any, currency: str, start: datetime | None,
                        end: datetime | None, interval: str) -> list[series.ValuePointView]:
    try:
        return await _value_history(ctx, ref, currency, start, end, interval)
    except HistoryUnavailable as exc:
        raise _unavailable(exc) from None


async def holdings_at(ctx: RequestContext, ref: Any, at: datetime) -> HoldingSnapshotView | None:
    try:
        return await _holdings_at(ctx, ref, at)
    except HistoryUnavailable as exc:
        raise _unavailable(exc) from None


async def _value_history(ctx: RequestContext, ref: Any, currency: str, start: datetime | None,
                         end: datetime | None, interval: str) -> list[series.ValuePointView]:
    currency = checked_currency(ctx, currency)
    history = ctx.state.history
    end = _utc(end) if end is not None else series.now()
    start = _utc(start) if start is not None else series.default_start(end, interval)
    if start > end:
        raise client_error(ClientCode.BAD_USER_INPUT, "`from` is after `to`", field="from")
    limit = history.config.max_points if history is not None else MAX_POINTS
    if series.count_buckets(start, end, interval) > limit:
        raise client_error(ClientCode.BAD_USER_INPUT,
                           f"from `from` to `to` by {interval} would be more than {limit} points: "
                           "narrow the range or take a longer interval", field="interval")
    if history is None:   # no [store]: no snapshots, and none from Cryptofuse either (nothing to backfill before)
        return []
    await history.recorder.settled(ref.id)
    points = series.series(await history.store.points(ref.id, start, end), currency, interval)
    first = await history.store.first_taken_at(ref.id)
    if first is None or start < first:
        entries = await _cryptofuse_entries(ctx, ref)
        if entries:
            before = min(first, end) if first is not None else None
            if before is None or before > start:
                earlier = [p for p in backfill.points(entries, start, before, interval) if p.at <= end]
                points = earlier + points
    return points


async def _cryptofuse_entries(ctx: RequestContext, ref: Any) -> list[Any]:
    """Cryptofuse's balance history of the account, for the past before its first snapshot
    (gateway/history/backfill.py); empty without Cryptofuse or when it fails (reported)."""
    client = ctx.state.clients.get(Source.CRYPTOFUSE)
    if client is None:
        return []
    key = (ref.id, Source.CRYPTOFUSE)
    identities = ctx.identities.get(key)
    if identities is None:
        identities = ctx.identities[key] = client.identities(ref.config)
    if not identities:
        return []
    reader = HistoryReader(client, identities[0], ref.id, None, None, {}, ctx.options_for(ref.id))
    try:
        return await backfill.read_entries(reader)
    except UpstreamError as exc:
        ctx.upstream_problems.setdefault(key, UpstreamProblem(ref.id, Source.CRYPTOFUSE, exc.code.value, exc.message))
        return []


async def _holdings_at(ctx: RequestContext, ref: Any, at: datetime) -> HoldingSnapshotView | None:
    history = ctx.state.history
    if history is None:
        return None
    await history.recorder.settled(ref.id)
    at = _utc(at)
    stored = await history.store.snapshot_at(ref.id, at)
    if stored is None:   # before the first snapshot: Cryptofuse's part, where its history tells
        entries = await _cryptofuse_entries(ctx, ref)
        past = backfill.holdings_at(entries, at, ref.id) if entries else None
        if past is None:
            return None
        taken_at, holdings = past
        for h in holdings:
            ctx.seen_tokens.setdefault(h.token.id, h.token)
        # PARTIAL: amounts are known, values are not (Cryptofuse has no prices)
        return HoldingSnapshotView(taken_at=taken_at, holdings=holdings, account_id=ref.id,
                                   states={Source.CRYPTOFUSE: SourceState.PARTIAL}, rates=[])
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
