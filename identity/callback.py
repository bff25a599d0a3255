"""The OAuth2 authorization callback: `${APP_REDIRECT_URI}/callback?session_uri=..&state=..`.

After consent the provider sends the browser here. Anyone holding the link could open it, so before asking
Agent Identity to release the token (CompleteResourceTokenAuth) we check that the signed state is ours and
fresh, that it was not used before, and that the person here is the user who started the flow: their JWT
(session cookie, Bearer header, or in standalone mode the JWT given at start) must carry the state's `sub`.

Browsers get the cookie from `POST /callback/session` with `Authorization: Bearer <jwt>` (the local chat page
calls it once after sign-in); it is HttpOnly, SameSite=Lax and scoped to the callback path.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from config import ConfigError

from identity.cache import ExpiringLru
from identity.context import Caller
from identity.errors import IdentityError, InvalidCallerToken
from identity.pages import failure_page, success_page
from identity.service import AgentIdentity
from identity.settings import IdentitySettings
from identity.state import InvalidState, SignedState

log = logging.getLogger(__name__)

SESSION_COOKIE = "agent_session"
STANDALONE_PORT = 8090
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


def callback_router(identity: AgentIdentity, *, standalone_user_jwt: str | None = None) -> APIRouter:
    """Routes for `app.py` to mount at `/callback`. With `standalone_user_jwt`, that JWT identifies the user."""
    router = APIRouter()
    used: ExpiringLru[bool] = ExpiringLru(identity.settings.cache_size * 4)

    async def caller_at_the_browser(request: Request) -> Caller:
        if standalone_user_jwt:
            return await identity.authenticate(f"Bearer {standalone_user_jwt}")
        header = request.headers.get("authorization")
        if header:
            return await identity.authenticate(header)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return await identity.authenticate(f"Bearer {cookie}")
        raise InvalidCallerToken()

    async def callback(request: Request, state: str = "", session_uri: str = "", error: str = "") -> HTMLResponse:
        try:
            signed = identity.verify_state(state)
        except InvalidState as invalid:
            log.info("Authorization callback rejected: invalid state")
            return _html(400, failure_page("Authorization failed", str(invalid)))
        if used.get(signed.nonce) or (session_uri and used.get(session_uri)):
            log.info("Authorization callback rejected: replayed")
            return _html(409, failure_page("Link already used", "This authorization was already completed. "
                                           "You can close this tab."))
        if error:
            return _provider_error(identity, used, signed, error)
        if not session_uri or not identity.session_matches_state(signed, session_uri):
            return _html(400, failure_page("Authorization failed", "The link is incomplete or was altered."))
        try:
            caller = await caller_at_the_browser(request)
        except IdentityError:
            return _html(401, failure_page("Sign-in needed", "Open this link in the browser where you are signed "
                                           "in to the assistant, or sign in again and ask the assistant again."))
        if not identity.state_matches(signed, caller):
            log.warning("Authorization callback rejected: the signed-in user did not start this authorization")
            return _html(403, failure_page("Wrong user", "This authorization was started by a different user. "
                                           "Sign in as that user, or ask the assistant again yourself."))
        used.put(signed.nonce, True, signed.expires_at)  # before the call: a concurrent replay must not pass
        used.put(session_uri, True, signed.expires_at)
        try:
            await identity.complete_authorization(session_uri=session_uri, caller=caller)
        except IdentityError as failure:
            used.pop(signed.nonce)  # the same user may retry after a transient failure
            used.pop(session_uri)
            return _html(failure.http_status if failure.http_status >= 400 else 502,
                         failure_page("Authorization failed", failure.safe_message))
        return _html(200, success_page(_what(identity, signed)))

    async def start_session(request: Request) -> Response:
        """Set the HttpOnly session cookie the callback identifies the browser's user by."""
        try:
            caller = await identity.authenticate(request.headers.get("authorization"))
        except InvalidCallerToken as invalid:
            return JSONResponse({"error": {"message": invalid.safe_message, "type": "invalid_request_error",
                                           "code": invalid.code}}, status_code=401)
        response = JSONResponse({"ok": True})
        exp = caller.claims.get("exp")
        max_age = int(exp - time.time()) if isinstance(exp, int | float) else 3600
        response.set_cookie(SESSION_COOKIE, caller.token, max_age=max(max_age, 0), httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path=_callback_path(request))
        return response

    async def end_session(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE, path=_callback_path(request))
        return response

    for path in ("", "/"):
        router.add_api_route(path, callback, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    router.add_api_route("/session", start_session, methods=["POST"], include_in_schema=False)
    router.add_api_route("/session", end_session, methods=["DELETE"], include_in_schema=False)
    return router


def _provider_error(identity: AgentIdentity, used: ExpiringLru[bool], signed: SignedState, error: str) -> HTMLResponse:
    """The provider sent the user back with an error; access_denied ends the waiting tool as declined."""
    code = error if _ERROR_CODE.match(error) else "unknown_error"
    used.put(signed.nonce, True, signed.expires_at)
    if code == "access_denied":
        identity.decline_authorization(signed.nonce)
        return _html(200, failure_page("Authorization declined", "You declined the request; the assistant will "
                                       "not get access. You can close this tab."))
    return _html(400, failure_page("Authorization failed", f"The provider reported an error ({code})."))


def _what(identity: AgentIdentity, signed: SignedState) -> str | None:
    described = identity.describe_pending(signed.nonce)
    if described:
        provider, purpose = described
        return f"{purpose} ({provider})"
    return signed.provider or None


def _callback_path(request: Request) -> str:
    return request.url.path.rsplit("/session", 1)[0] or "/"


def _html(status: int, body: str) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def standalone_address(settings: IdentitySettings) -> tuple[int, str]:
    """(port, path) the standalone callback serves, read from `${APP_REDIRECT_URI}/callback`: the provider
    sends the browser exactly there, so the helper must listen on that URL's port and path (8090 when the
    URL names no port, as the documented `http://localhost:8090`)."""
    url = urlsplit(settings.callback_url)
    return url.port or STANDALONE_PORT, url.path


def standalone_callback_app(identity: AgentIdentity, user_jwt: str, *, path: str = "/callback") -> FastAPI:
    """The callback alone, for `python app.py callback` when the agent runs where the browser cannot reach."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await identity.aclose()

    app = FastAPI(title="Authorization callback", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> Response:
        """Unknown paths and methods in the OpenAI error shape, as the agent's own routes answer them."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse({"error": {"message": str(error.detail), "type": "invalid_request_error", "code": code}},
                            status_code=error.status_code, headers=error.headers)

    app.include_router(callback_router(identity, standalone_user_jwt=user_jwt), prefix=path.rstrip("/"))
    return app


def run_standalone_callback(env: Mapping[str, str], user_jwt: str | None = None, *, port: int | None = None,
                            host: str = "127.0.0.1") -> None:
    """Serve the callback at `${APP_REDIRECT_URI}/callback` (its port and path, on `host`) until interrupted.

    The user's JWT comes from the argument or CALLBACK_USER_JWT; it must be the JWT the agent was called
    with (CompleteResourceTokenAuth accepts only that original token). Every configuration problem is
    reported at once, as the agent's own start-up does.
    """
    import uvicorn

    problems: list[str] = []
    token = user_jwt or (env.get("CALLBACK_USER_JWT") or "").strip()
    if not token:
        problems.append("CALLBACK_USER_JWT is required for the standalone callback (the JWT of the user it "
                        "completes authorizations for)")
    try:
        settings = IdentitySettings.from_env(env)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    listen_port, path = standalone_address(settings)
    identity = AgentIdentity(settings)
    log.info("Authorization callback on http://%s:%d%s", host, port or listen_port, path)
    # No access log: its lines would carry the callback's query (session_uri, state).
    uvicorn.run(standalone_callback_app(identity, token, path=path), host=host, port=port or listen_port,
                log_level="info", access_log=False)
