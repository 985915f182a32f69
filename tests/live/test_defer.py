"""@defer on fragments of account fields, over a real HTTP connection: with one source
slow, the first payload carries what the fast sources answered, and the merged result
equals the same operation without @defer."""
from __future__ import annotations

import time

import pytest

from gateway.sources.catalog import Source
from tests.live.live_clients import DEFER_ACCEPT, multipart_events
from tests.stack import stack

SLOW_S = 1.5
FIELDS_FAST = """fast: holdings(first: 200, filter: {sources: [CALICO, ONEBALANCE, DALP], includeZero: true}) {
    nodes { id amount value { amount currency } } }"""
FIELDS_SLOW = """slow: holdings(first: 200, filter: {sources: [COBO], includeZero: true}) { nodes { id amount } }
    total: totalValue { value { amount currency } complete }"""
DEFERRED = "query { viewer { id " + FIELDS_FAST + " ... @defer(label: \"slow\") { " + FIELDS_SLOW + " } } }"
PLAIN = "query { viewer { id " + FIELDS_FAST + " ... { " + FIELDS_SLOW + " } } }"


@pytest.fixture(scope="module")
def defer_stack():
    with stack(live={"min_interval_s": 1}, cache={"enabled": False}) as (world, client, app):
        yield world, client, str(client.http.base_url).rstrip("/")


async def test_the_first_payload_has_the_fast_sources_and_the_merge_equals_the_plain_answer(defer_stack):
    world, client, url = defer_stack
    plain = client.query(PLAIN)
    assert "errors" not in plain
    world.controls[Source.COBO].latency_s = SLOW_S
    try:
        started = time.monotonic()
        parts = []
        async for part in multipart_events(url, DEFERRED, {}, accept=DEFER_ACCEPT):
            parts.append((time.monotonic() - started, part))
    finally:
        world.controls[Source.COBO].latency_s = 0
    (first_at, first), *rest = parts
    assert first_at < SLOW_S, first_at                 # not held back by the slow source
    assert first["hasNext"] is True
    assert first["data"]["viewer"]["fast"] == plain["data"]["viewer"]["fast"]
    assert "slow" not in first["data"]["viewer"]
    assert rest and rest[-1][0] >= SLOW_S and rest[-1][1]["hasNext"] is False
    merged = first["data"]
    paths = {p["id"]: p["path"] for p in first.get("pending", [])}
    for _, part in rest:
        paths.update({p["id"]: p["path"] for p in part.get("pending", [])})
        for piece in part.get("incremental", []):
            target = merged
            for step in paths[piece["id"]] + piece.get("subPath", []):
                target = target[step]
            target.update(piece["data"])
    assert merged == plain["data"]


def test_defer_can_be_switched_off():
    with stack(live={"defer": False}) as (world, client, app):
        body = client.post(DEFERRED).json()
    assert body["errors"][0]["extensions"]["code"] == "DEFER_DISABLED"
