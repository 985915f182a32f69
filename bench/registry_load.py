"""The account registry as bench.scaleout uses it: a PostgreSQL database of its own (created
on 127.0.0.1:5432, user postgres, trust auth, and dropped at the end), holding the bench
world's accounts with their source links and the same gateway keys the config file would
give them, and the database's load between two moments.

Load comes from PostgreSQL itself, read over a connection to the `postgres` database (so the
reading never counts): `pg_stat_database` for this database (transactions, rows returned by
scans, rows fetched by index, rows written, buffer hits and reads), the CPU of the backends
serving it (/proc of each pid in `pg_stat_activity`), and the calls per statement from
`pg_stat_statements` when the server loads it (`shared_preload_libraries`; a server that
does not is said so, not restarted). PostgreSQL 15 sends a backend's counters to the
statistics view at most once a second while it is busy: under the steady load of a measured
run that shifts the window by up to a second, it does not shorten it.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from bench.common import cpu_seconds
from tests.store_db import PG_HOST, PG_PORT, PG_USER, admin_sql, new_encryption_key, pg_url


_COUNTERS = """SELECT xact_commit + xact_rollback, tup_returned, tup_fetched,
                      tup_inserted + tup_updated + tup_deleted, blks_hit + blks_read
               FROM pg_stat_database WHERE datname = $1"""


@dataclass
class PgStats:
    """Cumulative counters of one database at one moment."""
    xacts: int = 0
    returned: int = 0        # rows read by sequential and index scans
    fetched: int = 0         # rows fetched by index scans
    written: int = 0         # rows inserted, updated or deleted
    blocks: int = 0          # shared buffers hit or read
    backend_cpu: dict[int, float] = field(default_factory=dict)   # pid -> CPU seconds so far
    statements: dict[str, int] | None = None   # query text -> calls; None without pg_stat_statements


def per_request(before: PgStats, after: PgStats, requests: int) -> dict[str, Any]:
    """What the database did per request between two snapshots (a backend that started in
    between counts with all its CPU; one that ended, with none of its last part)."""
    if not requests:
        return {"opened": 0, "xacts": float("nan"), "returned": float("nan"), "fetched": float("nan"),
                "written": float("nan"), "blocks": float("nan"), "cpu_ms": float("nan"), "statements": None}
    cpu = sum(seconds - before.backend_cpu.get(pid, 0.0) for pid, seconds in after.backend_cpu.items())
    statements = None
    if before.statements is not None and after.statements is not None:
        statements = {q: (n - before.statements.get(q, 0)) / requests for q, n in after.statements.items()
                      if n - before.statements.get(q, 0) > 0}
    return {"opened": len(set(after.backend_cpu) - set(before.backend_cpu)),   # backends (connections) started
            "xacts": (after.xacts - before.xacts) / requests, "returned": (after.returned - before.returned) / requests,
            "fetched": (after.fetched - before.fetched) / requests, "written": (after.written - before.written) / requests,
            "blocks": (after.blocks - before.blocks) / requests, "cpu_ms": max(0.0, cpu) / requests * 1000,
            "statements": statements}


class RegistryDatabase:
    """One bench run's registry database (see the module's docstring)."""

    def __init__(self, name: str, encryption_key: str):
        self.name = name
        self.encryption_key = encryption_key
        self.statements_loaded = False

    @property
    def url(self) -> str:
        return pg_url(self.name)

    def store_block(self) -> dict[str, Any]:
        """The gateways' `[store]`."""
        return {"url": self.url, "encryption_keys": [self.encryption_key]}

    async def _populate(self, raw: dict[str, Any]) -> None:
        import sqlalchemy as sa

        from gateway.accounts import tables as t
        from gateway.accounts.admin import Registry
        from gateway.accounts.crypto import SecretBox
        from gateway.accounts.directory import AccountDirectory
        from gateway.accounts.links import USES, LinkInput
        from gateway.accounts.store import now
        from gateway.config import GatewayConfig
        from gateway.store.config import StoreConfig
        from gateway.store.engine import create_engine
        from gateway.store.schema_version import migrate

        store = StoreConfig.model_validate(self.store_block())
        box = SecretBox(store.keys)
        engine = create_engine(store)
        try:
            await migrate(engine)
            directory = AccountDirectory(engine, box, backend="postgresql")
            config = GatewayConfig.model_validate({**raw, "accounts": [], "store": self.store_block()})
            accounts = raw["accounts"]
            registry = Registry(engine, box, directory, config)
            for account in accounts:
                # through the registry's own checks, as an admin would link them
                await registry.create_account("bench", account["id"])
                for source in USES:
                    if source in account:
                        await registry.link("bench", account["id"], LinkInput(source=source, **account[source]))
            async with engine.begin() as conn:   # the config file's keys, so wrk's keys stay as they are
                await conn.execute(sa.insert(t.api_keys), [
                    {"key_id": f"key_{hashlib.sha256(key.encode()).hexdigest()[:16]}", "account_id": account["id"],
                     "digest": hashlib.sha256(key.encode()).hexdigest(), "label": "bench", "created_at": now()}
                    for account in accounts for key in account.get("api_keys", [])])
            async with engine.connect() as conn:
                preload = (await conn.execute(sa.text("SHOW shared_preload_libraries"))).scalar_one()
                if "pg_stat_statements" in preload:
                    await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                    await conn.commit()
                    self.statements_loaded = True
        finally:
            await engine.dispose()

    def populate(self, raw: dict[str, Any]) -> None:
        """Create the accounts of a gateway config (`raw`, a dict): ids, links and keys as its
        `[[accounts]]` give them."""
        asyncio.run(self._populate(raw))

    async def _stats(self) -> PgStats:
        import asyncpg
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
        try:
            row = await conn.fetchrow(_COUNTERS, self.name)
            pids = [r[0] for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name)]
            statements = None
            if self.statements_loaded:
                statements = {r[0]: int(r[1]) for r in await conn.fetch(
                    "SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 120), sum(s.calls) "
                    "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 "
                    "GROUP BY 1", self.name)}
        finally:
            await conn.close()
        return PgStats(*(int(v) for v in row), backend_cpu={pid: cpu_seconds(pid) for pid in pids},
                       statements=statements)

    def stats(self) -> PgStats:
        return asyncio.run(self._stats())


class NoPostgres(Exception):
    """No PostgreSQL to create the database in (the message says which server, and why)."""


@contextlib.contextmanager
def registry_database() -> Iterator[RegistryDatabase]:
    """A new, empty, uniquely named database; dropped (connections and all) on the way out."""
    database = RegistryDatabase(f"bg_bench_{uuid.uuid4().hex[:12]}", new_encryption_key())
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{database.name}"'))
    except Exception as exc:   # refused, timed out, not allowed: the bench cannot measure the registry
        raise NoPostgres(f"PostgreSQL at {PG_HOST}:{PG_PORT}, user {PG_USER}: {type(exc).__name__}: {exc}") from None
    try:
        yield database
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))
