"""The README's quickstart on a fresh clone: `make demo` installs, fetches GraphiQL's assets,
says the URL, the key and a curl line, and serves a GraphiQL page whose every script and
stylesheet loads from the gateway itself.

Slow (a fresh virtualenv, pip and npm from their registries' caches): one test, bounded.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from gateway.server.serving import free_port
from tests.tooling import missing

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 600   # a fresh virtualenv and the npm packages, on a busy machine


def _tools() -> None:
    for tool in ("git", "make", "npm", "node", "curl"):
        if shutil.which(tool) is None:
            missing(f"the quickstart test needs {tool} on PATH")
    if not (ROOT / ".git").exists():
        missing("the quickstart test clones this checkout, which is not a git checkout")


def test_make_demo_on_a_fresh_clone_serves_graphiql_from_the_gateway(tmp_path):
    _tools()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("GATEWAY_CONFIG", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")}
    log = tmp_path / "make-demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "make demo did not serve in time:\n" + log.read_text()[-4000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        said = log.read_text()

        # The terminal: the URL, the key, one curl line that works, and no CDN needed.
        assert f"{url}/graphql" in said and "demo-key" in said
        assert "unpkg" not in said and "served by this gateway" in said
        curl = next(line.split("try:", 1)[1].strip() for line in said.splitlines() if "try:" in line)
        assert curl.startswith("curl ")
        answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
        body = json.loads(answer.stdout)
        assert "errors" not in body and body["data"]["viewer"]["id"] == "demo"
        assert body["data"]["viewer"]["holdings"]["nodes"]

        # The page: every asset from the gateway, byte for byte what its SRI hash pins.
        page = httpx.get(url + "/graphql", headers={"accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="graphiql-cdn-banner"' not in page.text
        assets = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)" integrity="([^"]+)"', page.text)
        assert len(assets) == 4, assets                      # react, react-dom, GraphiQL's CSS and script
        for src, sri in assets:
            assert "://" not in src and src.startswith("graphiql-assets/"), src
            asset = httpx.get(f"{url}/{src}", timeout=30)
            assert asset.status_code == 200, src
            algorithm, digest = sri.split("-", 1)
            assert base64.b64encode(hashlib.new(algorithm, asset.content).digest()).decode() == digest, src
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(clone, ignore_errors=True)   # a whole virtualenv: not kept with pytest's tmp dirs


def test_without_local_assets_the_banner_says_what_the_page_needs(monkeypatch, tmp_path):
    from gateway.server import demo, graphiql
    monkeypatch.setattr(graphiql, "ASSETS_DIR", tmp_path / "none")
    said = demo.demo_banner("0.0.0.0", 8123)
    assert "http://127.0.0.1:8123/graphql" in said and "Bearer demo-key" in said
    for asset in graphiql.pinned_assets():
        assert f"{asset.package}@{asset.version}" in said
    assert graphiql.CDN in said and graphiql.SETUP_COMMAND in said and "npm" in said
    curl = next(line.split("try:", 1)[1].strip() for line in said.splitlines() if "try:" in line)
    args = shlex.split(curl)
    assert json.loads(args[args.index("-d") + 1]) == {"query": demo.CURL_QUERY}
