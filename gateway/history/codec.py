"""A snapshot and its stored form: exact JSON (every Decimal as its string, every time as
ISO-8601 UTC), so what is read back equals, digit for digit, what was live when it was taken."""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from gateway.domain import money
from gateway.domain.records import (AmountPrecision, Chain, FxRate, HoldingRecord, Money, Price, PriceReliability,
                                    SourceState, Token, WalletKind, WalletRecord)
from gateway.fx.rates import orient
from gateway.sources.catalog import Source

UNPRICED = "_unpriced"


def to_micros(at: datetime) -> int:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    delta = at - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


@dataclass(slots=True)
class Snapshot:
    """One account's valued holdings (the default selection: no testnets, no zero amounts,
    as `holdings` and `totalValue` answer by default), each configured source's state, and
    the exchange rates known then."""
    account_id: str
    taken_at: datetime
    holdings: list[HoldingRecord]
    states: dict[Source, SourceState]
    rates: list[FxRate] = field(default_factory=list)


# -- sums and states: what valueHistory reads ----------------------------------------
def sums_json(holdings: Iterable[HoldingRecord]) -> str:
    by: dict[str, dict[str, list[Decimal]]] = {}
    unpriced: dict[str, int] = {}
    for h in holdings:
        if h.value is None:
            unpriced[h.source.value] = unpriced.get(h.source.value, 0) + 1
        else:
            by.setdefault(h.source.value, {}).setdefault(h.value.currency.upper(), []).append(h.value.amount)
    out: dict[str, Any] = {s: {c: [str(money.dsum(v)), len(v)] for c, v in cs.items()} for s, cs in by.items()}
    if unpriced:
        out[UNPRICED] = unpriced
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class PointSums:
    by_source: dict[Source, dict[str, tuple[Decimal, int]]]
    unpriced: dict[Source, int]

    @staticmethod
    def parse(text: str) -> "PointSums":
        raw = json.loads(text)
        unpriced = {Source(s): n for s, n in raw.pop(UNPRICED, {}).items()}
        by = {Source(s): {c: (Decimal(v[0]), int(v[1])) for c, v in cs.items()} for s, cs in raw.items()}
        return PointSums(by, unpriced)


def states_json(states: dict[Source, SourceState]) -> str:
    return json.dumps({s.value: st.value for s, st in states.items()}, sort_keys=True, separators=(",", ":"))


def parse_states(text: str) -> dict[Source, SourceState]:
    return {Source(s): SourceState(st) for s, st in json.loads(text).items()}


# -- rates ---------------------------------------------------------------------------
def rates_json(rates: Iterable[FxRate]) -> str:
    return json.dumps([[r.base, r.quote, str(r.rate), r.at.isoformat(), r.source] for r in rates],
                      separators=(",", ":"))


def parse_rates(text: str) -> list[FxRate]:
    return [FxRate(base=b, quote=q, rate=Decimal(r), at=datetime.fromisoformat(at), source=src)
            for b, q, r, at, src in json.loads(text)]


class StoredRates:
    """Rates as they were at a point, looked up as the live table did then (static first)."""

    def __init__(self, rates: list[FxRate]):
        self.static = {(r.base, r.quote): r for r in rates if r.source == "config"}
        self.quoted = {(r.base, r.quote): r for r in rates if r.source != "config"}

    def rate(self, source: str, target: str) -> FxRate | None:
        return orient(self.static, source, target) or orient(self.quoted, source, target)


# -- holdings: what holdingsAt returns ------------------------------------------------
def _d(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _dd(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def _chain(c: Chain | None) -> list | None:
    return None if c is None else [c.id, c.name, c.is_testnet]


def _unchain(v: list | None) -> Chain | None:
    return None if v is None else Chain(id=v[0], name=v[1], is_testnet=v[2])


def _wallet(w: WalletRecord) -> dict[str, Any]:
    return {"id": w.id, "account_id": w.account_id, "source": w.source.value, "kind": w.kind.value,
            "local_id": w.local_id, "provider": w.provider, "chain": _chain(w.chain), "address": w.address,
            "address_hint": w.address_hint, "label": w.label}


def _unwallet(d: dict[str, Any]) -> WalletRecord:
    return WalletRecord(id=d["id"], account_id=d["account_id"], source=Source(d["source"]), kind=WalletKind(d["kind"]),
                        local_id=d["local_id"], provider=d["provider"], chain=_unchain(d["chain"]),
                        address=d["address"], address_hint=d["address_hint"], label=d["label"])


def _token(t: Token) -> dict[str, Any]:
    return {"id": t.id, "symbol": t.symbol, "asset_key": t.asset_key, "name": t.name, "decimals": t.decimals,
            "chain": _chain(t.chain), "address": t.address, "asset_type": t.asset_type}


def _untoken(d: dict[str, Any]) -> Token:
    return Token(id=d["id"], symbol=d["symbol"], asset_key=d["asset_key"], name=d["name"], decimals=d["decimals"],
                 chain=_unchain(d["chain"]), address=d["address"], asset_type=d["asset_type"])


def _holding(h: HoldingRecord) -> dict[str, Any]:
    return {
        "id": h.id, "account_id": h.account_id, "wallet": h.wallet.id, "token": _token(h.token),
        "source": h.source.value, "amount": str(h.amount), "precision": h.precision.value,
        "amount_raw": None if h.amount_raw is None else str(h.amount_raw),
        "available": _d(h.available), "locked": _d(h.locked), "pending": _d(h.pending), "staked": _d(h.staked),
        "price": None if h.price is None else [str(h.price.unit), h.price.currency, h.price.reliability.value,
                                               None if h.price.source is None else h.price.source.value],
        "value": None if h.value is None else [str(h.value.amount), h.value.currency],
        "updated_at": None if h.updated_at is None else h.updated_at.isoformat(),
        "base_units": h.base_units,
    }


def _unholding(d: dict[str, Any], wallets: dict[str, WalletRecord]) -> HoldingRecord:
    p, v = d["price"], d["value"]
    return HoldingRecord(
        id=d["id"], account_id=d["account_id"], wallet=wallets[d["wallet"]], token=_untoken(d["token"]),
        source=Source(d["source"]), amount=Decimal(d["amount"]), precision=AmountPrecision(d["precision"]),
        amount_raw=None if d["amount_raw"] is None else int(d["amount_raw"]),
        available=_dd(d["available"]), locked=_dd(d["locked"]), pending=_dd(d["pending"]), staked=_dd(d["staked"]),
        price=None if p is None else Price(unit=Decimal(p[0]), currency=p[1], reliability=PriceReliability(p[2]),
                                           source=None if p[3] is None else Source(p[3])),
        value=None if v is None else Money(Decimal(v[0]), v[1]),
        updated_at=None if d["updated_at"] is None else datetime.fromisoformat(d["updated_at"]),
        base_units=d["base_units"],
    )


def holdings_payload(holdings: list[HoldingRecord]) -> tuple[str, bytes]:
    """(sha256 of the JSON, the JSON zlib-compressed)."""
    wallets: dict[str, Any] = {}
    for h in holdings:
        wallets.setdefault(h.wallet.id, _wallet(h.wallet))
    text = json.dumps({"wallets": wallets, "holdings": [_holding(h) for h in holdings]},
                      sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest(), zlib.compress(text, 6)


def parse_holdings(payload: bytes) -> list[HoldingRecord]:
    raw = json.loads(zlib.decompress(payload))
    wallets = {wid: _unwallet(w) for wid, w in raw["wallets"].items()}
    return [_unholding(h, wallets) for h in raw["holdings"]]
