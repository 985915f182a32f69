"""SettleMint DALP: `GET /api/v2/user-asset-balances`, one identity per participant key.

Pitfalls handled here (docs/UPSTREAMS.md):
- `value` is the TOKEN AMOUNT; the fiat figure is `valueInBaseCurrency` (nullable, in the
  organization's base currency = `config.base_currency`, which may not be USD);
- the payload has no chain id: tokens live on the configured `chain_id`;
- rows aggregate the participant's linked wallets; `byWallet` gives the split, and
  `filter[wallet]` still expands to the owner's whole wallet set;
- the documented `links` are `/v2/...`, not relative to `/api/v2/...`, and a page may hold
  fewer rows than `page[limit]`: we page by `page[offset]` + rows received up to `meta.total`;
- a yield denomination may fall back to symbol UNKNOWN / 18 decimals: never used as a token.

Errors: the doc names UNAUTHORIZED and FORBIDDEN and points to a platform error reference it
does not include; we assume a body like {"code": "UNAUTHORIZED", "status": 401, "message": ...}
and read only its `code`, never echoing the message.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

import msgspec
from msgspec.structs import replace
from pydantic import SecretStr

from gateway.domain import ids, money
from gateway.sources.dalp.config import DalpSourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.evm import checksum, is_evm_address
from gateway.domain.records import (AmountPrecision, Chain, HoldingRecord, Money, Price, PriceReliability,
                             SourceFetch, SourceState, SourceWarning, Token, WalletKind, WalletRecord)
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import ConfiguredAccount, SourceClient, UpstreamResponse

PATH = "/api/v2/user-asset-balances"
PAGE_LIMIT = 200        # the documented maximum
MAX_PAGES = 200         # runaway guard: a server trickling rows forever
PARTICIPANT_WALLET = "participant"   # local id of the aggregate when a row has no byWallet split
UNKNOWN_SYMBOL = "UNKNOWN"           # the yield denomination's placeholder


def _amount(value: str) -> Decimal:
    """A documented decimal string; DALP returns only positive balances: a negative one means
    the shape changed."""
    amount = money.to_decimal(value)
    if amount < 0:
        raise ValueError("amount must not be negative")
    return amount


def _evm(value: str) -> str:
    if not is_evm_address(value):
        raise ValueError("not an EVM address")
    return value


# The page is decoded from its bytes straight into these structs (SourceClient.decode, msgspec):
# validated while read, unknown fields ignored. Amount fields are declared `str` (a JSON
# number there means the shape changed, and is refused) and become exact Decimals in
# __post_init__; a ValueError raised there fails the read as BAD_RESPONSE.
class WalletBalance(msgspec.Struct, kw_only=True):
    wallet: str
    value: str
    frozen: str
    available: str

    def __post_init__(self) -> None:
        _evm(self.wallet)
        self.value, self.frozen, self.available = _amount(self.value), _amount(self.frozen), _amount(self.available)


class Denomination(msgspec.Struct, kw_only=True):
    # Informational only (never a holding's token), so a sparse block must not fail the read.
    id: str | None = None
    symbol: str | None = None
    decimals: int | None = None

    @property
    def is_fallback(self) -> bool:
        """The platform could not resolve it: schedule address, UNKNOWN, 18 (not a real token)."""
        return self.symbol == UNKNOWN_SYMBOL


class YieldSchedule(msgspec.Struct, kw_only=True):
    id: str | None = None
    denomination_asset: Denomination | None = msgspec.field(default=None, name="denominationAsset")


class YieldInfo(msgspec.Struct, kw_only=True):
    schedule: YieldSchedule | None = None


class TokenInfo(msgspec.Struct, kw_only=True):
    id: str
    symbol: str
    name: str | None = None
    type: str | None = None
    decimals: Annotated[int, msgspec.Meta(ge=0, le=77)]
    yield_: YieldInfo | None = msgspec.field(default=None, name="yield")

    def yield_denomination(self) -> Denomination | None:
        """The asset the yield pays in, or None when unknown (including the UNKNOWN fallback)."""
        schedule = self.yield_.schedule if self.yield_ else None
        denomination = schedule.denomination_asset if schedule else None
        return None if denomination is None or denomination.is_fallback else denomination


class BalanceRow(msgspec.Struct, kw_only=True):
    id: str
    value: str
    frozen: str
    available: str
    value_in_base_currency: str | None = msgspec.field(name="valueInBaseCurrency")   # required, nullable
    price_reliable: bool = msgspec.field(name="priceInBaseCurrencyReliable")
    token: TokenInfo
    # absent, null or [] all mean "no split given"
    by_wallet: list[WalletBalance] | None = msgspec.field(default=None, name="byWallet")

    def __post_init__(self) -> None:
        self.value, self.frozen, self.available = _amount(self.value), _amount(self.frozen), _amount(self.available)
        if self.value_in_base_currency is not None:
            self.value_in_base_currency = _amount(self.value_in_base_currency)
        if self.by_wallet is None:
            self.by_wallet = []


class Meta(msgspec.Struct, kw_only=True):
    total: Annotated[int, msgspec.Meta(ge=0)]


class BalancesPage(msgspec.Struct, kw_only=True):
    data: list[BalanceRow]
    meta: Meta
    links: dict[str, str | None] | None = None   # read but never followed (see module doc)


class ErrorBody(msgspec.Struct, kw_only=True):
    """Assumed platform error shape; only `code` is used, `message` is never echoed."""
    code: str
    status: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class DalpIdentity:
    account_id: str
    api_key: SecretStr
    wallet: str | None = None    # filter[wallet] override, used with the source-level key


@dataclass(slots=True)
class _Part:
    """One wallet's share of a row."""
    local_id: str
    address: str | None
    amount: Decimal
    locked: Decimal
    available: Decimal


def split_value(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` split in proportion to `weights`, rounded to the total's own places (at least
    cents); the last share takes the rounding remainder, so the shares sum exactly to `total`."""
    if not weights:
        return []
    quantum = Decimal(1).scaleb(min(total.as_tuple().exponent, -2))  # type: ignore[operator]
    whole = money.dsum(weights)
    shares = [money.ZERO if whole.is_zero() else
              money.div(money.mul(total, w), whole).quantize(quantum, ROUND_HALF_EVEN, money.CONTEXT)
              for w in weights[:-1]]
    shares.append(money.CONTEXT.subtract(total, money.dsum(shares)))
    return shares


class DalpClient(SourceClient[DalpSourceConfig, DalpIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[DalpIdentity]:
        dalp = account.source(self.source)
        if dalp is None:
            return []
        if dalp.api_key is not None:
            return [DalpIdentity(account.id, dalp.api_key)]
        if self.config.api_key is None:   # GatewayConfig refuses this; stay safe anyway
            return []
        return [DalpIdentity(account.id, self.config.api_key, dalp.wallet)]

    async def fetch_identity(self, identity: DalpIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        rows = await self._read_all(identity, fetch, options)
        self._normalize(identity, rows, fetch)

    # -- reading ------------------------------------------------------------
    async def _read_all(self, identity: DalpIdentity, fetch: SourceFetch, options: FetchOptions) -> list[BalanceRow]:
        headers = {"X-Api-Key": identity.api_key.get_secret_value()}
        rows: list[BalanceRow] = []
        offset = 0
        for _ in range(MAX_PAGES):
            params: list[tuple[str, Any]] = [("page[limit]", PAGE_LIMIT), ("page[offset]", offset),
                                             ("sort", "-balance")]
            if identity.wallet:
                params.append(("filter[wallet]", identity.wallet))
            page = self._parse(await self.get(fetch, PATH, options, params=params, headers=headers))
            rows.extend(page.data)
            offset += len(page.data)          # the server may send fewer rows than page[limit]
            if offset >= page.meta.total:
                return rows
            if not page.data:
                self._incomplete(fetch, f"DALP sent an empty page after {offset} of {page.meta.total} rows")
                return rows
        self._incomplete(fetch, f"DALP paging did not finish within {MAX_PAGES} pages")
        return rows

    @staticmethod
    def _incomplete(fetch: SourceFetch, message: str) -> None:
        fetch.state = SourceState.PARTIAL
        fetch.warnings.append(SourceWarning("INCOMPLETE_PAGING", message))

    def _parse(self, response: UpstreamResponse) -> BalancesPage:
        if response.status in (401, 403):
            try:
                code = msgspec.convert(response.body, ErrorBody).code
            except msgspec.ValidationError:
                code = None
            message = ("DALP does not let the gateway's key read the configured wallet (FORBIDDEN)"
                       if code == "FORBIDDEN" or response.status == 403 else
                       "DALP rejected the gateway's API key or the participant has no wallet (UNAUTHORIZED)")
            raise UpstreamError(UpstreamCode.AUTH_FAILED, message, status=response.status)
        self.raise_for_status(response)
        return self.decode(response, BalancesPage)

    # -- normalizing --------------------------------------------------------
    def _normalize(self, identity: DalpIdentity, rows: list[BalanceRow], fetch: SourceFetch) -> None:
        chain = self.registry.chain_or_unknown(self.config.chain_id)
        wallets: dict[str, WalletRecord] = {}
        holdings: dict[tuple[str, str], HoldingRecord] = {}
        seen_tokens: set[str] = set()
        mismatched = duplicates = 0
        for row in rows:
            token_key = row.token.id.lower()
            if token_key in seen_tokens:
                # One row per token: a repeat means rows shifted between offset pages.
                duplicates += 1
                continue
            seen_tokens.add(token_key)
            parts = self._parts(row)
            if row.by_wallet and not self._split_matches(row):
                mismatched += 1
            token = self._token(row.token, chain)
            price = self._price(row)
            shares = (split_value(row.value_in_base_currency, [p.amount for p in parts])
                      if row.value_in_base_currency is not None else [None] * len(parts))
            for part, share in zip(parts, shares):
                wallet = wallets.get(part.local_id) or self._wallet(identity, part, chain)
                wallets[part.local_id] = wallet
                value = Money(share, self.config.base_currency) if share is not None else None
                self._add(holdings, identity, wallet, token, part, price, value)
        fetch.wallets.extend(wallets.values())
        fetch.holdings.extend(holdings.values())
        if mismatched:
            fetch.warnings.append(SourceWarning(
                "WALLET_SPLIT_MISMATCH",
                f"DALP per-wallet balances did not add up to the row total for {mismatched} token(s); "
                "the per-wallet figures were used"))
        if duplicates:
            fetch.state = SourceState.PARTIAL
            fetch.warnings.append(SourceWarning(
                "DUPLICATE_ROWS", f"DALP repeated {duplicates} token row(s) across pages; rows may have "
                "shifted while paging, so a row may also have been missed"))

    @staticmethod
    def _parts(row: BalanceRow) -> list[_Part]:
        if not row.by_wallet:   # no split given: one aggregate wallet for the participant
            return [_Part(PARTICIPANT_WALLET, None, row.value, row.frozen, row.available)]
        return [_Part(w.wallet.lower(), checksum(w.wallet), w.value, w.frozen, w.available) for w in row.by_wallet]

    @staticmethod
    def _split_matches(row: BalanceRow) -> bool:
        return all(money.dsum(getattr(w, name) for w in row.by_wallet) == getattr(row, name)
                   for name in ("value", "frozen", "available"))

    def _token(self, info: TokenInfo, chain: Chain) -> Token:
        if not is_evm_address(info.id):
            return self.registry.unknown(self.source, info.id, info.symbol, chain)
        asset_type = f"{chain.id}/erc20:{checksum(info.id)}"
        # The registry's data wins when it knows the token; else the payload's own decimals.
        return self.registry.by_asset_type(asset_type, symbol=info.symbol, name=info.name, decimals=info.decimals)

    def _price(self, row: BalanceRow) -> Price | None:
        if row.value_in_base_currency is None or row.value.is_zero():
            return None   # no price path: never a price of 0
        reliability = PriceReliability.REPORTED if row.price_reliable else PriceReliability.UNRELIABLE
        return Price(unit=money.unit_price(row.value_in_base_currency, row.value), currency=self.config.base_currency,
                     reliability=reliability, source=self.source)

    def _wallet(self, identity: DalpIdentity, part: _Part, chain: Chain) -> WalletRecord:
        aggregate = part.address is None
        return WalletRecord(
            id=ids.wallet_id(self.source.value, identity.account_id, part.local_id),
            account_id=identity.account_id, source=self.source,
            kind=WalletKind.SMART_ACCOUNT if aggregate else WalletKind.ONCHAIN_ADDRESS,
            local_id=part.local_id, provider="dalp", chain=chain, address=part.address,
            label="DALP participant (aggregate)" if aggregate else None)

    def _add(self, holdings: dict[tuple[str, str], HoldingRecord], identity: DalpIdentity, wallet: WalletRecord,
             token: Token, part: _Part, price: Price | None, value: Money | None) -> None:
        key = (wallet.local_id, token.id)
        existing = holdings.get(key)
        if existing is not None:   # the same wallet listed twice in one row: merge exactly
            amount = money.dsum([existing.amount, part.amount])
            merged_value = existing.value
            if existing.value is not None and value is not None:
                merged_value = Money(money.dsum([existing.value.amount, value.amount]), value.currency)
            holdings[key] = replace(existing, amount=amount, amount_raw=self._raw(amount, token), value=merged_value,
                                    locked=money.dsum([existing.locked or money.ZERO, part.locked]),
                                    available=money.dsum([existing.available or money.ZERO, part.available]))
            return
        holdings[key] = HoldingRecord(
            id=ids.holding_id(self.source.value, identity.account_id, wallet.local_id, token.id),
            account_id=identity.account_id, wallet=wallet, token=token, source=self.source,
            amount=part.amount, precision=AmountPrecision.EXACT, amount_raw=self._raw(part.amount, token),
            available=part.available, locked=part.locked, price=price, value=value)

    @staticmethod
    def _raw(amount: Decimal, token: Token) -> int | None:
        return money.to_base_units(amount, token.decimals) if token.decimals is not None else None
