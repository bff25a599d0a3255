"""Translate Agent Identity SDK failures into our typed errors, without ever quoting the SDK's text.

An SDK exception's string can contain the request it sent (user JWT, workload token), so we read only its
structured fields: HTTP status, service error code and request id.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
from darabonba.exceptions import DaraException, UnretryableException

from identity.errors import (IdentityError, IdentityThrottled, IdentityUnavailable, InvalidCallerToken,
                             ProviderMisconfigured)

log = logging.getLogger(__name__)

# Codes with which a service refuses temporary credentials it no longer accepts (expired or revoked before the
# expiry we cached): a fresh credential fixes them, so callers drop theirs and retry once.
REJECTED_CREDENTIAL_PREFIXES = ("InvalidSecurityToken.",)
REJECTED_CREDENTIAL_CODES = {"InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive"}


def credential_rejected(code: str | None) -> bool:
    """True for a service error code meaning "these STS credentials are no longer valid"."""
    code = code or ""
    return code in REJECTED_CREDENTIAL_CODES or code.startswith(REJECTED_CREDENTIAL_PREFIXES)


def translate(error: BaseException, action: str) -> IdentityError:
    """The typed error for `error` raised by `action`; logs the safe fields once."""
    if isinstance(error, IdentityError):
        return error
    if isinstance(error, AlibabaCloudException):
        status, code, request_id = error.status_code or 0, str(error.code or ""), error.request_id
        log.warning("Agent Identity %s failed: HTTP %s %s (request id %s)", action, status, code, request_id)
        if isinstance(error, ThrottlingException) or status == 429 or "Throttling" in code:
            return IdentityThrottled(request_id=request_id, service_code=code)
        if status >= 500 or status == 0:
            return IdentityUnavailable(request_id=request_id, service_code=code)
        if "JsonWebToken" in code or "UserToken" in code or "UserJWT" in code:
            return InvalidCallerToken("The identity service did not accept your sign-in; please sign in again.",
                                      request_id=request_id, service_code=code)
        return ProviderMisconfigured(f"The identity service rejected {action} (code {code or status}); "
                                     "an operator must check the credential provider and workload identity.",
                                     request_id=request_id, service_code=code)
    if isinstance(error, CredentialException):
        log.warning("Agent Identity %s: the instance credentials are unavailable (%s)", action, type(error).__name__)
        return ProviderMisconfigured("The agent's own cloud credentials are missing or invalid.")
    if isinstance(error, UnretryableException | DaraException | aiohttp.ClientError | asyncio.TimeoutError | OSError):
        log.warning("Agent Identity %s could not be reached (%s)", action, type(error).__name__)
        return IdentityUnavailable()
    log.warning("Agent Identity %s failed unexpectedly (%s)", action, type(error).__name__)
    return IdentityUnavailable()
