"""The one path to Agent Identity's data API: every call is the data client's pooled sync method in the
process's SDK thread pool (`outbound.sdk_call`; its `*_async` methods open a new TLS connection per call), and
every failure becomes a typed error with the SDK's own text left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_credentials.client import Client as CredentialClient

from identity.credentials import instance_credential_client
from identity.sdk_errors import translate
from outbound import sdk_call, sdk_config
from settings.identity import IdentitySettings

T = TypeVar("T")


class DataPlane:
    """Data clients for the region's endpoint; `instance_client` signs with the instance's own credentials
    (the runtime's role, or the AccessKey the settings name)."""

    def __init__(self, settings: IdentitySettings) -> None:
        self._settings = settings
        self.instance_credential = instance_credential_client(settings.access_key_id,
                                                              settings.access_key_secret,
                                                              settings.security_token)
        self.instance_client = self.client(self.instance_credential)

    def client(self, credential: CredentialClient) -> DataClient:
        return DataClient(sdk_config(credential, self._settings.region_id, self._settings.data_endpoint,
                                     timeout_seconds=self._settings.request_timeout_seconds))

    async def call(self, action: str, method: Callable[[Any], T], request: Any) -> T:
        """`method(request)` in the SDK thread pool; its failures become typed errors
        (identity/sdk_errors)."""
        try:
            return await sdk_call(method, request)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every SDK failure is translated, none is quoted
            raise translate(error, action, self._settings.data_endpoint) from None
