"""The request timeout, without pinning every request in memory for the whole timeout.

BentoML's TimeoutMiddleware (`traffic.timeout`) schedules a timer per request and never cancels
it. Until it fires, the timer holds the request's context, and with it the request, its trace
spans and every middleware's closures: at ~600 requests/s per worker and a 30 s timeout, some
18,000 finished requests (over 300,000 objects) per worker. Python's full garbage collections
scan them all, every second or so, and each one stalled requests for 150 to 450 ms.

This subclass keeps BentoML's behaviour (a 504 when no response has started within the timeout;
a started response is not cut off) and cancels its timer as soon as the response starts.
`install()` puts it where BentoML looks the class up when it builds the app; tests check, on
the real app, that it is the one in use.

BentoML places this middleware outside the service's own (guard.py), so it settles the request's
id itself: its 504 carries X-Request-ID and X-Model-Version like every other response, and is
logged with that id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from bentoml._internal.server.http import traffic

from credit_risk.serving.guard import id_headers, identified

log = logging.getLogger("bentoml.credit_risk")


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's request timeout, with its timer cancelled once the response starts."""

    model_version = ""  # for the 504's X-Model-Version; set by install()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope, identity = identified(scope)
        started = False
        deadline = asyncio.timeout(self.timeout)

        async def send_and_stop_the_clock(message: Any) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # cancels the timer: nothing pins the request
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_and_stop_the_clock)
        except TimeoutError:
            if started:
                raise
            body = json.dumps(
                {"error": f"Not able to process the request in {self.timeout} seconds"}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *id_headers(identity, self.model_version),
            ]
            entry = {
                "event": "timed_out",
                "request_id": identity,
                "path": scope.get("path"),
                "status": 504,
                "seconds": self.timeout,
            }
            log.warning(json.dumps(entry))
            await send({"type": "http.response.start", "status": 504, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def install(model_version: str = "") -> None:
    """Make BentoML build its apps with the cancelling timeout middleware."""
    CancellingTimeoutMiddleware.model_version = model_version
    setattr(traffic, "TimeoutMiddleware", CancellingTimeoutMiddleware)  # noqa: B010
