"""Credentials one emulator issues and another one checks, shared in-process.

The Agent Identity emulator issues DingTalk OAuth2 access tokens and STS credentials; the DingTalk and STS
emulators accept only what it issued. All emulators run on one event loop, so plain dicts suffice.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issued:
    """One issued credential: who it is for, until when, and free-form details (scopes, role ARN...)."""

    secret: str
    subject: str
    expires_at: float
    details: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False

    @property
    def valid(self) -> bool:
        return not self.revoked and time.time() < self.expires_at


class CredentialRegistry:
    """Issued credentials of one kind (e.g. "dingtalk-oauth2", "sts"), looked up by their public key."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._by_key: dict[str, Issued] = {}

    def issue(self, subject: str, ttl_s: float, key: str | None = None, **details: Any) -> tuple[str, Issued]:
        """Issue a credential; returns (key, record). `key` is the lookup key (a token or an AccessKeyId)."""
        key = key or f"{self.prefix}{secrets.token_urlsafe(24)}"
        record = Issued(secret=secrets.token_urlsafe(30), subject=subject, expires_at=time.time() + ttl_s,
                        details=details)
        self._by_key[key] = record
        return key, record

    def records(self) -> list[tuple[str, Issued]]:
        """Every credential issued so far, with its key, in issue order."""
        return list(self._by_key.items())

    def get(self, key: str) -> Issued | None:
        """The record for `key`, valid or not (callers tell 'unknown' from 'expired')."""
        return self._by_key.get(key)

    def expire_all(self) -> None:
        for record in self._by_key.values():
            record.expires_at = 0.0

    def revoke_subject(self, subject: str) -> int:
        count = 0
        for record in self._by_key.values():
            if record.subject == subject and not record.revoked:
                record.revoked = True
                count += 1
        return count

    def clear(self) -> None:
        self._by_key.clear()
