"""GraphiQL in a real browser: Debian's Chromium, headless, driven by Playwright.

The demo gateway serves /graphql; the test opens it as a person would, runs the example
queries with the ▶ button and reads the result panel. Outside loopback nothing may load,
so the page must work from the gateway's own assets. These tests fail (never skip) when
Chromium, Playwright or the assets are missing: CI installs all three.
Both run under the page's Content-Security-Policy: a blocked script, style or request is a
console error, which fails them. Screenshots: /tmp/graphiql.png (local assets),
/tmp/graphiql-cdn.png (CDN fallback).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.server import graphiql
from gateway.server.demo import demo_app
from gateway.server.serving import ServerThread, free_port
from tests.tooling import missing

try:
    from playwright.sync_api import Page, Route, sync_playwright
except ImportError:   # reported by the fixture below, as a failure
    sync_playwright = None

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FAILURE_SCREENSHOT = "/tmp/graphiql-failure.png"
AMOUNT = re.compile(r'"amount": "-?\d+(\.\d+)?"')


@pytest.fixture(scope="module")
def browser():
    problems = []
    if sync_playwright is None:
        problems.append("the python package playwright is missing (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        problems.append(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    if not graphiql.local_assets_installed():
        problems.append(f"GraphiQL assets are missing in {graphiql.ASSETS_DIR} (run {graphiql.SETUP_COMMAND})")
    if problems:
        missing("browser test cannot run: " + "; ".join(problems))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _demo_server() -> ServerThread:
    port = free_port()
    return ServerThread(demo_app("127.0.0.1", port, extra_accounts=1), port=port)


class Visit:
    """One page in a fresh context; requests leaving loopback are aborted and recorded,
    except that the CDN can be answered from the local copy (same bytes, same hashes)."""

    def __init__(self, browser, *, serve_cdn_locally: bool = False):
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.external: list[str] = []
        self.cdn: list[str] = []
        self.errors: list[str] = []
        self.serve_cdn_locally = serve_cdn_locally
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def _route(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.hostname == "127.0.0.1":
            route.continue_()
        elif self.serve_cdn_locally and f"{url.scheme}://{url.hostname}" == graphiql.CDN:
            self.cdn.append(route.request.url)
            file = graphiql.ASSETS_DIR / url.path.lstrip("/")
            kind = "text/css" if file.suffix == ".css" else "application/javascript"
            route.fulfill(status=200, body=file.read_bytes(), content_type=kind,
                          headers={"access-control-allow-origin": "*"})
        else:
            self.external.append(route.request.url)
            route.abort()

    def __enter__(self) -> "Visit":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:   # what the page showed when the test failed
            self.page.screenshot(path=FAILURE_SCREENSHOT)
        self.context.close()


def _is_introspection(response) -> bool:
    request = response.request
    return request.method == "POST" and urlsplit(request.url).path == "/graphql" and "__schema" in (request.post_data or "")


def _run_tab(page: Page, title: str) -> dict:
    """Select the tab, press ▶, wait for the answer in the result panel; returns it whole."""
    page.locator(".graphiql-tab", has_text=title).click()
    page.locator(".graphiql-query-editor", has_text=f"query {title}").wait_for()
    # GraphiQL takes the operation name from the editor after a 100 ms debounce; pressing ▶
    # sooner sends the previous tab's name (a person cannot click that fast).
    page.wait_for_timeout(500)
    page.locator(".graphiql-execute-button").click()
    page.locator(".result-window").get_by_text('"viewer"').first.wait_for(timeout=30_000)
    # CodeMirror draws only the lines in view; its model holds the whole answer.
    return json.loads(page.evaluate("document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"))


def _scroll_result_to(page: Page, key: str) -> str:
    """Scroll the result panel to the line of `"key":`, as a reader would; returns the visible text."""
    page.evaluate("""(key) => {
        const cm = document.querySelector('.result-window .CodeMirror').CodeMirror;
        const line = cm.getValue().split('\\n').findIndex((l) => l.trim().startsWith(`"${key}":`));
        cm.scrollTo(null, cm.heightAtLine(line, 'local'));
    }""", key)
    page.wait_for_timeout(200)   # CodeMirror redraws on the next frame
    return page.locator(".result-window").inner_text()


def test_graphiql_runs_the_portfolio_example_from_the_gateways_own_assets(browser):
    with _demo_server() as server:
        with Visit(browser) as visit:
            page = visit.page
            with page.expect_response(_is_introspection, timeout=30_000) as introspection:
                loaded = page.goto(server.url + "/graphql")
            # It all works under the page's policy (a violation would be a console error below).
            assert "frame-ancestors 'none'" in loaded.headers["content-security-policy"]
            # Docs, autocompletion and linting all need the schema from this query.
            answer = introspection.value.json()
            assert "errors" not in answer, f"GraphiQL's introspection query was refused: {answer['errors']}"
            page.locator(".graphiql-execute-button").wait_for(timeout=30_000)
            assert page.locator("#graphiql-cdn-banner").count() == 0

            tabs = page.locator(".graphiql-tab").all_inner_texts()
            assert [t.strip() for t in tabs] == ["Portfolio", "Wallets", "PositionsByChain", "History"]
            headers = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
            assert '"Authorization": "Bearer demo-key"' in headers.inner_text()

            shown = _run_tab(page, "Portfolio")
            visible = _scroll_result_to(page, "holdings")
            assert '"holdings"' in visible and '"DALP"' in visible and AMOUNT.search(visible), visible
            page.screenshot(path="/tmp/graphiql.png")

            viewer = shown["data"]["viewer"]
            assert "errors" not in shown
            assert {s["source"] for s in viewer["sources"]} >= {"DALP", "COBO"}
            nodes = viewer["holdings"]["nodes"]
            assert nodes and {n["source"] for n in nodes} >= {"DALP"}
            assert all(isinstance(n["amount"], str) for n in nodes)   # exact decimals, as strings
            # The panel shows exactly what the API answers for the same query.
            api = httpx.post(server.url + "/graphql", json={"query": graphiql.EXAMPLES[0]},
                             headers={"authorization": "Bearer demo-key"}, timeout=30).json()
            assert viewer["holdings"] == api["data"]["viewer"]["holdings"]
            assert viewer["totalValue"] == api["data"]["viewer"]["totalValue"]

            history = _run_tab(page, "History")["data"]["viewer"]["balanceHistory"]
            assert history["totalCount"] == len(history["nodes"]) or history["pageInfo"]["hasNextPage"]

            assert visit.external == [], "the page reached outside the gateway"
            assert visit.errors == []


def test_without_local_assets_the_page_says_it_uses_the_cdn_and_still_works(browser, monkeypatch, tmp_path):
    with monkeypatch.context() as patch:
        patch.setattr(graphiql, "ASSETS_DIR", tmp_path / "not-installed")
        server = _demo_server()   # the app decides local vs CDN when it is built
    with server:
        with Visit(browser, serve_cdn_locally=True) as visit:
            page = visit.page
            loaded = page.goto(server.url + "/graphql")
            assert f"script-src {graphiql.CDN} 'sha256-" in loaded.headers["content-security-policy"]
            banner = page.locator("#graphiql-cdn-banner")
            assert banner.is_visible() and "CDN" in banner.inner_text()
            assert graphiql.SETUP_COMMAND in banner.inner_text()
            page.locator(".graphiql-execute-button").wait_for(timeout=30_000)
            shown = _run_tab(page, "Portfolio")
            assert shown["data"]["viewer"]["holdings"]["nodes"]
            page.screenshot(path="/tmp/graphiql-cdn.png")
            assert sorted(urlsplit(u).path.lstrip("/") for u in visit.cdn) == \
                sorted(a.relpath for a in graphiql.pinned_assets())
            assert visit.external == [] and visit.errors == []
