"""Positions: holdings grouped by asset, token, chain, source or wallet, summed exactly."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from gateway.domain import money
from gateway.domain.records import Asset, Chain, HoldingRecord, Money, Token, WalletRecord
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.fx.rates import convert_sums
from resolvers.derived import Derived
from resolvers.holdings import CurrencySums, RateFor, currency_sums, no_rates, order, selected

NO_CHAIN = "offchain"   # CHAIN key of holdings without a chain (exchange tickers, unknown tokens)


@dataclass(slots=True)
class PositionView:
    key: str
    holdings: list[HoldingRecord]
    amount: Decimal | None          # None when the group mixes assets
    value: Money | None             # None when no member is priced in the currency
    share: Decimal | None
    unpriced_holdings: int
    asset: Asset | None = None
    token: Token | None = None
    chain: Chain | None = None
    source: Source | None = None
    wallet: WalletRecord | None = None


_KEYS: dict[str, Callable[[HoldingRecord], str]] = {
    "ASSET": lambda h: h.token.asset_key,
    "TOKEN": lambda h: h.token.id,
    "CHAIN": lambda h: h.token.chain.id if h.token.chain else NO_CHAIN,
    "SOURCE": lambda h: h.source.value,
    "WALLET": lambda h: h.wallet.id,
}


@dataclass(frozen=True, slots=True)
class Group:
    """One position's members and what depends on them alone (no currency, rate or registry)."""
    key: str
    members: list[HoldingRecord]     # in resolvers.holdings.order's order
    sums: CurrencySums
    amount: Decimal | None           # the members' amounts added up, when they add up


def groups_of(holdings: list[HoldingRecord], grouping: str) -> list[Group]:
    by_key: dict[str, list[HoldingRecord]] = {}
    for h in holdings:
        by_key.setdefault(_KEYS[grouping](h), []).append(h)
    # Amounts add up only within one asset, and only in whole-token units: base-unit
    # amounts (token decimals unknown) must not be added to anything.
    adds_up = grouping in ("ASSET", "TOKEN")
    return [Group(key, order(members), currency_sums(members),
                  money.dsum(h.amount for h in members) if adds_up and not any(h.base_units for h in members)
                  else None)
            for key, members in by_key.items()]


def grouped(derived: Derived, owner: tuple[str, str], holdings: list[HoldingRecord], f: Any,
            grouping: str) -> list[Group]:
    """`groups_of` the filter's selection, kept with the valued holdings (resolvers/holdings.py's `selected`)."""
    return derived.get(("groups", owner, repr(f), grouping), lambda: groups_of(selected(derived, owner, holdings, f),
                                                                                 grouping))


def group(holdings: list[HoldingRecord], grouping: str, currency: str, total: Decimal, registry: TokenRegistry,
          rate_for: RateFor = no_rates, groups: list[Group] | None = None) -> list[PositionView]:
    """Positions ordered by value (unpriced last), then key. `total` is what `share` divides.
    `groups`: `groups_of(holdings, grouping)`, when the caller has it already."""
    currency = currency.upper()
    groups = groups if groups is not None else groups_of(holdings, grouping)
    positions = [_position(g, grouping, currency, total, registry, rate_for) for g in groups]
    priced = sorted((p for p in positions if p.value is not None), key=lambda p: (-p.value.amount, p.key))
    return priced + sorted((p for p in positions if p.value is None), key=lambda p: p.key)


def _position(g: Group, grouping: str, currency: str, total: Decimal, registry: TokenRegistry,
              rate_for: RateFor) -> PositionView:
    first = g.members[0]
    # As the account's total does: per currency sums, each converted once (resolvers/holdings.py).
    amount, rates, missing = convert_sums(g.sums.sums, currency, rate_for)
    valued = sum(count for c, count in g.sums.counts.items() if c not in missing)
    value = Money(amount, currency, rates) if valued else None
    position = PositionView(
        key=g.key,
        holdings=g.members,
        amount=g.amount,
        value=value,
        share=money.unit_price(value.amount, total) if value is not None and total else None,
        unpriced_holdings=len(g.members) - valued,
    )
    if grouping == "ASSET":
        position.asset = _asset_of(first.token, registry)
    elif grouping == "TOKEN":
        position.token, position.chain = first.token, first.token.chain
        position.asset = _asset_of(first.token, registry)
    elif grouping == "CHAIN":
        position.chain = first.token.chain
    elif grouping == "SOURCE":
        position.source = first.source
    else:
        position.wallet, position.source, position.chain = first.wallet, first.source, first.wallet.chain
    return position


def _asset_of(token: Token, registry: TokenRegistry) -> Asset:
    """The registry's asset, or one made from the token the registry does not know."""
    known = registry.assets.get(token.asset_key)
    return known or Asset(key=token.asset_key, symbol=token.symbol, name=token.name)
