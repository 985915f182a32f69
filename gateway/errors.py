"""Error codes shared by the sources (upstream failures) and the API (client mistakes)."""
from __future__ import annotations

from enum import Enum


class UpstreamCode(str, Enum):
    UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    TIMEOUT = "UPSTREAM_TIMEOUT"
    RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
    AUTH_FAILED = "UPSTREAM_AUTH_FAILED"
    BAD_RESPONSE = "UPSTREAM_BAD_RESPONSE"


class ClientCode(str, Enum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    INTERNAL = "INTERNAL_SERVER_ERROR"
    MAX_JSON_DEPTH = "MAX_JSON_DEPTH_LIMIT"   # refused at the door: the body or a GET parameter nests too deeply


class UpstreamError(Exception):
    """An upstream call failed. `message` is ours: it never quotes the upstream body or a secret."""

    def __init__(self, code: UpstreamCode, message: str, *, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class ClientError(Exception):
    """A mistake in the client's request; becomes a GraphQL error with `extensions.code`."""

    def __init__(self, code: ClientCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
