"""A gateway with a migrated store, over real HTTP: the registry tests' common ground."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from gateway.config import GatewayConfig
from gateway.server.app import create_app
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from gateway.store.schema_version import migrate
from tests.store_db import new_encryption_key, run_async

ADMIN_KEY = "registry-admin-key"

LINKED = """
fragment Linked on Account { id links { source identity credentialHint } }
"""
CREATE = "mutation($id: ID!) { createAccount(id: $id) { id links { source } } }"
LINK = LINKED + "mutation($a: ID!, $l: SourceLinkInput!) { linkSource(accountId: $a, link: $l) { ...Linked } }"
UNLINK = LINKED + ("mutation($a: ID!, $s: Source!, $i: String) { unlinkSource(accountId: $a, source: $s, identity: $i) "
                   "{ ...Linked } }")
ISSUE = "mutation($a: ID!, $label: String) { issueApiKey(accountId: $a, label: $label) { keyId key label } }"
REVOKE = "mutation($a: ID!, $k: ID!) { revokeApiKey(accountId: $a, keyId: $k) }"
DELETE = "mutation($id: ID!) { deleteAccount(id: $id) }"
TOTAL = "{ viewer { id totalValue(currency: \"USD\") { value { amount currency } complete } holdings(first: 200) { totalCount nodes { id amount } } } }"


def migrated(url: str) -> None:
    async def run() -> None:
        engine = create_engine(StoreConfig.model_validate({"url": url, "encryption_keys": [new_encryption_key()]}))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
    run_async(run)


def registry_config(world: World, sims_url: str, store: dict[str, Any], *, toml_accounts: list[str] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("auth", {"admin_keys": [ADMIN_KEY]})
    raw = world.config_dict(sims_url, store=store, limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000},
                            **overrides)
    keep = set(toml_accounts or [])
    raw["accounts"] = [a for a in raw["accounts"] if a["id"] in keep]
    for block in raw["sources"].values():
        block.update(timeout_s=2.0, max_retries=0, breaker_failures=1_000_000)
    return raw


@contextlib.contextmanager
def serving(raw: dict[str, Any]) -> Iterator[ServerThread]:
    with ServerThread(create_app(GatewayConfig.model_validate(raw))) as server:
        yield server


def link_inputs(blocks: dict[str, Any]) -> list[dict[str, Any]]:
    """The SourceLinkInput for each of a World account's blocks."""
    out = []
    for key, block in blocks.items():
        link: dict[str, Any] = {"source": key.upper()}
        for name, field in (("token", "token"), ("accounts", "accounts"), ("wallet_uuids", "walletUuids"),
                            ("api_key", "apiKey"), ("wallet", "wallet")):
            if name in block:
                link[field] = block[name]
        out.append(link)
    return out
