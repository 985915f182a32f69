"""Calico's time window and filters through HoldingFilter: validation and push-down."""
from __future__ import annotations

from datetime import datetime

import pytest

from gateway.server.app import create_app
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.conftest import GraphQLClient

pytestmark = pytest.mark.usefixtures("clean_simulators")

Q = """query($f: HoldingFilter) { viewer {
  holdings(first: 200, filter: $f) { totalCount nodes { source symbol: token { symbol } updatedAt wallet { provider } } }
  totalValue(filter: $f) { value { amount } complete } } }"""


def calico_params(world: World) -> list[dict[str, str]]:
    return [dict(entry["params"]) for entry in world.controls[Source.CALICO].log]


def test_window_start_after_end_is_bad_user_input_before_any_upstream_call(client, demo_world):
    body = client.query("query($f: HoldingFilter) { viewer { holdings(filter: $f) { totalCount } } }",
                        {"f": {"updatedAfter": "2025-09-27T00:00:00Z", "updatedBefore": "2025-09-26T00:00:00Z"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert sum(c.requests for c in demo_world.controls.values()) == 0


def test_time_window_is_pushed_down_to_calico_and_applied_to_every_source(client, demo_world):
    everything = client.query(Q, {"f": {"sources": ["CALICO"]}})["data"]["viewer"]["holdings"]["nodes"]
    times = sorted(datetime.fromisoformat(h["updatedAt"].replace("Z", "+00:00")) for h in everything)
    assert len(times) >= 4
    middle = times[len(times) // 2]
    after = middle.isoformat().replace("+00:00", "Z")
    for control in demo_world.controls.values():
        control.reset()
    viewer = client.query(Q, {"f": {"updatedAfter": after}})["data"]["viewer"]
    got = viewer["holdings"]["nodes"]
    assert got and all(datetime.fromisoformat(h["updatedAt"].replace("Z", "+00:00")) >= middle for h in got)
    assert "CRYPTOFUSE" not in {h["source"] for h in got}   # Cryptofuse reports no fetch time
    pushed = [p for p in calico_params(demo_world) if "start_time" in p]
    assert pushed and pushed[0]["start_time"] == str(int(middle.timestamp() * 1000))
    assert pushed[0]["limit"] == "100"


def test_symbol_filter_needs_no_extra_call_when_calico_was_complete(client, demo_world):
    body = client.query(Q, {"f": {"symbols": ["ETH"]}})
    assert all(h["symbol"]["symbol"] == "ETH" for h in body["data"]["viewer"]["holdings"]["nodes"])
    assert demo_world.controls[Source.CALICO].requests == 1
    assert "asset_symbols" not in calico_params(demo_world)[0]


def test_truncated_calico_answer_is_completed_by_pushing_the_filter_down():
    world = World(seed=3)
    world.add_account("demo", size=140, sources=[Source.CALICO])
    with ServerThread(world.combined_app()) as sims:
        config = world.gateway_config(sims.url)
        with ServerThread(create_app(config)) as gateway:
            client = GraphQLClient(gateway.url)
            rows = world.datasets[Source.CALICO].rows["calico-token-demo"]
            hidden = {r["asset_symbol"] for r in rows[100:]} - {r["asset_symbol"] for r in rows[:100]}
            status = client.query("{ viewer { sources { source state warnings { code } } } }")
            calico = next(s for s in status["data"]["viewer"]["sources"] if s["source"] == "CALICO")
            assert calico["state"] == "PARTIAL" and {"code": "POSSIBLY_TRUNCATED"} in calico["warnings"]
            symbol = sorted(hidden)[0] if hidden else rows[120]["asset_symbol"]
            body = client.query(Q, {"f": {"symbols": [symbol], "includeZero": True}})
            nodes = body["data"]["viewer"]["holdings"]["nodes"]
            expected = [r for r in rows if r["asset_symbol"] == symbol]
            assert len(nodes) == len({(r["crypto_source_id"], r["wallet_address_redacted"]) for r in expected})
            pushed = [dict(e["params"]) for e in world.controls[Source.CALICO].log if "asset_symbols" in dict(e["params"])]
            assert pushed and pushed[-1]["asset_symbols"] == symbol
            assert {h["symbol"]["symbol"] for h in nodes} == {symbol}
