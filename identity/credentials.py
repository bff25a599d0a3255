"""Credential objects: the instance's own AccessKey (signs calls to Agent Identity) and STS credentials.

`alibabacloud-credentials`' default chain reads env vars when it is imported, so settings built from a test's
env mapping would be ignored; when the mapping carries ALIBABA_CLOUD_* keys we build a static credential from
them and only otherwise fall back to the default chain (instance role, config file, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import jwt
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig


def instance_credential_client(access_key_id: str, access_key_secret: str, security_token: str = "") \
        -> CredentialClient:
    """The instance's own credential from the ALIBABA_CLOUD_* values of the settings' env mapping, or the
    default chain when they are absent. Build it once per process; it makes no network call until a request
    is signed."""
    if access_key_id and access_key_secret:
        if security_token:
            return CredentialClient(CredentialConfig(type="sts", access_key_id=access_key_id,
                                                     access_key_secret=access_key_secret,
                                                     security_token=security_token))
        return CredentialClient(CredentialConfig(type="access_key", access_key_id=access_key_id,
                                                 access_key_secret=access_key_secret))
    return CredentialClient()


@dataclass(frozen=True)
class StsCredential:
    """Temporary Alibaba Cloud credentials from AssumeRoleForWorkloadIdentity. Secrets stay out of repr."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expiration: datetime

    def credential_client(self) -> CredentialClient:
        """For any Tea/OpenAPI client: `Config(credential=cred.credential_client(), ...)`."""
        return CredentialClient(CredentialConfig(type="sts", access_key_id=self.access_key_id,
                                                 access_key_secret=self.access_key_secret,
                                                 security_token=self.security_token))


def parse_expiration(value: str | None, fallback: datetime) -> datetime:
    """ISO 8601 `Expiration` (e.g. 2025-11-27T10:00:00Z) as an aware datetime; `fallback` when absent or
    odd."""
    if not value:
        return fallback
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def unverified_expiry(token: str) -> object:
    """The `exp` claim of a token that is a JWT, read without verifying it (only to know when to stop using
    a token we were given, never to trust it); None for an opaque token."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
