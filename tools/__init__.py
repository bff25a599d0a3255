"""The agent's tools: DingTalk documents on the user's behalf, Alibaba Cloud with the agent's own identity.

`build_tools` binds them to the process's identity service; `aclose` closes the shared HTTP clients
(call it from the app's shutdown). Tools never receive or return a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.tools import BaseTool

from tools.aliyun import build_aliyun_tools
from tools.dingtalk import DingTalkClient, aclose_opened_on_this_loop, make_write_document_tool
from tools.settings import ToolSettings

if TYPE_CHECKING:
    from identity.service import AgentIdentity

__all__ = ["ToolSettings", "aclose", "build_tools"]


def build_tools(identity: AgentIdentity, settings: ToolSettings) -> list[BaseTool]:
    """Every tool the agent offers the model; the DingTalk tool shares one connection pool."""
    dingtalk = DingTalkClient(settings.dingtalk_api_base, timeout_seconds=settings.http_timeout_seconds)
    return [make_write_document_tool(identity, settings, dingtalk), *build_aliyun_tools(identity, settings)]


async def aclose() -> None:
    """Close the HTTP clients opened on this event loop (the app's shutdown runs on the loop it served on).
    STS clients need no closing: the Alibaba SDK opens one connection per call."""
    await aclose_opened_on_this_loop()
