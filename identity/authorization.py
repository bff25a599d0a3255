"""In-process bookkeeping of the OAuth2 authorizations this process is waiting for.

It only speeds things up and carries what the callback saw: a callback served by this same process wakes
the waiting poll at once ("completed"), or ends it with the refusal or error the provider reported. Nothing
here is needed for correctness across instances: a waiting poll also asks Agent Identity, which is the state
every instance shares (see identity/oauth2_tokens.py, `_wait_for_user`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from identity.cache import ExpiringLru
from identity.errors import IdentityError


@dataclass
class PendingAuthorization:
    url: str
    session_uri: str
    flow_id: str
    provider: str
    purpose: str
    scopes: tuple[str, ...]
    flow: str
    outcome: IdentityError | None = None  # set by this process's callback: the provider refused or failed
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class PendingAuthorizations:
    def __init__(self, max_size: int, clock: Callable[[], float] = time.time) -> None:
        self._by_flow: ExpiringLru[PendingAuthorization] = ExpiringLru(max_size, clock)
        self._by_session: ExpiringLru[PendingAuthorization] = ExpiringLru(max_size, clock)

    def remember(self, pending: PendingAuthorization, expires_at: float) -> None:
        self._by_flow.put(pending.flow_id, pending, expires_at)
        self._by_session.put(pending.session_uri, pending, expires_at)

    def forget(self, pending: PendingAuthorization) -> None:
        self._by_flow.pop(pending.flow_id)
        self._by_session.pop(pending.session_uri)

    def completed(self, session_uri: str) -> None:
        """The callback confirmed the session: wake the poll so it fetches the token now."""
        pending = self._by_session.get(session_uri)
        if pending is not None:
            pending.wake.set()

    def ended(self, flow_id: str, outcome: IdentityError) -> bool:
        """The provider sent the user back with an error for the flow `flow_id`: end its wait with
        `outcome`."""
        pending = self._by_flow.get(flow_id)
        if pending is None:
            return False
        pending.outcome = outcome
        pending.wake.set()
        return True
