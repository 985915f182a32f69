"""DALP: the source's one declaration (gateway/sources/spec.py)."""
from __future__ import annotations

from gateway.sources.dalp.client import DalpClient
from gateway.sources.dalp.config import DalpAccount, DalpSourceConfig
from gateway.sources.spec import SourceSpec

SPEC = SourceSpec(name="DALP", display="DALP", order=5, price_rank=1, reports_prices=True,
                  client=DalpClient, source_config=DalpSourceConfig, account_config=DalpAccount,
                  simulator="gateway.sources.dalp.simulator")
