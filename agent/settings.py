"""Agent configuration from environment variables (model endpoint, model name, timeouts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from config import EnvReader

DASHSCOPE_COMPATIBLE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
DEFAULT_REGION = "cn-hangzhou"


@dataclass(frozen=True)
class AgentSettings:
    """Where the model lives and how long to wait for it.

    Either `base_url` + `api_key` are known up front, or `model_service_name` names an AgentRun model service
    whose URL and key are looked up on first use (never at start-up: no network call before a request).
    """

    model_name: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    model_service_name: str | None
    control_endpoint: str | None
    region_id: str
    timeout_seconds: float
    max_retries: int
    # Signs GetModelService; on AgentRun these are the instance role's STS keys. Empty: the default chain.
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        read = EnvReader(env)
        base_url = read.str("MODEL_BASE_URL") or None
        service = read.str("MODEL_SERVICE_NAME") or None
        api_key = read.first("MODEL_API_KEY", "DASHSCOPE_API_KEY") or None
        if service and (base_url or api_key):
            set_too = " and ".join(name for name, value in (("MODEL_BASE_URL", base_url), ("MODEL_API_KEY or "
                                   "DASHSCOPE_API_KEY", api_key)) if value)
            read.problems.append(f"MODEL_SERVICE_NAME and {set_too} are both set: choose one model route (the "
                                 "AgentRun model service, or an endpoint and key) and unset the other")
        if not api_key and not service:
            read.problems.append("MODEL_API_KEY (or DASHSCOPE_API_KEY) is required, unless MODEL_SERVICE_NAME "
                                 "names an AgentRun model service to take the endpoint and key from")
        settings = cls(
            model_name=read.str("MODEL_NAME", "qwen-plus"),
            base_url=base_url or (None if service else DASHSCOPE_COMPATIBLE_URL),
            api_key=api_key,
            model_service_name=service,
            control_endpoint=read.str("AGENTRUN_CONTROL_ENDPOINT") or None,
            region_id=read.first("FC_REGION", "AGENT_IDENTITY_REGION_ID", default=DEFAULT_REGION),
            timeout_seconds=read.float("MODEL_TIMEOUT_SECONDS", 60.0, minimum=0.01),
            max_retries=read.int("MODEL_MAX_RETRIES", 1, minimum=0),
            access_key_id=read.str("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            access_key_secret=read.str("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
            security_token=read.str("ALIBABA_CLOUD_SECURITY_TOKEN"),
        )
        read.check()
        return settings
