"""The tiny server kit every emulator is built from.

Each emulator is a Starlette app made by `emulator_app`, which adds what all of them share: a call counter,
a count of the client connections seen, fault and latency injection, and `/emulator/...` control routes.
`ServerGroup` serves several apps on free 127.0.0.1 ports from one background event loop, over HTTPS with a
certificate of the process's local CA (emulators/tls.py), as the real services are served; an app with pages
a browser opens (a consent or sign-in page) is also served on a plain-HTTP port, so a person's browser needs
no certificate. Pytest fixtures and `python -m emulators` run the same code, and emulator state is only ever
touched from that one loop (no locks needed).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.tls import LocalCa, local_ca

# Renders a service-specific error body (ACS, DingTalk, OpenAI shapes differ): (status, code, message) -> Response.
ErrorRenderer = Callable[[int, str, str], Response]


@dataclass
class Faults:
    """What to do to the next calls. `match` limits faults to calls whose key contains it."""

    latency_ms: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    # "error" | "throttle" | "timeout" | "page": an HTML page with fail_status instead of the API's answer
    # (what a gateway or an IP-level rate limit in front of a service sends)
    fail_kind: str = "error"
    timeout_s: float = 30.0
    match: str | None = None

    def applies_to(self, key: str) -> bool:
        return self.match is None or self.match in key


@dataclass
class EmulatorState:
    """Per-emulator bookkeeping shared by the middleware and the control routes."""

    name: str
    faults: Faults = field(default_factory=Faults)
    calls: Counter[str] = field(default_factory=Counter)
    # Client addresses (host, port) seen: one per TCP (and TLS) connection a client opened, so a test can tell
    # whether a client reuses its connections.
    connections: set[tuple[str, int]] = field(default_factory=set)


def call_key(request: Request) -> str:
    """ACS RPC calls are counted by action; everything else by method and path."""
    action = request.headers.get("x-acs-action") or request.query_params.get("Action")
    return action or f"{request.method} {request.url.path}"


def emulator_app(
    name: str,
    routes: list[BaseRoute],
    render_error: ErrorRenderer,
    *,
    on_expire_tokens: Callable[[], Any] | None = None,
    on_reset: Callable[[], Any] | None = None,
    faults: Faults | None = None,
) -> Starlette:
    """Build an emulator app: its own routes plus counting, faults and the `/emulator/` control routes."""
    state = EmulatorState(name=name, faults=faults or Faults())

    async def get_calls(_: Request) -> Response:
        return JSONResponse(dict(state.calls))

    async def get_connections(_: Request) -> Response:
        return JSONResponse({"connections": len(state.connections)})

    async def get_faults(_: Request) -> Response:
        return JSONResponse(asdict(state.faults))

    async def set_faults(request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        unknown = set(body) - set(asdict(Faults()))
        if unknown:
            return JSONResponse({"error": f"unknown fault fields: {sorted(unknown)}"}, status_code=400)
        for key, value in body.items():
            setattr(state.faults, key, value)
        return JSONResponse(asdict(state.faults))

    async def expire_tokens(_: Request) -> Response:
        if on_expire_tokens is not None:
            on_expire_tokens()
        return JSONResponse({"expired": True})

    async def reset(_: Request) -> Response:
        state.faults = Faults()
        state.calls.clear()
        state.connections.clear()
        if on_reset is not None:
            on_reset()
        return JSONResponse({"reset": True})

    control = [
        Route("/emulator/calls", get_calls, methods=["GET"]),
        Route("/emulator/connections", get_connections, methods=["GET"]),
        Route("/emulator/faults", get_faults, methods=["GET"]),
        Route("/emulator/faults", set_faults, methods=["POST"]),
        Route("/emulator/expire-tokens", expire_tokens, methods=["POST"]),
        Route("/emulator/reset", reset, methods=["POST"]),
    ]
    async def count_and_inject_faults(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        if request.url.path.startswith("/emulator/"):
            return await call_next(request)
        key = call_key(request)
        state.calls[key] += 1
        if request.client is not None:
            state.connections.add((request.client.host, request.client.port))
        faults = state.faults
        if faults.latency_ms and faults.applies_to(key):
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.fail_next > 0 and faults.applies_to(key):
            faults.fail_next -= 1
            return await _fail(faults, render_error)
        return await call_next(request)

    app = Starlette(routes=control + list(routes),
                    middleware=[Middleware(BaseHTTPMiddleware, dispatch=count_and_inject_faults)])
    app.state.emulator = state
    return app


async def _fail(faults: Faults, render_error: ErrorRenderer) -> Response:
    if faults.fail_kind == "timeout":
        await asyncio.sleep(faults.timeout_s)
        return render_error(504, "RequestTimeout", "The emulator timed out on purpose.")
    if faults.fail_kind == "throttle":
        response = render_error(429, "Throttling", "Request was denied due to request throttling.")
        response.headers["x-acs-retry-after"] = "1"
        response.headers["Retry-After"] = "1"
        return response
    if faults.fail_kind == "page":
        return HTMLResponse("<html><head><title>Access limited</title></head><body><h1>Too many requests from "
                            "your address</h1><p>Try again in 5 minutes.</p></body></html>",
                            status_code=faults.fail_status)
    return render_error(faults.fail_status, "ServiceUnavailable", "The emulator failed on purpose.")


def listening_socket(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A socket listening on `port` (0: a free one), to hand to a server that starts later: the port is held
    from now on, so nothing else that binds meanwhile can be given it.

    proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and accepted sockets
    inherit it. Without it every response waits ~40 ms (Nagle vs delayed ACK between headers and body)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class ServerGroup:
    """Serves several ASGI apps on free 127.0.0.1 ports from one background thread and event loop.

    Every app is served over HTTPS (`urls`), with the server certificate of `local_ca()`; one reserved with
    `browser=True` is also served over plain HTTP (`browser_urls`) for the pages a person's browser opens.
    `ca` (default: the process's `local_ca()`) signs the server certificate; `tls=False` serves plain HTTP."""

    def __init__(self, *, tls: bool = True, ca: LocalCa | None = None) -> None:
        self.ca: LocalCa | None = (ca or local_ca()) if tls else None
        self._apps: dict[str, Starlette] = {}
        self._servers: list[uvicorn.Server] = []
        self._sockets: dict[str, socket.socket] = {}
        self._browser_sockets: dict[str, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.urls: dict[str, str] = {}
        self.browser_urls: dict[str, str] = {}

    def reserve(self, name: str, port: int = 0, *, browser: bool = False) -> str:
        """Bind a port for `name` now, so every emulator can know every URL before any app is built. With
        `browser`, a second, plain-HTTP port too (`browser_url(name)`)."""
        if name not in self._sockets:
            sock = listening_socket(port)
            self._sockets[name] = sock
            scheme = "https" if self.ca else "http"
            self.urls[name] = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        if browser and name not in self._browser_sockets:
            sock = listening_socket()
            self._browser_sockets[name] = sock
            self.browser_urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.urls[name]

    def browser_url(self, name: str) -> str:
        """Where a browser opens `name`'s pages: its plain-HTTP URL if it has one, else its service URL."""
        return self.browser_urls.get(name) or self.urls[name]

    def add(self, name: str, app: Starlette, port: int = 0) -> str:
        """Serve `app` under `name` (on its reserved port, or a new one) and return its base URL."""
        url = self.reserve(name, port)
        self._apps[name] = app
        return url

    def app(self, name: str) -> Starlette:
        return self._apps[name]

    def _server(self, app: Starlette, tls: bool) -> uvicorn.Server:
        ssl_files = {}
        if tls and self.ca:
            ssl_files = {"ssl_certfile": str(self.ca.server_cert_file),
                         "ssl_keyfile": str(self.ca.server_key_file)}
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30, **ssl_files)
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._servers.append(server)
        return server

    def start(self) -> None:
        """Start every added app; returns once all of them accept connections."""
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve_all() -> None:
            tasks = []
            for name, app in self._apps.items():
                tls_server = self._server(app, True)
                tasks.append(asyncio.create_task(tls_server.serve(sockets=[self._sockets[name]])))
                if name in self._browser_sockets:
                    tasks.append(asyncio.create_task(
                        self._server(app, False).serve(sockets=[self._browser_sockets[name]])))
            while not all(s.started for s in self._servers):
                await asyncio.sleep(0.002)
            started.set()
            await asyncio.gather(*tasks)

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(serve_all())
            finally:
                started.set()
                self._loop.close()

        self._thread = threading.Thread(target=run, name="emulators", daemon=True)
        self._thread.start()
        started.wait()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the emulators' loop (where their state lives) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_as_coro(fn), self._loop).result()

    def stop(self) -> None:
        """Ask every server to exit (open connections are closed) and wait for the thread to end."""
        if self._thread is None:
            return
        for server in self._servers:
            server.should_exit = True
            server.force_exit = True
        self._thread.join(timeout=15)
        for sock in [*self._sockets.values(), *self._browser_sockets.values()]:
            sock.close()
        self._thread = None


async def _as_coro(fn: Callable[[], Any]) -> Any:
    result = fn()
    if asyncio.iscoroutine(result):
        result = await result
    return result


@contextmanager
def serving(name: str, app: Starlette, *, ca: LocalCa | None = None) -> Iterator[str]:
    """Serve one app on a free port for the length of a `with` block (tests); yields its base URL."""
    group = ServerGroup(ca=ca)
    url = group.add(name, app)
    group.start()
    try:
        yield url
    finally:
        group.stop()
