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
from resolvers.derived import Derived

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
                rate_for: RateFor = no_rates, sums: CurrencySums | None = None) -> ValueTotalView:
    """Sum of the values in `currency`. Values in another currency are summed per currency and
    each sum converted once at the rate `rate_for` gives; a value with no rate, or no value at
    all, counts as unpriced and makes the total incomplete. `sums`: `currency_sums(holdings)`,
    when the caller has it already."""
    currency = currency.upper()
    sums = sums if sums is not None else currency_sums(holdings)
    amount, rates, missing = convert_sums(sums.sums, currency, rate_for)
    unpriced = len(holdings) - sums.priced + sum(count for c, count in sums.counts.items() if c in missing)
    failed = sorted({f.source for f in fetches if f.state is SourceState.FAILED}, key=list(Source).index)
    partial = any(f.state is SourceState.PARTIAL for f in fetches)
    return ValueTotalView(
        value=Money(amount=amount, currency=currency, rates=rates),
        complete=unpriced == 0 and not failed and not partial,
        unpriced_holdings=unpriced,
        failed_sources=failed,
    )


@dataclass(frozen=True, slots=True)
class CurrencySums:
    """Holdings' values summed exactly per currency, and how many holdings each sum holds."""
    sums: dict[str, Decimal]
    counts: dict[str, int]

    @property
    def priced(self) -> int:
        return sum(self.counts.values())


def currency_sums(holdings: Iterable[HoldingRecord]) -> CurrencySums:
    by: dict[str, list[Decimal]] = {}
    for h in holdings:
        if h.value is not None:
            by.setdefault(h.value.currency.upper(), []).append(h.value.amount)
    return CurrencySums({c: money.dsum(v) for c, v in by.items()}, {c: len(v) for c, v in by.items()})


# -- kept with the valued holdings (resolvers/derived.py) ----------------------
# `owner` names the list: ("account", id) for an account's holdings, ("wallet", id) for a
# wallet's; the filter's repr names its fields.
def selected(derived: Derived, owner: tuple[str, str], holdings: list[HoldingRecord], f: Any) -> list[HoldingRecord]:
    return derived.get(("select", owner, repr(f)), lambda: select(holdings, f))


def selected_sums(derived: Derived, owner: tuple[str, str], holdings: list[HoldingRecord], f: Any) -> CurrencySums:
    return derived.get(("sums", owner, repr(f)), lambda: currency_sums(selected(derived, owner, holdings, f)))


def ordered(derived: Derived, owner: tuple[str, str], holdings: list[HoldingRecord], f: Any, field: str,
            direction: str) -> list[HoldingRecord]:
    return derived.get(("order", owner, repr(f), field, direction),
                       lambda: order(selected(derived, owner, holdings, f), field, direction))
