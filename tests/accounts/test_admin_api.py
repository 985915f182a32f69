"""The registry's admin API over real HTTP, on SQLite and on PostgreSQL: accounts created,
linked and keyed through GraphQL answer like the same accounts written in the config file;
every refusal has its contract code and calls no upstream."""
from __future__ import annotations

import pytest

from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from tests.accounts.registry_stack import (ADMIN_KEY, CREATE, DELETE, ISSUE, LINK, REVOKE, TOTAL, UNLINK,
                                           link_inputs, migrated, registry_config, serving)
from tests.conftest import GraphQLClient, upstream_counts
from tests.store_db import store_block


@pytest.fixture(scope="module")
def world() -> World:
    w = World.generate(0, demo=True, size=5)
    w.add_account("alice", size=6)
    return w


@pytest.fixture(scope="module")
def world_sims(world: World):
    with ServerThread(world.combined_app()) as server:
        yield server


JWT_SECRET = "registry-test-jwt-secret-of-32-bytes!"


@pytest.fixture()
def registry_store(world: World, world_sims: ServerThread, store_url: str):
    migrated(store_url)
    auth = {"admin_keys": [ADMIN_KEY], "jwt": {"hs256_secret": JWT_SECRET, "admin_claim": "role"}}
    with serving(registry_config(world, world_sims.url, store_block(store_url), toml_accounts=["demo"],
                                 cache={"enabled": False}, auth=auth)) as server:
        yield GraphQLClient(server.url), store_url


@pytest.fixture()
def registry_gateway(registry_store):
    return registry_store[0]


@pytest.fixture(scope="module")
def toml_gateway(world: World, world_sims: ServerThread):
    """The same accounts in the config file, no store: what the registry's answers must equal."""
    raw = world.config_dict(world_sims.url, cache={"enabled": False})
    from gateway.config import GatewayConfig
    from gateway.server.app import create_app
    with ServerThread(create_app(GatewayConfig.model_validate(raw))) as server:
        yield GraphQLClient(server.url)


def admin(client: GraphQLClient, query: str, **variables) -> dict:
    return client.query(query, variables, key=ADMIN_KEY)


def codes(body: dict) -> list[tuple[str, str | None]]:
    return [(e["extensions"]["code"], e["extensions"].get("field")) for e in body.get("errors", [])]


def onboard(client: GraphQLClient, world: World, account_id: str) -> str:
    assert admin(client, CREATE, id=account_id)["data"]["createAccount"] == {"id": account_id, "links": []}
    for link in link_inputs(world.accounts[account_id]):
        body = admin(client, LINK, a=account_id, l=link)
        assert "errors" not in body, body
    issued = admin(client, ISSUE, a=account_id, label="phone app")["data"]["issueApiKey"]
    assert issued["label"] == "phone app" and issued["key"].startswith("bgk_")
    return issued["key"]


def test_an_account_onboarded_through_the_api_reads_like_the_same_account_in_the_config(
        registry_gateway, toml_gateway, world, clean_world):
    key = onboard(registry_gateway, world, "alice")
    mine = registry_gateway.query(TOTAL, key=key)
    assert "errors" not in mine, mine
    theirs = toml_gateway.query(TOTAL, key="alice-key")
    assert mine["data"]["viewer"]["totalValue"] == theirs["data"]["viewer"]["totalValue"]
    assert mine["data"]["viewer"]["holdings"]["totalCount"] == theirs["data"]["viewer"]["holdings"]["totalCount"] > 5
    assert sorted(h["amount"] for h in mine["data"]["viewer"]["holdings"]["nodes"]) == \
        sorted(h["amount"] for h in theirs["data"]["viewer"]["holdings"]["nodes"])


def test_links_are_shown_redacted_to_admins_and_the_account_itself(registry_gateway, world, clean_world):
    key = onboard(registry_gateway, world, "alice")
    query = "{ account(id: \"alice\") { links { source identity credentialHint } apiKeys { keyId label createdAt lastUsedAt } } }"
    for who in (ADMIN_KEY, key):
        account = registry_gateway.query(query, key=who)["data"]["account"]
        by_source = {l["source"]: l for l in account["links"]}
        assert by_source["CALICO"] == {"source": "CALICO", "identity": "token", "credentialHint": "lice"}
        # "dalp-key-alice" is 14 characters: a quarter of it at most (credential_hint)
        assert by_source["DALP"]["credentialHint"] == "ice" and by_source["DALP"]["identity"] == "api_key"
        assert {l["identity"] for l in account["links"] if l["source"] == "ONEBALANCE"} == \
            set(world.accounts["alice"]["onebalance"]["accounts"])
        assert [k["label"] for k in account["apiKeys"]] == ["phone app"] and account["apiKeys"][0]["createdAt"]
        text = str(account)
        for block in world.accounts["alice"].values():
            for secret in (block.get("token"), block.get("api_key")):
                if secret:
                    assert secret not in text
    assert codes(registry_gateway.query(query, key="demo-key")) == [("FORBIDDEN", None)]


def test_a_revoked_key_is_unauthenticated_at_once(registry_gateway, world, clean_world):
    key = onboard(registry_gateway, world, "alice")
    assert registry_gateway.query("{ viewer { id } }", key=key)["data"]["viewer"]["id"] == "alice"
    key_id = admin(registry_gateway, "{ account(id: \"alice\") { apiKeys { keyId } } }")["data"]["account"]["apiKeys"][0]["keyId"]
    assert admin(registry_gateway, REVOKE, a="alice", k=key_id)["data"]["revokeApiKey"] is True
    refused = registry_gateway.post("{ viewer { id } }", key=key)
    assert refused.status_code == 401 and refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert codes(admin(registry_gateway, REVOKE, a="alice", k=key_id)) == [("NOT_FOUND", "keyId")]


def test_unlinking_and_deleting_take_effect_for_the_next_read(registry_gateway, world, clean_world):
    key = onboard(registry_gateway, world, "alice")
    before = registry_gateway.query("{ viewer { sources { source state } } }", key=key)["data"]["viewer"]["sources"]
    assert {s["source"]: s["state"] for s in before}["COBO"] == "OK"
    after = admin(registry_gateway, UNLINK, a="alice", s="COBO", i=None)["data"]["unlinkSource"]
    assert "COBO" not in {l["source"] for l in after["links"]}
    calls = upstream_counts(world)
    states = registry_gateway.query("{ viewer { sources { source state } } }", key=key)["data"]["viewer"]["sources"]
    assert {s["source"]: s["state"] for s in states}["COBO"] == "NOT_CONFIGURED"
    assert upstream_counts(world)[next(s for s in calls if s.value == "COBO")] == calls[next(s for s in calls if s.value == "COBO")]
    assert admin(registry_gateway, DELETE, id="alice")["data"]["deleteAccount"] is True
    assert registry_gateway.post("{ viewer { id } }", key=key).status_code == 401
    assert codes(admin(registry_gateway, DELETE, id="alice")) == [("NOT_FOUND", None)]


BAD_LINKS = [
    ({"source": "ONEBALANCE", "accounts": ["eip155:1:0x123"]}, "link.accounts[0]"),
    ({"source": "ONEBALANCE", "accounts": ["eip155:1:0xb3373eF94589afe959E8E2Ba39eabbF645D18834", "nope"]}, "link.accounts[1]"),
    ({"source": "ONEBALANCE", "accounts": []}, "link.accounts"),
    ({"source": "COBO", "walletUuids": ["not-a-uuid"]}, "link.walletUuids[0]"),
    ({"source": "CALICO", "token": ""}, "link.token"),
    ({"source": "CALICO", "token": "   "}, "link.token"),
    ({"source": "CRYPTOFUSE"}, "link.token"),
    ({"source": "CALICO", "token": "t0k3n-value", "walletUuids": ["28ad7b3d-9964-449d-a5f9-3c7109833064"]}, "link.walletUuids"),
    ({"source": "DALP", "wallet": "0xnot-an-address"}, "link.wallet"),
    ({"source": "DALP", "apiKey": "k-123456", "wallet": "0xb3373eF94589afe959E8E2Ba39eabbF645D18834"}, "link.apiKey"),
]


@pytest.mark.parametrize(("link", "field"), BAD_LINKS, ids=[f for _, f in BAD_LINKS])
def test_every_malformed_identity_is_bad_user_input_naming_the_field_with_no_upstream_call(
        registry_gateway, world, clean_world, link, field):
    admin(registry_gateway, CREATE, id="bob")
    calls = upstream_counts(world)
    body = admin(registry_gateway, LINK, a="bob", l=link)
    assert codes(body) == [("BAD_USER_INPUT", field)], body
    assert body.get("data") is None
    assert admin(registry_gateway, "{ account(id: \"bob\") { links { source } } }")["data"]["account"]["links"] == []
    assert upstream_counts(world) == calls


def test_an_unknown_source_is_refused_before_anything_runs(registry_gateway):
    body = registry_gateway.post(LINK_ANY, {"a": "bob", "l": {"source": "BINANCE", "token": "x"}}, key=ADMIN_KEY).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and "data" not in body


LINK_ANY = "mutation($a: ID!, $l: SourceLinkInput!) { linkSource(accountId: $a, link: $l) { id } }"


def test_contract_codes_for_ids_and_toml_accounts(registry_gateway, world, clean_world):
    assert codes(admin(registry_gateway, CREATE, id="bad id!")) == [("BAD_USER_INPUT", "id")]
    assert codes(admin(registry_gateway, CREATE, id="x" * 65)) == [("BAD_USER_INPUT", "id")]
    assert "errors" not in admin(registry_gateway, CREATE, id="carol")
    assert codes(admin(registry_gateway, CREATE, id="carol")) == [("ALREADY_EXISTS", "id")]
    assert codes(admin(registry_gateway, CREATE, id="demo")) == [("ALREADY_EXISTS", "id")]
    assert codes(admin(registry_gateway, LINK, a="nobody", l={"source": "CALICO", "token": "abcdefgh"})) == [("NOT_FOUND", None)]
    for query, variables in ((LINK, {"a": "demo", "l": {"source": "CALICO", "token": "abcdefgh"}}),
                             (UNLINK, {"a": "demo", "s": "CALICO"}), (ISSUE, {"a": "demo"}),
                             (REVOKE, {"a": "demo", "k": "key_1"}), (DELETE, {"id": "demo"})):
        assert codes(registry_gateway.query(query, variables, key=ADMIN_KEY))[0][0] == "READ_ONLY_ACCOUNT"
    assert codes(admin(registry_gateway, UNLINK, a="carol", s="CALICO")) == [("NOT_FOUND", "source")]


@pytest.mark.parametrize("query", [CREATE, DELETE])
def test_non_admins_are_forbidden_and_nothing_is_written(registry_gateway, world, clean_world, query):
    calls = upstream_counts(world)
    body = registry_gateway.query(query, {"id": "mallory"}, key="demo-key")
    assert codes(body) == [("FORBIDDEN", None)]
    assert upstream_counts(world) == calls
    assert codes(admin(registry_gateway, DELETE, id="mallory")) == [("NOT_FOUND", None)]


def test_identical_mutations_at_once_are_each_run(registry_gateway):
    """Never coalesced with one another (gateway/policy/response_reuse.py): one wins, one is ALREADY_EXISTS."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda _: admin(registry_gateway, CREATE, id="twin"), range(4)))
    assert sorted("errors" in b for b in bodies) == [False, True, True, True]


@pytest.fixture()
def clean_world(world: World):
    for control in world.controls.values():
        control.reset()
    yield


def jwt_for(**claims) -> str:
    import time as _time

    import jwt
    return jwt.encode({"exp": int(_time.time()) + 60, **claims}, JWT_SECRET, algorithm="HS256")


def test_admin_jwts_may_change_accounts_and_account_jwts_may_not(registry_gateway):
    admin_token = jwt_for(sub="backend", role="admin")
    assert registry_gateway.query(CREATE, {"id": "lee"}, key=admin_token)["data"]["createAccount"]["id"] == "lee"
    user_token = jwt_for(sub="lee")   # names the account just created: a registry account signs in by JWT
    assert registry_gateway.query("{ viewer { id } }", key=user_token)["data"]["viewer"]["id"] == "lee"
    assert codes(registry_gateway.query(DELETE, {"id": "lee"}, key=user_token)) == [("FORBIDDEN", None)]


def test_every_change_is_audited_with_who_what_when_and_no_secret(registry_store, world, clean_world):
    import sqlalchemy as sa

    from gateway.accounts import tables as t
    from gateway.store.config import StoreConfig
    from gateway.store.engine import create_engine
    from tests.store_db import new_encryption_key, run_async

    client, url = registry_store
    key = onboard(client, world, "alice")
    admin(client, UNLINK, a="alice", s="CALICO")
    admin(client, CREATE, id="bad id")                   # refused: not audited

    async def rows():
        engine = create_engine(StoreConfig.model_validate({"url": url, "encryption_keys": [new_encryption_key()]}))
        try:
            async with engine.connect() as conn:
                return (await conn.execute(sa.select(t.audit).order_by(t.audit.c.id))).mappings().all()
        finally:
            await engine.dispose()
    audit = run_async(rows)
    assert [r["action"] for r in audit] == ["create_account"] + ["link_source"] * 5 + ["issue_api_key", "unlink_source"]
    assert {r["account_id"] for r in audit} == {"alice"}
    assert all(r["actor"].startswith("key:") and len(r["actor"]) == 20 for r in audit)
    assert all(r["at"] is not None for r in audit)
    text = " ".join(r["detail"] for r in audit)
    assert "CALICO" in text and world.accounts["alice"]["cobo"]["wallet_uuids"][0] in text
    for block in world.accounts["alice"].values():
        for secret in (block.get("token"), block.get("api_key")):
            if secret:
                assert secret not in text
    assert key not in text and ADMIN_KEY not in text
