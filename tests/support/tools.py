"""The tools with the real AgentIdentity, called the way the agent calls them: inside a bound request
context, with a recording event sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from identity.context import AuthorizationRequired, RequestContext, bind_request_context, reset_request_context
from identity.service import AgentIdentity
from settings.identity import IdentitySettings
from settings.tools import ToolSettings
from tools import TOOLS
from tools.tool import oauth2_providers
from tools.toolbox import Toolbox


class Session:
    """One user's request context with a recording event sink, plus the tools bound to one identity."""

    def __init__(self, identity: AgentIdentity, tool_list, caller, *, stream: bool) -> None:
        self.identity, self.caller = identity, caller
        self.tools = {tool.name: tool for tool in tool_list}
        self.events: list[object] = []
        self.links: asyncio.Queue[str] = asyncio.Queue()
        self.stream = stream

    async def emit(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, AuthorizationRequired):
            self.links.put_nowait(event.url)

    async def call(self, name: str, **arguments) -> str:
        token = bind_request_context(RequestContext(caller=self.caller, session_id=None, request_id="test",
                                                    emit=self.emit, wait_for_authorization=self.stream))
        try:
            return await self.tools[name].ainvoke(arguments)
        finally:
            reset_request_context(token)


@pytest.fixture
async def make_session(cloud) -> AsyncIterator:
    """Build a Session for a user; every identity and tool client made here is closed afterwards."""
    made: list[AgentIdentity] = []
    toolboxes: list[Toolbox] = []

    async def make(user: str, *, stream: bool = True, **env_overrides: str) -> Session:
        env = {**cloud.env, **env_overrides}
        identity = AgentIdentity(IdentitySettings.from_env(env))
        made.append(identity)
        caller = await identity.authenticate(f"Bearer {cloud.issue_user_jwt(user)}")
        toolboxes.append(Toolbox(identity, ToolSettings.from_env(env, oauth2_providers(TOOLS)), TOOLS))
        return Session(identity, toolboxes[-1].tools, caller, stream=stream)

    yield make
    for identity in made:
        await identity.aclose()
    for toolbox in toolboxes:
        await toolbox.aclose()
