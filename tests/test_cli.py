"""The README's first command: `balance-gateway serve` with no config serves the demo."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from gateway.serving import free_port

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
