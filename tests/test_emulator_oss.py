"""The OSS emulator through the real alibabacloud-oss-v2 client (sync and async), signed with the STS
credentials the Agent Identity emulator issued: V4 signature, security token, session policy, OSS errors."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import alibabacloud_oss_v2 as oss
import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_oss_v2.aio import AsyncClient
from alibabacloud_oss_v2.credentials import StaticCredentialsProvider

from emulators.ram import allowed
from tools.tool import session_policy
from tools.oss import object_resource

WELCOME = "notes/welcome.txt"


@pytest.fixture
def assume(fresh_cloud, acs_config):
    """STS credentials from AssumeRoleForWorkloadIdentity, narrowed by `policy` when given."""
    data = DataClient(acs_config("agent_identity"))

    def make(policy: str | None = None):
        user_jwt = fresh_cloud.issue_user_jwt(f"u-{uuid.uuid4().hex[:8]}")
        wat = data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
            workload_identity_name="local-agent", user_token=user_jwt)).body.workload_access_token
        return data.assume_role_for_workload_identity(ai.AssumeRoleForWorkloadIdentityRequest(
            workload_access_token=wat, role_session_name="oss-test", policy=policy)).body.credentials

    return make


@pytest.fixture(autouse=True)
def sync_clients_trust_the_local_ca(cloud, monkeypatch):
    """The SDK's sync client (requests) trusts REQUESTS_CA_BUNDLE, not SSL_CERT_FILE (docs/services.md, OSS)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cloud.ca_file)


def client(cloud, credentials, *, region: str = "cn-hangzhou", **options) -> oss.Client:
    return oss.Client(config(cloud, credentials, region=region, **options))


def config(cloud, credentials, *, region: str = "cn-hangzhou", **options) -> oss.Config:
    provider = StaticCredentialsProvider(credentials.access_key_id, credentials.access_key_secret,
                                         credentials.security_token)
    return oss.Config(region=region, endpoint=cloud.url("oss"), use_path_style=True,
                      credentials_provider=provider, retry_max_attempts=1, **options)


def read(cloud, credentials, bucket: str, key: str, **request) -> oss.GetObjectResult:
    return client(cloud, credentials).get_object(oss.GetObjectRequest(bucket=bucket, key=key, **request))


def service_error(call) -> oss.exceptions.ServiceError:
    with pytest.raises(oss.exceptions.OperationError) as caught:
        call()
    error = caught.value.unwrap()
    assert isinstance(error, oss.exceptions.ServiceError), error
    return error


def test_role_credentials_read_a_text_object(fresh_cloud, assume):
    result = read(fresh_cloud, assume(), "agent-docs", WELCOME)
    assert result.status_code == 200 and result.content_type == "text/plain; charset=utf-8"
    assert result.body.content.decode().startswith("Welcome to the local OSS emulator.")
    assert result.etag and result.request_id


async def test_the_async_client_reads_a_range(fresh_cloud, assume):
    async with AsyncClient(config(fresh_cloud, assume())) as aio:
        result = await aio.get_object(oss.GetObjectRequest(bucket="agent-docs", key="logs/large.log",
                                                           range_header="bytes=0-9"))
    size = len(fresh_cloud.oss.buckets["agent-docs"].objects["logs/large.log"].data)
    assert result.status_code == 206 and result.content_range == f"bytes 0-9/{size}"
    assert result.body.content == b"line 00000"


@pytest.mark.parametrize("span", ["bytes=5000-5100", "bytes=0-35", "bytes=-36", "byte=0-3", "bytes=9-2"])
def test_a_range_not_wholly_inside_the_object_returns_the_whole_object(fresh_cloud, assume, span):
    """OSS's default range behaviour (35 bytes here): no clamping, the Range header is ignored."""
    result = read(fresh_cloud, assume(), "agent-docs", "notes/other.txt", range_header=span)
    assert result.status_code == 200 and result.body.content == b"Another object in the same bucket.\n"
    assert result.content_range is None


def test_the_last_bytes_and_the_first_of_several_ranges(fresh_cloud, assume):
    credentials = assume()
    result = read(fresh_cloud, credentials, "agent-docs", "notes/other.txt", range_header="bytes=-8")
    assert (result.status_code, result.body.content) == (206, b"bucket.\n")
    assert result.content_range == "bytes 27-34/35"
    result = read(fresh_cloud, credentials, "agent-docs", "notes/other.txt", range_header="bytes=0-6,8-9")
    assert (result.status_code, result.body.content) == (206, b"Another")


def test_session_policy_limits_credentials_to_one_object(fresh_cloud, assume):
    credentials = assume(session_policy(["oss:GetObject"], object_resource("agent-docs", WELCOME)))
    assert read(fresh_cloud, credentials, "agent-docs", WELCOME).status_code == 200
    error = service_error(lambda: read(fresh_cloud, credentials, "agent-docs", "notes/other.txt"))
    assert (error.status_code, error.code) == (403, "AccessDenied")
    # Without the policy, the role itself may read the other object.
    assert read(fresh_cloud, assume(), "agent-docs", "notes/other.txt").status_code == 200


def test_missing_key_missing_bucket_and_forbidden_bucket(fresh_cloud, assume):
    credentials = assume()
    missing_key = service_error(lambda: read(fresh_cloud, credentials, "agent-docs", "notes/nothing.txt"))
    assert (missing_key.status_code, missing_key.code) == (404, "NoSuchKey") and missing_key.request_id
    missing_bucket = service_error(lambda: read(fresh_cloud, credentials, "no-such-bucket", "a.txt"))
    assert (missing_bucket.status_code, missing_bucket.code) == (404, "NoSuchBucket")
    forbidden = service_error(
        lambda: read(fresh_cloud, credentials, "finance-private", "reports/salaries.txt"))
    assert (forbidden.status_code, forbidden.code) == (403, "AccessDenied")
    # The role may not learn whether an object it cannot read exists.
    unknown = service_error(lambda: read(fresh_cloud, credentials, "finance-private", "reports/none.txt"))
    assert unknown.code == "AccessDenied"


def test_credentials_are_checked(fresh_cloud, assume):
    credentials = assume()
    cases = {
        "InvalidAccessKeyId": SimpleNamespace(access_key_id="STS.unknown", access_key_secret="x",
                                              security_token="y"),
        "InvalidSecurityToken": SimpleNamespace(access_key_id=credentials.access_key_id,
                                                access_key_secret=credentials.access_key_secret,
                                                security_token="CAIS-forged"),
        "SignatureDoesNotMatch": SimpleNamespace(access_key_id=credentials.access_key_id,
                                                 access_key_secret="guessed",
                                                 security_token=credentials.security_token),
    }
    for code, forged in cases.items():
        error = service_error(lambda forged=forged: read(fresh_cloud, forged, "agent-docs", WELCOME))
        assert (error.status_code, error.code) == (403, code)
    fresh_cloud.sts_credentials.get(credentials.access_key_id).expires_at = 0.0
    error = service_error(lambda: read(fresh_cloud, credentials, "agent-docs", WELCOME))
    assert (error.status_code, error.code) == (403, "SecurityTokenExpired")
    assert credentials.access_key_secret not in str(error)


def test_static_key_and_anonymous_and_v1_requests_are_refused(fresh_cloud, assume):
    anonymous = oss.Config(region="cn-hangzhou", endpoint=fresh_cloud.url("oss"), use_path_style=True,
                           credentials_provider=oss.credentials.AnonymousCredentialsProvider(),
                           retry_max_attempts=1)
    error = service_error(lambda: oss.Client(anonymous).get_object(
        oss.GetObjectRequest(bucket="agent-docs", key=WELCOME)))
    assert (error.status_code, error.code) == (403, "AccessDenied")
    error = service_error(lambda: client(fresh_cloud, assume(), signature_version="v1").get_object(
        oss.GetObjectRequest(bucket="agent-docs", key=WELCOME)))
    assert error.status_code == 400


def test_a_scope_for_another_region_does_not_match(fresh_cloud, assume):
    credentials = assume()
    error = service_error(lambda: client(fresh_cloud, credentials, region="cn-shanghai").get_object(
        oss.GetObjectRequest(bucket="agent-docs", key=WELCOME)))
    assert (error.status_code, error.code) == (403, "SignatureDoesNotMatch")


def test_a_signature_mismatch_shows_what_oss_signed(fresh_cloud, assume):
    """Like the real service, the error body carries the canonical request (security token included): why the
    tool never quotes an OSS error (tests/test_leaks.py)."""
    credentials = assume()
    forged = SimpleNamespace(access_key_id=credentials.access_key_id, access_key_secret="guessed",
                             security_token=credentials.security_token)
    error = service_error(lambda: read(fresh_cloud, forged, "agent-docs", WELCOME))
    assert credentials.security_token in error.error_fileds["CanonicalRequest"]


def allow(action: str, resource: str, **extra) -> dict:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


OBJECT = "acs:oss:cn-hangzhou:1:b/k"


@pytest.mark.parametrize(("policies", "resource", "expected"), [
    ([allow("oss:*", "acs:oss:*:*:b/*")], OBJECT, True),
    ([allow("OSS:GetObject", "*")], OBJECT, True),  # actions ignore case
    ([allow("oss:GetObject", "acs:oss:*:*:b/k?")], OBJECT + "1", True),
    ([allow("oss:GetObject", "acs:oss:*:*:b/K")], OBJECT, False),  # resources do not
    ([{"Statement": [*allow("oss:*", "*")["Statement"],
                     {"Effect": "Deny", "Action": "oss:GetObject", "Resource": "acs:oss:*:*:b/*"}]}],
     OBJECT, False),  # an explicit Deny wins
    ([allow("oss:*", "*", Condition={})], OBJECT, False),  # not understood: an Allow never matches
    ([allow("oss:*", "*"), None], OBJECT, True),  # no session policy: the role's alone
    ([allow("oss:*", "*"), json.dumps(allow("sts:*", "*"))], OBJECT, False),  # the session policy narrows
    (["not json"], OBJECT, False),
])
def test_policy_evaluation(policies, resource, expected):
    assert allowed(policies, "oss:GetObject", resource) is expected
