"""`balance-gateway store migrate|rotate-key` and the store check `serve` runs before it listens."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from gateway.config import ConfigError, GatewayConfig, load_config


def _err(message: str) -> int:
    print(f"balance-gateway: {message}", file=sys.stderr)
    return 2


def store_config(args: argparse.Namespace) -> GatewayConfig | None:
    path = args.config or os.environ.get("GATEWAY_CONFIG")
    if not path:
        _err("give --config PATH (or $GATEWAY_CONFIG) with a [store] block")
        return None
    try:
        config = load_config(path)
    except ConfigError as exc:
        _err(str(exc))
        return None
    if config.store is None:
        _err(f"{path} has no [store] block (store.url)")
        return None
    return config


def _migrate(args: argparse.Namespace) -> int:
    from gateway.store.engine import create_engine
    from gateway.store.schema_version import migrate, unreachable

    config = store_config(args)
    if config is None:
        return 2
    assert config.store is not None

    async def run() -> tuple[set[str], set[str]]:
        engine = create_engine(config.store)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()
    try:
        before, after = asyncio.run(run())
    except Exception as exc:   # the drivers' errors share no base class; the message hides the URL's password
        return _err(str(unreachable(config.store.safe_url(), exc)) + "; nothing was changed")
    if before == after:
        print(f"store at {config.store.safe_url()}: schema already at {', '.join(sorted(after))}")
    else:
        print(f"store at {config.store.safe_url()}: schema migrated from "
              f"{', '.join(sorted(before)) or '(empty)'} to {', '.join(sorted(after))}")
    return 0


def serve_check(config: GatewayConfig) -> str | None:
    """Why `serve` must not start on this config's store (unreachable, out of date); None: go."""
    if config.store is None:
        return None
    from gateway.store.schema_version import startup_problem
    return asyncio.run(startup_problem(config.store))


def add_store_commands(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="the database behind [store]: migrate its schema, rotate its key")
    verbs = store.add_subparsers(dest="verb", required=True)
    migrate = verbs.add_parser("migrate", help="bring the store's schema up to this release (safe to repeat)")
    migrate.add_argument("--config", help="TOML config file with a [store] block (default: $GATEWAY_CONFIG)")
    migrate.set_defaults(func=_migrate)
