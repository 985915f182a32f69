"""Optional OpenTelemetry tracing: a span per GraphQL operation and per upstream HTTP call.

On only when an OTLP endpoint is configured (`[observability] otlp_endpoint`, or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and the SDK is installed
(`pip install 'balance-gateway[otel]'`). Otherwise nothing here imports OpenTelemetry and every
helper returns one shared no-op context manager.

Span attributes are chosen, never copied: source, method, host, HTTP status, error kind and
code. No URL path or query (they carry wallet ids and addresses), no header, no body.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Mapping
from urllib.parse import urlsplit

log = logging.getLogger("gateway.tracing")

_tracer: Any = None                      # an opentelemetry Tracer while tracing is on
_NOOP = contextlib.nullcontext(None)     # reusable: `with _NOOP as span` gives span=None
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")   # a GraphQL operation name
_OPERATION = re.compile(r"\b(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]{0,99})")


def enabled() -> bool:
    return _tracer is not None


def configure(otlp_endpoint: str | None = None, service_name: str = "balance-gateway") -> bool:
    """Turn tracing on if an endpoint is configured and the SDK is importable; idempotent."""
    env = os.environ
    if not (otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    if _tracer is not None:
        return True   # one tracer provider per process
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("an OTLP endpoint is set but opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http "
                    "are not installed: tracing stays off")
        return False
    # OTEL_SERVICE_NAME, when set, wins over our default name.
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
    provider = TracerProvider(resource=resource)
    # A configured endpoint is the collector's base URL, like OTEL_EXPORTER_OTLP_ENDPOINT;
    # without one the exporter reads the standard variables itself.
    exporter = OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint)) if otlp_endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use(provider)
    log.info("tracing on: spans are exported over OTLP/HTTP")   # never the endpoint: it may embed a token
    return True


def use(provider: Any) -> None:
    """Trace with this TracerProvider (tests pass one with an in-memory exporter); None turns tracing off."""
    global _tracer
    _tracer = provider.get_tracer("balance_gateway") if provider is not None else None


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


# -- spans ----------------------------------------------------------------------------

def describe_operation(query: str | None, operation_name: str | None) -> tuple[str | None, str | None]:
    """(operation type, name) for the span, without parsing: the named (or first) operation
    in the document. A cheap scan of the text; the name is kept only if it is a valid name."""
    name = operation_name if operation_name and _NAME.match(operation_name) else None
    text = (query or "")[:20_000]
    if text.lstrip().startswith("{"):
        return "query", name          # the query shorthand is an anonymous query
    for match in _OPERATION.finditer(text):
        if name is None or match.group(2) == name:
            return match.group(1), match.group(2)
    return None, name


def graphql_operation(query: str | None, operation_name: str | None, headers: Mapping[str, str]) -> Any:
    """Span around one GraphQL operation, child of the caller's `traceparent` if it sent one.
    Named as OpenTelemetry's GraphQL conventions say: "query Portfolio", "query", "GraphQL Operation"."""
    if _tracer is None:
        return _NOOP
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind
    kind, name = describe_operation(query, operation_name)
    attributes = {k: v for k, v in (("graphql.operation.type", kind), ("graphql.operation.name", name)) if v}
    span_name = " ".join(p for p in (kind, name) if p) if kind else "GraphQL Operation"
    return _tracer.start_as_current_span(span_name, context=extract(headers), kind=SpanKind.SERVER,
                                         attributes=attributes, record_exception=False, set_status_on_exception=False)


def upstream_call(source: Any, url: str) -> Any:
    """Span around one upstream HTTP call (one attempt)."""
    if _tracer is None:
        return _NOOP
    from opentelemetry.trace import SpanKind
    parts = urlsplit(url)
    attributes: dict[str, Any] = {"balance_gateway.source": source.value, "http.request.method": "GET",
                                  "server.address": parts.hostname or ""}
    if parts.port:
        attributes["server.port"] = parts.port
    return _tracer.start_as_current_span(f"GET {source.value}", kind=SpanKind.CLIENT, attributes=attributes,
                                         record_exception=False, set_status_on_exception=False)


def answered(span: Any, status: int) -> None:
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        _error(span, str(status))


def failed(span: Any, kind: str, code: str) -> None:
    """The call raised: `kind` is the HTTP status or timeout/connect, `code` our error code."""
    if span is not None:
        if kind.isdigit():
            span.set_attribute("http.response.status_code", int(kind))
        span.set_attribute("balance_gateway.error.code", code)
        _error(span, kind)


def graphql_result(span: Any, error_count: int) -> None:
    if span is not None and error_count:
        span.set_attribute("graphql.errors", error_count)


def _error(span: Any, kind: str) -> None:
    from opentelemetry.trace import Status, StatusCode
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when not tracing."""
    if _tracer is None:
        return None
    from opentelemetry import trace
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class TracedOperations:
    """Mix into the strawberry view (before GraphQL): one span per executed operation."""

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        if _tracer is None:
            return await super().execute_single(*args, **kwargs)   # type: ignore[misc]
        data, request = kwargs.get("request_data"), kwargs.get("request")
        with graphql_operation(getattr(data, "query", None), getattr(data, "operation_name", None),
                               getattr(request, "headers", {})) as span:
            result = await super().execute_single(*args, **kwargs)   # type: ignore[misc]
            graphql_result(span, len(getattr(result, "errors", None) or []))
            return result
