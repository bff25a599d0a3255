"""OAuth2 resource tokens for the current caller (`GetResourceOAuth2Token`): from Agent Identity's vault, or
after the user's consent (the link streamed at once, then the wait), and the callback's side of that consent
(`CompleteResourceTokenAuth`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_agentidentitydata20251127.models import (
    CompleteResourceTokenAuthRequest,
    CompleteResourceTokenAuthRequestUserIdentifier,
    GetResourceOAuth2TokenRequest,
)

from identity.authorization import PendingAuthorization, PendingAuthorizations
from identity.cache import CachedFlights, token_key
from identity.consent_waits import ConsentWaits
from identity.context import AuthorizationCompleted, AuthorizationRequired, current_request_context
from identity.data_plane import DataPlane
from identity.errors import (AuthorizationDeclined, AuthorizationFailed, AuthorizationPending,
                             AuthorizationTimedOut, IdentityError, IdentityThrottled, IdentityUnavailable,
                             ProviderMisconfigured, ProviderUnavailable, UserTokenTooLarge)
from identity.sdk_errors import may_be_stale_credential
from identity.state import MAX_CUSTOM_STATE_CHARACTERS, FlowState, FlowStates
from identity.sts import StsCredentials
from identity.workload import WorkloadTokens
from settings.identity import IdentitySettings

log = logging.getLogger(__name__)

FLOWS = ("USER_FEDERATION", "M2M")
# Asks the provider to show its consent page even to a user who consented before (OpenID Connect's `prompt`;
# DingTalk's authorize page takes it, docs/services.md): the new token then carries the app's permissions now.
PROMPT_CONSENT = {"prompt": "consent"}
OAUTH2_TOKEN_MARGIN_SECONDS = 60.0  # stop serving a cached OAuth2 token this long before its ExpiresIn
# SessionStatus values are not published (docs/services.md): AWS documents IN_PROGRESS and FAILED, Alibaba's
# IDaaS uses lowercase pending, callback_received, completed, failed, expired. Compared in any case: FAILED
# ends the wait as "not completed" (a refusal or a provider failure look the same here), EXPIRED as timed out;
# any other value, `completed` without a token included (the service is still fetching it), means "keep
# polling".
FAILED_STATUSES = {"FAILED"}
EXPIRED_STATUSES = {"EXPIRED", "TIMEOUT", "TIMED_OUT"}
Ask = Callable[[], Awaitable["IssuedToken | PendingAuthorization"]]
# The data client and workload token to ask with; `renew=True` after the service refused them.
Signer = Callable[..., Awaitable[tuple[DataClient, str]]]
# Agent Identity's code when the provider's token endpoint failed after the user's consent (docs/services.md).
UPSTREAM_TOKEN_ENDPOINT_FAILED = "ServiceUnavailable.UpstreamTokenEndpoint"


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


class OAuth2Tokens:
    """OAuth2 tokens for the caller bound to the current request context, and the flows waiting for
    consent."""

    def __init__(self, plane: DataPlane, workload: WorkloadTokens, sts: StsCredentials,
                 settings: IdentitySettings, clock: Callable[[], float]) -> None:
        self._plane, self._workload, self._sts = plane, workload, sts
        self._settings, self._clock = settings, clock
        self._states = FlowStates(settings.state_secret, clock)
        self._flights: CachedFlights[str] = CachedFlights(settings.cache_size, clock)
        self._pending = PendingAuthorizations(settings.cache_size, clock)
        self._waits: ConsentWaits[IssuedToken] = ConsentWaits(
            interval=settings.poll_interval_seconds, max_per_user=settings.max_waiting_per_user,
            timeout=settings.authorization_timeout_seconds)

    async def token(self, *, provider: str, scopes: Sequence[str], purpose: str,
                    flow: str = "USER_FEDERATION", force_authentication: bool = False,
                    prompt_consent: bool = False) -> str:
        """See `AgentIdentity.oauth2_token`."""
        if flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}")
        cache_key = token_key("oauth2", current_request_context().caller.sub, provider, flow, *sorted(scopes))
        if force_authentication:
            self._flights.invalidate(cache_key)
        else:
            cached = self._flights.cache.get(cache_key)
            if cached is not None:
                return cached
        return await self._sts.retry_if_stale(lambda: self._token(
            cache_key, provider=provider, scopes=scopes, purpose=purpose, flow=flow,
            force_authentication=force_authentication or prompt_consent, prompt_consent=prompt_consent))

    async def _token(self, cache_key: str, *, provider: str, scopes: Sequence[str], purpose: str, flow: str,
                     force_authentication: bool, prompt_consent: bool) -> str:
        ctx = current_request_context()

        async def signer(renew: bool = False) -> tuple[DataClient, str]:
            """The data client and workload token to ask with: the cached ones (exchanged again when they are
            due), or new ones after the service refused them (`renew`)."""
            if renew:
                self._sts.forget_current()
            workload_token = await self._workload.current()
            return await self._sts.signing_client(workload_token), workload_token

        async def ask(remember: bool = True) -> IssuedToken | PendingAuthorization:
            client, workload_token = await signer()
            return await self._start(client, workload_token, provider=provider, scopes=scopes,
                                     purpose=purpose, flow=flow, force_authentication=force_authentication,
                                     remember=remember, prompt_consent=prompt_consent)

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

        if not ctx.wait_for_authorization:
            # Emitted in both modes, so a non-stream answer's `agent_events` carries the link too.
            await ctx.emit(AuthorizationRequired(url=pending.url, purpose=purpose, provider=provider))
            raise AuthorizationPending(pending.url, purpose)
        try:
            slot = self._waits.slot(ctx.caller.sub)
        except IdentityError:
            self._pending.forget(pending)  # its link is never shown
            raise
        with slot:
            await ctx.emit(AuthorizationRequired(url=pending.url, purpose=purpose, provider=provider))
            issued = await self._wait_for_user(cache_key, signer, pending, ask, forced=force_authentication)
        await ctx.emit(AuthorizationCompleted(purpose=purpose, provider=provider))
        return self._remember(cache_key, issued)

    async def _vault_token_or_consent(self, cache_key: str, start: Ask) -> str | PendingAuthorization:
        """One GetResourceOAuth2Token for every concurrent ask of the same user: the vaulted token (now
        cached), or the authorization every one of them shows the user."""

        async def load() -> tuple[str, float]:
            started = await start()
            if isinstance(started, PendingAuthorization):
                raise _ConsentNeeded(started)
            return started.token, self._expiry(started)

        try:
            return await self._flights.get(cache_key, load)
        except _ConsentNeeded as needed:
            return needed.pending

    def _remember(self, cache_key: str, issued: IssuedToken) -> str:
        self._flights.cache.put(cache_key, issued.token, self._expiry(issued))
        return issued.token

    def _expiry(self, issued: IssuedToken) -> float:
        """When to stop serving a cached token: shortly before ExpiresIn; at once (not cached) without one."""
        try:
            lifetime = float(issued.expires_in or 0)
        except (TypeError, ValueError):
            lifetime = 0.0
        if lifetime <= 0:
            return self._clock()
        return self._clock() + lifetime - min(OAUTH2_TOKEN_MARGIN_SECONDS, lifetime / 5)

    async def _start(self, client: DataClient, workload_token: str, *, provider: str, scopes: Sequence[str],
                     purpose: str, flow: str, force_authentication: bool, remember: bool = True,
                     prompt_consent: bool = False) -> IssuedToken | PendingAuthorization:
        """Ask for a token; returns it, or a new pending authorization (kept for the callback if
        `remember`)."""
        ctx = current_request_context()
        state, signed = self._states.issue(sub=ctx.caller.sub, user_jwt=ctx.caller.token, provider=provider,
                                           purpose=purpose,
                                           ttl_seconds=self._settings.authorization_timeout_seconds + 60)
        if flow == "USER_FEDERATION" and len(state) > MAX_CUSTOM_STATE_CHARACTERS:
            log.info("Authorization not started: the sealed state is %d characters, over %d", len(state),
                     MAX_CUSTOM_STATE_CHARACTERS)
            raise UserTokenTooLarge(len(state), MAX_CUSTOM_STATE_CHARACTERS)
        request = GetResourceOAuth2TokenRequest(resource_credential_provider_name=provider,
                                                scopes=list(scopes), oauth2_flow=flow,
                                                workload_access_token=workload_token,
                                                token_vault_name=self._settings.token_vault_name or None)
        if flow == "USER_FEDERATION":
            request.resource_oauth2_return_url = self._settings.callback_url
            request.custom_state = state
            request.force_authentication = force_authentication or None
            if prompt_consent:
                request.custom_parameters = dict(PROMPT_CONSENT)  # the SDK sends it as a JSON string
        try:
            response = await self._plane.call("GetResourceOAuth2Token", client.get_resource_oauth2_token,
                                              request)
        except IdentityError as error:
            if "CustomState" in (error.service_code or ""):  # a real limit lower than the documented one
                raise UserTokenTooLarge(len(state), None, request_id=error.request_id,
                                        service_code=error.service_code,
                                        service_status=error.service_status) from None
            raise
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
            # The flow id names the flow in the callback's log line too: the two meet there.
            log.info("Authorization required for provider %s (%s), flow %s, session %s", provider, purpose,
                     signed.flow_id, ctx.session_id or "-")
        return pending

    async def _poll(self, signer: Signer, pending: PendingAuthorization) -> IssuedToken | None:
        """One poll of the flow's own session. A workload token that expired while the user was deciding (it
        lives minutes, the wait may not) is exchanged again and the SAME session polled with the new one: the
        user never sees a second link for it."""
        try:
            return await self._poll_once(*await signer(), pending)
        except IdentityError as error:
            if not may_be_stale_credential(error):
                raise
        log.info("The workload token was refused while waiting for consent; exchanging the user token again")
        return await self._poll_once(*await signer(renew=True), pending)

    async def _poll_once(self, client: DataClient, workload_token: str,
                         pending: PendingAuthorization) -> IssuedToken | None:
        """The token if the user has finished; None while waiting (or on a transient service error)."""
        if pending.outcome is not None:
            raise pending.outcome
        request = GetResourceOAuth2TokenRequest(
            resource_credential_provider_name=pending.provider, scopes=list(pending.scopes),
            oauth2_flow=pending.flow, workload_access_token=workload_token, session_uri=pending.session_uri,
            token_vault_name=self._settings.token_vault_name or None,
            resource_oauth2_return_url=(self._settings.callback_url if pending.flow == "USER_FEDERATION"
                                        else None))
        try:
            response = await self._plane.call("GetResourceOAuth2Token", client.get_resource_oauth2_token,
                                              request)
        except IdentityError as error:
            if error.service_code == UPSTREAM_TOKEN_ENDPOINT_FAILED:  # whatever its HTTP status
                raise ProviderUnavailable(request_id=error.request_id) from None
            if isinstance(error, IdentityUnavailable | IdentityThrottled):
                return None  # keep waiting: the user may still finish, and the next poll may succeed
            raise
        body = response.body
        if body and body.access_token:
            return IssuedToken(body.access_token, body.expires_in)
        status = (body.session_status or "").upper() if body else ""
        if status in FAILED_STATUSES:
            raise AuthorizationFailed()
        if status in EXPIRED_STATUSES:
            raise AuthorizationTimedOut()
        return None

    async def _probe_vault(self, ask: Ask) -> IssuedToken | None:
        """The vaulted token, if the user approved any link for it meanwhile (an answer with a new link means
        no); a refused workload token is exchanged again once."""
        try:
            answer = await self._sts.retry_if_stale(ask)
        except (IdentityUnavailable, IdentityThrottled):
            return None
        return answer if isinstance(answer, IssuedToken) else None

    async def _wait_for_user(self, cache_key: str, signer: Signer, pending: PendingAuthorization,
                             ask: Callable[..., Awaitable[IssuedToken | PendingAuthorization]], *,
                             forced: bool) -> IssuedToken:
        """Wait with the user's other waits for the same token on this instance (identity/consent_waits.py:
        one poller for all of them, its schedule and its bounds): until a token, this link's refusal, or the
        timeout. Cancellation (the client went away) ends this wait alone, at once."""
        # A forced flow never takes the vault's token: it is the one the provider refused.
        probe = None if forced else (lambda: self._probe_vault(lambda: ask(remember=False)))
        try:
            return await self._waits.until_token((cache_key, forced), pending,
                                                 lambda flow: self._poll(signer, flow), probe)
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
        await self._plane.call("CompleteResourceTokenAuth",
                               self._plane.instance_client.complete_resource_token_auth, request)
        self._pending.completed(session_uri)

    def provider_refused(self, flow: FlowState, error: str) -> IdentityError:
        """The provider sent the flow's owner back with `error`: end the wait of that flow (when this process
        runs it) at once. Returns what the waiting tool reports."""
        outcome: IdentityError = (AuthorizationDeclined() if error == "access_denied"
                                  else AuthorizationFailed(error))
        self._pending.ended(flow.flow_id, outcome)
        return outcome

    async def aclose(self) -> None:
        await self._flights.aclose()
