"""Test-wide hygiene: never reach the internet, never probe the ECS metadata address, and trust the local
emulators' CA the way an operator trusts a corporate CA (`SSL_CERT_FILE`): every emulator serves HTTPS.

Also the local cloud: `cloud` is one set of running emulators for the whole session (stopped at the end);
`fresh_cloud` is the same cloud with faults and call counters cleared before the test.
"""

import os

import pytest

from emulators.tls import local_ca

for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
os.environ["SSL_CERT_FILE"] = str(local_ca().ca_file)  # this process's CA: every local cloud here uses it


@pytest.fixture(scope="session")
def cloud():
    """All emulators, started once per test session on free 127.0.0.1 ports."""
    from emulators import start_local_cloud

    with start_local_cloud() as local_cloud:
        yield local_cloud


@pytest.fixture
def fresh_cloud(cloud):
    """The session's emulators with faults and call counters reset (issued credentials stay valid)."""
    cloud.reset()
    return cloud


@pytest.fixture
def acs_config(cloud):
    """Builds the real SDK `Config` for an emulator, signed with the static AccessKey or given STS keys."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_tea_openapi.utils_models import Config

    def make(name: str, *, sts=None, access_key_secret: str | None = None, **options):
        if sts is not None:  # anything with access_key_id / access_key_secret / security_token
            credential = CredentialClient(CredentialConfig(
                type="sts", access_key_id=sts.access_key_id, access_key_secret=sts.access_key_secret,
                security_token=sts.security_token))
            return Config(credential=credential, endpoint=cloud.url(name), region_id="cn-hangzhou", **options)
        return Config(access_key_id=cloud.info["access_key_id"],
                      access_key_secret=access_key_secret or cloud.info["access_key_secret"],
                      endpoint=cloud.url(name), region_id="cn-hangzhou", **options)

    return make
