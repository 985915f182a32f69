"""Random documents, variables and headers against the running gateway: every answer is a
well-formed GraphQL-over-HTTP response with a 2xx or 4xx status — never a 500.

`hostile_requests` adds what an independent probe found (tests/policy/test_hostile_input.py):
lone surrogates and control characters in every field a client controls (the document,
operationName, variable names and values, extensions, the persisted-query hash, entity
representations, GET parameters, header bytes), JSON nested past the limit, and
federation representations of every wrong shape, some over the cap. bench/fuzz.py runs
the same strategy for 10,000 examples against a gateway process.
"""
from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY

FIELDS = ["viewer", "account", "accounts", "node", "token", "asset", "id", "wallets", "holdings", "positions",
          "totalValue", "balanceHistory", "sources", "nodes", "edges", "node", "cursor", "pageInfo", "amount",
          "value", "price", "token", "symbol", "decimals", "chain", "__typename", "__schema", "nope", "_entities"]
ARGS = ["id", "ids", "first", "after", "filter", "orderBy", "groupBy", "currency", "maxAge", "refresh", "key", "x"]
VALUES = st.one_of(st.integers(-10**30, 10**30), st.text(max_size=20).map(json.dumps), st.just("null"),
                   st.just("true"), st.just('"demo"'), st.just("[\"demo\", 1]"), st.just("{sources: [COBO]}"),
                   st.just("$v"), st.just("ASSET"), st.just("1e309"), st.just('"1E-7"'))


@st.composite
def selections(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(FIELDS))
        alias = draw(st.sampled_from(["", "", "a1: ", "b: "]))
        args = ""
        if draw(st.booleans()):
            arg_list = [f"{draw(st.sampled_from(ARGS))}: {draw(VALUES)}" for _ in range(draw(st.integers(1, 2)))]
            args = "(" + ", ".join(arg_list) + ")"
        sub = f" {{ {draw(selections(depth + 1))} }}" if depth < 4 and draw(st.booleans()) else ""
        parts.append(f"{alias}{name}{args}{sub}")
    return " ".join(parts)


documents = st.one_of(
    selections().map(lambda s: "{ " + s + " }"),
    selections().map(lambda s: "query Q($v: String) { " + s + " }"),
    st.text(max_size=200),                                     # plain garbage
    st.sampled_from(["", "{", "}", "{ viewer { id } } { viewer { id } }", "mutation { x }",
                     "subscription { viewer { id } }", "query A { viewer { id } } query B { viewer { id } }"]),
)
variables = st.one_of(st.none(), st.dictionaries(st.sampled_from(["v", "id", "ids", "x"]),
                                                 st.one_of(st.text(max_size=10), st.integers(), st.none(),
                                                           st.lists(st.text(max_size=5), max_size=3)), max_size=3),
                      st.text(max_size=10), st.integers())
headers = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "text/plain", "application/graphql", "multipart/form-data",
                                     "application/json; charset=latin-1", "nonsense"]),
    "accept": st.sampled_from(["application/json", "application/graphql-response+json", "text/html", "*/*",
                               "application/graphql-response+json, application/json;q=0.9"]),
    "authorization": st.sampled_from(["Bearer demo-key", "Bearer nope", "Basic abc", "Bearer x y", "bearer demo-key",
                                      "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJkZW1vIn0."]),
    "x-api-key": st.sampled_from(["demo-key", "", "x" * 300]),
    "x-request-id": st.text(max_size=80),
})


def _well_formed(response: httpx.Response, method: str) -> None:
    assert 200 <= response.status_code < 500, (response.status_code, response.text[:300])
    ctype = response.headers.get("content-type", "")
    if method == "GET" and ctype.startswith("text/html"):
        return                                                # the GraphiQL page
    assert "json" in ctype, (response.status_code, ctype, response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), body
    for error in body.get("errors", []):
        assert isinstance(error["message"], str)
        assert "Traceback" not in error["message"]


@pytest.mark.usefixtures("clean_simulators")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(document=documents, variables=variables, hdrs=headers, method=st.sampled_from(["POST", "POST", "GET"]),
       raw_body=st.one_of(st.none(), st.binary(max_size=100)))
def test_random_requests_never_get_a_500(gateway, document, variables, hdrs, method, raw_body):
    hdrs = {k: v for k, v in hdrs.items() if v == v.strip() and all(32 <= ord(c) < 127 for c in v)}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        if method == "GET":
            params = {"query": document}
            if variables is not None:
                params["variables"] = json.dumps(variables)
            response = http.get("/graphql", params=params, headers=hdrs)
        elif raw_body is not None:
            response = http.post("/graphql", content=raw_body, headers=hdrs)
        else:
            response = http.post("/graphql", content=json.dumps({"query": document, "variables": variables}),
                                 headers={"content-type": "application/json", **hdrs})
    _well_formed(response, method)


# -- hostile input -------------------------------------------------------------------------------------
SAMPLES = ["\ud800", "\udfff", "a\udbffz", "\x00", "\n", "\r\n", "\x1b[31m", "\u2028", "\x85", "\ufeff", "\ufffe",
           "\U0010ffff", "%00", "\\u0000", '"', "</script>", "'; --"]
SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udbffz", "\udc00\ud800", "x\ud83d"])   # lone ones
NASTY = st.one_of(SURROGATES, st.sampled_from(SAMPLES),
                  st.text(alphabet=st.characters(exclude_categories=()), max_size=12),   # surrogates included
                  st.lists(st.sampled_from(SAMPLES + ["a", "0"]), max_size=4).map("".join))
DEEP = "\u0000deep\u0000"   # placeholder replaced by nested brackets in the body text
DEPTHS = st.sampled_from([1, 5, 29, 30, 31, 32, 33, 64, 500, 3000, 20000])
ENTITY_DOC = ("query($r: [_Any!]!) { _entities(representations: $r) { __typename "
              "... on Account { id } ... on Wallet { id source } ... on Token { id symbol } } }")
TYPENAMES = st.one_of(st.sampled_from(["Account", "Wallet", "Token", "Holding", "Query", "Nope", "_Entity", "Node"]),
                      NASTY, st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))
IDS = st.one_of(st.sampled_from(["demo", "user-0001", "someone-else", "eip155:1/slip44:60", "V2FsbGV0HwE",
                                 "", "Wallet\x1fCOBO\x1fdemo\x1fx"]), NASTY, st.integers(), st.none(),
                st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))
REPRESENTATION = st.one_of(
    st.fixed_dictionaries({}, optional={"__typename": TYPENAMES, "id": IDS, "info": IDS, "cls": IDS, "self": IDS}),
    st.dictionaries(NASTY, IDS, max_size=3), NASTY, st.integers(), st.lists(IDS, max_size=2))
MAX_REPRESENTATIONS = 500   # [limits] max_representations default
HEADER_BYTES = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c == 9 or 32 <= c < 127 or c >= 128).strip())
KEYS = ["Bearer demo-key", "Bearer demo-key", f"Bearer {ADMIN_KEY}", "Bearer nope"]


class Request(NamedTuple):
    method: str
    target: str                    # path and query string, already encoded
    headers: list[tuple[bytes, bytes]]
    body: bytes | None


def _param(value: str) -> str:
    """A URL parameter as a client may send it: any text, lone surrogates as their UTF-8-style bytes."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def hostile_requests(draw) -> Request:
    kind = draw(st.sampled_from(["document", "document", "entities", "entities", "deep"]))
    nasty = draw(NASTY)
    if kind == "entities":
        size = draw(st.one_of(st.integers(0, 6), st.sampled_from([MAX_REPRESENTATIONS, MAX_REPRESENTATIONS + 1])))
        one = draw(REPRESENTATION)
        reps = [one] * size if size > 6 else draw(st.lists(REPRESENTATION, min_size=size, max_size=size))
        if draw(st.booleans()):
            payload: dict[str, Any] = {"query": ENTITY_DOC, "variables": {"r": reps}}
        else:   # inline literals: GraphQL object syntax for the simple ones
            literal = ", ".join("{__typename: %s, id: %s}" % (json.dumps(str(draw(TYPENAMES))), json.dumps(str(draw(IDS))))
                                for _ in range(min(size, 6)))
            payload = {"query": "{ _entities(representations: [%s]) { __typename } }" % literal}
    else:
        literal = json.dumps(nasty)   # a GraphQL string literal too (JSON and GraphQL escapes agree)
        document = draw(st.one_of(
            documents,
            st.sampled_from([f"{{ token(id: {literal}) {{ id }} }}", f"{{ asset(key: {literal}) {{ key }} }}",
                             f"{{ account(id: {literal}) {{ id }} }}", f"{{ node(id: {literal}) {{ id }} }}",
                             f"{{ viewer {{ holdings(after: {literal}) {{ totalCount }} }} }}",
                             f"{{ viewer {{ holdings(filter: {{symbols: [{literal}]}}) {{ totalCount }} }} }}",
                             "{ viewer { id } } # " + nasty, nasty, "query " + nasty + " { viewer { id } }",
                             "query Q($v: ID!) { account(id: $v) { id } }", "query A { viewer { id } }",
                             "query Q($n: Int) { viewer { holdings(first: $n) { totalCount } } }",
                             "query A { viewer { id } } query B { token(id: \"x\") { id } }"])))
        payload = {"query": document}
        if draw(st.booleans()):
            payload["variables"] = draw(st.one_of(
                st.dictionaries(st.one_of(st.sampled_from(["v", "n", "id", "x"]), NASTY),
                                st.one_of(NASTY, st.lists(NASTY, max_size=3), st.integers(), st.none()), max_size=3),
                variables))
        if draw(st.booleans()):
            payload["operationName"] = draw(st.one_of(st.sampled_from(["Q", "A", "B"]), NASTY, NASTY, st.integers()))
        if draw(st.booleans()):
            payload["extensions"] = draw(st.one_of(
                st.fixed_dictionaries({"persistedQuery": st.fixed_dictionaries(
                    {"version": st.sampled_from([1, 2, "1"]),
                     "sha256Hash": st.one_of(NASTY, st.text("0123456789abcdef", min_size=64, max_size=64))})}),
                st.dictionaries(NASTY, NASTY, max_size=2)))
        if draw(st.booleans()):
            payload.pop("query")
    if kind == "deep":
        where = draw(st.sampled_from(["variables", "extensions", "other"]))
        payload.setdefault("query", "query($v: [[Int]]) { viewer { id } }")
        payload[where] = {"v": DEEP} if where != "other" else DEEP
    headers = [(b"content-type", b"application/json")]
    for name in ("authorization", "x-request-id", "accept", "x-apollo-operation-name"):
        if name == "authorization":
            value = draw(st.sampled_from(KEYS)).encode()
        elif draw(st.booleans()):
            value = draw(HEADER_BYTES)
        else:
            continue
        headers.append((name.encode(), value))
    depth = draw(DEPTHS)

    def text(value: Any) -> str:   # json.dumps writes a lone surrogate as its \ud800 escape
        return json.dumps(value).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    if draw(st.integers(0, 3)) == 0:   # GET: the same fields as URL parameters
        params = {k: v if isinstance(v, str) else text(v) for k, v in payload.items() if v is not None}
        target = "/graphql?" + "&".join(f"{k}={_param(v)}" for k, v in params.items())
        if len(target) < 32_000:   # longer: a POST (httpx refuses URLs over 64 KiB; the head limit is 64 KiB)
            return Request("GET", target, [h for h in headers if h[0] != b"content-type"], None)
    return Request("POST", "/graphql", headers, text(payload).encode())


def send(http: httpx.Client, request: Request) -> httpx.Response:
    return http.request(request.method, request.target, headers=request.headers, content=request.body)


def problems(response: httpx.Response) -> list[str]:
    """What is wrong with an answer: a 5xx, a body that is not GraphQL-shaped JSON (read as
    strictly as orjson does), an error without a string message or a code, a bug's code.
    The GraphiQL page is the right answer to a GET without a query that accepts HTML."""
    found = []
    if response.status_code >= 500:
        found.append(f"status {response.status_code}")
    ctype = response.headers.get("content-type", "")
    if response.request.method == "GET" and response.status_code == 200 and ctype.startswith("text/html") \
            and "<title>Balance Gateway · GraphiQL</title>" in response.text:
        return found
    if "json" not in ctype:
        found.append(f"not GraphQL: content-type {response.headers.get('content-type')!r}")
        return found
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        return found + [f"not GraphQL: invalid JSON ({exc})"]
    if not isinstance(body, dict) or not ("data" in body or "errors" in body):
        return found + ["not GraphQL: no data or errors"]
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not code:
            found.append(f"not GraphQL: malformed error {error!r:.200}")
        elif code == "INTERNAL_SERVER_ERROR":
            found.append("internal error")
    return found


@pytest.mark.usefixtures("clean_simulators")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=hostile_requests())
def test_hostile_requests_get_coded_answers_and_log_no_errors(gateway, caplog, request):
    caplog.set_level(logging.WARNING)
    before = len(caplog.records)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        response = send(http, request)
    assert problems(response) == [], (request.method, request.target[:300], (request.body or b"")[:300],
                                      response.status_code, response.text[:300])
    errors = [r.getMessage() for r in caplog.records[before:] if r.levelno >= logging.ERROR]
    assert errors == [], errors
