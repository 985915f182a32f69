"""Value history over real HTTP and a real database (SQLite and PostgreSQL): an account read
at several times while its simulated balances change reads back, from holdingsAt and
valueHistory, digit for digit what was live each time; failed sources leave points
incomplete; each point converts at its own time's rates; bad input costs no upstream call."""
from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator

import httpx
import pytest

from gateway.config import GatewayConfig
from gateway.server.app import create_app
from gateway.server.serving import ServerThread
from gateway.simulation.control import Fault
from gateway.simulation.world import World
from gateway.sources.catalog import Source
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from gateway.store.schema_version import migrate
from tests.conftest import GraphQLClient
from tests.store_db import run_async, store_block

LIVE = """{ viewer {
  usd: totalValue(currency: "USD") { value { amount currency rates { pair rate } } complete unpricedHoldings failedSources }
  eur: totalValue(currency: "EUR") { value { amount currency } complete unpricedHoldings failedSources }
  holdings(first: 200) { nodes { id source amount amountRaw precision value { amount currency } price { unit reliability }
                                 token { id symbol decimals } wallet { id kind } } } } }"""
AT = """query($at: DateTime!) { viewer { holdingsAt(at: $at) { takenAt
  usd: totalValue(currency: "USD") { value { amount currency rates { pair rate } } complete unpricedHoldings failedSources }
  eur: totalValue(currency: "EUR") { value { amount currency } complete unpricedHoldings failedSources }
  holdings { id source amount amountRaw precision value { amount currency } price { unit reliability }
             token { id symbol decimals } wallet { id kind } } } } }"""
SERIES = """query($c: String!, $from: DateTime, $to: DateTime, $i: HistoryInterval!) { viewer {
  valueHistory(currency: $c, from: $from, to: $to, interval: $i) { at value { amount currency rate { pair rate } } complete sources } } }"""


def migrated(url: str) -> dict[str, Any]:
    block = store_block(url)

    async def run() -> None:
        engine = create_engine(StoreConfig.model_validate(block))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
    run_async(run)
    return block


@contextlib.contextmanager
def history_stack(store: dict[str, Any], world: World | None = None, rate: str = "1.0850",
                  **history: Any) -> Iterator[tuple[World, GraphQLClient, Any, str]]:
    world = world or World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        raw = world.config_dict(sims.url, store=store, history={"snapshot_every_s": 0, **history},
                                fx={"rates": {"EUR/USD": rate}}, cache={"enabled": False},
                                limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        for block in raw["sources"].values():
            block.update(timeout_s=2.0, max_retries=0)
        app = create_app(GatewayConfig.model_validate(raw))
        with ServerThread(app) as gateway:
            yield world, GraphQLClient(gateway.url), app.state.gateway.history, sims.url


def settle(history: Any, written: int) -> None:
    """Wait for the background writer (it runs on the gateway's loop, in its thread)."""
    deadline = time.monotonic() + 15
    while history.recorder.written < written:
        assert time.monotonic() < deadline, "the snapshot was never written"
        time.sleep(0.02)


def change_balances(sims_url: str, factor: str) -> None:
    """The simulated upstreams' balances move, over their control routes (every source)."""
    for source in Source:
        r = httpx.post(f"{sims_url}/{source.key}/_control/balances", json={"factor": factor})
        assert r.status_code == 200 and r.json()["rows"] > 0, (source, r.text)


def _requests(world: World) -> int:
    return sum(c.requests for c in world.controls.values())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def test_history_reads_back_what_was_live_at_each_time(store_url: str):
    with history_stack(migrated(store_url)) as (world, client, history, sims_url):
        lives, times = [], []
        for i, factor in enumerate(("1", "3", "0.5")):
            if factor != "1":
                change_balances(sims_url, factor)
            live = client.query(LIVE)
            assert "errors" not in live, live
            settle(history, i + 1)
            lives.append(live["data"]["viewer"])
            times.append(_now())
        # the balances really moved between the reads
        assert len({v["usd"]["value"]["amount"] for v in lives}) == 3
        calls, crypto_before = _requests(world), world.controls[Source.CRYPTOFUSE].requests
        for live, at in zip(lives, times):
            past = client.query(AT, {"at": at})["data"]["viewer"]["holdingsAt"]
            assert past["usd"] == live["usd"] and past["eur"] == live["eur"]
            by_id = lambda h: h["id"]   # noqa: E731
            assert sorted(past["holdings"], key=by_id) == sorted(live["holdings"]["nodes"], key=by_id)
            assert past["takenAt"] <= at.replace("+00:00", "Z")
        # one hourly point: the last snapshot of the hour, digit for digit the last live total
        points = client.query(SERIES, {"c": "USD", "i": "HOUR", "from": None, "to": None})["data"]["viewer"]["valueHistory"]
        assert points[-1]["value"]["amount"] == lives[-1]["usd"]["value"]["amount"]
        assert points[-1]["value"]["rate"] == {"pair": "EUR/USD", "rate": "1.085"}
        assert points[-1]["complete"] is lives[-1]["usd"]["complete"]
        assert points[-1]["sources"] == ["CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP"]
        eur = client.query(SERIES, {"c": "EUR", "i": "DAY", "from": None, "to": None})["data"]["viewer"]["valueHistory"]
        assert eur[-1]["value"]["amount"] == lives[-1]["eur"]["value"]["amount"]
        # the store answers; only Cryptofuse's balance history is read, for the range before
        # the first snapshot (the backfill)
        assert _requests(world) - calls == world.controls[Source.CRYPTOFUSE].requests - crypto_before

        # before the first snapshot there is none
        before = client.query(AT, {"at": "2020-01-01T00:00:00Z"})["data"]["viewer"]["holdingsAt"]
        assert before is None


def test_a_failed_source_leaves_the_point_incomplete_never_zero(sqlite_url: str):
    with history_stack(migrated(sqlite_url)) as (world, client, history, _):
        world.controls[Source.DALP].add_fault(Fault(kind="status", status=503))
        live = client.query(LIVE)["data"]["viewer"]
        settle(history, 1)
        at = _now()
        assert live["usd"]["failedSources"] == ["DALP"]
        past = client.query(AT, {"at": at})["data"]["viewer"]["holdingsAt"]
        assert past["usd"] == live["usd"] and past["usd"]["complete"] is False
        assert not [h for h in past["holdings"] if h["source"] == "DALP"]
        point = client.query(SERIES, {"c": "USD", "i": "HOUR", "from": None, "to": None})["data"]["viewer"]["valueHistory"][-1]
        assert point["complete"] is False and "DALP" not in point["sources"]
        assert Decimal(point["value"]["amount"]) == Decimal(live["usd"]["value"]["amount"]) > 0


def test_a_point_converts_at_the_rate_of_its_own_time(sqlite_url: str):
    store = migrated(sqlite_url)
    world = World.generate(0, size=6)
    with history_stack(store, world, rate="1.0850") as (_, client, history, _):
        then = client.query(LIVE)["data"]["viewer"]
        settle(history, 1)
        at = _now()
    with history_stack(store, world, rate="1.2000") as (_, client, history, _):
        now = client.query(LIVE)["data"]["viewer"]
        settle(history, 1)
        assert now["usd"]["value"]["amount"] != then["usd"]["value"]["amount"]
        past = client.query(AT, {"at": at})["data"]["viewer"]["holdingsAt"]
        assert past["usd"] == then["usd"] and past["usd"]["value"]["rates"] == [{"pair": "EUR/USD", "rate": "1.085"}]


def test_at_most_one_snapshot_per_period(sqlite_url: str):
    with history_stack(migrated(sqlite_url), snapshot_every_s=3600) as (world, client, history, sims_url):
        client.query(LIVE)
        settle(history, 1)
        change_balances(sims_url, "5")
        second = client.query(LIVE)["data"]["viewer"]
        time.sleep(0.3)
        assert history.recorder.written == 1
        past = client.query(AT, {"at": _now()})["data"]["viewer"]["holdingsAt"]
        assert past["usd"]["value"]["amount"] != second["usd"]["value"]["amount"]   # still the first read's


@pytest.mark.parametrize("variables, field", [
    ({"c": "USD", "i": "DAY", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ({"c": "USD", "i": "HOUR", "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "interval"),
    ({"c": "XYZ", "i": "DAY", "from": None, "to": None}, "currency"),
])
def test_bad_history_input_is_refused_without_an_upstream_call(sqlite_url: str, variables: dict, field: str):
    with history_stack(migrated(sqlite_url)) as (world, client, _, _):
        body = client.query(SERIES, variables)
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}
        assert _requests(world) == 0


def test_a_failing_store_never_fails_the_read_and_is_logged_without_secrets(tmp_path, caplog):
    # A store with no tables (never migrated): every write fails.
    store = store_block(f"sqlite:///{tmp_path}/unmigrated.db")
    with caplog.at_level(logging.ERROR, logger="gateway.history"):
        with history_stack(store) as (_, client, history, _):
            live = client.query(LIVE)
            assert "errors" not in live and live["data"]["viewer"]["usd"]["value"]["amount"]
            deadline = time.monotonic() + 10
            while history.recorder.failed < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            # reading it back is a coded error, never a 500 or a traceback
            body = client.query(SERIES, {"c": "USD", "i": "DAY", "from": None, "to": None})
            assert body["errors"][0]["extensions"] == {"code": "HISTORY_UNAVAILABLE"}
            assert "sqlite" not in body["errors"][0]["message"] and "unmigrated" not in body["errors"][0]["message"]
            assert body["data"] == {"viewer": None}   # the non-null list's null reaches the nullable viewer
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.history"]
    assert lines and all("OperationalError" in line and "sqlite" not in line for line in lines)


def test_the_background_snapshotter_records_accounts_nobody_reads(sqlite_url: str):
    world = World.generate(2, size=4)
    with history_stack(migrated(sqlite_url), world, refresh_every_s=0.2) as (_, client, history, _):
        settle(history, 3)   # demo, user-0001, user-0002: without a single client read
        assert _requests(world) > 0
        point = client.query(SERIES, {"c": "USD", "i": "DAY", "from": None, "to": None})["data"]["viewer"]["valueHistory"]
        assert point and point[-1]["sources"] == ["CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP"]
        other = client.query(AT, {"at": _now()}, key="user-0001-key")["data"]["viewer"]["holdingsAt"]
        assert other is not None and other["holdings"]


def test_the_demo_converts_with_its_simulated_provider_and_keeps_history():
    from gateway.server.demo import demo_app
    from gateway.server.serving import free_port
    port = free_port()
    with ServerThread(demo_app("127.0.0.1", port, extra_accounts=0), port=port) as demo:
        client = GraphQLClient(demo.url)
        deadline = time.monotonic() + 15
        while True:   # the provider is read once the demo listens (it is served by the demo itself)
            live = client.query(LIVE)["data"]["viewer"]
            if live["usd"]["value"]["rates"]:
                break
            assert time.monotonic() < deadline, "the demo never got its exchange rates"
            time.sleep(0.1)
        assert live["usd"]["value"]["rates"][0]["pair"] == "EUR/USD"
        deadline = time.monotonic() + 15
        while not (points := client.query(SERIES, {"c": "USD", "i": "HOUR", "from": None, "to": None})
                   ["data"]["viewer"]["valueHistory"]):
            assert time.monotonic() < deadline, "the demo recorded no history"
            time.sleep(0.1)
        assert points[-1]["sources"] == ["CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP"]


def test_cryptofuse_history_backfills_before_the_first_snapshot(sqlite_url: str):
    with history_stack(migrated(sqlite_url)) as (world, client, history, _):
        client.query(LIVE)
        settle(history, 1)
        entries = world.datasets[Source.CRYPTOFUSE].users[world.accounts["demo"]["cryptofuse"]["token"]]["history"]
        at = entries[len(entries) // 2]["timestamp"] + timedelta(seconds=1)   # inside the history, long before
        latest: dict[str, Decimal] = {}
        for e in entries:   # newest first
            if e["timestamp"] <= at and e["currency"] not in latest:
                latest[e["currency"]] = e["balance_after"]
        expected = sorted(str(v.quantize(Decimal("0.000001"))) for v in latest.values() if v)
        past = client.query(AT, {"at": at.isoformat()})["data"]["viewer"]["holdingsAt"]
        assert {h["source"] for h in past["holdings"]} == {"CRYPTOFUSE"}
        assert sorted(Decimal(h["amount"]).quantize(Decimal("0.000001")).__str__() for h in past["holdings"]) == expected
        assert all(h["value"] is None for h in past["holdings"])   # no prices then: never guessed
        assert past["usd"]["complete"] is False and past["takenAt"] <= at.isoformat().replace("+00:00", "Z")
        # the series: Cryptofuse-only points (no value, incomplete) before the snapshot's
        start = entries[-1]["timestamp"] - timedelta(days=1)
        points = client.query(SERIES, {"c": "USD", "i": "DAY", "from": start.isoformat(), "to": None}
                              )["data"]["viewer"]["valueHistory"]
        early, last = points[:-1], points[-1]
        assert early and all(p["sources"] == ["CRYPTOFUSE"] and p["value"] is None and not p["complete"] for p in early)
        days = {e["timestamp"].date() for e in entries}
        assert len(early) == len(days)
        assert len(last["sources"]) == 5 and last["value"] is not None


def test_a_history_read_right_after_a_live_read_sees_its_snapshot(store_url: str):
    with history_stack(migrated(store_url)) as (_, client, _history, sims_url):
        for factor in ("1", "2", "0.25"):
            if factor != "1":
                change_balances(sims_url, factor)
            live = client.query(LIVE)["data"]["viewer"]
            past = client.query(AT, {"at": _now()})["data"]["viewer"]["holdingsAt"]   # no waiting on our side
            assert past is not None and past["usd"] == live["usd"]
