"""The agent server's app factory and entry point.

    python app.py            serve on HOST:FC_CUSTOM_LISTEN_PORT|PORT|9000
    python app.py callback   serve only the OAuth2 authorization callback (same host and port variables)

This file wires the packages together and names the routes; the OpenAI protocol is server/'s, the agent
agent/'s, credentials identity/'s.
"""

from __future__ import annotations

import os
import sys

# AgentRun offers python3.10 and python3.12 (docs/services.md, AgentRun): on 3.10 the imports below would die with
# "cannot import name 'Self'", which says nothing about the runtime to choose.
if sys.version_info < (3, 11):
    sys.exit(f"This agent needs Python 3.11 or newer, not {sys.version.split()[0]}: choose the python3.12 "
             "runtime for it in AgentRun.")

# AgentRun's zip layout puts dependencies in ./python, which is not on sys.path (docs/services.md, AgentRun).
# This must run before any third-party import.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_HERE, "python"), _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)

import gc  # noqa: E402
import logging  # noqa: E402
from collections.abc import AsyncIterator, Mapping  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Self  # noqa: E402

import uvicorn  # noqa: E402
from dotenv import dotenv_values  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402

import tools  # noqa: E402
from agent.model import ModelProvider  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from agent.settings import AgentSettings  # noqa: E402
from config import ConfigError, EnvReader  # noqa: E402
from identity.callback import CallbackRoutes, callback_app  # noqa: E402
from identity.service import AgentIdentity  # noqa: E402
from identity.settings import IdentitySettings  # noqa: E402
from server.agui import AGUI_OPENAPI, AGUI_PATH, AgUiAgent  # noqa: E402
from server.chat import CHAT_OPENAPI, CHAT_PATH, ChatCompletions  # noqa: E402
from server.errors import ApiError  # noqa: E402
from server.request_log import RequestLogMiddleware, install_error_handlers  # noqa: E402

# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_request_bytes: int
    log_level: str
    keepalive_seconds: float
    cors_allow_origins: tuple[str, ...]  # browser origins allowed to call the API; empty: CORS off

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
            log_level=read.str("LOG_LEVEL", "INFO").upper(),
            keepalive_seconds=read.float("STREAM_KEEPALIVE_SECONDS", 10.0, minimum=0.01),
            cors_allow_origins=tuple(read.list("CORS_ALLOW_ORIGINS", [])),
        )
        read.check()
        return settings


@dataclass(frozen=True)
class Settings:
    """Every package's settings, parsed once and together, so one error names every problem."""

    server: ServerSettings
    agent: AgentSettings
    identity: IdentitySettings
    tools: tools.ToolSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        built: dict[str, Any] = {}
        problems: list[str] = []
        for name, kind in (("server", ServerSettings), ("agent", AgentSettings),
                           ("identity", IdentitySettings), ("tools", tools.ToolSettings)):
            try:
                built[name] = kind.from_env(env)
            except ConfigError as error:
                problems += error.problems
        if problems:
            raise ConfigError(problems)
        return cls(**built)


def load_env() -> dict[str, str]:
    """The process environment over `.env` values (a real variable always wins)."""
    values = {k: v for k, v in dotenv_values(os.path.join(_HERE, ".env")).items() if v is not None}
    return {**values, **os.environ}


def create_app(config: Settings | Mapping[str, str] | None = None) -> FastAPI:
    """Build the app from `config` (settings, or an env mapping; default: the process environment over
    `.env`). No network call here."""
    settings = config if isinstance(config, Settings) else Settings.from_env(load_env() if config is None else config)
    identity = AgentIdentity(settings.identity)
    provider = ModelProvider(settings.agent, identity.instance_credential)
    toolbox = tools.Toolbox(identity, settings.tools)
    callback = CallbackRoutes(identity)
    runner = AgentRunner(provider, toolbox.tools)
    limits = {"max_request_bytes": settings.server.max_request_bytes,
              "keepalive_seconds": settings.server.keepalive_seconds}
    chat = ChatCompletions(identity, provider, runner, **limits)
    agui = AgUiAgent(identity, provider, runner, **limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await toolbox.aclose()
        await provider.aclose()
        await callback.aclose()
        await identity.aclose()

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_object(name) for name in await provider.model_names()]}

    async def model(model_id: str) -> dict[str, Any]:
        if model_id not in await provider.model_names():
            raise ApiError(404, f"The model {model_id!r} does not exist.", "invalid_request_error", "model_not_found",
                           "model")
        return _model_object(model_id)

    app = FastAPI(title="AgentRun identity agent", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestLogMiddleware)
    app.add_api_route(CHAT_PATH, chat.handle, methods=["POST"], summary="Chat Completions",
                      operation_id="chat_completions", openapi_extra=CHAT_OPENAPI)
    app.add_api_route(AGUI_PATH, agui.handle, methods=["POST"], summary="AG-UI agent run", operation_id="ag_ui_run",
                      openapi_extra=AGUI_OPENAPI)
    app.add_api_route("/openai/v1/models", models, methods=["GET"])
    app.add_api_route("/openai/v1/models/{model_id}", model, methods=["GET"])
    if settings.server.cors_allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.server.cors_allow_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-AgentRun-Session-ID",
                                          "X-app-custom-session-id"],
                           expose_headers=["x-request-id", "Retry-After", "x-should-retry"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # probes use HEAD too
    app.include_router(callback.router, prefix="/callback")
    return app


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentrun"}


def tune_garbage_collector() -> None:
    """Fewer and shorter collector pauses for a long-running server.

    One streamed run allocates thousands of short-lived objects (LangChain messages, chunks, callbacks), so
    with CPython's default threshold the collector ran several times a request and now and then walked the
    whole heap. What is loaded by now is process-long (modules, the app, the settings): `gc.freeze()` takes
    it out of every later collection.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO; keep those (and their query strings) out of the logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _callback_server(env: Mapping[str, str]) -> tuple[ServerSettings, FastAPI]:
    """`python app.py callback`: the authorization callback alone, for many users, where browsers reach it
    without a bearer token. It needs the server's and identity's variables only (no model, no tools)."""
    problems: list[str] = []
    server = identity = None
    try:
        server = ServerSettings.from_env(env)
    except ConfigError as error:
        problems += error.problems
    try:
        identity = IdentitySettings.from_env(env, callback_only=True)
    except ConfigError as error:
        problems += error.problems
    if problems or server is None or identity is None:
        raise ConfigError(problems)
    return server, callback_app(AgentIdentity(identity))


def main(argv: list[str]) -> int:
    env = load_env()
    try:
        if argv[1:2] == ["callback"]:
            server, app = _callback_server(env)
        else:
            settings = Settings.from_env(env)
            server, app = settings.server, create_app(settings)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    _configure_logging(server.log_level)
    tune_garbage_collector()
    uvicorn.run(app, host=server.host, port=server.port, log_level=server.log_level.lower(), access_log=False,
                timeout_keep_alive=75)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
