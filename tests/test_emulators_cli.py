"""`python -m emulators` as a user runs it: a subprocess that writes the ready file and stops on a signal."""

from __future__ import annotations

import signal
import ssl

import httpx
import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_tea_openapi.utils_models import Config

from tests.support.emulators_cli import start_emulators, wait_for_ready_file

ENV_VARS = {  # docs/architecture.md, "emulators/"
    "AGENT_IDENTITY_REGION_ID", "AGENT_IDENTITY_DATA_ENDPOINT", "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME",
    "AGENT_IDENTITY_USE_STS", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "INBOUND_JWKS_URL", "INBOUND_JWT_ISSUER", "INBOUND_JWT_AUDIENCE", "DINGTALK_API_BASE",
    "DINGTALK_CREDENTIAL_PROVIDER_NAME", "STS_ENDPOINT", "OSS_ENDPOINT", "OSS_REGION", "MODEL_BASE_URL", "MODEL_API_KEY", "MODEL_NAME",
    "AGENTRUN_CONTROL_ENDPOINT", "IDENTITY_STATE_SECRET", "APP_REDIRECT_URI",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED", "SSL_CERT_FILE",
}
INFO_KEYS = {"idp_url", "agent_identity_url", "sts_url", "dingtalk_url", "model_url", "agentrun_url", "oss_url",
             "access_key_id", "access_key_secret", "workload_identity_name", "dingtalk_provider",
             "return_urls", "idp_issuer", "idp_audience", "model_service_name", "env", "ca_file",
             "idp_browser_url", "agent_identity_browser_url"}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_writes_the_ready_file_and_stops_cleanly(tmp_path, stop_signal):
    ready = tmp_path / "out" / "ready.json"
    callback = "http://127.0.0.1:18765/callback"
    process = start_emulators(tmp_path, "--ready-file", str(ready), "--return-url", callback,
                    "--latency", "agent_identity=25",
                    "--fault", 'sts={"fail_next": 2, "fail_kind": "throttle"}')
    try:
        info = wait_for_ready_file(ready, process)
        assert INFO_KEYS <= set(info) and ENV_VARS <= set(info["env"])
        assert info["return_urls"] == ["http://localhost:8090/callback", callback]
        assert info["env"]["MODEL_BASE_URL"] == info["model_url"] + "/v1"
        # HTTPS with the CA the emulators made at start, written next to the ready file and named in it.
        assert info["ca_file"] == info["env"]["SSL_CERT_FILE"] == str(ready) + ".ca.pem"
        assert all(info[f"{name}_url"].startswith("https://") for name in ("idp", "agent_identity", "sts",
                                                                          "dingtalk", "model", "agentrun"))
        http = httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]), trust_env=False)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # another process's CA
            httpx.get(f"{info['sts_url']}/emulator/faults", trust_env=False)
        assert http.get(f"{info['agent_identity_url']}/emulator/faults").json()["latency_ms"] == 25
        sts_faults = http.get(f"{info['sts_url']}/emulator/faults").json()
        assert (sts_faults["fail_next"], sts_faults["fail_kind"]) == (2, "throttle")

        data = DataClient(Config(access_key_id=info["access_key_id"],
                                 access_key_secret=info["access_key_secret"],
                                 endpoint=info["agent_identity_url"], region_id="cn-hangzhou",
                                 ca=info["ca_file"]))
        user_jwt = http.post(f"{info['idp_url']}/token",
                             data={"grant_type": "password", "username": "cli-user"}).json()["id_token"]
        wat = data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
            workload_identity_name=info["workload_identity_name"], user_token=user_jwt,
        )).body.workload_access_token
        started = data.get_resource_oauth2_token(ai.GetResourceOAuth2TokenRequest(
            resource_credential_provider_name=info["dingtalk_provider"], workload_access_token=wat,
            scopes=["openid", "corpid"], oauth2_flow="USER_FEDERATION", resource_oauth2_return_url=callback)).body
        assert started.authorization_url  # the extra return URL is registered
    finally:
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "emulators ready" in stderr and "emulators stopped" in stderr
    assert info["access_key_secret"] not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written to the working directory
    assert oct(ready.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("args, complaint", [
    (["--latency", "nowhere=5"], "NAME=MS"),
    (["--fault", "sts=[1]"], "JSON object"),
    (["--fault", 'sts={"fail_nxt": 1}'], "unknown fault fields"),
])
def test_cli_rejects_bad_arguments(tmp_path, args, complaint):
    process = start_emulators(tmp_path, *args)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2 and complaint in stderr


def test_cli_help_names_every_option(tmp_path):
    process = start_emulators(tmp_path, "--help")
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    for option in ("--ready-file", "--return-url", "--latency", "--fault", "--users-issuer", "--users-audience",
                   "--users-jwks-url", "--users-client-id", "--users-client-secret"):
        assert option in stdout
