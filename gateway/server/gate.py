"""The gate in front of /graphql: everything decided before GraphQL is parsed.

In order: request id → GraphiQL page (public) → body size → CSRF prevention → who is
calling (API key or JWT) → per-client rate limit (its RateLimit headers go on every answer
from here on) → another identical request's response, if one may be reused
(gateway/policy/response_reuse.py). Each refusal is a GraphQL-shaped JSON
error with `extensions.code` and the right HTTP status; nothing here touches upstreams.
"""
from __future__ import annotations

import os
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.accounts.errors import RegistryError
from gateway.policy.auth import Authenticator, AuthError, presented_credential
from gateway.domain.errors import ClientCode
from gateway.observability.logs import REQUEST_ID
from gateway.policy.rate_limit import RateLimiter, retry_after_header
from gateway.policy.rate_limit_headers import with_rate_limit_headers
from gateway.upstream.ledger import ReadLedger
from gateway.policy.response_reuse import ResponseReuse
from gateway.support import safe_json
from resolvers.context import GatewayState

# Content types a browser may send cross-site without a CORS preflight.
SIMPLE_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


def error_response(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(safe_json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}),
                    status_code=status, media_type="application/json", headers=headers)


def wants_graphiql(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "") \
        and "query" not in request.query_params


class BodyTooLarge(Exception):
    pass


class SecurityGate:
    def __init__(self, app: Any, state: GatewayState, rate_limiter: RateLimiter, reuse: ResponseReuse):
        self.app = app
        self.state = state
        self.auth = Authenticator(state)
        self.rate_limiter = rate_limiter
        self.reuse = reuse
        self.metrics: Any = None   # the app's GatewayMetrics, set by create_app (gateway overhead)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        request_id = _safe_request_id(request.headers.get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        REQUEST_ID.set(request_id)   # every log line of this request carries it (gateway/observability/logs.py)
        send = _with_request_id(send, request_id)
        if wants_graphiql(request):
            await self.app(scope, receive, send)
            return
        refusal, caller = await self._admit(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        verdict = await self.rate_limiter.check(caller.client_id, admin=caller.is_admin)
        send = with_rate_limit_headers(send, verdict)   # every answer to a counted caller says what is left
        if not verdict.allowed:
            if self.metrics is not None:   # what operators alert on (docs/DEPLOYMENT.md)
                self.metrics.count_graphql_errors([{"extensions": {"code": "RATE_LIMITED"}}])
            await error_response("RATE_LIMITED", "too many requests for this key; retry later", 429,
                                 {"retry-after": retry_after_header(verdict.wait_s)})(scope, receive, send)
            return
        scope["state"]["caller"] = caller.account
        scope["state"]["is_admin"] = caller.is_admin
        scope["state"]["client_id"] = caller.client_id
        scope["state"]["still_authorized"] = self._still_authorized(request)
        limit = self.state.config.limits.max_body_bytes
        ledger = ReadLedger()    # filled by every upstream read this request causes
        scope["state"]["ledger"] = ledger
        try:
            # A streamed answer (a multipart subscription, @defer) is never reused or coalesced.
            if not self.reuse.enabled or scope["method"] not in ("GET", "POST") or _streams(request):
                try:
                    await self.app(scope, _capped(receive, limit), send)
                except ClientDisconnect:
                    pass   # gone before its body arrived (or cut off by gateway/server/connection_guard.py)
            else:
                body = await _read_body(receive, limit) if scope["method"] == "POST" else b""
                headers = request.headers
                # What makes two requests the same request (gateway/policy/response_reuse.py).
                key = (caller.account.id if caller.account is not None else None, caller.is_admin, scope["method"],
                       scope["query_string"], body, headers.get("content-type"), headers.get("accept"))
                await self.reuse(scope, receive, send, key, body, ledger)
        except BodyTooLarge:
            await self._too_large()(scope, receive, send)
        finally:
            if self.metrics is not None:
                self.metrics.request_overhead(time.perf_counter() - started, ledger.waits)

    async def _admit(self, request: Request) -> tuple[Response | None, Any]:
        config = self.state.config
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.limits.max_body_bytes:
            return self._too_large(), None
        if config.server.csrf_prevention and not self._preflighted(request):
            return error_response(
                "CSRF_PREVENTED",
                "This request was blocked as a possible cross-site request forgery: send a "
                "Content-Type of application/json, or an Authorization, X-API-Key or "
                "Apollo-Require-Preflight header.", 400), None
        credential = presented_credential(request.headers)
        if credential is None:
            return error_response(ClientCode.UNAUTHENTICATED.value,
                                  "send your account key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                                  401, {"www-authenticate": 'Bearer realm="balance-gateway"'}), None
        try:
            await self.auth.prepare(credential)
        except RegistryError:
            return error_response("REGISTRY_UNAVAILABLE", "the account registry does not answer; retry later",
                                  503, {"retry-after": "1"}), None
        try:
            caller = self.auth.identify(credential)
        except AuthError as exc:
            return error_response(ClientCode.UNAUTHENTICATED.value, str(exc), 401,
                                  {"www-authenticate": 'Bearer realm="balance-gateway", error="invalid_token"'}), None
        return None, caller

    def _still_authorized(self, request: Request) -> Any:
        """For a subscription over multipart HTTP: asked before each event."""
        credential = presented_credential(request.headers)

        def check() -> bool:
            try:
                self.auth.identify(credential or "")
            except AuthError:
                return False
            return True
        return check

    def _preflighted(self, request: Request) -> bool:
        """Apollo Router's rule: a browser cannot send this cross-site without a CORS preflight."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in SIMPLE_CONTENT_TYPES:
            return True
        return any(request.headers.get(h) for h in self.state.config.server.csrf_required_headers)

    def _too_large(self) -> Response:
        return error_response("REQUEST_TOO_LARGE",
                              f"the request body is over {self.state.config.limits.max_body_bytes} bytes", 413)


def _streams(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "multipart/mixed" in accept or "text/event-stream" in accept


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":   # disconnected: the app sees what came, then the disconnect
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _capped(receive: Any, limit: int) -> Any:
    """A receive() that stops a body streamed past the limit (no Content-Length to trust)."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
        return message
    return wrapped


def _safe_request_id(value: str | None) -> str:
    # Echo a caller's id only when it is short and plain (it lands in logs and headers).
    if value and len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value):
        return value
    return os.urandom(16).hex()   # 128 random bits, 32 hex digits as before (uuid4().hex), without building a UUID


def _with_request_id(send: Any, request_id: str) -> Any:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
        await send(message)
    return wrapped
