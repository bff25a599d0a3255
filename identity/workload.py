"""Workload access tokens: the current caller's JWT exchanged for a token of the agent's workload identity
(`GetWorkloadAccessTokenForJWT`), cached per JWT, single flight, until shortly before the token or the JWT
expires, whichever comes first."""

from __future__ import annotations

from collections.abc import Callable

from alibabacloud_agentidentitydata20251127.models import GetWorkloadAccessTokenForJWTRequest

from identity.cache import CachedFlights, token_key
from identity.context import current_request_context
from identity.credentials import unverified_expiry
from identity.data_plane import DataPlane
from identity.errors import IdentityUnavailable
from settings.identity import IdentitySettings

USER_TOKEN_MARGIN_SECONDS = 30.0  # stop using a workload token this long before it or the user's JWT expires
# A workload access token lives about 5 minutes (docs/services.md, secondary evidence) and says nothing of
# its own lifetime when it is not a JWT: it is re-exchanged after this long, or sooner as its `exp` says.
WORKLOAD_TOKEN_REUSE_SECONDS = 240.0


class WorkloadTokens:
    """The workload access token of the caller bound to the current request context."""

    def __init__(self, plane: DataPlane, settings: IdentitySettings, clock: Callable[[], float]) -> None:
        self._plane, self._settings, self._clock = plane, settings, clock
        self._flights: CachedFlights[str] = CachedFlights(settings.cache_size, clock)

    async def current(self) -> str:
        caller = current_request_context().caller

        async def exchange() -> tuple[str, float]:
            request = GetWorkloadAccessTokenForJWTRequest(
                workload_identity_name=self._settings.workload_identity_name, user_token=caller.token)
            response = await self._plane.call("GetWorkloadAccessTokenForJWT",
                                              self._plane.instance_client.get_workload_access_token_for_jwt,
                                              request)
            token = response.body.workload_access_token if response.body else None
            if not token:
                raise IdentityUnavailable("The identity service returned no workload access token.")
            return token, self._expiry(token, caller.claims.get("exp"))

        return await self._flights.get(token_key(caller.token), exchange)

    def forget_current(self) -> str | None:
        """Drop the current caller's cached token (the service refused it); returns it, if one was cached."""
        key = token_key(current_request_context().caller.token)
        dropped = self._flights.cache.get(key)
        self._flights.invalidate(key)
        return dropped

    def _expiry(self, token: str, user_token_exp: object) -> float:
        """Before the token's own expiry (its `exp` if it is a JWT, else a reuse time below the observed
        lifetime) and before the user's JWT expires."""
        expiry = self._clock() + WORKLOAD_TOKEN_REUSE_SECONDS
        for exp in (unverified_expiry(token), user_token_exp):
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                expiry = min(expiry, float(exp) - USER_TOKEN_MARGIN_SECONDS)
        return expiry

    async def aclose(self) -> None:
        await self._flights.aclose()
