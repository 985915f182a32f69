"""The RateLimit header fields (IETF draft-ietf-httpapi-ratelimit-headers-11) on every
response to a caller the rate limiter counted, so clients can pace themselves:

    RateLimit-Policy: "default";q=300;w=6     the bucket: q requests, refilled in w seconds
    RateLimit: "default";r=299;t=1            r requests may follow within the next t seconds

Policies are "default" (account keys and account JWTs) and "admin" (admin keys and admin
JWTs), each one bucket per credential (policy/rate_limit.py). Both fields are Structured
Field lists of one item; the policy name is a fixed token, so plain formatting writes them
exactly (tests parse them with an RFC 9651 parser).
"""
from __future__ import annotations

import functools
from typing import Any

from gateway.policy.rate_limit import Policy, Verdict

RATELIMIT_POLICY = b"ratelimit-policy"
RATELIMIT = b"ratelimit"


@functools.lru_cache(maxsize=8)
def policy_field(policy: Policy) -> bytes:
    return f'"{policy.name}";q={policy.burst};w={policy.window_s}'.encode()


def limit_field(verdict: Verdict) -> bytes:
    return f'"{verdict.policy.name}";r={verdict.remaining};t={verdict.effective_window_s}'.encode()


def with_rate_limit_headers(send: Any, verdict: Verdict) -> Any:
    """A send() that adds both fields to the response's headers."""
    fields = [(RATELIMIT_POLICY, policy_field(verdict.policy)), (RATELIMIT, limit_field(verdict))]

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", []).extend(fields)
        await send(message)
    return wrapped
