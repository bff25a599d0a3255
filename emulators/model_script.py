"""What the scripted model says: a pure function from a chat-completions request body to a reply.

Deterministic on purpose, so end-to-end tests can assert exact tool calls and answers:
- the product's example prompt (Chinese or English) calls `write_dingtalk_document`;
- "Who am I on Alibaba Cloud?" (or the Chinese form) calls `get_alibaba_cloud_caller_identity`;
- "Call the tool NAME" or "Call the tool NAME with {json arguments}" calls any tool by name (for tools that
  tests add);
- "Read oss://bucket/key" (or "读取 oss://bucket/key"), optionally "in region cn-shanghai" (or
  "地域 cn-shanghai"), calls `read_oss_object`;
- a tool result as the last message gets a final answer quoting it, in the user's language;
- anything else gets a plain reply saying what was understood.
A tool is only called if the request offers it in `tools` (and `tool_choice` allows it); otherwise the model
says it cannot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

WRITE_TOOL = "write_dingtalk_document"
IDENTITY_TOOL = "get_alibaba_cloud_caller_identity"
OSS_TOOL = "read_oss_object"

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_OPEN_QUOTES = "“\"'「『‘"
_CLOSE_QUOTES = "”\"'」』’"
_WRITE_ZH = re.compile(
    rf"写入\s*[{_OPEN_QUOTES}](?P<content>.+?)[{_CLOSE_QUOTES}]\s*到\s*钉钉文档.*?"
    r"(?:文档\s*)?ID\s*[：:]?\s*(?P<doc>[A-Za-z0-9_-]+)", re.IGNORECASE | re.DOTALL)
_WRITE_EN = re.compile(
    rf"write\s+[{_OPEN_QUOTES}](?P<content>.+?)[{_CLOSE_QUOTES}]\s+(?:in)?to\s+(?:the\s+)?dingtalk\s+"
    r"doc(?:ument)?\s*(?:id)?\s*[：:]?\s*(?P<doc>[A-Za-z0-9_-]+)", re.IGNORECASE | re.DOTALL)
_IDENTITY_EN = re.compile(r"\bwho\s+am\s+i\b|\bmy\s+(?:caller\s+)?identity\b", re.IGNORECASE)
_CLOUD_EN = re.compile(r"alibaba\s*cloud|aliyun", re.IGNORECASE)
_IDENTITY_ZH = re.compile(r"(我是谁|我的身份|身份是什么|什么身份)")
_CALL_TOOL = re.compile(r"^call the tool (?P<name>[A-Za-z0-9_-]+)(?:\s+with\s+(?P<arguments>\{.*\}))?\s*$",
                        re.IGNORECASE | re.DOTALL)
_READ_OSS = re.compile(r"(?:\bread|\bshow|\bopen|读取|读|查看|打开)\s*(?:the\s+)?"
                       r"(?:file\s+|object\s+|文件\s*|对象\s*)?oss://(?P<bucket>[a-z0-9-]+)/(?P<key>[^\s“”\"'「」，。；、]+)"
                       r"(?:.*?(?:region|地域|区域)\s*[：:]?\s*(?P<region>[a-z]{2,}(?:-[a-z0-9]+)+))?",
                       re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """Either text or tool calls (never both), as a real model's assistant turn."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


def plan_reply(body: dict[str, Any]) -> Reply:
    """Decide the assistant's next turn from the offered tools and the last messages."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    offered = _allowed_tools(body.get("tools"), body.get("tool_choice"))
    user_text = _last_user_text(messages)
    chinese = bool(_CJK.search(user_text))
    if messages and messages[-1].get("role") == "tool":
        return Reply(text=_answer_from_tool(messages, chinese))

    if match := (_WRITE_ZH.search(user_text) or _WRITE_EN.search(user_text)):
        call = ToolCall(WRITE_TOOL, {"document_id": match["doc"], "content": match["content"]})
        return _call_if_offered(call, offered, chinese)
    if match := _READ_OSS.search(user_text):
        arguments = {"bucket": match["bucket"], "key": match["key"].rstrip("。.,，")}
        if match["region"]:
            arguments["region"] = match["region"]
        return _call_if_offered(ToolCall(OSS_TOOL, arguments), offered, chinese)
    if _asks_identity(user_text):
        return _call_if_offered(ToolCall(IDENTITY_TOOL, {}), offered, chinese)
    if (match := _CALL_TOOL.match(user_text)) and isinstance(arguments := _json_object(match["arguments"]), dict):
        return _call_if_offered(ToolCall(match["name"], arguments), offered, chinese)
    return Reply(text=_plain_reply(user_text, chinese))


def message_text(content: Any) -> str:
    """The text of a message `content`: a string, or a list of parts of which only text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _allowed_tools(tools: Any, tool_choice: Any) -> set[str]:
    """Names of the offered tools the model may call: `tool_choice` "none" or a named function narrows it."""
    names = set()
    for tool in tools or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            names.add(str(tool["function"].get("name", "")))
    if tool_choice == "none":
        return set()
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        return names & {str(tool_choice["function"].get("name", ""))}
    return names


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content")).strip()
    return ""


def _json_object(text: str | None) -> dict[str, Any] | None:
    """`text` as a JSON object ({} when absent); None when it is not one."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _asks_identity(text: str) -> bool:
    if _IDENTITY_EN.search(text) and _CLOUD_EN.search(text):
        return True
    return bool(_IDENTITY_ZH.search(text) and "阿里云" in text)


def _call_if_offered(call: ToolCall, offered: set[str], chinese: bool) -> Reply:
    if call.name in offered:
        return Reply(tool_calls=[call])
    if chinese:
        return Reply(text=f"抱歉，我现在无法使用工具 {call.name}，所以不能完成这个请求。")
    return Reply(text=f"Sorry, the tool {call.name} is not available to me, so I cannot do that.")


def _answer_from_tool(messages: list[dict[str, Any]], chinese: bool) -> str:
    """Quote the tool result (and name the tool that produced it, found through its tool_call_id)."""
    result = messages[-1]
    output = message_text(result.get("content")).strip()
    tool_name = _tool_name_for(messages, result.get("tool_call_id")) or "the tool"
    if chinese:
        return f"已完成。工具 {tool_name} 返回：{output}"
    return f"Done. {tool_name} returned: {output}"


def _tool_name_for(messages: list[dict[str, Any]], call_id: Any) -> str | None:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") == call_id:
                return (call.get("function") or {}).get("name")
    return None


def _plain_reply(user_text: str, chinese: bool) -> str:
    said = user_text if len(user_text) <= 200 else user_text[:200] + "…"
    if not said:
        return ("Hello! Ask me to write to a DingTalk document, to read a file from OSS, or who you are on "
                "Alibaba Cloud.")
    if chinese:
        return (f"我收到了你的消息：“{said}”。我可以把内容写入钉钉文档、读取 OSS 中的文件，"
                "或者查询你在阿里云上的身份。")
    return (f'I understood your message: "{said}". I can write text to a DingTalk document, read a file from '
            "OSS, or tell you who you are on Alibaba Cloud.")


def arguments_json(call: ToolCall) -> str:
    """Tool arguments as the model would emit them (compact JSON, non-ASCII kept readable)."""
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"))
