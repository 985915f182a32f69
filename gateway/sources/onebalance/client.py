"""OneBalance: `GET /v3/balances/aggregated-balance`, one identity per group of CAIP-10 accounts.

Pitfalls handled here (docs/UPSTREAMS.md):
- `account=` takes a comma list and the response MERGES every listed account, so one call
  lists at most one address per namespace (one EVM + one Solana, say): two EVM addresses of
  one owner are two calls, and owners are never mixed. EVM addresses are chain-agnostic at
  OneBalance: `eip155:1:0xA` and `eip155:8453:0xa` are one wallet, read once.
- balances are base-unit integer strings with no decimals in the response: decimals come
  from the registry per member token (USDC on eip155:56 has 18). Unknown decimals keep the
  amount in base units and say so in one warning.
- `fiatValue` is a JSON float, parsed from its printed digits into Decimal (never float).
- the aggregated `balance` is the sum of its members: holdings come only from members.
- response addresses (in `accounts` and in assetTypes) are lowercase: EVM ids are compared
  case-insensitively.
- the doc gives no error body. We assume a NestJS-style JSON error,
  `{"statusCode": 401, "error": "Unauthorized", "message": "..."}`, and map by HTTP status only.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from pydantic import SecretStr

from gateway.domain import ids, money
from gateway.sources.onebalance.config import OneBalanceSourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.evm import normalize_address
from gateway.domain.records import (AmountPrecision, HoldingRecord, Money, Price, PriceReliability,
                             SourceFetch, SourceWarning, Token, WalletKind, WalletRecord)
from gateway.domain.tokens import token_key
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import ConfiguredAccount, SourceClient, UpstreamModel

PATH = "/v3/balances/aggregated-balance"
EVM = "eip155"


# Decoded from the body's bytes straight into these structs (SourceClient.decode, msgspec):
# validated while read, unknown fields ignored, JSON numbers kept to their digits.
BaseUnits = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$")]   # base units; a JSON number is refused


def _finite(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise ValueError("fiatValue must be a finite number")
    return value


class AssetBalance(msgspec.Struct, kw_only=True):
    """One token's balance: an `individualAssetBalances` entry or a `balanceBySpecificAsset` entry."""
    assetType: Annotated[str, msgspec.Meta(min_length=3)]
    balance: BaseUnits
    fiatValue: Decimal | None = None                  # a JSON float, read as Decimal from its digits

    def __post_init__(self) -> None:
        _finite(self.fiatValue)


class AggregatedAssetBalance(msgspec.Struct, kw_only=True):
    aggregatedAssetId: str
    balance: BaseUnits                                # sum of the members: never used for holdings
    individualAssetBalances: list[AssetBalance]
    fiatValue: Decimal | None = None

    def __post_init__(self) -> None:
        _finite(self.fiatValue)


class TotalBalance(msgspec.Struct, kw_only=True):
    fiatValue: Decimal

    def __post_init__(self) -> None:
        _finite(self.fiatValue)


class AggregatedBalanceResponse(msgspec.Struct, kw_only=True):
    # Strict about what holdings are built from; tolerant of the rest, which we do not use.
    accounts: dict[str, Any] = {}                     # chain type ("evm", "solana") -> address
    balanceByAggregatedAsset: list[AggregatedAssetBalance]
    balanceBySpecificAsset: list[AssetBalance] = []
    totalBalance: TotalBalance | None = None


class ErrorResponse(UpstreamModel):
    """Assumed error body (undocumented); read by the simulator, never echoed by the client."""
    statusCode: int
    error: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class OneBalanceIdentity:
    account_id: str
    api_key: SecretStr
    accounts: tuple[str, ...]       # CAIP-10 ids, at most one per namespace


def split_caip10(caip10: str) -> tuple[str, str, str]:
    """("eip155", "eip155:1", "0x...") for a CAIP-10 account id."""
    namespace, reference, address = caip10.split(":", 2)
    return namespace, f"{namespace}:{reference}", address


def address_key(namespace: str, address: str) -> str:
    """EVM addresses compare case-insensitively; base58 and the rest exactly."""
    return address.lower() if namespace == EVM else address


def group_accounts(caip10s: list[str]) -> list[tuple[str, ...]]:
    """Identity i = the i-th distinct address of every namespace, so no call merges two
    addresses of one namespace. The first CAIP-10 seen for an address is the one sent."""
    by_namespace: dict[str, dict[str, str]] = {}
    for caip10 in caip10s:
        namespace, _, address = split_caip10(caip10)
        by_namespace.setdefault(namespace, {}).setdefault(address_key(namespace, address), caip10)
    columns = [list(addresses.values()) for addresses in by_namespace.values()]
    depth = max((len(c) for c in columns), default=0)
    return [tuple(c[i] for c in columns if i < len(c)) for i in range(depth)]


class OneBalanceClient(SourceClient[OneBalanceSourceConfig, OneBalanceIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[OneBalanceIdentity]:
        block = account.source(self.source)
        if block is None:
            return []
        return [OneBalanceIdentity(account_id=account.id, api_key=self.config.api_key, accounts=group)
                for group in group_accounts(block.accounts)]

    async def fetch_identity(self, identity: OneBalanceIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        params = [("account", ",".join(identity.accounts))]
        if self.config.aggregated_asset_ids:
            params.append(("aggregatedAssetId", ",".join(self.config.aggregated_asset_ids)))
        if self.config.asset_ids:
            params.append(("assetId", ",".join(self.config.asset_ids)))
        response = await self.get(fetch, PATH, options, params=params,
                                  headers={"x-api-key": identity.api_key.get_secret_value()})
        self.raise_for_status(response)
        self.normalize(identity, self.decode(response, AggregatedBalanceResponse), fetch)

    def wallets_of(self, identity: OneBalanceIdentity) -> dict[str, WalletRecord]:
        """One wallet per listed address, keyed by namespace."""
        wallets: dict[str, WalletRecord] = {}
        for caip10 in identity.accounts:
            namespace, chain_id, address = split_caip10(caip10)
            local_id = f"{namespace}:{address_key(namespace, address)}"
            wallets[namespace] = WalletRecord(
                id=ids.wallet_id(self.source.value, identity.account_id, local_id),
                account_id=identity.account_id, source=self.source, kind=WalletKind.ONCHAIN_ADDRESS,
                local_id=local_id, address=normalize_address(address),
                # an EVM address spans chains; a solana (etc.) address lives on one
                chain=None if namespace == EVM else self.registry.chain_or_unknown(chain_id))
        return wallets

    def normalize(self, identity: OneBalanceIdentity, body: AggregatedBalanceResponse, fetch: SourceFetch) -> None:
        """Build all wallets and holdings first; append to `fetch` only when all of it parsed."""
        wallets = self.wallets_of(identity)
        entries = [e for agg in body.balanceByAggregatedAsset for e in agg.individualAssetBalances]
        seen = {(token_key(e.assetType), e.balance) for e in entries}
        for specific in body.balanceBySpecificAsset:
            # An assetId that is also a requested aggregate's member is the same balance
            # reported twice (one address per namespace per call): count it once.
            if (token_key(specific.assetType), specific.balance) not in seen:
                entries.append(specific)

        merged: dict[tuple[str, str], tuple[WalletRecord, Token, int, Decimal | None]] = {}
        for entry in entries:
            raw = int(entry.balance)
            wallet = wallets.get(entry.assetType.split(":", 1)[0])
            if wallet is None:
                if raw == 0:
                    continue    # a zero for a namespace we did not ask about: nothing to attribute
                raise UpstreamError(UpstreamCode.BAD_RESPONSE,
                                    "OneBalance reported a balance for a chain none of the listed addresses is on")
            token = self.registry.by_asset_type(entry.assetType)
            fiat = money.to_decimal(entry.fiatValue) if entry.fiatValue is not None else None
            key = (wallet.local_id, token.id)
            if key in merged:   # same token twice for one wallet: exact sums
                _, _, raw0, fiat0 = merged[key]
                raw += raw0
                fiat = None if fiat is None or fiat0 is None else fiat + fiat0
            merged[key] = (wallet, token, raw, fiat)

        holdings = [self._holding(identity, *row) for row in merged.values()]
        unknown = sum(1 for h in holdings if h.token.decimals is None)
        fetch.wallets.extend(wallets.values())
        fetch.holdings.extend(holdings)
        if unknown:
            fetch.warnings.append(SourceWarning(
                code="UNKNOWN_DECIMALS", message=f"{unknown} holdings are in base units: token decimals unknown"))

    def _holding(self, identity: OneBalanceIdentity, wallet: WalletRecord, token: Token, raw: int,
                 fiat: Decimal | None) -> HoldingRecord:
        known = token.decimals is not None
        # Without decimals the amount stays in base units rather than a guessed scale.
        amount = money.from_base_units(raw, token.decimals) if known else Decimal(raw)
        # OneBalance reports 0 where it has no price: a non-zero amount worth exactly 0 USD
        # is "unpriced" (value null, never 0); a zero balance is worth 0.
        unpriced = fiat is None or (fiat == 0 and raw != 0)
        value = None if unpriced else Money(fiat, "USD")
        price = None
        # A unit price needs a whole-token amount; a zero value for a non-zero amount is
        # 6-dp rounding (or no price at all), never a price of 0.
        if value is not None and known and amount != 0 and fiat != 0:
            price = Price(unit=money.unit_price(fiat, amount), currency="USD",
                          reliability=PriceReliability.REPORTED, source=self.source)
        return HoldingRecord(
            id=ids.holding_id(self.source.value, identity.account_id, wallet.local_id, token.id),
            account_id=identity.account_id, wallet=wallet, token=token, source=self.source,
            # amountRaw is only for known decimals (schema contract); here `amount` carries the raw
            amount=amount, amount_raw=raw if known else None, precision=AmountPrecision.EXACT,
            base_units=not known,
            price=price, value=value)
