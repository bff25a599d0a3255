"""The Agent Identity emulator, driven through the real SDK clients (alibabacloud_agentidentitydata20251127
and agent_identity_python_sdk) over HTTP, as the product drives the real service."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_identity_python_sdk import IdentityClient
from emulators import start_local_cloud

SCOPES = ["openid", "corpid"]


@pytest.fixture
def data(fresh_cloud, acs_config) -> DataClient:
    return DataClient(acs_config("agent_identity"))


@pytest.fixture
def user(fresh_cloud):
    """A user nobody else uses, with a fresh JWT from the IdP."""
    sub = f"user-{uuid.uuid4().hex[:10]}"
    return sub, fresh_cloud.issue_user_jwt(sub)


def workload_token(data: DataClient, cloud, user_jwt: str) -> str:
    request = ai.GetWorkloadAccessTokenForJWTRequest(
        workload_identity_name=cloud.info["workload_identity_name"], user_token=user_jwt)
    return data.get_workload_access_token_for_jwt(request).body.workload_access_token


def resource_token_request(cloud, wat: str, **overrides) -> ai.GetResourceOAuth2TokenRequest:
    fields = dict(resource_credential_provider_name=cloud.info["dingtalk_provider"],
                  workload_access_token=wat, scopes=SCOPES, oauth2_flow="USER_FEDERATION",
                  resource_oauth2_return_url=cloud.info["return_urls"][0], custom_state="state-123",
                  force_authentication=False)
    return ai.GetResourceOAuth2TokenRequest(**{**fields, **overrides})


def sts_data_client(cloud, acs_config, wat: str) -> DataClient:
    """A data client signed with the STS credentials of AssumeRoleForWorkloadIdentity (USE_STS=true)."""
    identity = IdentityClient("cn-hangzhou", data_api_endpoint=cloud.url("agent_identity"))
    creds = asyncio.run(identity.assume_role_for_workload_identity(workload_token=wat,
                                                                   role_session_name="tests"))
    return DataClient(acs_config("agent_identity", sts=creds))


def consent(authorization_url: str, decision: str) -> httpx.Response:
    """What the browser does: load the consent page, then press a button."""
    page = httpx.get(authorization_url)
    assert page.status_code == 200 and ">Approve</button>" in page.text and ">Deny</button>" in page.text
    return httpx.post(authorization_url, data={"decision": decision}, follow_redirects=False)


def assert_acs_error(excinfo, status: int, code: str) -> None:
    assert (excinfo.value.status_code, excinfo.value.code) == (status, code)
    assert excinfo.value.data["RequestId"] and excinfo.value.data["Message"]


# -- workload access tokens ----------------------------------------------------------------------------

def test_workload_token_for_jwt_reports_the_verified_claims(data, fresh_cloud, user):
    sub, user_jwt = user
    body = data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
        workload_identity_name="local-agent", user_token=user_jwt)).body
    assert body.workload_access_token.startswith("wat-")
    assert body.workload_identity_arn.endswith(":workloadidentity/local-agent")
    claims = body.user_context.jwt_claims
    assert (claims.subject, claims.issuer, claims.audiences) == (sub, fresh_cloud.info["idp_issuer"],
                                                                 [fresh_cloud.info["idp_audience"]])
    assert claims.jti == jwt.decode(user_jwt, options={"verify_signature": False})["jti"]


def test_workload_tokens_without_jwt(data):
    plain = data.get_workload_access_token(
        ai.GetWorkloadAccessTokenRequest(workload_identity_name="local-agent"))
    by_id = data.get_workload_access_token_for_user_id(ai.GetWorkloadAccessTokenForUserIdRequest(
        workload_identity_name="local-agent", user_id="u-42"))
    assert plain.body.workload_access_token != by_id.body.workload_access_token
    assert by_id.body.user_context.user_id == "u-42"


def _foreign_key_token(cloud, sub: str) -> str:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(cloud.issue_user_jwt(sub))["kid"]
    now = int(time.time())
    return jwt.encode({"iss": cloud.info["idp_issuer"], "aud": cloud.info["idp_audience"], "sub": sub,
                       "iat": now, "exp": now + 600}, other_key, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize("forge", ["expired", "wrong_issuer", "wrong_audience", "foreign_key", "garbage"])
def test_invalid_user_jwt_is_refused(data, fresh_cloud, forge):
    token = {
        "expired": lambda: fresh_cloud.issue_user_jwt("eve", exp=int(time.time()) - 60),
        "wrong_issuer": lambda: fresh_cloud.issue_user_jwt("eve", iss="https://evil.example"),
        "wrong_audience": lambda: fresh_cloud.issue_user_jwt("eve", aud="another-app"),
        "foreign_key": lambda: _foreign_key_token(fresh_cloud, "eve"),
        "garbage": lambda: "not.a.jwt",
    }[forge]()
    with pytest.raises(ClientException) as excinfo:
        workload_token(data, fresh_cloud, token)
    assert_acs_error(excinfo, 400, "InvalidParameter.JsonWebToken")
    assert token not in str(excinfo.value) and token not in json.dumps(excinfo.value.data)


def test_unknown_workload_identity(data, user):
    with pytest.raises(ClientException) as excinfo:
        data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
            workload_identity_name="someone-else", user_token=user[1]))
    assert_acs_error(excinfo, 404, "EntityNotExist.WorkloadIdentity")


# -- signatures ----------------------------------------------------------------------------------------

def test_wrong_secret_is_a_signature_mismatch(fresh_cloud, acs_config):
    client = DataClient(acs_config("agent_identity", access_key_secret="not-the-secret"))
    with pytest.raises(ClientException) as excinfo:
        client.get_workload_access_token(
            ai.GetWorkloadAccessTokenRequest(workload_identity_name="local-agent"))
    assert_acs_error(excinfo, 400, "SignatureDoesNotMatch")


def test_unknown_access_key_is_refused(fresh_cloud, acs_config):
    config = acs_config("agent_identity")
    config.access_key_id = "unknown-access-key-id"  # fake: no such key exists
    with pytest.raises(ClientException) as excinfo:
        DataClient(config).get_workload_access_token(
            ai.GetWorkloadAccessTokenRequest(workload_identity_name="local-agent"))
    assert_acs_error(excinfo, 404, "InvalidAccessKeyId.NotFound")


def test_old_rpc_signature_is_checked_too(fresh_cloud, acs_config):
    good = DataClient(acs_config("agent_identity", signature_algorithm="v2"))
    bad = DataClient(acs_config("agent_identity", signature_algorithm="v2", access_key_secret="wrong"))
    request = ai.GetWorkloadAccessTokenRequest(workload_identity_name="local-agent")
    assert good.get_workload_access_token(request).body.workload_access_token
    with pytest.raises(ClientException) as excinfo:
        bad.get_workload_access_token(request)
    assert_acs_error(excinfo, 400, "SignatureDoesNotMatch")


async def test_async_client_is_verified_like_the_sync_one(data, fresh_cloud, acs_config, user):
    client = DataClient(acs_config("agent_identity"))
    body = (await client.get_workload_access_token_for_jwt_async(ai.GetWorkloadAccessTokenForJWTRequest(
        workload_identity_name="local-agent", user_token=user[1]))).body
    assert body.user_context.jwt_claims.subject == user[0]


# -- the USER_FEDERATION flow --------------------------------------------------------------------------

def test_user_federation_flow_end_to_end(data, fresh_cloud, acs_config, user):
    sub, user_jwt = user
    wat = workload_token(data, fresh_cloud, user_jwt)
    client = sts_data_client(fresh_cloud, acs_config, wat)

    first = client.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    assert first.access_token is None and first.session_status == "IN_PROGRESS"
    consent_page = fresh_cloud.browser_url("agent_identity") + "/oauth2/authorize?"
    assert first.authorization_url.startswith(consent_page)
    assert first.session_uri.startswith("urn:ietf:params:oauth:request_uri:")

    polling = resource_token_request(fresh_cloud, wat, session_uri=first.session_uri)
    pending = client.get_resource_oauth2_token(polling)
    assert pending.body.access_token is None and pending.body.session_status == "IN_PROGRESS"

    redirect = consent(first.authorization_url, "approve")
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == fresh_cloud.info["return_urls"][0]
    assert parse_qs(location.query) == {"session_uri": [first.session_uri], "state": ["state-123"]}

    someone_else = fresh_cloud.issue_user_jwt(sub + "-other")
    with pytest.raises(ClientException) as excinfo:
        client.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
            session_uri=first.session_uri,
            user_identifier=ai.CompleteResourceTokenAuthRequestUserIdentifier(user_jwt=someone_else)))
    assert_acs_error(excinfo, 400, "InvalidParameter.UserIdentifier")

    complete = ai.CompleteResourceTokenAuthRequest(
        session_uri=first.session_uri,
        user_identifier=ai.CompleteResourceTokenAuthRequestUserIdentifier(user_jwt=user_jwt))
    assert client.complete_resource_token_auth(complete).body.request_id
    with pytest.raises(ClientException) as excinfo:
        client.complete_resource_token_auth(complete)
    assert_acs_error(excinfo, 400, "InvalidParameter.SessionURI")

    done = client.get_resource_oauth2_token(polling).body
    assert done.access_token.startswith("dt-") and 7000 < done.expires_in <= 7200
    again = client.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    assert again.access_token == done.access_token  # the vault remembers the user's token

    written = httpx.post(f"{fresh_cloud.url('dingtalk')}/v2.0/doc/me/suites/documents/doc1/overwriteContent",
                         headers={"x-acs-dingtalk-access-token": done.access_token},
                         json={"dataType": "markdown", "content": "hello"})
    assert written.status_code == 200, written.text


def test_completion_takes_only_the_jwt_the_workload_token_came_from(data, fresh_cloud, acs_config, user):
    """A fresh, valid JWT of the same user is not the original artifact (the strict reading, as AWS documents)."""
    sub, user_jwt = user
    wat = workload_token(data, fresh_cloud, user_jwt)
    client = sts_data_client(fresh_cloud, acs_config, wat)
    first = client.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    consent(first.authorization_url, "approve")
    same_user_new_jwt = fresh_cloud.issue_user_jwt(sub)
    assert same_user_new_jwt != user_jwt

    def complete(jwt: str):
        return client.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
            session_uri=first.session_uri, user_identifier=ai.CompleteResourceTokenAuthRequestUserIdentifier(
                user_jwt=jwt)))

    with pytest.raises(ClientException) as excinfo:
        complete(same_user_new_jwt)
    assert_acs_error(excinfo, 400, "InvalidParameter.UserIdentifier")
    assert complete(user_jwt).body.request_id


def test_an_authorization_url_opens_once(data, fresh_cloud, acs_config, user):
    wat = workload_token(data, fresh_cloud, user[1])
    client = sts_data_client(fresh_cloud, acs_config, wat)
    first = client.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    unopened = httpx.post(first.authorization_url, data={"decision": "approve"}, follow_redirects=False)
    opened = httpx.get(first.authorization_url)
    again = httpx.get(first.authorization_url)
    assert unopened.status_code == 400  # a decision needs the page it is made on
    assert opened.status_code == 200 and again.status_code == 400 and "only once" in again.text
    answered = httpx.post(first.authorization_url, data={"decision": "approve"}, follow_redirects=False)
    assert answered.status_code == 302  # the page opened first still takes its answer


def test_custom_state_longer_than_4096_characters_is_refused(data, fresh_cloud, acs_config, user):
    wat = workload_token(data, fresh_cloud, user[1])
    client = sts_data_client(fresh_cloud, acs_config, wat)
    with pytest.raises(ClientException) as excinfo:
        client.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat, custom_state="s" * 4097))
    assert_acs_error(excinfo, 400, "InvalidParameter.CustomState")


def test_deny_redirects_with_access_denied_and_the_session_fails(data, fresh_cloud, user):
    wat = workload_token(data, fresh_cloud, user[1])
    first = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat, custom_state="s-9")).body
    redirect = consent(first.authorization_url, "deny")
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query == {"error": ["access_denied"], "state": ["s-9"]}
    polled = data.get_resource_oauth2_token(
        resource_token_request(fresh_cloud, wat, session_uri=first.session_uri))
    assert polled.body.access_token is None and polled.body.session_status == "FAILED"
    assert httpx.get(first.authorization_url).status_code == 409  # answered once, not twice
    with pytest.raises(ClientException):
        data.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
            session_uri=first.session_uri,
            user_identifier=ai.CompleteResourceTokenAuthRequestUserIdentifier(user_jwt=user[1])))


def authorize(data: DataClient, cloud, wat: str, user_jwt: str, **overrides) -> str:
    """Run one whole authorization and return the access token."""
    first = data.get_resource_oauth2_token(resource_token_request(cloud, wat, **overrides)).body
    assert first.authorization_url, "expected a new authorization"
    consent(first.authorization_url, "approve")
    data.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
        session_uri=first.session_uri,
        user_identifier=ai.CompleteResourceTokenAuthRequestUserIdentifier(user_jwt=user_jwt)))
    return data.get_resource_oauth2_token(
        resource_token_request(cloud, wat, session_uri=first.session_uri, **overrides)).body.access_token


def test_vault_refreshes_expired_tokens_and_reauthorizes_revoked_ones(data, fresh_cloud, user):
    sub, user_jwt = user
    wat = workload_token(data, fresh_cloud, user_jwt)
    token = authorize(data, fresh_cloud, wat, user_jwt)

    fresh_cloud.dingtalk_tokens.get(token).expires_at = 0.0  # DingTalk's 2 h are over
    refreshed = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    assert refreshed.access_token and refreshed.access_token != token

    httpx.post(f"{fresh_cloud.url('dingtalk')}/emulator/revoke", json={"subject": sub}).raise_for_status()
    after_revoke = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    assert after_revoke.access_token is None and after_revoke.authorization_url


def test_force_authentication_and_scopes_key_the_vault(data, fresh_cloud, user):
    wat = workload_token(data, fresh_cloud, user[1])
    token = authorize(data, fresh_cloud, wat, user[1])
    forced = data.get_resource_oauth2_token(
        resource_token_request(fresh_cloud, wat, force_authentication=True))
    assert forced.body.authorization_url and forced.body.access_token is None
    other_scopes = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat, scopes=["openid"]))
    assert other_scopes.body.authorization_url
    reordered = data.get_resource_oauth2_token(
        resource_token_request(fresh_cloud, wat, scopes=["corpid", "openid"]))
    assert reordered.body.access_token == token


def test_unregistered_return_url_is_refused(data, fresh_cloud, user):
    wat = workload_token(data, fresh_cloud, user[1])
    with pytest.raises(ClientException) as excinfo:
        data.get_resource_oauth2_token(resource_token_request(
            fresh_cloud, wat, resource_oauth2_return_url="https://evil.example/callback"))
    assert_acs_error(excinfo, 400, "InvalidParameter.ResourceOAuth2ReturnURL")


def test_complete_by_user_id_must_name_the_same_user(data, fresh_cloud):
    wat = data.get_workload_access_token_for_user_id(ai.GetWorkloadAccessTokenForUserIdRequest(
        workload_identity_name="local-agent", user_id="uid-7")).body.workload_access_token
    first = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    consent(first.authorization_url, "approve")
    identifier = ai.CompleteResourceTokenAuthRequestUserIdentifier
    with pytest.raises(ClientException):
        data.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
            session_uri=first.session_uri, user_identifier=identifier(user_id="uid-8")))
    data.complete_resource_token_auth(ai.CompleteResourceTokenAuthRequest(
        session_uri=first.session_uri, user_identifier=identifier(user_id="uid-7")))


def test_sessions_expire(data, fresh_cloud, user):
    wat = workload_token(data, fresh_cloud, user[1])
    fresh_cloud.agent_identity.session_ttl_s = 0
    try:
        first = data.get_resource_oauth2_token(resource_token_request(fresh_cloud, wat)).body
    finally:
        fresh_cloud.agent_identity.session_ttl_s = 600
    assert httpx.get(first.authorization_url).status_code == 404
    with pytest.raises(ClientException) as excinfo:
        data.get_resource_oauth2_token(
            resource_token_request(fresh_cloud, wat, session_uri=first.session_uri))
    assert_acs_error(excinfo, 400, "InvalidParameter.SessionURI")


def test_m2m_returns_a_token_directly(data, fresh_cloud):
    wat = data.get_workload_access_token(ai.GetWorkloadAccessTokenRequest(
        workload_identity_name="local-agent")).body.workload_access_token
    body = data.get_resource_oauth2_token(ai.GetResourceOAuth2TokenRequest(
        resource_credential_provider_name=fresh_cloud.info["dingtalk_provider"], workload_access_token=wat,
        scopes=SCOPES, oauth2_flow="M2M")).body
    assert body.access_token and body.authorization_url is None


def test_identity_sdk_get_token_hands_over_the_authorization_url(data, fresh_cloud, acs_config, user):
    """The Agent Identity SDK's own get_token (USE_STS=true): STS-signed, reports the URL, then stops."""
    wat = workload_token(data, fresh_cloud, user[1])
    identity = IdentityClient("cn-hangzhou", data_api_endpoint=fresh_cloud.url("agent_identity"))

    async def run() -> list[str]:
        creds = await identity.get_sts_credential_client(wat, None, user[1])
        urls: list[str] = []
        with pytest.raises(RuntimeError):
            await identity.get_token(
                credential_provider_name=fresh_cloud.info["dingtalk_provider"], scopes=SCOPES,
                workload_identity_token=wat, on_auth_url=urls.append, auth_flow="USER_FEDERATION",
                callback_url=fresh_cloud.info["return_urls"][0], credential=creds, poll_for_token=False)
        return urls

    urls = asyncio.run(run())
    assert len(urls) == 1 and urls[0].startswith(fresh_cloud.browser_url("agent_identity"))


# -- STS credentials -----------------------------------------------------------------------------------

def test_assume_role_honours_duration_and_is_anonymous(data, fresh_cloud, user):
    wat = workload_token(data, fresh_cloud, user[1])
    identity = IdentityClient("cn-hangzhou", data_api_endpoint=fresh_cloud.url("agent_identity"))
    creds = asyncio.run(identity.assume_role_for_workload_identity(
        workload_token=wat, role_session_name="s-1", duration_seconds=900))
    assert creds.access_key_id.startswith("STS.") and creds.security_token
    expires = time.mktime(time.strptime(creds.expiration, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 880 <= expires - time.time() <= 905
    record = fresh_cloud.sts_credentials.get(creds.access_key_id)
    assert record.secret == creds.access_key_secret and record.details["session_name"] == "s-1"


@pytest.mark.parametrize("overrides, code", [
    ({"duration_seconds": 60}, "InvalidParameter.DurationSeconds"),
    ({"workload_access_token": "wat-unknown"}, "InvalidParameter.WorkloadAccessToken"),
    ({"policy": "{not json"}, "InvalidParameter.PolicyGrammar"),
])
def test_assume_role_refuses_bad_input(data, fresh_cloud, user, overrides, code):
    request = ai.AssumeRoleForWorkloadIdentityRequest(
        **{"workload_access_token": workload_token(data, fresh_cloud, user[1]), "role_session_name": "s-1",
           **overrides})
    with pytest.raises(ClientException) as excinfo:
        data.assume_role_for_workload_identity(request)
    assert_acs_error(excinfo, 400, code)


# -- faults and the control routes ---------------------------------------------------------------------

def test_injected_faults_surface_as_the_sdk_exceptions(data, fresh_cloud):
    faults = f"{fresh_cloud.url('agent_identity')}/emulator/faults"
    request = ai.GetWorkloadAccessTokenRequest(workload_identity_name="local-agent")
    httpx.post(faults, json={"fail_next": 1, "fail_kind": "throttle"}).raise_for_status()
    with pytest.raises(ThrottlingException):
        data.get_workload_access_token(request)
    httpx.post(faults, json={"fail_next": 1, "fail_kind": "error", "fail_status": 503}).raise_for_status()
    with pytest.raises(ServerException):
        data.get_workload_access_token(request)
    assert data.get_workload_access_token(request).body.workload_access_token
    calls = httpx.get(f"{fresh_cloud.url('agent_identity')}/emulator/calls").json()
    assert calls == {"GetWorkloadAccessToken": 3}


def test_start_up_faults_and_expire_tokens():
    """A private cloud: expiring every token must not disturb the session's shared one."""
    with start_local_cloud(faults={"agent_identity": {"latency_ms": 1}}) as cloud:
        assert httpx.get(f"{cloud.url('agent_identity')}/emulator/faults").json()["latency_ms"] == 1
        from alibabacloud_tea_openapi.utils_models import Config
        data = DataClient(Config(access_key_id=cloud.info["access_key_id"],
                                 access_key_secret=cloud.info["access_key_secret"],
                                 endpoint=cloud.url("agent_identity"), region_id="cn-hangzhou"))
        wat = workload_token(data, cloud, cloud.issue_user_jwt("zoe"))
        httpx.post(f"{cloud.url('agent_identity')}/emulator/expire-tokens").raise_for_status()
        with pytest.raises(ClientException) as excinfo:
            data.assume_role_for_workload_identity(ai.AssumeRoleForWorkloadIdentityRequest(
                workload_access_token=wat, role_session_name="s-1"))
        assert_acs_error(excinfo, 400, "InvalidParameter.WorkloadAccessToken")


def test_a_signature_must_cover_the_acs_headers(fresh_cloud):
    """A hand-made request (no SDK signs this way): only `host` is signed, so nothing else is trusted."""
    response = httpx.post(fresh_cloud.url("agent_identity"), data={"WorkloadIdentityName": "local-agent"}, headers={
        "x-acs-action": "GetWorkloadAccessToken", "x-acs-version": "2025-11-27",
        "Authorization": f"ACS3-HMAC-SHA256 Credential={fresh_cloud.info['access_key_id']},"
                         "SignedHeaders=host,Signature=00"})
    assert response.status_code == 400 and response.json()["Code"] == "IncompleteSignature"
