"""The demo stays on the machine it runs on: `serve` without a config refuses a non-loopback
host unless told `--allow-remote-demo`, and the simulators' control routes on the demo's
port need the demo key (gateway/server/demo.py). The gateway's own upstream calls to the
simulators keep working."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from gateway.server.demo import demo_app, is_loopback
from gateway.server.serving import ServerThread, free_port

KEY = {"authorization": "Bearer demo-key"}


def _serve(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--log-level", "warning", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example.com"])
def test_the_demo_refuses_a_non_loopback_host(host):
    proc = _serve("--host", host, "--port", str(free_port()))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--allow-remote-demo" in err and host in err and "Traceback" not in err


def test_the_demo_serves_a_remote_host_only_when_asked():
    port = free_port("0.0.0.0")
    proc = _serve("--host", "0.0.0.0", "--port", str(port), "--allow-remote-demo")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["demo"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_loopback_hosts():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "192.168.1.1", "example.com"]))


def test_simulator_control_routes_need_the_demo_key_and_the_gateway_still_reads_them():
    port = free_port()
    with ServerThread(demo_app("127.0.0.1", port, extra_accounts=0), port=port) as server:
        sim = server.url + "/_sim/cobo"
        for method, path, body in [("GET", "/_control/stats", None), ("POST", "/_control/reset", None),
                                   ("POST", "/_control/faults", {"kind": "status", "status": 503}),
                                   ("DELETE", "/_control/faults", None), ("PUT", "/_control/latency", {"seconds": 5})]:
            for headers in ({}, {"authorization": "Bearer nope"}, {"x-api-key": "demo-key-not"}):
                refused = httpx.request(method, sim + path, json=body, headers=headers)
                assert refused.status_code == 401, (method, path, headers)
                assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        stats = httpx.get(sim + "/_control/stats", headers=KEY)
        assert stats.status_code == 200 and stats.json()["faults"] == [] and stats.json()["latency_s"] == 0
        assert httpx.get(sim + "/_control/stats", headers={"x-api-key": "demo-key"}).status_code == 200
        # The upstream routes take the simulated upstream's own credentials, not the demo key...
        assert httpx.get(sim + "/api/v1/wallets/balances", headers=KEY).status_code == 401
        # ...which the gateway has: every source answers.
        body = httpx.post(server.url + "/graphql", json={"query": "{ viewer { sources { source state } } }"},
                          headers=KEY, timeout=30).json()
        assert {s["state"] for s in body["data"]["viewer"]["sources"]} <= {"OK", "PARTIAL"}
        assert len(body["data"]["viewer"]["sources"]) == 5
        # and with the key, control still works (for a person steering the demo)
        assert httpx.post(sim + "/_control/faults", json={"kind": "status", "status": 503}, headers=KEY).status_code == 200
        assert len(httpx.get(sim + "/_control/stats", headers=KEY).json()["faults"]) == 1
