"""The process is stopping (SIGTERM): what every open stream needs to know to end in time with a last word.

The server stops accepting at once and gives open responses a grace period; a stream waiting for the user's
consent would otherwise wait minutes and be cut by the platform. A stream waiting for the user ends at once
with a last chunk saying the service is restarting (the consent, if given later, is kept in the vault, so the
next ask finds it); any other stream may finish its answer until shortly before the grace period ends.
"""

from __future__ import annotations

import asyncio

from server.errors import ApiError

# Kept for the last chunk and the connection's close once a stream must end.
LAST_CHUNK_MARGIN_SECONDS = 0.5


def restarting_error() -> ApiError:
    return ApiError(503, "The service is restarting; please ask again in a moment. An authorization you "
                    "complete meanwhile is kept.", "server_error", "service_restarting",
                    headers={"Retry-After": "1"})


class Shutdown:
    """Set once, when the process was asked to stop; `grace_seconds` from then everything must be over."""

    def __init__(self) -> None:
        self._begun = asyncio.Event()
        self._deadline = 0.0

    @property
    def begun(self) -> bool:
        return self._begun.is_set()

    async def wait(self) -> None:
        """Returns once the process was asked to stop."""
        await self._begun.wait()

    def begin(self, grace_seconds: float) -> None:
        if not self._begun.is_set():
            self._deadline = asyncio.get_running_loop().time() + grace_seconds
            self._begun.set()

    async def stream_must_end(self, waiting_for_user: asyncio.Event) -> None:
        """Returns when a stream must end: at once if it waits for the user, else just before the deadline."""
        await self._begun.wait()
        remaining = self._deadline - asyncio.get_running_loop().time() - LAST_CHUNK_MARGIN_SECONDS
        try:
            await asyncio.wait_for(waiting_for_user.wait(), timeout=max(remaining, 0.0))
        except TimeoutError:
            pass
