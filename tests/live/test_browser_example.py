"""docs/SCHEMA.md "Live": the browser example, exactly as printed, run under node against a
real gateway (live-client/run.mjs puts the `ws` package where the browser's WebSocket is)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live.test_subscriptions import ALL_HOLDINGS, live_stack  # noqa: F401 (fixture)
from tests.tooling import missing

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "live-client"


def test_the_doc_prints_the_example_that_runs():
    doc = (ROOT / "docs" / "SCHEMA.md").read_text()
    live = doc.split("## Live", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```js\n(.*?)\n```", live, re.S)[1]
    assert block == (CLIENT / "watch-balances.mjs").read_text().rstrip("\n")


def test_the_browser_example_receives_the_first_event(live_stack):  # noqa: F811
    world, client, app, url = live_stack
    node = shutil.which("node")
    if node is None or not (CLIENT / "node_modules" / "graphql-ws").is_dir():
        missing("node and `npm ci --prefix live-client` are needed for the Live example")
    expected = client.query(ALL_HOLDINGS)["data"]["viewer"]
    done = subprocess.run([node, str(CLIENT / "run.mjs"), url.replace("http://", "ws://") + "/graphql", "demo-key"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout.splitlines()[0])
    assert sorted(h["id"] for h in event["changed"]) == sorted(h["id"] for h in expected["holdings"]["nodes"])
    assert event["totalValue"]["value"] == expected["totalValue"]["value"]


def test_the_browser_example_is_refused_with_a_wrong_key(live_stack):  # noqa: F811
    url = live_stack[3]
    node = shutil.which("node")
    if node is None or not (CLIENT / "node_modules" / "graphql-ws").is_dir():
        missing("node and `npm ci --prefix live-client` are needed for the Live example")
    done = subprocess.run([node, str(CLIENT / "run.mjs"), url.replace("http://", "ws://") + "/graphql", "wrong-key"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "4403" in done.stderr, done.stderr
