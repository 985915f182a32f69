"""Calico's config: its `[sources.calico]` section and an account's `calico = { ... }` block."""
from __future__ import annotations

from pydantic import SecretStr

from gateway.sources.spec import AccountBlock
from gateway.upstream.source_config import SourceConfig


class CalicoSourceConfig(SourceConfig):
    base_url: str = "https://api.getcalico.com/platform/v1"


class CalicoAccount(AccountBlock):
    token: SecretStr
