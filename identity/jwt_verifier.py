"""Inbound user JWT verification (pyjwt), with a bounded JWKS key cache and a bounded cache of verified
claims.

Every failure becomes the same `InvalidCallerToken` so the 401 tells an attacker nothing; the reason is
logged at INFO for the operator (`rejection_reason`): an unknown `kid`, a key set that is not one, a wrong `aud`
or `iss` (their values: not secret), expiry. Never the token, its signature or its subject.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from identity.cache import ExpiringLru, token_key
from identity.context import Caller
from identity.errors import IdentityUnavailable, InvalidCallerToken
from settings.identity import IdentitySettings

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 64
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_SECONDS = 60.0
_UNAVAILABLE_MESSAGE = "The sign-in key set is unavailable right now; try again shortly."
_CLAIM_SHOWN = 120  # characters of an `iss` or `aud` value quoted in a log line


def rejection_reason(error: BaseException, token: str, settings: IdentitySettings, *,
                     keys: JwksKeys | None = None, audience: str | None = None) -> str:
    """Why `token` was refused, for the log: what an operator compares with the settings. Quotes the token's
    `iss`, `aud`, `kid` and `alg` (public values), never the token or its `sub`."""
    try:
        header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        header, claims = {}, {}
    expected_audience = audience or settings.jwt_audience

    def shown(value: Any) -> str:
        return repr(value)[:_CLAIM_SHOWN]

    if isinstance(error, jwt.ExpiredSignatureError):
        return f"expired: its exp is in the past (beyond {settings.jwt_leeway_seconds:g} s of leeway)"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "not valid yet: its nbf or iat is in the future (check the clocks)"
    if isinstance(error, jwt.InvalidAudienceError):
        return (f"aud mismatch: the token's aud is {shown(claims.get('aud'))}, expected "
                f"{shown(expected_audience)} ({'the client id' if audience else 'INBOUND_JWT_AUDIENCE'})")
    if isinstance(error, jwt.InvalidIssuerError):
        return (f"iss mismatch: the token's iss is {shown(claims.get('iss'))}, INBOUND_JWT_ISSUER is "
                f"{shown(settings.jwt_issuer)}")
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"no {error.claim!r} claim"
    if isinstance(error, jwt.InvalidSignatureError):
        return f"the signature does not verify with the key {shown(header.get('kid'))}"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return (f"algorithm {shown(header.get('alg'))} is not allowed by INBOUND_JWT_ALGORITHMS or does not "
                "match its key")
    if isinstance(error, jwt.InvalidKeyError) and keys is not None:
        problem = f"; {keys.problem}" if keys.problem else ""
        return f"kid unknown: {shown(header.get('kid'))} is not in the key set at {keys.url}{problem}"
    if isinstance(error, jwt.DecodeError):
        return "not a well-formed JWT"
    return f"{type(error).__name__}: {error}"[:200]


def bearer_token(authorization_header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; InvalidCallerToken when absent or malformed."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        log.info("Inbound token rejected: no Bearer token in the Authorization header")
        raise InvalidCallerToken()
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        log.info("Inbound token rejected: not a JWT (three dot-separated parts, at most %d characters)",
                 MAX_TOKEN_LENGTH)
        raise InvalidCallerToken()
    return token


class JwksKeys:
    """The IdP's signing keys by `kid`: fetched on first use, refetched when a token names an unknown kid (at
    most once per `min_refresh_seconds`, whatever the fetch's outcome, so random kids cannot make us fetch
    per request), and at least every `max_age_seconds` so removed keys stop working.

    A failed fetch never loses the keys already known: they keep verifying until a fetch succeeds. After a
    failure no fetch is tried for a backoff that doubles per failure (`retry_initial_seconds` up to
    `retry_max_seconds`); meanwhile, with no key known yet, callers get `IdentityUnavailable` at once."""

    def __init__(self, url: str, *, min_refresh_seconds: float = 30.0, max_age_seconds: float = 3600.0,
                 timeout_seconds: float = 5.0, retry_initial_seconds: float = 1.0,
                 retry_max_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # last success
        self._attempted_at = float("-inf")  # last try, whatever came of it
        self._failures = 0
        self._retry_at = float("-inf")  # no fetch before this after a failure
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._retry_initial, self._retry_max = retry_initial_seconds, retry_max_seconds
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)
        self._refresh: asyncio.Task[None] | None = None
        self.problem = ""  # what was wrong with the last document fetched (e.g. not a key set), for the log

    async def find(self, kid: str | None) -> dict[str, Any] | None:
        kid = kid or ""
        if self._should_fetch(kid, self._clock()):
            await self._refresh_once()
        if self._fetched_at is None:
            raise IdentityUnavailable(_UNAVAILABLE_MESSAGE)
        return self._keys.get(kid)

    def _should_fetch(self, kid: str, now: float) -> bool:
        if now < self._retry_at:
            return False
        if self._fetched_at is None or now - self._fetched_at > self._max_age:
            return True
        return kid not in self._keys and now - self._attempted_at >= self._min_refresh

    async def _refresh_once(self) -> None:
        """Single flight: a burst of tokens with unknown kids costs one fetch."""
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._fetch())
        task = self._refresh
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._refresh is task:
                self._refresh = None

    async def _fetch(self) -> None:
        """Never raises: a failure is logged and starts the backoff; the known keys stay."""
        self._attempted_at = self._clock()
        try:
            response = await self._http.get(self.url)
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self._failures += 1
            backoff = min(self._retry_initial * 2 ** (self._failures - 1), self._retry_max)
            self._retry_at = self._clock() + backoff
            log.warning("Could not fetch the inbound JWKS (%s); %s; next try in %g s", type(error).__name__,
                        "keeping the keys already known" if self._fetched_at is not None
                        else "no key known yet", backoff)
            return
        entries = document.get("keys") if isinstance(document, dict) else None
        self.problem = "" if isinstance(entries, list) else _not_a_key_set(document)
        if self.problem:
            log.warning("The JWKS at %s has no key: %s", self.url, self.problem)
        keys: dict[str, dict[str, Any]] = {}
        for jwk in (entries if isinstance(entries, list) else [])[:MAX_KEYS]:
            if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig":
                keys[str(jwk.get("kid", ""))] = jwk  # a kid-less key only matches kid-less tokens
        self._keys = keys
        self._fetched_at = self._clock()
        self._failures, self._retry_at = 0, float("-inf")

    async def aclose(self) -> None:
        await self._http.aclose()


def _not_a_key_set(document: Any) -> str:
    """Why a fetched JWKS document is not a JWK Set (RFC 7517 5: an object with a "keys" array)."""
    if isinstance(document, dict) and isinstance(document.get("jwks_uri"), str):
        return ("it is not a key set but an OpenID discovery document: set INBOUND_JWKS_URL to its jwks_uri, "
                f"{document['jwks_uri'][:200]}")
    return 'it is not a key set (a JSON object with a "keys" array)'


class VerifiedClaims:
    """Claims of tokens whose signature and claims already passed, by SHA-256 of the token, each until
    min(exp, verified + `max_age_seconds`); least recently used dropped beyond `max_entries`.

    A client sends the same JWT with every request, and checking an RS256 signature again costs CPU on
    every request for an answer we already have. The signature cannot change for the same token
    bytes, and the claim checks are time-based only, so within this window the result is the same; the
    short window bounds how long a key removed from the JWKS keeps accepting tokens it signed.
    """

    def __init__(self, *, max_entries: int = VERIFIED_CACHE_SIZE,
                 max_age_seconds: float = VERIFIED_CACHE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._entries: ExpiringLru[dict[str, Any]] = ExpiringLru(max_entries, clock)  # keyed by token hash
        self._max_age = max_age_seconds
        self._clock = clock  # wall clock: compared with the token's `exp`

    def get(self, token: str) -> dict[str, Any] | None:
        return self._entries.get(token_key(token))

    def put(self, token: str, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        now = self._clock()
        valid_until = min(float(exp), now + self._max_age) if isinstance(exp, (int, float)) else now
        self._entries.put(token_key(token), claims, valid_until)  # already expired: not stored

    def __len__(self) -> int:
        return len(self._entries)


class JwtVerifier:
    """Turns an `Authorization` header into a verified `Caller`."""

    def __init__(self, settings: IdentitySettings, *, keys: JwksKeys | None = None,
                 verified: VerifiedClaims | None = None) -> None:
        self._settings = settings
        self._algorithms = list(settings.jwt_algorithms)
        self._keys = keys or (JwksKeys(settings.jwks_url) if settings.jwks_url else None)
        self._verified_claims = verified if verified is not None else VerifiedClaims()

    async def authenticate(self, authorization_header: str | None) -> Caller:
        token = bearer_token(authorization_header)
        if self._keys is not None and (claims := self._verified_claims.get(token)) is not None:
            # This exact token's signature and claims were verified at most a minute ago and it has not
            # expired since: the same checks would give the same answer.
            return Caller(sub=claims["sub"], claims=claims, token=token)
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self._algorithms:
                raise jwt.InvalidAlgorithmError("algorithm not allowed")
            claims = await (self._verified(token, header, algorithm) if self._keys
                            else self._unverified(token, algorithm))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            log.info("Inbound token rejected: %s", rejection_reason(error, token, self._settings, keys=self._keys))
            raise InvalidCallerToken() from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            log.info("Inbound token rejected: no sub claim")
            raise InvalidCallerToken()
        return Caller(sub=sub, claims=claims, token=token)

    @property
    def inbound_keys(self) -> JwksKeys | None:
        """The INBOUND_JWKS_URL key set (None when the gateway verifies), for callers that trust the same
        IdP."""
        return self._keys

    async def id_token_claims(self, token: str, *, audience: str, keys: JwksKeys) -> dict[str, Any]:
        """The claims of an OpenID Connect ID token (the callback's browser sign-in): checked like an inbound
        JWT (allowed algorithm, signature, issuer, expiry, `sub`) but for `aud` = our client id, with `keys`
        from the IdP's discovery document. Raises InvalidCallerToken."""
        try:
            header = jwt.get_unverified_header(token)
            claims = await self._verified(token, header, header.get("alg"), keys=keys, audience=audience)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            log.info("ID token rejected: %s", rejection_reason(error, token, self._settings, keys=keys,
                                                               audience=audience))
            raise InvalidCallerToken() from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidCallerToken()
        return claims

    async def _verified(self, token: str, header: Mapping[str, Any], algorithm: str, *,
                        keys: JwksKeys | None = None, audience: str | None = None) -> dict[str, Any]:
        if algorithm not in self._algorithms:
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        inbound = keys is None
        keys = keys or self._keys
        assert keys is not None
        kid = header.get("kid")
        jwk = await keys.find(kid if isinstance(kid, str) else None)
        if jwk is None:
            raise jwt.InvalidKeyError("unknown kid")
        if jwk.get("alg") not in (None, algorithm):
            raise jwt.InvalidAlgorithmError("algorithm does not match the key")
        key = jwt.PyJWK(jwk, algorithm=algorithm)
        checks = self._claim_checks()
        if audience is not None:
            checks["audience"] = audience
        claims = jwt.decode(token, key=key, algorithms=[algorithm], **checks,
                            options={"require": ["exp", "sub"], "verify_aud": "audience" in checks})
        if inbound and isinstance(claims.get("sub"), str) and claims["sub"]:
            self._verified_claims.put(token, claims)
        return claims

    async def _unverified(self, token: str, algorithm: str) -> dict[str, Any]:
        """The gateway verified the signature (see settings.identity.log_waived_verification); still insist
        on a well-formed, unexpired JWT."""
        return jwt.decode(token, algorithms=[algorithm], **self._claim_checks(),
                          options={"verify_signature": False, "verify_exp": True, "verify_nbf": True,
                                   "verify_iat": True, "verify_iss": bool(self._settings.jwt_issuer),
                                   "verify_aud": bool(self._settings.jwt_audience), "require": ["sub"]})

    def _claim_checks(self) -> dict[str, Any]:
        checks: dict[str, Any] = {"leeway": self._settings.jwt_leeway_seconds}
        if self._settings.jwt_issuer:
            checks["issuer"] = self._settings.jwt_issuer
        if self._settings.jwt_audience:
            checks["audience"] = self._settings.jwt_audience
        return checks

    async def aclose(self) -> None:
        if self._keys is not None:
            await self._keys.aclose()
