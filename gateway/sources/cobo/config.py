"""Cobo's config: its `[sources.cobo]` section and an account's `cobo = { ... }` block."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from gateway.sources.spec import AccountBlock
from gateway.upstream.source_config import SourceConfig


class CoboSourceConfig(SourceConfig):
    api_key: SecretStr


class CoboAccount(AccountBlock):
    wallet_uuids: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
