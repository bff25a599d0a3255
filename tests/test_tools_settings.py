"""ToolSettings from the environment, and how Alibaba Cloud SDK clients are pointed at an endpoint."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alibabacloud_sts20150401.client import Client as StsClient

from settings.reader import DEFAULT_REGION, ConfigError, EnvReader
from tools import TOOLS
from identity.credentials import StsCredential
from settings.tools import ProviderSettings, ToolSettings
from tools.tool import CloudSession, OAuth2Provider, oauth2_providers

PROVIDERS = list(oauth2_providers(TOOLS))  # the providers of the tools the app offers: DingTalk

def test_defaults_follow_the_region():
    settings = ToolSettings.from_env({"DINGTALK_CREDENTIAL_PROVIDER_NAME": "dt",
                                      "AGENT_IDENTITY_REGION_ID": "cn-shanghai"}, PROVIDERS)
    assert settings == ToolSettings(oauth2={"DINGTALK": ProviderSettings("dt", "https://api.dingtalk.com")},
                                    region_id="cn-shanghai", sts_endpoint="sts.cn-shanghai.aliyuncs.com",
                                    http_timeout_seconds=10.0, oss_endpoint="", oss_region="cn-shanghai",
                                    oss_max_object_bytes=65536)


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        ToolSettings.from_env({"DINGTALK_API_BASE": "api.dingtalk.com", "TOOLS_HTTP_TIMEOUT_SECONDS": "soon",
                               "OSS_ENDPOINT": "ftp://oss.example", "OSS_MAX_OBJECT_BYTES": "0"}, PROVIDERS)
    text = str(caught.value)
    for name in ("DINGTALK_CREDENTIAL_PROVIDER_NAME", "DINGTALK_API_BASE", "TOOLS_HTTP_TIMEOUT_SECONDS",
                 "OSS_ENDPOINT", "OSS_MAX_OBJECT_BYTES"):
        assert name in text


def test_a_shared_reader_collects_instead_of_raising():
    reader = EnvReader({})
    ToolSettings.read(reader, DEFAULT_REGION, PROVIDERS)
    assert reader.problems and "DINGTALK_CREDENTIAL_PROVIDER_NAME" in reader.problems[0]


def test_scopes_and_urls_are_normalised():
    settings = ToolSettings.from_env({"DINGTALK_CREDENTIAL_PROVIDER_NAME": "dt",
                                      "DINGTALK_SCOPES": "openid,corpid  Contact.User.Read",
                                      "DINGTALK_API_BASE": "http://127.0.0.1:9/",
                                      "STS_ENDPOINT": "http://127.0.0.1:8/"}, PROVIDERS)
    assert settings.oauth2["DINGTALK"].scopes == ("openid", "corpid", "Contact.User.Read")
    assert (settings.oauth2["DINGTALK"].api_base, settings.sts_endpoint) == ("http://127.0.0.1:9",
                                                                             "http://127.0.0.1:8")


def test_every_provider_a_tool_uses_has_its_own_variables():
    feishu = OAuth2Provider(env_prefix="FEISHU", label="Feishu", api_base="https://open.feishu.cn")
    with pytest.raises(ConfigError) as caught:
        ToolSettings.from_env({"FEISHU_API_BASE": "open.feishu.cn"}, providers=[feishu])
    assert "FEISHU_CREDENTIAL_PROVIDER_NAME is required" in str(caught.value)
    assert "FEISHU_API_BASE must be an http(s) base URL" in str(caught.value)
    settings = ToolSettings.from_env({"FEISHU_CREDENTIAL_PROVIDER_NAME": "feishu-oauth"}, providers=[feishu])
    assert settings.oauth2 == {"FEISHU": ProviderSettings("feishu-oauth", "https://open.feishu.cn")}


@pytest.mark.parametrize(("endpoint", "host", "protocol"), [
    ("sts.cn-beijing.aliyuncs.com", "sts.cn-beijing.aliyuncs.com", "https"),
    ("https://sts.aliyuncs.com", "sts.aliyuncs.com", "https"),
    ("http://127.0.0.1:8123", "127.0.0.1:8123", "http"),
])
def test_sdk_clients_get_host_and_protocol_from_the_endpoint(endpoint, host, protocol):
    credential = StsCredential(access_key_id="STS.example", access_key_secret="not-a-real-secret",
                               security_token="not-a-real-token", expiration=datetime.now(timezone.utc))
    settings = ToolSettings(http_timeout_seconds=2.5)
    no_async_sdk = None  # only async SDKs (OSS) use the shared aiohttp session
    session = CloudSession(credential, settings, no_async_sdk)  # type: ignore[arg-type]
    config = session.client(lambda config: config, endpoint)  # what an SDK client class is given
    assert (config.endpoint, config.protocol, config.read_timeout) == (host, protocol, 2500)
    assert isinstance(session.client(StsClient, endpoint), StsClient)
