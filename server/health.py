"""`/health`, the platform's probe: the same answer from the app being built (server/starting.py), the agent
and the callback alone. Never refused by the admission limits (server/limits.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from starlette.applications import Starlette

HEALTH_PATH = "/health"
HEALTH_METHODS = ("GET", "HEAD")  # probes use HEAD too


def health_response() -> Response:
    return JSONResponse({"status": "ok"})


async def _health(_: Request) -> Response:
    return health_response()


def add_health_route(app: Starlette) -> None:
    """The route on a built app (the FastAPI app of the agent or the callback); a wrong method gets the
    app's own 405."""
    app.add_route(HEALTH_PATH, _health, methods=list(HEALTH_METHODS))
