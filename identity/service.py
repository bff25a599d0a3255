"""`AgentIdentity`: the only code that talks to Agent Identity.

It follows the Agent Identity SDK's own credential flow (user JWT -> workload access token -> optional STS
credentials -> resource OAuth2 token) but calls the data client itself: the SDK's `async def` helpers run
sync HTTP inside, its decorators cannot be pointed at another endpoint and write `.config.json`. Every call
is the data client's pooled sync method in the process's SDK thread pool (`outbound.sdk_call`): its
`*_async` methods open a new TLS connection per call. One instance per process holds every cache; tools ask
it for credentials and never see a JWT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, TypeVar

from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_agentidentitydata20251127.models import (
    AssumeRoleForWorkloadIdentityRequest,
    CompleteResourceTokenAuthRequest,
    CompleteResourceTokenAuthRequestUserIdentifier,
    GetResourceOAuth2TokenRequest,
    GetWorkloadAccessTokenForJWTRequest,
)
from alibabacloud_credentials.client import Client as CredentialClient

from outbound import sdk_config
from identity.authorization import PendingAuthorization, PendingAuthorizations
from identity.cache import CachedFlights, ExpiringLru, token_key
from identity.context import (AuthorizationCompleted, AuthorizationRequired, Caller, RequestContext,
                              current_request_context, current_session_id, current_user_token)
from identity.credentials import StsCredential, instance_credential_client, parse_expiration
from identity.errors import (AuthorizationDeclined, AuthorizationFailed, AuthorizationPending,
                             AuthorizationTimedOut, IdentityError, IdentityThrottled, IdentityUnavailable,
                             ProviderMisconfigured)
from identity.jwt_verifier import JwtVerifier
from identity.sdk_errors import may_be_stale_credential, translate
from settings.identity import IdentitySettings
from identity.state import FlowState, FlowStates
from outbound import sdk_call

__all__ = ["AgentIdentity", "StsCredential"]

log = logging.getLogger(__name__)
T = TypeVar("T")

FLOWS = ("USER_FEDERATION", "M2M")
USER_TOKEN_MARGIN_SECONDS = 30.0  # stop using a workload token this long before the user's JWT expires
# JWTs without `exp` (only possible behind a gateway) are re-exchanged this often
UNDATED_TOKEN_TTL_SECONDS = 300.0
SIGNING_STS_SECONDS = 3600  # the same duration as sts_credential's default, so both share one credential
OAUTH2_TOKEN_MARGIN_SECONDS = 60.0  # stop serving a cached OAuth2 token this long before its ExpiresIn
# SessionStatus values are not published (docs/services.md): AWS documents IN_PROGRESS and FAILED. FAILED ends
# the wait as "not completed" (a refusal or a provider failure look the same here); any value we do not know
# means "still waiting".
FAILED_STATUSES = {"FAILED"}
EXPIRED_STATUSES = {"EXPIRED", "TIMEOUT", "TIMED_OUT"}
# While waiting, every this many polls of its own session a flow also asks the vault (GetResourceOAuth2Token
# without SessionURI): the user may have approved another link for the same token, on another instance.
VAULT_PROBE_EVERY_POLLS = 3


class IssuedToken(NamedTuple):
    """An OAuth2 access token and its lifetime as the service reported it (`ExpiresIn`, seconds; None if
    absent)."""

    token: str
    expires_in: int | str | None


class _ConsentNeeded(Exception):
    """Internal: the vault had no token, the user must consent to `pending` (shared by a single flight)."""

    def __init__(self, pending: PendingAuthorization) -> None:
        super().__init__("consent needed")
        self.pending = pending


class AgentIdentity:
    """Credentials for the caller bound to the current request context (see identity/context.py)."""

    def __init__(self, settings: IdentitySettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._verifier = JwtVerifier(settings)
        self._states = FlowStates(settings.state_secret, clock)
        self.instance_credential = instance_credential_client(settings.access_key_id,
                                                              settings.access_key_secret,
                                                              settings.security_token)
        self._instance_client = self._data_client(self.instance_credential)
        self._workload_tokens: CachedFlights[str] = CachedFlights(settings.cache_size, clock)
        self._sts: CachedFlights[StsCredential] = CachedFlights(settings.cache_size, clock)
        self._signing_clients: ExpiringLru[DataClient] = ExpiringLru(settings.cache_size, clock)
        self._oauth2_tokens: CachedFlights[str] = CachedFlights(settings.cache_size, clock)
        self._pending = PendingAuthorizations(settings.cache_size, clock)

    # --- who is calling -------------------------------------------------------------------------------------

    @property
    def verifier(self) -> JwtVerifier:
        """The inbound JWT verifier (the callback's browser sign-in verifies ID tokens with it too)."""
        return self._verifier

    async def authenticate(self, authorization_header: str | None) -> Caller:
        """The verified caller of an inbound request; raises InvalidCallerToken (-> 401)."""
        return await self._verifier.authenticate(authorization_header)

    # --- workload access token ------------------------------------------------------------------------------

    async def workload_access_token(self) -> str:
        """The workload access token for the current caller (cached per user JWT, single flight)."""
        return await self._workload_token_for(current_request_context().caller)

    async def _workload_token_for(self, caller: Caller) -> str:
        user_token = current_user_token()

        async def exchange() -> tuple[str, float]:
            request = GetWorkloadAccessTokenForJWTRequest(
                workload_identity_name=self.settings.workload_identity_name, user_token=user_token)
            response = await self._call("GetWorkloadAccessTokenForJWT",
                                        self._instance_client.get_workload_access_token_for_jwt, request)
            token = response.body.workload_access_token if response.body else None
            if not token:
                raise IdentityUnavailable("The identity service returned no workload access token.")
            return token, self._user_token_expiry(caller)

        return await self._workload_tokens.get(token_key(user_token), exchange)

    def _user_token_expiry(self, caller: Caller) -> float:
        exp = caller.claims.get("exp")
        if isinstance(exp, int | float):
            return float(exp) - USER_TOKEN_MARGIN_SECONDS
        return self._clock() + UNDATED_TOKEN_TTL_SECONDS

    # --- STS ------------------------------------------------------------------------------------------------

    async def sts_credential(self, *, policy: str | None = None, duration_seconds: int = 3600,
                             rejected: StsCredential | None = None) -> StsCredential:
        """STS credentials of the workload identity's role for the current caller, optionally narrowed by a
        session `policy`; cached until shortly before they expire, single flight.

        `rejected`: credentials a service just refused (InvalidSecurityToken.*, see
        identity.sdk_errors.credential_rejected) although our cache still held them. They are dropped, unless
        a concurrent request already replaced them, and fresh ones are returned: call this once, then give
        up."""
        caller = current_request_context().caller

        async def attempt() -> StsCredential:
            workload_token = await self._workload_token_for(caller)
            key = self._sts_key(workload_token, policy, duration_seconds)
            if rejected is not None:
                self._drop_sts(key, rejected)
            return await self._sts_for(caller, workload_token, policy, duration_seconds)

        return await self._retry_if_stale(caller, attempt)

    @staticmethod
    def _sts_key(workload_token: str, policy: str | None, duration_seconds: int) -> str:
        return token_key(workload_token, policy or "", str(duration_seconds))

    async def _sts_for(self, caller: Caller, workload_token: str, policy: str | None,
                       duration_seconds: int) -> StsCredential:
        async def assume() -> tuple[StsCredential, float]:
            credential = await self._assume_role(workload_token, caller, policy, duration_seconds)
            return credential, self._refresh_time(credential, duration_seconds)

        return await self._sts.get(self._sts_key(workload_token, policy, duration_seconds), assume)

    def _drop_sts(self, key: str, rejected: StsCredential) -> None:
        cached = self._sts.cache.get(key)
        if cached is not None and cached.access_key_id == rejected.access_key_id:
            log.info("Cached STS credentials were refused by a service; assuming the role again")
            self._sts.invalidate(key)
        self._signing_clients.pop(rejected.access_key_id)

    async def _retry_if_stale(self, caller: Caller, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`; if the service refused a cached workload token or the STS credentials that signed
        the call, drop both and run it once more (the user's JWT is exchanged again)."""
        try:
            return await attempt()
        except IdentityError as error:
            if not may_be_stale_credential(error):
                raise
        log.info("A cached credential was no longer accepted; exchanging the user token again")
        workload_key = token_key(current_user_token())
        workload_token = self._workload_tokens.cache.get(workload_key)
        if workload_token is not None:
            signing_key = self._sts_key(workload_token, None, SIGNING_STS_SECONDS)
            signing = self._sts.cache.get(signing_key)
            if signing is not None:
                self._drop_sts(signing_key, signing)
        self._workload_tokens.invalidate(workload_key)
        return await attempt()

    async def _assume_role(self, workload_token: str, caller: Caller, policy: str | None,
                           duration_seconds: int) -> StsCredential:
        request = AssumeRoleForWorkloadIdentityRequest(
            workload_access_token=workload_token, role_session_name=f"agent-{token_key(caller.sub)[:16]}",
            duration_seconds=duration_seconds, policy=policy)
        response = await self._call("AssumeRoleForWorkloadIdentity",
                                    self._instance_client.assume_role_for_workload_identity, request)
        issued = response.body.credentials if response.body else None
        if (not issued or not issued.access_key_id or not issued.access_key_secret
                or not issued.security_token):
            raise IdentityUnavailable("The identity service returned no STS credentials.")
        fallback = datetime.fromtimestamp(self._clock(), timezone.utc) + timedelta(seconds=duration_seconds)
        return StsCredential(access_key_id=issued.access_key_id, access_key_secret=issued.access_key_secret,
                             security_token=issued.security_token,
                             expiration=parse_expiration(issued.expiration, fallback))

    @staticmethod
    def _refresh_time(credential: StsCredential, duration_seconds: int) -> float:
        margin = min(300.0, duration_seconds / 5)
        return credential.expiration.timestamp() - margin

    async def _resource_client(self, caller: Caller, workload_token: str) -> DataClient:
        """The data client that signs GetResourceOAuth2Token: STS from the workload token (as the SDK) or the
        instance's own AccessKey when AGENT_IDENTITY_USE_STS=false. The STS credentials are the very ones
        `sts_credential()` (no policy, default duration) returns, so a tool asking for those costs no extra
        AssumeRole; tools with a session policy get their own, narrower ones."""
        if not self.settings.use_sts:
            return self._instance_client
        credential = await self._sts_for(caller, workload_token, None, SIGNING_STS_SECONDS)
        client = self._signing_clients.get(credential.access_key_id)
        if client is None:
            client = self._data_client(credential.credential_client())
            self._signing_clients.put(credential.access_key_id, client,
                                      self._refresh_time(credential, SIGNING_STS_SECONDS))
        return client

    # --- OAuth2 resource tokens -----------------------------------------------------------------------------

    async def oauth2_token(self, *, provider: str, scopes: Sequence[str], purpose: str,
                           flow: str = "USER_FEDERATION", force_authentication: bool = False) -> str:
        """An OAuth2 access token for `provider`, cached per (user, provider, scopes, flow) until shortly
        before its `ExpiresIn`. When the user must consent, the link is emitted to the request's event sink at
        once (AuthorizationRequired), then the service is polled until the user finishes
        (AuthorizationCompleted), declines, or AUTHORIZATION_TIMEOUT_SECONDS pass. In non-stream mode the link
        is emitted too, then AuthorizationPending is raised. Every ask that finds no token gets a new link: an
        authorization URL works once, so a link shown before is never shown again. `force_authentication` (the
        provider refused the token) drops the cached token and asks the user again."""
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}")
        ctx = current_request_context()
        cache_key = token_key("oauth2", ctx.caller.sub, provider, flow, *sorted(scopes))
        if force_authentication:
            self._oauth2_tokens.invalidate(cache_key)
        else:
            cached = self._oauth2_tokens.cache.get(cache_key)
            if cached is not None:
                return cached
        return await self._retry_if_stale(ctx.caller, lambda: self._oauth2_token(
            ctx, cache_key, provider=provider, scopes=scopes, purpose=purpose, flow=flow,
            force_authentication=force_authentication))

    async def _oauth2_token(self, ctx: RequestContext, cache_key: str, *, provider: str,
                            scopes: Sequence[str], purpose: str, flow: str,
                            force_authentication: bool) -> str:
        workload_token = await self._workload_token_for(ctx.caller)
        client = await self._resource_client(ctx.caller, workload_token)

        async def ask(remember: bool = True) -> IssuedToken | PendingAuthorization:
            return await self._start(client, workload_token, ctx.caller, provider=provider, scopes=scopes,
                                     purpose=purpose, flow=flow, force_authentication=force_authentication,
                                     remember=remember)

        if force_authentication:
            started = await ask()
            if isinstance(started, IssuedToken):
                return self._remember(cache_key, started)
            pending = started
        else:
            vaulted = await self._vault_token_or_consent(cache_key, ask)
            if isinstance(vaulted, str):
                return vaulted
            pending = vaulted

        # Emitted in both modes, so a non-stream answer's `agent_events` carries the link too.
        await ctx.emit(AuthorizationRequired(url=pending.url, purpose=purpose, provider=provider))
        if not ctx.wait_for_authorization:
            raise AuthorizationPending(pending.url, purpose)
        # A forced flow never asks the vault while waiting: it still holds the token the provider refused.
        vault = None if force_authentication else (lambda: ask(remember=False))
        issued = await self._wait_for_user(client, workload_token, pending, vault)
        await ctx.emit(AuthorizationCompleted(purpose=purpose, provider=provider))
        return self._remember(cache_key, issued)

    async def _vault_token_or_consent(self, cache_key: str, start: Callable[[], Awaitable[IssuedToken |
                                      PendingAuthorization]]) -> str | PendingAuthorization:
        """One GetResourceOAuth2Token for every concurrent ask of the same user: the vaulted token (now
        cached), or the authorization every one of them shows the user."""

        async def load() -> tuple[str, float]:
            started = await start()
            if isinstance(started, PendingAuthorization):
                raise _ConsentNeeded(started)
            return started.token, self._oauth2_expiry(started)

        try:
            return await self._oauth2_tokens.get(cache_key, load)
        except _ConsentNeeded as needed:
            return needed.pending

    def _remember(self, cache_key: str, issued: IssuedToken) -> str:
        self._oauth2_tokens.cache.put(cache_key, issued.token, self._oauth2_expiry(issued))
        return issued.token

    def _oauth2_expiry(self, issued: IssuedToken) -> float:
        """When to stop serving a cached token: shortly before ExpiresIn; at once (not cached) without one."""
        try:
            lifetime = float(issued.expires_in or 0)
        except (TypeError, ValueError):
            lifetime = 0.0
        if lifetime <= 0:
            return self._clock()
        return self._clock() + lifetime - min(OAUTH2_TOKEN_MARGIN_SECONDS, lifetime / 5)

    async def _start(self, client: DataClient, workload_token: str, caller: Caller, *, provider: str,
                     scopes: Sequence[str], purpose: str, flow: str, force_authentication: bool,
                     remember: bool = True) -> IssuedToken | PendingAuthorization:
        """Ask for a token; returns it, or a new pending authorization (kept for the callback if
        `remember`)."""
        state, signed = self._states.issue(sub=caller.sub, user_jwt=current_user_token(), provider=provider,
                                           purpose=purpose, session_id=current_session_id(),
                                           ttl_seconds=self.settings.authorization_timeout_seconds + 60)
        request = GetResourceOAuth2TokenRequest(resource_credential_provider_name=provider,
                                                scopes=list(scopes), oauth2_flow=flow,
                                                workload_access_token=workload_token)
        if flow == "USER_FEDERATION":
            request.resource_oauth2_return_url = self.settings.callback_url
            request.custom_state = state
            request.force_authentication = force_authentication or None
        response = await self._call("GetResourceOAuth2Token", client.get_resource_oauth2_token, request)
        body = response.body
        if body and body.access_token:
            return IssuedToken(body.access_token, body.expires_in)
        if not body or not body.authorization_url or not body.session_uri:
            raise ProviderMisconfigured("The identity service returned neither a token nor an authorization "
                                        f"link for provider {provider!r}.",
                                        request_id=body.request_id if body else None)
        pending = PendingAuthorization(url=body.authorization_url, session_uri=body.session_uri,
                                       flow_id=signed.flow_id, provider=provider, purpose=purpose,
                                       scopes=tuple(scopes), flow=flow)
        if remember:
            self._pending.remember(pending, signed.expires_at)
            log.info("Authorization required for provider %s (%s)", provider, purpose)
        return pending

    def _poll_request(self, workload_token: str,
                      pending: PendingAuthorization) -> GetResourceOAuth2TokenRequest:
        return GetResourceOAuth2TokenRequest(
            resource_credential_provider_name=pending.provider, scopes=list(pending.scopes),
            oauth2_flow=pending.flow, workload_access_token=workload_token, session_uri=pending.session_uri,
            resource_oauth2_return_url=(self.settings.callback_url if pending.flow == "USER_FEDERATION"
                                        else None))

    async def _poll_once(self, client: DataClient, request: GetResourceOAuth2TokenRequest,
                         pending: PendingAuthorization) -> IssuedToken | None:
        """The token if the user has finished; None while waiting (or on a transient service error)."""
        if pending.outcome is not None:
            raise pending.outcome
        try:
            response = await self._call("GetResourceOAuth2Token", client.get_resource_oauth2_token, request)
        except (IdentityUnavailable, IdentityThrottled):
            return None  # keep waiting: the user may still finish, and the next poll may succeed
        body = response.body
        if body and body.access_token:
            return IssuedToken(body.access_token, body.expires_in)
        status = (body.session_status or "").upper() if body else ""
        if status in FAILED_STATUSES:
            raise AuthorizationFailed()
        if status in EXPIRED_STATUSES:
            raise AuthorizationTimedOut()
        return None

    @staticmethod
    async def _probe_vault(
            ask: Callable[[], Awaitable[IssuedToken | PendingAuthorization]]) -> IssuedToken | None:
        """The vaulted token, if the user approved another link meanwhile (an answer with a new link means
        no)."""
        try:
            answer = await ask()
        except (IdentityUnavailable, IdentityThrottled):
            return None
        return answer if isinstance(answer, IssuedToken) else None

    async def _wait_for_user(self, client: DataClient, workload_token: str, pending: PendingAuthorization,
                             vault: Callable[[], Awaitable[IssuedToken | PendingAuthorization]] | None,
                             ) -> IssuedToken:
        """Poll with backoff until a token, a refusal, or the timeout; wakes early when this process's
        callback completes the flow. Every few polls it also asks the `vault`, so a flow ends as soon as the
        user approved any link for the same token, whichever instance served it. Cancellation (the client went
        away) propagates at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.authorization_timeout_seconds
        delay = self.settings.poll_initial_seconds
        request = self._poll_request(workload_token, pending)
        polls = 0
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AuthorizationTimedOut()
                try:
                    await asyncio.wait_for(pending.wake.wait(), timeout=min(delay, remaining))
                except TimeoutError:
                    pass
                pending.wake.clear()
                polls += 1
                issued = await self._poll_once(client, request, pending)
                if issued is None and vault is not None and polls % VAULT_PROBE_EVERY_POLLS == 0:
                    issued = await self._probe_vault(vault)
                if issued:
                    return issued
                delay = min(delay * 2, self.settings.poll_max_seconds)
        finally:
            self._pending.forget(pending)

    # --- the callback's side --------------------------------------------------------------------------------

    def open_state(self, value: str) -> FlowState:
        """The flow a callback's `state` stands for; raises identity.state.InvalidState."""
        return self._states.open(value)

    async def complete_authorization(self, *, session_uri: str, flow: FlowState) -> None:
        """CompleteResourceTokenAuth with the flow's ORIGINAL JWT (the one its workload token came from)."""
        request = CompleteResourceTokenAuthRequest(
            session_uri=session_uri,
            user_identifier=CompleteResourceTokenAuthRequestUserIdentifier(user_jwt=flow.user_jwt))
        await self._call("CompleteResourceTokenAuth", self._instance_client.complete_resource_token_auth,
                         request)
        self._pending.completed(session_uri)

    def provider_refused(self, flow: FlowState, error: str) -> IdentityError:
        """The provider sent the flow's owner back with `error`: end the wait of that flow (when this process
        runs it) at once. Returns what the waiting tool reports."""
        outcome: IdentityError = (AuthorizationDeclined() if error == "access_denied"
                                  else AuthorizationFailed(error))
        self._pending.ended(flow.flow_id, outcome)
        return outcome

    # --- plumbing -------------------------------------------------------------------------------------------

    async def _call(self, action: str, method: Callable[[Any], T], request: Any) -> T:
        """One SDK call, `method(request)` in the SDK thread pool (`outbound.sdk_call`); its failures become
        typed errors, with the SDK's own text left behind."""
        try:
            return await sdk_call(method, request)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every SDK failure is translated, none is quoted
            raise translate(error, action) from None

    def _data_client(self, credential: CredentialClient) -> DataClient:
        return DataClient(sdk_config(credential, self.settings.region_id, self.settings.data_endpoint,
                                     timeout_seconds=self.settings.request_timeout_seconds))

    async def aclose(self) -> None:
        await self._verifier.aclose()
        for flights in (self._workload_tokens, self._sts, self._oauth2_tokens):
            await flights.aclose()
