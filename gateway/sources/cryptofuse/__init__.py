"""Cryptofuse: the source's one declaration (gateway/sources/spec.py)."""
from __future__ import annotations

from gateway.sources.cryptofuse.client import CryptofuseClient
from gateway.sources.cryptofuse.config import CryptofuseAccount, CryptofuseSourceConfig
from gateway.sources.spec import SourceSpec

SPEC = SourceSpec(name="CRYPTOFUSE", display="Cryptofuse", order=2, price_rank=4, reports_prices=False,
                  client=CryptofuseClient, source_config=CryptofuseSourceConfig, account_config=CryptofuseAccount,
                  simulator="gateway.sources.cryptofuse.simulator")
