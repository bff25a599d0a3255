"""Sealed values: small JSON payloads encrypted and authenticated (AES-256-GCM) for one purpose.

What must survive a trip through the provider and the user's browser travels sealed rather than in server
memory, because instances scale out and the callback may run in another process or service: the OAuth2
`CustomState` (with the user's original JWT, which CompleteResourceTokenAuth needs), the browser's session
cookie and the sign-in transaction cookie. Each purpose gets its own key derived (HKDF-SHA256) from
IDENTITY_STATE_SECRET, so a value sealed for one purpose never opens as another, and every value carries its
expiry inside the ciphertext.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"
_NONCE_BYTES = 12
MAX_SEALED_LENGTH = 16 * 1024  # longer input is refused before any decoding


class Unsealable(Exception):
    """The value is malformed, was sealed with another key or for another purpose, or has expired."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens JSON objects for one `purpose` (e.g. "oauth2-state", "browser-session")."""

    def __init__(self, secret: str, purpose: str, clock: Callable[[], float] = time.time) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=f"agentrun-identity/{purpose}".encode()).derive(secret.encode())
        self._aead = AESGCM(key)
        self._aad = f"{_VERSION}:{purpose}".encode()
        self._clock = clock

    def seal(self, payload: dict[str, Any], ttl_seconds: float) -> str:
        """`payload` plus its expiry, encrypted: `v1.<base64url(nonce | ciphertext | tag)>`."""
        document = {**payload, "exp": int(self._clock() + ttl_seconds)}
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(document, separators=(",", ":")).encode(), self._aad)
        return f"{_VERSION}.{b64url(nonce + sealed)}"

    def open(self, value: str) -> dict[str, Any]:
        """The payload (with `exp`); raises Unsealable unless it is intact, ours, and unexpired."""
        version, _, body = (value or "").partition(".")
        if version != _VERSION or not body or len(value) > MAX_SEALED_LENGTH:
            raise Unsealable()
        try:
            raw = unb64url(body)
            document = json.loads(self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad))
        except (InvalidTag, ValueError):
            raise Unsealable() from None
        if not isinstance(document, dict) or not isinstance(document.get("exp"), int):
            raise Unsealable()
        if self._clock() >= document["exp"]:
            raise Unsealable(expired=True)
        return document
