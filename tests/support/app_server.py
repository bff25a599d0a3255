"""Serve `app.create_app(env)` as `python app.py` does (server/serving.py) on a free 127.0.0.1 port in a
background thread, for tests.

    with serve_app(cloud.env | {"STREAM_KEEPALIVE_SECONDS": "0.2"}) as base_url:
        httpx.get(f"{base_url}/health")

The server runs on its own event loop, so a test's loop and the server's never block each other; leaving
the block stops the server as SIGTERM does (open streams get their last chunk, lifespan shutdown runs) and
joins the thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from emulators._server import listening_socket

if TYPE_CHECKING:
    from tools.tool import Tool


@contextmanager
def serve_app(env: Mapping[str, str], *, app_state: dict | None = None,
              sock: socket.socket | None = None, tools: Sequence[Tool] | None = None) -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT`) of a running app built from `env`.

    `sock` (default: a new `emulators._server.listening_socket()`) lets a test register the app's callback
    URL before the app exists; it is closed when the block ends. Connections queue on it until the server
    accepts them, so the URL is usable at once.

    `app_state`, when given, receives `app`, `loop` and `stop` (set it on `loop` to stop as SIGTERM does) so a
    test can inspect the server (e.g. its tasks). `tools`: what the app offers (default: `tools.TOOLS`).
    """
    from wiring.agent_app import create_app
    from server.serving import serve

    sock = sock or listening_socket()
    try:
        app = create_app(dict(env)) if tools is None else create_app(dict(env), tools=tools)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    if app_state is not None:
        app_state.update(app=app, loop=loop, stop=stop)
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(app, app.state.settings.server.server_limits, app.state.shutdown,
                                          sock=sock, stop=stop))
        except BaseException as error:  # reported by the test thread
            failed.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"app-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        sock.close()
    if failed:
        raise RuntimeError("the app server failed") from failed[0]
