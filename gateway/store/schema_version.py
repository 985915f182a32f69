"""Migrations run programmatically (`balance-gateway store migrate`) and the check `serve`
runs first: a store whose schema is behind this release's migrations is refused with a
message naming the command, never half-used."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.config import StoreConfig

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATE_COMMAND = "balance-gateway store migrate --config PATH"


class StoreUnavailable(Exception):
    """The database did not answer; the message names the store without its password."""


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def expected_heads() -> set[str]:
    """The revisions this release's schema is at (several when branches were merged side by side)."""
    return set(ScriptDirectory.from_config(_alembic_config()).get_heads())


def _current_heads(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def migrate(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    """Bring the schema up to every head, in one transaction per run; (before, after)."""
    def upgrade(connection: Connection) -> tuple[set[str], set[str]]:
        before = _current_heads(connection)
        command.upgrade(_alembic_config(connection), "heads")
        return before, _current_heads(connection)
    async with engine.begin() as conn:
        return await conn.run_sync(upgrade)


async def current_heads(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_heads)


async def schema_problem(engine: AsyncEngine) -> str | None:
    """None when the schema is exactly this release's; otherwise what is wrong, in one line."""
    current = await current_heads(engine)
    wanted = expected_heads()
    if current == wanted:
        return None
    if not current:
        return f"the store has no schema yet: run `{MIGRATE_COMMAND}`"
    script = ScriptDirectory.from_config(_alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if not current <= known:
        return ("the store's schema (" + ", ".join(sorted(current - known)) +
                ") is newer than this release: run a release that knows it")
    return (f"the store's schema is out of date (at {', '.join(sorted(current))}, this release needs "
            f"{', '.join(sorted(wanted))}): run `{MIGRATE_COMMAND}`")


def unreachable(config_url: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"cannot reach the store at {config_url} ({type(exc).__name__})")


async def startup_problem(config: StoreConfig) -> str | None:
    """What keeps `serve` from starting on this store, in one line; None when all is well."""
    from gateway.store.engine import create_engine
    engine = create_engine(config)
    try:
        return await schema_problem(engine)
    except Exception as exc:   # the driver's own errors (asyncpg, sqlite3) have no common base
        return str(unreachable(config.safe_url(), exc))
    finally:
        await engine.dispose()
