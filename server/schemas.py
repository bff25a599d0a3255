"""The chat-completions request body, validated, and its conversion to LangChain messages.

Clients send many optional OpenAI fields; unknown ones are accepted and ignored. Content parts may carry extra
fields (the product docs put a `user_id` in a text part): accepted and dropped, never used as identity.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from server.request_body import RequestInvalid, validated


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageUrl(_Lenient):
    url: str
    detail: str | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCallFunction(_Lenient):
    name: str
    arguments: str = "{}"


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content or () if isinstance(p, TextPart))


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: StrictBool | None = False  # null is allowed and means false
    stream_options: StreamOptions | None = None
    # One choice per request: the agent acts (writes documents), so n > 1 would act n times.
    n: Literal[1] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # Passed to the model.
    stop: str | list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    # Refused with a 400 naming the field (see `unsupported`): the agent cannot honour them, and silently
    # ignoring them makes clients fail far from the cause.
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = None
    functions: list[Any] | None = None  # the deprecated form of `tools`
    function_call: Any = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for the first field the agent cannot honour, if any."""
        if self.tools:
            return "tools", "This agent runs its own tools; client-supplied `tools` are not supported."
        if self.functions or self.function_call not in (None, "none", "auto"):
            param = "functions" if self.functions else "function_call"
            return param, f"This agent runs its own tools; client-supplied `{param}` is not supported."
        if self.audio is not None or "audio" in (self.modalities or ()):
            param = "audio" if self.audio is not None else "modalities"
            return param, "This agent answers in text only; audio output is not supported."
        if self.prediction is not None:
            return "prediction", "Predicted outputs (`prediction`) are not supported."
        if self.web_search_options is not None:
            return "web_search_options", "Web search (`web_search_options`) is not supported."
        if self.tool_choice not in (None, "none", "auto"):
            return "tool_choice", ("Only `tool_choice` \"none\" or \"auto\" is supported: the agent picks "
                                   "its own tools.")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            return "response_format", "Only `response_format` {\"type\": \"text\"} is supported."
        if self.logprobs or self.top_logprobs:
            return ("logprobs" if self.logprobs else "top_logprobs"), "Log probabilities are not supported."
        if self.messages[-1].role == "assistant":
            # What a client sends to continue a broken answer (LiteLLM's mid-stream fallback): the agent would
            # run again, and its tools could repeat what the broken answer already reports as done.
            return "messages", ("The conversation ends with an assistant message: this agent answers a user "
                                "or a tool result and does not continue a partial answer "
                                "(assistant prefill).")
        return None

    @property
    def streamed(self) -> bool:
        return bool(self.stream)

    @property
    def stop_sequences(self) -> tuple[str, ...] | None:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop) if self.stop else None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body; raise `RequestInvalid` naming the field."""
    chat = validated(ChatCompletionRequest, body)
    if (unsupported := chat.unsupported()) is not None:
        param, message = unsupported
        raise RequestInvalid(message, param)
    return chat


def to_langchain_messages(messages: list[ChatMessage]) -> list[BaseMessage]:
    converted: list[BaseMessage] = []
    for message in messages:
        if message.role in ("system", "developer"):
            converted.append(SystemMessage(message.text()))
        elif message.role == "user":
            converted.append(HumanMessage(_user_content(message)))
        elif message.role == "assistant":
            calls = [{"id": c.id, "name": c.function.name, "args": tool_arguments(c.function.arguments)}
                     for c in message.tool_calls or ()]
            converted.append(AIMessage(message.text(), tool_calls=calls))
        else:
            converted.append(ToolMessage(message.text(), tool_call_id=message.tool_call_id or ""))
    return converted


def _user_content(message: ChatMessage) -> str | list[str | dict]:
    if isinstance(message.content, str) or message.content is None:
        return message.content or ""
    parts: list[str | dict] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})  # extra fields (e.g. user_id) dropped
        else:
            parts.append({"type": "image_url", "image_url": part.image_url.model_dump(exclude_none=True)})
    return parts


def tool_arguments(arguments: str) -> dict:
    """A tool call's JSON arguments as LangChain's `args` (anything but a JSON object: none)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
