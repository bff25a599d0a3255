"""`@tool(credential)`: a tool is one async function, and the credential kind says what it acts with.

    @tool(OAuth2(DINGTALK, ["openid", "corpid"], purpose="Write to DingTalk document"),
          args_schema=WriteDocumentArgs)
    async def write_dingtalk_document(user: UserSession, document_id: str, content: str) -> str:
        '''What the model reads.'''

    @tool(Sts(["oss:GetObject"], resources=object_resource), args_schema=ReadOssObjectArguments)
    async def read_oss_object(cloud: CloudSession, bucket: str, key: str) -> str: ...

`OAuth2`: the signed-in user's own token for a provider; the function gets a `UserSession` (the token and the
provider's pooled HTTP client). `Sts`: the agent's workload identity, as STS credentials narrowed by a session
policy to the named RAM actions (and, with `resources`, to the resources of this one call); the function gets
a `CloudSession`. Either way the function returns the sentence the model relays and raises `ToolFailed` for a
failure it words itself (`credential_rejected=True` when the service refused the credential: it is then run
once more with a fresh one). tools/toolbox.py brings the rest, the same for every tool. A tool is listed in
`tools.TOOLS`; nothing registers itself by being imported.

A provider's variables are named after its `env_prefix`: `<PREFIX>_CREDENTIAL_PROVIDER_NAME` (the Agent
Identity credential provider, required), `<PREFIX>_SCOPES` and `<PREFIX>_API_BASE` (settings/tools.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from outbound import SdkConfig, sdk_config
from settings.tools import OAuth2Provider
from tools.validation import NoArguments

if TYPE_CHECKING:
    import aiohttp

    from identity.credentials import StsCredential
    from settings.tools import ToolSettings

__all__ = ["CloudSession", "OAuth2", "OAuth2Provider", "Sts", "Tool", "ToolFailed", "UserSession",
           "oauth2_providers", "session_policy", "tool"]

SdkClient = TypeVar("SdkClient")
ToolFunction = Callable[..., Awaitable[str]]
# The RAM resources one call touches, from the tool's (validated) arguments, e.g. one OSS object's ARN.
Resources = Callable[..., Sequence[str]]
ANY_RESOURCE = ("*",)


@dataclass(frozen=True, init=False)
class OAuth2:
    """Acts with the signed-in user's own token for `provider`; `purpose` is what the user is asked to
    authorize ("Write to DingTalk document")."""

    provider: OAuth2Provider
    scopes: tuple[str, ...]
    purpose: str

    def __init__(self, provider: OAuth2Provider, scopes: Iterable[str], *, purpose: str) -> None:
        object.__setattr__(self, "provider", provider)
        object.__setattr__(self, "scopes", tuple(scopes))
        object.__setattr__(self, "purpose", purpose)

    @property
    def label(self) -> str:
        return self.provider.label

    @property
    def code(self) -> str:
        return self.provider.code


@dataclass(frozen=True, init=False)
class Sts:
    """Acts with the agent's own workload identity: STS credentials allowing only `actions`, on the resources
    `resources` names for a call's arguments (without it, on any resource the role may reach)."""

    actions: tuple[str, ...]
    resources: Resources | None = None
    label = "Alibaba Cloud"
    code = "aliyun"

    def __init__(self, actions: Iterable[str], *, resources: Resources | None = None) -> None:
        object.__setattr__(self, "actions", tuple(actions))
        object.__setattr__(self, "resources", resources)

    def policy(self, arguments: dict[str, Any]) -> str | None:
        """The session policy for one call with `arguments` (None when the tool names no action)."""
        if not self.actions:
            return None
        resources = tuple(self.resources(**arguments)) if self.resources is not None else ANY_RESOURCE
        return session_policy(self.actions, resources)


Credential = OAuth2 | Sts


def session_policy(actions: Sequence[str], resources: Sequence[str] = ANY_RESOURCE) -> str:
    """A RAM session policy allowing only `actions` on `resources`: the credentials can do nothing else.
    Compact and with non-ASCII kept as it is: a session policy is at most 2,048 characters
    (docs/services.md)."""
    resource: str | list[str] = resources[0] if len(resources) == 1 else list(resources)
    statement = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": resource}
    return json.dumps({"Version": "1", "Statement": [statement]}, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class UserSession:
    """What an OAuth2 tool receives: the user's token and the provider's HTTP client (base URL: its API)."""

    access_token: str = field(repr=False)
    http: httpx.AsyncClient = field(repr=False)


class CloudSession:
    """What an STS tool receives: SDK clients signed with credentials scoped to its actions. A tool awaits a
    client's sync method with `outbound.sdk_call` (pooled TLS connections), not its `*_async` twin (a new TLS
    connection per call), or hands an async SDK the shared `aiohttp_session`."""

    def __init__(self, credential: StsCredential, settings: ToolSettings,
                 aiohttp_session: aiohttp.ClientSession) -> None:
        self.credential = credential  # for SDKs with their own credential types (OSS); its repr hides secrets
        self.settings = settings
        self.aiohttp_session = aiohttp_session

    def client(self, client_class: Callable[[SdkConfig], SdkClient], endpoint: str) -> SdkClient:
        """An SDK client for `endpoint` (`host`, `https://host` or `http://host:port` for local emulators)."""
        return client_class(sdk_config(self.credential.credential_client(), self.settings.region_id, endpoint,
                                       timeout_seconds=self.settings.http_timeout_seconds))


class ToolFailed(Exception):
    """Raised by a tool: it could not do its job. `message` is the sentence for the model, `code` the
    `tool_finished` code; neither may contain a credential. `credential_rejected`: the service refused the
    credential itself (an expired or revoked token or STS key), so the action never ran and is run once more
    with a fresh credential. `consent_outdated`: the user's token lacks a permission the provider's app may
    have gained since the user consented; the action never ran and is run once more after the user consents
    anew (the provider asked to show its consent page again)."""

    def __init__(self, message: str, code: str, *, credential_rejected: bool = False,
                 consent_outdated: bool = False) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        self.credential_rejected, self.consent_outdated = credential_rejected, consent_outdated


@dataclass(frozen=True)
class Tool:
    """One tool: its function, the credential it acts with and its argument schema. Calling it calls the
    function (with the session its credential gives)."""

    function: ToolFunction
    credential: Credential
    args_schema: type[BaseModel] = NoArguments

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def description(self) -> str:
        """The function's docstring, what the model reads to choose the tool; an OAuth2 tool adds how its
        consent link reaches the user. A tool without a docstring is refused."""
        doc = inspect.getdoc(self.function)
        if not doc:
            raise ValueError(f"the tool {self.name} has no docstring: it is what the model reads to choose "
                             "the tool")
        if isinstance(self.credential, OAuth2):
            return (f"{doc}\n\nThis tool acts with the user's own {self.credential.label} authorization. The "
                    "first time, the user is shown a link to authorize it; if this tool answers with such a "
                    "link, pass the link on to the user exactly as given.")
        return doc

    async def __call__(self, session: UserSession | CloudSession, *args: Any, **arguments: Any) -> str:
        return await self.function(session, *args, **arguments)


def tool(credential: Credential, *,
         args_schema: type[BaseModel] = NoArguments) -> Callable[[ToolFunction], Tool]:
    """Make an async function a tool. Its docstring is what the model reads; its first parameter is the
    session its credential gives, the others are the tool's arguments (described by `args_schema`)."""

    def make(function: ToolFunction) -> Tool:
        return Tool(function, credential, args_schema)

    return make


def oauth2_providers(tools: Iterable[Tool]) -> dict[OAuth2Provider, tuple[str, ...]]:
    """Every provider the OAuth2 tools among `tools` use, once each, with the scopes they ask for: the
    settings read their variables, the sandbox emulates them, the packager names them."""
    providers: dict[OAuth2Provider, tuple[str, ...]] = {}
    for each in tools:
        if isinstance(each.credential, OAuth2):
            scopes = providers.get(each.credential.provider, ())
            providers[each.credential.provider] = tuple(dict.fromkeys([*scopes, *each.credential.scopes]))
    return providers
