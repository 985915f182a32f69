"""The registry's changes: each is one transaction (the row, the feed entry every process
polls, the audit entry) or nothing at all. Used by the GraphQL mutations and the CLI alike.

Every change first bumps the feed row, which also serializes concurrent changes: two
processes linking to one account cannot interleave (tables.py `feed`)."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.accounts import tables as t
from gateway.accounts.crypto import SecretBox
from gateway.accounts.directory import AccountDirectory
from gateway.accounts.errors import RegistryError, bad_input, unavailable
from gateway.accounts.links import (API_KEY, TOKEN, Link, LinkInput, account_config, check_account_id, merged,
                                    new_links, source_named)
from gateway.accounts.store import KeyInfo, StoredAccount, load_accounts, now, seal_context
from gateway.config import GatewayConfig
from gateway.domain.errors import ClientCode

log = logging.getLogger("gateway.accounts")
T = TypeVar("T")

FEED_KEPT = timedelta(minutes=10)   # a process that stopped reading longer than this reloads everything
MAX_LINKS = 200
MAX_KEYS = 100
KEY_PREFIX = "bgk_"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    key: str            # shown once, never stored
    label: str | None


class Registry:
    def __init__(self, engine: AsyncEngine, box: SecretBox, directory: AccountDirectory, config: GatewayConfig):
        self.engine = engine
        self.box = box
        self.directory = directory
        self.config = config

    # -- the changes --------------------------------------------------------------
    async def create_account(self, actor: str, account_id: str) -> StoredAccount:
        check_account_id(account_id, "id")
        if self.config.account(account_id) is not None:
            raise RegistryError(ClientCode.ALREADY_EXISTS, f"account {account_id!r} already exists (in the config file)", "id")

        async def change(conn: AsyncConnection) -> None:
            if await self._exists(conn, account_id):
                raise RegistryError(ClientCode.ALREADY_EXISTS, f"account {account_id!r} already exists", "id")
            await conn.execute(sa.insert(t.accounts).values(id=account_id, created_at=now(), cache_epoch=0))
        await self._write(actor, "create_account", account_id, {}, change)
        return await self._stored(account_id)

    async def delete_account(self, actor: str, account_id: str) -> bool:
        self._writable(account_id, "id")

        async def change(conn: AsyncConnection) -> None:
            await self._require(conn, account_id)
            for table in (t.links, t.api_keys):
                await conn.execute(sa.delete(table).where(table.c.account_id == account_id))
            await conn.execute(sa.delete(t.accounts).where(t.accounts.c.id == account_id))
        await self._write(actor, "delete_account", account_id, {}, change)
        return True

    async def link(self, actor: str, account_id: str, link: LinkInput) -> StoredAccount:
        self._writable(account_id, "accountId")
        added = new_links(link, self.config)

        async def change(conn: AsyncConnection) -> dict[str, Any]:
            await self._require(conn, account_id)
            existing = await self._links(conn, account_id)
            after = merged(existing, added)
            if len(after) > MAX_LINKS:
                raise bad_input("link", f"an account holds at most {MAX_LINKS} links")
            account_config(account_id, after)   # the config's own rules, on the whole account
            gone = [l for l in existing if l not in after]
            await self._delete_links(conn, account_id, gone)
            for l in after:
                if l not in existing:
                    await conn.execute(sa.insert(t.links).values(
                        account_id=account_id, source=l.source.value, identity=l.identity, hint=l.hint,
                        secret=None if l.secret is None else self.box.seal(l.secret, seal_context(account_id, l.source.value, l.identity)),
                        created_at=now()))
            if gone:
                await self._new_cache_epoch(conn, account_id)
            return {"source": added[0].source.value, "identities": [l.identity for l in added]}
        await self._write(actor, "link_source", account_id, None, change)
        return await self._stored(account_id)

    async def unlink(self, actor: str, account_id: str, source: str, identity: str | None) -> StoredAccount:
        self._writable(account_id, "accountId")
        try:
            wanted = source_named(source, self.config)
        except RegistryError as exc:   # unlinkSource names it `source`, not `link.source`
            raise bad_input("source", exc.message) from None

        async def change(conn: AsyncConnection) -> dict[str, Any]:
            await self._require(conn, account_id)
            existing = await self._links(conn, account_id)
            gone = [l for l in existing if l.source is wanted and (identity is None or _same_identity(l, identity))]
            if not gone:
                raise RegistryError(ClientCode.NOT_FOUND, f"account {account_id!r} has no such {wanted.value} link",
                                    "identity" if identity is not None else "source")
            await self._delete_links(conn, account_id, gone)
            await self._new_cache_epoch(conn, account_id)
            return {"source": wanted.value, "identities": [l.identity for l in gone]}
        await self._write(actor, "unlink_source", account_id, None, change)
        return await self._stored(account_id)

    async def issue_key(self, actor: str, account_id: str, label: str | None) -> IssuedKey:
        self._writable(account_id, "accountId")
        if label is not None and (len(label) > 200 or any(ord(c) < 32 for c in label)):
            raise bad_input("label", "a label is at most 200 characters, without control characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        issued = IssuedKey(key_id="key_" + secrets.token_hex(8), key=key, label=label)

        async def change(conn: AsyncConnection) -> dict[str, Any]:
            await self._require(conn, account_id)
            count = (await conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)
                                        .where(t.api_keys.c.account_id == account_id))).scalar_one()
            if count >= MAX_KEYS:
                raise bad_input("accountId", f"an account holds at most {MAX_KEYS} keys: revoke one first")
            await conn.execute(sa.insert(t.api_keys).values(
                key_id=issued.key_id, account_id=account_id, digest=hashlib.sha256(key.encode()).hexdigest(),
                label=label, created_at=now()))
            return {"keyId": issued.key_id, "label": label}
        await self._write(actor, "issue_api_key", account_id, None, change)
        return issued

    async def revoke_key(self, actor: str, account_id: str, key_id: str) -> bool:
        self._writable(account_id, "accountId")

        async def change(conn: AsyncConnection) -> dict[str, Any]:
            await self._require(conn, account_id)
            done = await conn.execute(sa.delete(t.api_keys).where(t.api_keys.c.account_id == account_id,
                                                                  t.api_keys.c.key_id == key_id))
            if done.rowcount == 0:
                raise RegistryError(ClientCode.NOT_FOUND, f"account {account_id!r} has no key {key_id[:40]!r}", "keyId")
            return {"keyId": key_id}
        await self._write(actor, "revoke_api_key", account_id, None, change)
        return True

    # -- reads that must be current (admin views, the CLI) --------------------------
    async def api_keys(self, account_id: str) -> list[KeyInfo]:
        """From the database (lastUsedAt of every process); from memory when it is down."""
        try:
            async with self.engine.connect() as conn:
                found = await load_accounts(conn, self.box, [account_id])
        except Exception:
            stored = self.directory.accounts.get(account_id)
            return list(stored.keys) if stored is not None else []
        return list(found[account_id].keys) if account_id in found else []

    async def list_accounts(self) -> list[StoredAccount]:
        try:
            async with self.engine.connect() as conn:
                return sorted((await load_accounts(conn, self.box)).values(), key=lambda a: a.id)
        except Exception as exc:
            log.warning("account registry: listing failed (%s)", type(exc).__name__)
            raise unavailable() from None

    async def rotate_key(self, batch: int = 200) -> tuple[int, int]:
        """Re-seal every credential not sealed with the first key, in batches of one
        transaction each, while the gateway runs: (re-sealed, already current). A row that
        changed meanwhile (its secret is no longer the one read) is left to the next run."""
        resealed = current = 0
        last_id = 0
        while True:
            async with self.engine.begin() as conn:
                rows = (await conn.execute(sa.select(t.links).where(t.links.c.id > last_id, t.links.c.secret.is_not(None))
                                           .order_by(t.links.c.id).limit(batch))).mappings().all()
                if not rows:
                    return resealed, current
                for row in rows:
                    last_id = row["id"]
                    if not self.box.needs_reseal(row["secret"]):
                        current += 1
                        continue
                    context = seal_context(row["account_id"], row["source"], row["identity"])
                    sealed = self.box.seal(self.box.open(row["secret"], context), context)
                    done = await conn.execute(sa.update(t.links).where(t.links.c.id == row["id"],
                                                                       t.links.c.secret == row["secret"])
                                              .values(secret=sealed))
                    resealed += done.rowcount

    # -- the parts of every change ---------------------------------------------------
    async def _write(self, actor: str, action: str, account_id: str, detail: dict[str, Any] | None,
                     change: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            async with self.engine.begin() as conn:
                version = await self._bump_feed(conn)
                result = await change(conn)
                await conn.execute(sa.insert(t.changes).values(version=version, account_id=account_id, at=now()))
                await conn.execute(sa.delete(t.changes).where(t.changes.c.at < now() - FEED_KEPT))
                await conn.execute(sa.insert(t.audit).values(
                    at=now(), actor=actor[:128], action=action, account_id=account_id,
                    detail=json.dumps(result if isinstance(result, dict) else (detail or {}), sort_keys=True)))
        except RegistryError:
            raise
        except IntegrityError:   # a race another process won (the same id created at once)
            raise RegistryError(ClientCode.ALREADY_EXISTS, "a concurrent change got there first; read and retry") from None
        except Exception as exc:   # the database is down or refused: nothing was written
            log.warning("account registry: %s on %s failed (%s); nothing was written", action, account_id,
                        type(exc).__name__)
            raise unavailable() from None
        try:
            await self.directory.sync()   # this process sees its own change at once
        except Exception:
            pass   # committed; the poll picks it up
        return result

    @staticmethod
    async def _bump_feed(conn: AsyncConnection) -> int:
        await conn.execute(sa.update(t.feed).where(t.feed.c.id == 1).values(version=t.feed.c.version + 1))
        return int((await conn.execute(sa.select(t.feed.c.version).where(t.feed.c.id == 1))).scalar_one())

    def _writable(self, account_id: str, field: str) -> None:
        if not isinstance(account_id, str) or len(account_id) > 128:
            raise bad_input(field, "not an account id")
        if self.config.account(account_id) is not None:
            raise RegistryError(ClientCode.READ_ONLY_ACCOUNT,
                                f"account {account_id!r} is defined in the config file and cannot be changed here", field)

    @staticmethod
    async def _exists(conn: AsyncConnection, account_id: str) -> bool:
        return (await conn.execute(sa.select(t.accounts.c.id).where(t.accounts.c.id == account_id))).first() is not None

    async def _require(self, conn: AsyncConnection, account_id: str) -> None:
        if not await self._exists(conn, account_id):
            raise RegistryError(ClientCode.NOT_FOUND, f"no account {account_id!r}")

    async def _links(self, conn: AsyncConnection, account_id: str) -> list[Link]:
        found = await load_accounts(conn, self.box, [account_id])
        if account_id not in found:
            raise RegistryError(ClientCode.REGISTRY_UNAVAILABLE,
                                f"account {account_id!r} has a link this gateway's encryption keys cannot open")
        return list(found[account_id].links)

    @staticmethod
    async def _delete_links(conn: AsyncConnection, account_id: str, gone: list[Link]) -> None:
        for l in gone:
            await conn.execute(sa.delete(t.links).where(t.links.c.account_id == account_id,
                                                        t.links.c.source == l.source.value,
                                                        t.links.c.identity == l.identity))

    @staticmethod
    async def _new_cache_epoch(conn: AsyncConnection, account_id: str) -> None:
        await conn.execute(sa.update(t.accounts).where(t.accounts.c.id == account_id)
                           .values(cache_epoch=t.accounts.c.cache_epoch + 1))

    async def _stored(self, account_id: str) -> StoredAccount:
        try:
            await self.directory.ensure_account(account_id)
        except RegistryError:
            pass
        stored = self.directory.accounts.get(account_id)
        if stored is None:   # committed, but this process could not read it back yet
            raise unavailable("the change was saved, but could not be read back; it applies within a second")
        return stored


def _same_identity(link: Link, identity: str) -> bool:
    if link.identity in (TOKEN, API_KEY):
        return identity == link.identity
    # EVM addresses compare case-insensitively (CAIP-10 eip155 ids and DALP wallets)
    return link.identity == identity or (link.identity.lower() == identity.lower() and "0x" in identity.lower())
