"""Resilience and caching end to end: simulators and gateways over real HTTP on loopback.

Each test builds its own small world and gateway, because breakers, caches and retry
budgets are process-wide state that must not leak from one test into another.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Iterator

import httpx

from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.control import Fault
from gateway.simulation.world import World
from tests.tooling import serve_process, wait_ready
from tests.conftest import GraphQLClient
from tests.stack import stack
from tests.tooling import need_redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

STATUS = """query($maxAge: Int, $refresh: Boolean) { viewer(maxAge: $maxAge, refresh: $refresh) {
  sources { source state fromCache fetchedAt upstreamCalls breaker error { code message } warnings { code } }
  holdings(first: 200) { totalCount } } }"""


def statuses(body: dict) -> dict[str, dict]:
    return {s["source"]: s for s in body["data"]["viewer"]["sources"]}


def calls(world: World) -> dict[Source, int]:
    return {s: c.requests for s, c in world.controls.items()}


def test_request_deadline_bounds_a_hanging_source():
    with stack(sources={"timeout_s": 30, "cache_ttl_s": 0}, server={"request_deadline_s": 1.0}) as (world, client, _):
        world.controls[Source.COBO].add_fault(Fault(kind="delay", delay_s=20))
        started = time.perf_counter()
        body = client.query(STATUS)
        elapsed = time.perf_counter() - started
        st = statuses(body)
        assert elapsed < 1.8, elapsed
        assert st["COBO"]["state"] == "FAILED" and st["COBO"]["error"]["code"] == "UPSTREAM_TIMEOUT"
        assert all(st[s]["state"] in ("OK", "PARTIAL") for s in st if s != "COBO")
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UPSTREAM_TIMEOUT"]


def test_transient_failures_are_retried_and_429_retry_after_is_honoured():
    with stack(sources={"max_retries": 2, "cache_ttl_s": 0}) as (world, client, _):
        world.controls[Source.CALICO].add_fault(Fault(kind="status", status=503, times=2))
        world.controls[Source.CRYPTOFUSE].add_fault(Fault(kind="disconnect", times=1))
        world.controls[Source.DALP].add_fault(Fault(kind="status", status=429, retry_after=1, times=1))
        started = time.perf_counter()
        body = client.query(STATUS)
        elapsed = time.perf_counter() - started
        assert "errors" not in body, body.get("errors")
        st = statuses(body)
        assert st["CALICO"]["state"] == "OK" and st["CALICO"]["upstreamCalls"] == 3
        assert world.controls[Source.CALICO].requests == 3
        assert st["CRYPTOFUSE"]["state"] == "OK" and world.controls[Source.CRYPTOFUSE].requests == 2
        assert st["DALP"]["state"] == "OK"
        assert elapsed >= 1.0   # waited the Retry-After second before asking DALP again
        # non-retryable failures are not retried
        world.controls[Source.COBO].reset()
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=401))
        st = statuses(client.query(STATUS))
        assert st["COBO"]["error"]["code"] == "UPSTREAM_AUTH_FAILED"
        assert world.controls[Source.COBO].requests == 1


def test_retry_budget_stops_an_outage_becoming_a_retry_storm():
    with stack(sources={"cache_ttl_s": 0, "breaker_failures": 10_000},
               per_source={"calico": {"max_retries": 5, "retry_budget_ratio": 0.0}}) as (world, client, _):
        world.controls[Source.CALICO].add_fault(Fault(kind="status", status=503))
        world.controls[Source.CALICO].latency_s = 0
        for _ in range(20):
            st = statuses(client.query(STATUS))
            assert st["CALICO"]["error"]["code"] == "UPSTREAM_UNAVAILABLE"
        # 20 first attempts + the budget's floor (1 retry/s over a 10 s window), not 20 * 6 calls
        assert 20 < world.controls[Source.CALICO].requests <= 20 + 11


def test_circuit_breaker_opens_fails_fast_and_recovers_after_a_probe(monkeypatch):
    with stack(sources={"cache_ttl_s": 0, "max_retries": 0},
               per_source={"cobo": {"breaker_failures": 3, "breaker_cooldown_s": 1.0}}) as (world, client, app):
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        for _ in range(3):
            client.query(STATUS)
        tripped = world.controls[Source.COBO].requests
        body = client.query(STATUS)
        st = statuses(body)
        assert world.controls[Source.COBO].requests == tripped          # skipped: no call made
        assert st["COBO"]["breaker"] == "OPEN" and st["COBO"]["state"] == "FAILED"
        assert "circuit open" in st["COBO"]["error"]["message"]
        health = httpx.get(client.http.base_url.join("/health"), params={"ready": ""}).json()
        assert health["breakers"]["COBO"]["state"] == "OPEN" and health["breakers"]["CALICO"]["state"] == "CLOSED"
        time.sleep(1.1)
        world.controls[Source.COBO].faults.clear()
        st = statuses(client.query(STATUS))                                # the probe succeeds
        assert st["COBO"]["state"] == "OK" and st["COBO"]["breaker"] == "CLOSED"


def test_concurrency_limit_per_source_holds_under_a_burst():
    with stack(per_source={"dalp": {"max_concurrency": 1}}, accounts=5, cache={"enabled": False},
               auth={"admin_keys": ["admin"]}) as (world, client, app):
        for control in world.controls.values():
            control.latency_s = 0.15
        ids = ["demo"] + [f"user-{i:04d}" for i in range(1, 6)]
        results: list[dict] = []

        def one(account_id: str) -> None:   # six accounts: six distinct DALP identities at once
            results.append(client.query('query($id: ID!) { account(id: $id) { sources { source state } } }',
                                        {"id": account_id}, key="admin"))
        threads = [threading.Thread(target=one, args=(i,)) for i in ids]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        assert all("errors" not in r for r in results)
        upstreams = app.state.gateway.clients
        assert upstreams[Source.DALP].upstream.limiter.peak == 1          # the configured limit
        assert upstreams[Source.CALICO].upstream.limiter.peak > 1          # others ran in parallel
        assert elapsed >= 6 * 0.15                                         # DALP reads went one by one


def test_concurrent_identical_requests_share_one_upstream_call():
    with stack(cache={"enabled": False}) as (world, client, _):
        cold = statuses(client.query(STATUS))
        per_request = {Source(s): v["upstreamCalls"] for s, v in cold.items()}
        for control in world.controls.values():
            control.reset()
            control.latency_s = 0.4
        threads = [threading.Thread(target=lambda: client.query(STATUS)) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        made = calls(world)
        # ten requests in flight together: one read per identity and page, not ten
        assert made == per_request, (made, per_request)


def test_cache_hits_max_age_refresh_and_its_rate_limit():
    with stack(sources={"cache_ttl_s": 60, "refresh_min_interval_s": 0.5}) as (world, client, _):
        first = statuses(client.query(STATUS))
        assert not any(s["fromCache"] for s in first.values())
        made = calls(world)
        second = statuses(client.query(STATUS))
        assert calls(world) == made                                        # nothing asked upstream
        assert all(s["fromCache"] and s["upstreamCalls"] == 0 for s in second.values())
        assert {k: v["fetchedAt"] for k, v in second.items()} == {k: v["fetchedAt"] for k, v in first.items()}
        # a refresh right away is rate-limited: served from the cache, and said so
        limited = statuses(client.query(STATUS, {"refresh": True}))
        assert calls(world) == made
        assert all({"code": "REFRESH_RATE_LIMITED"} in s["warnings"] for s in limited.values())
        time.sleep(0.6)
        fresh = statuses(client.query(STATUS, {"refresh": True}))
        assert all(not s["fromCache"] for s in fresh.values())
        assert all(calls(world)[s] > made[s] for s in Source)
        made = calls(world)
        time.sleep(0.6)
        aged = statuses(client.query(STATUS, {"maxAge": 0}))             # fresher than the cache allows
        assert all(not s["fromCache"] for s in aged.values()) and all(calls(world)[s] > made[s] for s in Source)
        bad = client.query(STATUS, {"maxAge": -1})
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_stale_answer_served_when_the_upstream_fails_within_max_stale():
    with stack(sources={"cache_ttl_s": 0.3, "max_stale_s": 60, "max_retries": 0}) as (world, client, _):
        first = statuses(client.query(STATUS))
        time.sleep(0.4)
        world.controls[Source.CALICO].add_fault(Fault(kind="status", status=503))
        body = client.query(STATUS)
        assert "errors" not in body
        calico = statuses(body)["CALICO"]
        assert calico["state"] == "OK" and calico["fromCache"] is True
        assert calico["fetchedAt"] == first["CALICO"]["fetchedAt"]
        assert {"code": "STALE"} in calico["warnings"]
    with stack(sources={"cache_ttl_s": 0.3, "max_stale_s": 0, "max_retries": 0}) as (world, client, _):
        client.query(STATUS)
        time.sleep(0.4)
        world.controls[Source.CALICO].add_fault(Fault(kind="status", status=503))
        assert statuses(client.query(STATUS))["CALICO"]["state"] == "FAILED"


def test_response_byte_cap_gives_bad_response():
    with stack(per_source={"onebalance": {"max_response_bytes": 4096}}) as (world, client, _):
        world.controls[Source.ONEBALANCE].add_fault(Fault(kind="huge"))
        body = client.query(STATUS)
        st = statuses(body)
        assert st["ONEBALANCE"]["state"] == "FAILED" and st["ONEBALANCE"]["error"]["code"] == "UPSTREAM_BAD_RESPONSE"
        assert st["DALP"]["state"] == "OK"


def test_redis_unavailable_keeps_the_gateway_working_and_shows_in_health():
    with stack(cache={"redis_url": "redis://:s3cret-redis-pw@127.0.0.1:1/0"}) as (world, client, _):
        body = client.query(STATUS)
        assert "errors" not in body and body["data"]["viewer"]["holdings"]["totalCount"] > 0
        health = httpx.get(client.http.base_url.join("/health"), params={"ready": ""})
        assert health.json()["cache"]["healthy"] is False
        assert health.json()["status"] == "ready"        # the cache is an optimisation, not a dependency
        assert "s3cret-redis-pw" not in health.text


@contextlib.contextmanager
def two_processes_sharing_redis(tmp_path: Any) -> Iterator[tuple[World, list[str]]]:
    """The simulators here, and two gateway processes on one config that shares Redis."""
    need_redis(REDIS_URL)
    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        config = tmp_path / "gateway.toml"
        config.write_text(world.config_toml(sims.url, cache={"redis_url": REDIS_URL}))
        ports = [free_port(), free_port()]
        procs = [serve_process(str(config), port) for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, proc in zip(urls, procs):
                wait_ready(url, proc)
            yield world, urls
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


def test_two_gateway_processes_share_one_redis_cache(tmp_path):
    with two_processes_sharing_redis(tmp_path) as (world, urls):
        first = GraphQLClient(urls[0]).query(STATUS)
        made = calls(world)
        assert all(v >= 1 for v in made.values())
        second = GraphQLClient(urls[1]).query(STATUS)
        assert calls(world) == made                                    # the second process asked nobody
        st = statuses(second)
        assert all(s["fromCache"] for s in st.values())
        assert second["data"]["viewer"]["holdings"] == first["data"]["viewer"]["holdings"]
        health = httpx.get(urls[1] + "/health", params={"ready": ""}).json()
        assert health["cache"]["backend"].lower().startswith("redis") and health["cache"]["healthy"] is True


def test_refresh_maps_to_cobo_force_refresh_per_address():
    with stack(sources={"cache_ttl_s": 60, "refresh_min_interval_s": 0}) as (world, client, _):
        client.query(STATUS)
        world.controls[Source.COBO].reset()
        body = client.query(STATUS, {"refresh": True})
        assert "errors" not in body
        params = [dict(e["params"]) for e in world.controls[Source.COBO].log]
        forced = [p for p in params if p.get("force_refresh") == "true"]
        assert forced and all("address" in p for p in forced)                 # never without an address
        dataset = world.datasets[Source.COBO]
        uuids = world.accounts["demo"]["cobo"]["wallet_uuids"]
        addresses = {r["address"] for u in uuids for r in dataset.wallets[u] if r.get("address")}
        assert sorted(p["address"] for p in forced) == sorted(addresses)      # each address once


def test_two_processes_asking_at_once_share_one_upstream_read_through_redis(tmp_path):
    with two_processes_sharing_redis(tmp_path) as (world, urls):
        for control in world.controls.values():
            control.latency_s = 0.5
        threads = [threading.Thread(target=lambda u=u: GraphQLClient(u).query(STATUS)) for u in urls * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # six requests over two processes at once: each upstream response is read once
        # (the size-6 demo account needs one read per source)
        assert calls(world) == {source: 1 for source in Source}
