"""OneBalance: the source's one declaration (gateway/sources/spec.py)."""
from __future__ import annotations

from gateway.sources.onebalance.client import OneBalanceClient
from gateway.sources.onebalance.config import OneBalanceAccount, OneBalanceSourceConfig
from gateway.sources.spec import SourceSpec

SPEC = SourceSpec(name="ONEBALANCE", display="OneBalance", order=3, price_rank=0, reports_prices=True,
                  client=OneBalanceClient, source_config=OneBalanceSourceConfig, account_config=OneBalanceAccount,
                  simulator="gateway.sources.onebalance.simulator")
