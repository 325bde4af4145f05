"""ASGI middleware in front of the service: ids, refusals BentoML would mishandle, the docs.

- Every request gets an ``X-Request-ID`` (the client's, else a new one) that the service logs
  and every response carries, the refused ones included, with ``X-Model-Version``.
- POST bodies must be JSON (415 otherwise): BentoML parses unknown content types as JSON and
  answers a multipart body without a boundary with a 500.
- Bodies larger than the limit get 413 before anything parses them.
- Every refused request (4xx) is logged as one JSON line: its id, path, status and, for invalid
  bodies, the fields and problems, never the values (they are personal data).
- ``/`` is the service's own documentation page (BentoML's loads third-party scripts), and the
  OpenAPI document at /docs.json is corrected to match what the service really does: its title
  and version, required request bodies, and error bodies ``{"error": str, "detail": [...]}``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("bentoml.credit_risk")
REQUEST_ID_HEADER = "x-request-id"
MODEL_VERSION_HEADER = "x-model-version"
# A client's id is echoed only if it is short and plain, so it cannot forge log lines or headers.
CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DOCS_PATHS = {"/", "/docs"}
JSON_TYPES = {"application/json"}
MAX_LOGGED_BODY = 64 * 1024  # error bodies read for the rejection log line
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


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID if it is plain, else a new random one."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"x-request-id":
            given = value.decode("latin-1")
            if CLIENT_ID.match(given):
                return given
    return uuid.uuid4().hex[:16]


def identified(scope: Scope) -> tuple[Scope, str]:
    """The request's id, and its scope with that id as its only X-Request-ID header, so that
    whatever handles the request next (another middleware, the service) sees the same one."""
    identity = request_id(scope)
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"x-request-id"]
    return {**scope, "headers": [*headers, (b"x-request-id", identity.encode())]}, identity


def id_headers(identity: str, model_version: str) -> list[tuple[bytes, bytes]]:
    """The response headers that name the request and the model version (if known)."""
    headers = [(REQUEST_ID_HEADER.encode(), identity.encode())]
    if model_version:
        headers.append((MODEL_VERSION_HEADER.encode(), model_version.encode()))
    return headers


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str) -> None:
    await _send(send, status, json.dumps({"error": message}).encode(), b"application/json")


def corrected_spec(
    spec: dict[str, Any],
    info: dict[str, str] | None = None,
    responses: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document with its own info (replacing BentoML's, whose description links to
    outside hosts), required request bodies, the real error schema and the error statuses an
    endpoint answers besides BentoML's (``responses``: path -> status -> description)."""
    if info:
        spec["info"] = dict(info)
    for path, statuses in (responses or {}).items():
        for operation in spec.get("paths", {}).get(path, {}).values():
            if isinstance(operation, dict):
                answers = operation.setdefault("responses", {})
                for status, description in statuses.items():
                    answers[status] = {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_SCHEMA}},
                    }
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ERROR_SCHEMAS:
        if name in schemas:
            schemas[name] = ERROR_SCHEMA
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return spec


def problems_of(body: bytes) -> list[str]:
    """``field: problem`` for each entry of an error body's detail, without the values."""
    try:
        detail = json.loads(body).get("detail") or []
    except (ValueError, AttributeError):
        return []
    problems = []
    for entry in detail if isinstance(detail, list) else []:
        if isinstance(entry, dict):
            where = ".".join(str(part) for part in entry.get("loc", [])) or "(body)"
            problems.append(f"{where}: {entry.get('type', 'invalid')}")
    return problems


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = 1 << 20,
        model_version: str = "",
        docs_page: str = "",
        spec_info: dict[str, str] | None = None,
        responses: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.model_version = model_version
        self.docs_page = docs_page.encode()
        self.spec_info = spec_info
        self.responses = responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The app sees the id as if the client had sent it, so the service logs the same one.
        scope, identity = identified(scope)
        send = self._stamped(scope, send, identity)
        if scope["method"] == "POST":
            await self._guard_post(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] in DOCS_PATHS and self.docs_page:
            await _send(send, 200, self.docs_page, b"text/html; charset=utf-8")
        elif scope["method"] == "GET" and scope["path"] == "/docs.json":
            await self._correct_spec(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _stamped(self, scope: Scope, send: Send, identity: str) -> Send:
        """``send`` that adds the ids to the response and logs a refused request once."""
        status = 0
        error_body: list[bytes] = []

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = id_headers(identity, self.model_version)
                names = {name for name, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            elif message["type"] == "http.response.body" and 400 <= status < 500:
                if sum(map(len, error_body)) < MAX_LOGGED_BODY:
                    error_body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._log_refusal(scope, identity, status, b"".join(error_body))
            await send(message)

        return stamped

    @staticmethod
    def _log_refusal(scope: Scope, identity: str, status: int, body: bytes) -> None:
        entry = {
            "event": "rejected",
            "request_id": identity,
            "path": scope.get("path"),
            "status": status,
            "problems": problems_of(body),
        }
        log.warning(json.dumps(entry))

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
                spec = corrected_spec(json.loads(body), self.spec_info, self.responses)
                body = json.dumps(spec).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
