"""Error codes shared by the sources (upstream failures) and the API (client mistakes)."""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.domain.records import SourceId


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
    # the account registry (gateway/accounts/)
    ALREADY_EXISTS = "ALREADY_EXISTS"
    READ_ONLY_ACCOUNT = "READ_ONLY_ACCOUNT"           # an account of the config file
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"     # the store is down (or none is configured)
    MAX_SUBSCRIPTIONS = "MAX_SUBSCRIPTIONS"   # the key has [live] max_subscriptions_per_key open
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


def status_code_error(source: "SourceId", status: int, retry_after: float | None = None) -> UpstreamError:
    """Default mapping of an upstream HTTP status to our code; the message names only the status."""
    name = source.display
    if status in (401, 403):
        return UpstreamError(UpstreamCode.AUTH_FAILED, f"{name} rejected the gateway's credentials (HTTP {status})", status=status)
    if status == 429:
        return UpstreamError(UpstreamCode.RATE_LIMITED, f"{name} is rate limiting the gateway (HTTP 429)",
                             status=status, retry_after=retry_after)
    if status in (408, 504):
        return UpstreamError(UpstreamCode.TIMEOUT, f"{name} timed out (HTTP {status})", status=status)
    if status >= 500:
        return UpstreamError(UpstreamCode.UNAVAILABLE, f"{name} is unavailable (HTTP {status})", status=status,
                             retry_after=retry_after)
    return UpstreamError(UpstreamCode.BAD_RESPONSE, f"{name} refused the request (HTTP {status})", status=status)
