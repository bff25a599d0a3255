"""Agent Identity data plane (agentidentitydata 2025-11-27): workload tokens, OAuth2 resource tokens, STS.

Wire format (docs/services.md): RPC `POST /`, action in `x-acs-action` (or the `Action` query of the anonymous
AssumeRoleForWorkloadIdentity), form body, JSON answers with case-sensitive keys, ACS error bodies.

The OAuth2 USER_FEDERATION flow (docs/services.md): GetResourceOAuth2Token answers a user without a stored
token with an `AuthorizationURL` (our consent page) and a `SessionURI`; approving redirects the browser to the
registered return URL with `session_uri` and `state`; the app then calls CompleteResourceTokenAuth for the
same user, after which GetResourceOAuth2Token with that `SessionURI` returns the access token. Tokens sit in
a vault per (user, provider, scopes); an expired one is refreshed silently (the real service holds the
refresh token, docs/services.md, DingTalk), a revoked one needs a new authorization.

Emulator-only: `GET /emulator/issued` lists every workload access token, provider token and STS credential
issued so far (secrets included: tests look for them where they must never appear).

Choices where the real behaviour is not published (error codes beyond `InvalidParameter.JsonWebToken`,
lifetimes, `SessionStatus` values, the `SessionURI` format, ARNs, the CustomState limit, single-use links,
completion with the original JWT only) live in emulators/chosen.py.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulators._server import Faults, emulator_app
from emulators.acs import AcsError, Principal, SignatureVerifier, iso_utc, render_acs_error, rpc_endpoint
from emulators.chosen import (CODE_BAD_SESSION, CODE_BAD_USER_IDENTIFIER, CODE_BAD_WORKLOAD_TOKEN,
                              CODE_CUSTOM_STATE_TOO_LONG, CODE_RETURN_URL_NOT_REGISTERED,
                              CODE_SESSION_NOT_OWNED, CODE_MISSING_SCOPES, CODE_SESSION_BINDING,
                              CODE_UNKNOWN_PROVIDER,
                              CODE_UNKNOWN_TOKEN_VAULT, CODE_UNKNOWN_WORKLOAD_IDENTITY,
                              CODE_UPSTREAM_TOKEN_ENDPOINT,
                              MAX_CUSTOM_STATE,
                              SESSION_FAILED, SESSION_TTL_S, SESSION_URI_PREFIX, SESSION_WAITING,
                              WORKLOAD_TOKEN_TTL_S, workload_identity_arn)
from emulators.consent import consent_page, notice_page
from emulators.registry import CredentialRegistry, Issued

STS_MIN_S, STS_MAX_S, STS_DEFAULT_S = 900, 43200, 3600  # STS AssumeRole's documented DurationSeconds range
ROLE_SESSION_NAME = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")  # STS AssumeRole's documented pattern


@dataclass(frozen=True)
class WorkloadIdentity:
    """The agent's workload identity: its name, registered return URLs and the RAM role it may assume."""

    name: str
    return_urls: tuple[str, ...]
    account_id: str
    role_name: str
    role_id: str
    region: str = "cn-hangzhou"

    @property
    def arn(self) -> str:
        return workload_identity_arn(self.region, self.account_id, self.name)

    @property
    def role_arn(self) -> str:
        return f"acs:ram::{self.account_id}:role/{self.role_name}"


@dataclass(frozen=True)
class CredentialProvider:
    """An OAuth2 credential provider configured in Agent Identity (here: DingTalk)."""

    name: str
    display_name: str
    default_scopes: tuple[str, ...]
    token_ttl_s: int = 7200  # DingTalk user access tokens live 7,200 s (docs/services.md, DingTalk)


@dataclass
class WorkloadGrant:
    """What a workload access token stands for. `user_jwt` is kept only to compare, never returned."""

    workload: str
    user: str | None
    expires_at: float
    user_jwt: str | None = field(default=None, repr=False)


@dataclass
class AuthSession:
    """One pending USER_FEDERATION authorization."""

    id: str
    user: str
    workload: str
    provider: CredentialProvider
    scopes: tuple[str, ...]
    return_url: str
    custom_state: str
    expires_at: float
    user_jwt: str | None = field(default=None, repr=False)  # the JWT the workload token was issued for
    prompt_consent: bool = False  # CustomParameters {"prompt": "consent"}: the provider asks the user anew
    opened: bool = False  # the authorization URL works once (Alibaba Cloud's "Obtain an OAuth access token")
    status: str = "pending"  # pending -> consented | denied -> completed

    @property
    def uri(self) -> str:
        return SESSION_URI_PREFIX + self.id


class UserJwtValidator:
    """Validates user JWTs against the IdP's JWKS (in-process): signature, `iss`, `exp`, `aud` if set."""

    def __init__(self, jwks: Callable[[], dict[str, Any]], issuer: str, audience: str | None) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._keys: dict[str, Any] = {}

    def validate(self, token: str, *, check_expiry: bool = True) -> dict[str, Any]:
        try:
            key = self._key_for(jwt.get_unverified_header(token).get("kid", ""))
            return jwt.decode(token, key, algorithms=["RS256"], issuer=self._issuer, audience=self._audience,
                              options={"require": ["exp", "iss", "sub"], "verify_exp": check_expiry,
                                       "verify_aud": self._audience is not None})
        except jwt.ExpiredSignatureError:
            reason = "the token has expired"
        except jwt.InvalidIssuerError:
            reason = "the issuer is not the identity provider of this workload identity"
        except jwt.InvalidAudienceError:
            reason = "the audience is not accepted"
        except jwt.InvalidSignatureError:
            reason = "the signature is invalid"
        except (jwt.PyJWTError, KeyError):
            reason = "the token is malformed or signed with an unknown key"
        raise AcsError(400, "InvalidParameter.JsonWebToken", f"The specified UserToken is invalid: {reason}.")

    def _key_for(self, kid: str) -> Any:
        if kid not in self._keys:  # unknown kid: the IdP may have rotated keys, so reload once
            self._keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(self._jwks()).keys}
        return self._keys[kid]


class AgentIdentityEmulator:
    """The Agent Identity data-plane emulator; `.app` is its Starlette app."""

    def __init__(self, base_url: str, *, verifier: SignatureVerifier, users: UserJwtValidator,
                 workload: WorkloadIdentity, providers: list[CredentialProvider],
                 provider_tokens: CredentialRegistry, sts_credentials: CredentialRegistry,
                 faults: Faults | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.workload = workload
        self.providers = {p.name: p for p in providers}
        self.session_ttl_s = SESSION_TTL_S  # tests shorten it to see sessions expire
        self.workload_token_ttl_s: float = WORKLOAD_TOKEN_TTL_S
        self.token_vaults = {"default"}
        # The permissions each provider's app holds now (absent: every one). A user's token carries the
        # permissions of the user's consent, a snapshot that only a consent with prompt=consent renews
        # (docs/services.md, DingTalk).
        self.app_permissions: dict[str, list[str]] = {}
        self._consents: dict[tuple[str, str], list[str] | None] = {}
        self.session_binding = False  # the workload identity's SessionBindingEnabled (tests turn it on)
        # Tests set it: the provider's token endpoint fails when a consented session is polled.
        self.upstream_token_endpoint_fails = False
        self.waiting_status = SESSION_WAITING  # tests set values the product has never seen
        self._users = users
        self._provider_tokens = provider_tokens
        self._sts = sts_credentials
        self.return_urls = set(workload.return_urls)
        self._grants: dict[str, WorkloadGrant] = {}
        self._sessions: dict[str, AuthSession] = {}
        self._vault: dict[tuple[str, str, tuple[str, ...]], str] = {}
        actions = {
            "GetWorkloadAccessToken": self._get_workload_access_token,
            "GetWorkloadAccessTokenForJWT": self._get_workload_access_token_for_jwt,
            "GetWorkloadAccessTokenForUserId": self._get_workload_access_token_for_user_id,
            "GetResourceOAuth2Token": self._get_resource_oauth2_token,
            "CompleteResourceTokenAuth": self._complete_resource_token_auth,
            "AssumeRoleForWorkloadIdentity": self._assume_role_for_workload_identity,
        }
        routes = [
            rpc_endpoint(verifier, actions, anonymous=frozenset({"AssumeRoleForWorkloadIdentity"})),
            Route("/oauth2/authorize", self._consent, methods=["GET", "POST"]),
            Route("/emulator/issued", self._issued, methods=["GET"]),
        ]
        self.app = emulator_app("agent_identity", routes, render_acs_error,
                                on_expire_tokens=self.expire_tokens, faults=faults)

    async def _issued(self, _: Request) -> Response:
        """Emulator-only: every credential issued so far, secrets included (they are the emulator's own),
        so tests can look for them where they must never appear."""
        grants = [{"token": token, "user": grant.user} for token, grant in self._grants.items()]
        provider_tokens = [{"token": key, "subject": record.subject,
                            "provider": record.details.get("provider")}
                           for key, record in self._provider_tokens.records()]
        sts = [{"access_key_id": key, "access_key_secret": record.secret, "subject": record.subject,
                "security_token": record.details.get("security_token"),
                "policy": record.details.get("policy")} for key, record in self._sts.records()]
        return JSONResponse({"workload_access_tokens": grants, "provider_tokens": provider_tokens,
                             "sts_credentials": sts})

    def expire_tokens(self) -> None:
        """Fault injection: every workload token, STS credential and vaulted provider token expires now."""
        for grant in self._grants.values():
            grant.expires_at = 0.0
        self._sts.expire_all()
        self._provider_tokens.expire_all()

    # -- workload access tokens --------------------------------------------------------------------------

    def _issue_grant(self, params: dict[str, str], user: str | None,
                     user_jwt: str | None = None) -> dict[str, Any]:
        name = _required(params, "WorkloadIdentityName")
        if name != self.workload.name:
            raise AcsError(*CODE_UNKNOWN_WORKLOAD_IDENTITY, f"The workload identity {name!r} does not exist.")
        token = "wat-" + secrets.token_urlsafe(32)
        self._grants[token] = WorkloadGrant(name, user, time.time() + self.workload_token_ttl_s,
                                            user_jwt)
        return {"WorkloadAccessToken": token, "WorkloadIdentityArn": self.workload.arn}

    async def _get_workload_access_token(self, params: dict[str, str], _: Principal | None) -> dict[str, Any]:
        return self._issue_grant(params, user=None)

    async def _get_workload_access_token_for_jwt(self, params: dict[str, str],
                                                 _: Principal | None) -> dict[str, Any]:
        user_jwt = _required(params, "UserToken")
        claims = self._users.validate(user_jwt)
        audience = claims.get("aud")
        result = self._issue_grant(params, user=claims["sub"], user_jwt=user_jwt)
        result["UserContext"] = {"JwtClaims": {
            "Audiences": audience if isinstance(audience, list) else [audience] if audience else [],
            "Issuer": claims["iss"], "JTI": claims.get("jti"), "Subject": claims["sub"]}}
        return result

    async def _get_workload_access_token_for_user_id(self, params: dict[str, str],
                                                     _: Principal | None) -> dict[str, Any]:
        user_id = _required(params, "UserId")
        result = self._issue_grant(params, user=user_id)
        result["UserContext"] = {"UserId": user_id}
        return result

    def _grant(self, params: dict[str, str]) -> WorkloadGrant:
        grant = self._grants.get(_required(params, "WorkloadAccessToken"))
        if grant is None:
            raise AcsError(*CODE_BAD_WORKLOAD_TOKEN, "The specified WorkloadAccessToken is unknown.")
        if time.time() >= grant.expires_at:
            raise AcsError(*CODE_BAD_WORKLOAD_TOKEN, "Workload access token is expired")
        return grant

    # -- OAuth2 resource tokens ----------------------------------------------------------------------------

    async def _get_resource_oauth2_token(self, params: dict[str, str], _: Principal | None) -> dict[str, Any]:
        grant = self._grant(params)
        provider = self._provider(params)
        if not params.get("Scopes"):
            raise AcsError(*CODE_MISSING_SCOPES, "Scopes is mandatory for this action.")
        scopes = _scopes(params["Scopes"], provider.default_scopes)
        vault = params.get("TokenVaultName") or "default"
        if vault not in self.token_vaults:
            raise AcsError(*CODE_UNKNOWN_TOKEN_VAULT, f"The token vault {vault!r} does not exist.")
        flow = params.get("OAuth2Flow") or "USER_FEDERATION"
        if flow == "M2M":  # no user involved: a missing token is simply issued
            app = f"workload:{grant.workload}"
            stored = self._vaulted_token(app, provider, scopes)
            stored = stored or self._store_new_token((app, provider.name, scopes), provider)
            return self._token_answer(*stored)
        if flow != "USER_FEDERATION":
            raise AcsError(400, "InvalidParameter.OAuth2Flow", "OAuth2Flow must be USER_FEDERATION or M2M.")
        if grant.user is None:
            raise AcsError(*CODE_BAD_WORKLOAD_TOKEN,
                           "USER_FEDERATION needs a workload access token obtained for a user.")
        if self.session_binding:
            raise AcsError(*CODE_SESSION_BINDING, "The inbound credential of the session is missing.")
        return_url = params.get("ResourceOAuth2ReturnURL")
        if return_url and return_url not in self.return_urls:
            raise AcsError(*CODE_RETURN_URL_NOT_REGISTERED,
                           "The ResourceOAuth2ReturnURL is not registered on the workload identity.")
        if params.get("SessionURI"):
            return self._poll_session(params["SessionURI"], grant)
        force = params.get("ForceAuthentication", "false").lower() == "true"
        stored = None if force else self._vaulted_token(grant.user, provider, scopes)
        if stored is not None:
            return self._token_answer(*stored)
        if not return_url:
            raise AcsError(400, "MissingResourceOAuth2ReturnURL",
                           "ResourceOAuth2ReturnURL is required to start a user authorization.")
        custom_state = params.get("CustomState", "")
        if len(custom_state) > MAX_CUSTOM_STATE:
            raise AcsError(*CODE_CUSTOM_STATE_TOO_LONG,
                           f"CustomState must be at most {MAX_CUSTOM_STATE} characters.")
        session = AuthSession(id=secrets.token_urlsafe(24), user=grant.user, workload=grant.workload,
                              provider=provider, scopes=scopes, return_url=return_url,
                              custom_state=custom_state, expires_at=time.time() + self.session_ttl_s,
                              user_jwt=grant.user_jwt,
                              prompt_consent=_custom_parameters(params).get("prompt") == "consent")
        self._sessions[session.id] = session
        return {"AuthorizationURL": f"{self.base_url}/oauth2/authorize?{urlencode({'session': session.id})}",
                "SessionURI": session.uri, "SessionStatus": SESSION_WAITING}

    def _provider(self, params: dict[str, str]) -> CredentialProvider:
        name = _required(params, "ResourceCredentialProviderName")
        if name not in self.providers:
            raise AcsError(*CODE_UNKNOWN_PROVIDER, f"The credential provider {name!r} does not exist.")
        return self.providers[name]

    def _vaulted_token(self, user: str, provider: CredentialProvider,
                       scopes: tuple[str, ...]) -> tuple[str, Issued] | None:
        """The stored token (refreshed if it merely expired); None if the user must authorize again."""
        key = (user, provider.name, scopes)
        token = self._vault.get(key, "")
        record = self._provider_tokens.get(token)
        if record is not None and record.valid:
            return token, record
        if record is not None and not record.revoked:
            return self._store_new_token(key, provider)
        self._vault.pop(key, None)
        return None

    def _store_new_token(self, key: tuple[str, str, tuple[str, ...]],
                         provider: CredentialProvider) -> tuple[str, Issued]:
        user, _, scopes = key
        snapshot = self._consents.get((user, provider.name))
        permissions = {} if snapshot is None else {"permissions": list(snapshot)}
        token, record = self._provider_tokens.issue(user, provider.token_ttl_s, provider=provider.name,
                                                    scopes=list(scopes), **permissions)
        self._vault[key] = token
        return token, record

    @staticmethod
    def _token_answer(token: str, record: Issued) -> dict[str, Any]:
        return {"AccessToken": token, "ExpiresIn": max(0, int(record.expires_at - time.time()))}

    def _poll_session(self, session_uri: str, grant: WorkloadGrant) -> dict[str, Any]:
        """Polling: the token once the session was completed, else the session's status."""
        session = self._session(session_uri)
        if session.user != grant.user:
            raise AcsError(*CODE_SESSION_NOT_OWNED, "The session was started for another user.")
        if session.status == "completed":
            if self.upstream_token_endpoint_fails:
                raise AcsError(*CODE_UPSTREAM_TOKEN_ENDPOINT, "The upstream token endpoint is unavailable.")
            stored = self._vaulted_token(session.user, session.provider, session.scopes)
            if stored is not None:
                return self._token_answer(*stored)
            return {"SessionURI": session.uri, "SessionStatus": SESSION_FAILED}
        if session.status == "denied":
            return {"SessionURI": session.uri, "SessionStatus": SESSION_FAILED}
        return {"SessionURI": session.uri, "SessionStatus": self.waiting_status}

    def _session(self, session_uri: str) -> AuthSession:
        session = self._sessions.get(session_uri.removeprefix(SESSION_URI_PREFIX))
        expired = session is None or time.time() >= session.expires_at
        if expired or not session_uri.startswith(SESSION_URI_PREFIX):
            raise AcsError(*CODE_BAD_SESSION, "The specified SessionURI does not exist or has expired.")
        return session

    async def _complete_resource_token_auth(self, params: dict[str, str],
                                            _: Principal | None) -> dict[str, Any]:
        session = self._session(_required(params, "SessionURI"))
        if session.status == "completed":
            raise AcsError(*CODE_BAD_SESSION, "The specified SessionURI was already used.")
        if session.status != "consented":
            raise AcsError(*CODE_BAD_SESSION,
                           "The user has not approved this authorization session.")
        if not self._identifies(params.get("UserIdentifier", ""), session):
            raise AcsError(*CODE_BAD_USER_IDENTIFIER,
                           "The UserIdentifier does not identify the user who started the session.")
        session.status = "completed"
        consent = (session.user, session.provider.name)
        if consent not in self._consents or session.prompt_consent:
            self._consents[consent] = self.app_permissions.get(session.provider.name)
        if not self.upstream_token_endpoint_fails:  # else no token reached the vault: none for a vault probe
            self._store_new_token((session.user, session.provider.name, session.scopes), session.provider)
        return {}

    @staticmethod
    def _identifies(raw_identifier: str, session: AuthSession) -> bool:
        """Whether `UserIdentifier` (`{"UserJWT": ..}` or `{"UserId": ..}`) names the session's user.

        Chosen (emulators/chosen.py), the strict reading of the SDK's and AWS's documentation: a UserJWT
        counts only if it is the very JWT the session's workload access token was obtained with (a fresh JWT
        of the same user does not); a UserId only for a workload token obtained for that user id.
        """
        try:
            identifier = json.loads(raw_identifier or "{}")
        except json.JSONDecodeError:
            identifier = None
        if not isinstance(identifier, dict) or not (identifier.get("UserJWT") or identifier.get("UserId")):
            raise AcsError(*CODE_BAD_USER_IDENTIFIER,
                           "UserIdentifier must be a JSON object with UserJWT or UserId.")
        if session.user_jwt is not None:
            return secrets.compare_digest(str(identifier.get("UserJWT") or "").encode(),
                                          session.user_jwt.encode())
        return str(identifier.get("UserId") or "") == session.user

    # -- the consent page ----------------------------------------------------------------------------------

    async def _consent(self, request: Request) -> Response:
        session = self._sessions.get(request.query_params.get("session", ""))
        if session is None or time.time() >= session.expires_at:
            return HTMLResponse(notice_page("Link expired", "This authorization link is invalid or has "
                                            "expired. Ask the assistant again."), status_code=404)
        if session.status != "pending":
            return HTMLResponse(notice_page("Already answered", "This authorization request was already "
                                            "answered. You can close this page."), status_code=409)
        if request.method == "GET" and session.opened:
            return HTMLResponse(notice_page("Link already used",
                                            "This authorization link can be used only once. "
                                            "Ask the assistant again for a new one."), status_code=400)
        if request.method == "GET":
            session.opened = True
            page = consent_page(action_url=f"{request.url.path}?{request.url.query}",
                                app_name=session.workload, provider=session.provider.display_name,
                                scopes=session.scopes)
            return HTMLResponse(page)
        if not session.opened:
            return HTMLResponse(notice_page("Bad request", "Open the authorization link first."),
                                status_code=400)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return HTMLResponse(notice_page("Bad request", "decision must be approve or deny."),
                                status_code=400)
        session.status = "consented" if decision == "approve" else "denied"
        outcome = {"session_uri": session.uri} if decision == "approve" else {"error": "access_denied"}
        return RedirectResponse(_with_query(session.return_url, {**outcome, "state": session.custom_state}),
                                status_code=302)

    # -- STS credentials -----------------------------------------------------------------------------------

    async def _assume_role_for_workload_identity(self, params: dict[str, str],
                                                 _: Principal | None) -> dict[str, Any]:
        """Anonymous: the workload access token itself is the proof (docs/services.md)."""
        grant = self._grant(params)
        session_name = _required(params, "RoleSessionName")
        if not ROLE_SESSION_NAME.match(session_name):
            raise AcsError(400, "InvalidParameter.RoleSessionName",
                           "RoleSessionName must be 2-64 characters of letters, digits and . @ - _")
        duration = _int(params.get("DurationSeconds"), STS_DEFAULT_S, "DurationSeconds")
        if not STS_MIN_S <= duration <= STS_MAX_S:
            raise AcsError(400, "InvalidParameter.DurationSeconds",
                           f"DurationSeconds must be between {STS_MIN_S} and {STS_MAX_S}.")
        policy = params.get("Policy") or None
        if policy is not None:
            try:
                json.loads(policy)
            except json.JSONDecodeError:
                raise AcsError(400, "InvalidParameter.PolicyGrammar",
                               "The Policy is not valid JSON.") from None
        wl = self.workload
        assumed_arn = f"acs:ram::{wl.account_id}:assumed-role/{wl.role_name.lower()}/{session_name}"
        assumed_id = f"{wl.role_id}:{session_name}"
        key_id, record = self._sts.issue(
            grant.user or f"workload:{grant.workload}", duration, key="STS." + secrets.token_urlsafe(24),
            security_token="CAIS" + secrets.token_urlsafe(96), role_arn=wl.role_arn,
            session_name=session_name, policy=policy, account_id=wl.account_id, role_id=wl.role_id,
            assumed_role_arn=assumed_arn, principal_id=assumed_id)
        return {
            "Credentials": {"AccessKeyId": key_id, "AccessKeySecret": record.secret,
                            "SecurityToken": record.details["security_token"],
                            "Expiration": iso_utc(record.expires_at)},
            "AssumedRoleUser": {"Arn": assumed_arn, "AssumedRoleId": assumed_id},
            "WorkloadContextInfo": {"WorkloadIdentityArn": wl.arn},
        }


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise AcsError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    return value


def _int(raw: str | None, default: int, name: str) -> int:
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise AcsError(400, f"InvalidParameter.{name}", f"{name} must be an integer.") from None


def _custom_parameters(params: dict[str, str]) -> dict[str, Any]:
    """`CustomParameters`: a JSON object string of extra authorization-request parameters (SDK models)."""
    raw = params.get("CustomParameters")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise AcsError(400, "InvalidParameter.CustomParameters", "CustomParameters must be a JSON object.")
    return parsed


def _scopes(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """`Scopes` arrives as a JSON array string (docs/services.md); the vault keys on the sorted set."""
    if not raw:
        return tuple(sorted(default))
    try:
        scopes = json.loads(raw)
    except json.JSONDecodeError:
        scopes = None
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise AcsError(400, "InvalidParameter.Scopes", "Scopes must be a JSON array of strings.")
    return tuple(sorted(set(scopes))) or tuple(sorted(default))


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
