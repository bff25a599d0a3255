"""Limits that hold before authentication and beside the HTTP server's own (header size and header timeout,
server/serving.py): how many requests run at once, how long a request body may take to arrive, and no new
request once the process is stopping. Each refusal is an OpenAI-shaped error with its own code."""

from __future__ import annotations

import asyncio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError
from server.health import HEALTH_PATH
from server.shutdown import Shutdown, restarting_error
from settings.server import Limits

# Always answered, even when the instance is full: a failing probe would have the platform kill a busy
# instance.
UNLIMITED_PATHS = frozenset({HEALTH_PATH})


def busy_error() -> ApiError:
    return ApiError(503, "The service is at its concurrency limit; retry in a moment.", "server_error",
                    "server_busy", headers={"Retry-After": "1"})


class AdmissionLimits:
    """Refuses a request beyond `max_concurrent_requests` with a 503 at once (a client retries elsewhere or
    later; queuing would only make every user wait), bounds the time the body takes to arrive (408), and
    refuses new requests on kept-alive connections once shutdown began (503)."""

    def __init__(self, app: ASGIApp, limits: Limits, shutdown: Shutdown) -> None:
        self.app, self.limits, self.shutdown = app, limits, shutdown
        self.running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.shutdown.begun:
            await restarting_error().response(headers={"Connection": "close"})(scope, receive, send)
            return
        if self.running >= self.limits.max_concurrent_requests:
            await busy_error().response()(scope, receive, send)
            return
        self.running += 1
        try:
            await self.app(scope, _timed_body(receive, self.limits.body_timeout_seconds), send)
        finally:
            self.running -= 1


def _timed_body(receive: Receive, timeout_seconds: float) -> Receive:
    """`receive`, but the whole body must arrive within `timeout_seconds` of the first read; after the body,
    waiting (for the client's disconnect) is not limited."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    body_done = False

    async def receive_timed() -> Message:
        nonlocal deadline, body_done
        if body_done:
            return await receive()
        deadline = deadline or loop.time() + timeout_seconds
        try:
            message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0.0))
        except TimeoutError:
            raise ApiError(408, f"The request body did not arrive within {timeout_seconds:g} s.",
                           "invalid_request_error", "request_timeout",
                           headers={"Connection": "close"}) from None
        body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_timed
