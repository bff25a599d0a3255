"""AgentRun control plane (2025-09-10) emulator: GetModelService, so the agent can resolve its model.

Wire format, read from alibabacloud_agentrun20250910 5.7.5 (`get_model_service_with_options_async`): ROA,
`GET /2025-09-10/agents/model-services/{modelServiceName}`, ACS3-signed, JSON body
`{"code","requestId","data": ModelService}` with camelCase keys. The OpenAI-compatible base URL and API key
live in `data.providerSettings.baseUrl` / `.apiKey` (model `ProviderSettings`); the model names in
`providerSettings.modelNames` and `modelInfoConfigs[].modelName`. A real service may instead reference a
stored credential by `credentialName` and leave `apiKey` empty; the key is then read with GetCredential
(`GET /2025-09-10/agents/credentials/{name}`, `data.credentialSecret`), as the official agentrun SDK does.
This emulator serves both shapes: a service with a `credential_name` answers the second one.

Chosen where not documented (emulators/chosen.py): `code`, `status` and `provider` values and the not-found
code; errors use the same lower-camel shape `{"code","message","requestId"}` (the SDK reads `Code` or `code`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators._server import Faults, emulator_app
from emulators.acs import AcsError, SignatureVerifier, new_request_id
from emulators.chosen import (AGENTRUN_PROVIDER, AGENTRUN_READY_STATUS, AGENTRUN_SUCCESS_CODE,
                              CODE_CREDENTIAL_NOT_FOUND, CODE_MODEL_SERVICE_NOT_FOUND)


@dataclass(frozen=True)
class ModelService:
    """One model service: where its OpenAI-compatible API is and the key to call it."""

    name: str
    base_url: str
    api_key: str
    model_names: tuple[str, ...]
    id: str = ""
    credential_name: str = ""  # set: the key lives in that stored credential, not inline (GetCredential)


def render_roa_error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message, "requestId": new_request_id()}, status_code=status)


class AgentRunEmulator:
    """`.app` serves GetModelService for the configured model services."""

    def __init__(self, *, verifier: SignatureVerifier, services: list[ModelService],
                 faults: Faults | None = None) -> None:
        self.services = {s.name: s for s in services}
        self._verifier = verifier
        routes = [Route("/2025-09-10/agents/model-services/{name}", self._get_model_service, methods=["GET"]),
                  Route("/2025-09-10/agents/credentials/{name}", self._get_credential, methods=["GET"])]
        self.app = emulator_app("agentrun", routes, render_roa_error, faults=faults)

    async def _get_model_service(self, request: Request) -> Response:
        try:
            await self._verifier.verify(request, await request.body())
        except AcsError as error:
            return render_roa_error(error.status, error.code, error.message)
        service = self.services.get(request.path_params["name"])
        if service is None:
            return render_roa_error(*CODE_MODEL_SERVICE_NOT_FOUND,
                                    f"Model service {request.path_params['name']!r} does not exist.")
        return JSONResponse({"code": AGENTRUN_SUCCESS_CODE, "requestId": new_request_id(), "data": {
            "modelServiceName": service.name,
            "modelServiceId": service.id or str(uuid.uuid5(uuid.NAMESPACE_URL, service.base_url)),
            "modelType": "llm",
            "provider": AGENTRUN_PROVIDER,
            "status": AGENTRUN_READY_STATUS,
            "providerSettings": {"baseUrl": service.base_url,
                                 "apiKey": "" if service.credential_name else service.api_key,
                                 "modelNames": list(service.model_names)},
            **({"credentialName": service.credential_name} if service.credential_name else {}),
            "modelInfoConfigs": [{"modelName": name} for name in service.model_names],
        }})


    async def _get_credential(self, request: Request) -> Response:
        """GetCredential: a stored outbound credential; `credentialSecret` is the model's API key."""
        try:
            await self._verifier.verify(request, await request.body())
        except AcsError as error:
            return render_roa_error(error.status, error.code, error.message)
        name = request.path_params["name"]
        service = next((s for s in self.services.values() if s.credential_name == name), None)
        if service is None:
            return render_roa_error(*CODE_CREDENTIAL_NOT_FOUND, f"Credential {name!r} does not exist.")
        return JSONResponse({"code": AGENTRUN_SUCCESS_CODE, "requestId": new_request_id(), "data": {
            "credentialName": name, "credentialAuthType": "api_key", "credentialSourceType": "external_llm",
            "credentialSecret": service.api_key, "enabled": True,
            "credentialPublicConfig": {"provider": AGENTRUN_PROVIDER}}})
