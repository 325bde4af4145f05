"""ASGI middleware in front of the service: refuse what BentoML would mishandle.

- POST bodies must be JSON (415 otherwise): BentoML parses unknown content types as JSON and
  answers a multipart body without a boundary with a 500.
- Bodies larger than the limit get 413 before anything parses them.
- The OpenAPI document at /docs.json is corrected to match what the service really does:
  request bodies are required, and error bodies are ``{"error": str, "detail": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = {"application/json"}
DRAIN_FACTOR = 16
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "array", "items": {"type": "object"}},
    },
}
ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def corrected_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with required request bodies and the real error schema."""
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ERROR_SCHEMAS:
        if name in schemas:
            schemas[name] = ERROR_SCHEMA
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return spec


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int = 1 << 20) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "POST":
            await self._guard_post(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] == "/docs.json":
            await self._correct_spec(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _guard_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        media = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1")
        if media.lower() not in JSON_TYPES:
            shown = media or "none"
            await _send_error(send, 415, f"Content-Type must be application/json, got {shown}")
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            if int(declared) <= DRAIN_FACTOR * self.max_body_bytes:
                # Read (and drop) a moderately large body so the client sees the 413 rather
                # than a connection reset; anything larger is cut off at once.
                await self._drain(receive)
            await _send_error(send, 413, f"request body over {self.max_body_bytes} bytes")
            return
        # Read the body here (bounded), then hand the app a receive() that replays it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, f"request body over {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _correct_spec(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start.get("status") == 200:
                body = json.dumps(corrected_spec(json.loads(body))).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
