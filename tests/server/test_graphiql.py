"""The GraphiQL page without a browser: local assets vs the CDN fallback, and the example queries.

tests/server/test_browser.py drives the page in Chromium.
"""
from __future__ import annotations

import base64
import hashlib
import logging

import httpx
from graphql import parse, validate

from gateway.server import graphiql
from gateway.server.demo import demo_app
from gateway.server.serving import ServerThread, free_port
from schema import schema
from tests.tooling import missing


def _demo(monkeypatch, assets_dir=None) -> ServerThread:
    if assets_dir is not None:
        monkeypatch.setattr(graphiql, "ASSETS_DIR", assets_dir)
    port = free_port()
    return ServerThread(demo_app("127.0.0.1", port, extra_accounts=1), port=port)


def _page(server: ServerThread) -> str:
    page = httpx.get(server.url + "/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    return page.text


def test_example_queries_are_valid_and_answer_without_errors(monkeypatch):
    names = []
    with _demo(monkeypatch) as server:
        for query in graphiql.EXAMPLES:
            document = parse(query)
            assert validate(schema._schema, document) == []
            names.append(document.definitions[0].name.value)
            body = httpx.post(server.url + "/graphql", json={"query": query},
                              headers={"authorization": "Bearer demo-key"}, timeout=30).json()
            assert "errors" not in body, (names[-1], body)
            assert body["data"]["viewer"] is not None
    assert names == ["Portfolio", "Wallets", "PositionsByChain", "History"]


def test_cdn_fallback_says_so_and_loads_pinned_files_by_hash(monkeypatch, tmp_path):
    with _demo(monkeypatch, tmp_path / "missing") as server:
        page = _page(server)
        assert 'id="graphiql-cdn-banner"' in page and graphiql.SETUP_COMMAND in page
        for asset in graphiql.pinned_assets():
            assert f'"https://unpkg.com/{asset.relpath}" integrity="{asset.sri}"' in page
        assert "graphiql-assets/" not in page
        assert httpx.get(server.url + "/graphiql-assets/react@18.3.1/umd/react.production.min.js").status_code == 404
        assert "Bearer demo-key" in page


def test_missing_assets_are_logged_once_per_process(tmp_path, caplog):
    missing = tmp_path / "nowhere"
    with caplog.at_level(logging.WARNING, logger="gateway.graphiql"):
        assert graphiql.graphiql_routes(True, missing) == []
        assert graphiql.graphiql_routes(True, missing) == []
        assert graphiql.graphiql_routes(False, missing) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.graphiql"]
    assert len(warnings) == 1 and graphiql.SETUP_COMMAND in warnings[0] and "unpkg.com" in warnings[0]


def test_placeholder_key_outside_demo_mode():
    page = graphiql.graphiql_html(None)
    assert "demo-key" not in page and "Bearer \\u003cyour key>" in page


def test_local_assets_are_served_by_the_gateway(monkeypatch):
    """Needs `scripts/fetch_graphiql_assets.sh` (CI runs it); fails in CI, skips elsewhere, without it."""
    if not graphiql.local_assets_installed():
        missing(f"GraphiQL assets are not installed in {graphiql.ASSETS_DIR}: run {graphiql.SETUP_COMMAND}")
    with _demo(monkeypatch) as server:
        page = _page(server)
        assert 'id="graphiql-cdn-banner"' not in page and "unpkg.com" not in page
        for asset in graphiql.pinned_assets():
            url = f"graphiql-assets/{asset.relpath}"
            assert f'src="{url}"' in page or f'href="{url}"' in page
            got = httpx.get(f"{server.url}/{url}")
            assert got.status_code == 200
            digest = "sha384-" + base64.b64encode(hashlib.sha384(got.content).digest()).decode()
            assert digest == asset.sri, asset.relpath   # the browser would refuse anything else
