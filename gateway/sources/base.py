"""What every upstream client shares: the HTTP call, error mapping, and the fetch contract.

A client turns one upstream identity (a credential, a wallet uuid, a set of addresses)
into one `SourceFetch`: every page read, every row normalized. `fetch` never raises:
a failure becomes `state=FAILED` with a `SourceError` whose message we wrote ourselves,
so no upstream body or credential can travel further.
"""
from __future__ import annotations

import asyncio
import decimal
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Generic, Hashable, Mapping, TypeVar

import aiohttp
import httpx
import pydantic

from gateway import money
from gateway.config import AccountConfig, SourceConfig
from gateway.errors import UpstreamCode, UpstreamError
from gateway.records import SourceError, SourceFetch, SourceState, Source
from gateway.registry import TokenRegistry

log = logging.getLogger("gateway.sources")

# A response larger than this is refused as UPSTREAM_BAD_RESPONSE rather than parsed.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

ConfigT = TypeVar("ConfigT", bound=SourceConfig)
IdentityT = TypeVar("IdentityT", bound=Hashable)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(int(value.strip())))
    except ValueError:
        return None  # HTTP-date form: treat as unknown rather than guess


def status_code_error(source: Source, status: int, retry_after: float | None = None) -> UpstreamError:
    """Default mapping of an upstream HTTP status to our code; the message names only the status."""
    name = source.value.title()
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


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON (floats as Decimal), or None when the body was not JSON


class SourceClient(ABC, Generic[ConfigT, IdentityT]):
    """One upstream. Subclasses implement `identities` and `fetch_identity`."""

    source: ClassVar[Source]

    def __init__(self, config: ConfigT, http: httpx.AsyncClient, registry: TokenRegistry):
        self.config = config
        self.http = http
        self.registry = registry

    @abstractmethod
    def identities(self, account: AccountConfig) -> list[IdentityT]:
        """The upstream identities of one account: one fetch (all its pages) each."""

    @abstractmethod
    async def fetch_identity(self, identity: IdentityT, fetch: SourceFetch) -> None:
        """Read every page for `identity`, appending wallets/holdings/warnings to `fetch`.
        Raise UpstreamError (or let pydantic/KeyError/... escape) on failure."""

    @staticmethod
    def account_id_of(identity: Any) -> str:
        return identity.account_id

    async def fetch(self, identity: IdentityT) -> SourceFetch:
        """All pages for one identity, normalized. Never raises."""
        result = SourceFetch(source=self.source, account_id=self.account_id_of(identity), state=SourceState.OK)
        started = time.perf_counter()
        try:
            await self.fetch_identity(identity, result)
        except UpstreamError as exc:
            self._fail(result, exc.code, exc.message, status=exc.status)
        except (pydantic.ValidationError, KeyError, TypeError, ValueError, AttributeError,
                IndexError, decimal.InvalidOperation):
            # The exception text may quote upstream data: log its type only.
            self._fail(result, UpstreamCode.BAD_RESPONSE,
                       f"{self.source.value.title()} sent a response the gateway could not read")
        result.fetched_at = utcnow()
        log.debug("fetched source=%s account=%s state=%s calls=%d ms=%.1f", self.source.value,
                  result.account_id, result.state.value, result.upstream_calls,
                  (time.perf_counter() - started) * 1000)
        return result

    def _fail(self, result: SourceFetch, code: UpstreamCode, message: str, *, status: int | None = None) -> None:
        result.state = SourceState.FAILED
        result.wallets.clear()
        result.holdings.clear()   # never pass off part of a failed read as the whole
        result.error = SourceError(code=code.value, message=message)
        log.warning("upstream failed source=%s account=%s code=%s status=%s", self.source.value,
                    result.account_id, code.value, status)

    async def get(self, fetch: SourceFetch, path: str, *, params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
                  headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """GET base_url + path. Transport failures raise UpstreamError; any HTTP status returns."""
        url = self.config.base_url + path
        timeout = self.config.timeout_s
        fetch.upstream_calls += 1
        try:
            async with asyncio.timeout(timeout):
                async with self.http.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
                    body = await _read_capped(response)
        except TimeoutError:
            raise UpstreamError(UpstreamCode.TIMEOUT, f"{self.source.value.title()} did not answer within {timeout:g}s") from None
        except httpx.TimeoutException as exc:
            # httpx-aiohttp maps some connection failures to ConnectTimeout: look at the cause.
            if isinstance(exc.__cause__, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)) or isinstance(exc, httpx.ReadTimeout):
                raise UpstreamError(UpstreamCode.TIMEOUT, f"{self.source.value.title()} did not answer within {timeout:g}s") from None
            raise UpstreamError(UpstreamCode.UNAVAILABLE, f"{self.source.value.title()} could not be reached") from None
        except (httpx.HTTPError, aiohttp.ClientError, OSError):
            raise UpstreamError(UpstreamCode.UNAVAILABLE, f"{self.source.value.title()} could not be reached") from None
        if body is None:
            raise UpstreamError(UpstreamCode.BAD_RESPONSE,
                                f"{self.source.value.title()} sent more than {MAX_RESPONSE_BYTES} bytes", status=response.status_code)
        try:
            parsed = money.loads(body) if body else None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            parsed = None
            if 200 <= response.status_code < 300:
                raise UpstreamError(UpstreamCode.BAD_RESPONSE,
                                    f"{self.source.value.title()} sent a body that is not JSON", status=response.status_code) from None
        return UpstreamResponse(status=response.status_code, headers=response.headers, body=parsed)

    def raise_for_status(self, response: UpstreamResponse) -> None:
        """Default: any non-2xx becomes the mapped UpstreamError."""
        if not 200 <= response.status < 300:
            raise status_code_error(self.source, response.status, parse_retry_after(response.headers.get("retry-after")))


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The streamed body, or None as soon as it exceeds MAX_RESPONSE_BYTES."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
