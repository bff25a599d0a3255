"""Settings of the tools: where DingTalk, STS and OSS live, which DingTalk provider and scopes to ask for, and
how much of an OSS object a tool may read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

from config import DEFAULT_REGION, EnvReader

DEFAULT_DINGTALK_API_BASE = "https://api.dingtalk.com"
DEFAULT_DINGTALK_SCOPES = ("openid", "corpid")
# What the OSS tool hands the model at most: a model's context is the real limit, not OSS's.
DEFAULT_OSS_MAX_OBJECT_BYTES = 64 * 1024


@dataclass(frozen=True)
class ToolSettings:
    """Everything tools/ reads from the environment (see .env.example)."""

    dingtalk_provider: str
    dingtalk_api_base: str = DEFAULT_DINGTALK_API_BASE
    dingtalk_scopes: tuple[str, ...] = DEFAULT_DINGTALK_SCOPES
    region_id: str = DEFAULT_REGION
    sts_endpoint: str = f"sts.{DEFAULT_REGION}.aliyuncs.com"
    http_timeout_seconds: float = 10.0
    oss_endpoint: str = ""  # empty: the SDK's public endpoint of the object's region
    oss_region: str = DEFAULT_REGION
    oss_max_object_bytes: int = DEFAULT_OSS_MAX_OBJECT_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str], reader: EnvReader | None = None) -> Self:
        """Read the tools' variables; with a shared `reader` the caller reports every problem at once."""
        read = reader or EnvReader(env)
        provider = read.str("DINGTALK_CREDENTIAL_PROVIDER_NAME", required=True,
                            why="the Agent Identity credential provider that holds the DingTalk OAuth2 app")
        api_base = read.str("DINGTALK_API_BASE", DEFAULT_DINGTALK_API_BASE).rstrip("/")
        if urlsplit(api_base).scheme not in ("http", "https") or not urlsplit(api_base).netloc:
            read.problems.append(f"DINGTALK_API_BASE must be an http(s) URL, got {api_base!r}")
        scopes = tuple(read.list("DINGTALK_SCOPES", list(DEFAULT_DINGTALK_SCOPES)))
        region = read.str("AGENT_IDENTITY_REGION_ID", DEFAULT_REGION)
        sts_endpoint = read.str("STS_ENDPOINT", f"sts.{region}.aliyuncs.com").rstrip("/")
        timeout = read.float("TOOLS_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)
        oss_endpoint = read.str("OSS_ENDPOINT", "").rstrip("/")
        if oss_endpoint and urlsplit(oss_endpoint if "://" in oss_endpoint else f"//{oss_endpoint}").scheme \
                not in ("", "http", "https"):
            read.problems.append(f"OSS_ENDPOINT must be a host or an http(s) URL, got {oss_endpoint!r}")
        oss_region = read.str("OSS_REGION", region)
        max_bytes = read.int("OSS_MAX_OBJECT_BYTES", DEFAULT_OSS_MAX_OBJECT_BYTES, minimum=1)
        if reader is None:
            read.check()
        return cls(dingtalk_provider=provider, dingtalk_api_base=api_base, dingtalk_scopes=scopes,
                   region_id=region, sts_endpoint=sts_endpoint, http_timeout_seconds=timeout,
                   oss_endpoint=oss_endpoint, oss_region=oss_region, oss_max_object_bytes=max_bytes)
