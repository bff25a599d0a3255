"""The STS emulator through the real alibabacloud_sts20150401 client, signed with the static AccessKey or
with the STS credentials the Agent Identity emulator issued."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.exceptions import ClientException


@pytest.fixture
def assumed(fresh_cloud, acs_config):
    """STS credentials and the assumed-role user from AssumeRoleForWorkloadIdentity for a fresh user."""
    data = DataClient(acs_config("agent_identity"))
    user_jwt = fresh_cloud.issue_user_jwt(f"u-{uuid.uuid4().hex[:8]}")
    wat = data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
        workload_identity_name="local-agent", user_token=user_jwt)).body.workload_access_token
    body = data.assume_role_for_workload_identity(ai.AssumeRoleForWorkloadIdentityRequest(
        workload_access_token=wat, role_session_name="sts-test")).body
    return body.credentials, body.assumed_role_user


def test_caller_identity_of_assumed_role(acs_config, fresh_cloud, assumed):
    credentials, role_user = assumed
    body = StsClient(acs_config("sts", sts=credentials)).get_caller_identity().body
    assert body.identity_type == "AssumedRoleUser"
    assert body.arn == role_user.arn and body.arn.endswith("/sts-test")
    assert body.account_id == fresh_cloud.info["account_id"]
    assert body.principal_id == role_user.assumed_role_id and body.role_id and body.request_id


async def test_caller_identity_of_the_static_key_async(acs_config, fresh_cloud):
    body = (await StsClient(acs_config("sts")).get_caller_identity_async()).body
    assert body.identity_type == "RAMUser" and body.account_id == fresh_cloud.info["account_id"]
    assert body.arn == f"acs:ram::{body.account_id}:user/agentrun-local" and body.principal_id == body.user_id


def test_expired_credentials_are_refused(acs_config, fresh_cloud, assumed):
    credentials, _ = assumed
    fresh_cloud.sts_credentials.get(credentials.access_key_id).expires_at = 0.0
    with pytest.raises(ClientException) as excinfo:
        StsClient(acs_config("sts", sts=credentials)).get_caller_identity()
    assert (excinfo.value.status_code, excinfo.value.code) == (400, "InvalidSecurityToken.Expired")
    assert credentials.access_key_secret not in str(excinfo.value)


def test_unknown_key_and_wrong_token_are_refused(acs_config, assumed):
    credentials, _ = assumed
    unknown = SimpleNamespace(access_key_id="STS.unknown", access_key_secret="x", security_token="y")
    with pytest.raises(ClientException) as excinfo:
        StsClient(acs_config("sts", sts=unknown)).get_caller_identity()
    assert (excinfo.value.status_code, excinfo.value.code) == (404, "InvalidAccessKeyId.NotFound")

    wrong_token = SimpleNamespace(
        access_key_id=credentials.access_key_id, access_key_secret=credentials.access_key_secret,
        security_token="CAIS-forged")
    with pytest.raises(ClientException) as excinfo:
        StsClient(acs_config("sts", sts=wrong_token)).get_caller_identity()
    assert excinfo.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_wrong_secret_is_a_signature_mismatch(acs_config, assumed):
    credentials, _ = assumed
    forged = SimpleNamespace(
        access_key_id=credentials.access_key_id, access_key_secret="guessed",
        security_token=credentials.security_token)
    with pytest.raises(ClientException) as excinfo:
        StsClient(acs_config("sts", sts=forged)).get_caller_identity()
    assert (excinfo.value.status_code, excinfo.value.code) == (400, "SignatureDoesNotMatch")
