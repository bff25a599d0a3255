"""Serve the app with Hypercorn: the limits that must hold before a request reaches the app, and a stop on
SIGTERM that ends every open stream with a last word within the grace period.

Why Hypercorn (bench/RESULTS.md, "The HTTP server"): uvicorn with httptools has no header size limit and no
header read timeout; Hypercorn bounds both (`h11_max_incomplete_size`; `keep_alive_timeout` runs from the
connection's start, or the previous response's end, until the request's headers are complete), and takes
its stop signal from the caller (`shutdown_trigger`), so the app learns of SIGTERM before the server waits
for open responses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from starlette.types import ASGIApp

from server.shutdown import Shutdown
from settings.server import ServerLimits

log = logging.getLogger("app")


def hypercorn_config(limits: ServerLimits, bind: str) -> Config:
    """`bind`: `host:port`, or `fd://N` for a socket already listening."""
    config = Config()
    config.bind = [bind]
    config.h11_max_incomplete_size = limits.max_header_bytes  # request line + headers; larger: 431 and close
    # HTTP/1.1 only (AgentRun's gateway speaks it to the instance). Hypercorn has no switch to refuse h2c: it
    # answers `Upgrade: h2c` with 101 and takes a prior-knowledge preface as HTTP/2 before the app sees
    # anything. Announcing no stream at all (MAX_CONCURRENT_STREAMS 0) makes the first HEADERS frame of a
    # prior-knowledge client a connection error, before its header block is decoded; the one stream an
    # upgrade opens is answered 505 by server/edge.py. So rapid reset and oversized HPACK blocks have nothing
    # to act on. Left open: a connection that sends the preface and nothing more stays open until its client
    # closes it (Hypercorn restarts its idle timer only when a stream ends, and none can start).
    config.h2_max_concurrent_streams = 0
    config.h2_max_header_list_size = limits.max_header_bytes
    # From the connection's start (or the previous response's end) to complete headers; also how long an idle
    # kept-alive connection stays open.
    config.keep_alive_timeout = limits.header_timeout_seconds
    config.graceful_timeout = limits.shutdown_grace_seconds
    config.backlog = limits.backlog
    config.accesslog = None  # server/request_log.py writes one line per request
    config.include_server_header = False
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve(app: ASGIApp, limits: ServerLimits, shutdown: Shutdown, *, stop: asyncio.Event,
                host: str = "", port: int = 0, sock: socket.socket | None = None) -> None:
    """Serve until `stop` is set (app.py sets it on SIGTERM and SIGINT): then stop accepting, tell `shutdown`
    (open streams end themselves), wait at most the grace period for open responses, and run the app's
    lifespan shutdown."""

    async def stopped() -> None:
        await stop.wait()
        log.info("stopping: no new connections, open responses end within %g s",
                 limits.shutdown_grace_seconds)
        shutdown.begin(limits.shutdown_grace_seconds)

    # A socket passed in stays the caller's: Hypercorn closes the duplicate it is given.
    bind = f"fd://{sock.dup().detach()}" if sock is not None else f"{host}:{port}"
    address = ":".join(map(str, sock.getsockname()[:2])) if sock is not None else f"{host}:{port}"
    # Hypercorn's own line is below WARNING (server/logs.py)
    log.info("serving HTTP/1.1 on http://%s", address)
    await hypercorn_serve(app, hypercorn_config(limits, bind), shutdown_trigger=stopped, mode="asgi")
