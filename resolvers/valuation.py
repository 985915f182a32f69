"""Pricing holdings whose source reports no value (Cryptofuse, Cobo) from prices the
account's other sources reported for the same token or asset in this request.

A derived price says so (`DERIVED`) and names the source it came from. Nothing is
pegged: USDC is not assumed to be worth 1 USD. Testnet tokens are never priced from
mainnet observations, and UNRELIABLE prices are never propagated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from msgspec.structs import replace

from gateway.domain import money
from gateway.support.by_identity import MISSING, ByIdentity
from gateway.domain.records import HoldingRecord, Money, Price, PriceReliability, SourceFetch, WalletRecord
from gateway.sources.catalog import SPEC_OF
from resolvers.derived import Derived

# Which source's price to prefer when several observed one (each spec's price_rank, a
# required field: every source has one): exact base units first.
_PREFERENCE = {source: spec.price_rank for source, spec in SPEC_OF.items()}


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


class ValuedAccounts:
    """An account's valued holdings, its wallets and its holdings by wallet, per set of fetches.

    Requests that share a read (resolvers.accounts.fetch_account) or find it in the memo
    (Upstream.recall) hold copies of one SourceFetch whose record lists are the same objects;
    valuing and indexing them is then done once, not once per request. Entries are kept by
    those lists' identities (gateway/support/by_identity.py). What is returned is shared: like the
    fetched records, never mutated by consumers.

    Only sets of shared fetches (handed-out copies) are kept: a request's own fresh read is
    valued once and never again, and keeping it would hold its records for 511 requests more."""

    def __init__(self, maxsize: int = 512):
        self.entries = ByIdentity(maxsize)

    def of(self, fetches: list[SourceFetch]) -> "Valued":
        if not all(f.shared for f in fetches):
            return Valued.of(fetches)
        lists = tuple(f.holdings for f in fetches) + tuple(f.wallets for f in fetches)
        valued = self.entries.get(lists)
        if valued is MISSING:
            valued = self.entries.put(lists, Valued.of(fetches))
        return valued


@dataclass(frozen=True, slots=True)
class Valued:
    holdings: list[HoldingRecord]                 # every fetch's, with derived values
    wallets: list[WalletRecord]                   # by id, first seen first
    by_wallet: dict[str, list[HoldingRecord]]     # wallet id -> its holdings
    derived: Derived = field(default_factory=Derived, compare=False)   # selections, orders, sums of these holdings

    @staticmethod
    def of(fetches: list[SourceFetch]) -> "Valued":
        # All sources, always: derived prices come from the other sources, so a holding's
        # value must not depend on which sources a query happened to ask for.
        holdings = derive_values([h for f in fetches for h in f.holdings])
        by_wallet: dict[str, list[HoldingRecord]] = {}
        for h in holdings:
            by_wallet.setdefault(h.wallet.id, []).append(h)
        wallets: dict[str, WalletRecord] = {}
        for f in fetches:
            for w in f.wallets:
                wallets.setdefault(w.id, w)
        return Valued(holdings, list(wallets.values()), by_wallet)
