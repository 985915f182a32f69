"""Tests that need a tool outside Python (node packages, chromium, GraphiQL's assets).

In CI (`CI` set, as .ci/run runs) a missing tool is a failure: CI installs them all. On a
developer's machine with only Python, such a test is skipped and says what to install, so
`make test` works on a fresh machine.
"""
from __future__ import annotations

import os

import pytest


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
