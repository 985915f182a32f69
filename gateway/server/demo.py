"""The embedded demo: every source's simulator mounted in the gateway's own app, over real HTTP.

The simulators answer under `/_sim/<source>` on the gateway's own port, so the gateway's
upstream calls are genuine HTTP round trips on loopback, exactly as with real upstreams.
"""
from __future__ import annotations

from starlette.applications import Starlette

from gateway.server.app import create_app
from gateway.config import LimitsConfig, ServerConfig
from gateway.simulation.world import World

SIM_PREFIX = "/_sim"
# The demo's own per-key limit, set here rather than inherited from the defaults: it is
# tried with GraphiQL, conformance suites and quick loops, against simulators with no
# upstream quota to protect; a tight loop still meets 429 (docs/CONFIG.md [limits]).
DEMO_LIMITS = {"rate_limit_per_s": 100.0, "rate_limit_burst": 600}


def demo_app(host: str, port: int, *, extra_accounts: int = 3) -> Starlette:
    world = World.generate(extra_accounts)
    call_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    root = f"http://{call_host}:{port}{SIM_PREFIX}"
    config = world.gateway_config(root, server=ServerConfig(host=host, port=port, graphiql=True, introspection=True),
                                  limits=LimitsConfig(**DEMO_LIMITS), demo=True)
    return create_app(config, extra_routes=world.mounts(SIM_PREFIX))
