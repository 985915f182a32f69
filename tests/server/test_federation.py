"""Apollo Federation 2: Balance Gateway as a subgraph.

First `_service` and `_entities` on the gateway itself (batching through the dataloaders,
authorization like node(id)); then the real thing: our SDL composed with a second subgraph
(federation/risk-subgraph.mjs, which adds Account.riskProfile) by @apollo/composition and
served by Hive Gateway, all on loopback, with the client's key forwarded to us only.
Needs `npm ci --prefix federation` (without it the test fails in CI and skips elsewhere, naming that command).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from gateway.sources.catalog import Source
from gateway.server.serving import free_port
from tests.conftest import ADMIN_KEY, upstream_counts
from tests.tooling import missing

pytestmark = pytest.mark.usefixtures("clean_simulators")

ROOT = Path(__file__).resolve().parents[2]
FEDERATION = ROOT / "federation"
INSTALL = "npm ci --prefix federation"
FLAGGED = ["demo", "user-0001"]          # the risk subgraph's flaggedAccounts
START_TIMEOUT_S = 60

ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) { __typename
  ... on Account { id totalValue { value { amount currency } complete } }
  ... on Wallet { id source account { id } holdings { totalCount } }
  ... on Token { id symbol decimals } } }"""


def risk_profile(account_id: str) -> str:
    """What federation/risk-subgraph.mjs answers (sum of UTF-16 code units mod 3)."""
    return ["LOW", "MEDIUM", "HIGH"][sum(ord(c) for c in account_id) % 3]


def reset(demo_world) -> None:
    for control in demo_world.controls.values():
        control.reset()


def calls_by_source(accounts: list[dict]) -> dict[Source, int]:
    """Upstream calls the gateway reported for these accounts' `sources { source upstreamCalls }`."""
    out: dict[Source, int] = {}
    for account in accounts:
        for s in account["sources"]:
            out[Source(s["source"])] = out.get(Source(s["source"]), 0) + s["upstreamCalls"]
    return out


def wallet_ids(client, account_id: str) -> list[str]:
    body = client.query('query($id: ID!) { account(id: $id) { wallets { id } } }', {"id": account_id}, key=ADMIN_KEY)
    return [w["id"] for w in body["data"]["account"]["wallets"]]


# -- the subgraph protocol on the gateway itself ------------------------------------------
def test_service_sdl_is_the_exported_schema_with_keys(client):
    sdl = client.query("{ _service { sdl } }")["data"]["_service"]["sdl"]
    assert sdl + "\n" == (ROOT / "schema.graphql").read_text()
    assert re.search(r'@link\(url: "https://specs\.apollo\.dev/federation/v2\.\d+", import: \["@key"\]\)', sdl)
    for entity in ("Account", "Wallet", "Token"):
        assert re.search(rf'^type {entity} implements Node @key\(fields: "id"\) \{{', sdl, re.M), entity
    assert re.search(r"^union _Entity = Account \| Token \| Wallet$", sdl, re.M)


def test_entities_resolve_accounts_wallets_and_tokens_like_the_root_fields(client):
    viewer = client.query("""{ viewer { totalValue { value { amount currency } complete }
        wallets { id source holdings { totalCount } }
        holdings(first: 1) { nodes { token { id symbol decimals } } } } }""")["data"]["viewer"]
    wallet = viewer["wallets"][0]
    token = viewer["holdings"]["nodes"][0]["token"]
    reps = [{"__typename": "Account", "id": "demo"}, {"__typename": "Wallet", "id": wallet["id"]},
            {"__typename": "Token", "id": token["id"]}]
    body = client.query(ENTITIES, {"r": reps})
    assert "errors" not in body, body.get("errors")
    account, wallet_entity, token_entity = body["data"]["_entities"]
    assert account == {"__typename": "Account", "id": "demo", "totalValue": viewer["totalValue"]}
    assert wallet_entity == {"__typename": "Wallet", "id": wallet["id"], "source": wallet["source"],
                             "account": {"id": "demo"}, "holdings": wallet["holdings"]}
    assert token_entity == {"__typename": "Token", **token}


def test_25_representations_cost_one_upstream_call_per_source_and_identity(client, demo_world):
    accounts = ["demo", "user-0001"]
    wallets = {a: wallet_ids(client, a) for a in accounts}
    # What reading both accounts once costs, as the gateway itself reports it...
    reset(demo_world)
    body = client.query('query($ids: [ID!]!) { accounts(ids: $ids) { sources { source upstreamCalls } } }',
                        {"ids": accounts}, key=ADMIN_KEY)
    expected = calls_by_source(body["data"]["accounts"])
    assert upstream_counts(demo_world) == expected
    assert expected[Source.CALICO] == 2 and all(n >= 2 for n in expected.values())   # one identity each at least
    # ...and 25 entity representations of those accounts and their wallets cost no more.
    pool = [{"__typename": "Account", "id": a} for a in accounts] + \
           [{"__typename": "Wallet", "id": w} for a in accounts for w in wallets[a]]
    reps = [pool[i % len(pool)] for i in range(25)]
    reset(demo_world)
    body = client.query(ENTITIES, {"r": reps}, key=ADMIN_KEY)
    assert "errors" not in body, body.get("errors")
    assert [(e["__typename"], e["id"]) for e in body["data"]["_entities"]] == [(r["__typename"], r["id"]) for r in reps]
    assert upstream_counts(demo_world) == expected


def test_another_accounts_entities_are_null_and_forbidden_without_reading_them(client, demo_world):
    own_wallet, other_wallet = wallet_ids(client, "demo")[0], wallet_ids(client, "user-0001")[0]
    reset(demo_world)
    viewer = client.query("{ viewer { sources { source upstreamCalls } } }")["data"]["viewer"]
    own_cost = calls_by_source([viewer])
    reps = [{"__typename": "Account", "id": "demo"}, {"__typename": "Account", "id": "user-0001"},
            {"__typename": "Wallet", "id": other_wallet}, {"__typename": "Wallet", "id": own_wallet},
            {"__typename": "Account", "id": "no-such-account"}]
    reset(demo_world)
    body = client.query(ENTITIES, {"r": reps})      # as demo
    entities = body["data"]["_entities"]
    assert [e and e["id"] for e in entities] == ["demo", None, None, own_wallet, None]
    errors = {tuple(e["path"]): e["extensions"]["code"] for e in body["errors"]}
    # An unknown account is FORBIDDEN too, exactly like account(id): no probing for ids.
    assert errors == {("_entities", 1): "FORBIDDEN", ("_entities", 2): "FORBIDDEN", ("_entities", 4): "FORBIDDEN"}
    assert upstream_counts(demo_world) == own_cost   # user-0001's sources were never called


def test_representations_of_nothing_are_null(client):
    reps = [{"__typename": "Wallet", "id": "not-a-wallet-id"}, {"__typename": "Token", "id": "eip155:1/erc20:0xdead"},
            {"__typename": "Account"}]
    body = client.query(ENTITIES, {"r": reps})
    assert body["data"]["_entities"] == [None, None, None]
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["_entities", 2], "BAD_USER_INPUT")]


# -- composed and served by a real federation gateway -----------------------------------------
def _require_node_modules() -> None:
    if shutil.which("node") is None:
        missing("node is not on PATH: federation tests need Node 20+ and `" + INSTALL + "`")
    for package in ("@apollo/composition", "@apollo/subgraph", "@graphql-hive/gateway", "graphql-yoga"):
        if not (FEDERATION / "node_modules" / package / "package.json").is_file():
            missing(f"federation/node_modules lacks {package}: run `{INSTALL}` from the repo root")


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no output)"


class Process:
    """A Node process of ours, in its own process group, output to a log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.log = name, log
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(args, cwd=FEDERATION, stdout=self.handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                     start_new_session=True)

    def wait_for(self, ready, what: str) -> object:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before {what}:\n{_log_tail(self.log)}")
            found = ready()
            if found:
                return found
            time.sleep(0.1)
        pytest.fail(f"{self.name}: no {what} within {START_TIMEOUT_S}s:\n{_log_tail(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)     # the group this test started, by its id
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.handle.close()


def _listening_url(log: Path) -> str | None:
    match = re.search(r"^listening (http://127\.0\.0\.1:\d+/graphql)$", _log_tail(log), re.M)
    return match.group(1) if match else None


def _compose(out: Path, *subgraphs: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "compose.mjs", str(out), *subgraphs], cwd=FEDERATION, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COMPOSE_AUTHORIZATION": "Bearer demo-key"})


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readiness", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def federated(gateway, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Risk subgraph + supergraph composed from our live `_service { sdl }` + Hive Gateway."""
    _require_node_modules()
    tmp = tmp_path_factory.mktemp("federation")
    started: list[Process] = []
    try:
        risk = Process("risk subgraph", ["node", "risk-subgraph.mjs", "0"], tmp / "risk.log",
                       env={"RISK_FLAGGED_ACCOUNTS": ",".join(FLAGGED)})
        started.append(risk)
        risk_url = str(risk.wait_for(lambda: _listening_url(risk.log), "listening line"))

        supergraph = tmp / "supergraph.graphql"
        composed = _compose(supergraph, f"balance={gateway.url}/graphql", f"risk={risk_url}")
        assert composed.returncode == 0, composed.stderr

        port = free_port()
        hive = Process("hive-gateway", [str(FEDERATION / "node_modules" / ".bin" / "hive-gateway"), "supergraph",
                                        str(supergraph), "-c", "gateway.config.mjs", "--host", "127.0.0.1",
                                        "--port", str(port)], tmp / "hive.log",
                       env={"NODE_ENV": "test", "FORK": "1", "NO_COLOR": "1"})
        started.append(hive)
        url = f"http://127.0.0.1:{port}"
        hive.wait_for(lambda: _ready(url), "readiness")
        yield {"url": url + "/graphql", "risk": risk_url, "supergraph": supergraph.read_text()}
    finally:
        for process in reversed(started):
            process.stop()


def _federated_query(federated, query: str, key: str | None = "demo-key") -> dict:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(federated["url"], json={"query": query}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _risk_stats(federated) -> dict:
    return httpx.get(federated["risk"].removesuffix("/graphql") + "/stats", timeout=5).json()


def test_supergraph_has_both_subgraphs_and_our_entities(federated):
    sdl = federated["supergraph"]
    assert re.search(r'join__graph\(name: "balance", url: "http://127\.0\.0\.1:\d+/graphql"\)', sdl)
    assert re.search(r'join__graph\(name: "risk", url: "http://127\.0\.0\.1:\d+/graphql"\)', sdl)
    for entity in ("Account", "Wallet", "Token"):
        block = re.search(rf"^type {entity} implements Node\n(.*?)^\{{", sdl, re.M | re.S).group(1)
        assert '@join__type(graph: BALANCE, key: "id")' in block, entity
    assert "riskProfile: String @join__field(graph: RISK)" in sdl


def test_committed_schema_graphql_composes_too(federated, tmp_path):
    out = tmp_path / "supergraph.graphql"
    composed = _compose(out, f"balance=http://127.0.0.1:1/graphql@{ROOT / 'schema.graphql'}",
                        f"risk={federated['risk']}")
    assert composed.returncode == 0, composed.stderr
    assert "riskProfile: String @join__field(graph: RISK)" in out.read_text()


def test_one_query_joins_both_subgraphs_with_the_callers_key(federated, client, demo_world):
    direct = client.query("{ viewer { totalValue { value { amount currency } complete } } }")["data"]["viewer"]
    before = _risk_stats(federated)
    reset(demo_world)
    body = _federated_query(federated, "{ viewer { id riskProfile totalValue { value { amount currency } complete } } }")
    assert "errors" not in body, body.get("errors")
    assert body["data"]["viewer"] == {"id": "demo", "riskProfile": risk_profile("demo"),
                                      "totalValue": direct["totalValue"]}
    assert sum(upstream_counts(demo_world).values()) >= 5    # the balances really came from the upstreams
    after = _risk_stats(federated)
    assert after["requests"] > before["requests"]
    assert after["withCredentials"] == 0, "the client's key must reach only Balance Gateway"


def test_entities_through_the_gateway_are_authorized_by_the_forwarded_key(federated, client, demo_world):
    query = "{ flaggedAccounts { id riskProfile totalValue { value { amount } } } }"
    demo_total = client.query("{ viewer { totalValue { value { amount } } } }")["data"]["viewer"]["totalValue"]
    own_cost = calls_by_source([client.query("{ viewer { sources { source upstreamCalls } } }")["data"]["viewer"]])
    # As demo: the risk subgraph lists user-0001 too, but Balance Gateway refuses it.
    reset(demo_world)
    body = _federated_query(federated, query)
    assert body["data"]["flaggedAccounts"] == [
        {"id": "demo", "riskProfile": risk_profile("demo"), "totalValue": demo_total}, None]
    assert [(e["extensions"]["code"], e["extensions"].get("serviceName")) for e in body["errors"]] == \
        [("FORBIDDEN", "balance")]
    assert upstream_counts(demo_world) == own_cost      # user-0001 was never read
    # As admin: both, in one `_entities` batch costing one call per source and identity.
    expected = calls_by_source(client.query('query($ids: [ID!]!) { accounts(ids: $ids) { sources { source upstreamCalls } } }',
                                            {"ids": FLAGGED}, key=ADMIN_KEY)["data"]["accounts"])
    reset(demo_world)
    body = _federated_query(federated, query, key=ADMIN_KEY)
    assert "errors" not in body, body.get("errors")
    assert [(a["id"], a["riskProfile"]) for a in body["data"]["flaggedAccounts"]] == \
        [(a, risk_profile(a)) for a in FLAGGED]
    assert upstream_counts(demo_world) == expected


def test_without_a_key_our_subgraph_answers_unauthenticated(federated):
    body = _federated_query(federated, "{ viewer { id riskProfile } }", key=None)
    assert body["data"] == {"viewer": None}
    assert [(e["extensions"]["code"], e["extensions"].get("serviceName")) for e in body["errors"]] == \
        [("UNAUTHENTICATED", "balance")]
