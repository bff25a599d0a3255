"""The callback's two cookies: who the browser is (a short session) and the sign-in it is in the middle of.

Neither is a bearer token. The session cookie holds only the user's `sub` and an expiry of minutes, sealed
(identity/sealed.py), so it proves "this browser signed in as `sub` at our IdP" to the callback and to nothing
else. The sign-in cookie holds the PKCE verifier, the OIDC nonce and the CSRF value of one sign-in, and the
callback query to resume after it; it binds the IdP's answer to the browser that asked.

Attributes come from the public URL (APP_REDIRECT_URI), never from the request: behind AgentRun's gateway
the app sees plain HTTP and another path. Over https the cookies are `Secure` with the `__Host-` prefix
(which requires `Path=/`); names carry a short hash of the public callback URL, so two agents behind one
host never read each other's cookies. Over plain http (local runs) the path is the callback's public path.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from identity.sealed import Sealer, Unsealable, b64url

SESSION_SECONDS = 15 * 60
SIGN_IN_SECONDS = 10 * 60
RESUME_FIELDS = ("session_uri", "state", "error")
# Cookie-value characters (RFC 6265) that `quote(..., safe="")` always escapes, so they can separate parts
# without Starlette quoting the whole value.
_PART_SEPARATOR, _FIELD_SEPARATOR = "|", "!"


@dataclass(frozen=True)
class SignInTransaction:
    """One browser sign-in in progress: what the IdP's answer is checked against, and where to go on."""

    verifier: str  # PKCE code_verifier
    nonce: str  # must come back inside the ID token
    csrf: str  # the OAuth2 `state` sent to the IdP; must come back unchanged
    resume: Mapping[str, str]  # the callback query (session_uri, state, error) to finish afterwards


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool
    path: str
    session_name: str
    sign_in_name: str

    @classmethod
    def for_public_url(cls, callback_url: str) -> CookiePolicy:
        parts = urlsplit(callback_url)
        tag = b64url(hashlib.sha256(callback_url.encode()).digest()[:6])
        if parts.scheme == "https":
            return cls(True, "/", f"__Host-agent-session-{tag}", f"__Host-agent-signin-{tag}")
        return cls(False, parts.path or "/", f"agent-session-{tag}", f"agent-signin-{tag}")

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=self.path, secure=self.secure, httponly=True,
                            samesite="lax")

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=self.path, secure=self.secure, httponly=True, samesite="lax")


class BrowserSessions:
    """Reads and writes the callback's cookies for the public callback URL."""

    def __init__(self, secret: str, callback_url: str, clock: Callable[[], float] = time.time) -> None:
        self.cookies = CookiePolicy.for_public_url(callback_url)
        self._sessions = Sealer(secret, "browser-session", clock)
        self._sign_ins = Sealer(secret, "browser-sign-in", clock)

    def signed_in_sub(self, request: Request) -> str | None:
        """The `sub` this browser signed in as within the last minutes, if any."""
        try:
            sub = self._sessions.open(request.cookies.get(self.cookies.session_name, "")).get("sub")
        except Unsealable:
            return None
        return sub if isinstance(sub, str) and sub else None

    def sign_in(self, response: Response, sub: str) -> None:
        self.cookies.set(response, self.cookies.session_name,
                         self._sessions.seal({"sub": sub}, SESSION_SECONDS), SESSION_SECONDS)

    def start_sign_in(self, response: Response, transaction: SignInTransaction) -> None:
        self.cookies.set(response, self.cookies.sign_in_name, self.seal_sign_in(transaction), SIGN_IN_SECONDS)

    def pending_sign_in(self, request: Request) -> SignInTransaction | None:
        """The sign-in this browser started here (intact and unexpired), or None."""
        return self.open_sign_in(request.cookies.get(self.cookies.sign_in_name, ""))

    def seal_sign_in(self, transaction: SignInTransaction) -> str:
        """The sign-in cookie's value: the sealed secrets, then the resume query in the clear (it is only the
        provider's redirect, already in the browser's history), bound to them by a digest."""
        resume = _FIELD_SEPARATOR.join(quote(transaction.resume.get(k, ""), safe="") for k in RESUME_FIELDS)
        sealed = self._sign_ins.seal({"v": transaction.verifier, "n": transaction.nonce,
                                      "c": transaction.csrf, "r": _digest(resume)}, SIGN_IN_SECONDS)
        return f"{sealed}{_PART_SEPARATOR}{resume}"

    def open_sign_in(self, value: str) -> SignInTransaction | None:
        sealed, _, resume = value.partition(_PART_SEPARATOR)
        try:
            document = self._sign_ins.open(sealed)
        except Unsealable:
            return None
        fields = resume.split(_FIELD_SEPARATOR)
        if (not hmac.compare_digest(str(document.get("r", "")), _digest(resume))
                or len(fields) != len(RESUME_FIELDS)):
            return None
        return SignInTransaction(verifier=str(document["v"]), nonce=str(document["n"]),
                                 csrf=str(document["c"]),
                                 resume={k: unquote(v) for k, v in zip(RESUME_FIELDS, fields) if v})

    def end_sign_in(self, response: Response) -> None:
        self.cookies.clear(response, self.cookies.sign_in_name)


def _digest(text: str) -> str:
    return b64url(hashlib.sha256(text.encode()).digest()[:16])
