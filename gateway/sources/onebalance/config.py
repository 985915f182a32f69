"""OneBalance's config: its `[sources.onebalance]` section and an account's `onebalance = { ... }` block."""
from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from gateway.sources.spec import AccountBlock
from gateway.support import config_checks as check
from gateway.upstream.source_config import SourceConfig


class OneBalanceSourceConfig(SourceConfig):
    base_url: str = "https://be.onebalance.io/api"
    api_key: SecretStr
    aggregated_asset_ids: list[str] = ["ob:eth", "ob:usdc", "ob:usdt"]
    asset_ids: list[str] = []       # extra CAIP-19 ids (`assetId=`)


class OneBalanceAccount(AccountBlock):
    accounts: list[str] = Field(min_length=1)   # CAIP-10 ids

    @field_validator("accounts")
    @classmethod
    def _caip10(cls, v: list[str]) -> list[str]:
        return [check.caip10(item) for item in v]
