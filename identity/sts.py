"""STS credentials of the workload identity's role for the current caller (`AssumeRoleForWorkloadIdentity`),
optionally narrowed by a session policy, cached until shortly before they expire, single flight; and the data
clients those credentials sign resource-token calls with.

A service may refuse a credential the cache still holds (revoked or expired early): `retry_if_stale` drops
the workload token and the signing credentials, and runs the call once more."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_agentidentitydata20251127.models import AssumeRoleForWorkloadIdentityRequest

from identity.cache import CachedFlights, ExpiringLru, token_key
from identity.context import current_request_context
from identity.credentials import StsCredential, parse_expiration
from identity.data_plane import DataPlane
from identity.errors import IdentityError, IdentityUnavailable
from identity.sdk_errors import may_be_stale_credential
from identity.workload import WorkloadTokens
from settings.identity import IdentitySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

SIGNING_STS_SECONDS = 3600  # the same duration as `credential`'s default, so both share one credential


class StsCredentials:
    """STS credentials for the caller bound to the current request context."""

    def __init__(self, plane: DataPlane, workload: WorkloadTokens, settings: IdentitySettings,
                 clock: Callable[[], float]) -> None:
        self._plane, self._workload, self._settings, self._clock = plane, workload, settings, clock
        self._flights: CachedFlights[StsCredential] = CachedFlights(settings.cache_size, clock)
        self._signing_clients: ExpiringLru[DataClient] = ExpiringLru(settings.cache_size, clock)

    async def credential(self, *, policy: str | None = None, duration_seconds: int = SIGNING_STS_SECONDS,
                         rejected: StsCredential | None = None) -> StsCredential:
        """See `AgentIdentity.sts_credential`."""

        async def attempt() -> StsCredential:
            workload_token = await self._workload.current()
            if rejected is not None:
                self._drop(self._key(workload_token, policy, duration_seconds), rejected)
            return await self.for_workload_token(workload_token, policy, duration_seconds)

        return await self.retry_if_stale(attempt)

    async def for_workload_token(self, workload_token: str, policy: str | None = None,
                                 duration_seconds: int = SIGNING_STS_SECONDS) -> StsCredential:
        async def assume() -> tuple[StsCredential, float]:
            credential = await self._assume_role(workload_token, policy, duration_seconds)
            return credential, _refresh_time(credential, duration_seconds)

        return await self._flights.get(self._key(workload_token, policy, duration_seconds), assume)

    async def signing_client(self, workload_token: str) -> DataClient:
        """The data client that signs GetResourceOAuth2Token: STS from the workload token (as the SDK) or the
        instance's own AccessKey when AGENT_IDENTITY_USE_STS=false. The STS credentials are the very ones
        `credential()` (no policy, default duration) returns, so a tool asking for those costs no extra
        AssumeRole; tools with a session policy get their own, narrower ones."""
        if not self._settings.use_sts:
            return self._plane.instance_client
        credential = await self.for_workload_token(workload_token)
        client = self._signing_clients.get(credential.access_key_id)
        if client is None:
            client = self._plane.client(credential.credential_client())
            self._signing_clients.put(credential.access_key_id, client,
                                      _refresh_time(credential, SIGNING_STS_SECONDS))
        return client

    async def retry_if_stale(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`; if the service refused a cached workload token or the STS credentials that signed
        the call, drop both and run it once more (the user's JWT is exchanged again)."""
        try:
            return await attempt()
        except IdentityError as error:
            if not may_be_stale_credential(error):
                raise
        log.info("A cached credential was no longer accepted; exchanging the user token again")
        self.forget_current()
        return await attempt()

    def forget_current(self) -> None:
        """Drop the current caller's workload token and the STS credentials that signed with it: the service
        refused one of them, so the user's JWT is exchanged again at the next ask."""
        workload_token = self._workload.forget_current()
        if workload_token is not None:
            signing_key = self._key(workload_token, None, SIGNING_STS_SECONDS)
            signing = self._flights.cache.get(signing_key)
            if signing is not None:
                self._drop(signing_key, signing)

    @staticmethod
    def _key(workload_token: str, policy: str | None, duration_seconds: int) -> str:
        return token_key(workload_token, policy or "", str(duration_seconds))

    def _drop(self, key: str, rejected: StsCredential) -> None:
        """Forget `rejected`, unless a concurrent request already replaced it."""
        cached = self._flights.cache.get(key)
        if cached is not None and cached.access_key_id == rejected.access_key_id:
            log.info("Cached STS credentials were refused by a service; assuming the role again")
            self._flights.invalidate(key)
        self._signing_clients.pop(rejected.access_key_id)

    async def _assume_role(self, workload_token: str, policy: str | None,
                           duration_seconds: int) -> StsCredential:
        sub = current_request_context().caller.sub
        request = AssumeRoleForWorkloadIdentityRequest(
            workload_access_token=workload_token, role_session_name=f"agent-{token_key(sub)[:16]}",
            duration_seconds=duration_seconds, policy=policy)
        response = await self._plane.call("AssumeRoleForWorkloadIdentity",
                                          self._plane.instance_client.assume_role_for_workload_identity,
                                          request)
        issued = response.body.credentials if response.body else None
        if (not issued or not issued.access_key_id or not issued.access_key_secret
                or not issued.security_token):
            raise IdentityUnavailable("The identity service returned no STS credentials.")
        fallback = datetime.fromtimestamp(self._clock(), timezone.utc) + timedelta(seconds=duration_seconds)
        return StsCredential(access_key_id=issued.access_key_id, access_key_secret=issued.access_key_secret,
                             security_token=issued.security_token,
                             expiration=parse_expiration(issued.expiration, fallback))

    async def aclose(self) -> None:
        await self._flights.aclose()


def _refresh_time(credential: StsCredential, duration_seconds: int) -> float:
    margin = min(300.0, duration_seconds / 5)
    return credential.expiration.timestamp() - margin
