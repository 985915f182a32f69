"""Account.balanceHistory end to end: gateway cursors over Cryptofuse's offset paging."""
from __future__ import annotations

import asyncio
import base64
import collections
import struct
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pytest

from gateway.sources.catalog import Source
from gateway.simulation.control import Fault
from gateway.sources.cryptofuse.simulator import six_dp
from gateway.sources import build_clients
from resolvers.accounts import AccountRef
from resolvers.history import account_history
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.usefixtures("clean_simulators")

HISTORY_PATH = "/user/balances/history/"

PAGE = """
query Page($first: Int, $after: String, $currency: String, $type: String) {
  viewer {
    balanceHistory(first: $first, after: $after, currency: $currency, type: $type) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { timestamp type amount balanceAfter token { id } } }
    }
  }
}
"""


@pytest.fixture()
def demo_history(demo_world):
    """The demo user's simulated history (newest first), restored after the test."""
    token = demo_world.accounts["demo"][Source.CRYPTOFUSE.key]["token"]
    user = demo_world.datasets[Source.CRYPTOFUSE].users[token]
    saved = list(user["history"])
    yield user["history"]
    user["history"][:] = saved


@pytest.fixture()
def control(demo_world):
    return demo_world.controls[Source.CRYPTOFUSE]


def history_calls(control) -> list[dict[str, str]]:
    return [dict(e["params"]) for e in control.log if e["path"].endswith(HISTORY_PATH)]


def key(node: dict) -> tuple:
    return (node["timestamp"], node["type"], Decimal(node["amount"]),
            None if node["balanceAfter"] is None else Decimal(node["balanceAfter"]))


def expected_key(entry: dict) -> tuple:
    ts = entry["timestamp"].isoformat().replace("+00:00", "Z")
    after = entry.get("balance_after")
    return (ts, entry["type"], Decimal(six_dp(entry["amount"])), None if after is None else Decimal(six_dp(after)))


def page(client, **variables) -> dict:
    body = client.query(PAGE, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]["viewer"]["balanceHistory"]


def error_codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def walk(client, first: int, between=None, **filters) -> tuple[list[dict], list[dict]]:
    """Every page of a listing; `between(i)` runs before page i+1 is asked for."""
    nodes, pages, after = [], [], None
    while True:
        conn = page(client, first=first, after=after, **filters)
        pages.append(conn)
        nodes.extend(e["node"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, pages
        after = conn["pageInfo"]["endCursor"]
        if between:
            between(len(pages))
        assert len(pages) < 100


def new_entry(base: dict, minutes: int, currency: str | None = None, kind: str = "deposit") -> dict:
    return {"timestamp": base["timestamp"] + timedelta(minutes=minutes), "currency": currency or base["currency"],
            "type": kind, "amount": Decimal(minutes) + Decimal("0.5"), "balance_after": Decimal("1000") + minutes}


# -- paging ---------------------------------------------------------------------------
def test_pages_of_seven_return_every_entry_once_in_order(client, demo_history, control):
    assert len(demo_history) >= 24
    nodes, pages = walk(client, 7)
    assert [key(n) for n in nodes] == [expected_key(e) for e in demo_history]
    sizes = [len(p["edges"]) for p in pages]
    assert sizes == [7] * (len(demo_history) // 7) + ([len(demo_history) % 7] if len(demo_history) % 7 else [])
    assert all(p["totalCount"] == len(demo_history) for p in pages)
    assert pages[0]["pageInfo"]["hasPreviousPage"] is False
    assert all(p["pageInfo"]["hasPreviousPage"] for p in pages[1:])
    assert all(p["pageInfo"]["hasNextPage"] for p in pages[:-1]) and not pages[-1]["pageInfo"]["hasNextPage"]
    for p in pages:
        assert p["pageInfo"]["startCursor"] == p["edges"][0]["cursor"]
        assert p["pageInfo"]["endCursor"] == p["edges"][-1]["cursor"]
    # one upstream call per page; each later page starts one row early to check its anchor
    calls = history_calls(control)
    assert calls[0] == {"limit": "7", "offset": "0"}
    assert calls[1:] == [{"limit": "8", "offset": str(7 * i - 1)} for i in range(1, len(pages))]
    # the cursor is opaque: it does not carry the position in clear
    cursors = [e["cursor"] for p in pages for e in p["edges"]]
    assert len(set(cursors)) == len(cursors)
    for position, cursor in enumerate(cursors):
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        assert struct.pack(">Q", position) not in raw and b"c1|" not in raw


def test_exact_boundaries_and_first_zero(client, demo_history):
    n = len(demo_history)
    whole = page(client, first=n)
    assert len(whole["edges"]) == n and whole["pageInfo"]["hasNextPage"] is False
    assert page(client, first=n - 1)["pageInfo"]["hasNextPage"] is True
    last = page(client, first=1, after=whole["edges"][-2]["cursor"])
    assert [key(e["node"]) for e in last["edges"]] == [expected_key(demo_history[-1])]
    assert last["pageInfo"]["hasNextPage"] is False and last["pageInfo"]["hasPreviousPage"] is True
    beyond = page(client, first=5, after=whole["pageInfo"]["endCursor"])
    assert beyond["edges"] == [] and beyond["pageInfo"]["hasNextPage"] is False and beyond["totalCount"] == n
    zero = page(client, first=0)
    assert zero["edges"] == [] and zero["totalCount"] == n and zero["pageInfo"]["hasNextPage"] is True
    default = page(client)
    assert len(default["edges"]) == min(n, 50)


def test_currency_and_type_filters_are_passed_through(client, demo_history, control):
    currency = collections.Counter(e["currency"] for e in demo_history).most_common(1)[0][0]
    matching = [e for e in demo_history if e["currency"] == currency]
    nodes, pages = walk(client, 2, currency=currency)
    assert [key(n) for n in nodes] == [expected_key(e) for e in matching]
    assert pages[-1]["totalCount"] == len(matching)
    assert all(c.get("currency") == currency and "type" not in c for c in history_calls(control))

    control.reset()
    deposits = [e for e in demo_history if e["type"] == "deposit"]
    nodes, _ = walk(client, 3, type="deposit")
    assert [key(n) for n in nodes] == [expected_key(e) for e in deposits]
    assert all(c.get("type") == "deposit" and "currency" not in c for c in history_calls(control))

    both = [e for e in demo_history if e["type"] == "deposit" and e["currency"] == currency]
    conn = page(client, first=50, currency=currency, type="deposit")
    assert [key(e["node"]) for e in conn["edges"]] == [expected_key(e) for e in both]
    assert conn["totalCount"] == len(both)


# -- history that moves between page requests ------------------------------------------
def test_new_entries_between_pages_are_neither_skipped_nor_repeated(client, demo_history, control):
    original = [expected_key(e) for e in demo_history]
    top = demo_history[0]
    added = {1: 3, 2: 12, 3: 1}       # page -> new entries before the next page (12 > a page)

    def arrive(pages_seen: int) -> None:
        for i in range(added.get(pages_seen, 0)):
            demo_history.insert(0, new_entry(top, minutes=60 * pages_seen + i + 1))

    nodes, pages = walk(client, 7, between=arrive)
    assert [key(n) for n in nodes] == original                 # no skip, no repeat, same order
    assert pages[-1]["totalCount"] == len(original) + sum(added.values())
    assert [p["totalCount"] for p in pages[:4]] == [24, 27, 39, 40]
    # a fresh listing sees the new entries on top
    fresh = page(client, first=5)
    assert [key(e["node"]) for e in fresh["edges"]] == [expected_key(e) for e in demo_history[:5]]


def test_new_entries_also_shift_filtered_listings(client, demo_history):
    first_page = page(client, first=4, type="deposit")
    for i in range(5):
        demo_history.insert(0, new_entry(demo_history[0], minutes=i + 1, kind="deposit"))
        demo_history.insert(0, new_entry(demo_history[0], minutes=i + 1, kind="fee"))
    rest, _ = walk_after(client, first_page, first=4, type="deposit")
    seen = [key(e["node"]) for e in first_page["edges"]] + [key(n) for n in rest]
    deposits = [expected_key(e) for e in demo_history if e["type"] == "deposit"][5:]
    assert seen == deposits


def walk_after(client, conn, **variables):
    nodes, pages = [], []
    while conn["pageInfo"]["hasNextPage"]:
        conn = page(client, after=conn["pageInfo"]["endCursor"], **variables)
        pages.append(conn)
        nodes.extend(e["node"] for e in conn["edges"])
    return nodes, pages


def test_an_entry_removed_above_the_cursor_is_found_again(client, demo_history):
    first_page = page(client, first=7)
    del demo_history[2]                                    # total shrinks: the anchor moved up one
    nxt = page(client, first=7, after=first_page["pageInfo"]["endCursor"])
    assert [key(e["node"]) for e in nxt["edges"]] == [expected_key(e) for e in demo_history[6:13]]


def test_history_rewritten_under_the_cursor_is_refused(client, demo_history):
    first_page = page(client, first=7)
    del demo_history[6]                                    # the cursor's own entry is gone
    body = client.query(PAGE, {"first": 7, "after": first_page["pageInfo"]["endCursor"]})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "start again" in body["errors"][0]["message"]


# -- bad input ---------------------------------------------------------------------------
def test_bad_first_and_cursors_are_bad_user_input(client, demo_history):
    for first in (-1, 201, 10_000):
        body = client.query(PAGE, {"first": first})
        assert error_codes(body) == ["BAD_USER_INPUT"], first
    assert len(page(client, first=200)["edges"]) == len(demo_history)

    good = page(client, first=3)["pageInfo"]["endCursor"]
    holdings = client.query("{ viewer { holdings(first: 2) { pageInfo { endCursor } } } }")
    holdings_cursor = holdings["data"]["viewer"]["holdings"]["pageInfo"]["endCursor"]
    currency = demo_history[0]["currency"]
    filtered = page(client, first=1, currency=currency)["pageInfo"]["endCursor"]
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for bad, filters in (("garbage", {}), ("!!!", {}), ("é", {}), (good[:-4], {}), (good + "AAAA", {}),
                         (flipped, {}), (holdings_cursor, {}), (filtered, {}), (good, {"currency": currency}),
                         (good, {"type": "deposit"})):
        body = client.query(PAGE, {"first": 3, "after": bad, **filters})
        assert error_codes(body) == ["BAD_USER_INPUT"], (bad, filters)
        assert body["data"]["viewer"] is None

    # a cursor of another account's listing is refused too (admin reads both)
    other = """query($id: ID!, $after: String) { account(id: $id) { balanceHistory(first: 2, after: $after) {
               pageInfo { endCursor } edges { node { type } } } } }"""
    user_cursor = client.query(other, {"id": "user-0001"}, key=ADMIN_KEY)["data"]["account"]["balanceHistory"][
        "pageInfo"]["endCursor"]
    assert user_cursor
    body = client.query(other, {"id": "demo", "after": user_cursor}, key=ADMIN_KEY)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert client.query(other, {"id": "user-0001", "after": user_cursor}, key=ADMIN_KEY).get("errors") is None


# -- upstream failure, memo, call counts -------------------------------------------------
def test_upstream_failure_is_an_empty_connection_and_one_error(client, demo_world, control):
    control.add_fault(Fault("status", status=503, path="/user/balances/history"))
    query = """{ viewer { a: balanceHistory(first: 5) { totalCount edges { cursor } pageInfo { hasNextPage } }
                          b: balanceHistory(first: 5) { totalCount edges { cursor } } } }"""
    response = client.post(query)
    assert response.status_code == 200
    body = response.json()
    viewer = body["data"]["viewer"]
    assert viewer["a"] == {"totalCount": 0, "edges": [], "pageInfo": {"hasNextPage": False}}
    assert viewer["b"] == {"totalCount": 0, "edges": []}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert error["extensions"]["source"] == "CRYPTOFUSE" and error["extensions"]["account"] == "demo"
    token = demo_world.accounts["demo"][Source.CRYPTOFUSE.key]["token"]
    assert "injected" not in response.text and token not in response.text
    assert len(history_calls(control)) == 1                     # the identical page was not asked twice


def test_identical_pages_are_fetched_once_per_request(client, control):
    query = """{ viewer { a: balanceHistory(first: 4) { edges { cursor } }
                          b: balanceHistory(first: 4) { edges { cursor } }
                          c: balanceHistory(first: 5) { edges { cursor } } } }"""
    body = client.query(query)
    assert "errors" not in body
    assert body["data"]["viewer"]["a"] == body["data"]["viewer"]["b"]
    assert sorted(c["limit"] for c in history_calls(control)) == ["4", "5"]
    client.query(query)                                          # a new request reads again
    assert len(history_calls(control)) == 4


def test_first_150_uses_two_upstream_calls(client, demo_history, control):
    oldest = demo_history[-1]
    for i in range(200 - len(demo_history)):
        demo_history.append(new_entry(oldest, minutes=-(i + 1) * 7, kind="trade"))
    conn = page(client, first=150)
    assert [key(e["node"]) for e in conn["edges"]] == [expected_key(e) for e in demo_history[:150]]
    assert conn["totalCount"] == 200 and conn["pageInfo"]["hasNextPage"] is True
    assert history_calls(control) == [{"limit": "100", "offset": "0"}, {"limit": "50", "offset": "100"}]

    control.reset()
    rest = page(client, first=150, after=conn["pageInfo"]["endCursor"])
    assert [key(e["node"]) for e in rest["edges"]] == [expected_key(e) for e in demo_history[150:]]
    assert rest["pageInfo"]["hasNextPage"] is False
    assert history_calls(control) == [{"limit": "100", "offset": "149"}]   # anchor row + up to 99

    control.reset()
    whole = page(client, first=200)
    assert len(whole["edges"]) == 200 and not whole["pageInfo"]["hasNextPage"]
    assert history_calls(control) == [{"limit": "100", "offset": "0"}, {"limit": "100", "offset": "100"}]


# -- no Cryptofuse --------------------------------------------------------------------------
def test_account_without_cryptofuse_is_an_empty_connection(gateway_config):
    async def run():
        async with httpx.AsyncClient() as http:
            clients = build_clients(gateway_config, http, registry=None)
            account = gateway_config.account("demo").model_copy(update={"cryptofuse": None})
            ctx = SimpleNamespace(state=SimpleNamespace(clients=clients), identities={}, upstream_problems={},
                                  seen_tokens={})
            conn = await account_history(ctx, AccountRef(id="demo", config=account), None, None, 10, None)
            assert (conn.total_count, conn.edges, conn.page_info.has_next_page) == (0, [], False)
            assert ctx.upstream_problems == {}
            ctx.state.clients = {}
            conn = await account_history(ctx, AccountRef(id="demo", config=account), None, None, None, None)
            assert conn.total_count == 0 and conn.nodes == []
    asyncio.run(run())


# -- entries arriving between the upstream calls of one gateway page (no HTTP) ----------------
class _MovingUpstream:
    """A Cryptofuse client stand-in whose history grows on top after each call."""

    def __init__(self, entries, grow):
        self.entries, self.grow, self.calls = entries, list(grow), []

    def identities(self, account):
        return ["identity"]

    async def history_page(self, identity, *, currency, type, limit, offset, options=None):
        from gateway.sources.cryptofuse.client import HistoryPage
        self.calls.append((limit, offset))
        page = HistoryPage(entries=self.entries[offset:offset + limit], total=len(self.entries),
                           limit=limit, offset=offset)
        for record in (self.grow.pop(0) if self.grow else []):
            self.entries.insert(0, record)
        return page


def _record(i: int):
    from datetime import timezone
    from gateway.sources.cryptofuse.client import BalanceChangeRecord
    return BalanceChangeRecord(timestamp=datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=i),
                               type="deposit", token=SimpleNamespace(id=f"t{i % 3}"), currency="X",
                               amount=Decimal(i), balance_after=Decimal(i * 2))


def test_entries_arriving_between_upstream_calls_of_one_page(gateway_config):
    old = [_record(i) for i in range(300, 0, -1)]               # newest first
    upstream = _MovingUpstream(list(old), grow=[[_record(1000 + i) for i in range(5)],
                                                [_record(2000 + i) for i in range(2)]])
    def request():   # a fresh per-request context (and memo) each time
        return SimpleNamespace(state=SimpleNamespace(clients={Source.CRYPTOFUSE: upstream}), identities={},
                               upstream_problems={}, seen_tokens={}, options_for=lambda account_id: None)
    ref = AccountRef(id="demo", config=gateway_config.account("demo"))
    conn = asyncio.run(account_history(request(), ref, None, None, 200, None))
    assert conn.nodes == old[:200]                                 # nothing skipped or repeated
    assert conn.total_count == 307 and conn.page_info.has_next_page
    # 100 rows; then the 5 new rows shift everything: the anchor is found 5 rows down
    assert upstream.calls[:2] == [(100, 0), (100, 100)]
    assert upstream.calls[2:] == [(5, 200), (2, 205)]              # each shift costs a call, none repeats
    nxt = asyncio.run(account_history(request(), ref, None, None, 200, conn.page_info.end_cursor))
    assert nxt.nodes == old[200:] and not nxt.page_info.has_next_page
