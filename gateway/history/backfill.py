"""Before an account's first snapshot, Cryptofuse's part of its past from Cryptofuse's own
balance history (`GET /user/balances/history/`, read as gateway/sources/cryptofuse/history.py
reads it): each entry's `balance_after` is that ticker's balance from then on.

Only Cryptofuse's main account has a history, and Cryptofuse has no prices: a backfilled
holding has an amount but no value, and a backfilled point says which source it holds
(CRYPTOFUSE), `complete: false` and no value, rather than a figure the gateway cannot know.
"""
from __future__ import annotations

from datetime import datetime

from gateway.domain import ids
from gateway.domain.records import AmountPrecision, HoldingRecord, WalletRecord
from gateway.history.series import ValuePointView, bucket_of
from gateway.sources.catalog import Source
from gateway.sources.cryptofuse.client import PROVIDER, WALLETS, BalanceChangeRecord
from gateway.sources.cryptofuse.history import UPSTREAM_MAX_LIMIT, HistoryReader

MAX_ENTRIES = 5_000   # pages read at most per backfill (50 calls): the rest of the past stays unknown


async def read_entries(reader: HistoryReader, cap: int = MAX_ENTRIES) -> list[BalanceChangeRecord]:
    """Every entry, newest first, up to `cap`."""
    entries: list[BalanceChangeRecord] = []
    offset = 0
    while len(entries) < cap:
        page = await reader.page(UPSTREAM_MAX_LIMIT, offset)
        entries.extend(page.entries)
        offset += len(page.entries)
        if not page.entries or offset >= page.total:
            break
    return entries[:cap]


def main_wallet(account_id: str) -> WalletRecord:
    local_id, kind, label = WALLETS[0]
    return WalletRecord(id=ids.wallet_id(Source.CRYPTOFUSE.value, account_id, local_id), account_id=account_id,
                        source=Source.CRYPTOFUSE, kind=kind, local_id=local_id, provider=PROVIDER, label=label)


def holdings_at(entries: list[BalanceChangeRecord], at: datetime, account_id: str
                ) -> tuple[datetime, list[HoldingRecord]] | None:
    """The main account's balances as of `at` (from the latest entry of each token at or
    before it), and the time of the latest such entry; None when no entry is that old."""
    wallet = main_wallet(account_id)
    latest: dict[str, BalanceChangeRecord] = {}
    for e in entries:   # newest first: the first seen per token is its latest
        if e.timestamp <= at and e.token.id not in latest:
            latest[e.token.id] = e
    known = [e for e in latest.values() if e.balance_after is not None]
    if not latest:
        return None
    holdings = [HoldingRecord(id=ids.holding_id(Source.CRYPTOFUSE.value, account_id, wallet.local_id, e.token.id),
                              account_id=account_id, wallet=wallet, token=e.token, source=Source.CRYPTOFUSE,
                              amount=e.balance_after, precision=AmountPrecision.ROUNDED, updated_at=e.timestamp)
                for e in known if e.balance_after]   # zero balances are left out, as live listings do
    return max(e.timestamp for e in latest.values()), sorted(holdings, key=lambda h: h.id)


def points(entries: list[BalanceChangeRecord], start: datetime, before: datetime | None, interval: str
           ) -> list[ValuePointView]:
    """One point per interval with an entry, from `start` up to (not into) the interval of
    `before` (the first snapshot's), oldest first."""
    stop = bucket_of(before, interval) if before is not None else None
    last: dict[int, datetime] = {}
    for e in entries:
        if e.timestamp < start:
            continue
        b = bucket_of(e.timestamp, interval)
        if (stop is None or b < stop) and (b not in last or e.timestamp > last[b]):
            last[b] = e.timestamp
    return [ValuePointView(at=t, value=None, complete=False, sources=[Source.CRYPTOFUSE])
            for _, t in sorted(last.items())]
