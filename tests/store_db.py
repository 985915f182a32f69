"""Fresh databases for store tests: a uniquely named PostgreSQL database on 127.0.0.1:5432
(user postgres, trust auth; .ci/run starts a server when none answers), dropped afterwards,
and a fresh SQLite file. Both are real: no test of the store runs on a mock."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import threading
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

PG_HOST = os.environ.get("GATEWAY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GATEWAY_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("GATEWAY_TEST_PG_USER", "postgres")


def run_async(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from any context (a running loop included): in a thread."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(make())   # type: ignore[arg-type]
        except BaseException as exc:   # handed to the caller below
            out["error"] = exc
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


async def admin_sql(sql: str) -> None:
    """One statement on the server's `postgres` database (CREATE / DROP DATABASE)."""
    import asyncpg
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """The URL of a new, empty database; dropped (connections and all) on the way out."""
    name = f"bg_test_{uuid.uuid4().hex[:12]}"
    try:
        run_async(lambda: admin_sql(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT} ({exc}); .ci/run starts one")
    try:
        yield pg_url(name)
    finally:
        run_async(lambda: admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_sqlite(folder: Path) -> str:
    path = folder / f"store-{uuid.uuid4().hex[:8]}.db"
    return f"sqlite:///{path}"


def new_encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def store_block(url: str, keys: list[str] | None = None) -> dict[str, Any]:
    """A `[store]` block as a dict, for GatewayConfig.model_validate or a TOML file."""
    return {"url": url, "encryption_keys": keys or [new_encryption_key()]}


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return fresh_sqlite(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield fresh_sqlite(tmp_path)
    else:
        with fresh_postgres() as url:
            yield url
