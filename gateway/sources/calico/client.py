"""Calico `GET /assets`: one bearer token per user, every source it connected, one page.

Traps handled here (docs/UPSTREAMS.md):
- amounts are JSON floats: parsed from their printed digits, marked FLOAT_APPROXIMATE;
- `price_in_usd` is the POSITION's USD value, so the unit price is value / amount;
- `crypto_source_id` is either an exchange (`coinbase`) or a chain (`ethereum`);
- the address is redacted to 4 chars, so a wallet is (source id, redacted suffix);
- there is no cursor: a response of exactly `limit` (100) rows may be truncated;
- `errors[]` may be non-empty next to data: the data is kept, the state is PARTIAL.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from msgspec.structs import replace
from pydantic import SecretStr

from gateway.domain import ids, money
from gateway.sources.calico.config import CalicoSourceConfig
from gateway.domain.records import (AmountPrecision, HoldingRecord, Money, Price, PriceReliability,
                             SourceFetch, SourceId, SourceState, SourceWarning, Token, WalletKind, WalletRecord)
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import ConfiguredAccount, SourceClient, as_utc

PAGE_LIMIT = 100  # Calico's documented maximum; there is no cursor beyond it


def _finite(value: Decimal | None) -> Decimal | None:
    if value is not None and not value.is_finite():
        raise ValueError("not a finite number")
    return value


# The body is decoded from its bytes straight into these structs (SourceClient.decode, msgspec):
# JSON numbers become Decimals from their printed digits (never a float); a bool or another
# type where a number belongs is refused; unknown fields are ignored.
class CalicoAsset(msgspec.Struct, kw_only=True):
    """One row of `data[]`."""
    asset_symbol: str
    asset_holdings: Decimal
    price_in_usd: Decimal | None = None      # position value in USD; null/absent = unpriced
    staked_holdings: Decimal | None = None
    time_fetched: datetime | None = None
    crypto_source_id: str
    wallet_address_redacted: str | None = None  # exchanges may have no address

    def __post_init__(self) -> None:
        _finite(self.asset_holdings), _finite(self.price_in_usd), _finite(self.staked_holdings)


class CalicoAssetsResponse(msgspec.Struct, kw_only=True):
    data: list[CalicoAsset]
    errors: list[Any] | None = None         # shape undocumented: only counted, never quoted


@dataclass(frozen=True, slots=True)
class CalicoIdentity:
    """One Calico user. The filters are pushed down as query parameters when set."""
    account_id: str
    token: SecretStr
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    asset_symbols: tuple[str, ...] | None = None
    crypto_sources: tuple[str, ...] | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if self.start_time_ms is not None:
            params["start_time"] = self.start_time_ms
        if self.end_time_ms is not None:
            params["end_time"] = self.end_time_ms
        if self.asset_symbols is not None:
            params["asset_symbols"] = ",".join(self.asset_symbols)
        if self.crypto_sources is not None:
            params["crypto_sources"] = ",".join(self.crypto_sources)
        return params

    def matches_nothing(self) -> bool:
        # An empty list would be sent blank, which Calico reads as "all": never send it.
        return self.asset_symbols == () or self.crypto_sources == ()


class CalicoClient(SourceClient[CalicoSourceConfig, CalicoIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[CalicoIdentity]:
        block = account.source(self.source)
        if block is None:
            return []
        return [CalicoIdentity(account_id=account.id, token=block.token)]

    async def fetch_identity(self, identity: CalicoIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        if identity.matches_nothing():
            return
        headers = {"Authorization": f"Bearer {identity.token.get_secret_value()}"}
        response = await self.get(fetch, "/assets", options, params=identity.params(), headers=headers)
        self.raise_for_status(response)
        body = self.decode(response, CalicoAssetsResponse)
        self._normalize(identity.account_id, body.data, fetch)
        if len(body.data) >= PAGE_LIMIT:
            fetch.state = SourceState.PARTIAL
            fetch.warnings.append(SourceWarning(
                code="POSSIBLY_TRUNCATED",
                message=f"Calico returned {len(body.data)} rows, its maximum per request, and has no "
                        "cursor: further assets may exist"))
        if body.errors:
            fetch.state = SourceState.PARTIAL
            fetch.warnings.append(SourceWarning(
                code="UPSTREAM_REPORTED_ERRORS",
                message=f"Calico reported {len(body.errors)} error(s) next to its data: "
                        "some connected sources may be missing"))

    # -- normalization -----------------------------------------------------
    def _normalize(self, account_id: str, rows: list[CalicoAsset], fetch: SourceFetch) -> None:
        wallets: dict[str, WalletRecord] = {}
        holdings: dict[tuple[str, str], HoldingRecord] = {}
        for row in rows:
            wallet = self._wallet(account_id, row, wallets)
            token = self._token(row, wallet)
            key = (wallet.local_id, token.id)
            holding = self._holding(account_id, wallet, token, row)
            if key in holdings:
                holdings[key] = _merge(holdings[key], holding)
            else:
                holdings[key] = holding
        fetch.wallets.extend(wallets.values())
        fetch.holdings.extend(holdings.values())

    def _wallet(self, account_id: str, row: CalicoAsset, wallets: dict[str, WalletRecord]) -> WalletRecord:
        redacted = row.wallet_address_redacted or None
        local_id = f"{row.crypto_source_id}:{redacted or ''}"
        if local_id in wallets:
            return wallets[local_id]
        exchange = self.registry.is_exchange(self.source, row.crypto_source_id)
        wallet = WalletRecord(
            id=ids.wallet_id(self.source.value, account_id, local_id),
            account_id=account_id,
            source=self.source,
            kind=WalletKind.EXCHANGE_ACCOUNT if exchange else WalletKind.ONCHAIN_ADDRESS,
            local_id=local_id,
            provider=row.crypto_source_id,
            chain=None if exchange else self.registry.chain_alias(self.source, row.crypto_source_id),
            address=None,              # Calico only ever shows 4 chars
            address_hint=redacted,
        )
        wallets[local_id] = wallet
        return wallet

    def _token(self, row: CalicoAsset, wallet: WalletRecord) -> Token:
        upstream_id = f"{row.crypto_source_id}:{row.asset_symbol}"
        if wallet.kind is WalletKind.EXCHANGE_ACCOUNT:
            known = self.registry.ticker(row.asset_symbol)
        else:
            known = self.registry.token_alias(self.source, upstream_id)
        return known or self.registry.unknown(self.source, upstream_id, row.asset_symbol, wallet.chain)

    def _holding(self, account_id: str, wallet: WalletRecord, token: Token, row: CalicoAsset) -> HoldingRecord:
        value = Money(row.price_in_usd, "USD") if row.price_in_usd is not None else None
        return HoldingRecord(
            id=ids.holding_id(self.source.value, account_id, wallet.local_id, token.id),
            account_id=account_id,
            wallet=wallet,
            token=token,
            source=self.source,
            amount=row.asset_holdings,
            precision=AmountPrecision.FLOAT_APPROXIMATE,
            amount_raw=None,           # float amounts are never exact base units
            staked=row.staked_holdings,
            price=_unit_price(row.asset_holdings, value, self.source),
            value=value,
            updated_at=as_utc(row.time_fetched) if row.time_fetched else None,
        )


def _unit_price(amount: Decimal, value: Money | None, source: SourceId) -> Price | None:
    """`price_in_usd` is the position's value: one token is worth value / amount."""
    if value is None or amount.is_zero():
        return None
    return Price(unit=money.unit_price(value.amount, amount), currency=value.currency,
                 reliability=PriceReliability.REPORTED, source=source)


def _merge(a: HoldingRecord, b: HoldingRecord) -> HoldingRecord:
    """The same token twice in one wallet: exact sums, unit price re-derived from the sums."""
    amount = money.dsum((a.amount, b.amount))
    value = (Money(money.dsum((a.value.amount, b.value.amount)), "USD")
             if a.value is not None and b.value is not None else None)  # one unpriced part: unpriced
    staked = None if a.staked is None and b.staked is None else money.dsum(
        x for x in (a.staked, b.staked) if x is not None)
    updated_at = b.updated_at if b.updated_at and (a.updated_at is None or b.updated_at > a.updated_at) \
        else a.updated_at
    return replace(a, amount=amount, staked=staked, value=value, price=_unit_price(amount, value, a.source),
                   updated_at=updated_at)

