"""The rates the gateway knows and the conversion of money with them.

Rounding: converting along a rate (EUR -> USD with "EUR/USD" = 1.0850) multiplies, which is
exact. Converting against it (USD -> EUR) divides by the rate; a quotient rarely terminates,
so it is rounded half-even to 28 significant digits (money.UNIT_PRICE_CONTEXT, as for unit
prices), and the rate on the figure says `inverted`. No inverse rate is ever stored rounded.
Only direct pairs convert: no cross rates through a third currency.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Iterable, Mapping

from gateway.domain import money
from gateway.domain.records import FxRate, Money, Price, PriceReliability
from gateway.fx.config import FxConfig, parse_rate, split_pair

STATIC = "config"
PROVIDER = "provider"


def convert_amount(amount: Decimal, rate: FxRate) -> Decimal:
    """`amount` of the rate's base (or, inverted, of its quote) in the other currency."""
    if rate.inverted:
        return money.UNIT_PRICE_CONTEXT.divide(amount, rate.rate)
    return money.mul(amount, rate.rate)


def orient(rates: Mapping[tuple[str, str], FxRate], source: str, target: str) -> FxRate | None:
    """The rate that converts `source` into `target`: the direct pair, else the reverse one inverted."""
    direct = rates.get((source, target))
    if direct is not None:
        return direct
    reverse = rates.get((target, source))
    return reverse.applied_inverted() if reverse is not None else None


def convert_sums(sums: Mapping[str, Decimal], target: str,
                 rate_for: Callable[[str, str], FxRate | None]) -> tuple[Decimal, tuple[FxRate, ...], list[str]]:
    """Sums per currency as one amount in `target`: each currency's sum is converted once
    (so a total read back from history, which stores these sums, equals the live one digit
    for digit). Returns the amount, the rates used, and the currencies that had no rate."""
    parts: list[Decimal] = []
    used: list[FxRate] = []
    missing: list[str] = []
    for currency in sorted(sums):
        amount = sums[currency]
        if currency == target:
            parts.append(amount)
            continue
        rate = rate_for(currency, target)
        if rate is None:
            missing.append(currency)
            continue
        parts.append(convert_amount(amount, rate))
        used.append(rate)
    return money.dsum(parts), tuple(used), missing


@dataclass
class FxTable:
    """The static `[fx.rates]` (timed when the config was loaded) and, when a provider is
    configured, its quotes as last fetched (gateway/fx/provider.py keeps them fresh)."""
    static: dict[tuple[str, str], FxRate] = field(default_factory=dict)
    quoted: dict[tuple[str, str], FxRate] = field(default_factory=dict)
    provider_currencies: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: FxConfig, now: datetime | None = None) -> "FxTable":
        at = now or datetime.now(timezone.utc)
        static = {}
        for pair, text in config.rates.items():
            base, quote = split_pair(pair)
            static[(base, quote)] = FxRate(base=base, quote=quote, rate=parse_rate(text), at=at, source=STATIC)
        currencies = frozenset(config.provider.currencies) | {config.provider.base} if config.provider else frozenset()
        return cls(static=static, provider_currencies=currencies)

    def as_of_now(self) -> "FxTable":
        """The rates as they are now, kept when the provider's next quotes arrive (its refresh
        replaces `quoted`, never changes it in place), at no copying cost."""
        return FxTable(static=self.static, quoted=self.quoted, provider_currencies=self.provider_currencies)

    def currencies(self) -> set[str]:
        """Every currency some rate (or the provider) can convert."""
        out = set(self.provider_currencies)
        for base, quote in list(self.static) + list(self.quoted):
            out.update((base, quote))
        return out

    def rate(self, source: str, target: str) -> FxRate | None:
        """The static table wins over the provider: an operator's fixed rate is deliberate."""
        return orient(self.static, source, target) or orient(self.quoted, source, target)

    def snapshot(self, currencies: Iterable[str]) -> list[FxRate]:
        """Every rate known now with one of `currencies` on a side: what a history point
        stores so that it converts later at the rates of its own time."""
        wanted = set(currencies)
        chosen: dict[tuple[str, str], FxRate] = {}
        for table in (self.quoted, self.static):   # static last: it wins
            for key, r in table.items():
                if r.base in wanted or r.quote in wanted:
                    chosen[key] = r
        return list(chosen.values())

    def convert_price(self, price: Price, target: str) -> Price | None:
        """A unit price in `target`: DERIVED, with the rate it was converted at."""
        target = target.upper()
        if price.currency.upper() == target:
            return price
        rate = self.rate(price.currency.upper(), target)
        if rate is None:
            return None
        return Price(unit=convert_amount(price.unit, rate), currency=target, reliability=PriceReliability.DERIVED,
                     source=price.source, rate=rate)

    def convert(self, value: Money, target: str) -> Money | None:
        target = target.upper()
        if value.currency.upper() == target:
            return value
        amount, used, missing = convert_sums({value.currency.upper(): value.amount}, target, self.rate)
        return None if missing else Money(amount, target, used)
