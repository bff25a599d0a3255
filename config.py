"""Environment-variable helpers shared by every package's settings.

Each package owns a small frozen settings dataclass with `from_env(env)`; they all report missing or bad
variables through `ConfigError`, which names every offending variable at once so start-up fails with one
clear message instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

from outbound import SDK_THREADS

# The Agent Identity SDK's default region; every package falls back to it, so they agree when it is unset.
DEFAULT_REGION = "cn-beijing"
# The form of an Alibaba Cloud region id: cn-beijing, ap-southeast-1.
REGION_ID_PATTERN = r"^[a-z]{2,}(-[a-z0-9]+)+$"
# Where every variable is described. The deployed zip carries no README, so the message names the section.
DOCS_REFERENCE = "the README's \"Configuration\" section (README-CN.md: \"配置\"), one row per variable"
APP_ENVS = ("development", "production")


class ConfigError(Exception):
    """Configuration is missing or invalid; the message names each variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems)
                         + f"\nSee {DOCS_REFERENCE}.")


def is_production(env: Mapping[str, str]) -> bool:
    """Running on Function Compute (it sets `FC_*` variables) or declared so with APP_ENV=production."""
    declared = (env.get("APP_ENV") or "").strip().lower()
    return declared == "production" or (declared != "development" and any(k.startswith("FC_") for k in env))


class EnvReader:
    """Reads variables from a mapping and collects problems instead of failing on the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def str(self, name: str, default: str | None = None, *, required: bool = False, why: str = "") -> str:
        value = (self.env.get(name) or "").strip()
        if value:
            return value
        if required:
            self.problems.append(f"{name} is required" + (f" ({why})" if why else ""))
        return default or ""

    def first(self, *names: str, default: str = "") -> str:
        """The first of `names` that is set (e.g. MODEL_API_KEY, then DASHSCOPE_API_KEY)."""
        for name in names:
            value = (self.env.get(name) or "").strip()
            if value:
                return value
        return default

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        return int(self.float(name, default, minimum=minimum))

    def float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        raw = (self.env.get(name) or "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {raw!r}")
            return default
        if minimum is not None and value < minimum:
            self.problems.append(f"{name} must be >= {minimum}, got {raw!r}")
            return default
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = (self.env.get(name) or "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def choice(self, name: str, choices: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        """One of `choices` (compared case-insensitively; returned as listed)."""
        raw = (self.env.get(name) or "").strip()
        if not raw:
            return default
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice.upper() if upper else choice
        self.problems.append(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return default

    def url(self, name: str, default: str = "", *, required: bool = False, why: str = "",
            base: bool = False) -> str:
        """An http(s) URL with a host, without a trailing slash; `base`: no query or fragment either (other
        paths are appended to it)."""
        value = self.str(name, default, required=required, why=why).rstrip("/")
        if value and not is_http_url(value, base=base):
            kind = "an http(s) base URL without query or fragment" if base else "an http(s) URL"
            self.problems.append(f"{name} must be {kind}, e.g. https://example.com/path, got {value!r}")
        return value

    def endpoint(self, name: str, default: str = "") -> str:
        """An Alibaba Cloud SDK endpoint: `host[:port]`, or `http(s)://host[:port]` (see `sdk_endpoint`)."""
        value = self.str(name, default).rstrip("/")
        if value and not is_http_url(value if "://" in value else f"https://{value}", base=True, path=False):
            self.problems.append(f"{name} must be host[:port] or http(s)://host[:port], got {value!r}")
        return value

    def origins(self, name: str) -> list[str]:
        """Browser origins (`https://host[:port]`, no path) or `*`."""
        origins = self.list(name, [])
        bad = [o for o in origins if o != "*" and not is_http_url(o, base=True, path=False)]
        if bad:
            self.problems.append(f"{name} must list origins such as https://chat.example.com (or *), "
                                 f"got {bad}")
        return origins

    def list(self, name: str, default: list[str], sep: str | None = None) -> list[str]:
        """A list split on `sep` (default: whitespace or commas)."""
        raw = (self.env.get(name) or "").strip()
        if not raw:
            return list(default)
        parts = raw.split(sep) if sep else raw.replace(",", " ").split()
        return [p.strip() for p in parts if p.strip()]

    def check(self) -> None:
        """Raise ConfigError naming every problem collected so far."""
        if self.problems:
            raise ConfigError(self.problems)


def is_http_url(value: str, *, base: bool, path: bool = True) -> bool:
    """http(s) with a host and a valid port; `base`: no query or fragment; not `path`: no path either."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        return False
    return not (base and (parts.query or parts.fragment)) and (path or parts.path in ("", "/"))


def sdk_endpoint(value: str) -> tuple[str, str]:
    """An endpoint setting as the Alibaba Cloud SDKs' `Config` wants it: (host[:port], protocol).

    `host` and `https://host` mean HTTPS; `http://127.0.0.1:PORT` reaches a local emulator (the SDKs take the
    scheme only through `protocol`, never inside `endpoint`)."""
    parts = urlsplit(value.strip() if "://" in value else f"https://{value.strip()}")
    return parts.netloc, parts.scheme


def sdk_config(credential: CredentialClient, region_id: str, endpoint: str | None, *,
               timeout_seconds: float) -> SdkConfig:
    """How every Alibaba Cloud SDK client here is configured: credential, region, endpoint (None: the SDK's
    default for the region), bounded timeouts (connecting at most 5 s) and a connection pool per endpoint as
    large as the thread pool its calls run in (outbound.sdk_call)."""
    timeout_ms = int(timeout_seconds * 1000)
    config = SdkConfig(credential=credential, region_id=region_id, read_timeout=timeout_ms,
                       connect_timeout=min(timeout_ms, 5000), max_idle_conns=SDK_THREADS)
    if endpoint:
        config.endpoint, config.protocol = sdk_endpoint(endpoint)
    return config
