"""Browser-facing headers: the GraphiQL page's policy (CSP with frame-ancestors, framing,
sniffing, referrer), `Cache-Control: no-store` on every API answer, and a relative Location
on the `/graphql/` redirect. tests/server/test_browser.py proves GraphiQL still works under the
policy, with local assets and from the CDN."""
from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from gateway.server import graphiql
from gateway.server.demo import demo_app
from gateway.server.serving import ServerThread, free_port
from tests.stack import stack

KEY = {"authorization": "Bearer demo-key"}


def _demo(monkeypatch, assets_dir=None) -> ServerThread:
    if assets_dir is not None:
        monkeypatch.setattr(graphiql, "ASSETS_DIR", assets_dir)
    port = free_port()
    return ServerThread(demo_app("127.0.0.1", port, extra_accounts=0), port=port)


def _policy(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";")) if d}


@pytest.mark.parametrize("local", [True, False], ids=["local assets", "CDN"])
def test_the_graphiql_page_has_a_strict_policy(monkeypatch, tmp_path, local):
    if local and not graphiql.local_assets_installed():
        pytest.skip("GraphiQL assets are not installed (scripts/fetch_graphiql_assets.sh)")
    with _demo(monkeypatch, None if local else tmp_path / "missing") as server:
        page = httpx.get(server.url + "/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = _policy(page.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(inline) == 1
    digest = "'sha256-" + base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode() + "'"
    assets = "'self'" if local else graphiql.CDN
    assert policy["script-src"] == [assets, digest]   # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"] and policy["base-uri"] == ["'none'"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_every_api_answer_is_no_store_and_nosniff():
    with stack(limits={"rate_limit_per_s": 0.001, "rate_limit_burst": 3, "max_body_bytes": 2000}) as (_, client, _):
        http = client.http
        answers = {
            "200": http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=KEY),
            "200 again (coalescing/kept)": http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=KEY),
            "GET": http.get("/graphql", params={"query": "{ viewer { id } }"}, headers=KEY),
            "400": http.post("/graphql", content=b"not json", headers={**KEY, "content-type": "application/json"}),
            "401": http.post("/graphql", json={"query": "{ viewer { id } }"}),
            "413": http.post("/graphql", content=b"x" * 3000, headers={**KEY, "content-type": "application/json"}),
            "429": http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=KEY),
            "405": http.put("/graphql", headers=KEY),
            "health": http.get("/health"),
            "404": http.get("/nothing-here"),
        }
    assert answers["429"].status_code == 429 and answers["413"].status_code == 413
    for name, response in answers.items():
        assert response.headers.get("cache-control") == "no-store", name
        assert response.headers.get("x-content-type-options") == "nosniff", name


def test_graphiql_assets_stay_cacheable(monkeypatch):
    if not graphiql.local_assets_installed():
        pytest.skip("GraphiQL assets are not installed (scripts/fetch_graphiql_assets.sh)")
    asset = graphiql.pinned_assets()[0]
    with _demo(monkeypatch) as server:
        got = httpx.get(f"{server.url}/graphiql-assets/{asset.relpath}")
    assert got.status_code == 200 and "no-store" not in got.headers.get("cache-control", "")
    assert got.headers["x-content-type-options"] == "nosniff"


def test_the_trailing_slash_redirect_is_relative_whatever_the_host_header():
    with stack() as (_, client, _):
        http = client.http
        for method in ("GET", "POST"):
            response = http.request(method, "/graphql/?query=%7B%20viewer%20%7B%20id%20%7D%20%7D",
                                    headers={**KEY, "host": "evil.example"}, content=b"" if method == "GET" else
                                    b'{"query": "{ viewer { id } }"}')
            assert response.status_code == 307
            assert response.headers["location"] == "../graphql?query=%7B%20viewer%20%7B%20id%20%7D%20%7D"
            assert "evil" not in response.text
        assert http.get("/health/").headers["location"] == "../health"
        # a client following it lands on /graphql, with its method and body
        followed = http.post("/graphql/", json={"query": "{ viewer { id } }"}, headers=KEY, follow_redirects=True)
        assert followed.status_code == 200 and followed.json()["data"]["viewer"]["id"] == "demo"
        assert followed.url.path == "/graphql"
