"""The README's first command: `balance-gateway serve` with no config serves the demo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from gateway.server.serving import free_port

QUERY = """{ viewer { id
  wallets { source }
  holdings(first: 200) { nodes { source amount } }
  totalValue { value { amount currency } }
  sources { source state } } }"""


def test_serve_without_config_runs_the_demo_with_all_five_sources():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "demo did not start"
            time.sleep(0.1)
        body = httpx.post(url + "/graphql", json={"query": QUERY},
                          headers={"authorization": "Bearer demo-key"}, timeout=30).json()
        assert "errors" not in body, body
        viewer = body["data"]["viewer"]
        everything = {"CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP"}
        assert {w["source"] for w in viewer["wallets"]} == everything
        assert {h["source"] for h in viewer["holdings"]["nodes"]} == everything
        assert {s["state"] for s in viewer["sources"]} <= {"OK", "PARTIAL"}
        page = httpx.get(url + "/graphql", headers={"accept": "text/html"})
        assert "demo-key" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_config_names_the_missing_variable_not_a_value(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[sources.cobo]\nbase_url = "http://127.0.0.1:1"\napi_key = "${NOT_SET_ANYWHERE_XYZ}"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "NOT_SET_ANYWHERE_XYZ" in result.stderr


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not start")


def test_check_config_names_every_missing_variable_and_masks_secrets(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('''
[sources.cobo]
base_url = "${COBO_URL_XYZ}"
api_key = "${COBO_KEY_XYZ}"
[[accounts]]
id = "alice"
api_keys = ["${ALICE_KEY_XYZ}"]
cobo = { wallet_uuids = ["w1"] }
''')
    base_env = {k: v for k, v in os.environ.items() if not k.endswith("_XYZ")}
    missing = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(config)],
                             capture_output=True, text=True, env=base_env, timeout=30)
    assert missing.returncode == 2
    assert "COBO_URL_XYZ, COBO_KEY_XYZ, ALICE_KEY_XYZ" in missing.stderr
    env = {**base_env, "COBO_URL_XYZ": "https://cobo.example", "COBO_KEY_XYZ": "cobo-secret-value",
           "ALICE_KEY_XYZ": "alice-secret-value"}
    ok = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(config)],
                        capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0, ok.stderr
    effective = json.loads(ok.stdout)
    assert effective["sources"]["cobo"]["base_url"] == "https://cobo.example"
    assert effective["sources"]["cobo"]["api_key"] == "**********"
    assert effective["accounts"][0]["api_keys"] == ["**********"]
    assert effective["sources"]["cobo"]["timeout_s"] == 5.0          # defaults filled in
    assert "secret-value" not in ok.stdout + ok.stderr
    config.write_text('[server]\nport = "not a port"\n')
    invalid = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(config)],
                             capture_output=True, text=True, env=base_env, timeout=30)
    assert invalid.returncode == 2 and "server.port" in invalid.stderr


def test_two_workers_serve_the_demo():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, proc, seconds=60)
        for _ in range(6):
            body = httpx.post(url + "/graphql", json={"query": "{ viewer { id holdings { totalCount } } }"},
                              headers={"authorization": "Bearer demo-key"}, timeout=30).json()
            assert body["data"]["viewer"]["id"] == "demo" and body["data"]["viewer"]["holdings"]["totalCount"] > 0
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, children                       # uvicorn's supervisor runs two workers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_sigterm_lets_requests_in_flight_finish(tmp_path):
    from gateway.sources.catalog import Source
    from gateway.server.serving import ServerThread
    from gateway.simulation.world import World

    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        config = tmp_path / "gateway.toml"
        config.write_text(world.config_toml(sims.url))
        world.controls[Source.DALP].latency_s = 1.5
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                                 "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        _wait_for(url, proc)
        result: dict = {}

        def slow_request() -> None:
            result["response"] = httpx.post(url + "/graphql", json={"query": "{ viewer { holdings { totalCount } } }"},
                                            headers={"authorization": "Bearer demo-key"}, timeout=30)
        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)                                             # the request is waiting on DALP
        proc.send_signal(signal.SIGTERM)
        thread.join(timeout=20)
        # uvicorn finishes what is in flight, shuts the app down, then re-raises SIGTERM
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert result["response"].status_code == 200
        assert result["response"].json()["data"]["viewer"]["holdings"]["totalCount"] > 0
