"""graphql-http's server audits (GraphQL over HTTP conformance) against the running gateway.

Needs `npm ci --prefix audit` (run by `make test`); every audit must pass, warnings and
notices included, at the limits a user gets: the embedded demo's own, and a configured
gateway's defaults. (When the per-key burst was 40, the audits' ~45th request was answered
429 and the rest failed as warnings and one ERROR.)
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.server.demo import demo_app
from gateway.server.serving import ServerThread, free_port
from tests.stack import stack
from tests.tooling import missing

AUDIT_DIR = Path(__file__).resolve().parents[2] / "audit"
ALL_PASS = "graphql-http audit: 61 ok, 0 not ok (of 61)"


def run_audit(url: str) -> str:
    """The audit exactly as a user runs it (`node audit/run-audit.mjs URL demo-key`); its output."""
    if not shutil.which("node"):
        missing("node is not installed")
    if not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        missing("run: npm ci --prefix audit")
    result = subprocess.run(["node", str(AUDIT_DIR / "run-audit.mjs"), url, "demo-key"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_graphql_http_server_audits_pass_without_warnings():
    # The audits introspect (`__type`), so this gateway allows introspection; the limits are
    # the defaults a config without [limits] gets.
    with stack(server={"introspection": True}, limits={}) as (world, client, _):
        output = run_audit(str(client.http.base_url.join("/graphql")))
        assert ALL_PASS in output, output


def test_the_demo_passes_the_audits_twice_in_a_row_at_its_own_limits():
    """`make demo` (`balance-gateway serve` without a config) as a new user meets it: the
    demo's app with its own limits, on its own port; the audit run twice back to back."""
    port = free_port()
    with ServerThread(demo_app("127.0.0.1", port), port=port) as demo:
        url = f"{demo.url}/graphql"
        for run in (1, 2):
            output = run_audit(url)
            assert ALL_PASS in output, f"run {run}:\n{output}"
            assert not any(line.startswith(("ERROR", "WARN", "NOTICE")) for line in output.splitlines()), output
