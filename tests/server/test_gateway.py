"""End to end: the gateway and the five simulators, each a real HTTP server on loopback."""
from __future__ import annotations

import re
import time
from decimal import Decimal

import httpx

from gateway.sources.catalog import Source
from gateway.simulation.control import Fault
import pytest

from tests.conftest import ADMIN_KEY, upstream_counts

pytestmark = pytest.mark.usefixtures("clean_simulators")

ALL_SOURCES = {s.value for s in Source}

DEEP = """
query Deep {
  viewer {
    id
    totalValue { value { amount currency } complete unpricedHoldings failedSources }
    usd: totalValue(currency: "USD") { value { amount } }
    sources { source state upstreamCalls error { code message } warnings { code } }
    wallets {
      id source kind label
      account { id }
      holdings(first: 200) { totalCount nodes { id amount token { id symbol asset { key } } } }
      totalValue { value { amount } }
    }
    holdings(first: 200) {
      totalCount
      edges { cursor node { id source amount amountRaw precision value { amount currency }
              price { unit currency reliability source } token { id decimals chain { id isTestnet } }
              wallet { id source } } }
    }
    again: holdings(first: 5, orderBy: {field: AMOUNT, direction: ASC}) { nodes { id } }
  }
}
"""


def sources_status(data: dict) -> dict[str, dict]:
    return {s["source"]: s for s in data["viewer"]["sources"]}


def test_demo_account_has_data_from_all_five_sources(client):
    body = client.query(DEEP)
    assert "errors" not in body, body.get("errors")
    viewer = body["data"]["viewer"]
    assert viewer["id"] == "demo"
    assert {s: st["state"] for s, st in sources_status(body["data"]).items()} == {s: "OK" for s in ALL_SOURCES} \
        or all(st["state"] in ("OK", "PARTIAL") for st in viewer["sources"])
    holdings = [e["node"] for e in viewer["holdings"]["edges"]]
    assert {h["source"] for h in holdings} == ALL_SOURCES
    assert {w["source"] for w in viewer["wallets"]} == ALL_SOURCES
    assert viewer["holdings"]["totalCount"] == len(holdings)


def test_money_is_exact_strings_in_plain_notation(client):
    viewer = client.query(DEEP)["data"]["viewer"]
    plain = re.compile(r"^-?\d+(\.\d+)?$")
    for edge in viewer["holdings"]["edges"]:
        h = edge["node"]
        assert isinstance(h["amount"], str) and plain.match(h["amount"]), h["amount"]
        if h["value"]:
            assert plain.match(h["value"]["amount"])
        if h["amountRaw"] is not None:
            assert isinstance(h["amountRaw"], str)
            decimals = h["token"]["decimals"]
            assert Decimal(h["amountRaw"]).scaleb(-decimals) == Decimal(h["amount"])


def test_total_value_is_the_exact_sum_of_priced_usd_holdings(client):
    viewer = client.query(DEEP)["data"]["viewer"]
    usd = [Decimal(e["node"]["value"]["amount"]) for e in viewer["holdings"]["edges"]
           if e["node"]["value"] and e["node"]["value"]["currency"] == "USD"]
    unpriced = [e for e in viewer["holdings"]["edges"]
                if not e["node"]["value"] or e["node"]["value"]["currency"] != "USD"]
    total = viewer["totalValue"]
    assert Decimal(total["value"]["amount"]) == sum(usd, Decimal(0))
    assert total["value"]["currency"] == "USD"
    assert total["unpricedHoldings"] == len(unpriced)
    assert total["complete"] is (len(unpriced) == 0)
    assert viewer["usd"]["value"]["amount"] == total["value"]["amount"]


def test_testnets_are_flagged_and_left_out_of_totals_by_default(client):
    q = """query($f: HoldingFilter) { viewer {
        holdings(first: 200, filter: $f) { nodes { amount value { amount currency } token { chain { isTestnet } } } }
        totalValue(filter: $f) { value { amount } } } }"""
    default = client.query(q)["data"]["viewer"]
    everything = client.query(q, {"f": {"includeTestnets": True}})["data"]["viewer"]
    assert not any(h["token"]["chain"] and h["token"]["chain"]["isTestnet"] for h in default["holdings"]["nodes"])
    testnet = [h for h in everything["holdings"]["nodes"] if h["token"]["chain"] and h["token"]["chain"]["isTestnet"]]
    assert testnet, "the generated demo data holds at least one testnet token"
    assert len(everything["holdings"]["nodes"]) == len(default["holdings"]["nodes"]) + len(testnet)


def test_one_upstream_call_per_source_identity_and_page(client, demo_world):
    # A query that needs each fetch exactly once, read from the statuses...
    baseline = client.query("{ viewer { sources { source upstreamCalls } } }")["data"]["viewer"]["sources"]
    expected = {s["source"]: s["upstreamCalls"] for s in baseline}
    assert upstream_counts(demo_world) == {Source(k): v for k, v in expected.items()}
    for control in demo_world.controls.values():
        control.reset()
    # ...and the deep query with aliases and nested selections makes no more than that.
    body = client.query(DEEP)
    assert "errors" not in body
    assert upstream_counts(demo_world) == {Source(k): v for k, v in expected.items()}
    # identities of the demo account: one Calico token, one Cryptofuse token, ...
    assert expected["CALICO"] == 1 and expected["CRYPTOFUSE"] == 1
    assert expected["ONEBALANCE"] >= 1 and expected["COBO"] >= 1 and expected["DALP"] >= 1


def test_two_accounts_in_one_request_fetch_each_identity_once(client, demo_world):
    q = """query($ids: [ID!]!) { accounts(ids: $ids) { id
        sources { source state upstreamCalls }
        holdings(first: 200) { totalCount nodes { amount wallet { account { id } } } }
        wallets { holdings { totalCount } }
        totalValue { value { amount } } } }"""
    body = client.query(q, {"ids": ["demo", "user-0001"]}, key=ADMIN_KEY)
    assert "errors" not in body, body.get("errors")
    accounts = body["data"]["accounts"]
    assert [a["id"] for a in accounts] == ["demo", "user-0001"]
    for a in accounts:
        assert {h["wallet"]["account"]["id"] for h in a["holdings"]["nodes"]} == {a["id"]}
    expected: dict[Source, int] = {}
    for a in accounts:
        for s in a["sources"]:
            expected[Source(s["source"])] = expected.get(Source(s["source"]), 0) + s["upstreamCalls"]
    assert upstream_counts(demo_world) == expected


def test_reads_happen_only_when_the_operation_needs_the_account(client, demo_world):
    no_reads = ["{ viewer { id } }", "{ __typename viewer { id } }",
                "query($a: Int) { viewer(maxAge: $a) { id totalValue { complete } } }",   # $a = -1: refused
                "{ viewer { id } viewerAgain: viewer { id } }"]
    for query, variables in zip(no_reads, [None, None, {"a": -1}, None]):
        body = client.query(query, variables)
        assert set(upstream_counts(demo_world).values()) == {0}, (query, body)
    assert client.query(no_reads[2], {"a": -1})["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Variables graphql-core will refuse (missing, wrong type): nothing read either.
    needs_first = "query($n: Int!) { viewer { holdings(first: $n) { totalCount } } }"
    for variables in ({}, {"n": "many"}):
        assert client.query(needs_first, variables)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert set(upstream_counts(demo_world).values()) == {0}
    assert client.query(needs_first, {"n": 2})["data"]["viewer"]["holdings"]["totalCount"] > 0
    for control in demo_world.controls.values():
        control.reset()
    history = client.query("{ viewer { balanceHistory(first: 3) { totalCount } } }")
    assert "errors" not in history
    counts = upstream_counts(demo_world)
    assert counts[Source.CRYPTOFUSE] >= 1 and counts[Source.COBO] == counts[Source.DALP] == 0   # history only
    for control in demo_world.controls.values():
        control.reset()
    # A query asking `refresh` on its first viewer root gets the options it asked for, and each
    # identity is read once.
    body = client.query("{ viewer(maxAge: 5) { sources { source upstreamCalls } } "
                        "other: viewer(refresh: true) { totalValue { complete } } }")
    assert "errors" not in body
    assert upstream_counts(demo_world) == {Source(s["source"]): s["upstreamCalls"] for s in body["data"]["viewer"]["sources"]}


def test_sources_are_fetched_concurrently(client, demo_world):
    latency = 0.3
    for control in demo_world.controls.values():
        control.latency_s = latency
    started = time.perf_counter()
    body = client.query(DEEP)
    elapsed = time.perf_counter() - started
    assert "errors" not in body
    calls = sum(upstream_counts(demo_world).values())
    longest_chain = max(s["upstreamCalls"] for s in body["data"]["viewer"]["sources"])
    # Serial fetching would take calls * latency; in parallel only the longest paging chain counts.
    assert calls >= 5
    assert elapsed < (longest_chain + 1.5) * latency < calls * latency, (elapsed, calls, longest_chain)


def test_failed_source_gives_partial_data_and_one_coded_error(client, demo_world):
    cases = [
        (Fault(kind="status", status=503), "UPSTREAM_UNAVAILABLE"),
        (Fault(kind="status", status=500), "UPSTREAM_UNAVAILABLE"),
        (Fault(kind="status", status=429, retry_after=7), "UPSTREAM_RATE_LIMITED"),
        (Fault(kind="status", status=401), "UPSTREAM_AUTH_FAILED"),
        (Fault(kind="delay", delay_s=1.6), "UPSTREAM_TIMEOUT"),
        (Fault(kind="malformed"), "UPSTREAM_BAD_RESPONSE"),
        (Fault(kind="wrong_shape"), "UPSTREAM_BAD_RESPONSE"),
    ]
    for failing in Source:
        for fault, code in cases:
            for control in demo_world.controls.values():
                control.reset()
            demo_world.controls[failing].add_fault(fault)
            started = time.perf_counter()
            response = client.post(DEEP)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            body = response.json()
            viewer = body["data"]["viewer"]
            statuses = sources_status(body["data"])
            assert statuses[failing.value]["state"] == "FAILED", (failing, fault)
            assert statuses[failing.value]["error"]["code"] == code
            others = ALL_SOURCES - {failing.value}
            assert {s for s, st in statuses.items() if st["state"] in ("OK", "PARTIAL")} == others
            assert {e["node"]["source"] for e in viewer["holdings"]["edges"]} == others
            assert viewer["totalValue"]["complete"] is False
            assert viewer["totalValue"]["failedSources"] == [failing.value]
            errors = body["errors"]
            assert len(errors) == 1, errors
            assert errors[0]["extensions"]["code"] == code
            assert errors[0]["extensions"]["source"] == failing.value
            assert "injected fault" not in response.text  # the upstream's body never reaches the client
            assert elapsed < 3.5


def test_no_credential_reaches_the_client_or_the_log(client, demo_world, caplog, gateway_config):
    secrets = [k.get_secret_value() for a in gateway_config.accounts for k in a.api_keys[1:]]
    for account in gateway_config.accounts:
        for source in Source:
            block = account.source(source)
            if block is None:
                continue
            for value in block.model_dump().values():
                if hasattr(value, "get_secret_value"):
                    secrets.append(value.get_secret_value())
    for source in Source:
        src = gateway_config.sources.get(source)
        if getattr(src, "api_key", None) is not None:
            secrets.append(src.api_key.get_secret_value())
    assert len(secrets) >= 5
    texts = []
    with caplog.at_level("DEBUG"):
        for source in Source:
            for control in demo_world.controls.values():
                control.reset()
            demo_world.controls[source].add_fault(Fault(kind="status", status=401))
            texts.append(client.post(DEEP).text)
    texts.append(caplog.text)
    texts.append(repr(gateway_config))
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_authentication_and_authorization(client, gateway):
    q = "{ viewer { id } }"
    missing = client.post(q, key=None)
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    wrong = client.post(q, key="not-a-key")
    assert wrong.status_code == 401 and "not-a-key" not in wrong.text
    via_header = client.post(q, key=None, headers={"x-api-key": "demo-key"})
    assert via_header.json()["data"]["viewer"]["id"] == "demo"
    other = client.query('{ account(id: "user-0001") { id } }')
    assert other["data"]["account"] is None
    assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    own = client.query('{ account(id: "demo") { id } }')
    assert own["data"]["account"]["id"] == "demo"
    mixed = client.query('{ accounts(ids: ["demo", "user-0001"]) { id } }')
    assert mixed["data"]["accounts"][0]["id"] == "demo" and mixed["data"]["accounts"][1] is None
    assert mixed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert mixed["errors"][0]["path"] == ["accounts", 1]


def test_bad_input_gets_a_coded_error_never_a_500(client):
    too_many = client.query("{ viewer { holdings(first: 500) { totalCount } } }")
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_cursor = client.query('{ viewer { holdings(after: "nonsense") { totalCount } } }')
    assert bad_cursor["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_decimal = client.post("query($f: HoldingFilter) { viewer { holdings(filter: $f) { totalCount } } }",
                              {"f": {"minValue": "12,5"}})
    assert bad_decimal.status_code in (200, 400)
    assert bad_decimal.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    syntax = client.post("{ viewer { id ")
    assert syntax.status_code in (200, 400)
    assert syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    unknown = client.post("{ viewer { nope } }")
    assert unknown.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_paging_returns_each_holding_once(client):
    q = """query($after: String) { viewer { holdings(first: 3, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } } }"""
    seen, after, total = [], None, None
    while True:
        conn = client.query(q, {"after": after})["data"]["viewer"]["holdings"]
        total = conn["totalCount"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == total


def test_get_requests_graphiql_and_health(gateway):
    with httpx.Client(base_url=gateway.url) as http:
        got = http.get("/graphql", params={"query": "{ viewer { id } }"}, headers={"x-api-key": "demo-key"})
        assert got.status_code == 200 and got.json()["data"]["viewer"]["id"] == "demo"
        page = http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "GraphiQL" in page.text and "Authorization" in page.text
        health = http.get("/health").json()
        assert health["status"] == "ok" and set(health["sources"]) == ALL_SOURCES
        assert "x-request-id" in {k.lower() for k in got.headers}
