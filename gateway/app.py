"""The ASGI app: /graphql (POST and GET, GraphiQL on a browser GET) and /health.

Request flow: AuthGate (who is calling) → strawberry view (parse, validate, execute with
a per-request context holding fresh dataloaders) → process_result (our error shapes,
one entry per failed upstream source) → orjson.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from strawberry.asgi import GraphQL
from strawberry.types import ExecutionResult

from gateway import auth
from gateway.cache import build_cache
from gateway.config import GatewayConfig
from gateway.errors import ClientCode
from gateway.graphiql import graphiql_html
from gateway.http import make_http_client
from gateway.registry import TokenRegistry
from gateway.resilience import BreakerState, Deadline
from gateway.sources import build_clients
from gateway.upstream import CURRENT_OPTIONS, FetchOptions
from resolvers.context import GatewayState, RequestContext
from resolvers.loaders import make_loaders
from schema import schema as default_schema

log = logging.getLogger("gateway.app")

DEMO_KEY = "demo-key"


def _error(code: ClientCode, message: str, status: int) -> Response:
    return Response(orjson.dumps({"errors": [{"message": message, "extensions": {"code": code.value}}]}),
                    status_code=status, media_type="application/json")


def _wants_graphiql(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "") \
        and "query" not in request.query_params


class GatewayGraphQL(GraphQL):
    """Strawberry's ASGI view with our context, error shapes, JSON encoder and GraphiQL page."""

    def __init__(self, state: GatewayState, *, graphiql: bool):
        super().__init__(default_schema, graphql_ide="graphiql" if graphiql else None,
                         allow_queries_via_get=True)
        self.state = state
        self._graphiql_html = graphiql_html(DEMO_KEY if state.config.demo else None)

    async def get_context(self, request: Any, response: Any = None) -> RequestContext:
        deadline = Deadline.after(self.state.config.server.request_deadline_s)
        ctx = RequestContext(state=self.state, caller=getattr(request.state, "caller", None),
                             is_admin=getattr(request.state, "is_admin", False), loaders={},
                             request_id=getattr(request.state, "request_id", ""), deadline=deadline)
        ctx.loaders = make_loaders(self.state.clients, ctx.options_for)
        CURRENT_OPTIONS.set(FetchOptions(deadline=deadline))   # reads made outside the loaders (history)
        request.state.ctx = ctx
        return ctx

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(self._graphiql_html)

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

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
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = errors
        return body

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
            if message.startswith("Syntax Error"):
                extensions["code"] = "GRAPHQL_PARSE_FAILED"
            elif message.startswith("Variable"):
                extensions["code"] = ClientCode.BAD_USER_INPUT.value
            else:
                extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
        formatted["extensions"] = extensions
        return formatted


class AuthGate:
    """Authenticates /graphql requests before strawberry sees them; GraphiQL's page is public."""

    def __init__(self, app: GatewayGraphQL, state: GatewayState):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if _wants_graphiql(request):
            await self.app(scope, receive, send)
            return
        key = auth.presented_key(request.headers)
        if key is None:
            response = _error(ClientCode.UNAUTHENTICATED,
                              "send your account key as `Authorization: Bearer <key>` or `X-API-Key: <key>`", 401)
        elif (caller := auth.identify(self.state, key)) is None:
            response = _error(ClientCode.UNAUTHENTICATED, "the API key is not valid", 401)
        else:
            scope["state"]["is_admin"] = caller == auth.ADMIN
            scope["state"]["caller"] = None if caller == auth.ADMIN else caller
            await self.app(scope, receive, _with_request_id(send, request_id))
            return
        response.headers["www-authenticate"] = 'Bearer realm="balance-gateway"'
        response.headers["x-request-id"] = request_id
        await response(scope, receive, send)


def _with_request_id(send: Any, request_id: str) -> Any:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
        await send(message)
    return wrapped


def create_app(config: GatewayConfig, *, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    registry = TokenRegistry.default(config.registry or None)
    http = make_http_client()
    cache = None
    if config.cache.enabled:
        redis_url = config.cache.redis_url.get_secret_value() if config.cache.redis_url else None
        cache = build_cache(redis_url, max_entries=config.cache.max_entries)
    state = GatewayState(config=config, registry=registry, clients=build_clients(config, http, registry, cache),
                         cache=cache)
    graphql = AuthGate(GatewayGraphQL(state, graphiql=config.server.graphiql or config.demo), state)

    async def health(request: Request) -> JSONResponse:
        """Liveness by default; `/health?ready` adds readiness: breakers and the cache."""
        body: dict[str, Any] = {"status": "ok", "demo": config.demo, "accounts": len(config.accounts),
                                "sources": [s.value for s in state.clients]}
        if "ready" not in request.query_params:
            return JSONResponse(body)
        breakers = {s.value: c.upstream.breaker.snapshot() for s, c in state.clients.items()}
        open_ = [name for name, b in breakers.items() if BreakerState(b["state"]) is not BreakerState.CLOSED]
        ready = not state.clients or len(open_) < len(state.clients)
        body.update(status="ready" if ready else "not_ready",
                    breakers={name: {**b, "state": BreakerState(b["state"]).value} for name, b in breakers.items()},
                    cache=cache.describe() if cache is not None else {"backend": "off"})
        return JSONResponse(body, status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await http.aclose()
        if cache is not None and hasattr(cache, "close"):
            await cache.close()

    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        Route("/health", health, methods=["GET"]),
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = state
    return app


__all__ = ["create_app", "Mount"]
