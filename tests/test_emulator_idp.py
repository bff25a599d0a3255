"""The local IdP, verified the way the product verifies it: discovery, then PyJWKClient + jwt.decode."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators._server import ServerGroup
from emulators.idp import MAX_TTL_S, LocalIdp

AUDIENCE = "agentrun-agent"


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIdp]:
    group = ServerGroup()
    provider = LocalIdp(group.reserve("idp"), audience=AUDIENCE)
    group.add("idp", provider.app)
    group.start()
    try:
        yield provider
    finally:
        group.stop()


@pytest.fixture
def http(idp: LocalIdp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=idp.issuer, timeout=5) as client:
        client.post("/emulator/reset")
        yield client


def discover(http: httpx.Client) -> dict:
    response = http.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    return response.json()


def verify(token: str, discovery: dict, **options) -> dict:
    """What a relying party does: fetch the signing key by `kid` from jwks_uri, check signature and claims."""
    signing_key = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, signing_key.key, algorithms=discovery["id_token_signing_alg_values_supported"],
                      audience=AUDIENCE, issuer=discovery["issuer"], **options)


def test_discovery_document_points_at_served_endpoints(http: httpx.Client, idp: LocalIdp) -> None:
    discovery = discover(http)
    assert discovery["issuer"] == idp.issuer
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    assert http.get(discovery["jwks_uri"]).status_code == 200
    assert discovery["token_endpoint"] == f"{idp.issuer}/token"


def test_jwks_publishes_one_public_rsa_signing_key(http: httpx.Client, idp: LocalIdp) -> None:
    keys = http.get(discover(http)["jwks_uri"]).json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")
    assert key["kid"] and key["n"] and key["e"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private parts must never be published"
    assert keys == idp.jwks()["keys"]


def test_token_endpoint_issues_verifiable_id_token(http: httpx.Client) -> None:
    discovery = discover(http)
    response = http.post(discovery["token_endpoint"],
                         data={"grant_type": "password", "username": "alice", "password": "any"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    claims = verify(body["id_token"], discovery)
    assert claims["sub"] == "alice"
    assert claims["name"] == claims["preferred_username"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 300
    assert claims["jti"]
    access_claims = verify(body["access_token"], discovery)
    assert access_claims["sub"] == "alice" and access_claims["jti"] != claims["jti"]


def test_every_token_has_its_own_jti(http: httpx.Client) -> None:
    tokens = [http.post("/token", data={"grant_type": "password", "username": "bob"}).json()["id_token"]
              for _ in range(3)]
    discovery = discover(http)
    assert len({verify(t, discovery)["jti"] for t in tokens}) == 3


def test_client_id_becomes_azp_and_audience_stays_fixed(http: httpx.Client) -> None:
    body = http.post("/token", data={"grant_type": "password", "username": "carol", "client_id": "chat-page"})
    claims = verify(body.json()["id_token"], discover(http))
    assert claims["azp"] == "chat-page"
    assert claims["aud"] == AUDIENCE


def test_expires_in_is_honoured_and_capped(http: httpx.Client) -> None:
    short = http.post("/token", data={"grant_type": "password", "username": "dave", "expires_in": "60"})
    assert short.json()["expires_in"] == 60
    huge = http.post("/token", data={"grant_type": "password", "username": "dave", "expires_in": "999999"})
    assert huge.json()["expires_in"] == MAX_TTL_S
    claims = verify(huge.json()["id_token"], discover(http))
    assert claims["exp"] - claims["iat"] == MAX_TTL_S


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password"}, "invalid_request"),
    ({"grant_type": "password", "username": "  "}, "invalid_request"),
    ({"grant_type": "password", "username": "erin", "expires_in": "soon"}, "invalid_request"),
    ({"grant_type": "client_credentials", "username": "erin"}, "unsupported_grant_type"),
    ({}, "unsupported_grant_type"),
])
def test_bad_token_requests_get_oauth2_errors(http: httpx.Client, form: dict, error: str) -> None:
    response = http.post("/token", data=form)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]


def test_expired_token_is_rejected_by_the_verifier(http: httpx.Client, idp: LocalIdp) -> None:
    token = idp.issue("frank", ttl_s=-10)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, discover(http))


def test_token_for_another_audience_is_rejected(http: httpx.Client, idp: LocalIdp) -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        verify(idp.issue("grace", aud="someone-else"), discover(http))


def test_token_signed_by_another_idp_is_rejected(http: httpx.Client, idp: LocalIdp) -> None:
    impostor = LocalIdp(idp.issuer, audience=AUDIENCE)  # same issuer URL, different key
    forged = impostor.issue("mallory")
    with pytest.raises(jwt.PyJWKClientError):  # its kid is unknown to the real JWKS
        verify(forged, discover(http))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"sub": "mallory", "iss": idp.issuer, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    forged_with_known_kid = jwt.encode(claims, other_key, algorithm="RS256",
                                       headers={"kid": idp.jwks()["keys"][0]["kid"]})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(forged_with_known_kid, discover(http))


def test_cors_lets_a_local_page_call_token_and_discovery(http: httpx.Client) -> None:
    origin = "http://localhost:8090"
    preflight = http.options("/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    token = http.post("/token", data={"grant_type": "password", "username": "heidi"},
                      headers={"Origin": origin})
    assert token.headers["access-control-allow-origin"] == origin
    discovery = http.get("/.well-known/openid-configuration", headers={"Origin": origin})
    assert discovery.headers["access-control-allow-origin"] == origin
    foreign = http.get("/.well-known/openid-configuration", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers


def test_faults_come_back_in_oauth2_shape(http: httpx.Client) -> None:
    http.post("/emulator/faults", json={"fail_next": 1, "fail_status": 503, "match": "/token"})
    failed = http.post("/token", data={"grant_type": "password", "username": "ivan"})
    assert failed.status_code == 503
    assert failed.json()["error"] == "temporarily_unavailable"
    assert http.post("/token", data={"grant_type": "password", "username": "ivan"}).status_code == 200
    assert http.get("/emulator/calls").json()["POST /token"] == 2


# -- the authorization code flow (what the callback's browser sign-in uses) -----------------------------

CLIENT, SECRET, REDIRECT = "callback-client", "client-secret", "http://127.0.0.1:9/callback/signed-in"


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    return {"client_id": CLIENT, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid",
            "state": "csrf-1", "nonce": "nonce-1", "code_challenge": challenge, "code_challenge_method": "S256",
            **overrides}


def pkce() -> tuple[str, str]:
    import base64
    import hashlib
    import secrets
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def sign_in(http: httpx.Client, challenge: str, user: str = "carol", **overrides: str) -> httpx.Response:
    params = authorize_params(challenge, **overrides)
    page = http.get("/authorize", params=params)
    assert page.status_code == 200 and "User name" in page.text and "Sign in" in page.text
    return http.post("/authorize", params=params, data={"username": user, "action": "sign-in"})


def redeem(http: httpx.Client, code: str, verifier: str, **overrides: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            **overrides}
    return http.post("/token", data=form, auth=(CLIENT, SECRET))


@pytest.fixture
def client(idp: LocalIdp) -> str:
    idp.register_client(CLIENT, SECRET, [REDIRECT])
    return CLIENT


def test_the_code_flow_with_pkce_gives_an_id_token_for_the_client_with_the_nonce(http, idp, client) -> None:
    discovery = discover(http)
    assert discovery["authorization_endpoint"] == f"{idp.issuer}/authorize"
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    verifier, challenge = pkce()
    back = sign_in(http, challenge)
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(REDIRECT + "?") and "state=csrf-1" in location
    code = httpx.QueryParams(location.split("?", 1)[1])["code"]
    tokens = redeem(http, code, verifier)
    assert tokens.status_code == 200
    claims = jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["nonce"], claims["iss"]) == ("carol", CLIENT, "nonce-1", idp.issuer)
    replay = redeem(http, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"  # a code works once


@pytest.mark.parametrize("overrides", [{"code_verifier": "W" * 60}, {"redirect_uri": REDIRECT + "/other"}])
def test_a_code_needs_its_verifier_and_redirect_uri(http, client, overrides) -> None:
    verifier, challenge = pkce()
    code = httpx.QueryParams(sign_in(http, challenge).headers["location"].split("?", 1)[1])["code"]
    answer = redeem(http, code, verifier, **overrides)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert redeem(http, code, verifier).status_code == 400  # and is spent by the failed attempt


def test_unknown_redirect_uris_and_clients_get_an_error_page_never_a_redirect(http, client) -> None:
    _, challenge = pkce()
    for overrides in ({"redirect_uri": "http://evil.example/cb"}, {"client_id": "nobody"}):
        page = http.get("/authorize", params=authorize_params(challenge, **overrides))
        assert page.status_code == 400 and "location" not in page.headers


def test_pkce_is_required_and_errors_go_back_to_the_client(http, client) -> None:
    for overrides, error in (({"code_challenge_method": "plain"}, "invalid_request"),
                             ({"scope": "profile"}, "invalid_scope"),
                             ({"response_type": "token"}, "unsupported_response_type")):
        back = http.get("/authorize", params=authorize_params("c" * 43, **overrides))
        assert back.status_code == 302 and f"error={error}" in back.headers["location"]
    cancelled = http.post("/authorize", params=authorize_params("c" * 43), data={"action": "cancel"})
    assert "error=access_denied" in cancelled.headers["location"]


def test_prompt_login_shows_the_sign_in_page_and_unknown_prompts_are_refused(http, idp, client) -> None:
    """No IdP session here, so `prompt=login` shows the page as always and signs in; `prompt=none` cannot be
    met; a value not in prompt_values_supported, or `none` with another, is an invalid request."""
    assert "login" in discover(http)["prompt_values_supported"]
    _, challenge = pkce()
    for prompt in ("login", "login consent", "select_account"):
        back = sign_in(http, challenge, prompt=prompt)
        assert back.status_code == 302 and "code=" in back.headers["location"]
    for prompt, error in (("none", "login_required"), ("none login", "invalid_request"),
                          ("relogin", "invalid_request"), ("login bogus", "invalid_request")):
        back = http.get("/authorize", params=authorize_params(challenge, prompt=prompt))
        assert back.status_code == 302, prompt
        answer = httpx.QueryParams(back.headers["location"].split("?", 1)[1])
        assert (answer["error"], answer["state"]) == (error, "csrf-1") and "code" not in answer


def test_client_authentication_is_checked(http, client) -> None:
    verifier, challenge = pkce()
    code = httpx.QueryParams(sign_in(http, challenge).headers["location"].split("?", 1)[1])["code"]
    wrong = http.post("/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                      "code_verifier": verifier}, auth=(CLIENT, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_the_password_grant_adds_the_claims_a_test_asks_for(cloud):
    """Tests mint large or unusual tokens through the real token endpoint, never the provider's own claims."""
    http = httpx.Client(verify=cloud.ssl_context(), trust_env=False)
    padding = "x" * 2000
    token = http.post(f"{cloud.url('idp')}/token", data={
        "grant_type": "password", "username": "big", "claims": json.dumps({"groups": [padding], "team": "a"})},
    ).json()["id_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["team"], claims["groups"]) == ("big", "a", [padding]) and len(token) > 2700

    for bad in ('["not an object"]', '{"sub": "someone-else"}', "{"):
        refused = http.post(f"{cloud.url('idp')}/token", data={"grant_type": "password", "username": "big",
                                                               "claims": bad})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


def test_a_loopback_redirect_matches_on_any_port_and_nothing_else() -> None:
    """RFC 8252 7.3: a native app registers `http://127.0.0.1/callback` and listens on a free port."""
    from emulators.idp import OidcClient

    client = OidcClient("cli", "", {"http://127.0.0.1/callback", "https://app.example.com/cb"})
    assert client.allows("http://127.0.0.1:49152/callback") and client.allows("http://127.0.0.1/callback")
    for other in ("http://localhost:49152/callback", "http://127.0.0.1:49152/other",
                  "https://127.0.0.1:1/callback", "http://127.0.0.1:1/callback?x=1",
                  "https://app.example.com:444/cb", "http://127.0.0.1:x/callback"):
        assert not client.allows(other), other
