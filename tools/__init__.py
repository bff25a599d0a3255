"""The agent's tools: APIs called on the user's behalf with their own OAuth2 authorization (`@oauth2_tool`:
DingTalk), and Alibaba Cloud APIs called with the agent's own identity through STS (`@aliyun_tool`: STS, OSS).

Importing this package imports every tool module, which registers its tools; a `Toolbox` binds them to the
process's identity service and owns the HTTP clients they share (the app closes them on shutdown). Tools
never receive or return a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools import dingtalk  # noqa: F401 - registers its @oauth2_tool functions
from tools import oss  # noqa: F401 - registers its @aliyun_tool
from tools.aliyun import CloudConnections, build_aliyun_tools
from tools.oauth2 import ProviderClients, build_oauth2_tools
from tools.settings import ToolSettings

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from identity.service import AgentIdentity

__all__ = ["ToolSettings", "Toolbox"]


class Toolbox:
    """Every tool the agent offers the model, and the providers' connection pools they share.

    The SDK clients of STS-style tools pool their connections in `outbound`'s threads; OSS's async client
    takes the shared aiohttp session of `CloudConnections`."""

    def __init__(self, identity: AgentIdentity, settings: ToolSettings) -> None:
        self._clients = ProviderClients(settings)
        self._cloud = CloudConnections()
        self.tools: list[BaseTool] = [*build_oauth2_tools(identity, settings, self._clients),
                                      *build_aliyun_tools(identity, settings, self._cloud)]

    async def aclose(self) -> None:
        """Close the shared pools; call it on the event loop that served the requests (the app's shutdown)."""
        await self._clients.aclose()
        await self._cloud.aclose()
