"""The HTTP server's settings: where it listens, how it logs, and the limits that hold before authentication
(server/limits.py) and inside the HTTP server itself (server/serving.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from settings.reader import EnvReader, read_checked

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")
DEFAULT_PORT = "9000"


@dataclass(frozen=True)
class ServerLimits:
    """Enforced by the HTTP server, before the app sees a request."""

    max_header_bytes: int
    header_timeout_seconds: float
    shutdown_grace_seconds: float
    backlog: int = 2048  # connections the kernel queues before accept: a burst of hundreds of clients


@dataclass(frozen=True)
class Limits:
    """Enforced by the app before authentication."""

    max_concurrent_requests: int
    body_timeout_seconds: float


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_request_bytes: int
    log_level: str
    log_format: str  # json: one JSON object a line (Function Compute / SLS); text: for a terminal
    keepalive_seconds: float
    cors_allow_origins: tuple[str, ...]  # browser origins allowed to call the API; empty: CORS off
    server_limits: ServerLimits
    limits: Limits

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return read_checked(env, cls.read)

    @classmethod
    def read(cls, read: EnvReader) -> Self:
        port = read.first("FC_CUSTOM_LISTEN_PORT", "PORT", default=DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            read.problems.append(f"FC_CUSTOM_LISTEN_PORT / PORT must be a TCP port, got {port!r}")
            port = DEFAULT_PORT
        return cls(
            host=read.str("HOST", "0.0.0.0"),
            port=int(port),
            max_request_bytes=read.int("MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024),
            log_level=read.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            log_format=read.choice("LOG_FORMAT", LOG_FORMATS, "json"),
            keepalive_seconds=read.float("STREAM_KEEPALIVE_SECONDS", 10.0, minimum=0.01),
            cors_allow_origins=tuple(read.origins("CORS_ALLOW_ORIGINS")),
            server_limits=ServerLimits(
                max_header_bytes=read.int("MAX_HEADER_BYTES", 16 * 1024, minimum=1024),
                header_timeout_seconds=read.float("HEADER_TIMEOUT_SECONDS", 20.0, minimum=0.1),
                shutdown_grace_seconds=read.float("SHUTDOWN_GRACE_SECONDS", 3.0, minimum=0.5)),
            limits=Limits(max_concurrent_requests=read.int("MAX_CONCURRENT_REQUESTS", 200, minimum=1),
                          body_timeout_seconds=read.float("BODY_TIMEOUT_SECONDS", 10.0, minimum=0.1)),
        )


def log_open_cors(server: ServerSettings) -> None:
    """At start-up: `CORS_ALLOW_ORIGINS=*` lets any web page call the API from its visitors' browsers."""
    if "*" in server.cors_allow_origins:
        log.warning("CORS_ALLOW_ORIGINS=* lets every web page call this API from a browser: list the origins "
                    "of your own pages instead")
