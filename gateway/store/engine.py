"""The SQLAlchemy 2 async engine for a `[store]` URL: sqlite:/// runs on aiosqlite,
postgresql:// on asyncpg."""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store.config import StoreConfig

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername=_DRIVERS[parsed.drivername.split("+")[0]])


def create_engine(config: StoreConfig, **overrides: Any) -> AsyncEngine:
    url = async_url(config.url.get_secret_value())
    if config.is_sqlite:
        # Several gateway processes may share one file: wait for a writer instead of failing
        # at once, and let readers run beside it (WAL).
        engine = create_async_engine(url, connect_args={"timeout": config.connect_timeout_s}, **overrides)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(config.connect_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
        return engine
    # pool_pre_ping: a connection the server dropped (restart) is replaced, not handed out.
    options: dict[str, Any] = dict(pool_size=config.pool_size, max_overflow=config.pool_size,
                                   pool_pre_ping=True, pool_recycle=1800,
                                   connect_args={"timeout": config.connect_timeout_s,
                                                 "command_timeout": config.connect_timeout_s * 2})
    options.update(overrides)
    return create_async_engine(url, **options)
