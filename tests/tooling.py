"""Test helpers: tests that need a tool outside Python (node packages, chromium, GraphiQL's
assets), and tables several test modules share.

In CI (`CI` set, as .ci/run runs) a missing tool is a failure: CI installs them all. On a
developer's machine with only Python, such a test is skipped and says what to install, so
`make test` works on a fresh machine.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import httpx

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


def serve_process(config_path: str, port: int) -> subprocess.Popen:
    """`balance-gateway serve --config` as its own process (output on its stdout pipe)."""
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", config_path,
                             "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Until the process answers /health (its output in the failure if it exits first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("gateway process did not start")
