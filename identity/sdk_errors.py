"""Alibaba Cloud SDK failures, classified once, without ever quoting the SDK's text.

An SDK exception's string can contain the request it sent (user JWT, workload token, security token), so
only its structured fields are read: HTTP status, service error code and request id. `failure_kind` is the
one classification; `translate` turns an Agent Identity failure into our typed errors with it, and
tools/toolbox.py words an Alibaba Cloud API failure for the user with it.
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
from outbound import unresolved_host, untrusted_certificate

log = logging.getLogger(__name__)

# Codes with which a service refuses temporary credentials it no longer accepts (expired or revoked before the
# expiry we cached): a fresh credential fixes them, so callers drop theirs and retry once.
REJECTED_CREDENTIAL_PREFIXES = ("InvalidSecurityToken.",)
REJECTED_CREDENTIAL_CODES = {"InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive"}


def credential_rejected(code: str | None) -> bool:
    """True for a service error code meaning "these STS credentials are no longer valid"."""
    code = code or ""
    return code in REJECTED_CREDENTIAL_CODES or code.startswith(REJECTED_CREDENTIAL_PREFIXES)


# Words in a 4xx code that name a credential we may have cached (workload token, STS token or key).
STALE_CREDENTIAL_WORDS = ("workloadaccesstoken", "securitytoken", "accesskeyid", "expired")


def may_be_stale_credential(error: IdentityError) -> bool:
    """Whether a fresh workload token and STS credential might fix `error`: Agent Identity's codes for a
    refused workload token are not published (docs/services.md), so this goes by status and code family
    (401/403, or a 4xx whose code names a token or key), not by one guessed code. Worth one retry, no more.
    A refused user JWT is not: exchanging the same JWT again cannot help."""
    if isinstance(error, InvalidCallerToken):
        return False
    if credential_rejected(error.service_code):
        return True
    status, code = error.service_status or 0, (error.service_code or "").lower()
    return status in (401, 403) or (400 <= status < 500
                                     and any(word in code for word in STALE_CREDENTIAL_WORDS))


THROTTLED, UNAVAILABLE, REJECTED, UNREACHABLE = "throttled", "unavailable", "rejected", "unreachable"
# The workload identity has SessionBindingEnabled (docs/services.md): an operator's setting, not a user's
# fault.
SESSION_BINDING_CODE = "Forbidden.InboundCredentialMissing"
# Said to the user when no answer came: not only "try again", since a wrong setting never heals by itself.
UNREACHABLE_MESSAGE = ("The identity service is unavailable (no answer); try again shortly, and if it "
                       "persists ask the operator to check the agent's Agent Identity region and endpoint.")
UNRESOLVED_MESSAGE = ("The identity service's address does not resolve; the operator must check the agent's "
                      "Agent Identity region setting.")


def failure_kind(error: BaseException) -> str:
    """throttled (429, Throttling*), unavailable (5xx, no status), rejected (another 4xx: look at the code),
    or unreachable (no answer: connection, timeout, unreadable body)."""
    if isinstance(error, AlibabaCloudException):
        status, code = error.status_code or 0, str(error.code or "")
        if isinstance(error, ThrottlingException) or status == 429 or "Throttling" in code:
            return THROTTLED
        return UNAVAILABLE if status >= 500 or status == 0 else REJECTED
    return UNREACHABLE


def translate(error: BaseException, action: str, endpoint: str = "") -> IdentityError:
    """The typed error for `error` raised by `action` at `endpoint` (the host, named when it could not be
    reached: a wrong region shows there); logs the safe fields once."""
    if isinstance(error, IdentityError):
        return error
    if isinstance(error, AlibabaCloudException):
        status, code, request_id = error.status_code or 0, str(error.code or ""), error.request_id
        log.warning("Agent Identity %s failed: HTTP %s %s (request id %s)", action, status, code, request_id)
        answer = {"request_id": request_id, "service_code": code, "service_status": status}
        kind = failure_kind(error)
        if kind == THROTTLED:
            return IdentityThrottled(**answer)
        if kind == UNAVAILABLE:
            return IdentityUnavailable(**answer)
        if code == SESSION_BINDING_CODE:
            return ProviderMisconfigured("Session binding is on for this workload identity, and this agent "
                                         "does not bind sessions (Forbidden.InboundCredentialMissing): see "
                                         "the README's Troubleshooting.", **answer)
        if "JsonWebToken" in code or "UserToken" in code or "UserJWT" in code:
            return InvalidCallerToken("The identity service did not accept your sign-in; please sign in "
                                      "again.", **answer)
        return ProviderMisconfigured(f"The identity service rejected {action} (code {code or status}); "
                                     "an operator must check the credential provider and workload identity.",
                                     **answer)
    if isinstance(error, CredentialException):
        log.warning("Agent Identity %s: the instance credentials are unavailable (%s)", action,
                    type(error).__name__)
        return ProviderMisconfigured("The agent's own cloud credentials are missing or invalid.")
    if isinstance(error, UnretryableException | DaraException | aiohttp.ClientError | asyncio.TimeoutError
                  | OSError):
        if untrusted_certificate(error):
            log.warning("Agent Identity %s: the endpoint's TLS certificate is not trusted (a private CA "
                        "must be named in SSL_CERT_FILE)", action)
            return IdentityUnavailable()
        if unresolved_host(error):
            log.warning("Agent Identity %s: the host %s does not resolve; check AGENT_IDENTITY_REGION_ID (a "
                        "region where Agent Identity runs) or AGENT_IDENTITY_DATA_ENDPOINT", action, endpoint)
            return IdentityUnavailable(UNRESOLVED_MESSAGE)
        log.warning("Agent Identity %s could not be reached at %s (%s)", action, endpoint,
                    type(error).__name__)
        return IdentityUnavailable(UNREACHABLE_MESSAGE)
    log.warning("Agent Identity %s failed unexpectedly (%s)", action, type(error).__name__)
    return IdentityUnavailable()
