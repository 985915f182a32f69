"""A throwaway seventh upstream, "Zephyr", declared entirely here: its config models, its
client, its simulator and its spec. A gateway started with
`GATEWAY_SOURCE_SPECS=tests.sources.seventh_source` has it beside the built-in sources
(tests/sources/test_seventh_source.py); nothing outside tests/ names it.

Zephyr's API (made up): `GET /vaults/{vault}/balances` with `X-Zephyr-Key`, answering
`{"balances": [{"asset_type", "decimals", "raw", "usd_price"}]}`: base-unit integer
strings, so amounts are exact; `usd_price` (a decimal string or null) is a unit price.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain import ids, money
from gateway.domain.records import (AmountPrecision, HoldingRecord, Money, Price, PriceReliability, SourceFetch,
                                    WalletKind, WalletRecord)
from gateway.simulation.control import ControlledApp, SimControl
from gateway.sources.base import ConfiguredAccount, SourceClient, UpstreamModel
from gateway.sources.spec import AccountBlock, SourceSpec
from gateway.upstream.pipeline import FetchOptions
from gateway.upstream.source_config import SourceConfig

SIM_KEY = "zephyr-sim-key-7f3a"     # the simulator's one API key (source-level, like Cobo's)

# What every simulated vault holds: exact base units, one token the registry knows (USDC
# on Base) and one it does not (uint256's maximum, 18 decimals, no price).
USDC_BASE = "eip155:8453/erc20:0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
MYSTERY = "eip155:1/erc20:0x7777777777777777777777777777777777777777"
BALANCES = [
    {"asset_type": USDC_BASE, "decimals": 6, "raw": "123456789012", "usd_price": "0.9998"},
    {"asset_type": MYSTERY, "decimals": 18, "raw": str(2**256 - 1), "usd_price": None},
]


# -- config --------------------------------------------------------------------------
class ZephyrSourceConfig(SourceConfig):
    api_key: SecretStr


class ZephyrAccount(AccountBlock):
    vault: str

    def problem_with(self, source_config: ZephyrSourceConfig) -> str | None:
        return "uses zephyr.vault 'closed', which Zephyr does not serve" if self.vault == "closed" else None


# -- client --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ZephyrIdentity:
    account_id: str
    api_key: SecretStr
    vault: str


class ZephyrBalance(UpstreamModel):
    asset_type: str
    decimals: int
    raw: str
    usd_price: str | None = None


class ZephyrBalances(UpstreamModel):
    balances: list[ZephyrBalance]


class ZephyrClient(SourceClient[ZephyrSourceConfig, ZephyrIdentity]):
    def identities(self, account: ConfiguredAccount) -> list[ZephyrIdentity]:
        block = account.source(self.source)
        return [] if block is None else [ZephyrIdentity(account.id, self.config.api_key, block.vault)]

    async def fetch_identity(self, identity: ZephyrIdentity, fetch: SourceFetch, options: FetchOptions) -> None:
        response = await self.get(fetch, f"/vaults/{identity.vault}/balances", options,
                                  headers={"X-Zephyr-Key": identity.api_key.get_secret_value()})
        self.raise_for_status(response)
        body = ZephyrBalances.model_validate(response.body)
        wallet = WalletRecord(id=ids.wallet_id(self.source.value, identity.account_id, identity.vault),
                              account_id=identity.account_id, source=self.source, kind=WalletKind.CUSTODIAL,
                              local_id=identity.vault, label=f"Zephyr vault {identity.vault}")
        fetch.wallets.append(wallet)
        for row in body.balances:
            raw = int(row.raw)
            token = self.registry.by_asset_type(row.asset_type, decimals=row.decimals)
            amount = money.from_base_units(raw, row.decimals)
            price = value = None
            if row.usd_price is not None:
                unit = money.to_decimal(row.usd_price)
                price = Price(unit=unit, currency="USD", reliability=PriceReliability.REPORTED, source=self.source)
                value = Money(money.mul(amount, unit), "USD")
            fetch.holdings.append(HoldingRecord(
                id=ids.holding_id(self.source.value, identity.account_id, identity.vault, token.id),
                account_id=identity.account_id, wallet=wallet, token=token, source=self.source,
                amount=amount, amount_raw=raw, precision=AmountPrecision.EXACT, price=price, value=value))


# -- simulator (the module the spec names: Dataset, populate, create_app, source_block) --
@dataclass
class Dataset:
    vaults: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    vault = f"v-{account_id}"
    dataset.vaults[vault] = [dict(b) for b in BALANCES]
    return {"vault": vault}


def source_block(base_url: str) -> dict:
    return {"base_url": base_url, "api_key": SIM_KEY}


def error_shape(status: int, message: str) -> tuple[str, bytes]:
    return "application/json", json.dumps({"error": message}).encode()


def _error(status: int, message: str) -> Response:
    content_type, body = error_shape(status, message)
    return Response(body, status_code=status, media_type=content_type)


def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    async def balances(request: Request) -> Response:
        if request.headers.get("x-zephyr-key") != SIM_KEY:
            return _error(401, "bad key")
        rows = dataset.vaults.get(request.path_params["vault"])
        if rows is None:
            return _error(404, "no such vault")
        return Response(json.dumps({"balances": rows}), media_type="application/json")

    app = Starlette(routes=[Route("/vaults/{vault}/balances", balances, methods=["GET"])])
    return ControlledApp(app, control or SimControl(), error_shape)


SPEC = SourceSpec(name="ZEPHYR", display="Zephyr", order=7, price_rank=7, reports_prices=True, client=ZephyrClient,
                  source_config=ZephyrSourceConfig, account_config=ZephyrAccount,
                  simulator="tests.sources.seventh_source")
