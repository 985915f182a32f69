"""Calico client against the Calico simulator over real HTTP."""
from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from gateway.domain import ids, money
from gateway.config import AccountConfig
from gateway.sources.calico.config import CalicoAccount, CalicoSourceConfig
from gateway.domain.records import AmountPrecision, PriceReliability, SourceState, WalletKind
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.server.serving import ServerThread
from gateway.sources.calico import simulator as sim
from gateway.simulation.control import Fault, SimControl
from gateway.sources.calico.client import CalicoClient, CalicoIdentity

TOKEN = "calico-secret-alice-7f3a"
T0 = "2025-09-26T14:17:39.584Z"
T1 = "2025-09-26T14:20:00.001Z"


def row(symbol: str, holdings: str, value: str, source: str, redacted: str | None, *,
        staked: str = "0", fetched: str = T0) -> dict:
    return {"asset_symbol": symbol, "asset_holdings": Decimal(holdings), "price_in_usd": Decimal(value),
            "staked_holdings": Decimal(staked), "time_fetched": fetched,
            "crypto_source_id": source, "wallet_address_redacted": redacted}


HAND_ROWS = [
    # the document's example rows, digit for digit
    row("USDC", "206.651753", "206.59355189175383", "ethereum", "96Fc"),
    row("ETH", "0.01560091360042268", "61.016837497724595", "ethereum", "96Fc", staked="0.005"),
    row("BTC", "0.12345678", "13209.876543210987", "coinbase", "a1B2", fetched=T1),
    row("PEPE", "1234567.891", "15.432098637500001", "ethereum", "96Fc"),   # unknown to the registry
    row("SOL", "0", "0", "solana", "Xy9z"),                                 # zero balance
    row("ETH", "1.5", "6000.25", "base", "D00d"),
    row("ETH", "0.25", "1000.0625", "base", "D00d", fetched=T1),            # same token again: merge
    row("USDT", "10", "10.001", "binance", None),                           # exchange without address
    row("FOO", "3", "1.5", "metamask", "beef"),                             # unknown provider
]


@pytest.fixture(scope="module")
def world():
    dataset = sim.Dataset(rows={TOKEN: HAND_ROWS})
    control = SimControl()
    with ServerThread(sim.create_app(dataset, control)) as server:
        yield dataset, control, server


@pytest.fixture(autouse=True)
def clean(world):
    dataset, control, _ = world
    control.reset()
    dataset.errors.clear()
    yield


def make_client(server: ServerThread, http: httpx.AsyncClient, timeout_s: float = 2.0) -> CalicoClient:
    config = CalicoSourceConfig(base_url=server.url, timeout_s=timeout_s, max_retries=0)
    return CalicoClient(config, http, TokenRegistry.default())


def identity_for(token: str, **filters) -> CalicoIdentity:
    account = AccountConfig(id="alice", calico=CalicoAccount(token=token))
    return CalicoIdentity(account_id=account.id, token=account.calico.token, **filters)


async def fetch(server, token: str = TOKEN, timeout_s: float = 2.0, **filters):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        return await make_client(server, http, timeout_s).fetch(identity_for(token, **filters))


def by_key(result) -> dict:
    return {(h.wallet.local_id, h.token.id): h for h in result.holdings}


# -- normalization ----------------------------------------------------------------
async def test_exact_amounts_wallets_tokens_and_prices(world):
    _, control, server = world
    result = await fetch(server)
    assert result.state is SourceState.OK and result.error is None and result.warnings == []
    assert result.upstream_calls == 1 and control.requests == 1
    holdings = by_key(result)
    usdc = holdings[("ethereum:96Fc", "eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")]
    assert usdc.amount == Decimal("206.651753") and str(usdc.amount) == "206.651753"
    assert usdc.value.amount == Decimal("206.59355189175383") and usdc.value.currency == "USD"
    assert usdc.price.unit == money.unit_price(Decimal("206.59355189175383"), Decimal("206.651753"))
    assert usdc.price.reliability is PriceReliability.REPORTED and usdc.price.source is Source.CALICO
    assert usdc.precision is AmountPrecision.FLOAT_APPROXIMATE and usdc.amount_raw is None
    assert usdc.updated_at == datetime(2025, 9, 26, 14, 17, 39, 584000, tzinfo=timezone.utc)
    assert usdc.id == ids.holding_id("CALICO", "alice", "ethereum:96Fc", usdc.token.id)

    eth = holdings[("ethereum:96Fc", "eip155:1/slip44:60")]
    assert eth.amount == Decimal("0.01560091360042268") and eth.staked == Decimal("0.005")
    assert eth.value.amount == Decimal("61.016837497724595")

    wallet = usdc.wallet
    assert wallet.kind is WalletKind.ONCHAIN_ADDRESS and wallet.chain.id == "eip155:1"
    assert wallet.provider == "ethereum" and wallet.address is None and wallet.address_hint == "96Fc"
    assert wallet.id == ids.wallet_id("CALICO", "alice", "ethereum:96Fc")

    btc = holdings[("coinbase:a1B2", "ticker:BTC")]
    assert btc.wallet.kind is WalletKind.EXCHANGE_ACCOUNT and btc.wallet.chain is None
    assert btc.amount == Decimal("0.12345678") and btc.value.amount == Decimal("13209.876543210987")

    usdt = holdings[("binance:", "ticker:USDT")]
    assert usdt.wallet.address_hint is None and usdt.wallet.kind is WalletKind.EXCHANGE_ACCOUNT

    # 6 wallets, one per (crypto_source_id, redacted); 8 holdings after the merge
    assert sorted(w.local_id for w in result.wallets) == sorted(
        ["ethereum:96Fc", "coinbase:a1B2", "solana:Xy9z", "base:D00d", "binance:", "metamask:beef"])
    assert len(result.holdings) == 8


async def test_unknown_tokens_zero_balance_and_merge(world):
    _, _, server = world
    holdings = by_key(await fetch(server))
    pepe = holdings[("ethereum:96Fc", "calico:ethereum:PEPE")]
    assert pepe.token.symbol == "PEPE" and pepe.token.decimals is None
    assert pepe.token.chain.id == "eip155:1" and pepe.amount == Decimal("1234567.891")

    foo = holdings[("metamask:beef", "calico:metamask:FOO")]
    assert foo.wallet.kind is WalletKind.ONCHAIN_ADDRESS and foo.wallet.chain is None and foo.token.chain is None

    sol = holdings[("solana:Xy9z", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp/slip44:501")]
    assert sol.amount == 0 and sol.price is None and sol.value.amount == 0   # no unit price from 0/0

    base_eth = holdings[("base:D00d", "eip155:8453/slip44:60")]
    assert base_eth.amount == Decimal("1.75") and base_eth.value.amount == Decimal("7000.3125")
    assert base_eth.price.unit == Decimal("4000.178571428571428571428571")
    assert base_eth.updated_at == datetime(2025, 9, 26, 14, 20, 0, 1000, tzinfo=timezone.utc)


async def test_simulator_sends_json_number_tokens(world):
    _, _, server = world
    async with httpx.AsyncClient() as http:
        resp = await http.get(server.url + "/assets", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert '"price_in_usd":206.59355189175383' in resp.text
    assert '"asset_holdings":0.01560091360042268' in resp.text
    assert money.loads(resp.text)["errors"] == []


# -- truncation and upstream-reported errors ------------------------------------------
async def test_hundred_rows_possibly_truncated(world):
    dataset, control, server = world
    config = sim.populate(dataset, "bigco", random.Random(7), 150)
    assert len(dataset.rows[config["token"]]) == 150
    result = await fetch(server, config["token"])
    assert control.requests == 1
    assert dict(control.log[0]["params"]) == {"limit": "100"}
    assert result.state is SourceState.PARTIAL
    assert [w.code for w in result.warnings] == ["POSSIBLY_TRUNCATED"]
    served = dataset.rows[config["token"]][:100]
    assert money.dsum(h.amount for h in result.holdings) == money.dsum(r["asset_holdings"] for r in served)


async def test_reported_errors_give_partial_without_upstream_text(world):
    dataset, _, server = world
    dataset.errors[TOKEN] = [{"crypto_source_id": "kraken", "message": "SECRET-UPSTREAM-TEXT"},
                             {"crypto_source_id": "okx", "message": "expired"}]
    result = await fetch(server)
    assert result.state is SourceState.PARTIAL and len(result.holdings) == 8
    (warning,) = result.warnings
    assert warning.code == "UPSTREAM_REPORTED_ERRORS" and "2 error" in warning.message
    assert "SECRET-UPSTREAM-TEXT" not in warning.message and "kraken" not in warning.message


# -- failures ---------------------------------------------------------------------------
async def test_auth_failure(world):
    _, _, server = world
    result = await fetch(server, "wrong-token-123")
    assert result.state is SourceState.FAILED and result.holdings == [] and result.wallets == []
    assert result.error.code == "UPSTREAM_AUTH_FAILED"
    assert "wrong-token-123" not in result.error.message and "401" in result.error.message


@pytest.mark.parametrize("fault, code", [
    (Fault(kind="status", status=500), "UPSTREAM_UNAVAILABLE"),
    (Fault(kind="status", status=503), "UPSTREAM_UNAVAILABLE"),
    (Fault(kind="status", status=429, retry_after=3), "UPSTREAM_RATE_LIMITED"),
    (Fault(kind="delay", delay_s=0.6), "UPSTREAM_TIMEOUT"),
    (Fault(kind="malformed"), "UPSTREAM_BAD_RESPONSE"),
    (Fault(kind="wrong_shape"), "UPSTREAM_BAD_RESPONSE"),
    (Fault(kind="disconnect"), None),
])
async def test_injected_faults_fail_without_holdings(world, fault, code):
    _, control, server = world
    control.add_fault(fault)
    result = await fetch(server, timeout_s=0.3)
    assert result.state is SourceState.FAILED and result.holdings == [] and result.wallets == []
    if code:
        assert result.error.code == code
    assert result.error.code.startswith("UPSTREAM_")
    assert TOKEN not in result.error.message and "injected" not in result.error.message


async def test_bad_row_fails_whole_read(world):
    dataset, _, server = world
    dataset.rows["tok-bad"] = [HAND_ROWS[0], {**HAND_ROWS[1], "asset_holdings": "not-a-number"}]
    result = await fetch(server, "tok-bad")
    assert result.state is SourceState.FAILED and result.error.code == "UPSTREAM_BAD_RESPONSE"
    assert result.holdings == [] and "not-a-number" not in result.error.message


# -- identity and pushdown filters --------------------------------------------------------
def test_identity_hashable_and_secret_hidden():
    a, b = identity_for(TOKEN), identity_for(TOKEN)
    assert a == b and hash(a) == hash(b) and len({a, b, identity_for(TOKEN, asset_symbols=("BTC",))}) == 2
    assert TOKEN not in repr(a)
    client = CalicoClient(CalicoSourceConfig(), None, TokenRegistry.default())
    account = AccountConfig(id="alice", calico=CalicoAccount(token=TOKEN))
    assert client.identities(account) == [a]
    assert client.identities(AccountConfig(id="bob")) == []


async def test_filters_pushed_down(world):
    _, control, server = world
    result = await fetch(server, asset_symbols=("ETH", "USDC"), crypto_sources=("ethereum", "base"),
                         start_time_ms=1758896259584, end_time_ms=1758896400000)
    assert dict(control.log[0]["params"]) == {
        "limit": "100", "start_time": "1758896259584", "end_time": "1758896400000",
        "asset_symbols": "ETH,USDC", "crypto_sources": "ethereum,base"}
    # base ETH's second row was fetched at T1 (after end_time): only the T0 row survives
    assert sorted((h.wallet.local_id, h.token.symbol, h.amount) for h in result.holdings) == [
        ("base:D00d", "ETH", Decimal("1.5")), ("ethereum:96Fc", "ETH", Decimal("0.01560091360042268")),
        ("ethereum:96Fc", "USDC", Decimal("206.651753"))]


async def test_empty_filter_matches_nothing_without_a_call(world):
    _, control, server = world
    result = await fetch(server, asset_symbols=())
    assert result.state is SourceState.OK and result.holdings == [] and control.requests == 0


# -- the simulator's own validation ------------------------------------------------------
@pytest.mark.parametrize("params, status", [
    ({"limit": "0"}, 400), ({"limit": "101"}, 400), ({"limit": "ten"}, 400), ({"limit": "2.5"}, 400),
    ({"start_time": "yesterday"}, 400), ({"end_time": "1.5"}, 400),
    ({"start_time": "2000", "end_time": "1000"}, 400),
    ({"limit": "100", "start_time": "1000", "end_time": "1000"}, 200),
])
async def test_simulator_validates_parameters(world, params, status):
    _, _, server = world
    async with httpx.AsyncClient() as http:
        resp = await http.get(server.url + "/assets", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == status
    body = resp.json()
    assert body["data"] == [] if status == 400 else isinstance(body["data"], list)
    if status == 400:
        assert body["errors"][0]["code"] == "BAD_REQUEST"


async def test_simulator_auth_limit_default_and_filters(world):
    dataset, _, server = world
    config = sim.populate(dataset, "limits", random.Random(3), 45)
    auth = {"Authorization": f"Bearer {config['token']}"}
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": config["token"]}, {"Authorization": "Bearer nope"}):
            resp = await http.get(server.url + "/assets", headers=headers)
            assert resp.status_code == 401 and resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert len((await http.get(server.url + "/assets", headers=auth)).json()["data"]) == 30
        assert len((await http.get(server.url + "/assets", params={"limit": 7}, headers=auth)).json()["data"]) == 7
        resp = await http.get(server.url + "/assets", params={"asset_symbols": "BTC,SOL", "crypto_sources": "coinbase,binance",
                                                              "limit": 100}, headers=auth)
        data = resp.json()["data"]
        assert data and {(r["asset_symbol"], r["crypto_source_id"]) for r in data} <= {
            ("BTC", "coinbase"), ("BTC", "binance"), ("SOL", "coinbase"), ("SOL", "binance")}


def test_error_shape_matches_success_body():
    ctype, body = sim.error_shape(503, "down")
    assert ctype == "application/json"
    assert json.loads(body) == {"data": [], "errors": [{"code": "SERVICE_UNAVAILABLE", "message": "down"}]}
    assert sim.source_block("http://x") == {"base_url": "http://x"}


# -- generated worlds ----------------------------------------------------------------------
def test_populate_is_deterministic_and_realistic():
    a, b = sim.Dataset(), sim.Dataset()
    assert sim.populate(a, "demo", random.Random(5), 400) == {"token": "calico-token-demo"}
    sim.populate(b, "demo", random.Random(5), 400)
    rows = a.rows["calico-token-demo"]
    assert rows == b.rows["calico-token-demo"] and len(rows) == 400
    registry = TokenRegistry.default()
    sources = {r["crypto_source_id"] for r in rows}
    assert {"coinbase", "binance", "ethereum", "solana", "base"} <= sources
    assert any(r["asset_holdings"] == 0 for r in rows) and any(r["staked_holdings"] > 0 for r in rows)
    assert all(isinstance(r["asset_holdings"], Decimal) and len(r["wallet_address_redacted"]) == 4 for r in rows)
    assert all(r["time_fetched"].endswith("Z") and len(r["time_fetched"]) == 24 for r in rows)

    def known(r):
        if registry.is_exchange(Source.CALICO, r["crypto_source_id"]):
            return registry.ticker(r["asset_symbol"]) is not None
        return registry.token_alias(Source.CALICO, f"{r['crypto_source_id']}:{r['asset_symbol']}") is not None

    small = sim.Dataset()
    sim.populate(small, "tiny", random.Random(1), 6)
    assert len(small.rows["calico-token-tiny"]) == 6
    assert not all(known(r) for r in small.rows["calico-token-tiny"])
    assert sum(known(r) for r in rows) > len(rows) * 0.6
