"""Headers the gateway adds on its own: on every response, and on its slash redirects.

- `X-Content-Type-Options: nosniff` everywhere: a browser never reads a JSON answer (which
  may quote what a client sent) as anything but its declared type.
- `Cache-Control: no-store` on everything but GraphiQL's pinned assets: API answers carry
  account data, which no shared or browser cache may keep.
- `/graphql/` (and each route's path with a trailing slash) redirects with a *relative*
  Location (`../graphql`): Starlette's own redirect builds an absolute URL from the Host
  header, which a client chooses. Relative, it also works behind a path prefix.

The GraphiQL page's own policy (Content-Security-Policy, framing, referrer) is made with
the page (gateway/server/graphiql.py).
"""
from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Route

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """ASGI middleware: NOSNIFF on every response, NO_STORE unless the path is cacheable
    or the app set its own Cache-Control."""

    def __init__(self, app: Any, cacheable_prefixes: tuple[str, ...] = ()):
        self.app = app
        self.cacheable_prefixes = cacheable_prefixes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not scope.get("path", "").startswith(self.cacheable_prefixes) if self.cacheable_prefixes else True

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                if NOSNIFF[0] not in names:
                    headers.append(NOSNIFF)
                if no_store and NO_STORE[0] not in names:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, wrapped)


def slash_redirects(routes: list[BaseRoute]) -> list[Route]:
    """For each plain route `/a/b`, a route `/a/b/` answering any method with 307 (the
    method and body are kept) to `../b`, query string kept. Use with the router's own
    `redirect_slashes` off."""
    return [Route(route.path + "/", _RedirectTo("../" + route.path.rsplit("/", 1)[1]))
            for route in routes if type(route) is Route and route.path != "/" and "{" not in route.path]


class _RedirectTo:
    """An ASGI app (so the route takes every method, as the route it stands for)."""

    def __init__(self, target: str):
        self.target = target

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        response = RedirectResponse(f"{self.target}?{query}" if query else self.target, status_code=307)
        await response(scope, receive, send)
