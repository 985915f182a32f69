"""The ASGI app: /graphql (POST and GET, GraphiQL on a browser GET) and /health.

Request flow: SecurityGate (size, CSRF, who is calling, rate limit) → strawberry view
(persisted queries, parse, validate, operation limits, execute with a per-request
context holding fresh dataloaders) → process_result (our error shapes, one entry per
failed upstream source) → orjson.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from gateway.observability import tracing, worker_metrics
from gateway.policy import json_depth
from gateway.support import safe_json
from gateway.upstream.response_cache import build_cache
from gateway.fx.provider import FxProvider
from gateway.fx.rates import FxTable
from gateway.history.service import History
from resolvers.snapshot_refresh import refresh_forever
from gateway.config import GatewayConfig
from gateway.domain.errors import ClientCode
from gateway.server.gate import SecurityGate
from gateway.server.graphiql import ASSETS_ROUTE, graphiql_page, graphiql_routes
from gateway.server.http_headers import SecurityHeaders, slash_redirects
from gateway.upstream.http import make_http_client
from gateway.upstream.redis_client import build_redis_client
from gateway.live.hub import LiveHub
from gateway.policy.auth import Authenticator, AuthError
from gateway.server.live_transport import GatewayTransportWSHandler, TextFrames, credential_from_payload
from gateway.observability.metrics import GatewayMetrics, RequestMetrics
from gateway.policy.persisted_queries import PersistedQueries
from gateway.policy.rate_limit import RateLimiter
from gateway.domain.tokens import TokenRegistry
from gateway.engine.execution import PLAN_FALLBACKS
from gateway.upstream.resilience import BreakerState, Deadline
from gateway.policy.kept_responses import KeptResponses
from gateway.policy.response_reuse import ResponseReuse
from gateway.sources import build_clients
from gateway.accounts.service import build_registry, forget_changed_accounts
from resolvers.context import GatewayState, RequestContext
from resolvers.loaders import Loaders
from schema import schema as default_schema

log = logging.getLogger("gateway.app")

DEMO_KEY = "demo-key"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


def _response_media_type(request: Request) -> str:
    """GraphQL over HTTP: answer in application/graphql-response+json when the client
    prefers it to application/json (or only accepts it); application/json otherwise."""
    accept = request.headers.get("accept", "")
    preferred, legacy = accept.find(GRAPHQL_RESPONSE_JSON), accept.find("application/json")
    return GRAPHQL_RESPONSE_JSON if preferred != -1 and (legacy == -1 or preferred < legacy) else "application/json"


class CodedHTTPException(HTTPException):
    """A malformed HTTP request answered with its own `extensions.code` (not BAD_REQUEST)."""

    def __init__(self, status_code: int, reason: str, code: ClientCode):
        super().__init__(status_code, reason)
        self.code = code.value


class GatewayGraphQL(tracing.TracedOperations, GraphQL):   # a span per operation when tracing is on
    """Strawberry's ASGI view with our context, error shapes, JSON encoder and GraphiQL page.
    Subscriptions: graphql-transport-ws on this path (gateway/server/live_transport.py) and
    multipart HTTP (Apollo's subscriptionSpec 1.0, strawberry's own)."""

    graphql_transport_ws_handler_class = GatewayTransportWSHandler
    websocket_adapter_class = TextFrames

    def __init__(self, state: GatewayState, *, graphiql: bool, persisted: PersistedQueries):
        super().__init__(default_schema, graphql_ide="graphiql" if graphiql else None,
                         allow_queries_via_get=True,
                         # graphql-transport-ws (not the legacy graphql-ws) and Apollo's multipart HTTP
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
                         max_subscriptions_per_connection=state.config.live.max_subscriptions_per_key,
                         allowed_origins=state.config.server.cors_origins)   # browsers on other origins
        self.state = state
        self.persisted = persisted
        self._graphiql = graphiql_page(DEMO_KEY if state.config.demo else None)
        self.auth = Authenticator(state)
        self.ws_keep_alive_s = state.config.live.keep_alive_s

    async def get_context(self, request: Any, response: Any = None) -> RequestContext:
        deadline = Deadline.after(self.state.config.server.request_deadline_s)
        ctx = RequestContext(state=self.state, caller=getattr(request.state, "caller", None),
                             is_admin=getattr(request.state, "is_admin", False), loaders=None,
                             request_id=getattr(request.state, "request_id", ""), deadline=deadline,
                             actor=getattr(request.state, "client_id", ""),
                             ledger=getattr(request.state, "ledger", None),
                             client_id=getattr(request.state, "client_id", ""),
                             still_authorized=getattr(request.state, "still_authorized", None))
        ctx.loaders = Loaders(self.state.clients, ctx.fetch_options, ctx.default_options)
        request.state.ctx = ctx
        request.state.sub_response = response
        return ctx

    async def on_ws_connect(self, context: RequestContext) -> Any:
        """graphql-transport-ws: the key in connection_init's payload, checked as the gate checks headers."""
        credential = credential_from_payload(context.connection_params)
        if credential is None:
            raise ConnectionRejectionError()
        try:
            caller = self.auth.identify(credential)
        except AuthError:
            raise ConnectionRejectionError() from None
        context.caller, context.is_admin, context.client_id = caller.account, caller.is_admin, caller.client_id
        context.still_authorized = self.still_authorized(credential)
        return UNSET

    def still_authorized(self, credential: str) -> Any:
        """Asked before each live event: the subscription ends once the key no longer authenticates."""
        def check() -> bool:
            try:
                self.auth.identify(credential)
            except AuthError:
                return False
            return True
        return check

    def operation_context(self, connection: RequestContext) -> RequestContext:
        """A context of its own for one operation on a WebSocket (same caller, fresh state)."""
        ctx = RequestContext(state=self.state, caller=connection.caller, is_admin=connection.is_admin, loaders=None,
                             request_id=connection.request_id,
                             deadline=Deadline.after(self.state.config.server.request_deadline_s),
                             client_id=connection.client_id, still_authorized=connection.still_authorized)
        ctx.loaders = Loaders(self.state.clients, ctx.fetch_options, ctx.default_options)
        return ctx

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(self._graphiql.html, headers=self._graphiql.headers)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """Strawberry answers malformed HTTP (bad JSON, wrong method, batching) in plain text;
        clients get the same GraphQL-shaped JSON error as everything else."""
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            code = getattr(exc, "code", None) or ("METHOD_NOT_ALLOWED" if exc.status_code == 405 else
                                                  "NOT_FOUND" if exc.status_code == 404 else "BAD_REQUEST")
            return Response(safe_json.dumps({"errors": [{"message": exc.reason, "extensions": {"code": code}}]}),
                            status_code=exc.status_code, media_type="application/json")

    async def parse_http_body(self, request: Any) -> Any:
        try:
            return await super().parse_http_body(request)
        except (AttributeError, TypeError):   # valid JSON that is not an object: 0, "x", null
            raise HTTPException(400, "the request body must be a JSON object") from None
        except UnicodeDecodeError:
            raise HTTPException(400, "the request body must be UTF-8 JSON") from None

    def decode_json(self, data: str | bytes) -> object:
        """The POST body, and GET `variables` / `extensions`: nesting is bounded before
        json.loads, whose recursion a deep enough text would exhaust."""
        limit = self.state.config.limits.max_json_depth
        problem = json_depth.nesting_problem(data, limit)
        if problem == json_depth.TOO_DEEP:
            raise CodedHTTPException(400, f"the JSON nests more than {limit} levels of objects and arrays",
                                     ClientCode.MAX_JSON_DEPTH)
        if problem is not None:
            raise json.JSONDecodeError("unbalanced brackets", "", 0)   # strawberry answers: not JSON
        return json.loads(data)

    async def execute_single(self, request: Any, request_adapter: Any, sub_response: Any, context: Any,
                             root_value: Any, request_data: Any) -> Any:
        """Persisted queries first: a hash becomes its query, or the request is answered here."""
        query, refusal = await self.persisted.resolve(request_data.query, request_data.extensions)
        if refusal is not None:
            return ExecutionResult(data=None, errors=[GraphQLError(refusal.message, extensions={"code": refusal.code})])
        ledger = getattr(request.state, "ledger", None)
        if ledger is not None and request_data.query is not None and _registers_persisted_query(request_data.extensions):
            ledger.uncacheable = True   # an APQ registration must happen every time it is sent
        if query != request_data.query:
            request_data = dataclasses.replace(request_data, query=query)
        return await super().execute_single(request=request, request_adapter=request_adapter,
                                            sub_response=sub_response, context=context,
                                            root_value=root_value, request_data=request_data)

    def encode_json(self, data: object) -> bytes:
        return safe_json.dumps(data)   # messages may quote what the client sent, lone surrogates included

    def _handle_errors(self, errors: list[GraphQLError], response_data: Any) -> None:
        pass  # logged (without secrets or bodies) in process_result

    async def process_result(self, request: Request, result: ExecutionResult) -> dict[str, Any]:
        ctx: RequestContext | None = getattr(request.state, "ctx", None)
        request_id = getattr(request.state, "request_id", "")
        errors = [self._format_error(e, request_id) for e in result.errors or []]
        if ctx is not None:
            errors.extend(self._format_error(e, request_id) for e in ctx.extra_errors)
            for problem in ctx.upstream_problems.values():
                errors.append({"message": problem.message,
                               "extensions": {"code": problem.code, "source": problem.source.value,
                                              "account": problem.account_id}})
        # A request error (parse, validation, variables, limits) never started execution:
        # no `data` entry, and 400 for clients that speak application/graphql-response+json.
        request_error = result.data is None and bool(errors)
        body: dict[str, Any] = {} if request_error else {"data": result.data}
        if errors:
            body["errors"] = errors
            self.metrics.count_graphql_errors(errors)   # observability: balance_gateway_graphql_errors_total
        request.state.clean_result = not errors   # a response with errors is never kept (gate.py)
        sub_response = getattr(request.state, "sub_response", None)
        if sub_response is not None:
            sub_response.gateway_media_type = _response_media_type(request)
            if request_error and sub_response.gateway_media_type == GRAPHQL_RESPONSE_JSON:
                sub_response.status_code = 400
        return body

    def create_response(self, response_data: Any, sub_response: Any) -> Any:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "gateway_media_type", None)
        if media_type:
            response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response

    @staticmethod
    def _format_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
        original = error.original_error
        if original is not None and not isinstance(original, GraphQLError):
            # A bug, not a client mistake: the client gets a request id, the log gets the rest.
            log.error("unexpected error request_id=%s path=%s type=%s", request_id, error.path,
                      type(original).__name__, exc_info=original)
            formatted: dict[str, Any] = {"message": "Internal server error", "path": error.path,
                                         "extensions": {"code": ClientCode.INTERNAL.value, "requestId": request_id}}
            if error.locations:
                formatted["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
            return formatted
        formatted = error.formatted
        extensions = dict(formatted.get("extensions") or {})
        if "code" not in extensions:
            message = error.message
            if message.startswith("Syntax Error: Document contains more than"):
                extensions["code"] = "MAX_TOKENS_LIMIT"
            elif message.startswith("Syntax Error"):
                extensions["code"] = "GRAPHQL_PARSE_FAILED"
            elif message.startswith("Variable"):
                extensions["code"] = ClientCode.BAD_USER_INPUT.value
            else:
                extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
        formatted["extensions"] = extensions
        return formatted


def _registers_persisted_query(extensions: Any) -> bool:
    return isinstance(extensions, dict) and isinstance(extensions.get("persistedQuery"), dict)


def _redis_client(config: GatewayConfig) -> Any:
    if not config.cache.redis_url:
        return None
    # One server or a cluster. One immediate retry (a connection gone stale, a cluster that
    # failed over since): a request never waits out redis-py's default back-off before its fallback.
    return build_redis_client(config.cache.redis_url.get_secret_value(), timeout_s=0.25, retries=1)


def end_stale_subscriptions(state: GatewayState, account_ids: set[str]) -> None:
    """A registry change seen: subscriptions of a deleted account, or watching an identity it
    no longer links, end now (a revoked key's end at their next poll, when it no longer
    authenticates). A new link is watched by the next subscription, not by the open ones."""
    for account_id in account_ids:
        account = state.account(account_id)
        if account is None:
            state.live.end_account(account_id)
            continue
        linked = {(source, identity) for source, client in state.clients.items() for identity in client.identities(account)}
        state.live.end_where(lambda sub: sub.account_id == account_id and not set(sub.keys) <= linked)


def create_app(config: GatewayConfig, *, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    registry = TokenRegistry.default(config.registry or None)
    http = make_http_client()
    cache = None
    if config.cache.enabled:
        redis_url = config.cache.redis_url.get_secret_value() if config.cache.redis_url else None
        cache = build_cache(redis_url, max_entries=config.cache.max_entries)
    state = GatewayState(config=config, registry=registry, clients=build_clients(config, http, registry, cache),
                         cache=cache, fx=FxTable.from_config(config.fx), history=History.from_config(config))
    accounts = build_registry(config)   # with [store] url: accounts from the database too
    if accounts is not None:
        state.directory, state.registry_admin = accounts.directory, accounts.registry
        for client in state.clients.values():
            client.upstream.scope_of = accounts.directory.cache_scope
    fx_provider = FxProvider(config.fx.provider, http, state.fx, cache) if config.fx.provider else None
    # One Redis connection for what several processes must share beyond the cache:
    # rate-limit buckets and persisted queries.
    shared_redis = _redis_client(config)
    # Live subscriptions: one poller per upstream identity, elected across processes through
    # Redis (its own client: the notice channel blocks on reads longer than the cache's timeout).
    live_redis = build_redis_client(config.cache.redis_url.get_secret_value(), timeout_s=5.0, retries=1) \
        if config.cache.redis_url else None
    state.live = LiveHub(state.clients, floor_s=config.live.min_interval_s,
                         max_per_key=config.live.max_subscriptions_per_key,
                         deadline_s=config.server.request_deadline_s, redis=live_redis)
    rate_limiter = RateLimiter(config.limits.rate_limit_per_s, config.limits.rate_limit_burst, shared_redis,
                               admin_rate=config.limits.admin_rate_limit_per_s,
                               admin_burst=config.limits.admin_rate_limit_burst)
    persisted = PersistedQueries(config.persisted_queries, shared_redis)
    view = GatewayGraphQL(state, graphiql=config.server.graphiql or config.demo, persisted=persisted)
    results = None
    if config.cache.enabled and config.cache.responses:
        results = KeptResponses([c.upstream.breaker for c in state.clients.values()],
                                max_entries=config.cache.max_entries, max_bytes=config.cache.responses_max_bytes)
    reuse = ResponseReuse(view, results, coalesce=config.server.coalesce_identical)
    if accounts is not None:
        accounts.directory.listeners.append(forget_changed_accounts(state.clients, results))
        accounts.directory.listeners.append(lambda changed: end_stale_subscriptions(state, changed))
    graphql = SecurityGate(view, state, rate_limiter, reuse)
    # Observability: per-app Prometheus registry (also attached to every Upstream); tracing if configured.
    view.metrics = reuse.metrics = graphql.metrics = metrics = GatewayMetrics.attach(state.clients)
    metrics.watch_plan_fallbacks(PLAN_FALLBACKS)
    tracing.configure(config.observability.otlp_endpoint, config.observability.service_name)

    async def health(request: Request) -> JSONResponse:
        """Liveness by default; `/health?ready` adds readiness: breakers and the cache."""
        known = len(config.accounts) + (len(accounts.directory.accounts) if accounts is not None else 0)
        body: dict[str, Any] = {"status": "ok", "demo": config.demo, "accounts": known,
                                "sources": [s.value for s in state.clients]}
        if "ready" not in request.query_params:
            return JSONResponse(body)
        breakers = {s.value: c.upstream.breaker.snapshot() for s, c in state.clients.items()}
        # A breaker past its cool-down lets the next request probe: that source counts as
        # available, so an instance taken out of rotation comes back without traffic.
        open_ = [name for name, b in breakers.items()
                 if BreakerState(b["state"]) is BreakerState.OPEN and b["seconds_until_probe"] > 0]
        ready = not state.clients or len(open_) < len(state.clients)
        body.update(status="ready" if ready else "not_ready",
                    breakers={name: {**b, "state": BreakerState(b["state"]).value} for name, b in breakers.items()},
                    cache=cache.describe() if cache is not None else {"backend": "off"},
                    live=state.live.describe())   # open subscriptions, pollers, their tasks, polls made
        if accounts is not None:   # the database down: known accounts still read, from memory
            body["registry"] = accounts.directory.describe()
        return JSONResponse(body, status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # What exists now (schema, registry, clients) lives as long as the process: keep it out
        # of the collector's scans, and collect young objects less often. A deep request
        # allocates tens of thousands of short-lived objects; with the default threshold the
        # collector took a large share of a request's CPU (docs/PERFORMANCE.md).
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        # `serve --workers N`: this worker's breakers and in-flight calls, where every worker's scrape sees them
        publishing = asyncio.create_task(worker_metrics.publish_every(metrics.publish_live_state)) \
            if metrics.shared else None
        syncing = None
        if accounts is not None:
            try:
                await accounts.directory.sync()   # where the change feed stands (accounts load on first use)
            except Exception:
                log.warning("account registry: the database does not answer at start-up; retrying in the background")
            syncing = asyncio.create_task(accounts.directory.run())
        if fx_provider is not None:
            if config.demo:   # the demo's provider is served by this very app, not listening yet
                fx_provider.start(read_now=True)
            else:
                await fx_provider.refresh()   # quotes before the first request (a failure is logged, not fatal)
                fx_provider.start()
        if state.history is not None:
            state.history.start()
            if config.history.refresh_every_s is not None:
                state.history.tasks.append(asyncio.create_task(
                    refresh_forever(state, config.history.refresh_every_s), name="history-refresh"))
        yield
        if state.history is not None:
            await state.history.close()
        if fx_provider is not None:
            await fx_provider.close()
        if syncing is not None:
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncing
            await accounts.close()
        if publishing is not None:
            publishing.cancel()
            worker_metrics.worker_stopping()
        await state.live.close()
        if live_redis is not None:
            await live_redis.aclose()
        await http.aclose()
        if cache is not None and hasattr(cache, "close"):
            await cache.close()
        if shared_redis is not None:
            await shared_redis.aclose()

    routes: list[BaseRoute] = [
        Route("/graphql", graphql),   # the view answers other methods with a JSON 405
        WebSocketRoute("/graphql", graphql),   # graphql-transport-ws subscriptions (live_transport.py)
        Route("/health", health, methods=["GET"]),
        *graphiql_routes(config.server.graphiql or config.demo),   # GraphiQL's own JS/CSS, when installed
        *(extra_routes or []),
    ]
    if config.observability.metrics:
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    routes.extend(slash_redirects(routes))   # relative Location, not Starlette's Host-built one
    middleware = [Middleware(RequestMetrics, metrics=metrics),   # observability: request durations
                  Middleware(SecurityHeaders, cacheable_prefixes=(ASSETS_ROUTE,))]   # nosniff, no-store
    if config.server.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=config.server.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["authorization", "x-api-key", "content-type", "apollo-require-preflight",
                           "x-apollo-operation-name", "x-request-id"],
            expose_headers=["x-request-id", "retry-after", "ratelimit", "ratelimit-policy"], max_age=600))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.router.redirect_slashes = False
    app.state.gateway = state
    return app


__all__ = ["create_app"]
