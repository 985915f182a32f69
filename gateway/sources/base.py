"""What every upstream client shares: the HTTP call, error mapping, and the fetch contract.

A client turns one upstream identity (a credential, a wallet uuid, a set of addresses)
into one `SourceFetch`: every page read, every row normalized. `fetch` never raises:
a failure becomes `state=FAILED` with a `SourceError` whose message we wrote ourselves,
so no upstream body or credential can travel further.
"""
from __future__ import annotations

import decimal
import logging
import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Generic, Hashable, Mapping, Protocol, TypeVar

import httpx
import msgspec
import pydantic

from gateway.domain import money
from gateway.domain.errors import UpstreamCode, UpstreamError, status_code_error
from gateway.domain.records import SourceError, SourceFetch, SourceId, SourceState
from gateway.observability.repeated_lines import RepeatedLines
from gateway.upstream.response_cache import InFlight
from gateway.domain.tokens import TokenRegistry
from gateway.upstream.pipeline import FetchOptions, Upstream
from gateway.upstream.source_config import SourceConfig

log = logging.getLogger("gateway.sources")
FAILURE_LINE_WINDOW_S = 10.0   # an identical "upstream failed" line at most this often (metrics count each failure)

# Warnings that mean a read may be missing something: the source is PARTIAL, totals incomplete.
INCOMPLETE = frozenset({"POSSIBLY_TRUNCATED", "INCOMPLETE_PAGING", "UPSTREAM_REPORTED_ERRORS", "DUPLICATE_ROWS"})

ConfigT = TypeVar("ConfigT", bound=SourceConfig)
IdentityT = TypeVar("IdentityT", bound=Hashable)
StructT = TypeVar("StructT", bound=msgspec.Struct)


class ConfiguredAccount(Protocol):
    """What a client reads of an account's config (gateway.config.AccountConfig): its id
    and its block for a source (`None` when the account does not use that source)."""
    id: str

    def source(self, source: SourceId) -> Any: ...


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Aware UTC; an upstream time without an offset is read as UTC, never as local time."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class UpstreamModel(pydantic.BaseModel):
    """Upstream JSON: strict about the fields the gateway reads, tolerant of the rest."""
    model_config = pydantic.ConfigDict(extra="ignore")


_UNPARSED = object()
_TYPED: dict[type, msgspec.json.Decoder] = {}


class UpstreamResponse:
    """One upstream answer. `body` is its JSON parsed when first read (floats as Decimal), or
    None when it was not JSON (a 2xx that is not JSON raises BAD_RESPONSE); a client that
    decodes the bytes straight into typed structs (`SourceClient.decode`) never parses it twice."""
    __slots__ = ("status", "retry_after", "raw", "_body", "_source")

    def __init__(self, status: int, retry_after: float | None, body: Any = _UNPARSED, *,
                 raw: bytes | None = None, source: SourceId | None = None):
        self.status = status
        self.retry_after = retry_after
        self.raw = raw
        self._body = body if body is not _UNPARSED or raw else None
        self._source = source

    @property
    def body(self) -> Any:
        if self._body is _UNPARSED:
            self._body = None
            try:
                self._body = money.loads(self.raw)
            except ValueError:  # msgspec's DecodeError and UnicodeDecodeError are ValueErrors
                self._not_json()
        return self._body

    def _not_json(self) -> None:
        if 200 <= self.status < 300:
            display = self._source.display if self._source is not None else "The upstream"
            raise UpstreamError(UpstreamCode.BAD_RESPONSE, f"{display} sent a body that is not JSON",
                                status=self.status) from None


class SourceClient(ABC, Generic[ConfigT, IdentityT]):
    """One upstream. Subclasses implement `identities` and `fetch_identity`."""

    source: ClassVar[SourceId]   # set from the source's spec by gateway/sources/catalog.py

    def __init__(self, config: ConfigT, http: httpx.AsyncClient, registry: TokenRegistry,
                 upstream: Upstream | None = None):
        self.config = config
        self.http = http
        self.registry = registry
        # Process-wide guard of this upstream; a client built alone (tests) gets its own.
        self.upstream = upstream or Upstream(self.source, config, http, cache=None, inflight=InFlight())
        self.failure_lines = RepeatedLines(FAILURE_LINE_WINDOW_S)

    @abstractmethod
    def identities(self, account: ConfiguredAccount) -> list[IdentityT]:
        """The upstream identities of one account: one fetch (all its pages) each."""

    @abstractmethod
    async def fetch_identity(self, identity: IdentityT, fetch: SourceFetch, options: FetchOptions) -> None:
        """Read every page for `identity`, appending wallets/holdings/warnings to `fetch`.
        Raise UpstreamError (or let pydantic/KeyError/... escape) on failure."""

    @staticmethod
    def account_id_of(identity: Any) -> str:
        return identity.account_id

    async def fetch(self, identity: IdentityT, options: FetchOptions = FetchOptions()) -> SourceFetch:
        """All pages for one identity, normalized. Never raises. (Requests reading the same
        account at the same time share its reads: resolvers.accounts.fetch_account.)"""
        remembered = self.upstream.recall(identity, options)
        if remembered is not None:
            return remembered
        return await self._read(identity, options)

    async def _read(self, identity: IdentityT, options: FetchOptions) -> SourceFetch:
        result = SourceFetch(source=self.source, account_id=self.account_id_of(identity), state=SourceState.OK)
        started = time.perf_counter()
        try:
            await self.fetch_identity(identity, result, options)
        except UpstreamError as exc:
            self._fail(result, exc.code, exc.message, status=exc.status)
        except (pydantic.ValidationError, KeyError, TypeError, ValueError, AttributeError,
                IndexError, decimal.InvalidOperation):
            # The exception text may quote upstream data: log its type only.
            self._fail(result, UpstreamCode.BAD_RESPONSE,
                       f"{self.source.display} sent a response the gateway could not read")
        if result.state is SourceState.OK and any(w.code in INCOMPLETE for w in result.warnings):
            result.state = SourceState.PARTIAL
        await self.upstream.finish(result, ok=result.state is not SourceState.FAILED)
        if result.fetched_at is None:
            result.fetched_at = utcnow()
        self.upstream.remember(identity, result)
        log.debug("fetched source=%s account=%s state=%s calls=%d ms=%.1f", self.source.value,
                  result.account_id, result.state.value, result.upstream_calls,
                  (time.perf_counter() - started) * 1000)
        return result

    def _fail(self, result: SourceFetch, code: UpstreamCode, message: str, *, status: int | None = None) -> None:
        result.state = SourceState.FAILED
        result.wallets.clear()
        result.holdings.clear()   # never pass off part of a failed read as the whole
        result.error = SourceError(code=code.value, message=message)
        # During an outage every request fails alike: an identical line at most every 10 s.
        left_out = self.failure_lines.admit((self.source, result.account_id, code, status))
        if left_out is not None:
            log.warning("upstream failed source=%s account=%s code=%s status=%s%s", self.source.value,
                        result.account_id, code.value, status, f" suppressed={left_out}" if left_out else "")

    async def get(self, fetch: SourceFetch, path: str, options: FetchOptions, *,
                  params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
                  headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """GET base_url + path through the source's Upstream (cache, dedup, breaker, limits,
        retries, deadline). Failures raise UpstreamError; any HTTP status returns."""
        live = await self.upstream.get(fetch, self.config.base_url + path, params, headers, options)
        moment = datetime.fromtimestamp(live.fetched_at, timezone.utc)
        if fetch.fetched_at is None or moment < fetch.fetched_at:
            fetch.fetched_at = moment   # a fetch is as old as its oldest page
        return UpstreamResponse(live.status, live.retry_after, raw=live.body, source=self.source)

    @staticmethod
    def decode(response: UpstreamResponse, struct: type[StructT]) -> StructT:
        """The body decoded straight into `struct` (a msgspec Struct), validated while it is
        read: no dict of the whole body is built. JSON numbers keep their digits (float_hook);
        a body that is not JSON is BAD_RESPONSE as with `body`; one of another shape raises
        msgspec.ValidationError (a ValueError: BAD_RESPONSE, "could not read", in `_read`)."""
        if response.raw is None:   # built from a parsed body (tests)
            return msgspec.convert(response.body, struct)
        decoder = _TYPED.get(struct)
        if decoder is None:
            decoder = _TYPED[struct] = msgspec.json.Decoder(struct, float_hook=Decimal)
        try:
            return decoder.decode(response.raw)
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:
            response._not_json()
            raise

    def raise_for_status(self, response: UpstreamResponse) -> None:
        """Default: any non-2xx becomes the mapped UpstreamError."""
        if not 200 <= response.status < 300:
            raise status_code_error(self.source, response.status, response.retry_after)
