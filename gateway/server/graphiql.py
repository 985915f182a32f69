"""The GraphiQL page: example queries in tabs, and the header editor preset with the demo key.

GraphiQL's scripts and CSS (pinned in graphiql_assets.json) are served by the gateway itself
under /graphiql-assets once `scripts/fetch_graphiql_assets.sh` has put them in
gateway/server/static/graphiql/. Without them the page loads the same files from the unpkg CDN,
shows a banner saying so, and the server logs it once. Both ways each file carries its SRI
hash, so the browser runs only the pinned bytes.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gateway.graphiql")

ASSETS_ROUTE = "/graphiql-assets"
ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"   # git-ignored; filled by the setup script
MANIFEST = Path(__file__).with_name("graphiql_assets.json")
CDN = "https://unpkg.com"
SETUP_COMMAND = "scripts/fetch_graphiql_assets.sh"


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    path: str
    sri: str

    @property
    def relpath(self) -> str:
        """Same layout locally and on the CDN: <package>@<version>/<path>."""
        return f"{self.package}@{self.version}/{self.path}"


def pinned_assets() -> list[Asset]:
    """In load order: react, react-dom, then GraphiQL's CSS and script."""
    manifest = json.loads(MANIFEST.read_text())
    return [Asset(p["name"], p["version"], path, sri)
            for p in manifest["packages"] for path, sri in p["files"].items()]


def local_assets_installed(assets_dir: Path | None = None) -> bool:
    root = assets_dir or ASSETS_DIR
    return all((root / a.relpath).is_file() for a in pinned_assets())


_warned: set[Path] = set()


def graphiql_routes(enabled: bool, assets_dir: Path | None = None) -> list:
    """The static route for the local assets (nothing when GraphiQL is off or they are missing)."""
    if not enabled:
        return []
    root = assets_dir or ASSETS_DIR
    if not local_assets_installed(root):
        if root not in _warned:   # once per process, not per app or request
            _warned.add(root)
            log.warning("GraphiQL assets are not installed in %s: the page loads them from %s "
                        "(run %s to serve them from the gateway)", root, CDN, SETUP_COMMAND)
        return []
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles
    return [Mount(ASSETS_ROUTE, app=StaticFiles(directory=root), name="graphiql-assets")]


# Each becomes a tab (titled by its operation name). Demo data: DALP values are in EUR,
# Cryptofuse and Cobo report no prices, so USD totals say `complete: false`.
EXAMPLES: list[str] = [
    """# Portfolio screen: the total, how each source answered, the largest positions and holdings.
# The Headers tab below carries your key: {"Authorization": "Bearer <key>"}.
# Run with Ctrl-Enter or the ▶ button; the other tabs hold more examples.
query Portfolio {
  viewer {
    id
    totalValue(currency: "USD") { value { amount currency } complete unpricedHoldings failedSources }
    sources { source state fromCache fetchedAt error { code message } warnings { code message } }
    positions(groupBy: ASSET, first: 10) {
      totalCount
      nodes { key asset { symbol } amount value { amount currency } share unpricedHoldings }
    }
    holdings(first: 20) {
      totalCount
      nodes {
        source
        wallet { label provider address addressHint }
        token { id symbol decimals chain { id } }
        amount amountRaw precision
        value { amount currency }
        price { unit currency reliability }
      }
    }
  }
}
""",
    """# Per-wallet view: every wallet with its own total and holdings.
query Wallets {
  viewer {
    wallets {
      id source kind provider label address addressHint
      chain { id name }
      totalValue(currency: "USD") { value { amount currency } complete unpricedHoldings }
      holdings(first: 10) {
        totalCount
        nodes { token { symbol chain { id } } amount precision value { amount currency } }
      }
    }
  }
}
""",
    """# Positions by chain: holdings summed per chain, with each chain's share of the total.
query PositionsByChain {
  viewer {
    positions(groupBy: CHAIN, currency: "USD") {
      totalCount
      nodes {
        key
        chain { id name isTestnet }
        value { amount currency }
        share unpricedHoldings
        holdings { source token { symbol } amount value { amount currency } }
      }
    }
  }
}
""",
    """# History: balance changes, newest first (from Cryptofuse). Page on with `after: endCursor`.
query History($first: Int = 20, $after: String) {
  viewer {
    balanceHistory(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { timestamp type token { symbol chain { id } } amount balanceAfter }
    }
  }
}
""",
]

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Balance Gateway · GraphiQL</title>
  <style>
    body {{ margin: 0; height: 100vh; display: flex; flex-direction: column; }}
    #graphiql {{ flex: 1; min-height: 0; }}
    #graphiql-cdn-banner {{ padding: 6px 12px; font: 14px/1.4 system-ui, sans-serif;
      background: #fff4ce; color: #3b2f00; border-bottom: 1px solid #e0c060; }}
  </style>
{styles}
</head>
<body>
{banner}  <div id="graphiql">Loading GraphiQL…</div>
{scripts}
  <script>
    const root = document.getElementById("graphiql");
    if (typeof GraphiQL === "undefined" || typeof ReactDOM === "undefined") {{
      root.textContent = {load_error};
    }} else {{
      const fetcher = GraphiQL.createFetcher({{ url: window.location.pathname }});
      const headers = {headers};
      ReactDOM.createRoot(root).render(
        React.createElement(GraphiQL, {{
          fetcher,
          defaultTabs: {queries}.map((query) => ({{ query, headers }})),
          defaultHeaders: headers,
          headerEditorEnabled: true,
          shouldPersistHeaders: false,
          defaultEditorToolsVisibility: "headers",
        }})
      );
    }}
  </script>
</body>
</html>
"""

_BANNER = """  <div id="graphiql-cdn-banner" role="status">GraphiQL is loaded from the {cdn} CDN: this gateway
    has no local copy of its assets (run <code>{command}</code> to serve them from the gateway).</div>
"""


@dataclass(frozen=True)
class GraphiQLPage:
    html: str
    headers: dict[str, str]   # its Content-Security-Policy and the other browser policies


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def graphiql_page(default_key: str | None, assets_dir: Path | None = None) -> GraphiQLPage:
    """The page and the headers it is served with.

    The policy lets the page run only its own inline script (by hash) and the pinned
    assets from where it loads them (this gateway, or the CDN), fetch only /graphql on
    its own origin, and be framed by no one. Styles allow 'unsafe-inline': GraphiQL's
    components add <style> elements and style attributes as they render; fonts are data:
    URIs in GraphiQL's CSS."""
    page = graphiql_html(default_key, assets_dir)
    assets = "'self'" if local_assets_installed(assets_dir) else CDN
    scripts = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                       for body in _INLINE_SCRIPT.findall(page))
    policy = "; ".join([
        "default-src 'none'", f"script-src {assets} {scripts}", f"style-src {assets} 'unsafe-inline'",
        "font-src data:", "img-src 'self' data:", "connect-src 'self'", "base-uri 'none'",
        "form-action 'none'", "frame-ancestors 'none'"])
    return GraphiQLPage(page, {"content-security-policy": policy, "x-frame-options": "DENY",
                               "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"})


def graphiql_html(default_key: str | None, assets_dir: Path | None = None) -> str:
    """The page; `default_key` (the demo's) is preset in the Headers tab, else a placeholder."""
    local = local_assets_installed(assets_dir)
    # Relative to /graphql, so the page also works behind a path prefix.
    base = ASSETS_ROUTE.lstrip("/") if local else CDN
    styles, scripts = [], []
    for asset in pinned_assets():
        url = html.escape(f"{base}/{asset.relpath}")
        attrs = f'integrity="{asset.sri}" crossorigin="anonymous"'
        if asset.path.endswith(".css"):
            styles.append(f'  <link rel="stylesheet" href="{url}" {attrs} />')
        else:
            scripts.append(f'  <script src="{url}" {attrs}></script>')
    headers = json.dumps({"Authorization": f"Bearer {default_key or '<your key>'}"}, indent=2)
    where = "this gateway" if local else CDN
    return _PAGE.format(
        styles="\n".join(styles), scripts="\n".join(scripts),
        banner="" if local else _BANNER.format(cdn=html.escape(CDN), command=SETUP_COMMAND),
        load_error=_js(f"GraphiQL's scripts did not load from {where}."),
        headers=_js(headers), queries=_js(EXAMPLES))


def _js(value: object) -> str:
    """A JSON literal safe inside <script> (no `</script>` can close it early)."""
    return json.dumps(value).replace("<", "\\u003c")
