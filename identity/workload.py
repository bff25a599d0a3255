"""Workload access tokens: the current caller's JWT exchanged for a token of the agent's workload identity
(`GetWorkloadAccessTokenForJWT`), cached per JWT until shortly before the JWT expires, single flight."""

from __future__ import annotations

from collections.abc import Callable

from alibabacloud_agentidentitydata20251127.models import GetWorkloadAccessTokenForJWTRequest

from identity.cache import CachedFlights, token_key
from identity.context import current_request_context
from identity.data_plane import DataPlane
from identity.errors import IdentityUnavailable
from settings.identity import IdentitySettings

USER_TOKEN_MARGIN_SECONDS = 30.0  # stop using a workload token this long before the user's JWT expires
# JWTs without `exp` (only possible behind a gateway) are re-exchanged this often
UNDATED_TOKEN_TTL_SECONDS = 300.0


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
            return token, self._expiry(caller.claims.get("exp"))

        return await self._flights.get(token_key(caller.token), exchange)

    def forget_current(self) -> str | None:
        """Drop the current caller's cached token (the service refused it); returns it, if one was cached."""
        key = token_key(current_request_context().caller.token)
        dropped = self._flights.cache.get(key)
        self._flights.invalidate(key)
        return dropped

    def _expiry(self, exp: object) -> float:
        if isinstance(exp, int | float):
            return float(exp) - USER_TOKEN_MARGIN_SECONDS
        return self._clock() + UNDATED_TOKEN_TTL_SECONDS

    async def aclose(self) -> None:
        await self._flights.aclose()
