"""The AG-UI request body (`RunAgentInput`, the protocol's own model from ag-ui-protocol), checked, and its
conversation as LangChain messages.

Taken: `messages`, `context` (one system message ahead of the conversation), `threadId` (the session, unless
the request names one: server/run_scope.py) and `runId` (echoed in the run's events).
Refused with a 400 naming the field: client `tools` (this agent runs its own; a front-end tool it never calls
would fail far from the cause), `resume` (this agent never ends a run with an interrupt), and audio, video,
document or file parts (the model reads text and images).
Ignored: `state` and `forwardedProps` (the agent keeps no shared state and takes no settings from the client),
`parentRunId`, message ids, activity and reasoning messages (what a UI showed, not what was said), and
anything but the text of a tool message (this agent's tools answer in text).
"""

from __future__ import annotations

from typing import Any

from ag_ui.core import (
    AssistantMessage,
    DataSource,
    DeveloperMessage,
    ImagePart,
    RunAgentInput,
    SystemMessage,
    TextPart,
    ToolMessage,
    UrlSource,
    UserMessage,
)
from langchain_core import messages as lc

from server.request_body import RequestInvalid, validated
from server.schemas import tool_arguments

CONVERSATION = (DeveloperMessage, SystemMessage, UserMessage, AssistantMessage, ToolMessage)


def parse_run_input(body: Any) -> RunAgentInput:
    """Validate a decoded JSON body; raise `RequestInvalid` naming the field."""
    run = validated(RunAgentInput, body)
    if run.tools:
        raise RequestInvalid("This agent runs its own tools; client-supplied `tools` are not supported.",
                             "tools")
    if run.resume:
        raise RequestInvalid("This agent never interrupts a run, so there is nothing to `resume`.", "resume")
    for i, message in enumerate(run.messages):
        parts = (message.content if isinstance(message, UserMessage) and isinstance(message.content, list)
                 else ())
        for j, part in enumerate(parts):
            if not isinstance(part, TextPart) and not _image_url(part):
                kind = (part.type if not isinstance(part, ImagePart)
                        else f"image from a {part.source.type} source")
                raise RequestInvalid(f"Only text parts and images by URL or inline data are supported, "
                                     f"not {kind}.", f"messages.{i}.content.{j}")
    if not any(isinstance(message, CONVERSATION) for message in run.messages):
        raise RequestInvalid("`messages` must hold at least one user, assistant, system, developer or tool "
                             "message.", "messages")
    return run


def to_langchain_messages(run: RunAgentInput) -> list[lc.BaseMessage]:
    """The conversation as the model reads it.

    A tool call is kept only together with its result, and a result only with its call: a run cut short
    (an error, a closed tab while waiting for consent) leaves the client a call without a result, which the
    model's API would refuse on every later turn of the thread."""
    called = {call.id for m in run.messages if isinstance(m, AssistantMessage) for call in m.tool_calls or ()}
    answered = {m.tool_call_id for m in run.messages if isinstance(m, ToolMessage)} & called
    converted: list[lc.BaseMessage] = []
    if run.context:
        converted.append(lc.SystemMessage("Context from the application:\n" + "\n".join(
            f"- {item.description}: {item.value}" for item in run.context)))
    for message in run.messages:
        if isinstance(message, SystemMessage | DeveloperMessage):
            converted.append(lc.SystemMessage(message.content))
        elif isinstance(message, UserMessage):
            converted.append(lc.HumanMessage(_user_content(message.content)))
        elif isinstance(message, AssistantMessage):
            calls = [{"id": call.id, "name": call.function.name,
                      "args": tool_arguments(call.function.arguments)}
                     for call in message.tool_calls or () if call.id in answered]
            if message.content or calls:
                converted.append(lc.AIMessage(message.content or "", tool_calls=calls))
        elif isinstance(message, ToolMessage) and message.tool_call_id in answered:
            converted.append(lc.ToolMessage(_text(message.content), tool_call_id=message.tool_call_id))
    return converted


def _user_content(content: str | list[Any]) -> str | list[str | dict]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": part.text} if isinstance(part, TextPart) else
            {"type": "image_url", "image_url": {"url": _image_url(part)}} for part in content]


def _image_url(part: Any) -> str | None:
    """An image part as the URL a chat model takes (a `data:` URL for inline data); None for anything else."""
    if isinstance(part, ImagePart) and isinstance(part.source, UrlSource):
        return part.source.value
    if isinstance(part, ImagePart) and isinstance(part.source, DataSource):
        return f"data:{part.source.mime_type};base64,{part.source.value}"
    return None


def _text(content: str | list[Any]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content
                                                            if isinstance(p, TextPart))
