"""Upstream._http over real HTTP, through both lanes of gateway/upstream/http.py.

The gateway's own client sends on its aiohttp session directly (DirectLane); any other httpx
client goes through httpx (HttpxLane). Both keep the URL httpx built for (url, params). These
tests pin what reaches the server (path, query string and headers, byte for byte, the first
time and from the kept URL, against httpx's own request as the oracle) and the rest of
`_http`: the byte cap, timeouts, unreachable upstreams, Retry-After, cookies.
"""
from __future__ import annotations

import asyncio
import gzip

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.upstream.response_cache import InFlight
from gateway.config import SourceConfig
from gateway.domain.errors import UpstreamCode, UpstreamError
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.upstream.http import DirectLane, HttpxLane, make_http_client
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread, free_port
from gateway.upstream.pipeline import Upstream, _param_list

CAP = 1024
PATH = "/v2/some path/é"

seen: list[tuple[bytes, bytes, list]] = []


async def echo(request: Request) -> Response:
    scope = request.scope
    seen.append((scope["raw_path"], scope["query_string"], list(scope["headers"])))
    return Response(b"{}", media_type="application/json")


async def declared_over(request: Request) -> Response:
    return Response(b"x" * (CAP + 1))                        # Content-Length: CAP + 1


async def streamed(request: Request) -> StreamingResponse:
    size = int(request.query_params["size"])

    async def chunks():                                      # chunked: no Content-Length
        for start in range(0, size, 300):
            yield b"y" * min(300, size - start)
    return StreamingResponse(chunks())


async def gzip_bomb(request: Request) -> Response:
    # Content-Length (compressed) far under the cap; decoded, far over it.
    return Response(gzip.compress(b"0" * (CAP * 50)), headers={"content-encoding": "gzip"})


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return Response(b"{}")


async def throttled(request: Request) -> Response:
    return Response(b"{}", status_code=429, headers={"retry-after": request.query_params["after"]})


APP = Starlette(routes=[Route("/declared-over", declared_over), Route("/streamed", streamed),
                        Route("/gzip-bomb", gzip_bomb), Route("/slow", slow), Route("/throttled", throttled),
                        Route("/{rest:path}", echo)])


@pytest.fixture(scope="module")
def server():
    with ServerThread(APP) as srv:
        yield srv


@pytest.fixture(params=["direct", "httpx"])
def lane(request) -> str:
    return request.param


def new_client(lane: str) -> httpx.AsyncClient:
    """The gateway's own client (DirectLane), or another httpx client (HttpxLane)."""
    return make_http_client() if lane == "direct" else httpx.AsyncClient(transport=AiohttpTransport())


def _upstream(base_url: str, http) -> Upstream:
    config = SourceConfig(base_url=base_url, max_retries=0, max_response_bytes=CAP)
    upstream = Upstream(Source.DALP, config, http, None, InFlight())
    assert isinstance(upstream.lane, DirectLane if http.__class__.__name__ == "_Client" else HttpxLane)
    return upstream


# What the gateway sent before Upstream._request (httpx.stream with params=...), captured then.
CASES = [
    ([("q", "a b"), ("plus", "1+1"), ("slash", "a/b"), ("uni", "zürich €"), ("k", "1"), ("k", "2")],
     b"q=a+b&plus=1%2B1&slash=a/b&uni=z%C3%BCrich+%E2%82%AC&k=1&k=2"),
    ([("page[limit]", 200), ("page[offset]", 0), ("filter[wallet]", "0xAbC"), ("sort", "-balance")],
     b"page%5Blimit%5D=200&page%5Boffset%5D=0&filter%5Bwallet%5D=0xAbC&sort=-balance"),
    ({"flag": True, "off": False, "n": 5, "amp": "a&b=c", "pct": "100%", "hash": "#x", "q?": "?",
      "tilde": "~._-", "colon": "a:b@c", "semi": "a;b,c", "quote": "'\"<>", "empty": "", "ctrl": "tab\there"},
     b"flag=true&off=false&n=5&amp=a%26b%3Dc&pct=100%25&hash=%23x&q?=?&tilde=~._-&colon=a:b@c"
     b"&semi=a%3Bb,c&quote='%22%3C%3E&empty=&ctrl=tab%09here"),
    ([("account", "eip155:1:0x" + "ab" * 20 + ",solana:" + "Z" * 44), ("aggregatedAssetId", "ob:eth,ob:usdc")],
     b"account=eip155:1:0x" + b"ab" * 20 + b",solana:" + b"Z" * 44 + b"&aggregatedAssetId=ob:eth,ob:usdc"),
    (None, b""),
    ([("percent-escaped", "%2F%20%zz"), ("sp ace key", "v"), ("ключ", "значение")],
     b"percent-escaped=%252F%2520%25zz&sp+ace+key=v"
     b"&%D0%BA%D0%BB%D1%8E%D1%87=%D0%B7%D0%BD%D0%B0%D1%87%D0%B5%D0%BD%D0%B8%D0%B5"),
]


@pytest.mark.parametrize("params,query", CASES, ids=range(len(CASES)))
async def test_same_bytes_reach_the_upstream(server, lane, params, query):
    headers = {"X-Api-Key": "k-1", "Authorization": "Bearer t"}
    http = new_client(lane)
    try:
        upstream = _upstream(server.url, http)
        pairs = _param_list(params)
        seen.clear()
        for _ in range(3):   # built by httpx, then twice from the kept URL
            live = await upstream._http(server.url + PATH, pairs, headers, 5)
            assert live.status == 200 and live.body == b"{}"
        assert len(upstream.lane.urls) == 1
        # httpx's own request with params= over the same client: the oracle.
        async with http.stream("GET", server.url + PATH, params=pairs, headers=headers) as response:
            await response.aread()
    finally:
        await http.aclose()
    assert len(seen) == 4 and all(s == seen[-1] for s in seen)
    raw_path, query_string, _ = seen[0]
    assert raw_path == b"/v2/some%20path/%C3%A9"
    assert query_string == query


async def test_kept_urls_follow_the_params_and_are_bounded(server, lane, monkeypatch):
    monkeypatch.setattr("gateway.upstream.http.MAX_URLS", 3)
    http = new_client(lane)
    try:
        upstream = _upstream(server.url, http)
        seen.clear()
        for pairs in ([("a", "1"), ("b", "2")], [("b", "2"), ("a", "1")], [("a", "1")], [("a", "1"), ("a", "1")],
                      [("a", "1"), ("b", "2")]):
            await upstream._http(server.url + "/p", pairs, None, 5)
        assert len(upstream.lane.urls) == 3
    finally:
        await http.aclose()
    assert [s[1] for s in seen] == [b"a=1&b=2", b"b=2&a=1", b"a=1", b"a=1&a=1", b"a=1&b=2"]


@pytest.mark.parametrize("path", ["/declared-over", f"/streamed?size={CAP + 1}", "/gzip-bomb"])
async def test_byte_cap(server, lane, path):
    http = new_client(lane)
    try:
        upstream = _upstream(server.url, http)
        url, _, query = path.partition("?")
        with pytest.raises(UpstreamError) as caught:
            await upstream._http(server.url + url, [tuple(query.split("="))] if query else [], None, 5)
        assert caught.value.code is UpstreamCode.BAD_RESPONSE and caught.value.status == 200
        # the connection is released: the next call on the same client works
        live = await upstream._http(server.url + "/streamed", [("size", str(CAP))], None, 5)
        assert live.status == 200 and live.body == b"y" * CAP
    finally:
        await http.aclose()


async def test_timeout_and_unreachable(server, lane):
    http = new_client(lane)
    try:
        with pytest.raises(UpstreamError) as caught:
            await _upstream(server.url, http)._http(server.url + "/slow", [], None, 0.2)
        assert caught.value.code is UpstreamCode.TIMEOUT
        dead = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(UpstreamError) as caught:
            await _upstream(dead, http)._http(dead + "/x", [("a", "1")], None, 2)
        assert caught.value.code is UpstreamCode.UNAVAILABLE
    finally:
        await http.aclose()


async def test_retry_after(server, lane):
    http = new_client(lane)
    try:
        upstream = _upstream(server.url, http)
        live = await upstream._http(server.url + "/throttled", [("after", "7")], None, 5)
        assert live.status == 429 and live.retry_after == 7.0
        live = await upstream._http(server.url + "/throttled", [("after", "Wed, 21 Oct 2015 07:28:00 GMT")], None, 5)
        assert live.status == 429 and live.retry_after is None
    finally:
        await http.aclose()


async def sets_cookie(request: Request) -> Response:
    seen.append((request.scope["raw_path"], request.scope["query_string"], list(request.scope["headers"])))
    response = Response(b"{}", media_type="application/json")
    response.set_cookie("session", "for-" + request.headers.get("x-api-key", "nobody"), path="/")
    return response


async def test_a_cookie_set_for_one_caller_never_goes_out_with_another(server):
    """One client serves every caller: no cookie jar may carry one caller's session to the next."""
    APP.router.routes.insert(0, Route("/cookie", sets_cookie))
    http = make_http_client()
    try:
        upstream = _upstream(server.url, http)
        seen.clear()
        await upstream._http(server.url + "/cookie", [], {"X-Api-Key": "caller-a"}, 5)
        await upstream._http(server.url + "/cookie", [], {"X-Api-Key": "caller-b"}, 5)
        await upstream._http(server.url + "/anything", [], {"X-Api-Key": "caller-b"}, 5)
        assert len(http.cookies) == 0
    finally:
        await http.aclose()
        APP.router.routes.pop(0)
    assert len(seen) == 3
    for _, _, headers in seen:
        assert not [v for k, v in headers if k == b"cookie"], headers
