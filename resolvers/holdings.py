"""Selecting, ordering and totalling holdings. Pure functions over normalized records."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from gateway.domain import money
from gateway.domain.records import FxRate, HoldingRecord, Money, SourceFetch, SourceState
from gateway.fx.rates import convert_sums
from gateway.sources.catalog import Source

RateFor = Callable[[str, str], "FxRate | None"]


def no_rates(source: str, target: str) -> None:
    """No conversion: a value in another currency stays out of the total (unpriced)."""
    return None


@dataclass(slots=True)
class HoldingSelection:
    """The resolvers' view of a HoldingFilter (duck-typed: a GraphQL input works as is)."""
    sources: list[Source] | None = None
    chain_ids: list[str] | None = None
    symbols: list[str] | None = None
    asset_keys: list[str] | None = None
    wallet_ids: list[str] | None = None
    min_value: Decimal | None = None
    include_testnets: bool | None = False
    include_zero: bool | None = False
    providers: list[str] | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None


DEFAULT_SELECTION = HoldingSelection()


def selection(filter_: Any | None) -> Any:
    return filter_ if filter_ is not None else DEFAULT_SELECTION


def select(holdings: Iterable[HoldingRecord], f: Any) -> list[HoldingRecord]:
    sources = set(f.sources) if f.sources else None
    chains = set(f.chain_ids) if f.chain_ids else None
    symbols = {s.upper() for s in f.symbols} if f.symbols else None
    assets = set(f.asset_keys) if f.asset_keys else None
    wallets = set(f.wallet_ids) if f.wallet_ids else None
    providers = {p.lower() for p in f.providers} if f.providers else None
    after, before = f.updated_after, f.updated_before
    out = []
    for h in holdings:
        if sources is not None and h.source not in sources:
            continue
        if not f.include_testnets and h.token.is_testnet:
            continue
        if not f.include_zero and h.amount.is_zero():
            continue
        if chains is not None and (h.token.chain is None or h.token.chain.id not in chains):
            continue
        if symbols is not None and h.token.symbol.upper() not in symbols:
            continue
        if assets is not None and h.token.asset_key not in assets:
            continue
        if wallets is not None and h.wallet.id not in wallets:
            continue
        if f.min_value is not None and (h.value is None or h.value.amount < f.min_value):
            continue
        if providers is not None and (h.wallet.provider or "").lower() not in providers:
            continue
        if (after or before) and (h.updated_at is None or (after and h.updated_at < after)
                                  or (before and h.updated_at > before)):
            continue
        out.append(h)
    return out


def order(holdings: list[HoldingRecord], field: str = "VALUE", direction: str = "DESC") -> list[HoldingRecord]:
    """Stable order; under VALUE, unpriced holdings come last whatever the direction."""
    descending = direction == "DESC"
    by_id = sorted(holdings, key=lambda h: h.id)
    if field == "SYMBOL":
        return sorted(by_id, key=lambda h: h.token.symbol.upper(), reverse=descending)
    if field == "AMOUNT":
        return sorted(by_id, key=lambda h: h.amount, reverse=descending)
    priced = [h for h in by_id if h.value is not None]
    unpriced = [h for h in by_id if h.value is None]
    return sorted(priced, key=lambda h: h.value.amount, reverse=descending) + unpriced


@dataclass(slots=True)
class ValueTotalView:
    value: Money
    complete: bool
    unpriced_holdings: int
    failed_sources: list[Source]


def value_total(holdings: list[HoldingRecord], currency: str, fetches: list[SourceFetch],
                rate_for: RateFor = no_rates) -> ValueTotalView:
    """Sum of the values in `currency`. Values in another currency are summed per currency and
    each sum converted once at the rate `rate_for` gives; a value with no rate, or no value at
    all, counts as unpriced and makes the total incomplete."""
    currency = currency.upper()
    sums, priced = sums_by_currency(holdings)
    amount, rates, missing = convert_sums(sums, currency, rate_for)
    unpriced = len(holdings) - priced + sum(count for c, count in _counts(holdings).items() if c in missing)
    failed = sorted({f.source for f in fetches if f.state is SourceState.FAILED}, key=list(Source).index)
    partial = any(f.state is SourceState.PARTIAL for f in fetches)
    return ValueTotalView(
        value=Money(amount=amount, currency=currency, rates=rates),
        complete=unpriced == 0 and not failed and not partial,
        unpriced_holdings=unpriced,
        failed_sources=failed,
    )


def sums_by_currency(holdings: Iterable[HoldingRecord]) -> tuple[dict[str, Decimal], int]:
    """Exact sum of the values per currency, and how many holdings have a value."""
    by: dict[str, list[Decimal]] = {}
    for h in holdings:
        if h.value is not None:
            by.setdefault(h.value.currency.upper(), []).append(h.value.amount)
    return {c: money.dsum(v) for c, v in by.items()}, sum(len(v) for v in by.values())


def _counts(holdings: Iterable[HoldingRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in holdings:
        if h.value is not None:
            out[h.value.currency.upper()] = out.get(h.value.currency.upper(), 0) + 1
    return out
