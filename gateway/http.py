"""The one outbound HTTP client: httpx's API on aiohttp's connection pool.

Plain httpx 0.28's pool degrades badly under concurrency (encode/httpx#3215); the
aiohttp transport keeps the httpx API with a pool that holds up, and keeps
connections alive to every upstream.
"""
from __future__ import annotations

import httpx
from httpx_aiohttp import AiohttpTransport

USER_AGENT = "balance-gateway/0.1"


def make_http_client(max_connections: int = 200) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=60)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), headers={"user-agent": USER_AGENT},
                             follow_redirects=False)
