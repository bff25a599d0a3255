"""The OAuth2 `CustomState`: a short HMAC-signed value that ties a callback to the user who started the flow.

The state travels through the provider and the browser's address bar, so it holds no secret and no raw
identifiers: the user's `sub` and the session id appear only as short keyed hashes. The callback recomputes
the hash of the `sub` it verified itself and compares.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

_VERSION = "s1"
_MAC_BYTES = 16


class InvalidState(Exception):
    """The state is malformed, forged or expired. The message is safe to show."""


@dataclass(frozen=True)
class SignedState:
    user: str  # keyed hash of the user's sub
    session: str  # keyed hash of the chat session id ("" when none)
    provider: str
    nonce: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StateSigner:
    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"identity-state\0" + secret.encode()).digest()
        self._clock = clock

    def subject_hash(self, value: str) -> str:
        """A short keyed hash: equal values match, yet the state reveals nothing about them."""
        return _b64(hmac.new(self._key, b"id\0" + value.encode(), hashlib.sha256).digest()[:12])

    def issue(self, *, sub: str, session_id: str | None, provider: str, ttl_seconds: float) -> tuple[str, SignedState]:
        state = SignedState(user=self.subject_hash(sub), session=self.subject_hash(session_id) if session_id else "",
                            provider=provider, nonce=_b64(secrets.token_bytes(12)),
                            expires_at=int(self._clock() + ttl_seconds))
        payload = _b64(json.dumps([state.user, state.session, state.provider, state.nonce, state.expires_at],
                                  separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._mac(payload)}", state

    def verify(self, value: str) -> SignedState:
        """The decoded state; raises InvalidState unless the signature matches (constant time) and it has not expired."""
        parts = value.split(".") if value and len(value) < 2048 else []
        if len(parts) != 3 or parts[0] != _VERSION:
            raise InvalidState("The authorization state is malformed.")
        payload, mac = parts[1], parts[2]
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidState("The authorization state is not valid.")
        try:
            user, session, provider, nonce, expires_at = json.loads(_unb64(payload))
            state = SignedState(str(user), str(session), str(provider), str(nonce), int(expires_at))
        except (ValueError, TypeError):
            raise InvalidState("The authorization state is malformed.") from None
        if self._clock() >= state.expires_at:
            raise InvalidState("The authorization link has expired. Ask the agent again for a new one.")
        return state

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()[:_MAC_BYTES])
