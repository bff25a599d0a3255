"""The agent's app (`create_app`): this file wires the packages together and names the routes; the OpenAI
protocol is server/'s, the agent agent/'s, credentials identity/'s, tools tools/'s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from agent.model import ModelProvider
from agent.runner import AgentRunner
from callback.routes import CallbackRoutes
from settings import Settings, load_env
from identity.service import AgentIdentity
from server.agui import AGUI_OPENAPI, AGUI_PATH, AgUiAgent
from server.chat import CHAT_OPENAPI, CHAT_PATH, ChatCompletions
from server.errors import ApiError
from server.failures import install_error_handlers
from server.health import add_health_route
from server.limits import AdmissionLimits
from server.request_log import RequestLogMiddleware
from server.shutdown import Shutdown
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

    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_object(name) for name in provider.model_names()]}

    async def model(model_id: str) -> dict[str, Any]:
        if model_id not in provider.model_names():
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
    add_health_route(app)
    app.include_router(callback.router, prefix="/callback")
    return app


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "agentrun"}
