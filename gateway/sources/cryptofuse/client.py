"""Cryptofuse: per-user OAuth bearer token; `GET /user/balances/` and its history.

One call returns two wallets: the main `account` and the `sub_accounts` aggregate (the
API never splits sub-accounts). `statistics` is account metadata, not a wallet. Tickers
carry the network (USDTERC20 = USDT on Ethereum) and every amount is a string rounded to
6 decimals whatever the currency, so holdings are ROUNDED and never get base units.
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from msgspec.structs import replace
import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, StrictInt, StrictStr, model_validator

from gateway.domain import ids, money
from gateway.sources.cryptofuse.config import CryptofuseSourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.records import (AmountPrecision, HoldingRecord, SourceFetch, SourceState,
                             Token, WalletKind, WalletRecord)
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import ConfiguredAccount, SourceClient, UpstreamResponse

BALANCES_PATH = "/user/balances/"
HISTORY_PATH = "/user/balances/history/"
PROVIDER = "cryptofuse"
# (local_id = response key, kind, label), in response order
WALLETS = (("account", WalletKind.EXCHANGE_ACCOUNT, "Main account"),
           ("sub_accounts", WalletKind.SUB_ACCOUNTS, "Sub-accounts (aggregate)"))

# A documented amount string ("5000.000000"); any number of decimals is tolerated.
AmountStr = Annotated[StrictStr, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$")]


# -- upstream shapes ----------------------------------------------------------
class _Upstream(BaseModel):
    model_config = ConfigDict(extra="allow")


class BalancesResponse(_Upstream):
    account: dict[str, AmountStr] | None = None
    sub_accounts: dict[str, AmountStr] | None = None
    statistics: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _documented_keys(self) -> "BalancesResponse":
        # A body with none of the documented keys is not a balances answer (it would
        # otherwise read as "holds nothing").
        if self.account is None and self.sub_accounts is None and self.statistics is None:
            raise ValueError("no account, sub_accounts or statistics in the response")
        return self


class HistoryEntry(_Upstream):
    timestamp: AwareDatetime
    currency: StrictStr
    type: StrictStr
    amount: AmountStr
    balance_after: AmountStr | None = None


class HistoryResponse(_Upstream):
    history: list[HistoryEntry]
    total: StrictInt = Field(ge=0)
    limit: StrictInt = Field(ge=0)
    offset: StrictInt = Field(ge=0)


class ErrorDetail(_Upstream):
    code: StrictStr
    message: StrictStr | None = None
    details: Any = None


class ErrorResponse(_Upstream):
    error: ErrorDetail


# -- our records --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CryptofuseIdentity:
    account_id: str
    token: SecretStr


@dataclass(slots=True)
class BalanceChangeRecord:
    timestamp: datetime          # aware, UTC
    type: str                    # deposit, withdrawal, trade, fee, ... as the upstream says
    token: Token
    currency: str                # the upstream ticker
    amount: Decimal              # as reported (6 dp, a magnitude in the documented example)
    balance_after: Decimal | None


@dataclass(slots=True)
class HistoryPage:
    entries: list[BalanceChangeRecord]
    total: int
    limit: int
    offset: int


class CryptofuseClient(SourceClient[CryptofuseSourceConfig, CryptofuseIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[CryptofuseIdentity]:
        block = account.source(self.source)
        return [] if block is None else [CryptofuseIdentity(account_id=account.id, token=block.token)]

    async def fetch_identity(self, identity: CryptofuseIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        response = await self.get(fetch, BALANCES_PATH, options, headers=self._auth(identity))
        self.raise_for_status(response)
        body = BalancesResponse.model_validate(response.body)
        for local_id, kind, label in WALLETS:
            balances = getattr(body, local_id)
            if balances is None:
                continue
            wallet = WalletRecord(id=ids.wallet_id(self.source.value, identity.account_id, local_id),
                                  account_id=identity.account_id, source=self.source, kind=kind,
                                  local_id=local_id, provider=PROVIDER, label=label)
            fetch.wallets.append(wallet)
            fetch.holdings.extend(self._holdings(wallet, balances))

    def _holdings(self, wallet: WalletRecord, balances: dict[str, str]) -> list[HoldingRecord]:
        merged: dict[str, HoldingRecord] = {}
        for ticker, text in balances.items():
            token = self.token_for(ticker)
            amount = money.to_decimal(text)
            held = merged.get(token.id)
            if held is not None:   # two tickers naming one token: one holding, exact sum
                merged[token.id] = replace(held, amount=money.dsum((held.amount, amount)))
                continue
            merged[token.id] = HoldingRecord(
                id=ids.holding_id(self.source.value, wallet.account_id, wallet.local_id, token.id),
                account_id=wallet.account_id, wallet=wallet, token=token, source=self.source,
                amount=amount, precision=AmountPrecision.ROUNDED)   # 6 dp: never base units
        return list(merged.values())

    def token_for(self, ticker: str) -> Token:
        return (self.registry.token_alias(self.source, ticker)
                or self.registry.unknown(self.source, ticker, ticker))

    @staticmethod
    def _auth(identity: CryptofuseIdentity) -> dict[str, str]:
        return {"Authorization": f"Bearer {identity.token.get_secret_value()}"}

    def raise_for_status(self, response: UpstreamResponse) -> None:
        """By status; an error body that says `authentication_failed` is an auth failure
        whatever its status (an OAuth server may answer 400 for a bad token)."""
        if 200 <= response.status < 300:
            return
        try:
            code = ErrorResponse.model_validate(response.body).error.code
        except pydantic.ValidationError:
            code = None
        if code == "authentication_failed":
            raise UpstreamError(UpstreamCode.AUTH_FAILED,
                                f"Cryptofuse rejected the gateway's credentials (HTTP {response.status})",
                                status=response.status)
        super().raise_for_status(response)

    # -- history ----------------------------------------------------------------
    async def history_page(self, identity: CryptofuseIdentity, *, currency: str | None, type: str | None,
                           limit: int, offset: int, options: FetchOptions = FetchOptions()) -> HistoryPage:
        """One page of balance history. Raises UpstreamError on any failure."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be non-negative")
        params = {k: v for k, v in (("currency", currency), ("type", type), ("limit", limit),
                                    ("offset", offset)) if v is not None}
        # history is not a SourceFetch: a throwaway one carries base.get's call counter
        scratch = SourceFetch(source=self.source, account_id=identity.account_id, state=SourceState.OK)
        try:
            response = await self.get(scratch, HISTORY_PATH, options, params=params, headers=self._auth(identity))
        finally:
            await self.upstream.finish(scratch, ok=False)   # history pages are not cached
        self.raise_for_status(response)
        try:
            body = HistoryResponse.model_validate(response.body)
            entries = [BalanceChangeRecord(
                timestamp=e.timestamp.astimezone(timezone.utc), type=e.type, token=self.token_for(e.currency),
                currency=e.currency, amount=money.to_decimal(e.amount),
                balance_after=None if e.balance_after is None else money.to_decimal(e.balance_after))
                for e in body.history]
        except (pydantic.ValidationError, ValueError, TypeError, decimal.InvalidOperation):
            # the exception text may quote upstream data: keep only our own words
            raise UpstreamError(UpstreamCode.BAD_RESPONSE,
                                "Cryptofuse sent a history response the gateway could not read") from None
        return HistoryPage(entries=entries, total=body.total, limit=body.limit, offset=body.offset)
