"""`./scripts/get-jwt`: sign a user in at an OpenID Provider and print the ID token to call the agent with.

The authorization code flow with PKCE (RFC 7636, S256) and a nonce, as a native app does it (RFC 8252): the
browser comes back to a loopback redirect `http://127.0.0.1:PORT/callback` that this command listens on for
one answer. The endpoints come from `${ISSUER}/.well-known/openid-configuration`; the code is exchanged with
authlib; the ID token is verified (signature from the issuer's `jwks_uri`, `iss`, `aud` = the client id, the
nonce, expiry) before it is printed.

The ID token alone goes to stdout (`USER_JWT=$(./scripts/get-jwt ...)`); the sign-in URL, and the token's
`sub`, `aud` and expiry, go to stderr. Register the redirect URI on the OAuth client first: a provider that
follows RFC 8252 7.3 accepts any port on a registered `http://127.0.0.1/callback`; others need the exact URI,
so pass a fixed `--port`.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import jwt
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from outbound import tls_context

REDIRECT_PATH = "/callback"
HTTP_TIMEOUT_SECONDS = 10.0
PAGE = ("<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>{text}</p>"
        "<p>You may close this tab.</p>")


class SignInError(Exception):
    """The sign-in did not produce a verified ID token; the message says why."""


class LoopbackRedirect:
    """A one-answer HTTP server on 127.0.0.1 that receives the authorization response."""

    def __init__(self, port: int) -> None:
        self.answer: dict[str, str] | None = None
        self._received = threading.Event()
        redirect = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                if parts.path != REDIRECT_PATH or redirect.answer is not None:
                    self.send_error(404)
                    return
                redirect.answer = {k: v[0] for k, v in parse_qs(parts.query).items()}
                failed = "error" in redirect.answer or "code" not in redirect.answer
                title = "Sign-in failed" if failed else "Signed in"
                text = ("The identity provider answered with an error; see the terminal." if failed
                        else "The terminal now has your ID token.")
                body = PAGE.format(title=title, text=text).encode()
                self.send_response(400 if failed else 200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
                redirect._received.set()

            def log_message(self, *_: Any) -> None:  # the request line carries the code: never printed
                pass

        self._server = HTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="get-jwt-redirect",
                                        daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{REDIRECT_PATH}"

    def __enter__(self) -> LoopbackRedirect:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        if not self._received.wait(timeout):
            raise SignInError(f"no sign-in came back to {self.uri} within {timeout:g} s")
        assert self.answer is not None
        return self.answer


def discover(http: httpx.Client, issuer: str) -> dict[str, Any]:
    """The provider's discovery document; its `issuer` must be the one asked for (OIDC Discovery 4.3)."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = http.get(url)
        response.raise_for_status()
        metadata = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SignInError(f"could not read {url} ({type(error).__name__}: {error})") from None
    needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    if not isinstance(metadata, dict) or not all(isinstance(metadata.get(k), str) for k in needed):
        raise SignInError(f"{url} lacks one of {', '.join(needed)}: is --issuer an OpenID Provider?")
    if str(metadata.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise SignInError(f"{url} names the issuer {metadata.get('issuer')!r}; pass that as --issuer")
    return metadata


def token_auth_method(metadata: dict[str, Any], client_secret: str) -> str:
    """`none` for a public client (PKCE alone protects the code), else what the provider supports."""
    if not client_secret:
        return "none"
    supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


def verified_claims(http: httpx.Client, id_token: str, metadata: dict[str, Any], client_id: str,
                    nonce: str) -> dict[str, Any]:
    """The ID token's claims after the checks the agent and Agent Identity make (OIDC Core 3.1.3.7)."""
    try:
        header = jwt.get_unverified_header(id_token)
        keys = http.get(metadata["jwks_uri"]).raise_for_status().json().get("keys", [])
        jwk = next((k for k in keys if k.get("kid") == header.get("kid")), None)
        if jwk is None:
            raise SignInError(f"the ID token's kid {header.get('kid')!r} is not in {metadata['jwks_uri']}")
        claims = jwt.decode(id_token, key=jwt.PyJWK(jwk, algorithm=header.get("alg")),
                            algorithms=[header.get("alg", "")], audience=client_id, issuer=metadata["issuer"],
                            options={"require": ["exp", "sub", "iss", "aud"]}, leeway=30)
    except (jwt.PyJWTError, httpx.HTTPError, ValueError) as error:
        raise SignInError(f"the ID token did not verify ({type(error).__name__}: {error})") from None
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SignInError("the ID token's nonce is not the one this sign-in sent")
    return claims


def sign_in(issuer: str, client_id: str, client_secret: str = "", *, port: int = 0, scope: str = "openid",
            open_browser: bool = True, timeout: float = 300.0) -> tuple[str, dict[str, Any]]:
    """Run the whole sign-in; returns the ID token and its verified claims. Raises SignInError."""
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, verify=tls_context(), trust_env=False) as http:
        metadata = discover(http, issuer)
        with LoopbackRedirect(port) as redirect:
            state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            verifier = secrets.token_urlsafe(48)
            client = OAuth2Client(client_id=client_id, client_secret=client_secret or None, scope=scope,
                                  redirect_uri=redirect.uri, code_challenge_method="S256",
                                  token_endpoint_auth_method=token_auth_method(metadata, client_secret),
                                  timeout=HTTP_TIMEOUT_SECONDS, verify=tls_context(), trust_env=False)
            with client:
                url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=state,
                                                         nonce=nonce, code_verifier=verifier)
                print(f"Sign in at {issuer} (the redirect URI is {redirect.uri}):\n\n  {url}\n",
                      file=sys.stderr, flush=True)
                if open_browser:
                    webbrowser.open(url)
                answer = redirect.wait(timeout)
                if "error" in answer:
                    raise SignInError(f"the provider answered {answer['error']}: "
                                      f"{answer.get('error_description', '')[:300]}")
                if not hmac.compare_digest(answer.get("state", ""), state) or "code" not in answer:
                    raise SignInError("the answer at the redirect URI is not for this sign-in (state)")
                try:
                    tokens = client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code",
                                                code=answer["code"], code_verifier=verifier)
                except OAuthError as error:
                    raise SignInError(f"the token endpoint refused the code: {error.error} "
                                      f"{(error.description or '')[:300]}") from None
                except (httpx2.HTTPError, ValueError) as error:  # authlib's client is built on httpx2
                    raise SignInError(f"the token endpoint failed ({type(error).__name__}: {error})") \
                        from None
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError("the token endpoint returned no id_token: is `openid` in --scope?")
        return id_token, verified_claims(http, id_token, metadata, client_id, nonce)


def describe(claims: dict[str, Any], now: float | None = None) -> str:
    """The lines printed beside the token: who, for which audience, until when."""
    exp = int(claims["exp"])
    minutes = (exp - (time.time() if now is None else now)) / 60
    expires = datetime.fromtimestamp(exp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"sub: {claims['sub']}\naud: {claims['aud']}\niss: {claims['iss']}\n"
            f"expires: {expires} (in {minutes:.0f} min)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/get-jwt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True,
                        help="the OpenID Provider's issuer URL (INBOUND_JWT_ISSUER)")
    parser.add_argument("--client-id", required=True,
                        help="the OAuth client (for the agent: its INBOUND_JWT_AUDIENCE)")
    parser.add_argument("--client-secret", default="", metavar="S",
                        help="the client's secret; omit for a public client. Write --client-secret=S, which also "
                        "takes a secret that begins with '-'")
    parser.add_argument("--port", type=int, default=0,
                        help="loopback port of the redirect URI (0: any free port)")
    parser.add_argument("--scope", default="openid", help="scopes to ask for (default: openid)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the sign-in")
    parser.add_argument("--no-browser", action="store_true", help="only print the sign-in URL")
    args = parser.parse_args(argv)
    try:
        id_token, claims = sign_in(args.issuer, args.client_id, args.client_secret, port=args.port,
                                   scope=args.scope, open_browser=not args.no_browser, timeout=args.timeout)
    except (SignInError, OSError) as error:
        print(f"get-jwt: {error}", file=sys.stderr)
        return 1
    print(describe(claims), file=sys.stderr)
    print(id_token, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
