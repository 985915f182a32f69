"""Reading the registry's rows into accounts (SQLAlchemy Core over tables.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.accounts import tables as t
from gateway.accounts.crypto import SealError, SecretBox
from gateway.accounts.errors import RegistryError
from gateway.accounts.links import Link, account_config
from gateway.config import AccountConfig
from gateway.sources.catalog import Source

log = logging.getLogger("gateway.accounts")


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive times: they were written as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def seal_context(account_id: str, source: str, identity: str) -> str:
    return f"{account_id}\x00{source}\x00{identity}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    digest: bytes
    label: str | None
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """One account of the store, as every process holds it in memory."""
    id: str
    config: AccountConfig
    links: tuple[Link, ...]
    keys: tuple[KeyInfo, ...]
    created_at: datetime
    cache_epoch: int

    @property
    def cache_scope(self) -> str:
        """Part of every cached upstream page's key for this account: a new account of an old
        id, or one that lost an identity, never reads what was cached before."""
        return f"{self.id}@{self.created_at.timestamp():.6f}#{self.cache_epoch}"


async def feed_version(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(t.feed.c.version).where(t.feed.c.id == 1))).scalar_one())


async def changed_since(conn: AsyncConnection, version: int) -> list[tuple[int, str]]:
    rows = await conn.execute(sa.select(t.changes.c.version, t.changes.c.account_id)
                              .where(t.changes.c.version > version).order_by(t.changes.c.version))
    return [(int(v), a) for v, a in rows]


async def load_accounts(conn: AsyncConnection, box: SecretBox, ids: list[str] | None = None) -> dict[str, StoredAccount]:
    """The named accounts (all when `ids` is None) that exist; one unreadable (a key missing
    from [store] encryption_keys) is left out and logged, never half-loaded."""
    def only(table: sa.Table, column: str) -> sa.Select:
        query = sa.select(table)
        return query if ids is None else query.where(table.c[column].in_(ids))
    account_rows = (await conn.execute(only(t.accounts, "id"))).mappings().all()
    link_rows = (await conn.execute(only(t.links, "account_id").order_by(t.links.c.id))).mappings().all()
    key_rows = (await conn.execute(only(t.api_keys, "account_id").order_by(t.api_keys.c.created_at))).mappings().all()
    links: dict[str, list[Link]] = {}
    broken: set[str] = set()
    for row in link_rows:
        try:
            secret = box.open(row["secret"], seal_context(row["account_id"], row["source"], row["identity"])) \
                if row["secret"] is not None else None
            links.setdefault(row["account_id"], []).append(Link(Source(row["source"]), row["identity"], secret))
        except (SealError, ValueError) as exc:
            log.error("account %s: a %s link cannot be read (%s); the account is left out", row["account_id"],
                      row["source"], exc)
            broken.add(row["account_id"])
    keys: dict[str, list[KeyInfo]] = {}
    for row in key_rows:
        keys.setdefault(row["account_id"], []).append(KeyInfo(row["key_id"], bytes.fromhex(row["digest"]), row["label"],
                                                               utc(row["created_at"]), utc(row["last_used_at"])))
    out: dict[str, StoredAccount] = {}
    for row in account_rows:
        account_id = row["id"]
        if account_id in broken:
            continue
        mine = links.get(account_id, [])
        try:
            config = account_config(account_id, mine)
        except RegistryError:
            log.error("account %s: its links do not make a valid account; the account is left out", account_id)
            continue
        out[account_id] = StoredAccount(account_id, config, tuple(mine), tuple(keys.get(account_id, [])),
                                        utc(row["created_at"]), int(row["cache_epoch"]))
    return out
