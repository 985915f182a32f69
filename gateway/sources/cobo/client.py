"""Cobo custodial wallets: `GET /api/v1/wallets/balances`, one identity per wallet uuid.

Pitfalls handled here (docs/UPSTREAMS.md):
- amounts (`amount`, `total`, `pending`, `locked`) are strings: parsed straight to Decimal;
- one token can sit at several addresses of one wallet: rows are merged per token, exactly;
- paging is by cursor; we stop on `has_more: false` even though the last page still
  carries an `after` cursor, and never use the deprecated `offset`;
- errors arrive as `success: false` with `message`/`suggestion`, which we never echo.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
from pydantic import SecretStr

from gateway.domain import ids, money
from gateway.sources.cobo.config import CoboSourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.records import (AmountPrecision, HoldingRecord, SourceFetch, SourceWarning, Token,
                             WalletKind, WalletRecord)
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import ConfiguredAccount, SourceClient, UpstreamModel, as_utc

PATH = "/api/v1/wallets/balances"
PAGE_LIMIT = 200      # the documented maximum
MAX_PAGES = 500       # 100k rows for one wallet: beyond that we assume a runaway cursor
MAX_REFRESH_ADDRESSES = 20   # a client refresh costs one call per address: bound it


def _amount(value: str | None) -> Decimal | None:
    return None if value is None else money.to_decimal(value)


# A page is decoded from its bytes straight into these structs (SourceClient.decode, msgspec):
# validated while read, unknown fields ignored. Amounts are declared `str` (a JSON number
# there means the shape changed, and is refused) and become exact Decimals in __post_init__.
class BalanceRead(msgspec.Struct, kw_only=True):
    token_id: str
    amount: str
    wallet_uuid: str | None = None
    cobo_wallet_id: str | None = None
    address: str | None = None
    chain_id: str | None = None
    total: str | None = None
    pending: str | None = None
    locked: str | None = None
    updated_at: datetime | None = None
    balance_updated_at: datetime | None = None

    def __post_init__(self) -> None:
        self.amount = money.to_decimal(self.amount)
        self.total, self.pending, self.locked = _amount(self.total), _amount(self.pending), _amount(self.locked)


class PaginationMeta(msgspec.Struct, kw_only=True):
    total: int | None = None
    has_more: bool = False
    after: str | None = None
    before: str | None = None


class BalancesResponse(msgspec.Struct, kw_only=True):
    result: list[BalanceRead]
    success: bool = True
    meta: PaginationMeta | None = None


class ErrorResponse(UpstreamModel):
    """The `success: false` shape; message/suggestion are read but never echoed anywhere."""
    success: Literal[False]
    message: str | None = None
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class CoboIdentity:
    account_id: str
    api_key: SecretStr
    wallet_uuid: str
    force_refresh_address: str | None = None   # force_refresh works only together with address


class CoboClient(SourceClient[CoboSourceConfig, CoboIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[CoboIdentity]:
        block = account.source(self.source)
        if block is None:
            return []
        uuids = dict.fromkeys(block.wallet_uuids)   # de-duplicate, keep order
        return [CoboIdentity(account.id, self.config.api_key, uuid) for uuid in uuids]

    async def fetch_identity(self, identity: CoboIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        rows = await self._read_all(identity, fetch, options)
        # A refresh the cache rate-limited (served from cache) must not force a sync either.
        if options.refresh and not identity.force_refresh_address and not fetch.from_cache:
            rows = await self._force_refreshed(identity, fetch, options, rows)
        wallet = WalletRecord(
            id=ids.wallet_id(self.source.value, identity.account_id, identity.wallet_uuid),
            account_id=identity.account_id, source=self.source, kind=WalletKind.CUSTODIAL,
            local_id=identity.wallet_uuid, provider="cobo",
            label=next((r.cobo_wallet_id for r in rows if r.cobo_wallet_id), None))
        fetch.wallets.append(wallet)
        fetch.holdings.extend(self._holdings(identity, wallet, rows))

    async def _force_refreshed(self, identity: CoboIdentity, fetch: SourceFetch, options: FetchOptions,
                               rows: list[BalanceRead]) -> list[BalanceRead]:
        """A client refresh: Cobo syncs from chain only for an `address` (force_refresh works
        only with address), so re-read each of the wallet's addresses with force_refresh and
        put those rows in place of that address's rows."""
        addresses = sorted({r.address for r in rows if r.address})[:MAX_REFRESH_ADDRESSES]
        for address in addresses:
            fresh = await self._read_all(replace(identity, force_refresh_address=address), fetch, options)
            rows = [r for r in rows if r.address != address] + [r for r in fresh if r.address == address]
        return rows

    async def _read_all(self, identity: CoboIdentity, fetch: SourceFetch, options: FetchOptions) -> list[BalanceRead]:
        headers = {"X-API-Key": identity.api_key.get_secret_value()}
        base: dict[str, Any] = {"wallet_uuid": identity.wallet_uuid, "limit": PAGE_LIMIT}
        if identity.force_refresh_address:
            base |= {"address": identity.force_refresh_address, "force_refresh": "true"}
        rows: list[BalanceRead] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = base | ({"after": cursor} if cursor else {})
            page = self._parse(await self.get(fetch, PATH, options, params=params, headers=headers))
            for row in page.result:
                if row.wallet_uuid and row.wallet_uuid.lower() != identity.wallet_uuid.lower():
                    # The filter was ignored: summing another wallet's rows would misstate this one.
                    raise UpstreamError(UpstreamCode.BAD_RESPONSE, "Cobo returned rows of another wallet")
            rows.extend(page.result)
            meta = page.meta
            if meta is None:
                if len(page.result) >= PAGE_LIMIT:
                    fetch.warnings.append(SourceWarning(
                        "POSSIBLY_TRUNCATED", "Cobo sent a full page without pagination metadata"))
                return rows
            if not meta.has_more:   # the last page may still carry an `after` cursor: ignore it
                return rows
            if not meta.after or meta.after in seen:
                raise UpstreamError(UpstreamCode.BAD_RESPONSE, "Cobo sent an unusable pagination cursor")
            seen.add(meta.after)
            cursor = meta.after
        raise UpstreamError(UpstreamCode.BAD_RESPONSE, f"Cobo paging did not end within {MAX_PAGES} pages")

    def _parse(self, response: Any) -> BalancesResponse:
        self.raise_for_status(response)
        try:
            page = self.decode(response, BalancesResponse)
        except ValueError:   # not a page: a failure report without rows, perhaps
            self._failure_reported(response)
            raise
        if not page.success:
            self._failure_reported(response)
        return page

    @staticmethod
    def _failure_reported(response: Any) -> None:
        """A 2xx that still says it failed (`success: false`) is BAD_RESPONSE; its message is never echoed."""
        body = response.body
        if isinstance(body, dict) and body.get("success") is False:
            ErrorResponse.model_validate(body)
            raise UpstreamError(UpstreamCode.BAD_RESPONSE, "Cobo reported a failure (success: false)",
                                status=response.status)

    def _token(self, row: BalanceRead) -> Token:
        known = self.registry.token_alias(self.source, row.token_id)
        if known:
            return known
        chain = self.registry.chain_alias(self.source, row.chain_id) if row.chain_id else None
        return self.registry.unknown(self.source, row.token_id, row.token_id, chain=chain)

    def _holdings(self, identity: CoboIdentity, wallet: WalletRecord, rows: list[BalanceRead]) -> list[HoldingRecord]:
        groups: dict[str, tuple[Token, list[BalanceRead]]] = {}
        for row in rows:
            token = self._token(row)
            groups.setdefault(token.id, (token, []))[1].append(row)
        holdings = []
        for token, group in groups.values():
            amount = money.dsum(r.total if r.total is not None else r.amount for r in group)
            times = [as_utc(t) for r in group if (t := r.balance_updated_at or r.updated_at)]
            holdings.append(HoldingRecord(
                id=ids.holding_id(self.source.value, identity.account_id, wallet.local_id, token.id),
                account_id=identity.account_id, wallet=wallet, token=token, source=self.source,
                amount=amount, precision=AmountPrecision.EXACT,
                amount_raw=money.to_base_units(amount, token.decimals) if token.decimals is not None else None,
                available=money.dsum(r.amount for r in group),
                pending=_sum_present([r.pending for r in group]),
                locked=_sum_present([r.locked for r in group]),
                # a merged holding is only as fresh as its stalest address
                updated_at=min(times) if times else None))
        return holdings


def _sum_present(values: list[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return money.dsum(present) if present else None

