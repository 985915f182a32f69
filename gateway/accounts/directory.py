"""The accounts of the store as every process holds them: in memory, so authentication and
reads never wait for the database, and kept current by polling the change feed.

Every admin change bumps `account_feed.version` in its own transaction and names the account
it touched (tables.py). Each process reads that one row every `poll_s` (0.2 s: a change is
seen everywhere within about that, docs/ACCOUNTS.md has the measured figure) and reloads only
the accounts named since its last version. With the database down, what is in memory keeps
serving (marked in /health?ready) and the loop keeps trying; once back, it catches up, or
reloads everything when the feed no longer reaches back to where it stopped."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts import tables as t
from gateway.accounts.crypto import SecretBox
from gateway.accounts.store import StoredAccount, changed_since, feed_version, load_accounts, now
from gateway.config import AccountConfig

log = logging.getLogger("gateway.accounts")

POLL_S = 0.2
TOUCH_FLUSH_S = 10.0   # lastUsedAt is written at most this often per process (never per request)


class AccountDirectory:
    def __init__(self, engine: AsyncEngine, box: SecretBox, *, backend: str, poll_s: float = POLL_S):
        self.engine = engine
        self.box = box
        self.backend = backend
        self.poll_s = poll_s
        self.accounts: dict[str, StoredAccount] = {}
        self.key_owner: dict[bytes, tuple[str, str]] = {}   # sha256(key) -> (account id, key id)
        self.version = -1            # of the feed, as far as this process has read it; -1: nothing yet
        self.available = False       # the last sync reached the database
        self.last_error: str | None = None
        self.last_sync: float | None = None   # monotonic time of the last successful sync
        # called with the ids of accounts that changed (caches drop what they hold for them)
        self.listeners: list[Callable[[set[str]], None]] = []
        self._touched: dict[str, datetime] = {}
        self._flushed = time.monotonic()
        self._lock = asyncio.Lock()
        self._outage_logged = False

    # -- what auth and resolvers read (memory only) ---------------------------------
    def account(self, account_id: str) -> AccountConfig | None:
        stored = self.accounts.get(account_id)
        return stored.config if stored is not None else None

    def owner_of(self, digest: bytes) -> str | None:
        owner = self.key_owner.get(digest)
        if owner is None:
            return None
        self._touched[owner[1]] = now()
        return owner[0]

    def cache_scope(self, account_id: str) -> str:
        stored = self.accounts.get(account_id)
        return stored.cache_scope if stored is not None else ""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "state": "ok" if self.available else "unavailable",
                "accounts": len(self.accounts), "version": self.version,
                "since_last_sync_s": None if self.last_sync is None else round(time.monotonic() - self.last_sync, 3),
                **({"reads": "from memory", "writes": "REGISTRY_UNAVAILABLE"} if not self.available else {}),
                **({"error": self.last_error} if self.last_error and not self.available else {})}

    # -- keeping it current ----------------------------------------------------------
    async def sync(self) -> set[str]:
        """Read the feed once; reload what changed. Raises when the database does not answer."""
        async with self._lock:
            try:
                changed = await self._sync()
            except Exception as exc:
                self.available = False
                self.last_error = type(exc).__name__
                raise
            self.available, self.last_error, self.last_sync = True, None, time.monotonic()
        if changed:
            for listener in self.listeners:
                listener(changed)
        return changed

    async def _sync(self) -> set[str]:
        async with self.engine.connect() as conn:
            version = await feed_version(conn)
            if version == self.version:
                return set()
            if self.version >= 0:
                changes = await changed_since(conn, self.version)
                if changes and changes[0][0] == self.version + 1 and changes[-1][0] == version:
                    ids = {a for _, a in changes}
                    fresh = await load_accounts(conn, self.box, sorted(ids))
                    for account_id in ids:
                        self._replace(account_id, fresh.get(account_id))
                    self.version = version
                    return ids
            # first load, or the feed was pruned past where this process stopped: everything
            fresh = await load_accounts(conn, self.box)
        changed = {i for i in set(self.accounts) | set(fresh) if self.accounts.get(i) != fresh.get(i)}
        for account_id in changed:
            self._replace(account_id, fresh.get(account_id))
        self.version = version
        return changed

    def _replace(self, account_id: str, stored: StoredAccount | None) -> None:
        old = self.accounts.pop(account_id, None)
        if old is not None:
            for key in old.keys:
                self.key_owner.pop(key.digest, None)
        if stored is not None:
            self.accounts[account_id] = stored
            for key in stored.keys:
                self.key_owner[key.digest] = (account_id, key.key_id)

    async def run(self) -> None:
        """Forever: sync every poll_s, and write lastUsedAt now and then; failures are
        logged once per outage and retried."""
        while True:
            try:
                await self.sync()
                await self._flush_touches()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning("account registry: the database does not answer (%s); serving accounts from memory",
                                type(exc).__name__)
            else:
                if self._outage_logged:
                    log.warning("account registry: the database answers again (feed version %d)", self.version)
                self._outage_logged = False
            await asyncio.sleep(self.poll_s)

    async def _flush_touches(self) -> None:
        if not self._touched or time.monotonic() - self._flushed < TOUCH_FLUSH_S:
            return
        touched, self._touched = self._touched, {}
        self._flushed = time.monotonic()
        try:
            async with self.engine.begin() as conn:
                for key_id, at in touched.items():
                    await conn.execute(sa.update(t.api_keys).where(t.api_keys.c.key_id == key_id).values(last_used_at=at))
        except Exception:
            for key_id, at in touched.items():   # tried again next time
                self._touched.setdefault(key_id, at)
            raise
