"""DALP's config: its `[sources.dalp]` section and an account's `dalp = { ... }` block."""
from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from gateway.sources.spec import AccountBlock
from gateway.support import config_checks as check
from gateway.upstream.source_config import SourceConfig


class DalpSourceConfig(SourceConfig):
    api_key: SecretStr | None = None   # used with an account's `wallet` override
    chain_id: str = "eip155:1"
    base_currency: str = Field("USD", pattern=r"^[A-Za-z0-9]{2,12}$")

    _chain = field_validator("chain_id")(check.caip2)


class DalpAccount(AccountBlock):
    api_key: SecretStr | None = None            # the participant's own key
    wallet: str | None = None                   # or: filter[wallet] with the source-level key

    _wallet = field_validator("wallet")(lambda v: v if v is None else check.evm_address(v))

    def model_post_init(self, _: Any) -> None:
        if (self.api_key is None) == (self.wallet is None):
            raise ValueError("dalp needs exactly one of api_key or wallet")

    def problem_with(self, source_config: DalpSourceConfig) -> str | None:
        if self.wallet and not source_config.api_key:
            return "uses dalp.wallet, which needs [sources.dalp] api_key"
        return None
