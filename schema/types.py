"""The public object types. Field sources are the plain records of gateway.domain.records and
resolvers/ (matching attribute names), so no per-field wrapping; methods delegate to resolvers/."""
from __future__ import annotations

from typing import Annotated, Generic, Optional, TypeVar

import strawberry
from strawberry import Info

from gateway.domain import records
from resolvers import accounts as account_resolvers
from resolvers import entities, history, portfolio, registry, roots, value_history
from schema.enums import (AmountPrecision, BreakerState, HistoryInterval, PositionGrouping, PriceReliability, Source,
                          SourceState, WalletKind)
from schema.inputs import HoldingFilter, HoldingOrder
from schema.scalars import AssetType, BigInt, ChainId, DateTime, Decimal

T = TypeVar("T")


def record_check(record_type: type) -> classmethod:
    """`is_type_of` for a type whose values are instances of one record class (its info is never
    read). schema/plans.py tests `isinstance` inline, without building an info for it."""
    def is_type_of(cls: type, obj: object, info: Info) -> bool:
        return isinstance(obj, record_type)
    is_type_of.record_type = record_type   # type: ignore[attr-defined]
    return classmethod(is_type_of)


@strawberry.interface(description="An object with a stable global id.")
class Node:
    id: strawberry.ID


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: Optional[str]
    end_cursor: Optional[str]


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T] = strawberry.field(description="The page's nodes without their edges.")
    page_info: PageInfo
    total_count: int = strawberry.field(description="Items across all pages of this listing.")


@strawberry.type(description="A chain, by CAIP-2 id.")
class Chain:
    id: ChainId
    name: str
    is_testnet: bool


@strawberry.type(description='The cross-chain group of tokens users think of as "the same" asset.')
class Asset:
    key: str
    symbol: str
    name: Optional[str]

    @strawberry.field(description="Tokens of this asset on each chain, and off-chain tickers.")
    def tokens(self, info: Info) -> list[Token]:
        return roots.asset_tokens(info.context, self.key)


@strawberry.federation.type(keys=["id"], description="One asset on one chain (CAIP-19 id when known), or one "
                            "off-chain ticker. A token the registry cannot resolve keeps a source-scoped id and null decimals.")
class Token(Node):
    id: strawberry.ID
    asset_type: Optional[AssetType]
    chain: Optional[Chain]
    symbol: str
    name: Optional[str]
    decimals: Optional[int] = strawberry.field(description="Null when unknown; never guessed.")
    address: Optional[str] = strawberry.field(description="Contract or mint address (EIP-55 for EVM).")

    @strawberry.field
    def asset(self, info: Info) -> Asset:
        return info.context.registry.asset(self.asset_key)

    is_type_of = record_check(records.Token)

    @classmethod
    def resolve_reference(cls, info: Info, id: Optional[strawberry.ID] = None, **_: object) -> object:
        return entities.token(info.context, id)   # federation `_entities`, like `token(id)`


@strawberry.type(description="An exchange rate: one unit of `base` costs `rate` units of `quote`.")
class FxRate:
    pair: str = strawberry.field(description='"BASE/QUOTE", e.g. "EUR/USD".')
    base: str
    quote: str
    rate: Decimal
    at: DateTime = strawberry.field(description="When the rate was set (config loaded) or quoted (provider).")
    source: str = strawberry.field(description='"config" (the static [fx.rates] table) or "provider".')
    inverted: bool = strawberry.field(
        description="Applied as 1/rate (quote into base): the quotient is rounded half-even to 28 significant digits.")


@strawberry.type(description="An amount with its currency, and the exchange rates behind it when it was converted.")
class Money:
    amount: Decimal
    currency: str
    rate: Optional[FxRate] = strawberry.field(
        description="The rate this figure was converted with; null when nothing was converted or several rates were (see `rates`).")
    rates: list[FxRate] = strawberry.field(description="Every rate used to convert this figure (empty when none).")


@strawberry.type(description="Price of one whole token.")
class Price:
    unit: Decimal
    currency: str
    reliability: PriceReliability
    source: Optional[Source] = strawberry.field(description="The source the price came from.")
    rate: Optional[FxRate] = strawberry.field(
        description="The exchange rate this price was converted at (`priceIn`; reliability DERIVED); null when not converted.")


@strawberry.type(description="A sum of values in one currency, and whether it covers everything.")
class ValueTotal:
    value: Money
    complete: bool = strawberry.field(
        description="False when a holding is unpriced in this currency or a source failed or was partial.")
    unpriced_holdings: int
    failed_sources: list[Source]


@strawberry.type
class SourceError:
    code: str
    message: str


@strawberry.type(description="Something the source said that limits how complete its data is.")
class SourceWarning:
    code: str
    message: str


@strawberry.type(description="How one source answered for an account in this request.")
class SourceStatus:
    source: Source
    state: SourceState
    fetched_at: Optional[DateTime]
    from_cache: bool
    error: Optional[SourceError]
    warnings: list[SourceWarning]
    upstream_calls: int = strawberry.field(
        description="Upstream HTTP calls (retries included) behind this data in this request; 0 when cached.")
    breaker: BreakerState = strawberry.field(description="The source's circuit breaker in this gateway process.")


@strawberry.type(description="One token in one wallet: amounts, valuation, freshness, provenance.")
class Holding(Node):
    id: strawberry.ID
    wallet: Wallet
    token: Token
    source: Source
    amount: Decimal = strawberry.field(description="Total, in whole-token units.")
    amount_raw: Optional[BigInt] = strawberry.field(
        description="Base units, when decimals are known and the amount is exact.")
    precision: AmountPrecision
    available: Optional[Decimal]
    locked: Optional[Decimal]
    pending: Optional[Decimal]
    staked: Optional[Decimal]
    price: Optional[Price]
    value: Optional[Money] = strawberry.field(description="Null when unpriced; never 0 for unknown.")
    updated_at: Optional[DateTime]

    @strawberry.field
    def asset(self, info: Info) -> Asset:
        return info.context.registry.asset(self.token.asset_key)

    @strawberry.field(description="`value` in another currency, at the current exchange rate ([fx]); null when "
                                  "unvalued or no rate converts it.")
    def value_in(self, info: Info, currency: str) -> Optional[Money]:
        return portfolio.holding_value_in(info.context, self, currency)   # type: ignore[arg-type]

    @strawberry.field(description="`price` in another currency: reliability DERIVED when converted, with the rate.")
    def price_in(self, info: Info, currency: str) -> Optional[Price]:
        return portfolio.holding_price_in(info.context, self, currency)   # type: ignore[arg-type]

    is_type_of = record_check(records.HoldingRecord)


@strawberry.type(description="One entry of an account's balance history (Cryptofuse).")
class BalanceChange:
    timestamp: DateTime
    type: str
    token: Token
    amount: Decimal
    balance_after: Optional[Decimal]


@strawberry.federation.type(keys=["id"], description="One place that holds assets at one upstream.")
class Wallet(Node):
    id: strawberry.ID
    source: Source
    kind: WalletKind
    provider: Optional[str]
    chain: Optional[Chain]
    address: Optional[str] = strawberry.field(description="Full address when known.")
    address_hint: Optional[str] = strawberry.field(description="Partial address, e.g. Calico's redacted last 4.")
    label: Optional[str]

    @strawberry.field
    def account(self, info: Info) -> Account:
        return portfolio.wallet_account(info.context, self)

    @strawberry.field
    def holdings(self, info: Info, filter: Optional[HoldingFilter] = None,
                       order_by: Optional[HoldingOrder] = None, first: Optional[int] = None,
                       after: Optional[str] = None) -> Connection[Holding]:
        return portfolio.wallet_holdings(info.context, self, filter, order_by, first, after)

    @strawberry.field
    def total_value(self, info: Info, currency: str = "USD") -> ValueTotal:
        return portfolio.wallet_total(info.context, self, currency)

    is_type_of = record_check(records.WalletRecord)

    @classmethod
    def resolve_reference(cls, info: Info, id: Optional[strawberry.ID] = None, **_: object) -> object:
        return entities.wallet(info.context, id)  # federation `_entities`, authorized like `node(id)`


@strawberry.type(description="Holdings grouped by asset, token, chain, source or wallet, summed exactly.")
class Position:
    key: str
    asset: Optional[Asset]
    token: Optional[Token]
    chain: Optional[Chain]
    source: Optional[Source]
    wallet: Optional[Wallet]
    amount: Optional[Decimal] = strawberry.field(
        description="Exact sum of the members' amounts; null when the group mixes assets (CHAIN, SOURCE, WALLET).")
    value: Optional[Money] = strawberry.field(
        description="Sum of the members' values in the requested currency; null when none is priced in it.")
    share: Optional[Decimal] = strawberry.field(
        description="This position's value over the total value of the same selection, in that currency.")
    unpriced_holdings: int = strawberry.field(description="Members without a value in the requested currency.")
    holdings: list[Holding]


@strawberry.type(description="One identity of an account at a source; a credential shows only its last characters.")
class SourceLink:
    source: Source
    identity: str
    credential_hint: Optional[str] = strawberry.field(description="at most the last 4 characters of the credential")


@strawberry.type(description="A gateway key of the account (never the key itself).")
class ApiKeyInfo:
    key_id: strawberry.ID
    label: Optional[str]
    created_at: DateTime
    last_used_at: Optional[DateTime]
@strawberry.type(description="An account's value at one time in its history.")
class ValuePoint:
    at: DateTime = strawberry.field(description="When the snapshot behind this point was taken (the interval's last).")
    value: Optional[Money] = strawberry.field(
        description="Converted at the rates of that time; null when no source had data then.")
    complete: bool = strawberry.field(
        description="False when a source had failed or was partial, a holding was unpriced, or a currency had no rate then.")
    sources: list[Source] = strawberry.field(description="The sources whose data this point holds.")


@strawberry.type(description="An account's holdings as a snapshot recorded them.")
class HoldingSnapshot:
    taken_at: DateTime
    holdings: list[Holding] = strawberry.field(description="As `holdings` answered then (no testnets, no zero amounts).")

    @strawberry.field(description="As `totalValue` answered then: that time's holdings, sources' states and rates.")
    def total_value(self, info: Info, currency: str = "USD") -> ValueTotal:
        return value_history.snapshot_total(info.context, self, currency)   # type: ignore[arg-type]


@strawberry.federation.type(keys=["id"], description="A person or organization, with its identities at each upstream.")
class Account(Node):
    id: strawberry.ID

    @strawberry.field(description="Its identity at each source, credentials redacted (admins and the account itself).")
    def links(self) -> list[SourceLink]:
        return registry.account_links(self)   # type: ignore[return-value]

    @strawberry.field(description="Its gateway keys from the account registry (keys in the config file are not listed).")
    async def api_keys(self, info: Info) -> list[ApiKeyInfo]:
        return await registry.account_api_keys(info.context, self)   # type: ignore[return-value]

    @strawberry.field
    def wallets(self, info: Info, sources: Optional[list[Source]] = None) -> list[Wallet]:
        return portfolio.account_wallets(info.context, self, sources)

    @strawberry.field
    def holdings(self, info: Info, filter: Optional[HoldingFilter] = None,
                       order_by: Optional[HoldingOrder] = None, first: Optional[int] = None,
                       after: Optional[str] = None) -> Connection[Holding]:
        return portfolio.account_holdings(info.context, self, filter, order_by, first, after)

    @strawberry.field
    def positions(self, info: Info, group_by: PositionGrouping = PositionGrouping.ASSET,
                        filter: Optional[HoldingFilter] = None, first: Optional[int] = None,
                        after: Optional[str] = None, currency: str = "USD") -> Connection[Position]:
        return portfolio.account_positions(info.context, self, group_by.value, currency, filter, first, after)

    @strawberry.field
    def total_value(self, info: Info, currency: str = "USD",
                          filter: Optional[HoldingFilter] = None) -> ValueTotal:
        return portfolio.account_total(info.context, self, currency, filter)

    @strawberry.field(description="Balance history, newest first (from Cryptofuse). `currency` is the "
                                  "Cryptofuse ticker (e.g. USDTERC20), `type` e.g. deposit.")
    async def balance_history(self, info: Info, currency: Optional[str] = None, type: Optional[str] = None,
                              first: Optional[int] = None, after: Optional[str] = None) -> Connection[BalanceChange]:
        return await history.account_history(info.context, self, currency, type, first, after)

    @strawberry.field(description="The account's value over time, one point per interval with a snapshot "
                                  "(snapshots are taken when the account is read; docs/HISTORY.md). "
                                  "Without `from`: the 30 intervals up to `to` (default: now).")
    async def value_history(self, info: Info, currency: str = "USD",
                            from_: Annotated[Optional[DateTime], strawberry.argument(name="from")] = None,
                            to: Optional[DateTime] = None,
                            interval: HistoryInterval = HistoryInterval.DAY) -> list[ValuePoint]:
        return await value_history.value_history(info.context, self, currency, from_, to,   # type: ignore[return-value]
                                                 interval.value)

    @strawberry.field(description="The last snapshot taken at or before `at`; null before the first.")
    async def holdings_at(self, info: Info, at: DateTime) -> Optional[HoldingSnapshot]:
        return await value_history.holdings_at(info.context, self, at)   # type: ignore[return-value]

    @strawberry.field(description="Every source, with how it answered (NOT_CONFIGURED when unused).")
    async def sources(self, info: Info) -> list[SourceStatus]:
        return await account_resolvers.source_statuses(info.context, self.config)

    is_type_of = record_check(account_resolvers.AccountRef)

    @classmethod
    async def resolve_reference(cls, info: Info, id: Optional[strawberry.ID] = None, **_: object) -> object:
        return await entities.account(info.context, id)  # federation `_entities`, authorized like `account(id)`
