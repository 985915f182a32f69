"""The embedded demo: every source's simulator mounted in the gateway's own app, over real HTTP.

The simulators answer under `/_sim/<source>` on the gateway's own port, so the gateway's
upstream calls are genuine HTTP round trips on loopback, exactly as with real upstreams.
Their upstream routes take the simulated upstream credentials, as the real ones would;
their control routes (`/_sim/<source>/_control/*`: fault injection, latency, call logs)
also need the demo key. `serve` keeps the demo on loopback unless told otherwise
(gateway/server/cli.py `--allow-remote-demo`).
"""
from __future__ import annotations

import atexit
import base64
import hmac
import ipaddress
import json
import os
import shlex
import shutil
import tempfile
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Mount

from gateway.server.graphiql import CDN, SETUP_COMMAND, local_assets_installed, pinned_assets
from gateway.config import LimitsConfig, ServerConfig
from gateway.policy.auth import presented_credential
from gateway.server.app import DEMO_KEY, create_app
from gateway.fx import simulator as fx_simulator
from gateway.simulation.world import World
from gateway.support import safe_json

SIM_PREFIX = "/_sim"
# The demo's own per-key limit, set here rather than inherited from the defaults: it is
# tried with GraphiQL, conformance suites and quick loops, against simulators with no
# upstream quota to protect; a tight loop still meets 429 (docs/CONFIG.md [limits]).
DEMO_LIMITS = {"rate_limit_per_s": 100.0, "rate_limit_burst": 600}
CONTROL = "/_control/"
# The demo's admin key: GraphiQL users try the account registry's mutations with it.
DEMO_ADMIN_KEY = "demo-admin-key"


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server to this machine ("" and 0.0.0.0 do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ControlNeedsDemoKey:
    """A simulator's app whose control routes answer only a caller presenting the demo key."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and CONTROL in scope.get("path", ""):
            credential = presented_credential(Headers(scope=scope)) or ""
            if not hmac.compare_digest(credential.encode("utf-8", "surrogatepass"), DEMO_KEY.encode()):
                body = safe_json.dumps({"errors": [{"message": "the simulator control routes need the demo key",
                                                    "extensions": {"code": "UNAUTHENTICATED"}}]})
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="balance-gateway-demo"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def demo_app(host: str, port: int, *, extra_accounts: int = 3) -> Starlette:
    world = World.generate(extra_accounts)
    call_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    root = f"http://{call_host}:{port}{SIM_PREFIX}"
    # A simulated exchange-rate provider (DALP values in EUR convert), and history on a
    # temporary SQLite file, every read recorded so that valueHistory shows at once.
    config = world.gateway_config(root, server=ServerConfig(host=host, port=port, graphiql=True, introspection=True),
                                  limits=LimitsConfig(**DEMO_LIMITS), demo=True,
                                  auth={"admin_keys": [DEMO_ADMIN_KEY]},
                                  fx={"provider": {"base_url": f"{root}/fx", "currencies": ["EUR", "GBP", "CHF"]}},
                                  store=demo_store(), history={"snapshot_every_s": 0})
    mounts = [Mount(m.path, app=ControlNeedsDemoKey(m.app)) for m in world.mounts(SIM_PREFIX)]
    mounts.append(Mount(f"{SIM_PREFIX}/fx", app=ControlNeedsDemoKey(fx_simulator.create_app(fx_simulator.Rates()))))
    return create_app(config, extra_routes=mounts)

def demo_store() -> dict[str, Any]:
    """A SQLite store in a temporary folder (gone when the demo stops), migrated, with a fresh
    encryption key: the demo's accounts change through the API, and its history is kept there."""
    from gateway.store.config import StoreConfig
    from gateway.store.schema_version import migrate_blocking
    folder = tempfile.mkdtemp(prefix="balance-gateway-demo-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = {"url": f"sqlite:///{folder}/registry.db", "encryption_keys": [base64.b64encode(os.urandom(32)).decode()]}
    migrate_blocking(StoreConfig.model_validate(store))
    return store


CURL_QUERY = '{ viewer { id holdings(first: 3) { nodes { source amount token { symbol } } } } }'


def demo_banner(host: str, port: int) -> str:
    """What the terminal says before the demo serves: where, with which key, one curl line,
    and where GraphiQL's page gets its scripts (this gateway, or the CDN it then needs)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}/graphql"
    body = json.dumps({"query": CURL_QUERY})
    curl = (f"curl -s {url} -H {shlex.quote('Authorization: Bearer ' + DEMO_KEY)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")
    if local_assets_installed():
        page = "GraphiQL's scripts and styles are served by this gateway."
    else:
        packages = ", ".join(sorted({f"{a.package}@{a.version}" for a in pinned_assets()}))
        page = (f"GraphiQL's page will load {packages} from {CDN}: the browser must reach it. To serve them "
                f"from the gateway instead, install node and npm and run {SETUP_COMMAND} (make demo does).")
    return "\n".join([
        "Balance Gateway demo",
        f"  GraphiQL:  {url}  (open it in a browser)",
        f"  key:       {DEMO_KEY}  (header Authorization: Bearer {DEMO_KEY}; preset in GraphiQL)",
        f"  try:       {curl}",
        f"  admin key: {DEMO_ADMIN_KEY}  (the account registry's mutations: createAccount, linkSource, issueApiKey, ...;"
        f" docs/ACCOUNTS.md)",
        f"  {page}",
    ])
