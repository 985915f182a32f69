"""The store's foundation on real SQLite and PostgreSQL: the [store] config, the URL schemes,
migrations run programmatically and the schema check `serve` runs before it listens."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.config import ConfigError, parse_config
from gateway.store.config import StoreConfig
from gateway.store.engine import async_url, create_engine
from gateway.store.schema_version import expected_heads, migrate, schema_problem
from tests.store_db import new_encryption_key, store_block

KEY = new_encryption_key()


def config_text(url: str, keys: list[str]) -> str:
    return f'[store]\nurl = "{url}"\nencryption_keys = [{", ".join(repr(k) for k in keys)}]\n'


@pytest.mark.parametrize(("url", "keys", "field", "hidden"), [
    ("mysql://root@db/x", [KEY], "store.url", "root@db"),
    ("sqlite://relative.db", [KEY], "store.url", "relative.db"),
    ("postgresql://gateway:hunter2@127.0.0.1:5432", [KEY], "store.url", "hunter2"),
    ("sqlite:///tmp/x.db", ["not base64!!"], "store.encryption_keys", "not base64"),
    ("sqlite:///tmp/x.db", ["c2hvcnQta2V5"], "store.encryption_keys", "c2hvcnQta2V5"),   # 9 bytes
    ("sqlite:///tmp/x.db", [], "store.encryption_keys", None),
])
def test_bad_store_values_are_one_line_errors_naming_the_field(url, keys, field, hidden):
    with pytest.raises(ConfigError) as err:
        parse_config(config_text(url, keys), env={})
    message = str(err.value)
    assert "\n" not in message and field in message
    if hidden:
        assert hidden not in message     # neither the URL (a password) nor a key is echoed


def test_good_store_block_parses_and_hides_its_secrets():
    config = parse_config(config_text("postgresql://gateway:hunter2@127.0.0.1:5432/bg", [KEY, new_encryption_key()]), env={})
    assert config.store is not None and len(config.store.keys) == 2 and len(config.store.keys[0]) == 32
    assert "hunter2" not in repr(config) and KEY not in repr(config)
    assert config.store.safe_url() == "postgresql://gateway:***@127.0.0.1:5432/bg"
    assert parse_config("", env={}).store is None


def test_url_schemes_map_to_the_async_drivers():
    assert async_url("sqlite:////var/lib/x.db").drivername == "sqlite+aiosqlite"
    assert async_url("sqlite:////var/lib/x.db").database == "/var/lib/x.db"
    assert async_url("postgresql://u@h:5432/d").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h:5432/d").drivername == "postgresql+asyncpg"


async def test_migrate_then_check_on_a_fresh_store(store_url):
    engine = create_engine(StoreConfig.model_validate(store_block(store_url)))
    try:
        problem = await schema_problem(engine)
        assert problem is not None and "no schema yet" in problem and "balance-gateway store migrate" in problem
        before, after = await migrate(engine)
        assert before == set() and after == expected_heads()
        assert await schema_problem(engine) is None
        assert await migrate(engine) == (after, after)        # repeating changes nothing
        async with engine.connect() as conn:
            assert (await conn.execute(text("select value from store_info where key = 'created_by'"))).scalar() == "balance-gateway"
            # a schema from a newer release is refused too, not silently used
            await conn.execute(text("update alembic_version set version_num = 'from_the_future'"))
            await conn.commit()
        problem = await schema_problem(engine)
        assert problem is not None and "newer than this release" in problem
    finally:
        await engine.dispose()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60)


def test_serve_refuses_an_unmigrated_store_naming_the_command_and_migrate_fixes_it(store_url, tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(store_url, [KEY]) + '[server]\nport = 1\n')
    refused = run_cli("serve", "--config", str(path))
    assert refused.returncode == 2
    assert "balance-gateway store migrate" in refused.stderr and "Traceback" not in refused.stderr
    migrated = run_cli("store", "migrate", "--config", str(path))
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated from (empty) to" in migrated.stdout
    again = run_cli("store", "migrate", "--config", str(path))
    assert again.returncode == 0 and "already at" in again.stdout


def test_serve_names_an_unreachable_store_without_its_password(tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text(config_text("postgresql://gateway:hunter2@127.0.0.1:1/nowhere", [KEY]))
    refused = run_cli("serve", "--config", str(path))
    assert refused.returncode == 2
    assert "cannot reach the store at postgresql://gateway:***@127.0.0.1:1/nowhere" in refused.stderr
    assert "hunter2" not in refused.stderr and "Traceback" not in refused.stderr
