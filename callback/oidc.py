"""Browser sign-in for the callback at the users' own IdP: the OpenID Connect authorization code flow with
PKCE.

Only the user who started a flow may approve or decline it, and a browser that follows the provider's
redirect carries no bearer token. So the callback sends the browser to the IdP the agent already trusts for
inbound JWTs (INBOUND_JWT_ISSUER, endpoints from its discovery document), with PKCE (RFC 7636, S256) and a
nonce (OIDC Core 3.1.2.1), exchanges the code with the client id and secret (authlib), and verifies the ID
token as it verifies inbound JWTs, with `aud` = our client id and the nonce it sent. A browser that was
signed in as the wrong user switches with `prompt=login` (OIDC Core 3.1.2.1): the IdP asks who is there even
if it still has a session.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
import httpx2

from callback.browser_session import SignInTransaction
from identity.errors import IdentityUnavailable, InvalidCallerToken
from identity.jwt_verifier import JwksKeys, JwtVerifier
from settings.identity import IdentitySettings
from outbound import import_off_loop, tls_context

if TYPE_CHECKING:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

# Imported at the first sign-in, off the event loop (outbound.import_off_loop): a process that never signs a
# browser in (the agent, when the callback runs on its own) never pays its import.
AUTHLIB_CLIENT = "authlib.integrations.httpx_client"

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 10.0
MAX_DISCOVERY_BYTES = 64 * 1024


class SignInFailed(Exception):
    """The sign-in did not prove who is at the browser. The message is safe to show; `unavailable` means the
    IdP could not be reached or answered with a server error (try again later), not that the user failed."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class OidcSignIn:
    """One per process; the discovery document and the ID token keys are cached."""

    def __init__(self, settings: IdentitySettings, verifier: JwtVerifier) -> None:
        self._settings = settings
        self._verifier = verifier
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False,
                                       verify=tls_context())
        self._metadata: dict[str, Any] | None = None
        self._keys: JwksKeys | None = None

    async def begin(self, resume: Mapping[str, str], *,
                    switch: bool = False) -> tuple[str, SignInTransaction]:
        """The IdP URL to send the browser to, and the transaction the answer must match. `switch`: the
        browser's user is the wrong one, so the IdP must ask again (`prompt=login`)."""
        metadata = await self._discovery()
        transaction = SignInTransaction(verifier=secrets.token_urlsafe(48), nonce=secrets.token_urlsafe(24),
                                        csrf=secrets.token_urlsafe(24), resume=resume, switch=switch)
        chosen = _switch_prompt(metadata) if switch else None
        prompt = {"prompt": chosen} if chosen else {}
        async with await self._client(metadata) as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"],
                                                     state=transaction.csrf, nonce=transaction.nonce,
                                                     code_verifier=transaction.verifier, **prompt)
        return url, transaction

    async def finish(self, *, code: str, transaction: SignInTransaction) -> str:
        """The signed-in user's `sub`, from the ID token the code is exchanged for."""
        metadata = await self._discovery()
        authlib = await import_off_loop(AUTHLIB_CLIENT)
        try:
            async with await self._client(metadata) as client:
                tokens = await client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code",
                                                  code=code, code_verifier=transaction.verifier)
        except authlib.OAuthError as error:
            log.info("Browser sign-in: the IdP refused the code (%s)", _short(error.error))
            raise SignInFailed("The identity provider did not accept this sign-in. Ask the assistant again "
                               "for a new authorization link.") from None
        except (httpx2.HTTPError, ValueError) as error:  # authlib's client is built on httpx2
            log.warning("Browser sign-in: the token endpoint failed (%s)", type(error).__name__)
            raise SignInFailed("The identity provider is unavailable right now; try again shortly.",
                               unavailable=True) from None
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("The identity provider returned no ID token; check CALLBACK_OIDC_SCOPES.")
        try:
            claims = await self._verifier.id_token_claims(id_token, audience=self._settings.signin_client_id,
                                                          keys=self._id_token_keys(metadata))
        except InvalidCallerToken:
            raise SignInFailed("The identity provider's answer could not be verified.") from None
        except IdentityUnavailable:
            raise SignInFailed("The identity provider's signing keys are unavailable right now; try again "
                               "shortly.", unavailable=True) from None
        if not hmac.compare_digest(str(claims.get("nonce", "")), transaction.nonce):
            log.warning("Browser sign-in: the ID token's nonce does not match this browser's sign-in")
            raise SignInFailed("The identity provider's answer belongs to another sign-in.")
        return str(claims["sub"])

    async def _client(self, metadata: dict[str, Any]) -> AsyncOAuth2Client:
        authlib = await import_off_loop(AUTHLIB_CLIENT)
        settings = self._settings
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if not settings.signin_client_secret:
            method = "none"  # a public client: PKCE alone protects the code
        elif "client_secret_basic" in methods or "client_secret_post" not in methods:
            method = "client_secret_basic"
        else:
            method = "client_secret_post"
        return authlib.AsyncOAuth2Client(
            client_id=settings.signin_client_id, client_secret=settings.signin_client_secret or None,
            token_endpoint_auth_method=method, scope=" ".join(settings.signin_scopes),
            redirect_uri=settings.signin_redirect_url, code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_SECONDS, trust_env=False, verify=tls_context())

    async def _discovery(self) -> dict[str, Any]:
        """The IdP's discovery document (OIDC Discovery 1.0), fetched once; its `issuer` must be ours."""
        if self._metadata is not None:
            return self._metadata
        issuer = self._settings.jwt_issuer.rstrip("/")
        try:
            response = await self._http.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            if len(response.content) > MAX_DISCOVERY_BYTES:
                raise ValueError("discovery document too large")
            metadata = response.json()
        except (httpx.HTTPError, ValueError) as error:
            log.warning("Browser sign-in: the IdP's discovery document is unavailable (%s)",
                        type(error).__name__)
            raise SignInFailed("The identity provider is unavailable right now; try again shortly.",
                               unavailable=True) from None
        needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(metadata, dict) or metadata.get("issuer", "").rstrip("/") != issuer \
                or not all(isinstance(metadata.get(k), str) for k in needed):
            log.error("Browser sign-in: %s/.well-known/openid-configuration names another issuer or lacks %s",
                      issuer, ", ".join(needed))
            raise SignInFailed("The identity provider is not configured for browser sign-in; contact the "
                               "operator.")
        self._metadata = metadata
        return metadata

    def _id_token_keys(self, metadata: dict[str, Any]) -> JwksKeys:
        inbound = self._verifier.inbound_keys
        if inbound is not None and inbound.url == metadata["jwks_uri"]:
            return inbound
        if self._keys is None:
            self._keys = JwksKeys(metadata["jwks_uri"])
        return self._keys

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._keys is not None:
            await self._keys.aclose()


def _switch_prompt(metadata: dict[str, Any]) -> str | None:
    """`login` unless the IdP says it does not support it (some refuse unknown values): then `select_account`
    if it has that, else nothing (docs/services.md)."""
    supported = metadata.get("prompt_values_supported")
    if not isinstance(supported, list) or "login" in supported:
        return "login"
    return "select_account" if "select_account" in supported else None


def _short(code: object) -> str:
    """An OAuth2 error code fit for a log line (RFC 6749 codes are short ASCII words)."""
    text = str(code or "unknown")
    return text if len(text) <= 40 and text.replace("_", "").isalnum() else "unrecognised"
