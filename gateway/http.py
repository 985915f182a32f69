"""The one outbound HTTP client: httpx's API on aiohttp's connection pool.

Plain httpx 0.28's pool degrades badly under concurrency (encode/httpx#3215); the
aiohttp transport keeps the httpx API with a pool that holds up, and keeps
connections alive to every upstream.

No cookies, in either layer. One client serves every caller, each with its own upstream
credential: a cookie one upstream set while answering for one caller must never go
back to it with another caller's request. (Keeping none also spares httpx reading
Set-Cookie through urllib's cookie machinery on every response: ~35 µs a call.)
"""
from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

USER_AGENT = "balance-gateway/0.1"


class _NoCookies(httpx.Cookies):
    """Always empty: whatever an upstream sets is dropped, so nothing is ever sent back."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        pass


class _Client(httpx.AsyncClient):
    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass   # no jar to set


_NO_COOKIES = _NoCookies()


def make_http_client(max_connections: int = 200) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=60)
    transport = AiohttpTransport(limits=limits)

    def session() -> aiohttp.ClientSession:
        # The transport's own session (same connector settings), minus its cookie jar.
        # Called on the first request, inside the running event loop.
        connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=limits.keepalive_expiry,
                                         ssl=transport.ssl_context)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
    transport.client = session
    return _Client(transport=transport, headers={"user-agent": USER_AGENT}, follow_redirects=False)
