"""The accounts of the store as a process holds them: loaded on first use (a key's digest, an
account id), then kept in memory, so later requests never wait for the database, and kept
current by polling the change feed. Start-up loads nothing, whatever the registry's size.

Every admin change bumps `account_feed.version` in its own transaction and names the account
it touched (tables.py). Each process reads that one row every `poll_s` (0.2 s: a change is
seen everywhere within about that, docs/ACCOUNTS.md has the measured figure) and reloads the
accounts it holds that were named since its last version (and forgets what it learnt was
absent). With the database down, what is in memory keeps serving (marked in /health?ready),
looking up anything else answers REGISTRY_UNAVAILABLE, and the loop keeps trying; once back,
it catches up, or reloads all it holds when the feed no longer reaches back to where it stopped.

Loads and syncs take one lock: a load that read an account just before a change committed
is always followed by the sync that reloads it."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any, AsyncIterator, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts import tables as t
from gateway.accounts.crypto import SecretBox
from gateway.accounts.errors import unavailable
from gateway.accounts.store import StoredAccount, changed_since, feed_version, load_accounts, now
from gateway.config import AccountConfig

log = logging.getLogger("gateway.accounts")

POLL_S = 0.2
TOUCH_FLUSH_S = 10.0   # lastUsedAt is written at most this often per process (never per request)
MAX_ABSENT = 100_000   # remembered misses (ids, key digests) before the memory of them is dropped


class AccountDirectory:
    def __init__(self, engine: AsyncEngine, box: SecretBox, *, backend: str, poll_s: float = POLL_S):
        self.engine = engine
        self.box = box
        self.backend = backend
        self.poll_s = poll_s
        self.accounts: dict[str, StoredAccount] = {}          # the ones this process has used
        self.key_owner: dict[bytes, tuple[str, str]] = {}   # sha256(key) -> (account id, key id)
        # asked for and not in the store: not asked again until a change could have made them
        self._absent_ids: set[str] = set()
        self._absent_keys: set[bytes] = set()
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
                "accounts": len(self.accounts), "version": self.version,   # accounts: those loaded
                "since_last_sync_s": None if self.last_sync is None else round(time.monotonic() - self.last_sync, 3),
                **({"reads": "from memory", "writes": "REGISTRY_UNAVAILABLE"} if not self.available else {}),
                **({"error": self.last_error} if self.last_error and not self.available else {})}

    # -- loading on first use ----------------------------------------------------------
    async def ensure_account(self, account_id: str) -> None:
        """Load the account if it is in the store and not in memory; RegistryError
        REGISTRY_UNAVAILABLE when the database does not answer."""
        if account_id in self.accounts or account_id in self._absent_ids:
            return
        async with self._loading():
            if account_id in self.accounts or account_id in self._absent_ids:
                return
            async with self.engine.connect() as conn:
                fresh = await load_accounts(conn, self.box, [account_id])
            self._found(account_id, fresh.get(account_id))

    async def ensure_key(self, digest: bytes) -> None:
        """Load the account a key's digest belongs to, if any."""
        if digest in self.key_owner or digest in self._absent_keys:
            return
        async with self._loading():
            if digest in self.key_owner or digest in self._absent_keys:
                return
            async with self.engine.connect() as conn:
                owner = (await conn.execute(sa.select(t.api_keys.c.account_id)
                                            .where(t.api_keys.c.digest == digest.hex()))).scalar()
                fresh = await load_accounts(conn, self.box, [owner]) if owner is not None else {}
            if owner is None:
                _remember(self._absent_keys, digest)
            else:
                self._found(owner, fresh.get(owner))

    def _found(self, account_id: str, stored: StoredAccount | None) -> None:
        self._replace(account_id, stored)
        if stored is None:
            _remember(self._absent_ids, account_id)

    @contextlib.asynccontextmanager
    async def _loading(self) -> AsyncIterator[None]:
        if not self.available and self.last_sync is not None:
            raise unavailable()   # the poll says the database is down: do not wait for it per request
        async with self._lock:
            try:
                yield
            except Exception as exc:
                log.warning("account registry: a look-up failed (%s)", type(exc).__name__)
                raise unavailable() from None

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
            if self.version < 0:
                # the first sync: where the feed stands; nothing is loaded up front (what was
                # loaded before it, with the database late at start-up, is read again)
                ids = set(self.accounts) | self._absent_ids
            elif version == self.version:
                return set()
            else:
                changes = await changed_since(conn, self.version)
                if changes and changes[0][0] == self.version + 1 and changes[-1][0] == version:
                    ids = {a for _, a in changes}
                else:   # the feed was pruned past where this process stopped: all it holds may have changed
                    ids = set(self.accounts) | self._absent_ids
            self._absent_ids -= ids
            self._absent_keys.clear()   # a key issued since may be one asked for before
            held = sorted(ids & set(self.accounts))
            fresh = await load_accounts(conn, self.box, held) if held else {}
        for account_id in held:
            self._replace(account_id, fresh.get(account_id))
        self.version = version
        return ids

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


def _remember(misses: set, item: Any) -> None:
    if len(misses) >= MAX_ABSENT:
        misses.clear()
    misses.add(item)
