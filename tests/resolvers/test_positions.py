"""Positions, valuation and paging: properties over generated portfolios, and end to end."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import ids, money
from gateway.domain.records import (AmountPrecision, HoldingRecord, Money, Price, PriceReliability, Token,
                             WalletKind, WalletRecord)
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from resolvers.holdings import order, select, value_total, HoldingSelection
from resolvers.pagination import paginate
from resolvers.positions import group
from resolvers.valuation import derive_values

REGISTRY = TokenRegistry.default()
TOKENS = [t for t in REGISTRY.all_tokens()] + [REGISTRY.unknown(Source.COBO, "ETH_FOO", "FOO")]
REPORTING = {Source.CALICO, Source.ONEBALANCE, Source.DALP}

amounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("1e12"), places=18, allow_nan=False)
prices = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1e6"), places=8, allow_nan=False)


@st.composite
def holdings(draw, max_size=300):
    n = draw(st.integers(min_value=0, max_value=max_size))
    out = []
    for i in range(n):
        source = draw(st.sampled_from(list(Source)))
        token: Token = draw(st.sampled_from(TOKENS))
        wallet_local = f"w{draw(st.integers(0, 6))}"
        wallet = WalletRecord(id=ids.wallet_id(source.value, "acct", wallet_local), account_id="acct", source=source,
                              kind=WalletKind.CUSTODIAL, local_id=wallet_local)
        amount = draw(amounts)
        price = value = None
        if source in REPORTING and draw(st.booleans()):
            unit = draw(prices)
            currency = "EUR" if source is Source.DALP and draw(st.booleans()) else "USD"
            reliability = draw(st.sampled_from([PriceReliability.REPORTED, PriceReliability.UNRELIABLE]))
            price = Price(unit=unit, currency=currency, reliability=reliability, source=source)
            value = Money(amount * unit, currency)
        out.append(HoldingRecord(id=f"h{i:04d}", account_id="acct", wallet=wallet, token=token, source=source,
                                 amount=amount, precision=AmountPrecision.EXACT, price=price, value=value))
    return out


@settings(max_examples=25, deadline=None)
@given(holdings(), st.sampled_from(["ASSET", "TOKEN", "CHAIN", "SOURCE", "WALLET"]), st.sampled_from(["USD", "EUR"]))
def test_positions_sum_exactly_and_cover_every_holding_once(portfolio, grouping, currency):
    valued = derive_values(portfolio)
    chosen = select(valued, HoldingSelection(include_testnets=True, include_zero=True))
    total = value_total(chosen, currency, [])
    positions = group(chosen, grouping, currency, total.value.amount, REGISTRY)
    members = [h.id for p in positions for h in p.holdings]
    assert sorted(members) == sorted(h.id for h in chosen)            # each holding in exactly one position
    value_sum = Decimal(0)
    for p in positions:
        if grouping in ("ASSET", "TOKEN"):
            assert p.amount == sum((h.amount for h in p.holdings), Decimal(0))
        else:
            assert p.amount is None
        priced = [h.value.amount for h in p.holdings if h.value and h.value.currency == currency]
        assert (p.value is None) == (not priced)
        if p.value:
            assert p.value.amount == sum(priced, Decimal(0)) and p.value.currency == currency
            value_sum += p.value.amount
        assert p.unpriced_holdings == len(p.holdings) - len(priced)
    assert value_sum == total.value.amount                              # the account total, exactly
    assert total.unpriced_holdings == sum(p.unpriced_holdings for p in positions)


@settings(max_examples=25, deadline=None)
@given(holdings())
def test_derived_prices_come_from_reported_prices_of_the_same_token_or_asset(portfolio):
    reported = {(h.token.id, h.price.unit) for h in portfolio
                if h.price and h.price.reliability is PriceReliability.REPORTED and not h.token.is_testnet}
    by_asset = {(h.token.asset_key, h.price.unit) for h in portfolio
                if h.price and h.price.reliability is PriceReliability.REPORTED and not h.token.is_testnet}
    for before, after in zip(portfolio, derive_values(portfolio)):
        if before.value is not None:
            assert after is before                                      # reported values untouched
        elif after.value is not None:
            assert after.price.reliability is PriceReliability.DERIVED
            assert not after.token.is_testnet
            assert (after.token.id, after.price.unit) in reported or (after.token.asset_key, after.price.unit) in by_asset
            assert after.value.amount == money.derived_value(after.amount, after.price.unit)
        else:
            assert after.price is None                                  # unpriced stays null, never 0


@settings(max_examples=25, deadline=None)
@given(holdings(max_size=120), st.integers(min_value=1, max_value=200),
       st.sampled_from(["VALUE", "AMOUNT", "SYMBOL"]), st.sampled_from(["ASC", "DESC"]))
def test_paging_any_first_returns_each_item_once(portfolio, first, field, direction):
    ordered = order(portfolio, field, direction)
    seen, after, pages = [], None, 0
    while True:
        page = paginate(ordered, first, after, "scope")
        assert page.total_count == len(ordered)
        assert page.page_info.has_previous_page is (after is not None)
        seen += [h.id for h in page.nodes]
        pages += 1
        if not page.page_info.has_next_page:
            break
        after = page.page_info.end_cursor
    assert seen == [h.id for h in ordered]
    assert pages == max(1, -(-len(ordered) // first))


# -- end to end --------------------------------------------------------------------------------
POSITIONS = """query($g: PositionGrouping!, $c: String!) { viewer {
  totalValue(currency: $c) { value { amount } }
  positions(groupBy: $g, currency: $c, first: 200) { totalCount nodes {
    key amount share unpricedHoldings value { amount currency }
    asset { key } token { id } chain { id } source wallet { id }
    holdings { id amount source token { decimals } value { amount currency } } } } } }"""


@pytest.mark.usefixtures("clean_simulators")
@pytest.mark.parametrize("grouping", ["ASSET", "TOKEN", "CHAIN", "SOURCE", "WALLET"])
def test_positions_end_to_end(client, demo_world, grouping):
    body = client.query(POSITIONS, {"g": grouping, "c": "USD"})
    assert "errors" not in body, body.get("errors")
    viewer = body["data"]["viewer"]
    total = Decimal(viewer["totalValue"]["value"]["amount"])
    positions = viewer["positions"]["nodes"]
    assert sum((Decimal(p["value"]["amount"]) for p in positions if p["value"]), Decimal(0)) == total
    for p in positions:
        base_units = any(h["source"] == "ONEBALANCE" and h["token"]["decimals"] is None for h in p["holdings"])
        if grouping in ("ASSET", "TOKEN") and not base_units:
            assert Decimal(p["amount"]) == sum((Decimal(h["amount"]) for h in p["holdings"]), Decimal(0))
        else:
            assert p["amount"] is None
        if p["value"]:
            assert abs(Decimal(p["share"]) - Decimal(p["value"]["amount"]) / total) < Decimal("1e-20")
    if grouping == "ASSET":
        keys = {p["key"] for p in positions}
        assert {"usdc", "eth"} <= keys
        usdc = next(p for p in positions if p["key"] == "usdc")
        assert usdc["asset"]["key"] == "usdc"
    # one upstream call per (source, identity, page), positions or not
    assert all(c.requests >= 1 for c in demo_world.controls.values())


@pytest.mark.usefixtures("clean_simulators")
def test_exchange_and_custody_holdings_get_derived_prices(client):
    q = """{ viewer { holdings(first: 200, filter: {sources: [CRYPTOFUSE, COBO]}) { nodes {
        source amount token { id asset { key } } value { amount currency } price { unit reliability source } } } } }"""
    nodes = client.query(q)["data"]["viewer"]["holdings"]["nodes"]
    derived = [h for h in nodes if h["price"]]
    assert derived, "the demo has Cryptofuse/Cobo holdings of assets other sources price"
    for h in derived:
        assert h["price"]["reliability"] == "DERIVED"
        assert h["price"]["source"] in ("CALICO", "ONEBALANCE", "DALP")
        assert Decimal(h["value"]["amount"]) == money.derived_value(Decimal(h["amount"]), Decimal(h["price"]["unit"]))
    for h in nodes:
        if not h["price"]:
            assert h["value"] is None


def test_cursor_survives_items_added_or_removed_before_it():
    from dataclasses import dataclass

    @dataclass
    class Item:
        id: str

    items = [Item(f"i{n}") for n in range(10)]
    first_page = paginate(items, 4, None, "s")
    assert [i.id for i in first_page.nodes] == ["i0", "i1", "i2", "i3"]
    # two new items sort before the cursor, one old one disappears: the next page still
    # starts right after i3, with nothing repeated or skipped
    changed = [Item("new-a"), Item("new-b")] + [i for i in items if i.id != "i1"]
    second = paginate(changed, 4, first_page.page_info.end_cursor, "s")
    assert [i.id for i in second.nodes] == ["i4", "i5", "i6", "i7"]
    assert second.total_count == 11


def test_cursor_from_another_listing_is_refused():
    from graphql import GraphQLError
    page = paginate(list(range(5)), 2, None, "listing-a")
    with pytest.raises(GraphQLError) as err:
        paginate(list(range(5)), 2, page.page_info.end_cursor, "listing-b")
    assert err.value.extensions["code"] == "BAD_USER_INPUT"


@pytest.mark.usefixtures("clean_simulators")
def test_node_token_and_asset_lookups(client):
    q = """{ viewer { id wallets { id } holdings(first: 200) { nodes { id token { id } } } } }"""
    viewer = client.query(q)["data"]["viewer"]
    wallet_id = viewer["wallets"][0]["id"]
    holding = viewer["holdings"]["nodes"][0]
    unknown = next(h for h in viewer["holdings"]["nodes"] if ":" in h["token"]["id"].split("/")[0]
                   and h["token"]["id"].split(":")[0] in ("cobo", "cryptofuse", "calico"))
    body = client.query("""query($w: ID!, $h: ID!, $a: ID!, $u: ID!) {
        w: node(id: $w) { __typename id ... on Wallet { source } }
        h: node(id: $h) { __typename id ... on Holding { amount } }
        a: node(id: $a) { __typename id }
        t: token(id: "EIP155:42161/ERC20:0XAF88D065E77C8CC2239327C5EDB3A432268E5831") { id decimals symbol asset { key } }
        u: token(id: $u) { id decimals }
        asset(key: "usdc") { key symbol tokens { id chain { id } } }
        missing: asset(key: "no-such-asset") { key } }""",
        {"w": wallet_id, "h": holding["id"], "a": "demo", "u": unknown["token"]["id"]})
    assert "errors" not in body, body.get("errors")
    data = body["data"]
    assert data["w"]["__typename"] == "Wallet" and data["w"]["id"] == wallet_id
    assert data["h"]["__typename"] == "Holding" and data["h"]["id"] == holding["id"]
    assert data["a"] == {"__typename": "Account", "id": "demo"}
    assert data["t"] == {"id": "eip155:42161/erc20:0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "decimals": 6,
                         "symbol": "USDC", "asset": {"key": "usdc"}}
    assert data["u"]["id"] == unknown["token"]["id"] and data["u"]["decimals"] is None
    chains = {t["chain"]["id"] for t in data["asset"]["tokens"] if t["chain"]}
    assert {"eip155:1", "eip155:8453", "eip155:42161"} <= chains
    assert data["missing"] is None
    # another account's node is forbidden, not leaked
    other = client.query('{ node(id: "user-0001") { id } }')
    assert other["data"]["node"] is None and other["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.usefixtures("clean_simulators")
def test_positions_totals_holdings_and_wallets_together_make_one_call_per_identity_and_page(client, demo_world):
    from tests.conftest import upstream_counts
    body = client.query("""{ viewer {
        sources { source upstreamCalls }
        byAsset: positions { nodes { key value { amount } holdings { id } } }
        byChain: positions(groupBy: CHAIN) { nodes { key } }
        eur: positions(groupBy: SOURCE, currency: "EUR") { nodes { key value { amount } } }
        totalValue { value { amount } complete }
        eurTotal: totalValue(currency: "EUR") { value { amount } }
        holdings(first: 200, orderBy: {field: SYMBOL, direction: ASC}) { nodes { id } }
        wallets { id holdings { totalCount } totalValue { value { amount } } } } }""")
    assert "errors" not in body, body.get("errors")
    expected = {Source(s["source"]): s["upstreamCalls"] for s in body["data"]["viewer"]["sources"]}
    assert upstream_counts(demo_world) == expected
    assert all(n >= 1 for n in expected.values())


@settings(max_examples=10, deadline=None)
@given(holdings(max_size=40))
def test_valued_accounts_value_the_same_reads_once(portfolio):
    """Copies of the same fetches (shared reads, the memo) get the one valuation made for them;
    other reads get their own; a request's own fresh read is valued but never kept (it would
    hold its records for hundreds of requests); the store is bounded."""
    from dataclasses import replace
    from gateway.domain.records import SourceFetch, SourceState
    from resolvers.valuation import Valued, ValuedAccounts
    wallets = list({h.wallet.id: h.wallet for h in portfolio}.values())
    fetch = SourceFetch(source=Source.COBO, account_id="acct", state=SourceState.OK, wallets=wallets, holdings=portfolio)
    store = ValuedAccounts(maxsize=2)
    alone = store.of([fetch])                                          # a fresh read: valued, not kept
    assert alone == Valued.of([fetch]) and alone.holdings == derive_values(portfolio)
    assert sum(len(v) for v in alone.by_wallet.values()) == len(portfolio)
    assert len(store.entries) == 0 and store.of([fetch]) is not alone
    assert len(store.of([fetch, fetch.handed_out()]).holdings) == 2 * len(portfolio) and len(store.entries) == 0
    first = store.of([fetch.handed_out()])
    assert first == alone and len(store.entries) == 1
    assert store.of([fetch.handed_out(from_cache=True)]) is first      # a copy: same lists, same valuation
    other = replace(fetch, holdings=list(portfolio)).handed_out()      # a new read, equal records
    assert store.of([other]) is not first and store.of([other]) == first
    store.of([replace(fetch, holdings=[]).handed_out()])               # a third: the first is dropped
    assert len(store.entries) == 2 and store.of([fetch.handed_out()]) is not first
