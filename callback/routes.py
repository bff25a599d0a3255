"""The OAuth2 authorization callback: `${APP_REDIRECT_URI}/callback?session_uri=..&state=..`.

After consent the provider sends the browser here. Anyone holding the link could open it, so before asking
Agent Identity to release the token (CompleteResourceTokenAuth) the callback checks that the sealed state is
ours and fresh and that the person at the browser is the user who started the flow. A browser that follows a
redirect carries no bearer token, so one that is not signed in yet is sent to the users' own IdP first
(callback/oidc.py) and comes back to `/callback/signed-in`, which finishes the same callback. A provider's
`error=` counts only for the signed-in owner of the flow, like an approval.

The same routes serve mounted in the agent (wiring/agent_app.py) and alone (`python app.py callback`,
wiring/callback_app.py), which is how it runs where AgentRun's gateway asks every request for a JWT: a second
deployment of the same zip, reachable by browsers. Nothing here keeps state between requests except a small
replay guard: the flow travels sealed in `state`, the sign-in in cookies, the rest at Agent Identity, so any
instance can answer.

When the browser is signed in as another user than the flow's, nothing is completed and the starter's wait
goes on: the browser is sent (303) to `/callback/wrong-user`, so the callback URL leaves the address bar, and
the query travels on in a sealed cookie. That page offers the switch (`/callback/switch-user`): a new IdP
sign-in with `prompt=login` that, for the flow's owner, finishes the same flow. The provider's consent was
given by whoever is signed in at the provider in that browser, so the refused URL itself must not finish the
flow elsewhere: this process refuses it from then on, for every user, except through the switch of the
browser that holds the refusal. Other instances share no memory and cannot know of the refusal: that residual
risk, and why it is accepted, is in docs/architecture.md.
"""

from __future__ import annotations

import logging
import re
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callback.browser_session import BrowserSessions, TooLargeForCookies
from callback.oidc import OidcSignIn, SignInFailed
from callback.pages import failure_page, success_page, wrong_user_page
from identity.cache import ExpiringLru
from identity.errors import IdentityError, ProviderMisconfigured
from identity.service import AgentIdentity
from identity.state import FlowState, InvalidState
from settings.identity import SIGNED_IN_PATH

log = logging.getLogger(__name__)

_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
MAX_PARAMETER_LENGTH = 8192
WRONG_USER_PATH, SWITCH_USER_PATH = "/wrong-user", "/switch-user"
# The replay guard's marks: the flow was answered here, or refused here to a wrong user.
USED, REFUSED = "used", "refused"


class CallbackRoutes:
    """The callback's routes for one process; `router` is mounted at `/callback`."""

    def __init__(self, identity: AgentIdentity) -> None:
        settings = identity.settings
        self.identity = identity
        self.sessions = BrowserSessions(settings.state_secret, settings.callback_url)
        self.sign_in = OidcSignIn(settings, identity.verifier) if settings.signin_client_id else None
        self._used: ExpiringLru[str] = ExpiringLru(settings.cache_size * 4)
        self._wrong_user_url = settings.callback_url + WRONG_USER_PATH
        self.router = APIRouter()
        for path in ("", "/"):
            self.router.add_api_route(path, self.callback, methods=["GET"], include_in_schema=False)
        self.router.add_api_route(SIGNED_IN_PATH, self.signed_in, methods=["GET"], include_in_schema=False)
        for path, route in ((WRONG_USER_PATH, self.wrong_user), (SWITCH_USER_PATH, self.switch_user)):
            self.router.add_api_route(path, route, methods=["GET"], include_in_schema=False)

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
        mark = self._used.get(flow.flow_id)
        if mark:
            return _already_used() if mark == USED else _refused_here()
        resume = {"state": state, "session_uri": session_uri, "error": error}
        sub = await self._signed_in_sub(request)
        if sub is not None:
            return await self._finish(request, flow, sub, resume)
        if self.sign_in is None:
            return _page(401, "Sign-in needed", "This callback cannot sign your browser in: the operator has "
                         "not set CALLBACK_OIDC_CLIENT_ID. Ask the operator, or ask the assistant again "
                         "later.")
        return await self._sign_in_first(self.sign_in, resume)

    async def _sign_in_first(self, sign_in: OidcSignIn, resume: dict[str, str], *,
                             switch: bool = False) -> Response:
        """Send the browser to the IdP; the sign-in cookie remembers where to go on."""
        try:
            url, transaction = await sign_in.begin(resume, switch=switch)
        except SignInFailed as failed:
            return _page(503 if failed.unavailable else 502, "Sign-in unavailable", str(failed))
        response = RedirectResponse(url, status_code=302, headers=_NO_STORE)
        try:
            self.sessions.start_sign_in(response, transaction)
        except TooLargeForCookies:
            return _page(400, "Authorization failed", "The link is malformed.")
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
        try:
            flow = self.identity.open_state(transaction.resume.get("state", ""))
        except InvalidState as invalid:
            response: Response = _page(400, "Authorization failed", str(invalid))
        else:
            mark = self._used.get(flow.flow_id)
            if mark == USED:
                response = _already_used()
            elif mark == REFUSED and not transaction.switch:
                response = _refused_here()
            else:
                response = await self._finish(request, flow, sub, dict(transaction.resume))
        self.sessions.end_sign_in(response, request)
        self.sessions.sign_in(response, sub)
        return response

    async def wrong_user(self, request: Request) -> Response:
        """Where a refused browser lands, without the callback query: who started the flow (as far as is
        safe to say) and the switch to another user."""
        refusal = self._refusal(request)
        if refusal is None:
            return _nothing_refused()
        switch = SWITCH_USER_PATH.lstrip("/") if self.sign_in is not None else None  # relative: any prefix
        return HTMLResponse(wrong_user_page(refusal[1].starter_display_name(), switch), status_code=403,
                            headers=_NO_STORE)

    async def switch_user(self, request: Request) -> Response:
        """"Sign in as a different user": the IdP asks who is there (`prompt=login`), then the refused
        flow is finished for its owner, as after any sign-in."""
        refusal = self._refusal(request)
        if refusal is None or self.sign_in is None:
            return _nothing_refused()
        resume, flow = refusal
        if self._used.get(flow.flow_id) == USED:
            return _already_used()
        return await self._sign_in_first(self.sign_in, resume, switch=True)

    def _refusal(self, request: Request) -> tuple[dict[str, str], FlowState] | None:
        """The callback query this browser was refused for, and its flow (still valid), from the cookie."""
        resume = self.sessions.refused_resume(request)
        if resume is None:
            return None
        try:
            return dict(resume), self.identity.open_state(resume.get("state", ""))
        except InvalidState:
            return None

    async def _signed_in_sub(self, request: Request) -> str | None:
        """Who is at the browser: the session cookie, or a bearer JWT (a client that replays the link)."""
        if request.headers.get("authorization"):
            try:
                return (await self.identity.authenticate(request.headers["authorization"])).sub
            except IdentityError:
                return None
        return self.sessions.signed_in_sub(request)

    async def _finish(self, request: Request, flow: FlowState, sub: str, resume: dict[str, str]) -> Response:
        if sub != flow.sub:
            return self._refuse(flow, resume)
        response = await self._answer(flow, session_uri=resume.get("session_uri", ""),
                                      error=resume.get("error", ""))
        self.sessions.forget_refusal(response, request)
        return response

    def _refuse(self, flow: FlowState, resume: dict[str, str]) -> Response:
        """The wrong user: complete nothing, keep the owner's wait, and move the query out of the URL."""
        log.warning("Authorization callback refused: the signed-in user did not start this authorization "
                    "(flow %s)", flow.flow_id)
        if not self._used.get(flow.flow_id):
            self._used.put(flow.flow_id, REFUSED, flow.expires_at)
        response = RedirectResponse(self._wrong_user_url, status_code=303, headers=_NO_STORE)
        try:
            self.sessions.remember_refusal(response, resume)
        except TooLargeForCookies:
            return _page(403, "Wrong user", "This authorization was started by a different user.")
        return response

    async def _answer(self, flow: FlowState, *, session_uri: str, error: str) -> Response:
        """The flow's owner is at the browser: pass on the provider's error, or complete the flow."""
        previous = self._used.get(flow.flow_id)
        if error:
            self._used.put(flow.flow_id, USED, flow.expires_at)
            code = error if _ERROR_CODE.match(error) else "unrecognised_error"
            outcome = self.identity.provider_refused(flow, code)
            if code == "access_denied":
                return _page(200, "Authorization declined", "You declined the request; the assistant will "
                             "not get access. You can close this tab.")
            return _page(502, "Authorization failed", outcome.safe_message)
        if not session_uri:
            return _page(400, "Authorization failed", "The link is incomplete or was altered.")
        # before the call: a concurrent replay must not pass
        self._used.put(flow.flow_id, USED, flow.expires_at)
        try:
            await self.identity.complete_authorization(session_uri=session_uri, flow=flow)
        # the service answered 4xx: most often a used or expired session
        except ProviderMisconfigured as refused:
            log.info("Authorization callback: CompleteResourceTokenAuth refused (%s)", refused.service_code)
            return _page(400, "Authorization failed", f"Agent Identity did not accept this authorization "
                         f"({refused.service_code or 'refused'}): the link may have been used already or "
                         "have expired. Ask the assistant again for a new link.")
        except IdentityError as failure:
            # the same user may retry after a transient failure (a refused URL stays refused)
            if previous:
                self._used.put(flow.flow_id, previous, flow.expires_at)
            else:
                self._used.pop(flow.flow_id)
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


def _refused_here() -> HTMLResponse:
    return _page(409, "Link opened by a different user", "This link was opened in a browser signed in as "
                 "someone else, so it no longer completes by itself: the permission given at the provider "
                 "may be theirs. Ask the assistant again for a new link.")


def _nothing_refused() -> HTMLResponse:
    return _page(400, "Sign-in expired", "There is no refused authorization in this browser any more (it "
                 "lasts 10 minutes). Ask the assistant again for a new link.")
