"""Cryptofuse: simulator over real HTTP, client against it."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pydantic
import pytest
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from gateway.config import AccountConfig
from gateway.sources.cryptofuse.config import CryptofuseAccount, CryptofuseSourceConfig
from gateway.domain.errors import UpstreamError
from gateway.domain.records import AmountPrecision, SourceState, WalletKind
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.server.serving import ServerThread
from gateway.sources.cryptofuse import simulator as sim
from gateway.simulation.control import Fault, SimControl
from gateway.sources.cryptofuse.client import BalancesResponse, CryptofuseClient, CryptofuseIdentity
from tests.tooling import FAULT_CODES

TOKEN = "cf-secret-token-alice"
USDT_ETH = "eip155:1/erc20:0xdAC17F958D2ee523a2206206994597C13D831ec7"
REGISTRY = TokenRegistry.default()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def world():
    dataset = sim.Dataset()
    dataset.add_user(
        TOKEN,
        account={"USDTERC20": Decimal("5000"), "USDCERC20": Decimal("2500.5"),
                 "ETH": Decimal("5.123456499999999999"), "FOOBAR": Decimal("12.3456789"),
                 "usdterc20": Decimal("0.000001")},                  # same token, other spelling
        sub_accounts={"USDTERC20": Decimal("1500"), "ETH": Decimal("0.0000004123")},
        statistics={"total_deposits": 1234, "total_withdrawals": 456},
        history=[
            {"timestamp": _ts("2025-01-15T09:30:00Z"), "currency": "USDTERC20", "type": "deposit",
             "amount": Decimal("500"), "balance_after": Decimal("5500")},
            {"timestamp": _ts("2025-01-14T15:20:00Z"), "currency": "USDTERC20", "type": "withdrawal",
             "amount": Decimal("200"), "balance_after": Decimal("5000")},
            {"timestamp": _ts("2025-01-14T10:00:00Z"), "currency": "ETH", "type": "fee",
             "amount": Decimal("0.0012345678"), "balance_after": None},
            {"timestamp": _ts("2025-01-13T08:00:00Z"), "currency": "FOOBAR", "type": "trade",
             "amount": Decimal("1.5"), "balance_after": Decimal("12.345679")},
        ])
    dataset.add_user("only-account", account={"BTC": Decimal("0.12345678")})
    dataset.add_user("only-stats", statistics={"total_deposits": 0, "total_withdrawals": 0})
    control = SimControl()
    with ServerThread(sim.create_app(dataset, control)) as server:
        yield server, dataset, control


@pytest.fixture
def server(world):
    server, _, control = world
    control.reset()
    return server


def _client(http: httpx.AsyncClient, url: str, timeout_s: float = 2.0) -> CryptofuseClient:
    return CryptofuseClient(CryptofuseSourceConfig(base_url=url, timeout_s=timeout_s, max_retries=0), http, REGISTRY)


def _identity(token: str = TOKEN) -> CryptofuseIdentity:
    return CryptofuseIdentity(account_id="alice", token=SecretStr(token))


def _http() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AiohttpTransport())


async def test_balances_exact_two_wallets(server, world):
    control = world[2]
    async with _http() as http:
        raw = (await http.get(server.url + "/user/balances/", headers={"Authorization": f"Bearer {TOKEN}"})).json()
        result = await _client(http, server.url).fetch(_identity())
    # the simulator rounds at the source: 6-dp strings for every currency
    assert raw["account"]["ETH"] == "5.123456" and raw["account"]["USDCERC20"] == "2500.500000"
    assert raw["sub_accounts"]["ETH"] == "0.000000"
    assert raw["statistics"] == {"total_deposits": 1234, "total_withdrawals": 456}
    assert result.state is SourceState.OK and result.error is None
    assert result.upstream_calls == 1 and control.by_path["/user/balances/"] == 2
    assert [(w.local_id, w.kind, w.label, w.provider) for w in result.wallets] == [
        ("account", WalletKind.EXCHANGE_ACCOUNT, "Main account", "cryptofuse"),
        ("sub_accounts", WalletKind.SUB_ACCOUNTS, "Sub-accounts (aggregate)", "cryptofuse")]
    assert all(w.account_id == "alice" and w.chain is None for w in result.wallets)
    by = {(h.wallet.local_id, h.token.id): h for h in result.holdings}
    assert len(by) == len(result.holdings) == 6
    usdt = by[("account", USDT_ETH)]
    assert usdt.amount == Decimal("5000.000001")   # USDTERC20 + usdterc20 merged, exact sum
    assert usdt.token.decimals == 6 and usdt.token.chain.id == "eip155:1"
    assert by[("account", "eip155:1/slip44:60")].amount == Decimal("5.123456")
    assert str(by[("account", "eip155:1/slip44:60")].amount) == raw["account"]["ETH"]
    assert by[("sub_accounts", USDT_ETH)].amount == Decimal("1500.000000")
    assert by[("sub_accounts", "eip155:1/slip44:60")].amount == Decimal(0)
    foo = by[("account", "cryptofuse:FOOBAR")]
    assert foo.amount == Decimal("12.345679") and foo.token.decimals is None and foo.token.symbol == "FOOBAR"
    for h in result.holdings:
        assert h.precision is AmountPrecision.ROUNDED and h.amount_raw is None
        assert h.price is None and h.value is None and h.updated_at is None
        assert isinstance(h.amount, Decimal) and h.source.value == "CRYPTOFUSE"
    assert len({h.id for h in result.holdings}) == 6 and len({w.id for w in result.wallets}) == 2


async def test_identities(server):
    async with _http() as http:
        client = _client(http, server.url)
        account = AccountConfig(id="alice", cryptofuse=CryptofuseAccount(token=TOKEN))
        assert client.identities(account) == [_identity()]
        assert client.identities(AccountConfig(id="carol")) == []
        assert TOKEN not in repr(_identity()) and hash(_identity()) == hash(_identity())


async def test_wallets_only_when_present(server):
    async with _http() as http:
        client = _client(http, server.url)
        only_account = await client.fetch(_identity("only-account"))
        only_stats = await client.fetch(_identity("only-stats"))
    assert [w.local_id for w in only_account.wallets] == ["account"]
    assert [(h.token.id, h.amount) for h in only_account.holdings] == [
        ("bip122:000000000019d6689c085ae165831e93/slip44:0", Decimal("0.123457"))]
    assert only_stats.state is SourceState.OK and only_stats.wallets == [] and only_stats.holdings == []


async def test_auth_failure(server):
    async with _http() as http:
        result = await _client(http, server.url).fetch(_identity("wrong-token-xyz"))
    assert result.state is SourceState.FAILED and result.error.code == "UPSTREAM_AUTH_FAILED"
    assert result.holdings == [] and result.wallets == []
    assert "wrong-token-xyz" not in result.error.message and "authentication_failed" not in result.error.message


@pytest.mark.parametrize("fault, code", FAULT_CODES)
async def test_faults_fail_without_holdings(server, world, fault, code):
    world[2].add_fault(fault)
    async with _http() as http:
        result = await _client(http, server.url, timeout_s=0.3).fetch(_identity())
    assert result.state is SourceState.FAILED and result.error.code == code
    assert result.holdings == [] and result.wallets == []
    assert TOKEN not in result.error.message and "injected" not in result.error.message
    assert world[2].requests == 1


def test_amounts_must_be_strings():
    # a JSON number (parsed as Decimal) or a non-numeric string is a bad response, never a guess
    for bad in ({"account": {"ETH": Decimal("1.5")}}, {"account": {"ETH": "1,5"}},
                {"sub_accounts": {"ETH": None}}, {"unexpected": [1, 2, 3]}, {}):
        with pytest.raises(pydantic.ValidationError):
            BalancesResponse.model_validate(bad)
    ok = BalancesResponse.model_validate({"account": {"ETH": "1.500000"}, "extra": 1, "sub_accounts": None})
    assert ok.account == {"ETH": "1.500000"} and ok.sub_accounts is None


async def test_simulator_validation(server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with _http() as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            for path in ("/user/balances/", "/user/balances/history/"):
                r = await http.get(server.url + path, headers=headers)
                assert r.status_code == 401
                assert r.json() == {"error": {"code": "authentication_failed",
                                              "message": "Invalid or missing authentication token", "details": {}}}
        for query in ("limit=-1", "offset=-5", "limit=abc", "offset=1.5", f"limit={sim.HISTORY_MAX_LIMIT + 1}"):
            r = await http.get(server.url + "/user/balances/history/?" + query, headers=auth)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_parameter", query
        # both spellings of each path answer directly (no redirect)
        for path in ("/user/balances", "/user/balances/history"):
            r = await http.get(server.url + path, headers=auth)
            assert r.status_code == 200
        r = (await http.get(server.url + "/user/balances/history/", headers=auth)).json()
        assert (r["total"], r["limit"], r["offset"], len(r["history"])) == (4, sim.HISTORY_DEFAULT_LIMIT, 0, 4)
        assert r["history"][2] == {"timestamp": "2025-01-14T10:00:00Z", "currency": "ETH", "type": "fee",
                                   "amount": "0.001235", "balance_after": None}
        r = (await http.get(server.url + "/user/balances/history/?currency=usdterc20&type=DEPOSIT",
                            headers=auth)).json()
        assert r["total"] == 1 and r["history"][0]["balance_after"] == "5500.000000"
        r = await http.get(server.url + "/nowhere", headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert sim.error_shape(503, "down") == (
        "application/json", b'{"error":{"code":"service_unavailable","message":"down","details":{}}}')


async def test_history_page(server, world):
    control = world[2]
    async with _http() as http:
        client = _client(http, server.url)
        page = await client.history_page(_identity(), currency="USDTERC20", type=None, limit=1, offset=1)
        assert (page.total, page.limit, page.offset) == (2, 1, 1)
        [entry] = page.entries
        assert entry.timestamp == datetime(2025, 1, 14, 15, 20, tzinfo=timezone.utc)
        assert (entry.type, entry.currency, entry.token.id) == ("withdrawal", "USDTERC20", USDT_ETH)
        assert entry.amount == Decimal("200.000000") and entry.balance_after == Decimal("5000.000000")
        assert control.log[-1]["params"] == [("currency", "USDTERC20"), ("limit", "1"), ("offset", "1")]
        all_ = await client.history_page(_identity(), currency=None, type=None, limit=100, offset=0)
        assert control.log[-1]["params"] == [("limit", "100"), ("offset", "0")]
        assert [e.type for e in all_.entries] == ["deposit", "withdrawal", "fee", "trade"]
        fee, trade = all_.entries[2], all_.entries[3]
        assert fee.amount == Decimal("0.001235") and fee.balance_after is None
        assert trade.token.id == "cryptofuse:FOOBAR" and trade.token.decimals is None
        with pytest.raises(UpstreamError) as auth_err:
            await client.history_page(_identity("bad-history-token"), currency=None, type=None, limit=5, offset=0)
        assert auth_err.value.code.value == "UPSTREAM_AUTH_FAILED" and "bad-history-token" not in auth_err.value.message
        control.add_fault(Fault("wrong_shape", times=1))
        with pytest.raises(UpstreamError) as shape_err:
            await client.history_page(_identity(), currency=None, type=None, limit=5, offset=0)
        assert shape_err.value.code.value == "UPSTREAM_BAD_RESPONSE"
        control.add_fault(Fault("status", status=503, times=1))
        with pytest.raises(UpstreamError) as down:
            await client.history_page(_identity(), currency=None, type=None, limit=5, offset=0)
        assert down.value.code.value == "UPSTREAM_UNAVAILABLE"


def test_populate_deterministic_and_traps():
    a, b = sim.Dataset(), sim.Dataset()
    block = sim.populate(a, "bob", random.Random(42), 12)
    assert block == sim.populate(b, "bob", random.Random(42), 12) == {"token": "cryptofuse-token-bob"}
    assert a.users == b.users
    user = a.users[block["token"]]
    account, subs = user["account"], user["sub_accounts"]
    assert len(account) + len(subs) == 12 and set(subs) <= set(account)
    assert any(REGISTRY.token_alias(Source.CRYPTOFUSE, t) is None for t in account)        # unknown ticker
    assert any(v == 0 for v in [*account.values(), *subs.values()])                  # zero balance
    assert any(v != 0 and sim.six_dp(v) == "0.000000" for v in account.values())     # rounds away
    assert all(isinstance(v, int) for v in user["statistics"].values())
    assert sim.source_block("http://x") == {"base_url": "http://x"}


async def test_populate_large_reads_every_history_page():
    dataset, control = sim.Dataset(), SimControl()
    block = sim.populate(dataset, "big", random.Random(3), 400)
    user = dataset.users[block["token"]]
    history = user["history"]
    assert len(user["account"]) + len(user["sub_accounts"]) == 400 and len(history) == 1200
    # newest first; each entry's balance_after follows from the previous one of its currency,
    # and the newest one is today's balance as the API shows it
    assert all(x["timestamp"] > y["timestamp"] for x, y in zip(history, history[1:]))
    last: dict[str, Decimal] = {}
    for e in reversed(history):
        if e["currency"] in last:
            assert e["balance_after"] - last[e["currency"]] in (e["amount"], -e["amount"])
        assert e["amount"] > 0 and e["balance_after"] >= 0
        last[e["currency"]] = e["balance_after"]
    assert all(sim.six_dp(user["account"][t]) == sim.six_dp(b) for t, b in last.items())
    assert {e["type"] for e in history} == set(sim.HISTORY_TYPES)
    with ServerThread(sim.create_app(dataset, control)) as server:
        async with _http() as http:
            client = _client(http, server.url)
            identity = _identity(block["token"])
            fetched = await client.fetch(identity)
            entries, offset = [], 0
            while True:
                page = await client.history_page(identity, currency=None, type=None, limit=100, offset=offset)
                entries += page.entries
                offset += len(page.entries)
                if not page.entries or offset >= page.total:
                    break
    assert fetched.state is SourceState.OK and len(fetched.holdings) == 400
    assert any(h.token.decimals is None for h in fetched.holdings)
    assert len(entries) == 1200 and control.by_path["/user/balances/history/"] == 12
    assert [e.amount for e in entries] == [e["amount"] for e in history]
