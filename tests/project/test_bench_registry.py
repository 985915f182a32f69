"""bench.registry runs and its figures mean what they say (a small registry, real PostgreSQL)."""
from __future__ import annotations

import asyncio

from bench.registry import measure


def test_bench_registry_loads_every_account_and_sees_changes_from_another_process():
    figures = asyncio.run(measure(200))
    assert figures["start_ms"] > 0 and figures["first_ms"] > 0 and figures["later_us"] > 0
    assert figures["later_us"] * 1e-3 < figures["first_ms"]   # memory after the first look-up
    assert 0 < figures["seen_median_ms"] <= figures["seen_max_ms"] < 1000
