"""Every package's settings, read from the environment (over `.env`) together, so one error names every
problem. Reading them imports no LangChain, model client or server framework: `python app.py` checks its
settings before it opens its port (app.py), and builds the app only afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from dotenv import dotenv_values

from agent.settings import AgentSettings
from config import ConfigError, EnvReader
from identity.settings import IdentitySettings
from server.limits import Limits
from server.serving import ServerLimits
from tools.settings import ToolSettings
from tools.tool import Tool, oauth2_providers

_HERE = os.path.dirname(os.path.abspath(__file__))

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_request_bytes: int
    log_level: str
    log_format: str  # json: one JSON object a line (Function Compute / SLS); text: for a terminal
    keepalive_seconds: float
    cors_allow_origins: tuple[str, ...]  # browser origins allowed to call the API; empty: CORS off
    server_limits: ServerLimits  # enforced by the HTTP server, before the app sees a request
    limits: Limits  # enforced by the app before authentication

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        read = EnvReader(env)
        port = read.first("FC_CUSTOM_LISTEN_PORT", "PORT", default="9000")
        if not port.isdigit() or not 0 < int(port) < 65536:
            read.problems.append(f"FC_CUSTOM_LISTEN_PORT / PORT must be a TCP port, got {port!r}")
            port = "9000"
        settings = cls(
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
        read.check()
        return settings


@dataclass(frozen=True)
class Settings:
    """The agent's settings: every package's."""

    server: ServerSettings
    agent: AgentSettings
    identity: IdentitySettings
    tools: ToolSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str], tools: Sequence[Tool] | None = None) -> Self:
        """`tools`: whose OAuth2 providers' variables are read (default: `tools.TOOLS`)."""
        providers = None if tools is None else oauth2_providers(tools)
        return cls(**_read_together(env, server=ServerSettings.from_env, agent=AgentSettings.from_env,
                                    identity=IdentitySettings.from_env,
                                    tools=lambda e: ToolSettings.from_env(e, providers=providers)))


def _read_together(env: Mapping[str, str], **readers: Callable[[Mapping[str, str]], Any]) -> dict[str, Any]:
    """Each reader's settings by name, or one ConfigError naming the problems of them all."""
    built: dict[str, Any] = {}
    problems: list[str] = []
    for name, read in readers.items():
        try:
            built[name] = read(env)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return built


@dataclass(frozen=True)
class CallbackSettings:
    """`python app.py callback`: the authorization callback alone, for many users, where browsers reach it
    without a bearer token. It needs the server's and identity's variables only (no model, no tools)."""

    server: ServerSettings
    identity: IdentitySettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(**_read_together(env, server=ServerSettings.from_env,
                                    identity=lambda e: IdentitySettings.from_env(e, callback_only=True)))


def load_env() -> dict[str, str]:
    """The process environment over `.env` values (a real variable always wins)."""
    values = {k: v for k, v in dotenv_values(os.path.join(_HERE, ".env")).items() if v is not None}
    return {**values, **os.environ}
