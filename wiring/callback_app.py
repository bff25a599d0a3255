"""The authorization callback's app alone (`python app.py callback`): no model, no tools, no LangChain, so a
new instance of the callback deployment is ready in about half a second (bench/RESULTS.md, benchmark 9) while
the user's browser waits for it after consent."""

from __future__ import annotations

from starlette.types import ASGIApp

from settings import CallbackSettings
from identity.callback import callback_app
from identity.service import AgentIdentity
from server.limits import AdmissionLimits
from server.request_log import RequestLogMiddleware
from server.shutdown import Shutdown


def create_callback_app(settings: CallbackSettings, shutdown: Shutdown) -> ASGIApp:
    """The callback alone; browsers reach it without a token, so the agent's limits hold here too."""
    app = callback_app(AgentIdentity(settings.identity))
    return RequestLogMiddleware(AdmissionLimits(app, settings.server.limits, shutdown))
