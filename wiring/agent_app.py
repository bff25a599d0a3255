"""The agent's app (`create_app`): this file wires the packages together and names the routes; the OpenAI
protocol is server/'s, the agent agent/'s, credentials identity/'s, tools tools/'s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from agent.model import ModelProvider
from agent.runner import AgentRunner
from callback.routes import CallbackRoutes
from settings import Settings, load_env
from identity.service import AgentIdentity
from server.agui import AGUI_OPENAPI, AGUI_PATH, AgUiAgent
from server.browser_pages import BrowserPages
from server.chat import CHAT_OPENAPI, CHAT_PATH, ChatCompletions
from server.cors import allow_browser_origins
from server.edge import HttpEdge
from server.errors import ApiError
from server.failures import install_error_handlers
from server.health import add_health_route
from server.idempotency import IdempotencyRecords
from server.limits import AdmissionLimits
from server.request_log import RequestLogMiddleware
from server.shutdown import Shutdown
from server.unserved import UNSERVED_PATHS, answer_unserved
from tools import TOOLS
from tools.toolbox import Toolbox
from tools.tool import Tool, oauth2_providers


def create_app(config: Settings | Mapping[str, str] | None = None, *,
               shutdown: Shutdown | None = None, tools: Sequence[Tool] = TOOLS) -> FastAPI:
    """Build the app from `config` (settings, or an env mapping; default: the process environment over
    `.env`) offering `tools`. `shutdown`: set by the server on SIGTERM (app.state.shutdown). No network call
    here."""
    settings = config if isinstance(config, Settings) else Settings.from_env(
        load_env() if config is None else config, oauth2_providers(tools))
    identity = AgentIdentity(settings.identity)
    provider = ModelProvider(settings.agent, identity.instance_credential)
    toolbox = Toolbox(identity, settings.tools, tools)
    callback = CallbackRoutes(identity)
    shutdown = shutdown or Shutdown()
    runner = AgentRunner(provider, toolbox.tools)
    route = {"max_request_bytes": settings.server.max_request_bytes,
             "keepalive_seconds": settings.server.keepalive_seconds, "shutdown": shutdown,
             "idempotency": IdempotencyRecords()}
    chat = ChatCompletions(identity, provider, runner, **route)
    agui = AgUiAgent(identity, provider, runner, **route)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await toolbox.aclose()
        await provider.aclose()
        await callback.aclose()
        await identity.aclose()

    # The model list needs the caller's JWT like every other route: a client that "checks its key" with
    # `models.list()` must learn that the key is wrong there, not at its first chat.
    async def authenticate(request: Request) -> None:
        request.state.request_log.sub = (await identity.authenticate(
            request.headers.get("authorization"))).sub

    async def models(request: Request) -> dict[str, Any]:
        await authenticate(request)
        return {"object": "list", "data": [_model_object(name) for name in provider.model_names()]}

    async def model(request: Request, model_id: str) -> dict[str, Any]:
        await authenticate(request)
        if model_id not in provider.model_names():
            raise ApiError(404, f"The model {model_id!r} does not exist.", "invalid_request_error",
                           "model_not_found", "model")
        return _model_object(model_id)

    # No trailing-slash redirect: Starlette builds its Location from the request's Host header.
    app = FastAPI(title="AgentRun identity agent", lifespan=lifespan, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    app.state.settings = settings
    app.state.shutdown = shutdown
    install_error_handlers(app)
    app.add_middleware(AdmissionLimits, limits=settings.server.limits, shutdown=shutdown)
    app.add_middleware(HttpEdge, max_header_bytes=settings.server.server_limits.max_header_bytes)
    app.add_middleware(BrowserPages, prefix="/callback")
    app.add_middleware(RequestLogMiddleware)
    app.add_api_route(CHAT_PATH, chat.handle, methods=["POST"], summary="Chat Completions",
                      operation_id="chat_completions", openapi_extra=CHAT_OPENAPI)
    app.add_api_route(AGUI_PATH, agui.handle, methods=["POST"], summary="AG-UI agent run",
                      operation_id="ag_ui_run", openapi_extra=AGUI_OPENAPI)
    for path in UNSERVED_PATHS:
        app.add_api_route(path, answer_unserved, methods=["GET", "POST"], include_in_schema=False)
    app.add_api_route("/openai/v1/models", models, methods=["GET"])
    app.add_api_route("/openai/v1/models/{model_id}", model, methods=["GET"])
    allow_browser_origins(app, settings.server.cors_allow_origins)
    add_health_route(app)
    app.include_router(callback.router, prefix="/callback")
    return app


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentrun"}
