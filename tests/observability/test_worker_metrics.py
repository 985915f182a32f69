"""`serve --workers 2`: one /metrics scrape shows every worker's counters, and each worker's
breaker states under its own `pid`, whichever worker answers the scrape."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.control import Fault
from gateway.simulation.world import World

QUERY = "{ viewer { holdings(first: 200) { totalCount } } }"


def _scrape(url: str) -> dict[str, list]:
    text = httpx.get(url + "/metrics", timeout=10, headers={"connection": "close"}).text
    samples: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    return samples


def _ask(url: str) -> httpx.Response:
    # a fresh connection each time, so the kernel hands requests to both workers
    return httpx.post(url + "/graphql", json={"query": QUERY}, timeout=30,
                      headers={"authorization": "Bearer demo-key", "connection": "close"})


def _breakers(samples: dict[str, list], source: str) -> dict[str, float]:
    return {s.labels["pid"]: s.value for s in samples["balance_gateway_breaker_state"] if s.labels["source"] == source}


def test_one_scrape_shows_every_workers_counters_and_breakers(tmp_path):
    leftovers = set(glob.glob(os.path.join(tempfile.gettempdir(), "balance-gateway-metrics-*")))
    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        raw_sources = {"max_retries": 0, "breaker_failures": 1, "breaker_cooldown_s": 300, "timeout_s": 5}
        config = tmp_path / "gateway.toml"
        text = world.config_toml(sims.url, cache={"enabled": False})
        # every source: no retries, a breaker that opens on one failure and stays open
        lines = []
        for line in text.splitlines():
            lines.append(line)
            if line.startswith("[sources."):
                lines.extend(f"{k} = {v}" for k, v in raw_sources.items())
        config.write_text("\n".join(lines) + "\n")
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                                 "--workers", "2", "--log-level", "warning"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:   # both workers up: each publishes its breakers under its pid
                assert proc.poll() is None and time.monotonic() < deadline, "the workers did not start"
                try:
                    if len(_breakers(_scrape(url), "COBO")) == 2:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            workers = set(subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                         text=True).stdout.split())

            sent = 30
            for _ in range(sent):
                assert _ask(url).status_code == 200
            upstream = {s.value: c.requests for s, c in world.controls.items()}
            for _ in range(6):   # whichever worker answers, it reports both workers' counts
                samples = _scrape(url)
                graphql = sum(s.value for s in samples["http_server_request_duration_seconds_count"]
                              if s.labels["http_route"] == "/graphql")
                assert graphql == sent
                calls = defaultdict(float)
                for s in samples["balance_gateway_upstream_request_duration_seconds_count"]:
                    calls[s.labels["source"]] += s.value
                assert calls == upstream
                assert set(_breakers(samples, "COBO")) <= workers | {str(proc.pid)}
                assert set(_breakers(samples, "COBO").values()) == {0.0}
                active = samples["http_server_active_requests"]   # summed over the workers: the scrape itself
                assert len(active) == 1 and "pid" not in active[0].labels and active[0].value == 1

            # One failing request reaches one worker: its COBO breaker opens, the other's does not.
            world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
            assert _ask(url).json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
            deadline = time.monotonic() + 10
            while sorted(_breakers(_scrape(url), "COBO").values()) != [0.0, 2.0]:
                assert time.monotonic() < deadline, _breakers(_scrape(url), "COBO")
                time.sleep(0.2)
            for _ in range(4):
                samples = _scrape(url)
                assert sorted(_breakers(samples, "COBO").values()) == [0.0, 2.0]
                assert set(_breakers(samples, "DALP").values()) == {0.0}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    # the CLI's temporary metrics directory goes with it
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "balance-gateway-metrics-*"))) <= leftovers


def test_active_requests_count_what_is_being_served():
    import threading
    from tests.stack import stack
    with stack() as (world, client, _app):
        world.controls[Source.DALP].latency_s = 1.0
        slow = threading.Thread(target=lambda: client.post(QUERY))
        slow.start()
        try:
            deadline = time.monotonic() + 10
            while True:   # the slow request, and this scrape
                text = client.http.get("/metrics").text
                if "http_server_active_requests 2.0" in text:
                    break
                assert time.monotonic() < deadline, [l for l in text.splitlines() if "active" in l]
                time.sleep(0.05)
        finally:
            slow.join()
        assert "http_server_active_requests 1.0" in client.http.get("/metrics").text
