"""No upstream credential or upstream error body appears in any response the gateway gave,
any log line, or the metrics. This test checks a burst of its own with every source failing;
the whole run's responses and logs are checked once the session ends (conftest.py
pytest_sessionfinish), whatever order the tests ran in."""
from __future__ import annotations

import httpx

from gateway.simulation.control import Fault
from tests.capture import CAPTURED_LOGS, CAPTURED_RESPONSES, UPSTREAM_BODY, UPSTREAM_SECRETS, leaks


def test_no_upstream_secret_or_body_in_a_failing_burst(client, gateway, demo_world, clean_simulators):
    # Every source failing in its own error shape, so bodies exist to leak.
    for control in demo_world.controls.values():
        control.add_fault(Fault(kind="status", status=503))
    responses, logs = len(CAPTURED_RESPONSES), len(CAPTURED_LOGS)
    body = client.post("{ viewer { holdings { totalCount } sources { state error { message } } } }").json()
    assert {s["state"] for s in body["data"]["viewer"]["sources"]} == {"FAILED"}
    metrics = httpx.get(gateway.url + "/metrics").text
    # (its log lines may be suppressed repeats of earlier ones: observability/repeated_lines.py)
    assert len(UPSTREAM_SECRETS) >= 6 and len(CAPTURED_RESPONSES) > responses
    assert not leaks(CAPTURED_RESPONSES[responses:] + CAPTURED_LOGS[logs:] + [metrics])


def test_the_check_finds_a_leak():
    secret = next(iter(UPSTREAM_SECRETS))
    assert leaks([f"token={secret}"]) and leaks([f"upstream said: {UPSTREAM_BODY}"])
    assert not leaks(["nothing to see"])
