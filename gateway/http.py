"""The one outbound HTTP client: httpx's API on aiohttp's connection pool.

Plain httpx 0.28's pool degrades badly under concurrency (encode/httpx#3215); the
aiohttp transport keeps the httpx API with a pool that holds up, and keeps
connections alive to every upstream.

No cookies, in either layer. One client serves every caller, each with its own upstream
credential: a cookie one upstream set while answering for one caller must never go
back to it with another caller's request. (Keeping no cookies also spares httpx a
cookie header per call.)
"""
from __future__ import annotations

import http.cookiejar

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

USER_AGENT = "balance-gateway/0.1"


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


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
    return httpx.AsyncClient(transport=transport, headers={"user-agent": USER_AGENT}, follow_redirects=False,
                             cookies=_no_cookies())
