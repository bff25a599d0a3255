"""The port opens before the agent is loaded.

Importing LangChain, the model client and the SDKs is most of the start (figures: bench/RESULTS.md,
benchmark 9). `python app.py` reads and checks its settings, opens its port with a `StartingApp`, and builds
the real app in a thread meanwhile: the platform's health check passes at once, and the first request's own
work (reading its body, verifying its JWT, fetching the IdP's keys) overlaps the import instead of following
it. Only `/health` is answered before the app is ready; every other request waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, describe
from server.health import HEALTH_METHODS, HEALTH_PATH, health_response
from server.limits import busy_error
from server.shutdown import Shutdown, restarting_error

log = logging.getLogger("app")

def start_failed_error() -> ApiError:
    return ApiError(503, "The service failed to start; please try again in a moment.", "server_error",
                    "service_unavailable", headers={"Retry-After": "5"})


class StartingApp:
    """The server's ASGI app: the app `build` returns, once built (in a thread); until then `/health` only.

    `build` runs when the server starts (its lifespan startup); the built app's own lifespan then runs inside
    this one. Up to `max_waiting` requests that arrive meanwhile wait for it (more get the 503 `server_busy`
    at once, as the app's own limit answers); if the process is told to stop first, they get the 503
    `service_restarting`. If `build` fails, the failure is logged, waiting and later requests get a 503,
    and `on_failure` is called (the caller stops the server: nothing can serve without the app).
    """

    def __init__(self, build: Callable[[], ASGIApp], shutdown: Shutdown, on_failure: Callable[[], None], *,
                 max_waiting: int) -> None:
        self.build, self.shutdown, self.on_failure = build, shutdown, on_failure
        self.max_waiting, self.waiting = max_waiting, 0
        self.app: ASGIApp | None = None
        self.failed = False
        self._ready = asyncio.Event()  # set once `app` is serving or `failed`
        self._inner_lifespan: _Lifespan | None = None
        self._building: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.app is None and not self.failed and scope["type"] == "http" and scope["path"] == HEALTH_PATH:
            await _health(scope["method"])(scope, receive, send)
            return
        if not self._ready.is_set():
            if self.waiting >= self.max_waiting:
                await busy_error().response()(scope, receive, send)
                return
            self.waiting += 1
            try:
                await _first(self._ready.wait(), self.shutdown.wait())
            finally:
                self.waiting -= 1
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            error = start_failed_error() if self.failed else restarting_error()
            await error.response()(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._building = asyncio.create_task(self._build(), name="build-app")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._building is not None:
                    await self._building  # a build cannot be interrupted; it ends within a second or two
                if self._inner_lifespan is not None:
                    await self._inner_lifespan.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _build(self) -> None:
        began = time.perf_counter()
        try:
            app = await asyncio.to_thread(self.build)
            lifespan = _Lifespan(app)
            await lifespan.startup()
        except Exception as error:  # its type and place only: a message may quote a setting's value
            missing = f" (module {error.name!r})" if isinstance(error, ImportError) and error.name else ""
            log.critical("the app could not be built, so the process stops: %s%s", describe(error), missing)
            self.failed = True
            self._ready.set()
            self.on_failure()
            return
        self._inner_lifespan, self.app = lifespan, app
        self._ready.set()
        log.info("ready: the app was built in %.2f s", time.perf_counter() - began)


class _Lifespan:
    """Runs an ASGI app's lifespan protocol (startup now, shutdown later), as a server would."""

    def __init__(self, app: ASGIApp) -> None:
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(app(scope, self._to_app.get, self._from_app.put),
                                         name="app-lifespan")

    async def startup(self) -> None:
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        await self._exchange("lifespan.shutdown")
        await self._task

    async def _exchange(self, event: str) -> None:
        await self._to_app.put({"type": event})
        answer = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait((answer, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # what the app raised, if it raised
            raise RuntimeError(f"the app's lifespan ended before {event} completed")
        if answer.result()["type"] != f"{event}.complete":
            raise RuntimeError(f"the app's {event} failed: {answer.result().get('message', '')}")


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Returns when the first of `waits` returns (the others are cancelled)."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _health(method: str) -> Response:
    """As the built app answers `/health` (and a method it has no route for)."""
    if method not in HEALTH_METHODS:
        return ApiError(405, "Method Not Allowed", code="method_not_allowed").response(
            headers={"Allow": ", ".join(HEALTH_METHODS)})
    return health_response()
