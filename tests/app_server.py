"""Serve `app.create_app(env)` with uvicorn on a free 127.0.0.1 port in a background thread, for tests.

    with serve_app(cloud.env | {"STREAM_KEEPALIVE_SECONDS": "0.2"}) as base_url:
        httpx.get(f"{base_url}/health")

The server runs on its own event loop, so a test's loop and the server's never block each other; leaving
the block shuts the server down (lifespan shutdown included) and joins the thread.

It listens as `python app.py` does where that matters under load: idle keep-alive connections are kept 75 s,
far longer than any client keeps them (httpx: 5 s). With uvicorn's default of 5 s the server and an httpx
client expire the same idle connection at the same moment, and a request sent on it just as the server closes
it fails with `ReadError` (connection reset) before any response. The accept backlog fits hundreds of clients
connecting at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn

from emulators._server import listening_socket

KEEP_ALIVE_SECONDS = 75  # as app.main serves in production: longer than clients keep idle connections


@contextmanager
def serve_app(env: Mapping[str, str], *, app_state: dict | None = None,
              sock: socket.socket | None = None) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT`) of a running app built from `env`.

    `sock` (default: a new `emulators._server.listening_socket()`) lets a test register the app's callback
    URL before the app exists; it is closed when the block ends.

    `app_state`, when given, receives `app` and `loop` so a test can inspect the server (e.g. its tasks).
    """
    from app import create_app

    sock = sock or listening_socket()
    try:
        app = create_app(dict(env))
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                          timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=5))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    if app_state is not None:
        app_state.update(app=app, loop=loop)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"app-{port}", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the app server failed to start")
            threading.Event().wait(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
