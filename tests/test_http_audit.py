"""graphql-http's server audits (GraphQL over HTTP conformance) against the running gateway.

Needs `npm ci --prefix audit` (run by .ci/run); every audit must pass, warnings included.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.stack import stack
from tests.tooling import missing

AUDIT_DIR = Path(__file__).resolve().parent.parent / "audit"


def test_graphql_http_server_audits_pass_without_warnings():
    if not shutil.which("node"):
        missing("node is not installed")
    if not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        missing("run: npm ci --prefix audit")
    # The audits introspect (`__type`), so this gateway allows introspection.
    with stack(server={"introspection": True}) as (world, client, _):
        url = str(client.http.base_url.join("/graphql"))
        result = subprocess.run(["node", str(AUDIT_DIR / "run-audit.mjs"), url, "demo-key"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 not ok" in result.stdout
