"""Settings of the tools: each OAuth2 provider's credential provider, scopes and API, where STS and OSS live,
and how much of an OSS object a tool may read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Self

from settings.reader import DEFAULT_REGION, EnvReader, read_section


@dataclass(frozen=True)
class OAuth2Provider:
    """An API the users authorize the agent for, through an Agent Identity OAuth2 credential provider. The
    tools declare theirs (tools/tool.py, `OAuth2`); which ones are read is the caller's list."""

    # names its variables: DINGTALK -> DINGTALK_CREDENTIAL_PROVIDER_NAME, DINGTALK_SCOPES, ...
    env_prefix: str
    label: str  # the name users know it by, in the sentences the model relays
    api_base: str  # the default of <PREFIX>_API_BASE

    @property
    def code(self) -> str:
        """The prefix of its failure codes in `tool_finished` events (`dingtalk_timeout`, ...)."""
        return self.env_prefix.lower()


@dataclass(frozen=True)
class ProviderSettings:
    """One OAuth2 provider's variables (named after its `env_prefix`)."""

    credential_provider: str  # <PREFIX>_CREDENTIAL_PROVIDER_NAME: the Agent Identity credential provider
    api_base: str  # <PREFIX>_API_BASE
    scopes: tuple[str, ...] = ()  # <PREFIX>_SCOPES; empty: each tool's own scopes

    @staticmethod
    def variables(provider: OAuth2Provider) -> tuple[str, str, str]:
        """Its variable names: credential provider, API base, scopes."""
        prefix = provider.env_prefix
        return f"{prefix}_CREDENTIAL_PROVIDER_NAME", f"{prefix}_API_BASE", f"{prefix}_SCOPES"

    @classmethod
    def read(cls, read: EnvReader, provider: OAuth2Provider) -> Self:
        name_var, api_var, scopes_var = cls.variables(provider)
        credential_provider = read.str(
            name_var, required=True, why=f"the {provider.label} OAuth2 credential provider in Agent Identity")
        api_base = read.url(api_var, provider.api_base, base=True)
        return cls(credential_provider=credential_provider, api_base=api_base,
                   scopes=tuple(read.list(scopes_var, [])))


# What the OSS tool hands the model at most: a model's context is the real limit, not OSS's.
DEFAULT_OSS_MAX_OBJECT_BYTES = 64 * 1024


@dataclass(frozen=True)
class ToolSettings:
    """Everything tools/ reads from the environment (see .env.example)."""

    oauth2: Mapping[str, ProviderSettings] = field(default_factory=dict)  # by provider env_prefix
    region_id: str = DEFAULT_REGION
    sts_endpoint: str = f"sts.{DEFAULT_REGION}.aliyuncs.com"
    http_timeout_seconds: float = 10.0
    oss_endpoint: str = ""  # empty: the SDK's public endpoint of the object's region
    oss_region: str = DEFAULT_REGION
    oss_max_object_bytes: int = DEFAULT_OSS_MAX_OBJECT_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str], providers: Iterable[OAuth2Provider] = ()) -> Self:
        """The tools' variables alone, and those of `providers` (e.g. `oauth2_providers(tools.TOOLS)`)."""
        listed = list(providers)
        return read_section(env, lambda read, region: cls.read(read, region, listed))

    @classmethod
    def read(cls, read: EnvReader, region: str, providers: Iterable[OAuth2Provider]) -> Self:
        """The tools' variables and those of every OAuth2 provider in `providers`."""
        oauth2 = {provider.env_prefix: ProviderSettings.read(read, provider) for provider in providers}
        sts_endpoint = read.endpoint("STS_ENDPOINT", f"sts.{region}.aliyuncs.com")
        timeout = read.float("TOOLS_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1)
        oss_endpoint = read.endpoint("OSS_ENDPOINT")
        oss_region = read.region("OSS_REGION", region)
        max_bytes = read.int("OSS_MAX_OBJECT_BYTES", DEFAULT_OSS_MAX_OBJECT_BYTES, minimum=1)
        return cls(oauth2=oauth2, region_id=region, sts_endpoint=sts_endpoint, http_timeout_seconds=timeout,
                   oss_endpoint=oss_endpoint, oss_region=oss_region, oss_max_object_bytes=max_bytes)
