"""What a client can put in a request that the gateway did not expect: lone surrogates and
control characters in any string, JSON nested thousands deep, federation representations
that name no entity. Each is a coded 4xx or a coded GraphQL error — never a 500, never an
INTERNAL_SERVER_ERROR, never an ERROR line (or traceback) in the log.

Found by an independent probe; tests/policy/test_fuzz.py now generates all of these too.
"""
from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import orjson
import pytest

from gateway.policy import json_depth
from gateway.observability.logs import JsonFormatter, TextFormatter, TEXT_FORMAT
from gateway.policy.persisted_queries import sha256_hex
from tests.conftest import ADMIN_KEY

LONE = "\ud800"
NASTY = ["\ud800", "a\udfffb", "\x00", "line\nbreak\r", "\x1b[31mred", "\u2028", "\x85", "\ufffe"]
AUTH = {"authorization": "Bearer demo-key", "content-type": "application/json"}


def strict_json(response) -> dict:
    """The body as a strict parser reads it (orjson refuses lone surrogates and bad UTF-8)."""
    return orjson.loads(response.content)


def raw_post(client, payload: dict, headers: dict | None = None):
    # json.dumps writes a lone surrogate as the escape `\ud800`, as a hostile client would.
    return client.http.post("/graphql", content=json.dumps(payload).encode(), headers={**AUTH, **(headers or {})})


@pytest.fixture()
def errors_logged(caplog):
    """ERROR records logged (by the in-process gateway) during the test."""
    caplog.set_level(logging.WARNING)
    yield lambda: [r for r in caplog.records if r.levelno >= logging.ERROR]


def assert_coded(response, errors_logged) -> dict:
    assert 400 <= response.status_code < 500 or response.status_code == 200, (response.status_code, response.text)
    body = strict_json(response)
    assert body.get("errors") or "data" in body, body
    for error in body.get("errors", []):
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
    assert errors_logged() == []
    return body


# -- 1. lone surrogates and control characters ----------------------------------------------------
@pytest.mark.usefixtures("clean_simulators")
def test_a_lone_surrogate_in_operation_name_is_a_json_400_not_a_500(client, errors_logged):
    response = raw_post(client, {"query": "query A { viewer { id } }", "operationName": LONE})
    assert response.status_code == 400
    body = assert_coded(response, errors_logged)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "\ufffd" in body["errors"][0]["message"]   # echoed, made valid


def _requests(text: str) -> list[tuple[str, dict]]:
    """The same hostile text in every place of a request a client controls."""
    literal = json.dumps(text)   # a GraphQL string literal too (\\uXXXX escapes)
    return [
        ("operationName", {"query": "query A { viewer { id } }", "operationName": text}),
        ("variable value", {"query": "query($id: ID!) { account(id: $id) { id } }", "variables": {"id": text}}),
        ("variable of the wrong type", {"query": "query($n: Int) { viewer { id } }", "variables": {"n": text}}),
        ("variable name", {"query": "{ viewer { id } }", "variables": {text: 1}}),
        ("argument literal", {"query": f"{{ token(id: {literal}) {{ id }} asset(key: {literal}) {{ key }} }}"}),
        ("cursor", {"query": f"{{ viewer {{ holdings(after: {literal}) {{ totalCount }} }} }}"}),
        ("filter", {"query": "query($f: HoldingFilter) { viewer { holdings(filter: $f) { totalCount } } }",
                    "variables": {"f": {"symbols": [text], "chainIds": [text]}}}),
        ("query text", {"query": "{ viewer { id } } # " + text}),
        ("garbage query", {"query": text}),
        ("extensions key", {"query": "{ viewer { id } }", "extensions": {text: text}}),
        ("persisted query hash", {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": text}}}),
        ("persisted query text", {"query": "{ viewer { id } } #" + text,
                                  "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}),
        ("entity id", {"query": "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }",
                       "variables": {"r": [{"__typename": "Account", "id": text}, {"__typename": "Wallet", "id": text},
                                           {"__typename": "Token", "id": text}, {"__typename": text, "id": "x"}]}}),
    ]


@pytest.mark.usefixtures("clean_simulators")
@pytest.mark.parametrize("text", NASTY, ids=[repr(t) for t in NASTY])
def test_hostile_text_in_every_field_gets_a_coded_answer(client, errors_logged, text):
    for where, payload in _requests(text):
        for key in ("demo-key", ADMIN_KEY):
            response = raw_post(client, payload, {"authorization": f"Bearer {key}"})
            try:
                assert_coded(response, errors_logged)
            except AssertionError as exc:
                raise AssertionError(f"{where} ({key}): {exc}") from None


@pytest.mark.usefixtures("clean_simulators")
def test_hostile_text_in_get_parameters_and_headers(client, errors_logged):
    for text in NASTY:
        params = {"query": "query($id: ID!) { account(id: $id) { id } }", "variables": json.dumps({"id": text}),
                  "operationName": text}
        # The bytes a client may put in a URL, whatever they decode to (a lone surrogate's too).
        query = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())
        response = client.http.get("/graphql?" + query, headers={"authorization": "Bearer demo-key"})
        assert_coded(response, errors_logged)
    # Header values are bytes on the wire: C1 controls and other latin-1 arrive as such.
    for value in (b"\x85\x9b31m", b"\xff\xfe", b"a\tb"):
        response = client.http.post("/graphql", content=b'{"query": "{ viewer { id } }"}',
                                    headers={**AUTH, "x-request-id": value, "accept": value,
                                             "x-apollo-operation-name": value})
        assert_coded(response, errors_logged)
        assert response.headers["x-request-id"].isalnum()   # not echoed: a fresh id


def test_json_log_lines_stay_valid_and_text_lines_stay_one_line():
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, "name=%s", (f"x{LONE}\n\x1b[2J",), None)
    record.request_id = "-"
    line = JsonFormatter().format(record)
    entry = orjson.loads(line.encode("utf-8"))   # encodable and strictly valid
    assert entry["message"] == "name=x\ufffd\n\x1b[2J"   # JSON escapes the controls itself
    text = TextFormatter(TEXT_FORMAT).format(record)
    assert "\n" not in text and "\x1b" not in text and "x\ufffd\\n\\x1b[2J" in text
    text.encode("utf-8")
    # and through a real handler: the record is written, not lost to a logging error
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.emit(record)
    assert orjson.loads(stream.getvalue().strip().encode())["level"] == "WARNING"


def test_a_query_with_a_lone_surrogate_still_hashes():
    assert len(sha256_hex("{ viewer { id } } #" + LONE)) == 64


# -- 2. nesting depth -------------------------------------------------------------------------------
def deep(levels: int, close: str = "]") -> str:
    return "[" * levels + close * levels


@pytest.mark.usefixtures("clean_simulators")
@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
def test_deeply_nested_json_is_a_coded_400_before_parsing(client, errors_logged, accept, demo_world):
    query = "query($v: [[Int]]) { viewer { id } }"
    body = '{"query": "%s", "variables": {"v": %s}}' % (query, deep(5000))
    response = client.http.post("/graphql", content=body, headers={**AUTH, "accept": accept})
    assert response.status_code == 400
    assert assert_coded(response, errors_logged)["errors"][0]["extensions"]["code"] == "MAX_JSON_DEPTH_LIMIT"
    for param in ("variables", "extensions"):
        response = client.http.get("/graphql", params={"query": query, param: '{"v": %s}' % deep(3000)},
                                   headers={"authorization": "Bearer demo-key", "accept": accept})
        assert response.status_code == 400
        assert assert_coded(response, errors_logged)["errors"][0]["extensions"]["code"] == "MAX_JSON_DEPTH_LIMIT"
    # Brackets that can never be JSON are not parsed at all (json.loads would recurse first).
    response = client.http.post("/graphql", content='{"query": "{ viewer { id } }", "v": %s}' % ("[}" * 5000),
                                headers=AUTH)
    assert response.status_code == 400
    assert assert_coded(response, errors_logged)["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert sum(c.requests for c in demo_world.controls.values()) == 0


@pytest.mark.usefixtures("clean_simulators")
def test_nesting_up_to_the_limit_is_parsed(client, errors_logged, gateway_config):
    limit = gateway_config.limits.max_json_depth
    query = "query($v: [[Int]]) { viewer { id } }"
    # the body object and `variables` are two levels; the list fills the rest
    at_limit = '{"query": "%s", "variables": {"v": %s}}' % (query, deep(limit - 2))
    over = '{"query": "%s", "variables": {"v": %s}}' % (query, deep(limit - 1))
    codes = [e["extensions"]["code"] for e in strict_json(client.http.post("/graphql", content=at_limit,
                                                                           headers=AUTH)).get("errors", [])]
    assert "MAX_JSON_DEPTH_LIMIT" not in codes and codes == ["BAD_USER_INPUT"]   # [[Int]] it is not
    response = client.http.post("/graphql", content=over, headers=AUTH)
    assert strict_json(response)["errors"][0]["extensions"]["code"] == "MAX_JSON_DEPTH_LIMIT"
    assert errors_logged() == []


@pytest.mark.parametrize("text,limit,expected", [
    ('{"a": [1, {"b": [2]}]}', 4, None),
    ('{"a": [1, {"b": [2]}]}', 3, json_depth.TOO_DEEP),
    ('{"a": "[[[[[[[[[[[[[[[[[[["}', 2, None),              # brackets in strings do not nest
    ('{"a": "\\"[[[[[[[[[[[[[[[[", "b": []}', 2, None),     # nor after an escaped quote
    ('{"q": "{ a { b { c { d } } } }"}', 1, None),
    (b'[[[[[[[[[[]]]]]]]]]]', 10, None),
    (b'[[[[[[[[[[]]]]]]]]]]', 9, json_depth.TOO_DEEP),
    ('[' * 100 + '}', 10, json_depth.TOO_DEEP),            # a run of openers is depth, balanced or not
    ('[}' * 100, 10, json_depth.UNBALANCED),
    ('[[]' * 12 + ']' * 12, 12, json_depth.TOO_DEEP),     # 13 deep, no long run of openers
    ('[[]' * 12 + ']' * 12, 13, None),
    ('{"a": 1', 10, None),                                # not JSON, for the parser to say
])
def test_nesting_problem(text, limit, expected):
    assert json_depth.nesting_problem(text, limit) == expected


# -- 3. federation representations ---------------------------------------------------------------------
ENTITIES = "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Account { id } } }"


@pytest.mark.usefixtures("clean_simulators")
def test_bad_representations_are_bad_user_input_at_their_index(client, errors_logged):
    reps = [{"id": "bob"}, {"__typename": "Query", "id": "x"}, {"__typename": "Nope", "id": "x"},
            {"__typename": "Account", "id": "demo", "cls": 1, "info": 2, "self": 3},   # stray keys are dropped
            "a string", {"__typename": 3, "id": "x"}, {"__typename": "Holding", "id": "x"}, [], 7]
    response = raw_post(client, {"query": ENTITIES, "variables": {"r": reps}})
    body = assert_coded(response, errors_logged)
    assert body["data"]["_entities"] == [None, None, None, {"__typename": "Account", "id": "demo"},
                                         None, None, None, None, None]
    assert {tuple(e["path"]): e["extensions"]["code"] for e in body["errors"]} == \
        {("_entities", i): "BAD_USER_INPUT" for i in (0, 1, 2, 4, 5, 6, 7, 8)}
    # inline literals too
    literal = '{ _entities(representations: [{id: "bob"}, {__typename: "Query"}]) { __typename } }'
    body = assert_coded(raw_post(client, {"query": literal}), errors_logged)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT", "BAD_USER_INPUT"]


@pytest.mark.usefixtures("clean_simulators")
def test_representations_per_operation_are_capped_before_execution(client, errors_logged, gateway_config,
                                                                   demo_world):
    cap = gateway_config.limits.max_representations
    forbidden = {"__typename": "Account", "id": "someone-else"}
    response = raw_post(client, {"query": ENTITIES, "variables": {"r": [forbidden] * (cap + 1)}})
    body = assert_coded(response, errors_logged)
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "MAX_REPRESENTATIONS_LIMIT"
    # aliases add up
    two = "query($r: [_Any!]!) { a: _entities(representations: $r) { __typename } " \
          "b: _entities(representations: $r) { __typename } }"
    body = assert_coded(raw_post(client, {"query": two, "variables": {"r": [forbidden] * (cap // 2 + 1)}}), errors_logged)
    assert body["errors"][0]["extensions"]["code"] == "MAX_REPRESENTATIONS_LIMIT"
    assert sum(c.requests for c in demo_world.controls.values()) == 0
    # at the cap, every one is answered (forbidden, here)
    body = assert_coded(raw_post(client, {"query": ENTITIES, "variables": {"r": [forbidden] * cap}}), errors_logged)
    assert len(body["data"]["_entities"]) == cap and {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
