"""Cryptofuse's config: its `[sources.cryptofuse]` section and an account's `cryptofuse = { ... }` block."""
from __future__ import annotations

from pydantic import SecretStr

from gateway.sources.spec import AccountBlock
from gateway.upstream.source_config import SourceConfig


class CryptofuseSourceConfig(SourceConfig):
    pass


class CryptofuseAccount(AccountBlock):
    token: SecretStr
