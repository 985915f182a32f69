"""The embedded demo: the five simulators mounted in the gateway's own app, over real HTTP.

The simulators answer under `/_sim/<source>` on the gateway's own port, so the gateway's
upstream calls are genuine HTTP round trips on loopback, exactly as with real upstreams.
Their upstream routes take the simulated upstream credentials, as the real ones would;
their control routes (`/_sim/<source>/_control/*`: fault injection, latency, call logs)
also need the demo key. `serve` keeps the demo on loopback unless told otherwise
(gateway/cli.py `--allow-remote-demo`).
"""
from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Mount

from gateway import safe_json
from gateway.app import DEMO_KEY, create_app
from gateway.auth import presented_credential
from gateway.config import ServerConfig
from gateway.simulators.world import World

SIM_PREFIX = "/_sim"
CONTROL = "/_control/"


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
    config = world.gateway_config(root, server=ServerConfig(host=host, port=port, graphiql=True, introspection=True),
                                  demo=True)
    mounts = [Mount(m.path, app=ControlNeedsDemoKey(m.app)) for m in world.mounts(SIM_PREFIX)]
    return create_app(config, extra_routes=mounts)
