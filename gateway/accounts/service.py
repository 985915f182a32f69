"""The registry as a running gateway holds it: engine, sealing keys, directory and admin
operations, built from `[store]`, and the hooks that keep the caches honest."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from gateway.accounts.admin import Registry
from gateway.accounts.crypto import SecretBox
from gateway.accounts.directory import POLL_S, AccountDirectory
from gateway.config import GatewayConfig
from gateway.store.engine import create_engine


@dataclass
class RegistryService:
    directory: AccountDirectory
    registry: Registry

    async def close(self) -> None:
        await self.directory.engine.dispose()


def build_registry(config: GatewayConfig, *, poll_s: float = POLL_S) -> RegistryService | None:
    """None without `[store]`; no connection is opened here (the directory's first sync does)."""
    if config.store is None:
        return None
    engine = create_engine(config.store)
    box = SecretBox(config.store.keys)
    directory = AccountDirectory(engine, box, backend="sqlite" if config.store.is_sqlite else "postgresql",
                                 poll_s=poll_s)
    return RegistryService(directory, Registry(engine, box, directory, config))


def forget_changed_accounts(clients: dict[Any, Any], kept: Any) -> Callable[[set[str]], None]:
    """The directory's listener: what the caches of this process hold for changed accounts
    goes (normalized reads; every kept whole response, since an admin's may hold any account).
    Cached pages need no purge: their keys hold the account's cache scope, which a lost
    identity or a deleted account changes (store.StoredAccount.cache_scope)."""
    def forget(account_ids: set[str]) -> None:
        for client in clients.values():
            client.upstream.forget(lambda identity: client.account_id_of(identity) in account_ids)
        if kept is not None:
            kept.clear()
    return forget
