"""Reading environment variables: `EnvReader` collects every problem instead of failing on the first, and
`ConfigError` names them all at once, so start-up fails with one clear message instead of a traceback.

A reader also remembers what a deployer must enter (`deploy`: a required variable and why, or one the reader
marks as worth setting): the packager's console instructions come from there, not from a list of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from outbound import REGION_ID_PATTERN

# The Agent Identity SDK's default region, and so the region's (`read_region`).
DEFAULT_REGION = "cn-beijing"
# Where every variable is described. The deployed zip carries no README, so the message names the section.
DOCS_REFERENCE = "the README's \"Configuration\" section (README-CN.md: \"配置\"), one row per variable"
APP_ENVS = ("development", "production")

Section = TypeVar("Section")


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
        # What a deployer enters, in reading order: each required variable (and why), and each variable read
        # with a `deploy` hint.
        self.deploy: dict[str, str] = {}

    def str(self, name: str, default: str | None = None, *, required: bool = False, why: str = "",
            deploy: str = "") -> str:
        if deploy or required:
            self.deploy.setdefault(name, deploy or why)
        value = (self.env.get(name) or "").strip()
        if value:
            return value
        if required:
            self.problems.append(f"{name} is required" + (f" ({why})" if why else ""))
        return default or ""

    def missing(self, name: str, problem: str, *, deploy: str) -> None:
        """A requirement `str(required=True)` cannot state (it depends on other variables): `problem` for the
        error, `deploy` for the console instructions."""
        self.deploy.setdefault(name, deploy)
        self.problems.append(problem)

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
            base: bool = False, deploy: str = "") -> str:
        """An http(s) URL with a host, without a trailing slash; `base`: no query or fragment either (other
        paths are appended to it)."""
        value = self.str(name, default, required=required, why=why, deploy=deploy).rstrip("/")
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

    def region(self, name: str, default: str, *, deploy: str = "") -> str:
        """An Alibaba Cloud region id (cn-beijing, ap-southeast-1)."""
        value = self.str(name, default, deploy=deploy)
        if not re.match(REGION_ID_PATTERN, value):
            self.problems.append(f"{name} must be a region id such as cn-beijing, got {value!r}")
            return default
        return value

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


def read_checked(env: Mapping[str, str], read_all: Callable[[EnvReader], Section]) -> Section:
    """What `read_all` reads from `env` with one reader; raises ConfigError naming every problem."""
    read = EnvReader(env)
    value = read_all(read)
    read.check()
    return value


def read_section(env: Mapping[str, str], section: Callable[[EnvReader, str], Section]) -> Section:
    """One section alone (a test, a script), with the region it defaults to, checked: `section(read, region)`
    is how `settings.Settings` reads it among the others."""
    return read_checked(env, lambda read: section(read, read_region(read)))


def read_region(read: EnvReader, *, deploy: str = "") -> str:
    """The region: of the Agent Identity resources, and the default of every other region setting (STS, OSS,
    the model service lookup). Read once per reading of the settings, by this one rule."""
    return read.region("AGENT_IDENTITY_REGION_ID", DEFAULT_REGION, deploy=deploy)
