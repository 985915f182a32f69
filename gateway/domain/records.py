"""The normalized model every source produces and every resolver reads.

The records are immutable (one read's records are shared by every request that reuses it):
frozen `msgspec.Struct`s, which build and copy (`msgspec.structs.replace`) in C, where a
frozen dataclass sets each field through `object.__setattr__`; a request builds and copies
hundreds. They are the field sources of the GraphQL types directly (attribute names match
the schema's snake_case fields), so no per-field wrapping. `SourceFetch`, one request's
own, stays a mutable dataclass. Nothing here knows about HTTP or GraphQL.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import msgspec


class SourceId(str, Enum):
    """The base of `Source`, which gateway/sources/catalog.py builds from the sources'
    specs (one member per folder gateway/sources/<name>/): the domain names a source by
    this type without knowing which sources exist. A member's value is its GraphQL name
    (`CALICO`), so it compares and hashes as that string."""

    def __new__(cls, value: str, display: str) -> "SourceId":
        member = str.__new__(cls, value)
        member._value_ = value
        member._display = display
        return member

    @property
    def display(self) -> str:
        """The upstream's own spelling, for messages."""
        return self._display

    @property
    def key(self) -> str:
        """The lowercase name used in config (`[sources.cobo]`) and scoped ids (`cobo:FOO`)."""
        return self.value.lower()


class WalletKind(str, Enum):
    EXCHANGE_ACCOUNT = "EXCHANGE_ACCOUNT"
    SUB_ACCOUNTS = "SUB_ACCOUNTS"
    CUSTODIAL = "CUSTODIAL"
    ONCHAIN_ADDRESS = "ONCHAIN_ADDRESS"
    SMART_ACCOUNT = "SMART_ACCOUNT"


class AmountPrecision(str, Enum):
    EXACT = "EXACT"                          # base units, or scaled strings at full precision
    ROUNDED = "ROUNDED"                      # e.g. Cryptofuse's fixed 6-dp strings
    FLOAT_APPROXIMATE = "FLOAT_APPROXIMATE"  # e.g. Calico's JSON floats


class PriceReliability(str, Enum):
    REPORTED = "REPORTED"
    DERIVED = "DERIVED"
    UNRELIABLE = "UNRELIABLE"


class SourceState(str, Enum):
    OK = "OK"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    NOT_CONFIGURED = "NOT_CONFIGURED"


class Chain(msgspec.Struct, frozen=True):
    id: str                 # CAIP-2
    name: str
    is_testnet: bool = False


class Token(msgspec.Struct, frozen=True):
    id: str                 # CAIP-19 when chain and contract are known, else source-scoped
    symbol: str
    asset_key: str          # the Asset this token belongs to (its own id when unknown)
    name: str | None = None
    decimals: int | None = None
    chain: Chain | None = None
    address: str | None = None   # contract / mint address, EIP-55 for EVM
    asset_type: str | None = None  # CAIP-19, when known

    @property
    def is_testnet(self) -> bool:
        return bool(self.chain and self.chain.is_testnet)


class Asset(msgspec.Struct, frozen=True):
    key: str
    symbol: str
    name: str | None = None


class FxRate(msgspec.Struct, frozen=True):
    """An exchange rate: one unit of `base` costs `rate` units of `quote` (pair "EUR/USD")."""
    base: str
    quote: str
    rate: Decimal
    at: datetime            # when the rate was set or quoted
    source: str             # "config" (the static [fx.rates] table) or "provider"
    inverted: bool = False  # applied as 1/rate, converting quote into base

    @property
    def pair(self) -> str:
        return f"{self.base}/{self.quote}"

    def applied_inverted(self) -> "FxRate":
        return msgspec.structs.replace(self, inverted=True)


class Money(msgspec.Struct, frozen=True):
    amount: Decimal
    currency: str
    # The exchange rates a converted figure used (none when nothing was converted).
    rates: tuple[FxRate, ...] = ()

    @property
    def rate(self) -> FxRate | None:
        """The one rate behind a converted figure (None when none, or when several were used)."""
        return self.rates[0] if len(self.rates) == 1 else None


class Price(msgspec.Struct, frozen=True):
    unit: Decimal           # price of one whole token
    currency: str
    reliability: PriceReliability
    source: SourceId | None = None
    rate: "FxRate | None" = None   # when converted from another currency (reliability DERIVED)


class WalletRecord(msgspec.Struct, frozen=True):
    id: str                 # opaque global id (gateway.ids.encode)
    account_id: str
    source: SourceId
    kind: WalletKind
    local_id: str           # the source's own name for it (uuid, address, "account", ...)
    provider: str | None = None
    chain: Chain | None = None
    address: str | None = None
    address_hint: str | None = None
    label: str | None = None


class HoldingRecord(msgspec.Struct, frozen=True):
    id: str
    account_id: str
    wallet: WalletRecord
    token: Token
    source: SourceId
    amount: Decimal
    precision: AmountPrecision
    amount_raw: int | None = None
    available: Decimal | None = None
    locked: Decimal | None = None
    pending: Decimal | None = None
    staked: Decimal | None = None
    price: Price | None = None
    value: Money | None = None
    updated_at: datetime | None = None
    # True when `amount` is in base units because the token's decimals are unknown
    # (OneBalance reports only base units): such amounts are never added to others.
    base_units: bool = False


class SourceError(msgspec.Struct, frozen=True):
    code: str               # one of gateway.domain.errors.UpstreamCode
    message: str            # written by us: never an upstream body or a credential


class SourceWarning(msgspec.Struct, frozen=True):
    code: str               # e.g. POSSIBLY_TRUNCATED, UPSTREAM_REPORTED_ERRORS
    message: str


@dataclass(slots=True)
class SourceFetch:
    """What one source said for one upstream identity (all pages), normalized."""
    source: SourceId
    account_id: str
    state: SourceState
    wallets: list[WalletRecord] = field(default_factory=list)
    holdings: list[HoldingRecord] = field(default_factory=list)
    fetched_at: datetime | None = None
    error: SourceError | None = None
    warnings: list[SourceWarning] = field(default_factory=list)
    from_cache: bool = False
    upstream_calls: int = 0
    # (cache key, response) pairs to store once the whole fetch has been read and normalized
    cache_writes: list = field(default_factory=list, repr=False)
    # A copy handed out (the memo's or a joined read): its record lists are other requests' too.
    shared: bool = field(default=False, compare=False, repr=False)

    def handed_out(self, **changes: Any) -> "SourceFetch":
        """This fetch for one more request (the memo's, or a read another request made):
        records and lists are shared, since consumers never mutate them; what a request adds
        to (warnings) is its own; the cache writes were done by the read that made it."""
        return replace(self, warnings=list(self.warnings), cache_writes=[], shared=True, **changes)
