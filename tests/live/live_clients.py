"""Plain protocol clients for the live tests: graphql-transport-ws over a real WebSocket
(the `websockets` library, no GraphQL client library in between) and Apollo's multipart
HTTP subscriptions over httpx, each read message by message."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import connect

SUBSCRIPTION = """subscription Live($interval: Int, $sources: [Source!]) {
  viewerChanged(intervalS: $interval, sources: $sources) {
    changed { id amount source value { amount currency } }
    removedHoldingIds
    totalValue { value { amount currency } complete failedSources }
    account { id sources { source state error { code } } }
    at
  }
}"""


class WSClient:
    """One graphql-transport-ws connection."""

    def __init__(self, base_url: str, key: str | None = "demo-key", payload: Any = None) -> None:
        self.url = base_url.replace("http://", "ws://") + "/graphql"
        self.payload = payload if payload is not None else ({"Authorization": f"Bearer {key}"} if key else {})
        self.ws: Any = None
        self.next_id = 0

    async def __aenter__(self) -> "WSClient":
        self.ws = await connect(self.url, subprotocols=["graphql-transport-ws"], ping_interval=None)
        await self.ws.send(json.dumps({"type": "connection_init", "payload": self.payload}))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()

    async def acked(self) -> dict[str, Any]:
        return await self.message(5)

    async def subscribe(self, query: str = SUBSCRIPTION, variables: dict | None = None) -> str:
        self.next_id += 1
        op = str(self.next_id)
        await self.ws.send(json.dumps({"id": op, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables or {"interval": 1}}}))
        return op

    async def complete(self, op: str) -> None:
        await self.ws.send(json.dumps({"id": op, "type": "complete"}))

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message other than a server ping (answered with pong, as a client must)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.0, deadline - asyncio.get_running_loop().time()))
            message = json.loads(raw)
            if message.get("type") == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return message

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.message(timeout)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message["payload"]
        return message["payload"]["data"]["viewerChanged"]


SUBSCRIPTION_ACCEPT = 'multipart/mixed;subscriptionSpec="1.0",application/json'
DEFER_ACCEPT = "multipart/mixed;deferSpec=20220824,application/json"


async def multipart_events(base_url: str, query: str, variables: dict, key: str = "demo-key",
                           accept: str = SUBSCRIPTION_ACCEPT):
    """Yield each multipart part's JSON (heartbeats are `{}`) of one subscription (or @defer answer)."""
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    async with httpx.AsyncClient(timeout=30) as http:
        async with http.stream("POST", base_url + "/graphql", json={"query": query, "variables": variables},
                               headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("multipart/mixed")
            buffer = ""
            async for text in response.aiter_text():
                buffer += text
                while True:
                    start = buffer.find("\r\n\r\n")
                    if start == -1:
                        break
                    head = buffer[:start]
                    length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                                   if line.lower().startswith("content-length:")), None)
                    if length is None or len(buffer[start + 4:].encode()) < length:
                        break
                    body = buffer[start + 4:].encode()[:length].decode()
                    buffer = buffer[start + 4:].encode()[length:].decode()
                    yield json.loads(body)
