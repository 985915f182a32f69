"""A generated world of accounts spread over the simulated upstreams (every source in the
catalog, gateway/sources/catalog.py, each by the simulator its spec names).

The same generator serves the demo, the tests and the load tests: `World.generate`
makes deterministic data for any number of accounts (the account `demo` first, with
the gateway key `demo-key`), one simulator app per upstream, and the gateway config
that points at them.
"""
from __future__ import annotations

import importlib
import json
import math
import random
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.config import GatewayConfig
from gateway.sources.catalog import SPEC_OF, Source
from gateway.simulation.control import SimControl

DEMO_ACCOUNT = "demo"
DEMO_KEY = "demo-key"


def simulator_module(source: Source) -> ModuleType:
    return importlib.import_module(SPEC_OF[source].simulator)


def gateway_key(account_id: str) -> str:
    return DEMO_KEY if account_id == DEMO_ACCOUNT else f"{account_id}-key"


@dataclass
class World:
    seed: int = 7
    datasets: dict[Source, Any] = field(default_factory=dict)
    controls: dict[Source, SimControl] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)   # id -> {source key: block}

    def __post_init__(self) -> None:
        for source in Source:
            self.datasets.setdefault(source, simulator_module(source).Dataset())
            self.controls.setdefault(source, SimControl())

    @classmethod
    def generate(cls, n_accounts: int = 0, *, seed: int = 7, size: int = 8, demo: bool = True) -> "World":
        """`demo` (if asked) plus `user-0001`..`user-N`, each with about `size` holdings per source."""
        world = cls(seed=seed)
        if demo:
            world.add_account(DEMO_ACCOUNT, size=size)
        for i in range(1, n_accounts + 1):
            world.add_account(f"user-{i:04d}", size=size)
        return world

    def add_account(self, account_id: str, *, size: int = 8, sources: list[Source] | None = None) -> dict[str, Any]:
        blocks: dict[str, Any] = {}
        for source in sources or list(Source):
            rng = random.Random(f"{self.seed}:{account_id}:{source.key}")
            blocks[source.key] = simulator_module(source).populate(self.datasets[source], account_id, rng, size)
        self.accounts[account_id] = blocks
        return blocks

    # -- serving -----------------------------------------------------------
    def app(self, source: Source) -> Any:
        return simulator_module(source).create_app(self.datasets[source], self.controls[source])

    def combined_app(self) -> Starlette:
        """Every simulator in one ASGI app, each under `/<source key>`."""
        return Starlette(routes=self.mounts())

    def mounts(self, prefix: str = "") -> list[Mount]:
        return [Mount(f"{prefix}/{source.key}", app=self.app(source)) for source in Source]

    # -- the gateway's view of it -------------------------------------------
    def config_dict(self, root_url: str, **overrides: Any) -> dict[str, Any]:
        """Raw config (as parsed TOML) for a gateway whose simulators live at `root_url/<source>`."""
        sources = {source.key: simulator_module(source).source_block(f"{root_url.rstrip('/')}/{source.key}")
                   for source in Source}
        accounts = [{"id": account_id, "api_keys": [gateway_key(account_id)], **blocks}
                    for account_id, blocks in self.accounts.items()]
        return {"sources": sources, "accounts": accounts, **overrides}

    def gateway_config(self, root_url: str, **overrides: Any) -> GatewayConfig:
        return GatewayConfig.model_validate(self.config_dict(root_url, **overrides))

    def config_toml(self, root_url: str, **overrides: Any) -> str:
        """The same config as a TOML file, for gateways run as separate processes."""
        return to_toml(self.config_dict(root_url, **overrides))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("TOML config values must be finite")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string, but not JSON's surrogate-pair escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(config: dict[str, Any]) -> str:
    """TOML for the config shape: scalar tables, `[sources.x]` tables, `[[accounts]]`."""
    lines: list[str] = []
    for section, body in config.items():
        if section == "accounts":
            continue
        if isinstance(body, dict) and all(isinstance(v, dict) for v in body.values()) and body:
            for name, table in body.items():
                lines.append(f"[{section}.{name}]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        elif isinstance(body, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items())
        else:
            lines.insert(0, f"{section} = {_toml_value(body)}")
    for account in config.get("accounts", []):
        lines.append("[[accounts]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in account.items())
    return "\n".join(lines) + "\n"
