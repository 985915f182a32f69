"""The one outbound HTTP client, and the two ways an upstream GET goes out through a client.

`make_http_client` gives an httpx client on aiohttp's connection pool: plain httpx 0.28's pool
degrades badly under concurrency (encode/httpx#3215); the aiohttp transport keeps the httpx
API with a pool that holds up, and keeps connections alive to every upstream.

Every upstream GET goes through a lane (`lane_for`):
- `DirectLane`, for the gateway's own client: the same request, sent straight on the aiohttp
  session under it. httpx's Request/Response machinery around aiohttp cost most of an
  upstream call's CPU (docs/PERFORMANCE.md, round 4): with six calls a request, more than the
  rest of the gateway's request handling. The bytes on the wire stay what httpx sends (tests/upstream/test_upstream_http.py
  compares them with httpx's own request): httpx still builds each URL, once per (url, params).
- `HttpxLane`, for any other httpx client (the source tests pass their own): httpx builds,
  sends and reads.

No cookies, in either layer. One client serves every caller, each with its own upstream
credential: a cookie one upstream set while answering for one caller must never go
back to it with another caller's request. (Keeping none also spares httpx reading
Set-Cookie through urllib's cookie machinery on every response.)
"""
from __future__ import annotations

from typing import AsyncIterator, Mapping, NamedTuple, Protocol

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport

USER_AGENT = "balance-gateway/0.1"
# Only what both httpx and aiohttp decode whatever optional packages are installed
# (httpx offers br/zstd when brotli/zstandard are importable; aiohttp may not decode zstd).
ACCEPT_ENCODING = "gzip, deflate"
MAX_URLS = 4_096   # request URLs kept per lane (one lane per upstream)

Params = list[tuple[str, str]]


class Answer(NamedTuple):
    status: int
    retry_after: str | None   # the header, unparsed
    body: bytes | None        # None: the body exceeded the cap (reading stopped there)


class Lane(Protocol):
    async def get(self, url: str, params: Params, headers: Mapping[str, str] | None, timeout: float,
                  cap: int) -> Answer: ...


def lane_for(http: httpx.AsyncClient) -> Lane:
    return DirectLane(http) if isinstance(http, _Client) else HttpxLane(http)


def _keep(urls: dict, key: object, value: object) -> None:
    if len(urls) >= MAX_URLS:
        del urls[next(iter(urls))]   # the oldest
    urls[key] = value


class HttpxLane:
    """httpx builds, sends and reads. Parsing, validating and re-encoding the URL and its params
    (httpx._urlparse, twice per call) is a measurable share of a call: the URL httpx built the first time is
    kept and passed back as an httpx.URL, which httpx neither re-parses nor re-encodes: the same
    bytes reach the upstream, for a dict lookup. (The key holds the params list, so order and
    repeats count, as they do on the wire.)"""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    async def get(self, url: str, params: Params, headers: Mapping[str, str] | None, timeout: float,
                  cap: int) -> Answer:
        # What `http.stream(...)` does, with the request built by _request.
        response = await self.http.send(self._request(url, params, headers, timeout), stream=True)
        try:
            declared = response.headers.get("content-length")
            body = await _capped(int(declared) if declared and declared.isdigit() else None, response.aiter_bytes(), cap)
            return Answer(response.status_code, response.headers.get("retry-after"), body)
        finally:
            await response.aclose()

    def _request(self, url: str, params: Params, headers: Mapping[str, str] | None, timeout: float) -> httpx.Request:
        http = self.http
        key = (url, tuple(params))
        target = self.urls.get(key)
        if target is not None and not http.params:   # client-wide params would replace its query
            return http.build_request("GET", target, headers=headers, timeout=timeout)
        request = http.build_request("GET", url, params=params, headers=headers, timeout=timeout)
        if request.url.is_absolute_url:   # then it does not depend on the client's base_url
            _keep(self.urls, key, request.url)
        return request


class DirectLane:
    """The gateway's own client: its aiohttp session sends the request httpx would have sent
    (the same URL and headers; the transport's own call has the same options: no
    redirects, no cookies). aiohttp decodes gzip/deflate itself, so the cap counts decoded
    bytes, as httpx's did. Timeouts are the caller's (Upstream._http: asyncio.timeout)."""

    def __init__(self, http: _Client):
        self.http = http
        self.defaults = dict(http.headers.items())
        # (url, params) → the URL as httpx encodes it, and the headers httpx puts before the caller's.
        self.urls: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[yarl.URL, dict[str, str]]] = {}

    async def get(self, url: str, params: Params, headers: Mapping[str, str] | None, timeout: float,
                  cap: int) -> Answer:
        key = (url, tuple(params))
        target = self.urls.get(key)
        if target is None:
            target = self._target(url, params)
            _keep(self.urls, key, target)
        where, first = target
        sent = {**first, **headers} if headers else first
        async with self.http.session().get(where, headers=sent, allow_redirects=False) as response:
            body = await _capped(response.content_length, response.content.iter_any(), cap)
            return Answer(response.status, response.headers.get("retry-after"), body)

    def _target(self, url: str, params: Params) -> tuple[yarl.URL, dict[str, str]]:
        built = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)   # as httpx.Request does
        if not built.is_absolute_url:
            raise httpx.UnsupportedProtocol(f"not an absolute URL: {url!r}")
        # httpx sends Host first, then the client's headers, then the request's.
        first = {"host": built.netloc.decode("ascii"), **self.defaults}
        return yarl.URL(str(built)), first   # as the transport passes it to aiohttp: yarl re-quotes it


async def _capped(declared: int | None, chunks: AsyncIterator[bytes], cap: int) -> bytes | None:
    """The body (decoded) from its chunks, or None when its declared length or the chunks
    read so far exceed `cap` bytes (reading stops there)."""
    if declared is not None and declared > cap:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
    return b"".join(parts)


class _NoCookies(httpx.Cookies):
    """Always empty: whatever an upstream sets is dropped, so nothing is ever sent back."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        pass


class _Client(httpx.AsyncClient):
    """httpx's client on one aiohttp session, which DirectLane also sends on (one pool)."""

    _transport: AiohttpTransport

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass   # no jar to set

    def session(self) -> aiohttp.ClientSession:
        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()   # what the transport does on its first request
        return transport.client


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
    return _Client(transport=transport, headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
                   follow_redirects=False)
