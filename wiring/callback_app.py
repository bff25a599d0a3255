"""The authorization callback's app alone (`python app.py callback`): no model, no tools, no LangChain, so a
new instance of the callback deployment is ready at once while the user's browser waits for it after
consent (bench/RESULTS.md, benchmark 9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from callback.routes import CallbackRoutes
from identity.service import AgentIdentity
from server.browser_pages import BrowserPages
from server.edge import HttpEdge
from server.errors import http_error
from server.health import add_health_route
from server.limits import AdmissionLimits
from server.request_log import RequestLogMiddleware
from server.shutdown import Shutdown
from settings import CallbackSettings


def create_callback_app(settings: CallbackSettings, shutdown: Shutdown) -> ASGIApp:
    """`/callback` (as mounted in the agent) and `/health`; browsers reach it without a token, so the agent's
    limits hold here too."""
    identity = AgentIdentity(settings.identity)
    routes = CallbackRoutes(identity)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await routes.aclose()
        await identity.aclose()

    # No trailing-slash redirect: Starlette builds its Location from the request's Host header.
    app = FastAPI(title="Authorization callback", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan, redirect_slashes=False)
    app.add_exception_handler(StarletteHTTPException, http_error)
    add_health_route(app)
    app.include_router(routes.router, prefix="/callback")
    limited = AdmissionLimits(app, settings.server.limits, shutdown)
    edge = HttpEdge(limited, settings.server.server_limits.max_header_bytes)
    return RequestLogMiddleware(BrowserPages(edge))
