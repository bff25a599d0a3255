"""Every setting of the app, read from the environment (with `.env` loaded into it) and checked together: one
error names every problem. One typed section per concern: server (and its limits), agent (the model),
identity (Agent Identity, inbound JWTs, the callback's sign-in), tools (their OAuth2 providers, STS, OSS).
The region is read once, here, and handed to the sections that default to it.

Reading them imports no LangChain, model client or server framework: `python app.py` checks its settings
before it opens its port (app.py), and builds the app only afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

from dotenv import load_dotenv

from settings.agent import AgentSettings
from settings.identity import IdentitySettings
from settings.reader import ConfigError, EnvReader, read_checked, read_region
from settings.server import ServerSettings
from settings.tools import OAuth2Provider, ToolSettings

__all__ = ["CallbackSettings", "ConfigError", "Settings", "console_variables", "load_env"]

ENV_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".env")
# What the region is, when the deployer asks.
REGION_HINT = "the region of your Agent Identity resources, e.g. cn-beijing"


@dataclass(frozen=True)
class Settings:
    """The agent's settings (`python app.py`)."""

    server: ServerSettings
    agent: AgentSettings
    identity: IdentitySettings
    tools: ToolSettings

    @classmethod
    def read(cls, read: EnvReader, providers: Iterable[OAuth2Provider]) -> Self:
        """Every section from one reader; `providers`: the OAuth2 providers whose variables are read, those of
        the tools the app offers (`tools.tool.oauth2_providers(tools.TOOLS)`)."""
        region = read_region(read, deploy=REGION_HINT)
        return cls(server=ServerSettings.read(read), agent=AgentSettings.read(read, region),
                   identity=IdentitySettings.read(read, region),
                   tools=ToolSettings.read(read, region, providers))

    @classmethod
    def from_env(cls, env: Mapping[str, str], providers: Iterable[OAuth2Provider]) -> Self:
        return read_checked(env, lambda read: cls.read(read, providers))


@dataclass(frozen=True)
class CallbackSettings:
    """`python app.py callback`: the authorization callback alone, for many users, where browsers reach it
    without a bearer token. It needs the server's and identity's variables only (no model, no tools)."""

    server: ServerSettings
    identity: IdentitySettings

    @classmethod
    def read(cls, read: EnvReader) -> Self:
        region = read_region(read, deploy=REGION_HINT)
        return cls(server=ServerSettings.read(read), identity=IdentitySettings.read(read, region,
                                                                                     callback_only=True))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return read_checked(env, cls.read)


def console_variables(providers: Iterable[OAuth2Provider], *, callback: bool = False) -> dict[str, str]:
    """What a deployer enters for production, by variable, with a hint (the packager prints them): every
    variable required there (those of `providers` included) and every one the sections mark as worth setting,
    of the agent or the callback."""
    read = EnvReader({"APP_ENV": "production"})
    if callback:
        CallbackSettings.read(read)
    else:
        Settings.read(read, providers)
    return read.deploy


def load_env(path: str = ENV_FILE) -> dict[str, str]:
    """The process environment, after `.env` (next to app.py) was loaded into it: a variable already set
    always wins, and a provider's own key placed in `.env` (e.g. ANTHROPIC_API_KEY) reaches its package."""
    load_dotenv(path, override=False)
    return dict(os.environ)
