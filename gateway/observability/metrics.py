"""Prometheus metrics for one gateway app, served at `/metrics` (OpenTelemetry-style names).

Every label value comes from a closed set we control: a Source name, an HTTP status or an
error kind, one of our error codes, a route *template*, a normalized method. No label ever
carries a credential, a URL or query string, an account id or an upstream body.

Each app gets its own CollectorRegistry (tests run many gateways in one process, and a
scrape must describe exactly one of them). Breaker state and in-flight calls are read
from the live objects at scrape time, so the hot path pays nothing for them. Under
`serve --workers N` a scrape merges every worker's metrics instead (worker_metrics.py):
the live-state gauges then carry one series per worker, labelled `pid`.
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from gateway.domain.errors import UpstreamError, status_code_error
from gateway.domain.records import SourceId
from gateway.observability import worker_metrics

# OpenTelemetry's recommended boundaries for http.server/client.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# Gateway overhead is milliseconds: finer boundaries where its targets lie (p50 <= 10 ms).
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.03,
                    0.05, 0.1, 0.25, 0.5, 1.0)

# Error kinds used as the `status` label when no HTTP status came back (see UpstreamError codes).
_ERROR_KIND = {"UPSTREAM_TIMEOUT": "timeout", "UPSTREAM_UNAVAILABLE": "connect"}
_BREAKER_VALUE = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class GatewayMetrics:
    """The app's instruments. `attach(state)` also points every Upstream at them."""

    def __init__(self, clients: dict[Any, Any] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_duration = Histogram(
            "http_server_request_duration_seconds", "Duration of HTTP server requests.",
            ["http_route", "http_request_method", "http_response_status_code"], buckets=DURATION_BUCKETS, registry=r)
        self.upstream_duration = Histogram(
            "balance_gateway_upstream_request_duration_seconds",
            "Duration of one upstream HTTP call (one attempt; waiting for a concurrency slot included), "
            "by source and HTTP status or error kind (timeout, connect).",
            ["source", "status"], buckets=DURATION_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "balance_gateway_upstream_errors_total",
            "Upstream calls (attempts, retries included) that failed, by source and gateway error code.",
            ["source", "code"], registry=r)
        self.upstream_rejected = Counter(
            "balance_gateway_upstream_rejected_total",
            "Upstream calls the gateway did not make: circuit open or request deadline already spent.",
            ["source", "reason"], registry=r)
        self.cache_requests = Counter(
            "balance_gateway_cache_requests_total",
            "Upstream reads by cache outcome: hit (fresh enough), miss (read live), stale (upstream failed, "
            "last good answer served).", ["source", "result"], registry=r)
        self.overhead = Histogram(
            "balance_gateway_overhead_seconds",
            "Time the gateway spent on a GraphQL request other than waiting for upstreams: the request's time "
            "minus the time during which at least one of its upstream reads was awaited (Apollo Router's "
            "apollo.router.overhead).", buckets=OVERHEAD_BUCKETS, registry=r)
        self.response_cache_total = Counter(
            "balance_gateway_response_cache_total",
            "Whole responses (gateway/policy/response_reuse.py): hit (a kept answer sent again), coalesced (the answer of an "
            "identical request running at the same time), stored (run and kept), miss (run, not kept).",
            ["result"], registry=r)
        # What an autoscaler follows (deploy/k8s/hpa.yaml): summed over a pod's live workers.
        self.active_requests = Gauge(
            "http_server_active_requests", "HTTP requests the gateway is serving now (all routes).",
            registry=r, multiprocess_mode="livesum")
        self.graphql_errors = Counter(
            "balance_gateway_graphql_errors_total", "Errors returned in GraphQL responses, by extensions.code.",
            ["code"], registry=r)
        self.shared = worker_metrics.enabled()   # one view over several worker processes
        self._live = _LiveState(clients or {})
        if self.shared:
            self._published = _PublishedLiveState(self._live, r)
        else:
            r.register(self._live)

    def watch_plan_fallbacks(self, counts: Mapping[str, int]) -> None:
        """The execution engine's count of operations handed back to graphql-core, by reason."""
        if self.shared:
            self._published.watch_plan_fallbacks(counts)
        else:
            self.registry.register(_PlanFallbacks(counts))

    def publish_live_state(self) -> None:
        """Shared view: write this worker's live state where every worker's scrape reads it."""
        if self.shared:
            self._published.publish()

    @classmethod
    def attach(cls, clients: dict[Any, Any]) -> "GatewayMetrics":
        metrics = cls(clients)
        for client in clients.values():
            client.upstream.metrics = metrics
        return metrics

    # -- recorded by gateway.upstream.Upstream -----------------------------------
    def upstream_answered(self, source: SourceId, status: int, started: float) -> None:
        self.upstream_duration.labels(source.value, str(status)).observe(time.perf_counter() - started)
        if status >= 400:
            self.upstream_errors.labels(source.value, code_for_status(source, status)).inc()

    def upstream_failed(self, source: SourceId, error: UpstreamError, started: float) -> str:
        """A call that raised (no usable response); returns the `status` label it was filed under."""
        status = str(error.status) if error.status else _ERROR_KIND.get(error.code.value, "error")
        self.upstream_duration.labels(source.value, status).observe(time.perf_counter() - started)
        self.upstream_errors.labels(source.value, error.code.value).inc()
        return status

    def upstream_cancelled(self, source: SourceId, started: float) -> None:
        self.upstream_duration.labels(source.value, "cancelled").observe(time.perf_counter() - started)

    def rejected(self, source: SourceId, reason: str) -> None:
        self.upstream_rejected.labels(source.value, reason).inc()

    def cache(self, source: SourceId, result: str) -> None:
        self.cache_requests.labels(source.value, result).inc()

    # -- recorded by the app --------------------------------------------------------
    def request_overhead(self, total_s: float, waits: list[tuple[float, float]]) -> None:
        self.overhead.observe(max(0.0, total_s - busy_time(waits)))

    def response_cache(self, result: str) -> None:
        self.response_cache_total.labels(result).inc()

    def count_graphql_errors(self, errors: Iterable[dict[str, Any]]) -> None:
        for error in errors:
            code = (error.get("extensions") or {}).get("code")
            self.graphql_errors.labels(code if isinstance(code, str) and _CODE.match(code) else "OTHER").inc()

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics: Prometheus text format (OpenMetrics when the scraper asks for it)."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        if self.shared:
            self.publish_live_state()
            registry = worker_metrics.merged_registry()
        else:
            registry = self.registry
        return Response(encode(registry), media_type=None, headers={"content-type": content_type})


def code_for_status(source: SourceId, status: int) -> str:
    """The gateway's code for an upstream HTTP error status (the sources' default mapping)."""
    return status_code_error(source, status).code.value


class _LiveState(Collector):
    """Per-source gauges read from the breakers and limiters when Prometheus scrapes."""

    def __init__(self, clients: dict[Any, Any]):
        self.clients = clients

    def collect(self) -> Iterator[GaugeMetricFamily]:
        breaker = GaugeMetricFamily("balance_gateway_breaker_state",
                                    "Circuit breaker per source: 0 closed, 1 half-open, 2 open.", labels=["source"])
        inflight = GaugeMetricFamily("balance_gateway_inflight_upstream_requests",
                                     "Upstream HTTP calls in flight now, per source.", labels=["source"])
        queued = GaugeMetricFamily("balance_gateway_queued_upstream_requests",
                                   "Upstream calls waiting for a concurrency slot now, per source.", labels=["source"])
        for source, client in self.clients.items():
            upstream = client.upstream
            breaker.add_metric([source.value], _BREAKER_VALUE.get(upstream.breaker.state.value, 2))
            inflight.add_metric([source.value], upstream.limiter.in_flight)
            queued.add_metric([source.value], upstream.limiter.waiting)
        yield breaker
        yield inflight
        yield queued


class _PublishedLiveState:
    """The live-state gauges as multiprocess gauges, one series per worker (`pid`), written
    from the live objects by `publish` (worker_metrics.publish_every, and before a scrape)."""

    def __init__(self, live: _LiveState, registry: CollectorRegistry):
        self.live = live
        self.gauges: dict[str, Gauge] = {}
        for family in live.collect():
            self.gauges[family.name] = Gauge(family.name, family.documentation, ["source"],
                                             multiprocess_mode="liveall", registry=registry)
        self._registry = registry
        self._fallbacks: Counter | None = None
        self._fallback_counts: Mapping[str, int] = {}
        self._fallbacks_published: dict[str, int] = {}

    def watch_plan_fallbacks(self, counts: Mapping[str, int]) -> None:
        self._fallback_counts = counts
        self._fallbacks = Counter("balance_gateway_plan_fallbacks", _PLAN_FALLBACKS_HELP, ["reason"],
                                  registry=self._registry)
        for reason in _PLAN_FALLBACK_REASONS:
            self._fallbacks.labels(reason)

    def publish(self) -> None:
        for family in self.live.collect():
            gauge = self.gauges[family.name]
            for sample in family.samples:
                gauge.labels(sample.labels["source"]).set(sample.value)
        if self._fallbacks is not None:
            for reason in _PLAN_FALLBACK_REASONS:
                now = self._fallback_counts.get(reason, 0)
                grown = now - self._fallbacks_published.get(reason, 0)
                if grown > 0:
                    self._fallbacks.labels(reason).inc(grown)
                    self._fallbacks_published[reason] = now


_PLAN_FALLBACK_REASONS = ("bail", "error")
_PLAN_FALLBACKS_HELP = (
    "Operations whose compiled selection plans handed back to graphql-core (same answer, slower): "
    "bail (a value off the happy path: an error, a null, a refused scalar), error (an exception while completing: "
    "a resolver's, a scalar's).")


class _PlanFallbacks(Collector):
    def __init__(self, counts: Mapping[str, int]):
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("balance_gateway_plan_fallbacks", _PLAN_FALLBACKS_HELP, labels=["reason"])
        for reason in _PLAN_FALLBACK_REASONS:
            family.add_metric([reason], self.counts.get(reason, 0))
        yield family


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    busy, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            busy += end - max(start, reached)
            reached = end
    return busy


class RequestMetrics:
    """ASGI middleware: `http_server_request_duration_seconds` for every HTTP request.

    The route label is the matched route's template (Starlette puts the route in the scope),
    never the raw path, so scanners cannot blow up the series count.
    """

    def __init__(self, app: Any, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500   # if the app raises before answering, the server error handler sends a 500
        self.metrics.active_requests.inc()

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.active_requests.dec()
            route = scope.get("route")
            method = scope.get("method", "")
            self.metrics.http_duration.labels(
                getattr(route, "path", "") if route is not None else "",
                method if method in _METHODS else "_OTHER", str(status),
            ).observe(time.perf_counter() - started)


_DETACHED: GatewayMetrics | None = None


def detached() -> GatewayMetrics:
    """Instruments for an Upstream built outside an app (unit tests): recorded, never served."""
    global _DETACHED
    if _DETACHED is None:
        _DETACHED = GatewayMetrics()
    return _DETACHED
