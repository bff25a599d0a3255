"""A stdlib HTTP server on a free 127.0.0.1 port in a thread, for the small stand-ins a test needs beside the
emulators (a users' app to land on, a static page origin)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serving_in_a_thread(handler: Callable[..., BaseHTTPRequestHandler] | Any) -> Iterator[str]:
    """Serve with `handler` (a BaseHTTPRequestHandler class or factory) until the block ends; yields the
    base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """No access log on stderr."""

    def log_message(self, *_: object) -> None:
        pass
