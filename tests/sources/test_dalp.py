"""DALP client against the DALP simulator over real HTTP (and a stub server for odd pages)."""
from __future__ import annotations

import json
import math
import random
from decimal import Decimal

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport
import msgspec
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain import ids
from gateway.config import AccountConfig
from gateway.sources.dalp.config import DalpAccount, DalpSourceConfig
from gateway.domain.evm import checksum
from gateway.domain.records import AmountPrecision, PriceReliability, SourceState, WalletKind
from gateway.domain.tokens import TokenRegistry
from gateway.server.serving import ServerThread
from gateway.sources.dalp import simulator as sim
from gateway.simulation.control import Fault
from gateway.sources.dalp.client import PATH, BalancesPage, DalpClient, DalpIdentity, split_value

REGISTRY = TokenRegistry.default()
EOA = "0x1111111111111111111111111111111111111aBc"
SMART = "0x2222222222222222222222222222222222222dEf"
OTHER = "0x3333333333333333333333333333333333333333"
ALICE_KEY = "alice-secret-dalp-key"
ACGB29 = "0xc3e2eDc114B03205d7A72CFECDC3f9d8cFa9A28f"    # in the registry (dalp.toml), 18 decimals
TBL25Q4 = "0xdC407211BeD2b2379246DF14876042bCd43C3d5b"   # in the registry, 6 decimals, UNKNOWN yield
MYSTERY = "0x4444444444444444444444444444444444444444"   # unknown to the registry
UNPRICED = "0x5555555555555555555555555555555555555555"
ZERO = "0x6666666666666666666666666666666666666666"


def _token(address: str, symbol: str, decimals: int, **kw) -> sim.DalpToken:
    return sim.DalpToken(address=address, name=f"{symbol} token", symbol=symbol, type=kw.pop("type", "equity"),
                         decimals=decimals, **kw)


def _dataset() -> sim.Dataset:
    ds = sim.Dataset()
    ds.participants["alice"] = sim.Participant(id="alice", wallets=[EOA, SMART], org="org-a", rows=[
        # 1 + 2 tokens at 33.3333 EUR -> 99.9999 -> "100.00", split 33.33 / 66.67
        sim.AssetRow(_token(ACGB29, "ACGB29", 18, type="bond", bond_matured=False,
                            yield_schedule=OTHER, yield_denomination=sim.EURDEP),
                     {EOA: (10**18, 0), SMART: (2 * 10**18, 5 * 10**17)}, price=Decimal("33.3333")),
        sim.AssetRow(_token(TBL25Q4, "TBL25Q4", 6, type="bond", bond_matured=False, yield_schedule=OTHER),
                     {SMART: (1_234_567_891, 0)}, price=Decimal("99.5"), price_reliable=False),
        sim.AssetRow(_token(MYSTERY, "MYST", 6), {EOA: (7_000_001, 1)}, price=Decimal("2")),
        sim.AssetRow(_token(UNPRICED, "NOPX", 18), {SMART: (123456789012345678901, 0)}, price=None),
        sim.AssetRow(_token(ZERO, "ZERO", 18), {EOA: (0, 0)}, price=Decimal("1")),
    ])
    ds.participants["bob"] = sim.Participant(id="bob", wallets=[OTHER], org="org-b",
                                             rows=[sim.AssetRow(_token(MYSTERY, "MYST", 6), {OTHER: (5, 0)})])
    ds.participants["ghost"] = sim.Participant(id="ghost", wallets=[])
    ds.keys |= {ALICE_KEY: "alice", "bob-key": "bob", "ghost-key": "ghost"}
    ds.org_readers["org-a-reader"] = "org-a"
    return ds


@pytest.fixture(scope="module")
def server():
    dataset = _dataset()
    app = sim.create_app(dataset)
    with ServerThread(app) as srv:
        srv.dataset, srv.control = dataset, app.control
        yield srv


@pytest.fixture(autouse=True)
def _reset(server):
    server.control.reset()
    server.dataset.max_page_rows = None
    yield


def _client(http: httpx.AsyncClient, url: str, **kw) -> DalpClient:
    cfg = {"base_url": url, "api_key": sim.ADMIN_KEY, "chain_id": "eip155:1", "base_currency": "EUR",
           "timeout_s": 1.0, "max_retries": 0} | kw
    return DalpClient(DalpSourceConfig(**cfg), http, REGISTRY)


async def _fetch(url: str, account: AccountConfig, **kw):
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        client = _client(http, url, **kw)
        [identity] = client.identities(account)
        return await client.fetch(identity)


ALICE = AccountConfig(id="alice", dalp=DalpAccount(api_key=ALICE_KEY))


def _by(fetch, address: str, wallet: str):
    return next(h for h in fetch.holdings if h.token.address and h.token.address.lower() == address.lower()
                and h.wallet.local_id == wallet.lower())


# -- normalization ---------------------------------------------------------

async def test_exact_amounts_wallets_and_eur_value_split(server):
    f = await _fetch(server.url, ALICE)
    assert f.state is SourceState.OK and f.error is None and f.warnings == []
    assert f.upstream_calls == 1
    # wallets: one per linked address, lowercase local id, EIP-55 address, configured chain
    assert sorted(w.local_id for w in f.wallets) == sorted([EOA.lower(), SMART.lower()])
    for w in f.wallets:
        assert w.kind is WalletKind.ONCHAIN_ADDRESS and w.provider == "dalp"
        assert w.address == checksum(w.local_id) and w.chain.id == "eip155:1" and w.chain.name == "Ethereum"
        assert w.id == ids.wallet_id("DALP", "alice", w.local_id)
    # the zero balance is not served; five holdings from four rows
    assert len(f.holdings) == 5 and not any(h.token.symbol == "ZERO" for h in f.holdings)

    a, b = _by(f, ACGB29, EOA), _by(f, ACGB29, SMART)
    assert a.token.id == f"eip155:1/erc20:{ACGB29}" and a.token.asset_key == "acgb29" and a.token.decimals == 18
    assert (a.amount, a.locked, a.available) == (Decimal("1.000000000000000000"), Decimal(0), Decimal(1))
    assert (b.amount, b.locked, b.available) == (Decimal("2"), Decimal("0.5"), Decimal("1.5"))
    assert str(b.amount) == "2.000000000000000000" and b.amount_raw == 2 * 10**18
    assert a.precision is AmountPrecision.EXACT
    assert a.id == ids.holding_id("DALP", "alice", EOA.lower(), a.token.id)
    # valueInBaseCurrency "100.00" EUR split 1:2 with the remainder on the last wallet
    assert (a.value.amount, a.value.currency) == (Decimal("33.33"), "EUR")
    assert (b.value.amount, b.value.currency) == (Decimal("66.67"), "EUR")
    assert a.value.amount + b.value.amount == Decimal("100.00")
    assert a.price.unit == Decimal("33." + "3" * 26) and a.price.currency == "EUR"   # 28 digits
    assert a.price.reliability is PriceReliability.REPORTED

    t = _by(f, TBL25Q4, SMART)
    assert str(t.amount) == "1234.567891" and t.amount_raw == 1_234_567_891
    assert t.value.amount == Decimal("122839.51") and t.price.reliability is PriceReliability.UNRELIABLE
    # the UNKNOWN yield denomination never becomes a token
    assert not any(h.token.symbol == "UNKNOWN" for h in f.holdings)


async def test_unknown_token_and_null_value(server):
    f = await _fetch(server.url, ALICE)
    m = _by(f, MYSTERY, EOA)
    assert m.token.id == f"eip155:1/erc20:{checksum(MYSTERY)}" and m.token.symbol == "MYST"
    assert m.token.decimals == 6 and REGISTRY.token(m.token.id) is None    # payload decimals, not a guess
    assert str(m.amount) == "7.000001" and str(m.locked) == "0.000001" and m.amount_raw == 7_000_001
    assert m.value.amount == Decimal("14.00")
    n = _by(f, UNPRICED, SMART)
    assert str(n.amount) == "123.456789012345678901" and n.amount_raw == 123456789012345678901
    assert n.price is None and n.value is None       # null, never 0


async def test_filter_wallet_with_source_level_key_expands_to_participant(server):
    account = AccountConfig(id="alice2", dalp=DalpAccount(wallet=EOA))
    f = await _fetch(server.url, account)
    assert f.state is SourceState.OK
    [entry] = server.control.log
    params = dict(entry["params"])
    assert params["filter[wallet]"] == EOA and params["page[limit]"] == "200"
    assert params["page[offset]"] == "0" and params["sort"] == "-balance"
    # the override still covers both linked wallets of the owner
    assert {w.local_id for w in f.wallets} == {EOA.lower(), SMART.lower()}
    assert all(h.account_id == "alice2" for h in f.holdings)


async def test_org_reader_forbidden_outside_org(server):
    ok = await _fetch(server.url, AccountConfig(id="x", dalp=DalpAccount(wallet=SMART)), api_key="org-a-reader")
    assert ok.state is SourceState.OK and len(ok.holdings) == 5
    bad = await _fetch(server.url, AccountConfig(id="y", dalp=DalpAccount(wallet=OTHER)), api_key="org-a-reader")
    assert bad.state is SourceState.FAILED and bad.error.code == "UPSTREAM_AUTH_FAILED"
    assert "FORBIDDEN" in bad.error.message and "org-a-reader" not in bad.error.message and bad.holdings == []


@pytest.mark.parametrize("key", ["wrong-key", "ghost-key"])   # unknown key; participant without wallet
async def test_auth_failure(server, key):
    f = await _fetch(server.url, AccountConfig(id="a", dalp=DalpAccount(api_key=key)))
    assert f.state is SourceState.FAILED and f.error.code == "UPSTREAM_AUTH_FAILED"
    assert f.holdings == [] and f.wallets == [] and key not in f.error.message


# -- paging ----------------------------------------------------------------

async def test_paging_short_pages_reads_every_row_once(server):
    ds = server.dataset
    block = sim.populate(ds, "bulk", random.Random(11), 400)
    ds.max_page_rows = 37
    served = [r for r in ds.participants["participant-bulk"].rows if r.total() > 0]
    f = await _fetch(server.url, AccountConfig(id="bulk", dalp=DalpAccount(**block)))
    assert f.state is SourceState.OK and f.warnings == []
    pages = math.ceil(len(served) / 37)
    assert server.control.requests == f.upstream_calls == pages == 11
    offsets = [dict(e["params"])["page[offset]"] for e in server.control.log]
    assert offsets == [str(37 * i) for i in range(pages)]
    assert all(dict(e["params"])["page[limit]"] == "200" for e in server.control.log)
    tokens = {h.token.address.lower() for h in f.holdings}
    assert tokens == {r.token.address.lower() for r in served}
    assert len(f.holdings) == sum(sum(1 for b, _ in r.balances.values() if b > 0) for r in served)
    # exact totals: per-wallet values sum to each row's figure
    for row in served[:50]:
        hs = [h for h in f.holdings if h.token.address.lower() == row.token.address.lower()]
        expected = sim._value(row)
        if expected is None:
            assert all(h.value is None for h in hs)
        else:
            assert sum(h.value.amount for h in hs) == expected


def _stub(pages: dict[int, dict]) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return Response(json.dumps(pages[int(request.query_params["page[offset]"])]), media_type="application/json")
    return Starlette(routes=[Route(PATH, endpoint)])


def _row(token: str, value: str, by_wallet: list | None, v: str | None = "10.00") -> dict:
    return {"id": token, "value": value, "frozen": "0", "available": value, "valueInBaseCurrency": v,
            "priceInBaseCurrencyReliable": True,
            "token": {"id": token, "name": "T", "symbol": "T", "decimals": 2, "yield": None},
            "byWallet": by_wallet}


async def test_empty_page_before_total_is_partial():
    pages = {0: {"data": [_row(MYSTERY, "1.00", None)], "meta": {"total": 5}},
             1: {"data": [], "meta": {"total": 5}}}
    with ServerThread(_stub(pages)) as srv:
        f = await _fetch(srv.url, ALICE)
    assert f.state is SourceState.PARTIAL and [w.code for w in f.warnings] == ["INCOMPLETE_PAGING"]
    assert f.upstream_calls == 2 and len(f.holdings) == 1
    # no byWallet: one aggregate participant wallet
    [w] = f.wallets
    assert (w.local_id, w.kind, w.label, w.address) == ("participant", WalletKind.SMART_ACCOUNT,
                                                         "DALP participant (aggregate)", None)
    assert f.holdings[0].value.amount == Decimal("10.00")


async def test_wallet_split_mismatch_and_duplicate_wallet():
    wallets = [{"wallet": EOA, "value": "1.00", "frozen": "0", "available": "1.00"},
               {"wallet": EOA.lower(), "value": "2.00", "frozen": "0", "available": "2.00"},
               {"wallet": SMART, "value": "1.00", "frozen": "0", "available": "1.00"}]
    pages = {0: {"data": [_row(MYSTERY, "3.00", wallets, "7.00")], "meta": {"total": 1}}}
    with ServerThread(_stub(pages)) as srv:
        f = await _fetch(srv.url, ALICE)
    assert f.state is SourceState.OK and [w.code for w in f.warnings] == ["WALLET_SPLIT_MISMATCH"]
    eoa = _by(f, MYSTERY, EOA)
    assert eoa.amount == Decimal("3.00") and eoa.amount_raw == 300          # merged exactly
    assert sum(h.value.amount for h in f.holdings) == Decimal("7.00")       # still the row's figure
    assert _by(f, MYSTERY, SMART).value.amount == Decimal("1.75")


async def test_numeric_amount_is_bad_response():
    row = _row(MYSTERY, "1.00", None)
    row["value"] = 1.0
    with ServerThread(_stub({0: {"data": [row], "meta": {"total": 1}}})) as srv:
        f = await _fetch(srv.url, ALICE)
    assert f.state is SourceState.FAILED and f.error.code == "UPSTREAM_BAD_RESPONSE" and f.holdings == []


# -- faults ----------------------------------------------------------------

@pytest.mark.parametrize("fault, code", [
    (Fault(kind="status", status=500), "UPSTREAM_UNAVAILABLE"),
    (Fault(kind="status", status=503, retry_after=3), "UPSTREAM_UNAVAILABLE"),
    (Fault(kind="status", status=429, retry_after=1), "UPSTREAM_RATE_LIMITED"),
    (Fault(kind="delay", delay_s=0.6), "UPSTREAM_TIMEOUT"),
    (Fault(kind="malformed"), "UPSTREAM_BAD_RESPONSE"),
    (Fault(kind="wrong_shape"), "UPSTREAM_BAD_RESPONSE"),
])
async def test_faults_fail_without_holdings(server, fault, code):
    server.control.add_fault(fault)
    f = await _fetch(server.url, ALICE, timeout_s=0.3)
    assert f.state is SourceState.FAILED and f.error.code == code
    assert f.holdings == [] and f.wallets == []
    assert ALICE_KEY not in f.error.message and sim.ADMIN_KEY not in f.error.message


async def test_fault_on_second_page_discards_first(server):
    server.dataset.max_page_rows = 2        # alice's 4 rows -> 2 pages

    async def after_first(response: httpx.Response) -> None:
        server.control.add_fault(Fault(kind="status", status=503, times=1))

    async with httpx.AsyncClient(transport=AiohttpTransport(), event_hooks={"response": [after_first]}) as http:
        client = _client(http, server.url)
        f = await client.fetch(client.identities(ALICE)[0])
    assert server.control.requests == 2
    assert f.state is SourceState.FAILED and f.error.code == "UPSTREAM_UNAVAILABLE" and f.holdings == []


# -- simulator contract ----------------------------------------------------

async def test_simulator_parameter_validation_and_links(server):
    h = {"X-Api-Key": ALICE_KEY}
    async with httpx.AsyncClient(base_url=server.url, transport=AiohttpTransport()) as http:
        for params in ({"page[limit]": "201"}, {"page[limit]": "0"}, {"page[offset]": "-1"},
                       {"sort": "tokenDecimals"}, {"sort": "-nope"}, {"filter[nope]": "x"}, {"groupBy": "x"},
                       {"filter[tokenDecimals]": "six"}):
            r = await http.get(PATH, params=params, headers=h)
            assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST" and r.json()["status"] == 400, params
        r = await http.get(PATH, params={"page[limit]": "2", "page[offset]": "1"}, headers=h)
        body = r.json()
        assert [row["token"]["symbol"] for row in body["data"]] == ["NOPX", "MYST"]   # -balance default
        assert body["meta"]["total"] == 4 and body["data"][1]["valueInBaseCurrency"] == "14.00"
        assert body["links"] == {"self": "/v2/user-asset-balances?page[limit]=2&page[offset]=1",
                                 "first": "/v2/user-asset-balances?page[limit]=2&page[offset]=0",
                                 "prev": "/v2/user-asset-balances?page[limit]=2&page[offset]=0",
                                 "next": "/v2/user-asset-balances?page[limit]=2&page[offset]=3",
                                 "last": "/v2/user-asset-balances?page[limit]=2&page[offset]=2"}
        r = await http.get(PATH, params={"sort": "tokenSymbol", "filter[tokenDecimals]": "6"}, headers=h)
        assert [row["token"]["symbol"] for row in r.json()["data"]] == ["MYST", "TBL25Q4"]
        r = await http.get(PATH, params={"filter[q]": "acgb"}, headers=h)
        [row] = r.json()["data"]
        assert row["value"] == "3.000000000000000000" and row["frozen"] == "0.500000000000000000"
        assert [w["wallet"] for w in row["byWallet"]] == [checksum(EOA), checksum(SMART)]
        r = await http.get(PATH, params={"filter[tokenSymbol]": "TBL25Q4"}, headers=h)
        assert r.json()["data"][0]["token"]["yield"]["schedule"]["denominationAsset"] == {
            "id": checksum(OTHER), "symbol": "UNKNOWN", "decimals": 18}
        assert msgspec.convert(r.json(), BalancesPage).data[0].token.yield_denomination() is None
        r = await http.get(PATH, params={"filter[tokenSymbol]": "NOPX"}, headers=h)
        assert r.json()["data"][0]["valueInBaseCurrency"] is None
        assert r.json()["data"][0]["priceInBaseCurrencyReliable"] is False
        # auth: missing key, no wallet, reading another participant's wallet
        r = await http.get(PATH)
        assert r.status_code == 401 and r.json() == {"code": "UNAUTHORIZED", "status": 401,
                                                     "message": "Invalid or missing API key"}
        r = await http.get(PATH, headers={"X-Api-Key": "ghost-key"})
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
        r = await http.get(PATH, params={"filter[wallet]": OTHER}, headers=h)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
        r = await http.get(PATH, params={"filter[wallet]": SMART.lower()}, headers={"X-Api-Key": "bob-key"})
        assert r.status_code == 403
        # default page size 50, max 200
        sim.populate(server.dataset, "big", random.Random(5), 120)
        r = await http.get(PATH, headers={"X-Api-Key": "dalp-key-big"})
        assert len(r.json()["data"]) == 50 and r.json()["meta"]["total"] == 120
        assert r.json()["links"]["next"] == "/v2/user-asset-balances?page[limit]=50&page[offset]=50"
        r = await http.get(PATH, params={"page[limit]": "200"}, headers={"X-Api-Key": "dalp-key-big"})
        assert len(r.json()["data"]) == 120


def test_populate_is_deterministic_and_realistic():
    a, b = sim.Dataset(), sim.Dataset()
    assert sim.populate(a, "demo", random.Random(1), 12) == {"api_key": "dalp-key-demo"}
    sim.populate(b, "demo", random.Random(1), 12)
    assert a == b
    p = a.participants["participant-demo"]
    assert len(p.wallets) == 2 and p.wallets[0] != p.wallets[1]
    served = [r for r in p.rows if r.total() > 0]
    assert len(served) == 12 and len(p.rows) == 13                     # plus one zero balance
    assert any(len([w for w, (bal, _) in r.balances.items() if bal]) == 2 for r in served)
    assert sum(r.price is None for r in served) == 1
    assert any(r.price is not None and not r.price_reliable for r in served)
    assert {r.token.decimals for r in served} == {6, 18}
    unknown = [r for r in served if REGISTRY.token(f"eip155:1/erc20:{r.token.address}") is None]
    assert 1 <= len(unknown) < len(served) / 2
    for row in served:   # catalog tokens agree with the registry's decimals
        known = REGISTRY.token(f"eip155:1/erc20:{row.token.address}")
        assert known is None or known.decimals == row.token.decimals
    assert any(r.token.yield_schedule and r.token.yield_denomination is None for r in served)
    assert sim.source_block("http://x") == {"base_url": "http://x", "api_key": sim.ADMIN_KEY,
                                           "chain_id": "eip155:1", "base_currency": "EUR"}
    ctype, body = sim.error_shape(503, "down")
    assert ctype == "application/json" and json.loads(body) == {"code": "SERVICE_UNAVAILABLE", "status": 503,
                                                                "message": "down"}


def test_split_value_is_exact():
    assert split_value(Decimal("100.00"), [Decimal(1)] * 3) == [Decimal("33.33"), Decimal("33.33"),
                                                                Decimal("33.34")]
    assert split_value(Decimal("0.01"), [Decimal(1), Decimal(1)]) == [Decimal("0.00"), Decimal("0.01")]
    assert split_value(Decimal("5"), [Decimal(0), Decimal(0)]) == [Decimal(0), Decimal(5)]
    assert split_value(Decimal("5.00"), []) == []


def test_identities_and_secret_hiding():
    cfg = DalpSourceConfig(base_url="http://x", api_key="source-level-secret")
    client = DalpClient(cfg, None, REGISTRY)  # type: ignore[arg-type]
    [own] = client.identities(ALICE)
    assert own == DalpIdentity("alice", SecretStr(ALICE_KEY)) and ALICE_KEY not in repr(own)
    [via] = client.identities(AccountConfig(id="b", dalp=DalpAccount(wallet=EOA)))
    assert via.wallet == EOA and via.api_key.get_secret_value() == "source-level-secret"
    assert "source-level-secret" not in repr(via)
    assert client.identities(AccountConfig(id="c")) == []
