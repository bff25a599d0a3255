"""A local OpenID Connect identity provider that signs RS256 id_tokens for the product's users.

Stands in for the customer's IdP: the agent (and AgentRun's inbound JWT check) trust it through its JWKS,
exactly as they would trust a real one. The RSA key is generated at start-up and lives only in memory, so
every run has a fresh key and nothing secret is ever written to disk.

Routes:
- `GET /.well-known/openid-configuration`: the discovery document.
- `GET /jwks`: the public key set (one RSA key with `kid`, `use`, `alg`).
- `POST /token`: form `grant_type=password&username=<sub>` (optional `password`, `client_id`,
  `expires_in`) -> `{"id_token","access_token","token_type":"Bearer","expires_in"}`. The password is not
  checked: this IdP signs in whoever asks, which is the point of a local stand-in. `client_id`, when given,
  becomes the `azp` claim; `aud` is always the configured audience, the value the agent verifies.
Discovery and token routes answer CORS requests from localhost origins, so a chat page served from another
local port can sign in by calling `/token` from the browser.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators._server import emulator_app

ALGORITHM = "RS256"
MIN_TTL_S = 1
MAX_TTL_S = 24 * 3600  # a longer-lived id_token would hide expiry bugs in the product
DEFAULT_TTL_S = 3600
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


class LocalIdp:
    """An OIDC provider with one in-memory RSA key; `.issue()` signs tokens without an HTTP round trip."""

    def __init__(self, base_url: str, audience: str = "agentrun-agent") -> None:
        self.issuer = base_url.rstrip("/")
        self.audience = audience
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = "local-" + secrets.token_hex(8)
        self.app = emulator_app("idp", self._routes(), _oauth2_error)
        self.app.add_middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS,
                                allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["Content-Type"])

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
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["id_token"],  # no authorization endpoint: sign-in is via /token
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "grant_types_supported": ["password"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "jti", "azp", "name",
                                 "preferred_username"],
            "scopes_supported": ["openid", "profile"],
        }

    def _routes(self) -> list[Route]:
        async def openid_configuration(_: Request) -> Response:
            return JSONResponse(self.discovery())

        async def jwks(_: Request) -> Response:
            return JSONResponse(self.jwks())

        return [
            Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/token", self._token, methods=["POST"]),
        ]

    async def _token(self, request: Request) -> Response:
        """Resource-owner password grant: enough for tests and the local chat page to get a user JWT."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        grant_type = form.get("grant_type", "")
        if grant_type != "password":
            return _oauth2_error(400, "unsupported_grant_type",
                                 f"grant_type {grant_type!r} is not supported; use 'password'.")
        username = form.get("username", "").strip()
        if not username:
            return _oauth2_error(400, "invalid_request", "username is required.")
        try:
            ttl_s = int(form.get("expires_in") or DEFAULT_TTL_S)
        except ValueError:
            return _oauth2_error(400, "invalid_request", "expires_in must be an integer number of seconds.")
        ttl_s = max(MIN_TTL_S, min(ttl_s, MAX_TTL_S))
        extra = {"azp": form["client_id"]} if form.get("client_id") else {}
        return JSONResponse({
            "id_token": self.issue(username, ttl_s, **extra),
            "access_token": self.issue(username, ttl_s, scope="openid profile", **extra),
            "token_type": "Bearer",
            "expires_in": ttl_s,
        }, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _oauth2_error(status: int, code: str, message: str) -> Response:
    """RFC 6749 error body; injected faults map to the nearest OAuth2 error code."""
    oauth_code = {429: "slow_down", 504: "temporarily_unavailable"}.get(status, code)
    if status >= 500:
        oauth_code = "temporarily_unavailable" if status in (503, 504) else "server_error"
    response = JSONResponse({"error": oauth_code, "error_description": message}, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response
