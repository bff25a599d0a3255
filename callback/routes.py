"""The OAuth2 authorization callback: `${APP_REDIRECT_URI}/callback?session_uri=..&state=..`.

After consent the provider sends the browser here. Anyone holding the link could open it, so before asking
Agent Identity to release the token (CompleteResourceTokenAuth) the callback checks that the sealed state is
ours and fresh and that the person at the browser is the user who started the flow. A browser that follows a
redirect carries no bearer token, so one that is not signed in yet is sent to the users' own IdP first
(callback/oidc.py) and comes back to `/callback/signed-in`, which finishes the same callback. A provider's
`error=` counts only for the signed-in owner of the flow, like an approval.

The same routes serve mounted in the agent (wiring/agent_app.py) and alone (`python app.py callback`,
wiring/callback_app.py), which is how it runs where AgentRun's gateway asks every request for a JWT: a second
deployment of the same zip, reachable by browsers. Nothing here keeps state between requests except a small replay guard: the flow
travels sealed in `state`, the sign-in in cookies, the rest at Agent Identity, so any instance can answer.
"""

from __future__ import annotations

import logging
import re
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callback.browser_session import BrowserSessions
from callback.oidc import OidcSignIn, SignInFailed
from callback.pages import failure_page, success_page
from identity.cache import ExpiringLru
from identity.errors import IdentityError, ProviderMisconfigured
from identity.service import AgentIdentity
from identity.state import FlowState, InvalidState
from settings.identity import SIGNED_IN_PATH

log = logging.getLogger(__name__)

_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
MAX_PARAMETER_LENGTH = 8192


class CallbackRoutes:
    """The callback's routes for one process; `router` is mounted at `/callback`."""

    def __init__(self, identity: AgentIdentity) -> None:
        settings = identity.settings
        self.identity = identity
        self.sessions = BrowserSessions(settings.state_secret, settings.callback_url)
        self.sign_in = OidcSignIn(settings, identity.verifier) if settings.signin_client_id else None
        self._used: ExpiringLru[bool] = ExpiringLru(settings.cache_size * 4)
        self.router = APIRouter()
        for path in ("", "/"):
            self.router.add_api_route(path, self.callback, methods=["GET"], include_in_schema=False)
        self.router.add_api_route(SIGNED_IN_PATH, self.signed_in, methods=["GET"], include_in_schema=False)

    async def callback(self, request: Request, state: str = "", session_uri: str = "",
                       error: str = "") -> Response:
        """The provider's redirect: finish the flow for the signed-in user, or sign the browser in first."""
        if max(len(state), len(session_uri), len(error)) > MAX_PARAMETER_LENGTH:
            return _page(400, "Authorization failed", "The link is malformed.")
        try:
            flow = self.identity.open_state(state)
        except InvalidState as invalid:
            log.info("Authorization callback rejected: invalid state")
            return _page(400, "Authorization failed", str(invalid))
        if self._used.get(flow.flow_id):
            return _already_used()
        sub = await self._signed_in_sub(request)
        if sub is not None:
            return await self._finish(flow, sub, session_uri=session_uri, error=error)
        if self.sign_in is None:
            return _page(401, "Sign-in needed", "This callback cannot sign your browser in: the operator has "
                         "not set CALLBACK_OIDC_CLIENT_ID. Ask the operator, or ask the assistant again "
                         "later.")
        resume = {"state": state, "session_uri": session_uri, "error": error}
        try:
            url, transaction = await self.sign_in.begin(resume)
        except SignInFailed as failed:
            return _page(503 if failed.unavailable else 502, "Sign-in unavailable", str(failed))
        response = RedirectResponse(url, status_code=302, headers=_NO_STORE)
        self.sessions.start_sign_in(response, transaction)
        return response

    async def signed_in(self, request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        """The IdP's redirect back: prove who is at the browser, then finish the callback it interrupted."""
        transaction = self.sessions.pending_sign_in(request)
        if transaction is None or not state or state != transaction.csrf:
            log.info("Browser sign-in rejected: no matching sign-in in this browser")
            return _page(400, "Sign-in expired", "This sign-in was not started in this browser or took too "
                         "long. Open the authorization link from the assistant again, or ask it for a new "
                         "one.")
        if error or not code or self.sign_in is None:
            return _page(401, "Sign-in failed", "You were not signed in at the identity provider, so the "
                         "authorization was not completed. Ask the assistant again to retry.")
        try:
            sub = await self.sign_in.finish(code=code, transaction=transaction)
        except SignInFailed as failed:
            return _page(503 if failed.unavailable else 401, "Sign-in failed", str(failed))
        resume = transaction.resume
        try:
            flow = self.identity.open_state(resume.get("state", ""))
        except InvalidState as invalid:
            response = _page(400, "Authorization failed", str(invalid))
        else:
            response = (_already_used() if self._used.get(flow.flow_id) else
                        await self._finish(flow, sub, session_uri=resume.get("session_uri", ""),
                                           error=resume.get("error", "")))
        self.sessions.end_sign_in(response)
        self.sessions.sign_in(response, sub)
        return response

    async def _signed_in_sub(self, request: Request) -> str | None:
        """Who is at the browser: the session cookie, or a bearer JWT (a client that replays the link)."""
        if request.headers.get("authorization"):
            try:
                return (await self.identity.authenticate(request.headers["authorization"])).sub
            except IdentityError:
                return None
        return self.sessions.signed_in_sub(request)

    async def _finish(self, flow: FlowState, sub: str, *, session_uri: str, error: str) -> Response:
        if sub != flow.sub:
            log.warning("Authorization callback rejected: the signed-in user did not start this "
                        "authorization")
            return _page(403, "Wrong user", "This authorization was started by a different user. Sign in as "
                         "that user, or ask the assistant again yourself.")
        if error:
            self._used.put(flow.flow_id, True, flow.expires_at)
            code = error if _ERROR_CODE.match(error) else "unrecognised_error"
            outcome = self.identity.provider_refused(flow, code)
            if code == "access_denied":
                return _page(200, "Authorization declined", "You declined the request; the assistant will "
                             "not get access. You can close this tab.")
            return _page(502, "Authorization failed", outcome.safe_message)
        if not session_uri:
            return _page(400, "Authorization failed", "The link is incomplete or was altered.")
        # before the call: a concurrent replay must not pass
        self._used.put(flow.flow_id, True, flow.expires_at)
        try:
            await self.identity.complete_authorization(session_uri=session_uri, flow=flow)
        # the service answered 4xx: most often a used or expired session
        except ProviderMisconfigured as refused:
            log.info("Authorization callback: CompleteResourceTokenAuth refused (%s)", refused.service_code)
            return _page(400, "Authorization failed", f"Agent Identity did not accept this authorization "
                         f"({refused.service_code or 'refused'}): the link may have been used already or "
                         "have expired. Ask the assistant again for a new link.")
        except IdentityError as failure:
            self._used.pop(flow.flow_id)  # the same user may retry after a transient failure
            return _page(failure.http_status if failure.http_status >= 400 else 502, "Authorization failed",
                         failure.safe_message)
        log.info("Authorization completed for provider %s, flow %s", flow.provider, flow.flow_id)
        return HTMLResponse(success_page(f"{flow.purpose} ({flow.provider})"), headers=_NO_STORE)

    async def aclose(self) -> None:
        if self.sign_in is not None:
            await self.sign_in.aclose()


_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(status: int, title: str, message: str) -> HTMLResponse:
    return HTMLResponse(failure_page(title, message), status_code=status, headers=_NO_STORE)


def _already_used() -> HTMLResponse:
    return _page(409, "Link already used", "This authorization was already answered. You can close this tab.")
