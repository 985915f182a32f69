"""Answering a request with another's response (gateway/policy/response_reuse.py, gateway/policy/kept_responses.py),
over real HTTP.

A kept answer is only ever the answer the request would get anyway: these tests change
each thing it depends on (the memo entries behind it, their age, a breaker, the caller,
the Accept header) and check that the next answer follows, and that what must never be
kept (errors, history, APQ registrations) is not. Coalescing: identical requests running
at the same time execute once; different callers, or a first answer with errors, do not share.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.sources.catalog import Source
from gateway.simulation.control import Fault
from gateway.policy.kept_responses import KeptResponses
from gateway.upstream.ledger import Dependency, ReadLedger
from gateway.simulation.world import gateway_key
from tests.conftest import GraphQLClient
from tests.stack import stack

STATUS = """query($maxAge: Int, $refresh: Boolean) { viewer(maxAge: $maxAge, refresh: $refresh) {
  id totalValue(currency: "USD") { value { amount } }
  sources { source state fromCache fetchedAt upstreamCalls breaker }
  holdings(first: 200) { totalCount nodes { id amount source } } } }"""


def samples(client: GraphQLClient) -> dict[tuple, float]:
    text = client.http.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def kept(client: GraphQLClient) -> dict[str, float]:
    found = samples(client)
    return {r: found.get(("balance_gateway_response_cache_total", (("result", r),)), 0.0)
            for r in ("hit", "stored", "miss", "coalesced")}


def source_hits(client: GraphQLClient) -> float:
    return sum(v for (name, labels), v in samples(client).items()
               if name == "balance_gateway_cache_requests_total" and ("result", "hit") in labels)


def calls(world) -> int:
    return sum(c.requests for c in world.controls.values())


def by_source(body: dict) -> dict[str, dict]:
    return {s["source"]: s for s in body["data"]["viewer"]["sources"]}


def test_an_identical_request_from_memoised_reads_gets_the_kept_answer():
    with stack(sources={"cache_ttl_s": 60}) as (world, client, _):
        first = client.post(STATUS)                       # reads upstreams: not kept
        before_second = source_hits(client)
        second = client.post(STATUS)                      # all from the memo: kept
        made = calls(world)
        hits_before = source_hits(client)
        third = client.post(STATUS)                       # answered with the kept bytes
        assert kept(client) == {"hit": 1, "stored": 1, "miss": 1, "coalesced": 0}
        assert calls(world) == made
        assert third.content == second.content and third.json() != first.json()   # fromCache differs from the first
        assert all(s["fromCache"] and s["upstreamCalls"] == 0 for s in by_source(third.json()).values())
        # the reads it stands for still count as cache hits, one per (source, identity), as they did
        assert source_hits(client) - hits_before == hits_before - before_second >= 5
        # each response keeps its own request id
        assert third.headers["x-request-id"] != second.headers["x-request-id"]
        assert third.headers["content-type"] == second.headers["content-type"]


def test_kept_answers_are_per_caller_and_per_accept_header():
    with stack(accounts=1, sources={"cache_ttl_s": 60}) as (world, client, _):
        other_key = gateway_key(next(a for a in world.accounts if a != "demo"))
        query = "{ viewer { id totalValue(currency: \"USD\") { value { amount } } } }"
        for _ in range(3):
            assert client.query(query)["data"]["viewer"]["id"] == "demo"
            assert client.query(query, key=other_key)["data"]["viewer"]["id"] != "demo"
        assert kept(client)["hit"] == 2
        as_graphql = client.post(query, headers={"accept": "application/graphql-response+json"})
        assert as_graphql.headers["content-type"].startswith("application/graphql-response+json")
        assert client.post(query).headers["content-type"].startswith("application/json")


def test_a_refresh_or_an_expiry_makes_the_kept_answer_unusable():
    with stack(sources={"cache_ttl_s": 0.6, "refresh_min_interval_s": 0.2}) as (world, client, _):
        client.post(STATUS)
        kept_body = client.post(STATUS).json()
        time.sleep(0.3)
        refreshed = client.query(STATUS, {"refresh": True})      # new upstream reads replace the memo
        assert all(not s["fromCache"] for s in by_source(refreshed).values())
        after = client.query(STATUS)
        assert after != kept_body
        assert {k: v["fetchedAt"] for k, v in by_source(after).items()} == \
            {k: v["fetchedAt"] for k, v in by_source(refreshed).items()}
        assert client.query(STATUS) == after                     # kept again
        made = calls(world)
        time.sleep(0.7)                                          # past the TTL: the upstreams are read again
        expired = client.query(STATUS)
        assert calls(world) > made
        assert all(not s["fromCache"] for s in by_source(expired).values())


def test_max_age_is_honoured_by_kept_answers():
    with stack(sources={"cache_ttl_s": 60, "refresh_min_interval_s": 0.2}) as (world, client, _):
        client.query(STATUS, {"maxAge": 1})
        client.query(STATUS, {"maxAge": 1})
        made = calls(world)
        assert client.query(STATUS, {"maxAge": 1}) and calls(world) == made   # kept
        time.sleep(1.1)
        young = client.query(STATUS, {"maxAge": 1})              # the memo entries are too old for maxAge 1
        assert calls(world) > made
        assert all(not s["fromCache"] for s in by_source(young).values())


def test_a_breaker_change_shows_instead_of_the_kept_answer():
    with stack(sources={"cache_ttl_s": 60, "breaker_failures": 2}) as (world, client, app):
        client.post(STATUS)
        assert by_source(client.query(STATUS))["COBO"]["breaker"] == "CLOSED"
        breaker = app.state.gateway.clients[Source.COBO].upstream.breaker
        breaker.record_failure()
        breaker.record_failure()
        assert by_source(client.query(STATUS))["COBO"]["breaker"] == "OPEN"


def test_errors_history_and_apq_registrations_are_never_kept():
    with stack(sources={"cache_ttl_s": 60}) as (world, client, _):
        bad = "{ viewer { id noSuchField } }"
        history = "{ viewer { balanceHistory(first: 3) { totalCount nodes { amount } } } }"
        for _ in range(3):
            assert client.post(bad).json()["errors"]
            assert "errors" not in client.query(history)
        made = calls(world)
        client.query(history)
        assert calls(world) > made                               # history pages are read every time
        query = "{ viewer { id } }"
        apq = {"query": query, "extensions": {"persistedQuery": {"version": 1,
                                                                  "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}}
        for _ in range(3):
            response = client.http.post("/graphql", content=orjson.dumps(apq),
                                        headers={"authorization": "Bearer demo-key", "content-type": "application/json"})
            assert response.json() == {"data": {"viewer": {"id": "demo"}}}
        assert kept(client) == {"hit": 0, "stored": 0, "miss": 10, "coalesced": 0}


def test_rate_limits_still_apply_to_kept_answers():
    with stack(sources={"cache_ttl_s": 60}, limits={"rate_limit_per_s": 0.001, "rate_limit_burst": 4}) as (_, client, _app):
        codes = [client.post("{ viewer { id } }").status_code for _ in range(6)]
        assert codes == [200, 200, 200, 200, 429, 429]
        assert kept(client)["hit"] == 3


def _at_once(client: GraphQLClient, keys: list[str], query: str = STATUS,
             variables: list[dict] | None = None) -> list:
    """Send one request per key, all at the same time; the responses in order."""
    out: list = [None] * len(keys)
    barrier = threading.Barrier(len(keys))

    def send(i: int) -> None:
        barrier.wait()
        out[i] = client.post(query, variables[i] if variables else None, key=keys[i])
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(keys))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_identical_requests_running_together_execute_once():
    with stack(cache={"enabled": False}) as (world, client, _):
        client.post(STATUS)
        once = calls(world)
        for control in world.controls.values():
            control.latency_s = 0.3
        responses = _at_once(client, ["demo-key"] * 8)
        assert all(r.status_code == 200 and "errors" not in r.json() for r in responses)
        assert len({r.content for r in responses}) == 1                 # one answer, sent eight times
        assert calls(world) == 2 * once                                  # one request's upstream reads
        assert kept(client)["coalesced"] >= 6                            # (a late thread may run alone)
        assert len({r.headers["x-request-id"] for r in responses}) == 8


def test_coalescing_never_crosses_callers_or_shares_errors():
    with stack(accounts=1, cache={"enabled": False}) as (world, client, _):
        other = gateway_key(next(a for a in world.accounts if a != "demo"))
        for control in world.controls.values():
            control.latency_s = 0.3
        mixed = _at_once(client, ["demo-key", other] * 3, "{ viewer { id holdings(first: 5) { totalCount } } }")
        assert [r.json()["data"]["viewer"]["id"] for r in mixed] == ["demo", other.removesuffix("-key")] * 3
        assert kept(client)["coalesced"] >= 2        # demo with demo, other with other, never across
        before = kept(client)["coalesced"]
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        failing = _at_once(client, ["demo-key"] * 4)
        assert all(r.json()["errors"][0]["extensions"]["code"].startswith("UPSTREAM_") for r in failing)
        assert kept(client)["coalesced"] == before   # an answer with errors is not shared
    with stack(cache={"enabled": False}, server={"coalesce_identical": False}) as (world, client, _):
        for control in world.controls.values():
            control.latency_s = 0.2
        _at_once(client, ["demo-key"] * 4)
        assert kept(client)["coalesced"] == 0


class _Breaker:
    state = "CLOSED"


class _Upstream:
    """A memo as a kept response sees one (ledger.Memo)."""
    def __init__(self) -> None:
        self.normalized: OrderedDict = OrderedDict()

    def still_holds(self, identity, fetch) -> bool:
        return identity in self.normalized and self.normalized[identity][0] is fetch

    def reused(self, identity) -> None:
        pass


def test_the_store_is_bounded_by_bytes_and_drops_entries_whose_memo_moved_on():
    upstream = _Upstream()
    fetch = object()
    upstream.normalized["identity"] = (fetch, 0.0)
    cache = KeptResponses([_Breaker()], max_entries=100, max_bytes=8_000)
    ledger = ReadLedger(deps=[Dependency(upstream, "identity", fetch, time.time() + 60)])  # type: ignore[arg-type]
    for n in range(10):
        assert cache.store(("k", n), ledger, cache.breaker_states(), [], b"x" * 900)
    assert cache.bytes <= 8_000 and len(cache.entries) == 8
    assert cache.lookup(("k", 0)) is None and cache.lookup(("k", 9)) is not None
    assert not cache.store(("big",), ledger, cache.breaker_states(), [], b"x" * 1_001)   # over an eighth of the bound
    upstream.normalized["identity"] = (object(), 0.0)              # the memo holds another read now
    assert cache.lookup(("k", 9)) is None and ("k", 9) not in cache.entries


def test_a_breaker_that_changes_before_the_response_is_stored_makes_it_unusable():
    """The response is stored after it was sent; a breaker may change in between (the
    client already has its answer). The states kept are those from before the request ran."""
    upstream, breaker = _Upstream(), _Breaker()
    fetch = object()
    upstream.normalized["identity"] = (fetch, 0.0)
    cache = KeptResponses([breaker], max_entries=10, max_bytes=8_000)
    ledger = ReadLedger(deps=[Dependency(upstream, "identity", fetch, time.time() + 60)])  # type: ignore[arg-type]
    before = cache.breaker_states()           # the request starts
    breaker.state = "OPEN"                     # ...and a breaker opens before its response is stored
    assert cache.store(("k",), ledger, before, [], b"{}")
    assert cache.lookup(("k",)) is None



def test_a_request_partly_in_the_memo_reads_each_fetch_once():
    """All of an account's reads in the memo: its view is built at once (no loader round).
    Only some: those are handed to the loaders as they are, and only the rest is read
    (here from the cached pages), so every (source, identity) counts one hit either way."""
    with stack(sources={"cache_ttl_s": 60}, cache={"responses": False}) as (world, client, app):
        client.post(STATUS)                                  # reads the upstreams, fills the memo
        reads = calls(world)
        hits = source_hits(client)
        everything = client.post(STATUS).json()              # all from the memo
        per_request = source_hits(client) - hits
        assert per_request >= 5 and calls(world) == reads
        app.state.gateway.clients[Source.COBO].upstream.normalized.clear()   # Cobo's pages only
        hits = source_hits(client)
        partly = client.post(STATUS).json()
        assert source_hits(client) - hits == per_request and calls(world) == reads
        assert partly == everything
        assert all(s["fromCache"] and s["upstreamCalls"] == 0 for s in by_source(partly).values())


def test_requests_reading_one_account_together_join_one_read_of_it(monkeypatch):
    """Coalescing off: every request executes, but requests for the same account with the same
    options at the same time join one read of the whole account (resolvers.accounts.fetch_account):
    its calls are made and its pages normalized once, and each request still reports them as its
    own. Other options read apart."""
    from gateway.sources.base import SourceClient
    asked: list[str] = []
    read = SourceClient._read

    async def counted(self, identity, options):
        asked.append(self.source.value)
        return await read(self, identity, options)
    monkeypatch.setattr(SourceClient, "_read", counted)
    with stack(cache={"enabled": False}, server={"coalesce_identical": False}) as (world, client, _):
        alone = client.post(STATUS).json()
        identities, once = len(asked), calls(world)
        assert identities >= 5
        for control in world.controls.values():
            control.latency_s = 0.3
        responses = [r.json() for r in _at_once(client, ["demo-key"] * 6)]
        assert kept(client)["coalesced"] == 0                                  # six executions...
        assert len(asked) == 2 * identities and calls(world) == 2 * once    # ...one read: five joined
        for body in responses:
            assert body["data"]["viewer"]["holdings"] == alone["data"]["viewer"]["holdings"]
            assert {s: (v["state"], v["upstreamCalls"]) for s, v in by_source(body).items()} == \
                {s: (v["state"], v["upstreamCalls"]) for s, v in by_source(alone).items()}
        refreshed = _at_once(client, ["demo-key"] * 2, variables=[{}, {"refresh": True}])
        assert all("errors" not in r.json() for r in refreshed)
        assert len(asked) == 4 * identities    # one read each (their identical page GETs may still share)


def test_a_response_built_on_a_shared_live_read_is_not_kept():
    """A request that joined another's live read read the upstream, not the memo: its answer
    must not be kept (it has no memo entry to expire with)."""
    with stack(sources={"cache_ttl_s": 60}, server={"coalesce_identical": False}) as (world, client, _):
        for control in world.controls.values():
            control.latency_s = 0.3
        responses = _at_once(client, ["demo-key"] * 4)
        assert all(r.status_code == 200 and "errors" not in r.json() for r in responses)
        assert kept(client)["stored"] == 0
        client.post(STATUS)                                               # from the memo: kept
        assert kept(client)["stored"] == 1
