"""A local OpenID Connect identity provider that signs RS256 ID tokens for the product's users.

Stands in for the customer's IdP: the agent (and AgentRun's inbound JWT check) trust it through its JWKS,
exactly as they would trust a real one, and the authorization callback signs browsers in with it. The RSA key
is generated at start-up and lives only in memory, so every run has a fresh key and nothing secret is ever
written to disk.

Routes:
- `GET /.well-known/openid-configuration`: the discovery document.
- `GET /jwks`: the public key set (one RSA key with `kid`, `use`, `alg`).
- `GET /authorize`: the authorization code flow (OIDC Core 3.1, PKCE per RFC 7636). As a real provider it
  checks the client, the exact `redirect_uri` (an unknown one gets an error page, never a redirect; a
  registered loopback URI `http://127.0.0.1/...` matches on any port, as RFC 8252 7.3 wants for native apps),
  `response_type=code`, the `openid` scope and an S256 `code_challenge` (PKCE is required), then shows a
  sign-in page that asks for a user name only ("Sign in", or "Cancel" for `error=access_denied`). Any name
  signs in, as with the password grant: this is the point of a local stand-in. It keeps no session of its
  own, so it always asks: `prompt=login` (OIDC Core 3.1.2.1) is honoured by that, `prompt=none` gets
  `login_required`, and a value it does not support (`prompt_values_supported`), or `none` with another,
  gets `invalid_request` (OIDC Core 3.1.2.1; refusing unsupported values is what certified providers such as
  panva/oidc-provider do).
- `POST /token`: `grant_type=authorization_code` (client authenticated with `client_secret_basic` or
  `client_secret_post`; the code works once, within 60 s, for the same client and `redirect_uri`, with the
  matching `code_verifier`; the ID token carries `aud` = client id and the `nonce`), or
  `grant_type=password&username=<sub>` (optional `client_id`, `expires_in`, and `claims`, a JSON object added
  to the tokens, e.g. to make a large one) for tests and the chat page:
  `{"id_token","access_token","token_type":"Bearer","expires_in"}` with `aud` = the configured audience.
Discovery and token routes answer CORS requests from localhost origins, so a chat page served from another
local port can sign in by calling `/token` from the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulators._server import emulator_app
from emulators.chosen import AUTHORIZATION_CODE_TTL_S
from emulators.consent import notice_page, sign_in_page

ALGORITHM = "RS256"
MIN_TTL_S = 1
MAX_TTL_S = 24 * 3600  # a longer-lived id_token would hide expiry bugs in the product
DEFAULT_TTL_S = 3600
# Claims the password grant's `claims` may not set: the provider's own (RFC 7519 4.1, OIDC Core 2).
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "nonce", "azp"})
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")  # RFC 8252 8.3: loopback IP literals, not `localhost`
PROMPT_VALUES = ("none", "login", "consent", "select_account")  # OIDC Core 3.1.2.1


@dataclass
class OidcClient:
    """A registered relying party: its secret and its exact redirect URIs."""

    client_id: str
    secret: str = field(repr=False)  # "": a public client (a native app: PKCE alone protects the code)
    redirect_uris: set[str] = field(default_factory=set)

    def allows(self, redirect_uri: str) -> bool:
        """Registered exactly, or a loopback IP redirect registered without its port (RFC 8252 7.3: the
        native app picks a free port at run time)."""
        if redirect_uri in self.redirect_uris:
            return True
        try:
            parts = urlsplit(redirect_uri)
            parts.port  # noqa: B018 (raises ValueError on a malformed port)
        except ValueError:
            return False
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.query or parts.fragment:
            return False
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"http://{host}{parts.path}" in self.redirect_uris


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    sub: str
    nonce: str | None
    challenge: str
    expires_at: float
    used: bool = False


class LocalIdp:
    """An OIDC provider with one in-memory RSA key; `.issue()` signs tokens without an HTTP round trip."""

    def __init__(self, base_url: str, audience: str = "agentrun-agent", *,
                 browser_url: str | None = None) -> None:
        """`base_url` is the issuer (HTTPS); `browser_url`, if given, serves the page browsers open."""
        self.issuer = base_url.rstrip("/")
        self.browser_url = (browser_url or base_url).rstrip("/")
        self.audience = audience
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = "local-" + secrets.token_hex(8)
        self.clients: dict[str, OidcClient] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self.app = emulator_app("idp", self._routes(), _oauth2_error)
        self.app.add_middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS,
                                allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["Content-Type"])

    def register_client(self, client_id: str, secret: str,
                        redirect_uris: list[str] | tuple[str, ...] = ()) -> None:
        """Register (or extend) an OAuth client, as an operator does in the IdP's console."""
        client = self.clients.setdefault(client_id, OidcClient(client_id, secret))
        client.redirect_uris.update(redirect_uris)

    def jwks(self) -> dict[str, Any]:
        """The public key set: only public numbers, with the metadata JWT verifiers look for."""
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self._kid, "use": "sig", "alg": ALGORITHM}]}

    def issue(self, sub: str, ttl_s: int = DEFAULT_TTL_S, **claims: Any) -> str:
        """A signed RS256 token for `sub`; extra `claims` are added last, so tests can forge bad ones."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + ttl_s,
            "jti": secrets.token_urlsafe(16), "name": sub, "preferred_username": sub,
        }
        payload.update(claims)
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.browser_url}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "grant_types_supported": ["authorization_code", "password"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "jti", "azp", "nonce", "name",
                                 "preferred_username"],
            "scopes_supported": ["openid", "profile"],
            "prompt_values_supported": list(PROMPT_VALUES),
        }

    def _routes(self) -> list[Route]:
        async def openid_configuration(_: Request) -> Response:
            return JSONResponse(self.discovery())

        async def jwks(_: Request) -> Response:
            return JSONResponse(self.jwks())

        return [
            Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", self._authorize, methods=["GET", "POST"]),
            Route("/token", self._token, methods=["POST"]),
        ]

    async def _authorize(self, request: Request) -> Response:
        """The authorization endpoint: GET shows the sign-in page, its form POSTs back here."""
        query = request.query_params
        client = self.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None or not client.allows(redirect_uri):
            # RFC 6749 4.1.2.1: never redirect to an unverified URI; tell the user instead.
            return HTMLResponse(notice_page("Sign-in error", "The application's client_id or redirect_uri is "
                                            "not registered with this identity provider."), status_code=400)
        state = query.get("state")

        def back(**params: str) -> Response:
            params.update({"state": state} if state else {})
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

        if query.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in query.get("scope", "").split():
            return back(error="invalid_scope", error_description="the openid scope is required")
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        prompts = query.get("prompt", "").split()
        if any(value not in PROMPT_VALUES for value in prompts) or ("none" in prompts and len(prompts) > 1):
            return back(error="invalid_request", error_description="unsupported prompt value")
        if prompts == ["none"]:
            return back(error="login_required")  # no session here: the user must always sign in
        if request.method == "GET":
            return HTMLResponse(sign_in_page(action_url=f"{request.url.path}?{request.url.query}",
                                             issuer=self.issuer), headers={"Cache-Control": "no-store"})
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        username = form.get("username", "").strip()
        if form.get("action") == "cancel":
            return back(error="access_denied")
        if not username:
            return HTMLResponse(sign_in_page(action_url=f"{request.url.path}?{request.url.query}",
                                             issuer=self.issuer, problem="Enter a user name."),
                                status_code=400)
        code = secrets.token_urlsafe(32)
        self._codes[code] = AuthorizationCode(client.client_id, redirect_uri, username, query.get("nonce"),
                                              challenge, time.time() + AUTHORIZATION_CODE_TTL_S)
        return back(code=code)

    async def _token(self, request: Request) -> Response:
        """The token endpoint: the authorization code grant, and the password grant for tests and the chat
        page."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._code_grant(form, request.headers.get("authorization", ""))
        if grant_type != "password":
            return _oauth2_error(400, "unsupported_grant_type",
                                 f"grant_type {grant_type!r} is not supported.")
        username = form.get("username", "").strip()
        if not username:
            return _oauth2_error(400, "invalid_request", "username is required.")
        try:
            ttl_s = int(form.get("expires_in") or DEFAULT_TTL_S)
        except ValueError:
            return _oauth2_error(400, "invalid_request", "expires_in must be an integer number of seconds.")
        ttl_s = max(MIN_TTL_S, min(ttl_s, MAX_TTL_S))
        extra: dict[str, Any] = {"azp": form["client_id"]} if form.get("client_id") else {}
        try:
            added = json.loads(form.get("claims") or "{}")
        except json.JSONDecodeError:
            added = None
        if not isinstance(added, dict) or set(added) & RESERVED_CLAIMS:
            return _oauth2_error(400, "invalid_request", "claims must be a JSON object without "
                                 f"{', '.join(sorted(RESERVED_CLAIMS))}.")
        extra.update(added)
        return JSONResponse({
            "id_token": self.issue(username, ttl_s, **extra),
            "access_token": self.issue(username, ttl_s, scope="openid profile", **extra),
            "token_type": "Bearer",
            "expires_in": ttl_s,
        }, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


    def _code_grant(self, form: dict[str, str], authorization: str) -> Response:
        """RFC 6749 4.1.3 with RFC 7636 4.6: the client, the single-use code, the redirect URI and the
        verifier."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return _oauth2_error(401, "invalid_client", "Malformed Basic credentials.")
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(secret.encode(), client.secret.encode()):
            return _oauth2_error(401, "invalid_client", "Client authentication failed.")
        grant = self._codes.get(form.get("code", ""))
        if grant is None or grant.used or time.time() >= grant.expires_at or grant.client_id != client_id:
            return _oauth2_error(400, "invalid_grant", "The authorization code is invalid, expired or used.")
        grant.used = True  # single use, whatever happens next (RFC 6749 4.1.2)
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth2_error(400, "invalid_grant",
                                 "redirect_uri does not match the authorization request.")
        verifier = form.get("code_verifier", "")
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(expected, grant.challenge):
            return _oauth2_error(400, "invalid_grant", "The code_verifier does not match the code_challenge.")
        nonce = {"nonce": grant.nonce} if grant.nonce else {}
        return JSONResponse({
            "id_token": self.issue(grant.sub, DEFAULT_TTL_S, aud=client_id, azp=client_id, **nonce),
            "access_token": self.issue(grant.sub, DEFAULT_TTL_S, scope="openid", azp=client_id),
            "token_type": "Bearer",
            "expires_in": DEFAULT_TTL_S,
        }, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _oauth2_error(status: int, code: str, message: str) -> Response:
    """RFC 6749 error body; injected faults map to the nearest OAuth2 error code."""
    oauth_code = {429: "slow_down", 504: "temporarily_unavailable"}.get(status, code)
    if status >= 500:
        oauth_code = "temporarily_unavailable" if status in (503, 504) else "server_error"
    response = JSONResponse({"error": oauth_code, "error_description": message}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response
