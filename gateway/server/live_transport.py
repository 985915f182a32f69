"""graphql-transport-ws on /graphql: strawberry's handler with the gateway's rules.

* The key comes in `connection_init`'s payload (`{"Authorization": "Bearer KEY"}`, or
  `{"X-API-Key": KEY}`); a missing or wrong one closes the socket with 4403 (the
  protocol's Forbidden) before anything runs (GatewayGraphQL.on_ws_connect).
* Each operation gets its own request context (strawberry hands every operation of a
  connection the same one): two subscriptions on one socket never share loaders,
  views or reported problems.
* Messages go out as text frames (TextFrames), as the protocol requires.
* Only subscriptions: a query or mutation sent here gets an `error` message (they go over
  HTTP, where the gate rate-limits them).
* The server pings an idle connection every `[live] keep_alive_s` (the client answers pong).
Protocol errors keep strawberry's close codes (4400 bad message, 4401 subscribe before
ack, 4409 duplicate id, 4429 second init, 4408 init timeout).
"""
from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws import handlers
from strawberry.types.graphql import OperationType
from strawberry.utils.aio import aclosing


class TextFrames(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are text frames; the view's JSON encoder gives bytes
    (strawberry would send those as binary frames, which graphql-ws clients refuse)."""

    async def send_json(self, message: Any) -> None:
        data = self.view.encode_json(message)
        try:
            await self.ws.send_text(data.decode() if isinstance(data, bytes) else data)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GatewayTransportWSHandler(handlers.BaseGraphQLTransportWSHandler):
    keep_alive_s: float = 15.0
    _pinging: asyncio.Task | None = None

    def on_request_accepted(self) -> None:
        super().on_request_accepted()
        self.keep_alive_s = getattr(self.view, "ws_keep_alive_s", self.keep_alive_s)
        self._pinging = asyncio.create_task(self._ping())

    async def _ping(self) -> None:
        with suppress(Exception):
            while True:
                await asyncio.sleep(self.keep_alive_s)
                if self.connection_acknowledged:
                    await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self._pinging is not None:
            self._pinging.cancel()
            with suppress(asyncio.CancelledError):
                await self._pinging
        await super().shutdown()

    async def run_operation(self, operation: handlers.Operation) -> None:
        """strawberry's run_operation, with a context of the operation's own.

        A `complete` (or the socket closing) cancels the operation's task; it then ends
        normally instead of keeping the CancelledError: a cancelled task stores it, and its
        frames refer to the operation, which refers to the task, a cycle per closed
        subscription that only the rarely run oldest-generation collection frees
        (server/app.py's gc.set_threshold)."""
        try:
            await self._run_operation(operation)
        except asyncio.CancelledError:
            return

    async def _run_operation(self, operation: handlers.Operation) -> None:
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.view.operation_context(self.context),
                root_value=self.root_value,
                operation_name=operation.operation_name,
                # Queries and mutations go over HTTP, through the gate's rate limit and response reuse.
                allowed_operation_types=(OperationType.SUBSCRIPTION,),
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except handlers._OperationStreamClosed:
            return
        except GraphQLError as error:   # a document that does not parse: that operation's error
            code = "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLSyntaxError) else "GRAPHQL_VALIDATION_FAILED"
            with suppress(Exception):
                await operation.send_initial_errors([GraphQLError(error.message, extensions={"code": code})])
        except Exception as error:  # pragma: no cover - strawberry's own handling
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise


def credential_from_payload(payload: Any) -> str | None:
    """The key a connection_init payload presents, read like HTTP headers (any case)."""
    if not isinstance(payload, dict):
        return None
    headers = {str(k).lower(): v for k, v in payload.items() if isinstance(v, str)}
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
