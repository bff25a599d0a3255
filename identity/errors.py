"""Typed identity errors whose `safe_message` may be shown to the model and the user.

SDK exceptions can carry request parameters (tokens included) in their text, so nothing here is ever built
from `str(sdk_error)`: each error gets a fixed, human message plus, at most, a service code and request id.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base class. `safe_message` is fit for the model, the user and the logs; `code` is a stable short id."""

    code = "identity_error"
    http_status = 502
    default_message = "The identity service could not provide a credential."

    def __init__(self, safe_message: str | None = None, *, request_id: str | None = None,
                 service_code: str | None = None, service_status: int | None = None) -> None:
        self.safe_message = safe_message or self.default_message
        self.request_id = request_id
        self.service_code = service_code  # the identity service's error code, when it sent one
        self.service_status = service_status  # the identity service's HTTP status, when it answered
        text = self.safe_message + (f" (request id {request_id})" if request_id else "")
        super().__init__(text)


class NoRequestContext(IdentityError):
    """Identity was asked for a user credential outside a request (a programming error)."""

    code = "no_request_context"
    http_status = 500
    default_message = "No signed-in user is bound to this call."


class InvalidCallerToken(IdentityError):
    """The inbound bearer token is missing or invalid. Deliberately says nothing about why."""

    code = "invalid_token"
    http_status = 401
    default_message = "A valid bearer token is required."


def consent_sentence(purpose: str, url: str) -> str:
    """The one sentence that asks the user to authorize: the wording of the product docs, trailing space and
    blank line included (docs/services.md, OpenAI-compatible server)."""
    return f"Please click the link to authorize {purpose}: {url} \n\n"


class AuthorizationPending(IdentityError):
    """The user must open `url` to authorize; raised instead of waiting when the client cannot be streamed
    to."""

    code = "authorization_required"
    http_status = 200

    def __init__(self, url: str, purpose: str) -> None:
        self.url = url
        self.purpose = purpose
        super().__init__(consent_sentence(purpose, url).strip())


class AuthorizationDeclined(IdentityError):
    code = "authorization_declined"
    http_status = 403
    default_message = "The user declined the authorization request."


class AuthorizationFailed(IdentityError):
    """The authorization ended without a token: the provider sent the user back with an error other than a
    refusal (e.g. `server_error`), or Agent Identity reported the session FAILED (a refusal or a provider
    failure: only the callback, which sees `error=access_denied`, can tell a refusal)."""

    code = "authorization_failed"
    http_status = 502
    default_message = ("The authorization was not completed (declined, or the provider failed). Ask again to "
                       "get a new link.")

    def __init__(self, provider_error: str | None = None) -> None:
        super().__init__(f"The provider could not complete the authorization ({provider_error}). "
                         "Ask again to get a new link." if provider_error else None)


class AuthorizationTimedOut(IdentityError):
    code = "authorization_timed_out"
    http_status = 408
    default_message = "The authorization link was not completed in time. Ask again to get a new link."


class ProviderMisconfigured(IdentityError):
    """The credential provider, workload identity or return URL is wrong: an operator must fix
    configuration."""

    code = "provider_misconfigured"
    http_status = 502
    default_message = "The credential provider is not configured correctly; contact the operator."


class UserTokenTooLarge(IdentityError):
    """The user's JWT, sealed into the OAuth2 state that must travel through the consent, passes Agent
    Identity's CustomState limit (or the service refused the state): only a smaller sign-in token helps."""

    code = "user_token_too_large"
    http_status = 400

    def __init__(self, state_length: int, limit: int | None, *, request_id: str | None = None,
                 service_code: str | None = None, service_status: int | None = None) -> None:
        bound = (f"at most {limit:,} characters (Agent Identity's CustomState limit)" if limit is not None
                 else "shorter: Agent Identity refused it as too long (CustomState)")
        super().__init__("Your sign-in token is too large to carry through the authorization: the state "
                         f"that carries it would be {state_length:,} characters, and it must be {bound}. "
                         "Sign in with a token that has fewer claims, or ask the operator to trim the "
                         "identity provider's token.", request_id=request_id, service_code=service_code,
                         service_status=service_status)


class ProviderUnavailable(IdentityError):
    """The resource provider's token endpoint failed while Agent Identity fetched the user's token
    (`ServiceUnavailable.UpstreamTokenEndpoint`): waiting longer cannot finish this authorization."""

    code = "provider_unavailable"
    http_status = 502
    default_message = ("The service you authorized did not hand out its token; ask again in a moment for a "
                       "new link.")


class IdentityUnavailable(IdentityError):
    code = "identity_unavailable"
    http_status = 503
    default_message = "The identity service is unavailable right now; try again shortly."


class IdentityThrottled(IdentityError):
    code = "identity_throttled"
    http_status = 429
    default_message = "The identity service is busy (throttled); try again shortly."


class TooManyPendingAuthorizations(IdentityError):
    """The user already has MAX_WAITING_PER_USER requests waiting for consent on this instance."""

    code = "too_many_pending_authorizations"
    http_status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(f"You already have {limit} requests waiting for your authorization. Open one of "
                         "their links (or stop one of those requests), then ask again.")
