"""Cobo: simulator over real HTTP, client against it, traps and failures."""
from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.domain import ids
from gateway.config import AccountConfig
from gateway.sources.cobo.config import CoboAccount, CoboSourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.records import AmountPrecision, SourceState, WalletKind
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.server.serving import ServerThread
from gateway.sources.cobo import simulator as sim
from gateway.simulation.control import Fault, SimControl
from gateway.sources.cobo import client as client_module
from gateway.sources.base import UpstreamResponse
from gateway.sources.cobo.client import CoboClient, CoboIdentity

KEY = sim.DEFAULT_API_KEY
W1 = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
W2 = "7d1e8a52-2f6b-4c1e-9a0e-5b6f0c3d2e11"
EVM_A = "0xfe52613d747E20F2f62e0A5cC36B0DFAe771C442"
EVM_B = "0x1111111111111111111111111111111111111111"
SOL_ADDR = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
REGISTRY = TokenRegistry.default()


@pytest.fixture(scope="module")
def server():
    dataset, control = sim.Dataset(), SimControl()
    with ServerThread(sim.create_app(dataset, control)) as srv:
        srv.dataset, srv.control = dataset, control
        yield srv


@pytest.fixture
def srv(server):
    server.control.reset()
    server.dataset.wallets.clear()
    server.dataset.refreshed.clear()
    server.dataset.api_keys.clear()
    server.dataset.api_keys.add(KEY)
    return server


def requests_log(srv) -> list[dict[str, str]]:
    return [dict(e["params"]) for e in srv.control.log if e["path"] == sim.PATH]


async def fetch_all(srv, wallets=(W1,), *, api_key=KEY, timeout_s=2.0, force_address=None):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        config = CoboSourceConfig(base_url=srv.url, api_key=api_key, timeout_s=timeout_s, max_retries=0)
        client = CoboClient(config, http, REGISTRY)
        identities = client.identities(AccountConfig(id="alice", cobo=CoboAccount(wallet_uuids=list(wallets))))
        if force_address:
            identities = [CoboIdentity(i.account_id, i.api_key, i.wallet_uuid, force_address) for i in identities]
        return [await client.fetch(i) for i in identities]


def hand_made_wallet(srv) -> None:
    row = sim.balance_row
    srv.dataset.wallets[W1] = [
        row(W1, "ETH", "ETH", "1.234567890123456789", address=EVM_A, cobo_wallet_id="treasury",
            updated_at="2025-06-01T10:00:00Z", balance_updated_at="2025-06-01T10:05:00Z"),
        row(W1, "ETH_USDC", "ETH", "1000.5", pending="0.25", locked="12.000001", address=EVM_A,
            cobo_wallet_id="treasury"),
        row(W1, "ETH_PEPE", "ETH", "123456789.123456789012345678", address=EVM_A, cobo_wallet_id="treasury"),
        row(W1, "SETH_USDC", "SETH", "50", address=EVM_A, cobo_wallet_id="treasury"),
        row(W1, "SOL", "SOL", "0", address=SOL_ADDR, chain_type="SOL", cobo_wallet_id="treasury"),
        row(W1, "SOL_USDC", "SOL", "7.1", address=SOL_ADDR, chain_type="SOL", total="7.3",
            cobo_wallet_id="treasury", updated_at="2025-07-01T00:00:00Z"),
        # same token at a second address of the wallet; its sync time is older
        row(W1, "ETH", "ETH", "0.000000000000000001", pending="2.5", address=EVM_B, cobo_wallet_id="treasury",
            updated_at="2025-05-01T00:00:00Z", balance_updated_at="2025-05-02T00:00:00Z"),
    ]
    srv.dataset.wallets[W1][5]["balance_updated_at"] = None   # falls back to updated_at


# -- the client --------------------------------------------------------------
async def test_exact_amounts_merge_and_tokens(srv):
    hand_made_wallet(srv)
    [result] = await fetch_all(srv)
    assert result.state is SourceState.OK and result.upstream_calls == 1
    [wallet] = result.wallets
    assert (wallet.kind, wallet.local_id, wallet.provider, wallet.label) == (WalletKind.CUSTODIAL, W1, "cobo", "treasury")
    assert wallet.id == ids.wallet_id("COBO", "alice", W1) and wallet.chain is None and wallet.address is None
    by_id = {h.token.id: h for h in result.holdings}
    assert len(result.holdings) == 6   # 7 rows, ETH merged across two addresses

    eth = by_id["eip155:1/slip44:60"]
    assert eth.token.id == "eip155:1/slip44:60"
    # total of each row (amount + pending + locked), summed exactly
    assert eth.amount == Decimal("1.234567890123456789") + Decimal("2.500000000000000001")
    assert str(eth.amount) == "3.734567890123456790"
    assert eth.available == Decimal("1.234567890123456790")
    assert eth.pending == Decimal("2.5") and eth.locked == Decimal("0")
    assert eth.amount_raw == 3734567890123456790 and eth.precision is AmountPrecision.EXACT
    assert eth.updated_at == datetime(2025, 5, 2, tzinfo=timezone.utc)
    assert eth.id == ids.holding_id("COBO", "alice", W1, "eip155:1/slip44:60")
    assert eth.price is None and eth.value is None

    usdc = by_id["eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"]
    assert usdc.token.chain.id == "eip155:1" and usdc.token.decimals == 6
    assert (usdc.amount, usdc.available, usdc.pending, usdc.locked) == (
        Decimal("1012.750001"), Decimal("1000.5"), Decimal("0.25"), Decimal("12.000001"))
    assert usdc.amount_raw == 1012750001

    pepe = by_id["cobo:ETH_PEPE"]
    assert pepe.token.id == "cobo:ETH_PEPE" and pepe.token.decimals is None
    assert pepe.token.chain.id == "eip155:1" and pepe.amount_raw is None
    assert pepe.amount == Decimal("123456789.123456789012345678")

    testnet = by_id["eip155:11155111/erc20:0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"]
    assert testnet.token.is_testnet and testnet.token.symbol == "USDC" and testnet.amount == Decimal("50")

    sol = by_id["solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp/slip44:501"]
    assert sol.amount == 0 and sol.amount_raw == 0
    sol_usdc = by_id["solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp/token:EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"]
    assert sol_usdc.amount == Decimal("7.3") and sol_usdc.available == Decimal("7.1")   # total wins over amount
    assert sol_usdc.updated_at == datetime(2025, 7, 1, tzinfo=timezone.utc)

    [params] = requests_log(srv)
    assert params == {"wallet_uuid": W1, "limit": "200"}


async def test_pages_over_200_rows_and_last_page_cursor_trap(srv):
    rows = [sim.balance_row(W1, "ETH", "ETH", "1.000000000000000001", address=EVM_A)]
    rows += [sim.balance_row(W1, f"ETH_TKN{i}", "ETH", f"{i}.5", address=EVM_A) for i in range(448)]
    rows += [sim.balance_row(W1, "ETH", "ETH", "2.000000000000000002", address=EVM_B)]   # page 3
    srv.dataset.wallets[W1] = rows
    [result] = await fetch_all(srv)
    assert result.state is SourceState.OK
    assert result.upstream_calls == 3 and srv.control.requests == 3
    log = requests_log(srv)
    assert "after" not in log[0] and all("offset" not in p for p in log)
    assert all(p["limit"] == "200" and p["wallet_uuid"] == W1 for p in log)
    assert log[1]["after"] == sim._cursor(rows[199]) and log[2]["after"] == sim._cursor(rows[399])
    assert len(result.holdings) == 449
    eth = next(h for h in result.holdings if h.token.id == "eip155:1/slip44:60")
    assert eth.amount == Decimal("3.000000000000000003")
    assert next(h for h in result.holdings if h.token.id == "cobo:ETH_TKN447").amount == Decimal("447.5")

    # the last page still carries an `after` cursor: only has_more says stop
    async with httpx.AsyncClient() as http:
        last = (await http.get(srv.url + sim.PATH, headers={"X-API-Key": KEY},
                               params={"wallet_uuid": W1, "limit": 200, "after": log[2]["after"]})).json()
    assert last["meta"]["has_more"] is False and last["meta"]["after"] and len(last["result"]) == 50


async def test_exactly_one_full_page_is_one_call(srv):
    srv.dataset.wallets[W1] = [sim.balance_row(W1, f"ETH_T{i}", "ETH", "1") for i in range(200)]
    [result] = await fetch_all(srv)
    assert result.state is SourceState.OK and len(result.holdings) == 200
    assert srv.control.requests == 1


async def test_one_fetch_per_wallet_uuid(srv):
    hand_made_wallet(srv)
    srv.dataset.wallets[W2] = [sim.balance_row(W2, "BTC", "BTC", "0.12345678", address="bc1qxyz", chain_type="BTC")]
    first, second = await fetch_all(srv, (W1, W2, W1))
    assert [p["wallet_uuid"] for p in requests_log(srv)] == [W1, W2]
    assert second.wallets[0].local_id == W2 and second.wallets[0].label is None
    [btc] = second.holdings
    assert btc.amount == Decimal("0.12345678") and btc.amount_raw == 12345678
    assert btc.token.id == "bip122:000000000019d6689c085ae165831e93/slip44:0"


async def test_empty_wallet_is_ok_with_no_holdings(srv):
    [result] = await fetch_all(srv)
    assert result.state is SourceState.OK and len(result.wallets) == 1 and result.holdings == []


async def test_force_refresh_only_with_address(srv):
    hand_made_wallet(srv)
    [result] = await fetch_all(srv, force_address=EVM_B)
    assert result.state is SourceState.OK
    [params] = requests_log(srv)
    assert params["address"] == EVM_B and params["force_refresh"] == "true"
    assert srv.dataset.refreshed == [EVM_B]
    [eth] = result.holdings   # filtered to that address
    assert eth.amount == Decimal("2.500000000000000001")


# -- failures ----------------------------------------------------------------
def assert_failed(result, code: UpstreamCode, *secrets: str) -> None:
    assert result.state is SourceState.FAILED
    assert result.error.code == code.value
    assert result.holdings == [] and result.wallets == []
    for secret in (KEY, *secrets):
        assert secret not in result.error.message
    assert "suggestion" not in result.error.message.lower()


async def test_auth_failure(srv):
    hand_made_wallet(srv)
    [result] = await fetch_all(srv, api_key="wrong-secret-key")
    assert_failed(result, UpstreamCode.AUTH_FAILED, "wrong-secret-key")
    assert "Unauthorized" not in result.error.message   # upstream message never echoed


@pytest.mark.parametrize("fault, code", [
    (Fault("status", status=500), UpstreamCode.UNAVAILABLE),
    (Fault("status", status=503), UpstreamCode.UNAVAILABLE),
    (Fault("status", status=429, retry_after=3), UpstreamCode.RATE_LIMITED),
    (Fault("delay", delay_s=0.6), UpstreamCode.TIMEOUT),
    (Fault("malformed"), UpstreamCode.BAD_RESPONSE),
    (Fault("wrong_shape"), UpstreamCode.BAD_RESPONSE),
])
async def test_faults(srv, fault, code):
    hand_made_wallet(srv)
    srv.control.add_fault(fault)
    [result] = await fetch_all(srv, timeout_s=0.3)
    assert_failed(result, code)
    assert "injected" not in result.error.message


async def test_fault_on_a_later_page_yields_no_partial_holdings(srv, monkeypatch):
    srv.dataset.wallets[W1] = [sim.balance_row(W1, f"ETH_T{i}", "ETH", "1") for i in range(450)]
    faults = iter([None, Fault("status", status=503)])   # page 1 succeeds, page 2 fails
    monkeypatch.setattr(srv.control, "take_fault", lambda path: next(faults, None))
    [result] = await fetch_all(srv)
    assert_failed(result, UpstreamCode.UNAVAILABLE)
    assert srv.control.requests == 2


async def test_rows_of_another_wallet_and_number_amounts_are_refused(srv):
    srv.dataset.wallets[W1] = [sim.balance_row(W2, "ETH", "ETH", "1")]
    [result] = await fetch_all(srv)
    assert_failed(result, UpstreamCode.BAD_RESPONSE)

    srv.dataset.wallets[W1] = [sim.balance_row(W1, "ETH", "ETH", "1")]
    srv.dataset.wallets[W1][0]["amount"] = 1.5   # JSON number instead of the documented string
    [result] = await fetch_all(srv)
    assert_failed(result, UpstreamCode.BAD_RESPONSE)


async def test_success_false_on_200_is_bad_response():
    client = CoboClient(CoboSourceConfig(base_url="http://127.0.0.1:9", api_key="k"), None, REGISTRY)
    body = {"success": False, "message": "secret detail", "suggestion": "do x", "result": []}
    with pytest.raises(UpstreamError) as info:
        client._parse(UpstreamResponse(status=200, retry_after=None, body=body))
    assert info.value.code is UpstreamCode.BAD_RESPONSE and "secret detail" not in info.value.message
    with pytest.raises(UpstreamError) as info:
        client._parse(UpstreamResponse(status=403, retry_after=None, body=body))
    assert info.value.code is UpstreamCode.AUTH_FAILED


def misbehaving_server(meta_for_call):
    """A fake Cobo whose meta is chosen per call, to exercise the paging guards."""
    calls = []

    async def handler(request):
        calls.append(dict(request.query_params))
        return JSONResponse({"result": [sim.balance_row(W1, f"ETH_T{len(calls)}", "ETH", "1")],
                             "success": True, "meta": meta_for_call(len(calls))})
    return ServerThread(Starlette(routes=[Route(sim.PATH, handler)])), calls


@pytest.mark.parametrize("meta_for_call, expected_calls", [
    (lambda n: {"has_more": True, "after": "same-cursor"}, 2),          # cursor repeats
    (lambda n: {"has_more": True, "after": None}, 1),                   # more, but no cursor
    (lambda n: {"has_more": True, "after": f"c{n}"}, 4),                # runaway (MAX_PAGES patched)
])
async def test_paging_guards(monkeypatch, meta_for_call, expected_calls):
    monkeypatch.setattr(client_module, "MAX_PAGES", 4)
    server, calls = misbehaving_server(meta_for_call)
    with server:
        [result] = await fetch_all(server)
    assert_failed(result, UpstreamCode.BAD_RESPONSE)
    assert len(calls) == expected_calls


async def test_missing_meta_on_full_page_warns():
    async def handler(request):
        return JSONResponse({"result": [sim.balance_row(W1, f"ETH_T{i}", "ETH", "1") for i in range(200)]})
    with ServerThread(Starlette(routes=[Route(sim.PATH, handler)])) as server:
        [result] = await fetch_all(server)
    assert result.state is SourceState.PARTIAL and len(result.holdings) == 200   # possibly truncated
    assert [w.code for w in result.warnings] == ["POSSIBLY_TRUNCATED"]


def test_identities_keep_the_key_secret():
    client = CoboClient(CoboSourceConfig(base_url="http://x.test", api_key="top-secret"), None, REGISTRY)
    account = AccountConfig(id="bob", cobo=CoboAccount(wallet_uuids=[W1, W2, W1]))
    found = client.identities(account)
    assert [i.wallet_uuid for i in found] == [W1, W2]
    assert len(set(found)) == 2 and "top-secret" not in repr(found)
    assert client.identities(AccountConfig(id="carol")) == []


# -- the simulator's own behaviour (direct HTTP) ---------------------------------
async def get(srv, params=None, key=KEY):
    async with httpx.AsyncClient() as http:
        headers = {"X-API-Key": key} if key is not None else {}
        response = await http.get(srv.url + sim.PATH, params=params or {}, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize("params, key, status", [
    ({}, None, 401), ({}, "nope", 401),
    ({"limit": 0}, KEY, 422), ({"limit": 201}, KEY, 422), ({"limit": "ten"}, KEY, 422),
    ({"offset": -1}, KEY, 422), ({"wallet_uuid": "not-a-uuid"}, KEY, 422),
    ({"force_refresh": "maybe"}, KEY, 422), ({"after": "garbage"}, KEY, 400),
    ({"after": "x", "before": "y"}, KEY, 400),
])
async def test_simulator_validation(srv, params, key, status):
    code, body = await get(srv, params, key)
    assert code == status
    assert body["success"] is False and body["result"] == [] and body["message"] and body["suggestion"]


async def test_simulator_filters_defaults_and_legacy_offset(srv):
    rows = [sim.balance_row(W1, f"ETH_T{i}", "ETH" if i % 2 else "BASE_ETH", str(i), address=EVM_A) for i in range(120)]
    srv.dataset.wallets[W1] = rows
    hand = sim.balance_row(W2, "SOL", "SOL", "3", address=SOL_ADDR)
    srv.dataset.wallets[W2] = [hand]
    code, body = await get(srv)
    assert code == 200 and len(body["result"]) == 50 and body["meta"]["total"] == 121   # default limit, all wallets
    assert body["meta"]["has_more"] is True and body["meta"]["before"] is None
    assert body["meta"]["offset"] is None and body["meta"]["limit"] is None
    _, body = await get(srv, {"chain_id": "BASE_ETH", "limit": 200})
    assert len(body["result"]) == 60 and {r["chain_id"] for r in body["result"]} == {"BASE_ETH"}
    _, body = await get(srv, {"token_id": "ETH_T7"})
    assert [r["amount"] for r in body["result"]] == ["7"]
    _, body = await get(srv, {"address": SOL_ADDR.lower()})
    assert body["result"] == []   # base58 is case-sensitive
    _, body = await get(srv, {"address": EVM_A.lower(), "wallet_uuid": W1, "limit": 1})
    assert body["meta"]["total"] == 120
    # deprecated offset still works and fills meta.offset/limit
    _, body = await get(srv, {"wallet_uuid": W1, "offset": 100, "limit": 30})
    assert [r["token_id"] for r in body["result"]] == [f"ETH_T{i}" for i in range(100, 120)]
    assert body["meta"]["offset"] == 100 and body["meta"]["limit"] == 30 and body["meta"]["has_more"] is False
    # backward paging with `before`
    _, page2 = await get(srv, {"wallet_uuid": W1, "limit": 40, "after": sim._cursor(rows[39])})
    _, back = await get(srv, {"wallet_uuid": W1, "limit": 40, "before": page2["meta"]["before"]})
    assert [r["id"] for r in back["result"]] == [r["id"] for r in rows[:40]] and back["meta"]["has_more"] is False
    # force_refresh without address is ignored; with address it is honoured
    await get(srv, {"force_refresh": "true"})
    assert srv.dataset.refreshed == []
    _, body = await get(srv, {"force_refresh": "true", "address": SOL_ADDR})
    assert srv.dataset.refreshed == [SOL_ADDR] and body["result"][0]["balance_updated_at"] != hand["updated_at"]


def test_error_shape_and_source_block():
    ctype, body = sim.error_shape(503, "down")
    assert ctype == "application/json"
    assert json.loads(body) == {"success": False, "message": "down", "suggestion": json.loads(body)["suggestion"],
                                "result": [], "meta": None}
    assert sim.source_block("http://h:1") == {"base_url": "http://h:1", "api_key": KEY}


def test_populate_is_deterministic_and_has_the_traps():
    a, b = sim.Dataset(), sim.Dataset()
    block = sim.populate(a, "alice", random.Random(42), 12)
    assert block == sim.populate(b, "alice", random.Random(42), 12)
    assert a.wallets == b.wallets and 1 <= len(block["wallet_uuids"]) <= 2
    for u in block["wallet_uuids"]:
        assert str(uuid.UUID(u)) == u and uuid.UUID(u).version == 4
    for seed in range(10):
        ds = sim.Dataset()
        first = ds.wallets[sim.populate(ds, "alice", random.Random(seed), 6 + seed)["wallet_uuids"][0]]
        token_ids = [r["token_id"] for r in first]
        assert any(t in ("SETH", "SETH_USDC") for t in token_ids)
        assert any(REGISTRY.token_alias(Source.COBO, t) is None for t in token_ids)
        assert any(r["amount"] == "0" for r in first)
        assert len(token_ids) == len(set(token_ids)) + 1     # one token at two addresses
        for r in first:
            total = Decimal(r["amount"]) + Decimal(r["pending"]) + Decimal(r["locked"])
            assert isinstance(r["amount"], str) and Decimal(r["total"]) == total


async def test_populated_world_reads_back_with_pagination(srv):
    block = sim.populate(srv.dataset, "alice", random.Random(3), 400)
    results = await fetch_all(srv, block["wallet_uuids"])
    assert all(r.state is SourceState.OK for r in results)
    rows = srv.dataset.rows()
    assert sum(len(r.holdings) for r in results) == len(rows) - len(block["wallet_uuids"])
    per_wallet = [len(srv.dataset.wallets[u]) for u in block["wallet_uuids"]]
    assert min(per_wallet) > 200   # every wallet needs 2+ pages
    assert srv.control.requests == sum(-(-n // 200) for n in per_wallet)
    expected = sum(Decimal(r["total"]) for r in rows)
    assert sum(h.amount for r in results for h in r.holdings) == expected
