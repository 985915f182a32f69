"""Runs last (file order): no upstream credential or upstream error body appears in any
response the gateway gave, any log line, or the metrics, over the whole test run."""
from __future__ import annotations

import httpx

from gateway.simulation.control import Fault
from tests.capture import CAPTURED_LOGS, CAPTURED_RESPONSES, UPSTREAM_SECRETS

UPSTREAM_BODY = "injected fault (upstream error body)"


def test_no_upstream_secret_or_body_in_any_response_log_or_metric(client, gateway, demo_world, clean_simulators):
    # A last burst with every source failing in its own error shape, so bodies exist to leak.
    for control in demo_world.controls.values():
        control.add_fault(Fault(kind="status", status=503))
    client.post("{ viewer { holdings { totalCount } sources { state error { message } } } }")
    metrics = httpx.get(gateway.url + "/metrics").text
    assert len(UPSTREAM_SECRETS) >= 6 and len(CAPTURED_RESPONSES) > 100 and CAPTURED_LOGS
    haystacks = CAPTURED_RESPONSES + CAPTURED_LOGS + [metrics]
    leaks = [(secret, text[:200]) for text in haystacks
             for secret in UPSTREAM_SECRETS | {UPSTREAM_BODY} if secret in text]
    assert not leaks, leaks[:5]
