"""OneBalance imitation: `GET /v3/balances/aggregated-balance` (relative to the app root).

What it imitates from the upstream doc:
- `x-api-key` header auth; `account` (comma list of CAIP-10) required; at least one of
  `aggregatedAssetId` / `assetId` (comma lists) required;
- the response MERGES every listed account: balances are summed per assetType, and an
  EVM address listed on two chains (`eip155:1:0xA`, `eip155:8453:0xA`) counts once;
- `accounts` echoes the parsed addresses by chain type (`evm` lowercase, `solana`);
- balances are base-unit integer strings; `fiatValue` is a JSON number token (6 dp, as a JS
  float prints it, built from Decimal text so no digit changes); assetTypes are lowercase
  for EVM; aggregated entries list only their non-zero members, specific entries are
  listed for every requested assetId, zero included.
Choices where the doc is silent (the client relies on none of them):
- errors are `{"statusCode": 400, "error": "Bad Request", "message": "..."}` (NestJS style);
- an unknown aggregated asset id is a 400, as is a malformed CAIP-10 or CAIP-19 id; only
  CAIP-10 accounts are accepted (the "custom chain-agnostic format" is not imitated);
- the aggregated `balance` is the members' sum scaled to the smallest member decimals
  (USDC on BSC has 18, elsewhere 6); when two EVM addresses are listed, `accounts.evm`
  shows the first;
- plain HTTP is accepted (the real API demands HTTPS).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain import money
from gateway.domain.evm import checksum, is_evm_address
from gateway.domain.tokens import TokenRegistry, token_key
from gateway.simulation.control import ControlledApp, SimControl

PATH = "/v3/balances/aggregated-balance"
SIM_API_KEY = "onebalance-sim-key-7f3a9c"
AGGREGATED_IDS = ["ob:eth", "ob:usdc", "ob:usdt", "ob:sol"]
SOLANA = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
POL = "eip155:137/slip44:966"                                          # in the registry, in no aggregate
DEGEN = "eip155:8453/erc20:0x4ed4E862860beD51a9570b96d89aF5E1B0Efefed"  # not in the registry
BONK = f"{SOLANA}/token:DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"    # not in the registry
SIM_ASSET_IDS = [POL, DEGEN, BONK]

# USD per whole token, and the whole-token magnitudes populate() draws (10**lo .. 10**(hi+1)).
PRICES = {"eth": "3521.37", "usdc": "0.99987", "usdt": "1.00012", "sol": "171.83", "pol": "0.2231"}
EXTRA_TOKENS = {DEGEN: (18, "0.004127"), BONK: (5, "0.00002214")}   # decimals, price
MAGNITUDES = {"eth": (-3, 1), "usdc": (0, 5), "usdt": (0, 5), "sol": (-1, 2), "pol": (1, 4),
              token_key(DEGEN): (2, 5), token_key(BONK): (5, 8)}

_CAIP10 = re.compile(r"^([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32}):([-.%a-zA-Z0-9]{1,128})$")
_CAIP19 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}/[-a-z0-9]{3,8}:[-.%a-zA-Z0-9]{1,128}$")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CHAIN_TYPES = {"eip155": "evm"}


def addr_key(namespace: str, address: str) -> tuple[str, str]:
    """Dataset key of an address: EVM lowercase (chain-agnostic), anything else exact."""
    return namespace, address.lower() if namespace == "eip155" else address


@dataclass
class Dataset:
    """What the simulator serves.

    api_keys: accepted `x-api-key` values.
    balances: (namespace, address — lowercase for EVM) -> token_key(assetType) -> base units.
    prices:   token_key(assetType) -> USD per whole token (fiatValue = amount * price, 6 dp).
    decimals: token_key(assetType) -> decimals for tokens the registry does not know.
    registry: decimals of known tokens and the members of each `ob:*` aggregated asset.
    """
    api_keys: set[str] = field(default_factory=lambda: {SIM_API_KEY})
    balances: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=lambda: {token_key(k): d for k, (d, _) in EXTRA_TOKENS.items()})
    registry: TokenRegistry = field(default_factory=TokenRegistry.default)

    def set_balance(self, caip10: str, asset_type: str, raw: int) -> None:
        namespace, _, address = caip10.split(":", 2)
        self.balances.setdefault(addr_key(namespace, address), {})[token_key(asset_type)] = raw

    def decimals_of(self, asset_type: str) -> int | None:
        known = self.registry.token(asset_type)
        return known.decimals if known and known.decimals is not None else self.decimals.get(token_key(asset_type))

    def fiat(self, asset_type: str, raw: int) -> Decimal:
        price, decimals = self.prices.get(token_key(asset_type)), self.decimals_of(asset_type)
        if price is None or decimals is None:
            return money.ZERO       # unpriced: OneBalance reports 0 (an assumption)
        return money.mul(money.from_base_units(raw, decimals), price).quantize(Decimal("0.000001"))


# -- JSON with Decimal number tokens ------------------------------------------
def _dumps(value: Any) -> str:
    """JSON text where a Decimal is written as a bare number token with exactly its digits."""
    if isinstance(value, Decimal):
        return money.plain(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


def error_shape(status: int, message: str) -> tuple[str, bytes]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return "application/json", json.dumps({"statusCode": status, "error": phrase, "message": message}).encode()


def _error(status: int, message: str) -> Response:
    ctype, body = error_shape(status, message)
    return Response(body, status_code=status, media_type=ctype)


def _comma_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# -- the endpoint --------------------------------------------------------------
def _build(dataset: Dataset, accounts: list[str], aggregated: list[str], asset_ids: list[str]) -> dict:
    keys: list[tuple[str, str]] = []
    for caip10 in accounts:
        namespace, _, address = caip10.split(":", 2)
        if addr_key(namespace, address) not in keys:     # an EVM address counts once across chains
            keys.append(addr_key(namespace, address))
    merged: dict[str, int] = {}       # the upstream's real behaviour: every listed account summed
    for key in keys:
        for asset_type, raw in dataset.balances.get(key, {}).items():
            merged[asset_type] = merged.get(asset_type, 0) + raw
    echoed: dict[str, str] = {}
    for namespace, address in keys:
        echoed.setdefault(CHAIN_TYPES.get(namespace, namespace), address)

    by_aggregated = []
    for ob_id in aggregated:
        members = dataset.registry.onebalance_members(ob_id)
        rows = [(token_key(t.id), merged.get(token_key(t.id), 0)) for t in members]
        rows = [(asset_type, raw) for asset_type, raw in rows if raw > 0]
        smallest = min((t.decimals for t in members if t.decimals is not None), default=0)
        total = sum(raw // 10 ** ((dataset.decimals_of(a) or smallest) - smallest) for a, raw in rows)
        individual = [{"assetType": a, "balance": str(raw), "fiatValue": dataset.fiat(a, raw)} for a, raw in rows]
        by_aggregated.append({"aggregatedAssetId": ob_id, "balance": str(total),
                              "individualAssetBalances": individual,
                              "fiatValue": money.dsum(i["fiatValue"] for i in individual)})
    by_specific = []
    for asset_id in asset_ids:
        raw = merged.get(token_key(asset_id), 0)
        by_specific.append({"assetType": token_key(asset_id), "balance": str(raw),
                            "fiatValue": dataset.fiat(asset_id, raw)})
    total_fiat = money.dsum([a["fiatValue"] for a in by_aggregated] + [s["fiatValue"] for s in by_specific])
    return {"accounts": echoed, "balanceByAggregatedAsset": by_aggregated,
            "balanceBySpecificAsset": by_specific, "totalBalance": {"fiatValue": total_fiat}}


def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    async def aggregated_balance(request: Request) -> Response:
        if request.headers.get("x-api-key") not in dataset.api_keys:
            return _error(401, "Invalid or missing API key")
        accounts = _comma_list(request.query_params.get("account"))
        aggregated = _comma_list(request.query_params.get("aggregatedAssetId"))
        asset_ids = _comma_list(request.query_params.get("assetId"))
        if not accounts:
            return _error(400, "account is required")
        if not aggregated and not asset_ids:
            return _error(400, "At least one of aggregatedAssetId or assetId must be provided")
        for caip10 in accounts:
            match = _CAIP10.match(caip10)
            if not match or (match.group(1) == "eip155" and not is_evm_address(match.group(3))):
                return _error(400, "account must be a comma list of CAIP-10 account ids")
        for ob_id in aggregated:
            if dataset.registry.onebalance_asset(ob_id) is None:
                return _error(400, "Unknown aggregatedAssetId")
        if not all(_CAIP19.match(a) for a in asset_ids):
            return _error(400, "assetId must be a comma list of CAIP-19 asset ids")
        body = _dumps(_build(dataset, accounts, aggregated, asset_ids))
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route(PATH, aggregated_balance, methods=["GET"])])
    return ControlledApp(app, control or SimControl(), error_shape, lambda factor: scale_balances(dataset, factor))


def source_block(base_url: str) -> dict:
    return {"base_url": base_url, "api_key": SIM_API_KEY,
            "aggregated_asset_ids": list(AGGREGATED_IDS), "asset_ids": list(SIM_ASSET_IDS)}


# -- generated worlds ----------------------------------------------------------
def _b58(data: bytes) -> str:
    n, text = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        text = _B58[r] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def evm_address(account_id: str, i: int) -> str:
    return checksum("0x" + hashlib.sha256(f"onebalance:{account_id}:evm:{i}".encode()).hexdigest()[:40])


def solana_address(account_id: str, i: int) -> str:
    return _b58(hashlib.sha256(f"onebalance:{account_id}:sol:{i}".encode()).digest())


def _tokens(dataset: Dataset, namespace: str) -> list[str]:
    """Mainnet members of the simulated aggregates plus the extra assetIds, for one namespace."""
    members = [t.id for ob_id in AGGREGATED_IDS for t in dataset.registry.onebalance_members(ob_id)
               if not t.is_testnet]
    return [a for a in members + SIM_ASSET_IDS if a.split(":", 1)[0] == namespace]


def _raw(dataset: Dataset, asset_type: str, rng: random.Random) -> int:
    known = dataset.registry.token(asset_type)
    lo, hi = MAGNITUDES[known.asset_key if known else token_key(asset_type)]
    decimals = dataset.decimals_of(asset_type) or 0
    k = rng.randint(lo, hi) + decimals
    return rng.randrange(10 ** k, 10 ** (k + 1)) if k >= 0 else rng.randint(1, 9)


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    """About `size` holdings over one EVM + one Solana address (a second EVM address, and an
    EVM address repeated on another chain, from size 8; more addresses for large sizes)."""
    dataset.api_keys.add(SIM_API_KEY)
    for asset_type in [t.id for ob in AGGREGATED_IDS for t in dataset.registry.onebalance_members(ob)] + SIM_ASSET_IDS:
        known = dataset.registry.token(asset_type)
        price = PRICES.get(known.asset_key) if known else EXTRA_TOKENS[asset_type][1]
        if price:
            dataset.prices.setdefault(token_key(asset_type), Decimal(price))
    evm_tokens, sol_tokens = _tokens(dataset, "eip155"), _tokens(dataset, "solana")
    has_sol = size >= 8 or rng.random() < 0.8
    n_evm = 1 if size < 8 else 2
    # room for every slot plus a margin, with a Solana address for every third EVM one
    while n_evm * len(evm_tokens) + math.ceil(n_evm / 3) * len(sol_tokens) < size * 1.1:
        n_evm += 1
    n_sol = math.ceil(n_evm / 3) if has_sol else 0
    evms = [f"eip155:1:{evm_address(account_id, i)}" for i in range(n_evm)]
    sols = [f"{SOLANA}:{solana_address(account_id, i)}" for i in range(n_sol)]

    # Must-haves first (ETH on two chains, USDC on BSC with 18 decimals, USDT, SOL, an
    # unregistered token), then random slots until about `size`.
    usdc_bsc = "eip155:56/erc20:0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"
    must = [(evms[0], "eip155:1/slip44:60"), (evms[0], usdc_bsc),
            (evms[0], "eip155:1/erc20:0xdAC17F958D2ee523a2206206994597C13D831ec7"),
            (evms[0], "eip155:8453/slip44:60")]
    if sols:
        must.insert(2, (sols[0], f"{SOLANA}/slip44:501"))
    if size >= 6:
        must.insert(3, (evms[0], DEGEN))
    rest = [(a, t) for a in evms for t in evm_tokens] + [(a, t) for a in sols for t in sol_tokens]
    rest = [slot for slot in rest if slot not in must]
    rng.shuffle(rest)
    for i, (caip10, asset_type) in enumerate((must + rest)[:max(size, 1)]):
        zero = i >= len(must) and rng.random() < 0.05     # the occasional emptied balance
        dataset.set_balance(caip10, asset_type, 0 if zero else _raw(dataset, asset_type, rng))

    accounts = [evms[0], *sols[:1]]
    if n_evm > 1:   # the same EVM address on Base, lowercase: still one wallet
        accounts.append("eip155:8453:" + evms[0].rsplit(":", 1)[1].lower())
    accounts += evms[1:] + sols[1:]
    return {"accounts": accounts}


def scale_balances(dataset: Dataset, factor: Decimal) -> int:
    """Every balance times `factor`, in whole base units (/_control/balances)."""
    changed = 0
    for balances in dataset.balances.values():
        for key in balances:
            balances[key] = int(balances[key] * factor)
            changed += 1
    return changed
