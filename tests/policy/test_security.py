"""Each protection: send the offending request, assert the code, and that no upstream was called."""
from __future__ import annotations

import hashlib
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.domain import ids
from gateway.server.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.conftest import GraphQLClient
from tests.stack import stack
from tests.tooling import need_redis

DEEP = "{ viewer { id holdings(first: 5) { totalCount } sources { source state } } }"


def no_upstream_calls(world) -> bool:
    return sum(c.requests for c in world.controls.values()) == 0


def code_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


# -- authentication ---------------------------------------------------------------------------
def test_sha256_digest_keys_authenticate_and_plain_text_is_not_needed():
    digest = "sha256:" + hashlib.sha256(b"digest-only-key").hexdigest()
    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        raw = world.config_dict(sims.url)
        raw["accounts"][0]["api_keys"] = [digest]          # the config holds only the digest
        with ServerThread(create_app(GatewayConfig.model_validate(raw))) as gateway:
            client = GraphQLClient(gateway.url)
            assert client.query("{ viewer { id } }", key="digest-only-key")["data"]["viewer"]["id"] == "demo"
            assert client.post("{ viewer { id } }", key=digest).status_code == 401   # the digest is no key


def _jwt_stack(**jwt_config):
    return stack(auth={"jwt": jwt_config, "admin_keys": []})


def test_jwt_hs256_claims_are_checked():
    secret = "hs256-test-secret-that-is-long-enough-0123456789"
    with _jwt_stack(hs256_secret=secret, issuer="https://issuer.test", audience="balance-gateway",
                    admin_claim="role") as (world, client, _):
        now = int(time.time())
        good = {"sub": "demo", "iss": "https://issuer.test", "aud": "balance-gateway", "exp": now + 60, "nbf": now - 5}

        def ask(claims, key=secret, alg="HS256"):
            return client.post("{ viewer { id } }", key=jwt.encode(claims, key, algorithm=alg))
        assert ask(good).json()["data"]["viewer"]["id"] == "demo"
        for bad in ({**good, "exp": now - 3600}, {**good, "nbf": now + 3600}, {**good, "aud": "someone-else"},
                    {**good, "iss": "https://evil.test"}, {k: v for k, v in good.items() if k != "exp"},
                    {**good, "sub": "nobody"}):
            response = ask(bad)
            assert response.status_code == 401 and code_of(response) == "UNAUTHENTICATED", bad
        assert ask(good, key="wrong-secret-wrong-secret-wrong-secret-0123").status_code == 401
        admin = ask({**good, "sub": "ops", "role": "admin"})
        assert admin.status_code == 200
        other = client.post('{ account(id: "demo") { id } }', key=jwt.encode({**good, "sub": "ops", "role": "admin"},
                                                                            secret, algorithm="HS256"))
        assert other.json()["data"]["account"]["id"] == "demo"
        assert no_upstream_calls(world)


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_jwt_with_public_keys_from_a_jwks_file(tmp_path, kind):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    algo = jwt.algorithms.RSAAlgorithm if kind == "RS256" else jwt.algorithms.ECAlgorithm
    jwk = json.loads(algo.to_jwk(private.public_key()))
    jwk.update(kid="k1", alg=kind, use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    with _jwt_stack(jwks_file=str(jwks)) as (world, client, _):
        token = jwt.encode({"sub": "demo", "exp": int(time.time()) + 60}, private, algorithm=kind, headers={"kid": "k1"})
        assert client.query("{ viewer { id } }", key=token)["data"]["viewer"]["id"] == "demo"
        forged = jwt.encode({"sub": "demo", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256",
                            headers={"kid": "k1"})
        assert client.post("{ viewer { id } }", key=forged).status_code == 401   # no algorithm switching


# -- authorization on every path ----------------------------------------------------------------
def test_every_path_to_another_account_is_forbidden_without_upstream_calls():
    with stack(accounts=1) as (world, client, _):
        other_wallet = ids.wallet_id("COBO", "user-0001", world.accounts["user-0001"]["cobo"]["wallet_uuids"][0])
        other_holding = ids.holding_id("CALICO", "user-0001", "coinbase:", "ticker:BTC")
        cases = {
            "account": '{ account(id: "user-0001") { id wallets { id } } }',
            "accounts": '{ accounts(ids: ["user-0001"]) { id holdings { totalCount } } }',
            "node account": '{ node(id: "user-0001") { id } }',
            "node wallet": f'{{ node(id: "{other_wallet}") {{ id ... on Wallet {{ holdings {{ totalCount }} }} }} }}',
            "node holding": f'{{ node(id: "{other_holding}") {{ id }} }}',
            "unknown account": '{ account(id: "no-such-account") { id } }',
            "node unknown account": '{ node(id: "no-such-account") { id } }',   # no probing via node()
        }
        for name, query in cases.items():
            body = client.query(query)
            codes = [e["extensions"]["code"] for e in body["errors"]]
            assert codes == ["FORBIDDEN"], (name, body)
            assert "user-0001" not in json.dumps(body.get("data")), name
        assert no_upstream_calls(world)


# -- operation limits ---------------------------------------------------------------------------
@pytest.mark.parametrize("query,code", [
    ("{ viewer { wallets { account { wallets { account { wallets { account { id } } } } } } } }", "MAX_DEPTH_LIMIT"),
    ("{ viewer { " + " ".join(f"a{i}: id" for i in range(6)) + " } }", "MAX_ALIASES_LIMIT"),
    ("{ viewer { id } " + " ".join(f"t{i}: token(id: \"ticker:BTC\") {{ id }}" for i in range(3)) + " }",
     "MAX_ROOT_FIELDS_LIMIT"),
    ("{ viewer { " + "id " * 400 + "} }", "MAX_TOKENS_LIMIT"),
])
def test_operation_limits_reject_before_any_upstream_call(query, code):
    limits = {"max_depth": 6, "max_aliases": 5, "max_root_fields": 3, "max_tokens": 300, "max_cost": 200}
    with stack(limits=limits) as (world, client, _):
        response = client.post(query)
        assert response.status_code in (200, 400)
        assert code_of(response) == code
        assert response.json().get("data") is None
        assert no_upstream_calls(world)


def test_cost_is_estimated_in_upstream_calls_before_execution():
    with stack(accounts=4, auth={"admin_keys": ["admin"]},
               limits={"max_cost": 12, "rate_limit_per_s": 100, "rate_limit_burst": 100}) as (world, client, _):
        ids_ = ["demo", "user-0001", "user-0002", "user-0003", "user-0004"]
        q = "query($ids: [ID!]!) { accounts(ids: $ids) { id totalValue { value { amount } } } }"
        response = client.post(q, {"ids": ids_}, key="admin")
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "COST_ESTIMATED_TOO_EXPENSIVE"
        assert error["extensions"]["cost"] > 12
        assert no_upstream_calls(world)
        # the same shape over two accounts fits, and ids alone (no upstream data) cost nothing
        assert "errors" not in client.query(q, {"ids": ids_[:2]}, key="admin")
        assert "errors" not in client.query("query($ids: [ID!]!) { accounts(ids: $ids) { id } }", {"ids": ids_},
                                            key="admin")


def test_request_body_limit():
    with stack(limits={"max_body_bytes": 2_000}) as (world, client, _):
        big = "{ viewer { id } }" + " " * 5_000
        response = client.post(big)
        assert response.status_code == 413 and code_of(response) == "REQUEST_TOO_LARGE"
        assert no_upstream_calls(world)


# -- rate limiting ------------------------------------------------------------------------------
def test_rate_limit_per_key_with_retry_after():
    with stack(limits={"rate_limit_per_s": 0.5, "rate_limit_burst": 3}) as (world, client, _):
        statuses = [client.post("{ viewer { id } }").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.post("{ viewer { id } }")
        assert limited.status_code == 429 and code_of(limited) == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1


def test_rate_limit_is_shared_by_processes_through_redis():
    redis_url = "redis://127.0.0.1:6379/14"
    need_redis(redis_url)
    import redis
    server = redis.Redis.from_url(redis_url)
    for key in server.scan_iter("bg:rl:*"):      # an earlier run's bucket for the demo key
        server.delete(key)
    limits = {"rate_limit_per_s": 0.2, "rate_limit_burst": 4}
    with stack(limits=limits, cache={"redis_url": redis_url}) as (_, first, _app):
        with stack(limits=limits, cache={"redis_url": redis_url}) as (_, second, _app2):
            # both gateways know the demo key: one bucket for it across both
            results = [c.post("{ viewer { id } }").status_code for c in (first, second, first, second, first)]
            assert results.count(200) == 4 and results[-1] == 429


# -- transport hygiene --------------------------------------------------------------------------
def test_csrf_prevention_blocks_simple_requests():
    with stack() as (world, client, _):
        url = client.http.base_url
        simple_post = httpx.post(url.join("/graphql"), content='{"query": "{ viewer { id } }"}',
                                 headers={"content-type": "text/plain"})
        assert simple_post.status_code == 400 and code_of(simple_post) == "CSRF_PREVENTED"
        simple_get = httpx.get(url.join("/graphql"), params={"query": "{ viewer { id } }"})
        assert simple_get.status_code == 400 and code_of(simple_get) == "CSRF_PREVENTED"
        json_post = httpx.post(url.join("/graphql"), json={"query": "{ viewer { id } }"})
        assert json_post.status_code == 401                   # not CSRF-able: on to authentication
        assert no_upstream_calls(world)


def test_cors_allows_only_listed_origins():
    with stack(server={"cors_origins": ["https://app.example"]}) as (_, client, _app):
        url = client.http.base_url.join("/graphql")
        headers = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
        ok = httpx.options(url, headers={"origin": "https://app.example", **headers})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example"
        evil = httpx.options(url, headers={"origin": "https://evil.example", **headers})
        assert "access-control-allow-origin" not in evil.headers


def test_introspection_depth_is_not_counted_but_introspection_is_gated():
    deep_introspection = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }"
    with stack(server={"introspection": True}, limits={"max_depth": 4}) as (world, client, _):
        assert "errors" not in client.query(deep_introspection)
        too_deep = client.post("{ viewer { wallets { holdings { nodes { token { chain { id } } } } } } }")
        assert code_of(too_deep) == "MAX_DEPTH_LIMIT"


def test_introspection_and_graphiql_are_off_outside_the_demo():
    with stack() as (world, client, _):
        body = client.query("{ __schema { types { name } } }")
        assert body["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
        assert client.query("{ __typename viewer { __typename } }")["data"]["viewer"]["__typename"] == "Account"
        page = httpx.get(client.http.base_url.join("/graphql"), headers={"accept": "text/html"})
        assert page.status_code == 404


def test_automatic_persisted_queries():
    query = "{ viewer { id } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    with stack() as (_, client, _app):
        post = lambda body: client.http.post("/graphql", json=body, headers={"authorization": "Bearer demo-key"})
        miss = post({"extensions": ext}).json()
        assert miss["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        assert post({"query": query, "extensions": ext}).json()["data"]["viewer"]["id"] == "demo"
        assert post({"extensions": ext}).json()["data"]["viewer"]["id"] == "demo"    # by hash alone now
        wrong = post({"query": "{ viewer { __typename } }", "extensions": ext}).json()
        assert wrong["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"


def test_safelist_mode_refuses_free_form_queries(tmp_path):
    body = "query Me { viewer { id } }"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1,
                                    "operations": [{"id": "me-v1", "name": "Me", "type": "query", "body": body}]}))
    with stack(persisted_queries={"manifest": str(manifest), "safelist_only": True}) as (world, client, _):
        free = client.post("{ viewer { id holdings { totalCount } } }")
        assert code_of(free) == "PERSISTED_QUERY_NOT_IN_LIST"
        by_id = client.http.post("/graphql", json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "me-v1"}}},
                                 headers={"authorization": "Bearer demo-key"})
        assert by_id.json()["data"]["viewer"]["id"] == "demo"
        assert client.query(body)["data"]["viewer"]["id"] == "demo"           # the identical text is allowed
        assert no_upstream_calls(world)


def test_unexpected_errors_are_masked_with_a_request_id(monkeypatch):
    from resolvers import portfolio

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals: /srv/keys.txt")
    monkeypatch.setattr(portfolio, "account_wallets", broken)
    with stack() as (_, client, _app):
        response = client.post("{ viewer { id wallets { id } } }", headers={"x-request-id": "req-123"})
        error = response.json()["errors"][0]
        assert response.status_code == 200
        assert error["message"] == "Internal server error"
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
        assert "secret internals" not in response.text and "Traceback" not in response.text
        assert response.headers["x-request-id"] == "req-123"


# -- secrets ------------------------------------------------------------------------------------
def test_secrets_come_from_env_or_files_and_never_show(tmp_path):
    secret_file = tmp_path / "cobo_key"
    secret_file.write_text("cobo-from-file-secret\n")
    config = parse_config(f'''
[sources.cobo]
base_url = "http://127.0.0.1:1"
api_key = "${{file:{secret_file}}}"
[[accounts]]
id = "alice"
api_keys = ["${{ALICE_KEY}}"]
cobo = {{ wallet_uuids = ["w1"] }}
''', {"ALICE_KEY": "alice-env-secret"})
    assert config.sources.cobo.api_key.get_secret_value() == "cobo-from-file-secret"
    text = repr(config) + str(config) + repr(config.accounts[0]) + str(config.model_dump())
    assert "cobo-from-file-secret" not in text and "alice-env-secret" not in text and "**********" in text
    with stack() as (_, client, app):
        health = httpx.get(client.http.base_url.join("/health"), params={"ready": ""}).text
        for source in Source:
            block = app.state.gateway.config.sources.get(source)
            if getattr(block, "api_key", None) is not None:
                assert block.api_key.get_secret_value() not in health


@pytest.mark.parametrize("body", [b"0", b'"x"', b"null", b"\x00\x00\x00\x00\x00", b'{"query": "\xff"}', b"[]",
                                  b'{"query": 5}'])
def test_malformed_bodies_get_a_json_400_not_a_500(body):
    # found by tests/policy/test_fuzz.py: valid JSON that is not an object, and bytes that are not UTF-8
    with stack() as (world, client, _):
        response = client.http.post("/graphql", content=body,
                                    headers={"x-api-key": "demo-key", "content-type": "application/json"})
        assert response.status_code == 400
        assert code_of(response) == "BAD_REQUEST"
        assert no_upstream_calls(world)


def test_http_level_mistakes_are_json_errors():
    with stack() as (world, client, _):
        url = client.http.base_url.join("/graphql")
        put = httpx.put(url, headers={"x-api-key": "demo-key"})
        assert put.status_code == 405 and code_of(put) == "METHOD_NOT_ALLOWED"
        two = client.post("query A { viewer { id } } query B { viewer { id } }")
        assert code_of(two) == "GRAPHQL_VALIDATION_FAILED" and "operation name" in two.json()["errors"][0]["message"]
        assert no_upstream_calls(world)


def test_config_refuses_a_demo_switch_and_a_malformed_registry():
    from gateway.config import ConfigError
    with pytest.raises(ConfigError, match="demo"):
        parse_config("demo = true\n", {})
    with pytest.raises(ConfigError, match="registry"):
        parse_config('[[registry.tokens]]\nsymbol = "X"\n', {})          # a token without an id
