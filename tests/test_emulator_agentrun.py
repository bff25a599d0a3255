"""The AgentRun control-plane emulator through the real alibabacloud_agentrun20250910 client."""

from __future__ import annotations

import httpx
import pytest
from alibabacloud_agentrun20250910.client import Client as AgentRunClient
from alibabacloud_tea_openapi.exceptions import ClientException


async def test_get_model_service_points_at_the_model_emulator(acs_config, fresh_cloud):
    client = AgentRunClient(acs_config("agentrun"))
    body = (await client.get_model_service_async(fresh_cloud.info["model_service_name"])).body
    settings = body.data.provider_settings
    assert body.code == "SUCCESS" and body.request_id
    assert settings.base_url == fresh_cloud.env["MODEL_BASE_URL"]
    assert settings.api_key == fresh_cloud.env["MODEL_API_KEY"]
    assert settings.model_names == [fresh_cloud.env["MODEL_NAME"]]
    assert body.data.model_service_name == fresh_cloud.info["model_service_name"]
    models = httpx.get(f"{settings.base_url}/models", headers={"Authorization": f"Bearer {settings.api_key}"})
    assert models.status_code == 200  # the key really opens the model emulator


def test_unknown_model_service(acs_config):
    with pytest.raises(ClientException) as excinfo:
        AgentRunClient(acs_config("agentrun")).get_model_service("no-such-service")
    assert (excinfo.value.status_code, excinfo.value.code) == (404, "ModelServiceNotFound")


def test_signature_is_checked(acs_config, fresh_cloud):
    client = AgentRunClient(acs_config("agentrun", access_key_secret="wrong"))
    with pytest.raises(ClientException) as excinfo:
        client.get_model_service(fresh_cloud.info["model_service_name"])
    assert (excinfo.value.status_code, excinfo.value.code) == (400, "SignatureDoesNotMatch")
