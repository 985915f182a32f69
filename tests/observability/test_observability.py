"""Observability end to end: /metrics, JSON logs with the request id, optional OpenTelemetry spans.

Simulators and gateways are real uvicorn servers on loopback; faults are injected into the
simulators. Each test builds its own gateway: metrics are per app, so values are exact.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.observability import tracing
from gateway.server.app import create_app
from gateway.config import GatewayConfig
from gateway.observability.logs import make_handler
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.control import Fault
from gateway.simulation.world import World
from tests.conftest import GraphQLClient

STATUS = """query Portfolio { viewer { sources { source state error { code } }
  holdings(first: 200) { totalCount } } }"""
NO_LIMITS = {"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000}
OTHERS = [Source.CALICO, Source.CRYPTOFUSE, Source.ONEBALANCE, Source.DALP]


# -- helpers -------------------------------------------------------------------------------

def _config(world: World, sims_url: str, sources: dict[str, Any] | None = None,
            per_source: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    raw = world.config_dict(sims_url, limits=NO_LIMITS, **overrides)
    for name, block in raw["sources"].items():
        block.update({"timeout_s": 2.0, "max_retries": 0, "breaker_failures": 1000,
                      **(sources or {}), **(per_source or {}).get(name, {})})
    return raw


@contextlib.contextmanager
def stack(**kwargs: Any) -> Iterator[tuple[World, GraphQLClient, GatewayConfig]]:
    world = World.generate(0, size=6)
    with ServerThread(world.combined_app()) as sims:
        config = GatewayConfig.model_validate(_config(world, sims.url, **kwargs))
        with ServerThread(create_app(config)) as gateway:
            yield world, GraphQLClient(gateway.url), config


def scrape(client: GraphQLClient) -> tuple[str, dict[tuple[str, tuple], float]]:
    response = client.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    return response.text, samples


def val(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def calls(world: World) -> dict[Source, int]:
    return {s: c.requests for s, c in world.controls.items()}


def secrets_of(config: GatewayConfig) -> list[str]:
    """Every SecretStr in the config (gateway keys, upstream api keys and tokens)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
    walk(config)
    assert len(found) >= 4
    return found + ["demo-key", "calico-token-demo"]


def identifiers_of(config: GatewayConfig) -> list[str]:
    """Account ids and upstream identities: never a metric label."""
    account = config.account("demo")
    assert account is not None and account.cobo and account.onebalance
    return [*account.cobo.wallet_uuids, *account.onebalance.accounts, 'account="demo"', 'account_id="demo"']


@contextlib.contextmanager
def captured_json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert line["time"].endswith("Z")
    return lines


# -- /metrics --------------------------------------------------------------------------------

def test_metrics_count_upstream_errors_cache_hits_and_graphql_errors():
    with stack() as (world, client, config):
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        for _ in range(2):
            body = client.query(STATUS)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["UPSTREAM_UNAVAILABLE"]
        bad = client.post("{ viewer { nope } }")
        unauthenticated = client.post(STATUS, key=None)
        assert unauthenticated.status_code == 401
        assert client.http.get("/no/such/path/123").status_code == 404
        c = calls(world)
        text, m = scrape(client)

        # Cobo failed on every call, each one counted once, with its status and our code.
        assert c[Source.COBO] >= 2
        assert val(m, "balance_gateway_upstream_errors_total", source="COBO", code="UPSTREAM_UNAVAILABLE") == c[Source.COBO]
        assert val(m, "balance_gateway_upstream_request_duration_seconds_count", source="COBO", status="503") == c[Source.COBO]
        assert val(m, "balance_gateway_cache_requests_total", source="COBO", result="miss") == c[Source.COBO]
        assert val(m, "balance_gateway_cache_requests_total", source="COBO", result="hit") == 0
        # The others were read once (first request, a miss each) and served from cache the second time.
        for s in OTHERS:
            assert c[s] >= 1
            assert val(m, "balance_gateway_upstream_request_duration_seconds_count", source=s.value, status="200") == c[s]
            assert val(m, "balance_gateway_upstream_request_duration_seconds_sum", source=s.value, status="200") > 0
            assert val(m, "balance_gateway_cache_requests_total", source=s.value, result="miss") == c[s]
            assert val(m, "balance_gateway_cache_requests_total", source=s.value, result="hit") == c[s]
            assert not any(k[0] == "balance_gateway_upstream_errors_total" and ("source", s.value) in k[1] for k in m)
        # GraphQL errors by code: one per failed source per response, one for the bad query.
        assert val(m, "balance_gateway_graphql_errors_total", code="UPSTREAM_UNAVAILABLE") == 2
        assert val(m, "balance_gateway_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
        # HTTP server durations by route template, method and status.
        route = {"http_route": "/graphql", "http_request_method": "POST"}
        assert val(m, "http_server_request_duration_seconds_count", **route, http_response_status_code="200") \
            == 2 + (bad.status_code == 200)
        assert val(m, "http_server_request_duration_seconds_count", **route, http_response_status_code="401") == 1
        assert val(m, "http_server_request_duration_seconds_count", http_route="", http_request_method="GET",
                   http_response_status_code="404") == 1
        assert "/no/such/path" not in text
        # Live gauges: breakers closed (threshold not reached), nothing in flight after the responses.
        for s in Source:
            assert val(m, "balance_gateway_breaker_state", source=s.value) == 0
            assert val(m, "balance_gateway_inflight_upstream_requests", source=s.value) == 0
        _assert_nothing_sensitive(text, config, world)


def test_metrics_for_stale_answers_timeouts_connect_errors_and_an_open_breaker():
    dead = f"http://127.0.0.1:{free_port()}/calico"   # nothing listens there
    with stack(sources={"cache_ttl_s": 0, "max_stale_s": 300},
               per_source={"cobo": {"breaker_failures": 2, "breaker_cooldown_s": 60},
                           "dalp": {"timeout_s": 0.3}, "calico": {"base_url": dead}}) as (world, client, config):
        client.query(STATUS)                                      # Cobo and DALP answers cached
        cobo_ok = calls(world)[Source.COBO]
        dalp_ok = calls(world)[Source.DALP]
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        world.controls[Source.DALP].add_fault(Fault(kind="delay", delay_s=2))
        for _ in range(3):
            body = client.query(STATUS)
            states = {s["source"]: s["state"] for s in body["data"]["viewer"]["sources"]}
            assert states["COBO"] != "FAILED" and states["DALP"] != "FAILED"   # stale stood in
            assert states["CALICO"] == "FAILED"
        c = calls(world)
        _, m = scrape(client)

        # Cobo: two failed calls opened the breaker; the third request made no call at all.
        cobo_failed = c[Source.COBO] - cobo_ok
        assert cobo_failed == 2 * cobo_ok
        assert val(m, "balance_gateway_upstream_errors_total", source="COBO", code="UPSTREAM_UNAVAILABLE") == cobo_failed
        assert val(m, "balance_gateway_upstream_rejected_total", source="COBO", reason="circuit_open") == cobo_ok
        assert val(m, "balance_gateway_breaker_state", source="COBO") == 2
        assert val(m, "balance_gateway_cache_requests_total", source="COBO", result="stale") == 3 * cobo_ok
        assert val(m, "balance_gateway_cache_requests_total", source="COBO", result="miss") == cobo_ok
        # DALP: timeouts, filed under status="timeout" and UPSTREAM_TIMEOUT, served stale.
        dalp_timeouts = c[Source.DALP] - dalp_ok
        assert dalp_timeouts == 3 * dalp_ok
        assert val(m, "balance_gateway_upstream_request_duration_seconds_count", source="DALP", status="timeout") \
            == dalp_timeouts
        assert val(m, "balance_gateway_upstream_errors_total", source="DALP", code="UPSTREAM_TIMEOUT") == dalp_timeouts
        assert val(m, "balance_gateway_cache_requests_total", source="DALP", result="stale") == dalp_timeouts
        # Calico: connection refused every time, nothing cached to stand in.
        refused = val(m, "balance_gateway_upstream_request_duration_seconds_count", source="CALICO", status="connect")
        assert refused >= 4 and refused % 4 == 0
        assert val(m, "balance_gateway_upstream_errors_total", source="CALICO", code="UPSTREAM_UNAVAILABLE") == refused
        assert val(m, "balance_gateway_cache_requests_total", source="CALICO", result="miss") == refused
        # The requests' errors: Calico on each of the four.
        assert val(m, "balance_gateway_graphql_errors_total", code="UPSTREAM_UNAVAILABLE") == 4
        assert val(m, "balance_gateway_breaker_state", source="DALP") == 0


def test_overhead_histogram_excludes_the_time_spent_waiting_for_upstreams():
    """balance_gateway_overhead_seconds: request time minus upstream waits (apollo.router.overhead)."""
    with stack(cache={"enabled": False}) as (world, client, _):
        for control in world.controls.values():
            control.latency_s = 0.25
        started = time.perf_counter()
        assert "errors" not in client.query("{ viewer { holdings(first: 5) { totalCount } } }")
        elapsed = time.perf_counter() - started
        _, samples = scrape(client)
        count = val(samples, "balance_gateway_overhead_seconds_count")
        total = val(samples, "balance_gateway_overhead_seconds_sum")
        assert count == 1 and elapsed >= 0.25
        # Every source waited 250 ms in parallel; what is left is the gateway's own time.
        assert 0 < total < 0.1, total
        assert val(samples, "balance_gateway_overhead_seconds_bucket", le="0.1") == 1
        # With nothing upstream to wait for, the whole request is overhead.
        client.query("{ viewer { id } }")
        _, samples = scrape(client)
        assert val(samples, "balance_gateway_overhead_seconds_count") == 2


def test_inflight_gauge_counts_calls_waiting_on_a_slow_upstream():
    with stack(cache={"enabled": False}) as (world, client, _):
        world.controls[Source.ONEBALANCE].latency_s = 1.0
        thread = threading.Thread(target=client.query, args=(STATUS,))
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while True:
                _, m = scrape(client)
                if val(m, "balance_gateway_inflight_upstream_requests", source="ONEBALANCE") >= 1:
                    break
                assert time.monotonic() < deadline, "no in-flight OneBalance call seen"
                time.sleep(0.05)
        finally:
            thread.join()
        _, m = scrape(client)
        assert val(m, "balance_gateway_inflight_upstream_requests", source="ONEBALANCE") == 0


def _assert_nothing_sensitive(text: str, config: GatewayConfig, world: World) -> None:
    for secret in secrets_of(config):
        assert secret not in text, "a credential leaked into /metrics"
    for identifier in identifiers_of(config):
        assert identifier not in text
    assert "127.0.0.1" not in text and "?" not in text.replace("# HELP", "")   # no URL, no query string
    allowed = {"source": {s.value for s in Source},
               "http_request_method": {"GET", "POST", "_OTHER"}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in allowed:
                    assert value in allowed[label], (label, value)
                elif label in ("code", "status", "result", "http_response_status_code", "reason"):
                    assert value.replace("_", "").isalnum(), (label, value)


# -- logs --------------------------------------------------------------------------------------

def test_json_logs_carry_the_request_id_of_a_failing_request_and_no_credentials():
    with stack(cache={"enabled": False}) as (world, client, config), captured_json_logs() as stream:
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
        response = client.post(STATUS)
        assert response.status_code == 200 and response.json()["errors"]
        request_id = response.headers["x-request-id"]
        # and a caller-chosen id is kept (and logged) as is; another status, so its line is
        # not an identical one (those are logged at most every 10 s: tests/observability/test_log_throttle.py)
        world.controls[Source.COBO].faults.clear()
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=502))
        response2 = client.post(STATUS, headers={"x-request-id": "trace-me-42"})
        assert response2.headers["x-request-id"] == "trace-me-42"
        time.sleep(0.1)
        text = stream.getvalue()
    lines = json_lines(text)
    failing = [line for line in lines if "upstream failed" in line["message"] and "COBO" in line["message"]]
    assert [line["request_id"] for line in failing] == [request_id, "trace-me-42"], failing
    assert failing[0]["level"] == "WARNING" and failing[0]["logger"] == "gateway.sources"
    assert "UPSTREAM_UNAVAILABLE" in failing[0]["message"]
    for secret in secrets_of(config):
        assert secret not in text, "a credential leaked into the logs"
    assert "injected fault" not in text   # the upstream's error body


def test_cli_serves_metrics_and_logs_json_lines_with_the_request_id(tmp_path):
    world = World.generate(0, size=4)
    with ServerThread(world.combined_app()) as sims:
        raw = _config(world, sims.url)
        config_file = tmp_path / "gateway.toml"
        from gateway.simulation.world import to_toml
        config_file.write_text(to_toml(raw))
        world.controls[Source.COBO].add_fault(Fault(kind="status", status=502))
        with _gateway_process(config_file, {}) as (url, read_output):
            response = httpx.post(url + "/graphql", json={"query": STATUS},
                                  headers={"authorization": "Bearer demo-key"}, timeout=30)
            request_id = response.headers["x-request-id"]
            assert response.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
            metrics = httpx.get(url + "/metrics").text
            assert 'balance_gateway_upstream_errors_total{code="UPSTREAM_UNAVAILABLE",source="COBO"} 1.0' in metrics
            assert "http_server_request_duration_seconds_bucket" in metrics
        output = read_output()
    lines = json_lines(output)   # every line is a JSON object, uvicorn's own included
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    failing = [line for line in lines if line.get("request_id") == request_id]
    assert any("upstream failed source=COBO" in line["message"] for line in failing), lines
    for secret in secrets_of(GatewayConfig.model_validate(raw)):
        assert secret not in output


@contextlib.contextmanager
def _gateway_process(config_file: Any, env_extra: dict[str, str], log_format: str = "json"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GATEWAY_"))}
    env.update(env_extra)
    for _ in range(3):   # another process on this machine may take the free port first
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config_file),
                                 "--port", str(port), "--log-format", log_format],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        if _wait_healthy(proc, url):
            break
        err = proc.stderr.read()
        assert "address already in use" in err.lower(), err
    else:
        pytest.fail("gateway did not start: its port was taken three times")
    output: list[str] = []
    try:
        yield url, lambda: "".join(output)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        output.append(err)


def _wait_healthy(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.1)
    return False


# -- tracing -----------------------------------------------------------------------------------

def test_without_an_endpoint_opentelemetry_is_never_imported():
    script = """
import sys, httpx
from gateway.server.app import create_app
from gateway.config import GatewayConfig
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
world = World.generate(0, size=2)
with ServerThread(world.combined_app()) as sims:
    raw = world.config_dict(sims.url)
    with ServerThread(create_app(GatewayConfig.model_validate(raw))) as gw:
        r = httpx.post(gw.url + "/graphql", json={"query": "{ viewer { id } }"},
                       headers={"authorization": "Bearer demo-key"}, timeout=30)
        assert r.status_code == 200, r.text
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_spans_per_operation_and_upstream_call_with_the_callers_trace():
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is optional (pip install '.[otel]')")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tracing.use(provider)
    try:
        with stack(cache={"enabled": False}) as (world, client, config), captured_json_logs() as stream:
            world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
            body = client.post(
                STATUS, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}).json()
            assert body["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
            c = calls(world)
            logged = stream.getvalue()
    finally:
        tracing.use(None)
    spans = exporter.get_finished_spans()
    operation = [s for s in spans if s.name == "query Portfolio"]
    assert len(operation) == 1
    op = operation[0]
    assert f"{op.context.trace_id:032x}" == trace_id and f"{op.parent.span_id:016x}" == parent_id
    assert op.attributes["graphql.operation.name"] == "Portfolio" and op.attributes["graphql.operation.type"] == "query"
    upstream = [s for s in spans if s.name.startswith("GET ")]
    by_source = {s.value: [u for u in upstream if u.attributes["balance_gateway.source"] == s.value] for s in Source}
    for s in Source:
        assert len(by_source[s.value]) == c[s], s
    for span in upstream:
        assert span.context.trace_id == op.context.trace_id   # children of the operation's trace
        assert span.attributes["server.address"] == "127.0.0.1"
    cobo = by_source["COBO"][0]
    assert cobo.attributes["http.response.status_code"] == 503 and cobo.attributes["error.type"] == "503"
    assert cobo.status.status_code.name == "ERROR"
    assert by_source["DALP"][0].attributes["http.response.status_code"] == 200
    # Nothing sensitive on any span: no URL path or query, no credentials.
    dumped = json.dumps([{"name": s.name, "attributes": dict(s.attributes or {}),
                          "events": [dict(e.attributes or {}) for e in s.events]} for s in spans])
    for secret in secrets_of(config) + identifiers_of(config):
        assert secret not in dumped
    assert "/cobo" not in dumped and "?" not in dumped
    # The log line of the failure carries the trace id too.
    failing = [line for line in json_lines(logged) if "upstream failed source=COBO" in line["message"]]
    assert failing and failing[0]["trace_id"] == trace_id


def test_spans_are_exported_over_otlp_http_when_the_endpoint_is_set(tmp_path):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="OTLP exporter is optional")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[bytes] = []

    async def traces(request: Request) -> Response:
        received.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    collector = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    world = World.generate(0, size=4)
    with ServerThread(collector) as otlp, ServerThread(world.combined_app()) as sims:
        raw = _config(world, sims.url, observability={"otlp_endpoint": otlp.url, "service_name": "gw-under-test"})
        config_file = tmp_path / "gateway.toml"
        from gateway.simulation.world import to_toml
        config_file.write_text(to_toml(raw))
        with _gateway_process(config_file, {"OTEL_BSP_SCHEDULE_DELAY": "100"}) as (url, read_output):
            response = httpx.post(url + "/graphql", json={"query": STATUS, "operationName": "Portfolio"},
                                  headers={"authorization": "Bearer demo-key"}, timeout=30)
            assert response.status_code == 200
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.1)
        output = read_output()
    spans, services = [], set()
    for blob in received:
        export = ExportTraceServiceRequest.FromString(blob)
        for resource_spans in export.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    assert services == {"gw-under-test"}
    names = [s.name for s in spans]
    assert "query Portfolio" in names
    assert {f"GET {s.value}" for s in Source} <= set(names)
    assert len({s.trace_id for s in spans}) == 1
    blob = b"".join(received)
    for secret in secrets_of(GatewayConfig.model_validate(raw)):
        assert secret.encode() not in blob
    assert "tracing on" in output and otlp.url not in output   # the endpoint itself is never logged


# -- small pieces ------------------------------------------------------------------------------

@pytest.mark.parametrize("query, name, expected", [
    ("query Portfolio { viewer { id } }", None, ("query", "Portfolio")),
    ("{ viewer { id } }", None, ("query", None)),
    ("# hi\nquery A { a } query B { b }", "B", ("query", "B")),
    ("query A { a }", "no such-name!", ("query", "A")),
    ("garbage", None, (None, None)),
])
def test_operation_type_and_name_for_span_names(query, name, expected):
    assert tracing.describe_operation(query, name) == expected


def test_graphql_error_codes_outside_our_vocabulary_are_filed_as_other():
    from gateway.observability.metrics import GatewayMetrics
    metrics = GatewayMetrics()
    metrics.count_graphql_errors([{"extensions": {"code": "BAD_USER_INPUT"}}, {"extensions": {"code": "x=1&key=s3cret"}},
                                  {"message": "no extensions"}])
    samples = {tuple(sorted(s.labels.items())): s.value for f in metrics.registry.collect() for s in f.samples
               if s.name == "balance_gateway_graphql_errors_total"}
    assert samples == {(("code", "BAD_USER_INPUT"),): 1.0, (("code", "OTHER"),): 2.0}


def test_metrics_endpoint_can_be_turned_off_and_speaks_openmetrics_when_asked():
    with stack(observability={"metrics": False}) as (_, client, _config):
        assert client.http.get("/metrics").status_code == 404
    with stack() as (_, client, _config):
        response = client.http.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")


def test_busy_time_is_the_length_of_the_union_of_intervals():
    from gateway.observability.metrics import busy_time
    assert busy_time([]) == 0
    assert busy_time([(5.0, 6.0), (0.0, 2.0), (1.0, 3.0), (1.5, 2.5)]) == 4.0


def test_metrics_expose_the_engines_fallbacks_to_graphql_core():
    from gateway.engine.execution import PLAN_FALLBACKS
    with stack() as (_, client, _config):
        _, samples = scrape(client)
        assert val(samples, "balance_gateway_plan_fallbacks_total", reason="bail") == PLAN_FALLBACKS["bail"]
        PLAN_FALLBACKS["bail"] += 1       # as a bail would
        try:
            _, samples = scrape(client)
            assert val(samples, "balance_gateway_plan_fallbacks_total", reason="bail") == PLAN_FALLBACKS["bail"]
            assert ("balance_gateway_plan_fallbacks_total", (("reason", "error"),)) in samples
        finally:
            PLAN_FALLBACKS["bail"] -= 1
