"""In-process bookkeeping of OAuth2 authorizations the users have not finished yet.

Two jobs: (1) remember a pending session per (user, provider, scopes) so a user who asks again gets the same
link instead of a second authorization, and (2) let the callback talk to a waiting poll: "completed" makes
it poll at once, "declined" ends it with AuthorizationDeclined. Both live only in this process; across
instances the poll still ends on its own (token or timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from identity.cache import ExpiringLru


@dataclass
class PendingAuthorization:
    url: str
    session_uri: str
    nonce: str
    provider: str
    purpose: str
    scopes: tuple[str, ...]
    flow: str
    declined: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


PendingKey = tuple[str, str, tuple[str, ...], str]


def pending_key(user_hash: str, provider: str, scopes: Sequence[str], flow: str) -> PendingKey:
    """Per flow too: an unfinished USER_FEDERATION consent must not hold up an M2M token."""
    return user_hash, provider, tuple(sorted(scopes)), flow


class PendingAuthorizations:
    def __init__(self, max_size: int, clock: Callable[[], float] = time.time) -> None:
        self._by_key: ExpiringLru[PendingAuthorization] = ExpiringLru(max_size, clock)
        self._by_nonce: ExpiringLru[PendingAuthorization] = ExpiringLru(max_size, clock)
        self._by_session: ExpiringLru[PendingAuthorization] = ExpiringLru(max_size, clock)

    def remember(self, key: PendingKey, pending: PendingAuthorization, expires_at: float) -> None:
        self._by_key.put(key, pending, expires_at)
        self._by_nonce.put(pending.nonce, pending, expires_at)
        self._by_session.put(pending.session_uri, pending, expires_at)

    def find(self, key: PendingKey) -> PendingAuthorization | None:
        return self._by_key.get(key)

    def by_nonce(self, nonce: str) -> PendingAuthorization | None:
        return self._by_nonce.get(nonce)

    def forget(self, key: PendingKey, pending: PendingAuthorization) -> None:
        if self._by_key.get(key) is pending:
            self._by_key.pop(key)
        self._by_nonce.pop(pending.nonce)
        self._by_session.pop(pending.session_uri)

    def completed(self, session_uri: str) -> None:
        """The callback confirmed the session: wake the poll so it fetches the token now."""
        pending = self._by_session.get(session_uri)
        if pending is not None:
            pending.wake.set()

    def declined(self, nonce: str) -> bool:
        """The provider reported access_denied for the flow signed with `nonce`."""
        pending = self._by_nonce.get(nonce)
        if pending is None:
            return False
        pending.declined = True
        pending.wake.set()
        return True
