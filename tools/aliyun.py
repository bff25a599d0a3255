"""Alibaba Cloud APIs, called with the agent's own workload identity through short-lived STS credentials.

Each API tool is one small async function registered with `@aliyun_tool(actions=[...])`: it names the RAM
actions it needs (and, with `resources=`, the resources of this one call), and gets a `CloudSession` whose SDK
clients are signed with STS credentials scoped down to exactly those by a session policy. How the credentials
were obtained stays in identity/.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.exceptions import DaraException, UnretryableException
from pydantic import BaseModel

from config import SdkConfig, sdk_config
from identity.errors import IdentityError
from identity.sdk_errors import THROTTLED, UNAVAILABLE, credential_rejected, failure_kind
from outbound import sdk_call
from tools.outcome import Outcome, as_langchain_tool, failed, succeeded
from tools.settings import ToolSettings
from tools.validation import NoArguments

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from identity.service import AgentIdentity, StsCredential

log = logging.getLogger(__name__)

SdkClient = TypeVar("SdkClient")
ToolFunction = Callable[..., Awaitable[str]]
# The RAM resources one call touches, from the tool's (validated) arguments, e.g. one OSS object's ARN.
Resources = Callable[..., Sequence[str]]
ANY_RESOURCE = ("*",)


class CloudCallFailed(Exception):
    """Raised by a tool for a failure it has worded for the user itself (never quoting the service's text).

    `stale_credentials`: the service refused the STS credentials themselves (expired or revoked early); the
    call is then repeated once with fresh ones, as for the Alibaba Cloud SDK's own errors."""

    def __init__(self, message: str, code: str, *, stale_credentials: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.stale_credentials = stale_credentials


class CloudConnections:
    """Connection pools shared by every call of the Alibaba Cloud tools, for SDKs that take a transport (OSS's
    async client takes an aiohttp session): credentials differ per call, TLS connections need not. The
    session opens on first use, inside the event loop that serves requests; `aclose` runs on that loop."""

    def __init__(self) -> None:
        self._aiohttp: aiohttp.ClientSession | None = None

    def aiohttp_session(self) -> aiohttp.ClientSession:
        if self._aiohttp is None or self._aiohttp.closed:
            self._aiohttp = aiohttp.ClientSession()
        return self._aiohttp

    async def aclose(self) -> None:
        if self._aiohttp is not None:
            await self._aiohttp.close()


class CloudSession:
    """What an Alibaba Cloud tool receives: SDK clients signed with credentials scoped to its actions. A tool
    awaits a client's sync method with `outbound.sdk_call` (pooled TLS connections), not its `*_async` twin
    (a new TLS connection per call), or hands an async SDK the shared `connections`."""

    def __init__(self, credential: StsCredential, settings: ToolSettings,
                 connections: CloudConnections) -> None:
        self.credential = credential  # for SDKs with their own credential types (OSS); its repr hides secrets
        self.settings = settings
        self.connections = connections

    def client(self, client_class: Callable[[SdkConfig], SdkClient], endpoint: str) -> SdkClient:
        """An SDK client for `endpoint` (`host`, `https://host` or `http://host:port` for local emulators)."""
        return client_class(sdk_config(self.credential.credential_client(), self.settings.region_id, endpoint,
                                       timeout_seconds=self.settings.http_timeout_seconds))


@dataclass(frozen=True)
class AliyunToolSpec:
    """One registered Alibaba Cloud tool: its function, the RAM actions it needs, its argument schema and the
    resources a call touches (None: any)."""

    function: ToolFunction
    actions: tuple[str, ...]
    args_schema: type[BaseModel]
    resources: Resources | None = None

    @property
    def name(self) -> str:
        return self.function.__name__

    def policy(self, arguments: dict[str, Any]) -> str | None:
        """The session policy for one call with `arguments` (None when the tool names no action)."""
        if not self.actions:
            return None
        resources = tuple(self.resources(**arguments)) if self.resources is not None else ANY_RESOURCE
        return session_policy(self.actions, resources)


REGISTERED_TOOLS: list[AliyunToolSpec] = []


def aliyun_tool(*, actions: Sequence[str], args_schema: type[BaseModel] = NoArguments,
                resources: Resources | None = None) -> Callable[[ToolFunction], ToolFunction]:
    """Register an Alibaba Cloud tool. Its docstring is what the model reads; its first parameter is the
    `CloudSession`, the others are the tool's arguments (described by `args_schema`). `resources`, called with
    those arguments, names the RAM resources of one call: the credentials then reach nothing else (without it,
    the actions are allowed on any resource the role may reach)."""

    def register(function: ToolFunction) -> ToolFunction:
        REGISTERED_TOOLS.append(AliyunToolSpec(function, tuple(actions), args_schema, resources))
        return function

    return register


def session_policy(actions: Sequence[str], resources: Sequence[str] = ANY_RESOURCE) -> str:
    """A RAM session policy allowing only `actions` on `resources`: the credentials can do nothing else.
    Compact and with non-ASCII kept as it is: a session policy is at most 2,048 characters
    (docs/services.md)."""
    resource: str | list[str] = resources[0] if len(resources) == 1 else list(resources)
    statement = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": resource}
    return json.dumps({"Version": "1", "Statement": [statement]}, separators=(",", ":"), ensure_ascii=False)


@aliyun_tool(actions=["sts:GetCallerIdentity"])
async def get_alibaba_cloud_caller_identity(cloud: CloudSession) -> str:
    """Tell which Alibaba Cloud identity this agent acts as: the account ID, the RAM role ARN and the
    identity type. Use this when the user asks who the agent is on Alibaba Cloud, which account or role it
    uses, or to check that its cloud credentials work."""
    sts = cloud.client(StsClient, cloud.settings.sts_endpoint)
    body = (await sdk_call(sts.get_caller_identity)).body
    return (f"The agent acts as Alibaba Cloud account {body.account_id}, with ARN {body.arn} "
            f"(identity type: {body.identity_type}; principal: {body.principal_id}).")


def build_aliyun_tools(identity: AgentIdentity, settings: ToolSettings,
                       connections: CloudConnections) -> list[BaseTool]:
    """Every registered Alibaba Cloud tool as a LangChain tool bound to this process's identity service."""

    def session(credential: StsCredential) -> CloudSession:
        return CloudSession(credential, settings, connections)

    return [_as_langchain_tool(spec, identity, session) for spec in REGISTERED_TOOLS]


def _as_langchain_tool(spec: AliyunToolSpec, identity: AgentIdentity,
                       session: Callable[[StsCredential], CloudSession]) -> BaseTool:
    async def run(**arguments: Any) -> Outcome:
        try:
            return succeeded(await _call_with_fresh_credentials_once(spec, identity, session, arguments))
        except CloudCallFailed as failure:
            return failed(failure.message, failure.code)
        except IdentityError as error:
            return failed(error.safe_message, error.code)
        except AlibabaCloudException as error:
            log.warning("%s failed: HTTP %s %s (request id %s)", spec.name, error.status_code, error.code,
                        error.request_id)
            return failed(_describe_failure(error), f"aliyun_{failure_kind(error)}")
        except (UnretryableException, DaraException) as error:
            log.warning("%s could not reach Alibaba Cloud: %s", spec.name, type(error).__name__)
            return failed("Alibaba Cloud could not be reached or did not answer in time; please try again "
                          "later.", "aliyun_unreachable")

    return as_langchain_tool(run, name=spec.name, description=inspect.getdoc(spec.function),
                             args_schema=spec.args_schema)


async def _call_with_fresh_credentials_once(spec: AliyunToolSpec, identity: AgentIdentity,
                                            session: Callable[[StsCredential], CloudSession],
                                            arguments: dict[str, Any]) -> str:
    """Run the tool; if the service refuses the cached STS credentials (expired or revoked early), run it once
    more with fresh ones. A refused credential means the action itself never ran, so repeating it is safe."""
    policy = spec.policy(arguments)
    credential = await identity.sts_credential(policy=policy)
    try:
        return await spec.function(session(credential), **arguments)
    except AlibabaCloudException as error:
        if not credential_rejected(error.code):
            raise
        log.info("%s: Alibaba Cloud refused the STS credentials (%s); retrying once with fresh ones",
                 spec.name, error.code)
    except CloudCallFailed as failure:
        if not failure.stale_credentials:
            raise
        log.info("%s: the service refused the STS credentials (%s); retrying once with fresh ones",
                 spec.name, failure.code)
    credential = await identity.sts_credential(policy=policy, rejected=credential)
    return await spec.function(session(credential), **arguments)


def _describe_failure(error: AlibabaCloudException) -> str:
    """Code and request id only: a server message may quote the signed request, security token included."""
    kind = failure_kind(error)
    if kind == THROTTLED:
        what = "Alibaba Cloud is throttling requests; try again shortly."
    elif kind == UNAVAILABLE:
        what = "Alibaba Cloud had a server error; try again later."
    elif error.status_code in (401, 403):
        what = "Alibaba Cloud denied the request: the agent's role is not allowed to do this."
    else:
        what = "Alibaba Cloud rejected the request."
    return f"{what} (code: {error.code}, request id: {error.request_id or 'n/a'})"
