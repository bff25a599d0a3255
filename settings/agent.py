"""Agent configuration from environment variables: which model, where it is, how long to wait for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from settings.reader import EnvReader, read_section

DASHSCOPE_COMPATIBLE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
OPENAI_COMPATIBLE = "openai"  # any OpenAI-compatible endpoint: DashScope, an AgentRun model service, ...


@dataclass(frozen=True)
class AgentSettings:
    """Where the model lives and how long to wait for it.

    With the `openai` provider, either `base_url` + `api_key` are known up front, or `model_service_name`
    names an AgentRun model service whose URL and key are looked up on first use (never at start-up: no
    network call before a request). Another provider's LangChain package reads its own key.
    """

    model_name: str
    model_provider: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    model_service_name: str | None
    control_endpoint: str | None
    region_id: str
    timeout_seconds: float
    max_retries: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return read_section(env, cls.read)

    @classmethod
    def read(cls, read: EnvReader, region: str) -> Self:
        """`region`: where the AgentRun model service is looked up, unless FC_REGION (the platform's) says."""
        base_url = read.url("MODEL_BASE_URL") or None
        service = read.str("MODEL_SERVICE_NAME") or None
        api_key = read.first("MODEL_API_KEY", "DASHSCOPE_API_KEY") or None
        if service and (base_url or api_key):
            set_too = " and ".join(name for name, value in (("MODEL_BASE_URL", base_url), ("MODEL_API_KEY or "
                                   "DASHSCOPE_API_KEY", api_key)) if value)
            read.problems.append(f"MODEL_SERVICE_NAME and {set_too} are both set: choose one model route "
                                 "(the AgentRun model service, or an endpoint and key) and unset the other")
        # One setting names the model, LangChain's init_chat_model style: "qwen-plus" (any OpenAI-compatible
        # endpoint) or "<provider>:<model>", e.g. "anthropic:claude-sonnet-4-5" with langchain-anthropic.
        provider, _, model_name = read.str("MODEL_NAME", "qwen-plus").rpartition(":")
        provider = provider or OPENAI_COMPATIBLE
        if not model_name:
            read.problems.append("MODEL_NAME must name a model, e.g. qwen-plus or "
                                 "anthropic:claude-sonnet-4-5")
        if provider == OPENAI_COMPATIBLE and not api_key and not service:
            read.missing("MODEL_API_KEY", "MODEL_API_KEY (or DASHSCOPE_API_KEY) is required, unless "
                         "MODEL_SERVICE_NAME names an AgentRun model service to take the endpoint and key "
                         "from",
                         deploy="your DashScope API key (or set MODEL_SERVICE_NAME to use an AgentRun model "
                                "service)")
        return cls(
            model_name=model_name or "qwen-plus",
            model_provider=provider,
            base_url=base_url or (None if service else DASHSCOPE_COMPATIBLE_URL),
            api_key=api_key,
            model_service_name=service,
            control_endpoint=read.endpoint("AGENTRUN_CONTROL_ENDPOINT") or None,
            region_id=read.region("FC_REGION", region),
            timeout_seconds=read.float("MODEL_TIMEOUT_SECONDS", 60.0, minimum=0.01),
            max_retries=read.int("MODEL_MAX_RETRIES", 1, minimum=0),
        )
