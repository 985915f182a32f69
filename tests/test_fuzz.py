"""Random documents, variables and headers against the running gateway: every answer is a
well-formed GraphQL-over-HTTP response with a 2xx or 4xx status — never a 500."""
from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
