"""The agent's tools: DingTalk documents on the user's behalf, Alibaba Cloud (STS, OSS) with the agent's own
identity.

A `Toolbox` binds them to the process's identity service and owns the HTTP client they share; the app
closes it on shutdown. Tools never receive or return a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.tools import BaseTool

from tools import oss  # noqa: F401 - registers its @aliyun_tool
from tools.aliyun import build_aliyun_tools
from tools.dingtalk import DingTalkClient, make_write_document_tool
from tools.settings import ToolSettings

if TYPE_CHECKING:
    from identity.service import AgentIdentity

__all__ = ["ToolSettings", "Toolbox"]


class Toolbox:
    """Every tool the agent offers the model, and the DingTalk connection pool they share.

    STS clients need no closing: the Alibaba SDK opens one connection per call; the OSS tool closes its client
    after each call."""

    def __init__(self, identity: AgentIdentity, settings: ToolSettings) -> None:
        self._dingtalk = DingTalkClient(settings.dingtalk_api_base, timeout_seconds=settings.http_timeout_seconds)
        self.tools: list[BaseTool] = [make_write_document_tool(identity, settings, self._dingtalk),
                                      *build_aliyun_tools(identity, settings)]

    async def aclose(self) -> None:
        """Close the shared pool; call it on the event loop that served the requests (the app's shutdown)."""
        await self._dingtalk.aclose()
