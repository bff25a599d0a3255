"""Inbound JWT verification against a real JWKS served over HTTP: the attack table, key rotation, no-JWKS mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators._server import ServerGroup
from identity.errors import InvalidCallerToken
from identity.errors import IdentityUnavailable
from identity.jwt_verifier import JwksKeys, JwtVerifier, VerifiedClaims
from settings.identity import IdentitySettings, log_waived_verification

ISSUER = "https://idp.test"
AUDIENCE = "agent"


def _new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public_jwk, "kid": kid, "use": "sig", "alg": "RS256"}


KEY, JWK = _new_key("k1")
OTHER_KEY, OTHER_JWK = _new_key("k2")


class Jwks:
    """A JWKS endpoint whose key list a test can change, counting fetches."""

    def __init__(self) -> None:
        self.keys = [JWK]
        self.fetches = 0
        self.failing = False  # answer 503, as an IdP in an outage
        self.group = ServerGroup()
        self.group.add("jwks", Starlette(routes=[Route("/jwks", self.serve),
                                                 Route("/.well-known/openid-configuration", self.discovery)]))
        self.url = self.group.urls["jwks"] + "/jwks"

    async def serve(self, _: Request) -> JSONResponse:
        self.fetches += 1
        if self.failing:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse({"keys": self.keys})

    async def discovery(self, _: Request) -> JSONResponse:
        return JSONResponse({"issuer": ISSUER, "jwks_uri": self.url})


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    server.group.start()
    yield server
    server.group.stop()


@pytest.fixture
def settings(jwks: Jwks) -> IdentitySettings:
    jwks.keys, jwks.failing = [JWK], False
    return IdentitySettings.from_env({
        "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "wi", "IDENTITY_STATE_SECRET": "s" * 32,
        "INBOUND_JWKS_URL": jwks.url, "INBOUND_JWT_ISSUER": ISSUER, "INBOUND_JWT_AUDIENCE": AUDIENCE})


def claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600, **overrides}


def sign(payload: dict, key=KEY, kid: str | None = "k1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token() -> str:
    header = _b64(b'{"alg":"none","typ":"JWT","kid":"k1"}')
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


def hs256_with_public_key() -> str:
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}')
    body = _b64(json.dumps(claims()).encode())
    signature = _b64(hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


def tampered() -> str:
    header, _, signature = sign(claims()).split(".")
    return f"{header}.{_b64(json.dumps(claims(sub='mallory')).encode())}.{signature}"


ATTACKS = {
    "alg none": lambda: "Bearer " + unsigned_token(),
    "HS256 signed with the public key": lambda: "Bearer " + hs256_with_public_key(),
    "bad signature": lambda: "Bearer " + tampered(),
    "signed by another key": lambda: "Bearer " + sign(claims(), key=OTHER_KEY),
    "unknown kid": lambda: "Bearer " + sign(claims(), key=OTHER_KEY, kid="nope"),
    "expired": lambda: "Bearer " + sign(claims(exp=int(time.time()) - 3600)),
    "future nbf": lambda: "Bearer " + sign(claims(nbf=int(time.time()) + 3600)),
    "issued in the future": lambda: "Bearer " + sign(claims(iat=int(time.time()) + 3600)),
    "wrong iss": lambda: "Bearer " + sign(claims(iss="https://evil.test")),
    "wrong aud": lambda: "Bearer " + sign(claims(aud="someone-else")),
    "no exp": lambda: "Bearer " + sign({k: v for k, v in claims().items() if k != "exp"}),
    "no sub": lambda: "Bearer " + sign({k: v for k, v in claims().items() if k != "sub"}),
    "malformed": lambda: "Bearer not.a.jwt",
    "garbage": lambda: "Bearer " + "x" * 40,
    "missing header": lambda: None,
    "empty bearer": lambda: "Bearer ",
    "basic scheme": lambda: "Basic " + sign(claims()),
}


# What the INFO log line says for each: the reason an operator acts on.
REASONS = {
    "alg none": "algorithm 'none' is not allowed", "HS256 signed with the public key": "algorithm 'HS256'",
    "bad signature": "signature does not verify", "signed by another key": "signature does not verify",
    "unknown kid": "kid unknown: 'nope' is not in the key set at http", "expired": "expired",
    "future nbf": "not valid yet", "issued in the future": "not valid yet",
    "wrong iss": f"iss mismatch: the token's iss is 'https://evil.test', INBOUND_JWT_ISSUER is '{ISSUER}'",
    "wrong aud": f"aud mismatch: the token's aud is 'someone-else', expected '{AUDIENCE}' (INBOUND_JWT_AUDIENCE)",
    "no exp": "no 'exp' claim", "no sub": "no 'sub' claim", "malformed": "not a well-formed JWT",
    "garbage": "not a JWT", "missing header": "no Bearer token", "empty bearer": "no Bearer token",
    "basic scheme": "no Bearer token",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_table_is_rejected_and_the_reason_logged_without_the_token(
        settings: IdentitySettings, attack: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity.jwt_verifier")
    verifier = JwtVerifier(settings)
    header = ATTACKS[attack]()
    try:
        with pytest.raises(InvalidCallerToken) as raised:
            await verifier.authenticate(header)
        assert raised.value.http_status == 401
        assert raised.value.safe_message == "A valid bearer token is required."
    finally:
        await verifier.aclose()
    lines = [r for r in caplog.records if r.name == "identity.jwt_verifier"]
    assert [r.levelname for r in lines] == ["INFO"], caplog.text
    assert lines[0].getMessage().startswith("Inbound token rejected: ") and REASONS[attack] in lines[0].getMessage()
    token = (header or "").partition(" ")[2]
    for part in token.split("."):
        assert len(part) < 10 or part not in caplog.text  # no part of a real token ("not.a.jwt" aside)
    assert "alice" not in caplog.text and "mallory" not in caplog.text  # the subject is not logged


async def test_a_discovery_url_given_as_the_jwks_url_is_named_as_such(
        jwks: Jwks, settings: IdentitySettings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity.jwt_verifier")
    discovery = jwks.url.removesuffix("/jwks") + "/.well-known/openid-configuration"
    verifier = JwtVerifier(replace(settings, jwks_url=discovery))
    try:
        with pytest.raises(InvalidCallerToken):
            await verifier.authenticate("Bearer " + sign(claims()))
    finally:
        await verifier.aclose()
    warning = next(r for r in caplog.records if r.levelname == "WARNING")
    assert f"The JWKS at {discovery} has no key" in warning.getMessage()
    rejected = next(r for r in caplog.records if r.levelname == "INFO").getMessage()
    assert "kid unknown" in rejected and "not a key set but an OpenID discovery document" in rejected
    assert f"set INBOUND_JWKS_URL to its jwks_uri, {jwks.url}" in rejected


async def test_valid_token_binds_claims_and_original_string(settings: IdentitySettings) -> None:
    verifier = JwtVerifier(settings)
    token = sign(claims(email="a@example.com"))
    caller = await verifier.authenticate(f"Bearer {token}")
    await verifier.aclose()
    assert (caller.sub, caller.claims["email"], caller.token) == ("alice", "a@example.com", token)
    assert token not in repr(caller)


async def test_small_leeway_accepts_slight_clock_skew(settings: IdentitySettings) -> None:
    verifier = JwtVerifier(settings)
    caller = await verifier.authenticate("Bearer " + sign(claims(exp=int(time.time()) - 5, nbf=int(time.time()) + 5)))
    await verifier.aclose()
    assert caller.sub == "alice"


async def test_keys_are_cached_and_refreshed_on_an_unknown_kid(jwks: Jwks, settings: IdentitySettings) -> None:
    verifier = JwtVerifier(settings, keys=JwksKeys(jwks.url, min_refresh_seconds=0))
    before = jwks.fetches
    for _ in range(3):
        await verifier.authenticate("Bearer " + sign(claims()))
    assert jwks.fetches == before + 1
    jwks.keys = [JWK, OTHER_JWK]  # the IdP rotates in a new key
    caller = await verifier.authenticate("Bearer " + sign(claims(sub="bob"), key=OTHER_KEY, kid="k2"))
    assert caller.sub == "bob" and jwks.fetches == before + 2
    await verifier.aclose()


async def test_unknown_kids_cannot_force_a_fetch_per_request(jwks: Jwks, settings: IdentitySettings) -> None:
    verifier = JwtVerifier(settings)  # default: at most one refresh per 30 s
    await verifier.authenticate("Bearer " + sign(claims()))
    before = jwks.fetches
    for i in range(10):
        with pytest.raises(InvalidCallerToken):
            await verifier.authenticate("Bearer " + sign(claims(), key=OTHER_KEY, kid=f"random-{i}"))
    assert jwks.fetches == before
    await verifier.aclose()


class ManualClock:
    """Monotonic seconds a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_failing_jwks_is_not_fetched_per_request_and_is_retried_with_backoff(
        jwks: Jwks, settings: IdentitySettings) -> None:
    clock = ManualClock()
    verifier = JwtVerifier(settings, keys=JwksKeys(jwks.url, clock=clock, retry_initial_seconds=1.0))
    jwks.failing = True
    before = jwks.fetches
    for i in range(40):  # random kids while the IdP is down and no key is known: one fetch, then 503s at once
        with pytest.raises(IdentityUnavailable):
            await verifier.authenticate("Bearer " + sign(claims(), kid=f"random-{i}"))
    assert jwks.fetches == before + 1
    clock.now += 1.0  # the first backoff is over: one more try, which fails too, and doubles the backoff
    with pytest.raises(IdentityUnavailable):
        await verifier.authenticate("Bearer " + sign(claims()))
    clock.now += 1.5
    with pytest.raises(IdentityUnavailable):
        await verifier.authenticate("Bearer " + sign(claims()))
    assert jwks.fetches == before + 2
    jwks.failing = False  # the IdP recovers: the next try after the backoff works
    clock.now += 0.5
    assert (await verifier.authenticate("Bearer " + sign(claims()))).sub == "alice"
    assert jwks.fetches == before + 3
    await verifier.aclose()


async def test_known_keys_keep_working_when_a_refresh_fails(jwks: Jwks, settings: IdentitySettings) -> None:
    clock = ManualClock()
    verifier = JwtVerifier(settings, keys=JwksKeys(jwks.url, clock=clock, max_age_seconds=3600),
                           verified=VerifiedClaims(max_age_seconds=0))
    assert (await verifier.authenticate("Bearer " + sign(claims()))).sub == "alice"
    jwks.failing = True
    before = jwks.fetches
    clock.now += 3601  # the hourly refresh is due, and fails: the known key still verifies
    for i in range(20):
        assert (await verifier.authenticate("Bearer " + sign(claims(jti=str(i))))).sub == "alice"
        with pytest.raises(InvalidCallerToken):  # an unknown kid is refused, with no fetch of its own
            await verifier.authenticate("Bearer " + sign(claims(), key=OTHER_KEY, kid=f"random-{i}"))
    assert jwks.fetches == before + 1
    jwks.failing = False
    jwks.keys = [JWK, OTHER_JWK]
    clock.now += 60  # after the backoff the refresh succeeds and brings the rotated-in key
    assert (await verifier.authenticate("Bearer " + sign(claims(sub="bob"), key=OTHER_KEY, kid="k2"))).sub == "bob"
    assert jwks.fetches == before + 2
    await verifier.aclose()


def test_symmetric_and_none_algorithms_are_refused_in_configuration() -> None:
    from settings import ConfigError
    with pytest.raises(ConfigError, match="INBOUND_JWT_ALGORITHMS"):
        IdentitySettings.from_env({"AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "wi", "IDENTITY_STATE_SECRET": "s" * 32,
                                   "INBOUND_JWT_ALGORITHMS": "RS256,HS256,none"})


async def test_without_jwks_a_well_formed_jwt_passes_and_the_warning_is_logged_at_start_up_only(
        settings: IdentitySettings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="identity")
    unverified = replace(settings, jwks_url="")
    log_waived_verification(unverified)  # what app.py does at start-up
    verifier = JwtVerifier(unverified)
    other = sign(claims(sub="carol"), key=OTHER_KEY, kid="unpublished")
    assert (await verifier.authenticate("Bearer " + other)).sub == "carol"
    assert (await verifier.authenticate("Bearer " + sign(claims()))).sub == "alice"
    for attack in ("alg none", "expired", "malformed", "missing header", "wrong aud"):
        with pytest.raises(InvalidCallerToken):
            await verifier.authenticate(ATTACKS[attack]())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "NOT verified" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0] is caplog.records[0]  # before the first request, and only then
    assert other not in caplog.text
    await verifier.aclose()


class FakeClock:
    """Wall-clock seconds a test moves by hand (the verified-claims cache compares them with `exp`)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts pyjwt's full decodes (signature + claims), passing each through to the real one."""
    calls: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args, **kwargs):
        calls.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    return calls


async def test_a_verified_token_is_not_verified_again_within_a_minute(
        settings: IdentitySettings, signature_checks: list[str]) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(settings, verified=VerifiedClaims(clock=clock))
    token = sign(claims(email="a@example.com"))
    first = await verifier.authenticate(f"Bearer {token}")
    clock.now += 59
    again = await verifier.authenticate(f"Bearer {token}")
    assert len(signature_checks) == 1
    assert (again.sub, again.claims, again.token) == (first.sub, first.claims, token)
    clock.now += 2  # past verified + 60 s: checked again
    await verifier.authenticate(f"Bearer {token}")
    assert len(signature_checks) == 2
    await verifier.aclose()


async def test_a_token_expiring_within_the_minute_is_cached_only_until_its_exp(
        settings: IdentitySettings, signature_checks: list[str]) -> None:
    clock = FakeClock()
    verifier = JwtVerifier(settings, verified=VerifiedClaims(clock=clock))
    token = sign(claims(exp=int(clock.now) + 20))
    await verifier.authenticate(f"Bearer {token}")
    clock.now += 21  # past exp: the cache answers no more (pyjwt then judges it by the real clock)
    await verifier.authenticate(f"Bearer {token}")
    assert len(signature_checks) == 2
    await verifier.aclose()


async def test_rejected_tokens_are_never_cached_and_the_cache_is_bounded(
        settings: IdentitySettings, signature_checks: list[str]) -> None:
    cache = VerifiedClaims(max_entries=2)
    verifier = JwtVerifier(settings, verified=cache)
    for _ in range(2):
        with pytest.raises(InvalidCallerToken):
            await verifier.authenticate(ATTACKS["bad signature"]())
    assert len(cache) == 0
    tokens = [sign(claims(sub=name)) for name in ("a", "b", "c")]
    for token in tokens:
        await verifier.authenticate(f"Bearer {token}")
    assert len(cache) == 2
    checks = len(signature_checks)
    await verifier.authenticate(f"Bearer {tokens[2]}")  # still cached
    await verifier.authenticate(f"Bearer {tokens[0]}")  # the least recently used one was dropped
    assert len(signature_checks) == checks + 1
    await verifier.aclose()
