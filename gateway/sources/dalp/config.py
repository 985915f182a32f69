"""DALP's config: its `[sources.dalp]` section and an account's `dalp = { ... }` block."""
from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from gateway.sources.spec import AccountBlock
from gateway.upstream.source_config import SourceConfig


class DalpSourceConfig(SourceConfig):
    api_key: SecretStr | None = None   # used with an account's `wallet` override
    chain_id: str = "eip155:1"
    base_currency: str = "USD"


class DalpAccount(AccountBlock):
    api_key: SecretStr | None = None            # the participant's own key
    wallet: str | None = None                   # or: filter[wallet] with the source-level key

    def model_post_init(self, _: Any) -> None:
        if (self.api_key is None) == (self.wallet is None):
            raise ValueError("dalp needs exactly one of api_key or wallet")

    def problem_with(self, source_config: DalpSourceConfig) -> str | None:
        if self.wallet and not source_config.api_key:
            return "uses dalp.wallet, which needs [sources.dalp] api_key"
        return None
