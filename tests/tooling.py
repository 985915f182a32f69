"""Test helpers: tests that need a tool outside Python (node packages, chromium, GraphiQL's
assets), and tables several test modules share.

In CI (`CI` set, as .ci/run runs) a missing tool is a failure: CI installs them all. On a
developer's machine with only Python, such a test is skipped and says what to install, so
`make test` works on a fresh machine.
"""
from __future__ import annotations

import os

import pytest

from gateway.simulation.control import Fault


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(what, pytrace=False)
    pytest.skip(what + " (required in CI)")


def need_redis(url: str) -> None:
    """A Redis server must answer at `url` (CI starts one on 127.0.0.1:6379)."""
    import redis
    try:
        redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
    except Exception as exc:
        missing(f"no Redis answers at {url} ({type(exc).__name__}); start one: "
                "redis-server --port 6379 --save '' --appendonly no")


# Injected upstream faults and the code each must come back as (the delay outlasts the
# short client timeouts the source tests use).
FAULT_CODES = [
    (Fault("status", status=500), "UPSTREAM_UNAVAILABLE"),
    (Fault("status", status=503), "UPSTREAM_UNAVAILABLE"),
    (Fault("status", status=429, retry_after=3), "UPSTREAM_RATE_LIMITED"),
    (Fault("delay", delay_s=0.6), "UPSTREAM_TIMEOUT"),
    (Fault("malformed"), "UPSTREAM_BAD_RESPONSE"),
    (Fault("wrong_shape"), "UPSTREAM_BAD_RESPONSE"),
]
