"""The agent's tools, listed in `TOOLS`: APIs called on the user's behalf with their own OAuth2 authorization
(DingTalk), and Alibaba Cloud APIs called with the agent's own identity through STS (STS, OSS).

Each tool is one module with one `@tool(credential)` function (tools/tool.py); a `Toolbox` (tools/toolbox.py)
binds them to the process's identity service. The OAuth2 providers of `TOOLS` decide which variables the
settings read, which providers the sandbox emulates and what the packager asks for. Tools never receive or
return a token.
"""

from __future__ import annotations

from tools.cloud_identity import get_alibaba_cloud_caller_identity
from tools.dingtalk import write_dingtalk_document
from tools.dingtalk_profile import read_dingtalk_profile
from tools.oss import read_oss_object
from tools.tool import Tool

TOOLS: list[Tool] = [
    write_dingtalk_document,
    read_dingtalk_profile,
    get_alibaba_cloud_caller_identity,
    read_oss_object,
]

__all__ = ["TOOLS"]
