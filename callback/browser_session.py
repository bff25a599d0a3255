"""The callback's cookies: who the browser is (a short session), the sign-in it is in the middle of, and the
flow it was refused for (so the right user can still sign in there and finish it).

None is a bearer token. The session cookie holds only the user's `sub` and an expiry of minutes, sealed
(identity/sealed.py), so it proves "this browser signed in as `sub` at our IdP" to the callback and to nothing
else. The sign-in cookie holds the PKCE verifier, the OIDC nonce and the CSRF value of one sign-in, and the
callback query to resume after it; it binds the IdP's answer to the browser that asked. The refusal cookie
holds the callback query a wrong user's browser was refused for, so the address bar can drop it.

The query to resume carries the sealed OAuth2 state, ~1.34 x the user's JWT: with a JWT that Agent Identity
still accepts, one cookie would pass the ~4 KB a browser keeps (Chromium drops a cookie whose name and value
pass 4,096 bytes). It is therefore split over several cookies of at most CHUNK_CHARACTERS each (`name`,
`name.1`, ...; the first says how many). The alternative, sending it through the IdP round trip in the OIDC
`state`, was not chosen: it would put the sealed state in the IdP's URLs and logs and depend on how long a
`state` each IdP accepts, and the refusal page must carry the same query without any URL at all. Only the
secrets are sealed (sealing the query, itself sealed, would grow it by a third again); the query is bound to
them by a digest inside the seal, so it cannot be swapped.

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
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from identity.sealed import Sealer, Unsealable, b64url

SESSION_SECONDS = 15 * 60
SIGN_IN_SECONDS = 10 * 60
REFUSAL_SECONDS = 10 * 60  # as long as a sign-in: the switch to another user must fit in it
RESUME_FIELDS = ("session_uri", "state", "error")
# A cookie's name (under 40 characters) and value stay under 4,000 bytes, below the 4,096 browsers keep.
CHUNK_CHARACTERS = 3500
MAX_CHUNKS = 4
# Cookie-value characters (RFC 6265) that `quote(..., safe="")` always escapes, so they can separate parts
# without Starlette quoting the whole value.
_PART_SEPARATOR, _FIELD_SEPARATOR, _COUNT_SEPARATOR = "|", "!", ":"


class TooLargeForCookies(ValueError):
    """The value would need more than MAX_CHUNKS cookies (only a forged, oversized callback query does)."""


@dataclass(frozen=True)
class SignInTransaction:
    """One browser sign-in in progress: what the IdP's answer is checked against, and where to go on."""

    verifier: str  # PKCE code_verifier
    nonce: str  # must come back inside the ID token
    csrf: str  # the OAuth2 `state` sent to the IdP; must come back unchanged
    resume: Mapping[str, str]  # the callback query (session_uri, state, error) to finish afterwards
    switch: bool = False  # started from the "Wrong user" page: may finish the flow refused in this browser


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool
    path: str
    session_name: str
    sign_in_name: str
    refusal_name: str

    @classmethod
    def for_public_url(cls, callback_url: str) -> CookiePolicy:
        parts = urlsplit(callback_url)
        tag = b64url(hashlib.sha256(callback_url.encode()).digest()[:6])
        prefix, secure, path = ("__Host-", True, "/") if parts.scheme == "https" else ("", False,
                                                                                        parts.path or "/")
        return cls(secure, path, f"{prefix}agent-session-{tag}", f"{prefix}agent-signin-{tag}",
                   f"{prefix}agent-refused-{tag}")

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path=self.path, secure=self.secure, httponly=True,
                            samesite="lax")

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=self.path, secure=self.secure, httponly=True, samesite="lax")

    def set_chunked(self, response: Response, name: str, value: str, max_age: int) -> None:
        """`value` over as many cookies as it needs; chunks an earlier, longer value left are ignored (the
        first cookie says how many to read) and expire with it."""
        chunks = [value[i:i + CHUNK_CHARACTERS] for i in range(0, len(value), CHUNK_CHARACTERS)] or [""]
        if len(chunks) > MAX_CHUNKS:
            raise TooLargeForCookies(f"{len(value)} characters")
        chunks[0] = f"{len(chunks)}{_COUNT_SEPARATOR}{chunks[0]}"
        for index, chunk in enumerate(chunks):
            self.set(response, _chunk_name(name, index), chunk, max_age)

    def read_chunked(self, cookies: Mapping[str, str], name: str) -> str:
        """The value `set_chunked` wrote, or "" when a part is missing."""
        count, _, first = cookies.get(name, "").partition(_COUNT_SEPARATOR)
        if not count.isdigit() or not 1 <= int(count) <= MAX_CHUNKS:
            return ""
        rest = [cookies.get(_chunk_name(name, index)) for index in range(1, int(count))]
        return "" if None in rest else first + "".join(rest)  # type: ignore[arg-type]

    def clear_chunked(self, response: Response, name: str, cookies: Mapping[str, str]) -> None:
        for index in range(MAX_CHUNKS):
            if index == 0 or _chunk_name(name, index) in cookies:
                self.clear(response, _chunk_name(name, index))


def _chunk_name(name: str, index: int) -> str:
    return name if index == 0 else f"{name}.{index}"


class BrowserSessions:
    """Reads and writes the callback's cookies for the public callback URL."""

    def __init__(self, secret: str, callback_url: str, clock: Callable[[], float] = time.time) -> None:
        self.cookies = CookiePolicy.for_public_url(callback_url)
        self._sessions = Sealer(secret, "browser-session", clock)
        self._sign_ins = Sealer(secret, "browser-sign-in", clock)
        self._refusals = Sealer(secret, "browser-refusal", clock)

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
        """Raises TooLargeForCookies for a callback query no real flow has."""
        self.cookies.set_chunked(response, self.cookies.sign_in_name, self.seal_sign_in(transaction),
                                 SIGN_IN_SECONDS)

    def pending_sign_in(self, request: Request) -> SignInTransaction | None:
        """The sign-in this browser started here (intact and unexpired), or None."""
        return self.open_sign_in(self.cookies.read_chunked(request.cookies, self.cookies.sign_in_name))

    def seal_sign_in(self, transaction: SignInTransaction) -> str:
        """The sign-in cookie's value: the sealed secrets, then the resume query in the clear (it is only the
        provider's redirect, already in the browser's history), bound to them by a digest."""
        return _seal_with_resume(self._sign_ins, {"v": transaction.verifier, "n": transaction.nonce,
                                                  "c": transaction.csrf, "s": transaction.switch},
                                 transaction.resume, SIGN_IN_SECONDS)

    def open_sign_in(self, value: str) -> SignInTransaction | None:
        opened = _open_with_resume(self._sign_ins, value)
        if opened is None:
            return None
        document, resume = opened
        return SignInTransaction(verifier=str(document["v"]), nonce=str(document["n"]),
                                 csrf=str(document["c"]), resume=resume, switch=document.get("s") is True)

    def end_sign_in(self, response: Response, request: Request) -> None:
        self.cookies.clear_chunked(response, self.cookies.sign_in_name, request.cookies)

    def remember_refusal(self, response: Response, resume: Mapping[str, str]) -> None:
        """Keep the callback query this browser was refused for (so the address bar can drop it)."""
        self.cookies.set_chunked(response, self.cookies.refusal_name,
                                 _seal_with_resume(self._refusals, {}, resume, REFUSAL_SECONDS),
                                 REFUSAL_SECONDS)

    def refused_resume(self, request: Request) -> Mapping[str, str] | None:
        """The callback query this browser was last refused for (intact and unexpired), or None."""
        opened = _open_with_resume(self._refusals,
                                   self.cookies.read_chunked(request.cookies, self.cookies.refusal_name))
        return opened[1] if opened else None

    def forget_refusal(self, response: Response, request: Request) -> None:
        if self.cookies.refusal_name in request.cookies:
            self.cookies.clear_chunked(response, self.cookies.refusal_name, request.cookies)


def _seal_with_resume(sealer: Sealer, secrets: dict[str, Any], resume: Mapping[str, str], ttl: int) -> str:
    query = _FIELD_SEPARATOR.join(quote(resume.get(k, ""), safe="") for k in RESUME_FIELDS)
    return f"{sealer.seal({**secrets, 'r': _digest(query)}, ttl)}{_PART_SEPARATOR}{query}"


def _open_with_resume(sealer: Sealer, value: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    sealed, _, query = value.partition(_PART_SEPARATOR)
    try:
        document = sealer.open(sealed)
    except Unsealable:
        return None
    fields = query.split(_FIELD_SEPARATOR)
    if (not hmac.compare_digest(str(document.get("r", "")), _digest(query))
            or len(fields) != len(RESUME_FIELDS)):
        return None
    return document, {k: unquote(v) for k, v in zip(RESUME_FIELDS, fields) if v}


def _digest(text: str) -> str:
    return b64url(hashlib.sha256(text.encode()).digest()[:16])
