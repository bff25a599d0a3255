"""The chat model, from one setting: `MODEL_NAME`, as LangChain's `init_chat_model` names models.

This is the one place that makes the model. With the default provider `openai` it talks to any
OpenAI-compatible endpoint: configured directly (`MODEL_BASE_URL` + `MODEL_API_KEY`) or taken from an
AgentRun model service (`MODEL_SERVICE_NAME`) through the control-plane action `GetModelService`, on the
first request (no network call at start-up), once per process, with the SDK's pooled call
(`outbound.sdk_call`). Another provider is `MODEL_NAME=<provider>:<model>` plus its LangChain package in
requirements.in; it reads its own key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai
from alibabacloud_credentials.client import Client as CredentialClient
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel

from outbound import import_off_loop, sdk_call, sdk_config
from settings.agent import OPENAI_COMPATIBLE, AgentSettings

if TYPE_CHECKING:
    from alibabacloud_agentrun20250910.client import Client as AgentRunClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible base URL, its key and the model names it serves."""

    base_url: str
    api_key: str = field(repr=False)
    model_names: tuple[str, ...] = ()


class ModelUnavailable(Exception):
    """The model endpoint could not be determined (e.g. GetModelService failed). The message is safe to
    show."""


class DictChunkCompletions:
    """`AsyncOpenAI.chat.completions` for `ChatOpenAI(async_client=...)`, with streamed chunks left as dicts.

    The openai SDK builds a typed `ChatCompletionChunk` from every streamed chunk, and langchain-openai turns
    each straight back into a dict; here that round trip never happens. A streamed call is posted with
    `client.post`, the SDK's documented way to make an untyped request (same client options, retries, errors
    and SSE parsing), so its chunks stay dicts, which langchain-openai reads as they are. Calls with per-call
    options, calls that are not streamed, and every other method go to the typed SDK unchanged.

    This is the one place that leans on a dependency's behaviour rather than its documented API (what
    langchain-openai does with the `async_client` it is given): docs/architecture.md, "The one dependency
    behaviour we lean on", says why it pays; tests/test_langchain_openai_contract.py pins exactly what it
    relies on.
    """

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        self._typed = client.chat.completions

    async def create(self, **params: Any) -> Any:
        if not params.get("stream") or any(name.startswith("extra_") or name == "timeout" for name in params):
            return await self._typed.create(**params)
        return await self._client.post("/chat/completions", body=params, cast_to=object, stream=True,
                                       stream_cls=openai.AsyncStream[object])

    def __getattr__(self, name: str) -> Any:
        """`with_raw_response`, `parse` and the rest: the typed SDK's."""
        return getattr(self._typed, name)


class ModelProvider:
    """Builds the process-wide chat model once, resolving the endpoint first when needed."""

    def __init__(self, settings: AgentSettings, credential: CredentialClient) -> None:
        self.settings = settings
        self._credential = credential  # the instance's own, signs GetModelService
        self._model: BaseChatModel | None = None
        # The model's own SDK client and connection pool (the SDK's aiohttp client), opened on the event loop
        # that serves requests and closed with the app (langchain-openai's default pool is shared by the whole
        # process, whatever loop uses it).
        self._sdk: openai.AsyncOpenAI | None = None
        self._endpoint: ModelEndpoint | None = None  # kept once resolved, even if making the model fails
        self._lock = asyncio.Lock()

    async def chat_model(self) -> BaseChatModel:
        if self._model is not None:
            return self._model
        async with self._lock:  # the first requests at once: one lookup, one model, one SDK client
            if self._model is not None:
                return self._model
            endpoint, sdk = None, None
            if self.settings.model_provider == OPENAI_COMPATIBLE:
                endpoint = self._endpoint = self._endpoint or await self._resolve_endpoint()
                sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key,
                                         timeout=self.settings.timeout_seconds,
                                         max_retries=self.settings.max_retries,
                                         http_client=openai.DefaultAioHttpClient(
                                             timeout=self.settings.timeout_seconds))
            try:
                # In a thread: `init_chat_model` imports the provider's LangChain package at its first call,
                # which would stall the event loop during the first request.
                self._model = await asyncio.to_thread(build_chat_model, self.settings, endpoint, sdk)
            except BaseException:
                if sdk is not None:
                    await sdk.close()
                raise
            self._sdk = sdk
        return self._model

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    def model_names(self) -> tuple[str, ...]:
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
        return await fetch_model_service(s, self._credential)


async def fetch_model_service(settings: AgentSettings, credential: CredentialClient) -> ModelEndpoint:
    """Look up the model service's OpenAI-compatible URL and key with AgentRun `GetModelService`, signed with
    the instance's credential (on AgentRun: the instance role's STS keys in the environment)."""
    name = settings.model_service_name
    assert name is not None
    # Imported here, off the event loop: a model configured by URL never needs the control-plane SDK.
    agentrun = await import_off_loop("alibabacloud_agentrun20250910.client")
    client = agentrun.Client(sdk_config(credential, settings.region_id, settings.control_endpoint,
                                        timeout_seconds=10.0))
    try:
        response = await sdk_call(client.get_model_service, name)
    except Exception as exc:  # SDK errors carry request details; keep only the code
        code = getattr(exc, "code", None) or type(exc).__name__
        log.warning("GetModelService %s failed: %s", name, code)
        raise ModelUnavailable(f"Could not look up model service {name!r} ({code}).") from None
    data = response.body.data if response.body else None
    provider = data.provider_settings if data else None
    if provider is None or not provider.base_url:
        raise ModelUnavailable(f"Model service {name!r} has no OpenAI-compatible base URL.")
    api_key = provider.api_key
    if not api_key and data.credential_name:  # the key is a stored credential, as the agentrun SDK reads it
        api_key = await _stored_credential(client, name, data.credential_name)
    if not api_key:
        raise ModelUnavailable(f"Model service {name!r} has neither an API key nor a credential holding one.")
    return ModelEndpoint(provider.base_url.rstrip("/"), api_key, tuple(provider.model_names or ()))


async def _stored_credential(client: AgentRunClient, service: str, credential: str) -> str | None:
    """GetCredential's secret: the API key a model service names instead of holding it inline."""
    try:
        response = await sdk_call(client.get_credential, credential)
    except Exception as exc:  # SDK errors carry request details; keep only the code
        code = getattr(exc, "code", None) or type(exc).__name__
        log.warning("GetCredential %s (for model service %s) failed: %s", credential, service, code)
        raise ModelUnavailable(f"Could not read the credential of model service {service!r} "
                               f"({code}).") from None
    data = response.body.data if response.body else None
    return data.credential_secret if data else None


def build_chat_model(settings: AgentSettings, endpoint: ModelEndpoint | None,
                     sdk: openai.AsyncOpenAI | None) -> BaseChatModel:
    """The stock LangChain chat model for `settings`; an OpenAI-compatible one is pointed at `endpoint`
    through `sdk`, its streamed calls through `DictChunkCompletions`."""
    if endpoint is None or sdk is None:
        return init_chat_model(settings.model_name, model_provider=settings.model_provider,
                               timeout=settings.timeout_seconds, max_retries=settings.max_retries)
    return init_chat_model(settings.model_name, model_provider=OPENAI_COMPATIBLE, base_url=endpoint.base_url,
                           api_key=endpoint.api_key, timeout=settings.timeout_seconds,
                           max_retries=settings.max_retries, stream_usage=True, root_async_client=sdk,
                           async_client=DictChunkCompletions(sdk),
                           # No per-chunk timer: `timeout` is the client's read timeout, which already bounds
                           # the silence between chunks, and a timer per chunk costs a task per token.
                           stream_chunk_timeout=None)
