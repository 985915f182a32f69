"""One upstream's protection, shared by every request in the process.

Every upstream GET goes through `Upstream.get`, in this order:
  cache (fresh enough for the request?) → in-flight de-duplication (same response
  already being fetched here? or, with Redis, by another gateway process?) → circuit
  breaker → concurrency limit → the HTTP call, retried with backoff within the retry
  budget and the request's deadline → on failure, a stale cached answer if one is
  young enough.
Responses are written to the cache only after the whole fetch they belong to has
been read and normalized (SourceClient.fetch), so garbage is never cached.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import aiohttp
import httpx

from gateway.upstream import http as http_lanes
from gateway.observability import metrics as gateway_metrics, tracing
from gateway.upstream.response_cache import Cache, CachedResponse, InFlight, RedisCache, cache_key
from gateway.domain.errors import UpstreamCode, UpstreamError
from gateway.domain.records import SourceFetch, SourceId, SourceState, SourceWarning
from gateway.upstream.resilience import CircuitBreaker, ConcurrencyLimiter, Deadline, RetryBudget, RetryPolicy
from gateway.upstream.ledger import Dependency, ReadLedger
from gateway.upstream.source_config import SourceConfig

log = logging.getLogger("gateway.upstream")

MAX_NORMALIZED = 5_000                                   # identities whose normalized read is kept
_REQUEST_SPECIFIC = frozenset({"STALE", "REFRESH_RATE_LIMITED"})   # true of one request only


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """What one client request asks of the upstream reads it causes, passed down with each read."""
    deadline: Deadline = field(default_factory=Deadline.none)
    max_age_s: float | None = None   # the client wants data at most this old
    refresh: bool = False            # the client wants fresh data (rate-limited)
    # A live poll (gateway/live/): read the upstream itself, never a cached page or memo; the
    # poller's own schedule (one per identity, never below [live] min_interval_s) is its rate limit.
    bypass_cache: bool = False
    ledger: ReadLedger | None = None  # what the request read (for keeping its response), if anyone asks


@dataclass(slots=True)
class LiveResponse:
    status: int
    body: bytes
    fetched_at: float
    retry_after: float | None = None
    attempts: int = 0
    from_cache: bool = False


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(int(value.strip())))
    except ValueError:
        return None  # HTTP-date form: treat as unknown rather than guess


class Upstream:
    def __init__(self, source: SourceId, config: SourceConfig, http: httpx.AsyncClient,
                 cache: Cache | None, inflight: InFlight):
        self.source = source
        self.name = source.display
        self.config = config
        self.http = http
        self.cache = cache
        self.inflight = inflight      # page reads in flight, shared across sources (keys hold the source)
        self.policy = RetryPolicy(max_attempts=1 + config.max_retries)
        self.budget = RetryBudget(ratio=config.retry_budget_ratio)
        self.breaker = CircuitBreaker(failure_threshold=config.breaker_failures, cooldown_s=config.breaker_cooldown_s)
        self.limiter = ConcurrencyLimiter(config.max_concurrency)
        self.normalized: OrderedDict[Any, tuple[SourceFetch, float]] = OrderedDict()
        self.metrics = gateway_metrics.detached()   # the app's own, once create_app attaches them
        self.lane = http_lanes.lane_for(http)
        # account id -> a scope that enters every cached page's key ("" for none): the account
        # registry's, so a page read under links an account no longer has is never its again
        self.scope_of: Callable[[str], str] | None = None

    # -- normalized results of cached reads ------------------------------------
    # A cache hit would otherwise re-parse and re-validate the same bytes on every request
    # (half the CPU of a cached query): keep the normalized fetch beside the cached pages,
    # for no longer than the pages themselves are fresh.
    def recall(self, identity: Any, options: FetchOptions) -> SourceFetch | None:
        if self.cache is None or options.refresh or options.bypass_cache:
            return None
        remembered = self.normalized.get(identity)
        if remembered is None:
            return None
        fetch, oldest = remembered
        expires = oldest + self._fresh_for(options)
        if time.time() > expires:
            del self.normalized[identity]
            return None     # expired: the page path decides (refetch, or stale on failure)
        self.normalized.move_to_end(identity)
        self._count_cache("hit")
        if options.ledger is not None:   # the response may be reused while this entry stands
            options.ledger.deps.append(Dependency(self, identity, fetch, expires))
        return fetch.handed_out(from_cache=True, upstream_calls=0)

    def still_holds(self, identity: Any, fetch: SourceFetch) -> bool:
        """Whether the memo's entry for `identity` is still this very fetch (a kept response's test)."""
        remembered = self.normalized.get(identity)
        return remembered is not None and remembered[0] is fetch

    def reused(self, identity: Any) -> None:
        """A kept response stood in for this memo read: a cache hit, kept recent in the memo."""
        self.normalized.move_to_end(identity)
        self._count_cache("hit")

    def forget(self, belongs: Callable[[Any], bool]) -> int:
        """Drop the normalized reads of the identities `belongs` picks (an account changed)."""
        gone = [identity for identity in self.normalized if belongs(identity)]
        for identity in gone:
            del self.normalized[identity]
        return len(gone)

    def remember(self, identity: Any, fetch: SourceFetch) -> None:
        if self.cache is None or fetch.state is SourceState.FAILED or fetch.fetched_at is None \
                or any(w.code in _REQUEST_SPECIFIC for w in fetch.warnings):
            return
        self.normalized[identity] = (fetch, fetch.fetched_at.timestamp())
        self.normalized.move_to_end(identity)
        while len(self.normalized) > MAX_NORMALIZED:
            self.normalized.popitem(last=False)

    # -- one page -----------------------------------------------------------------
    async def get(self, fetch: SourceFetch, url: str, params: Any, headers: Mapping[str, str] | None,
                  options: FetchOptions) -> LiveResponse:
        ledger = options.ledger
        if ledger is not None:
            ledger.other_reads = True
        params_list = _param_list(params)
        credential = "\n".join(f"{k.lower()}:{v}" for k, v in sorted((headers or {}).items()))
        scope = self.scope_of(fetch.account_id) if self.scope_of is not None else ""
        if scope:
            credential += "\nregistry-scope:" + scope
        key = cache_key(self.source.value, url, params_list, credential)
        cached = await self.cache.get(key) if self.cache is not None and not options.bypass_cache else None
        if cached is not None and self._serve_cached(fetch, cached, options):
            self._count_cache("hit")
            return self._from_cache(fetch, cached)
        waiting = time.perf_counter()
        try:
            live = await self.inflight.run(key, lambda: self._fetch_shared(key, url, params_list, headers, options.deadline))
        except UpstreamError as exc:
            if ledger is not None:
                ledger.waits.append((waiting, time.perf_counter()))
            fetch.upstream_calls += getattr(exc, "attempts", 0)   # calls made before giving up
            if exc.code is not UpstreamCode.AUTH_FAILED and self._stale_usable(cached):
                return self._stale(fetch, cached)
            self._count_cache("miss")
            raise
        if ledger is not None:   # waiting for the upstream (or another request's read of it): not overhead
            ledger.waits.append((waiting, time.perf_counter()))
        if (live.status >= 500 or live.status == 429) and self._stale_usable(cached):
            fetch.upstream_calls += live.attempts
            return self._stale(fetch, cached)
        self._count_cache("miss")
        fetch.upstream_calls += live.attempts
        if live.from_cache:
            fetch.from_cache = True
        elif 200 <= live.status < 300 and self.cache is not None:
            fetch.cache_writes.append((key, CachedResponse(live.status, live.body, live.fetched_at)))
        return live

    def _serve_cached(self, fetch: SourceFetch, cached: CachedResponse, options: FetchOptions) -> bool:
        age = cached.age()
        if not options.refresh and age <= self._fresh_for(options):
            return True
        if (options.refresh or options.max_age_s is not None) and age <= self.config.cache_ttl_s \
                and age < self.config.refresh_min_interval_s:
            # Refreshes are rate-limited per response so clients cannot spend our quota.
            _warn(fetch, "REFRESH_RATE_LIMITED",
                  f"{self.name} was read {age:.0f}s ago; refreshed at most every {self.config.refresh_min_interval_s:g}s")
            return True
        return False

    def _fresh_for(self, options: FetchOptions) -> float:
        """How old a cached answer may be for this request: the TTL, or less if the client asks."""
        ttl = self.config.cache_ttl_s
        return ttl if options.max_age_s is None else min(ttl, options.max_age_s)

    def _stale_usable(self, cached: CachedResponse | None) -> bool:
        """An unavailable or throttling upstream may be stood in for by an answer this young;
        a rejected credential may not (the data may no longer be the caller's to see)."""
        return cached is not None and cached.age() <= self.config.cache_ttl_s + self.config.max_stale_s

    def _stale(self, fetch: SourceFetch, cached: CachedResponse) -> LiveResponse:
        _warn(fetch, "STALE", f"{self.name} failed; serving its last good answer")
        self._count_cache("stale")
        return self._from_cache(fetch, cached)

    def _from_cache(self, fetch: SourceFetch, cached: CachedResponse) -> LiveResponse:
        fetch.from_cache = True
        return LiveResponse(status=cached.status, body=cached.body, fetched_at=cached.fetched_at, from_cache=True)

    def _count_cache(self, result: str) -> None:
        if self.cache is not None:   # no cache configured: nothing to count
            self.metrics.cache(self.source, result)

    async def finish(self, fetch: SourceFetch, ok: bool) -> None:
        """After a whole fetch: cache what it read if it all made sense; free fill locks."""
        if self.cache is None:
            return
        keep = self.config.cache_ttl_s + self.config.max_stale_s
        for key, entry in fetch.cache_writes:
            if ok and keep > 0:
                await self.cache.set(key, entry, keep)
            if isinstance(self.cache, RedisCache):
                await self.cache.release_fill_lock(key)
        fetch.cache_writes.clear()

    # -- one shared upstream read ----------------------------------------------
    async def _fetch_shared(self, key: str, url: str, params: list[tuple[str, str]],
                            headers: Mapping[str, str] | None, deadline: Deadline) -> LiveResponse:
        if isinstance(self.cache, RedisCache) and self.cache.healthy:
            # Another gateway process may be reading this very response: wait for its result.
            if not await self.cache.acquire_fill_lock(key, ttl_s=self.config.timeout_s + 1):
                filled = await self.cache.wait_for_fill(key, timeout_s=min(self.config.timeout_s, deadline.remaining()))
                if filled is not None:
                    return LiveResponse(filled.status, filled.body, filled.fetched_at, from_cache=True)
        return await self._call_with_retries(url, params, headers, deadline)

    async def _call_with_retries(self, url: str, params: list[tuple[str, str]], headers: Mapping[str, str] | None,
                                 deadline: Deadline) -> LiveResponse:
        self.budget.record_request()
        attempt = 0
        while True:
            attempt += 1
            if deadline.remaining() <= 0:
                self.metrics.rejected(self.source, "deadline")
                raise UpstreamError(UpstreamCode.TIMEOUT, f"{self.name} was not read before the request deadline")
            if not self.breaker.allow():
                self.metrics.rejected(self.source, "circuit_open")
                snapshot = self.breaker.snapshot()
                raise UpstreamError(UpstreamCode.UNAVAILABLE,
                                    f"{self.name} is failing; the gateway is not calling it for "
                                    f"{snapshot['seconds_until_probe']:.0f}s (circuit open)")
            error: UpstreamError | None = None
            live: LiveResponse | None = None
            try:
                live = await self._observed_http(url, params, headers, min(self.config.timeout_s, deadline.remaining()))
                live.attempts = attempt
            except UpstreamError as exc:
                error = exc
            failed = error is not None or live.status >= 500 or live.status == 429
            (self.breaker.record_failure if failed else self.breaker.record_success)()
            retryable = (error is not None and error.code is UpstreamCode.UNAVAILABLE) or \
                (live is not None and self.policy.should_retry_status(live.status))
            if retryable and attempt < self.policy.max_attempts:
                delay = self.policy.delay(attempt, live.retry_after if live else None)
                if delay < deadline.remaining() and self.budget.try_spend():
                    log.info("retrying source=%s attempt=%d delay_ms=%.0f", self.source.value, attempt + 1, delay * 1000)
                    await asyncio.sleep(delay)
                    continue
            if error is not None:
                error.attempts = attempt  # type: ignore[attr-defined]
                raise error
            assert live is not None
            return live

    async def _observed_http(self, url: str, params: list[tuple[str, str]], headers: Mapping[str, str] | None,
                             timeout: float) -> LiveResponse:
        """`_http`, measured (duration by status or error kind, errors by code) and traced.
        Only the source, status and code are recorded: never the URL, params or headers."""
        started = time.perf_counter()
        with tracing.upstream_call(self.source, url) as span:
            try:
                live = await self._http(url, params, headers, timeout)
            except UpstreamError as exc:
                tracing.failed(span, self.metrics.upstream_failed(self.source, exc, started), exc.code.value)
                raise
            except asyncio.CancelledError:
                self.metrics.upstream_cancelled(self.source, started)
                raise
            self.metrics.upstream_answered(self.source, live.status, started)
            tracing.answered(span, live.status)
            return live

    async def _http(self, url: str, params: list[tuple[str, str]], headers: Mapping[str, str] | None,
                    timeout: float) -> LiveResponse:
        """One HTTP GET (waiting for a concurrency slot counts against the timeout)."""
        cap = self.config.max_response_bytes
        try:
            async with asyncio.timeout(timeout):
                async with self.limiter:
                    status, retry_after, body = await self.lane.get(url, params, headers, timeout, cap)
        except TimeoutError:
            raise UpstreamError(UpstreamCode.TIMEOUT, f"{self.name} did not answer within {timeout:.3g}s") from None
        except httpx.TimeoutException as exc:
            # httpx-aiohttp maps some connection failures to ConnectTimeout: look at the cause.
            if isinstance(exc.__cause__, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)) or isinstance(exc, httpx.ReadTimeout):
                raise UpstreamError(UpstreamCode.TIMEOUT, f"{self.name} did not answer within {timeout:.3g}s") from None
            raise UpstreamError(UpstreamCode.UNAVAILABLE, f"{self.name} could not be reached") from None
        except (httpx.HTTPError, aiohttp.ClientError, OSError):
            raise UpstreamError(UpstreamCode.UNAVAILABLE, f"{self.name} could not be reached") from None
        if body is None:
            raise UpstreamError(UpstreamCode.BAD_RESPONSE, f"{self.name} sent more than {cap} bytes", status=status)
        return LiveResponse(status=status, body=body, fetched_at=time.time(), retry_after=parse_retry_after(retry_after))


def _param_list(params: Any) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in items]


def _warn(fetch: SourceFetch, code: str, message: str) -> None:
    if not any(w.code == code for w in fetch.warnings):
        fetch.warnings.append(SourceWarning(code=code, message=message))
