"""The one declaration of a source: `SPEC = SourceSpec(...)` in gateway/sources/<name>/__init__.py.

Everything that lists the sources is derived from the catalog of these specs
(gateway/sources/catalog.py): the `Source` enum (and so the GraphQL enum), the config's
`[sources.<key>]` sections and per-account blocks, the clients built, which source's
price is preferred, and the simulated world. Every field is required, so a source cannot
be half declared.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.sources.base import SourceClient
from gateway.support.strict_model import StrictModel
from gateway.upstream.source_config import SourceConfig

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class SourceSpecError(ImportError):
    """A source spec, or a module GATEWAY_SOURCE_SPECS names, is unusable. An ImportError:
    it is raised while the catalog is imported. `name` is the environment variable when
    that is where the problem is (the CLI then reports it in one line)."""


class AccountBlock(StrictModel):
    """Base of a source's block in `[[accounts]]` (e.g. `cobo = { wallet_uuids = [...] }`)."""

    def problem_with(self, source_config: Any) -> str | None:
        """What is wrong with this block given the source's `[sources.<key>]` section
        (always present when this is called), worded to follow "account 'x' ..."; None if
        nothing is."""
        return None


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str                           # the Source member and GraphQL enum value: "CALICO"
    display: str                        # the upstream's own spelling, for messages: "Calico"
    order: int                          # where it stands in Source: enum, statuses, wallet order
    price_rank: int                     # when several sources priced a token, the lowest rank wins
    reports_prices: bool                # whether its answers carry prices (or values) at all
    client: type[SourceClient]          # its `source` is set to this spec's member by the catalog
    source_config: type[SourceConfig]   # the `[sources.<key>]` section
    account_config: type[AccountBlock]  # an account's `<key> = { ... }` block
    simulator: str                      # module with Dataset, populate, create_app, source_block

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SourceSpecError(f"source name {self.name!r} must be upper case letters, digits and _")
        if not (isinstance(self.client, type) and issubclass(self.client, SourceClient)):
            raise SourceSpecError(f"{self.name}: client must be a SourceClient subclass")
        if not (isinstance(self.source_config, type) and issubclass(self.source_config, SourceConfig)):
            raise SourceSpecError(f"{self.name}: source_config must be a SourceConfig subclass")
        if not (isinstance(self.account_config, type) and issubclass(self.account_config, AccountBlock)):
            raise SourceSpecError(f"{self.name}: account_config must be an AccountBlock subclass")

    @property
    def key(self) -> str:
        """Its name in config (`[sources.calico]`, `calico = {...}`) and in scoped ids."""
        return self.name.lower()
