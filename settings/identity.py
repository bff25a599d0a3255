"""Identity settings, read once from the environment (or a test's env mapping)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from settings.reader import APP_ENVS, DEFAULT_REGION, EnvReader, is_http_url, is_production, read_section

log = logging.getLogger(__name__)

# Asymmetric algorithms only: HS* with a published key is the classic key-confusion attack, `none` is no
# check.
DEFAULT_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                          "EdDSA")
MIN_STATE_SECRET_LENGTH = 16
SIGNED_IN_PATH = "/signed-in"  # below the callback: the browser sign-in's redirect URI
LOCAL_REDIRECT_URI = "http://localhost:8090"  # the local callback's default, outside production only
GATEWAY_VERIFIES = "only behind a gateway that verifies the JWT (AgentRun's JWT inbound authentication)"


@dataclass(frozen=True)
class IdentitySettings:
    workload_identity_name: str
    state_secret: str = field(repr=False)
    region_id: str = DEFAULT_REGION
    data_endpoint: str = ""
    use_sts: bool = True
    redirect_uri: str = LOCAL_REDIRECT_URI
    authorization_timeout_seconds: float = 300.0
    max_waiting_per_user: int = 3  # a user's requests waiting for consent at once on this instance
    token_vault_name: str = ""  # the Agent Identity token vault of the users' OAuth2 tokens; "": the default
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_algorithms: tuple[str, ...] = DEFAULT_JWT_ALGORITHMS
    # The callback's browser sign-in (OIDC code flow with PKCE) at the INBOUND_JWT_ISSUER IdP; off when unset.
    signin_client_id: str = ""
    signin_client_secret: str = field(default="", repr=False)
    signin_scopes: tuple[str, ...] = ("openid",)
    # Instance credentials found in the env mapping (the runtime sets them); empty -> the SDK's default chain.
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)
    # Tuning that needs no variable of its own.
    jwt_leeway_seconds: float = 30.0
    request_timeout_seconds: float = 10.0
    # While a user waits, one Agent Identity call every this many seconds for all their waits on this instance
    # (identity/consent_waits.py: the schedule and the bounds it gives).
    poll_interval_seconds: float = 2.0
    cache_size: int = 1024

    @property
    def callback_url(self) -> str:
        """Where the provider sends the browser back: `${APP_REDIRECT_URI}/callback`."""
        return self.redirect_uri.rstrip("/") + "/callback"

    @property
    def signin_redirect_url(self) -> str:
        """Where the IdP sends the browser back after sign-in; register it on the OIDC client."""
        return self.callback_url + SIGNED_IN_PATH

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, callback_only: bool = False) -> Self:
        return read_section(env, lambda read, region: cls.read(read, region, callback_only=callback_only))

    @classmethod
    def read(cls, read: EnvReader, region: str, *, callback_only: bool = False) -> Self:
        """`callback_only`: for `python app.py callback`, which acts as no workload identity."""
        read.choice("APP_ENV", APP_ENVS, "")  # checked here; what it means: settings.reader.is_production
        production = is_production(read.env)
        algorithms = tuple(read.list("INBOUND_JWT_ALGORITHMS", list(DEFAULT_JWT_ALGORITHMS)))
        unsafe = [a for a in algorithms if a.lower() == "none" or a.upper().startswith("HS")]
        if unsafe:
            read.problems.append(f"INBOUND_JWT_ALGORITHMS must list asymmetric algorithms only, got {unsafe}")
        secret = read.str("IDENTITY_STATE_SECRET", required=True,
                          why="the key that seals the OAuth2 state and the callback's cookies; the same in "
                              'the agent and the callback: python3 -c "import secrets; '
                              'print(secrets.token_urlsafe(32))"')
        if secret and len(secret) < MIN_STATE_SECRET_LENGTH:
            read.problems.append(f"IDENTITY_STATE_SECRET must be at least {MIN_STATE_SECRET_LENGTH} "
                                 "characters")
        signin_client_id = read.str("CALLBACK_OIDC_CLIENT_ID", required=production and callback_only,
                                    why="in production for `python app.py callback`: without it the callback "
                                        "cannot tell who is at the browser, and every consent ends at "
                                        "\"Sign-in needed\"; register ${APP_REDIRECT_URI}/callback/signed-in "
                                        "on that OAuth client",
                                    deploy="the OAuth client of your IdP that the callback signs browsers in "
                                           "with")
        issuer = read.str("INBOUND_JWT_ISSUER", deploy="the iss of your users' JWTs")
        if signin_client_id and not is_http_url(issuer, base=True):
            read.problems.append("INBOUND_JWT_ISSUER must be the IdP's issuer URL (https://...) with "
                                 "CALLBACK_OIDC_CLIENT_ID: the callback discovers the sign-in endpoints at "
                                 "${INBOUND_JWT_ISSUER}/.well-known/openid-configuration; got "
                                 f"{issuer!r}")
        scopes = tuple(read.list("CALLBACK_OIDC_SCOPES", ["openid"]))
        if "openid" not in scopes:
            read.problems.append(f"CALLBACK_OIDC_SCOPES must include openid, got {' '.join(scopes)!r}")
        redirect_uri = read.url("APP_REDIRECT_URI", "" if production else LOCAL_REDIRECT_URI, base=True,
                                required=production,
                                why="the callback deployment's public https URL; register "
                                    "<it>/callback as a return URL")
        jwks_url = _inbound_jwks_url(read, production=production and not callback_only)
        # The callback checks ID tokens of its own sign-in client, not the users' JWTs: no audience to set
        # there.
        audience = read.str("INBOUND_JWT_AUDIENCE",
                            deploy="" if callback_only else "the aud of your users' JWTs")
        if production and not callback_only:
            _require_claims_checked(read, issuer=issuer, audience=audience)
        return cls(
            workload_identity_name=read.str("AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME",
                                            required=not callback_only,
                                            why="the workload identity this agent acts as; never created at "
                                                "run time"),
            state_secret=secret,
            region_id=region,
            data_endpoint=read.endpoint("AGENT_IDENTITY_DATA_ENDPOINT",
                                        f"agentidentitydata.{region}.aliyuncs.com"),
            use_sts=read.bool("AGENT_IDENTITY_USE_STS", True),
            redirect_uri=redirect_uri,
            authorization_timeout_seconds=read.float("AUTHORIZATION_TIMEOUT_SECONDS", 300.0, minimum=0.1),
            max_waiting_per_user=read.int("MAX_WAITING_PER_USER", 3, minimum=1),
            token_vault_name=read.str("TOKEN_VAULT_NAME"),
            jwks_url=jwks_url,
            jwt_issuer=issuer,
            jwt_audience=audience,
            jwt_algorithms=algorithms,
            signin_client_id=signin_client_id,
            signin_client_secret=read.str("CALLBACK_OIDC_CLIENT_SECRET",
                                          deploy="its secret; register <APP_REDIRECT_URI>/callback/signed-in "
                                                 "as its redirect URI"),
            signin_scopes=scopes,
            access_key_id=read.str("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            access_key_secret=read.str("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
            security_token=read.str("ALIBABA_CLOUD_SECURITY_TOKEN"),
        )


def _inbound_jwks_url(read: EnvReader, *, production: bool) -> str:
    """INBOUND_JWKS_URL, or "" where verification is waived: explicitly (INBOUND_JWT_VERIFY=off, only behind a
    gateway that verifies), or outside production by leaving it unset."""
    verify = read.choice("INBOUND_JWT_VERIFY", ("on", "off"), "on")
    url = read.url("INBOUND_JWKS_URL", deploy="your identity provider's jwks_uri")
    if verify == "off" and url:
        read.problems.append("INBOUND_JWT_VERIFY=off and INBOUND_JWKS_URL are both set: unset one (off is "
                             f"{GATEWAY_VERIFIES})")
    elif verify == "on" and not url and production:
        read.problems.append("INBOUND_JWKS_URL is required in production (your identity provider's "
                             f"jwks_uri); INBOUND_JWT_VERIFY=off waives it, {GATEWAY_VERIFIES}")
    return url if verify == "on" else ""


def _require_claims_checked(read: EnvReader, *, issuer: str, audience: str) -> None:
    """In production every user JWT must be meant for this app: without `aud` the ID token of any other
    application of the same IdP is accepted (a gateway that verifies signatures accepts it too), without
    `iss` a token of another IdP whose keys are trusted."""
    for name, value, what in (("INBOUND_JWT_ISSUER", issuer, "the IdP's issuer"),
                              ("INBOUND_JWT_AUDIENCE", audience, "your application's id at the IdP")):
        if not value:
            read.missing(name, f"{name} is required in production ({what}, as its ID tokens carry it): "
                               "without it, tokens issued to other applications are accepted", deploy=what)


def log_waived_verification(settings: IdentitySettings) -> None:
    """At start-up (app.py, before the port opens), not at the first request: the operator sees at once that
    signatures go unchecked."""
    if not settings.jwks_url:
        log.warning("Inbound JWT signatures are NOT verified here (INBOUND_JWT_VERIFY=off or no "
                    "INBOUND_JWKS_URL outside production): this is safe only behind a gateway that verifies "
                    "the JWT")
