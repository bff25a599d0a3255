"""Every value the emulators choose where the real service does not publish one, in one place.

Each choice is the strictest reading of what is documented, so the product cannot pass a test by relying on
a lenient guess (docs/services.md says, per service, what is known and how the product copes with the
unknown). Change a value here when the real service is seen to behave otherwise, then fix the product.
"""

from __future__ import annotations

# --- Agent Identity data plane ----------------------------------------------------------------------------
# Lifetime of a workload access token: about 5 minutes as a real integration observed it, expiring with
# `InvalidParameter.WorkloadAccessToken` "Workload access token is expired" (docs/services.md, secondary
# evidence). `python -m emulators --workload-token-ttl S` changes it; the product must not depend on it.
WORKLOAD_TOKEN_TTL_S = 300
SESSION_TTL_S = 600  # a user-federation session must be completed within 10 minutes
MAX_CUSTOM_STATE = 4096  # CustomState characters, as AWS documents for the identical API
SESSION_WAITING = "IN_PROGRESS"  # SessionStatus while the user has not finished (AWS's value)
SESSION_FAILED = "FAILED"  # SessionStatus after a refusal (AWS's value); never a separate "declined"
# An authorization URL opens once; CompleteResourceTokenAuth takes only the JWT the workload token came from;
# approving another link of the same user does not finish a session (see emulators/agent_identity.py).
CODE_UNKNOWN_WORKLOAD_IDENTITY = (404, "EntityNotExist.WorkloadIdentity")
CODE_BAD_WORKLOAD_TOKEN = (400, "InvalidParameter.WorkloadAccessToken")
CODE_RETURN_URL_NOT_REGISTERED = (400, "InvalidParameter.ResourceOAuth2ReturnURL")
CODE_CUSTOM_STATE_TOO_LONG = (400, "InvalidParameter.CustomState")
# Codes a real integration observed (docs/services.md, secondary evidence; their HTTP statuses are chosen):
CODE_UNKNOWN_PROVIDER = (404, "EntityNotExists.OAuth2CredentialProvider")
CODE_MISSING_SCOPES = (400, "MissingParameter.Scopes")
CODE_UPSTREAM_TOKEN_ENDPOINT = (503, "ServiceUnavailable.UpstreamTokenEndpoint")  # the provider's token call
CODE_SESSION_BINDING = (403, "Forbidden.InboundCredentialMissing")  # SessionBindingEnabled on the identity
CODE_UNKNOWN_TOKEN_VAULT = (404, "EntityNotExists.TokenVault")  # chosen; "default" always exists
CODE_SESSION_NOT_OWNED = (403, "Forbidden.SessionNotOwned")
CODE_BAD_SESSION = (400, "InvalidParameter.SessionURI")
CODE_BAD_USER_IDENTIFIER = (400, "InvalidParameter.UserIdentifier")
SESSION_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"  # as AWS and Huawei Cloud


def workload_identity_arn(region: str, account_id: str, name: str) -> str:
    return f"acs:agentidentity:{region}:{account_id}:workloadidentity/{name}"


# --- AgentRun control plane ---------------------------------------------------------------------------------
AGENTRUN_SUCCESS_CODE = "SUCCESS"
AGENTRUN_READY_STATUS = "READY"
AGENTRUN_PROVIDER = "openai"
CODE_MODEL_SERVICE_NOT_FOUND = (404, "ModelServiceNotFound")
CODE_CREDENTIAL_NOT_FOUND = (404, "CredentialNotFound")

# --- DingTalk -----------------------------------------------------------------------------------------------
# The throttle answer carries the shared fault machinery's `Retry-After: 1` (DingTalk documents none); the
# success body's `data` is empty; any well-formed docKey names a document, created on first write.

# --- the IdP ------------------------------------------------------------------------------------------------
AUTHORIZATION_CODE_TTL_S = 60  # RFC 6749 10.5 recommends at most 10 minutes
# Every client must use PKCE S256, confidential ones included (OAuth 2.1's rule).

# --- OSS ----------------------------------------------------------------------------------------------------
# OSS's error pages name the codes (InvalidAccessKeyId, InvalidSecurityToken, SignatureDoesNotMatch,
# RequestTimeTooSkewed, AccessDenied: 403; NoSuchBucket, NoSuchKey: 404) but not these two answers:
OSS_CODE_TOKEN_EXPIRED = (403, "SecurityTokenExpired")  # the 0002-00000007 error page, status not stated
OSS_CODE_WRONG_SIGNING_REGION = (403, "SignatureDoesNotMatch")  # a V4 scope naming another region
# A missing bucket is named (404 NoSuchBucket) before permissions are checked; a missing key only after
# (a principal that may not read the object learns AccessDenied, not whether it exists).
