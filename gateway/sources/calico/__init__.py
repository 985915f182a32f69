"""Calico: the source's one declaration (gateway/sources/spec.py)."""
from __future__ import annotations

from gateway.sources.calico.client import CalicoClient
from gateway.sources.calico.config import CalicoAccount, CalicoSourceConfig
from gateway.sources.spec import SourceSpec

SPEC = SourceSpec(name="CALICO", display="Calico", order=1, price_rank=2, reports_prices=True,
                  client=CalicoClient, source_config=CalicoSourceConfig, account_config=CalicoAccount,
                  simulator="gateway.sources.calico.simulator")
