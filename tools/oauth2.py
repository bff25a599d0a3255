"""`@oauth2_tool`: a tool that acts with the signed-in user's own OAuth2 token is one async function.

    @oauth2_tool(provider=DINGTALK, scopes=["openid", "corpid"], purpose="Write to DingTalk document",
                 args_schema=WriteDocumentArgs)
    async def write_dingtalk_document(user: UserSession, document_id: str, content: str) -> str:
        '''What the model reads.'''

The function gets a `UserSession` (the user's access token and the provider's pooled HTTP client) and returns
the sentence the model relays. Everything around the call comes from here, the same for every provider: the
token from identity/ (the consent link streamed at once, the wait, the resume), one forced re-authorization
when the provider rejects the token (the function raises `TokenRejected`), and a short sentence for the model
on every failure (the function raises `ToolFailed` for its own; timeouts and unreachable hosts are handled
here). The token never reaches the model: not in a return value, an exception message or a log line.

A provider's variables are named after its `env_prefix`: `<PREFIX>_CREDENTIAL_PROVIDER_NAME` (the Agent
Identity credential provider, required), `<PREFIX>_SCOPES` and `<PREFIX>_API_BASE` (tools/settings.py).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from identity.errors import AuthorizationPending, IdentityError, consent_sentence
from tools.outcome import Outcome, as_langchain_tool, failed, succeeded
from tools.validation import NoArguments

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from identity.service import AgentIdentity
    from tools.settings import ToolSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OAuth2Provider:
    """An API the users authorize the agent for, through an Agent Identity OAuth2 credential provider."""

    # names its variables: DINGTALK -> DINGTALK_CREDENTIAL_PROVIDER_NAME, DINGTALK_SCOPES, ...
    env_prefix: str
    label: str  # the name users know it by, in the sentences the model relays
    api_base: str  # the default of <PREFIX>_API_BASE

    @property
    def code(self) -> str:
        """The prefix of its failure codes in `tool_finished` events (`dingtalk_timeout`, ...)."""
        return self.env_prefix.lower()


@dataclass(frozen=True)
class UserSession:
    """What an OAuth2 tool receives: the user's token and the provider's HTTP client (base URL: its API)."""

    access_token: str = field(repr=False)
    http: httpx.AsyncClient = field(repr=False)


class TokenRejected(Exception):
    """Raised by a tool: the provider refused the user's token (expired or revoked); a new authorization
    fixes it. The message is for the log: never put the token in it."""


class ToolFailed(Exception):
    """Raised by a tool: it could not do its job; `message` is the sentence for the model, `code` the
    `tool_finished` code. Neither may contain the token."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


OAuth2ToolFunction = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class OAuth2ToolSpec:
    """One registered OAuth2 tool: its function, provider, scopes, purpose and argument schema."""

    function: OAuth2ToolFunction
    provider: OAuth2Provider
    scopes: tuple[str, ...]
    purpose: str
    args_schema: type[BaseModel]

    @property
    def name(self) -> str:
        return self.function.__name__


REGISTERED_OAUTH2_TOOLS: list[OAuth2ToolSpec] = []


def oauth2_tool(*, provider: OAuth2Provider, scopes: Sequence[str], purpose: str,
                args_schema: type[BaseModel] = NoArguments,
                ) -> Callable[[OAuth2ToolFunction], OAuth2ToolFunction]:
    """Register an OAuth2 tool. Its docstring is what the model reads; its first parameter is the
    `UserSession`, the others are the tool's arguments (described by `args_schema`). `purpose` is what the
    user is asked to authorize ("Write to DingTalk document"). The function is returned unchanged."""

    def register(function: OAuth2ToolFunction) -> OAuth2ToolFunction:
        REGISTERED_OAUTH2_TOOLS.append(OAuth2ToolSpec(function, provider, tuple(scopes), purpose,
                                                      args_schema))
        return function

    return register


def registered_providers() -> list[OAuth2Provider]:
    """Every provider a registered tool uses, once each: tools/settings.py reads their variables."""
    return list({spec.provider.env_prefix: spec.provider for spec in REGISTERED_OAUTH2_TOOLS}.values())


class ProviderClients:
    """One pooled HTTP client per provider, shared by its tools. A client opens on first use, inside the event
    loop that serves requests (an httpx client belongs to one loop); `aclose` runs on that loop at
    shutdown."""

    def __init__(self, settings: ToolSettings) -> None:
        self._settings = settings
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, provider: OAuth2Provider) -> httpx.AsyncClient:
        client = self._clients.get(provider.env_prefix)
        if client is None or client.is_closed:
            timeout = self._settings.http_timeout_seconds
            client = httpx.AsyncClient(base_url=self._settings.oauth2[provider.env_prefix].api_base,
                                       timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                       limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                                       headers={"Accept": "application/json"})
            self._clients[provider.env_prefix] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def build_oauth2_tools(identity: AgentIdentity, settings: ToolSettings, clients: ProviderClients,
                       specs: Sequence[OAuth2ToolSpec] | None = None) -> list[BaseTool]:
    """The registered OAuth2 tools (or `specs`) as LangChain tools bound to this process's identity
    service."""
    return [_as_langchain_tool(spec, identity, settings, clients)
            for spec in (REGISTERED_OAUTH2_TOOLS if specs is None else specs)]


def _as_langchain_tool(spec: OAuth2ToolSpec, identity: AgentIdentity, settings: ToolSettings,
                       clients: ProviderClients) -> BaseTool:
    provider, configured = spec.provider, settings.oauth2[spec.provider.env_prefix]
    scopes = configured.scopes or spec.scopes

    async def attempt(arguments: dict[str, Any], *, force: bool) -> str:
        token = await identity.oauth2_token(provider=configured.credential_provider, scopes=scopes,
                                            purpose=spec.purpose, force_authentication=force)
        return await spec.function(UserSession(token, clients.client(provider)), **arguments)

    async def run(**arguments: Any) -> Outcome:
        try:
            try:
                return succeeded(await attempt(arguments, force=False))
            except TokenRejected as rejected:
                log.info("%s rejected the user's token (%s); asking for a new authorization", provider.label,
                         rejected)
            try:
                return succeeded(await attempt(arguments, force=True))
            except TokenRejected:
                return failed(f"{provider.label} refused the user's authorization even after it was renewed.",
                              f"{provider.code}_authorization_rejected")
        except AuthorizationPending as pending:
            return failed(consent_sentence(pending.purpose or spec.purpose, pending.url)
                          + "After authorizing, ask again.", pending.code)
        except IdentityError as error:
            return failed(error.safe_message, error.code)
        except ToolFailed as failure:
            return failed(failure.message, failure.code)
        except httpx.TimeoutException:
            return failed(f"{provider.label} did not answer in time, so it is not known whether this was "
                          "done. Please try again.", f"{provider.code}_timeout")
        except httpx.TransportError:
            return failed(f"{provider.label} could not be reached; nothing was done. Please try again later.",
                          f"{provider.code}_unreachable")

    doc = inspect.getdoc(spec.function)
    return as_langchain_tool(run, name=spec.name, args_schema=spec.args_schema,
                             description=doc and f"{doc}\n\n{_consent_note(provider)}")


def _consent_note(provider: OAuth2Provider) -> str:
    return (f"This tool acts with the user's own {provider.label} authorization. The first time, the user "
            "is shown a link to authorize it; if this tool answers with such a link, pass the link on to the "
            "user exactly as given.")
