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
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bentoml._internal.server.http import traffic


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's request timeout, with its timer cancelled once the response starts."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
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
            ]
            await send({"type": "http.response.start", "status": 504, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def install() -> None:
    """Make BentoML build its apps with the cancelling timeout middleware."""
    setattr(traffic, "TimeoutMiddleware", CancellingTimeoutMiddleware)  # noqa: B010
