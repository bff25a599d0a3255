"""The chat model: a `ChatOpenAI` on any OpenAI-compatible endpoint.

The endpoint is either configured directly (`MODEL_BASE_URL` + `MODEL_API_KEY`) or taken from an AgentRun
model service (`MODEL_SERVICE_NAME`) through the control-plane action `GetModelService`. That lookup happens
on the first request, not at start-up (no network call before traffic), once per process, and with the SDK's
async call so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.settings import AgentSettings
from config import sdk_endpoint

if TYPE_CHECKING:
    import aiohttp
    from langchain_openai import ChatOpenAI
    from openai import AsyncOpenAI

# Connections to the model kept open: one per concurrent stream, up to this many.
MAX_MODEL_CONNECTIONS = 200

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible base URL, its key and the model names it serves."""

    base_url: str
    api_key: str = field(repr=False)
    model_names: tuple[str, ...] = ()


class ModelUnavailable(Exception):
    """The model endpoint could not be determined (e.g. GetModelService failed). The message is safe to show."""


class ModelProvider:
    """Builds the process-wide `ChatOpenAI` once, resolving the endpoint first when needed."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self._model: ChatOpenAI | None = None
        self._clients: ModelClients | None = None  # our own: they live and die with this app's event loop
        self._endpoint: ModelEndpoint | None = None
        self._lock = asyncio.Lock()

    async def endpoint(self) -> ModelEndpoint:
        if self._endpoint is None:
            async with self._lock:
                if self._endpoint is None:
                    self._endpoint = await self._resolve_endpoint()
        return self._endpoint

    async def chat_model(self) -> ChatOpenAI:
        if self._model is None:
            self._clients = model_clients(self.settings, await self.endpoint())
            self._model = build_chat_model(self.settings, self._clients)
        return self._model

    async def aclose(self) -> None:
        if self._clients is not None:
            await self._clients.aclose()

    async def model_names(self) -> tuple[str, ...]:
        """Names `GET /models` lists; the configured one first. Resolved only if already known."""
        names = [self.settings.model_name]
        if self._endpoint is not None:
            names += [n for n in self._endpoint.model_names if n not in names]
        return tuple(names)

    async def _resolve_endpoint(self) -> ModelEndpoint:
        s = self.settings
        if s.model_service_name is None:
            assert s.base_url is not None and s.api_key is not None
            return ModelEndpoint(s.base_url, s.api_key)
        return await fetch_model_service(s)


async def fetch_model_service(settings: AgentSettings) -> ModelEndpoint:
    """Look up the model service's OpenAI-compatible URL and key with AgentRun `GetModelService`.

    Signed with the instance's credential (on AgentRun: the instance role's STS keys in the environment).
    """
    from alibabacloud_agentrun20250910.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    from identity.credentials import instance_credential_client

    name = settings.model_service_name
    assert name is not None
    credential = instance_credential_client(settings.access_key_id, settings.access_key_secret,
                                            settings.security_token)
    config = Config(region_id=settings.region_id, read_timeout=10_000, connect_timeout=5_000, credential=credential)
    if settings.control_endpoint:
        config.endpoint, config.protocol = sdk_endpoint(settings.control_endpoint)
    try:
        response = await Client(config).get_model_service_async(name)
    except Exception as exc:  # SDK errors carry request details; keep only the code
        code = getattr(exc, "code", None) or type(exc).__name__
        log.warning("GetModelService %s failed: %s", name, code)
        raise ModelUnavailable(f"Could not look up model service {name!r} ({code}).") from None
    data = response.body.data if response.body else None
    provider = data.provider_settings if data else None
    if provider is None or not provider.base_url:
        raise ModelUnavailable(f"Model service {name!r} has no OpenAI-compatible base URL.")
    api_key = provider.api_key or settings.api_key
    if not api_key:
        raise ModelUnavailable(f"Model service {name!r} has no API key; set MODEL_API_KEY.")
    return ModelEndpoint(provider.base_url.rstrip("/"), api_key, tuple(provider.model_names or ()))


@dataclass
class ModelClients:
    """The model's HTTP clients: aiohttp for streamed calls (`agent.completions`), the openai SDK for the rest."""

    sdk: AsyncOpenAI
    http: aiohttp.ClientSession
    proxy: str | None = None  # from HTTP(S)_PROXY / NO_PROXY, read once

    async def aclose(self) -> None:
        await self.http.close()
        await self.sdk.close()


def model_clients(settings: AgentSettings, endpoint: ModelEndpoint) -> ModelClients:
    """Clients for `endpoint`; call from the event loop that will use them (aiohttp binds to it)."""
    import ssl

    import aiohttp
    import certifi
    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=settings.timeout_seconds,
                      max_retries=settings.max_retries)
    # As the SDK's httpx client: certifi's CA bundle, proxies from the environment.
    connector = aiohttp.TCPConnector(limit=MAX_MODEL_CONNECTIONS,
                                     ssl=ssl.create_default_context(cafile=certifi.where()))
    return ModelClients(sdk, aiohttp.ClientSession(connector=connector), environment_proxy(endpoint.base_url))


def environment_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY and NO_PROXY name for `url`, if any.

    Read once here: aiohttp's `trust_env=True` reads them again, and `~/.netrc` too, on every request,
    which measured 0.6 ms per model call on loopback.
    """
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    if not parts.hostname or proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


def build_chat_model(settings: AgentSettings, clients: ModelClients) -> ChatOpenAI:
    """A streaming `ChatOpenAI` whose streamed calls go straight over aiohttp (`agent.completions`) and whose
    tool binding is reused (`agent.tool_binding`)."""
    from agent.completions import JsonChatCompletions
    from agent.tool_binding import ToolBindingChatOpenAI

    completions = JsonChatCompletions(clients.sdk, clients.http, proxy=clients.proxy,
                                      timeout_seconds=settings.timeout_seconds, max_retries=settings.max_retries)
    return ToolBindingChatOpenAI(
        model=settings.model_name,
        base_url=str(clients.sdk.base_url),
        api_key=clients.sdk.api_key,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
        streaming=True,
        stream_usage=True,
        stream_chunk_timeout=None,  # JsonChatCompletions bounds the silence between events itself
        root_async_client=clients.sdk,
        async_client=completions,
    )
