"""The request timeout: BentoML's semantics, without keeping finished requests alive."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import logging
import os
import weakref
from pathlib import Path

import pytest
from bentoml._internal.server.http import traffic

from credit_risk.serving.timeout import CancellingTimeoutMiddleware

ROOT = Path(__file__).resolve().parents[3]
REQUESTS = 500
TRACE: contextvars.ContextVar[object] = contextvars.ContextVar("trace")


class Span:
    """Stands for what a request's context holds (its trace span, its request object)."""


async def respond(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def alive_after_requests(middleware: type) -> int:
    """How many of REQUESTS finished requests' contexts are still alive."""
    handler = middleware(respond, timeout=30)
    alive = []

    async def one_request() -> None:
        span = Span()
        alive.append(weakref.ref(span))
        TRACE.set(span)  # as the tracing middleware does, before the timeout's

        async def send(message) -> None:
            pass

        await handler({"type": "http", "path": "/score"}, None, send)

    for _ in range(REQUESTS):
        await asyncio.create_task(one_request())  # each request in a context of its own
    await asyncio.sleep(0)
    return sum(ref() is not None for ref in alive)


def test_finished_requests_are_not_kept_alive() -> None:
    assert asyncio.run(alive_after_requests(CancellingTimeoutMiddleware)) < REQUESTS // 4


def test_bentomls_own_middleware_keeps_them_alive() -> None:
    """Why the subclass exists: if BentoML fixes this, this test tells us to drop it."""
    original = CancellingTimeoutMiddleware.__mro__[1]
    assert asyncio.run(alive_after_requests(original)) == REQUESTS


def test_a_request_without_a_response_in_time_gets_504_with_its_ids(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[list] = []

    async def slow(scope, receive, send) -> None:
        seen.append(scope["headers"])
        await asyncio.sleep(5)

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    monkeypatch.setattr(CancellingTimeoutMiddleware, "model_version", "m:1")
    timeout = CancellingTimeoutMiddleware(slow, timeout=0.05)
    given = {"type": "http", "path": "/score", "headers": [(b"x-request-id", b"slow-1")]}
    with caplog.at_level(logging.WARNING, logger="bentoml.credit_risk"):
        asyncio.run(timeout(given, None, send))
        asyncio.run(timeout({"type": "http", "path": "/score", "headers": []}, None, send))
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]
    headers = dict(sent[0]["headers"])
    assert headers[b"x-request-id"] == b"slow-1" and headers[b"x-model-version"] == b"m:1"
    # Without the client's id, the 504 carries the id the rest of the app was given.
    (made,) = [v for k, v in seen[1] if k == b"x-request-id"]
    assert dict(sent[2]["headers"])[b"x-request-id"] == made and len(made) == 16
    logged = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(e["event"], e["request_id"], e["status"]) for e in logged] == [
        ("timed_out", "slow-1", 504),
        ("timed_out", made.decode(), 504),
    ]


def test_a_started_response_is_not_cut_off() -> None:
    async def streaming(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)  # longer than the timeout, after the response started
        await send({"type": "http.response.body", "body": b"done"})

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    asyncio.run(CancellingTimeoutMiddleware(streaming, timeout=0.02)({"type": "http"}, None, send))
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"done"


def test_the_service_installs_it_where_bentoml_builds_the_app(model_tag: str) -> None:
    os.environ["CREDIT_RISK_MODEL_TAG"] = model_tag
    os.environ["CREDIT_RISK_PARAMS"] = str(ROOT / "params.yaml")
    service = importlib.import_module("credit_risk.serving.service")
    assert traffic.TimeoutMiddleware is CancellingTimeoutMiddleware
    assert CancellingTimeoutMiddleware.model_version == model_tag
    app = service.CreditRiskService.to_asgi()
    used = [m.cls for m in app.user_middleware]
    assert CancellingTimeoutMiddleware in used, used
