"""The agent server's app factory and entry point.

    python app.py            serve on HOST:FC_CUSTOM_LISTEN_PORT|PORT|9000
    python app.py callback   serve only the OAuth2 authorization callback (same host and port variables)

This file wires the packages together and names the routes; the OpenAI protocol is server/'s, the agent
agent/'s, credentials identity/'s.
"""

from __future__ import annotations

import os
import sys

# AgentRun offers python3.10 and python3.12 (docs/services.md, AgentRun): on 3.10 the imports below would die
# with "cannot import name 'Self'", which says nothing about the runtime to choose.
if sys.version_info < (3, 11):
    sys.exit(f"This agent needs Python 3.11 or newer, not {sys.version.split()[0]}: choose the python3.12 "
             "runtime for it in AgentRun.")

# AgentRun's zip layout puts dependencies in ./python, which is not on sys.path (docs/services.md, AgentRun).
# This must run before any third-party import.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_HERE, "python"), _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)

import asyncio  # noqa: E402
import gc  # noqa: E402
from collections.abc import AsyncIterator, Callable, Mapping  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Self  # noqa: E402

from dotenv import dotenv_values  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.middleware.cors import CORSMiddleware  # noqa: E402
from starlette.types import ASGIApp  # noqa: E402

import tools  # noqa: E402
from agent.model import ModelProvider  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from agent.settings import AgentSettings  # noqa: E402
from config import ConfigError, EnvReader  # noqa: E402
from identity.callback import CallbackRoutes, callback_app  # noqa: E402
from identity.jwt_verifier import log_waived_verification  # noqa: E402
from identity.service import AgentIdentity  # noqa: E402
from identity.settings import IdentitySettings  # noqa: E402
from server.agui import AGUI_OPENAPI, AGUI_PATH, AgUiAgent  # noqa: E402
from server.chat import CHAT_OPENAPI, CHAT_PATH, ChatCompletions  # noqa: E402
from server.errors import ApiError  # noqa: E402
from server.limits import AdmissionLimits, Limits  # noqa: E402
from server.logs import configure_logging  # noqa: E402
from server.request_log import RequestLogMiddleware, install_error_handlers  # noqa: E402
from server.serving import ServerLimits, serve  # noqa: E402
from server.shutdown import Shutdown  # noqa: E402

# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


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
    """Every package's settings, parsed once and together, so one error names every problem."""

    server: ServerSettings
    agent: AgentSettings
    identity: IdentitySettings
    tools: tools.ToolSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(**_read_together(env, server=ServerSettings.from_env, agent=AgentSettings.from_env,
                                    identity=IdentitySettings.from_env, tools=tools.ToolSettings.from_env))


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


def load_env() -> dict[str, str]:
    """The process environment over `.env` values (a real variable always wins)."""
    values = {k: v for k, v in dotenv_values(os.path.join(_HERE, ".env")).items() if v is not None}
    return {**values, **os.environ}


def create_app(config: Settings | Mapping[str, str] | None = None, *,
               shutdown: Shutdown | None = None) -> FastAPI:
    """Build the app from `config` (settings, or an env mapping; default: the process environment over
    `.env`). `shutdown`: set by the server on SIGTERM (app.state.shutdown). No network call here."""
    settings = config if isinstance(config, Settings) else Settings.from_env(
        load_env() if config is None else config)
    log_waived_verification(settings.identity)
    identity = AgentIdentity(settings.identity)
    provider = ModelProvider(settings.agent, identity.instance_credential)
    toolbox = tools.Toolbox(identity, settings.tools)
    callback = CallbackRoutes(identity)
    shutdown = shutdown or Shutdown()
    runner = AgentRunner(provider, toolbox.tools)
    route = {"max_request_bytes": settings.server.max_request_bytes,
             "keepalive_seconds": settings.server.keepalive_seconds, "shutdown": shutdown}
    chat = ChatCompletions(identity, provider, runner, **route)
    agui = AgUiAgent(identity, provider, runner, **route)

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
            raise ApiError(404, f"The model {model_id!r} does not exist.", "invalid_request_error",
                           "model_not_found", "model")
        return _model_object(model_id)

    app = FastAPI(title="AgentRun identity agent", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.shutdown = shutdown
    install_error_handlers(app)
    app.add_middleware(AdmissionLimits, limits=settings.server.limits, shutdown=shutdown)
    app.add_middleware(RequestLogMiddleware)
    app.add_api_route(CHAT_PATH, chat.handle, methods=["POST"], summary="Chat Completions",
                      operation_id="chat_completions", openapi_extra=CHAT_OPENAPI)
    app.add_api_route(AGUI_PATH, agui.handle, methods=["POST"], summary="AG-UI agent run",
                      operation_id="ag_ui_run", openapi_extra=AGUI_OPENAPI)
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


def create_callback_app(settings: CallbackSettings, shutdown: Shutdown) -> ASGIApp:
    """The callback alone; browsers reach it without a token, so the agent's limits hold here too."""
    app = callback_app(AgentIdentity(settings.identity))
    return RequestLogMiddleware(AdmissionLimits(app, settings.server.limits, shutdown))


def main(argv: list[str]) -> int:
    env = load_env()
    callback_only = argv[1:2] == ["callback"]
    try:
        settings = CallbackSettings.from_env(env) if callback_only else Settings.from_env(env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    server = settings.server
    configure_logging(server.log_level, server.log_format)  # before the app: it logs what start-up waived
    shutdown = Shutdown()
    app = create_callback_app(settings, shutdown) if isinstance(settings, CallbackSettings) else \
        create_app(settings, shutdown=shutdown)
    tune_garbage_collector()
    asyncio.run(serve(app, server.server_limits, shutdown, host=server.host, port=server.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
