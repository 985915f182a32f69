"""A seventh source added from tests/ alone (tests/sources/seventh_source.py, named by the
GATEWAY_SOURCE_SPECS plugin hook) works end to end: the embedded demo serves it, its
holdings come back over real HTTP with exact amounts, and it has a SourceStatus, a
GraphQL enum value, config sections and a simulator, with nothing outside tests/ naming it.

It runs in subprocesses: the Source enum is built from the catalog when the gateway is
first imported, so the extra spec must be in the environment before that.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.server.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.sources.seventh_source"

# What every simulated Zephyr vault holds (tests/sources/seventh_source.py BALANCES), as the API must say it.
USDC_BASE = "eip155:8453/erc20:0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
MYSTERY = "eip155:1/erc20:0x7777777777777777777777777777777777777777"
UINT256_MAX = str(2**256 - 1)

QUERY = """query($s: [Source!]) { viewer { id
  wallets(sources: $s) { source kind label }
  holdings(first: 50, filter: {sources: $s}, orderBy: {field: SYMBOL, direction: ASC}) { totalCount nodes {
    source amount amountRaw precision token { id decimals } value { amount currency } price { unit source } } }
  sources { source state upstreamCalls error { code message } } } }"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_CONFIG", "GATEWAY_SOURCE_SPECS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=_env(**env),
                          capture_output=True, text=True, timeout=60)


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not start")


@pytest.fixture(scope="module")
def demo_with_seventh():
    """`balance-gateway serve` (the embedded demo) with the seventh source plugged in."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"],
                            cwd=ROOT, env=_env(GATEWAY_SOURCE_SPECS=PLUGIN),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, proc)
        with httpx.Client(base_url=url, timeout=30) as http:
            yield http
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(http: httpx.Client, key: str, variables: dict) -> dict:
    response = http.post("/graphql", json={"query": QUERY, "variables": variables},
                         headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def _query(http: httpx.Client, key: str, variables: dict) -> dict:
    body = _post(http, key, variables)
    assert "errors" not in body, body
    return body["data"]["viewer"]


DEMO_AUTH = {"authorization": "Bearer demo-key"}   # the demo's simulator control routes need it


def test_seventh_source_holdings_come_back_exact_over_http(demo_with_seventh):
    viewer = _query(demo_with_seventh, "demo-key", {"s": ["ZEPHYR"]})
    assert viewer["wallets"] == [{"source": "ZEPHYR", "kind": "CUSTODIAL", "label": "Zephyr vault v-demo"}]
    holdings = viewer["holdings"]
    assert holdings["totalCount"] == 2
    by_token = {h["token"]["id"]: h for h in holdings["nodes"]}
    assert by_token[USDC_BASE] == {
        "source": "ZEPHYR", "amount": "123456.789012", "amountRaw": "123456789012", "precision": "EXACT",
        "token": {"id": USDC_BASE, "decimals": 6},
        "value": {"amount": "123432.0976541976", "currency": "USD"},   # 123456.789012 x 0.9998, exactly
        "price": {"unit": "0.9998", "source": "ZEPHYR"}}
    assert by_token[MYSTERY] == {
        "source": "ZEPHYR", "precision": "EXACT", "amountRaw": UINT256_MAX,
        "amount": UINT256_MAX[:-18] + "." + UINT256_MAX[-18:],             # every digit of a uint256
        "token": {"id": MYSTERY, "decimals": 18}, "value": None, "price": None}
    statuses = {s["source"]: s for s in viewer["sources"]}
    assert list(statuses) == ["CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP", "ZEPHYR"]   # its `order`
    assert statuses["ZEPHYR"] == {"source": "ZEPHYR", "state": "OK", "upstreamCalls": 1, "error": None}
    assert {s["state"] for s in statuses.values()} <= {"OK", "PARTIAL"}


def test_seventh_source_sits_beside_the_others_and_fails_on_its_own(demo_with_seventh):
    http = demo_with_seventh
    everything = _query(http, "user-0001-key", {"s": None})
    assert {w["source"] for w in everything["wallets"]} == {"CALICO", "CRYPTOFUSE", "ONEBALANCE", "COBO", "DALP",
                                                           "ZEPHYR"}
    # Its simulator is steered like any other (ControlledApp under /_sim/zephyr).
    assert http.post("/_sim/zephyr/_control/faults", json={"kind": "status", "status": 503},
                     headers=DEMO_AUTH).status_code < 300
    try:
        body = _post(http, "user-0002-key", {"s": None})
    finally:
        http.delete("/_sim/zephyr/_control/faults", headers=DEMO_AUTH)
    assert body["errors"] == [{"message": "Zephyr is unavailable (HTTP 503)",
                               "extensions": {"code": "UPSTREAM_UNAVAILABLE", "source": "ZEPHYR",
                                              "account": "user-0002"}}]
    failed = body["data"]["viewer"]
    statuses = {s["source"]: s for s in failed["sources"]}
    assert statuses["ZEPHYR"]["state"] == "FAILED"
    assert statuses["ZEPHYR"]["error"] == {"code": "UPSTREAM_UNAVAILABLE",
                                           "message": "Zephyr is unavailable (HTTP 503)"}   # its display name
    assert all(s["state"] in ("OK", "PARTIAL") for name, s in statuses.items() if name != "ZEPHYR")
    assert "ZEPHYR" not in {h["source"] for h in failed["holdings"]["nodes"]}


def test_seventh_source_is_in_the_exported_schema_and_nothing_else_changes():
    with_it = _cli("export-schema", GATEWAY_SOURCE_SPECS=PLUGIN)
    assert with_it.returncode == 0, with_it.stderr
    committed = (ROOT / "schema.graphql").read_text()
    assert with_it.stdout == committed.replace("  DALP\n}", "  DALP\n  ZEPHYR\n}", 1) != committed


def test_seventh_source_config_sections_are_its_own_models(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[sources.zephyr]\nbase_url = "http://127.0.0.1:1/zephyr"\napi_key = "k"\n\n'
                      '[[accounts]]\nid = "a"\nzephyr = { vault = "v-1", colour = "blue" }\n')
    refused = _cli("check-config", str(config), GATEWAY_SOURCE_SPECS=PLUGIN)
    assert refused.returncode == 2 and "accounts.0.zephyr.colour: Extra inputs are not permitted" in refused.stderr
    config.write_text(config.read_text().replace(', colour = "blue"', ""))
    accepted = _cli("check-config", str(config), GATEWAY_SOURCE_SPECS=PLUGIN)
    assert accepted.returncode == 0, accepted.stderr
    effective = json.loads(accepted.stdout)
    assert effective["accounts"][0]["zephyr"] == {"vault": "v-1"}
    assert effective["sources"]["zephyr"]["api_key"] == "**********"                  # its SecretStr
    assert effective["sources"]["zephyr"]["base_url"] == "http://127.0.0.1:1/zephyr"   # SourceConfig's fields
    config.write_text(config.read_text().replace('"v-1"', '"closed"'))   # its problem_with hook
    closed = _cli("check-config", str(config), GATEWAY_SOURCE_SPECS=PLUGIN)
    assert closed.returncode == 2
    assert "account 'a' uses zephyr.vault 'closed', which Zephyr does not serve" in closed.stderr
    unknown = _cli("check-config", str(config))   # without the plugin there is no such section
    assert unknown.returncode == 2 and "sources.zephyr: Extra inputs are not permitted" in unknown.stderr


def test_a_bad_plugin_module_is_one_clear_line():
    missing = _cli("export-schema", GATEWAY_SOURCE_SPECS="tests.no_such_source_module")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == ("balance-gateway: GATEWAY_SOURCE_SPECS names 'tests.no_such_source_module', "
                                      "which cannot be imported (ModuleNotFoundError: No module named "
                                      "'tests.no_such_source_module')")
    not_a_spec = _cli("export-schema", GATEWAY_SOURCE_SPECS="tests.capture")
    assert not_a_spec.returncode == 2
    assert not_a_spec.stderr.strip() == ("balance-gateway: GATEWAY_SOURCE_SPECS names 'tests.capture', "
                                         "which does not define SPEC = SourceSpec(...)")
