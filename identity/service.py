"""`AgentIdentity`: the only code that talks to Agent Identity, one per process with every cache.

It follows the Agent Identity SDK's own credential flow (user JWT -> workload access token -> optional STS
credentials -> resource OAuth2 token) but calls the data client itself: the SDK's `async def` helpers run
sync HTTP inside, its decorators cannot be pointed at another endpoint and write `.config.json`. What it
brokers lives in one module each: workload access tokens (identity/workload.py), STS credentials
(identity/sts.py), OAuth2 resource tokens and the consent they may need (identity/oauth2_tokens.py), every one
over the one SDK-call path (identity/data_plane.py). The caller is the one bound to the request context
(identity/context.py); tools ask for credentials and never see a JWT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from identity.context import Caller
from identity.credentials import StsCredential
from identity.data_plane import DataPlane
from identity.jwt_verifier import JwtVerifier
from identity.oauth2_tokens import OAuth2Tokens
from identity.state import FlowState
from identity.errors import IdentityError
from identity.sts import SIGNING_STS_SECONDS, StsCredentials
from identity.workload import WorkloadTokens
from settings.identity import IdentitySettings

__all__ = ["AgentIdentity", "StsCredential"]


class AgentIdentity:
    """Credentials for the caller bound to the current request context (see identity/context.py)."""

    def __init__(self, settings: IdentitySettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.verifier = JwtVerifier(settings)  # the callback's browser sign-in verifies ID tokens with it too
        plane = DataPlane(settings)
        self.instance_credential = plane.instance_credential
        self._workload = WorkloadTokens(plane, settings, clock)
        self._sts = StsCredentials(plane, self._workload, settings, clock)
        self._oauth2 = OAuth2Tokens(plane, self._workload, self._sts, settings, clock)

    async def authenticate(self, authorization_header: str | None) -> Caller:
        """The verified caller of an inbound request; raises InvalidCallerToken (-> 401)."""
        return await self.verifier.authenticate(authorization_header)

    async def workload_access_token(self) -> str:
        """The workload access token for the current caller (cached per user JWT, single flight)."""
        return await self._workload.current()

    async def sts_credential(self, *, policy: str | None = None, duration_seconds: int = SIGNING_STS_SECONDS,
                             rejected: StsCredential | None = None) -> StsCredential:
        """STS credentials of the workload identity's role for the current caller, optionally narrowed by a
        session `policy`; cached until shortly before they expire, single flight.

        `rejected`: credentials a service just refused (InvalidSecurityToken.*, see
        identity.sdk_errors.credential_rejected) although our cache still held them. They are dropped, unless
        a concurrent request already replaced them, and fresh ones are returned: call this once, then give
        up."""
        return await self._sts.credential(policy=policy, duration_seconds=duration_seconds, rejected=rejected)

    async def oauth2_token(self, *, provider: str, scopes: Sequence[str], purpose: str,
                           flow: str = "USER_FEDERATION", force_authentication: bool = False,
                           prompt_consent: bool = False) -> str:
        """An OAuth2 access token for `provider`, cached per (user, provider, scopes, flow) until shortly
        before its `ExpiresIn`. When the user must consent, the link is emitted to the request's event sink at
        once (AuthorizationRequired), then the service is polled until the user finishes
        (AuthorizationCompleted), declines, or AUTHORIZATION_TIMEOUT_SECONDS pass. In non-stream mode the link
        is emitted too, then AuthorizationPending is raised. Every ask that finds no token gets a new link: an
        authorization URL works once, so a link shown before is never shown again. `force_authentication` (the
        provider refused the token) drops the cached token and asks the user again; with `prompt_consent` the
        provider shows its consent page again (`CustomParameters` `{"prompt": "consent"}`), so a permission
        its app gained since the user's last consent reaches the new token."""
        return await self._oauth2.token(provider=provider, scopes=scopes, purpose=purpose, flow=flow,
                                        force_authentication=force_authentication,
                                        prompt_consent=prompt_consent)

    def open_state(self, value: str) -> FlowState:
        """The flow a callback's `state` stands for; raises identity.state.InvalidState."""
        return self._oauth2.open_state(value)

    async def complete_authorization(self, *, session_uri: str, flow: FlowState) -> None:
        """CompleteResourceTokenAuth with the flow's ORIGINAL JWT (the one its workload token came from)."""
        await self._oauth2.complete_authorization(session_uri=session_uri, flow=flow)

    def provider_refused(self, flow: FlowState, error: str) -> IdentityError:
        """The provider sent the flow's owner back with `error`: end that flow's wait at once (when this
        process runs it). Returns what the waiting tool reports."""
        return self._oauth2.provider_refused(flow, error)

    async def aclose(self) -> None:
        await self.verifier.aclose()
        for broker in (self._workload, self._sts, self._oauth2):
            await broker.aclose()
