"""Settings of the tools: where DingTalk and STS live and which DingTalk provider and scopes to ask for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from config import DEFAULT_REGION, EnvReader

DEFAULT_DINGTALK_API_BASE = "https://api.dingtalk.com"
DEFAULT_DINGTALK_SCOPES = ("openid", "corpid")


@dataclass(frozen=True)
class ToolSettings:
    """Everything tools/ reads from the environment (see .env.example)."""

    dingtalk_provider: str
    dingtalk_api_base: str = DEFAULT_DINGTALK_API_BASE
    dingtalk_scopes: tuple[str, ...] = DEFAULT_DINGTALK_SCOPES
    region_id: str = DEFAULT_REGION
    sts_endpoint: str = f"sts.{DEFAULT_REGION}.aliyuncs.com"
    http_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], reader: EnvReader | None = None) -> Self:
        """Read the tools' variables; with a shared `reader` the caller reports every problem at once."""
        read = reader or EnvReader(env)
        provider = read.str("DINGTALK_CREDENTIAL_PROVIDER_NAME", required=True,
                            why="the Agent Identity credential provider that holds the DingTalk OAuth2 app")
        api_base = read.url("DINGTALK_API_BASE", DEFAULT_DINGTALK_API_BASE, base=True)
        scopes = tuple(read.list("DINGTALK_SCOPES", list(DEFAULT_DINGTALK_SCOPES)))
        region = read.str("AGENT_IDENTITY_REGION_ID", DEFAULT_REGION)
        sts_endpoint = read.endpoint("STS_ENDPOINT", f"sts.{region}.aliyuncs.com")
        timeout = read.float("TOOLS_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)
        if reader is None:
            read.check()
        return cls(dingtalk_provider=provider, dingtalk_api_base=api_base, dingtalk_scopes=scopes,
                   region_id=region, sts_endpoint=sts_endpoint, http_timeout_seconds=timeout)
