"""viewerChanged over real connections (graphql-transport-ws and multipart HTTP) against
the simulators, whose balances the tests change in place (the simulators run in this
process; the gateway reads them over HTTP)."""
from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import pytest
from websockets.exceptions import ConnectionClosed

from gateway.simulation.control import Fault
from gateway.sources.catalog import Source
from tests.live.live_clients import SUBSCRIPTION, WSClient, multipart_events
from tests.stack import stack

INTERVAL = 1   # the floor in these tests ([live] min_interval_s), so polls come every second

ALL_HOLDINGS = """{ viewer { holdings(first: 200, filter: {includeZero: true, includeTestnets: true}) {
  nodes { id amount } } totalValue { value { amount currency } } } }"""


@pytest.fixture(scope="module")
def live_stack():
    with stack(accounts=3, live={"min_interval_s": INTERVAL, "keep_alive_s": 0.5}) as (world, client, app):
        yield world, client, app, str(client.http.base_url).rstrip("/")


@pytest.fixture(autouse=True)
def clean(live_stack):
    world = live_stack[0]
    for control in world.controls.values():
        control.reset()
    yield
    for control in world.controls.values():
        control.reset()


def cobo_row(world, account: str = "demo") -> dict:
    wallet = world.accounts[account]["cobo"]["wallet_uuids"][0]
    return world.datasets[Source.COBO].wallets[wallet][0]


@contextlib.contextmanager
def changed_amount(row: dict, amount: str):
    before = dict(row)
    row.update(amount=amount, total=amount, pending="0", locked="0")
    try:
        yield
    finally:
        row.clear()
        row.update(before)


async def no_event(ws: WSClient, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await ws.message(seconds)


async def test_first_event_at_once_with_every_current_holding(live_stack):
    world, client, app, url = live_stack
    expected = client.query(ALL_HOLDINGS)["data"]["viewer"]
    async with WSClient(url) as ws:
        assert (await ws.acked())["type"] == "connection_ack"
        started = time.monotonic()
        await ws.subscribe()
        event = await ws.event(timeout=5)
        assert time.monotonic() - started < 3   # at once, not after an interval
    assert sorted(h["id"] for h in event["changed"]) == sorted(h["id"] for h in expected["holdings"]["nodes"])
    assert {h["id"]: h["amount"] for h in event["changed"]} == \
        {h["id"]: h["amount"] for h in expected["holdings"]["nodes"]}
    assert event["removedHoldingIds"] == []
    assert event["totalValue"]["value"] == expected["totalValue"]["value"]
    assert event["account"]["id"] == "demo"
    assert all(s["state"] == "OK" for s in event["account"]["sources"])


async def test_a_change_sends_exactly_the_changed_holding_and_no_change_sends_nothing(live_stack):
    world, client, app, url = live_stack
    row = cobo_row(world)
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe()
        first = await ws.event()
        await no_event(ws, 2.5 * INTERVAL)          # polls happen, nothing changed: no event
        new_amount = str(Decimal(row["amount"]) + Decimal("0.000000000000000001"))
        with changed_amount(row, new_amount):
            event = await ws.event(timeout=INTERVAL + 3)
            assert [h["amount"] for h in event["changed"]] == [new_amount]
            assert event["changed"][0]["source"] == "COBO"
            assert event["removedHoldingIds"] == []
            assert event["changed"][0]["id"] in {h["id"] for h in first["changed"]}
            totals = Decimal(client.query(ALL_HOLDINGS.replace("{ viewer", "{ viewer(maxAge: 0)"))
                             ["data"]["viewer"]["totalValue"]["value"]["amount"])
            assert Decimal(event["totalValue"]["value"]["amount"]) == totals
            await no_event(ws, 2.5 * INTERVAL)
        back = await ws.event(timeout=INTERVAL + 3)   # restored: that holding changed again
        assert [h["amount"] for h in back["changed"]] == [row["amount"]]


async def test_a_removed_holding_is_named(live_stack):
    world, client, app, url = live_stack
    wallet = world.accounts["demo"]["cobo"]["wallet_uuids"][0]
    rows = world.datasets[Source.COBO].wallets[wallet]
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe()
        first = await ws.event()
        cobo_ids = [h["id"] for h in first["changed"] if h["source"] == "COBO"]
        # a row whose token is in no other row of the wallet (rows of one token make one holding)
        index = next(i for i, r in enumerate(rows) if sum(x["token_id"] == r["token_id"] for x in rows) == 1)
        removed = rows.pop(index)
        try:
            event = await ws.event(timeout=INTERVAL + 3)
            assert len(event["removedHoldingIds"]) == 1 and event["removedHoldingIds"][0] in cobo_ids
            # (another holding may change with it: one whose price was derived from the removed one)
            assert event["removedHoldingIds"][0] not in {h["id"] for h in event["changed"]}
        finally:
            rows.insert(index, removed)


async def test_a_failed_source_is_a_failed_status_not_a_dropped_connection(live_stack):
    world, client, app, url = live_stack
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe()
        await ws.event()
        world.controls[Source.COBO].add_fault(Fault("status", status=503))
        event = await ws.event(timeout=INTERVAL + 8)
        states = {s["source"]: s for s in event["account"]["sources"]}
        assert states["COBO"]["state"] == "FAILED"
        assert states["COBO"]["error"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert states["CALICO"]["state"] == "OK"
        assert event["removedHoldingIds"] == []   # a failed read removes nothing
        assert "COBO" in event["totalValue"]["failedSources"]
        world.controls[Source.COBO].faults.clear()
        recovered = await ws.event(timeout=INTERVAL + 35)   # after the breaker's cool-down at worst
        assert {s["source"]: s["state"] for s in recovered["account"]["sources"]}["COBO"] == "OK"


async def test_many_subscribers_share_one_read_per_identity_per_interval(live_stack):
    world, client, app, url = live_stack
    hub = app.state.gateway.live
    clients = [WSClient(url) for _ in range(15)]
    async with contextlib.AsyncExitStack() as stack_:
        for ws in clients:
            await stack_.enter_async_context(ws)
            await ws.acked()
            await ws.subscribe()
        for ws in clients:
            await ws.event()
        identities = hub.describe()["pollers"]
        assert identities == sum(len(client_.identities(app.state.gateway.account("demo")))
                                 for client_ in app.state.gateway.clients.values())
        before = sum(c.requests for c in world.controls.values())
        polls_before = hub.polls
        window = 4.0
        await asyncio.sleep(window)
        reads = sum(c.requests for c in world.controls.values()) - before
        polls = hub.polls - polls_before
    # Every poll is one read of one identity (one page each in this world), whatever the 15 subscribers.
    assert reads == polls
    assert identities * (window / INTERVAL - 1) <= polls <= identities * (window / INTERVAL + 1)
    await asyncio.sleep(0.3)
    assert hub.describe() == {**hub.describe(), "subscriptions": 0, "pollers": 0, "tasks": 0}


async def test_the_last_subscriber_leaving_stops_the_poller(live_stack):
    world, client, app, url = live_stack
    hub = app.state.gateway.live
    async with WSClient(url) as ws:
        await ws.acked()
        op = await ws.subscribe()
        await ws.event()
        assert hub.describe()["pollers"] > 0
        await ws.complete(op)
        await asyncio.sleep(0.3)
        assert hub.describe()["pollers"] == 0
    before = sum(c.requests for c in world.controls.values())
    await asyncio.sleep(2 * INTERVAL)
    assert sum(c.requests for c in world.controls.values()) == before


@pytest.mark.parametrize("payload", [{"Authorization": "Bearer not-a-key"}, {}, {"Authorization": "Basic x"},
                                     {"X-API-Key": "wrong"}])
async def test_a_wrong_key_is_refused_at_connection_init(live_stack, payload):
    url = live_stack[3]
    async with WSClient(url, payload=payload) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.message(5)
    assert closed.value.rcvd.code == 4403


async def test_subscribing_before_connection_init_is_refused(live_stack):
    url = live_stack[3]
    from websockets.asyncio.client import connect
    import json
    async with connect(url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4401


async def test_bad_messages_close_with_the_protocol_codes(live_stack):
    url = live_stack[3]
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.ws.send("not json")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.message(5)
    assert closed.value.rcvd.code == 4400
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.ws.send('{"id": "1", "type": "subscribe", "payload": {"query": "subscription {"}}')
        message = await ws.message(5)   # a bad document is the operation's error; the socket stays
        assert message["type"] == "error" and message["id"] == "1", message
        assert "Syntax Error" in message["payload"][0]["message"]
        await ws.subscribe()
        assert (await ws.event())["account"]["id"] == "demo"
        await ws.ws.send('{"type": "subscribe"}')   # no id, no payload
        with pytest.raises(ConnectionClosed) as closed:
            await ws.message(5)
    assert closed.value.rcvd.code == 4400


async def test_bad_arguments_and_limits_are_coded_errors(live_stack):
    url = live_stack[3]
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe(variables={"interval": 0})
        message = await ws.message()
        assert message["type"] in ("error", "next")
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
        deep = "subscription { viewerChanged { " + "account { wallets { " * 7 + "id" + " } }" * 7 + " } }"
        await ws.subscribe(deep)
        message = await ws.message()
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "MAX_DEPTH_LIMIT"


async def test_keep_alive_pings(live_stack):
    url = live_stack[3]
    async with WSClient(url) as ws:
        await ws.acked()
        import json
        raw = await asyncio.wait_for(ws.ws.recv(), 3)   # keep_alive_s = 0.5 in this stack
        assert json.loads(raw) == {"type": "ping"}


async def test_a_key_that_no_longer_authenticates_ends_its_subscription(live_stack):
    world, client, app, url = live_stack
    state = app.state.gateway
    from resolvers.context import key_digest
    digest = key_digest("user-0001-key")
    async with WSClient(url, key="user-0001-key") as ws:
        await ws.acked()
        op = await ws.subscribe()
        await ws.event()
        owner = state.key_index.pop(digest)   # what revoking the key will do (the registry's branch)
        try:
            message = await ws.message(INTERVAL + 3)
        finally:
            state.key_index[digest] = owner
    assert message == {"id": op, "type": "complete"}


async def test_the_hub_hook_ends_an_accounts_subscriptions(live_stack):
    world, client, app, url = live_stack
    async with WSClient(url, key="user-0002-key") as ws:
        await ws.acked()
        op = await ws.subscribe()
        await ws.event()
        assert app.state.gateway.live.end_account("user-0002") == 1
        assert await ws.message(3) == {"id": op, "type": "complete"}


async def test_multipart_http_first_event_then_the_change(live_stack):
    world, client, app, url = live_stack
    row = cobo_row(world, "user-0003")
    events = multipart_events(url, SUBSCRIPTION, {"interval": 1}, key="user-0003-key")
    try:
        started = time.monotonic()
        part = await anext(events)
        while part == {}:   # heartbeats
            part = await anext(events)
        assert time.monotonic() - started < 3
        first = part["payload"]["data"]["viewerChanged"]
        assert first["account"]["id"] == "user-0003" and first["changed"]
        new_amount = str(Decimal(row["amount"]) * 2 + 1)
        with changed_amount(row, new_amount):
            part = await asyncio.wait_for(anext(events), INTERVAL + 3)
            while part == {}:
                part = await asyncio.wait_for(anext(events), INTERVAL + 3)
            change = part["payload"]["data"]["viewerChanged"]
            assert [Decimal(h["amount"]) for h in change["changed"]] == [Decimal(new_amount)]
    finally:
        await events.aclose()


def test_the_cap_on_open_subscriptions_per_key():
    async def run(url: str) -> None:
        async with WSClient(url) as ws:
            await ws.acked()
            ops = [await ws.subscribe() for _ in range(2)]
            for _ in ops:
                await ws.event()
            async with WSClient(url) as other:   # the cap is per key, not per connection
                await other.acked()
                await other.subscribe()
                message = await other.message()
                errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
                assert errors[0]["extensions"]["code"] == "MAX_SUBSCRIPTIONS"
                await ws.complete(ops[0])
                await asyncio.sleep(0.3)
                await other.subscribe()
                assert (await other.event())["account"]["id"] == "demo"
    with stack(live={"min_interval_s": INTERVAL, "max_subscriptions_per_key": 2}) as (world, client, app):
        asyncio.run(run(str(client.http.base_url).rstrip("/")))


async def test_queries_go_over_http_not_the_socket(live_stack):
    url = live_stack[3]
    async with WSClient(url) as ws:
        await ws.acked()
        op = await ws.subscribe("query { viewer { id } }")
        message = await ws.message()
        assert message["type"] == "error" and message["id"] == op, message
        await ws.subscribe()
        assert (await ws.event())["account"]["id"] == "demo"   # the socket is still usable


async def test_a_source_filter_with_nothing_to_watch_still_answers_at_once(live_stack):
    world, client, app, url = live_stack
    account = app.state.gateway.account("demo")
    unused = [s.value for s in Source if account.source(s) is None]
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe(variables={"interval": 1, "sources": unused})   # [] when demo uses every source
        event = await ws.event()
    assert event["changed"] == [] and event["removedHoldingIds"] == []


async def test_a_source_filter_limits_the_event_to_those_sources(live_stack):
    url = live_stack[3]
    async with WSClient(url) as ws:
        await ws.acked()
        await ws.subscribe(variables={"interval": 1, "sources": ["COBO"]})
        event = await ws.event()
    assert event["changed"] and {h["source"] for h in event["changed"]} == {"COBO"}
