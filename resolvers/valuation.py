"""Pricing holdings whose source reports no value (Cryptofuse, Cobo) from prices the
account's other sources reported for the same token or asset in this request.

A derived price says so (`DERIVED`) and names the source it came from. Nothing is
pegged: USDC is not assumed to be worth 1 USD. Testnet tokens are never priced from
mainnet observations, and UNRELIABLE prices are never propagated.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from gateway import money
from gateway.records import HoldingRecord, Money, Price, PriceReliability, Source

# Which source's price to prefer when several observed one: exact base units first.
_PREFERENCE = {Source.ONEBALANCE: 0, Source.DALP: 1, Source.CALICO: 2, Source.COBO: 3, Source.CRYPTOFUSE: 4}


def _rank(h: HoldingRecord) -> tuple:
    assert h.price is not None
    return (h.price.currency != "USD", _PREFERENCE[h.source], -h.amount, h.id)


def observed_prices(holdings: Iterable[HoldingRecord]) -> tuple[dict[str, Price], dict[str, Price]]:
    """The best reported price per token id and per asset key."""
    by_token: dict[str, HoldingRecord] = {}
    by_asset: dict[str, HoldingRecord] = {}
    for h in holdings:
        p = h.price
        if p is None or p.reliability is not PriceReliability.REPORTED or h.token.is_testnet:
            continue
        for index, key in ((by_token, h.token.id), (by_asset, h.token.asset_key)):
            best = index.get(key)
            if best is None or _rank(h) < _rank(best):
                index[key] = h
    return ({k: h.price for k, h in by_token.items()},   # type: ignore[misc]
            {k: h.price for k, h in by_asset.items()})   # type: ignore[misc]


def derive_values(holdings: list[HoldingRecord]) -> list[HoldingRecord]:
    """Holdings with no value get one from an observed price (same token, else same asset).
    Returns new records for those; the fetched records are never modified."""
    by_token, by_asset = observed_prices(holdings)
    out = []
    for h in holdings:
        if h.value is None and h.price is None and not h.token.is_testnet:
            seen = by_token.get(h.token.id) or by_asset.get(h.token.asset_key)
            if seen is not None:
                price = Price(unit=seen.unit, currency=seen.currency, reliability=PriceReliability.DERIVED,
                              source=seen.source)
                h = replace(h, price=price, value=Money(money.derived_value(h.amount, seen.unit), seen.currency))
        out.append(h)
    return out
