"""Clients can pace themselves: the RateLimit-Policy / RateLimit fields
(draft-ietf-httpapi-ratelimit-headers-11, parsed here as RFC 9651 structured fields), a
429 with Retry-After for a runaway client, the admin policy apart from the per-key one,
and Redis-shared buckets that say the same thing from every gateway process.

Low limits make the numbers exact: at 0.01 tokens/s a test's own duration moves a bucket by
a fraction of a token, so `r` is exact and `t` is known within a few seconds.
"""
from __future__ import annotations

import re
import time

import http_sf
import httpx
import jwt
import pytest

from gateway.server.demo import DEMO_LIMITS, demo_app
from gateway.policy.rate_limit import LocalBuckets, Policy, Verdict
from gateway.server.serving import ServerThread, free_port
from tests.stack import stack
from tests.tooling import need_redis

REDIS_URL = "redis://127.0.0.1:6379/11"   # this module's own database
ADMIN_KEY = "admin-key-for-rate-limits"
OTHER_ADMIN_KEY = "second-admin-key-for-rate-limits"
ADMIN_QUERY = '{ accounts(ids: ["demo"]) { id } }'


def fields(response: httpx.Response) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """(policy item, limit item): each field must be a one-item Structured Field list."""
    policy = http_sf.parse(response.headers["ratelimit-policy"].encode(), tltype="list")
    limit = http_sf.parse(response.headers["ratelimit"].encode(), tltype="list")
    assert len(policy) == 1 and len(limit) == 1, (policy, limit)
    assert response.headers.get_list("ratelimit") == [response.headers["ratelimit"]]   # one field, not repeated
    return policy[0], limit[0]


def near(value: int, expected: int, slack: int = 5) -> bool:
    """`value` seconds is `expected` less the few seconds a slow test run may take."""
    return expected - slack <= value <= expected


# -- the demo --------------------------------------------------------------------------------
def test_the_demo_answers_200_quick_requests_all_200_with_rate_limit_headers():
    port = free_port()
    burst, rate = DEMO_LIMITS["rate_limit_burst"], DEMO_LIMITS["rate_limit_per_s"]
    with ServerThread(demo_app("127.0.0.1", port), port=port) as demo, \
            httpx.Client(base_url=demo.url, headers={"authorization": "Bearer demo-key"}) as http:
        responses = [http.post("/graphql", json={"query": "{ __typename }"}) for _ in range(200)]
    assert [r.status_code for r in responses] == [200] * 200
    items = [fields(r) for r in responses]
    assert all(policy == ("default", {"q": burst, "w": round(burst / rate)}) for policy, _ in items)
    assert items[0][1] == ("default", {"r": burst - 1, "t": 1})   # a fresh bucket, one token taken
    assert all(name == "default" and 0 < limit["r"] < burst and limit["t"] >= 1 for name, limit in
               (item for _, item in items))


# -- a runaway client ----------------------------------------------------------------------------
def test_a_runaway_client_is_stopped_with_retry_after_and_the_headers():
    with stack(limits={"rate_limit_per_s": 0.01, "rate_limit_burst": 3}) as (world, client, _):
        answers = [client.post("{ viewer { id } }") for _ in range(12)]
        assert [a.status_code for a in answers] == [200] * 3 + [429] * 9
        for answer in answers:
            assert fields(answer)[0] == ("default", {"q": 3, "w": 300})
        assert [fields(a)[1][1]["r"] for a in answers] == [2, 1, 0] + [0] * 9
        # each allowed answer: what is left lasts until the next token, ~100 s at 0.01/s
        assert all(near(fields(a)[1][1]["t"], 100) for a in answers[:3])
        limited = answers[3]
        assert limited.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        retry_after = int(limited.headers["retry-after"])
        assert near(retry_after, 100)
        assert fields(limited)[1] == ("default", {"r": 0, "t": retry_after})   # the same moment as Retry-After
        before = sum(c.requests for c in world.controls.values())
        assert client.post("{ viewer { wallets { id } } }").status_code == 429
        assert sum(c.requests for c in world.controls.values()) == before   # refused before any upstream
        counted = re.search(r'^balance_gateway_graphql_errors_total\{code="RATE_LIMITED"\} (\S+)$',
                            client.http.get("/metrics").text, re.M)
        assert counted and float(counted[1]) == 10   # what operators alert on


def test_responses_refused_before_the_caller_is_known_carry_no_quota():
    with stack() as (_, client, _app):
        unknown = client.post("{ viewer { id } }", key="not-a-key")
        assert unknown.status_code == 401
        assert "ratelimit" not in unknown.headers and "ratelimit-policy" not in unknown.headers


def test_kept_answers_carry_their_own_request_s_headers():
    """A kept response is stored without the headers of the request that made it."""
    with stack(sources={"cache_ttl_s": 60}, limits={"rate_limit_per_s": 0.01, "rate_limit_burst": 10}) as (_, client, _app):
        query = "{ viewer { id holdings(first: 3) { totalCount } } }"
        answers = [client.post(query) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        hits = re.search(r'^balance_gateway_response_cache_total\{result="hit"\} (\S+)$',
                         client.http.get("/metrics").text, re.M)
        assert hits and float(hits[1]) >= 2   # kept answers were sent again
        assert [fields(a)[1][1]["r"] for a in answers] == [9, 8, 7, 6]


# -- admin callers ---------------------------------------------------------------------------------
def test_admin_keys_have_their_own_limit_apart_from_the_per_key_one():
    limits = {"rate_limit_per_s": 0.01, "rate_limit_burst": 2,
              "admin_rate_limit_per_s": 0.01, "admin_rate_limit_burst": 5}
    with stack(limits=limits, auth={"admin_keys": [ADMIN_KEY, OTHER_ADMIN_KEY]}) as (_, client, _app):
        user = [client.post("{ viewer { id } }") for _ in range(3)]
        assert [a.status_code for a in user] == [200, 200, 429]
        # the account key is spent; the backend's admin key is not throttled like it
        admin = [client.post(ADMIN_QUERY, key=ADMIN_KEY) for _ in range(6)]
        assert [a.status_code for a in admin] == [200] * 5 + [429]
        assert admin[0].json()["data"]["accounts"] == [{"id": "demo"}]
        assert all(fields(a)[0] == ("admin", {"q": 5, "w": 500}) for a in admin)
        assert [fields(a)[1][1]["r"] for a in admin] == [4, 3, 2, 1, 0, 0]
        assert admin[-1].headers["retry-after"] and fields(admin[-1])[1][0] == "admin"
        # one bucket per admin credential: a second backend key starts full
        other = client.post(ADMIN_QUERY, key=OTHER_ADMIN_KEY)
        assert other.status_code == 200 and fields(other)[1] == ("admin", {"r": 4, "t": fields(other)[1][1]["t"]})
        # and the account key's bucket did not move while the admins asked
        assert fields(client.post("{ viewer { id } }"))[1][1]["r"] == 0


def test_an_admin_jwt_draws_from_the_admin_policy():
    secret = "hs256-test-secret-that-is-long-enough-0123456789"
    limits = {"rate_limit_per_s": 0.01, "rate_limit_burst": 2,
              "admin_rate_limit_per_s": 0.01, "admin_rate_limit_burst": 7}
    with stack(limits=limits, auth={"jwt": {"hs256_secret": secret, "admin_claim": "role"}}) as (_, client, _app):
        exp = int(time.time()) + 300
        admin = jwt.encode({"sub": "ops", "role": "admin", "exp": exp}, secret, algorithm="HS256")
        user = jwt.encode({"sub": "demo", "exp": exp}, secret, algorithm="HS256")
        assert fields(client.post(ADMIN_QUERY, key=admin))[0] == ("admin", {"q": 7, "w": 700})
        assert fields(client.post("{ viewer { id } }", key=user))[0] == ("default", {"q": 2, "w": 200})


# -- browsers --------------------------------------------------------------------------------------
def test_cors_exposes_the_rate_limit_fields_to_browsers():
    with stack(server={"cors_origins": ["https://app.example"]}) as (_, client, _app):
        answer = client.post("{ viewer { id } }", headers={"origin": "https://app.example"})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"
        exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
        assert {"ratelimit", "ratelimit-policy", "retry-after", "x-request-id"} <= exposed


# -- shared through Redis ------------------------------------------------------------------------
def _clear_buckets() -> None:
    import redis
    server = redis.Redis.from_url(REDIS_URL)
    for key in server.scan_iter("bg:rl:*"):   # an earlier run's buckets
        server.delete(key)


def test_redis_shared_buckets_report_the_same_quota_from_two_gateways():
    need_redis(REDIS_URL)
    _clear_buckets()
    limits = {"rate_limit_per_s": 0.001, "rate_limit_burst": 4}
    with stack(limits=limits, cache={"redis_url": REDIS_URL}) as (_, first, _app), \
            stack(limits=limits, cache={"redis_url": REDIS_URL}) as (_, second, _app2):
        answers = [c.post("{ viewer { id } }") for c in (first, second, first, second, first, second)]
        assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
        assert all(fields(a)[0] == ("default", {"q": 4, "w": 4000}) for a in answers)
        # one bucket: each gateway counts down what the other took
        assert [fields(a)[1][1]["r"] for a in answers] == [3, 2, 1, 0, 0, 0]
        assert all(near(fields(a)[1][1]["t"], 1000) for a in answers)
        for limited in answers[4:]:
            assert fields(limited)[1][1]["t"] == int(limited.headers["retry-after"])
    _clear_buckets()


def test_with_redis_down_each_process_still_reports_its_own_bucket():
    with stack(limits={"rate_limit_per_s": 0.01, "rate_limit_burst": 5},
               cache={"redis_url": "redis://127.0.0.1:1/0"}) as (_, client, _app):
        answers = [client.post("{ viewer { id } }") for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert [fields(a)[1][1]["r"] for a in answers] == [4, 3]


# -- the arithmetic -------------------------------------------------------------------------------
def test_a_verdict_says_what_is_left_and_for_how_long():
    buckets = LocalBuckets(rate=2.0, burst=3)
    policy = Policy("default", 2.0, 3)
    assert policy.window_s == 2                                   # 3 tokens at 2/s: 1.5 s, rounded up
    taken = [buckets.draw("k", now=0.0) for _ in range(4)]
    assert taken[:3] == [(0.0, 2.0), (0.0, 1.0), (0.0, 0.0)]
    wait, tokens = taken[3]
    assert (wait, tokens) == (0.5, 0.0)                           # refused: half a second to a token
    refused = Verdict(policy, wait, tokens)
    assert (refused.allowed, refused.remaining, refused.effective_window_s) == (False, 0, 1)
    allowed = Verdict(policy, 0.0, 1.25)                          # 0.75 of a token to go at 2/s
    assert (allowed.allowed, allowed.remaining, allowed.effective_window_s) == (True, 1, 1)
    slow = Verdict(Policy("default", 0.01, 3), 0.0, 2.5)
    assert (slow.remaining, slow.effective_window_s) == (2, 50)
    assert buckets.draw("k", now=10.0) == (0.0, 2.0)              # refilled to the burst, one taken


@pytest.mark.parametrize("rate,burst,window", [(50.0, 300, 6), (500.0, 3000, 6), (0.5, 3, 6), (3.0, 10, 4), (1e4, 1, 1)])
def test_a_policy_window_is_whole_seconds_rounded_up(rate, burst, window):
    assert Policy("default", rate, burst).window_s == window
