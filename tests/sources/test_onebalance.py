"""OneBalance client against its simulator over real HTTP."""
from __future__ import annotations

import random
from decimal import Decimal

import httpx
import msgspec
import pytest
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from gateway.domain import money
from gateway.config import AccountConfig
from gateway.sources.onebalance.config import OneBalanceAccount, OneBalanceSourceConfig
from gateway.domain.errors import UpstreamError
from gateway.domain.evm import checksum
from gateway.domain.records import AmountPrecision, PriceReliability, SourceFetch, SourceState, WalletKind
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.server.serving import ServerThread
from gateway.sources.onebalance import simulator as sim
from gateway.sources.onebalance.client import (AggregatedBalanceResponse, OneBalanceClient, OneBalanceIdentity,
                                        group_accounts)
from tests.tooling import FAULT_CODES

EVM_A = "0xfe52613d747E20F2f62e0A5cC36B0DFAe771C442"
EVM_B = "0x1111111111111111111111111111111111111111"
SOL_A = "J5CCzBULFax899tcirb6wMbenQUd8whbaetG7EfSick5"
ETH_BASE = "eip155:8453/slip44:60"
ETH_ARB = "eip155:42161/slip44:60"
USDC_BSC = "eip155:56/erc20:0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"
USDC_ARB = "eip155:42161/erc20:0xaf88d065e77c8cC2239327C5EDb3A432268e5831"
SOL = f"{sim.SOLANA}/slip44:501"
REGISTRY = TokenRegistry.default()


@pytest.fixture(scope="module")
def ob_world():
    dataset = sim.Dataset()
    app = sim.create_app(dataset)
    with ServerThread(app) as server:
        yield dataset, app.control, server


@pytest.fixture
def env(ob_world):
    dataset, control, server = ob_world
    dataset.balances.clear()
    dataset.prices.clear()
    control.reset()
    dataset.prices.update({sim.token_key(k): Decimal(v) for k, v in {
        ETH_BASE: "1771.69", ETH_ARB: "1771.67", USDC_BSC: "0.99991", USDC_ARB: "0.99995", SOL: "171.83",
        sim.DEGEN: "0.004127"}.items()})
    return dataset, control, server


def make_client(http, server, *, key=sim.SIM_API_KEY, timeout=1.0, **extra) -> OneBalanceClient:
    config = OneBalanceSourceConfig(base_url=server.url, api_key=key, timeout_s=timeout,
                                    aggregated_asset_ids=sim.AGGREGATED_IDS, max_retries=0, **extra)
    return OneBalanceClient(config, http, REGISTRY)


def account(*caip10s: str, account_id: str = "alice") -> AccountConfig:
    return AccountConfig(id=account_id, onebalance=OneBalanceAccount(accounts=list(caip10s)))


async def fetch_all(client, acct) -> list[SourceFetch]:
    return [await client.fetch(identity) for identity in client.identities(acct)]


def test_identities_one_address_per_namespace_per_call():
    groups = group_accounts([f"eip155:1:{EVM_A}", f"{sim.SOLANA}:{SOL_A}", f"eip155:8453:{EVM_A.lower()}",
                             f"eip155:10:{EVM_B}", f"{sim.SOLANA}:{SOL_A}"])
    # the same EVM address on another chain is one wallet; two EVM addresses are two calls
    assert groups == [(f"eip155:1:{EVM_A}", f"{sim.SOLANA}:{SOL_A}"), (f"eip155:10:{EVM_B}",)]
    client = OneBalanceClient(OneBalanceSourceConfig(api_key="sekrit-ob-key"), None, REGISTRY)
    identities = client.identities(account(f"eip155:1:{EVM_A}", f"eip155:1:{EVM_B}"))
    assert [i.accounts for i in identities] == [(f"eip155:1:{EVM_A}",), (f"eip155:1:{EVM_B}",)]
    assert hash(identities[0]) == hash(identities[0]) and "sekrit" not in repr(identities[0])
    assert client.identities(AccountConfig(id="nobody")) == []


async def test_evm_and_solana_in_one_call_exact_amounts(env):
    dataset, control, server = env
    dataset.set_balance(f"eip155:1:{EVM_A}", ETH_BASE, 26488136306212020002)
    dataset.set_balance(f"eip155:1:{EVM_A}", USDC_BSC, 1234567890123456789012)   # 18 decimals on BSC
    dataset.set_balance(f"eip155:1:{EVM_A}", USDC_ARB, 62459466)
    dataset.set_balance(f"{sim.SOLANA}:{SOL_A}", SOL, 4695007067)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        client = make_client(http, server)
        fetches = await fetch_all(client, account(f"eip155:1:{EVM_A}", f"{sim.SOLANA}:{SOL_A}"))
    assert len(fetches) == 1 and control.requests == 1
    params = dict(control.log[0]["params"])
    assert params["account"] == f"eip155:1:{EVM_A},{sim.SOLANA}:{SOL_A}"
    assert params["aggregatedAssetId"] == "ob:eth,ob:usdc,ob:usdt,ob:sol" and "assetId" not in params
    fetch = fetches[0]
    assert fetch.state == SourceState.OK and fetch.upstream_calls == 1 and fetch.warnings == []
    wallets = {w.local_id: w for w in fetch.wallets}
    evm, sol = wallets[f"eip155:{EVM_A.lower()}"], wallets[f"solana:{SOL_A}"]
    assert evm.address == checksum(EVM_A) and evm.chain is None and evm.kind == WalletKind.ONCHAIN_ADDRESS
    assert sol.address == SOL_A and sol.chain.id == sim.SOLANA and sol.chain.name == "Solana"
    by_token = {h.token.id: h for h in fetch.holdings}
    assert len(by_token) == 4
    eth = by_token[ETH_BASE]
    assert eth.wallet is evm and eth.amount == Decimal("26.488136306212020002")
    assert eth.amount_raw == 26488136306212020002 and eth.precision == AmountPrecision.EXACT
    assert eth.value.amount == Decimal("46928.766212") and eth.value.currency == "USD"
    assert eth.price.unit == money.unit_price(Decimal("46928.766212"), Decimal("26.488136306212020002"))
    assert eth.price.reliability == PriceReliability.REPORTED and eth.price.source == Source.ONEBALANCE
    assert by_token[USDC_BSC].amount == Decimal("1234.567890123456789012")   # registry decimals: 18
    assert by_token[USDC_ARB].amount == Decimal("62.459466")
    assert by_token[SOL].wallet is sol and by_token[SOL].amount == Decimal("4.695007067")
    assert by_token[SOL].value.amount == Decimal("806.743064")


async def test_two_evm_addresses_are_two_calls_and_stay_split(env):
    dataset, control, server = env
    dataset.set_balance(f"eip155:1:{EVM_A}", ETH_BASE, 10**18)
    dataset.set_balance(f"eip155:1:{EVM_B}", ETH_BASE, 3 * 10**18)
    dataset.set_balance(f"{sim.SOLANA}:{SOL_A}", SOL, 10**9)
    acct = account(f"eip155:1:{EVM_A}", f"{sim.SOLANA}:{SOL_A}", f"eip155:8453:{EVM_A.lower()}", f"eip155:1:{EVM_B}")
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        fetches = await fetch_all(make_client(http, server), acct)
    sent = [dict(entry["params"])["account"] for entry in control.log]
    assert sent == [f"eip155:1:{EVM_A},{sim.SOLANA}:{SOL_A}", f"eip155:1:{EVM_B}"]
    amounts = {(h.wallet.local_id, h.token.id): h.amount for f in fetches for h in f.holdings}
    assert amounts == {(f"eip155:{EVM_A.lower()}", ETH_BASE): Decimal(1),
                       (f"solana:{SOL_A}", SOL): Decimal(1),
                       (f"eip155:{EVM_B.lower()}", ETH_BASE): Decimal(3)}
    # the trap itself: listing both addresses in one call merges them upstream
    async with httpx.AsyncClient() as http:
        r = await http.get(server.url + sim.PATH, headers={"x-api-key": sim.SIM_API_KEY},
                           params={"account": f"eip155:1:{EVM_A},eip155:1:{EVM_B}", "aggregatedAssetId": "ob:eth"})
    assert r.json()["balanceByAggregatedAsset"][0]["individualAssetBalances"][0]["balance"] == str(4 * 10**18)


async def test_specific_assets_unknown_decimals_duplicates_and_zero(env):
    dataset, control, server = env
    dataset.set_balance(f"eip155:1:{EVM_A}", sim.DEGEN, 453253698303823245709)
    dataset.set_balance(f"eip155:1:{EVM_A}", USDC_ARB, 5_000000)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        # USDC on Arbitrum is both an ob:usdc member and an assetId: reported twice, counted once
        client = make_client(http, server, asset_ids=[sim.DEGEN, sim.POL, USDC_ARB, sim.BONK])
        [fetch] = await fetch_all(client, account(f"eip155:1:{EVM_A}"))
    assert dict(control.log[0]["params"])["assetId"] == ",".join([sim.DEGEN, sim.POL, USDC_ARB, sim.BONK])
    by_token = {h.token.id: h for h in fetch.holdings}
    assert set(by_token) == {sim.DEGEN, sim.POL, USDC_ARB}   # BONK: zero, and no Solana wallet
    degen = by_token[sim.DEGEN]
    assert degen.token.decimals is None and degen.amount == Decimal(453253698303823245709)
    assert degen.amount_raw is None and degen.price is None
    assert degen.value.amount == Decimal("1.870578")
    assert [(w.code, w.message) for w in fetch.warnings] == [
        ("UNKNOWN_DECIMALS", "1 holdings are in base units: token decimals unknown")]
    pol = by_token[sim.POL]
    assert pol.amount == 0 and pol.amount_raw == 0 and pol.price is None and pol.value.amount == 0
    assert by_token[USDC_ARB].amount == Decimal("5") and by_token[USDC_ARB].value.amount == Decimal("4.99975")


def test_normalize_merges_and_refuses_unattributable_balance():
    client = OneBalanceClient(OneBalanceSourceConfig(api_key="k"), None, REGISTRY)
    identity = OneBalanceIdentity("alice", SecretStr("k"), (f"eip155:1:{EVM_A}",))
    entry = {"assetType": ETH_BASE.lower(), "balance": "5", "fiatValue": Decimal("0.000001")}
    body = {"accounts": {"evm": EVM_A.lower()}, "totalBalance": {"fiatValue": Decimal(1)},
            "balanceByAggregatedAsset": [{"aggregatedAssetId": "ob:eth", "balance": "5", "individualAssetBalances": [entry]},
                                         {"aggregatedAssetId": "ob:x", "balance": "7", "individualAssetBalances": [
                                             {**entry, "balance": "7"}]}],
            "balanceBySpecificAsset": [{"assetType": SOL, "balance": "0", "fiatValue": 0}]}
    fetch = SourceFetch(Source.ONEBALANCE, "alice", SourceState.OK)
    client.normalize(identity, msgspec.convert(body, AggregatedBalanceResponse), fetch)
    [holding] = fetch.holdings
    assert holding.amount_raw == 12 and holding.value.amount == Decimal("0.000002")
    body["balanceBySpecificAsset"][0]["balance"] = "1"
    with pytest.raises(UpstreamError, match="none of the listed addresses"):
        client.normalize(identity, msgspec.convert(body, AggregatedBalanceResponse),
                         SourceFetch(Source.ONEBALANCE, "alice", SourceState.OK))
    body["balanceBySpecificAsset"][0]["balance"] = 1   # a number, not a string
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, AggregatedBalanceResponse)


async def test_populated_world_round_trip(env):
    dataset, control, server = env
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        for account_id, size in [("small", 3), ("mid", 10), ("big", 400)]:
            block = sim.populate(dataset, account_id, random.Random(account_id), size)
            control.reset()
            config = OneBalanceSourceConfig(**sim.source_block(server.url), timeout_s=2)
            acct = AccountConfig(id=account_id, onebalance=block)
            client = OneBalanceClient(config, http, REGISTRY)
            fetches = await fetch_all(client, acct)
            assert all(f.state == SourceState.OK for f in fetches)
            assert control.requests == len(fetches) == len(client.identities(acct))
            holdings = [h for f in fetches for h in f.holdings]
            # zero members are omitted upstream; unheld assetIds come back as zeros
            assert size * 0.9 <= len(holdings) <= size + 3 * len(fetches)
            for h in holdings:   # every amount is exactly what the simulator holds
                ns, _, address = h.wallet.local_id.partition(":")
                raw = h.amount_raw if h.token.decimals is not None else int(h.amount)
                assert dataset.balances.get(sim.addr_key(ns, address), {}).get(sim.token_key(h.token.id), 0) == raw
            if size >= 8:
                assert len(fetches) >= 2 and block["accounts"][2].startswith("eip155:8453:")
                assert any(h.token.decimals is None for h in holdings)
                assert any(w.code == "UNKNOWN_DECIMALS" for f in fetches for w in f.warnings)
                assert any(h.token.id == USDC_BSC and h.token.decimals == 18 for h in holdings)
                assert len({w.local_id for f in fetches for w in f.wallets}) == len(fetches) + len(
                    [a for a in block["accounts"] if a.startswith("solana:")])


async def test_auth_failure(env):
    dataset, control, server = env
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        [fetch] = await fetch_all(make_client(http, server, key="wrong-secret-key"), account(f"eip155:1:{EVM_A}"))
    assert fetch.state == SourceState.FAILED and fetch.error.code == "UPSTREAM_AUTH_FAILED"
    assert fetch.holdings == [] and fetch.wallets == []
    assert "wrong-secret-key" not in fetch.error.message and "Invalid" not in fetch.error.message


@pytest.mark.parametrize("fault, code", FAULT_CODES)
async def test_faults_fail_with_no_holdings(env, fault, code):
    dataset, control, server = env
    dataset.set_balance(f"eip155:1:{EVM_A}", ETH_BASE, 10**18)
    control.add_fault(fault)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        [fetch] = await fetch_all(make_client(http, server, timeout=0.3), account(f"eip155:1:{EVM_A}"))
    assert fetch.state == SourceState.FAILED and fetch.error.code == code
    assert fetch.holdings == [] and fetch.wallets == []
    assert sim.SIM_API_KEY not in fetch.error.message and "injected" not in fetch.error.message


@pytest.mark.parametrize("headers, params, status", [
    ({}, {"account": f"eip155:1:{EVM_A}", "aggregatedAssetId": "ob:eth"}, 401),
    ({"x-api-key": "nope"}, {"account": f"eip155:1:{EVM_A}", "aggregatedAssetId": "ob:eth"}, 401),
    (None, {"aggregatedAssetId": "ob:eth"}, 400),
    (None, {"account": f"eip155:1:{EVM_A}"}, 400),
    (None, {"account": f"eip155:1:{EVM_A}", "aggregatedAssetId": "", "assetId": ""}, 400),
    (None, {"account": EVM_A, "aggregatedAssetId": "ob:eth"}, 400),
    (None, {"account": "eip155:1:0x1234", "aggregatedAssetId": "ob:eth"}, 400),
    (None, {"account": f"eip155:1:{EVM_A}", "aggregatedAssetId": "ob:nope"}, 400),
    (None, {"account": f"eip155:1:{EVM_A}", "assetId": "not-caip19"}, 400),
])
async def test_simulator_validation(env, headers, params, status):
    dataset, control, server = env
    async with httpx.AsyncClient() as http:
        r = await http.get(server.url + sim.PATH, params=params,
                           headers={"x-api-key": sim.SIM_API_KEY} if headers is None else headers)
    assert r.status_code == status
    body = r.json()
    assert body["statusCode"] == status and body["error"] in ("Unauthorized", "Bad Request") and body["message"]


async def test_simulator_wire_format(env):
    dataset, control, server = env
    dataset.set_balance(f"eip155:1:{EVM_A}", ETH_BASE, 26488136306212020002)
    dataset.set_balance(f"eip155:1:{EVM_A}", ETH_ARB, 43872973277400073)
    async with httpx.AsyncClient() as http:
        r = await http.get(server.url + sim.PATH, headers={"x-api-key": sim.SIM_API_KEY},
                           params={"account": f"eip155:42161:{EVM_A},eip155:1:{EVM_A.lower()}",
                                   "aggregatedAssetId": "ob:eth,ob:usdc"})
    assert r.status_code == 200
    assert '"fiatValue": 46928.766212' in r.text and '"fiatValue": 77.728431' in r.text   # number tokens
    body = money.loads(r.text)
    assert body["accounts"] == {"evm": EVM_A.lower()}   # one address, however many chains it was listed on
    eth, usdc = body["balanceByAggregatedAsset"]
    assert [i["assetType"] for i in eth["individualAssetBalances"]] == [ETH_BASE, ETH_ARB]
    assert eth["balance"] == str(26488136306212020002 + 43872973277400073)
    assert eth["fiatValue"] == Decimal("47006.494643")
    assert usdc == {"aggregatedAssetId": "ob:usdc", "balance": "0", "individualAssetBalances": [], "fiatValue": 0}
    assert body["balanceBySpecificAsset"] == [] and body["totalBalance"] == {"fiatValue": Decimal("47006.494643")}
