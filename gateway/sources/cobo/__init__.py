"""Cobo: the source's one declaration (gateway/sources/spec.py)."""
from __future__ import annotations

from gateway.sources.cobo.client import CoboClient
from gateway.sources.cobo.config import CoboAccount, CoboSourceConfig
from gateway.sources.spec import SourceSpec

SPEC = SourceSpec(name="COBO", display="Cobo", order=4, price_rank=3, reports_prices=False,
                  client=CoboClient, source_config=CoboSourceConfig, account_config=CoboAccount,
                  simulator="gateway.sources.cobo.simulator")
