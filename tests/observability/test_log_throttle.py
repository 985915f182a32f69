"""During an outage an identical "upstream failed" line is logged at most once per window,
and the next one says how many were left out; the metrics still count every failure
(gateway/observability/repeated_lines.py)."""
from __future__ import annotations

import logging
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sources.catalog import Source
from gateway.observability.repeated_lines import RepeatedLines
from gateway.simulation.control import Fault
from tests.stack import stack

QUERY = "{ viewer { sources { source state error { code } } } }"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_lines_admits_one_per_window_and_counts_the_rest():
    clock = Clock()
    lines = RepeatedLines(window_s=10, max_keys=3, clock=clock)
    assert lines.admit("a") == 0
    assert [lines.admit("a") for _ in range(5)] == [None] * 5
    assert lines.admit("b") == 0                      # another line is not held back
    clock.now += 9.9
    assert lines.admit("a") is None
    clock.now += 0.1
    assert lines.admit("a") == 6                      # written again, with the count left out
    assert lines.admit("a") is None
    for key in "cde":                                 # bounded: the longest-quiet key goes
        assert lines.admit(key) == 0
    clock.now += 1
    assert lines.admit("b") == 0


def _graphql_errors(metrics_text: str, code: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "balance_gateway_graphql_errors_total" and sample.labels.get("code") == code:
                return sample.value
    return 0.0


def test_an_outage_logs_a_few_lines_and_the_metrics_count_every_failure(caplog):
    caplog.set_level(logging.WARNING, logger="gateway.sources")
    requests = 30
    # breaker_failures=3: the first three reads reach Cobo (503), the rest find the circuit open
    with stack(sources={"breaker_failures": 3, "max_retries": 0}, cache={"enabled": False},
               server={"coalesce_identical": False}) as (world, client, app):
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        clock = Clock()
        app.state.gateway.clients[Source.COBO].failure_lines.clock = clock
        for _ in range(requests):
            body = client.query(QUERY)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["UPSTREAM_UNAVAILABLE"]
        failed = [r.getMessage() for r in caplog.records if "upstream failed source=COBO" in r.getMessage()]
        # one line for the 503s, one for the open circuit (no HTTP status): not 30
        assert failed == ["upstream failed source=COBO account=demo code=UPSTREAM_UNAVAILABLE status=503",
                          "upstream failed source=COBO account=demo code=UPSTREAM_UNAVAILABLE status=None"], failed
        metrics = httpx.get(client.http.base_url.join("/metrics")).text
        assert _graphql_errors(metrics, "UPSTREAM_UNAVAILABLE") == requests
        assert 'balance_gateway_upstream_errors_total{code="UPSTREAM_UNAVAILABLE",source="COBO"} 3.0' in metrics
        # after the window, the next identical line says how many were left out
        clock.now += 10
        client.query(QUERY)
        last = [r.getMessage() for r in caplog.records if "upstream failed source=COBO" in r.getMessage()][-1]
        assert re.fullmatch(r"upstream failed .* status=None suppressed=(\d+)", last), last
        assert int(last.rsplit("=", 1)[1]) == requests - 3 - 1   # the open-circuit ones, bar the first
